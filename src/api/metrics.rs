//! `GET /metrics`: the appliance in Prometheus text format, for viewers and up.
//!
//! A Prometheus server is simply a peer (role `viewer`) that scrapes
//! `http://10.88.88.1:8888/metrics` through its tunnel. Every label value is chosen by the
//! appliance: peer names (set by an admin), route templates, fixed causes and results.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;

use super::{ApiError, ApiResult, Ctx};
use crate::metrics::{self, Exposition};
use crate::model::PeerStats;

/// A peer counts as online when its last handshake is at most this old (WireGuard's
/// `REJECT_AFTER_TIME`: a session older than this carries no data).
pub const ONLINE_WITHIN_S: u64 = 180;

/// A driver counter's value as a sample.
fn load(a: &std::sync::atomic::AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// One per-peer family: its header, then a `peer="NAME"` sample for each peer `value` has
/// one for.
fn per_peer(
    e: &mut Exposition,
    name: &str,
    help: &str,
    kind: &str,
    totals: &[(String, PeerStats)],
    value: impl Fn(&PeerStats) -> Option<f64>,
) {
    e.family(name, help, kind);
    for (peer, s) in totals {
        if let Some(v) = value(s) {
            e.sample(name, &[("peer", peer)], v);
        }
    }
}

pub(super) async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let service = ctx.service;
    let totals = service
        .sample_stats()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let now = crate::service::unix_now();
    let (peers, enabled) = {
        let dir = service.directory().read().unwrap();
        (dir.len(), dir.iter().filter(|p| p.enabled).count())
    };
    let online = totals
        .iter()
        .filter(|(_, s)| {
            s.last_handshake
                .is_some_and(|t| now.saturating_sub(t) <= ONLINE_WITHIN_S)
        })
        .count();

    let mut e = Exposition::new();
    e.family(
        "appliance_build_info",
        "Always 1; the labels say which appliance is running.",
        "gauge",
    );
    e.sample(
        "appliance_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("schema", &crate::store::SCHEMA_VERSION.to_string()),
        ],
        1.0,
    );
    e.single(
        "appliance_uptime_seconds",
        "Seconds since this appliance process started serving.",
        "gauge",
        service.started().elapsed().as_secs_f64(),
    );
    e.single(
        "appliance_damaged_rows",
        "Stored rows skipped as damaged (see `appliance doctor`).",
        "gauge",
        service.damaged_rows() as f64,
    );

    // Peers and the tunnel.
    e.single(
        "appliance_peers",
        "Peers configured.",
        "gauge",
        peers as f64,
    );
    e.single(
        "appliance_peers_enabled",
        "Peers configured and enabled.",
        "gauge",
        enabled as f64,
    );
    e.single(
        "appliance_peers_online",
        "Peers with a WireGuard handshake in the last 180 seconds.",
        "gauge",
        online as f64,
    );
    let m = &service.metrics();
    e.single(
        "appliance_wireguard_handshakes_total",
        "WireGuard handshakes completed since start.",
        "counter",
        load(&m.handshakes),
    );
    e.single(
        "appliance_wireguard_cookie_replies_total",
        "Cookie replies sent because the handshake queue was under load.",
        "counter",
        load(&m.cookie_replies),
    );
    e.single(
        "appliance_wireguard_handshakes_dropped_total",
        "Handshake messages dropped under load: the queue was full, or a loud source had no cookie.",
        "counter",
        load(&m.dropped_handshake_overload) + load(&m.dropped_rate_limited),
    );
    e.single(
        "appliance_wireguard_handshake_queue",
        "Handshake messages waiting for their key exchange work.",
        "gauge",
        load(&m.handshake_queue),
    );
    expose_socket_filter(&mut e, m);
    per_peer(
        &mut e,
        "appliance_peer_receive_bytes_total",
        "Bytes received from each peer through the tunnel (kept across restarts).",
        "counter",
        &totals,
        |s| Some(s.rx_bytes as f64),
    );
    per_peer(
        &mut e,
        "appliance_peer_transmit_bytes_total",
        "Bytes sent to each peer through the tunnel (kept across restarts).",
        "counter",
        &totals,
        |s| Some(s.tx_bytes as f64),
    );
    per_peer(
        &mut e,
        "appliance_peer_last_handshake_timestamp_seconds",
        "Unix time of each peer's last WireGuard handshake (peers that had one).",
        "gauge",
        &totals,
        |s| s.last_handshake.map(|t| t as f64),
    );
    e.family(
        "appliance_packets_dropped_total",
        "Packets and TCP SYNs dropped, by cause.",
        "counter",
    );
    for (cause, v) in [
        ("malformed", &m.dropped_malformed),
        ("bad_mac", &m.dropped_bad_mac),
        ("unknown_peer", &m.dropped_unknown_peer),
        ("invalid", &m.dropped_invalid),
        ("spoofed_source", &m.dropped_spoofed),
        ("unroutable_inbound", &m.dropped_unroutable_in),
        ("unroutable_outbound", &m.dropped_unroutable_out),
        ("connection_cap", &m.connections_refused),
    ] {
        e.sample(
            "appliance_packets_dropped_total",
            &[("cause", cause)],
            load(v),
        );
    }
    e.single(
        "appliance_tcp_connections_open",
        "TCP connections the tunnel's stack holds now (half-open included).",
        "gauge",
        load(&m.open_connections),
    );
    e.single(
        "appliance_tcp_connections_accepted_total",
        "TCP connections accepted on the API port since start.",
        "counter",
        load(&m.connections_accepted),
    );
    expose_connection_memory(&mut e, m);

    // HTTP.
    ctx.api.http.expose(&mut e);

    // The scheduler.
    {
        let jobs = service.jobs();
        let (total, paused, running) = jobs.counts();
        e.single("appliance_jobs", "Jobs stored.", "gauge", total as f64);
        e.single(
            "appliance_jobs_paused",
            "Jobs paused.",
            "gauge",
            paused as f64,
        );
        e.single(
            "appliance_runs_in_progress",
            "Runs executing now.",
            "gauge",
            running as f64,
        );
        let (fired, by_status, lateness) = {
            let s = jobs.stats.lock().unwrap();
            (
                s.fired,
                [
                    ("succeeded", s.succeeded),
                    ("failed", s.failed),
                    ("missed", s.missed),
                    ("skipped", s.skipped),
                ],
                s.lateness.0.clone(),
            )
        };
        e.single(
            "appliance_runs_started_total",
            "Runs started (scheduled or run now) since start.",
            "counter",
            fired as f64,
        );
        e.family(
            "appliance_runs_total",
            "Runs recorded since start, by final status.",
            "counter",
        );
        for (status, n) in by_status {
            e.sample("appliance_runs_total", &[("status", status)], n as f64);
        }
        e.family(
            "appliance_run_lateness_seconds",
            "Scheduled time to the first webhook attempt, for scheduled runs.",
            "histogram",
        );
        e.histogram("appliance_run_lateness_seconds", &[], &lateness);
        e.family(
            "appliance_webhook_attempts_total",
            "Webhook HTTP attempts since start, by result.",
            "counter",
        );
        let attempts = jobs.webhook_attempts.snapshot();
        for result in [
            "success",
            "rate_limited",
            "client_error",
            "server_error",
            "other_status",
            "refused",
            "timeout",
            "error",
        ] {
            let n = attempts.get(result).copied().unwrap_or(0);
            e.sample(
                "appliance_webhook_attempts_total",
                &[("result", result)],
                n as f64,
            );
        }
    }

    // Backups written by this server (scheduled, or `appliance backup` while serving).
    {
        let b = &service.backups();
        e.family(
            "appliance_backups_total",
            "Backups this server wrote since start, by result.",
            "counter",
        );
        e.sample(
            "appliance_backups_total",
            &[("result", "ok")],
            b.succeeded.load(Ordering::Relaxed) as f64,
        );
        e.sample(
            "appliance_backups_total",
            &[("result", "failed")],
            b.failed.load(Ordering::Relaxed) as f64,
        );
        e.single(
            "appliance_backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup since start (0: none yet).",
            "gauge",
            b.last_success_unix.load(Ordering::Relaxed) as f64,
        );
    }

    // Storage.
    e.family(
        "appliance_store_commit_duration_seconds",
        "Time each database commit took (write and fsync).",
        "histogram",
    );
    e.histogram(
        "appliance_store_commit_duration_seconds",
        &[],
        &service.store().commit_latency.snapshot(),
    );

    expose_group_commits(&mut e, service.store().group_commit_counts());
    expose_guards_and_storage(&mut e, &ctx.api.guards, &service.store().health());

    let mut r = Response::new(Full::new(Bytes::from(e.finish())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    Ok(r)
}

/// Group commit: how many durable transactions wrote how many grouped changes (job creates
/// and the other writes that go through the group). Their ratio is the mean batch size: about
/// 1 on an idle server, up to the number of concurrent writers under load.
fn expose_group_commits(e: &mut Exposition, (batches, changes): (u64, u64)) {
    e.single(
        "appliance_store_group_commits_total",
        "Durable transactions written by group commit since start.",
        "counter",
        batches as f64,
    );
    e.single(
        "appliance_store_group_commit_changes_total",
        "Changes (such as job creates) those transactions held, since start.",
        "counter",
        changes as f64,
    );
}

/// The block list the router keeps for the kernel's socket filter, and what the kernel dropped
/// on the UDP socket (left out where the kernel does not say).
fn expose_socket_filter(e: &mut Exposition, m: &crate::driver::Metrics) {
    e.single(
        "appliance_wireguard_blocked_sources",
        "Source addresses whose handshake messages are dropped now (in the kernel's socket filter).",
        "gauge",
        load(&m.blocked_sources),
    );
    e.single(
        "appliance_wireguard_source_blocks_total",
        "Times a flooding source was added to the block list since start.",
        "counter",
        load(&m.source_blocks),
    );
    if m.socket_drops_known.load(Ordering::Relaxed) {
        e.single(
            "appliance_udp_socket_drops_total",
            "Datagrams the kernel dropped on the WireGuard socket: refused by the socket filter, a full receive buffer or a bad checksum.",
            "counter",
            load(&m.socket_drops),
        );
    }
}

/// The tunnel stack's socket buffer memory and its evictions at the overall connection cap.
fn expose_connection_memory(e: &mut Exposition, m: &crate::driver::Metrics) {
    e.single(
        "appliance_tcp_socket_buffer_resident_bytes",
        "Bytes of TCP socket buffer memory the tunnel's stack holds now (resident pages).",
        "gauge",
        load(&m.socket_buffer_resident_bytes),
    );
    e.single(
        "appliance_tcp_connections_evicted_total",
        "Idle TCP connections reset at the overall connection cap to make room for a lighter peer.",
        "counter",
        load(&m.connections_evicted),
    );
}

/// The API's limiter counters (the `api` object of `/api/v1/health`) and whether the database
/// takes writes (its `storage` object).
fn expose_guards_and_storage(
    e: &mut Exposition,
    g: &super::Guards,
    storage: &crate::store::StorageHealth,
) {
    e.single(
        "appliance_api_buffered_body_bytes",
        "Request-body bytes the API holds in memory now.",
        "gauge",
        g.buffers.in_use.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "appliance_api_refused_over_buffer_budget_total",
        "Requests refused (503) because their body did not fit the buffer budget.",
        "counter",
        g.buffers.refused.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "appliance_api_rate_limited_total",
        "State-changing requests refused with 429 by the per-peer write rate.",
        "counter",
        g.rate_limited.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "appliance_api_denied_attempts_total",
        "Requests refused for the caller's role (logged in the audit trail or only counted).",
        "counter",
        g.denied_attempts.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "appliance_store_writable",
        "1 while the database takes writes, 0 while they are refused (see /api/v1/health).",
        "gauge",
        if storage.writable { 1.0 } else { 0.0 },
    );
    e.single(
        "appliance_store_disk_full",
        "1 while writes are refused because the disk is full or the quota exceeded.",
        "gauge",
        if storage.disk_full { 1.0 } else { 0.0 },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A per-peer family has one header and a sample per peer that has a value: a peer that
    /// never shook hands has no last-handshake sample.
    #[test]
    fn per_peer_families_sample_each_peer_with_a_value() {
        let totals = vec![
            (
                "alice".to_string(),
                PeerStats {
                    last_handshake: Some(1_700_000_000),
                    rx_bytes: 10,
                    ..PeerStats::default()
                },
            ),
            ("bob".to_string(), PeerStats::default()),
        ];
        let mut e = Exposition::new();
        per_peer(&mut e, "rx_total", "Bytes.", "counter", &totals, |s| {
            Some(s.rx_bytes as f64)
        });
        per_peer(&mut e, "hs_seconds", "Handshake.", "gauge", &totals, |s| {
            s.last_handshake.map(|t| t as f64)
        });
        let text = e.finish();
        assert_eq!(text.matches("# TYPE rx_total counter").count(), 1, "{text}");
        assert!(text.contains("rx_total{peer=\"alice\"} 10\n"), "{text}");
        assert!(text.contains("rx_total{peer=\"bob\"} 0\n"), "{text}");
        assert!(
            text.contains("hs_seconds{peer=\"alice\"} 1700000000\n"),
            "{text}"
        );
        assert!(!text.contains("hs_seconds{peer=\"bob\"}"), "{text}");
    }

    /// Each of `lines` is a whole line of `text`.
    fn assert_lines(text: &str, lines: &[&str]) {
        for line in lines {
            assert!(
                text.lines().any(|l| l == *line),
                "{line} missing in:\n{text}"
            );
        }
    }

    #[test]
    fn the_block_list_and_the_socket_drops_are_exported() {
        let render = |m: &crate::driver::Metrics| {
            let mut e = Exposition::new();
            expose_socket_filter(&mut e, m);
            e.finish()
        };
        let m = crate::driver::Metrics::default();
        m.blocked_sources.store(2, Ordering::Relaxed);
        m.source_blocks.store(7, Ordering::Relaxed);
        m.socket_drops.store(12345, Ordering::Relaxed);
        let text = render(&m);
        assert_lines(
            &text,
            &[
                "# TYPE appliance_wireguard_blocked_sources gauge",
                "appliance_wireguard_blocked_sources 2",
                "# TYPE appliance_wireguard_source_blocks_total counter",
                "appliance_wireguard_source_blocks_total 7",
            ],
        );
        assert!(
            !text.contains("appliance_udp_socket_drops_total"),
            "not read yet, so not exported:\n{text}"
        );
        m.socket_drops_known.store(true, Ordering::Relaxed);
        assert_lines(
            &render(&m),
            &[
                "# TYPE appliance_udp_socket_drops_total counter",
                "appliance_udp_socket_drops_total 12345",
            ],
        );
    }

    #[test]
    fn socket_buffer_memory_and_evictions_are_exported() {
        let m = crate::driver::Metrics::default();
        m.socket_buffer_resident_bytes
            .store(3 * 4096, Ordering::Relaxed);
        m.connections_evicted.store(2, Ordering::Relaxed);
        let mut e = Exposition::new();
        expose_connection_memory(&mut e, &m);
        let text = e.finish();
        assert_lines(
            &text,
            &[
                "# TYPE appliance_tcp_socket_buffer_resident_bytes gauge",
                "appliance_tcp_socket_buffer_resident_bytes 12288",
                "# TYPE appliance_tcp_connections_evicted_total counter",
                "appliance_tcp_connections_evicted_total 2",
            ],
        );
        assert!(
            text.lines()
                .filter(|l| l.starts_with("# HELP appliance_tcp_"))
                .count()
                == 2,
            "{text}"
        );
    }

    /// The group-commit counters are the store's: each create one after another is a batch
    /// of one, so three creates add 3 to both.
    #[test]
    fn group_commit_counters_are_the_stores() {
        let disk = crate::store::testing::Disk::default();
        let store = disk.store();
        let render = |s: &crate::store::Store| {
            let mut e = Exposition::new();
            expose_group_commits(&mut e, s.group_commit_counts());
            e.finish()
        };
        let (batches, changes) = store.group_commit_counts();
        for id in 1..=3 {
            let record = crate::store::testing::job_record(id, &format!("job-{id}"));
            assert!(store.insert_job(&record, None).unwrap());
        }
        let text = render(&store);
        assert_lines(
            &text,
            &[
                "# TYPE appliance_store_group_commits_total counter",
                &format!("appliance_store_group_commits_total {}", batches + 3),
                "# TYPE appliance_store_group_commit_changes_total counter",
                &format!("appliance_store_group_commit_changes_total {}", changes + 3),
            ],
        );
    }

    #[test]
    fn api_guards_and_storage_health_are_exported() {
        let g = super::super::Guards::new(&super::super::ApiConfig::default());
        g.rate_limited.store(3, Ordering::Relaxed);
        g.denied_attempts.store(2, Ordering::Relaxed);
        g.buffers.refused.store(1, Ordering::Relaxed);
        g.buffers.in_use.store(4096, Ordering::Relaxed);
        let full = crate::store::StorageHealth {
            writable: false,
            reason: Some("No space left on device".into()),
            disk_full: true,
            since: None,
        };
        let mut e = Exposition::new();
        expose_guards_and_storage(&mut e, &g, &full);
        let text = e.finish();
        assert_lines(
            &text,
            &[
                "appliance_api_buffered_body_bytes 4096",
                "appliance_api_refused_over_buffer_budget_total 1",
                "appliance_api_rate_limited_total 3",
                "appliance_api_denied_attempts_total 2",
                "appliance_store_writable 0",
                "appliance_store_disk_full 1",
                "# TYPE appliance_store_writable gauge",
                "# TYPE appliance_api_rate_limited_total counter",
            ],
        );
        let ok = crate::store::StorageHealth {
            writable: true,
            reason: None,
            disk_full: false,
            since: None,
        };
        let mut e = Exposition::new();
        expose_guards_and_storage(&mut e, &g, &ok);
        let text = e.finish();
        assert!(
            text.lines().any(|l| l == "appliance_store_writable 1"),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l == "appliance_store_disk_full 0"),
            "{text}"
        );
    }
}
