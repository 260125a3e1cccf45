//! `GET /api/v1/health`: liveness and counters.
//!
//! Layer: driver (application side), one of the API's route files. It reads the appliance's
//! state (store health, scheduler, directory, the driver's and the API's counters) and answers
//! it as JSON. It is the route monitors and load tests call most, so its body is serialized
//! straight from a typed value ([`Health`]) into the reply's bytes: no intermediate
//! `serde_json::Value` tree of maps and key strings per request. Its fields are declared in
//! alphabetical order, which is the order the `Value` maps it replaced wrote, so the bytes on
//! the wire are unchanged.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use hyper::StatusCode;
use serde::Serialize;

use super::{json_bytes, ApiState, Resp};
use crate::service::Appliance;

/// The reply body. `status` is `degraded` (not `ok`) while the store refuses writes or the
/// scheduler cannot record its fires; `storage` and `scheduler` say why.
#[derive(Serialize, Debug)]
pub struct Health {
    /// Counters of the API's guards.
    pub api: ApiCounters,
    /// Stored rows that could not be read (`appliance doctor` names them).
    pub damaged_rows: usize,
    /// Peers being served.
    pub peers: usize,
    /// Whether the scheduler can record its fires.
    pub scheduler: Scheduler,
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// Whether the store takes writes, and if not why and since when.
    pub storage: Storage,
    /// The driver's counters.
    pub tunnel: Tunnel,
    /// Seconds since `serve` started.
    pub uptime_s: u64,
    /// The appliance's version.
    pub version: &'static str,
}

/// The API guards' counters.
#[derive(Serialize, Debug)]
pub struct ApiCounters {
    /// Request bodies held in memory now.
    pub buffered_body_bytes: u64,
    /// Requests refused with 403 for their role.
    pub denied_attempts: u64,
    /// Requests refused with 429 for the write rate.
    pub rate_limited: u64,
    /// Requests refused with 503 over the body budget.
    pub refused_over_buffer_budget: u64,
}

/// The scheduler's side of health.
#[derive(Serialize, Debug)]
pub struct Scheduler {
    /// `false` while fires cannot be written to the store.
    pub recording: bool,
}

/// The store's side of health.
#[derive(Serialize, Debug)]
pub struct Storage {
    /// The failing write was refused for a full disk or quota.
    pub disk_full: bool,
    /// Why writes fail, `null` while writable.
    pub reason: Option<String>,
    /// Since when (RFC 3339), `null` while writable.
    pub since: Option<String>,
    /// Whether writes succeed.
    pub writable: bool,
}

/// The driver's counters.
#[derive(Serialize, Debug)]
pub struct Tunnel {
    /// TCP connections accepted.
    pub connections_accepted: u64,
    /// SYNs refused over a connection cap.
    pub connections_refused: u64,
    /// Decrypted packets from outside their peer's allowed IPs.
    pub dropped_spoofed: u64,
    /// Messages from unknown keys or for unknown indices.
    pub dropped_unknown_peer: u64,
    /// Authenticated handshakes answered.
    pub handshakes: u64,
    /// TCP connections held now.
    pub open_connections: u64,
}

/// The health of `service` as it is now.
pub fn health(service: &Appliance, api: &ApiState) -> Health {
    let m = service.metrics();
    let g = &api.guards;
    let peers = service.directory().read().unwrap().len();
    let damaged_rows = service.damaged_rows();
    let storage = service.store().health();
    let recording = service.jobs().recording();
    let status = if storage.writable && recording && damaged_rows == 0 {
        "ok"
    } else {
        "degraded"
    };
    Health {
        api: ApiCounters {
            buffered_body_bytes: g.buffers.in_use.load(Ordering::Relaxed),
            denied_attempts: g.denied_attempts.load(Ordering::Relaxed),
            rate_limited: g.rate_limited.load(Ordering::Relaxed),
            refused_over_buffer_budget: g.buffers.refused.load(Ordering::Relaxed),
        },
        damaged_rows,
        peers,
        scheduler: Scheduler { recording },
        status,
        storage: Storage {
            disk_full: storage.disk_full,
            reason: storage.reason,
            since: storage.since.map(|t| t.to_string()),
            writable: storage.writable,
        },
        tunnel: Tunnel {
            connections_accepted: m.connections_accepted.load(Ordering::Relaxed),
            connections_refused: m.connections_refused.load(Ordering::Relaxed),
            dropped_spoofed: m.dropped_spoofed.load(Ordering::Relaxed),
            dropped_unknown_peer: m.dropped_unknown_peer.load(Ordering::Relaxed),
            handshakes: m.handshakes.load(Ordering::Relaxed),
            open_connections: m.open_connections.load(Ordering::Relaxed),
        },
        uptime_s: service.started().elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// The 200 reply carrying `body`.
pub fn reply(body: &Health) -> Resp {
    let bytes = serde_json::to_vec(body).expect("the health body always serializes");
    json_bytes(StatusCode::OK, Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use hyper::header::CONTENT_TYPE;

    use super::*;

    /// The typed body writes exactly the bytes of the `Value` tree it replaced (whose maps
    /// order keys alphabetically), degraded or not, so no client sees a change.
    #[test]
    fn the_typed_body_writes_what_the_value_tree_wrote() {
        for degraded in [false, true] {
            let h = Health {
                api: ApiCounters {
                    buffered_body_bytes: 1,
                    denied_attempts: 2,
                    rate_limited: 3,
                    refused_over_buffer_budget: 4,
                },
                damaged_rows: 5,
                peers: 6,
                scheduler: Scheduler {
                    recording: !degraded,
                },
                status: if degraded { "degraded" } else { "ok" },
                storage: Storage {
                    disk_full: degraded,
                    reason: degraded.then(|| "No space left on device".to_string()),
                    since: degraded.then(|| "2026-12-02T12:00:00Z".to_string()),
                    writable: !degraded,
                },
                tunnel: Tunnel {
                    connections_accepted: 7,
                    connections_refused: 8,
                    dropped_spoofed: 9,
                    dropped_unknown_peer: 10,
                    handshakes: 11,
                    open_connections: 12,
                },
                uptime_s: 13,
                version: env!("CARGO_PKG_VERSION"),
            };
            let typed = serde_json::to_string(&h).unwrap();
            let tree = serde_json::to_value(&h).unwrap().to_string();
            assert_eq!(typed, tree);
            assert!(
                typed.starts_with(r#"{"api":{"buffered_body_bytes":1,"#),
                "{typed}"
            );
            let body = reply(&h);
            assert_eq!(body.headers()[CONTENT_TYPE], "application/json");
        }
    }
}
