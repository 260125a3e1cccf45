//! What the API (and the control socket) shows of the model: reply bodies as their own types,
//! and the one cursor-paging rule of every listing.
//!
//! The model ([`crate::model`]) and the rows on disk ([`crate::store`]) may change shape
//! without changing a reply: these views fix the JSON clients see. `tests/golden` and the
//! API tests hold them to it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::{Actor, AuditEntry, RunRecord, RunStatus};
use crate::sched::JobId;

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

/// Audit entries as shown, in the order given.
pub fn audit_views(entries: Vec<AuditEntry>) -> Vec<AuditView> {
    entries.into_iter().map(AuditView::from).collect()
}

#[cfg(test)]
mod tests {
    use super::{page, read_limit};

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
