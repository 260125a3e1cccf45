//! The job model: what a job is, parsed once from JSON into valid-only types.
//!
//! Layer: checked types at the edge of [`crate::sched`]; no I/O, no clocks (the caller passes
//! `now`). Owns [`JobId`], [`JobSpec`] and its parts ([`Action`], [`Webhook`], [`Retry`]), the
//! JSON shape shared by the HTTP API and the store ([`JobSpec::from_json`] /
//! [`JobSpec::to_json`]), PATCH semantics ([`JobSpec::patched`]), audit redaction
//! ([`JobSpec::redacted_json`]) and the duration syntax (`"90s"`, `"1h30m"`; [`parse_duration`]).
//! Contract: a [`JobSpec`] value is always valid, `from_json(&spec.to_json(), None)` gives the
//! same spec back, and every rejection is a [`SpecError`] naming the offending field by its JSON
//! path (`"trigger.cron"`, `"action.webhook.url"`, `"retry.attempts"`). Unknown fields are errors
//! at every level, and `null` means the same as an absent field.
//!
//! JSON shape (fields marked `?` are optional; defaults in brackets):
//!
//! ```text
//! { "name": "raid-reminder",                       1-100 characters, not only whitespace
//!   "trigger": {"at": RFC 3339}                    must be after `now` when created
//!            | {"every": "90s", "start"?, "end"?}  start [creation time]
//!            | {"cron": "45 19 * * THU", "timezone"? [UTC], "start"?, "end"?},
//!   "action": {"webhook": {"url": http(s), "method"? [POST], "headers"? {..}, "body"? any}}
//!           | {"handler": {"id": handler peer name, "method": name, "params"? {..} [{}]}},
//!   "misfire_grace"? ["60s"], "coalesce"? [true], "max_instances"? [1], "jitter"? ["0s"],
//!   "retry"? {"attempts"? [1], "backoff"? ["10s"]}, "timeout"? ["30s"], "paused"? [false],
//!   "metadata"? [{}] }
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Uri};
use jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::trigger::{CronExpr, Trigger, Zone};

/// A job's identity: 64 bits, written as 16 lowercase hex digits (`"00000000000004d2"`).
/// The driver chooses ids; the core only compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u64);

impl JobId {
    /// Wraps a raw id.
    pub const fn from_u64(id: u64) -> JobId {
        JobId(id)
    }

    /// The raw id (for storage keys).
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for JobId {
    type Err = JobIdError;
    fn from_str(s: &str) -> Result<JobId, JobIdError> {
        if s.len() != 16 {
            return Err(JobIdError::Length { len: s.len() });
        }
        if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(JobIdError::NotHex);
        }
        u64::from_str_radix(s, 16)
            .map(JobId)
            .map_err(|_| JobIdError::NotHex)
    }
}

/// Why a string is not a [`JobId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobIdError {
    /// The string is not 16 characters long.
    #[error("a job id is 16 lowercase hex digits; this one has {len} characters")]
    Length {
        /// The length found, in bytes.
        len: usize,
    },
    /// A character is not one of `0-9a-f`.
    #[error("a job id is 16 lowercase hex digits (0-9, a-f); this one has other characters")]
    NotHex,
}

/// Longest job name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most concurrent instances a job may allow.
pub const MAX_INSTANCES: u32 = 100;
/// Most attempts (first try included) a retry policy may ask for.
pub const MAX_ATTEMPTS: u32 = 10;
/// Longest attempt timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Shortest attempt timeout.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest `every` interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest `every` interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 86_400);
/// Shortest misfire grace: a driver wakes a little after a deadline, and a fire that late must
/// still run.
pub const MIN_MISFIRE_GRACE: Duration = Duration::from_secs(1);
/// Longest misfire grace.
pub const MAX_MISFIRE_GRACE: Duration = Duration::from_secs(30 * 86_400);
/// Longest jitter.
pub const MAX_JITTER: Duration = Duration::from_secs(3_600);
/// Longest base retry backoff, and the cap on any single backoff delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3_600);
/// Longest webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2_048;
/// Most webhook headers.
pub const MAX_HEADERS: usize = 32;
/// Longest webhook header value, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 4_096;

