//! Storage of the audit trail (part of [`crate::store`]): table `audit`, key the sequence
//! number, value the entry as JSON. Append-only but for pruning by age and size.
//!
//! The size cap holds between the scheduler's hourly sweeps in two ways: every entry's summary
//! is bounded when it is appended ([`bound_summary`]: changed fields only, long values cut, at
//! most [`MAX_SUMMARY_BYTES`]), and the [`AuditMeter`] counts the bytes appended so the
//! scheduler can prune as soon as they pass a fraction of the cap.

use std::sync::atomic::{AtomicU64, Ordering};

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// Longest string value an entry's summary keeps, in bytes; a longer one is cut and says so.
pub const MAX_VALUE_BYTES: usize = 256;
/// Most bytes an entry's summary takes once encoded (past that it keeps only field names).
pub const MAX_SUMMARY_BYTES: usize = 4096;

/// Bytes of audit entries appended since the last prune, shared by the store (which counts)
/// and the scheduler's driver (which prunes once they pass its threshold). Counted at append,
/// so an entry whose transaction then fails counts too: that only brings a prune forward.
#[derive(Debug)]
pub struct AuditMeter {
    appended: AtomicU64,
    threshold: AtomicU64,
    wake: tokio::sync::Notify,
}

impl Default for AuditMeter {
    fn default() -> AuditMeter {
        AuditMeter {
            appended: AtomicU64::new(0),
            threshold: AtomicU64::new(u64::MAX),
            wake: tokio::sync::Notify::new(),
        }
    }
}

impl AuditMeter {
    /// Wakes [`AuditMeter::over_threshold`] once this many bytes were appended since the last
    /// [`AuditMeter::take`] (never, until set).
    pub fn set_threshold(&self, bytes: u64) {
        self.threshold.store(bytes.max(1), Ordering::Relaxed);
        self.check();
    }

    /// Returns once the bytes appended since the last [`AuditMeter::take`] reach the threshold
    /// (at once if they did while nobody waited). Call [`AuditMeter::take`] before pruning.
    pub async fn over_threshold(&self) {
        self.wake.notified().await
    }

    /// The bytes appended since the last call, resetting the count.
    pub fn take(&self) -> u64 {
        self.appended.swap(0, Ordering::Relaxed)
    }

    /// Whether the bytes appended since the last [`AuditMeter::take`] reach the threshold.
    pub fn due(&self) -> bool {
        self.appended.load(Ordering::Relaxed) >= self.threshold.load(Ordering::Relaxed)
    }

    fn add(&self, bytes: u64) {
        self.appended.fetch_add(bytes, Ordering::Relaxed);
        self.check();
    }

    fn check(&self) {
        if self.due() {
            self.wake.notify_one();
        }
    }
}

/// What an audit entry keeps of `summary`: every string longer than [`MAX_VALUE_BYTES`] is
/// cut (ending `… (N bytes, truncated)`), deeper than six levels or past 32 items a value
/// becomes its cut JSON text, and the summary gains `"truncated": true`. If it still takes more
/// than [`MAX_SUMMARY_BYTES`], a `{"before": {..}, "after": {..}}` change keeps only the
/// top-level fields that differ, and past that only the changed (or top-level) field names.
/// Small summaries are untouched, so API bodies (`AuditView`) read as before.
pub fn bound_summary(summary: Value) -> Value {
    let too_big = |s: &Value| serde_json::to_vec(s).map_or(0, |v| v.len()) > MAX_SUMMARY_BYTES;
    let mut s = summary;
    let mut truncated = false;
    shorten(&mut s, 0, &mut truncated);
    if too_big(&s) {
        s = changed_only(s);
        truncated = true;
    }
    if too_big(&s) {
        s = names_only(&s);
    }
    if truncated {
        if let Value::Object(m) = &mut s {
            m.insert("truncated".into(), Value::Bool(true));
        }
    }
    s
}

