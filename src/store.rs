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

use std::cell::Cell;
use std::io::Read as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use jiff::Timestamp;
use peers::{Endpoint, Ipv4Net, PeerName, PresharedKey, PrivateKey, PublicKey, Role};
use redb::backends::FileBackend;
use redb::{Database, ReadableTable, ReadableTableMetadata, StorageBackend, TableDefinition};

use crate::sched::{JobId, JobSpec};
use serde::{Deserialize, Serialize};

/// Version of the layout below; recorded in `meta`. Opening an older file upgrades it in one
/// transaction (see `store/migrate.rs` for the steps).
pub const SCHEMA_VERSION: u32 = 3;

mod backup;
mod migrate;

pub(crate) use backup::sync_dir;
pub use backup::{restore_file, BackupError, BackupInfo, RestoreError, Restored};
#[doc(hidden)]
pub use migrate::{encode_job_for_fixture, write_v1_fixture};

mod tasks;
pub use tasks::HandlerRecord;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
const PEER_STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("peer_stats");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("runs");
/// Index: (job id, run id) for a job's history.
const JOB_RUNS: TableDefinition<(u64, u64), ()> = TableDefinition::new("job_runs");
/// Damaged rows moved aside by `appliance doctor --quarantine`: key `"{table}/{key}"` (numeric
/// keys in decimal, a `#N` suffix if that name was taken), value the row's original bytes.
const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");

const KEY_SCHEMA: &str = "schema_version";
const KEY_SERVER: &str = "server";
/// Written by [`Store::recover`] to prove the disk accepts a commit again.
const KEY_PROBE: &str = "probe";

/// Opens redb on a fresh backend from `factory`; with `read_only`, over an [`Overlay`]. Only
/// with `initialize` may empty storage become a new database: [`Store::open`] and every reopen
/// refuse a file that is (or was meanwhile made) empty instead of writing a schema over it.
fn open_db(
    factory: &BackendFactory,
    watch: &Arc<IoWatch>,
    read_only: bool,
    initialize: bool,
) -> Result<Database, redb::DatabaseError> {
    let mut inner = factory()?;
    if !initialize && inner.len()? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the database file is empty",
        )
        .into());
    }
    if read_only {
        inner = Box::new(Overlay::new(inner)?);
    }
    redb::Builder::new().create_with_backend(Watched {
        inner,
        watch: watch.clone(),
    })
}

/// The backend factory for a database file: opens it read-write on every call, creating it
/// (mode 0600) only with `create` — [`Store::create`]'s temporary file, never the real one.
fn file_backend(path: PathBuf, create: bool) -> BackendFactory {
    Box::new(move || {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        Ok(Box::new(FileBackend::new(f)?) as Box<dyn StorageBackend>)
    })
}

/// When a degraded condition began (shown to the operator only).
#[allow(clippy::disallowed_methods)] // storage edge: stamps the start of an I/O condition
fn wall_clock() -> Timestamp {
    Timestamp::now()
}

/// The server's identity and network settings, written once by `init`.
#[derive(Clone, Debug)]
pub struct ServerRecord {
    /// The server's static WireGuard key.
    pub private_key: PrivateKey,
    /// UDP port the WireGuard socket listens on.
    pub listen_port: u16,
    /// The tunnel interface address with its prefix, e.g. `10.88.88.1/24`.
    pub interface: Ipv4Net,
    /// What clients put in `Endpoint =`.
    pub endpoint: Endpoint,
    /// Unix seconds when the server was initialised.
    pub created_at: u64,
}

impl ServerRecord {
    /// The tunnel subnet (network address and prefix), e.g. `10.88.88.0/24`.
    pub fn subnet(&self) -> Ipv4Net {
        Ipv4Net::new(self.interface.network(), self.interface.prefix())
            .expect("a stored prefix is valid")
    }
}

/// One WireGuard peer as the server knows it. The client's private key is never stored.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerRecord {
    pub name: PeerName,
    pub role: Role,
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    /// The peer's tunnel address (first entry of its allowed IPs, a /32).
    pub address: Ipv4Addr,
    /// Source addresses the peer may use inside the tunnel.
    pub allowed_ips: Vec<Ipv4Net>,
    /// A disabled peer stays stored but cannot handshake.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: u64,
}

/// Per-peer traffic statistics, persisted now and then by the server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerStats {
    /// Unix seconds of the last completed handshake.
    pub last_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// The peer's current UDP endpoint, as `ip:port`.
    pub endpoint: Option<String>,
}

/// Failure to open or create the database file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// There is no file at the path (and nothing was created).
    #[error("there is no database at {path}")]
    Missing { path: String },
    /// [`Store::create`] found a file already there; it is never overwritten.
    #[error("the database {path} already exists; it is never overwritten")]
    Exists { path: String },
    /// The file is empty, not a redb database, truncated, or lacks the appliance's schema or
    /// server key. Nothing was written to it.
    #[error("the database {path} is empty or damaged ({len} bytes: {reason}); restore a backup, or move it aside to start over")]
    Damaged {
        path: String,
        len: u64,
        reason: String,
    },
    /// Another process (normally `appliance serve`) holds the file.
    #[error("the database {path} is in use by another process (is `appliance serve` running?)")]
    Locked { path: String },
    /// The file was written by a newer appliance.
    #[error("the database {path} has schema version {found}, newer than this binary understands ({SCHEMA_VERSION}); upgrade appliance")]
    SchemaTooNew { path: String, found: u32 },
    /// The file has an older schema and upgrading it failed; the upgrade is one transaction,
    /// so the file is unchanged.
    #[error("cannot upgrade the database {path} from schema version {from} to {SCHEMA_VERSION} ({reason}); it is unchanged: restore a backup, or run an older appliance")]
    Migration {
        path: String,
        from: u32,
        reason: String,
    },
    /// redb could not read or create the file.
    #[error("cannot open the database {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: Box<redb::Error>,
    },
    /// The file opened but its schema could not be read or written (a full disk, a damaged
    /// file).
    #[error("cannot open the database {path}: {source}")]
    Unusable {
        path: String,
        #[source]
        source: StoreError,
    },
}

/// Failure of a read or write on an open database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The filesystem holding the database is full (ENOSPC) or over quota (EDQUOT). Nothing
    /// of the failed operation was written; the store recovers by itself once space is freed.
    #[error(
        "the appliance's disk is full: nothing was saved; free space on the server and try again"
    )]
    DiskFull,
    /// The database hit another I/O error, or is being reopened after one. Nothing of the
    /// failed operation was written; the store reopens the file by itself.
    #[error("the database is unavailable after a disk error ({reason}): nothing was saved; the appliance reopens it by itself, try again in a few seconds")]
    Unavailable { reason: String },
    /// redb reported a consistency problem.
    #[error("database error: {0}")]
    Redb(Box<redb::Error>),
    /// A stored row failed validation: the file was edited or is damaged.
    #[error("stored record {key:?} is damaged: {reason}")]
    Corrupt { key: String, reason: String },
}

