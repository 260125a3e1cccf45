//! What the API (and the control socket) shows of the model: reply bodies as their own types,
//! and the one cursor-paging rule of every listing.
//!
//! The model ([`crate::model`]) and the rows on disk ([`crate::store`]) may change shape
//! without changing a reply: these views fix the JSON clients see. `tests/golden` and the
//! API tests hold them to it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::model::{Actor, AuditEntry, RunRecord, RunStatus};
use crate::sched::JobId;
use crate::scheduler::JobEntry;

/// How many items to read for a page of `limit`: one more, which only tells whether another
/// page follows.
pub fn read_limit(limit: usize) -> usize {
    limit.saturating_add(1)
}

/// Cuts items read with [`read_limit`] to one page: the first `limit`, and the next page's
/// cursor (`cursor` of the last item kept) when more were read, `None` on the last page.
pub fn page<T>(
    mut items: Vec<T>,
    limit: usize,
    cursor: impl FnOnce(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = more.then(|| items.last().map(cursor)).flatten();
    (items, next)
}

/// A job in the replies of `/api/v1/jobs` (list, get, create, patch, pause, resume): the spec
/// in the form a client writes it, with the bookkeeping a client reads beside it. Built from
/// the job as the scheduler holds it ([`JobEntry`]: the record and its running count); the
/// stored row is the store's own type.
#[derive(Debug, Serialize)]
pub struct JobView<'a> {
    /// The spec's fields (`name`, `trigger`, `action`, `misfire_grace`, …, `metadata`), every
    /// default written out, as [`JobSpec::to_json`] gives them; for read-only roles as
    /// [`JobSpec::viewer_json`] does (webhook URL cut to its host, secrets `***`).
    ///
    /// [`JobSpec::to_json`]: crate::sched::JobSpec::to_json
    /// [`JobSpec::viewer_json`]: crate::sched::JobSpec::viewer_json
    #[serde(flatten)]
    pub spec: Map<String, Value>,
    /// The job's id, as 16 hex digits.
    #[serde(serialize_with = "crate::sched::spec::job_id_hex::serialize")]
    pub id: JobId,
    /// The next fire the scheduler will take (none: paused, or nothing left to fire).
    pub next_fire_at: Option<Timestamp>,
    /// When the job was created (Unix milliseconds, shown as RFC 3339).
    #[serde(serialize_with = "millis_rfc3339")]
    pub created_at: u64,
    /// When the job last changed (Unix milliseconds, shown as RFC 3339).
    #[serde(serialize_with = "millis_rfc3339")]
    pub updated_at: u64,
    /// Peer name of the creator (`local` for the CLI).
    pub created_by: &'a str,
    /// Instances running now (webhook runs executing, handler calls queued or leased).
    pub running: u32,
}

impl<'a> JobView<'a> {
    /// The job as officers and admins see it: the whole spec.
    pub fn full(e: &'a JobEntry) -> JobView<'a> {
        JobView::with_spec(e, e.record.spec.to_json())
    }

    /// The job as read-only roles see it: the webhook URL as scheme and host with a
    /// fingerprint keyed by `key`, allow-listed header values, no body, no handler params
    /// (a URL, a header or a body can be enough to post to the channel).
    pub fn for_viewer(e: &'a JobEntry, key: &[u8]) -> JobView<'a> {
        JobView::with_spec(e, e.record.spec.viewer_json(key))
    }

    fn with_spec(e: &'a JobEntry, spec: Value) -> JobView<'a> {
        let Value::Object(spec) = spec else {
            unreachable!("a spec's JSON is an object")
        };
        let r = &e.record;
        JobView {
            spec,
            id: r.id,
            next_fire_at: r.next_fire_at,
            created_at: r.created_at_ms,
            updated_at: r.updated_at_ms,
            created_by: &r.created_by,
            running: e.running,
        }
    }

    /// The reply body.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a job view serialises")
    }
}

/// Unix milliseconds as RFC 3339 (`""` beyond the years a timestamp holds, as before).
fn millis_rfc3339<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    match i64::try_from(*ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
    {
        Some(t) => s.collect_str(&t),
        None => s.serialize_str(""),
    }
}

/// A run in `GET /api/v1/runs` (and `/api/v1/jobs/{id}/runs`).
#[derive(Debug, Serialize)]
pub struct RunView<'a> {
    /// Run id (grows with time; the paging cursor).
    pub id: u64,
    /// The job it ran, as 16 hex digits.
    #[serde(serialize_with = "crate::sched::spec::job_id_hex::serialize")]
    pub job_id: JobId,
    /// The job's name when it fired.
    pub job_name: &'a str,
    /// When the fire was due.
    pub scheduled_at: Timestamp,
    /// When the first attempt started.
    pub started_at: Option<Timestamp>,
    /// When the last attempt ended.
    pub finished_at: Option<Timestamp>,
    /// Attempts made so far.
    pub attempt: u32,
    /// Where the run stands.
    pub status: RunStatus,
    /// What fired it: `schedule`, or `manual` for run now.
    pub trigger: &'a str,
    /// HTTP status of the last webhook attempt.
    pub http_status: Option<u16>,
    /// Why the last attempt failed, scrubbed of secrets.
    pub error: Option<&'a str>,
    /// Duration of the last attempt, in milliseconds.
    pub duration_ms: Option<u64>,
    /// For a summarising missed record: how many fires it stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The handler peer a handler run was addressed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<&'a str>,
    /// The handler's result, for an acked handler run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a serde_json::Value>,
    /// Milliseconds a handler run waited in its queue before its first lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_delay_ms: Option<u64>,
}

impl<'a> From<&'a RunRecord> for RunView<'a> {
    fn from(r: &'a RunRecord) -> RunView<'a> {
        RunView {
            id: r.id,
            job_id: r.job_id,
            job_name: &r.job_name,
            scheduled_at: r.scheduled_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            attempt: r.attempt,
            status: r.status,
            trigger: &r.trigger,
            http_status: r.http_status,
            error: r.error.as_deref(),
            duration_ms: r.duration_ms,
            count: r.count,
            handler: r.handler.as_deref(),
            result: r.result.as_ref(),
            queue_delay_ms: r.queue_delay_ms,
        }
    }
}

/// An audit entry in `GET /api/v1/audit`, the control socket's `AuditList` reply and
/// `appliance audit --json` (the CLI reads it back, hence `Deserialize`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditView {
    /// Sequence number (the paging cursor).
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Who did it.
    pub actor: ActorView,
    /// What was done.
    pub action: crate::model::AuditAction,
    /// The object acted on (peer name, job id).
    pub target: Option<String>,
    /// A redacted summary of the change.
    pub summary: serde_json::Value,
}

