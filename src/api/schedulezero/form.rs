//! The bodies ScheduleZero's clients post (`POST /api/schedule`, `/api/run_now`,
//! `/api/executions/clear`), in its field names, and their checks: each refusal names its field.
//!
//! Layer: driver (application side), part of [`super`]: decodes untrusted bodies into checked
//! forms ([`crate::api::body`] reads them); the routes turn them into job specs.

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::api::body::{self, Body};
use crate::api::ApiError;

/// A ScheduleZero call, in its names: `POST /api/schedule` reads all of it ([`Schedule`]),
/// `POST /api/run_now` all but the trigger ([`RunNow`]; an unknown field there).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Form {
    #[serde(default, deserialize_with = "handler_field")]
    pub(super) handler_id: Option<String>,
    #[serde(default, deserialize_with = "method_field")]
    pub(super) job_method: Option<String>,
    #[serde(default, deserialize_with = "params_field")]
    pub(super) job_params: Option<Value>,
    /// APScheduler's trigger object, translated by [`crate::sched::apscheduler::translate`]
    /// once the call itself is known to be complete.
    #[serde(default, deserialize_with = "body::raw")]
    pub(super) trigger: Option<Value>,
    /// The schedule's name ([`job_id`] checks it); `run_now` accepts and ignores it, as its
    /// carrier job gets a name of its own.
    #[serde(default, deserialize_with = "body::raw")]
    pub(super) job_id: Option<Value>,
}

/// `POST /api/schedule`'s body.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct Schedule(pub(super) Form);

impl Body for Schedule {
    const FIELDS: &'static [&'static str] = &[
        "handler_id",
        "job_method",
        "job_params",
        "trigger",
        "job_id",
    ];
}

/// `POST /api/run_now`'s body.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct RunNow(pub(super) Form);

impl Body for RunNow {
    const FIELDS: &'static [&'static str] = &["handler_id", "job_method", "job_params", "job_id"];
}

/// `POST /api/executions/clear`'s body (may be left out): nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Clear {}

impl Body for Clear {
    const FIELDS: &'static [&'static str] = &[];
}

const HANDLER_EXAMPLE: &str = "discord-bot";
const METHOD_EXAMPLE: &str = "send_message";

/// The 400 for a required string field left out (or null).
fn required(key: &str, example: &str) -> String {
    format!("{key} is required, e.g. {example:?}")
}

/// A required non-empty string field: present, it must be one.
fn non_empty<'de, D: Deserializer<'de>>(
    d: D,
    key: &str,
    example: &str,
) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) if !s.trim().is_empty() => Ok(Some(s)),
        Value::Null => Err(body::refuse(key, required(key, example))),
        _ => Err(body::refuse(
            key,
            format!("{key} must be a non-empty string, e.g. {example:?}"),
        )),
    }
}

fn handler_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    non_empty(d, "handler_id", HANDLER_EXAMPLE)
}

fn method_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    non_empty(d, "job_method", METHOD_EXAMPLE)
}

/// `job_params`: an object (absent or null: `{}` at the call).
fn params_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        p @ Value::Object(_) => Ok(Some(p)),
        _ => Err(body::refuse(
            "job_params",
            "job_params must be a JSON object, e.g. {\"channel_id\": 123, \"content\": \"hi\"}",
        )),
    }
}

/// `job_id`: a name for the schedule (absent or null: `None`, one is made up).
pub(super) fn job_id(v: Option<Value>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.trim().is_empty()
                && s.chars().count() <= crate::sched::spec::MAX_NAME_CHARS
                && !s.chars().any(|c| c.is_control() || c == '/') =>
        {
            Ok(Some(s))
        }
        Some(_) => Err(ApiError::bad_request(
            "job_id",
            format!(
                "job_id must be a string of 1 to {} characters without '/' or control characters, e.g. \"ding-dong-1\"",
                crate::sched::spec::MAX_NAME_CHARS
            ),
        )),
    }
}

/// The handler, method and params of a call, each required but the params.
pub(super) fn handler_call(
    handler: Option<String>,
    method: Option<String>,
    params: Option<Value>,
) -> Result<(String, String, Value), ApiError> {
    let handler = handler.ok_or_else(|| {
        ApiError::bad_request("handler_id", required("handler_id", HANDLER_EXAMPLE))
    })?;
    let method = method.ok_or_else(|| {
        ApiError::bad_request("job_method", required("job_method", METHOD_EXAMPLE))
    })?;
    Ok((handler, method, params.unwrap_or_else(|| json!({}))))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::body::refused;

    /// The ScheduleZero forms refuse an unknown field and a wrongly typed one, naming it.
    #[test]
    fn schedulezero_bodies_name_the_field_they_refuse() {
        for ((field, message), want_field, want) in [
            (
                refused::<Schedule>(json!({"handler_id": "bot", "method_name": "x"})),
                "method_name",
                "unknown field 'method_name'; expected one of: handler_id, job_method, job_params, trigger, job_id",
            ),
            (
                refused::<Schedule>(json!({"handler_id": 7})),
                "handler_id",
                "handler_id must be a non-empty string, e.g. \"discord-bot\"",
            ),
            (
                refused::<Schedule>(json!({"job_method": null})),
                "job_method",
                "job_method is required, e.g. \"send_message\"",
            ),
            (
                refused::<RunNow>(json!({"handler_id": "bot", "trigger": {}})),
                "trigger",
                "unknown field 'trigger'; expected one of: handler_id, job_method, job_params, job_id",
            ),
            (
                refused::<RunNow>(json!({"job_params": "x"})),
                "job_params",
                "job_params must be a JSON object",
            ),
            (
                refused::<Clear>(json!({"all": true})),
                "all",
                "unknown field 'all'",
            ),
        ] {
            assert_eq!(field, want_field, "{message}");
            assert!(message.starts_with(want), "{field}: {message}");
        }
        let e = job_id(Some(json!(7))).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("job_id"));
        assert!(
            e.message.starts_with("job_id must be a string of 1 to"),
            "{}",
            e.message
        );
        assert_eq!(job_id(Some(Value::Null)).unwrap(), None);
        let Schedule(ok) = body::decode(
            json!({"handler_id": "bot", "job_method": "echo", "trigger": null, "job_id": "a"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            ok.trigger,
            Some(Value::Null),
            "a null trigger reaches the translation"
        );
        assert_eq!(ok.job_id, Some(json!("a")));
        let e = handler_call(None, Some("echo".into()), None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("handler_id"));
        let (_, _, params) = handler_call(Some("bot".into()), Some("echo".into()), None).unwrap();
        assert_eq!(params, json!({}));
    }
}
