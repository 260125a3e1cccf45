//! The handler task queue: at-least-once delivery of handler calls, under a clock it is handed.
//!
//! Layer: sans-IO core (quinn-proto style), beside [`crate::sched`]; no I/O, no clocks, no OS
//! randomness (delivery ids come from a generator the driver passes in). Owns every handler
//! task not yet forgotten: the per-handler FIFO of queued tasks, the leases with their expiry,
//! the delivery ids issued, and recently finished tasks (kept [`RETAIN_FINISHED`] so a repeated
//! `ack`/`fail` stays idempotent). Touches nothing but its own state.
//!
//! The pull design of Faktory (FETCH/ACK/FAIL/BEAT with `reserve_for`), SQS (visibility
//! timeout, receipt handles) and Temporal (heartbeats, start-to-close): a handler *leases*
//! tasks, gets a fresh [`DeliveryId`] per lease, extends it with heartbeats and finishes it with
//! `ack` or `fail`. A lease that runs out goes back to the queue with `attempt + 1` (after the
//! job's retry backoff) until the job's `retry.attempts` are used up; then the run fails with
//! `lease expired`. The run id stays the same across attempts: it is what a handler
//! deduplicates on.
//!
//! Contract, for a driver that owns the clock, the store and the HTTP side:
//!
//! 1. At start, [`Core::load`] every stored task. New tasks arrive with [`Core::enqueue`] after
//!    the fire that made them was committed (they are already on disk).
//! 2. Every other call (`lease`, `heartbeat`, `ack`, `fail`, `cancel_job`, `handle_timeout`)
//!    may change state. After each, take [`Core::take_changes`] and commit
//!    [`Changes::upsert`]/[`Changes::remove`] in one transaction *before* answering the
//!    caller; then tell the scheduler about [`Changes::finished`] and wake the lease calls
//!    waiting for the handlers in [`Changes::wake`]. If the commit fails, rebuild the core from
//!    the store (what the store holds is the truth).
//! 3. Sleep until [`Core::poll_timeout`] (or new input), then call [`Core::handle_timeout`].
//!
//! # Semantics
//!
//! - **Order.** Each handler has its own queue, ordered by the time a task became available
//!   (its fire, or the end of its retry backoff), then run id.
//! - **Lease.** `lease_s` sets the lease; the job's `timeout` is the start-to-close limit of one
//!   attempt: no heartbeat extends a lease past `leased_at + timeout`. An attempt that reaches
//!   it ends as `timed out` (retried like any failure).
//! - **Attempts.** Every lease is one attempt. `fail` with `retry: true`, an expired lease and a
//!   timeout requeue the task while attempts are left (after `retry.delay_before(attempt + 1)`);
//!   otherwise the run finishes failed. `fail` with `retry: false` finishes it at once.
//! - **Idempotency.** Repeating the `ack` (or `fail`) that closed a delivery succeeds again and
//!   changes nothing. Any other use of a delivery that is no longer current (expired, replaced
//!   by a newer lease, closed the other way) or that belongs to another handler is
//!   [`LeaseError::NotHeld`], even when the same handler holds the newer lease.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use crate::sched::JobId;

mod task;
#[cfg(test)]
mod tests;

pub use task::{Closed, Delivery, DeliveryId, DeliveryIdError, Task, TaskState};

/// How long a finished task is remembered (so a repeated ack or fail is recognised).
pub const RETAIN_FINISHED: Duration = Duration::from_secs(24 * 3600);
/// Shortest lease a handler may ask for.
pub const MIN_LEASE: Duration = Duration::from_secs(5);
/// Longest lease a handler may ask for.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);
/// Most tasks one lease call returns.
pub const MAX_PER_LEASE: usize = 100;

/// A task handed to a handler by [`Core::lease`].
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// This delivery; `heartbeat`, `ack` and `fail` take it.
    pub id: DeliveryId,
    /// The job that fired.
    pub job_id: JobId,
    /// The run (what handlers deduplicate on).
    pub run_id: u64,
    /// The method to call.
    pub method: String,
    /// Its parameters.
    pub params: Map<String, Value>,
    /// 1 for the first delivery, 2 after one redelivery, …
    pub attempt: u32,
    /// When the lease runs out unless extended.
    pub lease_expires_at: Timestamp,
    /// When the run was scheduled.
    pub scheduled_at: Timestamp,
    /// Whether this is the task's first lease (its queue delay counts towards lateness).
    pub first: bool,
    /// Whether the run was started with "run now".
    pub manual: bool,
}

