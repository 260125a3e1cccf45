//! Schema upgrades: ordered steps from version N to N+1, run when a file is opened.
//!
//! Layer: storage (part of `store`). [`upgrade`] runs every step from the file's recorded
//! version up to [`SCHEMA_VERSION`] inside **one** write transaction and records the new version
//! in the same transaction, so a failure (or a crash) leaves the file exactly as it was and the
//! next open tries again. Steps only add: they never drop a table or rewrite a row in a way an
//! older step's reader could not undo by restoring a backup.
//!
//! Versions:
//! - 1: `meta`, `peers`, `peer_stats`, `audit`, `jobs`, `runs`, `job_runs`. Files written
//!   before the damaged-row quarantine existed have no `quarantine` table, and readers had to
//!   treat every table as possibly absent.
//! - 2: every table exists (the 1 → 2 step creates the missing ones, `quarantine` included).
//!   A backup taken from an older appliance therefore restores and is upgraded at first open.
//! - 3: the handler queue's `tasks` and `handlers` tables exist (the 2 → 3 step creates them).
//! - 4: `run_times` indexes the runs by scheduled time (the 3 → 4 step fills it from `runs`).
//! - 5: `open_runs` lists the runs still queued, leased or running (the 4 → 5 step fills it
//!   from `runs`), so a start reads only those.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::model::{JobRecord, ServerRecord};

/// One upgrade step: turns a file of version `from` into `from + 1` inside the given
/// transaction.
type Step = fn(&redb::WriteTransaction) -> Result<(), StoreError>;

/// The steps, in order: `(from, what it does, step)`.
const STEPS: &[(u32, &str, Step)] = &[
    (
        1,
        "create every table that is missing (quarantine)",
        create_tables,
    ),
    (
        2,
        "create the handler queue's tables (tasks, handlers)",
        create_tables,
    ),
    (
        3,
        "index the runs by scheduled time (run_times)",
        index_run_times,
    ),
    (4, "index the open runs (open_runs)", index_open_runs),
];

/// Opens (creating when missing) every table of the current layout. Used by `init` for a
/// new file and by the 1 → 2 step.
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(PEERS)?;
    txn.open_table(PEER_STATS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(JOBS)?;
    txn.open_table(JOB_SCHEDULES)?;
    txn.open_table(RUNS)?;
    txn.open_table(JOB_RUNS)?;
    txn.open_table(RUN_TIMES)?;
    txn.open_table(OPEN_RUNS)?;
    txn.open_table(QUARANTINE)?;
    txn.open_table(super::tasks::TASKS)?;
    txn.open_table(super::tasks::HANDLERS)?;
    Ok(())
}

/// The 3 → 4 step: every table of the current layout, and `run_times` filled from `runs`.
fn index_run_times(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    create_tables(txn)?;
    super::runs::index_run_times(txn)
}

/// The 4 → 5 step: every table of the current layout, and `open_runs` filled from `runs`.
fn index_open_runs(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    create_tables(txn)?;
    super::runs::index_open_runs(txn)
}

/// Upgrades `store` from version `from` to [`SCHEMA_VERSION`] in one transaction.
pub(super) fn upgrade(store: &Store, from: u32) -> Result<(), StoreError> {
    let db = store.writer()?;
    let txn = db.begin_write()?;
    for (at, what, step) in STEPS.iter().filter(|(at, _, _)| *at >= from) {
        tracing::info!(
            from = at,
            to = at + 1,
            step = what,
            "upgrading the database schema"
        );
        step(&txn)?;
    }
    txn.open_table(META)?.insert(
        KEY_SCHEMA,
        serde_json::to_vec(&SCHEMA_VERSION).unwrap().as_slice(),
    )?;
    store.commit(txn)?;
    Ok(())
}

/// Test support: writes a version-1 database at `path` the way appliance 0.1 (before the
/// quarantine table) laid it out — `meta` with `schema_version` 1 and the server row, the
/// seven v1 tables, and the given peer and job rows (already encoded) — using redb directly,
/// not this module's current code paths.
#[doc(hidden)]
pub fn write_v1_fixture(
    path: &Path,
    server: &ServerRecord,
    peers: &[(&str, Vec<u8>)],
    jobs: &[(u64, Vec<u8>)],
) -> Result<(), StoreError> {
    let db = Database::create(path).map_err(|e| StoreError::Redb(Box::new(e.into())))?;
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(KEY_SCHEMA, b"1".as_slice())?;
        let row = super::peer_rows::encode_server(server);
        meta.insert(KEY_SERVER, row.as_slice())?;
        let mut p = txn.open_table(PEERS)?;
        for (name, bytes) in peers {
            p.insert(*name, bytes.as_slice())?;
        }
        let mut j = txn.open_table(JOBS)?;
        for (id, bytes) in jobs {
            j.insert(*id, bytes.as_slice())?;
        }
        txn.open_table(PEER_STATS)?;
        txn.open_table(AUDIT)?;
        txn.open_table(RUNS)?;
        txn.open_table(JOB_RUNS)?;
    }
    txn.commit()?;
    drop(db);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| StoreError::Redb(Box::new(e.into())))?;
    Ok(())
}

