//! Storage layer: the one module that touches the redb file.
//!
//! Owns the table definitions, the schema version and the conversion between the rows on disk
//! (JSON in redb values) and the checked types the rest of the appliance uses. Every write is one
//! redb transaction committed with `Durability::Immediate` (redb's default), so a call that
//! returns `Ok` has reached the disk. Cores decide *what* to write (see [`crate::registry`]);
//! this module only commits it.
//!
//! redb takes an exclusive lock on the file: while `appliance serve` runs, other processes get
//! [`OpenError::Locked`] and must talk to the running server through its control socket.
//!
//! Opening never creates: [`Store::open`] needs an existing, healthy file and reports an empty,
//! truncated or foreign one as [`OpenError::Damaged`] (redb's own panics on truncated files are
//! caught and converted) without writing to it. [`Store::create`] builds a new database beside
//! the destination and links it into place only if nothing is there, so a schema or a server
//! key is never written over an existing file. A row that fails to decode does not stop the
//! loaders: [`Store::peers`] and [`Store::jobs`] return what decodes plus a list of
//! [`DamagedRow`]s, and [`Store::quarantine_damaged`] moves damaged rows, bytes intact, into the
//! `quarantine` table.
//!
//! Every operation reaches redb through one access point ([`Store`]'s `reader`/`writer`). After
//! a backend I/O error (a full disk) writes are refused with [`StoreError::DiskFull`] or
//! [`StoreError::Unavailable`] while reads go on; [`Store::recover`] reopens the same file
//! (never creating or initialising it) and clears the condition once a commit succeeds again.
//!
//! An older file is upgraded at open (`store/migrate.rs`: ordered steps in one transaction,
//! through the same `writer`); a reopen after an I/O error finds it upgraded already.
//! [`Store::backup_to`] writes a consistent snapshot while serving (`store/backup.rs`, one
//! read transaction through `reader`).
//!
//! Files, one per group of tables: this one holds [`Store`] itself (open, create, the access
//! point, recovery); `peer_rows.rs` the server record, peers and their statistics (not
//! `peers.rs`: that would shadow the `peers` crate here); `jobs.rs` jobs; `runs.rs` runs and
//! their indexes; `audit.rs` the audit trail; `tasks.rs` handler tasks and handlers;
//! `doctor.rs` damaged rows and the quarantine; `backend.rs` the storage backends under redb;
//! `error.rs` the errors; `migrate.rs` and `backup.rs` upgrades and snapshots. Each file's row types (the encodings on
//! disk) are private to it; the rest of the appliance sees [`crate::model`] types.