/// Why `heartbeat`, `ack` or `fail` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No task was ever delivered under this id (or it finished more than a day ago).
    #[error("no task was delivered with id {0}; use the id a lease returned")]
    Unknown(DeliveryId),
    /// The caller does not hold this lease: it expired, a newer lease replaced it, the task
    /// was finished otherwise, or it belongs to another handler.
    #[error(
        "you no longer hold the lease {0} ({1}); drop this task, it will be or was delivered again"
    )]
    NotHeld(DeliveryId, &'static str),
}

/// What `ack` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The run succeeded now.
    Acked,
    /// This ack was already recorded; nothing changed.
    Repeated,
}

/// What `fail` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Queued again for another attempt, available at this time.
    Requeued(Timestamp),
    /// The run failed for good.
    Failed,
    /// This fail was already recorded; nothing changed.
    Repeated,
}

/// A run that finished, for the scheduler (`handle_finished`) and the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The job whose run finished.
    pub job_id: JobId,
    /// The run.
    pub run_id: u64,
    /// Whether it succeeded.
    pub succeeded: bool,
}

/// What the driver must commit and announce after a call; see the module docs.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Task rows to write (their run rows follow from them), in run id order.
    pub upsert: Vec<Task>,
    /// Task rows to delete (finished long ago).
    pub remove: Vec<u64>,
    /// Runs that finished.
    pub finished: Vec<Finished>,
    /// Handlers that have tasks available now: wake their waiting lease calls.
    pub wake: Vec<String>,
}

impl Changes {
    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// Per-handler counts, for `GET /api/v1/handlers`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tasks waiting for the handler.
    pub queued: usize,
    /// Tasks the handler holds.
    pub leased: usize,
}

/// The queue core; see the module docs for the contract.
#[derive(Debug, Default)]
pub struct Core {
    tasks: HashMap<u64, Task>,
    /// Queued tasks per handler: (available_at, run id).
    queued: HashMap<String, BTreeSet<(Timestamp, u64)>>,
    /// Queued tasks not yet available: (available_at, run id), to wake their handler then.
    pending: BTreeSet<(Timestamp, u64)>,
    /// Leased tasks: (expires_at, run id).
    leases: BTreeSet<(Timestamp, u64)>,
    /// Finished tasks: (finished_at, run id), forgotten after [`RETAIN_FINISHED`].
    done: BTreeSet<(Timestamp, u64)>,
    deliveries: HashMap<DeliveryId, u64>,
    dirty: BTreeSet<u64>,
    removed: Vec<u64>,
    finished: Vec<Finished>,
    wake: HashSet<String>,
}

impl Core {
    /// An empty queue.
    pub fn new() -> Core {
        Core::default()
    }

    /// Adds a stored task at start-up (nothing is reported for it: it is on disk). Leases
    /// that ran out while the appliance was down are handled by the next `handle_timeout`.
    pub fn load(&mut self, task: Task, now: Timestamp) {
        self.insert(task, now);
    }

    /// Adds a new task whose row was committed with its fire; wakes its handler when it is
    /// available.
    pub fn enqueue(&mut self, task: Task, now: Timestamp) {
        self.insert(task, now);
    }

    fn insert(&mut self, task: Task, now: Timestamp) {
        let id = task.run_id;
        for d in &task.deliveries {
            self.deliveries.insert(d.id, id);
        }
        match &task.state {
            TaskState::Queued { available_at } => {
                self.queued
                    .entry(task.handler.clone())
                    .or_default()
                    .insert((*available_at, id));
                if *available_at <= now {
                    self.wake.insert(task.handler.clone());
                } else {
                    self.pending.insert((*available_at, id));
                }
            }
            TaskState::Leased { expires_at, .. } => {
                self.leases.insert((*expires_at, id));
            }
            TaskState::Succeeded | TaskState::Failed => {
                self.done.insert((task.finished_at.unwrap_or(now), id));
            }
        }
        self.tasks.insert(id, task);
    }

