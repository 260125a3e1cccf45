//! Storage of runs: one row per fire, and the per-job index of them (part of [`crate::store`]).
//!
//! | table | key | value |
//! |---|---|---|
//! | `runs` | run id (u64) | one fire's record (JSON) |
//! | `job_runs` | (job id, run id) | nothing: the index of a job's history |
//!
//! A fire's run rows are first written together with the jobs' next fire times
//! ([`Store::start_runs`], in `jobs.rs`); this file owns the row format and everything after.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::rows::decode_rows;
use super::{corrupt, Loaded, Store, StoreError, JOB_RUNS, RUNS};
use crate::model::{RunFilter, RunRecord, RunStatus};
use crate::sched::JobId;

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
