//! What a fire does (part of [`super`]): [`Action`] with its kinds, a handler call or a
//! webhook, the retry policy, their JSON parsing and rendering, and what a viewer may see of a
//! webhook (URL and header redaction).

use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Uri};
use serde_json::{json, Map, Value};

use super::typed::{
    object, opt_duration, opt_map, present, required_str, whole, ActionShape, HandlerShape, Json,
    RetryShape, WebhookShape,
};
use super::{SpecError, MAX_ATTEMPTS, MAX_BACKOFF, MAX_HEADERS, MAX_HEADER_VALUE_LEN, MAX_URL_LEN};

/// What a fire does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// An HTTP request, usually a Discord webhook post.
    Webhook(Webhook),
    /// A call queued for a handler peer, which leases it over its own tunnel (see
    /// [`crate::queue`]).
    Handler(HandlerCall),
}

impl Action {
    /// The webhook, if this action is one.
    pub fn webhook(&self) -> Option<&Webhook> {
        match self {
            Action::Webhook(w) => Some(w),
            Action::Handler(_) => None,
        }
    }

    /// The handler call, if this action is one.
    pub fn handler(&self) -> Option<&HandlerCall> {
        match self {
            Action::Handler(h) => Some(h),
            Action::Webhook(_) => None,
        }
    }
}

/// A checked call of a handler method. Whether the handler exists and registered the method is
/// checked against the live registry by the caller (it changes over time); this type only
/// guarantees the shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerCall {
    /// The handler's peer name (a valid peer name: the handler *is* that peer).
    pub id: String,
    /// The method name (see [`check_method_name`]).
    pub method: String,
    /// Parameters passed to the method, a JSON object (default `{}`).
    pub params: Map<String, Value>,
}

/// Longest handler method name, in bytes.
pub const MAX_METHOD_LEN: usize = 64;

/// Checks a handler method name: 1-64 characters from `A-Z a-z 0-9 _ . : -`, starting with a
/// letter or `_`. Returns the sentence to show when it is not.
pub fn check_method_name(s: &str) -> Result<(), String> {
    let ok_len = !s.is_empty() && s.len() <= MAX_METHOD_LEN;
    let ok_first = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "must be a method name of 1-{MAX_METHOD_LEN} characters (letters, digits, _ . : -), starting with a letter or _, such as \"send_message\""
        ))
    }
}

/// A checked outgoing HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Absolute `http` or `https` URL with a host, no user info, no fragment, at most 2048 bytes.
    pub url: Uri,
    /// One of GET, POST, PUT, PATCH, DELETE (default POST).
    pub method: Method,
    /// Extra request headers, names lowercase and unique, in name order. Hop-by-hop and framing
    /// headers (`host`, `content-length`, `transfer-encoding`, `connection`, …) are refused:
    /// the executor sets those.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// JSON body, sent as `application/json`; `None` sends no body.
    pub body: Option<JsonBody>,
}

/// A webhook's JSON body, held as its compact JSON text: it is sent as it is, and parsed back
/// into a tree only when a job is shown ([`JsonBody::to_value`]). A small body costs its text,
/// where a `serde_json::Value` object costs a map node of ~600 bytes (issue 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonBody(Box<str>);

impl JsonBody {
    /// The compact text of `v`.
    pub fn from_value(v: &Value) -> JsonBody {
        JsonBody(v.to_string().into_boxed_str())
    }

    /// A body as the decoder read it: compact when it came from a `Value` or from a stored
    /// row ([`JsonBody::as_str`] wrote it).
    pub(super) fn from_raw(raw: Box<serde_json::value::RawValue>) -> JsonBody {
        JsonBody(raw.into())
    }

    /// The JSON text, as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The body as a JSON tree.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).expect("a JsonBody holds JSON text")
    }
}

/// How often one fire is attempted, and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in total, the first included: 1..=10 (1 = no retry).
    pub attempts: u32,
    /// Delay before the second attempt; it doubles for each further attempt (at most 1 h).
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 1,
            backoff: Duration::from_secs(10),
        }
    }
}

