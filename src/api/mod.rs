//! The HTTP API, served by hyper on connections from the netstack only.
//!
//! Layer: driver (application side). Every connection handed to [`serve_connection`] came
//! through the tunnel; its source address was checked against the sending peer's allowed IPs
//! by the router, so [`Caller`] — resolved from that address for every request — is the
//! request's identity. There is no host TCP socket anywhere in this module or its callers.
//!
//! Before any of this, hyper refuses a request head larger than `max_head` with a 431 and
//! drops a connection that has not sent its head within `header_read_timeout`.
//!
//! Every request passes the same gate, in order:
//! 1. identity: the source address must belong to an enabled peer (else 403);
//! 2. exactly one `Host` (else 400), naming the tunnel address or a configured name (else 403:
//!    DNS rebinding); an absolute-form target must name the same (else 400);
//! 3. at most one `Origin` (else 403); a state-changing request whose `Origin` is present must
//!    come from our own origin, and its `Sec-Fetch-Site` must not be `cross-site` or
//!    `same-site` (else 403: CSRF from other pages and apps on the same phone);
//! 4. a state-changing request takes a token from the peer's write bucket (else 429 with
//!    `Retry-After`) — except a handler's calls to `/api/v1/tasks/…` (lease, heartbeat, ack,
//!    fail): their pace is the work the scheduler queued, bounded by its leases, and a busy
//!    handler must not be throttled into missing lease expiries;
//! 5. a request body must be `application/json` (else 415) and at most `max_body` — a larger
//!    `Content-Length` is refused before any of the body is read (413) — must fit the peer's
//!    and the appliance's buffer budgets (else 503) and must arrive within `body_timeout` plus
//!    its length at `min_body_rate` (else 408, and the connection closes);
//! 6. the route's role requirement (else 403 naming the role needed; written to the audit
//!    trail as `denied`, at most once a minute per peer and route, the rest counted).
//!
//! ScheduleZero's routes (`/api/schedule`, `/api/schedules`, …) are served alongside ours by
//! `schedulezero`, under the same gate.
//!
//! `HEAD` is served wherever `GET` is (same headers, no body). No CORS headers are ever sent.
//! Errors are always `{"error":{"code","message","field"}}`.

mod audit;
pub mod audit_text;
pub mod body;
mod context;
mod endpoint;
pub mod health;
mod hygiene;
mod jobs;
pub mod limits;
mod members;
mod metrics;
mod preview;
pub mod routes;
mod schedulezero;
mod tasks;
mod ui;
pub mod view;

pub use audit::parse_since;
pub use context::*;
pub use hygiene::*;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};

use crate::model::Actor;
use crate::netstack::stream::Connection;
use crate::service::Appliance;
use crate::store::StoreError;

/// Tunables of the HTTP side (all configurable on `serve`).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Names besides the tunnel address that `Host` may carry (e.g. a local DNS name).
    pub extra_hosts: Vec<String>,
    /// Largest request body accepted.
    pub max_body: usize,
    /// How long a client may take to send a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Concurrent HTTP connections one peer may hold; the next few get a 429 and are closed,
    /// and the netstack drops SYNs beyond those before allocating anything
    /// (`netstack::Limits::for_api_cap`).
    pub max_connections_per_peer: usize,
    /// Largest request head (request line and headers), in bytes; larger gets a 431. hyper's
    /// read buffer is capped at this, so it is also the memory a connection holds for a head.
    pub max_head: usize,
    /// Time a body may take beyond what `min_body_rate` allows for its length.
    pub body_timeout: Duration,
    /// Slowest body transfer accepted, in bytes per second.
    pub min_body_rate: u64,
    /// State-changing requests per peer.
    pub write_rate: limits::Rate,
    /// Request-body bytes one peer may have in memory at once.
    pub max_buffered_per_peer: u64,
    /// Request-body bytes all peers together may have in memory at once.
    pub max_buffered_total: u64,
}

/// Smallest `max_head` hyper accepts.
pub const MIN_HEAD: usize = 8 * 1024;

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            extra_hosts: Vec::new(),
            max_body: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            max_connections_per_peer: 32,
            max_head: 16 * 1024,
            body_timeout: Duration::from_secs(10),
            min_body_rate: 1024,
            write_rate: limits::Rate::default(),
            max_buffered_per_peer: 1024 * 1024,
            max_buffered_total: 16 * 1024 * 1024,
        }
    }
}

/// Per-peer limiters and budgets of the running API (see [`limits`]); built from [`ApiConfig`].
#[derive(Debug)]
pub struct Guards {
    writes: Mutex<limits::WriteLimiter>,
    denied: Mutex<limits::DeniedLog>,
    /// Request-body bytes in memory; `buffers.in_use` is the metric.
    pub buffers: limits::BufferBudget,
    /// State-changing requests refused with 429 since start.
    pub rate_limited: std::sync::atomic::AtomicU64,
    /// Refused privileged attempts since start (logged or only counted).
    pub denied_attempts: std::sync::atomic::AtomicU64,
}

