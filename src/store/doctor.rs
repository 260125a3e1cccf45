//! Damaged rows (part of [`crate::store`]): finding every row that fails to decode, and moving
//! them, bytes intact, into the `quarantine` table (`appliance doctor`).

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::jobs::decode_job;
use super::peers::decode_peer;
use super::{
    append_audit, corrupt, DamagedRow, DoctorReport, Store, StoreError, AUDIT, JOBS, PEERS,
    PEER_STATS, QUARANTINE, RUNS,
};
use crate::model::{Actor, AuditEntry, PeerStats, RunRecord};
use crate::sched::JobId;

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
