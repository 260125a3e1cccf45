//! The webhook executor: one fire of a job becomes HTTP requests to its webhook.
//!
//! Layer: driver (outbound I/O). Sends the job's request over HTTP or HTTPS (rustls with the
//! bundled webpki roots, so a minimal container needs no CA store), with a per-attempt timeout,
//! request and response bodies capped, and retries with exponential backoff. A 2xx reply is
//! success. A 429 honours `Retry-After` (Discord's rate limits) — seconds or an HTTP date,
//! capped at [`MAX_RETRY_AFTER`] — instead of the backoff. Other 4xx replies are final (retrying
//! a malformed request or a deleted webhook cannot help); 5xx, timeouts and connection errors
//! are retried. Redirects are not followed: a 3xx is reported as a non-2xx status.
//!
//! Where a webhook may connect is decided by [`NetPolicy`] (see [`policy`]): the client's only
//! connector, [`GuardedConnector`], reads the URL host, resolves names itself, and dials only
//! addresses the policy permits — so the check holds on the address actually connected to,
//! after DNS, on every attempt. A refused destination is a final error and nothing is sent
//! (not even a TCP SYN), so a run cannot tell what listens behind it. A non-2xx reply is
//! recorded as its status line only (`HTTP 404 Not Found`): its body is never read into a run,
//! because whoever can read runs could otherwise read whatever a webhook target answers.
//!
//! Nothing here logs a webhook URL in full: Discord's token is in its path.
#![allow(clippy::disallowed_methods)] // driver: sleeps between attempts, reads the clock

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::sched::{Retry, Webhook};

pub mod delivery;
pub mod policy;
pub use policy::{IpNet, IpNetError, NetPolicy, Refusal};

/// Largest request body sent.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Largest part of a response read (the rest is dropped; the status is what counts).
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Error text kept in a run record.
const MAX_ERROR_TEXT: usize = 512;

/// How one attempt went.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Why it failed (timeout, connection error, the status line of a non-2xx reply).
    pub error: Option<String>,
    /// The server asked us to wait this long before retrying (429 `Retry-After`).
    pub retry_after: Option<Duration>,
    /// The destination policy refused the address: nothing was sent, and retrying cannot help.
    pub refused: bool,
}

impl AttemptResult {
    /// Whether the attempt got a 2xx reply.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The result class counted in `appliance_webhook_attempts_total`: `success`,
    /// `rate_limited` (429), `client_error` (other 4xx), `server_error` (5xx), `other_status`,
    /// `refused` (the destination policy refused the address; nothing was sent), `timeout` or
    /// `error` (no response: connection, TLS, request too large).
    pub fn label(&self) -> &'static str {
        match self.status {
            _ if self.succeeded() => "success",
            None if self.refused => "refused",
            Some(429) => "rate_limited",
            Some(400..=499) => "client_error",
            Some(500..=599) => "server_error",
            Some(_) => "other_status",
            None if self
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("timed out")) =>
            {
                "timeout"
            }
            None => "error",
        }
    }

    /// Whether another attempt could help.
    pub fn retryable(&self) -> bool {
        if self.refused {
            return false;
        }
        match self.status {
            None => true,
            Some(429) => true,
            Some(s) => s >= 500,
        }
    }
}

/// How a whole fire went, after retries.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Attempts made.
    pub attempts: u32,
    /// How the last one went.
    pub last: AttemptResult,
}

/// Why the connector produced no connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The destination policy refused every address of the host.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The URL has no host (the job spec forbids this; kept for completeness).
    #[error("the webhook URL has no host")]
    NoHost,
    /// DNS failed. (The cause is in the message and not chained as a source, so the run's
    /// error text, which walks the chain, does not repeat it.)
    #[error("cannot resolve {host}: {error}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        error: std::io::Error,
    },
    /// DNS answered with no address.
    #[error("{host} has no address in DNS")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// The TCP connection failed (to a permitted address).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
}

/// The executor's TCP connector: resolves the URL host itself and dials only addresses that
/// [`NetPolicy`] permits and that are not the host's own (unless an allowed network names
/// them). Wrapped by the TLS connector, so it guards HTTP and HTTPS alike.
#[derive(Clone, Debug)]
pub struct GuardedConnector {
    policy: Arc<NetPolicy>,
    /// Whether a bind test tells this host's own addresses apart, per family (false when the
    /// kernel lets anyone bind any address: `net.ipv4.ip_nonlocal_bind` and friends).
    probe_v4: bool,
    probe_v6: bool,
}