/// The HTTP side's own state, next to (not inside) the [`Appliance`] it serves: its
/// configuration, open connections per peer, write limiters and buffer budgets, request
/// metrics. Built once from the [`ApiConfig`].
#[derive(Debug)]
pub struct ApiState {
    /// HTTP limits and allowed host names.
    pub config: ApiConfig,
    /// Open HTTP connections per peer address.
    pub connections: ConnectionCounts,
    /// Write rate limits, refused-attempt log and buffer budgets (with their counters, shown
    /// in `/api/v1/health` under `api`).
    pub guards: Guards,
    /// HTTP requests by route template and status, with latencies (`GET /metrics`).
    pub http: crate::metrics::HttpMetrics,
}

impl ApiState {
    /// Fresh state for the given configuration: no connections, empty limiters.
    pub fn new(config: ApiConfig) -> ApiState {
        ApiState {
            guards: Guards::new(&config),
            config,
            connections: ConnectionCounts::default(),
            http: Default::default(),
        }
    }
}

/// One audit entry per peer and route per this window for refused privileged attempts.
pub const DENIED_LOG_WINDOW: Duration = Duration::from_secs(60);

impl Guards {
    /// Limiters sized by the configuration.
    pub fn new(cfg: &ApiConfig) -> Guards {
        Guards {
            writes: Mutex::new(limits::WriteLimiter::new(cfg.write_rate)),
            denied: Mutex::new(limits::DeniedLog::new(DENIED_LOG_WINDOW)),
            buffers: limits::BufferBudget::new(cfg.max_buffered_per_peer, cfg.max_buffered_total),
            rate_limited: Default::default(),
            denied_attempts: Default::default(),
        }
    }
}

/// The driver's clock for the limiters (they take `now`).
#[allow(clippy::disallowed_methods)] // driver: the API task reads the clock for the pure limiters
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// The port the API listens on inside the tunnel, [`crate::API_PORT`] (the startup log and the
/// Host/Origin checks read it).
pub const PORT: u16 = crate::API_PORT;

/// Counts open HTTP connections per peer address.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    open: Mutex<HashMap<Ipv4Addr, usize>>,
}

struct ConnectionSlot<'a> {
    counts: &'a ConnectionCounts,
    ip: Ipv4Addr,
}

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl ConnectionCounts {
    fn acquire(&self, ip: Ipv4Addr, max: usize) -> Option<ConnectionSlot<'_>> {
        let mut open = self.open.lock().unwrap();
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot { counts: self, ip })
    }
}

/// Serves HTTP/1.1 (keep-alive) on one tunnel connection, on its own task.
pub fn serve_connection(conn: Connection, service: Arc<Appliance>, api: Arc<ApiState>) {
    let remote = conn.remote;
    let endpoint = conn.endpoint;
    tokio::spawn(async move {
        let cfg = api.config.clone();
        let slot = api
            .connections
            .acquire(*remote.ip(), cfg.max_connections_per_peer);
        let over_limit = slot.is_none();
        let svc_service = service.clone();
        let svc_api = api.clone();
        let svc = hyper::service::service_fn(move |req| {
            let service = svc_service.clone();
            let api = svc_api.clone();
            async move {
                if over_limit {
                    let mut r = ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_connections",
                        format!(
                            "this peer already has {} open connections; close some and retry",
                            cfg.max_connections_per_peer
                        ),
                    )
                    .into_response();
                    r.headers_mut()
                        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                    return Ok::<_, Infallible>(r);
                }
                Ok::<_, Infallible>(handle(&service, &api, remote, endpoint, req).await)
            }
        });
        let result = hyper::server::conn::http1::Builder::new()
            .keep_alive(!over_limit)
            .timer(TokioTimer::new())
            .header_read_timeout(api.config.header_read_timeout)
            // Caps the read buffer: a head that does not fit gets hyper's 431 and the
            // connection closes, so a connection holds at most this much for a head.
            .max_buf_size(api.config.max_head.max(MIN_HEAD))
            .serve_connection(TokioIo::new(conn.stream), svc)
            .await;
        drop(slot);
        if let Err(e) = result {
            tracing::debug!(%remote, error = %e, "connection ended with error");
        }
    });
}

fn caller(
    service: &Appliance,
    remote: SocketAddrV4,
    endpoint: Option<SocketAddr>,
) -> Option<Caller> {
    let dir = service.directory().read().unwrap();
    dir.by_address(*remote.ip()).map(|p| Caller {
        name: p.name.to_string(),
        role: p.role,
        address: *remote.ip(),
        fingerprint: p.public_key.fingerprint(),
        endpoint,
    })
}