/// An audit entry as `GET /api/v1/audit`, the control socket's `AuditList` reply and
/// `appliance audit --json` show it: the entry ([`AuditView`], the stored row's fields) and
/// its sentence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditItem {
    /// The entry's fields.
    #[serde(flatten)]
    pub entry: AuditView,
    /// The entry as one plain sentence ([`crate::api::audit_text::describe`]), built from the
    /// action, target and redacted summary: what the dashboard and `appliance audit` show.
    pub text: String,
}

/// Who made a change, inside an [`AuditView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActorView {
    /// Peer name, or `local` for the CLI on the server.
    pub peer: String,
    /// Short fingerprint of the peer's public key.
    pub fingerprint: Option<String>,
    /// Tunnel address the change came from.
    pub address: Option<String>,
    /// The peer's WireGuard endpoint at the time.
    pub endpoint: Option<String>,
    /// Through which door the change came.
    pub via: crate::model::Via,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> AuditView {
        let Actor {
            peer,
            fingerprint,
            address,
            endpoint,
            via,
        } = e.actor;
        AuditView {
            seq: e.seq,
            at_ms: e.at_ms,
            actor: ActorView {
                peer,
                fingerprint,
                address,
                endpoint,
                via,
            },
            action: e.action,
            target: e.target,
            summary: e.summary,
        }
    }
}

/// Audit entries with the stored row's fields only, in the order given.
pub fn audit_views(entries: Vec<AuditEntry>) -> Vec<AuditView> {
    entries.into_iter().map(AuditView::from).collect()
}

/// Audit entries as shown, each with its sentence, in the order given.
pub fn audit_items(entries: Vec<AuditEntry>) -> Vec<AuditItem> {
    entries
        .into_iter()
        .map(|e| AuditItem {
            text: crate::api::audit_text::describe(&e.action, e.target.as_deref(), &e.summary),
            entry: AuditView::from(e),
        })
        .collect()
}

/// The endpoint new client configs carry, as `appliance endpoint` and `/api/v1/endpoint`
/// show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    /// `HOST:PORT` (IPv6 in brackets).
    pub endpoint: String,
    /// The endpoint it replaced, when this was a change.
    pub previous: Option<String>,
    /// Why phones may not reach it, with what to run on the server
    /// ([`crate::server::endpoint_warning`]): for the CLI.
    pub warning: Option<String>,
    /// The same reason in plain words, naming no command ([`crate::server::endpoint_reason`]):
    /// for the dashboard, whose reader has no terminal.
    #[serde(default)]
    pub reason: Option<String>,
}

