//! One error enum per job operation of [`Handle`](super::Handle): each holds only what that
//! operation can meet, so a caller's `match` lists exactly the answers it must give.
//!
//! Layer: driver glue (plain data). The leaves shared by several operations — [`JobNotFound`],
//! [`NameTaken`], [`ShuttingDown`] — are their own types, so each sentence is written once.
//! The HTTP mapping of each enum lives in one place (`api::jobs`, and ScheduleZero's own
//! terms in `api::schedulezero`).

use crate::sched::{JobId, SpecError};
use crate::store::StoreError;

/// No job has this id (it was never created, or was deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no job with id {0}")]
pub struct JobNotFound(pub JobId);

/// Another job already has this name (names are unique, ignoring case and surrounding spaces).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {id} is already called '{name}'; job names are unique (ignoring case): pick another or change that job")]
pub struct NameTaken {
    /// The name asked for.
    pub name: String,
    /// The job that has it.
    pub id: JobId,
}

/// The scheduler's driver has stopped (the appliance is shutting down); nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the scheduler is shutting down")]
pub struct ShuttingDown;

/// Why [`Handle::create`](super::Handle::create) failed; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The spec is invalid (or its webhook or handler is refused); names the field.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Another job has the name.
    #[error(transparent)]
    NameTaken(#[from] NameTaken),
    /// The store refused the job (a full disk, an unavailable database).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scheduler stopped.
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
}

/// Why [`Handle::patch`](super::Handle::patch) failed; the job is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No job has the id.
    #[error(transparent)]
    NotFound(#[from] JobNotFound),
    /// The patched spec is invalid; names the field.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The new name belongs to another job.
    #[error(transparent)]
    NameTaken(#[from] NameTaken),
    /// The store refused the change.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scheduler stopped.
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
}

/// Why [`Handle::delete`](super::Handle::delete) or
/// [`Handle::set_paused`](super::Handle::set_paused) (pause, resume) failed; the job is
/// unchanged. These take no spec, so only the job's absence, the store or a stop can refuse them.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No job has the id.
    #[error(transparent)]
    NotFound(#[from] JobNotFound),
    /// The store refused the change.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scheduler stopped.
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
}

/// Why [`Handle::run_now`](super::Handle::run_now) failed.
#[derive(Debug, thiserror::Error)]
pub enum RunNowError {
    /// No job has the id.
    #[error(transparent)]
    NotFound(#[from] JobNotFound),
    /// The job already runs its `max_instances`.
    #[error("job {0} already runs its maximum number of instances; try again when one finishes")]
    Busy(JobId),
    /// The run could not be recorded, so it was not started.
    #[error("the run could not be recorded, so it did not start: {0}")]
    NotRecorded(StoreError),
    /// The run started, but its audit entry could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scheduler stopped.
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
}

/// Why [`Handle::test_action`](super::Handle::test_action) failed; nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The action is invalid, or not a webhook; names the field.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The audit entry could not be written (it is written before the request goes out).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scheduler stopped.
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
}

/// Why [`Handle::clear_runs`](super::Handle::clear_runs) failed; nothing was deleted.
#[derive(Debug, thiserror::Error)]
pub enum ClearError {
    /// The store refused the deletion or its audit entry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scheduler stopped.
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
}
