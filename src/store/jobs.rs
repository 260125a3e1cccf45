//! Storage of jobs (part of [`crate::store`]); their runs' rows are in `runs.rs`, and
//! [`Store::start_runs`] here writes a fire's runs together with the jobs' next fire times.
//!
//! | table | key | value |
//! |---|---|---|
//! | `jobs` | job id (u64) | spec, creation and update times, creator, next fire, pause time (JSON) |
//! | `job_schedules` | job id (u64) | the job's [`JobSummary`] and the hash of the `jobs` row it was taken from (JSON) |

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::rows::{decode_rows, open_existing};
use super::runs::encode_run;
use super::{
    append_audit, append_prepared, corrupt, tasks, Loaded, PreparedAudit, Store, StoreError, JOBS,
    JOB_RUNS, JOB_SCHEDULES, RUNS,
};
use crate::model::{AuditEntry, JobRecord, JobSummary, RunRecord};
use crate::sched::{CronExpr, JobId, JobSpec, Schedule, Trigger, Zone};

/// A `jobs` row as written, and as read when a row fails the typed decode ([`JobRowIn`]): the
/// spec as a JSON tree, which [`JobSpec::from_json`] diagnoses field by field.
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

pub(super) fn encode_job(r: &JobRecord) -> Vec<u8> {
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

/// The same row decoded straight into the checked spec (no JSON tree; see
/// `sched::spec::typed`): how every row is read at startup.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRowIn {
    spec: JobSpec,
    created_at_ms: u64,
    updated_at_ms: u64,
    created_by: String,
    next_fire_at: Option<Timestamp>,
    #[serde(default)]
    paused_at_ms: Option<u64>,
}

pub(super) fn decode_job(id: u64, bytes: &[u8]) -> Result<JobRecord, StoreError> {
    if let Ok(row) = serde_json::from_slice::<JobRowIn>(bytes) {
        return Ok(JobRecord {
            id: JobId::from_u64(id),
            spec: Arc::new(row.spec),
            created_at_ms: row.created_at_ms,
            updated_at_ms: row.updated_at_ms,
            created_by: row.created_by,
            next_fire_at: row.next_fire_at,
            paused_at_ms: row.paused_at_ms,
        });
    }
    // A damaged row: decode it again the slow way, whose errors name the field by its path.
    let key = format!("jobs/{}", JobId::from_u64(id));
    let row: JobRow = serde_json::from_slice(bytes).map_err(|e| corrupt(&key, e))?;
    Ok(JobRecord {
        id: JobId::from_u64(id),
        spec: Arc::new(JobSpec::from_json(&row.spec, None).map_err(|e| corrupt(&key, e))?),
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
        created_by: row.created_by,
        next_fire_at: row.next_fire_at,
        paused_at_ms: row.paused_at_ms,
    })
}

// ---- job_schedules: what the scheduler needs of each job, without its action ---------------
//
// A `job_schedules` row is derived from the `jobs` row of the same id and written in the same
// transaction as it. It carries a 64-bit hash (`row_hash`) of the `jobs` row bytes it was taken from, and
// is trusted only while that hash matches: a `jobs` row changed any other way (an older
// appliance, a restored file, damage) is decoded in full instead, and its summary rewritten.
// So the table is a verified cache: a file without it opens and serves, and builds it at the
// scheduler's first start.

/// A `job_schedules` row. Durations in nanoseconds, times in full precision.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleRow<'a> {
    /// `row_hash` of the `jobs` row this was taken from.
    row_hash: u64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    trigger: TriggerRow<'a>,
    misfire_grace_ns: u64,
    coalesce: bool,
    max_instances: u32,
    jitter_ns: u64,
    paused: bool,
    next_fire_at: Option<Timestamp>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum TriggerRow<'a> {
    At {
        at: Timestamp,
    },
    Every {
        interval_ns: u64,
        start: Timestamp,
        end: Option<Timestamp>,
    },
    Cron {
        #[serde(borrow)]
        expr: Cow<'a, str>,
        #[serde(borrow)]
        zone: Cow<'a, str>,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    },
}

