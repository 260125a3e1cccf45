//! Bench-only: the deployment guilds run today, for `benches/baseline.sh` to compare against.
//!
//! Layer: a benchmark tool, not part of the appliance. A tiny hyper HTTP/1.1 server on kernel
//! TCP, bound to the address it is given (the tunnel IP of a wireguard-go interface in the
//! bench's server namespace), that answers fixed bodies read from files at start, so it serves
//! byte for byte what the appliance answered on the same paths (`/api/v1/health` and the
//! ~81 KB `/api/v1/openapi.json`). Same runtime shape as `appliance serve`: a multi-thread
//! tokio runtime, one task per connection, keep-alive.
//!
//! ```sh
//! cargo run --example baseline_server -- 10.88.88.1:8888 \
//!     /api/v1/health=health.json /api/v1/openapi.json=openapi.json
//! ```
//!
//! Any other path answers 404. Bad arguments exit 2 with a sentence.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

fn usage(msg: &str) -> ! {
    eprintln!("baseline_server: {msg}");
    eprintln!("usage: baseline_server ADDR:PORT PATH=FILE [PATH=FILE ...]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next().map(|a| a.parse()) {
        Some(Ok(a)) => a,
        Some(Err(e)) => usage(&format!("the listen address is not ADDR:PORT: {e}")),
        None => usage("give the address to listen on"),
    };
    let mut routes = HashMap::new();
    for arg in args {
        let Some((path, file)) = arg.split_once('=') else {
            usage(&format!("{arg:?} is not PATH=FILE"))
        };
        let body = std::fs::read(file)
            .unwrap_or_else(|e| usage(&format!("cannot read {file} for {path}: {e}")));
        routes.insert(path.to_string(), Bytes::from(body));
    }
    if routes.is_empty() {
        usage("give at least one PATH=FILE");
    }
    let routes = Arc::new(routes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("cannot start the runtime: {e}")));
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| usage(&format!("cannot listen on {addr}: {e}")));
        eprintln!("baseline_server: listening on {addr}");
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let routes = routes.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let routes = routes.clone();
                    async move {
                        let resp = match routes.get(req.uri().path()) {
                            Some(body) => Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body.clone())),
                            None => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::new())),
                        };
                        Ok::<_, Infallible>(resp.expect("static response parts are valid"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
}