impl Retry {
    /// The delay before attempt number `attempt` (1-based): zero for the first attempt, then
    /// `backoff`, `2 * backoff`, `4 * backoff`, … capped at [`MAX_BACKOFF`]. A server's
    /// `Retry-After` takes precedence; that is the executor's business.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (attempt - 2).min(16);
        self.backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

/// Header names whose values a viewer may see (lowercase).
pub const VIEWER_HEADERS: &[&str] = &["accept", "accept-language", "content-type", "user-agent"];

/// A URL as a viewer sees it: scheme, host and port only; anything after becomes `/***`.
pub fn viewer_url(url: &Uri) -> String {
    let mut out = String::new();
    if let Some(scheme) = url.scheme_str() {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some(host) = url.host() {
        out.push_str(host);
    }
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(port.as_str());
    }
    let rest = url.path_and_query().map(|pq| pq.as_str()).unwrap_or("");
    out.push_str(if rest.is_empty() || rest == "/" {
        "/"
    } else {
        "/***"
    });
    out
}

/// 8 hex digits of HMAC-SHA256(`key`, the full URL).
pub fn url_fingerprint(url: &Uri, key: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, url.to_string().as_bytes());
    tag.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn redact_url(url: &Uri) -> String {
    let mut out = String::new();
    if let Some(scheme) = url.scheme_str() {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some(authority) = url.authority() {
        out.push_str(authority.as_str());
    }
    let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    let keep = match segments.iter().take(3).position(|s| *s == "webhooks") {
        Some(i)
            if segments
                .get(i + 1)
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())) =>
        {
            i + 2
        }
        _ => 2,
    };
    for s in segments.iter().take(keep) {
        out.push('/');
        out.push_str(s);
    }
    if segments.len() > keep {
        out.push_str("/***");
    }
    if url.query().is_some() {
        out.push_str("?***");
    }
    if segments.is_empty() && url.query().is_none() {
        out.push('/');
    }
    out
}

pub(super) fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || ["token", "secret", "key", "auth", "password", "signature"]
        .iter()
        .any(|w| name.contains(w))
}

pub(super) fn action_json(a: &Action) -> Value {
    let w = match a {
        Action::Webhook(w) => w,
        Action::Handler(h) => {
            return json!({"handler": {
                "id": h.id,
                "method": h.method,
                "params": Value::Object(h.params.clone()),
            }})
        }
    };
    let headers: Map<String, Value> = w
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                json!(v.to_str().unwrap_or_default()),
            )
        })
        .collect();
    let mut hook = Map::new();
    hook.insert("url".into(), json!(w.url.to_string()));
    hook.insert("method".into(), json!(w.method.as_str()));
    hook.insert("headers".into(), Value::Object(headers));
    if let Some(body) = &w.body {
        hook.insert("body".into(), body.to_value());
    }
    json!({ "webhook": hook })
}

/// Checks an `action` object: exactly one kind, then that kind's fields.
pub(super) fn check_action(v: Json<'_, ActionShape<'_>>) -> Result<Action, SpecError> {
    let a = object(v, "action")?;
    match (present(a.webhook), present(a.handler)) {
        (Some(hook), None) => Ok(Action::Webhook(check_webhook(hook)?)),
        (None, Some(call)) => Ok(Action::Handler(check_handler_call(call)?)),
        (Some(_), Some(_)) => Err(action_kind_error(true)),
        (None, None) => Err(action_kind_error(false)),
    }
}

/// An `action` with both kinds (`both`) or with none.
pub(super) fn action_kind_error(both: bool) -> SpecError {
    let has = if both { "both" } else { "none" };
    SpecError::new(
        "action",
        format!("needs exactly one of webhook, handler; it has {has}"),
    )
}

fn check_handler_call(v: Json<'_, HandlerShape<'_>>) -> Result<HandlerCall, SpecError> {
    let h = object(v, "action.handler")?;
    let id = handler_id_str(&required_str(
        h.id,
        "action.handler.id",
        "must be the handler's peer name, a string such as \"discord-bot\"",
    )?)?;
    let method = handler_method_str(&required_str(
        h.method,
        "action.handler.method",
        "must be a string such as \"send_message\"",
    )?)?;
    let params = opt_map(
        h.params,
        "action.handler.params",
        "must be a JSON object of named parameters, e.g. {\"channel_id\": \"123\"}",
    )?;
    Ok(HandlerCall { id, method, params })
}

/// A handler call's `id`: the handler's peer name.
pub(super) fn handler_id_str(s: &str) -> Result<String, SpecError> {
    peers::PeerName::new(s).map_err(|e| SpecError::new("action.handler.id", e.to_string()))?;
    Ok(s.to_string())
}

/// A handler call's `method`.
pub(super) fn handler_method_str(s: &str) -> Result<String, SpecError> {
    check_method_name(s).map_err(|e| SpecError::new("action.handler.method", e))?;
    Ok(s.to_string())
}

pub(super) const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