/// Whether `ip` is an address of this host: binding a UDP socket to it (port 0, never used,
/// nothing sent) succeeds only for local addresses.
pub fn host_owns(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl GuardedConnector {
    /// A connector that dials only addresses `policy` allows.
    pub fn new(policy: NetPolicy) -> GuardedConnector {
        // A documentation address is never configured on a real host: if it binds, the kernel
        // accepts non-local binds and the test cannot tell the host's addresses apart.
        let probe_v4 = !host_owns(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
        let probe_v6 = !host_owns(IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001, 0xdb8, 0, 0, 0, 0, 0, 1,
        )));
        if !probe_v4 || !probe_v6 {
            tracing::warn!(
                ipv4 = probe_v4,
                ipv6 = probe_v6,
                "non-local binds are enabled: webhooks to this host's own public addresses cannot \
                 be detected for the families marked false"
            );
        }
        GuardedConnector {
            policy: Arc::new(policy),
            probe_v4,
            probe_v6,
        }
    }

    /// The policy's verdict plus the host-address test for public addresses.
    fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        match self.policy.check(ip)? {
            policy::Permit::Allowed => Ok(()),
            policy::Permit::Public => {
                let ip = policy::canonical(ip);
                let probe = match ip {
                    IpAddr::V4(_) => self.probe_v4,
                    IpAddr::V6(_) => self.probe_v6,
                };
                if probe && host_owns(ip) {
                    Err(Refusal::OwnHost { ip })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The permitted addresses for `dst`, in resolver order; a refusal when there are none.
    pub async fn addresses(&self, dst: &Uri) -> Result<Vec<SocketAddr>, ConnectError> {
        let host = dst
            .host()
            .filter(|h| !h.is_empty())
            .ok_or(ConnectError::NoHost)?;
        let port = dst.port_u16().unwrap_or(match dst.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let candidates = match policy::parse_host(host) {
            policy::Host::Ip(ip) => vec![SocketAddr::new(ip, port)],
            policy::Host::Name(name) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|error| ConnectError::Resolve {
                    host: name.to_owned(),
                    error,
                })?
                .collect(),
        };
        let mut first_refusal = None;
        let mut permitted = Vec::with_capacity(candidates.len());
        for addr in candidates {
            match self.check(addr.ip()) {
                Ok(()) => permitted.push(addr),
                Err(r) => {
                    first_refusal.get_or_insert(r);
                }
            }
        }
        match (permitted.is_empty(), first_refusal) {
            (false, _) => Ok(permitted),
            (true, Some(r)) => Err(ConnectError::Refused(r)),
            (true, None) => Err(ConnectError::NoAddress {
                host: host.to_owned(),
            }),
        }
    }
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.addresses(&dst).await?;
            let tcp = TcpStream::connect(&addrs[..])
                .await
                .map_err(ConnectError::Connect)?;
            let _ = tcp.set_nodelay(true);
            Ok(TokioIo::new(tcp))
        })
    }
}

/// The outbound HTTP client, shared by all runs.
#[derive(Clone)]
pub struct Executor {
    client: Client<hyper_rustls::HttpsConnector<GuardedConnector>, Full<Bytes>>,
    /// Attempts by result ([`AttemptResult::label`]), for `GET /metrics`.
    pub attempts: std::sync::Arc<crate::metrics::LabelCounter>,
}

impl Default for Executor {
    /// Public destinations only.
    fn default() -> Self {
        Executor::new(NetPolicy::default())
    }
}

impl Executor {
    /// A client that connects only where `policy` permits.
    pub fn new(policy: NetPolicy) -> Executor {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(GuardedConnector::new(policy));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Executor {
            client,
            attempts: Default::default(),
        }
    }

    /// One attempt with `timeout` covering connect, request and reading the (capped) reply.
    pub async fn attempt(&self, hook: &Webhook, timeout: Duration) -> AttemptResult {
        match tokio::time::timeout(timeout, self.send(hook)).await {
            Ok(r) => r,
            Err(_) => AttemptResult {
                status: None,
                error: Some(format!("timed out after {} s", timeout.as_secs_f64())),
                retry_after: None,
                refused: false,
            },
        }
    }

