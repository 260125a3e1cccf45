//! The queue core under virtual time: leases, expiry, redelivery, retries, idempotency and
//! `max_instances` together with the scheduler core. No clocks, no sleeps.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};

use super::*;
use crate::sched::{self, FireKind, JobSpec};

const T0: &str = "2026-06-01T12:00:00Z";

fn t(secs: i64) -> Timestamp {
    T0.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(secs)
}

fn ids() -> impl FnMut() -> DeliveryId {
    let mut n = 0u128;
    move || {
        n += 1;
        DeliveryId::from_u128(n)
    }
}

fn task(run: u64, handler: &str, attempts: u32, backoff_s: u64, timeout_s: u64) -> Task {
    let mut task = Task::new(
        JobId::from_u64(run * 100),
        handler,
        "send_message",
        &Map::new(),
        t(0),
        sched::Retry {
            attempts,
            backoff: Duration::from_secs(backoff_s),
        },
        Duration::from_secs(timeout_s),
        t(0),
    );
    task.run_id = run;
    task
}

const LEASE: Duration = Duration::from_secs(5);

#[test]
fn lease_and_ack_finish_the_run_once_and_a_repeated_ack_changes_nothing() {
    let mut q = Core::new();
    let mut gen = ids();
    q.enqueue(task(1, "bot", 1, 0, 30), t(0));
    assert_eq!(q.take_changes().wake, vec!["bot".to_string()]);
    let got = q.lease("bot", 10, LEASE, t(1), &mut gen);
    assert_eq!(got.len(), 1);
    let l = &got[0];
    assert_eq!((l.run_id, l.attempt, l.first), (1, 1, true));
    assert_eq!(l.lease_expires_at, t(6));
    let c = q.take_changes();
    assert_eq!(c.upsert.len(), 1, "the lease is persisted");
    assert!(matches!(c.upsert[0].state, TaskState::Leased { .. }));
    assert_eq!(c.upsert[0].first_leased_at, Some(t(1)));

    assert!(
        q.lease("bot", 10, LEASE, t(1), &mut gen).is_empty(),
        "nothing else queued"
    );
    assert_eq!(
        q.ack(l.id, "bot", json!({"ok": 1}), t(2)),
        Ok(AckOutcome::Acked)
    );
    let c = q.take_changes();
    assert_eq!(c.upsert[0].state, TaskState::Succeeded);
    assert_eq!(c.upsert[0].result, Some(json!({"ok": 1})));
    assert_eq!(
        c.finished,
        vec![Finished {
            job_id: JobId::from_u64(100),
            run_id: 1,
            succeeded: true
        }]
    );
    assert_eq!(
        q.ack(l.id, "bot", json!({"ok": 1}), t(3)),
        Ok(AckOutcome::Repeated)
    );
    assert_eq!(
        q.take_changes(),
        Changes::default(),
        "a repeat writes nothing"
    );
    // A fail after the ack is refused, and nothing is redelivered when the lease time passes.
    assert!(matches!(
        q.fail(l.id, "bot", "late", true, t(3)),
        Err(LeaseError::NotHeld(..))
    ));
    q.handle_timeout(t(100));
    assert!(q.lease("bot", 10, LEASE, t(100), &mut gen).is_empty());
    assert!(
        q.take_changes().finished.is_empty(),
        "finished exactly once"
    );
}

#[test]
fn an_expired_lease_is_redelivered_with_attempt_2_and_its_old_id_is_refused() {
    let mut q = Core::new();
    let mut gen = ids();
    q.enqueue(task(1, "bot", 3, 0, 60), t(0));
    let first = q.lease("bot", 1, LEASE, t(0), &mut gen).remove(0);
    assert_eq!(q.poll_timeout(), Some(t(5)));
    q.handle_timeout(t(4));
    assert!(
        q.lease("bot", 1, LEASE, t(4), &mut gen).is_empty(),
        "not before expiry"
    );
    q.handle_timeout(t(5));
    let c = q.take_changes();
    assert_eq!(
        c.wake,
        vec!["bot".to_string()],
        "the waiting handler is woken"
    );
    let row = c.upsert.iter().find(|r| r.run_id == 1).unwrap();
    assert!(matches!(row.state, TaskState::Queued { .. }));
    assert!(row.error.as_deref().unwrap().starts_with("lease expired"));

    let second = q.lease("bot", 1, LEASE, t(6), &mut gen).remove(0);
    assert_eq!((second.run_id, second.attempt, second.first), (1, 2, false));
    assert_ne!(second.id, first.id, "a new delivery id for each lease");
    // The same handler holds the new lease, but the expired id is dead.
    assert_eq!(
        q.ack(first.id, "bot", Value::Null, t(7)),
        Err(LeaseError::NotHeld(first.id, "the lease expired"))
    );
    assert!(matches!(
        q.heartbeat(first.id, "bot", LEASE, t(7)),
        Err(LeaseError::NotHeld(..))
    ));
    assert_eq!(
        q.ack(second.id, "bot", Value::Null, t(7)),
        Ok(AckOutcome::Acked)
    );
    assert_eq!(q.task(1).unwrap().attempt, 2);
    assert_eq!(q.task(1).unwrap().first_leased_at, Some(t(0)));
}