fn check_webhook(v: Json<'_, WebhookShape<'_>>) -> Result<Webhook, SpecError> {
    let w = object(v, "action.webhook")?;
    let url = url_str(&required_str(
        w.url,
        "action.webhook.url",
        "must be a string such as \"https://discord.com/api/webhooks/…\"",
    )?)?;
    let method = match present(w.method) {
        None => Method::POST,
        Some(Json::Str(s)) => method_str(&s)?,
        Some(_) => return Err(method_error()),
    };
    let mut headers = Vec::new();
    match present(w.headers) {
        None => {}
        Some(Json::Object(h)) => {
            check_header_count(h.len())?;
            headers.reserve_exact(h.len());
            for (name, value) in &h {
                let Json::Str(value) = value else {
                    // Same order of checks as `push_header`: the name first.
                    let path = format!("action.webhook.headers.{}", &**name);
                    let header = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| SpecError::new(&path, "is not a valid HTTP header name"))?;
                    check_not_forbidden(&header, &path)?;
                    return Err(SpecError::new(&path, "must be a string"));
                };
                push_header(&mut headers, name, value)?;
            }
            headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        }
        Some(_) => {
            return Err(SpecError::new(
                "action.webhook.headers",
                "must be an object of header names to string values",
            ))
        }
    }
    let body = w
        .body
        .filter(|raw| raw.get() != "null")
        .map(JsonBody::from_raw);
    Ok(Webhook {
        url,
        method,
        headers,
        body,
    })
}

/// A webhook's `method`, any case.
pub(super) fn method_str(s: &str) -> Result<Method, SpecError> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        _ => return Err(method_error()),
    })
}

/// Refuses more than [`MAX_HEADERS`] headers.
pub(super) fn check_header_count(n: usize) -> Result<(), SpecError> {
    if n > MAX_HEADERS {
        return Err(SpecError::new(
            "action.webhook.headers",
            format!("has {n} headers; at most {MAX_HEADERS} are allowed"),
        ));
    }
    Ok(())
}

fn check_not_forbidden(header: &HeaderName, path: &str) -> Result<(), SpecError> {
    if FORBIDDEN_HEADERS.contains(&header.as_str()) {
        return Err(SpecError::new(
            path,
            "is set by the scheduler itself; remove it",
        ));
    }
    Ok(())
}

/// Checks one webhook header and appends it to `headers` (unsorted; the caller sorts).
pub(super) fn push_header(
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    name: &str,
    value: &str,
) -> Result<(), SpecError> {
    let path = format!("action.webhook.headers.{name}");
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| SpecError::new(&path, "is not a valid HTTP header name"))?;
    check_not_forbidden(&header, &path)?;
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(SpecError::new(
            &path,
            format!("is longer than {MAX_HEADER_VALUE_LEN} bytes"),
        ));
    }
    // `from_str` also takes bytes 0x80-0xFF, which `to_str` (and so `to_json`, the
    // stored form) cannot give back: only what round-trips is accepted.
    let value = HeaderValue::from_str(value)
        .ok()
        .filter(|v| v.to_str().is_ok())
        .ok_or_else(|| SpecError::new(&path, "must be visible ASCII characters and spaces only"))?;
    if headers.iter().any(|(n, _)| *n == header) {
        return Err(SpecError::new(
            &path,
            "is given twice (header names ignore case); keep one",
        ));
    }
    headers.push((header, value));
    Ok(())
}

pub(super) fn method_error() -> SpecError {
    SpecError::new(
        "action.webhook.method",
        "must be one of GET, POST, PUT, PATCH, DELETE",
    )
}

/// A webhook URL's text, checked.
pub(super) fn url_str(s: &str) -> Result<Uri, SpecError> {
    let path = "action.webhook.url";
    if s.len() > MAX_URL_LEN {
        return Err(SpecError::new(
            path,
            format!("is longer than {MAX_URL_LEN} bytes"),
        ));
    }
    if s.contains('#') {
        return Err(SpecError::new(
            path,
            "must not contain a #fragment (it is never sent); remove it",
        ));
    }
    if !s.contains("://") {
        return Err(SpecError::new(
            path,
            "must start with https:// (or http://): copy the whole address, such as \
             https://discord.com/api/webhooks/…",
        ));
    }
    let uri: Uri = s
        .parse()
        .map_err(|_| SpecError::new(path, "is not a valid absolute URL"))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(SpecError::new(
                path,
                format!("uses the scheme {other:?}; only http and https are allowed"),
            ))
        }
        None => {
            return Err(SpecError::new(
                path,
                "must be an absolute URL starting with http:// or https://",
            ))
        }
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.contains('@') {
        return Err(SpecError::new(
            path,
            "must not contain user:password@; put credentials in an Authorization header",
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(SpecError::new(path, "must name a host"));
    }
    Ok(uri)
}

/// Checks a `retry` object.
pub(super) fn check_retry(v: Json<'_, RetryShape<'_>>) -> Result<Retry, SpecError> {
    let r = object(v, "retry")?;
    let d = Retry::default();
    let attempts = match present(r.attempts) {
        None => d.attempts,
        Some(v) => whole(v, "retry.attempts", 1, MAX_ATTEMPTS)?,
    };
    let backoff =
        opt_duration(r.backoff, "retry.backoff", Duration::ZERO, MAX_BACKOFF)?.unwrap_or(d.backoff);
    Ok(Retry { attempts, backoff })
}
