//! The loopback webhook receiver the scheduler and handler benches post to, shared by both
//! (`#[path = "support/webhook_sink.rs"] mod webhook_sink;`) so their lateness figures are
//! measured at the same sink.
//!
//! It listens on 127.0.0.1 only (an ephemeral port, backlog 4096), answers every request 204
//! with no body, and records each request's path and arrival time.
#![allow(clippy::disallowed_methods)] // benchmark: timestamps each arrival

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;

/// (path, arrival time) of every request, in arrival order.
pub type Hits = Arc<Mutex<Vec<(String, Timestamp)>>>;

/// Starts the sink on the current runtime: its address, its hits, and the accept task (abort
/// it to stop).
pub async fn start_sink() -> (SocketAddr, Hits, tokio::task::JoinHandle<()>) {
    let hits: Hits = Arc::default();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(4096).unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let at = Timestamp::now();
                    h.lock().unwrap().push((req.uri().path().to_string(), at));
                    async {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(204)
                                .body(Empty::<Bytes>::new())
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits, task)
}