use std::io::Read as _;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use jiff::Timestamp;
use redb::{Database, ReadableTable, StorageBackend, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::model::ServerRecord;

/// Version of the layout below; recorded in `meta`. Opening an older file upgrades it in one
/// transaction (see `store/migrate.rs` for the steps).
pub const SCHEMA_VERSION: u32 = 5;

mod backup;
mod migrate;

pub(crate) use backup::sync_dir;
pub use backup::{restore_file, BackupError, BackupInfo, RestoreError, Restored};
#[doc(hidden)]
pub use migrate::{encode_job_for_fixture, write_v1_fixture};

mod audit;
mod backend;
mod doctor;
mod error;
mod footprint;
mod group;
mod jobs;
mod peer_rows;
mod rows;
mod runs;
mod schedules;
pub use runs::RunCounts;
mod tasks;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use audit::AuditMeter;
pub(crate) use audit::{append_audit, append_prepared, PreparedAudit};
use backend::{file_backend, open_db, quietly, BackendFactory, IoWatch, REDB_MAGIC};
pub use doctor::DoctorReport;
pub use error::{is_disk_full, OpenError, StoreError};
pub use peer_rows::encode_peer;
use rows::open_existing;
pub use rows::{DamagedRow, Loaded};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
const PEER_STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("peer_stats");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
/// Derived from `jobs`: each job's schedule summary, tagged with a hash of the `jobs` row it
/// was taken from (`store/jobs.rs`), so the scheduler starts without decoding every job.
const JOB_SCHEDULES: TableDefinition<u64, &[u8]> = TableDefinition::new("job_schedules");
const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("runs");
/// Index: (job id, run id) for a job's history.
const JOB_RUNS: TableDefinition<(u64, u64), ()> = TableDefinition::new("job_runs");
/// Index: (scheduled time in Unix milliseconds, run id) → job id, for the runs of a time window
/// (pruning, the last day's counts) without reading the whole history (`store/runs.rs`).
const RUN_TIMES: TableDefinition<(u64, u64), u64> = TableDefinition::new("run_times");
/// Index: the ids of the runs still open (queued, leased or running), so a start finds the
/// runs a stop interrupted without reading the whole history (`store/runs.rs`).
const OPEN_RUNS: TableDefinition<u64, ()> = TableDefinition::new("open_runs");
/// Damaged rows moved aside by `appliance doctor --quarantine`: key `"{table}/{key}"` (numeric
/// keys in decimal, a `#N` suffix if that name was taken), value the row's original bytes.
const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");

const KEY_SCHEMA: &str = "schema_version";
const KEY_SERVER: &str = "server";
/// Written by [`Store::recover`] to prove the disk accepts a commit again.
const KEY_PROBE: &str = "probe";

/// When a degraded condition began (shown to the operator only).
#[allow(clippy::disallowed_methods)] // storage edge: stamps the start of an I/O condition
fn wall_clock() -> Timestamp {
    Timestamp::now()
}

/// Why writes are failing, and since when.
#[derive(Debug, Clone)]
struct Degraded {
    disk_full: bool,
    reason: String,
    since: Timestamp,
}

/// Whether the store can write, for `/api/v1/health` (and later `status` and `/metrics`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageHealth {
    /// `false` from the first failed write until a write succeeds again.
    pub writable: bool,
    /// Why not (the I/O error), `None` while writable.
    pub reason: Option<String>,
    /// `true` when the reason is a full disk or an exceeded quota.
    pub disk_full: bool,
    /// When writes started failing, `None` while writable.
    pub since: Option<Timestamp>,
}

/// The open appliance database.
///
/// All access goes through its private `reader` and `writer` methods, which hand out the current
/// redb handle under a lock. After a backend I/O error redb poisons its handle, so the store
/// marks itself degraded and [`Store::recover`] drops the handle and reopens the same storage
/// (under the write lock: redb's file lock is released on drop, and no transaction outlives
/// the swap). A failed commit writes nothing, so what was committed before is all there is.
pub struct Store {
    slot: RwLock<Option<Handle>>,
    factory: BackendFactory,
    watch: Arc<IoWatch>,
    degraded: std::sync::Mutex<Option<Degraded>>,
    /// Value of the last probe write (see [`Store::recover`]).
    probes: std::sync::atomic::AtomicU64,
    /// How long each commit took (redb's `Durability::Immediate`: write and fsync), for
    /// `GET /metrics`.
    pub commit_latency: crate::metrics::Histogram,
    /// Job creates from concurrent callers share one transaction (`store/group.rs`).
    group: group::Group<redb::WriteTransaction>,
    /// Bytes of audit entries appended since the last prune (see [`AuditMeter`]).
    audit_meter: Arc<AuditMeter>,
    /// `jobs` rows decoded so far ([`Store::job_rows_read`]).
    job_rows_read: std::sync::atomic::AtomicU64,
    /// `audit` rows decoded by pruning so far ([`Store::audit_rows_decoded`]).
    audit_rows_decoded: std::sync::atomic::AtomicU64,
}

/// The current database handle, held for the life of one operation.
/// An open redb handle.
struct Handle {
    /// Always `Some` until dropped.
    db: Option<Database>,
    /// Opened over an [`Overlay`] because a real reopen failed: serves reads, never writes.
    read_only: bool,
}

