//! The scheduler driver and the job operations the API calls.
//!
//! Layer: driver. One task owns the sans-IO [`Core`]: it reads the clock, sleeps until the
//! core's next deadline, takes its fires, records them (runs and the jobs' next fire times in
//! one store transaction), and hands each run to the webhook [`Executor`] on its own task.
//! Finished runs come back on a channel and are written in batches.
//!
//! When a commit fails (a full disk) nothing unrecorded runs: the driver stops taking fires,
//! tries [`Store::recover`] every [`RECOVER_EVERY`], then reloads the stored next fire times so
//! the fires that could not be recorded come due again under the misfire rules.
//!
//! [`Jobs`] is the handle the API uses. Every change is committed (with its audit entry) before
//! the driver hears of it and before the caller gets its answer: a 201 means the job is on disk.
//! Reads come from an in-memory table the driver keeps in step with the core.
#![allow(clippy::disallowed_methods)] // driver: reads the clock and sleeps

use std::collections::HashSet;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::queue::{self, Task};
use crate::sched::{Action, Core, Fire, FireKind, JobId, JobSpec, SpecError};
use crate::store::{
    Actor, AuditEntry, JobRecord, RunFilter, RunRecord, RunStatus, Store, StoreError,
};
use crate::tasks::Tasks;
use crate::webhook::{policy, Executor, NetPolicy};

/// How often old runs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Lateness samples kept for the stats endpoint.
const LATENESS_SAMPLES: usize = 4096;
/// Longest sleep when no job is due (the loop also wakes on every command).
const IDLE_SLEEP: Duration = Duration::from_secs(3600);
/// While fires cannot be recorded, how often the driver tries to make the store writable.
const RECOVER_EVERY: Duration = Duration::from_secs(2);

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No job has that id.
    #[error("no job with id {0}")]
    NotFound(JobId),
    /// The spec (or patch) is invalid; names the field.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// `run now` while `max_instances` runs are going.
    #[error("job {0} already runs its maximum number of instances; try again when one finishes")]
    Busy(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fire could not be recorded, so it was not run.
    #[error("the run could not be recorded, so it did not start: {0}")]
    NotRecorded(StoreError),
    /// The scheduler stopped (the appliance is shutting down).
    #[error("the scheduler is shutting down")]
    ShuttingDown,
    /// Another job already has this name (names are unique, ignoring case and surrounding
    /// spaces).
    #[error("job {id} is already called '{name}'; job names are unique (ignoring case): pick another or change that job")]
    NameTaken { name: String, id: JobId },
}

/// The form of a job name that must be unique: lowercase, without surrounding whitespace.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The job other than `except` whose name has the same [`name_key`] as `name`, if any.
pub fn name_taken<'a>(
    jobs: impl IntoIterator<Item = &'a JobRecord>,
    name: &str,
    except: Option<JobId>,
) -> Option<JobId> {
    let key = name_key(name);
    jobs.into_iter()
        .find(|r| Some(r.id) != except && name_key(&r.spec.name) == key)
        .map(|r| r.id)
}

/// A job as the API shows it.
#[derive(Debug, Clone)]
pub struct JobEntry {
    pub record: JobRecord,
    pub running: u32,
}

impl JobEntry {
    /// The job as stored, with bookkeeping fields.
    pub fn to_json(&self) -> Value {
        self.render(None)
    }

    /// What read-only roles see ([`JobSpec::viewer_json`]: the webhook URL as scheme and host
    /// with a fingerprint keyed by `key`, allow-listed header values, no body), since a webhook
    /// URL, a header or a body can be enough to post to the channel.
    pub fn to_json_for_viewer(&self, key: &[u8]) -> Value {
        self.render(Some(key))
    }

    fn render(&self, viewer_key: Option<&[u8]>) -> Value {
        let r = &self.record;
        let mut v = match viewer_key {
            Some(key) => r.spec.viewer_json(key),
            None => r.spec.to_json(),
        };
        let obj = v.as_object_mut().expect("a spec is an object");
        obj.insert("id".into(), json!(r.id.to_string()));
        obj.insert(
            "next_fire_at".into(),
            json!(r.next_fire_at.map(|t| t.to_string())),
        );
        obj.insert("created_at".into(), json!(ms_to_rfc3339(r.created_at_ms)));
        obj.insert("updated_at".into(), json!(ms_to_rfc3339(r.updated_at_ms)));
        obj.insert("created_by".into(), json!(r.created_by));
        obj.insert("running".into(), json!(self.running));
        v
    }
}

