//! The typed decode of a job spec (part of [`super`]): `impl Deserialize for JobSpec`, straight
//! from JSON text into the checked type, without building a `serde_json::Value` tree first.
//!
//! Why: a restart decodes every stored job (100,000 in the startup bench), and the tree —
//! a map per object, a `String` per key — cost most of the time and nearly all the
//! allocations. Here the shape is a set of serde structs that borrow the row's strings
//! (`#[serde(deny_unknown_fields)]` at every level), and each field goes through the same
//! checks as [`JobSpec::from_json`] (the `*_str` helpers both share), so a value that decodes
//! is the spec `from_json` would have built, and a check that fails names the field by its JSON
//! path exactly as `from_json` does. Only a wrong JSON *shape* (a number where a string
//! belongs, an unknown field) gets serde's own message, which names the field but not its
//! path; callers that show a reason to a person ([`JobSpec::from_json_slice`], the store's
//! damaged-row report) then ask `from_json` for the full diagnosis.
//!
//! It reads serde_json text only (a webhook body is borrowed as a `RawValue`), and like every
//! derived serde struct it would also read a JSON array of the fields in order, which the
//! store never writes.
//!
//! The decode reads the stored form: `every.start` must be present (`now` is `None`). The API
//! keeps [`JobSpec::from_json`], which needs the creation time and already holds the body as a
//! `Value`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::de::{Deserializer, Error as _, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::action::{
    action_kind_error, check_header_count, handler_id_str, handler_method_str, method_str,
    push_header, url_str,
};
use super::name::name_str;
use super::schedule::{at_trigger, cron_str, every_trigger, one_kind, zone_str};
use super::{
    duration_str, int_range, timestamp_str, Action, HandlerCall, JobSpec, JsonBody, Retry,
    SpecError, Webhook, MAX_ATTEMPTS, MAX_BACKOFF, MAX_INSTANCES, MAX_INTERVAL, MAX_JITTER,
    MAX_MISFIRE_GRACE, MAX_TIMEOUT, MIN_INTERVAL, MIN_MISFIRE_GRACE, MIN_TIMEOUT,
};
use crate::sched::trigger::{Trigger, Zone};

/// A JSON string, borrowed from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str<'a>, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
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
        d.deserialize_str(V(std::marker::PhantomData))
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

// `null` means the same as an absent field everywhere, as in `from_json`: serde reads `null`
// into `None` for every `Option` below. Each field decodes through `at::<path>`, which puts
// the field's JSON path in front of serde's own message when its value has the wrong shape.

/// One function per field: decodes `T` and names the field's path in an error.
macro_rules! at_paths {
    ($($f:ident => $path:literal,)*) => {
        mod at {
            use serde::{Deserialize, Deserializer};
            $(
                pub(super) fn $f<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
                    d: D,
                ) -> Result<T, D::Error> {
                    T::deserialize(d).map_err(|e| super::at_path::<D::Error>($path, e))
                }
            )*
        }
    };
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecDe<'a> {
    #[serde(borrow, default, deserialize_with = "at::name")]
    name: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::trigger")]
    trigger: Option<TriggerDe<'a>>,
    #[serde(borrow, default, deserialize_with = "at::action")]
    action: Option<ActionDe<'a>>,
    #[serde(borrow, default, deserialize_with = "at::misfire_grace")]
    misfire_grace: Option<Str<'a>>,
    #[serde(default, deserialize_with = "at::coalesce")]
    coalesce: Option<bool>,
    #[serde(default, deserialize_with = "at::max_instances")]
    max_instances: Option<u64>,
    #[serde(borrow, default, deserialize_with = "at::jitter")]
    jitter: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::retry")]
    retry: Option<RetryDe<'a>>,
    #[serde(borrow, default, deserialize_with = "at::timeout")]
    timeout: Option<Str<'a>>,
    #[serde(default, deserialize_with = "at::paused")]
    paused: Option<bool>,
    #[serde(default, deserialize_with = "at::metadata")]
    metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerDe<'a> {
    #[serde(borrow, default, deserialize_with = "at::trigger_at")]
    at: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::trigger_every")]
    every: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::trigger_cron")]
    cron: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::trigger_timezone")]
    timezone: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::trigger_start")]
    start: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::trigger_end")]
    end: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionDe<'a> {
    #[serde(borrow, default, deserialize_with = "at::action_webhook")]
    webhook: Option<WebhookDe<'a>>,
    #[serde(borrow, default, deserialize_with = "at::action_handler")]
    handler: Option<HandlerDe<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookDe<'a> {
    #[serde(borrow, default, deserialize_with = "at::action_webhook_url")]
    url: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::action_webhook_method")]
    method: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::action_webhook_headers")]
    headers: Option<BTreeMap<Str<'a>, Str<'a>>>,
    #[serde(borrow, default, deserialize_with = "at::action_webhook_body")]
    body: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerDe<'a> {
    #[serde(borrow, default, deserialize_with = "at::action_handler_id")]
    id: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "at::action_handler_method")]
    method: Option<Str<'a>>,
    #[serde(default, deserialize_with = "at::action_handler_params")]
    params: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryDe<'a> {
    #[serde(default, deserialize_with = "at::retry_attempts")]
    attempts: Option<u64>,
    #[serde(borrow, default, deserialize_with = "at::retry_backoff")]
    backoff: Option<Str<'a>>,
}