impl Handle {
    fn new(db: Database, read_only: bool) -> Handle {
        Handle {
            db: Some(db),
            read_only,
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let Some(db) = self.db.take() else { return };
        // redb's Drop commits its allocator state. On a handle repaired in the overlay that
        // commit can trip a debug assertion of redb's buddy allocator (debug builds only; in
        // release it writes to the overlay and is thrown away). On a writable handle whose
        // commit failed halfway (the disk filled up or came back during it), redb has already
        // panicked once inside [`Store::commit`] and left its own locks poisoned, so its Drop
        // panics again; the handle is being replaced because it is broken, and the reopen that
        // follows repairs the file. Either way the panic must not escape into the store's
        // lock and poison it for every later operation.
        let read_only = self.read_only;
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db)));
        if dropped.is_err() {
            tracing::debug!(
                read_only,
                "redb panicked while closing a broken handle; ignored"
            );
        }
    }
}

/// The current database handle, held for the life of one operation.
struct DbGuard<'a> {
    store: &'a Store,
    guard: RwLockReadGuard<'a, Option<Handle>>,
}

impl DbGuard<'_> {
    fn read_only(&self) -> bool {
        self.guard.as_ref().is_some_and(|h| h.read_only)
    }
}

impl std::ops::Deref for DbGuard<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.guard
            .as_ref()
            .and_then(|h| h.db.as_ref())
            .expect("a guard is only made over an open handle")
    }
}

impl Drop for DbGuard<'_> {
    fn drop(&mut self) {
        self.store.note_failure();
    }
}

fn corrupt(key: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// The schema version recorded in `db`'s `meta` table, `None` if it has none.
fn read_schema_version(db: &Database) -> Result<Option<u32>, StoreError> {
    let txn = db.begin_read()?;
    let Some(table) = open_existing(&txn, META)? else {
        return Ok(None);
    };
    match table.get(KEY_SCHEMA)? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| corrupt(KEY_SCHEMA, e)),
        None => Ok(None),
    }
}

