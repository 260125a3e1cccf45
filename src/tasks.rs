//! The handler task queue's driver and the handler operations the API calls.
//!
//! Layer: driver. Owns the sans-IO [`queue::Core`] behind one async mutex, the handler
//! registry (in memory, backed by the `handlers` table) and the long-poll waiters. Every state
//! change is committed to the store (task rows and their run rows, one transaction) *before
//! the caller is answered*: a 200 to `lease`, `heartbeat`, `ack` or `fail` means the change is
//! on disk. Commits are grouped: an operation changes the core under its mutex and takes a
//! ticket; the first caller to get the commit lock takes *every* change made so far and
//! commits them in one transaction, answering all tickets it covered (one fsync for many acks,
//! commits in the order the changes were made). If a commit fails, the core is rebuilt from
//! the store and every operation not yet committed gets the error. One timer task sleeps until
//! [`queue::Core::poll_timeout`] to expire leases and release tasks whose retry backoff ended.
//!
//! Long polls: a lease call that finds nothing registers on its handler's [`Notify`] *before*
//! it lets go of the core, then waits; whoever makes a task available for that handler (the
//! scheduler enqueueing a fire, a requeue, the timer) wakes every waiter of that handler after
//! its commit, so a task that becomes due while a lease call waits is returned at once.
//!
//! The scheduler ([`crate::scheduler`]) records each handler fire with its task in one
//! transaction, then calls [`Queue::enqueue`]; finished runs go back to it on a channel
//! ([`queue::Finished`]) so `max_instances` counts queued and leased tasks until they finish.
//!
//! Time: every `now` handed to the core, stored or shown comes from one [`Clock`], the
//! scheduler's (a virtual one in tests, so lease expiry and retries run under virtual time).
//! Only the waiting is real time: the timer's sleep and a long poll's `wait`, each in a
//! function that carries its own `#[allow]`.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};

use crate::clock::Clock;
use crate::model::{Actor, AuditAction, AuditEntry, HandlerRecord};
use crate::queue::{self, AckOutcome, Counts, DeliveryId, FailOutcome, Lease, LeaseError, Task};
use crate::sched::{JobId, JobSpec, SpecError};
use crate::scheduler::RunStats;
use crate::store::{Store, StoreError};

/// A handler counts as online when it leased or sent a heartbeat this recently.
pub const ONLINE_WITHIN: Duration = Duration::from_secs(60);
/// Largest result an ack may carry (serialised JSON).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Most methods one handler may register.
pub const MAX_METHODS: usize = 100;

/// Why a task operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The delivery id is unknown or no longer held by the caller.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The change could not be committed, so it did not happen.
    #[error("the change could not be saved, so it did not happen: {0}")]
    Store(#[from] StoreError),
    /// The change was in a group commit that failed, so it did not happen.
    #[error("the change could not be saved, so it did not happen: {0}")]
    NotSaved(String),
}

/// A handler as `GET /api/v1/handlers` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerView {
    /// The handler peer's name (its handler id).
    pub name: String,
    /// Methods it registered.
    pub methods: Vec<String>,
    /// When it last registered.
    pub registered_at: Timestamp,
    /// Last lease call or heartbeat since this process started.
    pub last_seen: Option<Timestamp>,
    /// Its queued and leased tasks.
    pub counts: Counts,
    /// Whether it leased or sent a heartbeat within [`ONLINE_WITHIN`].
    pub online: bool,
}

impl HandlerView {
    /// The body `GET /api/v1/handlers` shows for it.
    pub fn to_json(&self) -> Value {
        json!({
            "handler_id": self.name,
            "methods": self.methods,
            "registered_at": self.registered_at.to_string(),
            "last_seen": self.last_seen.map(|t| t.to_string()),
            "queued": self.counts.queued,
            "leased": self.counts.leased,
            "online": self.online,
        })
    }
}

struct HandlerEntry {
    record: HandlerRecord,
    last_seen: Option<Timestamp>,
}

/// Handle to the task queue, shared by the scheduler and the API.
pub struct Queue {
    store: Arc<Store>,
    core: tokio::sync::Mutex<Ticketed>,
    /// Held while a group commit runs; see the module docs.
    commits: tokio::sync::Mutex<Committed>,
    handlers: RwLock<HashMap<String, HandlerEntry>>,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    /// Wakes the timer task: the earliest deadline may have moved.
    timer: Notify,
    finished: mpsc::UnboundedSender<queue::Finished>,
    /// Wakes [`Queue::wait_finished`] callers after a commit that finished runs.
    run_finished: Notify,
    stats: Arc<Mutex<RunStats>>,
    /// The only source of `now`.
    clock: Clock,
}