fn ms_to_rfc3339(ms: u64) -> String {
    Timestamp::from_millisecond(ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Counters since start, for `/api/v1/stats`.
#[derive(Default, Debug)]
pub struct JobStats {
    pub fired: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub missed: u64,
    pub skipped: u64,
    /// Milliseconds from scheduled time to the start of the first attempt, scheduled runs only.
    lateness_ms: VecDeque<u64>,
    /// The same, all of them since start, as a histogram for `GET /metrics`.
    pub lateness: Lateness,
}

/// Fire lateness (scheduled time to first attempt) in seconds, as a histogram.
#[derive(Debug, Clone)]
pub struct Lateness(pub crate::metrics::HistogramData);

impl Default for Lateness {
    fn default() -> Self {
        Lateness(crate::metrics::HistogramData::new(
            crate::metrics::LATENESS_BUCKETS,
        ))
    }
}

impl JobStats {
    pub(crate) fn lateness(&mut self, ms: u64) {
        if self.lateness_ms.len() == LATENESS_SAMPLES {
            self.lateness_ms.pop_front();
        }
        self.lateness_ms.push_back(ms);
        self.lateness.0.observe(ms as f64 / 1000.0);
    }

    /// (p50, p99, samples) of recent lateness.
    pub fn lateness_percentiles(&self) -> Option<(u64, u64, usize)> {
        if self.lateness_ms.is_empty() {
            return None;
        }
        let mut v: Vec<u64> = self.lateness_ms.iter().copied().collect();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        Some((at(0.50), at(0.99), v.len()))
    }
}

/// Where the id of a `run now` run is sent once it is recorded.
type RunReply = oneshot::Sender<Result<u64, JobError>>;

enum Command {
    Upsert {
        record: Box<JobRecord>,
        /// Recompute the next fire from now (a new or changed spec).
        reschedule: bool,
        done: oneshot::Sender<Option<Timestamp>>,
    },
    Remove(JobId, oneshot::Sender<()>),
    Pause(JobId, oneshot::Sender<()>),
    Resume(JobId, oneshot::Sender<Option<Timestamp>>),
    /// Answered once the run is recorded, with its id.
    RunNow(JobId, RunReply),
}

/// Handle to the scheduler, shared by the API.
pub struct Jobs {
    commands: mpsc::Sender<Command>,
    table: Arc<RwLock<HashMap<JobId, JobEntry>>>,
    pub store: Arc<Store>,
    pub stats: Arc<Mutex<JobStats>>,
    /// The handler task queue (handler actions are delivered through it).
    pub tasks: Arc<Tasks>,
    /// Job and run rows that did not decode when the scheduler loaded (skipped, logged).
    pub damaged_at_start: usize,
    /// Webhook attempts by result (for `GET /metrics`).
    pub webhook_attempts: Arc<crate::metrics::LabelCounter>,
    /// Where webhooks may connect; literal-IP URLs are checked against it at create and patch.
    policy: Arc<NetPolicy>,
    /// Whether the driver can record fires (false from a failed commit until recovery).
    recording: Arc<AtomicBool>,
    /// A handle on the driver's own executor (same client, same destination rules), for
    /// [`Jobs::test_action`].
    executor: Executor,
    /// Held across the uniqueness check and the write of a rename, and across the check and
    /// reservation of a create's name, so two concurrent requests cannot both take a name.
    naming: tokio::sync::Mutex<()>,
    /// Names (their [`name_key`]) of creates between their check and their table entry, with
    /// the id being created: creates do not hold `naming` across their commit, so that
    /// concurrent creates share one group commit (`store/group.rs`).
    creating: Arc<Mutex<HashMap<String, JobId>>>,
}

/// A create's claim on its name; released when the job is in the table (or the create failed).
struct NameClaim {
    creating: Arc<Mutex<HashMap<String, JobId>>>,
    key: String,
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        self.creating.lock().unwrap().remove(&self.key);
    }
}

/// Options for the scheduler.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Runs older than this are pruned.
    pub run_retention: Duration,
    /// Audit entries older than this are pruned.
    pub audit_retention: Duration,
    /// The audit trail is pruned, oldest first, to at most this many bytes of entries.
    pub audit_max_bytes: u64,
    /// Where webhooks may connect (public addresses by default; `serve` adds the tunnel subnet
    /// as forbidden and the `--allow-webhook-net` networks as allowed).
    pub webhook_policy: NetPolicy,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            run_retention: Duration::from_secs(30 * 86_400),
            audit_retention: Duration::from_secs(365 * 86_400),
            audit_max_bytes: 64 * 1024 * 1024,
            webhook_policy: NetPolicy::default(),
        }
    }
}