/// Encodes a job record as stored bytes (for fixtures of older layouts; the job row format is
/// the same in versions 1 and 2).
#[doc(hidden)]
pub fn encode_job_for_fixture(r: &JobRecord) -> Vec<u8> {
    super::jobs::encode_job(r)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ::peers::{Endpoint, Ipv4Net, PeerName, PrivateKey, Role};
    use redb::TableHandle as _;

    use super::super::tests::{open_ids, temp_dir};
    use super::*;
    use crate::model::PeerRecord;

    fn tables(path: &Path) -> Vec<String> {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let mut names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|h| h.name().to_string())
            .collect();
        names.sort();
        names
    }

    /// Turns the closed file at `path` into what schema `version` held: no `table` (added by
    /// the step after it).
    fn as_version<K: redb::Key + 'static, V: redb::Value + 'static>(
        path: &Path,
        table: TableDefinition<K, V>,
        version: u32,
    ) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(table).unwrap());
        let version = version.to_string();
        txn.open_table(META)
            .unwrap()
            .insert(KEY_SCHEMA, version.as_bytes())
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        assert!(!tables(path).contains(&table.name().to_string()));
    }

    #[test]
    fn a_version_1_file_is_upgraded_at_open_keeping_every_row() {
        let dir = temp_dir("migrate");
        let path = dir.join("v1.redb");
        let server = ServerRecord {
            private_key: PrivateKey::from_bytes([9; 32]),
            listen_port: 51820,
            interface: Ipv4Net::parse("10.88.88.1/24").unwrap(),
            endpoint: Endpoint::parse("vpn.example.org", 51820).unwrap(),
            created_at: 1,
        };
        let peer = PeerRecord {
            name: PeerName::new("leader").unwrap(),
            role: Role::Admin,
            public_key: PrivateKey::from_bytes([7; 32]).public_key(),
            preshared_key: None,
            address: Ipv4Addr::new(10, 88, 88, 2),
            allowed_ips: vec![Ipv4Net::parse("10.88.88.2/32").unwrap()],
            enabled: true,
            created_at: 1,
        };
        write_v1_fixture(&path, &server, &[("leader", encode_peer(&peer))], &[]).unwrap();
        assert!(!tables(&path).contains(&"quarantine".to_string()));

        let (store, back) = Store::open_appliance(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), Some(SCHEMA_VERSION));
        assert_eq!(
            back.private_key.public_key(),
            server.private_key.public_key()
        );
        assert_eq!(store.peers().unwrap().rows, vec![peer]);
        assert_eq!(store.quarantined_count().unwrap(), 0);
        drop(store);
        assert!(tables(&path).contains(&"quarantine".to_string()));
        // Opening again is a no-op (already current).
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), Some(SCHEMA_VERSION));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_version_3_file_gets_its_runs_indexed_by_time_at_open() {
        use crate::model::{RunRecord, RunStatus};
        use crate::sched::JobId;
        let dir = temp_dir("migrate3");
        let path = dir.join("v3.redb");
        let run = |at: &str, status| RunRecord {
            status,
            ..RunRecord::starting(
                JobId::from_u64(1),
                "j".into(),
                at.parse().unwrap(),
                "schedule",
            )
        };
        {
            let store = Store::create(&path, None).unwrap();
            let mut runs = vec![
                run("2026-01-01T00:00:00Z", RunStatus::Failed),
                run("2026-01-05T00:00:00Z", RunStatus::Missed),
            ];
            store.start_runs(&mut runs, &[]).unwrap();
        }
        // What a version 3 file holds: the same runs, no `run_times` (nor `open_runs`).
        as_version(&path, OPEN_RUNS, 4);
        as_version(&path, RUN_TIMES, 3);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), Some(SCHEMA_VERSION));
        let since = "2026-01-02T00:00:00Z".parse().unwrap();
        assert_eq!(store.run_counts_since(since).unwrap().missed, 1);
        assert_eq!(
            store.prune_runs(since).unwrap(),
            1,
            "the older run is found by time"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_version_4_file_gets_its_open_runs_indexed_at_open() {
        use crate::model::{RunRecord, RunStatus};
        use crate::sched::JobId;
        let dir = temp_dir("migrate4");
        let path = dir.join("v4.redb");
        let run = |status| RunRecord {
            status,
            ..RunRecord::starting(
                JobId::from_u64(1),
                "j".into(),
                "2026-01-01T00:00:00Z".parse().unwrap(),
                "schedule",
            )
        };
        {
            let store = Store::create(&path, None).unwrap();
            let mut runs = vec![
                run(RunStatus::Succeeded),
                run(RunStatus::Running),
                run(RunStatus::Failed),
                run(RunStatus::Leased),
            ];
            store.start_runs(&mut runs, &[]).unwrap();
        }
        // What a version 4 file holds: the same runs, no `open_runs`.
        as_version(&path, OPEN_RUNS, 4);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), Some(SCHEMA_VERSION));
        let running: Vec<u64> = store
            .unfinished_runs()
            .unwrap()
            .rows
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            running,
            vec![2],
            "the running run is found through the index"
        );
        assert_eq!(
            open_ids(&store),
            vec![2, 4],
            "running and leased, not the finished ones"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn steps_are_contiguous_and_end_at_the_current_version() {
        for (i, (from, _, _)) in STEPS.iter().enumerate() {
            assert_eq!(*from, i as u32 + 1);
        }
        assert_eq!(STEPS.len() as u32 + 1, SCHEMA_VERSION);
    }
}
