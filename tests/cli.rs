//! The command line without the network: `init` semantics, the data directory, first-run
//! `serve`, exit codes for bad input, and the offline/online paths of peer commands. Needs no
//! root: `serve` listens on an ephemeral UDP port on 127.0.0.1.
#![allow(clippy::disallowed_methods)] // test driver: waits with the clock

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::appliance_bin as bin;
use common::cli::{mode, run, server_key, text, Dir, Serving};

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

/// `serve` with these flags exits 2 with every needle in its message, before anything is
/// created.
fn assert_serve_refuses(flags: &[&str], needles: &[&str]) {
    let d = Dir::new("badserve");
    let mut args = vec!["serve"];
    args.extend_from_slice(flags);
    let out = run(&d.data(), &args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    assert!(!d.data().exists(), "{flags:?}: serve created the data dir");
}

/// A bad `--allow-webhook-net` is a usage error naming the flag, before anything is created.
#[test]
fn a_bad_allow_webhook_net_exits_2_naming_the_flag() {
    for (net, needle) in [
        ("192.168.1.0/33", "not a valid prefix length"),
        ("lan", "is not an IP address"),
        ("fd00::/200", "not a valid prefix length"),
    ] {
        assert_serve_refuses(
            &["--allow-webhook-net", net],
            &["--allow-webhook-net", needle],
        );
    }
}

/// The total connection cap must hold one peer at its cap (the API's plus 4).
#[test]
fn serve_refuses_a_total_connection_cap_below_one_peers_cap() {
    let needle = "--max-connections must be at least --max-connections-per-peer plus 4";
    assert_serve_refuses(&["--max-connections", "35"], &[needle, "(36)"]);
    assert_serve_refuses(&["--max-connections", "0"], &[needle]);
    assert_serve_refuses(
        &[
            "--max-connections-per-peer",
            "100",
            "--max-connections",
            "103",
        ],
        &[needle, "(104)"],
    );
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

/// Issue 13 item 4: the shipped units stop restarting on the exit a damaged database gives
/// (else `Restart=on-failure` turns it into a restart loop every 2 s), and only on that one.
#[test]
fn the_units_stop_restarting_on_the_exit_code_of_a_damaged_database() {
    let d = Dir::new("unit-exit");
    assert!(run(&d.data(), &["init"]).status.success());
    std::fs::write(d.data().join("appliance.redb"), b"").unwrap();
    let damaged = run(&d.data(), &["peer", "list"])
        .status
        .code()
        .expect("an exit code, not a signal");
    assert_ne!(damaged, 0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for unit in ["appliance.service", "appliance@.service"] {
        let text = std::fs::read_to_string(root.join("packaging").join(unit)).unwrap();
        let setting = |key: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
                .flat_map(|v| v.split_whitespace().map(str::to_string))
                .collect()
        };
        assert_eq!(setting("Restart"), ["on-failure"], "{unit}");
        assert_eq!(
            setting("RestartPreventExitStatus"),
            [damaged.to_string()],
            "{unit}: a damaged database exits {damaged}"
        );
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
    let s = Serving::start_with(&d.data(), &[], &first, Stdio::null());
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
        &[],
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
            spec: std::sync::Arc::new(spec),
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
    // Offline, status counts it and says what to do.
    let st = run(&d.data(), &["status", "--json"]);
    assert!(st.status.success(), "{}", text(&st.stderr));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["storage"]["damaged_rows"], 1, "{v}");
    assert_eq!(v["storage"]["quarantined_rows"], 0, "{v}");
    let warning = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "damaged_rows")
        .unwrap_or_else(|| panic!("no damaged_rows warning: {v}"));
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("run `appliance doctor`"),
        "{warning}"
    );

    // serve still starts, loads the good job and says what it skipped.
    let log = d.0.join("serve.log");
    let s = Serving::start_with(
        &d.data(),
        &[],
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
    // Status from the running server: none damaged now, one kept in quarantine.
    let st = run(&d.data(), &["status"]);
    assert!(st.status.success(), "{}", text(&st.stderr));
    let human = text(&st.stdout);
    assert!(human.contains("(serving for"), "{human}");
    assert!(
        human.contains("storage:    ok; 0 damaged row(s), 1 in quarantine"),
        "{human}"
    );
    assert!(!human.contains("appliance doctor"), "{human}");
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
        serde_json::json!({"endpoint": "vpn.example.org:51820", "previous": "vm:51820", "warning": null, "reason": null})
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

/// What the kernel's socket filter drops, and the sources the router blocked, show in
/// `status` while serving. Loopback only: garbage, then initiations with a bad mac1.
#[test]
fn status_shows_what_the_flood_guard_dropped() {
    let d = Dir::new("floodguard");
    let s = Serving::start(&d.data());
    let status = || -> serde_json::Value {
        let st = run(&d.data(), &["status", "--json"]);
        assert!(st.status.success(), "{}", text(&st.stderr));
        serde_json::from_slice(&st.stdout).unwrap()
    };
    let st = status();
    let to: std::net::SocketAddr = st["server"]["listen"].as_str().unwrap().parse().unwrap();
    let filter = |st: &serde_json::Value, field: &str| st["server"]["filter"][field].as_u64();
    // Read once a second by the driver: wait for it (bounded).
    let wait_for = |what: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st = status();
            if what(&st) {
                return st;
            }
            assert!(Instant::now() < deadline, "never: {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let st = wait_for(&|st| filter(st, "socket_drops").is_some());
    assert_eq!(filter(&st, "socket_drops"), Some(0), "{st}");
    assert_eq!(filter(&st, "source_blocks"), Some(0), "{st}");

    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let garbage = [0x09u8; 64];
    for _ in 0..50 {
        tx.send_to(&garbage, to).unwrap();
    }
    let st = wait_for(&|st| filter(st, "socket_drops") >= Some(50));
    assert_eq!(
        filter(&st, "socket_drops"),
        Some(50),
        "only the garbage: {st}"
    );

    // WireGuard-shaped initiations that fail mac1: the 9th in a second blocks the source.
    let mut bad_init = [0x5au8; 148];
    bad_init[..4].copy_from_slice(&[1, 0, 0, 0]);
    for _ in 0..20 {
        tx.send_to(&bad_init, to).unwrap();
    }
    let st = wait_for(&|st| filter(st, "source_blocks") >= Some(1));
    assert!(filter(&st, "blocked_sources") <= Some(1), "{st}");
    let human = text(&run(&d.data(), &["status"]).stdout);
    assert!(
        human.contains("  flood guard: ") && human.contains(" blocks since start; "),
        "{human}"
    );
    assert!(s.stop().success());
    let offline = status();
    assert!(offline["server"]["filter"].is_null(), "{offline}");
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
                spec: std::sync::Arc::new(spec),
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
            attempt: 1,
            status,
            ..RunRecord::starting(JobId::from_u64(1), "job1".into(), hours(h), "schedule")
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
        "storage:    ok; 0 damaged row(s), 0 in quarantine",
    ] {
        assert!(human.contains(needle), "{needle}: {human}");
    }
}

/// `peer add NAME ARGS…` on a pseudo-terminal of `cols` x `rows`; `None` when `script` is
/// missing outside CI.
fn peer_add_on_a_terminal(
    data: &Path,
    name: &str,
    args: &[&str],
    cols: u16,
    rows: u16,
) -> Option<Output> {
    let mut all = vec!["--data-dir", data.to_str().unwrap(), "peer", "add", name];
    all.extend_from_slice(args);
    on_a_terminal(&all, cols, rows)
}

/// `appliance ARGS…` on a pseudo-terminal of `cols` x `rows` (`script` from util-linux, which
/// also merges stderr into the terminal); `None` when `script` is missing outside CI.
fn on_a_terminal(args: &[&str], cols: u16, rows: u16) -> Option<Output> {
    let cmd = format!("stty cols {cols} rows {rows}; {} {}", bin(), args.join(" "));
    match Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("APPLIANCE_DATA_DIR")
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

/// `raw` without its SGR sequences (`ESC [ … m`: bold, underline, colours).
fn without_styles(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every command's help, and an error, on an 80-column terminal: lines break between words
/// (no line is wider than the terminal, which would break it inside a word), and every flag
/// says what it does.
#[test]
fn help_and_errors_fit_an_80_column_terminal() {
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["serve"],
        &["audit"],
        &["endpoint"],
        &["status"],
        &["doctor"],
        &["backup"],
        &["restore"],
        &["peer"],
        &["peer", "add"],
        &["peer", "list"],
        &["peer", "show"],
        &["peer", "role"],
        &["peer", "enable"],
        &["peer", "disable"],
        &["peer", "remove"],
        &["peer", "rotate"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let Some(out) = on_a_terminal(&args, 80, 24) else {
            return;
        };
        assert!(out.status.success(), "{args:?}: {}", text(&out.stdout));
        let help = without_styles(&text(&out.stdout)).replace("\r\n", "\n");
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            assert!(
                line.chars().count() <= 80,
                "{args:?}: wider than 80: {line:?}\n{help}"
            );
            // A flag alone on its line has its description on the next one (clap's layout
            // for long flags), indented further.
            let alone = line.trim_start().starts_with('-') && line.split_whitespace().count() == 1;
            let described = lines.get(i + 1).is_some_and(|next| {
                let indent = |l: &str| l.len() - l.trim_start().len();
                !next.trim().is_empty() && indent(next) > indent(line)
            });
            assert!(
                !alone || described,
                "{args:?}: {line:?} says nothing about itself:\n{help}"
            );
        }
    }
    let Some(out) = on_a_terminal(&["serve", "--help"], 80, 24) else {
        return;
    };
    let help = text(&out.stdout).replace("\r\n", " ").replace("  ", " ");
    assert!(
        help.contains("[::]:<listen port>"),
        "serve listens dual-stack: {help}"
    );

    // An error sentence longer than the terminal breaks between its words.
    let d = Dir::new("narrow");
    assert!(run(&d.data(), &["init"]).status.success());
    let Some(out) = on_a_terminal(
        &[
            "--data-dir",
            d.data().to_str().unwrap(),
            "audit",
            "--since",
            "yesterday-and-a-long-time-before-that-when-all-was-fine",
        ],
        40,
        24,
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stdout).replace("\r\n", "\n");
    assert!(
        said.lines()
            .all(|l| l.chars().count() <= 40 || !l.contains(' ')),
        "{said}"
    );
    assert!(said.starts_with("error: invalid --since"), "{said}");
}

/// `audit --since` takes what an admin types; anything else is refused naming the flag and
/// the forms it takes.
#[test]
fn audit_since_takes_what_an_admin_types() {
    let d = Dir::new("since");
    assert!(run(&d.data(), &["init"]).status.success());
    assert!(
        run(&d.data(), &["peer", "add", "leader", "--role", "admin"])
            .status
            .success()
    );
    let tomorrow = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48))
        .strftime("%Y-%m-%d")
        .to_string();
    for (since, shown) in [
        ("yesterday", true),
        ("today", true),
        ("1h", true),
        ("30m", true),
        ("2d", true),
        ("2020-01-31", true),
        ("2020-01-31T00:00:00Z", true),
        (tomorrow.as_str(), false),
    ] {
        let out = run(&d.data(), &["audit", "--since", since]);
        assert!(out.status.success(), "{since}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout).contains("Added peer leader as admin"),
            shown,
            "{since}: {}",
            text(&out.stdout)
        );
    }
    let out = run(&d.data(), &["audit", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(said.contains("invalid --since 'last tuesday'"), "{said}");
    for form in [
        "RFC 3339",
        "2026-11-30",
        "30m",
        "1h",
        "2d",
        "today",
        "yesterday",
    ] {
        assert!(said.contains(form), "{form}: {said}");
    }
    assert!(
        !said.contains("failed to parse"),
        "not jiff's words: {said}"
    );
}

/// The tables an admin reads at an 80 x 24 terminal fit its 80 columns with realistic data
/// (16-character names, IPv4 endpoints, an endpoint warning, sentences of the audit trail),
/// and still say what matters in full; `--json` keeps the full values.
#[test]
fn peer_list_status_and_audit_fit_80_columns() {
    let d = Dir::new("narrowtables");
    let init = run(&d.data(), &["init", "--endpoint", "192.168.100.200"]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let names = [
        ("guild-leader-one", "admin"),
        ("raid-officer-two", "officer"),
        ("discord-bot-main", "handler"),
        ("quiet-viewer-abc", "viewer"),
    ];
    for (name, role) in names {
        let out = run(&d.data(), &["peer", "add", name, "--role", role]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    for args in [
        &["peer", "disable", "quiet-viewer-abc"][..],
        &["peer", "role", "raid-officer-two", "admin"],
        &["endpoint", "vpn.example-guild.org"],
        &["endpoint", "192.168.100.200"],
    ] {
        let out = run(&d.data(), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let now = jiff::Timestamp::now().as_second() as u64;
    {
        // Live statistics come from the tunnel; here they are written into the stopped store.
        use appliance::model::PeerStats;
        let store = appliance::store::Store::open(&d.data().join("appliance.redb")).unwrap();
        let stats: Vec<(String, PeerStats)> = names
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let i = i as u64;
                let stats = PeerStats {
                    last_handshake: Some(now - 90 * i * i * 60),
                    rx_bytes: 1_234_567_890 * i,
                    tx_bytes: 987_654_321 * i,
                    endpoint: Some(format!("203.113.{}.2{i}0:5182{i}", 100 + i)),
                };
                (name.to_string(), stats)
            })
            .collect();
        store.save_peer_stats(&stats).unwrap();
        // A guild names its jobs with emoji and CJK, two columns each on a terminal.
        store
            .audit(appliance::model::AuditEntry {
                seq: 0,
                at_ms: now * 1000,
                actor: appliance::model::Actor {
                    peer: "guild-leader-one".into(),
                    fingerprint: None,
                    address: Some("10.88.88.2".into()),
                    endpoint: None,
                    via: appliance::model::Via::Api,
                },
                action: appliance::model::JobAction::Create.into(),
                target: Some("1234567890abcdef".into()),
                summary: serde_json::json!({
                    "name": "🐉🐉 龍の襲撃 raid night reminder for the whole guild, every Thursday",
                    "trigger": {"cron": "45 19 * * THU", "timezone": "Europe/Berlin"},
                    "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/***"}},
                }),
            })
            .unwrap();
    }
    // Terminal columns, not characters: a wide character takes two.
    let columns = unicode_width::UnicodeWidthStr::width;
    let fits = |args: &[&str], needles: &[&str]| {
        let out = run(&d.data(), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let shown = text(&out.stdout);
        for line in shown.lines() {
            assert!(
                columns(line) <= 80,
                "{args:?}: wider than 80 columns: {line:?}\n{shown}"
            );
        }
        for needle in needles {
            assert!(
                shown.contains(needle),
                "{args:?}: no {needle:?} in\n{shown}"
            );
        }
        shown
    };
    let list = fits(
        &["peer", "list"],
        &[
            "guild-leader-one",
            "203.113.103.230:51823",
            "just now",
            "1h ago",
        ],
    );
    let row = list
        .lines()
        .find(|l| l.starts_with("quiet-viewer-abc"))
        .unwrap();
    assert!(row.contains(" off ") && row.contains("13h ago"), "{list}");
    fits(
        &["status"],
        &[
            "discord-bot-main",
            "203.113.102.220:51822",
            "disabled",
            "6h ago",
        ],
    );
    let audit = fits(
        &["audit"],
        &[
            "Added peer guild-leader-one as admin at 10.88.88.2.",
            "Disabled peer quiet-viewer-abc: its tunnel stopped.",
            "Made peer raid-officer-two admin.",
            "by local (cli)",
            "Created job 🐉🐉 龍の襲撃 raid night",
        ],
    );
    assert!(!audit.contains('{'), "no raw JSON: {audit}");

    // Scripts keep every value in full.
    let json: serde_json::Value =
        serde_json::from_slice(&run(&d.data(), &["peer", "list", "--json"]).stdout).unwrap();
    let bot = json
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "discord-bot-main")
        .unwrap();
    assert_eq!(bot["rx_bytes"], 2 * 1_234_567_890u64, "{json}");
    assert_eq!(bot["endpoint"], "203.113.102.220:51822", "{json}");
    assert_eq!(bot["created_at"].as_u64().map(|t| t <= now), Some(true));
    let json: serde_json::Value =
        serde_json::from_slice(&run(&d.data(), &["audit", "--json"]).stdout).unwrap();
    // Newest first: the job created through the store above, then the last endpoint change.
    assert_eq!(json[0]["action"], "job.create", "{json}");
    assert_eq!(json[1]["action"], "server.endpoint", "{json}");
    assert_eq!(json[1]["summary"]["to"], "192.168.100.200:51820", "{json}");
    assert!(json[1]["text"]
        .as_str()
        .unwrap()
        .starts_with("Changed the endpoint"));
}

/// One character cell of a terminal screen: the character and its 256-colour palette
/// foreground and background (`None`: the theme's default).
#[derive(Clone, Copy)]
struct Cell {
    ch: char,
    fg: Option<u8>,
    bg: Option<u8>,
}

/// The screen a `cols` x `rows` terminal shows after `raw` was written to it: the last `rows`
/// lines, each cell with the colours SGR sequences gave it. Panics if a line would wrap.
fn screen(raw: &str, cols: usize, rows: usize) -> Vec<Vec<Cell>> {
    let mut lines: Vec<Vec<Cell>> = Vec::new();
    let (mut fg, mut bg) = (None, None);
    for line in raw.split('\n') {
        let mut out = Vec::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // CSI: ESC [ parameters final-byte; `m` sets colours.
                if chars.next_if_eq(&'[').is_some() {
                    let mut params = String::new();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            if c == 'm' {
                                let p: Vec<&str> = params.split(';').collect();
                                let mut i = 0;
                                while i < p.len() {
                                    match p[i] {
                                        "" | "0" => (fg, bg) = (None, None),
                                        "39" => fg = None,
                                        "49" => bg = None,
                                        "38" | "48" if p.get(i + 1) == Some(&"5") => {
                                            let n = p.get(i + 2).and_then(|n| n.parse().ok());
                                            if p[i] == "38" {
                                                fg = n;
                                            } else {
                                                bg = n;
                                            }
                                            i += 2;
                                        }
                                        other => panic!("unexpected SGR {other} in {params:?}"),
                                    }
                                    i += 1;
                                }
                            }
                            break;
                        }
                        params.push(c);
                    }
                }
            } else if c != '\r' {
                out.push(Cell { ch: c, fg, bg });
            }
        }
        assert!(out.len() <= cols, "wraps at {cols}: {:?}", plain(&[out]));
        lines.push(out);
    }
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    let skip = lines.len().saturating_sub(rows);
    lines.split_off(skip)
}

