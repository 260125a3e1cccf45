//! Interop test harness: real network namespaces, the real `appliance` binary and the real
//! wireguard-go client driven by `wg-quick` with the exact config `appliance peer add` printed.
//!
//! Layer: integration tests only (shared by every `tests/*.rs` that needs the real thing).
//! Owns: the namespaces, veth pairs, temp dirs, appliance processes and wg-quick interfaces it
//! creates, and removes all of them on drop (a panicking test keeps its temp dirs and prints
//! where they are, plus the tail of each log).
//! May touch: loopback and addresses inside namespaces it created itself. Every command that
//! reaches 10.88.88.x runs under `ip netns exec` in the test's own namespace; no helper here takes
//! an address without also taking the [`Netns`] to run in.
//! Contract: every external command is bounded in time (`timeout`, `curl --max-time`,
//! `ping -W`); names are unique per process (pid + counter) so that test binaries and test
//! threads can run side by side; nothing here needs anything but root, iproute2, wireguard-tools,
//! wireguard-go, curl, iputils-ping, procps and /dev/net/tun (`scripts/test.sh` installs them).
#![allow(dead_code)]
// A driver in STYLE.md's sense: it runs real processes against wall-clock deadlines, so it reads
// the clock (clippy.toml reserves `Instant::now` for drivers).
#![allow(clippy::disallowed_methods)]

pub mod api;
pub mod cli;
pub mod sink;

// Not every test binary uses the API helpers (tests/cli.rs and tests/backup.rs do not).
#[allow(unused_imports)]
pub use api::*;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The appliance's own address inside the tunnel subnet.
pub const APPLIANCE_IP: &str = "10.88.88.1";
/// The API port, served only on [`APPLIANCE_IP`] through the tunnel.
pub const API_PORT: u16 = 8888;
/// Seconds a helper command may run before `timeout` kills it.
pub const CMD_TIMEOUT_S: u32 = 30;
/// How long `serve` gets to create `control.sock`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `serve` gets to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `curl --max-time`: covers one lost handshake initiation (wireguard-go retries after
/// 5 s) with room to spare.
pub const CURL_MAX_TIME_S: u32 = 20;
/// Lines of a log printed when a test panics.
const LOG_TAIL_LINES: usize = 80;

/// Programs the interop tests run; all must be on PATH.
pub const REQUIRED_TOOLS: &[&str] = &[
    "ip",
    "ss",
    "wg",
    "wg-quick",
    "wireguard-go",
    "curl",
    "ping",
    "timeout",
    "kill",
];

/// The URL of an API path, e.g. `api_url("/api/v1/health")`. Only ever fetched inside a
/// namespace (see [`curl`]).
pub fn api_url(path: &str) -> String {
    format!("http://{APPLIANCE_IP}:{API_PORT}{path}")
}

// ---------------------------------------------------------------------------------------------
// Prerequisites