at_paths! {
    name => "name",
    trigger => "trigger",
    action => "action",
    misfire_grace => "misfire_grace",
    coalesce => "coalesce",
    max_instances => "max_instances",
    jitter => "jitter",
    retry => "retry",
    timeout => "timeout",
    paused => "paused",
    metadata => "metadata",
    trigger_at => "trigger.at",
    trigger_every => "trigger.every",
    trigger_cron => "trigger.cron",
    trigger_timezone => "trigger.timezone",
    trigger_start => "trigger.start",
    trigger_end => "trigger.end",
    action_webhook => "action.webhook",
    action_handler => "action.handler",
    action_webhook_url => "action.webhook.url",
    action_webhook_method => "action.webhook.method",
    action_webhook_headers => "action.webhook.headers",
    action_webhook_body => "action.webhook.body",
    action_handler_id => "action.handler.id",
    action_handler_method => "action.handler.method",
    action_handler_params => "action.handler.params",
    retry_attempts => "retry.attempts",
    retry_backoff => "retry.backoff",
}

/// `e` with `path` in front, unless a field inside already put its own (longer) path there.
/// serde_json adds the position to the outer error again, so the inner one's is cut.
fn at_path<E: serde::de::Error>(path: &str, e: impl fmt::Display) -> E {
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i)
            if msg[i + 9..].split_once(" column ").is_some_and(|(l, c)| {
                l.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_digit())
            }) =>
        {
            &msg[..i]
        }
        _ => &msg[..],
    };
    if msg.starts_with(path) && msg[path.len()..].starts_with(['.', ':']) {
        E::custom(msg)
    } else {
        E::custom(format_args!("{path}: {msg}"))
    }
}

fn required<T>(v: Option<T>, path: &str) -> Result<T, SpecError> {
    v.ok_or_else(|| SpecError::new(path, "is required"))
}

fn opt_duration(
    v: Option<Str<'_>>,
    path: &str,
    min: Duration,
    max: Duration,
) -> Result<Option<Duration>, SpecError> {
    v.map(|s| duration_str(&s, path, min, max)).transpose()
}

fn opt_timestamp(v: Option<Str<'_>>, path: &str) -> Result<Option<Timestamp>, SpecError> {
    v.map(|s| timestamp_str(&s, path)).transpose()
}

/// The fields a trigger kind does not allow, as `from_json` reports the first one.
fn refuse_extra(present: &[(&str, bool)], allowed: &str) -> Result<(), SpecError> {
    match present.iter().find(|(_, here)| *here) {
        Some((name, _)) => Err(SpecError::new(
            format!("trigger.{name}"),
            format!("unknown field; remove it (allowed here: {allowed})"),
        )),
        None => Ok(()),
    }
}

impl TriggerDe<'_> {
    fn check(self) -> Result<Trigger, SpecError> {
        let kinds: Vec<&str> = [
            ("at", self.at.is_some()),
            ("every", self.every.is_some()),
            ("cron", self.cron.is_some()),
        ]
        .iter()
        .filter(|(_, here)| *here)
        .map(|(k, _)| *k)
        .collect();
        one_kind(&kinds)?;
        if let Some(at) = self.at {
            refuse_extra(
                &[
                    ("end", self.end.is_some()),
                    ("start", self.start.is_some()),
                    ("timezone", self.timezone.is_some()),
                ],
                "at",
            )?;
            return at_trigger(timestamp_str(&at, "trigger.at")?, None);
        }
        if let Some(every) = self.every {
            refuse_extra(
                &[("timezone", self.timezone.is_some())],
                "every, start, end",
            )?;
            let interval = duration_str(&every, "trigger.every", MIN_INTERVAL, MAX_INTERVAL)?;
            let start = opt_timestamp(self.start, "trigger.start")?;
            let end = opt_timestamp(self.end, "trigger.end")?;
            return every_trigger(interval, start, end, None);
        }
        let cron = self.cron.expect("exactly one kind");
        let expr = cron_str(&cron)?;
        let zone = match self.timezone {
            None => Zone::utc(),
            Some(name) => zone_str(&name)?,
        };
        let start = opt_timestamp(self.start, "trigger.start")?;
        let end = opt_timestamp(self.end, "trigger.end")?;
        super::schedule::check_end(start, end)?;
        Ok(Trigger::Cron {
            expr,
            zone,
            start,
            end,
        })
    }
}

