//! Damaged rows (part of [`crate::store`]): finding every row that fails to decode, and moving
//! them, bytes intact, into the `quarantine` table (`appliance doctor`).

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use serde::{Deserialize, Serialize};

use super::audit::decode_audit;
use super::jobs::{decode_job, remove_job};
use super::peer_rows::{decode_peer, decode_stats};
use super::rows::{decode_rows, open_existing, reason_of};
use super::runs::{decode_run, RunRows};
use super::{
    append_audit, corrupt, DamagedRow, Store, StoreError, AUDIT, JOBS, PEERS, PEER_STATS,
    QUARANTINE, RUNS,
};
use crate::model::{Actor, AuditAction, AuditEntry};
use crate::sched::JobId;

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
        decode_stats(k, v).map(drop)
    }),
];

const U64_TABLES: [U64Table; 3] = [
    ("jobs", JOBS, |k, v| decode_job(k, v).map(drop)),
    ("runs", RUNS, |k, v| decode_run(k, v).map(drop)),
    ("audit", AUDIT, |k, v| decode_audit(k, v).map(drop)),
];

impl Found {
    /// A row of `table` that failed its check with `e`; `shown` is its key as shown elsewhere.
    fn new(table: &str, shown: String, key: RawKey, e: StoreError, bytes: &[u8]) -> Found {
        let raw = match &key {
            RawKey::Str(k) => k.clone(),
            RawKey::U64(id) => id.to_string(),
        };
        Found {
            row: DamagedRow {
                table: table.into(),
                key: shown,
                reason: reason_of(e),
            },
            quarantine_key: format!("{table}/{raw}"),
            key,
            bytes: bytes.to_vec(),
        }
    }
}

fn scan_str(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
    check: StrCheck,
    out: &mut Vec<Found>,
) -> Result<(), StoreError> {
    let found = decode_rows(table, |k, v| {
        let e = check(k, v).err()?;
        Some(Found::new(name, k.into(), RawKey::Str(k.into()), e, v))
    })?;
    out.extend(found.into_iter().flatten());
    Ok(())
}

fn scan_u64(
    table: &impl ReadableTable<u64, &'static [u8]>,
    name: &str,
    check: U64Check,
    out: &mut Vec<Found>,
) -> Result<(), StoreError> {
    let found = decode_rows(table, |id, v| {
        let e = check(id, v).err()?;
        let shown = if name == "jobs" {
            JobId::from_u64(id).to_string()
        } else {
            id.to_string()
        };
        Some(Found::new(name, shown, RawKey::U64(id), e, v))
    })?;
    out.extend(found.into_iter().flatten());
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
            if let Some(t) = open_existing(&txn, def)? {
                scan_str(&t, name, check, &mut found)?;
            }
        }
        for (name, def, check) in U64_TABLES {
            if let Some(t) = open_existing(&txn, def)? {
                scan_u64(&t, name, check, &mut found)?;
            }
        }
        Ok(found.into_iter().map(|f| f.row).collect())
    }

    /// How many rows the quarantine table holds.
    pub fn quarantined_count(&self) -> Result<u64, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        match open_existing(&txn, QUARANTINE)? {
            Some(t) => Ok(t.len()?),
            None => Ok(0),
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
                RawKey::U64(k) if table == "jobs" => remove_job(&txn, *k)?,
                // With its `open_runs` entry: a start must not look for it.
                RawKey::U64(k) if table == "runs" => RunRows::open(&txn)?.remove(*k)?,
                RawKey::U64(k) => {
                    let def = U64_TABLES.iter().find(|t| t.0 == table).expect("scanned").1;
                    txn.open_table(def)?.remove(*k)?;
                }
            }
            append_audit(
                &txn,
                &self.audit_meter,
                AuditEntry {
                    seq: 0,
                    at_ms,
                    actor: actor.clone(),
                    action: AuditAction::StoreQuarantine,
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
        let Some(table) = open_existing(&txn, QUARANTINE)? else {
            return Ok(vec![]);
        };
        decode_rows(&table, |k, v| (k.to_string(), v.to_vec()))
    }

    /// Writes raw bytes as a row of `table` (`peers`, `jobs`, `runs` or `audit`), bypassing every check: for
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
            "runs" | "audit" => {
                let id: u64 = key.parse().map_err(|e| corrupt(key, e))?;
                let def = if table == "runs" { RUNS } else { AUDIT };
                txn.open_table(def)?.insert(id, bytes)?;
            }
            other => return Err(corrupt(other, "no such table for raw test rows")),
        }
        self.commit(txn)?;
        Ok(())
    }
}
