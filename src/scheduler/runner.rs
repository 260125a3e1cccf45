//! The scheduler's runner (its driver task; not the network [`crate::driver`]): the one task that owns the sans-IO [`Core`], the clock and the
//! recording of fires.
//!
//! Layer: driver. Reads the clock, sleeps until the core's next deadline (or a command, a
//! finished run, a finished handler task), takes the core's fires, records them (runs and the
//! jobs' next fire times in one store transaction), and starts each webhook run on its own task
//! through [`delivery::deliver`]; handler calls are enqueued in [`Queue`]. Finished runs come
//! back on a channel and are written in batches. Prunes old runs and audit entries hourly, and
//! the audit trail also as soon as an eighth of its size cap was appended since its last prune.
//!
//! When a commit fails (a full disk) nothing unrecorded runs: the driver stops taking fires,
//! tries [`Store::recover`] every `RECOVER_EVERY` (2 s), then reloads the stored next fire times so
//! the fires that could not be recorded come due again under the misfire rules.
#![allow(clippy::disallowed_methods)] // driver: reads the clock and sleeps

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use super::handle::{Command, RunReply};
use super::table::{Jobs, Listed, Table};
use super::{runs, Config, Handle, JobEntry, JobNotFound, RunNowError, RunStats};
use crate::clock::Clock;
use crate::model::{JobRecord, JobSummary, RunRecord, RunStatus};
use crate::queue::{self, Task};
use crate::sched::{Core, Fire, FireKind, JobId, JobSpec};
use crate::store::{Store, StoreError};
use crate::tasks::Queue;
use crate::webhook::{delivery, Executor};

/// How often old runs and audit entries are pruned (the audit trail also whenever the bytes
/// appended since its last prune pass `audit_max_bytes / AUDIT_PRUNE_FRACTION`).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The audit trail is pruned once the bytes appended since its last prune pass this fraction
/// of its cap, so it never holds more than the cap and an eighth between hourly sweeps.
const AUDIT_PRUNE_FRACTION: u64 = 8;
/// Most commands applied in one wake-up of the driver before it takes fires again.
const COMMANDS_PER_WAKE: usize = 64;
/// Longest sleep when no job is due (the loop also wakes on every command).
const IDLE_SLEEP: Duration = Duration::from_secs(3600);
/// While fires cannot be recorded, how often the driver tries to make the store writable.
const RECOVER_EVERY: Duration = Duration::from_secs(2);

