//! Consistent snapshots of the open database, taken while it serves.
//!
//! Layer: storage (part of `store`). [`Store::backup_to`] copies every table inside **one**
//! redb read transaction — a snapshot of the last commit, taken without stopping writers —
//! into a fresh redb file built under a temporary name beside the destination (mode 0600, it
//! holds the server's private key), committed durably, fsynced, and linked into place only if
//! nothing is there: a backup never overwrites a file. Whatever committed before the read
//! transaction began (every write the API answered 201/200 for by then) is in the backup.
//!
//! Every table in the file must be one this module knows how to copy; an unknown table fails
//! the backup rather than silently leaving it out.

use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::TableHandle as _;

use super::*;

/// What a backup holds, for the operator's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The file written.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The schema version it was written with.
    pub schema_version: u32,
    /// The server's public key (the private key is in the file too).
    pub server_public_key: String,
    /// Peers it holds.
    pub peers: u64,
    /// Jobs it holds.
    pub jobs: u64,
    /// Runs it holds.
    pub runs: u64,
}

/// Why a backup was not written. Nothing is left at the destination in every case.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Something already exists at the destination; backups never overwrite.
    #[error("{path} already exists; a backup never overwrites a file: choose a new name or move it away")]
    Exists {
        /// The destination.
        path: String,
    },
    /// The destination's directory is missing or is not a directory.
    #[error("cannot write a backup to {path}: its directory {dir} does not exist")]
    NoDirectory {
        /// The destination.
        path: String,
        /// Its missing directory.
        dir: String,
    },
    /// Writing the file failed (permissions, a full disk, ...).
    #[error("cannot write the backup {path}: {source}")]
    Write {
        /// The destination.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database holds a table this version cannot copy (written by a newer appliance?).
    #[error(
        "the database has a table '{0}' that this appliance cannot back up; upgrade appliance"
    )]
    UnknownTable(String),
    /// Reading the database or writing the copy failed inside redb.
    #[error("the backup failed: {0}")]
    Store(#[from] StoreError),
}

/// Tables a backup copies, by name: every table of [`SCHEMA_VERSION`].
const COPIED: &[&str] = &[
    "meta",
    "peers",
    "peer_stats",
    "audit",
    "jobs",
    "job_schedules",
    "runs",
    "job_runs",
    "run_times",
    "open_runs",
    "quarantine",
    "tasks",
    "handlers",
];

/// Copies every row of `def` from `src` into `dst` (a missing source table is skipped).
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &redb::ReadTransaction,
    dst: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let Some(from) = open_existing(src, def)? else {
        return Ok(0);
    };
    let mut to = dst.open_table(def)?;
    let mut n = 0;
    for row in from.iter()? {
        let (k, v) = row?;
        to.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}

