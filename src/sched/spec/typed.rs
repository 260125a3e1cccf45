//! The one decoder of a job spec (part of [`super`]): JSON into the checked type, for API
//! bodies (a `serde_json::Value`), PATCH results and stored rows (text) alike.
//!
//! Two steps:
//!
//! 1. **Shape** (serde, no `Value` tree): each object of the spec is read into a struct of its
//!    known fields, each a [`Json`] (the value's kind; a string borrowed from the input when it
//!    has no escapes), remembering the first unknown key rather than failing. Only malformed
//!    JSON text fails here. A restart decodes every stored job (100,000 in the startup bench)
//!    this way, straight from the row's text.
//! 2. **Check**: the fields in one fixed order (`name`, `trigger`, `action`, `misfire_grace`,
//!    `coalesce`, `max_instances`, `jitter`, `retry`, `timeout`, `paused`, `metadata`; at every
//!    level unknown fields first), each refusal a [`SpecError`] naming the field by its JSON path
//!    (`action.webhook.headers.x-token`) with a sentence saying what to send instead. Wrong
//!    kinds (a number where a string belongs) get such a sentence too, not serde's.
//!
//! The result is a [`JobDraft`]: checked in full but for what depends on when the request is
//! made (an `at` must lie ahead; an `every` without `start` starts then), which
//! [`JobDraft::finish`] applies with the caller's `now` (the scheduler's clock), or without one
//! for a stored row, whose `every.start` is written out. `null` means the same as an absent
//! field everywhere.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use jiff::Timestamp;
use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::action::{check_action, check_retry};
use super::name::name_str;
use super::schedule::{check_trigger, finish_trigger};
use super::{
    duration_str, int_range, timestamp_str, JobSpec, Retry, SpecError, MAX_INSTANCES, MAX_JITTER,
    MAX_MISFIRE_GRACE, MAX_TIMEOUT, MIN_MISFIRE_GRACE, MIN_TIMEOUT, TIMESTAMP_HINT,
};

/// A JSON string, borrowed from the input when it has no escapes.
pub(super) struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str<'a>, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Ord for Str<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}
impl PartialOrd for Str<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Str<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Str<'_> {}

/// Any JSON value, read and dropped (an unknown field's, or one whose kind is wrong anyway).
pub(super) struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Skip)
    }
}

/// A JSON value as the shape step reads it: its kind, with what the check needs of it. An
/// object is read as `T`; where an object is never right, `T` is [`Skip`].
pub(super) enum Json<'a, T> {
    /// `null`: the same as an absent field.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A whole number from 0 to `u64::MAX` (what `Value::as_u64` gives).
    Uint(u64),
    /// A string.
    Str(Cow<'a, str>),
    /// An object.
    Object(T),
    /// Anything else: a negative or fractional number, an array.
    Other,
}

/// A value where an object does not belong.
pub(super) type Leaf<'a> = Json<'a, Skip>;

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Json<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json<'a, T>, D::Error> {
        struct V<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = Json<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json<'a, T>, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json<'a, T>, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json<'a, T>, E> {
                Ok(Json::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json<'a, T>, E> {
                Ok(Json::Uint(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json<'a, T>, E> {
                Ok(u64::try_from(n).map_or(Json::Other, Json::Uint))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json<'a, T>, E> {
                Ok(Json::Other)
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'a, T>, E> {
                Ok(Json::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json<'a, T>, E> {
                Ok(Json::Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Json<'a, T>, E> {
                Ok(Json::Str(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Json<'a, T>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Json::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Json<'a, T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(a)).map(Json::Object)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'a, T> Json<'a, T> {
    /// The value, unless it is `null`.
    fn present(self) -> Option<Json<'a, T>> {
        match self {
            Json::Null => None,
            v => Some(v),
        }
    }
}

/// The field's value: `None` when absent or `null`.
pub(super) fn present<T>(v: Option<Json<'_, T>>) -> Option<Json<'_, T>> {
    v.and_then(Json::present)
}

/// The field's value, or "is required" naming `path`.
pub(super) fn required<'a, T>(
    v: Option<Json<'a, T>>,
    path: &str,
) -> Result<Json<'a, T>, SpecError> {
    present(v).ok_or_else(|| SpecError::new(path, "is required"))
}

/// The value as a string, or `message` naming `path`.
pub(super) fn string<'a>(
    v: Leaf<'a>,
    path: &str,
    message: &str,
) -> Result<Cow<'a, str>, SpecError> {
    match v {
        Json::Str(s) => Ok(s),
        _ => Err(SpecError::new(path, message)),
    }
}

/// A required string field, or `message` naming `path`.
pub(super) fn required_str<'a>(
    v: Option<Leaf<'a>>,
    path: &str,
    message: &str,
) -> Result<Cow<'a, str>, SpecError> {
    string(required(v, path)?, path, message)
}