impl StoreError {
    /// The same failure for another waiter: the class and the sentence are kept (redb's own
    /// errors cannot be cloned, so those become `Unavailable` with their text).
    pub fn same_kind(&self) -> StoreError {
        match self {
            StoreError::DiskFull => StoreError::DiskFull,
            StoreError::Unavailable { reason } => StoreError::Unavailable {
                reason: reason.clone(),
            },
            StoreError::Redb(e) => StoreError::Unavailable {
                reason: e.to_string(),
            },
            StoreError::Corrupt { key, reason } => StoreError::Corrupt {
                key: key.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// Whether an I/O error means "no space": ENOSPC or EDQUOT, however it is wrapped.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
        || {
            let text = e.to_string();
            text.contains("No space left on device") || text.contains("Disk quota exceeded")
        }
}

impl From<redb::Error> for StoreError {
    /// The one place redb errors are classified.
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(io) if is_disk_full(&io) => StoreError::DiskFull,
            redb::Error::Io(io) => StoreError::Unavailable {
                reason: io.to_string(),
            },
            redb::Error::PreviousIo => StoreError::Unavailable {
                reason: "an earlier write failed".into(),
            },
            other => StoreError::Redb(Box::new(other)),
        }
    }
}

macro_rules! impl_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::from(redb::Error::from(e)) }
        }
    )*};
}
impl_from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The first I/O error the storage backend returned since the database was (re)opened. redb
/// refuses every further operation on that handle (`PreviousIo`) until it is reopened, so "an
/// error is recorded here" and "the handle is poisoned" are the same thing.
#[derive(Debug, Default)]
struct IoWatch {
    failed: std::sync::Mutex<Option<IoFailure>>,
}

#[derive(Debug, Clone)]
struct IoFailure {
    disk_full: bool,
    message: String,
}

impl IoWatch {
    fn record(&self, e: &std::io::Error) {
        let mut failed = self.failed.lock().unwrap();
        if failed.is_none() {
            *failed = Some(IoFailure {
                disk_full: is_disk_full(e),
                message: e.to_string(),
            });
        }
    }

    fn get(&self) -> Option<IoFailure> {
        self.failed.lock().unwrap().clone()
    }

    fn clear(&self) {
        *self.failed.lock().unwrap() = None;
    }
}

/// The backend every [`Store`] opens redb on: the real one (a file, or a test's) plus a note of
/// the first error it returned.
#[derive(Debug)]
struct Watched {
    inner: Box<dyn StorageBackend>,
    watch: Arc<IoWatch>,
}

impl Watched {
    fn note<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            self.watch.record(e);
        }
        r
    }
}

impl StorageBackend for Watched {
    fn len(&self) -> std::io::Result<u64> {
        self.note(self.inner.len())
    }
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.note(self.inner.read(offset, len))
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.note(self.inner.set_len(len))
    }
    fn sync_data(&self, eventual: bool) -> std::io::Result<()> {
        self.note(self.inner.sync_data(eventual))
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.note(self.inner.write(offset, data))
    }
}

/// Makes a fresh storage backend over the same bytes: the first open and every reopen.
type BackendFactory =
    Box<dyn Fn() -> Result<Box<dyn StorageBackend>, redb::DatabaseError> + Send + Sync>;

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
/// All access goes through [`Store::reader`] and [`Store::writer`], which hand out the current
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

/// The same bytes, but every write, resize and sync stays in memory: what redb needs to open a
/// file that must be repaired (after an I/O error) when the disk cannot take the repair. The
/// file itself is never written through it, so it still needs (and gets) the real repair later.
#[derive(Debug)]
struct Overlay {
    inner: Box<dyn StorageBackend>,
    state: std::sync::Mutex<OverlayState>,
}

#[derive(Debug)]
struct OverlayState {
    len: u64,
    /// File bytes at or beyond this offset read as zeros (the length was cut below it).
    cut: u64,
    blocks: std::collections::HashMap<u64, Vec<u8>>,
}

const OVERLAY_BLOCK: u64 = 4096;

impl Overlay {
    fn new(inner: Box<dyn StorageBackend>) -> std::io::Result<Overlay> {
        let len = inner.len()?;
        Ok(Overlay {
            inner,
            state: std::sync::Mutex::new(OverlayState {
                len,
                cut: len,
                blocks: Default::default(),
            }),
        })
    }

    fn block(&self, st: &OverlayState, b: u64) -> std::io::Result<Vec<u8>> {
        if let Some(bytes) = st.blocks.get(&b) {
            return Ok(bytes.clone());
        }
        let mut buf = vec![0; OVERLAY_BLOCK as usize];
        let start = b * OVERLAY_BLOCK;
        if start < st.cut {
            let n = (st.cut - start).min(OVERLAY_BLOCK) as usize;
            buf[..n].copy_from_slice(&self.inner.read(start, n)?);
        }
        Ok(buf)
    }
}

impl StorageBackend for Overlay {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.state.lock().unwrap().len)
    }

    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let st = self.state.lock().unwrap();
        let end = offset + len as u64;
        if end > st.len {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        let mut out = Vec::with_capacity(len);
        for b in offset / OVERLAY_BLOCK..end.div_ceil(OVERLAY_BLOCK) {
            let block = self.block(&st, b)?;
            let from = offset.max(b * OVERLAY_BLOCK) - b * OVERLAY_BLOCK;
            let to = end.min((b + 1) * OVERLAY_BLOCK) - b * OVERLAY_BLOCK;
            out.extend_from_slice(&block[from as usize..to as usize]);
        }
        Ok(out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.len = len;
        st.cut = st.cut.min(len);
        st.blocks.retain(|b, _| b * OVERLAY_BLOCK < len);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap();
        let end = offset + data.len() as u64;
        for b in offset / OVERLAY_BLOCK..end.div_ceil(OVERLAY_BLOCK) {
            let mut block = self.block(&st, b)?;
            let from = offset.max(b * OVERLAY_BLOCK);
            let to = end.min((b + 1) * OVERLAY_BLOCK);
            block[(from - b * OVERLAY_BLOCK) as usize..(to - b * OVERLAY_BLOCK) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            st.blocks.insert(b, block);
        }
        st.len = st.len.max(end);
        Ok(())
    }
}

impl Drop for DbGuard<'_> {
    fn drop(&mut self) {
        self.store.note_failure();
    }
}