/// A valid job. Built by [`JobSpec::from_json`]; the scheduler core shares it as `Arc<JobSpec>`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// 1-100 characters, not only whitespace, no control characters.
    pub name: String,
    /// When the job fires.
    pub trigger: Trigger,
    /// What a fire does.
    pub action: Action,
    /// How late a fire may still run, 1 s..=30 days; older fires are recorded as missed
    /// (default 60 s).
    pub misfire_grace: Duration,
    /// Run several due fires once instead of once each (default true).
    pub coalesce: bool,
    /// Concurrent instances allowed, 1..=100 (default 1).
    pub max_instances: u32,
    /// Each fire is delayed by a deterministic offset in `[0, jitter)` (default 0, at most 1 h).
    pub jitter: Duration,
    /// Retry policy of one fire (default: one attempt).
    pub retry: Retry,
    /// Limit on one attempt, 1 s..=10 min (default 30 s).
    pub timeout: Duration,
    /// A paused job keeps its spec but does not fire.
    pub paused: bool,
    /// Free-form data for the caller; the scheduler never reads it.
    pub metadata: Map<String, Value>,
}

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
    pub body: Option<Value>,
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

/// Why a job spec was rejected: the field's JSON path and a sentence saying what to change.
/// `Display` is `"{field}: {message}"` (just the message when the whole body is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// JSON path of the offending field, dot-separated (`"trigger.cron"`,
    /// `"action.webhook.headers.authorization"`); empty when the body itself is wrong.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl SpecError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }
}

const TOP_FIELDS: &[&str] = &[
    "name",
    "trigger",
    "action",
    "misfire_grace",
    "coalesce",
    "max_instances",
    "jitter",
    "retry",
    "timeout",
    "paused",
    "metadata",
];
const TRIGGER_KINDS: &[&str] = &["at", "every", "cron"];

