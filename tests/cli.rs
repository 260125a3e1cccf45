//! The command line without the network: `init` semantics, the data directory, first-run
//! `serve`, exit codes for bad input, and the offline/online paths of peer commands. Needs no
//! root: `serve` listens on an ephemeral UDP port on 127.0.0.1.
#![allow(clippy::disallowed_methods)] // test driver: waits with the clock

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_appliance")
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!(
            "appliance-cli-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("APPLIANCE_DATA_DIR")
        .output()
        .expect("run appliance")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn server_key(init_stdout: &str) -> String {
    init_stdout
        .lines()
        .find_map(|l| l.strip_prefix("server public key:"))
        .expect("init prints the server key")
        .trim()
        .to_string()
}

#[test]
fn init_creates_a_private_data_dir_and_never_replaces_the_key() {
    let d = Dir::new("init");
    let out = run(
        &d.data(),
        &[
            "init",
            "--endpoint",
            "vpn.example.org",
            "--listen-port",
            "51999",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let key = server_key(&stdout);
    assert!(stdout.contains("10.88.88.1/24"), "{stdout}");
    assert!(stdout.contains("vpn.example.org:51999"), "{stdout}");
    assert_eq!(mode(&d.data()), 0o700);
    assert_eq!(mode(&d.data().join("appliance.redb")), 0o600);

    let again = run(&d.data(), &["init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("already initialised"),
        "{}",
        text(&again.stderr)
    );
    // The key is unchanged: a peer config still names it.
    let cfg = run(&d.data(), &["peer", "add", "alice"]);
    assert!(cfg.status.success(), "{}", text(&cfg.stderr));
    assert!(text(&cfg.stdout).contains(&format!("PublicKey = {key}")));
    assert!(text(&cfg.stdout).contains("Endpoint = vpn.example.org:51999"));
}

#[test]
fn bad_init_input_exits_2_and_creates_no_key() {
    for (args, needle) in [
        (vec!["init", "--subnet", "10.0.0.0/31"], "too small"),
        (vec!["init", "--subnet", "10.0.0.0/33"], "--subnet"),
        (vec!["init", "--subnet", "fd00::/64"], "--subnet"),
        (vec!["init", "--endpoint", "host:99999"], "--endpoint"),
        (vec!["init", "--endpoint", "bad host"], "--endpoint"),
        (vec!["init", "--listen-port", "0"], "listen-port"),
    ] {
        let d = Dir::new("badinit");
        let out = run(&d.data(), &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        // Nothing usable was written: a later init with good input succeeds.
        let ok = run(&d.data(), &["init"]);
        assert!(
            ok.status.success(),
            "{args:?} left state behind: {}",
            text(&ok.stderr)
        );
    }
}

#[test]
fn data_dir_comes_from_the_environment_when_no_flag_is_given() {
    let d = Dir::new("env");
    let out = Command::new(bin())
        .args(["init", "--endpoint", "x.example"])
        .env("APPLIANCE_DATA_DIR", d.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(d.data().join("appliance.redb").exists());
}

#[test]
fn read_commands_on_a_missing_data_dir_say_so() {
    let d = Dir::new("missing");
    for args in [
        vec!["peer", "list"],
        vec!["audit"],
        vec!["peer", "disable", "x"],
    ] {
        let out = run(&d.data(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("no appliance in"),
            "{}",
            text(&out.stderr)
        );
        assert!(!d.data().exists(), "{args:?} created the data dir");
    }
}

struct Serving {
    child: Child,
    sock: PathBuf,
}

impl Serving {
    fn start(data: &Path) -> Serving {
        Serving::start_with(data, &[], Stdio::null())
    }

    /// Starts `serve` with extra environment variables, its stderr going to `stderr`.
    fn start_with(data: &Path, env: &[(&str, &str)], stderr: Stdio) -> Serving {
        let child = Command::new(bin())
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
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

    fn stop(mut self) -> std::process::ExitStatus {
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

#[test]
fn serve_initialises_on_first_run_and_peer_commands_go_through_it() {
    let d = Dir::new("serve");
    let s = Serving::start(&d.data());
    assert_eq!(mode(&d.data()), 0o700);
    assert_eq!(mode(&s.sock), 0o600, "control socket must be owner-only");

    // With serve holding the database, commands use the control socket.
    let add = run(&d.data(), &["peer", "add", "alice", "--role", "admin"]);
    assert!(add.status.success(), "{}", text(&add.stderr));
    assert!(text(&add.stdout).contains("Address = 10.88.88.2/32"));
    let list = run(&d.data(), &["peer", "list", "--json"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["name"], "alice");
    let bad = run(&d.data(), &["peer", "add", "alice"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "duplicate over the control socket"
    );

    // SIGTERM: clean exit, socket removed; the data is all there offline.
    let status = s.stop();
    assert!(status.success(), "serve exited with {status}");
    assert!(!d.data().join("control.sock").exists());
    let audit = run(&d.data(), &["audit", "--json"]);
    assert!(audit.status.success(), "{}", text(&audit.stderr));
    let entries: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(entries[0]["action"], "peer.add");
    assert_eq!(entries[0]["actor"]["via"], "cli");
    let list = run(&d.data(), &["peer", "list"]);
    assert!(text(&list.stdout).contains("alice"));
}

/// The systemd template (`appliance@.service`) gives each instance its own port and subnet
/// through `APPLIANCE_LISTEN_PORT` / `APPLIANCE_SUBNET` / `APPLIANCE_ENDPOINT`: `serve` uses
/// them on the first run only, and says so when they no longer match.
#[test]
fn serve_takes_first_run_settings_from_the_environment() {
    let d = Dir::new("firstrun");
    let first = [
        ("APPLIANCE_LISTEN_PORT", "51977"),
        ("APPLIANCE_SUBNET", "10.77.0.0/24"),
        ("APPLIANCE_ENDPOINT", "guild.example.org"),
    ];
    let s = Serving::start_with(&d.data(), &first, Stdio::null());
    let add = run(&d.data(), &["peer", "add", "alice"]);
    assert!(add.status.success(), "{}", text(&add.stderr));
    let cfg = text(&add.stdout);
    assert!(cfg.contains("Address = 10.77.0.2/32"), "{cfg}");
    assert!(cfg.contains("Endpoint = guild.example.org:51977"), "{cfg}");
    assert!(s.stop().success());

    // Changed settings on an initialised directory: kept as stored, with a warning.
    let log = d.0.join("second.log");
    let changed = [
        ("APPLIANCE_LISTEN_PORT", "51978"),
        ("APPLIANCE_SUBNET", "10.78.0.0/24"),
    ];
    let s = Serving::start_with(
        &d.data(),
        &changed,
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let add = run(&d.data(), &["peer", "add", "bob"]);
    assert!(add.status.success(), "{}", text(&add.stderr));
    let cfg = text(&add.stdout);
    assert!(cfg.contains("Address = 10.77.0.3/32"), "{cfg}");
    assert!(cfg.contains("Endpoint = guild.example.org:51977"), "{cfg}");
    assert!(s.stop().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("first-run settings ignored")
            && log.contains("listen port 51978 (keeps 51977)")
            && log.contains("subnet 10.78.0.0/24 (keeps 10.77.0.0/24)"),
        "{log}"
    );
}

#[test]
fn bad_first_run_settings_stop_serve_with_exit_2_before_writing() {
    for (env, needle) in [
        (("APPLIANCE_SUBNET", "10.0.0.0/33"), "APPLIANCE_SUBNET"),
        (("APPLIANCE_SUBNET", "10.0.0.0/31"), "too small"),
        (("APPLIANCE_LISTEN_PORT", "0"), "--listen-port"),
        (("APPLIANCE_LISTEN_PORT", "70000"), "--listen-port"),
        (("APPLIANCE_ENDPOINT", "bad host"), "--endpoint"),
    ] {
        let d = Dir::new("badfirstrun");
        let mut child = Command::new(bin())
            .arg("--data-dir")
            .arg(d.data())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(env.0, env.1)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{env:?}: serve started instead of refusing the setting");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{env:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(needle),
            "{env:?}: {}",
            text(&out.stderr)
        );
        assert!(!d.data().exists(), "{env:?} created the data directory");
    }
}

#[test]
fn a_second_serve_on_the_same_data_dir_is_refused() {
    let d = Dir::new("twice");
    let _s = Serving::start(&d.data());
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(d.data())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("in use by another process"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn qr_code_only_on_a_terminal() {
    let d = Dir::new("tty");
    let piped = run(&d.data(), &["peer", "add", "piped"]);
    assert!(piped.status.success());
    let piped = text(&piped.stdout);
    assert!(!piped.contains('▀') && !piped.contains('▄') && !piped.contains('█'));
    assert!(piped.starts_with("# appliance peer: piped"), "{piped}");

    // `script` gives the command a pseudo-terminal as stdout.
    let Ok(out) = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} --data-dir {} peer add phone",
            bin(),
            d.data().display()
        ))
        .arg("/dev/null")
        .output()
    else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "`script` (util-linux) is missing under CI"
        );
        eprintln!("SKIP: no `script` to provide a terminal");
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tty = text(&out.stdout);
    assert!(tty.contains("[Interface]"), "{tty}");
    assert!(tty.contains("Scan with the WireGuard app"), "{tty}");
    let blocks = tty.chars().filter(|c| matches!(c, '▀' | '▄' | '█')).count();
    assert!(
        blocks > 200,
        "no QR code on the terminal ({blocks} block characters)"
    );
}