/// A stored row that failed to decode into its checked type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedRow {
    /// The table: `peers`, `peer_stats`, `jobs`, `runs` or `audit`.
    pub table: String,
    /// The row's key as shown elsewhere (peer name, job id in hex, run or audit number).
    pub key: String,
    /// Why it failed, as a sentence.
    pub reason: String,
}

impl std::fmt::Display for DamagedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: {}", self.table, self.key, self.reason)
    }
}

/// What a loader read: every row that decoded, and the ones that did not.
#[derive(Debug)]
pub struct Loaded<T> {
    pub rows: Vec<T>,
    pub damaged: Vec<DamagedRow>,
}

impl<T> Loaded<T> {
    fn push(&mut self, table: &str, key: String, r: Result<T, StoreError>) {
        match r {
            Ok(v) => self.rows.push(v),
            Err(e) => {
                let reason = match e {
                    StoreError::Corrupt { reason, .. } => reason,
                    e => e.to_string(),
                };
                tracing::warn!(table, key = %key, reason = %reason, "damaged row skipped (see `appliance doctor`)");
                self.damaged.push(DamagedRow {
                    table: table.into(),
                    key,
                    reason,
                });
            }
        }
    }
}

impl<T> Default for Loaded<T> {
    fn default() -> Self {
        Loaded {
            rows: Vec::new(),
            damaged: Vec::new(),
        }
    }
}

/// What `doctor` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoctorReport {
    /// Rows that fail to decode (before `--quarantine`: still in place; after: just moved).
    pub damaged: Vec<DamagedRow>,
    /// Whether `damaged` was moved into the quarantine table by this call.
    pub quarantined: bool,
    /// Rows kept in the quarantine table, including any just moved.
    pub in_quarantine: u64,
}

/// Runs `f`, turning a panic into `Err(message)` without printing it (redb asserts on some
/// truncated files instead of returning an error). Other threads' panics print as usual.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    thread_local! {
        static QUIET: Cell<bool> = const { Cell::new(false) };
    }
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the storage library gave up reading it".into())
    })
}

/// redb's file signature (its first nine bytes).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

#[derive(Serialize, Deserialize)]
struct ServerRow {
    private_key: String,
    listen_port: u16,
    interface: String,
    endpoint: String,
    created_at: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerRow {
    name: String,
    role: String,
    public_key: String,
    preshared_key: Option<String>,
    address: Ipv4Addr,
    allowed_ips: Vec<String>,
    enabled: bool,
    created_at: u64,
}

fn corrupt(key: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

impl ServerRow {
    fn from_record(r: &ServerRecord) -> Self {
        ServerRow {
            private_key: r.private_key.to_base64(),
            listen_port: r.listen_port,
            interface: r.interface.to_string(),
            endpoint: r.endpoint.to_string(),
            created_at: r.created_at,
        }
    }
    fn into_record(self) -> Result<ServerRecord, StoreError> {
        let c = |e: &dyn std::fmt::Display| corrupt(KEY_SERVER, e);
        Ok(ServerRecord {
            private_key: PrivateKey::parse(&self.private_key).map_err(|e| c(&e))?,
            listen_port: self.listen_port,
            interface: Ipv4Net::parse(&self.interface).map_err(|e| c(&e))?,
            endpoint: Endpoint::parse(&self.endpoint, self.listen_port).map_err(|e| c(&e))?,
            created_at: self.created_at,
        })
    }
}

impl PeerRow {
    fn from_record(r: &PeerRecord) -> Self {
        PeerRow {
            name: r.name.to_string(),
            role: r.role.to_string(),
            public_key: r.public_key.to_base64(),
            preshared_key: r.preshared_key.as_ref().map(|k| k.to_base64()),
            address: r.address,
            allowed_ips: r.allowed_ips.iter().map(|n| n.to_string()).collect(),
            enabled: r.enabled,
            created_at: r.created_at,
        }
    }
    fn into_record(self) -> Result<PeerRecord, StoreError> {
        let key = self.name.clone();
        let c = |e: &dyn std::fmt::Display| corrupt(&key, e);
        Ok(PeerRecord {
            name: PeerName::new(&self.name).map_err(|e| c(&e))?,
            role: self.role.parse().map_err(|e| c(&e))?,
            public_key: PublicKey::parse(&self.public_key).map_err(|e| c(&e))?,
            preshared_key: match self.preshared_key {
                Some(k) => Some(PresharedKey::parse(&k).map_err(|e| c(&e))?),
                None => None,
            },
            address: self.address,
            allowed_ips: self
                .allowed_ips
                .iter()
                .map(|s| Ipv4Net::parse(s))
                .collect::<Result<_, _>>()
                .map_err(|e| c(&e))?,
            enabled: self.enabled,
            created_at: self.created_at,
        })
    }
}

/// Encodes a peer record as stored bytes (exposed for tests of the on-disk format).
pub fn encode_peer(r: &PeerRecord) -> Vec<u8> {
    serde_json::to_vec(&PeerRow::from_record(r)).expect("rows serialise")
}

fn decode_peer(key: &str, bytes: &[u8]) -> Result<PeerRecord, StoreError> {
    let row: PeerRow = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
    row.into_record()
}

/// The schema version recorded in `db`'s `meta` table, `None` if it has none.
fn read_schema_version(db: &Database) -> Result<Option<u32>, StoreError> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
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

    /// The server record, if `init` has run.
    pub fn server(&self) -> Result<Option<ServerRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let Some(v) = meta.get(KEY_SERVER)? else {
            return Ok(None);
        };
        let row: ServerRow =
            serde_json::from_slice(v.value()).map_err(|e| corrupt(KEY_SERVER, e))?;
        row.into_record().map(Some)
    }

