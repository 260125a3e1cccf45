//! A job's `trigger` object (part of [`super`]): parsing it into a [`Trigger`] and writing it
//! back. The time arithmetic itself is [`crate::sched::trigger`].

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::{
    duration_in, field, format_duration, object, opt_timestamp, timestamp, SpecError, MAX_INTERVAL,
    MIN_INTERVAL, TRIGGER_KINDS,
};
use crate::sched::trigger::{CronExpr, Trigger, Zone};

pub(super) fn trigger_kind(t: &Trigger) -> &'static str {
    match t {
        Trigger::At(_) => "at",
        Trigger::Every { .. } => "every",
        Trigger::Cron { .. } => "cron",
    }
}

pub(super) fn trigger_json(t: &Trigger) -> Value {
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

/// Parses a job's `trigger` object on its own, exactly as reading a whole
/// [`JobSpec`](super::JobSpec) does (same `now` rules, errors named `trigger.*`): the schedule
/// preview uses it so that what it shows is what the scheduler will do.
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
    let kind = one_kind(&kinds)?;
    let p = "trigger";
    match kind {
        "at" => {
            object(v, p, &["at"])?;
            at_trigger(timestamp(&m["at"], "trigger.at")?, now)
        }
        "every" => {
            object(v, p, &["every", "start", "end"])?;
            let interval = duration_in(&m["every"], "trigger.every", MIN_INTERVAL, MAX_INTERVAL)?;
            let start = opt_timestamp(m, p, "start")?;
            every_trigger(interval, start, opt_timestamp(m, p, "end")?, now)
        }
        _ => {
            object(v, p, &["cron", "timezone", "start", "end"])?;
            let Value::String(src) = &m["cron"] else {
                return Err(SpecError::new(
                    "trigger.cron",
                    "must be a crontab string such as \"45 19 * * THU\"",
                ));
            };
            let expr = cron_str(src)?;
            let zone = match field(m, "timezone") {
                None => Zone::utc(),
                Some(Value::String(name)) => zone_str(name)?,
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

/// The one trigger kind present (`at`, `every` or `cron`), or the error naming what is there.
pub(super) fn one_kind<'k>(kinds: &[&'k str]) -> Result<&'k str, SpecError> {
    match kinds {
        [kind] => Ok(kind),
        [] => Err(SpecError::new(
            "trigger",
            "needs exactly one of at, every, cron; it has none",
        )),
        _ => Err(SpecError::new(
            "trigger",
            format!(
                "needs exactly one of at, every, cron; it has {}",
                kinds.join(" and ")
            ),
        )),
    }
}

/// An `at` trigger; with `now` (creating), it must lie after it.
pub(super) fn at_trigger(at: Timestamp, now: Option<Timestamp>) -> Result<Trigger, SpecError> {
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

/// An `every` trigger; without `start`, it starts at `now` (creating) or is refused (stored).
pub(super) fn every_trigger(
    interval: Duration,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    now: Option<Timestamp>,
) -> Result<Trigger, SpecError> {
    let start = match (start, now) {
        (Some(start), _) => start,
        (None, Some(now)) => now,
        (None, None) => {
            return Err(SpecError::new(
                "trigger.start",
                "is required in a stored job (the API fills it in with the creation time)",
            ))
        }
    };
    check_end(Some(start), end)?;
    Ok(Trigger::Every {
        interval,
        start,
        end,
    })
}

/// A crontab string, through the shared parse cache ([`CronExpr::parse`]).
pub(super) fn cron_str(src: &str) -> Result<CronExpr, SpecError> {
    CronExpr::parse(src).map_err(|e| SpecError::new("trigger.cron", e.to_string()))
}

/// An IANA time zone name.
pub(super) fn zone_str(name: &str) -> Result<Zone, SpecError> {
    Zone::get(name).map_err(|e| SpecError::new("trigger.timezone", e.to_string()))
}

pub(super) fn check_end(start: Option<Timestamp>, end: Option<Timestamp>) -> Result<(), SpecError> {
    match (start, end) {
        (Some(start), Some(end)) if end <= start => Err(SpecError::new(
            "trigger.end",
            format!("{end} is not after start {start}; pick a later end or drop it"),
        )),
        _ => Ok(()),
    }
}
