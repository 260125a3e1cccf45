//! A job's webhook action: checked when the job is saved, delivered when it fires.
//!
//! Layer: driver (outbound I/O through [`Executor`]; a run's times come from the scheduler's
//! [`Clock`], only its duration is measured in real time). Owns
//! the save-time destination check ([`check_destination`]), the execution of one recorded run
//! with its retries ([`deliver`]) and the scrubbing of error text that viewers read
//! ([`scrub`]). The scheduler driver calls [`deliver`] for each webhook fire after the fire is
//! recorded; handler calls never come here (they go through the handler queue).
#![allow(clippy::disallowed_methods)] // driver: measures each run's duration

use super::{policy, Executor, NetPolicy};
use crate::clock::Clock;
use crate::model::{RunRecord, RunStatus};
use crate::sched::{Action, JobSpec, SpecError, Webhook};
use crate::scheduler::runs::log_outcome;

/// Refuses a webhook URL whose host is an address the destination policy never lets the
/// executor connect to (a literal IP, a numeric form such as `2130706433`, or `localhost`).
/// DNS names are judged when a run connects, on the addresses they resolve to then.
pub fn check_destination(spec: &JobSpec, policy: &NetPolicy) -> Result<(), SpecError> {
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

/// Executes one recorded run: the webhook with retries and timeouts; returns the run finished,
/// its start and finish stamped from `clock` (the scheduler's). Logs never contain the URL.
pub async fn deliver(
    executor: Executor,
    clock: &Clock,
    spec: &JobSpec,
    mut run: RunRecord,
) -> RunRecord {
    let Action::Webhook(hook) = &spec.action else {
        // Handler calls are queued for their handler and never reach this point; should a
        // patch ever race a fire, record that instead of panicking a task.
        run.status = RunStatus::Failed;
        run.finished_at = Some(clock.now());
        run.error =
            Some("the job's action is no longer a webhook; this run was not executed".into());
        return run;
    };
    run.started_at = Some(clock.now());
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
    run.finished_at = Some(clock.now());
    run.duration_ms = Some(started.elapsed().as_millis() as u64);
    log_outcome(&run);
    run
}

/// Replaces the webhook URL (and its path and query) in `text` with the redacted URL.
pub fn scrub(text: &str, hook: &Webhook) -> String {
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
    use jiff::Timestamp;
    use serde_json::json;

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

    /// A run's start and finish come from the scheduler's clock, not the wall clock: on a
    /// virtual clock five years ahead, both are that clock's time. The destination is refused
    /// by the default policy, so nothing is sent anywhere.
    #[tokio::test]
    async fn a_run_is_stamped_from_the_scheduler_clock() {
        let t0: Timestamp = "2031-03-04T05:06:07.5Z".parse().unwrap();
        let clock = Clock::Virtual(std::sync::Arc::new(std::sync::Mutex::new(t0)));
        let spec = JobSpec::from_json(
            &json!({
                "name": "x",
                "trigger": {"every": "1m", "start": "2031-01-01T00:00:00Z"},
                "retry": {"attempts": 1},
                "action": {"webhook": {"url": "http://127.0.0.1:9/x"}}
            }),
            None,
        )
        .unwrap();
        let run = RunRecord::starting(crate::sched::JobId::from_u64(1), "x".into(), t0, "manual");
        let run = deliver(Executor::default(), &clock, &spec, run).await;
        assert_eq!(run.status, RunStatus::Failed, "{run:?}");
        assert_eq!(run.started_at, Some(t0));
        assert_eq!(run.finished_at, Some(t0));
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

    #[test]
    fn scrub_removes_the_webhook_token_from_error_text() {
        let spec = spec_to("https://discord.com/api/webhooks/123/SeCrEt?wait=true");
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