impl EndpointView {
    /// The view of `endpoint`, with the one it replaced and any reachability warning.
    pub fn new(endpoint: &peers::Endpoint, previous: Option<&peers::Endpoint>) -> EndpointView {
        EndpointView {
            endpoint: endpoint.to_string(),
            previous: previous.map(ToString::to_string),
            warning: crate::server::endpoint_warning(endpoint),
            reason: crate::server::endpoint_reason(endpoint),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::{page, read_limit, JobView};
    use crate::model::JobRecord;
    use crate::sched::{JobId, JobSpec};
    use crate::scheduler::JobEntry;

    /// A job with every kind of field: a webhook with a secret header and a body, a cron
    /// trigger with a zone, metadata, a next fire, one instance running.
    fn raid_job() -> JobEntry {
        let spec = JobSpec::from_json(
            &json!({
                "name": "raid-reminder",
                "trigger": {"cron": "45 19 * * THU", "timezone": "Europe/Berlin"},
                "action": {"webhook": {
                    "url": "https://discord.com/api/webhooks/123/secret-token?wait=true",
                    "headers": {"Authorization": "Bot xyz", "User-Agent": "raid-bot"},
                    "body": {"content": "@raiders raid in 15 minutes!"}}},
                "retry": {"attempts": 3, "backoff": "10s"},
                "metadata": {"guild": "raiders"},
            }),
            None,
        )
        .unwrap();
        JobEntry {
            record: JobRecord {
                id: JobId::from_u64(0x1234_5678_9abc_def0),
                spec: Arc::new(spec),
                created_at_ms: 1_780_272_000_123,
                updated_at_ms: 1_780_275_600_000,
                created_by: "leader".into(),
                next_fire_at: Some("2026-06-04T17:45:00Z".parse().unwrap()),
                paused_at_ms: None,
            },
            running: 1,
        }
    }

    /// The reply's bytes, pinned: what the code that sent the stored JSON as the reply returned
    /// for this job (at 48ae411), for officers and for viewers. ScheduleZero clients and the
    /// dashboard read it.
    #[test]
    fn a_jobs_reply_keeps_its_bytes() {
        let e = raid_job();
        assert_eq!(
            JobView::full(&e).to_json().to_string(),
            r#"{"action":{"webhook":{"body":{"content":"@raiders raid in 15 minutes!"},"headers":{"authorization":"Bot xyz","user-agent":"raid-bot"},"method":"POST","url":"https://discord.com/api/webhooks/123/secret-token?wait=true"}},"coalesce":true,"created_at":"2026-06-01T00:00:00.123Z","created_by":"leader","id":"123456789abcdef0","jitter":"0s","max_instances":1,"metadata":{"guild":"raiders"},"misfire_grace":"1m","name":"raid-reminder","next_fire_at":"2026-06-04T17:45:00Z","paused":false,"retry":{"attempts":3,"backoff":"10s"},"running":1,"timeout":"30s","trigger":{"cron":"45 19 * * THU","timezone":"Europe/Berlin"},"updated_at":"2026-06-01T01:00:00Z"}"#
        );
        assert_eq!(
            JobView::for_viewer(&e, b"k").to_json().to_string(),
            r#"{"action":{"webhook":{"body":"***","headers":{"authorization":"***","user-agent":"raid-bot"},"method":"POST","url":"https://discord.com/***","url_fingerprint":"cd183aab"}},"coalesce":true,"created_at":"2026-06-01T00:00:00.123Z","created_by":"leader","id":"123456789abcdef0","jitter":"0s","max_instances":1,"metadata":{"guild":"raiders"},"misfire_grace":"1m","name":"raid-reminder","next_fire_at":"2026-06-04T17:45:00Z","paused":false,"retry":{"attempts":3,"backoff":"10s"},"running":1,"timeout":"30s","trigger":{"cron":"45 19 * * THU","timezone":"Europe/Berlin"},"updated_at":"2026-06-01T01:00:00Z"}"#
        );
        // No fire left and a time beyond what a timestamp holds: null, and "" as before.
        let mut e = e;
        e.record.next_fire_at = None;
        e.record.updated_at_ms = u64::MAX;
        let v = JobView::full(&e).to_json();
        assert_eq!(
            (&v["next_fire_at"], &v["updated_at"]),
            (&json!(null), &json!(""))
        );
    }

    #[test]
    fn a_page_keeps_limit_items_and_a_cursor_only_when_more_were_read() {
        let cursor = |n: &u32| n.to_string();
        assert_eq!(read_limit(2), 3);
        assert_eq!(
            page(vec![9, 8, 7], 2, cursor),
            (vec![9, 8], Some("8".into()))
        );
        assert_eq!(page(vec![9, 8], 2, cursor), (vec![9, 8], None));
        assert_eq!(page(Vec::<u32>::new(), 2, cursor), (vec![], None));
        assert_eq!(read_limit(usize::MAX), usize::MAX);
    }
}
