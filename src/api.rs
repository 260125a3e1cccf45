//! The HTTP API, served by hyper on connections from the netstack only.
//!
//! Layer: driver (application side). Every connection handed to [`serve_connection`] came
//! through the tunnel; its source address was checked against the sending peer's allowed IPs
//! by the router, so [`Caller`] — resolved from that address for every request — is the
//! request's identity. There is no host TCP socket anywhere in this module or its callers.
//!
//! Errors are always `{"error":{"code":…,"message":…,"field":…}}`.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;

use crate::netstack::Accepted;
use crate::service::Service;

/// How long a client may take to send a request's headers (slowloris guard), and how long
/// an idle keep-alive connection is kept.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The identity of a request: the WireGuard peer it came through.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: peers::Role,
    pub address: Ipv4Addr,
}

type Resp = Response<Full<Bytes>>;

/// Serves HTTP/1.1 (keep-alive) on one tunnel connection, on its own task.
pub fn serve_connection(conn: Accepted, service: Arc<Service>) {
    let remote = conn.remote;
    tokio::spawn(async move {
        let svc = hyper::service::service_fn(move |req| {
            let service = service.clone();
            async move { Ok::<_, Infallible>(handle(&service, remote, req).await) }
        });
        let result = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(conn.stream), svc)
            .await;
        if let Err(e) = result {
            tracing::debug!(%remote, error = %e, "connection ended with error");
        }
    });
}

/// A JSON response.
pub fn json(status: StatusCode, body: serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The one error shape of the API.
pub fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Resp {
    json(
        status,
        json!({"error": {"code": code, "message": message, "field": field}}),
    )
}

fn caller(service: &Service, remote: SocketAddrV4) -> Option<Caller> {
    let dir = service.directory.read().unwrap();
    dir.by_address(*remote.ip()).map(|p| Caller {
        name: p.name.to_string(),
        role: p.role,
        address: *remote.ip(),
    })
}

async fn handle(service: &Service, remote: SocketAddrV4, req: Request<Incoming>) -> Resp {
    let Some(who) = caller(service, remote) else {
        return error(
            StatusCode::FORBIDDEN,
            "unknown_peer",
            "this tunnel address belongs to no enabled peer",
            None,
        );
    };
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    tracing::debug!(peer = %who.name, %method, %path, "request");
    match (method, path.as_str()) {
        (Method::GET, "/api/v1/health") => health(service),
        (Method::GET, "/api/v1/whoami") => json(
            StatusCode::OK,
            json!({"peer": who.name, "role": who.role.as_str(), "address": who.address.to_string()}),
        ),
        (Method::GET, "/") => dashboard(),
        (_, "/api/v1/health" | "/api/v1/whoami" | "/") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint only answers GET",
            None,
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no endpoint at {path}"),
            None,
        ),
    }
}

fn health(service: &Service) -> Resp {
    let m = &service.metrics;
    let peers = service.directory.read().unwrap().len();
    json(
        StatusCode::OK,
        json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "peers": peers,
            "uptime_s": service.started.elapsed().as_secs(),
            "tunnel": {
                "handshakes": m.handshakes.load(Ordering::Relaxed),
                "dropped_spoofed": m.dropped_spoofed.load(Ordering::Relaxed),
                "dropped_unknown_peer": m.dropped_unknown_peer.load(Ordering::Relaxed),
                "connections_accepted": m.connections_accepted.load(Ordering::Relaxed),
                "connections_refused": m.connections_refused.load(Ordering::Relaxed),
            }
        }),
    )
}

fn dashboard() -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(DASHBOARD.as_bytes())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

const DASHBOARD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>appliance</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
code{background:#eee;padding:0 .2rem}</style></head>
<body><h1>appliance</h1>
<p id="who">Checking who you are…</p>
<p id="health"></p>
<script>
fetch('/api/v1/whoami').then(r=>r.json()).then(w=>{
 document.getElementById('who').textContent=`You are ${w.peer} (${w.role}) at ${w.address}.`});
fetch('/api/v1/health').then(r=>r.json()).then(h=>{
 document.getElementById('health').textContent=`Version ${h.version}, ${h.peers} peers, up ${h.uptime_s} s.`});
</script></body></html>
"#;