    /// Writes the server record unless one exists; returns `false` (and writes nothing) if
    /// the server was already initialised — its key is never replaced.
    pub fn init_server(&self, record: &ServerRecord) -> Result<bool, StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get(KEY_SERVER)?.is_some() {
                return Ok(false);
            }
            let row = serde_json::to_vec(&ServerRow::from_record(record)).unwrap();
            meta.insert(KEY_SERVER, row.as_slice())?;
        }
        self.commit(txn)?;
        Ok(true)
    }

    /// Replaces the endpoint clients dial, with its audit entry (`server.endpoint`) in the same
    /// transaction; returns the endpoint it replaced. Nothing else in the record changes:
    /// the server key and the peers stay, so existing configs keep working wherever they
    /// still reach this machine.
    pub fn set_endpoint(
        &self,
        endpoint: &Endpoint,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Endpoint, StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        let previous = {
            let mut meta = txn.open_table(META)?;
            let row: ServerRow = match meta.get(KEY_SERVER)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(|e| corrupt(KEY_SERVER, e))?,
                None => {
                    return Err(corrupt(
                        KEY_SERVER,
                        "there is no server record; run `appliance init`",
                    ))
                }
            };
            let mut record = row.into_record()?;
            let previous = std::mem::replace(&mut record.endpoint, endpoint.clone());
            let row = serde_json::to_vec(&ServerRow::from_record(&record)).unwrap();
            meta.insert(KEY_SERVER, row.as_slice())?;
            previous
        };
        append_audit(
            &txn,
            AuditEntry {
                seq: 0,
                at_ms: now_ms,
                actor: actor.clone(),
                action: "server.endpoint".into(),
                target: None,
                summary: serde_json::json!({
                    "from": previous.to_string(),
                    "to": endpoint.to_string(),
                }),
            },
        )?;
        self.commit(txn)?;
        Ok(previous)
    }

    /// Every stored peer that decodes, ordered by name, and the rows that do not (each logged
    /// at WARN). A damaged peer — including one whose stored key is low-order — is not routed.
    pub fn peers(&self) -> Result<Loaded<PeerRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(PEERS)?;
        let mut out = Loaded::default();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push("peers", k.value().into(), decode_peer(k.value(), v.value()));
        }
        Ok(out)
    }

    /// Runs `plan` on the current peer list inside one write transaction and stores the peers
    /// it returns (replacing same-named rows) and removes the names it lists, atomically.
    /// `plan` is a pure decision (see [`crate::registry`]); if it fails nothing is written.
    pub fn update_peers<T, E>(
        &self,
        plan: impl FnOnce(&[PeerRecord]) -> Result<(PeerChange, T), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let db = self.writer()?;
        let txn = db.begin_write().map_err(StoreError::from)?;
        let out = {
            let mut table = txn.open_table(PEERS).map_err(StoreError::from)?;
            let mut current = Vec::new();
            let mut damaged = Vec::new();
            for row in table.iter().map_err(StoreError::from)? {
                let (k, v) = row.map_err(StoreError::from)?;
                match decode_peer(k.value(), v.value()) {
                    Ok(p) => current.push(p),
                    // The plan never sees a damaged row; it must not be overwritten either.
                    Err(_) => damaged.push(k.value().to_string()),
                }
            }
            let (change, out) = plan(&current)?;
            if let Some(rec) = change
                .upsert
                .iter()
                .find(|r| damaged.iter().any(|d| d == r.name.as_str()))
            {
                return Err(StoreError::Corrupt {
                    key: rec.name.to_string(),
                    reason: "its stored row is damaged; run `appliance doctor --quarantine` to move it aside first".into(),
                }
                .into());
            }
            for name in &change.remove {
                table.remove(name.as_str()).map_err(StoreError::from)?;
            }
            for rec in &change.upsert {
                table
                    .insert(rec.name.as_str(), encode_peer(rec).as_slice())
                    .map_err(StoreError::from)?;
            }
            if !change.remove.is_empty() {
                let mut stats = txn.open_table(PEER_STATS).map_err(StoreError::from)?;
                for name in &change.remove {
                    stats.remove(name.as_str()).map_err(StoreError::from)?;
                }
            }
            if let Some(entry) = change.audit {
                append_audit(&txn, entry)?;
            }
            out
        };
        self.commit(txn).map_err(StoreError::from)?;
        Ok(out)
    }

    /// Stored statistics for every peer that has any.
    pub fn peer_stats(&self) -> Result<Vec<(String, PeerStats)>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(PEER_STATS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let stats = serde_json::from_slice(v.value()).map_err(|e| corrupt(k.value(), e))?;
            out.push((k.value().to_string(), stats));
        }
        Ok(out)
    }

    /// Persists statistics for the named peers (ignoring names no longer stored).
    pub fn save_peer_stats(&self, stats: &[(String, PeerStats)]) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let peers = txn.open_table(PEERS)?;
            let mut table = txn.open_table(PEER_STATS)?;
            for (name, s) in stats {
                if peers.get(name.as_str())?.is_some() {
                    table.insert(name.as_str(), serde_json::to_vec(s).unwrap().as_slice())?;
                }
            }
        }
        self.commit(txn)?;
        Ok(())
    }
}

/// What a planned peer operation writes.
#[derive(Debug, Default)]
pub struct PeerChange {
    /// Rows to insert or replace (keyed by name).
    pub upsert: Vec<PeerRecord>,
    /// Names to delete, with their statistics.
    pub remove: Vec<PeerName>,
    /// The audit entry committed in the same transaction.
    pub audit: Option<AuditEntry>,
}

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    /// Peer name, or `"local"` for the CLI on the server itself.
    pub peer: String,
    /// Short fingerprint of the peer's public key (`None` for the local CLI).
    pub fingerprint: Option<String>,
    /// Tunnel address the request came from.
    pub address: Option<String>,
    /// The peer's WireGuard endpoint (public `ip:port`) when the request arrived.
    pub endpoint: Option<String>,
    /// `"api"` or `"cli"`.
    pub via: String,
}

impl Actor {
    /// The administrator at the server's own terminal.
    pub fn local_cli() -> Actor {
        Actor {
            peer: "local".into(),
            fingerprint: None,
            address: None,
            endpoint: None,
            via: "cli".into(),
        }
    }
}

/// One audit-trail entry. Summaries never contain secrets (keys, PSKs, webhook tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number, assigned when committed (0 before).
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub actor: Actor,
    /// What was done, e.g. `peer.add`, `job.create`.
    pub action: String,
    /// The object acted on (peer name, job id).
    pub target: Option<String>,
    /// A redacted summary of the change.
    pub summary: serde_json::Value,
}

/// Appends an entry inside an open write transaction, assigning the next sequence number.
pub(crate) fn append_audit(
    txn: &redb::WriteTransaction,
    mut entry: AuditEntry,
) -> Result<u64, StoreError> {
    let mut table = txn.open_table(AUDIT)?;
    let seq = match table.last()? {
        Some((k, _)) => k.value() + 1,
        None => 1,
    };
    entry.seq = seq;
    table.insert(seq, serde_json::to_vec(&entry).unwrap().as_slice())?;
    Ok(seq)
}