/// An object that is not one: the sentence lists its fields.
pub(super) fn not_object(path: &str, fields: &[&str]) -> SpecError {
    SpecError::new(
        path,
        format!(
            "must be a JSON object with the fields {}",
            fields.join(", ")
        ),
    )
}

/// Refuses `key`, a field the object at `path` does not take.
pub(super) fn refuse_unknown(
    path: &str,
    key: Option<&str>,
    allowed: &[&str],
) -> Result<(), SpecError> {
    match key {
        None => Ok(()),
        Some(key) => Err(SpecError::new(
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            },
            format!(
                "unknown field; remove it (allowed here: {})",
                allowed.join(", ")
            ),
        )),
    }
}

pub(super) const DURATION_HINT: &str =
    "must be a duration string such as \"90s\", \"30m\", \"2h\" or \"1h30m\"";

/// An optional duration string within `min..=max`.
pub(super) fn opt_duration(
    v: Option<Leaf<'_>>,
    path: &str,
    min: Duration,
    max: Duration,
) -> Result<Option<Duration>, SpecError> {
    present(v)
        .map(|v| duration_str(&string(v, path, DURATION_HINT)?, path, min, max))
        .transpose()
}

/// An optional RFC 3339 time.
pub(super) fn opt_timestamp(
    v: Option<Leaf<'_>>,
    path: &str,
) -> Result<Option<Timestamp>, SpecError> {
    present(v)
        .map(|v| timestamp_str(&string(v, path, TIMESTAMP_HINT)?, path))
        .transpose()
}

/// A whole number within `min..=max`.
pub(super) fn whole(v: Leaf<'_>, path: &str, min: u32, max: u32) -> Result<u32, SpecError> {
    let n = match v {
        Json::Uint(n) => Some(n),
        _ => None,
    };
    int_range(n, path, min, max)
}

fn opt_bool(v: Option<Leaf<'_>>, path: &str) -> Result<Option<bool>, SpecError> {
    match present(v) {
        None => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(SpecError::new(path, "must be true or false")),
    }
}

/// One JSON object of the spec, as [`shape!`] declares it.
pub(super) trait Shape {
    /// Its fields, in the order refusals list them.
    const FIELDS: &'static [&'static str];
    /// The first key (in key order) that is none of [`Shape::FIELDS`].
    fn unknown(&self) -> Option<&str>;
}

/// `v` as the object at `path`, every key one of its fields; refused naming `path` (not an
/// object) or the first unknown field otherwise.
pub(super) fn object<T: Shape>(v: Json<'_, T>, path: &str) -> Result<T, SpecError> {
    let Json::Object(o) = v else {
        return Err(not_object(path, T::FIELDS));
    };
    refuse_unknown(path, o.unknown(), T::FIELDS)?;
    Ok(o)
}

/// An optional object of free-form values (absent: empty), or `message` naming `path`.
pub(super) fn opt_map(
    v: Option<Json<'_, Map<String, Value>>>,
    path: &str,
    message: &str,
) -> Result<Map<String, Value>, SpecError> {
    match present(v) {
        None => Ok(Map::new()),
        Some(Json::Object(m)) => Ok(m),
        Some(_) => Err(SpecError::new(path, message)),
    }
}

/// Declares the shape of one JSON object of the spec: a struct of its known fields (`None`:
/// absent; `Some(Json::Null)`: given as `null`) and the first unknown key in key order, read
/// by a serde visitor that refuses nothing.
macro_rules! shape {
    ($(#[doc = $doc:literal])* $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[doc = $doc])*
        pub(super) struct $name<'a> {
            $(pub(super) $field: Option<$ty>,)*
            /// The first key (in key order) that is none of the fields above.
            pub(super) unknown: Option<Str<'a>>,
        }

        impl Shape for $name<'_> {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn unknown(&self) -> Option<&str> {
                self.unknown.as_deref()
            }
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name<'a>, D::Error> {
                struct V<'a>(PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<$name<'a>, A::Error> {
                        let mut out = $name { $($field: None,)* unknown: None };
                        while let Some(key) = a.next_key::<Str<'a>>()? {
                            match &*key {
                                $(stringify!($field) => out.$field = Some(a.next_value()?),)*
                                _ => {
                                    a.next_value::<IgnoredAny>()?;
                                    if out.unknown.as_ref().is_none_or(|u| key < *u) {
                                        out.unknown = Some(key);
                                    }
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V(PhantomData))
            }
        }
    };
}