/// A before/after summary without the fields that did not change.
fn changed_only(summary: Value) -> Value {
    let Value::Object(mut m) = summary else {
        return summary;
    };
    if let (Some(Value::Object(before)), Some(Value::Object(after))) =
        (m.get("before"), m.get("after"))
    {
        let same: Vec<String> = before
            .iter()
            .filter(|(k, v)| after.get(*k) == Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        for side in ["before", "after"] {
            if let Some(Value::Object(o)) = m.get_mut(side) {
                for k in &same {
                    o.remove(k);
                }
            }
        }
    }
    Value::Object(m)
}

/// Cuts long strings, deep nesting and long lists in place.
fn shorten(v: &mut Value, depth: usize, truncated: &mut bool) {
    const MAX_ITEMS: usize = 32;
    const MAX_DEPTH: usize = 6;
    match v {
        Value::String(s) if s.len() > MAX_VALUE_BYTES => {
            *s = cut(s);
            *truncated = true;
        }
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => {
            *v = Value::String(cut(&v.to_string()));
            *truncated = true;
        }
        Value::Array(items) => {
            if items.len() > MAX_ITEMS {
                items.truncate(MAX_ITEMS);
                *truncated = true;
            }
            for i in items {
                shorten(i, depth + 1, truncated);
            }
        }
        Value::Object(m) => {
            if m.len() > MAX_ITEMS {
                let extra: Vec<String> = m.keys().skip(MAX_ITEMS).cloned().collect();
                for k in extra {
                    m.remove(&k);
                }
                *truncated = true;
            }
            for (_, i) in m.iter_mut() {
                shorten(i, depth + 1, truncated);
            }
        }
        _ => {}
    }
}

/// The first [`MAX_VALUE_BYTES`] of `s` (on a character boundary) and a note of its length.
fn cut(s: &str) -> String {
    let mut end = MAX_VALUE_BYTES.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes, truncated)", &s[..end], s.len())
}

/// The field names of a summary too large even when shortened: `{"changed": [..]}` for a
/// before/after change, else `{"fields": [..]}` (at most 32 names, each cut).
fn names_only(s: &Value) -> Value {
    let Value::Object(m) = s else {
        return serde_json::json!({});
    };
    let keys = |o: &serde_json::Map<String, Value>| -> Vec<Value> {
        o.keys()
            .take(32)
            .map(|k| Value::String(k.chars().take(64).collect()))
            .collect()
    };
    match (m.get("before"), m.get("after")) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut names = keys(a);
            for k in keys(b) {
                if !names.contains(&k) {
                    names.push(k);
                }
            }
            names.truncate(32);
            serde_json::json!({"changed": names})
        }
        _ => serde_json::json!({"fields": keys(m)}),
    }
}

/// Appends an entry inside an open write transaction, assigning the next sequence number.
/// Its summary is bounded first ([`bound_summary`]) and its bytes are counted on `meter`.
pub(crate) fn append_audit(
    txn: &redb::WriteTransaction,
    meter: &AuditMeter,
    entry: AuditEntry,
) -> Result<u64, StoreError> {
    append_prepared(txn, meter, PreparedAudit::new(entry))
}

/// An audit entry encoded before its transaction begins — summary bounded, row serialised —
/// but for its sequence number, which only the transaction appending it knows. A group
/// commit's callers prepare their entries themselves, so its leader only inserts bytes.
pub(crate) struct PreparedAudit {
    /// The row as [`encode_audit`] writes it, without its opening `{"seq":0`.
    rest: Vec<u8>,
}

/// How every encoded row opens (`seq` is [`AuditRow`]'s first field), here with seq 0.
const SEQ_ZERO: &[u8] = b"{\"seq\":0";

impl PreparedAudit {
    pub(crate) fn new(mut entry: AuditEntry) -> PreparedAudit {
        entry.seq = 0;
        entry.summary = bound_summary(std::mem::take(&mut entry.summary));
        let mut row = encode_audit(entry);
        assert!(row.starts_with(SEQ_ZERO), "an audit row opens with its seq");
        row.drain(..SEQ_ZERO.len());
        PreparedAudit { rest: row }
    }

    /// The row with sequence number `seq`: byte for byte what [`encode_audit`] gives for the
    /// entry with that `seq`.
    fn row(&self, seq: u64) -> Vec<u8> {
        let seq = seq.to_string();
        let mut row = Vec::with_capacity(SEQ_ZERO.len() + seq.len() + self.rest.len());
        row.extend_from_slice(&SEQ_ZERO[..SEQ_ZERO.len() - 1]);
        row.extend_from_slice(seq.as_bytes());
        row.extend_from_slice(&self.rest);
        row
    }
}

