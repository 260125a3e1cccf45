//! `POST /api/v1/schedule/preview`: the next fire times of a trigger, before a job exists.
//!
//! Layer: API edge over the pure scheduler code. The body's `trigger` is parsed by the same
//! function job creation uses ([`parse_trigger`]) and stepped with [`Trigger::next_after`], the
//! call the scheduler core makes, so the preview shows what the scheduler will do, daylight
//! saving time included. [`preview`] is a pure function of the body and `now`; only the route
//! reads the clock. Read-only: nothing is stored or audited.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::body::{self, Body};
use super::{ok, ApiError, ApiResult, Ctx};
use crate::sched::spec::parse_trigger;
use crate::sched::{SpecError, Trigger};

/// Fire times returned when the body does not say.
pub const DEFAULT_COUNT: usize = 5;
/// Most fire times one preview may ask for.
pub const MAX_COUNT: usize = 20;

/// A preview's body: the trigger as a job would carry it (parsed by [`parse_trigger`] against
/// the route's `now`), and how many fire times to show.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    #[serde(default, deserialize_with = "body::raw")]
    trigger: Option<Value>,
    #[serde(default, deserialize_with = "count_field")]
    count: Option<u64>,
}

impl Body for PreviewBody {
    const FIELDS: &'static [&'static str] = &["trigger", "count"];
}

/// 1 to [`MAX_COUNT`] (absent or null: [`DEFAULT_COUNT`]); the sentence names no field, as the
/// preview's errors never have (the form shows it next to the field).
fn count_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => v
            .as_u64()
            .filter(|n| (1..=MAX_COUNT as u64).contains(n))
            .map(Some)
            .ok_or_else(|| {
                body::refuse(
                    "count",
                    format!("must be a whole number from 1 to {MAX_COUNT}"),
                )
            }),
    }
}

/// Up to `count` fire times of `trigger` strictly after `now`, in order; fewer when the trigger
/// runs out (an `at`, or an `end`).
pub fn next_fires(trigger: &Trigger, now: Timestamp, count: usize) -> Vec<Timestamp> {
    let mut out = Vec::with_capacity(count);
    let mut after = now;
    while out.len() < count {
        match trigger.next_after(after) {
            Some(t) => {
                out.push(t);
                after = t;
            }
            None => break,
        }
    }
    out
}

/// Parses a preview body `{"trigger": {...}, "count"?: 1-20}` and computes the answer
/// `{"next": [RFC 3339, ...], "timezone": zone}`. Errors name the field (`trigger.cron`,
/// `count`, `body`).
pub fn preview(body: Option<&Value>, now: Timestamp) -> Result<Value, SpecError> {
    let bad = |field: &str, message: &str| SpecError {
        field: field.into(),
        message: message.into(),
    };
    let Some(Value::Object(obj)) = body else {
        return Err(bad(
            "body",
            "send a JSON object such as {\"trigger\": {\"cron\": \"45 19 * * THU\"}}",
        ));
    };
    let PreviewBody { trigger, count } = body::decode(obj).map_err(|e| SpecError {
        field: e.field.unwrap_or_else(|| "body".into()),
        message: e.message,
    })?;
    let trigger = match trigger {
        None | Some(Value::Null) => {
            return Err(bad(
                "trigger",
                "is required: an object with one of at, every, cron",
            ))
        }
        Some(t) => parse_trigger(&t, Some(now))?,
    };
    let count = count.map_or(DEFAULT_COUNT, |n| n as usize);
    let zone = match &trigger {
        Trigger::Cron { zone, .. } => zone.name().to_string(),
        _ => "UTC".to_string(),
    };
    let next: Vec<String> = next_fires(&trigger, now, count)
        .iter()
        .map(|t| t.to_string())
        .collect();
    Ok(json!({"next": next, "timezone": zone}))
}

