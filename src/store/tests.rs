//! Tests of the storage layer.

use std::net::Ipv4Addr;

use ::peers::{Ipv4Net, PeerName, PrivateKey, Role};

use super::*;
use crate::model::{
    Actor, AuditAction, AuditEntry, JobRecord, PeerChange, PeerRecord, RunFilter, RunRecord,
    RunStatus,
};
use crate::sched::{JobId, JobSpec};
use crate::store::testing::job_record;

/// A fresh, empty directory for one test.
pub(super) fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "appliance-store-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn temp_store(tag: &str) -> (Store, std::path::PathBuf) {
    let dir = temp_dir(tag);
    (Store::create(&dir.join("db.redb"), None).unwrap(), dir)
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn run(job: u64, at: &str, status: RunStatus) -> RunRecord {
    RunRecord {
        attempt: 1,
        status,
        ..RunRecord::starting(
            JobId::from_u64(job),
            format!("job{job}"),
            ts(at),
            "schedule",
        )
    }
}

#[test]
fn runs_are_paged_filtered_and_pruned() {
    let (store, dir) = temp_store("runs");
    let mut runs = vec![
        run(1, "2026-01-01T00:00:00Z", RunStatus::Succeeded),
        run(2, "2026-01-02T00:00:00Z", RunStatus::Failed),
        run(1, "2026-01-03T00:00:00Z", RunStatus::Missed),
        run(1, "2026-01-04T00:00:00Z", RunStatus::Running),
        run(2, "2026-01-05T00:00:00Z", RunStatus::Succeeded),
        // Recorded late (catch-up after downtime): an old time with a new id.
        run(2, "2026-01-01T12:00:00Z", RunStatus::Missed),
    ];
    store.start_runs(&mut runs, &[]).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    let page =
        |f: RunFilter| -> Vec<u64> { store.runs_page(&f).unwrap().iter().map(|r| r.id).collect() };
    let all = RunFilter {
        limit: 10,
        ..RunFilter::default()
    };
    assert_eq!(page(all.clone()), vec![6, 5, 4, 3, 2, 1], "newest first");
    assert_eq!(
        page(RunFilter {
            job: Some(JobId::from_u64(1)),
            ..all.clone()
        }),
        vec![4, 3, 1]
    );
    assert_eq!(
        page(RunFilter {
            status: Some(RunStatus::Succeeded),
            ..all.clone()
        }),
        vec![5, 1]
    );
    assert_eq!(
        page(RunFilter {
            since: Some(ts("2026-01-03T00:00:00Z")),
            ..all.clone()
        }),
        vec![5, 4, 3]
    );
    assert_eq!(
        page(RunFilter {
            before: Some(4),
            limit: 2,
            ..all.clone()
        }),
        vec![3, 2],
        "cursor continues below the last id"
    );
    assert_eq!(store.unfinished_runs().unwrap().rows.len(), 1);

    // Pruning before Jan 4 removes 1, 2, 3 and the late 6, but never a running run.
    assert_eq!(store.prune_runs(ts("2026-01-04T12:00:00Z")).unwrap(), 4);
    assert_eq!(page(all.clone()), vec![5, 4]);
    assert_eq!(
        page(RunFilter {
            job: Some(JobId::from_u64(1)),
            ..all
        }),
        vec![4],
        "the per-job index is pruned too"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn audit_is_append_only_and_paged_newest_first() {
    let (store, dir) = temp_store("audit");
    for i in 0..5u64 {
        let seq = store
            .audit(AuditEntry {
                seq: 0,
                at_ms: 1000 * i,
                actor: Actor::local_cli(),
                action: AuditAction::from_wire(&format!("a{i}")),
                target: None,
                summary: serde_json::json!({}),
            })
            .unwrap();
        assert_eq!(seq, i + 1);
    }
    let seqs = |before, since, limit| -> Vec<u64> {
        store
            .audit_page(before, since, limit)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(None, None, 10), vec![5, 4, 3, 2, 1]);
    assert_eq!(seqs(Some(4), None, 2), vec![3, 2]);
    assert_eq!(seqs(None, Some(2000), 10), vec![5, 4, 3]);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// A prune decodes the entries that go and the one that stops it, never the whole trail: the
/// driver sweeps every eighth of the cap appended (8 MiB by default), and a full decode of a
/// trail of 100,000 entries cost each create in a busy server as much as its JSON reply.
#[test]
fn an_audit_prune_decodes_only_what_it_removes() {
    let (store, dir) = temp_store("audit-prune-reads");
    for i in 0..1_000u64 {
        store
            .audit(AuditEntry {
                seq: 0,
                at_ms: 1_000 + i,
                actor: Actor::local_cli(),
                action: crate::model::JobAction::Create.into(),
                target: Some(format!("job-{i}")),
                summary: serde_json::json!({"name": format!("job-{i}")}),
            })
            .unwrap();
    }
    let decoded = |s: &Store, f: &dyn Fn(&Store) -> usize| {
        let before = s.audit_rows_decoded();
        let n = f(s);
        (n, s.audit_rows_decoded() - before)
    };
    // Nothing old, nothing over the cap: the oldest entry is read, and the walk stops.
    assert_eq!(
        decoded(&store, &|s| s.prune_audit(0, u64::MAX).unwrap()),
        (0, 1)
    );
    // The ten entries before t=1010 go: eleven decoded.
    assert_eq!(
        decoded(&store, &|s| s.prune_audit(1_010, u64::MAX).unwrap()),
        (10, 11)
    );
    assert_eq!(store.audit_page(None, None, 1_000).unwrap().len(), 990);
    // By size: a cap of about half the trail removes the older half, and reads no more.
    let half = store.audit_bytes().unwrap() / 2;
    let (gone, read) = decoded(&store, &|s| s.prune_audit(0, half).unwrap());
    assert!((490..=500).contains(&gone), "{gone} pruned");
    assert_eq!(read, gone as u64 + 1);
    assert!(store.audit_bytes().unwrap() <= half);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn audit_is_pruned_by_age_then_by_size_oldest_first() {
    let (store, dir) = temp_store("audit-prune");
    let entry = |at_ms: u64, pad: usize| AuditEntry {
        seq: 0,
        at_ms,
        actor: Actor::local_cli(),
        action: crate::model::JobAction::Update.into(),
        target: None,
        // `pad` bytes of JSON in strings under the 256-byte cut every summary is subject to.
        summary: serde_json::json!({"pad": vec!["x".repeat((pad / 4).saturating_sub(3)); 4]}),
    };
    for i in 0..10u64 {
        store.audit(entry(1_000 * (i + 1), 1_000)).unwrap();
    }
    let size = |s: &Store| -> (usize, Vec<u64>) {
        let page = s.audit_page(None, None, 100).unwrap();
        (page.len(), page.iter().rev().map(|e| e.seq).collect())
    };
    // Age: entries before t=3000 go (two of them), nothing else while under the size cap.
    assert_eq!(store.prune_audit(3_000, u64::MAX).unwrap(), 2);
    assert_eq!(size(&store).1, (3..=10).collect::<Vec<_>>());
    // Size: each entry is a little over 1000 bytes; a 3500-byte cap keeps the newest three.
    assert_eq!(store.prune_audit(0, 3_500).unwrap(), 5);
    assert_eq!(size(&store).1, vec![8, 9, 10]);
    // The newest entry stays whatever the limits, so numbering continues after it.
    assert_eq!(store.prune_audit(u64::MAX, 0).unwrap(), 2);
    assert_eq!(size(&store).1, vec![10]);
    assert_eq!(store.audit(entry(20_000, 10)).unwrap(), 11);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn next_fire_times_keep_full_precision() {
    let (store, dir) = temp_store("precision");
    let spec = JobSpec::from_json(
        &serde_json::json!({
            "name": "tick",
            "trigger": {"every": "1s", "start": "2026-01-01T00:00:00.123456789Z"},
            "action": {"webhook": {"url": "http://127.0.0.1:9/x"}}
        }),
        None,
    )
    .unwrap();
    let next = ts("2026-01-01T00:00:05.123456789Z");
    let rec = JobRecord {
        id: JobId::from_u64(7),
        spec: std::sync::Arc::new(spec),
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: "t".into(),
        next_fire_at: Some(next),
        paused_at_ms: None,
    };
    assert!(store.insert_job(&rec, None).unwrap());
    let back = store.job(JobId::from_u64(7)).unwrap().unwrap();
    assert_eq!(back.next_fire_at, Some(next));
    // And it is exactly on the job's schedule.
    let prev = next
        .checked_sub(jiff::SignedDuration::from_nanos(1))
        .unwrap();
    assert_eq!(back.spec.trigger.next_after(prev), Some(next));
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// Why new jobs get ids that grow with time (`JobId::fresh`): a batch of creates whose ids
/// follow the ones before writes the last pages of the tables keyed by id, where random ids
/// write a page per job all over a large table. 5,000 jobs stored, then 20 batches of 16:
/// the fresh ids' batches write a fraction of the bytes.
#[test]
fn batches_of_fresh_ids_write_a_fraction_of_what_random_ids_write() {
    use crate::store::testing::Disk;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut cost = |fresh: bool| {
        let disk = Disk::default();
        let store = disk.store();
        let mut n = 0u64;
        let mut next = |random: u64| {
            n += 1;
            if fresh {
                // One job every millisecond from some instant of 2026.
                JobId::fresh(1_780_000_000_000 + n, random).as_u64()
            } else {
                random
            }
        };
        let base: Vec<JobRecord> = (0..5_000)
            .map(|i| job_record(next(random()), &format!("base-{i}")))
            .collect();
        store.insert_jobs_unaudited(&base).unwrap();
        let before = disk.bytes_written();
        for b in 0..20 {
            let batch: Vec<JobRecord> = (0..16)
                .map(|i| job_record(next(random()), &format!("new-{b}-{i}")))
                .collect();
            store.insert_jobs_unaudited(&batch).unwrap();
        }
        disk.bytes_written() - before
    };
    let (random_ids, fresh_ids) = (cost(false), cost(true));
    assert!(
        fresh_ids * 3 < random_ids,
        "20 batches of 16 creates wrote {fresh_ids} bytes with fresh ids, {random_ids} with random ones"
    );
}

/// A write big enough to need blocks the disk has never allocated.
fn big_audit(tag: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: Actor::local_cli(),
        action: AuditAction::Other(tag.into()),
        target: None,
        summary: serde_json::json!({"pad": "x".repeat(256 * 1024)}),
    }
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_without_a_new_store() {
    let disk = testing::Disk::default();
    let store = disk.store();
    assert!(store.insert_job(&job_record(1, "before"), None).unwrap());
    let acknowledged = store.audit(big_audit("before")).unwrap();
    assert!(store.health().writable);

    disk.set_full(true);
    let err = store.audit(big_audit("during")).unwrap_err();
    assert!(matches!(err, StoreError::DiskFull), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the appliance's disk is full: nothing was saved; free space on the server and try again"
    );
    let health = store.health();
    assert!(!health.writable && health.disk_full, "{health:?}");
    assert!(health.since.is_some() && health.reason.is_some());
    // Writes stay refused with the same reason while the disk is full, whatever their size.
    let err = store
        .insert_job(&job_record(2, "during"), None)
        .unwrap_err();
    assert!(matches!(err, StoreError::DiskFull), "{err:?}");
    // Reads keep working on the reopened handle.
    assert_eq!(store.jobs().unwrap().rows.len(), 1);
    let audit = store.audit_page(None, None, 10).unwrap();
    assert_eq!(
        audit.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![acknowledged]
    );
    assert!(
        !store.health().writable,
        "a read does not clear the condition"
    );

    disk.set_full(false);
    // The same Store writes again: the first write recovers it.
    assert!(store.insert_job(&job_record(3, "after"), None).unwrap());
    assert!(store.health().writable, "{:?}", store.health());
    let seq = store.audit(big_audit("after")).unwrap();
    assert_eq!(seq, acknowledged + 1, "nothing refused was half-written");
    let mut names: Vec<String> = store
        .jobs()
        .unwrap()
        .rows
        .into_iter()
        .map(|j| j.spec.name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["after", "before"],
        "acknowledged records survive, refused ones never appear"
    );
    drop(store);
    // And all of it is on the disk: a fresh open sees the same.
    let again = disk.store();
    assert_eq!(again.jobs().unwrap().rows.len(), 2);
    assert_eq!(again.audit_page(None, None, 10).unwrap().len(), 2);
}

#[test]
fn a_reopen_never_initialises_over_a_file_emptied_meanwhile() {
    let disk = testing::Disk::default();
    let store = disk.store();
    store.insert_job(&job_record(1, "a"), None).unwrap();
    disk.set_failing(true);
    assert!(store.insert_job(&job_record(2, "b"), None).is_err());
    disk.wipe();
    disk.set_failing(false);
    let err = store.recover().unwrap_err();
    assert!(
        err.to_string().contains("the database file is empty"),
        "{err}"
    );
    assert!(!store.health().writable);
    assert!(matches!(
        store.insert_job(&job_record(3, "c"), None),
        Err(StoreError::Unavailable { .. })
    ));
    assert!(matches!(store.jobs(), Err(StoreError::Unavailable { .. })));
    assert_eq!(disk.len(), 0, "a new database was written over it");
}

#[test]
fn recover_clears_the_condition_only_once_a_commit_succeeds() {
    let disk = testing::Disk::default();
    let store = disk.store();
    store.insert_job(&job_record(1, "a"), None).unwrap();
    disk.set_failing(true);
    let err = store.insert_job(&job_record(2, "b"), None).unwrap_err();
    assert!(matches!(err, StoreError::DiskFull), "{err:?}");
    assert!(matches!(store.recover(), Err(StoreError::DiskFull)));
    assert!(!store.health().writable);
    // The disk cannot even take redb's repair on reopen: reads go on over the overlay.
    assert_eq!(store.jobs().unwrap().rows.len(), 1);
    assert!(matches!(
        store.insert_job(&job_record(3, "c"), None),
        Err(StoreError::DiskFull)
    ));
    assert_eq!(
        store.job(JobId::from_u64(1)).unwrap().unwrap().spec.name,
        "a"
    );
    disk.set_failing(false);
    store.recover().unwrap();
    assert!(store.health().writable);
    assert_eq!(store.jobs().unwrap().rows.len(), 1);
    assert!(store.insert_job(&job_record(2, "b"), None).unwrap());
}

/// The hourly sweeps decide on a read transaction: with nothing to prune they write
/// nothing, so they neither fail nor degrade the store on a full disk, and never race a
/// write there (which made the in-process full-disk API tests flaky).
#[test]
fn sweeps_with_nothing_to_prune_write_nothing() {
    let disk = testing::Disk::default();
    let store = disk.store();
    store.insert_job(&job_record(1, "a"), None).unwrap();
    disk.set_failing(true);
    assert_eq!(store.prune_runs(Timestamp::MAX).unwrap(), 0);
    assert_eq!(store.prune_audit(0, u64::MAX).unwrap(), 0);
    assert!(store.health().writable, "{:?}", store.health());
}

#[test]
fn io_errors_are_classified() {
    assert!(is_disk_full(&std::io::Error::from_raw_os_error(28)));
    assert!(is_disk_full(&std::io::Error::from_raw_os_error(122)));
    assert!(is_disk_full(&std::io::Error::other(
        "write: No space left on device (os error 28)"
    )));
    assert!(!is_disk_full(&std::io::Error::from_raw_os_error(5)));
    let e = StoreError::from(redb::StorageError::Io(std::io::Error::from_raw_os_error(5)));
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    let e = StoreError::from(redb::StorageError::PreviousIo);
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
}

#[test]
fn a_second_open_of_the_same_file_is_refused_as_locked() {
    let (store, dir) = temp_store("lock");
    let err = Store::open(&dir.join("db.redb")).err().expect("locked");
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

fn peer(name: &str, last: u8) -> PeerRecord {
    PeerRecord {
        name: PeerName::new(name).unwrap(),
        role: Role::Admin,
        public_key: PrivateKey::from_bytes([last; 32]).public_key(),
        preshared_key: None,
        address: Ipv4Addr::new(10, 88, 88, last),
        allowed_ips: vec![Ipv4Net::parse(&format!("10.88.88.{last}/32")).unwrap()],
        enabled: true,
        created_at: 0,
    }
}

/// A stored job fixture, shared with the backup tests.
pub(super) fn job(id: u64) -> JobRecord {
    JobRecord {
        id: JobId::from_u64(id),
        spec: std::sync::Arc::new(
            JobSpec::from_json(
                &serde_json::json!({
                    "name": format!("job{id}"),
                    "trigger": {"every": "1h", "start": "2026-01-01T00:00:00Z"},
                    "action": {"webhook": {"url": "http://127.0.0.1:9/x"}}
                }),
                None,
            )
            .unwrap(),
        ),
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: "t".into(),
        next_fire_at: None,
        paused_at_ms: None,
    }
}

#[test]
fn open_never_creates_and_create_never_overwrites() {
    let dir = std::env::temp_dir().join(format!("appliance-store-open-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.redb");
    assert!(matches!(Store::open(&path), Err(OpenError::Missing { .. })));
    assert!(!path.exists(), "open created a file");

    // An empty file: damaged for open, and create leaves it alone.
    std::fs::write(&path, b"").unwrap();
    let err = Store::open(&path).err().expect("empty file refused");
    assert!(matches!(err, OpenError::Damaged { len: 0, .. }), "{err}");
    assert!(
        err.to_string().contains("is empty or damaged (0 bytes"),
        "{err}"
    );
    assert!(matches!(
        Store::create(&path, None),
        Err(OpenError::Exists { .. })
    ));
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "file was written"
    );
    // Foreign bytes too.
    std::fs::write(&path, vec![7u8; 8192]).unwrap();
    let err = Store::open(&path).err().expect("foreign file refused");
    assert!(err.to_string().contains("not a redb database"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 8192]);

    // A fresh one, then truncated: a clean error, not a panic.
    std::fs::remove_file(&path).unwrap();
    let store = Store::create(&path, None).unwrap();
    for i in 0..50u8 {
        store
            .update_peers(|_| {
                Ok::<_, StoreError>((
                    PeerChange {
                        upsert: vec![peer(&format!("p{i}"), i + 2)],
                        ..PeerChange::default()
                    },
                    (),
                ))
            })
            .unwrap();
    }
    drop(store);
    let len = std::fs::metadata(&path).unwrap().len();
    for keep in [len / 2, 4096] {
        let cut = dir.join(format!("cut-{keep}.redb"));
        std::fs::copy(&path, &cut).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&cut)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let err = Store::open(&cut).err().expect("truncated file refused");
        assert!(matches!(err, OpenError::Damaged { .. }), "{keep}: {err}");
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn damaged_rows_are_skipped_reported_and_quarantined_with_their_bytes() {
    let (store, dir) = temp_store("damaged");
    let good = peer("alice", 2);
    let mut low_order: serde_json::Value =
        serde_json::from_slice(&encode_peer(&peer("mallory", 3))).unwrap();
    low_order["public_key"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let low_order = serde_json::to_vec(&low_order).unwrap();
    store
        .write_raw_row_for_tests("peers", "alice", &encode_peer(&good))
        .unwrap();
    store
        .write_raw_row_for_tests("peers", "mallory", &low_order)
        .unwrap();
    assert!(store.insert_job(&job(1), None).unwrap());
    let garbage = b"{not json at all".to_vec();
    store
        .write_raw_row_for_tests("jobs", &JobId::from_u64(2).to_string(), &garbage)
        .unwrap();

    let peers = store.peers().unwrap();
    assert_eq!(peers.rows, vec![good.clone()]);
    assert_eq!(peers.damaged.len(), 1);
    assert_eq!(peers.damaged[0].key, "mallory");
    assert!(
        peers.damaged[0].reason.contains("low-order"),
        "{:?}",
        peers.damaged
    );
    let jobs = store.jobs().unwrap();
    assert_eq!(jobs.rows.len(), 1);
    assert_eq!(jobs.damaged[0].key, JobId::from_u64(2).to_string());

    // Peer commands work around the damaged row but never overwrite it.
    let refused = store.update_peers(|_| {
        Ok::<_, StoreError>((
            PeerChange {
                upsert: vec![peer("mallory", 4)],
                ..PeerChange::default()
            },
            (),
        ))
    });
    assert!(
        matches!(refused, Err(StoreError::Corrupt { .. })),
        "{refused:?}"
    );

    let report = store.doctor(false, &Actor::local_cli(), 5).unwrap();
    assert_eq!(report.damaged.len(), 2);
    assert_eq!(report.in_quarantine, 0);
    let moved = store.doctor(true, &Actor::local_cli(), 5).unwrap();
    assert_eq!(moved.damaged, report.damaged);
    assert_eq!(moved.in_quarantine, 2);
    assert!(store.damaged_rows().unwrap().is_empty());
    assert!(store.peers().unwrap().damaged.is_empty());
    assert_eq!(store.jobs().unwrap().rows.len(), 1);
    let kept = store.quarantined().unwrap();
    assert!(kept.contains(&("jobs/2".to_string(), garbage)), "{kept:?}");
    assert!(kept.contains(&("peers/mallory".to_string(), low_order)));
    let audit = store.audit_page(None, None, 10).unwrap();
    assert_eq!(audit.len(), 2);
    assert!(audit
        .iter()
        .all(|e| e.action == AuditAction::StoreQuarantine));
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// The run row on disk and the run in API replies were one serde type; they are two now and
/// must stay byte-identical to what it wrote (old databases, old clients).
#[test]
fn run_rows_and_run_bodies_keep_their_bytes() {
    let mut r = run(0xab, "2026-01-01T00:00:00Z", RunStatus::Succeeded);
    r.id = 7;
    r.started_at = Some(ts("2026-01-01T00:00:01.5Z"));
    r.http_status = Some(204);
    r.duration_ms = Some(12);
    r.handler = Some("bot".into());
    r.result = Some(serde_json::json!({"ok": true}));
    let expected = r#"{"id":7,"job_id":"00000000000000ab","job_name":"job171","scheduled_at":"2026-01-01T00:00:00Z","started_at":"2026-01-01T00:00:01.5Z","finished_at":null,"attempt":1,"status":"succeeded","trigger":"schedule","http_status":204,"error":null,"duration_ms":12,"handler":"bot","result":{"ok":true}}"#;
    let row = runs::encode_run(&r);
    assert_eq!(std::str::from_utf8(&row).unwrap(), expected);
    let body = serde_json::to_string(&crate::api::view::RunView::from(&r)).unwrap();
    assert_eq!(body, expected);
    assert_eq!(runs::decode_run(7, &row).unwrap(), r);
    // Rows written before handlers existed have none of the optional tail.
    let old = r#"{"id":8,"job_id":"0000000000000001","job_name":"a","scheduled_at":"2026-01-01T00:00:00Z","started_at":null,"finished_at":null,"attempt":1,"status":"missed","trigger":"schedule","http_status":null,"error":null,"duration_ms":null}"#;
    let decoded = runs::decode_run(8, old.as_bytes()).unwrap();
    assert_eq!(decoded.status, RunStatus::Missed);
    assert_eq!(
        std::str::from_utf8(&runs::encode_run(&decoded)).unwrap(),
        old
    );
}

/// A `tasks` row is the queue's own `Task` serialised, not a private row type: this pins its
/// bytes, so a change to `queue::Task` that would change (or fail to read) stored rows fails
/// here first.
#[test]
fn task_rows_keep_their_bytes() {
    let mut params = serde_json::Map::new();
    params.insert("channel".into(), serde_json::json!("raid"));
    let mut task = crate::queue::Task::new(
        JobId::from_u64(0xab),
        "bot",
        "send_message",
        &params,
        ts("2026-01-01T00:00:00Z"),
        crate::sched::Retry {
            attempts: 3,
            backoff: std::time::Duration::from_secs(10),
        },
        std::time::Duration::from_secs(60),
        ts("2026-01-01T00:00:00Z"),
    );
    task.run_id = 7;
    let delivery = crate::queue::DeliveryId::from_u128(0x0123_4567_89ab_cdef);
    task.attempt = 1;
    task.first_leased_at = Some(ts("2026-01-01T00:00:01Z"));
    task.deliveries.push(crate::queue::Delivery {
        id: delivery,
        closed: None,
    });
    task.state = crate::queue::TaskState::Leased {
        delivery,
        leased_at: ts("2026-01-01T00:00:01Z"),
        expires_at: ts("2026-01-01T00:00:31Z"),
        deadline: ts("2026-01-01T00:01:01Z"),
    };
    let expected = r#"{"run_id":7,"job_id":"00000000000000ab","handler":"bot","method":"send_message","params":{"channel":"raid"},"scheduled_at":"2026-01-01T00:00:00Z","manual":false,"attempt":1,"max_attempts":3,"backoff_ms":10000,"timeout_ms":60000,"state":{"state":"leased","delivery":"00000000000000000123456789abcdef","leased_at":"2026-01-01T00:00:01Z","expires_at":"2026-01-01T00:00:31Z","deadline":"2026-01-01T00:01:01Z"},"first_leased_at":"2026-01-01T00:00:01Z","cancel_requested":false,"deliveries":[{"id":"00000000000000000123456789abcdef","closed":null}],"error":null,"result":null,"finished_at":null}"#;
    let row = tasks::encode_task(&task);
    assert_eq!(std::str::from_utf8(&row).unwrap(), expected);
    assert_eq!(tasks::decode_task(7, &row).unwrap(), task);
    // A finished row as written by an ack, and one from before `manual` existed.
    let done = r#"{"run_id":8,"job_id":"0000000000000001","handler":"bot","method":"m","params":{},"scheduled_at":"2026-01-01T00:00:00Z","attempt":1,"max_attempts":1,"backoff_ms":0,"timeout_ms":1000,"state":{"state":"succeeded"},"first_leased_at":null,"cancel_requested":false,"deliveries":[{"id":"000000000000000000000000000000ff","closed":"acked"}],"error":null,"result":{"ok":true},"finished_at":"2026-01-01T00:00:02Z"}"#;
    let decoded = tasks::decode_task(8, done.as_bytes()).unwrap();
    assert_eq!(decoded.state, crate::queue::TaskState::Succeeded);
    assert!(!decoded.manual);
    assert_eq!(
        decoded.deliveries[0].closed,
        Some(crate::queue::Closed::Acked)
    );
    assert_eq!(decoded.result, Some(serde_json::json!({"ok": true})));
}

/// Same for audit entries: the row, the API body and the control socket's reply.
#[test]
fn audit_rows_and_audit_bodies_keep_their_bytes() {
    let entry = AuditEntry {
        seq: 3,
        at_ms: 1_700_000_000_000,
        actor: Actor {
            peer: "leader".into(),
            fingerprint: Some("ab12".into()),
            address: Some("10.88.88.2".into()),
            endpoint: None,
            via: crate::model::Via::Api,
        },
        action: crate::model::PeerAction::Add.into(),
        target: Some("phone".into()),
        summary: serde_json::json!({"role": "viewer"}),
    };
    let expected = r#"{"seq":3,"at_ms":1700000000000,"actor":{"peer":"leader","fingerprint":"ab12","address":"10.88.88.2","endpoint":null,"via":"api"},"action":"peer.add","target":"phone","summary":{"role":"viewer"}}"#;
    let row = audit::encode_audit(entry.clone());
    assert_eq!(std::str::from_utf8(&row).unwrap(), expected);
    let views = crate::api::view::audit_views(vec![entry.clone()]);
    assert_eq!(serde_json::to_string(&views[0]).unwrap(), expected);
    assert_eq!(audit::decode_audit(3, &row).unwrap(), entry);
}

/// A row whose action this build does not know (another version wrote it) still decodes, is
/// shown with its string, and is written back byte for byte.
#[test]
fn an_audit_row_with_an_unknown_action_decodes_and_keeps_its_bytes() {
    let stored = r#"{"seq":9,"at_ms":1700000000000,"actor":{"peer":"local","fingerprint":null,"address":null,"endpoint":null,"via":"cli"},"action":"job.archive","target":"42","summary":{}}"#;
    let entry = audit::decode_audit(9, stored.as_bytes()).expect("an unknown action decodes");
    assert_eq!(entry.action, AuditAction::Other("job.archive".into()));
    assert_eq!(
        std::str::from_utf8(&audit::encode_audit(entry.clone())).unwrap(),
        stored
    );
    let views = crate::api::view::audit_views(vec![entry]);
    assert_eq!(serde_json::to_string(&views[0]).unwrap(), stored);
    let back: crate::api::view::AuditView = serde_json::from_str(stored).unwrap();
    assert_eq!(
        back.action.as_str(),
        "job.archive",
        "the CLI reads it back too"
    );
}

/// Every row of a string-keyed table, bytes as stored.
fn raw_rows(
    store: &Store,
    def: TableDefinition<&str, &[u8]>,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let db = store.reader()?;
    let txn = db.begin_read()?;
    let table = txn.open_table(def)?;
    rows::decode_rows(&table, |k, v| (k.to_string(), v.to_vec()))
}

/// Statistics and handler rows were their model types' own serde; they keep those bytes.
#[test]
fn stats_and_handler_rows_keep_their_bytes() {
    let (store, dir) = temp_store("row-bytes");
    store
        .update_peers(|_| {
            Ok::<_, StoreError>((
                PeerChange {
                    upsert: vec![peer("phone", 2)],
                    ..PeerChange::default()
                },
                (),
            ))
        })
        .unwrap();
    let stats = crate::model::PeerStats {
        last_handshake: Some(1_700_000_000),
        rx_bytes: 5,
        tx_bytes: 6,
        endpoint: Some("203.0.113.7:4242".into()),
    };
    store
        .save_peer_stats(&[("phone".into(), stats.clone())])
        .unwrap();
    assert_eq!(
        store.peer_stats().unwrap(),
        vec![("phone".to_string(), stats)]
    );
    let row = raw_rows(&store, PEER_STATS).unwrap();
    assert_eq!(
        row,
        vec![(
            "phone".to_string(),
            br#"{"last_handshake":1700000000,"rx_bytes":5,"tx_bytes":6,"endpoint":"203.0.113.7:4242"}"#.to_vec()
        )]
    );
    let handler = crate::model::HandlerRecord {
        name: "bot".into(),
        methods: vec!["post".into()],
        registered_at: ts("2026-01-01T00:00:00Z"),
    };
    store.put_handler(&handler, big_audit("h")).unwrap();
    assert_eq!(store.handlers().unwrap(), vec![handler]);
    assert_eq!(
        raw_rows(&store, tasks::HANDLERS).unwrap(),
        vec![(
            "bot".to_string(),
            br#"{"name":"bot","methods":["post"],"registered_at":"2026-01-01T00:00:00Z"}"#.to_vec()
        )]
    );
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// A cron job created at `now`, in a zone, for the summary tests.
fn cron_record(id: u64, name: &str) -> JobRecord {
    let spec = JobSpec::from_json(
        &serde_json::json!({
            "name": name,
            "trigger": {"cron": "45 19 * * THU", "timezone": "Europe/Berlin"},
            "action": {"webhook": {"url": "http://127.0.0.1:9/x", "body": {"content": "raid"}}},
            "misfire_grace": "5m",
            "jitter": "10s",
            "max_instances": 2,
            "metadata": {"channel": "announcements"}
        }),
        None,
    )
    .unwrap();
    JobRecord {
        id: JobId::from_u64(id),
        next_fire_at: spec.trigger.next_after(ts("2026-06-01T00:00:00Z")),
        spec: std::sync::Arc::new(spec),
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: "t".into(),
        paused_at_ms: None,
    }
}

/// The `job_schedules` rows, as raw bytes by id.
fn summary_rows(store: &Store) -> Vec<(u64, Vec<u8>)> {
    let db = store.reader().unwrap();
    let txn = db.begin_read().unwrap();
    match rows::open_existing(&txn, JOB_SCHEDULES).unwrap() {
        Some(t) => rows::decode_rows(&t, |k, v| (k, v.to_vec())).unwrap(),
        None => vec![],
    }
}

fn drop_summaries(store: &Store) {
    let db = store.writer().unwrap();
    let txn = db.begin_write().unwrap();
    assert!(txn.delete_table(JOB_SCHEDULES).unwrap());
    txn.commit().unwrap();
}

/// A database from before the `job_schedules` table opens and its scheduler load finds every
/// job, decoded from the `jobs` rows; that load builds the summaries (one write), and a load
/// of a file whose table is gone altogether does the same.
#[test]
fn a_database_without_job_summaries_opens_serves_its_jobs_and_builds_them() {
    let dir = temp_dir("no-summaries");
    let path = dir.join("v1.redb");
    let server = testing::server();
    let recs = [cron_record(3, "raid"), job_record(9, "weekly")];
    let rows: Vec<(u64, Vec<u8>)> = recs
        .iter()
        .map(|r| (r.id.as_u64(), encode_job_for_fixture(r)))
        .collect();
    write_v1_fixture(&path, &server, &[], &rows).unwrap();

    let (store, _) = Store::open_appliance(&path).unwrap();
    assert!(summary_rows(&store).is_empty());
    let loaded = store.job_summaries().unwrap();
    assert!(loaded.damaged.is_empty());
    let want: Vec<_> = recs.iter().map(JobRecord::summary).collect();
    assert_eq!(loaded.rows, want);
    assert_eq!(summary_rows(&store).len(), 2, "built at the first load");
    assert_eq!(store.job_summaries().unwrap().rows, want);
    // The jobs themselves are untouched.
    assert_eq!(store.jobs().unwrap().rows.len(), 2);
    assert_eq!(
        store.job(JobId::from_u64(3)).unwrap().unwrap().spec,
        recs[0].spec
    );

    // A file whose table is missing altogether (written before the table existed, at the
    // current schema version).
    drop_summaries(&store);
    assert_eq!(store.job_summaries().unwrap().rows, want);
    assert_eq!(summary_rows(&store).len(), 2);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// A summary counts only while it was taken from the `jobs` row now stored: a row changed
/// behind the store's back is decoded in full (or reported damaged), its summary rewritten,
/// and a quarantined row takes its summary with it.
#[test]
fn a_summary_is_trusted_only_for_the_row_it_was_taken_from() {
    let (store, dir) = temp_store("summaries");
    assert!(store.insert_job(&cron_record(1, "alpha"), None).unwrap());
    assert!(store.insert_job(&job_record(2, "beta"), None).unwrap());
    assert_eq!(summary_rows(&store).len(), 2, "written with the job");
    let names = |store: &Store| -> Vec<String> {
        let l = store.job_summaries().unwrap();
        l.rows.iter().map(|s| s.name.to_string()).collect()
    };
    assert_eq!(names(&store), ["alpha", "beta"]);

    // The summary is what the load uses while its hash matches the row...
    let row = encode_job_for_fixture(&cron_record(1, "alpha"));
    let forged = schedules::encode_schedule(&cron_record(1, "from-the-summary"), &row);
    {
        let db = store.writer().unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(JOB_SCHEDULES)
            .unwrap()
            .insert(1, forged.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert_eq!(names(&store), ["from-the-summary", "beta"]);

    // ...and not once the row changes: an older appliance rewrote job 1.
    let mut renamed = cron_record(1, "gamma");
    renamed.next_fire_at = Some(ts("2031-01-02T18:45:00Z"));
    store
        .write_raw_row_for_tests(
            "jobs",
            &JobId::from_u64(1).to_string(),
            &encode_job_for_fixture(&renamed),
        )
        .unwrap();
    let loaded = store.job_summaries().unwrap();
    assert_eq!(loaded.rows[0], renamed.summary());
    let rewritten = summary_rows(&store);
    assert_eq!(
        rewritten[0],
        (
            1,
            schedules::encode_schedule(&renamed, &encode_job_for_fixture(&renamed))
        )
    );

    // A damaged row is reported as `Store::jobs` reports it, summary or not.
    let garbage = b"{not json".to_vec();
    store
        .write_raw_row_for_tests("jobs", &JobId::from_u64(2).to_string(), &garbage)
        .unwrap();
    let loaded = store.job_summaries().unwrap();
    assert_eq!(names(&store), ["gamma"]);
    assert_eq!(loaded.damaged, store.jobs().unwrap().damaged);
    assert_eq!(loaded.damaged[0].key, JobId::from_u64(2).to_string());
    store.doctor(true, &Actor::local_cli(), 5).unwrap();
    assert_eq!(
        summary_rows(&store).iter().map(|r| r.0).collect::<Vec<_>>(),
        [1],
        "the quarantined row's summary went with it"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// A file whose summaries are in the earlier JSON form (as the appliance wrote them before
/// the binary rows, hash and all) opens and starts from its `jobs` rows, not from those
/// summaries, and the load rewrites every summary in the current form.
#[test]
fn summaries_in_the_earlier_json_form_are_rebuilt_from_the_rows() {
    let (store, dir) = temp_store("json-summaries");
    let recs = [cron_record(1, "alpha"), job_record(2, "beta")];
    for r in &recs {
        assert!(store.insert_job(r, None).unwrap());
    }
    // The rows main wrote before this format: JSON, with the hash of the row they were taken
    // from. Their names are forged so a load that trusted them would show it.
    let json_row = |r: &JobRecord| {
        let row = encode_job_for_fixture(r);
        let trigger = match &r.spec.trigger {
            crate::sched::Trigger::Cron { expr, zone, .. } => serde_json::json!({"cron": {
                "expr": expr.as_str(), "zone": zone.name(), "start": null, "end": null}}),
            crate::sched::Trigger::Every {
                interval, start, ..
            } => serde_json::json!({"every": {
                "interval_ns": interval.as_nanos() as u64, "start": start, "end": null}}),
            crate::sched::Trigger::At(at) => serde_json::json!({"at": {"at": at}}),
        };
        serde_json::to_vec(&serde_json::json!({
            "row_hash": schedules::row_hash(&row),
            "name": format!("json-{}", r.spec.name.as_str()),
            "trigger": trigger,
            "misfire_grace_ns": r.spec.misfire_grace.as_nanos() as u64,
            "coalesce": r.spec.coalesce,
            "max_instances": r.spec.max_instances,
            "jitter_ns": r.spec.jitter.as_nanos() as u64,
            "paused": r.spec.paused,
            "next_fire_at": r.next_fire_at,
        }))
        .unwrap()
    };
    {
        let db = store.writer().unwrap();
        let txn = db.begin_write().unwrap();
        let mut t = txn.open_table(JOB_SCHEDULES).unwrap();
        for r in &recs {
            t.insert(r.id.as_u64(), json_row(r).as_slice()).unwrap();
        }
        drop(t);
        txn.commit().unwrap();
    }
    let path = dir.join("db.redb");
    drop(store);
    let store = Store::open(&path).unwrap();
    let loaded = store.job_summaries().unwrap();
    assert!(loaded.damaged.is_empty());
    let want: Vec<_> = recs.iter().map(JobRecord::summary).collect();
    assert_eq!(
        loaded.rows, want,
        "decoded from the rows, not the JSON summaries"
    );
    let rewritten: Vec<_> = recs
        .iter()
        .map(|r| {
            let row = encode_job_for_fixture(r);
            (r.id.as_u64(), schedules::encode_schedule(r, &row))
        })
        .collect();
    assert_eq!(
        summary_rows(&store),
        rewritten,
        "rewritten in the current form"
    );
    assert_eq!(store.job_summaries().unwrap().rows, want);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// Writes `bytes` as the `runs` row `id` (a damaged row for the tests below).
fn damage_run(store: &Store, id: u64, bytes: &[u8]) {
    let db = store.writer().unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(RUNS).unwrap().insert(id, bytes).unwrap();
    store.commit(txn).unwrap();
}

#[test]
fn a_time_window_of_runs_is_read_without_reading_older_rows() {
    let (store, dir) = temp_store("window");
    let mut runs = vec![
        run(1, "2026-01-01T00:00:00Z", RunStatus::Failed),
        run(1, "2026-01-10T00:00:00Z", RunStatus::Failed),
        run(2, "2026-01-10T01:00:00Z", RunStatus::Missed),
        run(2, "2026-01-10T02:00:00Z", RunStatus::Skipped),
        run(1, "2026-01-10T03:00:00Z", RunStatus::Succeeded),
        // Recorded late (catch-up after downtime): a new id, a time before the window.
        run(2, "2026-01-09T12:00:00Z", RunStatus::Missed),
        run(1, "2026-01-09T13:00:00Z", RunStatus::Running),
    ];
    store.start_runs(&mut runs, &[]).unwrap();
    // The oldest run's row is damaged: reading the window must never touch it (a full scan
    // fails on it, as `runs_page` does).
    damage_run(&store, 1, b"{not json");
    let since = ts("2026-01-09T23:00:00Z");
    assert_eq!(
        store.run_counts_since(since).unwrap(),
        RunCounts {
            failed: 1,
            missed: 1,
            skipped: 1
        }
    );
    let page = store
        .runs_page(&RunFilter {
            since: Some(since),
            limit: 10,
            ..RunFilter::default()
        })
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![5, 4, 3, 2]
    );
    let page = store
        .runs_page(&RunFilter {
            since: Some(since),
            before: Some(4),
            status: Some(RunStatus::Missed),
            limit: 10,
            ..RunFilter::default()
        })
        .unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), vec![3]);

    // Pruning before 01:30 removes 2, 3 and the late 6; never the damaged 1 (left for
    // `appliance doctor`) or the running 7.
    assert_eq!(store.prune_runs(ts("2026-01-10T01:30:00Z")).unwrap(), 3);
    let left = |job: u64| -> Vec<u64> {
        store
            .runs_page(&RunFilter {
                job: Some(JobId::from_u64(job)),
                limit: 10,
                ..RunFilter::default()
            })
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(left(2), vec![4]);
    assert!(matches!(
        store.runs_page(&RunFilter {
            job: Some(JobId::from_u64(1)),
            limit: 10,
            ..RunFilter::default()
        }),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(
        store.run_counts_since(ts("2026-01-01T00:00:00Z")).unwrap(),
        RunCounts {
            failed: 0,
            missed: 0,
            skipped: 1
        },
        "what is left: 4 skipped, 5 succeeded, 7 running (1 is damaged)"
    );

    // A row moved aside (doctor --quarantine) leaves index entries; the next prune drops them.
    store.doctor(true, &Actor::local_cli(), 5).unwrap();
    assert_eq!(store.prune_runs(Timestamp::MAX).unwrap(), 2, "4 and 5");
    let db = store.reader().unwrap();
    let txn = db.begin_read().unwrap();
    let times: Vec<(u64, u64)> = txn
        .open_table(RUN_TIMES)
        .unwrap()
        .iter()
        .unwrap()
        .map(|r| r.unwrap().0.value())
        .collect();
    assert_eq!(times.iter().map(|k| k.1).collect::<Vec<_>>(), vec![7]);
    let by_job = redb::ReadableTableMetadata::len(&txn.open_table(JOB_RUNS).unwrap()).unwrap();
    assert_eq!(by_job, 1, "only the running 7 is indexed");
    drop(txn);
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}

/// The run ids `open_runs` lists.
pub(super) fn open_ids(store: &Store) -> Vec<u64> {
    let db = store.reader().unwrap();
    let txn = db.begin_read().unwrap();
    let ids = txn
        .open_table(OPEN_RUNS)
        .unwrap()
        .iter()
        .unwrap()
        .map(|r| r.unwrap().0.value())
        .collect();
    ids
}

fn run_ids(runs: &[RunRecord]) -> Vec<u64> {
    runs.iter().map(|r| r.id).collect()
}

#[test]
fn a_start_reads_only_the_open_runs_never_a_damaged_finished_row() {
    let (store, dir) = temp_store("open-runs");
    let mut runs = vec![
        run(1, "2026-01-01T00:00:00Z", RunStatus::Succeeded),
        run(1, "2026-01-02T00:00:00Z", RunStatus::Running),
        run(2, "2026-01-02T00:00:00Z", RunStatus::Failed),
        run(2, "2026-01-03T00:00:00Z", RunStatus::Running),
        run(3, "2026-01-03T00:00:00Z", RunStatus::Queued),
    ];
    store.start_runs(&mut runs, &[]).unwrap();
    assert_eq!(open_ids(&store), vec![2, 4, 5]);
    // A finished row is damaged: finding the interrupted runs must not read it (a full scan
    // of the history reports it as damaged).
    damage_run(&store, 1, b"{not json");
    let loaded = store.unfinished_runs().unwrap();
    assert!(loaded.damaged.is_empty(), "{:?}", loaded.damaged);
    assert_eq!(run_ids(&loaded.rows), vec![2, 4], "running ones only");

    // Finishing a run takes it out of the index in the same write.
    runs[1].status = RunStatus::Failed;
    store.update_runs(&runs[1..2]).unwrap();
    assert_eq!(open_ids(&store), vec![4, 5]);
    assert_eq!(run_ids(&store.unfinished_runs().unwrap().rows), vec![4]);

    // An open run whose row is damaged is still read at start, and reported.
    damage_run(&store, 4, b"{\"id\": 4, truncated");
    let loaded = store.unfinished_runs().unwrap();
    assert!(loaded.rows.is_empty());
    let keys: Vec<&str> = loaded.damaged.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, vec!["4"]);

    // doctor --quarantine moves 1 and 4 aside, and 4 leaves the index with its row.
    let moved = store.doctor(true, &Actor::local_cli(), 5).unwrap().damaged;
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert_eq!(open_ids(&store), vec![5]);
    let loaded = store.unfinished_runs().unwrap();
    assert!(loaded.rows.is_empty() && loaded.damaged.is_empty());
    // Clearing the history keeps the queued run and its entry.
    assert_eq!(store.prune_runs(Timestamp::MAX).unwrap(), 2, "3 and 2");
    assert_eq!(open_ids(&store), vec![5]);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_handler_run_leaves_the_open_index_when_its_task_finishes() {
    use crate::queue::{Task, TaskState};
    let (store, dir) = temp_store("open-task");
    let at = ts("2026-01-01T00:00:00Z");
    let mut runs = vec![run(1, "2026-01-01T00:00:00Z", RunStatus::Queued)];
    let task = Task::new(
        JobId::from_u64(1),
        "bot",
        "send_message",
        &serde_json::Map::new(),
        at,
        crate::sched::Retry {
            attempts: 1,
            backoff: std::time::Duration::from_secs(1),
        },
        std::time::Duration::from_secs(5),
        at,
    );
    let mut tasks = vec![(0, task)];
    store
        .start_runs_with_tasks(&mut runs, &[], &mut tasks)
        .unwrap();
    assert_eq!(open_ids(&store), vec![1]);
    let mut done = tasks[0].1.clone();
    done.state = TaskState::Succeeded;
    done.finished_at = Some(at);
    store.apply_task_changes(&[done], &[]).unwrap();
    assert!(open_ids(&store).is_empty());
    let page = store.runs_page(&RunFilter {
        limit: 10,
        ..RunFilter::default()
    });
    assert_eq!(page.unwrap()[0].status, RunStatus::Succeeded);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
