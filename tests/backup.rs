//! `appliance backup`, `appliance restore` and `serve --backup-every`, without the network:
//! offline and through the control socket, refusals (exit 2, nothing written), file modes,
//! rotation, and a version-1 backup that restores, upgrades and serves. Needs no root: `serve`
//! listens on an ephemeral UDP port on 127.0.0.1. The snapshot under concurrent API writes is
//! tested through the tunnel in `tests/interop_ops.rs`.
#![allow(clippy::disallowed_methods)] // test driver: waits with the clock

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::appliance_bin as bin;
use common::cli::{mode, ok, run, server_key as key_line, text, Dir, Serving};
use common::names;

fn peer_names(data: &Path) -> Vec<String> {
    names(&serde_json::from_str(&ok(data, &["peer", "list", "--json"])).unwrap())
}

#[test]
fn backups_offline_and_while_serving_are_private_never_overwrite_and_restore_the_same_key() {
    let d = Dir::new("roundtrip");
    let data = d.path("data");
    let key = key_line(&ok(&data, &["init", "--endpoint", "vpn.example.org"]));
    ok(&data, &["peer", "add", "alice", "--role", "admin"]);

    // Offline: the CLI opens the database itself.
    let b1 = d.path("b1.redb");
    let out = run(&data, &["backup", b1.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(key_line(&text(&out.stdout)), key);
    assert!(
        text(&out.stderr).contains("private key") && text(&out.stderr).contains("0600"),
        "the secret must be mentioned: {}",
        text(&out.stderr)
    );
    assert_eq!(mode(&b1), 0o600);

    // Refusals: exit 2, nothing written.
    let before = std::fs::read(&b1).unwrap();
    let again = run(&data, &["backup", b1.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("never overwrites"));
    assert_eq!(std::fs::read(&b1).unwrap(), before);
    let nodir = d.path("missing/b.redb");
    let out = run(&data, &["backup", nodir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!d.path("missing").exists());

    // While serving: through the control socket, with the server's lock held. The server
    // stages the snapshot in the data directory and the CLI copies it out; a staged file a
    // crashed CLI left behind is removed when serve starts.
    let stale = data.join(".backup-1-0.staged");
    std::fs::write(&stale, b"left by a CLI that died").unwrap();
    let s = Serving::start(&data);
    assert!(!stale.exists(), "serve removes stale staged backups");
    ok(&data, &["peer", "add", "bob"]);
    let b2 = d.path("b2.redb");
    let out = ok(&data, &["backup", b2.to_str().unwrap()]);
    assert!(out.contains("2 peers"), "{out}");
    assert!(out.contains(&b2.display().to_string()), "{out}");
    assert_eq!(mode(&b2), 0o600);
    let staged: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".backup-"))
        .collect();
    assert!(staged.is_empty(), "staged copies left: {staged:?}");
    // Relative paths are the caller's, not the server's.
    let rel = Command::new(bin())
        .current_dir(&d.0)
        .arg("--data-dir")
        .arg(&data)
        .args(["backup", "b3.redb"])
        .output()
        .unwrap();
    assert!(rel.status.success(), "{}", text(&rel.stderr));
    assert!(d.path("b3.redb").exists());
    s.stop();

    // Restore into an empty directory (created 0700): same key, same peers.
    let restored = d.path("restored");
    let out = ok(&restored, &["restore", b2.to_str().unwrap()]);
    assert_eq!(key_line(&out), key);
    assert_eq!(mode(&restored), 0o700);
    assert_eq!(mode(&restored.join("appliance.redb")), 0o600);
    assert_eq!(peer_names(&restored), vec!["alice", "bob"]);
    let cfg = ok(&restored, &["peer", "add", "carol"]);
    assert!(cfg.contains(&format!("PublicKey = {key}")), "{cfg}");
}

#[test]
fn restore_refuses_a_serving_or_non_empty_directory_unless_forced_and_keeps_the_old_file() {
    let d = Dir::new("refuse");
    let src = d.path("src");
    let src_key = key_line(&ok(&src, &["init"]));
    let backup = d.path("src.redb");
    ok(&src, &["backup", backup.to_str().unwrap()]);

    let live = d.path("live");
    let live_key = key_line(&ok(&live, &["init"]));
    let db = live.join("appliance.redb");

    // Serving: refused, even with --force.
    let s = Serving::start(&live);
    for args in [
        vec!["restore", backup.to_str().unwrap()],
        vec!["restore", backup.to_str().unwrap(), "--force"],
    ] {
        let out = run(&live, &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("serving"),
            "{}",
            text(&out.stderr)
        );
    }
    s.stop();
    let before = std::fs::read(&db).unwrap();

    // Not empty: refused without --force, naming what is there.
    let out = run(&live, &["restore", backup.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not empty") && text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // Not a backup: refused, nothing changes even with --force.
    let junk = d.path("junk.redb");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let out = run(&live, &["restore", junk.to_str().unwrap(), "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not a usable appliance backup"));
    assert_eq!(std::fs::read(&db).unwrap(), before);
    let missing = run(
        &live,
        &["restore", d.path("nope").to_str().unwrap(), "--force"],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // --force: the old database is kept aside, the backup's key is now the server's.
    let out = ok(&live, &["restore", backup.to_str().unwrap(), "--force"]);
    assert_eq!(key_line(&out), src_key);
    let aside: Vec<PathBuf> = std::fs::read_dir(&live)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("appliance.redb.before-restore-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), before);
    assert!(out.contains(&aside[0].display().to_string()), "{out}");
    let cfg = ok(&live, &["peer", "add", "dave"]);
    assert!(cfg.contains(&format!("PublicKey = {src_key}")));
    assert!(!cfg.contains(&live_key));
}

#[test]
fn a_version_1_backup_restores_upgrades_and_serves() {
    use appliance::model::{JobRecord, PeerRecord, ServerRecord};
    use appliance::sched::{JobId, JobSpec};
    use appliance::store::Store;

    let d = Dir::new("v1");
    let server = ServerRecord {
        private_key: peers::PrivateKey::from_bytes([42; 32]),
        listen_port: 51820,
        interface: peers::Ipv4Net::parse("10.88.88.1/24").unwrap(),
        endpoint: peers::Endpoint::parse("vpn.example.org", 51820).unwrap(),
        created_at: 1_700_000_000,
    };
    let peer = PeerRecord {
        name: peers::PeerName::new("leader").unwrap(),
        role: peers::Role::Admin,
        public_key: peers::PrivateKey::from_bytes([3; 32]).public_key(),
        preshared_key: None,
        address: "10.88.88.2".parse().unwrap(),
        allowed_ips: vec![peers::Ipv4Net::parse("10.88.88.2/32").unwrap()],
        enabled: true,
        created_at: 1_700_000_000,
    };
    let job = JobRecord {
        id: JobId::from_u64(77),
        spec: std::sync::Arc::new(
            JobSpec::from_json(
                &serde_json::json!({
                    "name": "weekly",
                    "trigger": {"cron": "0 19 * * THU", "timezone": "Europe/Berlin"},
                    "action": {"webhook": {"url": "http://127.0.0.1:9/x"}}
                }),
                None,
            )
            .unwrap(),
        ),
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: "leader".into(),
        next_fire_at: None,
        paused_at_ms: None,
    };
    let old = d.path("v1.redb");
    appliance::store::write_v1_fixture(
        &old,
        &server,
        &[("leader", appliance::store::encode_peer(&peer))],
        &[(77, appliance::store::encode_job_for_fixture(&job))],
    )
    .unwrap();
    let before = std::fs::read(&old).unwrap();

    let data = d.path("data");
    let out = ok(&data, &["restore", old.to_str().unwrap()]);
    assert!(
        out.contains(&format!(
            "schema version 1, upgraded to {}",
            appliance::store::SCHEMA_VERSION
        )),
        "the upgrade is reported: {out}"
    );
    assert_eq!(key_line(&out), server.private_key.public_key().to_base64());
    assert_eq!(
        std::fs::read(&old).unwrap(),
        before,
        "the backup is not written"
    );

    let s = Serving::start(&data);
    assert_eq!(peer_names(&data), vec!["leader"]);
    let doctor = run(&data, &["doctor", "--json"]);
    assert!(doctor.status.success(), "{}", text(&doctor.stderr));
    s.stop();
    let store = Store::open(&data.join("appliance.redb")).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        Some(appliance::store::SCHEMA_VERSION)
    );
    let jobs = store.jobs().unwrap();
    assert_eq!(jobs.rows.len(), 1);
    assert_eq!(jobs.rows[0].spec.name, "weekly");
}

#[test]
fn serve_writes_rotated_private_backups_and_keeps_the_newest() {
    let d = Dir::new("rotate");
    let data = d.path("data");
    ok(&data, &["init"]);
    // Bad values: exit 2 before serving.
    for (args, needle) in [
        (vec!["serve", "--backup-every", "soon"], "--backup-every"),
        (
            vec!["serve", "--backup-every", "1h", "--backup-keep", "0"],
            "--backup-keep",
        ),
    ] {
        let out = run(&data, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
    let dir = data.join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep-me.txt"), b"not a backup").unwrap();

    let s = Serving::start_with(
        &data,
        &["--backup-every", "1s", "--backup-keep", "2"],
        &[],
        std::process::Stdio::null(),
    );
    let rotated = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("appliance-") && n.ends_with(".redb"))
            .collect();
        v.sort();
        v
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 4 {
        assert!(Instant::now() < deadline, "only {seen:?} written");
        seen.extend(rotated());
        std::thread::sleep(Duration::from_millis(100));
    }
    s.stop();
    let left = rotated();
    seen.extend(left.iter().cloned());
    assert_eq!(left.len(), 2, "{left:?} of {seen:?}");
    assert_eq!(
        left,
        seen.iter().rev().take(2).rev().cloned().collect::<Vec<_>>()
    );
    assert!(
        dir.join("keep-me.txt").exists(),
        "other files are left alone"
    );
    assert_eq!(mode(&dir), 0o700);
    for name in &left {
        assert_eq!(mode(&dir.join(name)), 0o600);
        let (store, _) =
            appliance::store::Store::open_appliance(&dir.join(name)).expect("a usable backup");
        drop(store);
    }
}