impl Store {
    /// Appends one audit entry in its own transaction.
    pub fn audit(&self, entry: AuditEntry) -> Result<u64, StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        let seq = append_audit(&txn, entry)?;
        self.commit(txn)?;
        Ok(seq)
    }

    /// Deletes the oldest audit entries: every one written before `cutoff_ms`, then more,
    /// oldest first, until the entries kept take at most `max_bytes` — but never the newest
    /// entry. Returns how many went.
    /// Damaged entries count by their size and are pruned like the rest (they are old history,
    /// not live state). A full scan; it runs once an hour.
    pub fn prune_audit(&self, cutoff_ms: u64, max_bytes: u64) -> Result<usize, StoreError> {
        // Decided on a read transaction: a sweep with nothing to do never takes the writer, so
        // it writes nothing (no fsync every hour) and never races a write on a failing disk.
        let doomed = {
            let db = self.reader()?;
            let txn = db.begin_read()?;
            let table = txn.open_table(AUDIT)?;
            let mut rows = Vec::new();
            let mut total: u64 = 0;
            for row in table.iter()? {
                let (k, v) = row?;
                let at_ms = serde_json::from_slice::<AuditEntry>(v.value())
                    .map(|e| e.at_ms)
                    .unwrap_or(0);
                let size = v.value().len() as u64;
                total += size;
                rows.push((k.value(), at_ms, size));
            }
            // The newest entry always stays: sequence numbers continue from it, so cursors
            // handed out earlier never come to mean other entries.
            rows.pop();
            let mut doomed = Vec::new();
            for (seq, at_ms, size) in rows {
                if at_ms >= cutoff_ms && total <= max_bytes {
                    break;
                }
                doomed.push(seq);
                total -= size;
            }
            doomed
        };
        self.remove_rows(AUDIT, &doomed)
    }

    /// Deletes the rows with these keys from `table` in one commit; nothing to delete writes
    /// nothing. Returns how many there were.
    fn remove_rows(
        &self,
        table: TableDefinition<u64, &[u8]>,
        keys: &[u64],
    ) -> Result<usize, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(table)?;
            for k in keys {
                t.remove(*k)?;
            }
        }
        self.commit(txn)?;
        Ok(keys.len())
    }

    /// Audit entries, newest first: those with `seq < before` (all when `None`), at or after
    /// `since_ms`, at most `limit`.
    pub fn audit_page(
        &self,
        before: Option<u64>,
        since_ms: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = match txn.open_table(AUDIT) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        let range = table.range(..before.unwrap_or(u64::MAX))?;
        for row in range.rev() {
            let (k, v) = row?;
            let entry: AuditEntry = serde_json::from_slice(v.value())
                .map_err(|e| corrupt(&format!("audit/{}", k.value()), e))?;
            if since_ms.is_some_and(|s| entry.at_ms < s) {
                break;
            }
            out.push(entry);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs and runs

/// A stored job: its checked spec plus bookkeeping.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: JobId,
    pub spec: JobSpec,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Peer name of the creator (or "local").
    pub created_by: String,
    /// The next scheduled fire not yet taken (None: none, or not computed yet).
    pub next_fire_at: Option<Timestamp>,
    /// When the job was paused (kept so a resume can catch up on request).
    pub paused_at_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRow {
    spec: serde_json::Value,
    created_at_ms: u64,
    updated_at_ms: u64,
    created_by: String,
    /// Full precision (RFC 3339 with nanoseconds): `every` schedules are anchored at the
    /// creation instant, so a rounded value would land beside the schedule after a restart.
    next_fire_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_at_ms: Option<u64>,
}

fn encode_job(r: &JobRecord) -> Vec<u8> {
    serde_json::to_vec(&JobRow {
        spec: r.spec.to_json(),
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
        created_by: r.created_by.clone(),
        next_fire_at: r.next_fire_at,
        paused_at_ms: r.paused_at_ms,
    })
    .expect("rows serialise")
}

fn decode_job(id: u64, bytes: &[u8]) -> Result<JobRecord, StoreError> {
    let key = format!("jobs/{}", JobId::from_u64(id));
    let row: JobRow = serde_json::from_slice(bytes).map_err(|e| corrupt(&key, e))?;
    Ok(JobRecord {
        id: JobId::from_u64(id),
        spec: JobSpec::from_json(&row.spec, None).map_err(|e| corrupt(&key, e))?,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
        created_by: row.created_by,
        next_fire_at: row.next_fire_at,
        paused_at_ms: row.paused_at_ms,
    })
}

/// State of one run (one fire of a job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A handler call waiting for its handler to lease it.
    Queued,
    /// A handler call leased by its handler (being executed).
    Leased,
    Running,
    Succeeded,
    Failed,
    /// Scheduled, but found later than `misfire_grace` (downtime): recorded, not executed.
    Missed,
    /// Scheduled while `max_instances` runs were still going: recorded, not executed.
    Skipped,
}

impl RunStatus {
    /// Whether the run is still going (running, or a handler call queued or leased).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RunStatus::Queued | RunStatus::Leased | RunStatus::Running
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Leased => "leased",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Missed => "missed",
            RunStatus::Skipped => "skipped",
        }
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => RunStatus::Queued,
            "leased" => RunStatus::Leased,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "missed" => RunStatus::Missed,
            "skipped" => RunStatus::Skipped,
            _ => {
                return Err(format!(
                    "unknown status '{s}': expected queued, leased, running, succeeded, failed, missed or skipped"
                ))
            }
        })
    }
}

/// One fire of a job, as recorded in the run history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Assigned when first stored (0 before).
    pub id: u64,
    #[serde(with = "job_id_hex")]
    pub job_id: JobId,
    pub job_name: String,
    /// When the schedule said it should run (RFC 3339).
    pub scheduled_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Attempts made so far.
    pub attempt: u32,
    pub status: RunStatus,
    /// `schedule` or `manual` (run now).
    pub trigger: String,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    /// For a summarising missed record: how many fires it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Handler runs: the handler the call is addressed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Handler runs: the handler's result (acked runs), at most 64 KiB of JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Handler runs: milliseconds from the scheduled time to the first lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_delay_ms: Option<u64>,
}

/// Job ids travel as their 16-hex-digit display form.
mod job_id_hex {
    use super::JobId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &JobId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<JobId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Filter for run listings.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub job: Option<JobId>,
    pub status: Option<RunStatus>,
    /// Only runs scheduled at or after this instant.
    pub since: Option<Timestamp>,
    /// Only runs with an id below this (the cursor).
    pub before: Option<u64>,
    pub limit: usize,
}