#[test]
fn retries_run_out_and_the_run_fails_with_lease_expired() {
    let mut q = Core::new();
    let mut gen = ids();
    q.enqueue(task(1, "bot", 2, 10, 60), t(0));
    q.lease("bot", 1, LEASE, t(0), &mut gen);
    q.handle_timeout(t(5));
    // Backoff before attempt 2 is 10 s: not available before t(15).
    assert!(q.lease("bot", 1, LEASE, t(14), &mut gen).is_empty());
    q.take_changes();
    assert_eq!(q.poll_timeout(), Some(t(15)));
    q.handle_timeout(t(15));
    assert_eq!(q.take_changes().wake, vec!["bot".to_string()]);
    let l = q.lease("bot", 1, LEASE, t(15), &mut gen).remove(0);
    assert_eq!(l.attempt, 2);
    q.handle_timeout(t(20));
    let c = q.take_changes();
    assert_eq!(c.finished.len(), 1);
    assert!(!c.finished[0].succeeded);
    let row = &c.upsert[0];
    assert_eq!(row.state, TaskState::Failed);
    assert!(
        row.error.as_deref().unwrap().starts_with("lease expired"),
        "{row:?}"
    );
    assert!(q.lease("bot", 1, LEASE, t(100), &mut gen).is_empty());
}

#[test]
fn heartbeats_keep_a_long_call_to_one_delivery_until_the_timeout() {
    let mut q = Core::new();
    let mut gen = ids();
    q.enqueue(task(1, "bot", 3, 0, 20), t(0));
    let l = q.lease("bot", 1, LEASE, t(0), &mut gen).remove(0);
    // A 12 s method, heartbeating every 2 s with a 5 s lease: longer than ScheduleZero's 10 s
    // RPC timeout, and never redelivered.
    for s in (2..=12).step_by(2) {
        q.handle_timeout(t(s));
        let (exp, cancel) = q.heartbeat(l.id, "bot", LEASE, t(s)).unwrap();
        assert_eq!(exp, t(s + 5));
        assert!(!cancel);
        assert!(q.lease("bot", 1, LEASE, t(s), &mut gen).is_empty());
    }
    assert_eq!(q.ack(l.id, "bot", json!(1), t(13)), Ok(AckOutcome::Acked));
    assert_eq!(
        q.task(1).unwrap().deliveries.len(),
        1,
        "delivered exactly once"
    );

    // The job's timeout (20 s) caps heartbeats: start-to-close.
    q.enqueue(task(2, "bot", 1, 0, 20), t(100));
    let l = q.lease("bot", 1, LEASE, t(100), &mut gen).remove(0);
    for s in (102..=118).step_by(2) {
        q.handle_timeout(t(s));
        q.heartbeat(l.id, "bot", LEASE, t(s)).unwrap();
    }
    let (exp, _) = q.heartbeat(l.id, "bot", LEASE, t(119)).unwrap();
    assert_eq!(exp, t(120), "never past leased_at + timeout");
    q.handle_timeout(t(120));
    let c = q.take_changes();
    let row = c.upsert.iter().find(|r| r.run_id == 2).unwrap();
    assert_eq!(row.state, TaskState::Failed);
    assert!(
        row.error.as_deref().unwrap().starts_with("timed out"),
        "{row:?}"
    );
    assert_eq!(
        q.ack(l.id, "bot", json!(1), t(121)),
        Err(LeaseError::NotHeld(
            l.id,
            "the attempt reached the job's timeout"
        ))
    );
}