impl JobSpec {
    /// Parses the API or stored JSON.
    ///
    /// `now` is the creation (or update) time: it rejects an `at` that is not after it, and is
    /// stored as the `start` of an `every` trigger that has none. Pass `None` when loading from
    /// storage, where [`JobSpec::to_json`] has already written `start`.
    pub fn from_json(v: &Value, now: Option<Timestamp>) -> Result<JobSpec, SpecError> {
        let obj = object(v, "", TOP_FIELDS)?;
        let name = parse_name(required(obj, "", "name")?)?;
        let trigger = parse_trigger(required(obj, "", "trigger")?, now)?;
        let action = parse_action(required(obj, "", "action")?)?;
        let misfire_grace =
            opt_duration(obj, "misfire_grace", MIN_MISFIRE_GRACE, MAX_MISFIRE_GRACE)?
                .unwrap_or(Duration::from_secs(60));
        let coalesce = opt_bool(obj, "", "coalesce")?.unwrap_or(true);
        let max_instances = match field(obj, "max_instances") {
            None => 1,
            Some(v) => int_in(v, "max_instances", 1, MAX_INSTANCES)?,
        };
        let jitter = opt_duration(obj, "jitter", Duration::ZERO, MAX_JITTER)?.unwrap_or_default();
        let retry = match field(obj, "retry") {
            None => Retry::default(),
            Some(v) => parse_retry(v)?,
        };
        let timeout = opt_duration(obj, "timeout", MIN_TIMEOUT, MAX_TIMEOUT)?
            .unwrap_or(Duration::from_secs(30));
        let paused = opt_bool(obj, "", "paused")?.unwrap_or(false);
        let metadata = match field(obj, "metadata") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(SpecError::new(
                    "metadata",
                    "must be a JSON object, e.g. {\"channel\": \"announcements\"}",
                ))
            }
        };
        Ok(JobSpec {
            name,
            trigger,
            action,
            misfire_grace,
            coalesce,
            max_instances,
            jitter,
            retry,
            timeout,
            paused,
            metadata,
        })
    }

    /// The canonical JSON, every field written out (defaults included, `every.start` resolved).
    /// `JobSpec::from_json(&spec.to_json(), None)` returns an equal spec.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("name".into(), json!(self.name));
        obj.insert("trigger".into(), trigger_json(&self.trigger));
        obj.insert("action".into(), action_json(&self.action));
        obj.insert(
            "misfire_grace".into(),
            json!(format_duration(self.misfire_grace)),
        );
        obj.insert("coalesce".into(), json!(self.coalesce));
        obj.insert("max_instances".into(), json!(self.max_instances));
        obj.insert("jitter".into(), json!(format_duration(self.jitter)));
        obj.insert(
            "retry".into(),
            json!({
                "attempts": self.retry.attempts,
                "backoff": format_duration(self.retry.backoff),
            }),
        );
        obj.insert("timeout".into(), json!(format_duration(self.timeout)));
        obj.insert("paused".into(), json!(self.paused));
        obj.insert("metadata".into(), Value::Object(self.metadata.clone()));
        Value::Object(obj)
    }

    /// Applies a PATCH body: JSON merge patch (RFC 7386) onto [`JobSpec::to_json`], then
    /// [`JobSpec::from_json`]. Two departures make common patches work:
    ///
    /// - a `trigger` patch that names a different kind (`{"cron": …}` on an `every` job)
    ///   replaces the whole trigger instead of merging into it;
    /// - header names in `action.webhook.headers` match case-insensitively.
    ///
    /// `now` is used only when the patch touches `trigger`, so renaming a job whose `at` has
    /// passed still works.
    pub fn patched(&self, patch: &Value, now: Option<Timestamp>) -> Result<JobSpec, SpecError> {
        let patch_obj = match patch {
            Value::Object(m) => m,
            _ => return Err(SpecError::new("", "a PATCH body must be a JSON object")),
        };
        let mut target = self.to_json();
        let mut patch = patch.clone();
        if let Some(trig_patch @ Value::Object(p)) = patch_obj.get("trigger") {
            let current = trigger_kind(&self.trigger);
            let names_other_kind = TRIGGER_KINDS
                .iter()
                .any(|k| *k != current && p.get(*k).is_some_and(|v| !v.is_null()));
            if names_other_kind {
                target["trigger"] = json!({});
                let mut replacement = trig_patch.clone();
                if let Value::Object(r) = &mut replacement {
                    r.retain(|_, v| !v.is_null());
                }
                patch["trigger"] = replacement;
            }
        }
        if let Some(Value::Object(headers)) = patch.pointer_mut("/action/webhook/headers") {
            let lowered: Map<String, Value> = std::mem::take(headers)
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            *headers = lowered;
        }
        merge_patch(&mut target, &patch);
        let now = if patch_obj.contains_key("trigger") {
            now
        } else {
            None
        };
        JobSpec::from_json(&target, now)
    }

    /// [`JobSpec::to_json`] with secrets replaced by `"***"`, for audit logs and run history.
    ///
    /// - The webhook URL keeps its scheme, host and port and the first two path segments; the
    ///   rest of the path becomes one `***` segment and any query becomes `?***`. A
    ///   `…/webhooks/<numeric id>/<token>` path (Discord) keeps the id:
    ///   `https://discord.com/api/webhooks/123/abc` → `https://discord.com/api/webhooks/123/***`.
    /// - Header values are replaced when the name is `authorization`, `proxy-authorization`,
    ///   `cookie` or contains `token`, `secret`, `key`, `auth`, `password` or `signature`.
    ///
    /// The body and metadata are kept as they are.
    /// A webhook URL with its secret parts replaced by `***` (the form audit entries show).
    pub fn redacted_url(url: &Uri) -> String {
        redact_url(url)
    }

    /// What a viewer (read-only role) sees of this job: [`JobSpec::to_json`] with
    ///
    /// - the webhook URL cut to scheme, host and port (`https://api.telegram.org/***`), plus
    ///   `url_fingerprint`: 8 hex digits of an HMAC-SHA256 of the full URL under `key`, so a
    ///   viewer can tell two URLs apart (or see one change) without learning either — keyed,
    ///   so a guessable secret such as an ntfy topic cannot be found by trying candidates;
    /// - header values shown only for names in [`VIEWER_HEADERS`], the rest `***`;
    /// - the body replaced by `"***"` (it may carry tokens or chat ids);
    /// - for a handler call, its handler and method as they are and its `params` replaced by
    ///   `"***"`, for the same reason as a webhook body.
    pub fn viewer_json(&self, key: &[u8]) -> Value {
        let mut v = self.to_json();
        let Action::Webhook(hook) = &self.action else {
            if let Some(params) = v.pointer_mut("/action/handler/params") {
                *params = json!("***");
            }
            return v;
        };
        if let Some(Value::Object(w)) = v.pointer_mut("/action/webhook") {
            w.insert("url".into(), json!(viewer_url(&hook.url)));
            w.insert(
                "url_fingerprint".into(),
                json!(url_fingerprint(&hook.url, key)),
            );
            if let Some(Value::Object(headers)) = w.get_mut("headers") {
                for (name, value) in headers.iter_mut() {
                    if !VIEWER_HEADERS.contains(&name.as_str()) {
                        *value = json!("***");
                    }
                }
            }
            if let Some(body) = w.get_mut("body") {
                *body = json!("***");
            }
        }
        v
    }

    pub fn redacted_json(&self) -> Value {
        let mut v = self.to_json();
        let Action::Webhook(hook) = &self.action else {
            // A handler call carries no credentials of its own: the handler authenticates
            // through its tunnel.
            return v;
        };
        if let Some(url) = v.pointer_mut("/action/webhook/url") {
            *url = json!(redact_url(&hook.url));
        }
        if let Some(Value::Object(headers)) = v.pointer_mut("/action/webhook/headers") {
            for (name, value) in headers.iter_mut() {
                if is_secret_header(name) {
                    *value = json!("***");
                }
            }
        }
        v
    }
}