    async fn send(&self, hook: &Webhook) -> AttemptResult {
        let fail = |e: String| AttemptResult {
            status: None,
            error: Some(truncate(e)),
            retry_after: None,
            refused: false,
        };
        let body = match &hook.body {
            Some(v) => Bytes::copy_from_slice(v.as_str().as_bytes()),
            None => Bytes::new(),
        };
        if body.len() > MAX_REQUEST_BODY {
            return AttemptResult {
                status: None,
                error: Some(format!(
                    "request body is {} bytes, over the {MAX_REQUEST_BODY}-byte limit",
                    body.len()
                )),
                retry_after: None,
                refused: false,
            };
        }
        let mut req = Request::builder()
            .method(hook.method.clone())
            .uri(hook.url.clone());
        let headers = req.headers_mut().expect("builder is valid so far");
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("appliance/", env!("CARGO_PKG_VERSION"))),
        );
        if hook.body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (k, v) in &hook.headers {
            headers.insert(k.clone(), v.clone());
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return fail(format!("cannot build the request: {e}")),
        };
        let resp = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(refusal) = refusal_in(&e) {
                    return AttemptResult {
                        status: None,
                        error: Some(refusal.to_string()),
                        retry_after: None,
                        refused: true,
                    };
                }
                return fail(describe_client_error(&e));
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let error = if status.is_success() {
            // Read (capped) and drop the body so the connection can be reused; its content
            // is never kept.
            let _ = Limited::new(resp.into_body(), MAX_RESPONSE_BODY)
                .collect()
                .await;
            None
        } else {
            // The status line only: the body of an error reply may be anything the target
            // chose to say (a local service's secrets included), and runs are readable by
            // every viewer. Dropping the unread body closes the connection.
            let reason = status.canonical_reason().unwrap_or("");
            Some(
                format!("HTTP {} {reason}", status.as_u16())
                    .trim_end()
                    .to_owned(),
            )
        };
        AttemptResult {
            status: Some(status.as_u16()),
            error,
            retry_after: (status == StatusCode::TOO_MANY_REQUESTS)
                .then_some(retry_after)
                .flatten(),
            refused: false,
        }
    }

    /// Runs up to `retry.attempts` attempts, sleeping between them (backoff, or the server's
    /// `Retry-After`). `on_attempt` sees each attempt's number before it starts.
    pub async fn run(
        &self,
        hook: &Webhook,
        retry: Retry,
        timeout: Duration,
        mut on_attempt: impl FnMut(u32),
    ) -> Outcome {
        let mut attempt = 1;
        loop {
            on_attempt(attempt);
            let r = self.attempt(hook, timeout).await;
            self.attempts.inc(r.label());
            if r.succeeded() || !r.retryable() || attempt >= retry.attempts {
                return Outcome {
                    attempts: attempt,
                    last: r,
                };
            }
            attempt += 1;
            let wait = r
                .retry_after
                .unwrap_or_else(|| retry.delay_before(attempt))
                .min(MAX_RETRY_AFTER);
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "webhook retry");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The policy refusal behind a client error, if that is what it is.
fn refusal_in(e: &hyper_util::client::legacy::Error) -> Option<&Refusal> {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(ConnectError::Refused(r)) = s.downcast_ref::<ConnectError>() {
            return Some(r);
        }
        src = s.source();
    }
    None
}