impl Store {
    /// Opens an existing database and checks its schema version. Never creates or initialises
    /// anything: a missing file is [`OpenError::Missing`]; an empty, foreign, truncated or
    /// schema-less file is [`OpenError::Damaged`] and is not written to by this check. A healthy
    /// file of an older schema version is upgraded in one transaction
    /// ([`OpenError::Migration`] if that fails, leaving it unchanged). The store then reopens
    /// the same file by itself after an I/O error (see [`Store::recover`]); a reopen needs no
    /// upgrade, as the open did it.
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        let p = path.display().to_string();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpenError::Missing { path: p })
            }
            Err(e) => {
                return Err(OpenError::Storage {
                    path: p,
                    source: Box::new(e.into()),
                })
            }
        };
        let len = meta.len();
        let damaged = |reason: String| OpenError::Damaged {
            path: p.clone(),
            len,
            reason,
        };
        if !meta.is_file() {
            return Err(damaged("it is not a regular file".into()));
        }
        if len == 0 {
            return Err(damaged("the file is empty".into()));
        }
        let mut magic = [0u8; REDB_MAGIC.len()];
        let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
        match read {
            Ok(()) if magic == REDB_MAGIC => {}
            Ok(()) => return Err(damaged("it is not a redb database".into())),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(damaged("it is too short to be a redb database".into()))
            }
            Err(e) => {
                return Err(OpenError::Storage {
                    path: p,
                    source: Box::new(e.into()),
                })
            }
        }
        let factory = file_backend(path.to_path_buf(), false);
        let watch = Arc::new(IoWatch::default());
        let db = match quietly(|| open_db(&factory, &watch, false, false)) {
            Ok(Ok(db)) => db,
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(OpenError::Locked { path: p })
            }
            Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
                if e.kind() != std::io::ErrorKind::UnexpectedEof =>
            {
                return Err(OpenError::Storage {
                    path: p,
                    source: Box::new(e.into()),
                })
            }
            Ok(Err(e)) => return Err(damaged(e.to_string())),
            Err(panic) => return Err(damaged(format!("redb could not read it: {panic}"))),
        };
        let store = Store::with_handle(db, factory, watch);
        match quietly(|| store.schema_version()) {
            Ok(Ok(Some(v))) if v > SCHEMA_VERSION => {
                Err(OpenError::SchemaTooNew { path: p, found: v })
            }
            Ok(Ok(Some(v))) if v < SCHEMA_VERSION => store.upgrade_at_open(p, v).map(|()| store),
            Ok(Ok(Some(_))) => Ok(store),
            Ok(Ok(None)) => Err(damaged("it has no appliance schema".into())),
            Ok(Err(e)) => Err(damaged(e.to_string())),
            Err(panic) => Err(damaged(format!("redb could not read it: {panic}"))),
        }
    }

    /// Upgrades a freshly opened store from schema version `from` (one write transaction
    /// through [`Store::writer`], timed like every commit).
    fn upgrade_at_open(&self, p: String, from: u32) -> Result<(), OpenError> {
        match quietly(|| migrate::upgrade(self, from)) {
            Ok(Ok(())) => {
                tracing::info!(path = %p, from, to = SCHEMA_VERSION, "database schema upgraded");
                Ok(())
            }
            Ok(Err(e)) => Err(OpenError::Migration {
                path: p,
                from,
                reason: e.to_string(),
            }),
            Err(panic) => Err(OpenError::Migration {
                path: p,
                from,
                reason: panic,
            }),
        }
    }

    /// Whether another process (normally `appliance serve`) holds the database at `path`.
    /// Unlike [`Store::open`] this never upgrades or otherwise changes the file.
    pub fn is_locked(path: &Path) -> bool {
        matches!(
            quietly(|| Database::open(path)),
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen))
        )
    }

    /// Opens an existing appliance database and reads its server record; a file without a
    /// readable server record is [`OpenError::Damaged`].
    pub fn open_appliance(path: &Path) -> Result<(Store, ServerRecord), OpenError> {
        let store = Store::open(path)?;
        let damaged = |reason: String| OpenError::Damaged {
            path: path.display().to_string(),
            len: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            reason,
        };
        match quietly(|| store.server()) {
            Ok(Ok(Some(server))) => Ok((store, server)),
            Ok(Ok(None)) => Err(damaged("it holds no server key".into())),
            Ok(Err(e)) => Err(damaged(e.to_string())),
            Err(panic) => Err(damaged(format!("redb could not read it: {panic}"))),
        }
    }

    /// Creates a new database at `path` with the schema and (for the appliance; `None` only in
    /// tests and benchmarks) the server record, then opens it. The file is built under a
    /// temporary name in the same directory (created with mode 0600) and hard-linked into
    /// place, which fails if anything exists at `path`: an existing file — even an empty one —
    /// is never initialised over ([`OpenError::Exists`]).
    pub fn create(path: &Path, server: Option<&ServerRecord>) -> Result<Store, OpenError> {
        let p = path.display().to_string();
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(OpenError::Exists { path: p });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "appliance.redb".into());
        let tmp = path.with_file_name(format!(".{name}.{}.new", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        // The temporary store is dropped (releasing redb's lock on it) before the link.
        let built = Store::open_on(p.clone(), file_backend(tmp.clone(), true)).and_then(|store| {
            match server {
                Some(server) => store.init_server(server).map(drop),
                None => Ok(()),
            }
            .map_err(|source| OpenError::Unusable {
                path: p.clone(),
                source,
            })
        });
        if let Err(e) = built {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(OpenError::Exists { path: p })
            }
            Err(e) => {
                return Err(OpenError::Storage {
                    path: p,
                    source: Box::new(e.into()),
                })
            }
        }
        if let Some(parent) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the new directory entry durable.
            let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        }
        Store::open(path)
    }

    /// Opens a database on storage the caller provides, initialising it if it is empty: `make`
    /// is called for the first open and again for every reopen after an I/O error, and must
    /// return a fresh backend over the same bytes. For tests (a backend that can pretend the
    /// disk is full).
    #[doc(hidden)]
    pub fn open_with_backend(
        make: impl Fn() -> Result<Box<dyn StorageBackend>, redb::DatabaseError> + Send + Sync + 'static,
    ) -> Result<Store, OpenError> {
        Store::open_on("(test backend)".into(), Box::new(make))
    }

    /// Opens new or existing storage from `factory` and writes the schema if it has none: the
    /// path of [`Store::create`]'s temporary file and of test backends, never of
    /// [`Store::open`].
    fn open_on(p: String, factory: BackendFactory) -> Result<Store, OpenError> {
        let watch = Arc::new(IoWatch::default());
        let db = match open_db(&factory, &watch, false, true) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(OpenError::Locked { path: p })
            }
            Err(e) => {
                return Err(OpenError::Storage {
                    path: p,
                    source: Box::new(e.into()),
                })
            }
        };
        let store = Store::with_handle(db, factory, watch);
        let unusable = |source: StoreError| OpenError::Unusable {
            path: p.clone(),
            source,
        };
        match store.schema_version().map_err(unusable)? {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(OpenError::SchemaTooNew { path: p, found: v })
            }
            Some(v) if v < SCHEMA_VERSION => store.upgrade_at_open(p, v)?,
            Some(_) => {}
            None => store.init_schema().map_err(unusable)?,
        }
        Ok(store)
    }

    /// A store over a freshly opened handle.
    fn with_handle(db: Database, factory: BackendFactory, watch: Arc<IoWatch>) -> Store {
        Store {
            slot: RwLock::new(Some(Handle::new(db, false))),
            factory,
            watch,
            degraded: std::sync::Mutex::new(None),
            probes: std::sync::atomic::AtomicU64::new(0),
            commit_latency: crate::metrics::Histogram::new(crate::metrics::LATENCY_BUCKETS),
            group: group::Group::new(group::one_commit),
            audit_meter: Arc::default(),
            job_rows_read: std::sync::atomic::AtomicU64::new(0),
            audit_rows_decoded: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Commits `txn` (begun on a handle from [`Store::writer`]), timing it for `GET /metrics`.
    /// The storage layer's one clock read: a commit is the store's own I/O (write and fsync),
    /// and only it can time it. Failed commits are timed too.
    #[allow(clippy::disallowed_methods)]
    fn commit(&self, txn: redb::WriteTransaction) -> Result<(), redb::CommitError> {
        let started = std::time::Instant::now();
        // redb asserts, rather than returning an error, when a commit finds its handle already
        // poisoned by another transaction's I/O error (a full disk hit in between). That is a
        // failed commit like any other: nothing was written, and the store reopens.
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| txn.commit())) {
            Ok(r) => r,
            Err(_) => Err(redb::CommitError::Storage(redb::StorageError::PreviousIo)),
        };
        self.commit_latency.observe_duration(started.elapsed());
        r
    }

    /// The database for a read. If the handle was poisoned by an I/O error, it is reopened
    /// first — read-only over an [`Overlay`] when the disk cannot take the reopen — so reads
    /// keep working while writes cannot.
    fn reader(&self) -> Result<DbGuard<'_>, StoreError> {
        if self.watch.get().is_some() || self.slot.read().unwrap().is_none() {
            // On failure it leaves a read-only handle whenever the file can be read.
            let _ = self.reopen();
        }
        self.guard().map_err(|_| StoreError::Unavailable {
            reason: self
                .health()
                .reason
                .unwrap_or_else(|| "the database could not be reopened".into()),
        })
    }

    /// The database for a write. While degraded, [`Store::recover`] runs first, so a write
    /// either finds the store writable again or is refused with the reason.
    fn writer(&self) -> Result<DbGuard<'_>, StoreError> {
        if self.degraded.lock().unwrap().is_some() {
            self.recover()?;
        }
        let db = self.guard()?;
        if db.read_only() {
            drop(db);
            return Err(self.refusal());
        }
        Ok(db)
    }

    fn guard(&self) -> Result<DbGuard<'_>, StoreError> {
        let guard = self.slot.read().unwrap();
        if guard.is_none() {
            return Err(self.refusal());
        }
        Ok(DbGuard { store: self, guard })
    }

    /// After every operation: if the backend failed, writes are degraded until a recovery.
    fn note_failure(&self) {
        let Some(failure) = self.watch.get() else {
            return;
        };
        let mut degraded = self.degraded.lock().unwrap();
        match degraded.as_mut() {
            Some(d) => {
                d.disk_full = failure.disk_full;
                d.reason = failure.message;
            }
            None => {
                tracing::error!(error = %failure.message, "database write failed: writes are refused until the disk accepts them again");
                *degraded = Some(Degraded {
                    disk_full: failure.disk_full,
                    reason: failure.message,
                    since: wall_clock(),
                });
            }
        }
    }

    /// The error a refused operation reports while degraded.
    pub fn refusal(&self) -> StoreError {
        match self.degraded.lock().unwrap().as_ref() {
            Some(d) if d.disk_full => StoreError::DiskFull,
            Some(d) => StoreError::Unavailable {
                reason: d.reason.clone(),
            },
            None => StoreError::Unavailable {
                reason: "the database is being reopened".into(),
            },
        }
    }

    /// Drops the current handle (poisoned or not) and opens the same storage again.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.slot.write().unwrap();
        if slot.as_ref().is_some_and(|h| !h.read_only) && self.watch.get().is_none() {
            return Ok(()); // someone else reopened it meanwhile
        }
        // redb's exclusive lock on the file goes with the old handle: drop it first.
        drop(slot.take());
        self.watch.clear();
        match open_db(&self.factory, &self.watch, false, false) {
            Ok(db) => {
                *slot = Some(Handle::new(db, false));
                tracing::info!("database reopened after an I/O error");
                Ok(())
            }
            Err(e) => {
                // Opening repairs and writes the header: on a full disk that fails too.
                if let redb::DatabaseError::Storage(redb::StorageError::Io(io)) = &e {
                    self.watch.record(io);
                }
                self.note_failure();
                tracing::warn!(error = %e, "could not reopen the database for writing; serving reads only");
                self.watch.clear();
                match open_db(&self.factory, &self.watch, true, false) {
                    Ok(db) => *slot = Some(Handle::new(db, true)),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not reopen the database even for reads")
                    }
                }
                Err(match redb::Error::from(e) {
                    redb::Error::Io(io) if is_disk_full(&io) => StoreError::DiskFull,
                    other => StoreError::Unavailable {
                        reason: other.to_string(),
                    },
                })
            }
        }
    }

    /// Tries to make the store writable again: reopens the database if an I/O error poisoned
    /// it, then commits a tiny probe (`meta`/`probe`). On success the degraded condition is
    /// cleared; otherwise the error says why writes still fail. Cheap when nothing is wrong:
    /// the periodic probe and every write while degraded call it.
    pub fn recover(&self) -> Result<(), StoreError> {
        if self.degraded.lock().unwrap().is_none() && self.watch.get().is_none() {
            return Ok(());
        }
        if self.watch.get().is_some()
            || self
                .slot
                .read()
                .unwrap()
                .as_ref()
                .is_none_or(|h| h.read_only)
        {
            self.reopen()?;
        }
        {
            let db = self.guard()?;
            let n = self
                .probes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let probe = || -> Result<(), StoreError> {
                let txn = db.begin_write()?;
                txn.open_table(META)?
                    .insert(KEY_PROBE, n.to_be_bytes().as_slice())?;
                self.commit(txn)?;
                Ok(())
            };
            if let Err(e) = probe() {
                drop(db);
                return Err(match e {
                    StoreError::Redb(_) | StoreError::Corrupt { .. } => e,
                    _ => self.refusal(),
                });
            }
        }
        if let Some(d) = self.degraded.lock().unwrap().take() {
            tracing::info!(since = %d.since, "database writable again");
        }
        Ok(())
    }

    /// Whether writes currently succeed, and if not why and since when.
    pub fn health(&self) -> StorageHealth {
        match self.degraded.lock().unwrap().as_ref() {
            None => StorageHealth {
                writable: true,
                reason: None,
                disk_full: false,
                since: None,
            },
            Some(d) => StorageHealth {
                writable: false,
                reason: Some(d.reason.clone()),
                disk_full: d.disk_full,
                since: Some(d.since),
            },
        }
    }

    /// The schema version recorded in the file (after any upgrade at open).
    pub fn schema_version(&self) -> Result<Option<u32>, StoreError> {
        read_schema_version(&*self.reader()?)
    }

    fn init_schema(&self) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(
                KEY_SCHEMA,
                serde_json::to_vec(&SCHEMA_VERSION).unwrap().as_slice(),
            )?;
        }
        migrate::create_tables(&txn)?;
        self.commit(txn)?;
        Ok(())
    }
}
