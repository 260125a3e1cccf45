//! Storage of the audit trail (part of [`crate::store`]): table `audit`, key the sequence
//! number, value the entry as JSON. Append-only but for pruning by age and size.

use redb::ReadableTable;

use super::{corrupt, Store, StoreError, AUDIT};
use crate::model::AuditEntry;

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
        let db = self.writer()?;
        let txn = db.begin_write()?;
        let mut n = 0;
        {
            let mut table = txn.open_table(AUDIT)?;
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
            for (seq, at_ms, size) in rows {
                if at_ms >= cutoff_ms && total <= max_bytes {
                    break;
                }
                table.remove(seq)?;
                total -= size;
                n += 1;
            }
        }
        self.commit(txn)?;
        Ok(n)
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