/// RFC 7386: objects merge key by key, `null` deletes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return;
    };
    for (k, v) in patch {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
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

fn redact_url(url: &Uri) -> String {
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

fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || ["token", "secret", "key", "auth", "password", "signature"]
        .iter()
        .any(|w| name.contains(w))
}

fn trigger_kind(t: &Trigger) -> &'static str {
    match t {
        Trigger::At(_) => "at",
        Trigger::Every { .. } => "every",
        Trigger::Cron { .. } => "cron",
    }
}

fn trigger_json(t: &Trigger) -> Value {
    let mut m = Map::new();
    match t {
        Trigger::At(at) => {
            m.insert("at".into(), json!(at.to_string()));
        }
        Trigger::Every {
            interval,
            start,
            end,
        } => {
            m.insert("every".into(), json!(format_duration(*interval)));
            m.insert("start".into(), json!(start.to_string()));
            if let Some(end) = end {
                m.insert("end".into(), json!(end.to_string()));
            }
        }
        Trigger::Cron {
            expr,
            zone,
            start,
            end,
        } => {
            m.insert("cron".into(), json!(expr.as_str()));
            m.insert("timezone".into(), json!(zone.name()));
            if let Some(start) = start {
                m.insert("start".into(), json!(start.to_string()));
            }
            if let Some(end) = end {
                m.insert("end".into(), json!(end.to_string()));
            }
        }
    }
    Value::Object(m)
}

fn action_json(a: &Action) -> Value {
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
        hook.insert("body".into(), body.clone());
    }
    json!({ "webhook": hook })
}

// ---- parsing helpers -------------------------------------------------------------------------

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `v` as an object whose keys are all in `allowed`.
fn object<'a>(
    v: &'a Value,
    path: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, SpecError> {
    let Value::Object(m) = v else {
        return Err(SpecError::new(
            path,
            format!(
                "must be a JSON object with the fields {}",
                allowed.join(", ")
            ),
        ));
    };
    if let Some(unknown) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(SpecError::new(
            join(path, unknown),
            format!(
                "unknown field; remove it (allowed here: {})",
                allowed.join(", ")
            ),
        ));
    }
    Ok(m)
}