shape! {
    /// The whole spec.
    SpecShape {
        name: Leaf<'a>,
        trigger: Json<'a, TriggerShape<'a>>,
        action: Json<'a, ActionShape<'a>>,
        misfire_grace: Leaf<'a>,
        coalesce: Leaf<'a>,
        max_instances: Leaf<'a>,
        jitter: Leaf<'a>,
        retry: Json<'a, RetryShape<'a>>,
        timeout: Leaf<'a>,
        paused: Leaf<'a>,
        metadata: Json<'a, Map<String, Value>>,
    }
}

shape! {
    /// `trigger`: one kind (`at`, `every`, `cron`) and the fields that kind takes.
    TriggerShape {
        at: Leaf<'a>,
        every: Leaf<'a>,
        cron: Leaf<'a>,
        timezone: Leaf<'a>,
        start: Leaf<'a>,
        end: Leaf<'a>,
    }
}

shape! {
    /// `action`: one of its kinds.
    ActionShape {
        webhook: Json<'a, WebhookShape<'a>>,
        handler: Json<'a, HandlerShape<'a>>,
    }
}

shape! {
    /// `action.webhook`. The body is kept as its JSON text (`null`: none).
    WebhookShape {
        url: Leaf<'a>,
        method: Leaf<'a>,
        headers: Json<'a, BTreeMap<Str<'a>, Leaf<'a>>>,
        body: Box<RawValue>,
    }
}

shape! {
    /// `action.handler`.
    HandlerShape {
        id: Leaf<'a>,
        method: Leaf<'a>,
        params: Json<'a, Map<String, Value>>,
    }
}

shape! {
    /// `retry`.
    RetryShape {
        attempts: Leaf<'a>,
        backoff: Leaf<'a>,
    }
}

/// A job spec as a client sent it, checked in full except for the rules that depend on when
/// the request is made; [`JobDraft::finish`] applies those. Built by [`JobDraft::from_value`]
/// or [`JobDraft::from_slice`].
#[derive(Debug, Clone, PartialEq)]
pub struct JobDraft {
    /// The spec; while `every_from_now`, its `every` trigger's `start` is a placeholder.
    spec: JobSpec,
    /// An `every` trigger without `start`: it starts at the time of the request.
    every_from_now: bool,
}

impl JobDraft {
    /// Decodes a JSON value: an API body, or a job's JSON with a PATCH merged in.
    pub fn from_value(v: &Value) -> Result<JobDraft, SpecError> {
        // Every JSON value has a shape: the shape step refuses nothing a `Value` can hold.
        let shape = Json::<SpecShape>::deserialize(v)
            .map_err(|e| SpecError::new("", format!("is not a job: {e}")))?;
        check(shape)
    }

    /// Decodes JSON text. A webhook body is kept as the text holds it, so this is for the
    /// compact text [`JobSpec::to_json`] gives (stored rows); a body sent with spaces inside
    /// is sent on with them.
    pub fn from_slice(bytes: &[u8]) -> Result<JobDraft, SpecError> {
        let shape = serde_json::from_slice::<Json<SpecShape>>(bytes)
            .map_err(|e| SpecError::new("", format!("is not valid JSON: {e}")))?;
        check(shape)
    }

    /// The spec, with the rules that need the time applied. `now` is the time of the request
    /// (the scheduler's clock) when creating a job, testing one or changing its trigger: an
    /// `at` must lie after it, and an `every` without `start` starts then. `None` (a stored
    /// job, or a change that leaves the trigger alone): an `at` in the past is kept, and an
    /// `every` must carry its `start`.
    pub fn finish(self, now: Option<Timestamp>) -> Result<JobSpec, SpecError> {
        let JobDraft {
            mut spec,
            every_from_now,
        } = self;
        spec.trigger = finish_trigger(spec.trigger, every_from_now, now)?;
        Ok(spec)
    }
}