// Driver (application side): times each request for `GET /metrics`.
#[allow(clippy::disallowed_methods)]
async fn handle(
    service: &Appliance,
    api: &ApiState,
    remote: SocketAddrV4,
    endpoint: Option<SocketAddr>,
    req: Request<Incoming>,
) -> Resp {
    let started = std::time::Instant::now();
    let route = route_template(req.uri().path());
    let method = method_label(req.method());
    let r = secure(
        match gate_and_route(service, api, remote, endpoint, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        },
    );
    api.http
        .record(route, method, r.status().as_u16(), started.elapsed());
    r
}

/// The route a path belongs to, as a template (`/api/v1/jobs/{id}`), for metric labels: a
/// fixed, small set whatever the client sends; anything unknown is `other`.
pub fn route_template(path: &str) -> &'static str {
    routes::template(&path_segments(path)).unwrap_or("other")
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

async fn gate_and_route(
    service: &Appliance,
    api: &ApiState,
    remote: SocketAddrV4,
    endpoint: Option<SocketAddr>,
    req: Request<Incoming>,
) -> ApiResult {
    let Some(who) = caller(service, remote, endpoint) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_peer",
            "this tunnel address belongs to no enabled peer",
        ));
    };
    let tunnel = service.server().interface.addr();
    let extra = &api.config.extra_hosts;
    check_target(tunnel, extra, &req)?;
    let method = req.method().clone();
    let state_changing = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    check_origin(tunnel, extra, req.headers(), state_changing)?;
    if state_changing && !task_call(&who, req.uri().path()) {
        let limited = api.guards.writes.lock().unwrap().check(*remote.ip(), now());
        if let Err(wait) = limited {
            api.guards.rate_limited.fetch_add(1, Ordering::Relaxed);
            let secs = limits::retry_after_secs(wait);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{} is making changes faster than {}/s (burst {}); retry in {secs} s",
                    who.name, api.config.write_rate.per_second, api.config.write_rate.burst
                ),
            );
            e.retry_after = Some(secs);
            e.close = has_body(req.headers());
            return Err(e);
        }
    }
    let (parts, incoming) = req.into_parts();
    let body = if has_body(&parts.headers) {
        Some(read_body(api, *remote.ip(), &parts.headers, incoming).await?)
    } else {
        None
    };
    let path = parts.uri.path().to_string();
    let actor = who.clone();
    // HEAD is GET without the body: hyper sends the headers (Content-Length included) only.
    let route_method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    let result = route(service, api, who, route_method, parts.uri, body).await;
    if let Err(e) = &result {
        if e.code == "forbidden_role" {
            record_denied(service, api, &actor, &method, &path, &e.message).await;
        }
    }
    result
}

/// Writes a refused privileged attempt to the audit trail (rate-limited per peer and route).
async fn record_denied(
    service: &Appliance,
    api: &ApiState,
    who: &Caller,
    method: &Method,
    path: &str,
    why: &str,
) {
    api.guards.denied_attempts.fetch_add(1, Ordering::Relaxed);
    let route = limits::route_key(method.as_str(), path);
    let Some(earlier) = api
        .guards
        .denied
        .lock()
        .unwrap()
        .record(&who.name, &route, now())
    else {
        return;
    };
    let entry = crate::model::AuditEntry {
        seq: 0,
        at_ms: crate::service::unix_now_ms(),
        actor: who.actor(),
        action: crate::model::AuditAction::Denied,
        target: Some(route.clone()),
        summary: json!({
            "route": route,
            "role": who.role.as_str(),
            "reason": why,
            "earlier_attempts_not_logged": earlier,
        }),
    };
    let store = service.store().clone();
    let written = tokio::task::spawn_blocking(move || store.audit(entry))
        .await
        .expect("store task does not panic");
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not audit a refused attempt");
    }
}

async fn route(
    service: &Appliance,
    api: &ApiState,
    who: Caller,
    method: Method,
    uri: hyper::Uri,
    body: Option<Value>,
) -> ApiResult {
    let path = uri.path().to_string();
    tracing::debug!(peer = %who.name, %method, %path, "request");
    let ctx = Ctx {
        service,
        api,
        caller: who,
        query: parse_query(uri.query()),
        body,
    };
    let segs = path_segments(&path);
    if ctx.caller.role == ::peers::Role::Handler && !routes::handler_may_call(&segs) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            format!(
                "this needs the viewer, officer or admin role; {} is a handler, and handlers may call only health, whoami, openapi.json, PUT /api/v1/handler and /api/v1/tasks/…",
                ctx.caller.name
            ),
        ));
    }
    let (route, params) = match routes::lookup(method.as_str(), &segs) {
        routes::Lookup::Found(route, params) => (route, params),
        routes::Lookup::MethodNotAllowed => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            ))
        }
        routes::Lookup::NotFound => {
            return Err(match segs.as_slice() {
                ["api", first, rest @ ..] if *first != "v1" => {
                    let segs: Vec<&str> = std::iter::once(*first)
                        .chain(rest.iter().copied())
                        .collect();
                    schedulezero::not_found(&segs)
                }
                _ => ApiError::not_found(format!("no endpoint at {path}")),
            })
        }
    };
    // The one role check: the route's, from the table.
    ctx.require(route.need)?;
    dispatch(&ctx, route.handler, &params).await
}