#[test]
fn fail_follows_the_retry_policy_and_repeats_are_idempotent() {
    let mut q = Core::new();
    let mut gen = ids();
    q.enqueue(task(1, "bot", 2, 30, 60), t(0));
    let l = q.lease("bot", 1, LEASE, t(0), &mut gen).remove(0);
    assert_eq!(
        q.fail(l.id, "bot", "discord said 500", true, t(1)),
        Ok(FailOutcome::Requeued(t(31)))
    );
    assert_eq!(
        q.fail(l.id, "bot", "discord said 500", true, t(2)),
        Ok(FailOutcome::Repeated)
    );
    assert!(matches!(
        q.ack(l.id, "bot", json!(1), t(2)),
        Err(LeaseError::NotHeld(..))
    ));
    q.handle_timeout(t(31));
    let l2 = q.lease("bot", 1, LEASE, t(31), &mut gen).remove(0);
    assert_eq!(l2.attempt, 2);
    assert_eq!(
        q.fail(l2.id, "bot", "still broken", true, t(32)),
        Ok(FailOutcome::Failed),
        "no attempts left"
    );
    assert_eq!(q.task(1).unwrap().error.as_deref(), Some("still broken"));

    // retry: false ends the run at once, attempts left or not.
    q.enqueue(task(2, "bot", 5, 0, 60), t(40));
    let l = q.lease("bot", 1, LEASE, t(40), &mut gen).remove(0);
    assert_eq!(
        q.fail(l.id, "bot", "bad params", false, t(41)),
        Ok(FailOutcome::Failed)
    );
    assert_eq!(q.task(2).unwrap().state, TaskState::Failed);
}

#[test]
fn only_the_addressed_handler_leases_heartbeats_or_acks_a_task() {
    let mut q = Core::new();
    let mut gen = ids();
    q.enqueue(task(1, "bot", 1, 0, 60), t(0));
    assert!(q.lease("other", 10, LEASE, t(0), &mut gen).is_empty());
    let l = q.lease("bot", 10, LEASE, t(0), &mut gen).remove(0);
    for e in [
        q.ack(l.id, "other", json!(1), t(1)).err(),
        q.fail(l.id, "other", "x", false, t(1)).err(),
        q.heartbeat(l.id, "other", LEASE, t(1)).err(),
    ] {
        assert_eq!(
            e,
            Some(LeaseError::NotHeld(
                l.id,
                "it was delivered to another handler"
            ))
        );
    }
    let unknown = DeliveryId::from_u128(999);
    assert_eq!(
        q.ack(unknown, "bot", json!(1), t(1)),
        Err(LeaseError::Unknown(unknown))
    );
    assert_eq!(q.ack(l.id, "bot", json!(1), t(1)), Ok(AckOutcome::Acked));
}

#[test]
fn each_handler_gets_its_own_fifo_up_to_max() {
    let mut q = Core::new();
    let mut gen = ids();
    for run in 1..=5 {
        q.enqueue(
            task(run, if run % 2 == 0 { "b" } else { "a" }, 1, 0, 60),
            t(0),
        );
    }
    let a: Vec<u64> = q
        .lease("a", 2, LEASE, t(0), &mut gen)
        .iter()
        .map(|l| l.run_id)
        .collect();
    assert_eq!(a, vec![1, 3]);
    let a: Vec<u64> = q
        .lease("a", 100, LEASE, t(0), &mut gen)
        .iter()
        .map(|l| l.run_id)
        .collect();
    assert_eq!(a, vec![5]);
    let counts = q.counts();
    assert_eq!(
        counts["a"],
        Counts {
            queued: 0,
            leased: 3
        }
    );
    assert_eq!(
        counts["b"],
        Counts {
            queued: 2,
            leased: 0
        }
    );
}

