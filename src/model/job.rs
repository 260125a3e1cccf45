//! Jobs and their runs: a stored job (checked spec plus bookkeeping) and one fire's record.
//!
//! Pure data. The scheduling core ([`crate::sched`]) decides fire times, the scheduler's
//! driver ([`crate::scheduler`], with [`crate::scheduler::runs`]) records runs,
//! [`crate::store`] keeps them.

use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::sched::{JobId, JobSpec, Schedule};

/// A stored job: its checked spec plus bookkeeping.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// The job's id.
    pub id: JobId,
    /// Shared, not copied: the scheduler's job table and its core hold the same spec (one
    /// allocation per job; a change builds a new spec and swaps the `Arc`).
    pub spec: Arc<JobSpec>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Last change, Unix milliseconds.
    pub updated_at_ms: u64,
    /// Peer name of the creator (or "local").
    pub created_by: String,
    /// The next scheduled fire not yet taken (None: none, or not computed yet).
    pub next_fire_at: Option<Timestamp>,
    /// When the job was paused (kept so a resume can catch up on request).
    pub paused_at_ms: Option<u64>,
}

impl JobRecord {
    /// What the scheduler keeps of this job in memory.
    pub fn summary(&self) -> JobSummary {
        JobSummary {
            id: self.id,
            name: self.spec.name.as_str().into(),
            schedulezero_id: self.spec.schedulezero_id().map(Into::into),
            schedule: Schedule::of(&self.spec),
            next_fire_at: self.next_fire_at,
        }
    }
}

/// What the running scheduler keeps of a stored job: enough to order its fires and to answer
/// the listing and name rules, not its action. The store keeps one per job beside the job
/// (`store/jobs.rs`, the `job_schedules` table), so a start decodes these instead of every
/// job's JSON; the whole [`JobRecord`] is read when a job fires or is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    /// The job's id.
    pub id: JobId,
    /// The job's name.
    pub name: Box<str>,
    /// Its ScheduleZero id ([`crate::sched::JobSpec::schedulezero_id`]), which the job table
    /// indexes.
    pub schedulezero_id: Option<Box<str>>,
    /// When it fires, and under which rules.
    pub schedule: Schedule,
    /// The next scheduled fire not yet taken, as stored.
    pub next_fire_at: Option<Timestamp>,
}

/// State of one run (one fire of a job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A handler call waiting for its handler to lease it.
    Queued,
    /// A handler call leased by its handler (being executed).
    Leased,
    /// An attempt is in progress.
    Running,
    /// An attempt succeeded.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// Scheduled, but found later than `misfire_grace` (downtime): recorded, not executed.
    Missed,
    /// Scheduled while `max_instances` runs were still going: recorded, not executed.
    Skipped,
}

impl RunStatus {
    /// Whether the run is still going (running, or a handler call queued or leased).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RunStatus::Queued | RunStatus::Leased | RunStatus::Running
        )
    }

    /// Its name in rows, bodies and filters (`succeeded`, `missed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Leased => "leased",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Missed => "missed",
            RunStatus::Skipped => "skipped",
        }
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => RunStatus::Queued,
            "leased" => RunStatus::Leased,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "missed" => RunStatus::Missed,
            "skipped" => RunStatus::Skipped,
            _ => {
                return Err(format!(
                    "unknown status '{s}': expected queued, leased, running, succeeded, failed, missed or skipped"
                ))
            }
        })
    }
}

/// One fire of a job, as recorded in the run history. Stored by [`crate::store`] (its row
/// is private there) and shown by [`crate::api::view::RunView`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Assigned when first stored (0 before).
    pub id: u64,
    /// The job it belongs to.
    pub job_id: JobId,
    /// The job's name when it fired.
    pub job_name: String,
    /// When the schedule said it should run (RFC 3339).
    pub scheduled_at: Timestamp,
    /// When the first attempt started.
    pub started_at: Option<Timestamp>,
    /// When the last attempt ended.
    pub finished_at: Option<Timestamp>,
    /// Attempts made so far.
    pub attempt: u32,
    /// Where the run stands.
    pub status: RunStatus,
    /// `schedule` or `manual` (run now).
    pub trigger: String,
    /// HTTP status of the last webhook attempt.
    pub http_status: Option<u16>,
    /// Why the last attempt failed, scrubbed of secrets.
    pub error: Option<String>,
    /// Duration of the last attempt, in milliseconds.
    pub duration_ms: Option<u64>,
    /// For a summarising missed record: how many fires it stands for.
    pub count: Option<u64>,
    /// Handler runs: the handler the call is addressed to.
    pub handler: Option<String>,
    /// Handler runs: the handler's result (acked runs), at most 64 KiB of JSON.
    pub result: Option<serde_json::Value>,
    /// Handler runs: milliseconds from the scheduled time to the first lease.
    pub queue_delay_ms: Option<u64>,
}

impl RunRecord {
    /// A fire about to start: no attempt made, running, nothing known yet of its outcome.
    /// `trigger` is `schedule` or `manual`.
    pub fn starting(
        job_id: JobId,
        job_name: String,
        scheduled_at: Timestamp,
        trigger: &str,
    ) -> RunRecord {
        RunRecord {
            id: 0,
            job_id,
            job_name,
            scheduled_at,
            started_at: None,
            finished_at: None,
            attempt: 0,
            status: RunStatus::Running,
            trigger: trigger.into(),
            http_status: None,
            error: None,
            duration_ms: None,
            count: None,
            handler: None,
            result: None,
            queue_delay_ms: None,
        }
    }
}

/// Filter for run listings.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this job's runs.
    pub job: Option<JobId>,
    /// Only runs in this state.
    pub status: Option<RunStatus>,
    /// Only runs scheduled at or after this instant.
    pub since: Option<Timestamp>,
    /// Only runs with an id below this (the cursor).
    pub before: Option<u64>,
    /// Most runs to return.
    pub limit: usize,
}