/// The field's value, treating `null` as absent.
fn field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn required<'a>(m: &'a Map<String, Value>, path: &str, key: &str) -> Result<&'a Value, SpecError> {
    field(m, key).ok_or_else(|| SpecError::new(join(path, key), "is required"))
}

fn opt_bool(m: &Map<String, Value>, path: &str, key: &str) -> Result<Option<bool>, SpecError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(SpecError::new(join(path, key), "must be true or false")),
    }
}

fn int_in(v: &Value, path: &str, min: u32, max: u32) -> Result<u32, SpecError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| SpecError::new(path, format!("must be a whole number from {min} to {max}")))
}

fn duration_in(v: &Value, path: &str, min: Duration, max: Duration) -> Result<Duration, SpecError> {
    let Value::String(s) = v else {
        return Err(SpecError::new(
            path,
            "must be a duration string such as \"90s\", \"30m\", \"2h\" or \"1h30m\"",
        ));
    };
    let d = parse_duration(s).map_err(|e| SpecError::new(path, e.to_string()))?;
    if d < min || d > max {
        return Err(SpecError::new(
            path,
            format!(
                "must be from {} to {}; got {}",
                format_duration(min),
                format_duration(max),
                format_duration(d)
            ),
        ));
    }
    Ok(d)
}

fn opt_duration(
    m: &Map<String, Value>,
    key: &str,
    min: Duration,
    max: Duration,
) -> Result<Option<Duration>, SpecError> {
    field(m, key)
        .map(|v| duration_in(v, key, min, max))
        .transpose()
}

fn timestamp(v: &Value, path: &str) -> Result<Timestamp, SpecError> {
    let hint = "must be an RFC 3339 time with an offset, e.g. \"2026-12-03T19:45:00+01:00\" or \"2026-12-03T18:45:00.250Z\"";
    let Value::String(s) = v else {
        return Err(SpecError::new(path, hint));
    };
    s.parse::<Timestamp>().map_err(|_| {
        // Well-formed but beyond what a timestamp can hold (years up to 9999, less the largest
        // offset): say so rather than calling it malformed.
        let well_formed =
            jiff::fmt::temporal::Pieces::parse(s.as_str()).is_ok_and(|p| p.offset().is_some());
        if well_formed {
            SpecError::new(
                path,
                format!(
                    "is out of range: times must lie between {} and {}",
                    Timestamp::MIN
                        .round(jiff::Unit::Second)
                        .unwrap_or(Timestamp::MIN),
                    Timestamp::MAX
                        .round(jiff::Unit::Second)
                        .unwrap_or(Timestamp::MAX)
                ),
            )
        } else {
            SpecError::new(path, hint)
        }
    })
}