impl Jobs {
    /// Loads every stored job, marks runs interrupted by a previous stop as failed, and starts
    /// the driver task.
    pub fn start(
        store: Arc<Store>,
        config: JobsConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Jobs, tokio::task::JoinHandle<()>), StoreError> {
        let now = Timestamp::now();
        let unfinished = store.unfinished_runs()?;
        let mut damaged_at_start = unfinished.damaged.len();
        let mut interrupted = unfinished.rows;
        for r in &mut interrupted {
            r.status = RunStatus::Failed;
            r.finished_at = Some(now);
            r.error = Some("interrupted: the appliance stopped during this run".into());
        }
        if !interrupted.is_empty() {
            store.update_runs(&interrupted)?;
        }
        let loaded = store.jobs()?;
        damaged_at_start += loaded.damaged.len();
        let records = loaded.rows;
        let stats = Arc::new(Mutex::new(JobStats::default()));
        let (tasks, task_done, held) = Tasks::load(store.clone(), stats.clone())?;
        let mut core = Core::new();
        let mut table = HashMap::with_capacity(records.len());
        for rec in records {
            core.upsert(rec.id, Arc::new(rec.spec.clone()), rec.next_fire_at, now);
            table.insert(
                rec.id,
                JobEntry {
                    record: rec,
                    running: 0,
                },
            );
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
        let table = Arc::new(RwLock::new(table));
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
            store: store.clone(),
            table: table.clone(),
            stats: stats.clone(),
            executor: executor.clone(),
            finished: fin_tx,
            config,
            manual: Vec::new(),
            tasks: tasks.clone(),
        };
        let task = tokio::spawn(driver.run(rx, fin_rx, task_done, shutdown));
        Ok((
            Jobs {
                commands: tx,
                table,
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

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, JobError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| JobError::ShuttingDown)?;
        rx.await.map_err(|_| JobError::ShuttingDown)
    }

    fn audit(actor: &Actor, action: &str, id: JobId, summary: Value) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at_ms: Timestamp::now().as_millisecond().max(0) as u64,
            actor: actor.clone(),
            action: action.into(),
            target: Some(id.to_string()),
            summary,
        }
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Store) -> T + Send + 'static) -> T {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .expect("store task does not panic")
    }

    /// A handler action must name a handler that has registered the method.
    fn check_action(&self, spec: &JobSpec) -> Result<(), SpecError> {
        self.tasks.check_action(spec)
    }

    fn action_checker(&self) -> impl Fn(&JobSpec) -> Result<(), SpecError> + Send + 'static {
        let tasks = self.tasks.clone();
        move |spec: &JobSpec| tasks.check_action(spec)
    }

    /// Validates, stores durably (with its audit entry) and schedules a new job.
    pub async fn create(&self, body: &Value, actor: &Actor) -> Result<JobEntry, JobError> {
        let now = Timestamp::now();
        let spec = JobSpec::from_json(body, Some(now))?;
        check_destination(&spec, &self.policy)?;
        self.check_action(&spec)?;
        let id = JobId::from_u64(rand_core::RngCore::next_u64(&mut rand_core::OsRng));
        let _claim = {
            let _naming = self.naming.lock().await;
            self.check_name(&spec.name, None)?;
            let key = name_key(&spec.name);
            let mut creating = self.creating.lock().unwrap();
            if let Some(other) = creating.get(&key) {
                return Err(JobError::NameTaken {
                    name: spec.name.clone(),
                    id: *other,
                });
            }
            creating.insert(key.clone(), id);
            NameClaim {
                creating: self.creating.clone(),
                key,
            }
        };
        let now_ms = now.as_millisecond().max(0) as u64;
        let mut record = JobRecord {
            id,
            next_fire_at: first_fire(&spec, now),
            spec,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            created_by: actor.peer.clone(),
            paused_at_ms: None,
        };
        loop {
            let audit = Self::audit(actor, "job.create", record.id, record.spec.redacted_json());
            let r = record.clone();
            if self
                .blocking(move |s| s.insert_job(&r, Some(audit)))
                .await?
            {
                break;
            }
            record.id = JobId::from_u64(rand_core::RngCore::next_u64(&mut rand_core::OsRng));
        }
        // The next fire went to disk with the job, so the driver has nothing to write back:
        // one durable commit per create.
        self.schedule(record, false).await
    }

    fn check_name(&self, name: &str, except: Option<JobId>) -> Result<(), JobError> {
        let table = self.table.read().unwrap();
        match name_taken(table.values().map(|e| &e.record), name, except) {
            Some(id) => Err(JobError::NameTaken {
                name: name.to_string(),
                id,
            }),
            None => Ok(()),
        }
    }

    async fn schedule(&self, record: JobRecord, reschedule: bool) -> Result<JobEntry, JobError> {
        let id = record.id;
        let next = self
            .ask(|done| Command::Upsert {
                record: Box::new(record),
                reschedule,
                done,
            })
            .await?;
        let mut entry = self.get(id).ok_or(JobError::NotFound(id))?;
        entry.record.next_fire_at = next;
        Ok(entry)
    }

    /// Applies a JSON merge patch to a job's spec (validated as a whole) and reschedules it.
    pub async fn patch(
        &self,
        id: JobId,
        patch: &Value,
        actor: &Actor,
    ) -> Result<JobEntry, JobError> {
        let now = Timestamp::now();
        let patch = patch.clone();
        let actor = actor.clone();
        let check = self.action_checker();
        let policy = self.policy.clone();
        let _naming = self.naming.lock().await;
        let table = self.table.clone();
        let creating = self.creating.clone();
        let rec = self
            .blocking(move |s| {
                s.update_job(id, |cur| {
                    let spec = cur.spec.patched(&patch, Some(now))?;
                    check_destination(&spec, &policy)?;
                    check(&spec)?;
                    // A job keeps a name it already has (even one shared before names were
                    // unique); a new name must be free.
                    if name_key(&spec.name) != name_key(&cur.spec.name) {
                        let table = table.read().unwrap();
                        let records = table.values().map(|e| &e.record);
                        let other = name_taken(records, &spec.name, Some(id)).or_else(|| {
                            creating.lock().unwrap().get(&name_key(&spec.name)).copied()
                        });
                        if let Some(other) = other {
                            return Err(JobError::NameTaken {
                                name: spec.name.clone(),
                                id: other,
                            });
                        }
                    }
                    let audit = Self::audit(
                        &actor,
                        "job.update",
                        id,
                        json!({"before": cur.spec.redacted_json(), "after": spec.redacted_json()}),
                    );
                    let mut next = cur.clone();
                    next.next_fire_at = first_fire(&spec, now);
                    next.spec = spec;
                    next.updated_at_ms = now.as_millisecond().max(0) as u64;
                    Ok::<_, JobError>((Some(next), Some(audit)))
                })
            })
            .await?
            .ok_or(JobError::NotFound(id))?;
        self.schedule(rec, false).await
    }

    /// Deletes a job (its run history stays until pruned).
    pub async fn delete(&self, id: JobId, actor: &Actor) -> Result<JobEntry, JobError> {
        let actor = actor.clone();
        let rec = self
            .blocking(move |s| {
                s.update_job(id, |cur| {
                    let audit =
                        Self::audit(&actor, "job.delete", id, json!({"name": cur.spec.name}));
                    Ok::<_, JobError>((None, Some(audit)))
                })
            })
            .await?
            .ok_or(JobError::NotFound(id))?;
        self.ask(|done| Command::Remove(id, done)).await?;
        // Handlers working on its tasks learn it from their next heartbeat.
        if let Err(e) = self.tasks.cancel_job(id).await {
            tracing::warn!(job = %id, error = %e, "could not flag the deleted job's tasks as cancelled");
        }
        Ok(JobEntry {
            record: rec,
            running: 0,
        })
    }

    /// Pauses (`paused = true`) or resumes a job. Resuming continues from now without a
    /// burst of the runs missed while paused — unless `catch_up`: then the fires since the
    /// pause are due at once and the misfire rules apply (within `misfire_grace` they run,
    /// once with `coalesce`; older ones are recorded as missed).
    pub async fn set_paused(
        &self,
        id: JobId,
        paused: bool,
        catch_up: bool,
        actor: &Actor,
    ) -> Result<JobEntry, JobError> {
        let actor = actor.clone();
        let now_ms = Timestamp::now().as_millisecond().max(0) as u64;
        // When it was paused (before this change), for a catch-up resume.
        let paused_since = self.get(id).and_then(|e| e.record.paused_at_ms);
        let rec = self
            .blocking(move |s| {
                s.update_job(id, |cur| {
                    let mut next = cur.clone();
                    next.spec.paused = paused;
                    next.updated_at_ms = now_ms;
                    next.paused_at_ms = match (paused, cur.paused_at_ms) {
                        (true, Some(t)) => Some(t),
                        (true, None) => Some(now_ms),
                        (false, _) => None,
                    };
                    let (action, summary) = if paused {
                        ("job.pause", json!({"name": cur.spec.name}))
                    } else {
                        (
                            "job.resume",
                            json!({"name": cur.spec.name, "catch_up": catch_up}),
                        )
                    };
                    let audit = Self::audit(&actor, action, id, summary);
                    Ok::<_, JobError>((Some(next), Some(audit)))
                })
            })
            .await?
            .ok_or(JobError::NotFound(id))?;
        if paused {
            self.ask(|done| Command::Pause(id, done)).await?;
        } else {
            let first_missed = paused_since
                .filter(|_| catch_up)
                .and_then(|ms| Timestamp::from_millisecond(ms as i64).ok())
                .and_then(|t| rec.spec.trigger.next_after(t));
            match first_missed {
                Some(first) => {
                    let mut r = rec.clone();
                    r.paused_at_ms = None;
                    r.next_fire_at = Some(first);
                    self.ask(|done| Command::Upsert {
                        record: Box::new(r),
                        reschedule: false,
                        done,
                    })
                    .await?;
                }
                None => {
                    self.ask(|done| Command::Resume(id, done)).await?;
                }
            }
        }
        self.table_update(rec);
        self.get(id).ok_or(JobError::NotFound(id))
    }

    fn table_update(&self, rec: JobRecord) {
        let mut t = self.table.write().unwrap();
        if let Some(e) = t.get_mut(&rec.id) {
            let next = e.record.next_fire_at;
            e.record = rec;
            e.record.next_fire_at = next;
        }
    }

    /// Runs a job now through the normal run path (respecting `max_instances`); returns the
    /// id of the run, recorded before this returns.
    pub async fn run_now(&self, id: JobId, actor: &Actor) -> Result<u64, JobError> {
        let name = self.get(id).ok_or(JobError::NotFound(id))?.record.spec.name;
        let run = self.ask(|done| Command::RunNow(id, done)).await??;
        let audit = Self::audit(actor, "job.run", id, json!({"name": name, "run": run}));
        self.blocking(move |s| s.audit(audit)).await?;
        Ok(run)
    }

    /// Whether the scheduler can record fires. `false` from a failed commit until the store is
    /// writable again; meanwhile no fire runs (an unrecorded fire is never executed).
    pub fn recording(&self) -> bool {
        self.recording.load(Ordering::SeqCst)
    }

    /// Runs a job's action once, now, without creating a job: one attempt through the
    /// scheduler's own executor with the job's timeout, no retries, no run record. `body` is a
    /// job as for [`Jobs::create`], or just its `action` (and `timeout`): a missing `name` or
    /// `trigger` is not needed to send. The audit entry (`job.test`, secrets redacted) is
    /// committed before the request goes out.
    pub async fn test_action(
        &self,
        body: &Value,
        actor: &Actor,
    ) -> Result<crate::webhook::AttemptResult, JobError> {
        let mut body = body.clone();
        if let Value::Object(obj) = &mut body {
            obj.entry("name").or_insert_with(|| json!("test"));
            obj.entry("trigger")
                .or_insert_with(|| json!({"every": "1h"}));
        }
        let now = Timestamp::now();
        let spec = JobSpec::from_json(&body, Some(now))?;
        check_destination(&spec, &self.policy)?;
        if spec.action.webhook().is_none() {
            return Err(JobError::Spec(SpecError {
                field: "action".into(),
                message: "only a webhook can be sent as a test; a handler call goes through its handler's queue: save the job and use Run now".into(),
            }));
        }
        let audit = AuditEntry {
            seq: 0,
            at_ms: now.as_millisecond().max(0) as u64,
            actor: actor.clone(),
            action: "job.test".into(),
            target: None,
            summary: spec.redacted_json(),
        };
        self.blocking(move |s| s.audit(audit)).await?;
        let Some(hook) = spec.action.webhook() else {
            unreachable!("checked above: only webhooks are tested")
        };
        let mut result = self.executor.attempt(hook, spec.timeout).await;
        result.error = result.error.map(|e| scrub(&e, hook));
        Ok(result)
    }

    pub fn get(&self, id: JobId) -> Option<JobEntry> {
        self.table.read().unwrap().get(&id).cloned()
    }

    /// Every job, sorted by next fire time (jobs without one last), then id.
    pub fn list(&self) -> Vec<JobEntry> {
        let mut v: Vec<JobEntry> = self.table.read().unwrap().values().cloned().collect();
        v.sort_by_key(|e| sort_key(&e.record));
        v
    }

    /// (jobs, paused, running).
    pub fn counts(&self) -> (usize, usize, u32) {
        let t = self.table.read().unwrap();
        let paused = t.values().filter(|e| e.record.spec.paused).count();
        let running = t.values().map(|e| e.running).sum();
        (t.len(), paused, running)
    }

    /// Deletes the whole finished run history (queued, leased and running runs stay), with an
    /// audit entry `runs.clear`; returns how many runs were deleted.
    pub async fn clear_runs(&self, actor: &Actor) -> Result<usize, JobError> {
        let actor = actor.clone();
        self.blocking(move |s| {
            let n = s.prune_runs(Timestamp::MAX)?;
            s.audit(AuditEntry {
                seq: 0,
                at_ms: Timestamp::now().as_millisecond().max(0) as u64,
                actor,
                action: "runs.clear".into(),
                target: None,
                summary: json!({"deleted": n}),
            })?;
            Ok(n)
        })
        .await
    }

    pub async fn runs(&self, filter: RunFilter) -> Result<Vec<RunRecord>, JobError> {
        Ok(self.blocking(move |s| s.runs_page(&filter)).await?)
    }
}