/// A temporary name beside `dest`, unique within this process.
fn temp_beside(dest: &Path, tag: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    dest.with_file_name(format!(
        ".{name}.{}.{}.{tag}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Fsyncs a directory so a new entry in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let _ = fs::File::open(dir).and_then(|d| d.sync_all());
}

impl Store {
    /// Writes a consistent snapshot of the whole database to `dest` (mode 0600), which must
    /// not exist. Safe while serving: writers continue; the snapshot is the last commit
    /// before this call's read transaction began.
    pub fn backup_to(&self, dest: &Path) -> Result<BackupInfo, BackupError> {
        let shown = dest.display().to_string();
        let write = |source: std::io::Error| BackupError::Write {
            path: shown.clone(),
            source,
        };
        if fs::symlink_metadata(dest).is_ok() {
            return Err(BackupError::Exists { path: shown });
        }
        let dir = dest
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(BackupError::NoDirectory {
                path: shown,
                dir: dir.display().to_string(),
            });
        }
        // One read transaction: the snapshot (the handle is held until it is dropped, so a
        // reopen after an I/O error waits for the copy).
        let db = self.reader()?;
        let src = db.begin_read().map_err(StoreError::from)?;
        for t in src.list_tables().map_err(StoreError::from)? {
            if !COPIED.contains(&t.name()) {
                return Err(BackupError::UnknownTable(t.name().to_string()));
            }
        }
        let tmp = temp_beside(dest, "partial");
        // Created 0600 before redb writes a byte: the server key is never readable by others.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write)?;
        let built = (|| -> Result<(u64, u64, u64), StoreError> {
            let copy = super::footprint::builder()
                .create(&tmp)
                .map_err(|e| StoreError::Redb(Box::new(e.into())))?;
            let dst = copy.begin_write()?;
            copy_table(&src, &dst, META)?;
            let peers = copy_table(&src, &dst, PEERS)?;
            copy_table(&src, &dst, PEER_STATS)?;
            copy_table(&src, &dst, AUDIT)?;
            let jobs = copy_table(&src, &dst, JOBS)?;
            copy_table(&src, &dst, JOB_SCHEDULES)?;
            let runs = copy_table(&src, &dst, RUNS)?;
            copy_table(&src, &dst, JOB_RUNS)?;
            copy_table(&src, &dst, RUN_TIMES)?;
            copy_table(&src, &dst, OPEN_RUNS)?;
            copy_table(&src, &dst, QUARANTINE)?;
            copy_table(&src, &dst, super::tasks::TASKS)?;
            copy_table(&src, &dst, super::tasks::HANDLERS)?;
            dst.commit()?;
            Ok((peers, jobs, runs))
        })();
        drop(src);
        drop(db);
        let (peers, jobs, runs) = match built {
            Ok(counts) => counts,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        let finish = (|| -> std::io::Result<u64> {
            let f = fs::File::open(&tmp)?;
            f.sync_all()?;
            let len = f.metadata()?.len();
            // A hard link fails if anything appeared at `dest` meanwhile: never overwrite.
            fs::hard_link(&tmp, dest)?;
            Ok(len)
        })();
        let _ = fs::remove_file(&tmp);
        let bytes = match finish {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists { path: shown })
            }
            Err(e) => return Err(write(e)),
        };
        sync_dir(dir);
        let server = self.server()?;
        Ok(BackupInfo {
            path: shown,
            bytes,
            schema_version: self.schema_version()?.unwrap_or(SCHEMA_VERSION),
            server_public_key: server
                .map(|s| s.private_key.public_key().to_base64())
                .unwrap_or_default(),
            peers,
            jobs,
            runs,
        })
    }
}

/// Why a restore did not happen. The data directory is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The backup file is missing.
    #[error("there is no backup at {path}")]
    Missing {
        /// The backup asked for.
        path: String,
    },
    /// The backup is not a usable appliance database (empty, damaged, no server key, or
    /// written by a newer appliance).
    #[error("{path} is not a usable appliance backup: {reason}")]
    Unusable {
        /// The backup.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Writing into the data directory failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Something appeared at the destination while restoring.
    #[error("{path} appeared while restoring; nothing was replaced")]
    Raced {
        /// The destination.
        path: String,
    },
}

/// What [`restore_file`] put in place.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The restored server's public key: phones' configs must name it.
    pub server_public_key: String,
    /// Schema version of the backup as written (before any upgrade).
    pub from_version: u32,
    /// Peers restored.
    pub peers: usize,
    /// Jobs restored.
    pub jobs: usize,
}