/// The checks, in the order the module documentation gives.
fn check(v: Json<'_, SpecShape<'_>>) -> Result<JobDraft, SpecError> {
    let s = object(v, "")?;
    let name = name_str(&required_str(s.name, "name", "must be a string")?)?;
    let (trigger, every_from_now) = check_trigger(required(s.trigger, "trigger")?)?;
    let action = check_action(required(s.action, "action")?)?;
    let misfire_grace = opt_duration(
        s.misfire_grace,
        "misfire_grace",
        MIN_MISFIRE_GRACE,
        MAX_MISFIRE_GRACE,
    )?
    .unwrap_or(Duration::from_secs(60));
    let coalesce = opt_bool(s.coalesce, "coalesce")?.unwrap_or(true);
    let max_instances = match present(s.max_instances) {
        None => 1,
        Some(v) => whole(v, "max_instances", 1, MAX_INSTANCES)?,
    };
    let jitter = opt_duration(s.jitter, "jitter", Duration::ZERO, MAX_JITTER)?.unwrap_or_default();
    let retry = match present(s.retry) {
        None => Retry::default(),
        Some(r) => check_retry(r)?,
    };
    let timeout = opt_duration(s.timeout, "timeout", MIN_TIMEOUT, MAX_TIMEOUT)?
        .unwrap_or(Duration::from_secs(30));
    let paused = opt_bool(s.paused, "paused")?.unwrap_or(false);
    let metadata = opt_map(
        s.metadata,
        "metadata",
        "must be a JSON object, e.g. {\"channel\": \"announcements\"}",
    )?;
    Ok(JobDraft {
        spec: JobSpec {
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
        },
        every_from_now,
    })
}

/// A stored spec, as [`JobSpec::to_json`] writes it (`every.start` included), straight from
/// the row's text. A refusal is a custom error whose message is the [`SpecError`]'s
/// (`"trigger.cron: …"`).
impl<'de> Deserialize<'de> for JobSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JobSpec, D::Error> {
        let shape = Json::<SpecShape>::deserialize(d)?;
        check(shape)
            .and_then(|draft| draft.finish(None))
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sched::trigger::Trigger;