impl Store {
    /// Every stored job that decodes, and the rows that do not (each logged at WARN).
    pub fn jobs(&self) -> Result<Loaded<JobRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let mut out = Loaded::default();
        for row in table.iter()? {
            let (k, v) = row?;
            let id = k.value();
            out.push(
                "jobs",
                JobId::from_u64(id).to_string(),
                decode_job(id, v.value()),
            );
        }
        Ok(out)
    }

    pub fn job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let row = table.get(id.as_u64())?;
        row.map(|v| decode_job(id.as_u64(), v.value())).transpose()
    }

    /// Inserts a new job (returns false, writing nothing, if the id is taken) with its audit
    /// entry, in one durable transaction.
    pub fn insert_job(
        &self,
        rec: &JobRecord,
        audit: Option<AuditEntry>,
    ) -> Result<bool, StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(JOBS)?;
            if table.get(rec.id.as_u64())?.is_some() {
                return Ok(false);
            }
            table.insert(rec.id.as_u64(), encode_job(rec).as_slice())?;
            if let Some(a) = audit {
                append_audit(&txn, a)?;
            }
        }
        self.commit(txn)?;
        Ok(true)
    }

    /// Applies `change` to a stored job inside one transaction with its audit entry. `change`
    /// returns the new record, or `None` to delete it. Returns the new record (or the deleted
    /// one), or `Ok(None)` when no job has that id.
    pub fn update_job<E: From<StoreError>>(
        &self,
        id: JobId,
        change: impl FnOnce(&JobRecord) -> Result<(Option<JobRecord>, Option<AuditEntry>), E>,
    ) -> Result<Option<JobRecord>, E> {
        let db = self.writer()?;
        let txn = db.begin_write().map_err(StoreError::from)?;
        let out = {
            let mut table = txn.open_table(JOBS).map_err(StoreError::from)?;
            let current = match table.get(id.as_u64()).map_err(StoreError::from)? {
                Some(v) => decode_job(id.as_u64(), v.value())?,
                None => return Ok(None),
            };
            let (next, audit) = change(&current)?;
            match &next {
                Some(rec) => {
                    table
                        .insert(id.as_u64(), encode_job(rec).as_slice())
                        .map_err(StoreError::from)?;
                }
                None => {
                    table.remove(id.as_u64()).map_err(StoreError::from)?;
                }
            }
            if let Some(a) = audit {
                append_audit(&txn, a)?;
            }
            Some(next.unwrap_or(current))
        };
        self.commit(txn).map_err(StoreError::from)?;
        Ok(out)
    }

    /// Records new runs and the jobs' next fire times in one transaction; assigns run ids
    /// (returned in order).
    pub fn start_runs(
        &self,
        runs: &mut [RunRecord],
        next_fires: &[(JobId, Option<Timestamp>)],
    ) -> Result<(), StoreError> {
        self.start_runs_with_tasks(runs, next_fires, &mut [])
    }

    /// [`Store::start_runs`], plus the handler tasks of some of the runs in the same
    /// transaction: `tasks` pairs an index into `runs` with its task, whose `run_id` is set
    /// to the run's id. A fire and its task are committed together or not at all.
    pub fn start_runs_with_tasks(
        &self,
        runs: &mut [RunRecord],
        next_fires: &[(JobId, Option<Timestamp>)],
        tasks: &mut [(usize, crate::queue::Task)],
    ) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(RUNS)?;
            let mut index = txn.open_table(JOB_RUNS)?;
            let first_id = match table.last()? {
                Some((k, _)) => k.value() + 1,
                None => 1,
            };
            for (run, id) in runs.iter_mut().zip(first_id..) {
                run.id = id;
                table.insert(run.id, serde_json::to_vec(run).unwrap().as_slice())?;
                index.insert((run.job_id.as_u64(), run.id), ())?;
            }
            let mut jobs = txn.open_table(JOBS)?;
            for (id, next) in next_fires {
                let current = match jobs.get(id.as_u64())? {
                    Some(v) => decode_job(id.as_u64(), v.value())?,
                    None => continue,
                };
                if current.next_fire_at != *next {
                    let mut rec = current;
                    rec.next_fire_at = *next;
                    jobs.insert(id.as_u64(), encode_job(&rec).as_slice())?;
                }
            }
            tasks::insert_new(&txn, runs, tasks)?;
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Rewrites finished (or progressing) runs.
    pub fn update_runs(&self, runs: &[RunRecord]) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(RUNS)?;
            for run in runs {
                table.insert(run.id, serde_json::to_vec(run).unwrap().as_slice())?;
            }
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Runs newest first, filtered.
    pub fn runs_page(&self, f: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(RUNS)?;
        let mut out = Vec::new();
        let before = f.before.unwrap_or(u64::MAX);
        let decode = |id: u64, bytes: &[u8]| -> Result<RunRecord, StoreError> {
            serde_json::from_slice(bytes).map_err(|e| corrupt(&format!("runs/{id}"), e))
        };
        let keep = |r: &RunRecord| {
            f.status.is_none_or(|s| r.status == s) && f.since.is_none_or(|t| r.scheduled_at >= t)
        };
        match f.job {
            Some(job) => {
                let index = txn.open_table(JOB_RUNS)?;
                let j = job.as_u64();
                for row in index.range((j, 0)..(j, before))?.rev() {
                    let (k, _) = row?;
                    let id = k.value().1;
                    if let Some(v) = table.get(id)? {
                        let r = decode(id, v.value())?;
                        if keep(&r) {
                            out.push(r);
                            if out.len() >= f.limit {
                                break;
                            }
                        }
                    }
                }
            }
            None => {
                for row in table.range(..before)?.rev() {
                    let (k, v) = row?;
                    let r = decode(k.value(), v.value())?;
                    if keep(&r) {
                        out.push(r);
                        if out.len() >= f.limit {
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Runs still marked running (left over from a crash), and the run rows that do not
    /// decode (each logged at WARN).
    pub fn unfinished_runs(&self) -> Result<Loaded<RunRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(RUNS)?;
        let mut out = Loaded::default();
        for row in table.iter()? {
            let (k, v) = row?;
            match serde_json::from_slice::<RunRecord>(v.value()) {
                Ok(r) if r.status != RunStatus::Running => {}
                r => out.push(
                    "runs",
                    k.value().to_string(),
                    r.map_err(|e| corrupt(&format!("runs/{}", k.value()), e)),
                ),
            }
        }
        Ok(out)
    }

    /// Deletes runs scheduled before `cutoff` that are no longer running; returns how many.
    pub fn prune_runs(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        // Decided on a read transaction, as in `prune_audit`: nothing to prune writes nothing.
        let doomed = {
            let db = self.reader()?;
            let txn = db.begin_read()?;
            let table = txn.open_table(RUNS)?;
            let mut doomed = Vec::new();
            // A full scan: ids grow with recording time, not with scheduled time (catch-up
            // after downtime records old fires late), and this runs once an hour.
            for row in table.iter()? {
                let (k, v) = row?;
                // A damaged run is left for `appliance doctor`, not pruned blindly.
                let Ok(r) = serde_json::from_slice::<RunRecord>(v.value()) else {
                    continue;
                };
                if r.scheduled_at < cutoff && !r.status.is_open() {
                    doomed.push((k.value(), r.job_id.as_u64()));
                }
            }
            doomed
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(RUNS)?;
            let mut index = txn.open_table(JOB_RUNS)?;
            for (id, job) in &doomed {
                table.remove(*id)?;
                index.remove((*job, *id))?;
            }
        }
        self.commit(txn)?;
        Ok(doomed.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Damaged rows: finding them and moving them aside

/// A damaged row found by a scan, with what is needed to move it.
struct Found {
    row: DamagedRow,
    /// Key in the quarantine table.
    quarantine_key: String,
    key: RawKey,
    bytes: Vec<u8>,
}

enum RawKey {
    Str(String),
    U64(u64),
}

type StrCheck = fn(&str, &[u8]) -> Result<(), StoreError>;
type U64Check = fn(u64, &[u8]) -> Result<(), StoreError>;

/// A string-keyed table: its name, definition and row check.
type StrTable = (
    &'static str,
    TableDefinition<'static, &'static str, &'static [u8]>,
    StrCheck,
);
/// A number-keyed table: its name, definition and row check.
type U64Table = (
    &'static str,
    TableDefinition<'static, u64, &'static [u8]>,
    U64Check,
);

const STR_TABLES: [StrTable; 2] = [
    ("peers", PEERS, |k, v| decode_peer(k, v).map(drop)),
    ("peer_stats", PEER_STATS, |k, v| {
        serde_json::from_slice::<PeerStats>(v)
            .map(drop)
            .map_err(|e| corrupt(k, e))
    }),
];

const U64_TABLES: [U64Table; 3] = [
    ("jobs", JOBS, |k, v| decode_job(k, v).map(drop)),
    ("runs", RUNS, |k, v| {
        serde_json::from_slice::<RunRecord>(v)
            .map(drop)
            .map_err(|e| corrupt(&k.to_string(), e))
    }),
    ("audit", AUDIT, |k, v| {
        serde_json::from_slice::<AuditEntry>(v)
            .map(drop)
            .map_err(|e| corrupt(&k.to_string(), e))
    }),
];

fn reason_of(e: StoreError) -> String {
    match e {
        StoreError::Corrupt { reason, .. } => reason,
        e => e.to_string(),
    }
}

fn scan_str(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
    check: StrCheck,
    out: &mut Vec<Found>,
) -> Result<(), StoreError> {
    for row in table.iter()? {
        let (k, v) = row?;
        if let Err(e) = check(k.value(), v.value()) {
            out.push(Found {
                row: DamagedRow {
                    table: name.into(),
                    key: k.value().into(),
                    reason: reason_of(e),
                },
                quarantine_key: format!("{name}/{}", k.value()),
                key: RawKey::Str(k.value().into()),
                bytes: v.value().to_vec(),
            });
        }
    }
    Ok(())
}

fn scan_u64(
    table: &impl ReadableTable<u64, &'static [u8]>,
    name: &str,
    check: U64Check,
    out: &mut Vec<Found>,
) -> Result<(), StoreError> {
    for row in table.iter()? {
        let (k, v) = row?;
        let id = k.value();
        if let Err(e) = check(id, v.value()) {
            let shown = if name == "jobs" {
                JobId::from_u64(id).to_string()
            } else {
                id.to_string()
            };
            out.push(Found {
                row: DamagedRow {
                    table: name.into(),
                    key: shown,
                    reason: reason_of(e),
                },
                quarantine_key: format!("{name}/{id}"),
                key: RawKey::U64(id),
                bytes: v.value().to_vec(),
            });
        }
    }
    Ok(())
}

impl Store {
    /// Every row of `peers`, `peer_stats`, `jobs`, `runs` and `audit` that fails to decode. A
    /// full scan: for `appliance doctor`, not for hot paths.
    pub fn damaged_rows(&self) -> Result<Vec<DamagedRow>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let mut found = Vec::new();
        for (name, def, check) in STR_TABLES {
            match txn.open_table(def) {
                Ok(t) => scan_str(&t, name, check, &mut found)?,
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (name, def, check) in U64_TABLES {
            match txn.open_table(def) {
                Ok(t) => scan_u64(&t, name, check, &mut found)?,
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(found.into_iter().map(|f| f.row).collect())
    }

    /// How many rows the quarantine table holds.
    pub fn quarantined_count(&self) -> Result<u64, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        match txn.open_table(QUARANTINE) {
            Ok(t) => Ok(t.len()?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves every damaged row (see [`Store::damaged_rows`]) into the `quarantine` table with
    /// its original bytes, in one transaction with one audit entry per row; returns them.
    pub fn quarantine_damaged(
        &self,
        actor: &Actor,
        at_ms: u64,
    ) -> Result<Vec<DamagedRow>, StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        let mut found = Vec::new();
        {
            for (name, def, check) in STR_TABLES {
                scan_str(&txn.open_table(def)?, name, check, &mut found)?;
            }
            for (name, def, check) in U64_TABLES {
                scan_u64(&txn.open_table(def)?, name, check, &mut found)?;
            }
            let mut quarantine = txn.open_table(QUARANTINE)?;
            for f in &found {
                let mut key = f.quarantine_key.clone();
                let mut n = 1;
                while quarantine.get(key.as_str())?.is_some() {
                    n += 1;
                    key = format!("{}#{n}", f.quarantine_key);
                }
                quarantine.insert(key.as_str(), f.bytes.as_slice())?;
            }
        }
        for f in &found {
            let table = f.row.table.as_str();
            match &f.key {
                RawKey::Str(k) => {
                    let def = STR_TABLES.iter().find(|t| t.0 == table).expect("scanned").1;
                    txn.open_table(def)?.remove(k.as_str())?;
                }
                RawKey::U64(k) => {
                    let def = U64_TABLES.iter().find(|t| t.0 == table).expect("scanned").1;
                    txn.open_table(def)?.remove(*k)?;
                }
            }
            append_audit(
                &txn,
                AuditEntry {
                    seq: 0,
                    at_ms,
                    actor: actor.clone(),
                    action: "store.quarantine".into(),
                    target: Some(format!("{}/{}", f.row.table, f.row.key)),
                    summary: serde_json::json!({ "reason": f.row.reason, "bytes": f.bytes.len() }),
                },
            )?;
        }
        self.commit(txn)?;
        Ok(found.into_iter().map(|f| f.row).collect())
    }

    /// `appliance doctor`: lists the damaged rows, or with `quarantine` moves them aside
    /// (audited as `actor`).
    pub fn doctor(
        &self,
        quarantine: bool,
        actor: &Actor,
        at_ms: u64,
    ) -> Result<DoctorReport, StoreError> {
        let damaged = if quarantine {
            self.quarantine_damaged(actor, at_ms)?
        } else {
            self.damaged_rows()?
        };
        Ok(DoctorReport {
            damaged,
            quarantined: quarantine,
            in_quarantine: self.quarantined_count()?,
        })
    }

    /// The raw bytes kept in quarantine, by quarantine key (for inspection and tests).
    pub fn quarantined(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = match txn.open_table(QUARANTINE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Writes raw bytes as a row of `table` (`peers` or `jobs`), bypassing every check: for
    /// tests that need a damaged row.
    #[doc(hidden)]
    pub fn write_raw_row_for_tests(
        &self,
        table: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        match table {
            "peers" => {
                txn.open_table(PEERS)?.insert(key, bytes)?;
            }
            "jobs" => {
                let id: JobId = key.parse().map_err(|e| corrupt(key, e))?;
                txn.open_table(JOBS)?.insert(id.as_u64(), bytes)?;
            }
            other => return Err(corrupt(other, "no such table for raw test rows")),
        }
        self.commit(txn)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(tag: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "appliance-store-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Store::create(&dir.join("db.redb"), None).unwrap(), dir)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn run(job: u64, at: &str, status: RunStatus) -> RunRecord {
        RunRecord {
            id: 0,
            job_id: JobId::from_u64(job),
            job_name: format!("job{job}"),
            scheduled_at: ts(at),
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
        let page = |f: RunFilter| -> Vec<u64> {
            store.runs_page(&f).unwrap().iter().map(|r| r.id).collect()
        };
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
                    action: format!("a{i}"),
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

    #[test]
    fn audit_is_pruned_by_age_then_by_size_oldest_first() {
        let (store, dir) = temp_store("audit-prune");
        let entry = |at_ms: u64, pad: usize| AuditEntry {
            seq: 0,
            at_ms,
            actor: Actor::local_cli(),
            action: "job.update".into(),
            target: None,
            summary: serde_json::json!({"pad": "x".repeat(pad)}),
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
            spec,
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

    fn job_record(id: u64, name: &str) -> JobRecord {
        let spec = JobSpec::from_json(
            &serde_json::json!({
                "name": name,
                "trigger": {"every": "1m", "start": "2026-01-01T00:00:00Z"},
                "action": {"webhook": {"url": "http://127.0.0.1:9/x"}}
            }),
            None,
        )
        .unwrap();
        JobRecord {
            id: JobId::from_u64(id),
            spec,
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: "t".into(),
            next_fire_at: Some(ts("2026-01-01T00:01:00Z")),
            paused_at_ms: None,
        }
    }

    /// A write big enough to need blocks the disk has never allocated.
    fn big_audit(tag: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: Actor::local_cli(),
            action: tag.into(),
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
            .map(|j| j.spec.name)
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
            spec: JobSpec::from_json(
                &serde_json::json!({
                    "name": format!("job{id}"),
                    "trigger": {"every": "1h", "start": "2026-01-01T00:00:00Z"},
                    "action": {"webhook": {"url": "http://127.0.0.1:9/x"}}
                }),
                None,
            )
            .unwrap(),
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
        assert!(audit.iter().all(|e| e.action == "store.quarantine"));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Storage for tests that can run out of space.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashSet;
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use redb::StorageBackend;

    use super::Store;

    const BLOCK: u64 = 4096;
    const ENOSPC: i32 = 28;

    /// A sparse file in memory on a filesystem that can fill up. Like ext4 or tmpfs: growing
    /// the length allocates nothing; writing a block never written before needs a free block,
    /// which fails with ENOSPC while [`Disk::set_full`] is on; rewriting a block already
    /// allocated always works. [`Disk::set_failing`] makes every write, resize and sync fail
    /// (a disk with no space even for redb's header rewrites). Clones share the bytes, so a
    /// reopened store sees what was committed before.
    #[derive(Debug, Clone, Default)]
    pub struct Disk {
        state: Arc<Mutex<(Vec<u8>, HashSet<u64>)>>,
        full: Arc<AtomicBool>,
        failing: Arc<AtomicBool>,
    }

    impl Disk {
        pub fn set_full(&self, on: bool) {
            self.full.store(on, Ordering::SeqCst);
        }

        pub fn set_failing(&self, on: bool) {
            self.failing.store(on, Ordering::SeqCst);
        }

        /// Cuts the bytes to nothing, as if the file had been emptied under the store.
        pub fn wipe(&self) {
            let mut s = self.state.lock().unwrap();
            s.0.clear();
            s.1.clear();
        }

        pub fn len(&self) -> usize {
            self.state.lock().unwrap().0.len()
        }

        /// A store on this disk; each reopen gets a fresh backend over the same bytes.
        pub fn store(&self) -> Store {
            let disk = self.clone();
            Store::open_with_backend(move || Ok(Box::new(disk.clone()) as Box<dyn StorageBackend>))
                .expect("the test disk opens")
        }

        fn refuse(&self) -> io::Result<()> {
            if self.failing.load(Ordering::SeqCst) {
                Err(io::Error::from_raw_os_error(ENOSPC))
            } else {
                Ok(())
            }
        }
    }

    impl StorageBackend for Disk {
        fn len(&self) -> io::Result<u64> {
            Ok(self.state.lock().unwrap().0.len() as u64)
        }

        fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            let s = self.state.lock().unwrap();
            let (a, b) = (offset as usize, offset as usize + len);
            if b > s.0.len() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            Ok(s.0[a..b].to_vec())
        }

        fn set_len(&self, len: u64) -> io::Result<()> {
            self.refuse()?;
            let mut s = self.state.lock().unwrap();
            s.0.resize(len as usize, 0);
            s.1.retain(|b| b * BLOCK < len);
            Ok(())
        }

        fn sync_data(&self, _eventual: bool) -> io::Result<()> {
            self.refuse()
        }

        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.refuse()?;
            let mut s = self.state.lock().unwrap();
            let end = offset + data.len() as u64;
            let blocks = offset / BLOCK..end.div_ceil(BLOCK);
            if self.full.load(Ordering::SeqCst) && blocks.clone().any(|b| !s.1.contains(&b)) {
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            if end as usize > s.0.len() {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            s.0[offset as usize..end as usize].copy_from_slice(data);
            s.1.extend(blocks);
            Ok(())
        }
    }
}
