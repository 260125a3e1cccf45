//! Storage of runs: one row per fire, and the per-job index of them (part of [`crate::store`]).
//!
//! | table | key | value |
//! |---|---|---|
//! | `runs` | run id (u64) | one fire's record (JSON) |
//! | `job_runs` | (job id, run id) | nothing: the index of a job's history |
//! | `run_times` | (scheduled time in Unix ms, run id) | job id: the index of a time window |
//! | `open_runs` | run id | nothing: the runs still queued, leased or running |
//!
//! A fire's run rows are first written together with the jobs' next fire times
//! ([`Store::start_runs`], in `jobs.rs`, through [`insert_new_runs`]); this file owns the row
//! format, the indexes and everything after. Run ids grow with recording time, not with
//! scheduled time (catch-up after downtime records old fires late), so a time window is read
//! through `run_times`: pruning and the last day's counts read the runs of their window only,
//! however long the history is. Every write of a run row goes through [`RunRows::put_run`],
//! which keeps `open_runs` in step with the row's status in the same transaction, so a start
//! finds the runs a stop interrupted ([`Store::unfinished_runs`]) without reading the finished
//! history.

use jiff::Timestamp;
use redb::ReadableTable as _;
use serde::{Deserialize, Serialize};

use super::rows::decode_rows;
use super::{corrupt, Loaded, Store, StoreError, JOB_RUNS, OPEN_RUNS, RUNS, RUN_TIMES};
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

/// The `run_times` key of a run: its scheduled time in Unix milliseconds (times before 1970,
/// which no schedule produces, count as 0) and its id.
fn time_key(at: Timestamp, id: u64) -> (u64, u64) {
    (millis(at), id)
}

fn millis(at: Timestamp) -> u64 {
    u64::try_from(at.as_millisecond()).unwrap_or(0)
}

/// The `runs` table and its index of open runs, opened together in a write transaction:
/// every write of a run row goes through [`RunRows::put_run`].
pub(super) struct RunRows<'t> {
    rows: redb::Table<'t, u64, &'static [u8]>,
    open: redb::Table<'t, u64, ()>,
}

