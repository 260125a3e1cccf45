//! The handler task queue's driver and the handler operations the API calls.
//!
//! Layer: driver. Owns the sans-IO [`queue::Core`] behind one async mutex, the handler
//! registry (in memory, backed by the `handlers` table) and the long-poll waiters. Every state
//! change is committed to the store (task rows and their run rows, one transaction) *while the
//! mutex is held and before the caller is answered*: a 200 to `lease`, `heartbeat`, `ack` or
//! `fail` means the change is on disk. If a commit fails, the core is rebuilt from the store
//! and the caller gets the error. One timer task sleeps until [`queue::Core::poll_timeout`]
//! to expire leases and release tasks whose retry backoff ended.
//!
//! Long polls: a lease call that finds nothing registers on its handler's [`Notify`] *before*
//! it lets go of the core, then waits; whoever makes a task available for that handler (the
//! scheduler enqueueing a fire, a requeue, the timer) wakes every waiter of that handler after
//! its commit, so a task that becomes due while a lease call waits is returned at once.
//!
//! The scheduler ([`crate::jobs`]) records each handler fire with its task in one
//! transaction, then calls [`Tasks::enqueue`]; finished runs go back to it on a channel
//! ([`queue::Finished`]) so `max_instances` counts queued and leased tasks until they finish.
#![allow(clippy::disallowed_methods)] // driver: reads the clock and sleeps

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};

use crate::jobs::JobStats;
use crate::queue::{self, AckOutcome, Counts, DeliveryId, FailOutcome, Lease, LeaseError, Task};
use crate::sched::{JobId, JobSpec, SpecError};
use crate::store::{Actor, AuditEntry, HandlerRecord, Store, StoreError};

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
}

/// A handler as `GET /api/v1/handlers` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerView {
    pub name: String,
    pub methods: Vec<String>,
    pub registered_at: Timestamp,
    /// Last lease call or heartbeat since this process started.
    pub last_seen: Option<Timestamp>,
    pub counts: Counts,
    pub online: bool,
}

impl HandlerView {
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
pub struct Tasks {
    store: Arc<Store>,
    core: tokio::sync::Mutex<queue::Core>,
    handlers: RwLock<HashMap<String, HandlerEntry>>,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    /// Wakes the timer task: the earliest deadline may have moved.
    timer: Notify,
    finished: mpsc::UnboundedSender<queue::Finished>,
    stats: Arc<Mutex<JobStats>>,
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

impl Tasks {
    /// Loads stored tasks and handlers. Returns the handle, the receiver of finished runs
    /// (for the scheduler) and the instances still held per job (to restore into the
    /// scheduler's `max_instances` counts).
    #[allow(clippy::type_complexity)]
    pub fn load(
        store: Arc<Store>,
        stats: Arc<Mutex<JobStats>>,
    ) -> Result<
        (
            Arc<Tasks>,
            mpsc::UnboundedReceiver<queue::Finished>,
            HashMap<JobId, u32>,
        ),
        StoreError,
    > {
        let core = load_core(&store, Timestamp::now())?;
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
        let tasks = Arc::new(Tasks {
            store,
            core: tokio::sync::Mutex::new(core),
            handlers: RwLock::new(handlers),
            waiters: Mutex::new(HashMap::new()),
            timer: Notify::new(),
            finished: tx,
            stats,
        });
        Ok((tasks, rx, held))
    }

