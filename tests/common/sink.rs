//! `tests/support/webhook_sink.py` inside a test's own namespace: the HTTP server webhooks post
//! to, recording every request as one JSON line (`tests/interop_jobs.rs`,
//! `tests/interop_dashboard.rs`).

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{tail, unique_temp_dir, wait_until, Netns};

/// The sink's usual port, inside each test's own namespace.
pub const SINK_PORT: u16 = 18080;

/// The webhook sink running inside a namespace. Killed on drop; its dir (with the request log)
/// is kept when the test panics.
pub struct Sink {
    dir: PathBuf,
    log: PathBuf,
    port: u16,
    child: Child,
}

impl Sink {
    /// A sink on 127.0.0.1:[`SINK_PORT`].
    pub fn start(ns: &Netns) -> Sink {
        Sink::start_at(ns, "127.0.0.1", SINK_PORT)
    }

    /// A sink on `addr`:[`SINK_PORT`] (an address of the namespace); [`Sink::url`] still names
    /// 127.0.0.1.
    pub fn start_on(ns: &Netns, addr: &str) -> Sink {
        Sink::start_at(ns, addr, SINK_PORT)
    }

    /// A sink on `addr`:`port`; waits up to 10 s for it to listen.
    pub fn start_at(ns: &Netns, addr: &str, port: u16) -> Sink {
        let dir = unique_temp_dir("sink");
        let log = dir.join("requests.jsonl");
        let out = File::create(dir.join("sink.out")).expect("create sink.out");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/webhook_sink.py");
        let child = ns
            .cmd("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&log)
            .arg(addr)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone sink.out"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn the webhook sink: {e}"));
        let mut sink = Sink {
            dir,
            log,
            port,
            child,
        };
        let ready = sink.log.with_extension("jsonl.ready");
        if !wait_until(Duration::from_secs(10), || ready.exists()) {
            let exited = sink.child.try_wait();
            panic!(
                "webhook sink not ready within 10 s ({exited:?}):\n{}",
                fs::read_to_string(sink.dir.join("sink.out")).unwrap_or_default()
            );
        }
        sink
    }

    /// `http://127.0.0.1:PORT{path}`: reachable from the appliance (same namespace) only.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("sink line {l:?}: {e}")))
            .collect()
    }

    /// Requests to exactly `path`.
    pub fn hits(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }

    /// Arrival times (Unix seconds) of the requests to `path`.
    pub fn times(&self, path: &str) -> Vec<f64> {
        self.hits(path)
            .iter()
            .map(|r| r["t"].as_f64().expect("sink t"))
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "webhook sink dir kept for inspection: {}\n--- last sink requests ---\n{}",
                self.dir.display(),
                tail(&fs::read_to_string(&self.log).unwrap_or_default(), 30)
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