/// Appends a prepared entry with the next sequence number in `txn`; returns that number.
pub(crate) fn append_prepared(
    txn: &redb::WriteTransaction,
    meter: &AuditMeter,
    entry: PreparedAudit,
) -> Result<u64, StoreError> {
    let mut table = txn.open_table(AUDIT)?;
    let seq = match table.last()? {
        Some((k, _)) => k.value() + 1,
        None => 1,
    };
    let row = entry.row(seq);
    table.insert(seq, row.as_slice())?;
    meter.add(row.len() as u64);
    Ok(seq)
}

impl Store {
    /// Appends one audit entry in its own transaction.
    pub fn audit(&self, entry: AuditEntry) -> Result<u64, StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        let seq = append_audit(&txn, &self.audit_meter, entry)?;
        self.commit(txn)?;
        Ok(seq)
    }

    /// Deletes the oldest audit entries: every one written before `cutoff_ms`, then more,
    /// oldest first, until the entries kept take at most `max_bytes` — but never the newest
    /// entry. Returns how many went.
    /// Damaged entries count by their size and are pruned like the rest (they are old history,
    /// not live state). It runs once an hour and whenever the [`AuditMeter`] passes its
    /// threshold: a pass over the stored lengths, then a walk from the oldest entry that
    /// decodes only the entries that go and the one that stops it
    /// ([`Store::audit_rows_decoded`]).
    pub fn prune_audit(&self, cutoff_ms: u64, max_bytes: u64) -> Result<usize, StoreError> {
        // What was appended so far is counted by the scan below.
        self.audit_meter.take();
        // Decided on a read transaction: a sweep with nothing to do never takes the writer, so
        // it writes nothing (no fsync every hour) and never races a write on a failing disk.
        let doomed = {
            let db = self.reader()?;
            let txn = db.begin_read()?;
            let table = txn.open_table(AUDIT)?;
            // What the entries take, from the stored lengths alone: nothing is decoded.
            let (mut total, mut count) = (0u64, 0usize);
            for row in table.iter()? {
                total += row?.1.value().len() as u64;
                count += 1;
            }
            // Then oldest first, decoding only the entries that go and the one that stops the
            // walk (the trail is in sequence order, so by age): a sweep with nothing to prune
            // decodes one entry, not every one. The newest entry always stays: sequence
            // numbers continue from it, so cursors handed out earlier never come to mean
            // other entries.
            let mut doomed = Vec::new();
            for row in table.iter()?.take(count.saturating_sub(1)) {
                let (k, v) = row?;
                let (seq, bytes) = (k.value(), v.value());
                self.audit_rows_decoded.fetch_add(1, Ordering::Relaxed);
                let at_ms = decode_audit(seq, bytes).map(|e| e.at_ms).unwrap_or(0);
                if at_ms >= cutoff_ms && total <= max_bytes {
                    break;
                }
                doomed.push(seq);
                total -= bytes.len() as u64;
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

    /// How many audit entries [`Store::prune_audit`] has decoded since the store was opened.
    pub fn audit_rows_decoded(&self) -> u64 {
        self.audit_rows_decoded.load(Ordering::Relaxed)
    }

    /// The meter of bytes appended to the audit trail since the last prune, for the driver
    /// that prunes it.
    pub fn audit_meter(&self) -> std::sync::Arc<AuditMeter> {
        self.audit_meter.clone()
    }

    /// Bytes the audit trail's entries take, counted as [`Store::prune_audit`] counts them
    /// (each stored row's length). A full scan.
    pub fn audit_bytes(&self) -> Result<u64, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let Some(table) = open_existing(&txn, AUDIT)? else {
            return Ok(0);
        };
        let sizes = decode_rows(&table, |_, v| v.len() as u64)?;
        Ok(sizes.iter().sum())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A PATCH of a 60 KB job keeps both sides with long values cut to a few hundred bytes,
    /// saying so, within the bound.
    #[test]
    fn a_big_change_keeps_its_values_cut_and_marked() {
        let big = "x".repeat(60_000);
        let spec = |content: &str| {
            json!({"name": "raid", "trigger": {"every": "1h"},
                   "action": {"webhook": {"url": "https://h/", "body": {"content": content}}},
                   "description": big})
        };
        let summary = json!({
            "before": spec(&format!("a{big}")),
            "after": spec(&format!("b{big}")),
        });
        let kept = bound_summary(summary);
        assert!(serde_json::to_vec(&kept).unwrap().len() <= MAX_SUMMARY_BYTES);
        assert_eq!(kept["truncated"], json!(true));
        assert_eq!(kept["after"]["name"], "raid");
        let content = kept["after"]["action"]["webhook"]["body"]["content"]
            .as_str()
            .unwrap();
        assert!(content.starts_with("bxxx"), "{content}");
        assert!(content.ends_with("… (60001 bytes, truncated)"), "{content}");
        assert!(content.len() < MAX_VALUE_BYTES + 40);
    }

    /// Past the bound even when cut, a change keeps only the fields that differ, and past that
    /// the names of what changed; a small summary is kept exactly as it was.
    #[test]
    fn summaries_past_the_bound_keep_changed_fields_then_names() {
        let side = |v: &str, changed: usize| {
            Value::Object(
                (0..30)
                    .map(|i| {
                        let v = if i < changed { v } else { "same" };
                        (format!("field{i}"), json!(v.repeat(300)))
                    })
                    .collect(),
            )
        };
        let kept = bound_summary(json!({"before": side("a", 1), "after": side("b", 1)}));
        let fields: Vec<&String> = kept["after"].as_object().unwrap().keys().collect();
        assert_eq!(fields, ["field0"], "{kept}");
        assert_eq!(kept["truncated"], json!(true));

        let kept = bound_summary(json!({"before": side("a", 30), "after": side("b", 30)}));
        assert_eq!(kept["changed"].as_array().unwrap().len(), 30, "{kept}");
        assert_eq!(kept["truncated"], json!(true));
        assert!(serde_json::to_vec(&kept).unwrap().len() <= MAX_SUMMARY_BYTES);

        let small = json!({"before": {"a": 1, "b": 2}, "after": {"a": 1, "b": 3}});
        assert_eq!(bound_summary(small.clone()), small);
    }

    /// The meter wakes its waiter once the bytes appended reach the threshold, and a prune
    /// starts the count again.
    #[test]
    fn the_meter_counts_appends_until_a_prune() {
        let store = super::super::testing::Disk::default().store();
        let meter = store.audit_meter();
        meter.set_threshold(1_000);
        let entry = || AuditEntry {
            seq: 0,
            at_ms: 1,
            actor: Actor::local_cli(),
            action: AuditAction::Other("test".into()),
            target: None,
            summary: json!({"text": "y".repeat(200)}),
        };
        store.audit(entry()).unwrap();
        assert!(!meter.due());
        while !meter.due() {
            store.audit(entry()).unwrap();
        }
        assert_eq!(store.prune_audit(0, u64::MAX).unwrap(), 0);
        assert!(!meter.due(), "a prune starts the count again");
    }

    /// A prepared entry, given its seq, is byte for byte the row `append_audit` always wrote:
    /// summary bounded, every field, any number of digits.
    #[test]
    fn a_prepared_entry_is_the_row_encoded_with_its_seq() {
        let entry = AuditEntry {
            seq: 77,
            at_ms: 1_700_000_000_123,
            actor: Actor::local_cli(),
            action: AuditAction::Other("job.create".into()),
            target: Some("0123456789abcdef".into()),
            summary: json!({"name": "raid", "long": "x".repeat(2 * MAX_VALUE_BYTES)}),
        };
        let prepared = PreparedAudit::new(entry.clone());
        for seq in [1, 9, 10, 12_345, u64::MAX] {
            let mut direct = entry.clone();
            direct.seq = seq;
            direct.summary = bound_summary(direct.summary);
            let row = prepared.row(seq);
            assert_eq!(row, encode_audit(direct), "seq {seq}");
            assert_eq!(decode_audit(seq, &row).unwrap().seq, seq);
        }
    }
}