/// Copies the backup `src` to `dest` (which must not exist): the bytes are copied to a
/// temporary file beside `dest` (mode 0600), opened and checked there — and upgraded to the
/// current schema, so the backup file itself is never written — fsynced, and linked into
/// place. `dest`'s directory must exist.
pub fn restore_file(src: &Path, dest: &Path) -> Result<Restored, RestoreError> {
    let shown = src.display().to_string();
    let write = |p: &Path, source: std::io::Error| RestoreError::Write {
        path: p.display().to_string(),
        source,
    };
    let mut input = match fs::File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RestoreError::Missing { path: shown })
        }
        Err(e) => return Err(write(src, e)),
    };
    let tmp = temp_beside(dest, "restoring");
    let copied = (|| -> std::io::Result<()> {
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::copy(&mut input, &mut out)?;
        out.sync_all()
    })();
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(write(dest, e));
    }
    // The version as written, before the upgrade at open (0: unreadable; the open says why).
    let from_version = quietly(|| {
        Database::open(&tmp)
            .ok()
            .and_then(|db| super::read_schema_version(&db).ok().flatten())
    })
    .ok()
    .flatten()
    .unwrap_or(0);
    let checked = Store::open_appliance(&tmp).map(|(store, server)| {
        let peers = store.peers().map(|l| l.rows.len()).unwrap_or(0);
        let jobs = store.jobs().map(|l| l.rows.len()).unwrap_or(0);
        Restored {
            server_public_key: server.private_key.public_key().to_base64(),
            from_version,
            peers,
            jobs,
        }
    });
    let restored = match checked {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            let reason = match e {
                OpenError::Damaged { reason, .. } => reason,
                e => e.to_string().replace(&tmp.display().to_string(), "it"),
            };
            return Err(RestoreError::Unusable {
                path: shown,
                reason,
            });
        }
    };
    let placed = fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| fs::hard_link(&tmp, dest));
    let _ = fs::remove_file(&tmp);
    match placed {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(RestoreError::Raced {
                path: dest.display().to_string(),
            })
        }
        Err(e) => return Err(write(dest, e)),
    }
    sync_dir(dest.parent().unwrap_or(Path::new(".")));
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "appliance-backup-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    use super::super::testing::server;

    use super::super::tests::job;

    #[test]
    fn a_backup_is_a_private_snapshot_that_restores_and_never_overwrites() {
        let dir = temp_dir("snap");
        let store = Store::create(&dir.join("live.redb"), Some(&server())).unwrap();
        for id in 1..=20 {
            assert!(store.insert_job(&job(id), None).unwrap());
        }
        let dest = dir.join("b1.redb");
        let info = store.backup_to(&dest).unwrap();
        assert_eq!(info.jobs, 20);
        assert_eq!(info.schema_version, SCHEMA_VERSION);
        assert_eq!(
            info.server_public_key,
            server().private_key.public_key().to_base64()
        );
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Writes after the snapshot are not in it.
        assert!(store.insert_job(&job(21), None).unwrap());
        // Never overwrites, and leaves no temporary file behind.
        let before = fs::read(&dest).unwrap();
        assert!(matches!(
            store.backup_to(&dest),
            Err(BackupError::Exists { .. })
        ));
        assert_eq!(fs::read(&dest).unwrap(), before);
        assert!(matches!(
            store.backup_to(&dir.join("nope/b.redb")),
            Err(BackupError::NoDirectory { .. })
        ));
        let stray: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");

        let restored_path = dir.join("restored.redb");
        let r = restore_file(&dest, &restored_path).unwrap();
        assert_eq!(r.jobs, 20);
        assert_eq!(r.server_public_key, info.server_public_key);
        let (restored, srv) = Store::open_appliance(&restored_path).unwrap();
        assert_eq!(
            srv.private_key.public_key(),
            server().private_key.public_key()
        );
        assert_eq!(restored.jobs().unwrap().rows.len(), 20);
        drop(restored);
        // The destination exists now: a second restore refuses and changes nothing.
        assert!(matches!(
            restore_file(&dest, &restored_path),
            Err(RestoreError::Raced { .. })
        ));
        drop(store);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_version_1_backup_restores_upgraded_and_the_backup_is_left_alone() {
        let dir = temp_dir("v1");
        let old = dir.join("old.redb");
        migrate::write_v1_fixture(
            &old,
            &server(),
            &[],
            &[(3, migrate::encode_job_for_fixture(&job(3)))],
        )
        .unwrap();
        let before = fs::read(&old).unwrap();
        let dest = dir.join("appliance.redb");
        let r = restore_file(&old, &dest).unwrap();
        assert_eq!(r.from_version, 1);
        assert_eq!(r.jobs, 1);
        assert_eq!(fs::read(&old).unwrap(), before, "the backup was written to");
        let store = Store::open(&dest).unwrap();
        assert_eq!(store.schema_version().unwrap(), Some(SCHEMA_VERSION));
        drop(store);
        // A file that is not a database is refused and nothing is placed.
        let junk = dir.join("junk");
        fs::write(&junk, b"hello").unwrap();
        let dest2 = dir.join("other.redb");
        let err = restore_file(&junk, &dest2).unwrap_err();
        assert!(
            matches!(err, RestoreError::Unusable { .. }),
            "{err}: {err:?}"
        );
        assert!(!dest2.exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn every_table_of_a_new_database_is_copied() {
        let dir = temp_dir("tables");
        let store = Store::create(&dir.join("db.redb"), Some(&server())).unwrap();
        let db = store.reader().unwrap();
        let txn = db.begin_read().unwrap();
        let mut names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        names.sort();
        let mut copied: Vec<String> = COPIED.iter().map(|s| s.to_string()).collect();
        copied.sort();
        assert_eq!(names, copied, "a new table must be added to the backup");
        drop(txn);
        drop(db);
        drop(store);
        let _ = fs::remove_dir_all(dir);
    }
}
