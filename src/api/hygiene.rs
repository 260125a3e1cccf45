//! The HTTP hygiene of the gate (steps 2, 3 and 5 of the module docs of [`super`]): `Host`
//! and `Origin` checks, content type, body size and pace, query parsing, and the security
//! headers every reply carries. Pure functions of the request, apart from reading the body.

use super::*;

/// Whether `host` (a Host header) names this appliance: the tunnel address or an extra name,
/// with or without `:8888`.
pub fn host_allowed(tunnel: Ipv4Addr, extra: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let tunnel = tunnel.to_string();
    std::iter::once(tunnel.as_str())
        .chain(extra.iter().map(String::as_str))
        .any(|name| {
            let name = name.to_ascii_lowercase();
            host == name || host == format!("{name}:{PORT}")
        })
}

/// Whether `origin` is our own: `http://HOST[:8888]` for an allowed host.
pub fn origin_allowed(tunnel: Ipv4Addr, extra: &[String], origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|host| !host.contains('/') && host_allowed(tunnel, extra, host))
}

pub(super) fn is_json(ct: &HeaderValue) -> bool {
    ct.to_str()
        .ok()
        .and_then(|s| s.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

pub(super) fn has_body(h: &hyper::HeaderMap) -> bool {
    if h.contains_key(hyper::header::TRANSFER_ENCODING) {
        return true;
    }
    h.get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// A request's query string as decoded pairs (`+` and `%XX` decoded; fuzzed as `http_gate`).
#[doc(hidden)]
pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%' && i + 2 < bytes.len() {
            // Two hex digits exactly: `from_str_radix` alone would also take a sign (`%+1`).
            let pair = &bytes[i + 1..i + 3];
            let hex = pair
                .iter()
                .all(u8::is_ascii_hexdigit)
                .then(|| std::str::from_utf8(pair).ok())
                .flatten()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b);
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn secure(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    // The dashboard's own files carry their policy (ui::CSP); nothing else is a page at all.
    if !h.contains_key("content-security-policy") {
        h.insert(
            "content-security-policy",
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    r
}

/// Exactly one `Host`, naming us; an absolute-form target must name us too (fuzzed as
/// `http_gate`).
#[doc(hidden)]
pub fn check_target<B>(
    tunnel: Ipv4Addr,
    extra: &[String],
    req: &Request<B>,
) -> Result<(), ApiError> {
    let hosts: Vec<&HeaderValue> = req.headers().get_all(HOST).iter().collect();
    if hosts.len() > 1 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "duplicate_host",
            format!(
                "the request has {} Host headers; send exactly one",
                hosts.len()
            ),
        )
        .field("Host"));
    }
    let host = hosts.first().and_then(|h| h.to_str().ok()).unwrap_or("");
    if !host_allowed(tunnel, extra, host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            format!("Host '{host}' is not this appliance; use http://{tunnel}:{PORT}/"),
        )
        .field("Host"));
    }
    if let Some(authority) = req.uri().authority() {
        let ours = req.uri().scheme_str() == Some("http")
            && host_allowed(tunnel, extra, authority.as_str());
        if !ours {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "foreign_target",
                format!(
                    "the request target names '{}', not this appliance; send a path such as /api/v1/whoami",
                    authority.as_str()
                ),
            )
            .field("target"));
        }
    }
    Ok(())
}

/// At most one `Origin`; a change must come from our own origin and not from another site
/// (fuzzed as `http_gate`).
#[doc(hidden)]
pub fn check_origin(
    tunnel: Ipv4Addr,
    extra: &[String],
    headers: &hyper::HeaderMap,
    state_changing: bool,
) -> Result<(), ApiError> {
    let origins: Vec<&HeaderValue> = headers.get_all(ORIGIN).iter().collect();
    if origins.len() > 1 {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!(
                "the request has {} Origin headers; a browser sends at most one",
                origins.len()
            ),
        )
        .field("Origin"));
    }
    if !state_changing {
        return Ok(());
    }
    if let Some(origin) = origins.first() {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(tunnel, extra, origin) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!("requests from origin '{origin}' may not change anything here"),
            )
            .field("Origin"));
        }
    }
    for site in headers.get_all("sec-fetch-site") {
        let site = site.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if site == "cross-site" || site == "same-site" {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!("a page on another site ({site}) may not change anything here"),
            )
            .field("Sec-Fetch-Site"));
        }
    }
    Ok(())
}

