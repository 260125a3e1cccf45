//! `appliance serve` as a child process, for the benches that time or weigh the real binary
//! (startup in `scheduler`, RSS in `footprint`). Shared by them with `#[path]` (each bench is
//! its own crate).
#![allow(clippy::disallowed_methods)] // benchmark: times the child and polls it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appliance::control::{self, Request};

/// How long the child may take to come up, and to exit after SIGTERM.
const START_DEADLINE: Duration = Duration::from_secs(60);
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A running `bin --data-dir DIR serve --listen 127.0.0.1:0` (output discarded, `RUST_LOG=warn`),
/// killed on drop if [`Served::stop`] was not called (a panicking bench leaves no server).
pub struct Served {
    child: Child,
    sock: PathBuf,
    started: Instant,
}

impl Served {
    /// Spawns the server on `dir` (a stale `control.sock` removed first, so readiness is this
    /// child's); the clock of [`Served::socket_ms`] and [`Served::ready_ms`] starts here.
    pub fn start(bin: &Path, dir: &Path) -> Served {
        let sock = dir.join("control.sock");
        let _ = std::fs::remove_file(&sock);
        let started = Instant::now();
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn appliance serve");
        Served {
            child,
            sock,
            started,
        }
    }

    /// The child's pid (to read its `/proc` entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `control.sock` exists; milliseconds since [`Served::start`].
    pub fn socket_ms(&mut self) -> f64 {
        while !self.sock.exists() {
            self.check("control.sock did not appear");
            std::thread::sleep(Duration::from_millis(1));
        }
        self.since_start()
    }

    /// Waits until the control socket answers a request (`peer list`: the store is open and
    /// the driver runs); milliseconds since [`Served::start`].
    pub fn ready_ms(&mut self) -> f64 {
        loop {
            match control::request(&self.sock, &Request::PeerList) {
                Ok(_) => return self.since_start(),
                Err(e) => self.check(&format!("control socket never answered: {e}")),
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGTERM, then up to 30 s for a clean exit before SIGKILL.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while !matches!(self.child.try_wait(), Ok(Some(_))) && t.elapsed() < STOP_DEADLINE {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Drop kills it if it is still running.
    }

    fn since_start(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3
    }

    /// Panics (the child is killed on drop) if it exited or the start deadline passed.
    fn check(&mut self, waiting_for: &str) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("appliance serve exited early: {st}");
        }
        assert!(self.started.elapsed() < START_DEADLINE, "{waiting_for}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