/// Refuses a webhook URL whose host is an address the destination policy never lets the
/// executor connect to (a literal IP, a numeric form such as `2130706433`, or `localhost`).
/// DNS names are judged when a run connects, on the addresses they resolve to then.
fn check_destination(spec: &JobSpec, policy: &NetPolicy) -> Result<(), SpecError> {
    let Action::Webhook(hook) = &spec.action else {
        return Ok(());
    };
    let Some(host) = hook.url.host() else {
        return Ok(());
    };
    match policy::parse_host(host) {
        policy::Host::Ip(ip) => policy.check(ip).map(|_| ()).map_err(|r| SpecError {
            field: "action.webhook.url".into(),
            message: r.to_string(),
        }),
        policy::Host::Name(_) => Ok(()),
    }
}

/// The first fire of a new or changed spec, strictly after `now` (what the core computes for
/// it), so it can be stored in the same transaction as the spec.
fn first_fire(spec: &JobSpec, now: Timestamp) -> Option<Timestamp> {
    if spec.paused {
        None
    } else {
        spec.trigger.next_after(now)
    }
}

/// Sort key for listings: next fire (none last), then id.
pub fn sort_key(r: &JobRecord) -> (i128, u64) {
    (
        r.next_fire_at
            .map(|t| t.as_nanosecond())
            .unwrap_or(i128::MAX),
        r.id.as_u64(),
    )
}

