//! The `job_schedules` table (part of [`crate::store`]): what the scheduler needs of each job
//! ([`JobSummary`]), stored beside its `jobs` row, and the load that starts the scheduler
//! from it ([`Store::job_summaries`]).
//!
//! A `job_schedules` row is derived from the `jobs` row of the same id and written in the
//! same transaction as it (`store/jobs.rs`). It carries a 64-bit hash ([`row_hash`]) of the
//! `jobs` row bytes it was taken from, and is trusted only while that hash matches: a `jobs`
//! row changed any other way (an older appliance, a restored file, damage) is decoded in full
//! instead, and its summary rewritten. So the table is a verified cache: a file without it, or
//! with rows in an earlier format, opens and serves, and the scheduler's first start rebuilds
//! what it could not use. It is not versioned: older binaries keep opening the file.
//!
//! Row format 2 (what this module writes; little-endian, fixed width, so a start parses no
//! text but the names):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format, `2` (earlier rows, format `1` without the ScheduleZero id or JSON starting with `{`, are rebuilt) |
//! | 8 | hash of the `jobs` row |
//! | 1 | flags: 1 coalesce, 2 paused, 4 next fire present, 8 start present (cron), 16 end present, 32 ScheduleZero id present |
//! | 1 | trigger: 0 at, 1 every, 2 cron |
//! | 4 | max instances |
//! | 8, 8 | misfire grace, jitter (ns) |
//! | 12 | next fire, if present: seconds (i64) and nanoseconds (i32) since the epoch |
//! | … | at: the instant; every: interval (ns, 8), start, end if present; cron: start and end if present, zone and expression (each a u16 length and UTF-8) |
//! | 2 + n | the name (u16 length, UTF-8) |
//! | 4 + n | the ScheduleZero id, if present (u32 length, UTF-8: metadata strings may be long) |
//!
//! Format 1 rows (no ScheduleZero id) are never trusted, though their hash may match: an
//! older binary that rewrote one would have left out a ScheduleZero id its `jobs` row has.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use redb::ReadableTable;

use super::jobs::decode_job;
use super::rows::open_existing;
use super::{Loaded, Store, StoreError, JOBS, JOB_SCHEDULES};
use crate::model::{JobRecord, JobSummary};
use crate::sched::{CronExpr, JobId, Schedule, Trigger, Zone};

/// The first byte of a row this module writes.
const FORMAT: u8 = 2;

const COALESCE: u8 = 1;
const PAUSED: u8 = 2;
const HAS_NEXT: u8 = 4;
const HAS_START: u8 = 8;
const HAS_END: u8 = 16;
const HAS_SCHEDULEZERO_ID: u8 = 32;

const AT: u8 = 0;
const EVERY: u8 = 1;
const CRON: u8 = 2;

