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

/// A bad `--allow-webhook-net` is a usage error naming the flag, before anything is created.
#[test]
fn a_bad_allow_webhook_net_exits_2_naming_the_flag() {
    for (net, needle) in [
        ("192.168.1.0/33", "not a valid prefix length"),
        ("lan", "is not an IP address"),
        ("fd00::/200", "not a valid prefix length"),
    ] {
        let d = Dir::new("badnet");
        let out = run(&d.data(), &["serve", "--allow-webhook-net", net]);
        assert_eq!(out.status.code(), Some(2), "{net}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("--allow-webhook-net") && err.contains(needle),
            "{net}: {err}"
        );
        assert!(!d.data().exists(), "{net}: serve created the data dir");
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
fn commands_other_than_init_and_serve_refuse_a_missing_data_dir() {
    // A mistyped --data-dir used to make `peer add` create a new appliance with a new server
    // key and print a config for a server that does not exist.
    let d = Dir::new("missing");
    for args in [
        vec!["peer", "add", "alice"],
        vec!["peer", "list"],
        vec!["peer", "rotate", "alice"],
        vec!["audit"],
        vec!["doctor"],
        vec!["peer", "disable", "x"],
    ] {
        let out = run(&d.data(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("no appliance data at {}", d.data().display()))
                && err.contains("(looked at --data-dir)")
                && err.contains("run `appliance init` or pass --data-dir"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed a config");
        assert!(!d.data().exists(), "{args:?} created the data dir");
    }
    // An existing directory without a database: same, and nothing is created in it.
    std::fs::create_dir_all(d.data()).unwrap();
    let out = run(&d.data(), &["peer", "add", "alice"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(d.data()).unwrap().count(), 0);
}

#[test]
fn peer_add_refuses_a_low_order_public_key_and_stores_nothing() {
    let d = Dir::new("loworder");
    assert!(run(&d.data(), &["init"]).status.success());
    for key in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        // 1, and p = 2^255-19 (a non-canonical 0)
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "7f///////////////////////////////////////38=",
    ] {
        let out = run(&d.data(), &["peer", "add", "x", "--public-key", key]);
        assert_eq!(out.status.code(), Some(2), "{key}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(
                "public key is a low-order point: no device has this key; paste the key from the WireGuard app"
            ),
            "{key}: {}",
            text(&out.stderr)
        );
    }
    let list = run(&d.data(), &["peer", "list", "--json"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v, serde_json::json!([]), "nothing stored");
}

/// `serve` in the background, or its exit if it stops within `wait`.
fn serve_exit(data: &Path, wait: Duration) -> Output {
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + wait;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve kept running on a damaged database: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_empty_database_file_is_never_initialised_over() {
    // A zero-length appliance.redb used to be taken for a first run: a new server key was
    // written over it and every phone silently stopped working.
    let d = Dir::new("empty");
    std::fs::create_dir_all(d.data()).unwrap();
    let db = d.data().join("appliance.redb");
    std::fs::write(&db, b"").unwrap();
    let serve = serve_exit(&d.data(), Duration::from_secs(15));
    for (what, out) in [
        ("serve", serve),
        ("peer list", run(&d.data(), &["peer", "list"])),
        ("peer add", run(&d.data(), &["peer", "add", "alice"])),
        ("init", run(&d.data(), &["init"])),
        ("doctor", run(&d.data(), &["doctor"])),
    ] {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{what}: {err}");
        assert!(
            err.contains(&format!(
                "the database {} is empty or damaged (0 bytes",
                db.display()
            )) && err.contains("restore a backup, or move it aside to start over"),
            "{what}: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert_eq!(
            std::fs::metadata(&db).unwrap().len(),
            0,
            "{what} wrote to it"
        );
        let files: Vec<_> = std::fs::read_dir(d.data())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            files,
            vec![std::ffi::OsString::from("appliance.redb")],
            "{what}"
        );
    }
}

#[test]
fn a_truncated_database_exits_3_without_a_panic() {
    let d = Dir::new("truncated");
    assert!(run(&d.data(), &["init"]).status.success());
    for name in ["alice", "bob", "carol"] {
        assert!(run(&d.data(), &["peer", "add", name]).status.success());
    }
    let db = d.data().join("appliance.redb");
    let whole = std::fs::read(&db).unwrap();
    for keep in [whole.len() / 2, 4096] {
        std::fs::write(&db, &whole[..keep]).unwrap();
        let serve = serve_exit(&d.data(), Duration::from_secs(15));
        for (what, out) in [
            ("serve", serve),
            ("peer list", run(&d.data(), &["peer", "list"])),
        ] {
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{keep} bytes, {what}: {err}");
            assert!(err.contains("is empty or damaged"), "{what}: {err}");
            assert!(!err.contains("panicked"), "{keep} bytes, {what}: {err}");
        }
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
    // `--listen 127.0.0.1:0` (the test harness) overrides the port, and configs carry the
    // port actually listened on; the stored settings are the first-run ones.
    let st = run(&d.data(), &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let bound = st["server"]["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        cfg.contains(&format!("Endpoint = guild.example.org:{bound}")),
        "{cfg}"
    );
    assert!(s.stop().success());
    let st = run(&d.data(), &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["server"]["endpoint"], "guild.example.org:51977");
    assert_eq!(st["server"]["listen"], "[::]:51977");

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
    assert!(cfg.contains("Endpoint = guild.example.org:"), "{cfg}");
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
fn a_damaged_job_row_is_skipped_listed_by_doctor_and_quarantined() {
    use appliance::model::JobRecord;
    use appliance::sched::{JobId, JobSpec};
    use appliance::store::Store;

    let d = Dir::new("damagedrow");
    assert!(run(&d.data(), &["init"]).status.success());
    let db = d.data().join("appliance.redb");
    let garbage = b"\x00{\"spec\": truncated".to_vec();
    let bad_id = JobId::from_u64(0xbad);
    {
        let store = Store::open(&db).unwrap();
        let spec = JobSpec::from_json(
            &serde_json::json!({
                "name": "good",
                "trigger": {"every": "1h", "start": "2026-01-01T00:00:00Z"},
                "action": {"webhook": {"url": "http://127.0.0.1:9/x"}}
            }),
            None,
        )
        .unwrap();
        let rec = JobRecord {
            id: JobId::from_u64(0x600d),
            spec,
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: "test".into(),
            next_fire_at: None,
            paused_at_ms: None,
        };
        assert!(store.insert_job(&rec, None).unwrap());
        store
            .write_raw_row_for_tests("jobs", &bad_id.to_string(), &garbage)
            .unwrap();
    }

    // Offline: doctor lists it and exits 1.
    let doctor = run(&d.data(), &["doctor", "--json"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor.stderr));
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(report["damaged"][0]["table"], "jobs");
    assert_eq!(report["damaged"][0]["key"], bad_id.to_string());

    // serve still starts, loads the good job and says what it skipped.
    let log = d.0.join("serve.log");
    let s = Serving::start_with(
        &d.data(),
        &[],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("damaged row skipped"), "{logged}");
    assert!(logged.contains(&bad_id.to_string()), "{logged}");
    assert!(
        logged.contains("jobs=1"),
        "the good job is loaded: {logged}"
    );
    assert!(logged.contains("damaged_rows=1"), "{logged}");

    // Through the control socket while serving: list, then quarantine.
    let doctor = run(&d.data(), &["doctor"]);
    assert_eq!(doctor.status.code(), Some(1));
    assert!(
        text(&doctor.stdout).contains(&format!("jobs/{bad_id}")),
        "{}",
        text(&doctor.stdout)
    );
    let q = run(&d.data(), &["doctor", "--quarantine"]);
    assert!(q.status.success(), "{}", text(&q.stderr));
    assert!(
        text(&q.stdout).contains("1 row(s) moved into quarantine"),
        "{}",
        text(&q.stdout)
    );
    let again = run(&d.data(), &["doctor"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("no damaged rows (1 kept in quarantine)"));
    assert!(s.stop().success());

    // The row left `jobs`, its bytes are kept, the good job is untouched.
    let store = Store::open(&db).unwrap();
    let jobs = store.jobs().unwrap();
    assert!(jobs.damaged.is_empty());
    assert_eq!(jobs.rows.len(), 1);
    assert_eq!(jobs.rows[0].spec.name, "good");
    assert_eq!(
        store.quarantined().unwrap(),
        vec![(format!("jobs/{}", bad_id.as_u64()), garbage)]
    );
}

#[test]
fn qr_code_only_on_a_terminal() {
    let d = Dir::new("tty");
    assert!(run(&d.data(), &["init"]).status.success());
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
    assert!(
        !tty.contains("[Interface]"),
        "only with --show-config: {tty}"
    );
    assert!(tty.contains("Scan with the WireGuard app"), "{tty}");
    let blocks = tty.chars().filter(|c| matches!(c, '▀' | '▄' | '█')).count();
    assert!(
        blocks > 200,
        "no QR code on the terminal ({blocks} block characters)"
    );
}

fn endpoint_line(config: &str) -> String {
    config
        .lines()
        .find_map(|l| l.strip_prefix("Endpoint = "))
        .unwrap_or_else(|| panic!("no Endpoint in {config}"))
        .to_string()
}

#[test]
fn endpoint_is_shown_changed_and_audited_offline() {
    let d = Dir::new("endpoint");
    // A bare host name (what a first `serve` uses) gets a warning that says what to run.
    let init = run(&d.data(), &["init", "--endpoint", "vm"]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let warn = text(&init.stderr);
    assert!(
        warn.contains("bare host name") && warn.contains("appliance endpoint HOST[:PORT]"),
        "{warn}"
    );
    let shown = run(&d.data(), &["endpoint"]);
    assert!(shown.status.success());
    assert_eq!(text(&shown.stdout), "clients dial vm:51820\n");

    // Bad input: exit 2, nothing written.
    for bad in ["bad host", "vpn.example.org:0", "[::1"] {
        let out = run(&d.data(), &["endpoint", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
        assert!(text(&out.stderr).starts_with("error: invalid endpoint"));
    }
    let audit = run(&d.data(), &["audit", "--json"]);
    assert_eq!(text(&audit.stdout).trim(), "[]", "nothing was audited");

    // Without a port, the listen port; the change is audited; new configs carry it.
    let set = run(&d.data(), &["endpoint", "vpn.example.org", "--json"]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    let v: serde_json::Value = serde_json::from_slice(&set.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"endpoint": "vpn.example.org:51820", "previous": "vm:51820", "warning": null})
    );
    assert!(text(&set.stderr).is_empty(), "{}", text(&set.stderr));
    let cfg = run(&d.data(), &["peer", "add", "alice"]);
    assert_eq!(endpoint_line(&text(&cfg.stdout)), "vpn.example.org:51820");
    let audit = run(&d.data(), &["audit", "--json"]);
    let entries: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let change = &entries[1];
    assert_eq!(change["action"], "server.endpoint");
    assert_eq!(change["actor"]["peer"], "local");
    assert_eq!(
        change["summary"],
        serde_json::json!({"from": "vm:51820", "to": "vpn.example.org:51820"})
    );

    // A private address warns, an explicit port is kept.
    let lan = run(&d.data(), &["endpoint", "192.168.1.20:443"]);
    assert!(lan.status.success());
    assert!(
        text(&lan.stderr).contains("private address"),
        "{}",
        text(&lan.stderr)
    );
    let cfg = run(&d.data(), &["peer", "add", "bob"]);
    assert_eq!(endpoint_line(&text(&cfg.stdout)), "192.168.1.20:443");
}

#[test]
fn endpoint_changes_live_and_configs_carry_the_port_listened_on() {
    let d = Dir::new("endpoint-live");
    let s = Serving::start(&d.data());
    // `serve --listen 127.0.0.1:0` took some free port: the endpoint follows it.
    let st = run(&d.data(), &["status", "--json"]);
    assert!(st.status.success(), "{}", text(&st.stderr));
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["serving"], true);
    let listen = st["server"]["listen"].as_str().unwrap().to_string();
    let port = listen
        .strip_prefix("127.0.0.1:")
        .expect("bound where asked");
    assert_ne!(port, "51820");
    let before = run(&d.data(), &["peer", "add", "alice"]);
    assert!(endpoint_line(&text(&before.stdout)).ends_with(&format!(":{port}")));

    let set = run(&d.data(), &["endpoint", "vpn.example.org"]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(
        text(&set.stdout).contains(&format!("clients dial vpn.example.org:{port}")),
        "{}",
        text(&set.stdout)
    );
    let after = run(&d.data(), &["peer", "add", "bob"]);
    assert_eq!(
        endpoint_line(&text(&after.stdout)),
        format!("vpn.example.org:{port}")
    );
    let shown = run(&d.data(), &["endpoint"]);
    assert_eq!(
        text(&shown.stdout),
        format!("clients dial vpn.example.org:{port}\n")
    );
    assert!(s.stop().success());
    // Stored: offline, the endpoint is the one set live.
    let offline = run(&d.data(), &["endpoint"]);
    assert_eq!(
        text(&offline.stdout),
        format!("clients dial vpn.example.org:{port}\n")
    );
}

/// `status --json` is a stable interface: its shape is pinned by tests/golden/status.json,
/// with the values that change from run to run (keys, times, version) normalised.
#[test]
fn status_json_matches_the_golden_file() {
    let d = Dir::new("status");
    let init = run(
        &d.data(),
        &[
            "init",
            "--endpoint",
            "192.168.1.5",
            "--listen-port",
            "51900",
        ],
    );
    assert!(init.status.success());
    for (name, role) in [("leader", "admin"), ("bot", "handler")] {
        let out = run(&d.data(), &["peer", "add", name, "--role", role]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert!(run(&d.data(), &["peer", "disable", "bot"]).status.success());
    {
        // Jobs come over the API; here they are written straight into the stopped store.
        use appliance::model::{JobRecord, RunRecord, RunStatus};
        use appliance::sched::{JobId, JobSpec};
        use appliance::store::Store;
        let store = Store::open(&d.data().join("appliance.redb")).unwrap();
        for i in 1..=7u64 {
            let spec = JobSpec::from_json(
                &serde_json::json!({
                    "name": format!("job{i}"),
                    "trigger": {"every": "1h", "start": "2026-01-01T00:00:00Z"},
                    "action": {"webhook": {"url": "http://127.0.0.1:9/x"}},
                    "paused": i == 2,
                }),
                None,
            )
            .unwrap();
            let at = format!("2099-01-0{i}T12:00:00.25Z").parse().unwrap();
            let rec = JobRecord {
                id: JobId::from_u64(i),
                spec,
                created_at_ms: 0,
                updated_at_ms: 0,
                created_by: "test".into(),
                next_fire_at: Some(at),
                paused_at_ms: None,
            };
            assert!(store.insert_job(&rec, None).unwrap());
        }
        let now = jiff::Timestamp::now();
        let hours = |h: i64| now - jiff::SignedDuration::from_hours(h);
        let mut runs: Vec<RunRecord> = [
            (1, RunStatus::Failed),
            (2, RunStatus::Failed),
            (3, RunStatus::Missed),
            (4, RunStatus::Succeeded),
            (30, RunStatus::Failed),
            (48, RunStatus::Skipped),
        ]
        .into_iter()
        .map(|(h, status)| RunRecord {
            id: 0,
            job_id: JobId::from_u64(1),
            job_name: "job1".into(),
            scheduled_at: hours(h),
            started_at: None,
            finished_at: None,
            attempt: 1,
            status,
            trigger: "schedule".into(),
            http_status: None,
            error: None,
            duration_ms: None,
            count: None,
            handler: None,
            result: None,
            queue_delay_ms: None,
        })
        .collect();
        store.start_runs(&mut runs, &[]).unwrap();
    }
    let out = run(&d.data(), &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["now"].as_u64().unwrap() > 1_700_000_000);
    v["now"] = "NOW".into();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    v["version"] = "VERSION".into();
    assert_eq!(v["server"]["public_key"].as_str().unwrap().len(), 44);
    v["server"]["public_key"] = "KEY".into();
    // The disk and clock warnings depend on the host; the endpoint one is ours.
    v["warnings"]
        .as_array_mut()
        .unwrap()
        .retain(|w| w["code"] == "endpoint");
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/status.json")).unwrap();
    assert_eq!(
        v,
        golden,
        "status --json changed shape:\n{}",
        serde_json::to_string_pretty(&v).unwrap()
    );

    // The human form says the same.
    let human = text(&run(&d.data(), &["status"]).stdout);
    for needle in [
        "not serving",
        "endpoint:   192.168.1.5:51900",
        "peers: 2 (0 online)",
        "leader",
        "disabled",
        "private address",
    ] {
        assert!(human.contains(needle), "{needle}: {human}");
    }
}

/// `peer add` on a pseudo-terminal of `cols` x `rows` (`script` from util-linux); `None` when
/// `script` is missing outside CI.
fn peer_add_on_a_terminal(data: &Path, name: &str, cols: u16, rows: u16) -> Option<Output> {
    let cmd = format!(
        "stty cols {cols} rows {rows}; {} --data-dir {} peer add {name}",
        bin(),
        data.display()
    );
    match Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
    {
        Ok(out) => Some(out),
        Err(_) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "`script` (util-linux) is missing under CI"
            );
            eprintln!("SKIP: no `script` to provide a terminal");
            None
        }
    }
}

/// The screen a `rows`-line terminal shows after `raw` was written to it: the last `rows`
/// lines, colour sequences removed. Panics if a line would wrap at `cols`.
fn screen(raw: &str, cols: usize, rows: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in raw.split('\n') {
        let mut out = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // CSI: ESC [ parameters final-byte
                if chars.next_if_eq(&'[').is_some() {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            } else if c != '\r' {
                out.push(c);
            }
        }
        assert!(out.chars().count() <= cols, "wraps at {cols}: {out:?}");
        lines.push(out);
    }
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let skip = lines.len().saturating_sub(rows);
    lines.split_off(skip)
}

/// Decodes the half-block QR code on `screen` the way a phone sees it: each cell is one module
/// wide and two tall, a glyph's drawn half is dark (the code's black foreground), the rest of
/// the code light (its white background); the terminal around it is painted dark, as on a
/// dark theme. Returns zbarimg's text, or `None` if it finds no code.
fn scan_screen(screen: &[String], dir: &Path) -> Option<String> {
    const PX: usize = 4;
    let is_art = |l: &String| l.contains(['▀', '▄', '█']);
    let first = screen.iter().position(is_art)?;
    let last = screen.iter().rposition(is_art)?;
    // The quiet-zone rows above and below are blank lines of the art.
    let (top, bottom) = (first.saturating_sub(1), (last + 1).min(screen.len() - 1));
    let cols = screen[top..=bottom]
        .iter()
        .map(|l| l.chars().count())
        .max()?;
    let (w, h) = ((cols + 8) * PX, ((bottom - top + 1) * 2 + 8) * PX);
    let mut px = vec![0x20u8; w * h];
    for (r, line) in screen[top..=bottom].iter().enumerate() {
        for (c, ch) in line.chars().enumerate() {
            let (t, b) = match ch {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            for (half, dark) in [(0, t), (1, b)] {
                for y in 0..PX {
                    let row = (4 + 2 * r + half) * PX + y;
                    let start = row * w + (4 + c) * PX;
                    px[start..start + PX].fill(if dark { 0 } else { 0xFF });
                }
            }
        }
    }
    let path = dir.join("screen.pgm");
    let mut pgm = format!("P5 {w} {h} 255\n").into_bytes();
    pgm.extend_from_slice(&px);
    std::fs::write(&path, pgm).unwrap();
    let out = Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sbinary"])
        .arg(&path)
        .output()
        .expect("run zbarimg (zbar-tools)");
    out.status
        .success()
        .then(|| text(&out.stdout).trim_end_matches('\n').to_string())
}

#[test]
fn terminal_qr_code_scans_from_the_screen_and_says_when_it_does_not_fit() {
    let d = Dir::new("ptyqr");
    assert!(run(&d.data(), &["init", "--endpoint", "vpn.example.org"])
        .status
        .success());

    // Tall enough: the screen shows the whole code, nothing else but a heading and a hint,
    // and it scans to a working config (no -Stest-inverted: dark on light as drawn).
    let Some(out) = peer_add_on_a_terminal(&d.data(), "tall", 80, 40) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    let raw = text(&out.stdout);
    assert!(
        raw.contains("\x1b[38;5;16;48;5;231m"),
        "explicit black-on-white colours"
    );
    assert!(
        !raw.contains("[Interface]"),
        "config only with --show-config"
    );
    let shown = screen(&raw, 80, 40);
    let scanned = scan_screen(&shown, &d.0).expect("the 80x40 screen holds a scannable code");
    assert!(
        scanned.contains("[Interface]") && scanned.contains("Endpoint = vpn.example.org:51820")
    );
    // `script` merges stderr into the terminal: no size note when it fits.
    assert!(!raw.contains("needs"), "{raw}");

    // 80x24: a full config (three keys) needs version 12, 35 rows: it does not fit, and the
    // admin is told so, with the PNG way out. Nothing wraps.
    let Some(out) = peer_add_on_a_terminal(&d.data(), "small", 80, 24) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    let raw = text(&out.stdout);
    let shown = screen(&raw, 80, 24);
    assert_eq!(shown.len(), 24);
    assert!(scan_screen(&shown, &d.0).is_none(), "the top scrolled away");
    let note = shown[shown.len() - 2..].join("\n");
    assert!(
        note.contains("this terminal has 80 x 24") && note.contains("--qr-png FILE"),
        "{note}"
    );

    // --show-config prints the config after the code.
    let cmd = format!(
        "stty cols 80 rows 60; {} --data-dir {} peer add shown --show-config",
        bin(),
        d.data().display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let raw = text(&out.stdout);
    let code_end = raw.rfind('█').unwrap();
    let config_start = raw.find("[Interface]").expect("config shown");
    assert!(config_start > code_end, "config after the code");
}

#[test]
fn log_format_json_gives_one_object_per_line_and_serve_warns_about_the_endpoint() {
    let d = Dir::new("jsonlog");
    assert!(run(&d.data(), &["init", "--endpoint", "127.0.0.1"])
        .status
        .success());
    let log = d.0.join("serve.log");
    let child = Command::new(bin())
        .arg("--data-dir")
        .arg(d.data())
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let sock = d.data().join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = Serving { child, sock };
    assert!(s.stop().success());
    let logged = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["message"] == "serving"), "{logged}");
    let warning = lines
        .iter()
        .find(|l| l["level"] == "WARN")
        .unwrap_or_else(|| panic!("no warning: {logged}"));
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains("loopback") && message.contains("appliance endpoint HOST[:PORT]"),
        "{message}"
    );
}