fn plain(screen: &[Vec<Cell>]) -> Vec<String> {
    screen
        .iter()
        .map(|l| l.iter().map(|c| c.ch).collect())
        .collect()
}

/// Where a glyph is inked, as (left, top, right, bottom) fractions of its cell, in sixths
/// across and in twelfths down: half blocks, full block, half-column blocks and the 60
/// sextants (U+1FB00…, bit 0 top left … bit 5 bottom right, leaving out the four patterns
/// drawn by older characters). Any other character: no ink (text is not part of the code).
fn ink(ch: char) -> Vec<(usize, usize, usize, usize)> {
    let sextants = |n: u32| {
        (0..6)
            .filter(|i| n >> i & 1 == 1)
            .map(|i| {
                let (x, y) = (i % 2 * 3, i / 2 * 4);
                (x, y, x + 3, y + 4)
            })
            .collect()
    };
    match ch {
        '▀' => vec![(0, 0, 6, 6)],
        '▄' => vec![(0, 6, 6, 12)],
        '█' => vec![(0, 0, 6, 12)],
        '▌' => vec![(0, 0, 3, 12)],
        '▐' => vec![(3, 0, 6, 12)],
        c if ('\u{1FB00}'..='\u{1FB3B}').contains(&c) => {
            let i = c as u32 - 0x1FB00 + 1;
            let n = if i >= 21 { i + 1 } else { i };
            sextants(if n >= 42 { n + 1 } else { n })
        }
        _ => vec![],
    }
}