    /// Starts the timer task (lease expiry, retry backoff, forgetting finished tasks).
    pub fn spawn_timer(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let next = me.core.lock().await.poll_timeout();
                let sleep = next
                    .map(|due| {
                        Timestamp::now()
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
                let mut core = me.core.lock().await;
                core.handle_timeout(Timestamp::now());
                if let Err(e) = me.commit(&mut core).await {
                    tracing::error!(error = %e, "could not record expired leases; retrying in 1 s");
                    drop(core);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }

    /// Commits what the core changed, then announces it (wake-ups, finished runs). On failure
    /// the core is rebuilt from the store and nothing is announced.
    async fn commit(&self, core: &mut queue::Core) -> Result<(), StoreError> {
        let changes = core.take_changes();
        if !changes.is_empty() {
            let store = self.store.clone();
            let (upsert, remove) = (changes.upsert, changes.remove);
            let r = tokio::task::spawn_blocking(move || store.apply_task_changes(&upsert, &remove))
                .await
                .expect("store task does not panic");
            if let Err(e) = r {
                let store = self.store.clone();
                match tokio::task::spawn_blocking(move || load_core(&store, Timestamp::now()))
                    .await
                    .expect("store task does not panic")
                {
                    Ok(fresh) => *core = fresh,
                    Err(e2) => tracing::error!(error = %e2, "could not reload the task queue"),
                }
                return Err(e);
            }
        }
        for f in changes.finished {
            let _ = self.finished.send(f);
        }
        for h in changes.wake {
            self.waiter(&h).notify_waiters();
        }
        self.timer.notify_one();
        Ok(())
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
        let mut core = self.core.lock().await;
        let now = Timestamp::now();
        for t in tasks {
            core.enqueue(t, now);
        }
        // Nothing to write (the rows went in with the fires): this only wakes.
        if let Err(e) = self.commit(&mut core).await {
            tracing::error!(error = %e, "could not announce new tasks");
        }
    }

    /// Requests cancellation of a deleted job's tasks (heartbeats report it).
    pub async fn cancel_job(&self, job: JobId) -> Result<(), StoreError> {
        let mut core = self.core.lock().await;
        core.cancel_job(job);
        self.commit(&mut core).await
    }

    /// Registers (or replaces) `handler`'s methods; audited.
    pub async fn register(
        &self,
        handler: &str,
        methods: Vec<String>,
        actor: &Actor,
    ) -> Result<HandlerRecord, StoreError> {
        let now = Timestamp::now();
        let rec = HandlerRecord {
            name: handler.to_string(),
            methods,
            registered_at: now,
        };
        let audit = AuditEntry {
            seq: 0,
            at_ms: now.as_millisecond().max(0) as u64,
            actor: actor.clone(),
            action: "handler.register".into(),
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
        let counts = self.core.lock().await.counts();
        let now = Timestamp::now();
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

    /// Leases up to `max` of `handler`'s tasks for `lease`, waiting up to `wait` for one to
    /// become available. The leases are on disk before this returns.
    pub async fn lease(
        &self,
        handler: &str,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Lease>, TaskError> {
        let deadline = Instant::now() + wait;
        let notify = self.waiter(handler);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut core = self.core.lock().await;
                let now = Timestamp::now();
                self.touch(handler, now);
                let leases = core.lease(handler, max, lease, now, &mut new_delivery_id);
                if !leases.is_empty() {
                    self.commit(&mut core).await?;
                    drop(core);
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
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(left) => {}
            }
        }
    }

    /// Extends a lease; returns the new expiry and whether cancellation was requested.
    pub async fn heartbeat(
        &self,
        delivery: DeliveryId,
        handler: &str,
        lease: Duration,
    ) -> Result<(Timestamp, bool), TaskError> {
        let mut core = self.core.lock().await;
        let now = Timestamp::now();
        self.touch(handler, now);
        let r = core.heartbeat(delivery, handler, lease, now)?;
        self.commit(&mut core).await?;
        Ok(r)
    }

    /// Finishes a held task as succeeded (idempotent for the same delivery).
    pub async fn ack(
        &self,
        delivery: DeliveryId,
        handler: &str,
        result: Value,
    ) -> Result<AckOutcome, TaskError> {
        let mut core = self.core.lock().await;
        let now = Timestamp::now();
        self.touch(handler, now);
        let r = core.ack(delivery, handler, result, now)?;
        self.commit(&mut core).await?;
        Ok(r)
    }

    /// Records a failed attempt (retried per the job's policy when `retry`).
    pub async fn fail(
        &self,
        delivery: DeliveryId,
        handler: &str,
        error: &str,
        retry: bool,
    ) -> Result<FailOutcome, TaskError> {
        let mut core = self.core.lock().await;
        let now = Timestamp::now();
        self.touch(handler, now);
        let r = core.fail(delivery, handler, error, retry, now)?;
        self.commit(&mut core).await?;
        Ok(r)
    }
}
