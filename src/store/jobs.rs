//! Storage of jobs and their runs (part of [`crate::store`]).
//!
//! | table | key | value |
//! |---|---|---|
//! | `jobs` | job id (u64) | spec, creation and update times, creator, next fire, pause time (JSON) |
//! | `runs` | run id (u64) | one fire's record (JSON) |
//! | `job_runs` | (job id, run id) | nothing: the index of a job's history |

use std::sync::Arc;

use jiff::Timestamp;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::rows::decode_rows;
use super::{append_audit, corrupt, tasks, Loaded, Store, StoreError, JOBS, JOB_RUNS, RUNS};
use crate::model::{AuditEntry, JobRecord, RunFilter, RunRecord, RunStatus};
use crate::sched::{JobId, JobSpec};

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

/// A `runs` row: one fire of a job. The field names, their order and the serde attributes
/// are the on-disk format.
#[derive(Serialize, Deserialize)]
struct RunRow {
    /// Assigned when first stored (0 before).
    id: u64,
    #[serde(with = "crate::sched::spec::job_id_hex")]
    job_id: JobId,
    job_name: String,
    /// When the schedule said it should run (RFC 3339).
    scheduled_at: Timestamp,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    /// Attempts made so far.
    attempt: u32,
    status: RunStatus,
    /// `schedule` or `manual` (run now).
    trigger: String,
    http_status: Option<u16>,
    error: Option<String>,
    duration_ms: Option<u64>,
    /// For a summarising missed record: how many fires it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    /// Handler runs: the handler the call is addressed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handler: Option<String>,
    /// Handler runs: the handler's result (acked runs), at most 64 KiB of JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<serde_json::Value>,
    /// Handler runs: milliseconds from the scheduled time to the first lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue_delay_ms: Option<u64>,
}

impl RunRow {
    fn from_record(r: &RunRecord) -> RunRow {
        RunRow {
            id: r.id,
            job_id: r.job_id,
            job_name: r.job_name.clone(),
            scheduled_at: r.scheduled_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            attempt: r.attempt,
            status: r.status,
            trigger: r.trigger.clone(),
            http_status: r.http_status,
            error: r.error.clone(),
            duration_ms: r.duration_ms,
            count: r.count,
            handler: r.handler.clone(),
            result: r.result.clone(),
            queue_delay_ms: r.queue_delay_ms,
        }
    }

    fn into_record(self) -> RunRecord {
        RunRecord {
            id: self.id,
            job_id: self.job_id,
            job_name: self.job_name,
            scheduled_at: self.scheduled_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            attempt: self.attempt,
            status: self.status,
            trigger: self.trigger,
            http_status: self.http_status,
            error: self.error,
            duration_ms: self.duration_ms,
            count: self.count,
            handler: self.handler,
            result: self.result,
            queue_delay_ms: self.queue_delay_ms,
        }
    }
}

/// Encodes a run as stored in `runs`.
pub(super) fn encode_run(r: &RunRecord) -> Vec<u8> {
    serde_json::to_vec(&RunRow::from_record(r)).expect("rows serialise")
}

/// Decodes the `runs` row with id `id`.
pub(super) fn decode_run(id: u64, bytes: &[u8]) -> Result<RunRecord, StoreError> {
    serde_json::from_slice(bytes)
        .map(RunRow::into_record)
        .map_err(|e| corrupt(&format!("runs/{id}"), e))
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
        let (id, row) = (rec.id.as_u64(), encode_job(rec));
        let meter = self.audit_meter.clone();
        self.write_grouped(move |txn| {
            let mut table = txn.open_table(JOBS)?;
            if table.get(id)?.is_some() {
                return Ok(false);
            }
            table.insert(id, row.as_slice())?;
            if let Some(a) = audit {
                append_audit(txn, &meter, a)?;
            }
            Ok(true)
        })
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
                table.insert(run.id, encode_run(run).as_slice())?;
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
                        let r = decode_run(id, v.value())?;
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
                    let r = decode_run(k.value(), v.value())?;
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
        let mut rows = decode_rows(&table, |id, v| (id.to_string(), decode_run(id, v)))?;
        rows.retain(|(_, r)| !matches!(r, Ok(r) if r.status != RunStatus::Running));
        Ok(Loaded::sort("runs", rows))
    }

    /// Deletes runs scheduled before `cutoff` that are no longer running; returns how many.
    pub fn prune_runs(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        // Decided on a read transaction, as in `prune_audit`: nothing to prune writes nothing.
        let doomed: Vec<(u64, u64)> = {
            let db = self.reader()?;
            let txn = db.begin_read()?;
            let table = txn.open_table(RUNS)?;
            // A full scan: ids grow with recording time, not with scheduled time (catch-up
            // after downtime records old fires late), and this runs once an hour.
            // A damaged run is left for `appliance doctor`, not pruned blindly.
            decode_rows(&table, |id, v| {
                decode_run(id, v)
                    .ok()
                    .filter(|r| r.scheduled_at < cutoff && !r.status.is_open())
                    .map(|r| (id, r.job_id.as_u64()))
            })?
            .into_iter()
            .flatten()
            .collect()
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
