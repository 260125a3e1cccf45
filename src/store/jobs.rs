//! Storage of jobs (part of [`crate::store`]); their runs' rows are in `runs.rs`, and
//! [`Store::start_runs`] here writes a fire's runs together with the jobs' next fire times.
//!
//! | table | key | value |
//! |---|---|---|
//! | `jobs` | job id (u64) | spec, creation and update times, creator, next fire, pause time (JSON) |
//! | `job_schedules` | job id (u64) | the job's summary and the hash of the `jobs` row it was taken from (`schedules.rs`, which also holds the scheduler's load) |

use std::sync::Arc;

use jiff::Timestamp;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::rows::decode_rows;
use super::schedules::encode_schedule;
use super::{
    append_audit, append_prepared, corrupt, tasks, Loaded, PreparedAudit, Store, StoreError, JOBS,
    JOB_SCHEDULES,
};
use crate::model::{AuditEntry, JobRecord, RunRecord};
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

impl Store {
    /// Every stored job that decodes, and the rows that do not (each logged at WARN).
    pub fn jobs(&self) -> Result<Loaded<JobRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let rows = decode_rows(&table, |id, v| {
            (JobId::from_u64(id).to_string(), decode_job(id, v))
        })?;
        self.count_job_rows_read(rows.len() as u64);
        Ok(Loaded::sort("jobs", rows))
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
            self.count_job_rows_read(1);
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
        if row.is_some() {
            self.count_job_rows_read(1);
        }
        row.map(|v| decode_job(id.as_u64(), v.value())).transpose()
    }

    fn count_job_rows_read(&self, n: u64) {
        self.job_rows_read
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many `jobs` rows [`Store::jobs`] and the reads of chosen jobs ([`Store::job`],
    /// [`Store::jobs_by_id`]) have decoded since the store was opened: what showing jobs
    /// costs (a listing page reads only its own rows, a serving `status` none).
    pub fn job_rows_read(&self) -> u64 {
        self.job_rows_read
            .load(std::sync::atomic::Ordering::Relaxed)
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
            super::runs::insert_new_runs(&txn, runs)?;
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