    /// Leases up to `max` tasks available to `handler` at `now`, oldest first, for `lease`
    /// (clamped to [`MIN_LEASE`]..=[`MAX_LEASE`]) or until the job's timeout, whichever is
    /// sooner. `new_id` draws a fresh delivery id. Returns an empty list when nothing is
    /// available: the driver then waits for a wake-up or [`Core::poll_timeout`].
    pub fn lease(
        &mut self,
        handler: &str,
        max: usize,
        lease: Duration,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> DeliveryId,
    ) -> Vec<Lease> {
        let lease = lease.clamp(MIN_LEASE, MAX_LEASE);
        let Some(queue) = self.queued.get_mut(handler) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        while taken.len() < max.min(MAX_PER_LEASE) {
            match queue.first() {
                Some(&(at, id)) if at <= now => {
                    queue.pop_first();
                    taken.push(id);
                }
                _ => break,
            }
        }
        if queue.is_empty() {
            self.queued.remove(handler);
        }
        let mut out = Vec::with_capacity(taken.len());
        for id in taken {
            let mut delivery = new_id();
            while self.deliveries.contains_key(&delivery) {
                delivery = new_id();
            }
            let task = self.tasks.get_mut(&id).expect("queued tasks exist");
            let deadline = add(now, Duration::from_millis(task.timeout_ms));
            let expires_at = add(now, lease).min(deadline);
            task.attempt += 1;
            let first = task.first_leased_at.is_none();
            task.first_leased_at.get_or_insert(now);
            task.deliveries.push(Delivery {
                id: delivery,
                closed: None,
            });
            task.state = TaskState::Leased {
                delivery,
                leased_at: now,
                expires_at,
                deadline,
            };
            self.deliveries.insert(delivery, id);
            self.leases.insert((expires_at, id));
            self.dirty.insert(id);
            out.push(Lease {
                id: delivery,
                job_id: task.job_id,
                run_id: id,
                method: task.method.clone(),
                params: task.params.clone(),
                attempt: task.attempt,
                lease_expires_at: expires_at,
                scheduled_at: task.scheduled_at,
                first,
                manual: task.manual,
            });
        }
        out
    }