impl ActionDe<'_> {
    fn check(self) -> Result<Action, SpecError> {
        match (self.webhook, self.handler) {
            (Some(hook), None) => Ok(Action::Webhook(hook.check()?)),
            (None, Some(call)) => Ok(Action::Handler(call.check()?)),
            (Some(_), Some(_)) => Err(action_kind_error(true)),
            (None, None) => Err(action_kind_error(false)),
        }
    }
}

impl WebhookDe<'_> {
    fn check(self) -> Result<Webhook, SpecError> {
        let url = url_str(&required(self.url, "action.webhook.url")?)?;
        let method = match self.method {
            None => hyper::Method::POST,
            Some(m) => method_str(&m)?,
        };
        let mut headers = Vec::new();
        if let Some(h) = self.headers {
            check_header_count(h.len())?;
            headers.reserve_exact(h.len());
            for (name, value) in &h {
                push_header(&mut headers, name, value)?;
            }
            headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        }
        Ok(Webhook {
            url,
            method,
            headers,
            body: self.body.map(JsonBody::from_stored),
        })
    }
}

impl HandlerDe<'_> {
    fn check(self) -> Result<HandlerCall, SpecError> {
        let id = handler_id_str(&required(self.id, "action.handler.id")?)?;
        let method = handler_method_str(&required(self.method, "action.handler.method")?)?;
        Ok(HandlerCall {
            id,
            method,
            params: self.params.unwrap_or_default(),
        })
    }
}

impl SpecDe<'_> {
    /// The same checks, in the same order, as [`JobSpec::from_json`] with `now = None`.
    fn check(self) -> Result<JobSpec, SpecError> {
        let name = name_str(&required(self.name, "name")?)?;
        let trigger = required(self.trigger, "trigger")?.check()?;
        let action = required(self.action, "action")?.check()?;
        let misfire_grace = opt_duration(
            self.misfire_grace,
            "misfire_grace",
            MIN_MISFIRE_GRACE,
            MAX_MISFIRE_GRACE,
        )?
        .unwrap_or(Duration::from_secs(60));
        let max_instances = match self.max_instances {
            None => 1,
            Some(n) => int_range(Some(n), "max_instances", 1, MAX_INSTANCES)?,
        };
        let jitter =
            opt_duration(self.jitter, "jitter", Duration::ZERO, MAX_JITTER)?.unwrap_or_default();
        let retry = match self.retry {
            None => Retry::default(),
            Some(r) => {
                let d = Retry::default();
                Retry {
                    attempts: match r.attempts {
                        None => d.attempts,
                        Some(n) => int_range(Some(n), "retry.attempts", 1, MAX_ATTEMPTS)?,
                    },
                    backoff: opt_duration(r.backoff, "retry.backoff", Duration::ZERO, MAX_BACKOFF)?
                        .unwrap_or(d.backoff),
                }
            }
        };
        let timeout = opt_duration(self.timeout, "timeout", MIN_TIMEOUT, MAX_TIMEOUT)?
            .unwrap_or(Duration::from_secs(30));
        Ok(JobSpec {
            name,
            trigger,
            action,
            misfire_grace,
            coalesce: self.coalesce.unwrap_or(true),
            max_instances,
            jitter,
            retry,
            timeout,
            paused: self.paused.unwrap_or(false),
            metadata: self.metadata.unwrap_or_default(),
        })
    }
}

/// The stored JSON form of a spec, as [`JobSpec::to_json`] writes it. A failed check is a
/// custom error whose message is the [`SpecError`]'s (`"trigger.cron: …"`).
impl<'de> Deserialize<'de> for JobSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JobSpec, D::Error> {
        SpecDe::deserialize(d)?.check().map_err(D::Error::custom)
    }
}

