//! [`Handle`]: the job operations the API (and the control socket) call.
//!
//! Layer: driver glue. Validates, commits each change with its audit entry through the store,
//! then tells the scheduler driver by a `Command`; answers reads from a view of the job
//! table (names, order, counts) and the store (a job's spec: one read transaction). It writes
//! no table, and the only clock it reads is the driver's own [`Clock`]: the time of an
//! operation (for its first fire, its record and its audit entry) is read from it without a
//! round trip ([`Handle::now`]), and the driver brings its core up to date with that clock
//! (takes the fires due by then) before it applies the change, so a change never overtakes a
//! fire that was due before it. Fire times are [`Core`]'s (`Core::first_fire`,
//! `Core::resume_catching_up`); the driver updates the table and answers with the job as it
//! now is. Webhook destinations are checked here
//! against the same [`NetPolicy`] the executor enforces.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::error::{
    ChangeError, ClearError, CreateError, JobNotFound, NameTaken, RunNowError, ShuttingDown,
    TestError, UpdateError,
};
use super::table::{listing_key, name_key, JobQuery, Listed, TableView};
use super::{JobEntry, RunStats};
use crate::clock::Clock;
use crate::model::{Actor, AuditAction, AuditEntry, JobAction, JobRecord, RunFilter, RunRecord};
use crate::sched::{Core, JobDraft, JobId, JobSpec, SpecError};
use crate::store::{Store, StoreError};
use crate::tasks::Queue;
use crate::webhook::delivery::{check_destination, scrub};
use crate::webhook::{Executor, NetPolicy};

/// Where the id of a `run now` run is sent once it is recorded.
pub(super) type RunReply = oneshot::Sender<Result<u64, RunNowError>>;

/// What the handle asks of the driver. Each change is sent after it is on disk; the driver
/// applies it to the core and the table and answers with the job as the table now holds it.
pub(super) enum Command {
    /// A new or changed job, stored with its first fire ([`Core::first_fire`]).
    Upsert {
        record: Box<JobRecord>,
        done: oneshot::Sender<JobEntry>,
    },
    Remove(JobId, oneshot::Sender<()>),
    /// The job as stored, now paused. Answered `None` if the job is gone.
    Pause {
        record: Box<JobRecord>,
        done: oneshot::Sender<Option<JobEntry>>,
    },
    /// The job as stored, now resumed; with catch-up, from when it was paused. Answered `None`
    /// if the job is gone.
    Resume {
        record: Box<JobRecord>,
        catch_up_since: Option<Timestamp>,
        done: oneshot::Sender<Option<JobEntry>>,
    },
    /// Answered once the run is recorded, with its id.
    RunNow(JobId, RunReply),
}

/// Handle to the scheduler, shared by the API.
pub struct Handle {
    pub(super) commands: mpsc::Sender<Command>,
    /// The driver's clock (the same one: a virtual clock in tests).
    pub(super) clock: Clock,
    pub(super) table: TableView,
    /// The store the jobs and runs live in.
    pub store: Arc<Store>,
    /// Run counters since start.
    pub stats: Arc<Mutex<RunStats>>,
    /// The handler task queue (handler actions are delivered through it).
    pub tasks: Arc<Queue>,
    /// Job and run rows that did not decode when the scheduler loaded (skipped, logged).
    pub damaged_at_start: usize,
    /// Webhook attempts by result (for `GET /metrics`).
    pub webhook_attempts: Arc<crate::metrics::LabelCounter>,
    /// Where webhooks may connect; literal-IP URLs are checked against it at create and patch.
    pub(super) policy: Arc<NetPolicy>,
    /// Whether the driver can record fires (false from a failed commit until recovery).
    pub(super) recording: Arc<AtomicBool>,
    /// A handle on the driver's own executor (same client, same destination rules), for
    /// [`Handle::test_action`].
    pub(super) executor: Executor,
    /// Held across the uniqueness check and the write of a rename, and across the check and
    /// reservation of a create's name, so two concurrent requests cannot both take a name.
    pub(super) naming: tokio::sync::Mutex<()>,
    /// Names (their [`name_key`]) of creates between their check and their table entry, with
    /// the id being created: creates do not hold `naming` across their commit, so that
    /// concurrent creates share one group commit (`store/group.rs`).
    pub(super) creating: Arc<Mutex<HashMap<String, JobId>>>,
}