    /// For an ack or fail: the task `delivery` holds for `handler`, or `None` when the
    /// delivery was already closed as `how` by this handler (a repeat of the call that closed
    /// it, answered as such), or the lease error.
    fn held_or_repeat(
        &self,
        delivery: DeliveryId,
        handler: &str,
        how: Closed,
    ) -> Result<Option<u64>, LeaseError> {
        match self.held(delivery, handler) {
            Ok(id) => Ok(Some(id)),
            Err(e) => {
                let repeat = self.deliveries.get(&delivery).is_some_and(|id| {
                    let t = &self.tasks[id];
                    t.handler == handler && t.closed_as(delivery) == Some(Some(how))
                });
                if repeat {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The task `delivery` names, if `handler` holds it as its current lease.
    fn held(&self, delivery: DeliveryId, handler: &str) -> Result<u64, LeaseError> {
        let id = *self
            .deliveries
            .get(&delivery)
            .ok_or(LeaseError::Unknown(delivery))?;
        let task = &self.tasks[&id];
        if task.handler != handler {
            return Err(LeaseError::NotHeld(
                delivery,
                "it was delivered to another handler",
            ));
        }
        match (&task.state, task.closed_as(delivery)) {
            (TaskState::Leased { delivery: d, .. }, _) if *d == delivery => Ok(id),
            (_, Some(Some(Closed::Expired))) => {
                Err(LeaseError::NotHeld(delivery, "the lease expired"))
            }
            (_, Some(Some(Closed::TimedOut))) => Err(LeaseError::NotHeld(
                delivery,
                "the attempt reached the job's timeout",
            )),
            (_, Some(Some(Closed::Acked))) => {
                Err(LeaseError::NotHeld(delivery, "it was already acked"))
            }
            (_, Some(Some(Closed::Failed))) => {
                Err(LeaseError::NotHeld(delivery, "it was already failed"))
            }
            _ => Err(LeaseError::NotHeld(delivery, "a newer lease replaced it")),
        }
    }

    /// Extends a lease to `now + lease` (clamped, and never past the attempt's timeout).
    /// Returns the new expiry and whether cancellation was requested (the job was deleted).
    pub fn heartbeat(
        &mut self,
        delivery: DeliveryId,
        handler: &str,
        lease: Duration,
        now: Timestamp,
    ) -> Result<(Timestamp, bool), LeaseError> {
        let id = self.held(delivery, handler)?;
        let lease = lease.clamp(MIN_LEASE, MAX_LEASE);
        let task = self.tasks.get_mut(&id).expect("held tasks exist");
        let TaskState::Leased {
            expires_at,
            deadline,
            ..
        } = &mut task.state
        else {
            unreachable!("held tasks are leased");
        };
        let old = *expires_at;
        let new = add(now, lease).min(*deadline).max(old);
        *expires_at = new;
        let cancel = task.cancel_requested;
        if new != old {
            self.leases.remove(&(old, id));
            self.leases.insert((new, id));
            self.dirty.insert(id);
        }
        Ok((new, cancel))
    }

    /// Finishes the task as succeeded with `result`. Repeating the ack that closed it
    /// returns [`AckOutcome::Repeated`].
    pub fn ack(
        &mut self,
        delivery: DeliveryId,
        handler: &str,
        result: Value,
        now: Timestamp,
    ) -> Result<AckOutcome, LeaseError> {
        let Some(id) = self.held_or_repeat(delivery, handler, Closed::Acked)? else {
            return Ok(AckOutcome::Repeated);
        };
        self.unlease(id);
        let task = self.tasks.get_mut(&id).expect("held tasks exist");
        task.close_current(Closed::Acked);
        task.result = Some(result);
        task.error = None;
        self.finish(id, true, now);
        Ok(AckOutcome::Acked)
    }

    /// Records a failed attempt: requeued (after the retry backoff) when `retry` and attempts
    /// are left, else the run fails for good. Repeating the fail that closed the delivery
    /// returns [`FailOutcome::Repeated`].
    pub fn fail(
        &mut self,
        delivery: DeliveryId,
        handler: &str,
        error: &str,
        retry: bool,
        now: Timestamp,
    ) -> Result<FailOutcome, LeaseError> {
        let Some(id) = self.held_or_repeat(delivery, handler, Closed::Failed)? else {
            return Ok(FailOutcome::Repeated);
        };
        self.unlease(id);
        let task = self.tasks.get_mut(&id).expect("held tasks exist");
        task.close_current(Closed::Failed);
        task.error = Some(error.to_string());
        if retry && task.attempt < task.max_attempts {
            let at = self.requeue(id, now);
            Ok(FailOutcome::Requeued(at))
        } else {
            self.finish(id, false, now);
            Ok(FailOutcome::Failed)
        }
    }

    /// Requests cancellation of every unfinished task of `job` (it was deleted): queued tasks
    /// are still delivered, and heartbeats answer `cancel_requested: true`.
    pub fn cancel_job(&mut self, job: JobId) {
        for (id, t) in &mut self.tasks {
            if t.job_id == job && !t.is_finished() && !t.cancel_requested {
                t.cancel_requested = true;
                self.dirty.insert(*id);
            }
        }
    }

    /// Expires leases that ran out by `now` (requeue with `attempt + 1`, or fail the run with
    /// `lease expired` when attempts are used up), makes delayed tasks available (waking their
    /// handlers) and forgets tasks finished more than [`RETAIN_FINISHED`] ago.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(&(at, id)) = self.leases.first() {
            if at > now {
                break;
            }
            self.leases.pop_first();
            let task = self.tasks.get_mut(&id).expect("leased tasks exist");
            let TaskState::Leased {
                deadline,
                leased_at,
                ..
            } = task.state
            else {
                continue;
            };
            let (how, error) = if at >= deadline {
                (
                    Closed::TimedOut,
                    format!(
                        "timed out: handler {} did not finish attempt {} within the job's timeout of {}",
                        task.handler,
                        task.attempt,
                        crate::sched::format_duration(deadline.duration_since(leased_at).unsigned_abs())
                    ),
                )
            } else {
                (
                    Closed::Expired,
                    format!(
                        "lease expired: handler {} neither acked nor sent a heartbeat in time (attempt {} of {})",
                        task.handler, task.attempt, task.max_attempts
                    ),
                )
            };
            task.close_current(how);
            task.error = Some(error);
            if task.attempt < task.max_attempts {
                self.requeue(id, now);
            } else {
                self.finish(id, false, now);
            }
        }
        while let Some(&(at, id)) = self.pending.first() {
            if at > now {
                break;
            }
            self.pending.pop_first();
            if let Some(t) = self.tasks.get(&id) {
                self.wake.insert(t.handler.clone());
            }
        }
        let forget_before = sub(now, RETAIN_FINISHED);
        while let Some(&(at, id)) = self.done.first() {
            if at >= forget_before {
                break;
            }
            self.done.pop_first();
            if let Some(t) = self.tasks.remove(&id) {
                for d in &t.deliveries {
                    self.deliveries.remove(&d.id);
                }
            }
            self.dirty.remove(&id);
            self.removed.push(id);
        }
    }

    /// The earliest instant at which [`Core::handle_timeout`] has work: a lease expiry, a
    /// retry backoff ending, or a finished task to forget. Ask again after every call.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [
            self.leases.first().map(|x| x.0),
            self.pending.first().map(|x| x.0),
            self.done.first().map(|x| add(x.0, RETAIN_FINISHED)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Everything changed since the last call; see [`Changes`].
    pub fn take_changes(&mut self) -> Changes {
        let upsert = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.tasks.get(&id).cloned())
            .collect();
        let mut wake: Vec<String> = self.wake.drain().collect();
        wake.sort();
        Changes {
            upsert,
            remove: std::mem::take(&mut self.removed),
            finished: std::mem::take(&mut self.finished),
            wake,
        }
    }

    /// A task by run id (finished ones while remembered).
    pub fn task(&self, run_id: u64) -> Option<&Task> {
        self.tasks.get(&run_id)
    }

    /// Queued and leased tasks per handler (handlers with neither are absent).
    pub fn counts(&self) -> HashMap<String, Counts> {
        let mut out: HashMap<String, Counts> = HashMap::new();
        for t in self.tasks.values() {
            match t.state {
                TaskState::Queued { .. } => out.entry(t.handler.clone()).or_default().queued += 1,
                TaskState::Leased { .. } => out.entry(t.handler.clone()).or_default().leased += 1,
                _ => {}
            }
        }
        out
    }

    /// Unfinished (queued or leased) tasks per job: the instances they hold under
    /// `max_instances`, restored into the scheduler at start.
    pub fn unfinished_per_job(&self) -> HashMap<JobId, u32> {
        let mut out = HashMap::new();
        for t in self.tasks.values().filter(|t| !t.is_finished()) {
            *out.entry(t.job_id).or_insert(0) += 1;
        }
        out
    }

    // ---- internals ---------------------------------------------------------------------------

    fn unlease(&mut self, id: u64) {
        if let Some(TaskState::Leased { expires_at, .. }) = self.tasks.get(&id).map(|t| &t.state) {
            self.leases.remove(&(*expires_at, id));
        }
    }

    /// Back to the queue after the retry backoff; returns when it is available.
    fn requeue(&mut self, id: u64, now: Timestamp) -> Timestamp {
        let task = self.tasks.get_mut(&id).expect("task exists");
        let at = add(now, task.retry().delay_before(task.attempt + 1));
        task.state = TaskState::Queued { available_at: at };
        self.queued
            .entry(task.handler.clone())
            .or_default()
            .insert((at, id));
        if at <= now {
            self.wake.insert(task.handler.clone());
        } else {
            self.pending.insert((at, id));
        }
        self.dirty.insert(id);
        at
    }

    fn finish(&mut self, id: u64, succeeded: bool, now: Timestamp) {
        let task = self.tasks.get_mut(&id).expect("task exists");
        task.state = if succeeded {
            TaskState::Succeeded
        } else {
            TaskState::Failed
        };
        task.finished_at = Some(now);
        self.done.insert((now, id));
        self.dirty.insert(id);
        self.finished.push(Finished {
            job_id: task.job_id,
            run_id: id,
            succeeded,
        });
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}
