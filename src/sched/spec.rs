//! The job model: what a job is, parsed once from JSON into valid-only types.
//!
//! Layer: checked types at the edge of [`crate::sched`]; no I/O, no clocks (the caller passes
//! `now`). Owns [`JobId`], [`JobSpec`] and its parts ([`Action`], [`Webhook`], [`Retry`]), the
//! JSON shape shared by the HTTP API and the store (decoded by [`JobDraft`], written by
//! [`JobSpec::to_json`]), PATCH semantics ([`JobSpec::patched`]), audit redaction
//! ([`JobSpec::redacted_json`]) and the duration syntax (`"90s"`, `"1h30m"`; [`parse_duration`]).
//! Contract: a [`JobSpec`] value is always valid, `from_json(&spec.to_json(), None)` gives the
//! same spec back, and every rejection is a [`SpecError`] naming the offending field by its JSON
//! path (`"trigger.cron"`, `"action.webhook.url"`, `"retry.attempts"`). Unknown fields are errors
//! at every level, and `null` means the same as an absent field.
//!
//! Split by concept: this file holds [`JobId`], the limits, [`JobSpec`] (render, patch,
//! redact) and the field checks every part shares; `spec/typed.rs` the one decoder (serde reads
//! the shape, then the checks, into a [`JobDraft`]); `spec/action.rs` the action (handler call,
//! webhook, retry, their checks, URL and header redaction), `spec/schedule.rs` the `trigger`
//! object, `spec/name.rs` job names, `spec/duration.rs` the duration syntax, `spec/error.rs`
//! [`SpecError`].
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

use hyper::Uri;
use jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::trigger::Trigger;

mod action;
mod duration;
mod error;
mod name;
mod schedule;
mod typed;

pub use action::{
    check_method_name, url_fingerprint, viewer_url, Action, HandlerCall, JsonBody, Retry, Webhook,
    MAX_METHOD_LEN, VIEWER_HEADERS,
};
pub use duration::{format_duration, parse_duration, DurationError};
pub use error::SpecError;
pub use name::{check_name_text, MAX_COMBINING_RUN};
pub use schedule::parse_trigger;

pub use typed::JobDraft;

use action::{action_json, is_secret_header, redact_url};
use schedule::{trigger_json, trigger_kind};

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

    /// Random bits below the creation time in a [`JobId::fresh`] id.
    pub const FRESH_RANDOM_BITS: u32 = 22;

    /// A new job's id: the creation time in Unix milliseconds (42 bits, good until 2109) above
    /// [`JobId::FRESH_RANDOM_BITS`] bits of `random`. Ids made later sort after earlier ones,
    /// so a new job's rows land at the end of the tables keyed by id (the B-tree's last pages,
    /// which stay cached) instead of on a random page of a large table: what a create costs
    /// stops growing with the number of jobs. Two creates in one millisecond collide once in
    /// about 4 million pairs; the store refuses a taken id and the caller draws again.
    pub fn fresh(unix_ms: u64, random: u64) -> JobId {
        let time = unix_ms & ((1 << (64 - Self::FRESH_RANDOM_BITS)) - 1);
        JobId(time << Self::FRESH_RANDOM_BITS | random & ((1 << Self::FRESH_RANDOM_BITS) - 1))
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

/// Serde for a [`JobId`] as its 16-hex-digit display form, for `#[serde(with = "…")]`: how
/// job ids travel in stored rows, task records and API bodies.
pub mod job_id_hex {
    use super::JobId;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the id as 16 lowercase hex digits.
    pub fn serialize<S: Serializer>(id: &JobId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    /// Reads 16 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<JobId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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

/// The metadata key holding a job's ScheduleZero id ([`JobSpec::schedulezero_id`]).
pub const SCHEDULEZERO_ID: &str = "schedulezero_job_id";
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
    /// Free-form data for the caller; the scheduler reads only one key of it, the
    /// ScheduleZero id its job table indexes ([`JobSpec::schedulezero_id`]).
    pub metadata: Map<String, Value>,
}

const TRIGGER_KINDS: &[&str] = &["at", "every", "cron"];

impl JobSpec {
    /// The ScheduleZero id the job carries: `metadata.schedulezero_job_id` when it is a string
    /// (a job created through `POST /api/schedule`, or given one natively).
    pub fn schedulezero_id(&self) -> Option<&str> {
        self.metadata.get(SCHEDULEZERO_ID).and_then(Value::as_str)
    }

    /// Decodes the API's or the store's JSON: [`JobDraft::from_value`], then
    /// [`JobDraft::finish`] with `now` (the creation or update time; `None` for a stored job).
    pub fn from_json(v: &Value, now: Option<Timestamp>) -> Result<JobSpec, SpecError> {
        JobDraft::from_value(v)?.finish(now)
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

    /// Applies a PATCH body: JSON merge patch (RFC 7386) onto [`JobSpec::to_json`], then the
    /// decoder every body goes through ([`JobDraft`]). Two departures make common patches work:
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
        JobDraft::from_value(&target)?.finish(now)
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

    /// The spec as [`JobSpec::to_json`] gives it, with secrets replaced by `***` (Discord webhook tokens, credential headers), for audit summaries and logs.
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

// ---- field checks shared by the parts ------------------------------------------------------

/// `n` (`None`: not a whole number) as a `u32` within `min..=max`.
fn int_range(n: Option<u64>, path: &str, min: u32, max: u32) -> Result<u32, SpecError> {
    n.and_then(|n| u32::try_from(n).ok())
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| SpecError::new(path, format!("must be a whole number from {min} to {max}")))
}

/// A duration string within `min..=max`.
fn duration_str(s: &str, path: &str, min: Duration, max: Duration) -> Result<Duration, SpecError> {
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

const TIMESTAMP_HINT: &str = "must be an RFC 3339 time with an offset, e.g. \"2026-12-03T19:45:00+01:00\" or \"2026-12-03T18:45:00.250Z\"";

/// An RFC 3339 time with an offset.
fn timestamp_str(s: &str, path: &str) -> Result<Timestamp, SpecError> {
    s.parse::<Timestamp>().map_err(|_| {
        // Well-formed but beyond what a timestamp can hold (years up to 9999, less the largest
        // offset): say so rather than calling it malformed.
        let well_formed = jiff::fmt::temporal::Pieces::parse(s).is_ok_and(|p| p.offset().is_some());
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
            SpecError::new(path, TIMESTAMP_HINT)
        }
    })
}