/// A create's claim on its name; released when the job is in the table (or the create failed).
struct NameClaim {
    creating: Arc<Mutex<HashMap<String, JobId>>>,
    key: String,
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        self.creating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

impl Handle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ShuttingDown> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ShuttingDown)?;
        rx.await.map_err(|_| ShuttingDown)
    }

    /// The time of an operation, from the driver's clock (the only clock the scheduler reads).
    /// API routes that need "now" (a schedule preview, ScheduleZero's default `job_id`) ask
    /// here rather than read the wall clock, so they follow the scheduler's clock. Read
    /// without a round trip to the driver: the driver takes the fires due by the time it
    /// applies a change first (`runner`), so reading the clock here cannot let a change
    /// overtake a due fire. `ShuttingDown` once the driver has stopped, so nothing is
    /// committed that it would never schedule.
    pub fn now(&self) -> Result<Timestamp, ShuttingDown> {
        if self.commands.is_closed() {
            return Err(ShuttingDown);
        }
        Ok(self.clock.now())
    }

    fn audit(
        actor: &Actor,
        action: JobAction,
        id: JobId,
        summary: Value,
        at: Timestamp,
    ) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at_ms: millis(at),
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

    /// Finishes the decoded job at the driver's time, checks it, stores it durably (with its
    /// audit entry) and schedules it.
    pub async fn create(&self, job: JobDraft, actor: &Actor) -> Result<JobEntry, CreateError> {
        let now = self.now()?;
        let spec = job.finish(Some(now))?;
        check_destination(&spec, &self.policy)?;
        self.check_action(&spec)?;
        let now_ms = millis(now);
        let fresh = || JobId::fresh(now_ms, rand_core::RngCore::next_u64(&mut rand_core::OsRng));
        let id = fresh();
        let _claim = {
            let _naming = self.naming.lock().await;
            self.check_name(&spec.name, None)?;
            let key = name_key(&spec.name);
            let mut creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(other) = creating.get(&key) {
                return Err(NameTaken {
                    name: spec.name.clone(),
                    id: *other,
                }
                .into());
            }
            creating.insert(key.clone(), id);
            NameClaim {
                creating: self.creating.clone(),
                key,
            }
        };
        let mut record = JobRecord {
            id,
            next_fire_at: Core::first_fire(&spec, now),
            spec: Arc::new(spec),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            created_by: actor.peer.clone(),
            paused_at_ms: None,
        };
        loop {
            let audit = Self::audit(
                actor,
                JobAction::Create,
                record.id,
                record.spec.redacted_json(),
                now,
            );
            let r = record.clone();
            if self
                .blocking(move |s| s.insert_job(&r, Some(audit)))
                .await?
            {
                break;
            }
            record.id = fresh();
        }
        // The next fire went to disk with the job, so the driver has nothing to write back:
        // one durable commit per create.
        Ok(self.schedule(record).await?)
    }

    fn check_name(&self, name: &str, except: Option<JobId>) -> Result<(), NameTaken> {
        match self.table.name_taken(name, except) {
            Some(id) => Err(NameTaken {
                name: name.to_string(),
                id,
            }),
            None => Ok(()),
        }
    }

    async fn schedule(&self, record: JobRecord) -> Result<JobEntry, ShuttingDown> {
        self.ask(|done| Command::Upsert {
            record: Box::new(record),
            done,
        })
        .await
    }

    /// Applies a JSON merge patch to a job's spec (validated as a whole) and reschedules it.
    pub async fn patch(
        &self,
        id: JobId,
        patch: &Value,
        actor: &Actor,
    ) -> Result<JobEntry, UpdateError> {
        let now = self.now()?;
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
                        let other = table.name_taken(&spec.name, Some(id)).or_else(|| {
                            let creating = creating.lock().unwrap_or_else(|e| e.into_inner());
                            creating.get(&name_key(&spec.name)).copied()
                        });
                        if let Some(other) = other {
                            return Err(NameTaken {
                                name: spec.name.clone(),
                                id: other,
                            }
                            .into());
                        }
                    }
                    let audit = Self::audit(
                        &actor,
                        JobAction::Update,
                        id,
                        json!({"before": cur.spec.redacted_json(), "after": spec.redacted_json()}),
                        now,
                    );
                    let mut next = cur.clone();
                    next.next_fire_at = Core::first_fire(&spec, now);
                    next.spec = Arc::new(spec);
                    next.updated_at_ms = millis(now);
                    Ok::<_, UpdateError>((Some(next), Some(audit)))
                })
            })
            .await?
            .ok_or(JobNotFound(id))?;
        Ok(self.schedule(rec).await?)
    }

    /// Deletes a job (its run history stays until pruned).
    pub async fn delete(&self, id: JobId, actor: &Actor) -> Result<JobEntry, ChangeError> {
        let now = self.now()?;
        let actor = actor.clone();
        let rec = self
            .blocking(move |s| {
                s.update_job(id, |cur| {
                    let audit = Self::audit(
                        &actor,
                        JobAction::Delete,
                        id,
                        json!({"name": cur.spec.name}),
                        now,
                    );
                    Ok::<_, ChangeError>((None, Some(audit)))
                })
            })
            .await?
            .ok_or(JobNotFound(id))?;
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
    /// once with `coalesce`; older ones are recorded as missed). See [`Core::resume`] and
    /// [`Core::resume_catching_up`].
    pub async fn set_paused(
        &self,
        id: JobId,
        paused: bool,
        catch_up: bool,
        actor: &Actor,
    ) -> Result<JobEntry, ChangeError> {
        let actor = actor.clone();
        let now = self.now()?;
        let now_ms = millis(now);
        let (rec, paused_since) = self
            .blocking(move |s| {
                let mut paused_since = None;
                let rec = s.update_job(id, |cur| {
                    // When it was paused (before this change), for a catch-up resume.
                    paused_since = cur.paused_at_ms;
                    let mut next = cur.clone();
                    Arc::make_mut(&mut next.spec).paused = paused;
                    next.updated_at_ms = now_ms;
                    next.paused_at_ms = match (paused, cur.paused_at_ms) {
                        (true, Some(t)) => Some(t),
                        (true, None) => Some(now_ms),
                        (false, _) => None,
                    };
                    let (action, summary) = if paused {
                        (JobAction::Pause, json!({"name": cur.spec.name}))
                    } else {
                        (
                            JobAction::Resume,
                            json!({"name": cur.spec.name, "catch_up": catch_up}),
                        )
                    };
                    let audit = Self::audit(&actor, action, id, summary, now);
                    Ok::<_, ChangeError>((Some(next), Some(audit)))
                })?;
                Ok::<_, ChangeError>((rec, paused_since))
            })
            .await?;
        let rec = Box::new(rec.ok_or(JobNotFound(id))?);
        let entry = if paused {
            self.ask(|done| Command::Pause { record: rec, done })
                .await?
        } else {
            let catch_up_since = paused_since
                .filter(|_| catch_up)
                .and_then(|ms| Timestamp::from_millisecond(ms as i64).ok());
            self.ask(|done| Command::Resume {
                record: rec,
                catch_up_since,
                done,
            })
            .await?
        };
        Ok(entry.ok_or(JobNotFound(id))?)
    }

    /// Runs a job now through the normal run path (respecting `max_instances`); returns the
    /// id of the run, recorded before this returns.
    pub async fn run_now(&self, id: JobId, actor: &Actor) -> Result<u64, RunNowError> {
        let name = self.table.get(id).ok_or(JobNotFound(id))?.name;
        let now = self.now()?;
        let run = self.ask(|done| Command::RunNow(id, done)).await??;
        let audit = Self::audit(
            actor,
            JobAction::Run,
            id,
            json!({"name": name, "run": run}),
            now,
        );
        self.blocking(move |s| s.audit(audit)).await?;
        Ok(run)
    }

    /// Whether the scheduler can record fires. `false` from a failed commit until the store is
    /// writable again; meanwhile no fire runs (an unrecorded fire is never executed).
    pub fn recording(&self) -> bool {
        self.recording.load(Ordering::SeqCst)
    }

    /// Runs a job's action once, now, without creating a job: one attempt through the
    /// scheduler's own executor with the job's timeout, no retries, no run record. The audit
    /// entry (`job.test`, secrets redacted) is committed before the request goes out.
    pub async fn test_action(
        &self,
        job: JobDraft,
        actor: &Actor,
    ) -> Result<crate::webhook::AttemptResult, TestError> {
        let now = self.now()?;
        let spec = job.finish(Some(now))?;
        check_destination(&spec, &self.policy)?;
        if spec.action.webhook().is_none() {
            return Err(TestError::Spec(SpecError {
                field: "action".into(),
                message: "only a webhook can be sent as a test; a handler call goes through its handler's queue: save the job and use Run now".into(),
            }));
        }
        let audit = AuditEntry {
            seq: 0,
            at_ms: millis(now),
            actor: actor.clone(),
            action: JobAction::Test.into(),
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

    /// One job: its stored record (one row read) with the scheduler's next fire time and
    /// running count. `Ok(None)` for a job the scheduler does not have.
    pub fn get(&self, id: JobId) -> Result<Option<JobEntry>, StoreError> {
        let Some(listed) = self.table.get(id) else {
            return Ok(None);
        };
        Ok(self
            .store
            .jobs_by_id(&[id])?
            .pop()
            .map(|record| entry(record, &listed)))
    }

    /// The job carrying the ScheduleZero id `id` ([`JobSpec::schedulezero_id`]); of several,
    /// the first in listing order, as a pass over [`Handle::list`] would find it. Reads only
    /// the rows of the jobs the table's index names for `id`: none when no job carries it,
    /// one when one does.
    pub fn by_schedulezero_id(&self, id: &str) -> Result<Option<JobEntry>, StoreError> {
        let candidates = self.table.schedulezero(id);
        if candidates.is_empty() {
            return Ok(None);
        }
        let ids: Vec<JobId> = candidates.iter().map(|(id, _)| *id).collect();
        let mut records = self.store.jobs_by_id(&ids)?.into_iter().peekable();
        for (job, l) in &candidates {
            // In the order asked; a row gone meanwhile is left out, one changed meanwhile
            // counts only if it still carries the id.
            if let Some(record) = records.next_if(|r| r.id == *job) {
                if record.spec.schedulezero_id() == Some(id) {
                    return Ok(Some(entry(record, l)));
                }
            }
        }
        Ok(None)
    }

    /// Whether the scheduler has this job (no store read).
    pub fn contains(&self, id: JobId) -> bool {
        self.table.get(id).is_some()
    }

    /// Every job, sorted by next fire time (jobs without one last), then id: the records read
    /// from the store in one read transaction, with the scheduler's next fire times and
    /// running counts.
    pub fn list(&self) -> Result<Vec<JobEntry>, StoreError> {
        self.list_page(&JobQuery::all())
    }

    /// The jobs `query` admits, in the order and form of [`Handle::list`], at most
    /// `query.limit` of them. The filters and the order are applied to the job table first;
    /// only the rows of the jobs returned are read (a row deleted meanwhile is left out and
    /// the next match read in its place).
    pub fn list_page(&self, query: &JobQuery) -> Result<Vec<JobEntry>, StoreError> {
        let mut out = Vec::new();
        let mut after = query.after;
        while out.len() < query.limit {
            let want = query.limit - out.len();
            let picked = self.table.select(query, after, want);
            let Some((last, l)) = picked.last() else {
                break;
            };
            after = Some(listing_key(*last, l.next_fire_at));
            let ids: Vec<JobId> = picked.iter().map(|(id, _)| *id).collect();
            let mut records = self.store.jobs_by_id(&ids)?.into_iter().peekable();
            for (id, l) in &picked {
                // `jobs_by_id` keeps the order and leaves out only rows gone meanwhile; a row
                // changed since the table was read is shown only if it still matches.
                if let Some(record) = records.next_if(|r| r.id == *id) {
                    let e = entry(record, l);
                    if query.admits_entry(&e) {
                        out.push(e);
                    }
                }
            }
            if picked.len() < want {
                break;
            }
        }
        Ok(out)
    }

    /// (jobs, paused, running).
    pub fn counts(&self) -> (usize, usize, u32) {
        self.table.counts()
    }

    /// The jobs at a glance for `appliance status`, from the job table alone (no row read):
    /// totals and the soonest fires of jobs that are not paused.
    pub fn glance(&self) -> crate::status::JobsGlance {
        let (total, paused, _) = self.table.counts();
        let unpaused = JobQuery {
            paused: Some(false),
            ..JobQuery::all()
        };
        // Listing order is next fire time first: the first NEXT_FIRES unpaused jobs hold the
        // soonest fires (those without one come last).
        let n = crate::status::NEXT_FIRES;
        let next = self.table.select(&unpaused, None, n).into_iter();
        let next = next.filter_map(|(id, l)| Some((id, l.name.to_string(), l.next_fire_at?)));
        crate::status::JobsGlance {
            total,
            paused,
            next: crate::status::soonest(next.collect()),
        }
    }

    /// Deletes the whole finished run history (queued, leased and running runs stay), with an
    /// audit entry `runs.clear`; returns how many runs were deleted.
    pub async fn clear_runs(&self, actor: &Actor) -> Result<usize, ClearError> {
        let now = self.now()?;
        let actor = actor.clone();
        self.blocking(move |s| {
            let n = s.prune_runs(Timestamp::MAX)?;
            s.audit(AuditEntry {
                seq: 0,
                at_ms: millis(now),
                actor,
                action: AuditAction::RunsClear,
                target: None,
                summary: json!({"deleted": n}),
            })?;
            Ok(n)
        })
        .await
    }

    /// A page of the run history.
    pub async fn runs(&self, filter: RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.blocking(move |s| s.runs_page(&filter)).await
    }
}

/// A stored job as the API shows it: the scheduler's next fire time (ahead of the stored one
/// after a fire that could not be recorded yet) and running count.
fn entry(mut record: JobRecord, listed: &Listed) -> JobEntry {
    record.next_fire_at = listed.next_fire_at;
    JobEntry {
        record,
        running: listed.running,
    }
}

/// Milliseconds since the Unix epoch, as records and audit entries keep time.
fn millis(t: Timestamp) -> u64 {
    t.as_millisecond().max(0) as u64
}