/// The fires after the scheduler's "now" (its clock, not the request task's).
pub(super) async fn route(ctx: &Ctx<'_>) -> ApiResult {
    let now = ctx
        .service
        .jobs()
        .now()
        .map_err(super::jobs::shutting_down)?;
    preview(ctx.body.as_ref(), now)
        .map_err(|e| ApiError::bad_request(e.field, e.message))
        .and_then(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn run(body: Value, now: &str) -> Result<Vec<String>, SpecError> {
        preview(Some(&body), ts(now)).map(|v| {
            v["next"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
    }

    #[test]
    fn cron_in_a_zone_gives_five_wall_clock_fires() {
        let next = run(
            json!({"trigger": {"cron": "45 19 * * THU", "timezone": "Europe/Berlin"}}),
            "2026-12-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(
            next,
            [
                "2026-12-03T18:45:00Z",
                "2026-12-10T18:45:00Z",
                "2026-12-17T18:45:00Z",
                "2026-12-24T18:45:00Z",
                "2026-12-31T18:45:00Z",
            ]
        );
    }

    /// The scheduler's DST rules: a time in the spring-forward gap runs once at the gap's end,
    /// a repeated autumn time runs once, at its first occurrence.
    #[test]
    fn daylight_saving_time_follows_the_scheduler() {
        let spring = run(
            json!({"trigger": {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, "count": 3}),
            "2026-03-27T12:00:00Z",
        )
        .unwrap();
        assert_eq!(
            spring,
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
        let autumn = run(
            json!({"trigger": {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, "count": 2}),
            "2026-10-24T12:00:00Z",
        )
        .unwrap();
        assert_eq!(autumn, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
    }

    #[test]
    fn every_starts_now_and_at_fires_once() {
        let every = run(
            json!({"trigger": {"every": "90m"}, "count": 2}),
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(every, ["2026-01-01T01:30:00Z", "2026-01-01T03:00:00Z"]);
        let at = run(
            json!({"trigger": {"at": "2026-01-02T00:00:00Z"}, "count": 20}),
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(at, ["2026-01-02T00:00:00Z"]);
    }

    #[test]
    fn errors_name_the_field() {
        let now = "2026-01-01T00:00:00Z";
        let field = |body: Value| run(body, now).unwrap_err().field;
        assert_eq!(
            field(json!({"trigger": {"cron": "61 * * * *"}})),
            "trigger.cron"
        );
        assert_eq!(
            field(json!({"trigger": {"cron": "* * * * *", "timezone": "Mars/Base"}})),
            "trigger.timezone"
        );
        assert_eq!(
            field(json!({"trigger": {"at": "2025-01-01T00:00:00Z"}})),
            "trigger.at"
        );
        assert_eq!(field(json!({"trigger": {"every": "0s"}})), "trigger.every");
        assert_eq!(field(json!({"trigger": {}})), "trigger");
        assert_eq!(field(json!({})), "trigger");
        assert_eq!(
            field(json!({"trigger": {"cron": "* * * * *"}, "count": 21})),
            "count"
        );
        assert_eq!(
            field(json!({"trigger": {"cron": "* * * * *"}, "count": 0})),
            "count"
        );
        assert_eq!(
            field(json!({"trigger": {"cron": "* * * * *"}, "x": 1})),
            "x"
        );
        assert_eq!(preview(None, ts(now)).unwrap_err().field, "body", "no body");
    }

    /// The typed body: an unknown field and a wrongly typed one are refused by name, with the
    /// preview's own sentences.
    #[test]
    fn unknown_and_wrongly_typed_fields_are_refused_by_name() {
        let now = ts("2026-01-01T00:00:00Z");
        let e = preview(Some(&json!({"trigger": {"every": "1h"}, "counts": 2})), now).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            (
                "counts",
                "unknown field 'counts'; expected one of: trigger, count"
            )
        );
        let e = preview(
            Some(&json!({"trigger": {"every": "1h"}, "count": "2"})),
            now,
        )
        .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("count", "must be a whole number from 1 to 20")
        );
        let e = preview(Some(&json!({"trigger": null})), now).unwrap_err();
        assert_eq!(e.field, "trigger");
        let e = preview(Some(&json!({"trigger": "every hour"})), now).unwrap_err();
        assert!(e.field.starts_with("trigger"), "{}", e.field);
    }

    #[test]
    fn answer_names_the_zone() {
        let v = preview(
            Some(&json!({"trigger": {"cron": "0 9 * * *", "timezone": "america/new_york"}, "count": 1})),
            ts("2026-01-01T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(v["timezone"], "America/New_York");
        assert_eq!(v["next"][0], "2026-01-01T14:00:00Z");
    }
}
