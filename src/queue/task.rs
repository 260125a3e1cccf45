//! One handler task as queued and stored: the [`Task`] record (the `tasks` table row), where it
//! is ([`TaskState`]), and the deliveries issued for it ([`DeliveryId`], [`Delivery`],
//! [`Closed`]).
//!
//! Layer: pure data of the sans-IO [`super::Core`], which is the only writer of a task's state;
//! no I/O, no clocks.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::sched::{JobId, Retry};

/// Names one delivery (one lease) of a task: 128 random bits, written as 32 lowercase hex
/// digits. Like an SQS receipt handle, a new one is issued for every lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(u128);

impl DeliveryId {
    /// Wraps 128 random bits (the driver draws them from the OS).
    pub const fn from_u128(v: u128) -> DeliveryId {
        DeliveryId(v)
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Why a string is not a [`DeliveryId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a task id is the 32 lowercase hex digits a lease returned as \"id\"")]
pub struct DeliveryIdError;

impl FromStr for DeliveryId {
    type Err = DeliveryIdError;
    fn from_str(s: &str) -> Result<DeliveryId, DeliveryIdError> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DeliveryIdError);
        }
        u128::from_str_radix(s, 16)
            .map(DeliveryId)
            .map_err(|_| DeliveryIdError)
    }
}

impl Serialize for DeliveryId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeliveryId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DeliveryId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closed {
    /// The handler acked it.
    Acked,
    /// The handler failed it.
    Failed,
    /// The lease ran out without ack or heartbeat.
    Expired,
    /// The attempt reached the job's start-to-close timeout.
    TimedOut,
}

/// One lease of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The delivery id handed out.
    pub id: DeliveryId,
    /// `None` while current.
    pub closed: Option<Closed>,
}

/// Where a task is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its handler from `available_at` on.
    Queued {
        /// From when it may be leased.
        available_at: Timestamp,
    },
    /// Held by its handler until `expires_at`; the attempt must end by `deadline`.
    Leased {
        /// The current delivery.
        delivery: DeliveryId,
        /// When it was leased.
        leased_at: Timestamp,
        /// When the lease runs out unless extended.
        expires_at: Timestamp,
        /// When the attempt must end (its start-to-close timeout).
        deadline: Timestamp,
    },
    /// Acked.
    Succeeded,
    /// Failed for good.
    Failed,
}

/// One handler call of one run, as queued and stored (`tasks` table, keyed by run id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// The run this task executes; stable across attempts (what handlers deduplicate on).
    pub run_id: u64,
    /// The job that fired.
    #[serde(with = "crate::sched::spec::job_id_hex")]
    pub job_id: JobId,
    /// The handler (peer name) it is addressed to.
    pub handler: String,
    /// The handler method to call.
    pub method: String,
    /// Its parameters.
    pub params: Map<String, Value>,
    /// When the fire was scheduled.
    pub scheduled_at: Timestamp,
    /// A "run now" fire (its queue delay is not lateness).
    #[serde(default)]
    pub manual: bool,
    /// Leases made so far (the attempt number of the current or last delivery).
    pub attempt: u32,
    /// The job's `retry.attempts`.
    pub max_attempts: u32,
    /// The job's `retry.backoff`, in milliseconds.
    pub backoff_ms: u64,
    /// The job's `timeout` (start-to-close of one attempt), in milliseconds.
    pub timeout_ms: u64,
    /// Queued, leased or finished.
    pub state: TaskState,
    /// The first lease: queue delay is `first_leased_at - scheduled_at`.
    pub first_leased_at: Option<Timestamp>,
    /// Set when the job was deleted; heartbeats report it.
    pub cancel_requested: bool,
    /// Every delivery issued, oldest first (at most `max_attempts`).
    pub deliveries: Vec<Delivery>,
    /// The last failure (handler error, lease expired, timed out).
    pub error: Option<String>,
    /// The handler's result (acked tasks).
    pub result: Option<Value>,
    /// When the run finished.
    pub finished_at: Option<Timestamp>,
}

impl Task {
    /// A new task for a fire recorded at `now`: queued, available at once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        job_id: JobId,
        handler: &str,
        method: &str,
        params: &Map<String, Value>,
        scheduled_at: Timestamp,
        retry: Retry,
        timeout: Duration,
        now: Timestamp,
    ) -> Task {
        Task {
            run_id: 0,
            job_id,
            handler: handler.to_string(),
            method: method.to_string(),
            params: params.clone(),
            scheduled_at,
            manual: false,
            attempt: 0,
            max_attempts: retry.attempts.max(1),
            backoff_ms: retry.backoff.as_millis() as u64,
            timeout_ms: timeout.as_millis() as u64,
            state: TaskState::Queued { available_at: now },
            first_leased_at: None,
            cancel_requested: false,
            deliveries: Vec::new(),
            error: None,
            result: None,
            finished_at: None,
        }
    }

    /// Whether the task has finished (acked, or failed for good).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, TaskState::Succeeded | TaskState::Failed)
    }

    pub(super) fn retry(&self) -> Retry {
        Retry {
            attempts: self.max_attempts,
            backoff: Duration::from_millis(self.backoff_ms),
        }
    }

    pub(super) fn closed_as(&self, id: DeliveryId) -> Option<Option<Closed>> {
        self.deliveries
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.closed)
    }

    pub(super) fn close_current(&mut self, how: Closed) {
        if let Some(d) = self.deliveries.last_mut() {
            if d.closed.is_none() {
                d.closed = Some(how);
            }
        }
    }
}
