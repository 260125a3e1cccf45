//! Storage of the audit trail (part of [`crate::store`]): table `audit`, key the sequence
//! number, value the entry as JSON. Append-only but for pruning by age and size.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::rows::{decode_rows, open_existing};
use super::{corrupt, Store, StoreError, AUDIT};
use crate::model::{Actor, AuditAction, AuditEntry};

/// An `audit` row. Field names and order are the on-disk format.
#[derive(Serialize, Deserialize)]
struct AuditRow {
    seq: u64,
    at_ms: u64,
    actor: ActorRow,
    /// Its wire string; an unknown one decodes as `AuditAction::Other` and is kept as it was.
    action: AuditAction,
    target: Option<String>,
    summary: serde_json::Value,
}

/// The actor inside an [`AuditRow`].
#[derive(Serialize, Deserialize)]
struct ActorRow {
    peer: String,
    fingerprint: Option<String>,
    address: Option<String>,
    endpoint: Option<String>,
    via: crate::model::Via,
}

impl From<AuditEntry> for AuditRow {
    fn from(e: AuditEntry) -> AuditRow {
        let a = e.actor;
        AuditRow {
            seq: e.seq,
            at_ms: e.at_ms,
            actor: ActorRow {
                peer: a.peer,
                fingerprint: a.fingerprint,
                address: a.address,
                endpoint: a.endpoint,
                via: a.via,
            },
            action: e.action,
            target: e.target,
            summary: e.summary,
        }
    }
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> AuditEntry {
        let a = r.actor;
        AuditEntry {
            seq: r.seq,
            at_ms: r.at_ms,
            actor: Actor {
                peer: a.peer,
                fingerprint: a.fingerprint,
                address: a.address,
                endpoint: a.endpoint,
                via: a.via,
            },
            action: r.action,
            target: r.target,
            summary: r.summary,
        }
    }
}

/// Encodes an entry as stored in `audit`.
pub(super) fn encode_audit(e: AuditEntry) -> Vec<u8> {
    serde_json::to_vec(&AuditRow::from(e)).expect("rows serialise")
}

/// Decodes the `audit` row with sequence number `seq`.
pub(super) fn decode_audit(seq: u64, bytes: &[u8]) -> Result<AuditEntry, StoreError> {
    serde_json::from_slice::<AuditRow>(bytes)
        .map(AuditEntry::from)
        .map_err(|e| corrupt(&format!("audit/{seq}"), e))
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
    table.insert(seq, encode_audit(entry).as_slice())?;
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
            let mut rows = decode_rows(&table, |seq, v| {
                let at_ms = decode_audit(seq, v).map(|e| e.at_ms).unwrap_or(0);
                (seq, at_ms, v.len() as u64)
            })?;
            let mut total: u64 = rows.iter().map(|(_, _, size)| size).sum();
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
        if doomed.is_empty() {
            return Ok(0);
        }
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(AUDIT)?;
            for seq in &doomed {
                table.remove(*seq)?;
            }
        }
        self.commit(txn)?;
        Ok(doomed.len())
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
        let Some(table) = open_existing(&txn, AUDIT)? else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        let range = table.range(..before.unwrap_or(u64::MAX))?;
        for row in range.rev() {
            let (k, v) = row?;
            let entry = decode_audit(k.value(), v.value())?;
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