/// Runs the handler of a route whose role check passed.
async fn dispatch(ctx: &Ctx<'_>, handler: routes::Handler, params: &[&str]) -> ApiResult {
    use routes::Handler as H;
    match handler {
        H::Index => Ok(ui::index()),
        H::Asset => ui::asset(params[0]),
        H::SchedulePreview => preview::route(ctx).await,
        H::Health => health(ctx),
        H::Whoami => ok(json!({
            "peer": ctx.caller.name,
            "role": ctx.caller.role.as_str(),
            "address": ctx.caller.address.to_string(),
            "permitted": routes::permitted(ctx.caller.role),
        })),
        H::Audit => audit::list(ctx).await,
        H::EndpointGet => endpoint::get(ctx),
        H::EndpointPut => endpoint::put(ctx).await,
        H::Metrics => metrics::get(ctx).await,
        H::OpenApi => Ok(openapi()),
        H::Runs => jobs::runs(ctx, None).await,
        H::Stats => jobs::stats(ctx).await,
        H::Peer(r) => members::handle(ctx, r, params).await,
        H::Job(r) => jobs::handle(ctx, r, params).await,
        H::HandlerRegister => tasks::register(ctx).await,
        H::HandlersList => tasks::list(ctx).await,
        H::Task(r) => tasks::handle(ctx, r, params).await,
        H::ScheduleZero(r) => schedulezero::handle(ctx, r, params).await,
    }
}

/// A request path's segments after the leading `/`, trailing slashes ignored:
/// `/api/v1/jobs/` is `["api", "v1", "jobs"]` (fuzzed as `http_gate`).
#[doc(hidden)]
pub fn path_segments(path: &str) -> Vec<&str> {
    path.trim_end_matches('/').split('/').skip(1).collect()
}

/// Whether a request is a handler working its queue (`/api/v1/tasks/…` from a handler peer):
/// exempt from the write bucket. Its rate is set by the tasks the scheduler queued for it
/// (each lease, heartbeat, ack or fail names one of its own tasks), and throttling it would
/// let leases expire and calls run twice. Other peers get no exemption.
fn task_call(who: &Caller, path: &str) -> bool {
    who.role == ::peers::Role::Handler && path.starts_with("/api/v1/tasks/")
}

fn health(ctx: &Ctx<'_>) -> ApiResult {
    Ok(health::reply(&health::health(ctx.service, ctx.api)))
}

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