struct Driver {
    core: Core,
    store: Arc<Store>,
    table: Arc<RwLock<HashMap<JobId, JobEntry>>>,
    stats: Arc<Mutex<JobStats>>,
    executor: Executor,
    finished: mpsc::Sender<RunRecord>,
    config: JobsConfig,
    /// `run now` fires not yet taken: (job, time) so their runs are marked manual, and who
    /// waits for the run's id.
    manual: Vec<(JobId, Timestamp, RunReply)>,
    tasks: Arc<Tasks>,
    /// Shared with [`Jobs::recording`]. While false the driver takes no fires (the core is not
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
        loop {
            let now = Timestamp::now();
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
                    Some(cmd) => self.handle(cmd),
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
                _ = tokio::time::sleep(sleep) => {}
            }
            if !self.is_recording() && std::time::Instant::now() >= self.next_recover {
                self.resume_recording().await;
            }
            if self.is_recording() {
                self.core.handle_timeout(Timestamp::now());
                self.take_fires().await;
            }
        }
        tracing::info!("scheduler stopped");
    }

    fn handle(&mut self, cmd: Command) {
        let now = Timestamp::now();
        match cmd {
            Command::Upsert {
                record,
                reschedule,
                done,
            } => {
                let id = record.id;
                let persisted = if reschedule {
                    None
                } else {
                    record.next_fire_at
                };
                self.core
                    .upsert(id, Arc::new(record.spec.clone()), persisted, now);
                let next = self.core.next_fire_at(id);
                let running = self.core.running(id);
                let mut rec = *record;
                rec.next_fire_at = next;
                self.table.write().unwrap().insert(
                    id,
                    JobEntry {
                        record: rec,
                        running,
                    },
                );
                let _ = done.send(next);
            }
            Command::Remove(id, done) => {
                self.core.remove(id);
                self.table.write().unwrap().remove(&id);
                let _ = done.send(());
            }
            Command::Pause(id, done) => {
                self.core.pause(id);
                self.set_next(id, None);
                let _ = done.send(());
            }
            Command::Resume(id, done) => {
                self.core.resume(id, now);
                let next = self.core.next_fire_at(id);
                self.set_next(id, next);
                let _ = done.send(next);
            }
            Command::RunNow(id, done) => {
                if !self.is_recording() {
                    let _ = done.send(Err(JobError::NotRecorded(self.store.refusal())));
                } else if !self.core.contains(id) {
                    let _ = done.send(Err(JobError::NotFound(id)));
                } else if self.core.run_now(id, now) {
                    self.manual.push((id, now, done));
                } else {
                    let _ = done.send(Err(JobError::Busy(id)));
                }
            }
        }
    }

    /// A handler run finished (its run row was written with it): free its instance slot.
    fn task_finished(&mut self, done: queue::Finished) {
        self.core.handle_finished(done.job_id);
        if let Some(e) = self.table.write().unwrap().get_mut(&done.job_id) {
            e.running = self.core.running(done.job_id);
        }
        let mut stats = self.stats.lock().unwrap();
        if done.succeeded {
            stats.succeeded += 1;
        } else {
            stats.failed += 1;
        }
    }

    fn set_next(&self, id: JobId, next: Option<Timestamp>) {
        if let Some(e) = self.table.write().unwrap().get_mut(&id) {
            e.record.next_fire_at = next;
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
        let now = Timestamp::now();
        let mut runs = Vec::with_capacity(fires.len());
        let mut waiters = Vec::with_capacity(fires.len());
        // Handler fires: (index into `runs`, task), committed with the runs.
        let mut tasks: Vec<(usize, Task)> = Vec::new();
        for f in &fires {
            let name = self
                .core
                .spec(f.job)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            let waiter = match f.kind {
                FireKind::Run => self
                    .manual
                    .iter()
                    .position(|m| (m.0, m.1) == (f.job, f.scheduled_at))
                    .map(|i| self.manual.swap_remove(i).2),
                _ => None,
            };
            let is_manual = waiter.is_some();
            waiters.push(waiter);
            let mut run = RunRecord {
                id: 0,
                job_id: f.job,
                job_name: name,
                scheduled_at: f.scheduled_at,
                started_at: None,
                finished_at: None,
                attempt: 0,
                status: RunStatus::Running,
                trigger: if is_manual { "manual" } else { "schedule" }.into(),
                http_status: None,
                error: None,
                duration_ms: None,
                count: None,
                handler: None,
                result: None,
                queue_delay_ms: None,
            };
            let call = self
                .core
                .spec(f.job)
                .and_then(|s| s.action.handler().map(|c| (c.clone(), s.retry, s.timeout)));
            match f.kind {
                FireKind::Run if call.is_some() => {
                    let (call, retry, timeout) = call.expect("checked");
                    // Queued for the handler; it starts when the handler leases it.
                    run.status = RunStatus::Queued;
                    run.handler = Some(call.id.clone());
                    let mut task = Task::new(
                        f.job,
                        &call.id,
                        &call.method,
                        &call.params,
                        f.scheduled_at,
                        retry,
                        timeout,
                        now,
                    );
                    task.manual = is_manual;
                    tasks.push((runs.len(), task));
                }
                FireKind::Run => run.started_at = Some(now),
                FireKind::Missed => {
                    run.status = RunStatus::Missed;
                    run.finished_at = Some(now);
                    run.error = Some(
                        "missed: the appliance was not running within misfire_grace of this time"
                            .into(),
                    );
                }
                FireKind::Skipped => {
                    run.status = RunStatus::Skipped;
                    run.finished_at = Some(now);
                    run.error = Some("skipped: max_instances runs were still going".into());
                }
                FireKind::MissedMany { through } => {
                    run.status = RunStatus::Missed;
                    run.finished_at = Some(now);
                    run.error = Some(format!(
                        "missed: every further fire from {} through {through} (too many to list)",
                        f.scheduled_at
                    ));
                }
            }
            runs.push(run);
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
                // Not recorded, so not run. The core already moved past these fires; the
                // store still holds the old next fire times. Stop taking fires until the store
                // is writable again, then reload those times: the same fires come due again and
                // the misfire rules decide, exactly as after a restart. `run now` callers get
                // the error (their run will not happen later behind their back).
                tracing::error!(error = %e, fires = fires.len(), "could not record fires: none of them ran; the scheduler resumes when the disk accepts writes again");
                for f in &fires {
                    if f.kind.is_run() {
                        self.core.handle_finished(f.job);
                    }
                }
                for w in waiters.into_iter().flatten() {
                    let _ = w.send(Err(JobError::NotRecorded(e.same_kind())));
                }
                self.stop_recording();
                return;
            }
        };
        {
            let mut t = self.table.write().unwrap();
            for (id, next) in &dirty {
                if let Some(e) = t.get_mut(id) {
                    e.record.next_fire_at = *next;
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
                log_outcome(&run);
            }
            if run.status == RunStatus::Queued {
                // A handler call holds its instance until the handler finishes it.
                stats.fired += 1;
                if let Some(e) = self.table.write().unwrap().get_mut(&run.job_id) {
                    e.running = self.core.running(run.job_id);
                }
                continue;
            }
            if run.status != RunStatus::Running {
                continue;
            }
            stats.fired += 1;
            let Some(spec) = self.core.spec(run.job_id).cloned() else {
                continue;
            };
            if let Some(e) = self.table.write().unwrap().get_mut(&run.job_id) {
                e.running = self.core.running(run.job_id);
            }
            self.in_flight.insert(run.id);
            let executor = self.executor.clone();
            let finished = self.finished.clone();
            tokio::spawn(async move {
                let run = execute(executor, &spec, run).await;
                let _ = finished.send(run).await;
            });
        }
    }

    async fn record_finished(&mut self, batch: Vec<RunRecord>) {
        {
            let mut stats = self.stats.lock().unwrap();
            let mut t = self.table.write().unwrap();
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
                if run.trigger == "schedule" {
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
        let now = Timestamp::now();
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
                r.status = RunStatus::Failed;
                r.finished_at = Some(now);
                r.error =
                    Some("not started: a disk error hit while this run was being recorded".into());
            }
            if !orphans.is_empty() {
                store.update_runs(&orphans)?;
            }
            store.jobs().map(|loaded| loaded.rows)
        })
        .await
        .expect("store task does not panic");
        let records = match reloaded {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload jobs after the disk recovered");
                return;
            }
        };
        self.reload(records, now);
        self.recording.store(true, Ordering::SeqCst);
        tracing::info!("scheduler recording fires again");
    }

    /// Puts the stored jobs (specs and next fire times) back into the core and the table.
    fn reload(&mut self, records: Vec<JobRecord>, now: Timestamp) {
        // Jobs are committed before the core hears of them and deleted from disk before they
        // leave it, so the stored set is the core's set: only their state needs restoring.
        let mut t = self.table.write().unwrap();
        for rec in records {
            let id = rec.id;
            self.core
                .upsert(id, Arc::new(rec.spec.clone()), rec.next_fire_at, now);
            let mut rec = rec;
            rec.next_fire_at = self.core.next_fire_at(id);
            let running = self.core.running(id);
            t.insert(
                id,
                JobEntry {
                    record: rec,
                    running,
                },
            );
        }
    }

    async fn prune(&self) {
        let Ok(span) = jiff::SignedDuration::try_from(self.config.run_retention) else {
            return;
        };
        let Ok(cutoff) = Timestamp::now().checked_sub(span) else {
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
        let now_ms = Timestamp::now().as_millisecond().max(0) as u64;
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

/// Executes one run: the webhook with retries and timeouts. Logs never contain the URL.
async fn execute(executor: Executor, spec: &JobSpec, mut run: RunRecord) -> RunRecord {
    let Action::Webhook(hook) = &spec.action else {
        // Handler calls are queued for their handler and never reach this point; should a
        // patch ever race a fire, record that instead of panicking a task.
        run.status = RunStatus::Failed;
        run.finished_at = Some(Timestamp::now());
        run.error =
            Some("the job's action is no longer a webhook; this run was not executed".into());
        return run;
    };
    run.started_at = Some(Timestamp::now());
    let started = std::time::Instant::now();
    let outcome = executor.run(hook, spec.retry, spec.timeout, |_| {}).await;
    run.attempt = outcome.attempts;
    run.http_status = outcome.last.status;
    // Errors are shown to viewers: make sure no part of the URL beyond its redacted form
    // survives in them, whatever a lower layer put in its message.
    run.error = outcome.last.error.as_deref().map(|e| scrub(e, hook));
    run.status = if outcome.last.succeeded() {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    run.finished_at = Some(Timestamp::now());
    run.duration_ms = Some(started.elapsed().as_millis() as u64);
    log_outcome(&run);
    run
}

/// Logs a run that ended or was recorded without running: INFO when it succeeded, WARN with
/// its (already scrubbed) error when it failed, was missed or was skipped, so
/// `journalctl -p warning` shows every run that needs a look.
fn log_outcome(run: &RunRecord) {
    let error = run.error.as_deref().unwrap_or("");
    match run.status {
        // Queued and leased (handler) runs are not passed here; they finish through `tasks`.
        RunStatus::Succeeded | RunStatus::Running | RunStatus::Queued | RunStatus::Leased => {
            tracing::info!(
            job = %run.job_id,
            name = %run.job_name,
            status = run.status.as_str(),
            http = ?run.http_status,
            attempts = run.attempt,
            "run finished"
            )
        }
        RunStatus::Failed => tracing::warn!(
            job = %run.job_id,
            name = %run.job_name,
            status = run.status.as_str(),
            http = ?run.http_status,
            attempts = run.attempt,
            error,
            "run failed: {error}"
        ),
        RunStatus::Missed | RunStatus::Skipped => tracing::warn!(
            job = %run.job_id,
            name = %run.job_name,
            status = run.status.as_str(),
            scheduled = %run.scheduled_at,
            error,
            "run {}: {error}",
            run.status.as_str()
        ),
    }
}

/// Replaces the webhook URL (and its path and query) in `text` with the redacted URL.
fn scrub(text: &str, hook: &crate::sched::Webhook) -> String {
    let full = hook.url.to_string();
    let redacted = crate::sched::spec::viewer_url(&hook.url);
    let mut out = text.replace(&full, &redacted);
    if let Some(pq) = hook.url.path_and_query() {
        for part in [pq.as_str(), hook.url.path()] {
            if part.len() > 1 {
                out = out.replace(part, "/***");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_to(url: &str) -> JobSpec {
        JobSpec::from_json(
            &json!({
                "name": "x",
                "trigger": {"every": "1m", "start": "2026-01-01T00:00:00Z"},
                "action": {"webhook": {"url": url}}
            }),
            None,
        )
        .unwrap()
    }

    #[test]
    fn job_names_are_unique_ignoring_case_and_surrounding_spaces() {
        let rec = |id: u64, name: &str| {
            let mut spec = spec_to("https://example.com/hook");
            spec.name = name.into();
            JobRecord {
                id: JobId::from_u64(id),
                spec,
                created_at_ms: 0,
                updated_at_ms: 0,
                created_by: "olga".into(),
                next_fire_at: None,
                paused_at_ms: None,
            }
        };
        let jobs = [rec(1, "Raid Reminder"), rec(2, "weekly")];
        assert_eq!(
            name_taken(&jobs, "raid reminder", None),
            Some(JobId::from_u64(1))
        );
        assert_eq!(
            name_taken(&jobs, " WEEKLY ", None),
            Some(JobId::from_u64(2))
        );
        assert_eq!(name_taken(&jobs, "raid", None), None);
        assert_eq!(
            name_taken(&jobs, "RAID REMINDER", Some(JobId::from_u64(1))),
            None,
            "a job does not collide with itself"
        );
    }

    /// Literal destinations the policy refuses are refused at create/patch, naming the field;
    /// names wait for the connect-time check.
    #[test]
    fn literal_destinations_are_checked_when_a_job_is_saved() {
        let tunnel: crate::webhook::IpNet = "10.88.88.0/24".parse().unwrap();
        let default = NetPolicy::new(vec![]).forbid(tunnel);
        let lan = NetPolicy::new(vec!["10.0.0.0/8".parse().unwrap()]).forbid(tunnel);
        for url in [
            "http://10.88.88.1:8888/api/v1/peers",
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://2130706433/x",
            "http://0/x",
            "http://[::1]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://169.254.169.254/latest/meta-data",
            "https://192.168.1.2/hook",
        ] {
            let e = check_destination(&spec_to(url), &default).unwrap_err();
            assert_eq!(e.field, "action.webhook.url", "{url}");
            assert!(e.message.starts_with("destination "), "{url}: {e}");
        }
        let e = check_destination(&spec_to("http://10.88.88.1:8888/"), &lan).unwrap_err();
        assert!(e.message.contains("appliance's own network"), "{e}");
        assert!(check_destination(&spec_to("http://10.1.2.3/hook"), &lan).is_ok());
        assert!(
            check_destination(&spec_to("https://discord.com/api/webhooks/1/t"), &default).is_ok()
        );
        assert!(check_destination(&spec_to("https://162.159.135.232/x"), &default).is_ok());
        // A name is resolved, and judged, only when a run connects.
        assert!(check_destination(&spec_to("http://sink.test:18080/"), &default).is_ok());
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

    /// Creates no longer hold the naming lock across their (grouped) commit; the name claim
    /// still admits exactly one of many concurrent creates of one name, and a rename cannot
    /// take a name a create in flight holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_of_one_name_admit_exactly_one() {
        let disk = crate::store::testing::Disk::default();
        let store = Arc::new(disk.store());
        let (_stop_tx, stop) = watch::channel(false);
        let (jobs, _task) = Jobs::start(store.clone(), JobsConfig::default(), stop).unwrap();
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
                tokio::spawn(async move { jobs.create(&b, &Actor::local_cli()).await })
            })
            .collect();
        let (mut ok, mut taken) = (0, 0);
        for c in creates {
            match c.await.unwrap() {
                Ok(_) => ok += 1,
                Err(JobError::NameTaken { .. }) => taken += 1,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_fire_runs_unrecorded_and_firing_resumes_when_the_disk_recovers() {
        let disk = crate::store::testing::Disk::default();
        let store = Arc::new(disk.store());
        let (url, hits) = counting_sink().await;
        let (_stop_tx, stop) = watch::channel(false);
        // The sink is on loopback, which the default webhook policy refuses.
        let config = JobsConfig {
            webhook_policy: NetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
            ..JobsConfig::default()
        };
        let (jobs, _task) = Jobs::start(store.clone(), config, stop).unwrap();
        let body = json!({
            "name": "tick",
            "trigger": {"every": "1s"},
            "action": {"webhook": {"url": url}},
        });
        let job = jobs.create(&body, &Actor::local_cli()).await.unwrap();
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
            matches!(err, JobError::NotRecorded(StoreError::DiskFull)),
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

    #[test]
    fn scrub_removes_the_webhook_token_from_error_text() {
        let spec = JobSpec::from_json(
            &json!({
                "name": "x",
                "trigger": {"every": "1m", "start": "2026-01-01T00:00:00Z"},
                "action": {"webhook": {"url": "https://discord.com/api/webhooks/123/SeCrEt?wait=true"}}
            }),
            None,
        )
        .unwrap();
        let Action::Webhook(hook) = &spec.action else {
            panic!("webhook expected")
        };
        let e = scrub(
            "error sending request for url (https://discord.com/api/webhooks/123/SeCrEt?wait=true): /api/webhooks/123/SeCrEt?wait=true",
            hook,
        );
        assert!(!e.contains("SeCrEt"), "{e}");

        // A Telegram bot token sits in the first path segment; nothing of the path survives.
        let spec = spec_to("https://api.telegram.org/bot123:AAHsecret/sendMessage?chat_id=1");
        let hook = spec.action.webhook().expect("a webhook");
        let e = scrub(
            "error sending request for url (https://api.telegram.org/bot123:AAHsecret/sendMessage?chat_id=1); GET /bot123:AAHsecret/sendMessage",
            hook,
        );
        assert!(!e.contains("AAHsecret") && !e.contains("chat_id"), "{e}");
        assert!(e.contains("https://api.telegram.org/***"), "{e}");
    }
}
