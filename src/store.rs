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

use std::net::Ipv4Addr;
use std::path::Path;

use jiff::Timestamp;
use peers::{Endpoint, Ipv4Net, PeerName, PresharedKey, PrivateKey, PublicKey, Role};
use redb::{Database, ReadableTable, TableDefinition};

use crate::sched::{JobId, JobSpec};
use serde::{Deserialize, Serialize};

mod tasks;
pub use tasks::HandlerRecord;

/// Version of the layout below; recorded in `meta` so a future binary can migrate.
pub const SCHEMA_VERSION: u32 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
const PEER_STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("peer_stats");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("runs");
/// Index: (job id, run id) for a job's history.
const JOB_RUNS: TableDefinition<(u64, u64), ()> = TableDefinition::new("job_runs");

const KEY_SCHEMA: &str = "schema_version";
const KEY_SERVER: &str = "server";

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

/// Failure to open the database file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (normally `appliance serve`) holds the file.
    #[error("the database {path} is in use by another process (is `appliance serve` running?)")]
    Locked { path: String },
    /// The file was written by a newer appliance.
    #[error("the database {path} has schema version {found}, newer than this binary understands ({SCHEMA_VERSION}); upgrade appliance")]
    SchemaTooNew { path: String, found: u32 },
    /// redb could not read or create the file.
    #[error("cannot open the database {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: Box<redb::Error>,
    },
}

/// Failure of a read or write on an open database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb reported an I/O or consistency problem.
    #[error("database error: {0}")]
    Redb(Box<redb::Error>),
    /// A stored row failed validation: the file was edited or is damaged.
    #[error("stored record {key:?} is damaged: {reason}")]
    Corrupt { key: String, reason: String },
}

macro_rules! impl_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Redb(Box::new(e.into())) }
        }
    )*};
}
impl_from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The open appliance database.
pub struct Store {
    db: Database,
}

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

impl Store {
    /// Opens (creating if needed) the database file and checks its schema version.
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        let p = path.display().to_string();
        let db = match Database::create(path) {
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
        let store = Store { db };
        let storage = |e: StoreError| OpenError::Storage {
            path: p.clone(),
            source: match e {
                StoreError::Redb(e) => e,
                other => Box::new(redb::Error::Corrupted(other.to_string())),
            },
        };
        match store.schema_version().map_err(storage)? {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(OpenError::SchemaTooNew { path: p, found: v })
            }
            Some(_) => {}
            None => store.init_schema().map_err(storage)?,
        }
        Ok(store)
    }

    fn schema_version(&self) -> Result<Option<u32>, StoreError> {
        let txn = self.db.begin_read()?;
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

    fn init_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(
                KEY_SCHEMA,
                serde_json::to_vec(&SCHEMA_VERSION).unwrap().as_slice(),
            )?;
            txn.open_table(PEERS)?;
            txn.open_table(PEER_STATS)?;
            txn.open_table(AUDIT)?;
            txn.open_table(JOBS)?;
            txn.open_table(RUNS)?;
            txn.open_table(JOB_RUNS)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The server record, if `init` has run.
    pub fn server(&self) -> Result<Option<ServerRecord>, StoreError> {
        let txn = self.db.begin_read()?;
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
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get(KEY_SERVER)?.is_some() {
                return Ok(false);
            }
            let row = serde_json::to_vec(&ServerRow::from_record(record)).unwrap();
            meta.insert(KEY_SERVER, row.as_slice())?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Every stored peer, ordered by name.
    pub fn peers(&self) -> Result<Vec<PeerRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PEERS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push(decode_peer(k.value(), v.value())?);
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
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        let out = {
            let mut table = txn.open_table(PEERS).map_err(StoreError::from)?;
            let mut current = Vec::new();
            for row in table.iter().map_err(StoreError::from)? {
                let (k, v) = row.map_err(StoreError::from)?;
                current.push(decode_peer(k.value(), v.value())?);
            }
            let (change, out) = plan(&current)?;
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
        txn.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Stored statistics for every peer that has any.
    pub fn peer_stats(&self) -> Result<Vec<(String, PeerStats)>, StoreError> {
        let txn = self.db.begin_read()?;
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
        let txn = self.db.begin_write()?;
        {
            let peers = txn.open_table(PEERS)?;
            let mut table = txn.open_table(PEER_STATS)?;
            for (name, s) in stats {
                if peers.get(name.as_str())?.is_some() {
                    table.insert(name.as_str(), serde_json::to_vec(s).unwrap().as_slice())?;
                }
            }
        }
        txn.commit()?;
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
        let txn = self.db.begin_write()?;
        let seq = append_audit(&txn, entry)?;
        txn.commit()?;
        Ok(seq)
    }

    /// Audit entries, newest first: those with `seq < before` (all when `None`), at or after
    /// `since_ms`, at most `limit`.
    pub fn audit_page(
        &self,
        before: Option<u64>,
        since_ms: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read()?;
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
    /// Every stored job.
    pub fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push(decode_job(k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let txn = self.db.begin_read()?;
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
        let txn = self.db.begin_write()?;
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
        txn.commit()?;
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
        let txn = self.db.begin_write().map_err(StoreError::from)?;
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
        txn.commit().map_err(StoreError::from)?;
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
        let txn = self.db.begin_write()?;
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
        txn.commit()?;
        Ok(())
    }

    /// Rewrites finished (or progressing) runs.
    pub fn update_runs(&self, runs: &[RunRecord]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RUNS)?;
            for run in runs {
                table.insert(run.id, serde_json::to_vec(run).unwrap().as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Runs newest first, filtered.
    pub fn runs_page(&self, f: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let txn = self.db.begin_read()?;
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

    /// Runs still marked running (left over from a crash).
    pub fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RUNS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let r: RunRecord = serde_json::from_slice(v.value())
                .map_err(|e| corrupt(&format!("runs/{}", k.value()), e))?;
            if r.status == RunStatus::Running {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Deletes runs scheduled before `cutoff` that are no longer running; returns how many.
    pub fn prune_runs(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let txn = self.db.begin_write()?;
        let mut n = 0;
        {
            let mut table = txn.open_table(RUNS)?;
            let mut index = txn.open_table(JOB_RUNS)?;
            let mut doomed = Vec::new();
            // A full scan: ids grow with recording time, not with scheduled time (catch-up
            // after downtime records old fires late), and this runs once an hour.
            for row in table.iter()? {
                let (k, v) = row?;
                let r: RunRecord = serde_json::from_slice(v.value())
                    .map_err(|e| corrupt(&format!("runs/{}", k.value()), e))?;
                if r.scheduled_at < cutoff && !r.status.is_open() {
                    doomed.push((k.value(), r.job_id.as_u64()));
                }
            }
            for (id, job) in doomed {
                table.remove(id)?;
                index.remove((job, id))?;
                n += 1;
            }
        }
        txn.commit()?;
        Ok(n)
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
        (Store::open(&dir.join("db.redb")).unwrap(), dir)
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
        assert_eq!(store.unfinished_runs().unwrap().len(), 1);

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

    #[test]
    fn a_second_open_of_the_same_file_is_refused_as_locked() {
        let (store, dir) = temp_store("lock");
        let err = Store::open(&dir.join("db.redb")).err().expect("locked");
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