/// Whether this machine can run the interop tests: root, the tools in [`REQUIRED_TOOLS`] and
/// `/dev/net/tun`. When something is missing: under `CI=true` this panics (CI must never pass by
/// skipping), elsewhere it prints one SKIP line and returns false, and the test returns early.
pub fn require_prereqs() -> bool {
    let mut missing = Vec::new();
    match Command::new("id").arg("-u").output() {
        Ok(out) => {
            let euid = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if euid != "0" {
                missing.push(format!("root (euid is {euid})"));
            }
        }
        Err(e) => missing.push(format!("`id -u` ({e})")),
    }
    for tool in REQUIRED_TOOLS {
        if find_on_path(tool).is_none() {
            missing.push(format!("`{tool}` on PATH"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun".to_string());
    }
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("interop prerequisites missing under CI: {what}");
    }
    // Straight to stderr, past the test harness's output capture: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP interop test: missing {what}. Run `scripts/test.sh`: it installs the Debian \
         packages and runs the test binaries as root."
    );
    false
}

/// The full path of `program` if it is an executable file in a PATH directory.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

// ---------------------------------------------------------------------------------------------
// Unique names and temp dirs

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number unique within this test process.
fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// A network interface name unique across processes and threads: `prefix` (at most 6 bytes),
/// the pid in base 36 padded to 5 (pid_max is below 36^5) and a per-process counter in base 36.
/// At most 15 bytes, the Linux limit, and only characters wg-quick accepts. wireguard-go's
/// control socket `/var/run/wireguard/IFACE.sock` is global, so every interface needs its own.
pub fn iface_name(prefix: &str) -> String {
    assert!(
        prefix.len() <= 6 && prefix.bytes().all(|b| b.is_ascii_alphanumeric()),
        "iface prefix {prefix:?} must be at most 6 ASCII letters or digits"
    );
    let name = format!(
        "{prefix}{:0>5}{}",
        base36(u64::from(std::process::id())),
        base36(u64::from(next_id()))
    );
    assert!(
        name.len() <= 15,
        "interface name {name} is longer than 15 bytes"
    );
    name
}

/// A fresh, empty, mode 0700 directory under `std::env::temp_dir()`, unique to this call.
pub fn unique_temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "appliance-it-{tag}-{}-{}",
        std::process::id(),
        next_id()
    ));
    // Left behind by a crashed run that had the same pid: ours by name, safe to clear.
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    dir
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Running commands

/// `program` wrapped in `timeout -k 5 SECS`, so it cannot outlive the test by much.
pub fn bounded(secs: u32, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &secs.to_string()]).arg(program);
    cmd
}