impl JobSpec {
    /// Decodes stored JSON text (the form [`JobSpec::to_json`] writes) through the typed decode,
    /// and, when it fails, diagnoses the text with [`JobSpec::from_json`] so the error names the
    /// field by its JSON path whatever went wrong.
    pub fn from_json_slice(bytes: &[u8]) -> Result<JobSpec, SpecError> {
        match serde_json::from_slice::<JobSpec>(bytes) {
            Ok(spec) => Ok(spec),
            Err(typed) => match serde_json::from_slice::<Value>(bytes) {
                Err(e) => Err(SpecError::new("", format!("is not valid JSON: {e}"))),
                Ok(v) => match JobSpec::from_json(&v, None) {
                    Err(e) => Err(e),
                    // Both decodes must agree; say so rather than accept what one refused.
                    Ok(_) => Err(SpecError::new("", typed.to_string())),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn typed_decode_of_stored_json_gives_the_spec_from_json_gives() {
        for body in every_kind() {
            let spec = JobSpec::from_json(&body, Some(now())).unwrap();
            let stored = serde_json::to_vec(&spec.to_json()).unwrap();
            let typed: JobSpec = serde_json::from_slice(&stored).unwrap();
            assert_eq!(typed, spec, "for {body}");
            assert_eq!(JobSpec::from_json_slice(&stored).unwrap(), spec);
            // And back: what it writes is what was stored.
            assert_eq!(serde_json::to_vec(&typed.to_json()).unwrap(), stored);
        }
        // `null` is the same as absent, as in `from_json`.
        let v = json!({"name": "x", "trigger": {"every": "1m", "start": "2026-01-01T00:00:00Z",
                       "end": null}, "action": hook(), "jitter": null, "metadata": null,
                       "retry": null, "coalesce": null});
        let typed: JobSpec = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(typed, JobSpec::from_json(&v, None).unwrap());
    }

    #[test]
    fn typed_decode_refuses_what_from_json_refuses_naming_the_same_field() {
        let start = "2026-01-01T00:00:00Z";
        let with = |extra: Value| {
            let mut v = json!({"name": "x", "trigger": {"every": "1m", "start": start},
                               "action": hook()});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let cases = vec![
            // Checks of a field's value: the typed decode names the path itself.
            with(json!({"name": " "})),
            with(json!({"name": "a\u{200B}b"})),
            with(json!({"trigger": {"every": "1m"}})),
            with(json!({"trigger": {"every": "0s", "start": start}})),
            with(json!({"trigger": {"every": "1m", "start": start, "end": start}})),
            with(json!({"trigger": {"every": "1m", "start": "yesterday"}})),
            with(json!({"trigger": {"at": "2026-01-01T00:00:00Z", "start": start}})),
            with(json!({"trigger": {"every": "1m", "timezone": "UTC", "start": start}})),
            with(json!({"trigger": {"every": "1m", "cron": "* * * * *", "start": start}})),
            with(json!({"trigger": {}})),
            with(json!({"trigger": {"cron": "61 * * * *"}})),
            with(json!({"trigger": {"cron": "0 9 * * *", "timezone": "Mars/Olympus"}})),
            with(json!({"action": {}})),
            with(json!({"action": {"webhook": {"url": "ftp://a.example/"}}})),
            with(json!({"action": {"webhook": {"url": "https://a.example/", "method": "TRACE"}}})),
            with(
                json!({"action": {"webhook": {"url": "https://a.example/", "headers": {"Host": "b"}}}}),
            ),
            with(json!({"action": {"webhook": {"url": "https://a.example/",
                                               "headers": {"X-A": "1", "x-a": "2"}}}})),
            with(json!({"action": {"handler": {"id": "Not A Peer!", "method": "m"}}})),
            with(json!({"action": {"handler": {"id": "bot", "method": "9lives"}}})),
            with(json!({"misfire_grace": "0s"})),
            with(json!({"max_instances": 0})),
            with(json!({"retry": {"attempts": 11}})),
            with(json!({"retry": {"backoff": "2h"}})),
            with(json!({"timeout": "1h"})),
            with(json!({"jitter": "2h"})),
            // Wrong shapes: serde refuses them; `from_json_slice` asks `from_json` why.
            with(json!({"colour": 1})),
            with(json!({"trigger": {"every": "1m", "start": start, "tz": "UTC"}})),
            with(json!({"action": {"webhook": {"url": "https://a.example/", "verb": "POST"}}})),
            with(json!({"action": {"email": {}}})),
            with(json!({"max_instances": 1.5})),
            with(json!({"coalesce": "yes"})),
            with(json!({"metadata": [1]})),
            with(json!({"name": null})),
            json!([1, 2]),
        ];
        for v in cases {
            let want = JobSpec::from_json(&v, None).unwrap_err();
            let bytes = serde_json::to_vec(&v).unwrap();
            assert_eq!(
                JobSpec::from_json_slice(&bytes).unwrap_err(),
                want,
                "for {v}"
            );
            let typed = serde_json::from_slice::<JobSpec>(&bytes)
                .unwrap_err()
                .to_string();
            let last = want.field.rsplit('.').next().unwrap_or_default();
            assert!(
                typed.contains(last),
                "serde's message {typed:?} names {last:?}"
            );
        }
    }
}
