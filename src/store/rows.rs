//! Reading rows (part of [`crate::store`]): the one loop over a whole table, and what a loader
//! returns when some rows do not decode.
//!
//! Every full scan in storage — the loaders, the pruners, the doctor's scans — goes through
//! [`decode_rows`]; what a caller does with a row that fails (skip it, report it, fail) is
//! its own decision, taken on the decoded results.

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::StoreError;

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
    /// Rows that decoded, in key order.
    pub rows: Vec<T>,
    /// Rows that did not, bytes intact.
    pub damaged: Vec<DamagedRow>,
}

impl<T> Loaded<T> {
    /// Sorts decoded rows of `table` (key as shown, result) into rows and damaged rows, logging
    /// each damaged one at WARN.
    pub(super) fn sort(table: &str, decoded: Vec<(String, Result<T, StoreError>)>) -> Loaded<T> {
        let mut out = Loaded {
            rows: Vec::new(),
            damaged: Vec::new(),
        };
        for (key, r) in decoded {
            match r {
                Ok(v) => out.rows.push(v),
                Err(e) => {
                    let reason = reason_of(e);
                    tracing::warn!(table, key = %key, reason = %reason, "damaged row skipped (see `appliance doctor`)");
                    out.damaged.push(DamagedRow {
                        table: table.into(),
                        key,
                        reason,
                    });
                }
            }
        }
        out
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

/// Why a row is damaged, as the sentence shown to the operator.
pub(super) fn reason_of(e: StoreError) -> String {
    match e {
        StoreError::Corrupt { reason, .. } => reason,
        e => e.to_string(),
    }
}

/// Every row of `table`, in key order, each passed through `decode` with its key and bytes:
/// the one read-all-rows loop of storage. Works inside read and write transactions alike.
pub(super) fn decode_rows<K, T>(
    table: &impl ReadableTable<K, &'static [u8]>,
    mut decode: impl for<'a> FnMut(K::SelfType<'a>, &'a [u8]) -> T,
) -> Result<Vec<T>, StoreError>
where
    K: redb::Key + 'static,
{
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        out.push(decode(k.value(), v.value()));
    }
    Ok(out)
}

/// Opens `def` for reading, `None` if no write has created it yet.
pub(super) fn open_existing<K, V>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, StoreError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