/// The core and the ticket of its latest change.
struct Ticketed {
    core: queue::Core,
    ticket: u64,
}

/// What the group commits achieved.
#[derive(Default)]
struct Committed {
    /// Every ticket up to this one is settled (committed or failed).
    through: u64,
    /// Ticket ranges `(after, through]` whose commit failed, newest last (a few kept).
    failed: Vec<(u64, u64, String)>,
}

fn load_core(store: &Store, now: Timestamp) -> Result<queue::Core, StoreError> {
    let mut core = queue::Core::new();
    for t in store.tasks()? {
        core.load(t, now);
    }
    // Wake-ups computed while loading are for nobody: no lease call waits yet.
    let _ = core.take_changes();
    Ok(core)
}

fn new_delivery_id() -> DeliveryId {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    DeliveryId::from_u128(u128::from_le_bytes(b))
}

/// What loading the queue gives: the handle, the receiver of finished runs (for the
/// scheduler) and the instances still held per job (to restore into the scheduler's
/// `max_instances` counts).
pub type Loaded = (
    Arc<Queue>,
    mpsc::UnboundedReceiver<queue::Finished>,
    HashMap<JobId, u32>,
);

impl Queue {
    /// Loads stored tasks and handlers, on the system clock.
    pub fn load(store: Arc<Store>, stats: Arc<Mutex<RunStats>>) -> Result<Loaded, StoreError> {
        Queue::load_on(store, stats, Clock::System)
    }

