//! The webhook executor: one fire of a job becomes HTTP requests to its webhook.
//!
//! Layer: driver (outbound I/O). Sends the job's request over HTTP or HTTPS (rustls with the
//! bundled webpki roots, so a minimal container needs no CA store), with a per-attempt timeout,
//! request and response bodies capped, and retries with exponential backoff. A 2xx reply is
//! success. A 429 honours `Retry-After` (Discord's rate limits) — seconds or an HTTP date,
//! capped at [`MAX_RETRY_AFTER`] — instead of the backoff. Other 4xx replies are final (retrying
//! a malformed request or a deleted webhook cannot help); 5xx, timeouts and connection errors
//! are retried.
//!
//! Nothing here logs a webhook URL in full: Discord's token is in its path.
#![allow(clippy::disallowed_methods)] // driver: sleeps between attempts, reads the clock

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::sched::{Retry, Webhook};

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
    /// Why it failed (timeout, connection error, non-2xx with the start of the body).
    pub error: Option<String>,
    /// The server asked us to wait this long before retrying (429 `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl AttemptResult {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The result class counted in `appliance_webhook_attempts_total`: `success`,
    /// `rate_limited` (429), `client_error` (other 4xx), `server_error` (5xx), `other_status`,
    /// `timeout` or `error` (no response: connection, TLS, request too large).
    pub fn label(&self) -> &'static str {
        match self.status {
            _ if self.succeeded() => "success",
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
    pub attempts: u32,
    pub last: AttemptResult,
}

/// The outbound HTTP client, shared by all runs.
#[derive(Clone)]
pub struct Executor {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Attempts by result ([`AttemptResult::label`]), for `GET /metrics`.
    pub attempts: std::sync::Arc<crate::metrics::LabelCounter>,
}

impl Default for Executor {
    fn default() -> Self {
        Executor::new()
    }
}

impl Executor {
    pub fn new() -> Executor {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
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
            },
        }
    }

    async fn send(&self, hook: &Webhook) -> AttemptResult {
        let fail = |e: String| AttemptResult {
            status: None,
            error: Some(truncate(e)),
            retry_after: None,
        };
        let body = match &hook.body {
            Some(v) => Bytes::from(v.to_string()),
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
            Err(e) => return fail(describe_client_error(&e)),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = match Limited::new(resp.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
        {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(_) => String::from("(response body over the size limit or unreadable)"),
        };
        let error = (!status.is_success()).then(|| {
            let reason = status.canonical_reason().unwrap_or("");
            let body = text.trim();
            truncate(if body.is_empty() {
                format!("HTTP {} {reason}", status.as_u16())
            } else {
                format!("HTTP {} {reason}: {body}", status.as_u16())
            })
        });
        AttemptResult {
            status: Some(status.as_u16()),
            error,
            retry_after: (status == StatusCode::TOO_MANY_REQUESTS)
                .then_some(retry_after)
                .flatten(),
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
        };
        assert!(r(Some(204), None).succeeded());
        assert!(!r(Some(404), Some("x")).succeeded());
        assert!(!r(Some(404), Some("x")).retryable());
        assert!(r(Some(429), Some("x")).retryable());
        assert!(r(Some(503), Some("x")).retryable());
        assert!(r(None, Some("timeout")).retryable());
    }

    fn hook(url: &str) -> Webhook {
        Webhook {
            url: url.parse().unwrap(),
            method: hyper::Method::POST,
            headers: vec![],
            body: Some(serde_json::json!({"content": "hi"})),
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
        let r = Executor::new()
            .attempt(
                &hook(&format!("https://127.0.0.1:{port}/hook")),
                Duration::from_secs(10),
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
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let body = vec![b'x'; 4 * 1024 * 1024];
            let head = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = tcp.write_all(head.as_bytes()).await;
            let _ = tcp.write_all(&body).await;
        });
        let r = Executor::new()
            .attempt(
                &hook(&format!("http://127.0.0.1:{port}/big")),
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(r.status, Some(500));
        let err = r.error.unwrap();
        assert!(
            err.len() <= MAX_ERROR_TEXT + 4,
            "error text not capped: {}",
            err.len()
        );
        server.abort();
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let s = truncate("é".repeat(600));
        assert!(s.len() <= MAX_ERROR_TEXT + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }
}