fn describe_client_error(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error;
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_TEXT {
        let mut cut = MAX_ERROR_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// `Retry-After`: delay seconds (Discord also sends fractions) or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER));
    }
    // An HTTP date: wait until then (relative to now; only the driver reads clocks).
    let when = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    #[allow(clippy::disallowed_methods)] // driver module
    let now = jiff::Timestamp::now();
    let d = now.until(when).ok()?.total(jiff::Unit::Second).ok()?;
    Some(Duration::from_secs_f64(d.max(0.0)).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("99999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
    }

    #[test]
    fn what_counts_as_success_and_retryable() {
        let r = |status: Option<u16>, error: Option<&str>| AttemptResult {
            status,
            error: error.map(String::from),
            retry_after: None,
            refused: false,
        };
        assert!(r(Some(204), None).succeeded());
        assert!(!r(Some(404), Some("x")).succeeded());
        assert!(!r(Some(404), Some("x")).retryable());
        assert!(r(Some(429), Some("x")).retryable());
        assert!(r(Some(503), Some("x")).retryable());
        assert!(r(None, Some("timeout")).retryable());
        let refused = AttemptResult {
            refused: true,
            ..r(
                None,
                Some("destination 127.0.0.1 is not a public address (loopback)"),
            )
        };
        assert!(!refused.retryable());
        // The metric labels of each class.
        assert_eq!(r(Some(204), None).label(), "success");
        assert_eq!(r(Some(429), Some("x")).label(), "rate_limited");
        assert_eq!(r(Some(404), Some("x")).label(), "client_error");
        assert_eq!(r(Some(503), Some("x")).label(), "server_error");
        assert_eq!(r(Some(302), Some("x")).label(), "other_status");
        assert_eq!(r(None, Some("timed out after 5 s")).label(), "timeout");
        assert_eq!(r(None, Some("connection refused")).label(), "error");
        assert_eq!(refused.label(), "refused");
    }

    /// Loopback opted in, as the tests that talk to a local server need.
    fn loopback_allowed() -> Executor {
        Executor::new(NetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]))
    }

    /// A local server that answers one request with `reply` (a whole HTTP/1.1 response).
    async fn answer_once(reply: impl Into<Vec<u8>>) -> (u16, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let reply = reply.into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp.write_all(&reply).await;
            let _ = tcp.shutdown().await;
        });
        (port, server)
    }

    /// By default every loopback spelling is refused before any connection is made: the
    /// listener's accept queue stays empty, the run is not retried, and the error says why
    /// without saying whether anything listens.
    #[tokio::test]
    async fn loopback_is_refused_by_default_and_nothing_connects() {
        let listener = Untouched::bind();
        let port = listener.port();
        let executor =
            Executor::new(NetPolicy::new(vec![]).forbid("10.88.88.0/24".parse().unwrap()));
        for host in [
            "127.0.0.1",
            "localhost",
            "2130706433",
            "0",
            "[::ffff:127.0.0.1]",
            "127.1",
        ] {
            let retry = Retry {
                attempts: 3,
                backoff: Duration::from_secs(60),
            };
            let out = executor
                .run(
                    &hook(&format!("http://{host}:{port}/api/v1/peers")),
                    retry,
                    Duration::from_secs(5),
                    |_| {},
                )
                .await;
            assert_eq!(out.attempts, 1, "{host}: a refusal is final");
            assert!(out.last.refused, "{host}: {:?}", out.last);
            assert_eq!(out.last.status, None);
            let err = out.last.error.unwrap();
            let want_ip = if host == "0" { "0.0.0.0" } else { "127.0.0.1" };
            assert!(
                err.starts_with(&format!("destination {want_ip} is not a public address (")),
                "{host}: {err}"
            );
            assert!(err.contains("--allow-webhook-net"), "{err}");
        }
        // HTTPS takes the same connector.
        let r = attempt(&executor, &format!("https://127.0.0.1:{port}/")).await;
        assert!(r.refused, "{r:?}");
        listener.assert_untouched();
    }

    /// A forbidden network (in production: the tunnel subnet) stays closed even when an
    /// allowed network covers it. Loopback plays the forbidden network here, so a regression
    /// could only ever reach this test's own listener.
    #[tokio::test]
    async fn a_forbidden_network_is_refused_whatever_is_allowed() {
        let listener = Untouched::bind();
        let port = listener.port();
        let executor = Executor::new(
            NetPolicy::new(vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()])
                .forbid("127.0.0.0/8".parse().unwrap()),
        );
        for host in ["127.0.0.1", "[::ffff:127.0.0.1]", "2130706433"] {
            let r = attempt(&executor, &format!("http://{host}:{port}/api/v1/peers")).await;
            assert!(r.refused, "{host}: {r:?}");
            assert_eq!(
                r.error.as_deref(),
                Some(
                    "destination 127.0.0.1 is inside the appliance's own network 127.0.0.0/8; \
                     a webhook can never call the appliance itself"
                ),
                "{host}"
            );
        }
        listener.assert_untouched();
    }

    /// A connection error on a permitted address says so once, without repeating its cause.
    #[tokio::test]
    async fn connection_errors_are_short() {
        // Bind, learn the port, close: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = attempt(&loopback_allowed(), &format!("http://127.0.0.1:{port}/")).await;
        assert!(!r.refused && r.retryable(), "{r:?}");
        let err = r.error.unwrap();
        assert_eq!(err.matches("refused").count(), 1, "{err}");
    }

    /// `--allow-webhook-net 127.0.0.0/8` opens loopback (what the interop tests rely on).
    #[tokio::test]
    async fn an_allowed_network_is_reached() {
        let (port, server) = answer_once("HTTP/1.1 204 No Content\r\n\r\n").await;
        let r = attempt(
            &loopback_allowed(),
            &format!("http://localhost:{port}/hook"),
        )
        .await;
        server.await.unwrap();
        assert!(r.succeeded(), "{r:?}");
        assert_eq!(r.status, Some(204));
    }

    /// The bind test finds this host's own addresses (loopback here; a public one in the
    /// interop test) and nothing else.
    #[test]
    fn the_host_s_own_addresses_are_recognised() {
        assert!(host_owns("127.0.0.1".parse().unwrap()));
        assert!(!host_owns("192.0.2.1".parse().unwrap()));
        assert!(!host_owns("2001:db8::1".parse().unwrap()));
    }

    /// The body of a non-2xx reply never reaches the run's error text: status line only.
    #[tokio::test]
    async fn error_replies_keep_only_the_status_line() {
        let (port, server) = answer_once(
            "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 43\r\n\r\n\
             {\"admin_token\":\"SECRET-9f8e7d6c5b4a3b2c1d\"}",
        )
        .await;
        let r = attempt(
            &loopback_allowed(),
            &format!("http://127.0.0.1:{port}/hook"),
        )
        .await;
        server.await.unwrap();
        assert_eq!(r.status, Some(403));
        assert_eq!(r.error.as_deref(), Some("HTTP 403 Forbidden"));
        assert!(!r.refused);
    }

    fn hook(url: &str) -> Webhook {
        Webhook {
            url: url.parse().unwrap(),
            method: hyper::Method::POST,
            headers: vec![],
            body: Some(crate::sched::JsonBody::from_value(
                &serde_json::json!({"content": "hi"}),
            )),
        }
    }

    /// One attempt of a POST to `url`, given 10 s.
    async fn attempt(executor: &Executor, url: &str) -> AttemptResult {
        executor.attempt(&hook(url), Duration::from_secs(10)).await
    }

    /// A loopback listener that a refused webhook must never reach.
    struct Untouched(std::net::TcpListener);

    impl Untouched {
        fn bind() -> Untouched {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            Untouched(listener)
        }

        fn port(&self) -> u16 {
            self.0.local_addr().unwrap().port()
        }

        /// Nothing connected: the accept queue is empty.
        fn assert_untouched(&self) {
            match self.0.accept() {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => panic!("something connected to the listener: {other:?}"),
            }
        }
    }

    /// Outbound HTTPS really is TLS with certificate verification: a local server presenting
    /// a self-signed certificate is refused, and the run records why.
    #[tokio::test]
    async fn https_verifies_certificates() {
        use std::sync::Arc;
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let der = cert.cert.der().clone();
        let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(
            cert.signing_key.serialize_der(),
        )
        .unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // The client aborts the handshake; that is the point.
            let _ = acceptor.accept(tcp).await;
        });
        let r = attempt(
            &loopback_allowed(),
            &format!("https://127.0.0.1:{port}/hook"),
        )
        .await;
        server.await.unwrap();
        assert!(!r.succeeded());
        assert_eq!(r.status, None);
        let err = r.error.unwrap();
        assert!(err.to_lowercase().contains("certificate"), "{err}");
    }

    /// A reply far larger than the cap is not read whole, and the attempt still completes.
    #[tokio::test]
    async fn huge_replies_are_capped() {
        let body = vec![b'x'; 4 * 1024 * 1024];
        let mut reply = format!(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(&body);
        let (port, server) = answer_once(reply).await;
        let r = attempt(&loopback_allowed(), &format!("http://127.0.0.1:{port}/big")).await;
        assert_eq!(r.status, Some(500));
        assert_eq!(r.error.as_deref(), Some("HTTP 500 Internal Server Error"));
        server.abort();
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let s = truncate("é".repeat(600));
        assert!(s.len() <= MAX_ERROR_TEXT + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }
}