impl<'t> RunRows<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(RunRows {
            rows: txn.open_table(RUNS)?,
            open: txn.open_table(OPEN_RUNS)?,
        })
    }

    /// The stored row of run `id`, decoded; `None` if there is none (pruned or quarantined).
    pub(super) fn get(&self, id: u64) -> Result<Option<RunRecord>, StoreError> {
        match self.rows.get(id)? {
            Some(v) => decode_run(id, v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Writes a run's row, and lists it in `open_runs` exactly while its status is open.
    pub(super) fn put_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        self.rows.insert(run.id, encode_run(run).as_slice())?;
        if run.status.is_open() {
            self.open.insert(run.id, ())?;
        } else {
            self.open.remove(run.id)?;
        }
        Ok(())
    }

    /// Removes run `id`'s row and its `open_runs` entry (its other index entries are the
    /// caller's).
    pub(super) fn remove(&mut self, id: u64) -> Result<(), StoreError> {
        self.rows.remove(id)?;
        self.open.remove(id)?;
        Ok(())
    }
}

/// Stores new runs in the caller's transaction, assigning their ids (after the highest stored
/// one) and indexing each by job, by scheduled time and (while open) in `open_runs`.
pub(super) fn insert_new_runs(
    txn: &redb::WriteTransaction,
    runs: &mut [RunRecord],
) -> Result<(), StoreError> {
    let mut table = RunRows::open(txn)?;
    let mut by_job = txn.open_table(JOB_RUNS)?;
    let mut by_time = txn.open_table(RUN_TIMES)?;
    let first_id = match table.rows.last()? {
        Some((k, _)) => k.value() + 1,
        None => 1,
    };
    for (run, id) in runs.iter_mut().zip(first_id..) {
        run.id = id;
        table.put_run(run)?;
        by_job.insert((run.job_id.as_u64(), run.id), ())?;
        by_time.insert(time_key(run.scheduled_at, run.id), run.job_id.as_u64())?;
    }
    Ok(())
}

/// `pick` applied to every `runs` row that decodes (a damaged row is left to `appliance
/// doctor`): what the schema steps that index the existing runs read.
fn from_each_run<T>(
    txn: &redb::WriteTransaction,
    pick: impl Fn(u64, RunRecord) -> Option<T>,
) -> Result<Vec<T>, StoreError> {
    let table = txn.open_table(RUNS)?;
    Ok(decode_rows(&table, |id, v| {
        decode_run(id, v).ok().and_then(|r| pick(id, r))
    })?
    .into_iter()
    .flatten()
    .collect())
}

/// Fills `run_times` from every decodable `runs` row (the 3 → 4 schema step).
pub(super) fn index_run_times(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let entries = from_each_run(txn, |id, r| {
        Some((time_key(r.scheduled_at, id), r.job_id.as_u64()))
    })?;
    let mut by_time = txn.open_table(RUN_TIMES)?;
    for (key, job) in entries {
        by_time.insert(key, job)?;
    }
    Ok(())
}

/// Fills `open_runs` from every decodable `runs` row whose status is open (the 4 → 5 schema
/// step).
pub(super) fn index_open_runs(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let open = from_each_run(txn, |id, r| r.status.is_open().then_some(id))?;
    let mut index = txn.open_table(OPEN_RUNS)?;
    for id in open {
        index.insert(id, ())?;
    }
    Ok(())
}

/// The ids below `before` of the runs scheduled at or after `since` (to the millisecond:
/// callers compare the rows' times), newest id first, read from `run_times` alone: the one
/// walk of a time window, for [`Store::runs_page`] and [`Store::run_counts_since`].
fn window_ids(
    txn: &redb::ReadTransaction,
    since: Timestamp,
    before: u64,
) -> Result<Vec<u64>, StoreError> {
    let by_time = txn.open_table(RUN_TIMES)?;
    let mut ids = Vec::new();
    for row in by_time.range((millis(since), 0)..)? {
        let id = row?.0.value().1;
        if id < before {
            ids.push(id);
        }
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    Ok(ids)
}

impl Store {
    /// Rewrites finished (or progressing) runs.
    pub fn update_runs(&self, runs: &[RunRecord]) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut table = RunRows::open(&txn)?;
            for run in runs {
                table.put_run(run)?;
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
        let before = f.before.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        // Takes one row if the filter keeps it; true once the page is full.
        let mut offer = |id: u64, bytes: &[u8]| -> Result<bool, StoreError> {
            let r = decode_run(id, bytes)?;
            let kept = f.status.is_none_or(|s| r.status == s)
                && f.since.is_none_or(|t| r.scheduled_at >= t);
            if kept {
                out.push(r);
            }
            Ok(kept && out.len() >= f.limit)
        };
        match (f.job, f.since) {
            (Some(job), _) => {
                let index = txn.open_table(JOB_RUNS)?;
                let j = job.as_u64();
                for row in index.range((j, 0)..(j, before))?.rev() {
                    let id = row?.0.value().1;
                    if let Some(v) = table.get(id)? {
                        if offer(id, v.value())? {
                            break;
                        }
                    }
                }
            }
            (None, Some(since)) => {
                for id in window_ids(&txn, since, before)? {
                    if let Some(v) = table.get(id)? {
                        if offer(id, v.value())? {
                            break;
                        }
                    }
                }
            }
            (None, None) => {
                for row in table.range(..before)?.rev() {
                    let (k, v) = row?;
                    if offer(k.value(), v.value())? {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// How many runs scheduled at or after `since` there are of each status, read through
    /// `run_times` (only the window's rows). Damaged rows are not counted: `appliance doctor`
    /// reports them.
    pub fn run_counts_since(&self, since: Timestamp) -> Result<RunCounts, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(RUNS)?;
        let mut counts = RunCounts::default();
        for id in window_ids(&txn, since, u64::MAX)? {
            let Some(v) = table.get(id)? else { continue };
            match decode_run(id, v.value()) {
                Ok(r) if r.scheduled_at >= since => counts.add(r.status),
                _ => {}
            }
        }
        Ok(counts)
    }

    /// Runs still marked running (left over from a crash), and the open runs' rows that do not
    /// decode (each logged at WARN). Reads only the rows `open_runs` lists, never the finished
    /// history: a damaged finished row is left to `appliance doctor`.
    pub fn unfinished_runs(&self) -> Result<Loaded<RunRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(RUNS)?;
        let open = txn.open_table(OPEN_RUNS)?;
        let mut rows = Vec::new();
        for entry in open.iter()? {
            let id = entry?.0.value();
            // No row: moved aside by `appliance doctor --quarantine`.
            let Some(v) = table.get(id)? else { continue };
            match decode_run(id, v.value()) {
                Ok(r) if r.status != RunStatus::Running => {}
                r => rows.push((id.to_string(), r)),
            }
        }
        Ok(Loaded::sort("runs", rows))
    }

    /// Deletes runs scheduled before `cutoff` that are no longer running; returns how many.
    /// Reads only the runs scheduled before `cutoff` (through `run_times`), and drops index
    /// entries whose run row is gone (moved aside by `appliance doctor --quarantine`).
    pub fn prune_runs(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        // Decided on a read transaction, as in `prune_audit`: nothing to prune writes nothing.
        // A damaged run is left for `appliance doctor`, not pruned blindly.
        let mut doomed = Vec::new();
        let mut dangling = Vec::new();
        {
            let db = self.reader()?;
            let txn = db.begin_read()?;
            let table = txn.open_table(RUNS)?;
            let by_time = txn.open_table(RUN_TIMES)?;
            for row in by_time.range(..=(millis(cutoff), u64::MAX))? {
                let (k, job) = row?;
                let (key, job) = (k.value(), job.value());
                match table.get(key.1)? {
                    None => dangling.push((key, job)),
                    Some(v) => {
                        if decode_run(key.1, v.value())
                            .is_ok_and(|r| r.scheduled_at < cutoff && !r.status.is_open())
                        {
                            doomed.push((key, job));
                        }
                    }
                }
            }
        }
        if doomed.is_empty() && dangling.is_empty() {
            return Ok(0);
        }
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut table = RunRows::open(&txn)?;
            let mut by_job = txn.open_table(JOB_RUNS)?;
            let mut by_time = txn.open_table(RUN_TIMES)?;
            for (key, job) in doomed.iter().chain(&dangling) {
                table.remove(key.1)?;
                by_job.remove((*job, key.1))?;
                by_time.remove(*key)?;
            }
        }
        self.commit(txn)?;
        Ok(doomed.len())
    }
}

/// Runs of each status in a window ([`Store::run_counts_since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Runs that failed.
    pub failed: usize,
    /// Missed fires (a summarising record counts once).
    pub missed: usize,
    /// Fires skipped because the previous run was still going.
    pub skipped: usize,
}

impl RunCounts {
    fn add(&mut self, status: RunStatus) {
        match status {
            RunStatus::Failed => self.failed += 1,
            RunStatus::Missed => self.missed += 1,
            RunStatus::Skipped => self.skipped += 1,
            _ => {}
        }
    }
}