fn opt_timestamp(
    m: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<Timestamp>, SpecError> {
    field(m, key)
        .map(|v| timestamp(v, &join(path, key)))
        .transpose()
}

fn parse_name(v: &Value) -> Result<String, SpecError> {
    let Value::String(s) = v else {
        return Err(SpecError::new("name", "must be a string"));
    };
    if s.trim().is_empty() {
        return Err(SpecError::new(
            "name",
            "must not be empty or only whitespace",
        ));
    }
    if s.chars().count() > MAX_NAME_CHARS {
        return Err(SpecError::new(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(SpecError::new(
            "name",
            "must not contain control characters such as newlines or tabs",
        ));
    }
    check_name_text(s).map_err(|m| SpecError::new("name", m))?;
    Ok(s.clone())
}

/// Most combining marks allowed in a row after one base character.
pub const MAX_COMBINING_RUN: usize = 2;

/// Refuses text that can make one name look like another in the dashboard or a terminal:
/// bidirectional controls, zero-width and other invisible format characters, line and
/// paragraph separators, and piles of combining marks (more than [`MAX_COMBINING_RUN`] in a
/// row, or one with nothing to combine with). The message names the character by code point.
pub fn check_name_text(s: &str) -> Result<(), String> {
    let mut run = 0;
    for (i, c) in s.chars().enumerate() {
        if let Some(what) = invisible(c) {
            return Err(format!(
                "must not contain {what} (U+{:04X} at character {}); they can make one name look like another",
                c as u32,
                i + 1
            ));
        }
        if is_combining(c) {
            run += 1;
            if i == 0 || run > MAX_COMBINING_RUN {
                return Err(format!(
                    "must not stack combining marks (U+{:04X} at character {}): at most {MAX_COMBINING_RUN} may follow a letter",
                    c as u32,
                    i + 1
                ));
            }
        } else {
            run = 0;
        }
    }
    Ok(())
}

/// What kind of invisible or direction-changing character `c` is, if it is one.
fn invisible(c: char) -> Option<&'static str> {
    Some(match c as u32 {
        0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069 => {
            "a bidirectional control character"
        }
        0x200B..=0x200D | 0x2060 | 0xFEFF => "a zero-width character",
        0x2028 | 0x2029 => "a line or paragraph separator",
        // The rest of Unicode's format (Cf) characters, and fillers that render as blanks.
        0x00AD
        | 0x034F
        | 0x0600..=0x0605
        | 0x06DD
        | 0x070F
        | 0x0890..=0x0891
        | 0x08E2
        | 0x115F
        | 0x1160
        | 0x17B4
        | 0x17B5
        | 0x180B..=0x180F
        | 0x2061..=0x2064
        | 0x206A..=0x206F
        | 0x3164
        | 0xFFA0
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF => "an invisible formatting character",
        _ => return None,
    })
}

/// Combining marks of the general-purpose combining blocks (the ones that stack on any
/// letter); script-specific vowel signs are left alone.
fn is_combining(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF
        | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// Parses a job's `trigger` object on its own, exactly as [`JobSpec::from_json`] does (same
/// `now` rules, errors named `trigger.*`): the schedule preview uses it so that what it shows is
/// what the scheduler will do.
pub fn parse_trigger(v: &Value, now: Option<Timestamp>) -> Result<Trigger, SpecError> {
    let Value::Object(m) = v else {
        return Err(SpecError::new(
            "trigger",
            "must be an object with exactly one of at, every, cron",
        ));
    };
    let kinds: Vec<&str> = TRIGGER_KINDS
        .iter()
        .copied()
        .filter(|k| field(m, k).is_some())
        .collect();
    let kind = match kinds.as_slice() {
        [kind] => *kind,
        [] => {
            return Err(SpecError::new(
                "trigger",
                "needs exactly one of at, every, cron; it has none",
            ))
        }
        _ => {
            return Err(SpecError::new(
                "trigger",
                format!(
                    "needs exactly one of at, every, cron; it has {}",
                    kinds.join(" and ")
                ),
            ))
        }
    };
    let p = "trigger";
    match kind {
        "at" => {
            object(v, p, &["at"])?;
            let at = timestamp(&m["at"], "trigger.at")?;
            if let Some(now) = now {
                if at <= now {
                    return Err(SpecError::new(
                        "trigger.at",
                        format!("{at} is not in the future (now is {now}); pick a later time"),
                    ));
                }
            }
            Ok(Trigger::At(at))
        }
        "every" => {
            object(v, p, &["every", "start", "end"])?;
            let interval = duration_in(&m["every"], "trigger.every", MIN_INTERVAL, MAX_INTERVAL)?;
            let start =
                match (opt_timestamp(m, p, "start")?, now) {
                    (Some(start), _) => start,
                    (None, Some(now)) => now,
                    (None, None) => return Err(SpecError::new(
                        "trigger.start",
                        "is required in a stored job (the API fills it in with the creation time)",
                    )),
                };
            let end = opt_timestamp(m, p, "end")?;
            check_end(Some(start), end)?;
            Ok(Trigger::Every {
                interval,
                start,
                end,
            })
        }
        _ => {
            object(v, p, &["cron", "timezone", "start", "end"])?;
            let Value::String(src) = &m["cron"] else {
                return Err(SpecError::new(
                    "trigger.cron",
                    "must be a crontab string such as \"45 19 * * THU\"",
                ));
            };
            let expr =
                CronExpr::parse(src).map_err(|e| SpecError::new("trigger.cron", e.to_string()))?;
            let zone = match field(m, "timezone") {
                None => Zone::utc(),
                Some(Value::String(name)) => Zone::get(name)
                    .map_err(|e| SpecError::new("trigger.timezone", e.to_string()))?,
                Some(_) => {
                    return Err(SpecError::new(
                        "trigger.timezone",
                        "must be an IANA time zone name such as \"Europe/Berlin\"",
                    ))
                }
            };
            let start = opt_timestamp(m, p, "start")?;
            let end = opt_timestamp(m, p, "end")?;
            check_end(start, end)?;
            Ok(Trigger::Cron {
                expr,
                zone,
                start,
                end,
            })
        }
    }
}

fn check_end(start: Option<Timestamp>, end: Option<Timestamp>) -> Result<(), SpecError> {
    match (start, end) {
        (Some(start), Some(end)) if end <= start => Err(SpecError::new(
            "trigger.end",
            format!("{end} is not after start {start}; pick a later end or drop it"),
        )),
        _ => Ok(()),
    }
}

fn parse_action(v: &Value) -> Result<Action, SpecError> {
    let m = object(v, "action", &["webhook", "handler"])?;
    match (field(m, "webhook"), field(m, "handler")) {
        (Some(hook), None) => Ok(Action::Webhook(parse_webhook(hook)?)),
        (None, Some(call)) => Ok(Action::Handler(parse_handler_call(call)?)),
        (Some(_), Some(_)) => Err(SpecError::new(
            "action",
            "needs exactly one of webhook, handler; it has both",
        )),
        (None, None) => Err(SpecError::new(
            "action",
            "needs exactly one of webhook, handler; it has none",
        )),
    }
}

fn parse_handler_call(v: &Value) -> Result<HandlerCall, SpecError> {
    let p = "action.handler";
    let m = object(v, p, &["id", "method", "params"])?;
    let id = match required(m, p, "id")? {
        Value::String(s) => {
            peers::PeerName::new(s)
                .map_err(|e| SpecError::new("action.handler.id", e.to_string()))?;
            s.clone()
        }
        _ => {
            return Err(SpecError::new(
                "action.handler.id",
                "must be the handler's peer name, a string such as \"discord-bot\"",
            ))
        }
    };
    let method = match required(m, p, "method")? {
        Value::String(s) => {
            check_method_name(s).map_err(|e| SpecError::new("action.handler.method", e))?;
            s.clone()
        }
        _ => {
            return Err(SpecError::new(
                "action.handler.method",
                "must be a string such as \"send_message\"",
            ))
        }
    };
    let params = match field(m, "params") {
        None => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(SpecError::new(
                "action.handler.params",
                "must be a JSON object of named parameters, e.g. {\"channel_id\": \"123\"}",
            ))
        }
    };
    Ok(HandlerCall { id, method, params })
}

const FORBIDDEN_HEADERS: &[&str] = &[
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

fn parse_webhook(v: &Value) -> Result<Webhook, SpecError> {
    let p = "action.webhook";
    let m = object(v, p, &["url", "method", "headers", "body"])?;
    let url = parse_url(required(m, p, "url")?)?;
    let method = match field(m, "method") {
        None => Method::POST,
        Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            _ => return Err(method_error()),
        },
        Some(_) => return Err(method_error()),
    };
    let mut headers = Vec::new();
    match field(m, "headers") {
        None => {}
        Some(Value::Object(h)) => {
            if h.len() > MAX_HEADERS {
                return Err(SpecError::new(
                    "action.webhook.headers",
                    format!("has {} headers; at most {MAX_HEADERS} are allowed", h.len()),
                ));
            }
            for (name, value) in h {
                let path = format!("action.webhook.headers.{name}");
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| SpecError::new(&path, "is not a valid HTTP header name"))?;
                if FORBIDDEN_HEADERS.contains(&header.as_str()) {
                    return Err(SpecError::new(
                        &path,
                        "is set by the scheduler itself; remove it",
                    ));
                }
                let Value::String(value) = value else {
                    return Err(SpecError::new(&path, "must be a string"));
                };
                if value.len() > MAX_HEADER_VALUE_LEN {
                    return Err(SpecError::new(
                        &path,
                        format!("is longer than {MAX_HEADER_VALUE_LEN} bytes"),
                    ));
                }
                let value = HeaderValue::from_str(value).map_err(|_| {
                    SpecError::new(&path, "must be visible ASCII characters and spaces only")
                })?;
                if headers.iter().any(|(n, _)| *n == header) {
                    return Err(SpecError::new(
                        &path,
                        "is given twice (header names ignore case); keep one",
                    ));
                }
                headers.push((header, value));
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
    let body = field(m, "body").cloned();
    Ok(Webhook {
        url,
        method,
        headers,
        body,
    })
}

fn method_error() -> SpecError {
    SpecError::new(
        "action.webhook.method",
        "must be one of GET, POST, PUT, PATCH, DELETE",
    )
}

fn parse_url(v: &Value) -> Result<Uri, SpecError> {
    let path = "action.webhook.url";
    let Value::String(s) = v else {
        return Err(SpecError::new(
            path,
            "must be a string such as \"https://discord.com/api/webhooks/…\"",
        ));
    };
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

fn parse_retry(v: &Value) -> Result<Retry, SpecError> {
    let m = object(v, "retry", &["attempts", "backoff"])?;
    let d = Retry::default();
    let attempts = match field(m, "attempts") {
        None => d.attempts,
        Some(v) => int_in(v, "retry.attempts", 1, MAX_ATTEMPTS)?,
    };
    let backoff = match field(m, "backoff") {
        None => d.backoff,
        Some(v) => duration_in(v, "retry.backoff", Duration::ZERO, MAX_BACKOFF)?,
    };
    Ok(Retry { attempts, backoff })
}

// ---- durations -------------------------------------------------------------------------------

/// Why a duration string was rejected by [`parse_duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("the duration is empty; write e.g. \"90s\", \"30m\", \"2h\" or \"1h30m\"")]
    Empty,
    /// Something other than `<digits><unit>` pairs, e.g. `"5 minutes"` or `"1.5h"`.
    #[error("{found:?} is not a duration; write whole numbers with units d, h, m, s or ms and no spaces, e.g. \"90s\", \"30m\", \"1h30m\"")]
    Syntax {
        /// The string as given.
        found: String,
    },
    /// A unit appears twice or out of order (`"30m1h"`).
    #[error("{found:?} repeats a unit or has them out of order; write larger units first, each once, e.g. \"1h30m\"")]
    UnitOrder {
        /// The string as given.
        found: String,
    },
    /// The value does not fit.
    #[error("{found:?} is too long a duration")]
    Overflow {
        /// The string as given.
        found: String,
    },
}

/// Parses `"90s"`, `"30m"`, `"2h"`, `"1h30m"`, `"1d"`, `"250ms"`: whole numbers, each followed
/// by one of `d h m s ms`, largest unit first, each unit at most once, no spaces.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    const UNITS: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let syntax = || DurationError::Syntax {
        found: s.to_string(),
    };
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u64 = 0;
    let mut last_unit: Option<usize> = None;
    while i < bytes.len() {
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start || i - digits_start > 12 {
            return Err(syntax());
        }
        let n: u64 = s[digits_start..i].parse().map_err(|_| syntax())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let idx = UNITS
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(syntax)?;
        if last_unit.is_some_and(|last| idx <= last) {
            return Err(DurationError::UnitOrder {
                found: s.to_string(),
            });
        }
        last_unit = Some(idx);
        total_ms = n
            .checked_mul(UNITS[idx].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| DurationError::Overflow {
                found: s.to_string(),
            })?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Writes a duration the way [`parse_duration`] reads it, in hours, minutes, seconds and
/// milliseconds (`"1h30m"`, `"90ms"`, `"0s"`); sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}