    fn now() -> Timestamp {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    fn hook() -> Value {
        json!({"webhook": {"url": "https://discord.com/api/webhooks/123/secret-token"}})
    }

    /// Every kind of trigger and action, every optional field, escaped strings (decoded into
    /// owned text) and plain ones (borrowed from the row).
    fn every_kind() -> Vec<Value> {
        vec![
            json!({"name": "once", "trigger": {"at": "2026-12-03T19:45:00.250+01:00"}, "action": hook()}),
            json!({"name": "tick", "trigger": {"every": "90s"}, "action": hook()}),
            json!({"name": "tick until", "trigger": {"every": "1h30m", "start": "2026-07-01T00:00:00Z",
                   "end": "2027-01-01T00:00:00Z"}, "action": hook()}),
            json!({"name": "weekly", "trigger": {"cron": "45 19 * * THU"}, "action": hook()}),
            json!({"name": "  raid \"reminder\" é ", "trigger": {"cron": "0 45 19 * * THU",
                   "timezone": "America/New_York", "start": "2026-07-01T00:00:00.5Z",
                   "end": "2027-07-01T00:00:00+02:00"},
                   "action": {"webhook": {
                       "url": "https://discord.com/api/webhooks/123/tok?wait=true",
                       "method": "put",
                       "headers": {"X-Trace": "a\tb", "Authorization": "Bot xyz"},
                       "body": {"content": "<@&42> raid at 19:45\n", "embeds": [1, 2.5, null]}}},
                   "misfire_grace": "5m", "coalesce": false, "max_instances": 3, "jitter": "1500ms",
                   "retry": {"attempts": 3, "backoff": "10s"}, "timeout": "2m", "paused": true,
                   "metadata": {"guild": "raiders", "n": 1}}),
            json!({"name": "bot", "trigger": {"every": "1m"},
                   "action": {"handler": {"id": "discord-bot", "method": "send_message"}}}),
            json!({"name": "bot params", "trigger": {"cron": "0 9 * * *", "timezone": "Europe/Berlin"},
                   "action": {"handler": {"id": "discord-bot", "method": "send_message",
                                          "params": {"channel_id": "123", "text": "hi"}}},
                   "retry": {"backoff": "1m"}}),
            json!({"name": "get", "trigger": {"every": "1m"},
                   "action": {"webhook": {"url": "http://10.0.0.2:8080/ping", "method": "GET",
                                          "body": "plain"}}}),
        ]
    }

    #[test]
    fn a_body_and_its_stored_text_decode_to_the_same_spec() {
        for body in every_kind() {
            let spec = JobDraft::from_value(&body)
                .and_then(|d| d.finish(Some(now())))
                .unwrap();
            let stored = serde_json::to_vec(&spec.to_json()).unwrap();
            let typed: JobSpec = serde_json::from_slice(&stored).unwrap();
            assert_eq!(typed, spec, "for {body}");
            let draft = JobDraft::from_slice(&stored).unwrap();
            assert_eq!(draft.finish(None).unwrap(), spec);
            // And back: what it writes is what was stored.
            assert_eq!(serde_json::to_vec(&typed.to_json()).unwrap(), stored);
        }
        // `null` is the same as absent.
        let v = json!({"name": "x", "trigger": {"every": "1m", "start": "2026-01-01T00:00:00Z",
                       "end": null}, "action": hook(), "jitter": null, "metadata": null,
                       "retry": null, "coalesce": null});
        let typed: JobSpec = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        let without = json!({"name": "x", "trigger": {"every": "1m",
                             "start": "2026-01-01T00:00:00Z"}, "action": hook()});
        assert_eq!(typed, JobSpec::from_json(&without, None).unwrap());
    }

    /// A wrong kind of value, an unknown field or a wrong shape deep inside: the refusal names
    /// the full path with the sentence a person can act on, whether the spec came as a `Value`
    /// (an API body) or as text (a stored row) — not serde's "invalid type" message.
    #[test]
    fn every_refusal_names_the_full_path_with_a_sentence_from_a_value_and_from_text() {
        let start = "2026-01-01T00:00:00Z";
        let with = |extra: Value| {
            let mut v = json!({"name": "x", "trigger": {"every": "1m", "start": start},
                               "action": hook()});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let hook_with = |extra: Value| {
            let mut w = json!({"url": "https://a.example/"});
            for (k, x) in extra.as_object().unwrap() {
                w[k] = x.clone();
            }
            with(json!({"action": {"webhook": w}}))
        };
        let duration = "must be a duration string such as \"90s\", \"30m\", \"2h\" or \"1h30m\"";
        let cases = vec![
            (with(json!({"coalesce": "yes"})), "coalesce", "must be true or false"),
            (with(json!({"paused": 1})), "paused", "must be true or false"),
            (with(json!({"name": 7})), "name", "must be a string"),
            (with(json!({"max_instances": 1.5})), "max_instances",
             "must be a whole number from 1 to 100"),
            (with(json!({"max_instances": -1})), "max_instances",
             "must be a whole number from 1 to 100"),
            (with(json!({"jitter": 5})), "jitter", duration),
            (with(json!({"metadata": [1]})), "metadata",
             "must be a JSON object, e.g. {\"channel\": \"announcements\"}"),
            (with(json!({"retry": {"attempts": "3"}})), "retry.attempts",
             "must be a whole number from 1 to 10"),
            (with(json!({"retry": {"backoff": 10}})), "retry.backoff", duration),
            (with(json!({"retry": 3})), "retry",
             "must be a JSON object with the fields attempts, backoff"),
            (with(json!({"retry": {"tries": 3}})), "retry.tries",
             "unknown field; remove it (allowed here: attempts, backoff)"),
            (with(json!({"colour": 1, "zebra": 2})), "colour",
             "unknown field; remove it (allowed here: name, trigger, action, misfire_grace, \
              coalesce, max_instances, jitter, retry, timeout, paused, metadata)"),
            (with(json!({"trigger": {"every": "1m", "start": start, "tz": "UTC"}})), "trigger.tz",
             "unknown field; remove it (allowed here: every, start, end)"),
            (with(json!({"trigger": {"at": start, "every": null}})), "trigger.every",
             "unknown field; remove it (allowed here: at)"),
            (with(json!({"trigger": {"every": 60, "start": start}})), "trigger.every", duration),
            (with(json!({"trigger": {"every": "1m", "start": 0}})), "trigger.start",
             "must be an RFC 3339 time with an offset, e.g. \"2026-12-03T19:45:00+01:00\" or \"2026-12-03T18:45:00.250Z\""),
            (with(json!({"trigger": {"cron": ["*"]}})), "trigger.cron",
             "must be a crontab string such as \"45 19 * * THU\""),
            (with(json!({"trigger": {"cron": "0 9 * * *", "timezone": {}}})), "trigger.timezone",
             "must be an IANA time zone name such as \"Europe/Berlin\""),
            (with(json!({"trigger": "daily"})), "trigger",
             "must be an object with exactly one of at, every, cron"),
            (with(json!({"action": []})), "action",
             "must be a JSON object with the fields webhook, handler"),
            (with(json!({"action": {"email": {}}})), "action.email",
             "unknown field; remove it (allowed here: webhook, handler)"),
            (with(json!({"action": {"webhook": "https://a.example/"}})), "action.webhook",
             "must be a JSON object with the fields url, method, headers, body"),
            (hook_with(json!({"url": 5})), "action.webhook.url",
             "must be a string such as \"https://discord.com/api/webhooks/…\""),
            (hook_with(json!({"method": true})), "action.webhook.method",
             "must be one of GET, POST, PUT, PATCH, DELETE"),
            (hook_with(json!({"verb": "POST"})), "action.webhook.verb",
             "unknown field; remove it (allowed here: url, method, headers, body)"),
            (hook_with(json!({"headers": ["X-A"]})), "action.webhook.headers",
             "must be an object of header names to string values"),
            (hook_with(json!({"headers": {"X-Count": 1}})), "action.webhook.headers.X-Count",
             "must be a string"),
            (hook_with(json!({"headers": {"Host": 1}})), "action.webhook.headers.Host",
             "is set by the scheduler itself; remove it"),
            (with(json!({"action": {"handler": {"id": 1, "method": "m"}}})), "action.handler.id",
             "must be the handler's peer name, a string such as \"discord-bot\""),
            (with(json!({"action": {"handler": {"id": "bot", "method": null}}})),
             "action.handler.method", "is required"),
            (with(json!({"action": {"handler": {"id": "bot", "method": "m", "params": "x"}}})),
             "action.handler.params",
             "must be a JSON object of named parameters, e.g. {\"channel_id\": \"123\"}"),
            (json!([1, 2]), "",
             "must be a JSON object with the fields name, trigger, action, misfire_grace, \
              coalesce, max_instances, jitter, retry, timeout, paused, metadata"),
        ];
        for (v, field, message) in cases {
            let want = SpecError::new(field, message);
            assert_eq!(
                JobDraft::from_value(&v).unwrap_err(),
                want,
                "from a value: {v}"
            );
            let text = serde_json::to_vec(&v).unwrap();
            assert_eq!(
                JobDraft::from_slice(&text).unwrap_err(),
                want,
                "from text: {v}"
            );
            let stored = serde_json::from_slice::<JobSpec>(&text).unwrap_err();
            assert!(
                stored.to_string().starts_with(&want.to_string()),
                "a stored row: {stored} for {v}"
            );
        }
        assert_eq!(
            JobDraft::from_slice(b"{\"name\": ").unwrap_err().field,
            "",
            "text that is not JSON"
        );
    }

    /// The rules that need the time of the request wait for [`JobDraft::finish`].
    #[test]
    fn an_at_in_the_past_and_an_every_without_start_are_judged_at_finish() {
        let at = JobDraft::from_value(
            &json!({"name": "x", "trigger": {"at": "2026-01-01T00:00:00Z"},
                                              "action": hook()}),
        )
        .expect("decoding does not know the time");
        assert_eq!(
            at.clone().finish(Some(now())).unwrap_err().field,
            "trigger.at"
        );
        assert!(
            at.finish(None).is_ok(),
            "a stored job keeps its passed `at`"
        );

        let every = JobDraft::from_value(&json!({"name": "x", "trigger": {"every": "1m"},
                                                 "action": hook()}))
        .unwrap();
        let spec = every.clone().finish(Some(now())).unwrap();
        assert_eq!(
            spec.trigger,
            Trigger::Every {
                interval: Duration::from_secs(60),
                start: now(),
                end: None
            }
        );
        assert_eq!(every.finish(None).unwrap_err().field, "trigger.start");

        let ends_before_now = JobDraft::from_value(&json!({"name": "x",
            "trigger": {"every": "1m", "end": "2026-01-01T00:00:00Z"}, "action": hook()}))
        .unwrap();
        assert_eq!(
            ends_before_now.finish(Some(now())).unwrap_err().field,
            "trigger.end"
        );
    }
}