    /// [`Queue::load`] on the given clock (the scheduler's).
    pub(crate) fn load_on(
        store: Arc<Store>,
        stats: Arc<Mutex<RunStats>>,
        clock: Clock,
    ) -> Result<Loaded, StoreError> {
        let core = load_core(&store, clock.now())?;
        let held = core.unfinished_per_job();
        let handlers = store
            .handlers()?
            .into_iter()
            .map(|r| {
                (
                    r.name.clone(),
                    HandlerEntry {
                        record: r,
                        last_seen: None,
                    },
                )
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = Arc::new(Queue {
            store,
            core: tokio::sync::Mutex::new(Ticketed { core, ticket: 0 }),
            commits: tokio::sync::Mutex::new(Committed::default()),
            handlers: RwLock::new(handlers),
            waiters: Mutex::new(HashMap::new()),
            timer: Notify::new(),
            finished: tx,
            run_finished: Notify::new(),
            stats,
            clock,
        });
        Ok((tasks, rx, held))
    }

    /// Starts the timer task (lease expiry, retry backoff, forgetting finished tasks). It
    /// sleeps in real time until the core's next deadline on the clock, or until woken.
    #[allow(clippy::disallowed_methods)] // driver: the timer sleeps
    pub fn spawn_timer(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let next = me.core.lock().await.core.poll_timeout();
                let sleep = next
                    .map(|due| {
                        me.clock
                            .now()
                            .duration_until(due)
                            .try_into()
                            .unwrap_or(Duration::ZERO)
                    })
                    .unwrap_or(Duration::from_secs(3600))
                    .min(Duration::from_secs(3600));
                tokio::select! {
                    _ = shutdown.changed() => {
                        if *shutdown.borrow() { break; }
                        continue;
                    }
                    _ = me.timer.notified() => continue,
                    _ = tokio::time::sleep(sleep) => {}
                }
                let ((), ticket) = me.change(|core, now| core.handle_timeout(now)).await;
                if let Err(e) = me.durable(ticket).await {
                    tracing::error!(error = %e, "could not record expired leases; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }

    /// Runs `f` on the core (under its mutex) and returns its result with the ticket of the
    /// change; pass the ticket to [`Queue::durable`] before answering anyone.
    async fn change<T>(&self, f: impl FnOnce(&mut queue::Core, Timestamp) -> T) -> (T, u64) {
        let mut st = self.core.lock().await;
        let out = f(&mut st.core, self.clock.now());
        st.ticket += 1;
        (out, st.ticket)
    }

    /// Returns once the change with `ticket` is on disk (or failed to get there). The first
    /// caller to get the commit lock commits every change made so far in one transaction, then
    /// announces them (wake-ups, finished runs); callers whose change it covered return at
    /// once. On failure the core is rebuilt from the store and every change not on disk is
    /// reported as failed.
    async fn durable(&self, ticket: u64) -> Result<(), TaskError> {
        let mut c = self.commits.lock().await;
        if c.through < ticket {
            let (changes, through) = {
                let mut st = self.core.lock().await;
                (st.core.take_changes(), st.ticket)
            };
            let result = if changes.is_empty() {
                Ok(())
            } else {
                let store = self.store.clone();
                let (upsert, remove) = (changes.upsert.clone(), changes.remove.clone());
                tokio::task::spawn_blocking(move || store.apply_task_changes(&upsert, &remove))
                    .await
                    .expect("store task does not panic")
            };
            match result {
                Ok(()) => {
                    c.through = through;
                    self.announce(changes);
                }
                Err(e) => {
                    // Rebuild under the core mutex: changes made meanwhile are dropped too,
                    // so their tickets fail as well.
                    let mut st = self.core.lock().await;
                    let store = self.store.clone();
                    let now = self.clock.now();
                    match tokio::task::spawn_blocking(move || load_core(&store, now))
                        .await
                        .expect("store task does not panic")
                    {
                        Ok(fresh) => st.core = fresh,
                        Err(e2) => tracing::error!(error = %e2, "could not reload the task queue"),
                    }
                    let message = e.to_string();
                    let after = c.through;
                    c.through = st.ticket;
                    c.failed.push((after, st.ticket, message));
                    if c.failed.len() > 16 {
                        c.failed.remove(0);
                    }
                    drop(st);
                    self.timer.notify_one();
                    return Err(TaskError::Store(e));
                }
            }
        }
        match c
            .failed
            .iter()
            .find(|(after, through, _)| *after < ticket && ticket <= *through)
        {
            Some((_, _, message)) => Err(TaskError::NotSaved(message.clone())),
            None => Ok(()),
        }
    }

    fn announce(&self, changes: queue::Changes) {
        if !changes.finished.is_empty() {
            self.run_finished.notify_waiters();
        }
        for f in changes.finished {
            let _ = self.finished.send(f);
        }
        for h in changes.wake {
            self.waiter(&h).notify_waiters();
        }
        self.timer.notify_one();
    }

    fn waiter(&self, handler: &str) -> Arc<Notify> {
        self.waiters
            .lock()
            .unwrap()
            .entry(handler.to_string())
            .or_default()
            .clone()
    }

    fn touch(&self, handler: &str, now: Timestamp) {
        if let Some(e) = self.handlers.write().unwrap().get_mut(handler) {
            e.last_seen = Some(now);
        }
    }

    /// Adds the tasks of fires that were just committed, and wakes their handlers.
    pub async fn enqueue(&self, tasks: Vec<Task>) {
        if tasks.is_empty() {
            return;
        }
        let ((), ticket) = self
            .change(|core, now| {
                for t in tasks {
                    core.enqueue(t, now);
                }
            })
            .await;
        // Nothing of its own to write (the rows went in with the fires): this wakes the
        // handlers once whatever else is pending is on disk.
        if let Err(e) = self.durable(ticket).await {
            tracing::error!(error = %e, "could not announce new tasks");
        }
    }

    /// Requests cancellation of a deleted job's tasks (heartbeats report it).
    pub async fn cancel_job(&self, job: JobId) -> Result<(), TaskError> {
        let ((), ticket) = self.change(|core, _| core.cancel_job(job)).await;
        self.durable(ticket).await
    }

    /// Registers (or replaces) `handler`'s methods; audited.
    pub async fn register(
        &self,
        handler: &str,
        methods: Vec<String>,
        actor: &Actor,
    ) -> Result<HandlerRecord, StoreError> {
        let now = self.clock.now();
        let rec = HandlerRecord {
            name: handler.to_string(),
            methods,
            registered_at: now,
        };
        let audit = AuditEntry {
            seq: 0,
            at_ms: now.as_millisecond().max(0) as u64,
            actor: actor.clone(),
            action: AuditAction::HandlerRegister,
            target: Some(handler.to_string()),
            summary: json!({"methods": rec.methods}),
        };
        let store = self.store.clone();
        let r = rec.clone();
        tokio::task::spawn_blocking(move || store.put_handler(&r, audit))
            .await
            .expect("store task does not panic")?;
        self.handlers.write().unwrap().insert(
            handler.to_string(),
            HandlerEntry {
                record: rec.clone(),
                last_seen: Some(now),
            },
        );
        Ok(rec)
    }

    /// A handler action must name a registered handler and one of its methods.
    pub fn check_action(&self, spec: &JobSpec) -> Result<(), SpecError> {
        let Some(call) = spec.action.handler() else {
            return Ok(());
        };
        let handlers = self.handlers.read().unwrap();
        let Some(h) = handlers.get(&call.id) else {
            return Err(SpecError {
                field: "action.handler.id".into(),
                message: format!(
                    "no handler named {} has registered; that peer (role handler) must call PUT /api/v1/handler first",
                    call.id
                ),
            });
        };
        if !h.record.methods.contains(&call.method) {
            return Err(SpecError {
                field: "action.handler.method".into(),
                message: format!(
                    "handler {} has not registered the method {}; it offers: {}",
                    call.id,
                    call.method,
                    if h.record.methods.is_empty() {
                        "nothing".to_string()
                    } else {
                        h.record.methods.join(", ")
                    }
                ),
            });
        }
        Ok(())
    }

    /// Every registered handler, by name, with its queue counts.
    pub async fn list(&self) -> Vec<HandlerView> {
        let counts = self.core.lock().await.core.counts();
        let now = self.clock.now();
        let online_since = now
            .checked_sub(jiff::SignedDuration::try_from(ONLINE_WITHIN).expect("small"))
            .unwrap_or(Timestamp::MIN);
        let handlers = self.handlers.read().unwrap();
        let mut out: Vec<HandlerView> = handlers
            .values()
            .map(|h| HandlerView {
                name: h.record.name.clone(),
                methods: h.record.methods.clone(),
                registered_at: h.record.registered_at,
                last_seen: h.last_seen,
                counts: counts.get(&h.record.name).copied().unwrap_or_default(),
                online: h.last_seen.is_some_and(|t| t >= online_since),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Queued and leased tasks over all handlers (for the statistics).
    pub async fn totals(&self) -> Counts {
        let counts = self.core.lock().await.core.counts();
        counts.values().fold(Counts::default(), |a, c| Counts {
            queued: a.queued + c.queued,
            leased: a.leased + c.leased,
        })
    }

    /// Leases up to `max` of `handler`'s tasks for `lease`, waiting up to `wait` (real time)
    /// for one to become available. The leases are on disk before this returns.
    #[allow(clippy::disallowed_methods)] // driver: a long poll sleeps
    pub async fn lease(
        &self,
        handler: &str,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Lease>, TaskError> {
        let mut waited = pin!(tokio::time::sleep(wait));
        let notify = self.waiter(handler);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let (leases, ticket) = self
                    .change(|core, now| {
                        self.touch(handler, now);
                        let leases = core.lease(handler, max, lease, now, &mut new_delivery_id);
                        (leases, now)
                    })
                    .await;
                let (leases, now) = leases;
                if !leases.is_empty() {
                    self.durable(ticket).await?;
                    let mut stats = self.stats.lock().unwrap();
                    // Lateness of a handler run: from its scheduled time to its first
                    // delivery, which includes the time it waited for its handler.
                    for l in leases.iter().filter(|l| l.first && !l.manual) {
                        let ms = l.scheduled_at.duration_until(now).as_millis().max(0);
                        stats.lateness(ms as u64);
                    }
                    return Ok(leases);
                }
            }
            tokio::select! {
                biased;
                _ = &mut notified => {}
                _ = &mut waited => return Ok(Vec::new()),
            }
        }
    }

    /// Waits up to `wait` for the handler run `run_id` to finish (acked, or failed for good)
    /// and returns its task (result or error, attempts) once that finish is on disk; `None`
    /// when it did not finish in time or is unknown (not a handler run, or finished more than
    /// a day ago). For callers
    /// that run a job now and want the handler's answer (the ScheduleZero `run_now` shape).
    /// `wait` is real time.
    #[allow(clippy::disallowed_methods)] // driver: waiting sleeps
    pub async fn wait_finished(&self, run_id: u64, wait: Duration) -> Option<Task> {
        let mut waited = pin!(tokio::time::sleep(wait));
        loop {
            let notified = self.run_finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (finished, ticket) = {
                let st = self.core.lock().await;
                match st.core.task(run_id) {
                    Some(t) if t.is_finished() => (Some(t.clone()), st.ticket),
                    Some(_) => (None, st.ticket),
                    None => return None,
                }
            };
            // The core changes before the store does (see `Queue::durable`): answer only once
            // the finish is on disk. If that commit failed, the core was reloaded from the
            // store; look again.
            if let Some(t) = finished {
                if self.durable(ticket).await.is_ok() {
                    return Some(t);
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = &mut notified => {}
                _ = &mut waited => return None,
            }
        }
    }

    /// A change by `handler` to a delivery it holds: marks the handler seen, runs `f` on the
    /// core and returns its answer once the change is on disk.
    async fn by_holder<T>(
        &self,
        handler: &str,
        f: impl FnOnce(&mut queue::Core, Timestamp) -> Result<T, LeaseError>,
    ) -> Result<T, TaskError> {
        let (r, ticket) = self
            .change(|core, now| {
                self.touch(handler, now);
                f(core, now)
            })
            .await;
        let r = r?;
        self.durable(ticket).await?;
        Ok(r)
    }

    /// Extends a lease; returns the new expiry and whether cancellation was requested.
    pub async fn heartbeat(
        &self,
        delivery: DeliveryId,
        handler: &str,
        lease: Duration,
    ) -> Result<(Timestamp, bool), TaskError> {
        self.by_holder(handler, |core, now| {
            core.heartbeat(delivery, handler, lease, now)
        })
        .await
    }

    /// Finishes a held task as succeeded (idempotent for the same delivery).
    pub async fn ack(
        &self,
        delivery: DeliveryId,
        handler: &str,
        result: Value,
    ) -> Result<AckOutcome, TaskError> {
        self.by_holder(handler, |core, now| {
            core.ack(delivery, handler, result, now)
        })
        .await
    }

    /// Records a failed attempt (retried per the job's policy when `retry`).
    pub async fn fail(
        &self,
        delivery: DeliveryId,
        handler: &str,
        error: &str,
        retry: bool,
    ) -> Result<FailOutcome, TaskError> {
        self.by_holder(handler, |core, now| {
            core.fail(delivery, handler, error, retry, now)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RunFilter, RunRecord, RunStatus};

    fn temp_store(tag: &str) -> (Arc<Store>, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("appliance-tasks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (
            Arc::new(Store::create(&dir.join("db.redb"), None).unwrap()),
            dir,
        )
    }

    /// The stored runs, newest first.
    fn stored_runs(store: &Store) -> Vec<RunRecord> {
        store
            .runs_page(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .unwrap()
    }

    /// A time far from the wall clock's, so a `now` read from the wall clock shows.
    fn t0() -> Timestamp {
        "2031-03-04T05:06:07Z".parse().unwrap()
    }

    /// One queued handler run fired at `now`, recorded as the scheduler records it (run +
    /// task together).
    fn queue_one(store: &Store, job: u64, now: Timestamp) -> u64 {
        let mut runs = vec![RunRecord {
            id: 0,
            job_id: JobId::from_u64(job),
            job_name: "call".into(),
            scheduled_at: now,
            started_at: None,
            finished_at: None,
            attempt: 0,
            status: RunStatus::Queued,
            trigger: "manual".into(),
            http_status: None,
            error: None,
            duration_ms: None,
            count: None,
            handler: Some("bot".into()),
            result: None,
            queue_delay_ms: None,
        }];
        let task = Task::new(
            JobId::from_u64(job),
            "bot",
            "send_message",
            &serde_json::Map::new(),
            now,
            crate::sched::Retry::default(),
            Duration::from_secs(30),
            now,
        );
        store
            .start_runs_with_tasks(&mut runs, &[], &mut [(0, task)])
            .unwrap();
        runs[0].id
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ack_is_on_disk_before_it_returns_and_wakes_a_run_now_waiter() {
        let (store, dir) = temp_store("ack");
        let run = queue_one(&store, 7, t0());
        let stats = Arc::new(Mutex::new(RunStats::default()));
        let clock = Clock::Virtual(Arc::new(Mutex::new(t0())));
        let (tasks, mut done, held) = Queue::load_on(store.clone(), stats, clock).unwrap();
        assert_eq!(
            held.get(&JobId::from_u64(7)),
            Some(&1),
            "the queued task holds a slot"
        );

        let waiter = {
            let tasks = tasks.clone();
            tokio::spawn(async move { tasks.wait_finished(run, Duration::from_secs(10)).await })
        };
        let leases = tasks
            .lease("bot", 10, Duration::from_secs(30), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(leases.len(), 1);
        let runs = stored_runs(&store);
        assert_eq!(runs[0].status, RunStatus::Leased, "the lease is on disk");
        assert_eq!(runs[0].attempt, 1);

        let outcome = tasks
            .ack(leases[0].id, "bot", serde_json::json!({"message_id": "42"}))
            .await
            .unwrap();
        assert_eq!(outcome, AckOutcome::Acked);
        let runs = stored_runs(&store);
        assert_eq!(runs[0].status, RunStatus::Succeeded, "the ack is on disk");
        assert_eq!(
            runs[0].result,
            Some(serde_json::json!({"message_id": "42"}))
        );
        assert!(runs[0].queue_delay_ms.is_some());

        let finished = waiter
            .await
            .unwrap()
            .expect("the waiter saw the run finish");
        assert_eq!(
            finished.result,
            Some(serde_json::json!({"message_id": "42"}))
        );
        let f = done.recv().await.unwrap();
        assert_eq!(
            (f.run_id, f.succeeded),
            (run, true),
            "the scheduler hears of it"
        );
        // Unknown runs and runs that do not finish in time give None.
        assert!(tasks
            .wait_finished(run + 100, Duration::from_millis(10))
            .await
            .is_none());
        drop(tasks);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::disallowed_methods)] // measures that a long poll was woken in real time
    async fn a_waiting_lease_returns_as_soon_as_a_task_is_enqueued() {
        let (store, dir) = temp_store("wake");
        let stats = Arc::new(Mutex::new(RunStats::default()));
        let clock = Clock::Virtual(Arc::new(Mutex::new(t0())));
        let (tasks, _done, _) = Queue::load_on(store.clone(), stats, clock).unwrap();
        let poll = {
            let tasks = tasks.clone();
            tokio::spawn(async move {
                let t0 = std::time::Instant::now();
                let l = tasks
                    .lease("bot", 1, Duration::from_secs(30), Duration::from_secs(20))
                    .await
                    .unwrap();
                (l, t0.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let run = queue_one(&store, 9, t0());
        let row = store
            .tasks()
            .unwrap()
            .into_iter()
            .find(|t| t.run_id == run)
            .unwrap();
        tasks.enqueue(vec![row]).await;
        let (leases, waited) = poll.await.unwrap();
        assert_eq!(leases.len(), 1);
        assert!(
            waited < Duration::from_secs(5),
            "woken, not timed out: {waited:?}"
        );
        drop(tasks);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Lease expiry runs on the queue's clock: on a virtual clock five years from the wall
    /// clock, a 10 s lease expires at t0 + 10 s of that clock, and the timer fails the run
    /// when (and because) the virtual clock passes it. Fails if any `now` is read from the wall
    /// clock: the lease would expire in the wall clock's year, or the task (fired at t0) would
    /// not be available yet.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_expires_on_the_queues_clock_not_the_wall_clock() {
        let (store, dir) = temp_store("virtual");
        let run = queue_one(&store, 11, t0());
        let now = Arc::new(Mutex::new(t0()));
        let stats = Arc::new(Mutex::new(RunStats::default()));
        let (tasks, _done, _) =
            Queue::load_on(store.clone(), stats, Clock::Virtual(now.clone())).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let timer = tasks.spawn_timer(stop);

        let leases = tasks
            .lease("bot", 1, Duration::from_secs(10), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(leases.len(), 1, "the task fired at t0 is available at t0");
        let expiry = t0() + Duration::from_secs(10);
        assert_eq!(leases[0].lease_expires_at, expiry);

        // 11 virtual seconds on (no real time passes): the timer, woken, expires the lease.
        *now.lock().unwrap() = t0() + Duration::from_secs(11);
        tasks.timer.notify_one();
        let task = tasks
            .wait_finished(run, Duration::from_secs(10))
            .await
            .expect("the lease expired on the virtual clock");
        assert!(
            task.error
                .as_deref()
                .unwrap_or("")
                .starts_with("lease expired"),
            "{:?}",
            task.error
        );
        assert_eq!(task.finished_at, Some(t0() + Duration::from_secs(11)));
        let runs = stored_runs(&store);
        assert_eq!(runs[0].status, RunStatus::Failed, "the expiry is on disk");
        assert_eq!(runs[0].finished_at, Some(t0() + Duration::from_secs(11)));

        stop_tx.send(true).unwrap();
        timer.await.unwrap();
        drop(tasks);
        let _ = std::fs::remove_dir_all(dir);
    }
}