/// Runs `cmd` to completion with stdin closed; panics only if it cannot be started.
pub fn output_of(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` and panics with its status, stdout and stderr unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = output_of(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}", describe(&out));
    out
}

/// Status, stdout and stderr of a finished command, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `condition` every 50 ms until it holds (true) or `timeout` has passed (false). The
/// condition is always evaluated at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces

/// A network namespace this test created, with `lo` up. Dropping it kills whatever still runs
/// inside, deletes it (its veth ends and TUN devices go with it) and removes the wireguard-go
/// control sockets of its interfaces.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `apl-TAG-PID-N` and brings its loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!("apl-{tag}-{}-{}", std::process::id(), next_id());
        // Left behind by a crashed run that had the same pid: ours by name, safe to delete.
        if Path::new("/var/run/netns").join(&name).exists() {
            let _ = output_of(Command::new("ip").args(["netns", "del", &name]));
        }
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`, unbounded: for processes the caller spawns and manages.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `timeout -k 5 SECS ip netns exec NAME program`: for commands expected to finish.
    pub fn bounded(&self, secs: u32, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = bounded(secs, "ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `args` (program first) inside the namespace, bounded by [`CMD_TIMEOUT_S`].
    pub fn exec<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let (program, rest) = args.split_first().expect("exec needs a program");
        output_of(self.bounded(CMD_TIMEOUT_S, program).args(rest))
    }

    /// `ip -n NAME ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Output {
        run_ok(
            bounded(CMD_TIMEOUT_S, "ip")
                .args(["-n", &self.name])
                .args(args),
        )
    }

    /// Connects this namespace to `other` with a veth pair and gives each end an address, e.g.
    /// `"192.0.2.1/24"` here and `"192.0.2.2/24"` there (use TEST-NET ranges: the addresses
    /// exist only inside these two namespaces). Returns the interface names (here, there).
    pub fn link_veth(&self, other: &Netns, cidr_here: &str, cidr_there: &str) -> (String, String) {
        let here = iface_name("veth");
        let there = iface_name("veth");
        run_ok(bounded(CMD_TIMEOUT_S, "ip").args([
            "link",
            "add",
            &here,
            "netns",
            &self.name,
            "type",
            "veth",
            "peer",
            "name",
            &there,
            "netns",
            &other.name,
        ]));
        self.ip(&["addr", "add", cidr_here, "dev", &here]);
        self.ip(&["link", "set", &here, "up"]);
        other.ip(&["addr", "add", cidr_there, "dev", &there]);
        other.ip(&["link", "set", &there, "up"]);
        (here, there)
    }

    /// Waits until no address in the namespace is tentative (an IPv6 address still in its
    /// duplicate-address check, which ends with an address change a browser reacts to).
    pub fn wait_addresses_settled(&self, timeout: Duration) -> bool {
        wait_until(timeout, || {
            let out = self.ip(&["-o", "addr", "show", "tentative"]);
            out.stdout.iter().all(u8::is_ascii_whitespace)
        })
    }

    /// Pids of the processes whose network namespace this is.
    pub fn pids(&self) -> Vec<u32> {
        let out = output_of(bounded(CMD_TIMEOUT_S, "ip").args(["netns", "pids", &self.name]));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Names of the network interfaces in the namespace.
    pub fn links(&self) -> Vec<String> {
        let out = output_of(bounded(CMD_TIMEOUT_S, "ip").args(["-n", &self.name, "-o", "link"]));
        // Lines look like "3: wgt0abcd1: <POINTOPOINT,...>" or "4: veth...@if5: <...>".
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let links = self.links();
        for pid in self.pids() {
            let _ = output_of(bounded(10, "kill").args(["-KILL", &pid.to_string()]));
        }
        wait_until(Duration::from_secs(3), || self.pids().is_empty());
        let out = output_of(bounded(CMD_TIMEOUT_S, "ip").args(["netns", "del", &self.name]));
        if !out.status.success() {
            eprintln!(
                "warning: could not delete netns {}: {}",
                self.name,
                describe(&out)
            );
        }
        for link in links {
            // A wireguard-go killed above leaves its socket; the name is ours, unique per test.
            let _ = fs::remove_file(Path::new("/var/run/wireguard").join(format!("{link}.sock")));
        }
    }
}

/// `ss ARGS` inside `ns`, or in the root namespace when `ns` is None (read-only: lists sockets).
pub fn ss(ns: Option<&Netns>, args: &[&str]) -> String {
    let out = match ns {
        Some(ns) => output_of(ns.bounded(CMD_TIMEOUT_S, "ss").args(args)),
        None => output_of(bounded(CMD_TIMEOUT_S, "ss").args(args)),
    };
    assert!(
        out.status.success(),
        "ss {args:?} failed: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The appliance

/// The `appliance` binary under test.
pub fn appliance_bin() -> &'static str {
    env!("CARGO_BIN_EXE_appliance")
}

/// One appliance: its data dir (inside a temp dir that also holds `serve.log`), its UDP port and,
/// while serving, its `serve` process inside `ns`. Dropping it stops `serve` (SIGTERM, then
/// SIGKILL after [`STOP_TIMEOUT`]) and removes the temp dir, unless the test is panicking: then the
/// dir is kept and its path and the log tail are printed.
pub struct Appliance<'ns> {
    ns: &'ns Netns,
    dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl<'ns> Appliance<'ns> {
    /// `init` with the endpoint 127.0.0.1:PORT, then `serve` until `control.sock` exists.
    pub fn start(ns: &'ns Netns) -> Appliance<'ns> {
        let mut app = Appliance::init(ns, &[]);
        app.serve();
        app
    }

    /// Only `appliance init` (plus `extra_args`, e.g. `["--subnet", "10.88.88.0/24"]`), not
    /// serving yet: for tests that add peers offline or inspect a fresh database.
    pub fn init(ns: &'ns Netns, extra_args: &[&str]) -> Appliance<'ns> {
        let dir = unique_temp_dir("appliance");
        // Namespaces are private, so the port only has to differ between appliances of one
        // process that share a namespace; vary it anyway so logs tell them apart.
        let port = 40000 + (next_id() % 20000) as u16;
        let app = Appliance {
            ns,
            data_dir: dir.join("data"),
            dir,
            port,
            child: None,
        };
        let endpoint = format!("127.0.0.1:{port}");
        let port_arg = port.to_string();
        let mut args = vec!["init", "--endpoint", &endpoint, "--listen-port", &port_arg];
        args.extend_from_slice(extra_args);
        let out = app.run(&args);
        assert!(
            out.status.success(),
            "appliance init failed: {}",
            describe(&out)
        );
        app
    }

    /// Spawns `serve` inside the namespace (RUST_LOG=info,appliance=debug, stdout and stderr to
    /// `serve.log`) and waits up to [`READY_TIMEOUT`] for `control.sock`.
    pub fn serve(&mut self) {
        self.serve_with(&[]);
    }

    /// [`Appliance::serve`] with extra `serve` arguments (e.g. `["--header-timeout", "2"]`).
    pub fn serve_with(&mut self, serve_args: &[&str]) {
        assert!(self.child.is_none(), "appliance is already serving");
        // A crash (kill9) leaves the old socket behind; wait for the new server's own.
        let _ = fs::remove_file(self.control_sock());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log_path().display()));
        let log2 = log.try_clone().expect("clone log file handle");
        let child = self
            .ns
            .cmd(appliance_bin())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("serve")
            .args(serve_args)
            .env("RUST_LOG", "info,appliance=debug")
            .env("NO_COLOR", "1") // plain text in serve.log
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn appliance serve: {e}"));
        // `ip netns exec` execs the program, so this pid is the appliance's own.
        self.child = Some(child);
        let sock = self.control_sock();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if sock.exists() {
                return;
            }
            let child = self.child.as_mut().expect("just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "appliance serve exited ({status}) before creating {}; log:\n{}",
                    sock.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "appliance serve did not create {} within {READY_TIMEOUT:?}; log:\n{}",
                    sock.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Stops `serve`: SIGTERM, up to [`STOP_TIMEOUT`] to exit, then SIGKILL. Returns how it
    /// ended, or None if it was not serving.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = output_of(bounded(10, "kill").args(["-TERM", &child.id().to_string()]));
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            sleep(Duration::from_millis(50));
        }
        eprintln!("appliance serve ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
        let _ = child.kill();
        child.wait().ok()
    }

    /// Whether `serve` is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// The pid of the `serve` process. Panics when not serving.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("appliance is not serving").id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint `init` was given, which every printed config carries.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ns(&self) -> &'ns Netns {
        self.ns
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn control_sock(&self) -> PathBuf {
        self.data_dir.join("control.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    /// Everything `serve` has logged so far.
    pub fn log(&self) -> String {
        if self.log_path().exists() {
            read_lossy(&self.log_path())
        } else {
            String::new()
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// `appliance --data-dir DIR ARGS` inside the namespace, bounded by [`CMD_TIMEOUT_S`].
    pub fn run(&self, args: &[&str]) -> Output {
        output_of(
            self.ns
                .bounded(CMD_TIMEOUT_S, appliance_bin())
                .arg("--data-dir")
                .arg(&self.data_dir)
                .args(args),
        )
    }

    /// `appliance peer add NAME --role ROLE`; returns the wg-quick config it printed.
    pub fn peer_add(&self, name: &str, role: &str) -> String {
        let out = self.run(&["peer", "add", name, "--role", role]);
        assert!(
            out.status.success(),
            "appliance peer add {name} --role {role} failed: {}\nserve log:\n{}",
            describe(&out),
            self.log_tail(LOG_TAIL_LINES)
        );
        let config = String::from_utf8(out.stdout).expect("peer add printed UTF-8");
        assert!(
            config.contains("[Interface]") && config.contains("[Peer]"),
            "peer add {name} did not print a wg-quick config:\n{config}"
        );
        config
    }
}

impl Drop for Appliance<'_> {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "appliance test dir kept for inspection: {} (serve log: {})\n--- serve log tail ---\n{}",
                self.dir.display(),
                self.log_path().display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// wg-quick configs

/// The value of the first `Key = value` line (key compared case-insensitively, as wg-quick
/// does), trimmed.
pub fn config_value(config: &str, key: &str) -> Option<String> {
    config.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().to_string())
    })
}

/// `config` with the first `Key = ...` line replaced by `Key = value`. Panics if there is none.
pub fn with_config_value(config: &str, key: &str, value: &str) -> String {
    let mut replaced = false;
    let lines: Vec<String> = config
        .lines()
        .map(|line| match line.split_once('=') {
            Some((k, _)) if !replaced && k.trim().eq_ignore_ascii_case(key) => {
                replaced = true;
                format!("{} = {value}", k.trim())
            }
            _ => line.to_string(),
        })
        .collect();
    assert!(replaced, "config has no `{key} =` line:\n{config}");
    lines.join("\n") + "\n"
}

/// The tunnel address of a printed config without its prefix length: "10.88.88.2".
pub fn config_address(config: &str) -> String {
    let addr = config_value(config, "Address")
        .unwrap_or_else(|| panic!("config has no Address:\n{config}"));
    addr.split('/').next().unwrap_or(&addr).trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// The wireguard-go client

/// One wg-quick interface (wireguard-go underneath) inside a namespace, from a config written to
/// `<tmp>/<iface>.conf` (mode 0600). wg-quick's output and wireguard-go's verbose log go to
/// `<tmp>/wg.log`. Dropping it runs `wg-quick down`.
pub struct WgClient<'ns> {
    ns: &'ns Netns,
    iface: String,
    dir: PathBuf,
    conf: PathBuf,
}

impl<'ns> WgClient<'ns> {
    /// `wg-quick up` with `config`, which must succeed.
    pub fn up(ns: &'ns Netns, config: &str) -> WgClient<'ns> {
        WgClient::try_up(ns, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `wg-quick up` with `config`; Err carries wg-quick's output when it fails (nothing is
    /// left behind then).
    pub fn try_up(ns: &'ns Netns, config: &str) -> Result<WgClient<'ns>, String> {
        let iface = iface_name("wgt");
        let dir = unique_temp_dir("wg");
        let conf = dir.join(format!("{iface}.conf"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&conf)
            .unwrap_or_else(|e| panic!("create {}: {e}", conf.display()));
        file.write_all(config.as_bytes()).expect("write wg config");
        drop(file);
        let client = WgClient {
            ns,
            iface,
            dir,
            conf,
        };
        let log = File::create(client.log_path()).expect("create wg.log");
        let log2 = log.try_clone().expect("clone wg.log handle");
        let started = Instant::now();
        let status = ns
            .bounded(20, "wg-quick")
            .arg("up")
            .arg(&client.conf)
            .env("WG_QUICK_USERSPACE_IMPLEMENTATION", "wireguard-go")
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            // wireguard-go daemonizes and keeps writing to our stdout/stderr only when
            // LOG_LEVEL is set; they are a file here, so nothing waits on a pipe it holds.
            .env("LOG_LEVEL", "verbose")
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .status()
            .unwrap_or_else(|e| panic!("cannot run wg-quick: {e}"));
        if status.success() {
            return Ok(client);
        }
        let msg = format!(
            "wg-quick up {} failed ({status}) after {:?}; config:\n{config}\n--- wg-quick output ---\n{}",
            client.conf.display(),
            started.elapsed(),
            client.log()
        );
        drop(client); // wg-quick tears down on error; down again is harmless
        Err(msg)
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("wg.log")
    }

    /// wg-quick's output followed by wireguard-go's verbose log.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// `wg show IFACE latest-handshakes` as seconds since the epoch; None before the first
    /// completed handshake.
    pub fn latest_handshake(&self) -> Option<u64> {
        let out = self
            .ns
            .exec(&["wg", "show", &self.iface, "latest-handshakes"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.parse().ok())
            .filter(|&t| t > 0)
    }

    /// Waits up to `timeout` for a completed handshake.
    pub fn wait_handshake(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.latest_handshake().is_some())
    }

    /// Packets the interface delivered to the namespace's stack (decrypted, non-keepalive).
    pub fn rx_packets(&self) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/rx_packets", self.iface);
        let out = self.ns.exec(&["cat", &path]);
        assert!(out.status.success(), "read {path}: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("rx_packets is a number")
    }
}

impl Drop for WgClient<'_> {
    fn drop(&mut self) {
        let out = output_of(
            self.ns
                .bounded(20, "wg-quick")
                .arg("down")
                .arg(&self.conf)
                .env("WG_QUICK_USERSPACE_IMPLEMENTATION", "wireguard-go"),
        );
        if std::thread::panicking() {
            eprintln!(
                "wg client dir kept for inspection: {}\n--- wg-quick / wireguard-go log tail ({}) ---\n{}",
                self.dir.display(),
                self.iface,
                tail(&self.log(), 40)
            );
        } else {
            if !out.status.success() && self.ns.links().contains(&self.iface) {
                eprintln!("warning: wg-quick down {}: {}", self.iface, describe(&out));
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic, always from inside a namespace

/// What `curl` got back. `status` is 0 when no HTTP response arrived (timeout, refused, ...).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    /// curl's exit code (28 is a timeout), None if `timeout` killed it.
    pub curl_exit: Option<i32>,
    pub stderr: String,
}

/// `curl -sS --max-time 20 URL EXTRA...` inside `ns`. `extra_args` come last, so e.g.
/// `["--max-time", "5"]` overrides the default.
pub fn curl_full(ns: &Netns, url: &str, extra_args: &[&str]) -> HttpResponse {
    let max_time = CURL_MAX_TIME_S.to_string();
    let out = output_of(
        ns.bounded(120, "curl")
            .args([
                "-sS",
                "--max-time",
                &max_time,
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
            ])
            .arg(url)
            .args(extra_args),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    HttpResponse {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
        curl_exit: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`curl_full`] reduced to (status, body); status 0 means no HTTP response.
pub fn curl(ns: &Netns, url: &str, extra_args: &[&str]) -> (u16, String) {
    let r = curl_full(ns, url, extra_args);
    (r.status, r.body)
}

/// One `ping -c 1 -W 2 IP` inside `ns`: whether the echo came back.
pub fn ping(ns: &Netns, ip: &str) -> bool {
    ns.exec(&["ping", "-n", "-c", "1", "-W", "2", ip])
        .status
        .success()
}

// ---------------------------------------------------------------------------------------------
// Crashes

impl Appliance<'_> {
    /// Kills `serve` with SIGKILL and reaps it: as far as the process is concerned a power cut
    /// (no shutdown code runs; `control.sock` stays behind, so after the next [`Appliance::serve`]
    /// wait for the API itself rather than trusting the socket). Returns how it ended, or None if
    /// it was not serving.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = output_of(bounded(10, "kill").args(["-KILL", &child.id().to_string()]));
        child.wait().ok()
    }
}

// ---------------------------------------------------------------------------------------------
// JSON API calls

/// A request through the tunnel from `ns` (JSON body if given); returns the status (0: no
/// response) and the parsed JSON body (Null if none or not JSON).
pub fn call(
    ns: &Netns,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    extra: &[&str],
) -> (u16, serde_json::Value) {
    let mut args: Vec<String> = vec!["-X".into(), method.into()];
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            b.to_string(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = curl_full(ns, &api_url(path), &refs);
    let v = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

// ---------------------------------------------------------------------------------------------
// Idle TCP connections

/// `n` TCP connections from `ns` to the API that send nothing (bash `/dev/tcp`, held for
/// `secs`). Dropping it closes them.
pub struct IdleConnections(Vec<Child>);

impl IdleConnections {
    pub fn open(ns: &Netns, n: usize, secs: u32) -> IdleConnections {
        let script = format!("exec 3<>/dev/tcp/10.88.88.1/8888; sleep {secs}");
        IdleConnections(
            (0..n)
                .map(|_| {
                    ns.cmd("bash")
                        .args(["-c", &script])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("spawn an idle TCP client")
                })
                .collect(),
        )
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