/// A 64-bit hash of a `jobs` row, stable across releases (unlike `std`'s hashers) and fast
/// enough to check every row at start: FNV-1a's step over 8-byte words (each step a bijection
/// of the state, so a row that differs in one word always hashes differently), with a shift
/// that folds the high bits back into the low ones.
pub(super) fn row_hash(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let step = |h: u64, w: u64| {
        let h = (h ^ w).wrapping_mul(PRIME);
        h ^ (h >> 32)
    };
    let mut words = bytes.chunks_exact(8);
    let mut h = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    for w in &mut words {
        h = step(h, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    words
        .remainder()
        .iter()
        .fold(h, |h, b| step(h, u64::from(*b)))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Appends the fields of one row.
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn time(&mut self, t: Timestamp) {
        self.0.extend_from_slice(&t.as_second().to_le_bytes());
        self.0
            .extend_from_slice(&t.subsec_nanosecond().to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        let n = u16::try_from(s.len()).expect("names, zones and cron expressions are short");
        self.0.extend_from_slice(&n.to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn long_str(&mut self, s: &str) {
        let n = u32::try_from(s.len()).expect("a request body is shorter than 4 GiB");
        self.u32(n);
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// The `job_schedules` row of `rec`, whose `jobs` row is `row`.
pub(super) fn encode_schedule(rec: &JobRecord, row: &[u8]) -> Vec<u8> {
    let spec = &rec.spec;
    let sz_id = spec.schedulezero_id();
    let mut w = Writer(Vec::with_capacity(
        100 + spec.name.as_str().len() + sz_id.map_or(0, str::len),
    ));
    w.u8(FORMAT);
    w.u64(row_hash(row));
    let (kind, start, end) = match &spec.trigger {
        Trigger::At(_) => (AT, None, None),
        Trigger::Every { end, .. } => (EVERY, None, *end),
        Trigger::Cron { start, end, .. } => (CRON, *start, *end),
    };
    let flag = |on: bool, f: u8| if on { f } else { 0 };
    w.u8(flag(spec.coalesce, COALESCE)
        | flag(spec.paused, PAUSED)
        | flag(rec.next_fire_at.is_some(), HAS_NEXT)
        | flag(start.is_some(), HAS_START)
        | flag(end.is_some(), HAS_END)
        | flag(sz_id.is_some(), HAS_SCHEDULEZERO_ID));
    w.u8(kind);
    w.u32(spec.max_instances);
    w.u64(nanos(spec.misfire_grace));
    w.u64(nanos(spec.jitter));
    if let Some(t) = rec.next_fire_at {
        w.time(t);
    }
    match &spec.trigger {
        Trigger::At(at) => w.time(*at),
        Trigger::Every {
            interval, start, ..
        } => {
            w.u64(nanos(*interval));
            w.time(*start);
            end.into_iter().for_each(|t| w.time(t));
        }
        Trigger::Cron { expr, zone, .. } => {
            start.into_iter().for_each(|t| w.time(t));
            end.into_iter().for_each(|t| w.time(t));
            w.str(zone.name());
            w.str(expr.as_str());
        }
    }
    w.str(spec.name.as_str());
    sz_id.into_iter().for_each(|id| w.long_str(id));
    w.0
}

/// Reads the fields of one row; every read fails (`None`) past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
    fn time(&mut self) -> Option<Timestamp> {
        let s = i64::from_le_bytes(self.array()?);
        let ns = i32::from_le_bytes(self.array()?);
        Timestamp::new(s, ns).ok()
    }
    fn time_if(&mut self, present: bool) -> Option<Option<Timestamp>> {
        if present {
            self.time().map(Some)
        } else {
            Some(None)
        }
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u16::from_le_bytes(self.array()?);
        self.take(usize::from(n))
    }
    fn long_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.take(usize::try_from(n).ok()?)
    }
}

/// Zones and cron expressions by their stored bytes, so that a start looks each up once
/// rather than once per job.
#[derive(Default)]
struct Interned {
    zones: HashMap<Vec<u8>, Zone>,
    crons: HashMap<Vec<u8>, CronExpr>,
}

impl Interned {
    fn zone(&mut self, name: &[u8]) -> Option<Zone> {
        interned(&mut self.zones, name, |s| Zone::get(s).ok())
    }

    fn cron(&mut self, expr: &[u8]) -> Option<CronExpr> {
        interned(&mut self.crons, expr, |s| CronExpr::parse(s).ok())
    }
}

/// The value `key` stands for: the one made before, or `make` of its text, kept.
fn interned<T: Clone>(
    seen: &mut HashMap<Vec<u8>, T>,
    key: &[u8],
    make: impl FnOnce(&str) -> Option<T>,
) -> Option<T> {
    if let Some(v) = seen.get(key) {
        return Some(v.clone());
    }
    let v = make(std::str::from_utf8(key).ok()?)?;
    seen.insert(key.to_vec(), v.clone());
    Some(v)
}

/// The summary in a `job_schedules` row, if the row is in the current format, was taken from
/// exactly the `jobs` row `row` and holds checked values; `None` sends the caller to the
/// `jobs` row itself.
fn decode_schedule(id: u64, bytes: &[u8], row: &[u8], seen: &mut Interned) -> Option<JobSummary> {
    let mut r = Reader(bytes);
    if r.u8()? != FORMAT || r.u64()? != row_hash(row) {
        return None;
    }
    let flags = r.u8()?;
    let kind = r.u8()?;
    let max_instances = r.u32()?;
    let misfire_grace = Duration::from_nanos(r.u64()?);
    let jitter = Duration::from_nanos(r.u64()?);
    let next_fire_at = r.time_if(flags & HAS_NEXT != 0)?;
    let (has_start, has_end) = (flags & HAS_START != 0, flags & HAS_END != 0);
    let trigger = match kind {
        AT if !has_start && !has_end => Trigger::At(r.time()?),
        EVERY if !has_start => {
            let interval = Duration::from_nanos(r.u64()?);
            let start = r.time()?;
            let end = r.time_if(has_end)?;
            if interval < crate::sched::spec::MIN_INTERVAL || end.is_some_and(|e| e <= start) {
                return None;
            }
            Trigger::Every {
                interval,
                start,
                end,
            }
        }
        CRON => {
            let start = r.time_if(has_start)?;
            let end = r.time_if(has_end)?;
            let zone = seen.zone(r.bytes()?)?;
            let expr = seen.cron(r.bytes()?)?;
            Trigger::Cron {
                expr,
                zone,
                start,
                end,
            }
        }
        _ => return None,
    };
    let name = std::str::from_utf8(r.bytes()?).ok()?;
    let schedulezero_id = match flags & HAS_SCHEDULEZERO_ID {
        0 => None,
        _ => Some(std::str::from_utf8(r.long_bytes()?).ok()?.into()),
    };
    if !r.0.is_empty() {
        return None;
    }
    Some(JobSummary {
        id: JobId::from_u64(id),
        name: name.into(),
        schedulezero_id,
        schedule: Schedule {
            trigger,
            misfire_grace,
            coalesce: flags & COALESCE != 0,
            max_instances,
            jitter,
            paused: flags & PAUSED != 0,
        },
        next_fire_at,
    })
}

/// What the loader found out of step between `jobs` and `job_schedules`.
#[derive(Default)]
struct Repairs {
    /// (id, hash of the `jobs` row read, the summary row to write).
    put: Vec<(u64, u64, Vec<u8>)>,
    /// Summaries whose `jobs` row is gone.
    drop: Vec<u64>,
}

impl Store {
    /// What the scheduler keeps of every stored job ([`JobSummary`]), and the rows that do not
    /// decode (each logged at WARN), as [`Store::jobs`] would find them: read from
    /// `job_schedules` where its entry was taken from the current `jobs` row (the hash
    /// matches), otherwise decoded from the `jobs` row in full. Entries found missing, stale
    /// or in an earlier format (a file from before the table, rows written by an older
    /// appliance) are then rewritten in one write transaction; if that fails the summaries
    /// are still returned (and the next start decodes those rows again).
    pub fn job_summaries(&self) -> Result<Loaded<JobSummary>, StoreError> {
        let mut repairs = Repairs::default();
        let loaded = {
            let db = self.reader()?;
            let txn = db.begin_read()?;
            let table = txn.open_table(JOBS)?;
            let index = open_existing(&txn, JOB_SCHEDULES)?;
            let mut summaries = match &index {
                Some(t) => Some(t.iter()?),
                None => None,
            };
            // The summary read last and not yet matched to a row (its id is ahead of the row's).
            let mut pending: Option<(u64, redb::AccessGuard<'_, &'static [u8]>)> = None;
            let mut seen = Interned::default();
            let mut rows = Vec::new();
            let mut damaged = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                let (id, row) = (k.value(), v.value());
                // Both tables are in id order: walk the summaries alongside.
                let mut summary = None;
                loop {
                    if pending.is_none() {
                        pending = match summaries.as_mut().and_then(|s| s.next()) {
                            Some(next) => {
                                let (k, v) = next?;
                                Some((k.value(), v))
                            }
                            None => None,
                        };
                    }
                    match pending.take() {
                        Some((k, _)) if k < id => repairs.drop.push(k),
                        Some((k, v)) if k == id => {
                            summary = decode_schedule(id, v.value(), row, &mut seen);
                            break;
                        }
                        ahead => {
                            pending = ahead;
                            break;
                        }
                    }
                }
                if let Some(s) = summary {
                    rows.push(s);
                    continue;
                }
                match decode_job(id, row) {
                    Ok(rec) => {
                        let summary = rec.summary();
                        repairs
                            .put
                            .push((id, row_hash(row), encode_schedule(&rec, row)));
                        rows.push(summary);
                    }
                    Err(e) => damaged.push((JobId::from_u64(id).to_string(), Err(e))),
                }
            }
            if let Some((k, _)) = pending {
                repairs.drop.push(k);
            }
            if let Some(s) = summaries.as_mut() {
                for rest in s {
                    repairs.drop.push(rest?.0.value());
                }
            }
            Loaded {
                rows,
                damaged: Loaded::<JobSummary>::sort("jobs", damaged).damaged,
            }
        };
        if !repairs.put.is_empty() || !repairs.drop.is_empty() {
            let (put, dropped) = (repairs.put.len(), repairs.drop.len());
            match self.repair_schedules(repairs) {
                Ok(()) => tracing::info!(
                    written = put,
                    removed = dropped,
                    "job schedule summaries rebuilt"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not store the rebuilt job schedule summaries; the next start decodes those jobs again"
                ),
            }
        }
        Ok(loaded)
    }

    /// Writes the summaries [`Store::job_summaries`] rebuilt, each only if its `jobs` row is
    /// still the one it was taken from (or, for a removal, still absent).
    fn repair_schedules(&self, repairs: Repairs) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let jobs = txn.open_table(JOBS)?;
            let mut index = txn.open_table(JOB_SCHEDULES)?;
            for (id, hash, summary) in repairs.put {
                let current = jobs.get(id)?.map(|v| row_hash(v.value()));
                if current == Some(hash) {
                    index.insert(id, summary.as_slice())?;
                }
            }
            for id in repairs.drop {
                if jobs.get(id)?.is_none() {
                    index.remove(id)?;
                }
            }
        }
        self.commit(txn)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::sched::JobSpec;

    fn record(trigger: serde_json::Value, extra: serde_json::Value) -> JobRecord {
        let mut body = json!({
            "name": "Raid – Donnerstag",
            "trigger": trigger,
            "action": {"webhook": {"url": "http://127.0.0.1:9/x"}},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let spec = JobSpec::from_json(&body, None).unwrap();
        JobRecord {
            id: JobId::from_u64(0x5eed_0000_0000_0042),
            next_fire_at: spec
                .trigger
                .next_after("2026-06-01T00:00:00.25Z".parse().unwrap()),
            spec: Arc::new(spec),
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: "t".into(),
            paused_at_ms: None,
        }
    }

    fn records() -> Vec<JobRecord> {
        vec![
            record(json!({"at": "2026-07-01T12:00:00.123456789Z"}), json!({})),
            record(
                json!({"every": "90s", "start": "2026-01-01T00:00:00.5Z"}),
                json!({"coalesce": false, "max_instances": 7, "jitter": "3s"}),
            ),
            record(
                json!({"every": "1h", "start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}),
                json!({"paused": true}),
            ),
            record(
                json!({"cron": "45 19 * * THU", "timezone": "Europe/Berlin"}),
                json!({"misfire_grace": "5m"}),
            ),
            record(
                json!({"cron": "*/5 * * * *", "timezone": "America/New_York",
                       "start": "2026-03-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}),
                json!({}),
            ),
            record(
                json!({"every": "1m", "start": "2026-01-01T00:00:00Z"}),
                json!({"metadata": {"schedulezero_job_id": "ding-dong-1", "n": 1}}),
            ),
            // Not a string: not a ScheduleZero id.
            record(
                json!({"at": "2026-07-01T12:00:00Z"}),
                json!({"metadata": {"schedulezero_job_id": 7}}),
            ),
        ]
    }

    /// Every trigger kind and every optional field (the ScheduleZero id among them) reads back
    /// as the summary it was taken from, and only against the `jobs` row it was taken from.
    #[test]
    fn a_summary_row_reads_back_as_its_summary_for_its_own_row_only() {
        let mut seen = Interned::default();
        for mut rec in records() {
            for next in [rec.next_fire_at, None] {
                rec.next_fire_at = next;
                let row = super::super::jobs::encode_job(&rec);
                let bytes = encode_schedule(&rec, &row);
                let id = rec.id.as_u64();
                assert_eq!(
                    decode_schedule(id, &bytes, &row, &mut seen),
                    Some(rec.summary())
                );
                let mut other = row.clone();
                other.push(b' ');
                assert_eq!(decode_schedule(id, &bytes, &other, &mut seen), None);
            }
        }
    }

    /// A row cut short, with bytes after its end, or with a value out of range sends the load
    /// to the `jobs` row instead of yielding a summary.
    #[test]
    fn a_damaged_summary_row_is_not_used() {
        let mut seen = Interned::default();
        for rec in records() {
            let row = super::super::jobs::encode_job(&rec);
            let bytes = encode_schedule(&rec, &row);
            let id = rec.id.as_u64();
            for cut in 0..bytes.len() {
                assert_eq!(decode_schedule(id, &bytes[..cut], &row, &mut seen), None);
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(decode_schedule(id, &long, &row, &mut seen), None);
            let mut kind = bytes.clone();
            kind[10] = 9; // no such trigger
            assert_eq!(decode_schedule(id, &kind, &row, &mut seen), None);
            let mut format = bytes.clone();
            format[0] = b'{';
            assert_eq!(decode_schedule(id, &format, &row, &mut seen), None);
            // Format 1 had no ScheduleZero id: its rows are rebuilt, even with the hash right.
            format[0] = 1;
            assert_eq!(decode_schedule(id, &format, &row, &mut seen), None);
        }
    }
}