/// Reads a JSON body within the size limit, the buffer budgets and the body deadline.
pub(super) async fn read_body(
    api: &ApiState,
    peer: Ipv4Addr,
    headers: &hyper::HeaderMap,
    incoming: Incoming,
) -> Result<Value, ApiError> {
    let cfg = &api.config;
    let ct_ok = headers.get(CONTENT_TYPE).is_some_and(is_json);
    if !ct_ok {
        let mut e = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "request bodies must be JSON with Content-Type: application/json",
        )
        .field("Content-Type");
        e.close = true;
        return Err(e);
    }
    let max = cfg.max_body;
    let too_large = || {
        let mut e = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {max} bytes"),
        )
        .field("body");
        e.close = true;
        e
    };
    let declared = content_length(headers);
    if declared.is_some_and(|n| n > max as u64) {
        // Refused from the head alone: not a byte of the body is waited for.
        return Err(too_large());
    }
    let expected = declared.unwrap_or(max as u64);
    let _held = api.guards.buffers.reserve(peer, expected).map_err(|b| {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", b.to_string());
        e.retry_after = Some(1);
        e.close = true;
        e
    })?;
    let deadline = limits::body_deadline(expected, cfg.body_timeout, cfg.min_body_rate);
    let collected = tokio::time::timeout(deadline, Limited::new(incoming, max).collect()).await;
    let bytes = match collected {
        Err(_) => {
            let mut e = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive within {} s; send it at {} bytes/s or faster",
                    deadline.as_secs(),
                    cfg.min_body_rate
                ),
            )
            .field("body");
            e.close = true;
            return Err(e);
        }
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Ok(Err(e)) => {
            return Err(ApiError::bad_request(
                "body",
                format!("could not read the body: {e}"),
            ))
        }
    };
    serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| ApiError::bad_request("body", format!("the body is not valid JSON: {e}")))
}

pub(super) fn content_length(h: &hyper::HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    //! Issue 13 item 11 without a tunnel: the gate's `Host`, request-target, `Origin` and
    //! `Sec-Fetch-Site` rules on hand-built requests (the interop test sends the same over
    //! wireguard-go, but needs root).
    use super::*;

    const T: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 1);

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn refusal(r: Result<(), ApiError>) -> (u16, String, Option<String>) {
        let e = r.expect_err("refused");
        (e.status.as_u16(), e.code.to_string(), e.field.clone())
    }

    #[test]
    fn two_host_headers_and_foreign_absolute_targets_are_400() {
        const US: &[(&str, &str)] = &[("host", "10.88.88.1")];
        for (target, headers, want) in [
            (
                "/api/v1/whoami",
                &[("host", "10.88.88.1"), ("host", "10.88.88.1")][..],
                (400, "duplicate_host", "Host"),
            ),
            (
                "http://evil.example/api/v1/whoami",
                US,
                (400, "foreign_target", "target"),
            ),
            (
                "https://10.88.88.1:8888/api/v1/whoami",
                US,
                (400, "foreign_target", "target"),
            ),
            (
                "/api/v1/whoami",
                &[("host", "evil.example")][..],
                (403, "forbidden_host", "Host"),
            ),
        ] {
            let (status, code, field) = want;
            assert_eq!(
                refusal(check_target(T, &[], &request("GET", target, headers))),
                (status, code.into(), Some(field.into())),
                "{target} {headers:?}"
            );
        }
        for (target, headers) in [
            ("/api/v1/whoami", &[("host", "10.88.88.1:8888")][..]),
            ("http://10.88.88.1:8888/api/v1/whoami", US),
        ] {
            assert!(check_target(T, &[], &request("GET", target, headers)).is_ok());
        }
    }

    #[test]
    fn several_origins_are_403_even_on_reads() {
        let two = request(
            "GET",
            "/api/v1/whoami",
            &[
                ("origin", "http://10.88.88.1:8888"),
                ("origin", "http://evil.example"),
            ],
        );
        assert_eq!(
            refusal(check_origin(T, &[], two.headers(), false)),
            (403, "cross_origin".into(), Some("Origin".into()))
        );
    }

    #[test]
    fn cross_site_writes_are_403_even_without_an_origin() {
        for site in ["cross-site", "Same-Site"] {
            let post = request("POST", "/api/v1/jobs", &[("sec-fetch-site", site)]);
            assert_eq!(
                refusal(check_origin(T, &[], post.headers(), true)),
                (403, "cross_origin".into(), Some("Sec-Fetch-Site".into())),
                "{site}"
            );
            // Reading is not changing: a cross-site GET passes this check.
            assert!(check_origin(T, &[], post.headers(), false).is_ok());
        }
        for site in ["same-origin", "none"] {
            let post = request(
                "POST",
                "/api/v1/jobs",
                &[
                    ("sec-fetch-site", site),
                    ("origin", "http://10.88.88.1:8888"),
                ],
            );
            assert!(check_origin(T, &[], post.headers(), true).is_ok(), "{site}");
        }
        let foreign = request("POST", "/api/v1/jobs", &[("origin", "http://evil.example")]);
        assert_eq!(
            refusal(check_origin(T, &[], foreign.headers(), true)),
            (403, "cross_origin".into(), Some("Origin".into()))
        );
    }
}