fn openapi() -> Resp {
    json_bytes(StatusCode::OK, Bytes::from_static(OPENAPI.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 1);

    #[test]
    fn host_check_accepts_only_our_names() {
        let extra = vec!["Guild.LAN".to_string()];
        assert!(host_allowed(T, &extra, "10.88.88.1"));
        assert!(host_allowed(T, &extra, "10.88.88.1:8888"));
        assert!(host_allowed(T, &extra, "guild.lan:8888"));
        assert!(!host_allowed(T, &extra, "evil.example"));
        assert!(!host_allowed(T, &extra, "10.88.88.1:9999"));
        assert!(!host_allowed(T, &extra, ""));
        assert!(!host_allowed(T, &[], "guild.lan"));
    }

    #[test]
    fn origin_check_is_exact() {
        assert!(origin_allowed(T, &[], "http://10.88.88.1:8888"));
        assert!(origin_allowed(T, &[], "http://10.88.88.1"));
        assert!(!origin_allowed(T, &[], "https://10.88.88.1:8888"));
        assert!(!origin_allowed(T, &[], "http://10.88.88.1.evil.example"));
        assert!(!origin_allowed(T, &[], "null"));
        assert!(!origin_allowed(T, &[], "http://10.88.88.1:8888/x"));
    }

    #[test]
    fn roles_form_a_ladder() {
        use ::peers::Role::*;
        assert!(Need::Any.allows(Handler));
        assert!(!Need::Read.allows(Handler));
        assert!(Need::Read.allows(Viewer));
        assert!(!Need::Operate.allows(Viewer));
        assert!(Need::Operate.allows(Officer));
        assert!(!Need::Admin.allows(Officer));
        assert!(Need::Admin.allows(Admin));
        assert!(Need::Handler.allows(Handler));
        assert!(!Need::Handler.allows(Admin), "admins do not lease");
    }

    #[test]
    fn handlers_reach_only_the_pinned_routes() {
        let p = |s: &str| -> bool {
            let segs: Vec<&str> = s.trim_end_matches('/').split('/').skip(1).collect();
            routes::handler_may_call(&segs)
        };
        for ok in [
            "/api/v1/health",
            "/api/v1/whoami",
            "/api/v1/handler",
            "/api/v1/tasks/lease",
            "/api/v1/tasks/00/ack",
            "/",
            "/api/v1/openapi.json",
        ] {
            assert!(p(ok), "{ok}");
        }
        for no in [
            "/api/v1/jobs",
            "/api/v1/handlers",
            "/api/v1/runs",
            "/api/v1/peers",
            "/api/v1/stats",
            "/api/v1/audit",
        ] {
            assert!(!p(no), "{no}");
        }
    }

    #[test]
    fn query_strings_decode() {
        let q = parse_query(Some(
            "since=2026-11-22T05%3A00%3A00Z&limit=5&x&y=a+b&bad=%zz",
        ));
        assert_eq!(q["since"], "2026-11-22T05:00:00Z");
        assert_eq!(q["limit"], "5");
        assert_eq!(q["x"], "");
        assert_eq!(q["y"], "a b");
        assert_eq!(q["bad"], "%zz");
    }

    #[test]
    fn percent_needs_two_hex_digits_not_a_sign() {
        let q = parse_query(Some("a=%+1&b=%-1&c=%41"));
        assert_eq!(q["a"], "% 1");
        assert_eq!(q["b"], "%-1");
        assert_eq!(q["c"], "A");
    }

    #[test]
    fn connection_slots_are_counted_per_peer_and_released() {
        let counts = ConnectionCounts::default();
        let a = Ipv4Addr::new(10, 88, 88, 2);
        let b = Ipv4Addr::new(10, 88, 88, 3);
        let s1 = counts.acquire(a, 2).unwrap();
        let s2 = counts.acquire(a, 2).unwrap();
        assert!(
            counts.acquire(a, 2).is_none(),
            "third connection of a is refused"
        );
        let _b1 = counts.acquire(b, 2).expect("b has its own budget");
        drop(s1);
        let _s3 = counts.acquire(a, 2).expect("a released slot is reusable");
        drop(s2);
    }

    /// A running service (scheduler included, no network driver) on a test disk.
    #[allow(clippy::disallowed_methods)] // a driver-side value: the service's start time
    pub(super) fn service_on(disk: &crate::store::testing::Disk) -> Arc<Appliance> {
        let store = Arc::new(disk.store());
        let server = crate::model::ServerRecord {
            private_key: ::peers::PrivateKey::generate(&mut rand_core::OsRng),
            listen_port: 51820,
            interface: ::peers::Ipv4Net::parse("10.88.88.1/24").unwrap(),
            endpoint: ::peers::Endpoint::parse("vpn.example", 51820).unwrap(),
            created_at: 0,
        };
        // The network side stands in: every peer change is "live" at once.
        let (commands, mut network) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            use crate::driver::Command;
            while let Some(command) = network.recv().await {
                match command {
                    Command::UpsertPeer(_, done) | Command::RemovePeer { done, .. } => {
                        let _ = done.send(());
                    }
                    Command::PeerStats(done) => {
                        let _ = done.send(vec![]);
                    }
                }
            }
        });
        let (_, stop) = tokio::sync::watch::channel(false);
        let (jobs, _) = crate::scheduler::start(store.clone(), Default::default(), stop).unwrap();
        Arc::new(Appliance::new(crate::service::ApplianceParts {
            store,
            server,
            listen: "[::]:51820".parse().unwrap(),
            data_dir: std::env::temp_dir(),
            commands,
            directory: Default::default(),
            metrics: Default::default(),
            stats: Default::default(),
            started: std::time::Instant::now(),
            jobs,
            damaged_rows: 0,
        }))
    }

    pub(super) async fn call(
        service: &Appliance,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call_as(service, ::peers::Role::Admin, method, path, body).await
    }

    /// A request from a peer "leader" with this role (not looked up: the role is given).
    pub(super) async fn call_as(
        service: &Appliance,
        role: ::peers::Role,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let who = Caller {
            name: "leader".into(),
            role,
            address: Ipv4Addr::new(10, 88, 88, 2),
            fingerprint: "f".into(),
            endpoint: None,
        };
        let api = ApiState::new(ApiConfig::default());
        let r = match route(service, &api, who, method, path.parse().unwrap(), body).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        // The dashboard's page and assets are not JSON.
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A serving `appliance status` takes its job totals and next fires from the scheduler's
    /// table: no job row is read (`Store::job_rows_read`), and it says what the rows say.
    #[tokio::test]
    async fn a_serving_status_reads_no_job_row() {
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        for i in 0..8 {
            let job = json!({
                "name": format!("job-{i}"),
                "trigger": {"every": format!("{}h", i + 1)},
                "paused": i % 3 == 0,
                "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/t"}},
            });
            let (status, body) = call(&service, Method::POST, "/api/v1/jobs", Some(job)).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let store = service.store().clone();
        let before = store.job_rows_read();
        let serving = service.status().await.unwrap();
        assert_eq!(store.job_rows_read(), before, "no job row read");
        assert_eq!((serving.jobs.total, serving.jobs.paused), (8, 3));
        let names: Vec<&str> = serving.jobs.next.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["job-1", "job-2", "job-4", "job-5", "job-7"]);
        let offline = crate::status::collect(
            &store,
            &service.server(),
            None,
            crate::status::HostChecks::default(),
            serving.now,
        )
        .unwrap();
        assert_eq!(
            serving.jobs, offline.jobs,
            "the same as from the stored rows"
        );
    }

    // Deterministic: the scheduler's startup sweep (prune) writes nothing on an empty store,
    // so only the test's own operations touch the failing disk.
    #[tokio::test]
    async fn a_full_disk_answers_507_with_a_sentence_and_health_says_degraded() {
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        let job = json!({
            "name": "raid-reminder",
            "trigger": {"cron": "45 19 * * THU"},
            "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/t"}},
        });
        let (status, health) = call(&service, Method::GET, "/api/v1/health", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(health["status"], "ok");
        assert_eq!(health["storage"]["writable"], true);

        disk.set_failing(true);
        let (status, body) = call(&service, Method::POST, "/api/v1/jobs", Some(job.clone())).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
        assert_eq!(
            body["error"],
            json!({
                "code": "insufficient_storage",
                "message": "the appliance's disk is full: nothing was saved; free space on the server and try again",
                "field": null,
            })
        );
        let (_, health) = call(&service, Method::GET, "/api/v1/health", None).await;
        assert_eq!(health["status"], "degraded", "{health}");
        assert_eq!(health["storage"]["writable"], false);
        assert_eq!(health["storage"]["disk_full"], true);
        assert!(health["storage"]["since"].is_string(), "{health}");
        assert!(
            health["storage"]["reason"]
                .as_str()
                .unwrap()
                .contains("No space left"),
            "{health}"
        );
        // Reads served from memory keep working; nothing of the refused create is visible.
        let (status, list) = call(&service, Method::GET, "/api/v1/jobs", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["jobs"], json!([]));

        disk.set_failing(false);
        let (status, body) = call(&service, Method::POST, "/api/v1/jobs", Some(job)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (_, health) = call(&service, Method::GET, "/api/v1/health", None).await;
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["storage"]["reason"], Value::Null);
        assert_eq!(health["scheduler"]["recording"], true);
    }

    /// One raw HTTP/1.1 request from `from` through hyper and the whole gate (`handle`), over
    /// an in-memory pipe: the status line, the header lines (lower case, `date` left out, as
    /// it may tick between two calls) and the body bytes.
    async fn exchange(
        service: &Arc<Appliance>,
        from: SocketAddrV4,
        method: &str,
        path: &str,
    ) -> (String, Vec<String>, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let api = Arc::new(ApiState::new(ApiConfig::default()));
        let service = service.clone();
        let svc = hyper::service::service_fn(move |req| {
            let (service, api) = (service.clone(), api.clone());
            async move { Ok::<_, Infallible>(handle(&service, &api, from, None, req).await) }
        });
        let conn = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(server), svc),
        );
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 10.88.88.1:8888\r\nConnection: close\r\n\r\n"
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        conn.await.unwrap().unwrap();
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let head = String::from_utf8(out[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().to_string();
        let mut headers: Vec<String> = lines
            .map(str::to_ascii_lowercase)
            .filter(|l| !l.starts_with("date:"))
            .collect();
        headers.sort();
        (status, headers, out[end + 4..].to_vec())
    }

    /// Item 11 of issue 13, without root: HEAD answers like GET (status, every header,
    /// Content-Length included) with no body, on pages, assets, JSON and admin routes; on a
    /// POST-only route it is refused as GET is (405).
    #[tokio::test]
    async fn head_answers_like_get_without_a_body() {
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        assert!(service.store().init_server(&service.server()).unwrap());
        let key = ::peers::PrivateKey::generate(&mut rand_core::OsRng).public_key();
        let rec = service
            .add_peer(
                crate::registry::AddPeer {
                    name: ::peers::PeerName::new("leader").unwrap(),
                    role: ::peers::Role::Admin,
                    public_key: key,
                    preshared_key: None,
                    extra_allowed_ips: vec![],
                },
                Actor::local_cli(),
            )
            .await
            .unwrap();
        // The stand-in network does not keep the directory; the driver would.
        service.directory().write().unwrap().upsert(rec.clone());
        let from = SocketAddrV4::new(rec.address, 40000);
        for (path, status) in [
            ("/", "HTTP/1.1 200 OK"),
            ("/assets/app.js", "HTTP/1.1 200 OK"),
            ("/api/v1/openapi.json", "HTTP/1.1 200 OK"),
            ("/api/v1/jobs", "HTTP/1.1 200 OK"),
            ("/api/v1/whoami", "HTTP/1.1 200 OK"),
            ("/api/v1/peers", "HTTP/1.1 200 OK"),
            (
                "/api/v1/schedule/preview",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            ("/api/run_now", "HTTP/1.1 405 Method Not Allowed"),
        ] {
            let (get_status, get_headers, get_body) = exchange(&service, from, "GET", path).await;
            let (head_status, head_headers, head_body) =
                exchange(&service, from, "HEAD", path).await;
            assert_eq!(get_status, status, "GET {path}");
            assert_eq!(head_status, status, "HEAD {path}");
            assert!(!get_body.is_empty(), "GET {path} has a body");
            assert!(
                head_body.is_empty(),
                "HEAD {path} sent a body: {:?}",
                String::from_utf8_lossy(&head_body)
            );
            assert!(
                get_headers.contains(&format!("content-length: {}", get_body.len())),
                "GET {path}: {get_headers:?}"
            );
            assert_eq!(head_headers, get_headers, "HEAD {path} headers");
        }
    }

    #[test]
    fn only_a_handlers_task_calls_skip_the_write_bucket() {
        let who = |role| Caller {
            name: "bot".into(),
            role,
            address: Ipv4Addr::new(10, 88, 88, 9),
            fingerprint: "f".into(),
            endpoint: None,
        };
        use ::peers::Role::*;
        assert!(task_call(&who(Handler), "/api/v1/tasks/lease"));
        assert!(task_call(&who(Handler), "/api/v1/tasks/12/ack"));
        assert!(
            !task_call(&who(Handler), "/api/v1/handler"),
            "registration is a write like others"
        );
        assert!(!task_call(&who(Handler), "/api/v1/jobs"));
        assert!(!task_call(&who(Admin), "/api/v1/tasks/lease"));
        assert!(!task_call(&who(Officer), "/api/v1/tasks/12/ack"));
    }

    // Deterministic: the scheduler's startup sweep (prune) writes nothing on an empty store,
    // so only the test's own operations touch the failing disk.
    #[tokio::test]
    async fn endpoint_put_is_refused_whole_on_a_full_disk_and_live_after() {
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        assert!(service.store().init_server(&service.server()).unwrap());
        let put = json!({"endpoint": "new.example.org"});

        disk.set_failing(true);
        let (status, body) =
            call(&service, Method::PUT, "/api/v1/endpoint", Some(put.clone())).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
        assert_eq!(body["error"]["code"], "insufficient_storage");
        let (_, v) = call(&service, Method::GET, "/api/v1/endpoint", None).await;
        assert_eq!(
            v["endpoint"], "vpn.example:51820",
            "nothing changed live either"
        );

        disk.set_failing(false);
        let (status, v) = call(&service, Method::PUT, "/api/v1/endpoint", Some(put)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(
            v,
            json!({"endpoint": "new.example.org:51820", "previous": "vpn.example:51820", "warning": null, "reason": null})
        );
        assert_eq!(
            service.server().endpoint.to_string(),
            "new.example.org:51820"
        );
        assert_eq!(
            service
                .store()
                .server()
                .unwrap()
                .unwrap()
                .endpoint
                .to_string(),
            "new.example.org:51820"
        );
        let audit = service.store().audit_page(None, None, 10).unwrap();
        assert_eq!(audit[0].action, crate::model::AuditAction::ServerEndpoint);
        assert_eq!(audit[0].actor.peer, "leader");
    }

    /// An endpoint phones outside cannot reach: the dashboard reads `reason`, plain words
    /// naming no command (its reader is on a phone); `warning` keeps the CLI's fix.
    #[tokio::test]
    async fn an_unreachable_endpoint_is_explained_without_a_command_for_the_dashboard() {
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        assert!(service.store().init_server(&service.server()).unwrap());
        let put = json!({"endpoint": "192.168.1.20"});
        let (status, v) = call(&service, Method::PUT, "/api/v1/endpoint", Some(put)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let (_, got) = call(&service, Method::GET, "/api/v1/endpoint", None).await;
        for v in [v, got] {
            assert_eq!(
                v["reason"],
                "The endpoint 192.168.1.20:51820 is a private address that phones outside this network cannot reach.",
                "{v}"
            );
            let warning = v["warning"].as_str().unwrap();
            assert!(warning.contains("`appliance endpoint HOST[:PORT]`"), "{v}");
        }
        // The audit trail's entries carry their sentence beside the summary.
        let (_, audit) = call(&service, Method::GET, "/api/v1/audit", None).await;
        let entry = &audit["entries"][0];
        assert_eq!(
            entry["text"],
            "Changed the endpoint new configs carry from vpn.example:51820 to 192.168.1.20:51820.",
            "{audit}"
        );
        assert_eq!(entry["summary"]["to"], "192.168.1.20:51820", "{audit}");
    }

    /// The dashboard's member changes go through the API's PATCH: one field at a time is
    /// audited as the CLI's command is; and its QR codes carry the compact config, as the
    /// CLI's do.
    #[tokio::test]
    async fn dashboard_peer_changes_are_audited_as_the_clis_and_its_qr_is_compact() {
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        assert!(service.store().init_server(&service.server()).unwrap());
        let qr_of = |v: &Value| {
            let config = ::peers::ClientConfig::parse(v["config"].as_str().unwrap()).unwrap();
            let compact = ::peers::render_svg(&config.render_compact()).unwrap();
            let readable = ::peers::render_svg(v["config"].as_str().unwrap()).unwrap();
            assert_ne!(compact, readable, "the two forms give different codes");
            assert_eq!(
                v["qr_svg"],
                compact.as_str(),
                "the code carries the compact config"
            );
        };
        let (status, added) = call(
            &service,
            Method::POST,
            "/api/v1/peers",
            Some(json!({"name": "otto", "role": "officer"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        qr_of(&added);
        for change in [
            json!({"role": "viewer"}),
            json!({"enabled": false}),
            json!({"enabled": true}),
            json!({"role": "admin", "enabled": true}),
        ] {
            let (status, v) =
                call(&service, Method::PATCH, "/api/v1/peers/otto", Some(change)).await;
            assert_eq!(status, StatusCode::OK, "{v}");
        }
        let (status, rotated) =
            call(&service, Method::POST, "/api/v1/peers/otto/rotate", None).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        qr_of(&rotated);
        let actions: Vec<String> = service
            .store()
            .audit_page(None, None, 10)
            .unwrap()
            .iter()
            .map(|e| e.action.to_string())
            .collect();
        assert_eq!(
            actions,
            [
                "peer.rotate",
                "peer.update",
                "peer.enable",
                "peer.disable",
                "peer.role",
                "peer.add"
            ]
        );
    }

    /// `GET /api/v1/whoami` lists what the caller may call, from the route table, and the
    /// router agrees: every route listed passes the role check, every other is a 403.
    #[tokio::test]
    async fn whoami_lists_exactly_the_routes_the_router_lets_the_role_through() {
        use ::peers::Role::*;
        let disk = crate::store::testing::Disk::default();
        let service = service_on(&disk);
        assert!(service.store().init_server(&service.server()).unwrap());
        let mut lists = Vec::new();
        for role in [Viewer, Officer, Admin, Handler] {
            let (status, me) = call_as(&service, role, Method::GET, "/api/v1/whoami", None).await;
            assert_eq!(
                (status, me["role"].as_str()),
                (StatusCode::OK, Some(role.as_str()))
            );
            let permitted: Vec<String> = me["permitted"]
                .as_array()
                .expect("a list")
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            assert_eq!(permitted, routes::permitted(role), "{role}");
            for route in routes::ROUTES {
                let path = route
                    .path
                    .split('/')
                    .map(|s| if s.starts_with('{') { "x" } else { s })
                    .collect::<Vec<_>>()
                    .join("/");
                let method: Method = route.method.parse().unwrap();
                let (status, v) = call_as(&service, role, method, &path, None).await;
                let refused =
                    status == StatusCode::FORBIDDEN && v["error"]["code"] == "forbidden_role";
                let listed = permitted.contains(&format!("{} {}", route.method, route.path));
                assert_eq!(
                    refused, !listed,
                    "{role}: {} {path}: {status} {v}",
                    route.method
                );
            }
            lists.push(permitted);
        }
        for (i, a) in lists.iter().enumerate() {
            for b in &lists[..i] {
                assert_ne!(a, b, "a change of role changes the list");
            }
        }
    }

    #[test]
    fn metric_routes_are_templates_never_raw_paths() {
        assert_eq!(route_template("/"), "/");
        assert_eq!(route_template("/metrics"), "/metrics");
        assert_eq!(
            route_template("/api/v1/jobs/00000000deadbeef/runs"),
            "/api/v1/jobs/{id}/runs"
        );
        assert_eq!(route_template("/api/v1/jobs/x/"), "/api/v1/jobs/{id}");
        assert_eq!(
            route_template("/api/v1/peers/alice"),
            "/api/v1/peers/{name}"
        );
        assert_eq!(route_template("/wp-admin/../etc/passwd"), "other");
        assert_eq!(route_template("/api/v1/jobs/a/b/c"), "other");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&HeaderValue::from_static("application/json")));
        assert!(is_json(&HeaderValue::from_static(
            "Application/JSON; charset=utf-8"
        )));
        assert!(!is_json(&HeaderValue::from_static("text/plain")));
        assert!(!is_json(&HeaderValue::from_static("application/jsonx")));
    }
}