/// Paints `screen` as a terminal with a dark or a light theme shows it — 6 x 12 pixels a cell,
/// a glyph's inked parts in its foreground, the rest in its background, palette entries 16
/// and 231 black and white, the theme's own colours where none were set — and decodes it with
/// zbarimg as it is (no `-Stest-inverted`). Returns the text, or `None` if it finds no code.
fn scan_screen(screen: &[Vec<Cell>], dark_theme: bool, dir: &Path) -> Option<String> {
    const CW: usize = 6;
    const CH: usize = 12;
    let (theme_fg, theme_bg) = if dark_theme {
        (0xD0, 0x20)
    } else {
        (0x20, 0xF0)
    };
    let grey = |n: Option<u8>, default: u8| match n {
        None => default,
        Some(16) => 0,
        Some(231) => 0xFF,
        Some(n) => panic!("palette entry {n} is not black or white"),
    };
    let cols = screen.iter().map(Vec::len).max()? + 4;
    let (w, h) = (cols * CW, (screen.len() + 4) * CH);
    let mut px = vec![theme_bg; w * h];
    for (r, line) in screen.iter().enumerate() {
        for (c, cell) in line.iter().enumerate() {
            let (x0, y0) = ((c + 2) * CW, (r + 2) * CH);
            let bg = grey(cell.bg, theme_bg);
            for y in 0..CH {
                px[(y0 + y) * w + x0..(y0 + y) * w + x0 + CW].fill(bg);
            }
            let fg = grey(cell.fg, theme_fg);
            for (l, t, rt, b) in ink(cell.ch) {
                for y in t..b {
                    px[(y0 + y) * w + x0 + l..(y0 + y) * w + x0 + rt].fill(fg);
                }
            }
        }
    }
    let path = dir.join(if dark_theme { "dark.pgm" } else { "light.pgm" });
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

/// The screen's code scans, the same on a dark and a light theme, to a config with the
/// settings of `peer add`'s text.
fn assert_scans(screen: &[Vec<Cell>], dir: &Path) -> String {
    let dark = scan_screen(screen, true, dir).expect("the code scans on a dark theme");
    let light = scan_screen(screen, false, dir).expect("the code scans on a light theme");
    assert_eq!(dark, light);
    for needle in [
        "[Interface]\nPrivateKey=",
        "\nPresharedKey=",
        "\nEndpoint=vpn.example.org:51820\n",
    ] {
        assert!(dark.contains(needle), "{needle:?} not in {dark:?}");
    }
    dark
}

#[test]
fn terminal_qr_code_scans_from_the_screen_or_says_how_to_get_one() {
    let d = Dir::new("ptyqr");
    assert!(run(&d.data(), &["init", "--endpoint", "vpn.example.org"])
        .status
        .success());
    let peers = |d: &Dir| text(&run(&d.data(), &["peer", "list"]).stdout);

    // Tall enough (a usual config is 33 rows of half blocks, 35 with the heading and hint):
    // the screen shows the whole code, a heading and a hint, in explicit black on white.
    let Some(out) = peer_add_on_a_terminal(&d.data(), "tall", &[], 80, 35) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stdout));
    let raw = text(&out.stdout);
    assert!(
        raw.contains("\x1b[38;5;16;48;5;231m"),
        "explicit black-on-white colours"
    );
    assert!(
        !raw.contains("[Interface]"),
        "config only with --show-config"
    );
    let shown = screen(&raw, 80, 35);
    assert!(plain(&shown)[0].starts_with("Scan with the WireGuard app"));
    assert_scans(&shown, &d.0);
    assert!(!raw.contains("needs"), "no size note when it fits: {raw}");

    // 80x24: no config fits in half blocks, so nothing is added and the admin is told how
    // many rows it needs and the ways out.
    let Some(out) = peer_add_on_a_terminal(&d.data(), "small", &[], 80, 24) else {
        return;
    };
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let raw = text(&out.stdout);
    assert!(!raw.contains(['▀', '▄', '█']), "no code that scrolls off");
    let said = raw.replace("\r\n", " ");
    for needle in [
        "the QR code needs a 65 x 35 terminal and this one is 80 x 24",
        "nothing was added",
        "at least 65 x 35",
        "--qr-sextants",
        // The command that works without a tunnel, not the dashboard (no tunnel yet).
        "appliance peer add small --role viewer --qr-png small.png",
    ] {
        assert!(said.contains(needle), "{needle:?} not in {said}");
    }
    assert!(!said.contains("dashboard"), "{said}");
    assert!(!peers(&d).contains("small"), "a peer was added");
    screen(&raw, 80, 24); // the refusal breaks between words, not at the terminal's edge

    // With sextants (2x3 modules a cell) the code fits 80x24 and scans from the screen.
    let Some(out) = peer_add_on_a_terminal(&d.data(), "sext", &["--qr-sextants"], 80, 24) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stdout));
    let raw = text(&out.stdout);
    let shown = screen(&raw, 80, 24);
    assert!(
        plain(&shown)[0].starts_with("Scan with the WireGuard app"),
        "the top of the code is on screen: {:#?}",
        plain(&shown)
    );
    assert!(raw.contains(|c| ('\u{1FB00}'..='\u{1FB3B}').contains(&c)));
    assert_scans(&shown, &d.0);

    // --show-config where the code cannot fit: the config, and a note instead of the code.
    let Some(out) = peer_add_on_a_terminal(&d.data(), "shown", &["--show-config"], 80, 24) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stdout));
    let raw = text(&out.stdout);
    assert!(!raw.contains(['▀', '▄', '█']), "{raw}");
    assert!(
        raw.contains("[Interface]") && raw.contains("left out"),
        "{raw}"
    );
    screen(&raw, 80, 24);

    // --show-config where it fits: the config after the code.
    let Some(out) = peer_add_on_a_terminal(&d.data(), "both", &["--show-config"], 80, 60) else {
        return;
    };
    let raw = text(&out.stdout);
    let code_end = raw.rfind('█').unwrap();
    let config_start = raw.find("[Interface]").expect("config shown");
    assert!(config_start > code_end, "config after the code");
    let listed = peers(&d);
    for name in ["tall", "sext", "shown", "both"] {
        assert!(listed.contains(name), "{name} not added: {listed}");
    }
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
    let s = Serving::adopt(child, &d.data());
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
