//! Run records: what a fire, an interrupted run or an orphaned one becomes in the history.
//!
//! Layer: pure (no clock, no store: `now` is passed in). Owns the mapping from a
//! [`sched::Fire`](crate::sched::Fire) to its [`RunRecord`] — `running` for a webhook run,
//! `queued` with its [`Task`] for a handler call, `missed`/`skipped` with the sentence a viewer
//! reads — and the sentences for runs a stop or a disk error cut short. The driver commits what
//! these functions return.

use jiff::Timestamp;

use crate::model::{RunRecord, RunStatus};
use crate::queue::Task;
use crate::sched::{Fire, FireKind, JobSpec};

/// What `trigger` says of a run started by "run now".
pub const MANUAL: &str = "manual";
/// What `trigger` says of a run started by its schedule.
pub const SCHEDULE: &str = "schedule";

/// The run row for one fire of the job called `name`, and for a handler call the task to queue
/// with it. `spec` is the job's stored spec, needed for a [`FireKind::Run`] only (the driver
/// reads it from the store for those): without it a run is recorded as a webhook run. `manual`
/// marks a "run now" fire. A webhook run is recorded `running`, started at `now`; the driver
/// executes it once the row is committed.
pub fn for_fire(
    fire: &Fire,
    name: &str,
    spec: Option<&JobSpec>,
    manual: bool,
    now: Timestamp,
) -> (RunRecord, Option<Task>) {
    let mut run = RunRecord::starting(
        fire.job,
        name.to_string(),
        fire.scheduled_at,
        if manual { MANUAL } else { SCHEDULE },
    );
    let call = spec.and_then(|s| s.action.handler().map(|c| (c, s.retry, s.timeout)));
    let mut task = None;
    match fire.kind {
        FireKind::Run => match call {
            Some((call, retry, timeout)) => {
                // Queued for the handler; it starts when the handler leases it.
                run.status = RunStatus::Queued;
                run.handler = Some(call.id.clone());
                let mut t = Task::new(
                    fire.job,
                    &call.id,
                    &call.method,
                    &call.params,
                    fire.scheduled_at,
                    retry,
                    timeout,
                    now,
                );
                t.manual = manual;
                task = Some(t);
            }
            None => run.started_at = Some(now),
        },
        FireKind::Missed => {
            run.status = RunStatus::Missed;
            run.finished_at = Some(now);
            run.error = Some(
                "missed: the appliance was not running within misfire_grace of this time".into(),
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
                fire.scheduled_at
            ));
        }
    }
    (run, task)
}

/// Closes a run a previous stop of the appliance left `running` (found at start).
pub fn interrupted(run: &mut RunRecord, now: Timestamp) {
    run.status = RunStatus::Failed;
    run.finished_at = Some(now);
    run.error = Some("interrupted: the appliance stopped during this run".into());
}

/// Closes a run a failed commit recorded after all (its final sync failed late) but that never
/// started: found when the disk recovers.
pub fn never_started(run: &mut RunRecord, now: Timestamp) {
    run.status = RunStatus::Failed;
    run.finished_at = Some(now);
    run.error = Some("not started: a disk error hit while this run was being recorded".into());
}

/// Logs a run that ended or was recorded without running: INFO when it succeeded, WARN with
/// its (already scrubbed) error when it failed, was missed or was skipped, so
/// `journalctl -p warning` shows every run that needs a look.
pub fn log_outcome(run: &RunRecord) {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sched::JobId;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(action: serde_json::Value) -> JobSpec {
        JobSpec::from_json(
            &json!({"name": "raid", "trigger": {"every": "1m", "start": "2026-06-01T00:00:00Z"},
                    "action": action}),
            None,
        )
        .unwrap()
    }

    fn fire(kind: FireKind) -> Fire {
        Fire {
            job: JobId::from_u64(7),
            scheduled_at: ts("2026-06-01T00:01:00Z"),
            kind,
        }
    }

    /// Each kind of fire becomes the row a viewer reads, stamped with the driver's `now`; a
    /// handler call is queued with its task, a webhook run starts at once.
    #[test]
    fn each_fire_becomes_its_run_row() {
        let now = ts("2026-06-01T00:01:00.25Z");
        let hook = spec(json!({"webhook": {"url": "https://example.com/hook"}}));
        let (run, task) = for_fire(&fire(FireKind::Run), &hook.name, Some(&hook), false, now);
        assert!(task.is_none());
        assert_eq!(
            (
                run.status,
                run.started_at,
                run.trigger.as_str(),
                run.job_name.as_str()
            ),
            (RunStatus::Running, Some(now), SCHEDULE, "raid")
        );

        let call = spec(json!({"handler": {"id": "bot", "method": "send", "params": {"a": 1}}}));
        let (run, task) = for_fire(&fire(FireKind::Run), &call.name, Some(&call), true, now);
        let task = task.expect("a handler call is queued with its task");
        assert_eq!(
            (
                run.status,
                run.started_at,
                run.handler.as_deref(),
                run.trigger.as_str()
            ),
            (RunStatus::Queued, None, Some("bot"), MANUAL)
        );
        assert_eq!(
            (task.handler.as_str(), task.method.as_str(), task.manual),
            ("bot", "send", true)
        );
        assert_eq!(task.scheduled_at, ts("2026-06-01T00:01:00Z"));

        // Missed, skipped and summarised fires are recorded finished, never run; a handler
        // call among them queues nothing.
        for (kind, status, says) in [
            (
                FireKind::Missed,
                RunStatus::Missed,
                "missed: the appliance was not running",
            ),
            (
                FireKind::Skipped,
                RunStatus::Skipped,
                "skipped: max_instances",
            ),
            (
                FireKind::MissedMany {
                    through: ts("2026-06-01T03:00:00Z"),
                },
                RunStatus::Missed,
                "from 2026-06-01T00:01:00Z through 2026-06-01T03:00:00Z",
            ),
        ] {
            let (run, task) = for_fire(&fire(kind), &call.name, Some(&call), false, now);
            assert!(task.is_none(), "{kind:?}");
            assert_eq!((run.status, run.finished_at), (status, Some(now)));
            assert!(run.error.as_deref().unwrap().contains(says), "{run:?}");
        }

        // A missed fire needs no spec (the driver reads specs for runs only): the row carries
        // the name it is given.
        let (run, task) = for_fire(&fire(FireKind::Missed), "weekly", None, false, now);
        assert!(task.is_none());
        assert_eq!(
            (run.job_name.as_str(), run.status),
            ("weekly", RunStatus::Missed)
        );
    }
}