/// Loads every stored job, marks runs interrupted by a previous stop as failed, and starts
/// the driver task. Returns the handle for the API and the driver's task (it ends when
/// `shutdown` turns true).
pub fn start(
    store: Arc<Store>,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(Handle, tokio::task::JoinHandle<()>), StoreError> {
    launch(store, config, Clock::System, shutdown)
}

/// [`start`] on the given clock. The driver is its only reader in the scheduler: the handle
/// asks it for the time of each operation, and the core is handed the time. The task queue
/// gets the same clock.
fn launch(
    store: Arc<Store>,
    config: Config,
    clock: Clock,
    shutdown: watch::Receiver<bool>,
) -> Result<(Handle, tokio::task::JoinHandle<()>), StoreError> {
    let now = clock.now();
    let unfinished = store.unfinished_runs()?;
    let mut damaged_at_start = unfinished.damaged.len();
    let mut interrupted = unfinished.rows;
    for r in &mut interrupted {
        runs::interrupted(r, now);
    }
    if !interrupted.is_empty() {
        store.update_runs(&interrupted)?;
    }
    let loaded = store.job_summaries()?;
    damaged_at_start += loaded.damaged.len();
    let summaries = loaded.rows;
    let stats = Arc::new(Mutex::new(RunStats::default()));
    let (tasks, task_done, held) = Queue::load_on(store.clone(), stats.clone(), clock.clone())?;
    let mut table = Jobs::with_capacity(summaries.len());
    let mut core = Core::load(
        summaries.into_iter().map(|s| {
            let listed = Listed::new(s.name, None, s.schedule.paused, 0);
            table.insert(s.id, listed, s.schedulezero_id.as_deref());
            (s.id, s.schedule, s.next_fire_at)
        }),
        now,
    );
    for (id, listed) in table.iter_mut() {
        listed.next_fire_at = core.next_fire_at(*id);
    }
    // Handler tasks still queued or leased hold their instances across the restart.
    for (job, n) in held {
        core.add_running(job, n);
        if let Some(e) = table.get_mut(&job) {
            e.running = core.running(job);
        }
    }
    tracing::info!(
        jobs = table.len(),
        interrupted = interrupted.len(),
        damaged = damaged_at_start,
        "scheduler loaded"
    );
    let table = Table::new(table);
    release_freed_heap();
    let view = table.view();
    tasks.spawn_timer(shutdown.clone());
    let policy = Arc::new(config.webhook_policy.clone());
    let (tx, rx) = mpsc::channel(256);
    let (fin_tx, fin_rx) = mpsc::channel(4096);
    let recording = Arc::new(AtomicBool::new(true));
    let executor = Executor::new(config.webhook_policy.clone());
    let webhook_attempts = executor.attempts.clone();
    let driver = Driver {
        recording: recording.clone(),
        unsaved: Vec::new(),
        in_flight: HashSet::new(),
        next_recover: std::time::Instant::now(),
        core,
        clock: clock.clone(),
        store: store.clone(),
        table,
        stats: stats.clone(),
        executor: executor.clone(),
        finished: fin_tx,
        config,
        manual: Vec::new(),
        tasks: tasks.clone(),
    };
    let task = tokio::spawn(driver.run(rx, fin_rx, task_done, shutdown));
    Ok((
        Handle {
            commands: tx,
            clock,
            table: view,
            store,
            stats,
            tasks,
            damaged_at_start,
            webhook_attempts,
            policy,
            recording,
            executor,
            naming: tokio::sync::Mutex::new(()),
            creating: Arc::default(),
        },
        task,
    ))
}

struct Driver {
    core: Core,
    clock: Clock,
    store: Arc<Store>,
    table: Table,
    stats: Arc<Mutex<RunStats>>,
    executor: Executor,
    finished: mpsc::Sender<RunRecord>,
    config: Config,
    /// `run now` fires not yet taken: (job, time) so their runs are marked manual, and who
    /// waits for the run's id.
    manual: Vec<(JobId, Timestamp, RunReply)>,
    tasks: Arc<Queue>,
    /// Shared with [`Handle::recording`]. While false the driver takes no fires (the core is not
    /// advanced) and tries [`Store::recover`] every [`RECOVER_EVERY`].
    recording: Arc<AtomicBool>,
    /// Finished runs whose final state could not be written yet; written on recovery.
    unsaved: Vec<RunRecord>,
    /// Ids of recorded runs whose webhooks are executing.
    in_flight: HashSet<u64>,
    /// Earliest next recovery attempt.
    next_recover: std::time::Instant,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut finished: mpsc::Receiver<RunRecord>,
        mut task_done: mpsc::UnboundedReceiver<queue::Finished>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        let audit = self.store.audit_meter();
        audit.set_threshold(self.config.audit_max_bytes / AUDIT_PRUNE_FRACTION);
        loop {
            let now = self.clock.now();
            let sleep = match self.core.poll_timeout() {
                _ if !self.is_recording() => RECOVER_EVERY,
                Some(due) => now
                    .duration_until(due)
                    .try_into()
                    .unwrap_or(Duration::ZERO)
                    .min(IDLE_SLEEP),
                None => IDLE_SLEEP,
            };
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
                cmd = commands.recv() => match cmd {
                    Some(cmd) => {
                        self.handle(cmd);
                        // Concurrent callers' commands (a group commit's creates) are applied
                        // in one wake-up, not one loop round each.
                        for _ in 1..COMMANDS_PER_WAKE {
                            match commands.try_recv() {
                                Ok(cmd) => self.handle(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                Some(run) = finished.recv() => {
                    let mut batch = vec![run];
                    while let Ok(r) = finished.try_recv() {
                        batch.push(r);
                        if batch.len() >= 1024 { break; }
                    }
                    self.record_finished(batch).await;
                }
                Some(done) = task_done.recv() => {
                    self.task_finished(done);
                    while let Ok(done) = task_done.try_recv() {
                        self.task_finished(done);
                    }
                }
                _ = prune.tick() => self.prune().await,
                _ = audit.over_threshold() => {
                    if audit.due() {
                        self.prune_audit().await;
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
            if !self.is_recording() && std::time::Instant::now() >= self.next_recover {
                self.resume_recording().await;
            }
            if self.is_recording() {
                self.core.handle_timeout(self.clock.now());
                self.take_fires().await;
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// Applies one command from the handle. The handle read the time of the change from this
    /// clock without asking: so first the fires due by now are taken into the core's queue
    /// (recorded by the next `take_fires`), exactly as if the driver had woken for them
    /// before the change arrived. A change never overtakes a fire due before it.
    fn handle(&mut self, cmd: Command) {
        let now = self.clock.now();
        if self.is_recording() {
            self.core.handle_timeout(now);
        }
        match cmd {
            Command::Upsert { record, done } => {
                // Stored with its first fire (`Core::first_fire`), so that is the persisted
                // value: the core computes it again only if the record carries none.
                let id = record.id;
                self.core
                    .upsert(id, &*record.spec, record.next_fire_at, now);
                let _ = done.send(self.put(*record));
            }
            Command::Remove(id, done) => {
                self.core.remove(id);
                self.table.write().remove(&id);
                let _ = done.send(());
            }
            Command::Pause { record, done } => {
                let known = self.core.pause(record.id);
                let _ = done.send(known.then(|| self.put(*record)));
            }
            Command::Resume {
                record,
                catch_up_since,
                done,
            } => {
                let id = record.id;
                let known = match catch_up_since {
                    Some(since) => self.core.resume_catching_up(id, since, now),
                    None => self.core.resume(id, now),
                };
                let _ = done.send(known.then(|| self.put(*record)));
            }
            Command::RunNow(id, done) => {
                if !self.is_recording() {
                    let _ = done.send(Err(RunNowError::NotRecorded(self.store.refusal())));
                } else if !self.core.contains(id) {
                    let _ = done.send(Err(JobNotFound(id).into()));
                } else if self.core.run_now(id, now) {
                    self.manual.push((id, now, done));
                } else {
                    let _ = done.send(Err(RunNowError::Busy(id)));
                }
            }
        }
    }

    /// Puts the stored `record` into the table with the core's next fire and running count,
    /// and returns the entry.
    fn put(&mut self, mut record: JobRecord) -> JobEntry {
        let id = record.id;
        record.next_fire_at = self.core.next_fire_at(id);
        let listed = Listed::new(
            record.spec.name.as_str().into(),
            record.next_fire_at,
            record.spec.paused,
            self.core.running(id),
        );
        let running = listed.running;
        self.table
            .write()
            .insert(id, listed, record.spec.schedulezero_id());
        JobEntry { record, running }
    }

    /// A handler run finished (its run row was written with it): free its instance slot.
    fn task_finished(&mut self, done: queue::Finished) {
        self.core.handle_finished(done.job_id);
        if let Some(e) = self.table.write().get_mut(&done.job_id) {
            e.running = self.core.running(done.job_id);
        }
        let mut stats = self.stats.lock().unwrap();
        if done.succeeded {
            stats.succeeded += 1;
        } else {
            stats.failed += 1;
        }
    }

    /// Records every pending fire and the jobs' new next fire times in one transaction, then
    /// starts the runs.
    async fn take_fires(&mut self) {
        let fires: Vec<Fire> = std::iter::from_fn(|| self.core.poll_fire()).collect();
        let dirty = self.core.take_dirty();
        if fires.is_empty() && dirty.is_empty() {
            return;
        }
        // The core keeps schedules only: the specs of the fires that run are read from the
        // store (one read transaction), the names of the others come from the table.
        let mut run_ids: Vec<JobId> = fires
            .iter()
            .filter(|f| f.kind.is_run())
            .map(|f| f.job)
            .collect();
        run_ids.sort_unstable();
        run_ids.dedup();
        let specs: HashMap<JobId, Arc<JobSpec>> = if run_ids.is_empty() {
            HashMap::new()
        } else {
            let store = self.store.clone();
            let read = tokio::task::spawn_blocking(move || store.jobs_by_id(&run_ids))
                .await
                .expect("store task does not panic");
            match read {
                Ok(records) => records.into_iter().map(|r| (r.id, r.spec)).collect(),
                Err(e) => {
                    self.not_recorded(&fires, Vec::new(), &e);
                    return;
                }
            }
        };
        // A job deleted after it fired (the delete is committed before the driver hears of
        // it) has no row left: its fire is neither run nor recorded.
        let (fires, gone): (Vec<Fire>, Vec<Fire>) = fires
            .into_iter()
            .partition(|f| !f.kind.is_run() || specs.contains_key(&f.job));
        for f in gone {
            self.core.handle_finished(f.job);
            if let Some(i) = self
                .manual
                .iter()
                .position(|m| (m.0, m.1) == (f.job, f.scheduled_at))
            {
                let _ = self
                    .manual
                    .swap_remove(i)
                    .2
                    .send(Err(JobNotFound(f.job).into()));
            }
        }
        let now = self.clock.now();
        let mut runs = Vec::with_capacity(fires.len());
        let mut waiters = Vec::with_capacity(fires.len());
        // Handler fires: (index into `runs`, task), committed with the runs.
        let mut tasks: Vec<(usize, Task)> = Vec::new();
        {
            let table = self.table.write();
            for f in &fires {
                let waiter = match f.kind {
                    FireKind::Run => self
                        .manual
                        .iter()
                        .position(|m| (m.0, m.1) == (f.job, f.scheduled_at))
                        .map(|i| self.manual.swap_remove(i).2),
                    _ => None,
                };
                let spec = specs.get(&f.job);
                let name = table.get(&f.job).map_or("", |l| &*l.name);
                let (run, task) =
                    runs::for_fire(f, name, spec.map(|s| &**s), waiter.is_some(), now);
                waiters.push(waiter);
                if let Some(task) = task {
                    tasks.push((runs.len(), task));
                }
                runs.push(run);
            }
        }
        let store = self.store.clone();
        let dirty_for_store = dirty.clone();
        let result = tokio::task::spawn_blocking(move || {
            store
                .start_runs_with_tasks(&mut runs, &dirty_for_store, &mut tasks)
                .map(|_| (runs, tasks))
        })
        .await
        .expect("store task does not panic");
        let runs = match result {
            Ok((r, tasks)) => {
                self.tasks
                    .enqueue(tasks.into_iter().map(|(_, t)| t).collect())
                    .await;
                for (run, w) in r.iter().zip(waiters) {
                    if let Some(w) = w {
                        let _ = w.send(Ok(run.id));
                    }
                }
                r
            }
            Err(e) => {
                self.not_recorded(&fires, waiters, &e);
                return;
            }
        };
        {
            let mut t = self.table.write();
            for (id, next) in &dirty {
                if let Some(e) = t.get_mut(id) {
                    e.next_fire_at = *next;
                }
            }
        }
        let mut stats = self.stats.lock().unwrap();
        for run in runs {
            match run.status {
                RunStatus::Missed => stats.missed += 1,
                RunStatus::Skipped => stats.skipped += 1,
                _ => {}
            }
            if matches!(run.status, RunStatus::Missed | RunStatus::Skipped) {
                runs::log_outcome(&run);
            }
            if run.status == RunStatus::Queued {
                // A handler call holds its instance until the handler finishes it.
                stats.fired += 1;
                if let Some(e) = self.table.write().get_mut(&run.job_id) {
                    e.running = self.core.running(run.job_id);
                }
                continue;
            }
            if run.status != RunStatus::Running {
                continue;
            }
            stats.fired += 1;
            let Some(spec) = specs.get(&run.job_id).cloned() else {
                continue;
            };
            if let Some(e) = self.table.write().get_mut(&run.job_id) {
                e.running = self.core.running(run.job_id);
            }
            self.in_flight.insert(run.id);
            let executor = self.executor.clone();
            let finished = self.finished.clone();
            let clock = self.clock.clone();
            tokio::spawn(async move {
                let run = delivery::deliver(executor, &clock, &spec, run).await;
                let _ = finished.send(run).await;
            });
        }
    }

    /// Fires that could not be recorded (`e`: the read of their jobs or the commit failed) are
    /// not run. The core already moved past them; the store still holds the old next fire
    /// times. Stop taking fires until the store is writable again, then reload those times:
    /// the same fires come due again and the misfire rules decide, exactly as after a restart.
    /// `run now` callers get the error (their run will not happen later behind their back).
    fn not_recorded(&mut self, fires: &[Fire], waiters: Vec<Option<RunReply>>, e: &StoreError) {
        tracing::error!(error = %e, fires = fires.len(), "could not record fires: none of them ran; the scheduler resumes when the disk accepts writes again");
        for f in fires {
            if f.kind.is_run() {
                self.core.handle_finished(f.job);
            }
        }
        let manual = std::mem::take(&mut self.manual);
        let (taken, kept): (Vec<_>, Vec<_>) = manual.into_iter().partition(|m| {
            fires
                .iter()
                .any(|f| f.kind.is_run() && (m.0, m.1) == (f.job, f.scheduled_at))
        });
        self.manual = kept;
        for w in waiters
            .into_iter()
            .flatten()
            .chain(taken.into_iter().map(|m| m.2))
        {
            let _ = w.send(Err(RunNowError::NotRecorded(e.same_kind())));
        }
        self.stop_recording();
    }

    async fn record_finished(&mut self, batch: Vec<RunRecord>) {
        {
            let mut stats = self.stats.lock().unwrap();
            let mut t = self.table.write();
            for run in &batch {
                self.in_flight.remove(&run.id);
                self.core.handle_finished(run.job_id);
                if let Some(e) = t.get_mut(&run.job_id) {
                    e.running = self.core.running(run.job_id);
                }
                match run.status {
                    RunStatus::Succeeded => stats.succeeded += 1,
                    _ => stats.failed += 1,
                }
                // Lateness as the receiver sees it: from the scheduled time to the start of
                // the first attempt (after the fire was recorded durably).
                if run.trigger == runs::SCHEDULE {
                    if let Some(started) = run.started_at {
                        let late = run.scheduled_at.duration_until(started).as_millis().max(0);
                        stats.lateness(late as u64);
                    }
                }
            }
        }
        // Kept until written: an outcome is never dropped, only delayed.
        self.unsaved.extend(batch);
        if !self.is_recording() {
            return;
        }
        if let Err(e) = self.save_unsaved().await {
            tracing::error!(error = %e, "could not record finished runs; kept to retry when the disk accepts writes again");
            self.stop_recording();
        }
    }

    /// Writes the finished runs not yet on disk.
    async fn save_unsaved(&mut self) -> Result<(), StoreError> {
        if self.unsaved.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.unsaved);
        let store = self.store.clone();
        let (r, batch) = tokio::task::spawn_blocking(move || (store.update_runs(&batch), batch))
            .await
            .expect("store task does not panic");
        if r.is_err() {
            self.unsaved = batch;
        }
        r
    }

    fn is_recording(&self) -> bool {
        self.recording.load(Ordering::SeqCst)
    }

    fn stop_recording(&mut self) {
        self.recording.store(false, Ordering::SeqCst);
        self.next_recover = std::time::Instant::now() + RECOVER_EVERY;
    }

    /// Called every [`RECOVER_EVERY`] while fires cannot be recorded: makes the store writable
    /// ([`Store::recover`]), writes the finished runs kept meanwhile, closes runs a failed
    /// commit may have recorded after all (so none stays `running` forever), and reloads every
    /// job's next fire time from disk into the core. Then firing resumes under the misfire
    /// rules. On any failure it stays stopped and tries again later.
    async fn resume_recording(&mut self) {
        self.next_recover = std::time::Instant::now() + RECOVER_EVERY;
        let store = self.store.clone();
        let recovered = tokio::task::spawn_blocking(move || store.recover())
            .await
            .expect("store task does not panic");
        if let Err(e) = recovered {
            tracing::debug!(error = %e, "store still not writable");
            return;
        }
        if let Err(e) = self.save_unsaved().await {
            tracing::warn!(error = %e, "could not record finished runs yet");
            return;
        }
        let store = self.store.clone();
        let in_flight = self.in_flight.clone();
        let now = self.clock.now();
        let reloaded = tokio::task::spawn_blocking(move || {
            // A commit that failed late (its final sync) may have landed: such runs say
            // `running` but never started.
            // Damaged run rows were counted and logged at start; the loaders skip them.
            let mut orphans: Vec<RunRecord> = store
                .unfinished_runs()?
                .rows
                .into_iter()
                .filter(|r| !in_flight.contains(&r.id))
                .collect();
            for r in &mut orphans {
                runs::never_started(r, now);
            }
            if !orphans.is_empty() {
                store.update_runs(&orphans)?;
            }
            store.job_summaries().map(|loaded| loaded.rows)
        })
        .await
        .expect("store task does not panic");
        let summaries = match reloaded {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload jobs after the disk recovered");
                return;
            }
        };
        self.reload(summaries, now);
        self.recording.store(true, Ordering::SeqCst);
        tracing::info!("scheduler recording fires again");
    }

    fn reload(&mut self, summaries: Vec<JobSummary>, now: Timestamp) {
        let mut t = self.table.write();
        for s in summaries {
            let id = s.id;
            let paused = s.schedule.paused;
            self.core.upsert(id, s.schedule, s.next_fire_at, now);
            t.insert(
                id,
                Listed::new(
                    s.name,
                    self.core.next_fire_at(id),
                    paused,
                    self.core.running(id),
                ),
                s.schedulezero_id.as_deref(),
            );
        }
    }

    async fn prune(&self) {
        let Ok(span) = jiff::SignedDuration::try_from(self.config.run_retention) else {
            return;
        };
        let Ok(cutoff) = self.clock.now().checked_sub(span) else {
            return;
        };
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.prune_runs(cutoff))
            .await
            .expect("store task does not panic")
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "old runs pruned"),
            Err(e) => tracing::warn!(error = %e, "could not prune runs"),
        }
        self.prune_audit().await;
    }

    /// Prunes the audit trail by age and size (hourly, and as soon as enough was appended).
    async fn prune_audit(&self) {
        let now_ms = self.clock.now().as_millisecond().max(0) as u64;
        let cutoff_ms = now_ms.saturating_sub(
            self.config
                .audit_retention
                .as_millis()
                .min(u64::MAX as u128) as u64,
        );
        let max = self.config.audit_max_bytes;
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.prune_audit(cutoff_ms, max))
            .await
            .expect("store task does not panic")
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "old audit entries pruned"),
            Err(e) => tracing::warn!(error = %e, "could not prune the audit trail"),
        }
    }
}

/// Hands the heap that loading freed (the rows read, the decode's temporaries) back to the
/// kernel, so the RSS after a restart is what the jobs hold rather than what loading them
/// once needed: glibc keeps freed memory mapped unless asked (issue 12).
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{Actor, RunFilter};
    use crate::webhook::NetPolicy;

    fn draft(body: &serde_json::Value) -> crate::sched::JobDraft {
        crate::sched::JobDraft::from_value(body).unwrap()
    }

    /// Creates no longer hold the naming lock across their (grouped) commit; the name claim
    /// still admits exactly one of many concurrent creates of one name, and a rename cannot
    /// take a name a create in flight holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_of_one_name_admit_exactly_one() {
        let disk = crate::store::testing::Disk::default();
        let store = Arc::new(disk.store());
        let (_stop_tx, stop) = watch::channel(false);
        let (jobs, _task) = start(store.clone(), Config::default(), stop).unwrap();
        let jobs = Arc::new(jobs);
        let body = |name: &str| {
            json!({
                "name": name,
                "trigger": {"every": "1h"},
                "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/x"}},
            })
        };
        let creates: Vec<_> = (0..16)
            .map(|i| {
                let (jobs, b) = (
                    jobs.clone(),
                    body(if i % 2 == 0 { "Raid" } else { " raid " }),
                );
                let b = crate::sched::JobDraft::from_value(&b).unwrap();
                tokio::spawn(async move { jobs.create(b, &Actor::local_cli()).await })
            })
            .collect();
        let (mut ok, mut taken) = (0, 0);
        for c in creates {
            match c.await.unwrap() {
                Ok(_) => ok += 1,
                Err(super::super::CreateError::NameTaken(_)) => taken += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!((ok, taken), (1, 15));
        assert_eq!(store.jobs().unwrap().rows.len(), 1);
        assert!(
            jobs.creating.lock().unwrap().is_empty(),
            "every claim released"
        );
    }

    /// What keeps a test's scheduler running: its stop sender and its task.
    type Running = (watch::Sender<bool>, tokio::task::JoinHandle<()>);

    /// A scheduler on a test disk whose clock is `t0` until the test moves it; keep the third
    /// value for as long as the scheduler should run.
    fn on_virtual_clock(t0: Timestamp) -> (Handle, Arc<Mutex<Timestamp>>, Running) {
        let store = Arc::new(crate::store::testing::Disk::default().store());
        let clock = Arc::new(Mutex::new(t0));
        let (stop_tx, stop) = watch::channel(false);
        let (jobs, task) = launch(
            store,
            Config::default(),
            Clock::Virtual(clock.clone()),
            stop,
        )
        .unwrap();
        (jobs, clock, (stop_tx, task))
    }

    /// "Now" for the API (previews, ScheduleZero's default job_id) is the driver's clock:
    /// on a virtual clock, the handle answers that clock's time, and follows it when it moves.
    #[tokio::test]
    async fn the_handle_tells_the_time_of_the_driver_clock() {
        let t0: Timestamp = "2031-03-04T05:06:07.5Z".parse().unwrap();
        let (jobs, clock, _running) = on_virtual_clock(t0);
        assert_eq!(jobs.now().unwrap(), t0);
        let later: Timestamp = "2031-03-04T06:00:00Z".parse().unwrap();
        *clock.lock().unwrap() = later;
        assert_eq!(jobs.now().unwrap(), later);
    }

    /// A new job's id is its creation time on the driver's clock above random bits: jobs made
    /// later sort after those made before (so their rows land at the end of the tables keyed
    /// by id), and two made in one millisecond still differ.
    #[tokio::test]
    async fn job_ids_grow_with_the_time_of_their_creation() {
        let t0: Timestamp = "2031-03-04T05:06:07.5Z".parse().unwrap();
        let (jobs, clock, _running) = on_virtual_clock(t0);
        let body = |name: &str| {
            draft(&json!({
                "name": name,
                "trigger": {"every": "1h"},
                "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/x"}},
            }))
        };
        let mut ids = Vec::new();
        for i in 0..6 {
            if i % 2 == 0 {
                *clock.lock().unwrap() = t0 + jiff::SignedDuration::from_millis(i);
            }
            let e = jobs
                .create(body(&format!("j{i}")), &Actor::local_cli())
                .await;
            ids.push(e.unwrap().record.id.as_u64());
        }
        let shift = crate::sched::JobId::FRESH_RANDOM_BITS;
        let times: Vec<u64> = ids.iter().map(|id| id >> shift).collect();
        let ms = t0.as_millisecond() as u64;
        assert_eq!(times, [ms, ms, ms + 2, ms + 2, ms + 4, ms + 4], "{ids:x?}");
        for pair in ids.chunks(2) {
            assert_ne!(pair[0], pair[1], "two creates in one millisecond");
        }
    }

    /// The handle reads the driver's clock without a round trip, but only while the driver
    /// runs: once it has stopped, a create is refused before anything is committed (a job on
    /// disk that no scheduler took would fire only after the next start, unannounced).
    #[tokio::test]
    async fn after_the_driver_stops_a_create_commits_nothing() {
        let store = Arc::new(crate::store::testing::Disk::default().store());
        let (stop_tx, stop) = watch::channel(false);
        let (jobs, task) = start(store.clone(), Config::default(), stop).unwrap();
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let body = json!({
            "name": "late",
            "trigger": {"every": "1h"},
            "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/x"}},
        });
        assert!(jobs.now().is_err());
        let refused = jobs.create(draft(&body), &Actor::local_cli()).await;
        assert!(
            matches!(refused, Err(super::super::CreateError::ShuttingDown(_))),
            "{refused:?}"
        );
        assert!(store.jobs().unwrap().rows.is_empty());
    }

    /// Every fire time comes from the driver's clock through the core, not from the request
    /// task: on a virtual clock five years from the real one, a job created, changed, paused
    /// and resumed (plain and with catch-up) gets exactly the times `sched::Core` computes from
    /// that clock. Its fires are all late by more than its grace, so none is executed.
    #[tokio::test]
    async fn fire_times_come_from_the_driver_clock_through_the_core() {
        let store = Arc::new(crate::store::testing::Disk::default().store());
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let t0 = t("2031-03-04T05:06:07.5Z");
        let clock = Arc::new(Mutex::new(t0));
        let set = |now: &str| *clock.lock().unwrap() = t(now);
        let (_stop_tx, stop) = watch::channel(false);
        let config = Config {
            webhook_policy: NetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
            ..Config::default()
        };
        let (jobs, _task) =
            launch(store.clone(), config, Clock::Virtual(clock.clone()), stop).unwrap();
        let actor = Actor::local_cli();
        let body = json!({
            "name": "tick",
            "trigger": {"every": "1m"},
            "misfire_grace": "1s",
            "action": {"webhook": {"url": "http://127.0.0.1:9/hook"}},
        });

        // Created at t0: anchored there, first fire a minute later, stored with it.
        let job = jobs.create(draft(&body), &actor).await.unwrap();
        let id = job.record.id;
        assert_eq!(job.record.next_fire_at, Some(t("2031-03-04T05:07:07.5Z")));
        assert_eq!(job.record.created_at_ms, t0.as_millisecond() as u64);
        assert_eq!(
            job.record.spec.to_json()["trigger"]["start"],
            json!(t0.to_string())
        );
        let stored = store.jobs().unwrap().rows;
        assert_eq!(stored[0].next_fire_at, job.record.next_fire_at);

        // Changed at 05:07:37.5: the new trigger's first fire after that.
        set("2031-03-04T05:07:37.5Z");
        let cron = json!({"trigger": {"cron": "*/5 * * * *"}});
        let job = jobs.patch(id, &cron, &actor).await.unwrap();
        assert_eq!(job.record.next_fire_at, Some(t("2031-03-04T05:10:00Z")));
        assert_eq!(
            job.record.updated_at_ms,
            t("2031-03-04T05:07:37.5Z").as_millisecond() as u64
        );

        // Paused at 05:07:47.5, resumed with catch-up at 05:21:00.5: from the pause on.
        set("2031-03-04T05:07:47.5Z");
        let job = jobs.set_paused(id, true, false, &actor).await.unwrap();
        assert_eq!(job.record.next_fire_at, None);
        set("2031-03-04T05:21:00.5Z");
        let job = jobs.set_paused(id, false, true, &actor).await.unwrap();
        assert_eq!(job.record.next_fire_at, Some(t("2031-03-04T05:10:00Z")));

        // Paused again at 05:24:00.5; a plain resume at 05:31:00.5 continues from then.
        set("2031-03-04T05:24:00.5Z");
        jobs.set_paused(id, true, false, &actor).await.unwrap();
        set("2031-03-04T05:31:00.5Z");
        let job = jobs.set_paused(id, false, false, &actor).await.unwrap();
        assert_eq!(job.record.next_fire_at, Some(t("2031-03-04T05:35:00Z")));
        assert_eq!(
            jobs.get(id).unwrap().unwrap().record.next_fire_at,
            job.record.next_fire_at
        );

        // What the driver recorded on that clock: the every-1m fire the change overtook and the
        // catch-up fires, too late for the 1 s grace; the fires skipped by the plain resume are
        // not recorded.
        let mut missed: Vec<Timestamp> = store
            .runs_page(&RunFilter {
                limit: 100,
                ..RunFilter::default()
            })
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r.status, RunStatus::Missed, "{r:?}");
                r.scheduled_at
            })
            .collect();
        missed.sort();
        assert_eq!(
            missed,
            [
                t("2031-03-04T05:07:07.5Z"),
                t("2031-03-04T05:10:00Z"),
                t("2031-03-04T05:15:00Z"),
                t("2031-03-04T05:20:00Z"),
            ]
        );
    }

    /// Issue 13 item 10: 200 PATCHes of a 60 KB job (an officer in a loop) leave the audit
    /// trail within its cap and an eighth, on a virtual clock where no hourly sweep comes: each
    /// entry keeps only the changed fields, cut, and a prune follows every eighth of the cap
    /// appended.
    #[tokio::test]
    async fn patches_in_a_loop_keep_the_audit_trail_under_its_cap_between_sweeps() {
        let store = Arc::new(crate::store::testing::Disk::default().store());
        let clock = Arc::new(Mutex::new("2031-03-04T05:06:07Z".parse().unwrap()));
        let (_stop_tx, stop) = watch::channel(false);
        let cap = 64 * 1024;
        let config = Config {
            audit_max_bytes: cap,
            ..Config::default()
        };
        let (jobs, _task) = launch(store.clone(), config, Clock::Virtual(clock), stop).unwrap();
        let actor = Actor::local_cli();
        let content = |i: usize| format!("{i:04}{}", "x".repeat(60_000));
        let body = json!({
            "name": "big",
            "trigger": {"every": "1h"},
            "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/x",
                                   "body": {"content": content(0)}}},
        });
        let id = jobs.create(draft(&body), &actor).await.unwrap().record.id;
        for i in 1..=200 {
            let patch = json!({"action": {"webhook": {"url": "https://discord.com/api/webhooks/1/x",
                                                      "body": {"content": content(i)}}}});
            jobs.patch(id, &patch, &actor).await.unwrap();
            let bytes = store.audit_bytes().unwrap();
            // The prune runs on the driver task: at most one more eighth lands meanwhile.
            assert!(bytes <= cap + cap / 4, "after {i} patches: {bytes} bytes");
        }
        until("the last prune", Duration::from_secs(10), || {
            store.audit_bytes().unwrap() <= cap + cap / 8
        })
        .await;
        let newest = store.audit_page(None, None, 1).unwrap();
        assert_eq!(newest[0].summary["truncated"], json!(true));
        assert!(
            newest[0].summary["after"]["action"]["webhook"]["body"]["content"]
                .as_str()
                .unwrap()
                .starts_with("0200")
        );
    }

    /// `Handle::by_schedulezero_id` finds the job a pass over every job (`Handle::list`) finds,
    /// the first in listing order, through metadata given natively, renames, metadata patches,
    /// a shared id and deletes, and again after a restart (the table rebuilt from the stored
    /// summaries); it reads the row of the job it names and no other.
    #[tokio::test]
    async fn schedulezero_lookups_find_what_a_pass_over_every_job_finds() {
        let disk = crate::store::testing::Disk::default();
        let actor = Actor::local_cli();
        async fn create(jobs: &Handle, name: &str, every: &str, sz: serde_json::Value) -> JobId {
            let body = json!({
                "name": name,
                "trigger": {"every": every},
                "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/x"}},
                "metadata": {"schedulezero_job_id": sz},
            });
            let job = jobs.create(draft(&body), &Actor::local_cli()).await;
            job.unwrap().record.id
        }
        // The route's answer before the index: the first job in listing order carrying it.
        let pass = |jobs: &Handle, q: &str| {
            jobs.list()
                .unwrap()
                .into_iter()
                .find(|e| e.record.spec.metadata.get("schedulezero_job_id") == Some(&json!(q)))
        };
        let agree = |jobs: &Handle, step: &str| {
            for q in ["ding", "dong", "dup", "plain", "7", "nobody"] {
                let before = jobs.store.job_rows_read();
                let got = jobs.by_schedulezero_id(q).unwrap();
                let read = jobs.store.job_rows_read() - before;
                let want = pass(jobs, q);
                assert_eq!(
                    got.as_ref().map(|e| e.record.id),
                    want.as_ref().map(|e| e.record.id),
                    "{q:?} after {step}"
                );
                let carriers = jobs
                    .list()
                    .unwrap()
                    .iter()
                    .filter(|e| {
                        e.record.spec.metadata.get("schedulezero_job_id") == Some(&json!(q))
                    })
                    .count() as u64;
                assert_eq!(read, carriers, "{q:?} after {step}: rows read");
            }
        };
        let store = Arc::new(disk.store());
        let (stop_tx, stop) = watch::channel(false);
        let (jobs, task) = start(store.clone(), Config::default(), stop).unwrap();
        let ding = create(&jobs, "ding", "1h", json!("ding")).await;
        // Named like an id, carrying none (null: the key, but no id); an id not a string.
        create(&jobs, "plain", "1h", json!(null)).await;
        create(&jobs, "seven", "1h", json!(7)).await;
        agree(&jobs, "creates");
        jobs.patch(ding, &json!({"name": "ding renamed"}), &actor)
            .await
            .unwrap();
        agree(&jobs, "a rename");
        jobs.patch(
            ding,
            &json!({"metadata": {"schedulezero_job_id": "dong"}}),
            &actor,
        )
        .await
        .unwrap();
        agree(&jobs, "a metadata patch");
        // Two jobs sharing an id: the later created fires first, so it lists first.
        create(&jobs, "dup late", "2h", json!("dup")).await;
        let first = create(&jobs, "dup soon", "30m", json!("dup")).await;
        agree(&jobs, "a shared id");
        assert_eq!(
            jobs.by_schedulezero_id("dup").unwrap().unwrap().record.id,
            first
        );
        jobs.delete(first, &actor).await.unwrap();
        agree(&jobs, "a delete");
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        drop((jobs, store));

        let store = Arc::new(disk.store());
        let (_stop_tx, stop) = watch::channel(false);
        let (jobs, _task) = start(store, Config::default(), stop).unwrap();
        agree(&jobs, "a restart");
        assert_eq!(
            jobs.by_schedulezero_id("dong").unwrap().unwrap().record.id,
            ding
        );
        jobs.patch(ding, &json!({"metadata": null}), &actor)
            .await
            .unwrap();
        agree(&jobs, "the metadata dropped");
        assert!(jobs.by_schedulezero_id("dong").unwrap().is_none());
    }

    /// A webhook receiver on loopback that counts the requests it answers.
    async fn counting_sink() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::AtomicUsize;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                        .await;
                });
            }
        });
        (url, hits)
    }

    async fn until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + limit;
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting: {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs recorded as executed (running or finished after an attempt).
    fn executed_runs(store: &Store) -> usize {
        store
            .runs_page(&RunFilter {
                limit: 10_000,
                ..RunFilter::default()
            })
            .unwrap()
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    RunStatus::Running | RunStatus::Succeeded | RunStatus::Failed
                )
            })
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_fire_runs_unrecorded_and_firing_resumes_when_the_disk_recovers() {
        let disk = crate::store::testing::Disk::default();
        let store = Arc::new(disk.store());
        let (url, hits) = counting_sink().await;
        let (_stop_tx, stop) = watch::channel(false);
        // The sink is on loopback, which the default webhook policy refuses.
        let config = Config {
            webhook_policy: NetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
            ..Config::default()
        };
        let (jobs, _task) = start(store.clone(), config, stop).unwrap();
        let body = json!({
            "name": "tick",
            "trigger": {"every": "1s"},
            "action": {"webhook": {"url": url}},
        });
        let job = jobs
            .create(draft(&body), &Actor::local_cli())
            .await
            .unwrap();
        let hits_now = || hits.load(Ordering::SeqCst);
        until("first fire", Duration::from_secs(5), || hits_now() >= 1).await;
        assert!(jobs.recording());

        // No space even for header rewrites: the next round's commit must fail.
        disk.set_failing(true);
        until("the scheduler notices", Duration::from_secs(5), || {
            !jobs.recording()
        })
        .await;
        let err = jobs
            .run_now(job.record.id, &Actor::local_cli())
            .await
            .unwrap_err();
        assert!(
            matches!(err, RunNowError::NotRecorded(StoreError::DiskFull)),
            "{err:?}"
        );
        // Runs already going finish; then nothing more is executed while nothing is recorded.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let frozen = hits_now();
        tokio::time::sleep(Duration::from_millis(3000)).await;
        assert_eq!(
            hits_now(),
            frozen,
            "a fire ran although it could not be recorded"
        );
        assert!(!store.health().writable);

        disk.set_failing(false);
        until("recording again", Duration::from_secs(5), || {
            jobs.recording()
        })
        .await;
        assert!(store.health().writable);
        until("firing again", Duration::from_secs(5), || {
            hits_now() > frozen
        })
        .await;
        // Let the last webhook's outcome be written, then compare: every execution has its
        // record, and every record of an executed run was executed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let executed = hits_now();
        let recorded = executed_runs(&store);
        assert!(
            recorded == executed || recorded == executed + 1,
            "{executed} webhooks called, {recorded} runs recorded as executed"
        );
        let running = store.unfinished_runs().unwrap().rows.len();
        assert!(
            running <= 1,
            "only the current fire may still be running: {running}"
        );
        // The fire whose record failed was not lost: it came due again after recovery (one
        // run for the whole outage: coalesce, within misfire_grace), late by the outage.
        let runs = store
            .runs_page(&RunFilter {
                limit: 10_000,
                ..RunFilter::default()
            })
            .unwrap();
        let mut ticks: Vec<&RunRecord> = runs.iter().collect();
        ticks.sort_by_key(|r| r.scheduled_at);
        let late: Vec<usize> = (0..ticks.len())
            .filter(|&i| {
                ticks[i].started_at.is_some_and(|s| {
                    ticks[i].scheduled_at.duration_until(s) >= jiff::SignedDuration::from_secs(3)
                })
            })
            .collect();
        assert_eq!(late.len(), 1, "{runs:#?}");
        let i = late[0];
        assert!(i > 0, "{runs:#?}");
        assert_eq!(
            ticks[i - 1]
                .scheduled_at
                .duration_until(ticks[i].scheduled_at),
            jiff::SignedDuration::from_secs(1),
            "the late run is the very tick after the last recorded one: {runs:#?}"
        );
    }
}