/// A 64-bit hash of a `jobs` row, stable across releases (unlike `std`'s hashers) and fast
/// enough to check every row at start: FNV-1a's step over 8-byte words (each step a bijection
/// of the state, so a row that differs in one word always hashes differently), with a shift
/// that folds the high bits back into the low ones.
fn row_hash(bytes: &[u8]) -> u64 {
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

/// The `job_schedules` row of `rec`, whose `jobs` row is `row`.
pub(super) fn encode_schedule(rec: &JobRecord, row: &[u8]) -> Vec<u8> {
    let spec = &rec.spec;
    let trigger = match &spec.trigger {
        Trigger::At(at) => TriggerRow::At { at: *at },
        Trigger::Every {
            interval,
            start,
            end,
        } => TriggerRow::Every {
            interval_ns: nanos(*interval),
            start: *start,
            end: *end,
        },
        Trigger::Cron {
            expr,
            zone,
            start,
            end,
        } => TriggerRow::Cron {
            expr: expr.as_str().into(),
            zone: zone.name().into(),
            start: *start,
            end: *end,
        },
    };
    serde_json::to_vec(&ScheduleRow {
        row_hash: row_hash(row),
        name: spec.name.as_str().into(),
        trigger,
        misfire_grace_ns: nanos(spec.misfire_grace),
        coalesce: spec.coalesce,
        max_instances: spec.max_instances,
        jitter_ns: nanos(spec.jitter),
        paused: spec.paused,
        next_fire_at: rec.next_fire_at,
    })
    .expect("rows serialise")
}

/// Zones and cron expressions by name, so that a start looks each up once rather than once
/// per job.
#[derive(Default)]
struct Interned {
    zones: HashMap<String, Zone>,
    crons: HashMap<String, CronExpr>,
}

/// The summary in a `job_schedules` row, if the row was taken from exactly the `jobs` row
/// `row` and still holds checked values; `None` sends the caller to the `jobs` row itself.
fn decode_schedule(id: u64, bytes: &[u8], row: &[u8], seen: &mut Interned) -> Option<JobSummary> {
    let r: ScheduleRow = serde_json::from_slice(bytes).ok()?;
    if r.row_hash != row_hash(row) {
        return None;
    }
    let trigger = match r.trigger {
        TriggerRow::At { at } => Trigger::At(at),
        TriggerRow::Every {
            interval_ns,
            start,
            end,
        } => {
            let interval = Duration::from_nanos(interval_ns);
            if interval < crate::sched::spec::MIN_INTERVAL || end.is_some_and(|e| e <= start) {
                return None;
            }
            Trigger::Every {
                interval,
                start,
                end,
            }
        }
        TriggerRow::Cron {
            expr,
            zone,
            start,
            end,
        } => {
            let zone = match seen.zones.get(zone.as_ref()) {
                Some(z) => z.clone(),
                None => {
                    let z = Zone::get(&zone).ok()?;
                    seen.zones.insert(zone.into_owned(), z.clone());
                    z
                }
            };
            let expr = match seen.crons.get(expr.as_ref()) {
                Some(e) => e.clone(),
                None => {
                    let e = CronExpr::parse(&expr).ok()?;
                    seen.crons.insert(expr.into_owned(), e.clone());
                    e
                }
            };
            Trigger::Cron {
                expr,
                zone,
                start,
                end,
            }
        }
    };
    Some(JobSummary {
        id: JobId::from_u64(id),
        name: r.name.into(),
        schedule: Schedule {
            trigger,
            misfire_grace: Duration::from_nanos(r.misfire_grace_ns),
            coalesce: r.coalesce,
            max_instances: r.max_instances,
            jitter: Duration::from_nanos(r.jitter_ns),
            paused: r.paused,
        },
        next_fire_at: r.next_fire_at,
    })
}

/// Writes `rec` into `jobs` and its summary into `job_schedules`, in the caller's transaction.
fn put_job(txn: &redb::WriteTransaction, rec: &JobRecord) -> Result<(), StoreError> {
    let row = encode_job(rec);
    txn.open_table(JOB_SCHEDULES)?
        .insert(rec.id.as_u64(), encode_schedule(rec, &row).as_slice())?;
    txn.open_table(JOBS)?
        .insert(rec.id.as_u64(), row.as_slice())?;
    Ok(())
}

/// Deletes a job's `jobs` row and its summary, in the caller's transaction.
pub(super) fn remove_job(txn: &redb::WriteTransaction, id: u64) -> Result<(), StoreError> {
    txn.open_table(JOBS)?.remove(id)?;
    txn.open_table(JOB_SCHEDULES)?.remove(id)?;
    Ok(())
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
    /// Every stored job that decodes, and the rows that do not (each logged at WARN).
    pub fn jobs(&self) -> Result<Loaded<JobRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let rows = decode_rows(&table, |id, v| {
            (JobId::from_u64(id).to_string(), decode_job(id, v))
        })?;
        Ok(Loaded::sort("jobs", rows))
    }

    /// What the scheduler keeps of every stored job ([`JobSummary`]), and the rows that do not
    /// decode (each logged at WARN), as [`Store::jobs`] would find them: read from
    /// `job_schedules` where its entry was taken from the current `jobs` row (the hash
    /// matches), otherwise decoded from the `jobs` row in full. Entries found missing or stale
    /// (a file from before the table, or rows written by an older appliance) are then
    /// rewritten in one write transaction; if that fails the summaries are still returned
    /// (and the next start decodes those rows again).
    pub fn job_summaries(&self) -> Result<Loaded<JobSummary>, StoreError> {
        let mut repairs = Repairs::default();
        let loaded = {
            let db = self.reader()?;
            let txn = db.begin_read()?;
            let table = txn.open_table(JOBS)?;
            let index = open_existing(&txn, JOB_SCHEDULES)?;
            let mut summaries = match &index {
                Some(t) => Some(t.iter()?.peekable()),
                None => None,
            };
            let mut seen = Interned::default();
            let mut failed: Option<StoreError> = None;
            let rows = decode_rows(&table, |id, row| {
                let key = JobId::from_u64(id).to_string();
                let mut entry = None;
                // Both tables are in id order: walk the summaries alongside.
                while let Some(next) = summaries.as_mut().and_then(|s| s.peek()) {
                    let k = match next {
                        Ok((k, _)) => k.value(),
                        Err(_) => {
                            let Some(Err(e)) = summaries.as_mut().and_then(|s| s.next()) else {
                                unreachable!("peeked an error")
                            };
                            failed.get_or_insert(e.into());
                            summaries = None;
                            break;
                        }
                    };
                    if k > id {
                        break;
                    }
                    let (k, v) = summaries
                        .as_mut()
                        .and_then(|s| s.next())
                        .expect("peeked")
                        .expect("peeked Ok");
                    if k.value() < id {
                        repairs.drop.push(k.value());
                    } else {
                        entry = decode_schedule(id, v.value(), row, &mut seen);
                    }
                }
                if let Some(summary) = entry {
                    return (key, Ok(summary));
                }
                let decoded = decode_job(id, row);
                if let Ok(rec) = &decoded {
                    repairs
                        .put
                        .push((id, row_hash(row), encode_schedule(rec, row)));
                }
                (key, decoded.map(|rec| rec.summary()))
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            if let Some(s) = summaries.as_mut() {
                for rest in s {
                    repairs.drop.push(rest?.0.value());
                }
            }
            Loaded::sort("jobs", rows)
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

    /// The stored jobs with these ids, in the order given; ids with no row, or a row that no
    /// longer decodes (logged at WARN), are left out. One read transaction.
    pub fn jobs_by_id(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(v) = table.get(id.as_u64())? else {
                continue;
            };
            match decode_job(id.as_u64(), v.value()) {
                Ok(rec) => out.push(rec),
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "damaged job row skipped (see `appliance doctor`)")
                }
            }
        }
        Ok(out)
    }

    /// The job with this id, if stored.
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
        // Every row is encoded here, by the caller, before it queues: the batch's leader only
        // inserts bytes (and numbers the audit entry).
        let id = rec.id.as_u64();
        let row = encode_job(rec);
        let summary = encode_schedule(rec, &row);
        let audit = audit.map(PreparedAudit::new);
        let meter = self.audit_meter.clone();
        self.write_grouped(move |txn| {
            let mut table = txn.open_table(JOBS)?;
            if table.get(id)?.is_some() {
                return Ok(false);
            }
            table.insert(id, row.as_slice())?;
            txn.open_table(JOB_SCHEDULES)?
                .insert(id, summary.as_slice())?;
            if let Some(a) = audit {
                append_prepared(txn, &meter, a)?;
            }
            Ok(true)
        })
    }

    /// Stores many jobs in one transaction (overwriting any with the same id), without audit
    /// entries: for benchmarks and tests that need a large database quickly.
    #[doc(hidden)]
    pub fn insert_jobs_unaudited(&self, recs: &[JobRecord]) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        for rec in recs {
            put_job(&txn, rec)?;
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Applies `change` in a group commit (`store/group.rs`): concurrent callers' changes are
    /// written in one transaction with one fsync, and each returns only after that commit did,
    /// with `Ok` only if it succeeded. `change` must return `Err` only for a storage failure,
    /// which fails every change of its batch.
    fn write_grouped<T: Send + 'static>(
        &self,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let out = std::sync::Arc::new(std::sync::Mutex::new(None));
        let put = out.clone();
        self.group.submit(
            Box::new(move |txn| {
                let v = change(txn)?;
                *put.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
                Ok(())
            }),
            |changes| {
                let db = self.writer()?;
                let txn = db.begin_write()?;
                for change in changes {
                    change(&txn)?;
                }
                self.commit(txn)?;
                Ok(())
            },
        )?;
        let v = out.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(v.expect("a committed change left its result"))
    }

    /// (group commits written, changes in them) since the store was opened.
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.group.counts()
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
            let current = {
                let table = txn.open_table(JOBS).map_err(StoreError::from)?;
                let row = table.get(id.as_u64()).map_err(StoreError::from)?;
                match row {
                    Some(v) => decode_job(id.as_u64(), v.value())?,
                    None => return Ok(None),
                }
            };
            let (next, audit) = change(&current)?;
            match &next {
                Some(rec) => put_job(&txn, rec)?,
                None => remove_job(&txn, id.as_u64())?,
            }
            if let Some(a) = audit {
                append_audit(&txn, &self.audit_meter, a)?;
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
                table.insert(run.id, encode_run(run).as_slice())?;
                index.insert((run.job_id.as_u64(), run.id), ())?;
            }
            for (id, next) in next_fires {
                let current = {
                    let jobs = txn.open_table(JOBS)?;
                    let row = jobs.get(id.as_u64())?;
                    match row {
                        Some(v) => decode_job(id.as_u64(), v.value())?,
                        None => continue,
                    }
                };
                if current.next_fire_at != *next {
                    let mut rec = current;
                    rec.next_fire_at = *next;
                    put_job(&txn, &rec)?;
                }
            }
            tasks::insert_new(&txn, runs, tasks)?;
        }
        self.commit(txn)?;
        Ok(())
    }
}
