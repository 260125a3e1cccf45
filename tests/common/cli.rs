//! The `appliance` binary without the network: one-shot commands on a data directory and a
//! local `serve` on an ephemeral UDP port of 127.0.0.1 (`tests/cli.rs`, `tests/backup.rs`).
//!
//! Needs no root and no namespace: nothing here sends a packet anywhere. Temp dirs are removed on
//! drop, and a `serve` started here is killed on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::appliance_bin;

/// A temp dir for one test, removed on drop. Its name carries the test binary's name, `tag`, the
/// pid and the time, so tests and test binaries never share one.
pub struct Dir(pub PathBuf);

impl Dir {
    /// Creates the dir.
    pub fn new(tag: &str) -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!(
            "appliance-{}-{tag}-{}-{nanos}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    /// `name` inside the dir (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The usual data dir, `data` inside the dir (not created).
    pub fn data(&self) -> PathBuf {
        self.path("data")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `appliance --data-dir DATA ARGS...`, run to completion (`APPLIANCE_DATA_DIR` unset).
pub fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(appliance_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("APPLIANCE_DATA_DIR")
        .output()
        .expect("run appliance")
}

/// [`run`] that must succeed; returns its stdout.
pub fn ok(data: &Path, args: &[&str]) -> String {
    let out = run(data, args);
    assert!(
        out.status.success(),
        "appliance {args:?} failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The permission bits of `p`.
pub fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The key on the `server public key:` line that `init` and `restore` print.
pub fn server_key(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("server public key:"))
        .unwrap_or_else(|| panic!("no server key in {stdout}"))
        .trim()
        .to_string()
}

/// `appliance serve --listen 127.0.0.1:0` in the background, ready once its control socket
/// exists. Killed on drop; [`Serving::stop`] stops it the polite way.
pub struct Serving {
    child: Child,
    /// The control socket it created.
    pub sock: PathBuf,
}

impl Serving {
    /// Starts `serve` with nothing extra, its output discarded.
    pub fn start(data: &Path) -> Serving {
        Serving::start_with(data, &[], &[], Stdio::null())
    }

    /// Starts `serve` with extra `serve` arguments and environment variables, its stderr going
    /// to `stderr`; waits up to 15 s for the control socket.
    pub fn start_with(data: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Serving {
        let child = Command::new(appliance_bin())
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("APPLIANCE_DATA_DIR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Serving::adopt(child, data)
    }

    /// Takes over a `serve` the test spawned itself on `data`; waits up to 15 s for its control
    /// socket.
    pub fn adopt(child: Child, data: &Path) -> Serving {
        let sock = data.join("control.sock");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "serve did not create {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Serving { child, sock }
    }

    /// SIGTERM, then waits up to 10 s for the exit.
    pub fn stop(mut self) -> ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