#[test]
fn stored_rows_restore_the_queue_after_a_restart() {
    let mut q = Core::new();
    let mut gen = ids();
    let mut rows: std::collections::BTreeMap<u64, Task> = Default::default();
    for run in 1..=3 {
        let task = task(run, "bot", 2, 0, 60);
        rows.insert(run, task.clone());
        q.enqueue(task, t(0));
    }
    let leased = q.lease("bot", 1, LEASE, t(0), &mut gen).remove(0);
    let acked = q.lease("bot", 1, LEASE, t(0), &mut gen).remove(0);
    q.ack(acked.id, "bot", json!("done"), t(1)).unwrap();
    for r in q.take_changes().upsert {
        // Through the stored form, as the store keeps it.
        let bytes = serde_json::to_vec(&r).unwrap();
        rows.insert(r.run_id, serde_json::from_slice(&bytes).unwrap());
    }
    // "Restart" at t(2): a new core from the rows.
    let mut q = Core::new();
    for r in rows.values() {
        q.load(r.clone(), t(2));
    }
    assert_eq!(
        q.unfinished_per_job().len(),
        2,
        "queued run 3 and leased run 1"
    );
    assert_eq!(
        q.ack(acked.id, "bot", json!("done"), t(2)),
        Ok(AckOutcome::Repeated),
        "a repeated ack is still recognised"
    );
    let l = q.lease("bot", 10, LEASE, t(2), &mut gen);
    assert_eq!(l.iter().map(|l| l.run_id).collect::<Vec<_>>(), vec![3]);
    // The lease held across the restart still works.
    assert!(q.heartbeat(leased.id, "bot", LEASE, t(3)).is_ok());
    assert_eq!(
        q.ack(leased.id, "bot", json!(1), t(3)),
        Ok(AckOutcome::Acked)
    );

    // A day later the finished tasks are forgotten and their rows deleted.
    q.handle_timeout(t(3) + SignedDuration::from_hours(25));
    let c = q.take_changes();
    let mut removed = c.remove.clone();
    removed.sort();
    assert_eq!(removed, vec![1, 2]);
}

#[test]
fn deleting_a_job_requests_cancellation_through_heartbeats() {
    let mut q = Core::new();
    let mut gen = ids();
    q.enqueue(task(1, "bot", 1, 0, 60), t(0));
    let l = q.lease("bot", 1, LEASE, t(0), &mut gen).remove(0);
    q.cancel_job(JobId::from_u64(100));
    assert_eq!(q.take_changes().upsert.len(), 1, "the flag is persisted");
    assert!(q.heartbeat(l.id, "bot", LEASE, t(1)).unwrap().1);
}

#[test]
fn delivery_ids_are_32_hex_digits() {
    let id = DeliveryId::from_u128(0xabc);
    let s = id.to_string();
    assert_eq!(s.len(), 32);
    assert_eq!(s.parse::<DeliveryId>(), Ok(id));
    for bad in ["", "abc", &"A".repeat(32), &"g".repeat(32), &"0".repeat(33)] {
        assert!(bad.parse::<DeliveryId>().is_err(), "{bad}");
    }
}

/// `max_instances` counts queued and leased tasks: the scheduler core and the queue core
/// driven together under virtual time, as the driver does.
#[test]
fn max_instances_counts_leased_tasks_until_they_finish() {
    let spec = JobSpec::from_json(
        &json!({"name": "ping", "trigger": {"every": "10s", "start": T0},
                "action": {"handler": {"id": "bot", "method": "ping"}},
                "max_instances": 1, "timeout": "60s"}),
        None,
    )
    .unwrap();
    let job = JobId::from_u64(7);
    let mut s = sched::Core::new();
    s.upsert(job, Arc::new(spec.clone()), None, t(0));
    let mut q = Core::new();
    let mut gen = ids();
    let mut next_run = 1;
    let mut fire = |s: &mut sched::Core, q: &mut Core, now: Timestamp| -> Vec<FireKind> {
        s.handle_timeout(now);
        let mut kinds = Vec::new();
        while let Some(f) = s.poll_fire() {
            if f.kind.is_run() {
                let call = spec.action.handler().unwrap();
                let mut task = Task::new(
                    f.job,
                    &call.id,
                    &call.method,
                    &call.params,
                    f.scheduled_at,
                    spec.retry,
                    spec.timeout,
                    now,
                );
                task.run_id = next_run;
                next_run += 1;
                q.enqueue(task, now);
            }
            kinds.push(f.kind);
        }
        kinds
    };
    assert_eq!(fire(&mut s, &mut q, t(10)), vec![FireKind::Run]);
    let l = q.lease("bot", 1, LEASE, t(11), &mut gen).remove(0);
    // Queued at t(10), leased at t(11): still one instance at t(20).
    assert_eq!(fire(&mut s, &mut q, t(20)), vec![FireKind::Skipped]);
    q.heartbeat(l.id, "bot", Duration::from_secs(30), t(20))
        .unwrap();
    assert_eq!(fire(&mut s, &mut q, t(30)), vec![FireKind::Skipped]);
    q.ack(l.id, "bot", json!(1), t(31)).unwrap();
    for f in q.take_changes().finished {
        s.handle_finished(f.job_id);
    }
    assert_eq!(s.running(job), 0);
    assert_eq!(fire(&mut s, &mut q, t(40)), vec![FireKind::Run]);
    // An unleased queued task holds the slot too (the handler is offline).
    assert_eq!(fire(&mut s, &mut q, t(50)), vec![FireKind::Skipped]);
}
