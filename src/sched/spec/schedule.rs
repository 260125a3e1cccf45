//! A job's `trigger` object (part of [`super`]): parsing it into a [`Trigger`] and writing it
//! back. The time arithmetic itself is [`crate::sched::trigger`].

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use serde::Deserialize;

use super::typed::{
    opt_timestamp, present, refuse_unknown, required, string, Json, Leaf, TriggerShape,
    DURATION_HINT,
};
use super::{
    duration_str, format_duration, timestamp_str, SpecError, MAX_INTERVAL, MIN_INTERVAL,
    TIMESTAMP_HINT,
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

/// Parses a job's `trigger` object on its own, exactly as a job's is (same decoder, same `now`
/// rules as [`JobDraft::finish`](super::JobDraft::finish), errors named `trigger.*`): the
/// schedule preview uses it so that what it shows is what the scheduler will do.
pub fn parse_trigger(v: &Value, now: Option<Timestamp>) -> Result<Trigger, SpecError> {
    let shape = Json::<TriggerShape>::deserialize(v)
        .map_err(|e| SpecError::new("trigger", format!("is not a trigger: {e}")))?;
    let (trigger, every_from_now) = check_trigger(shape)?;
    finish_trigger(trigger, every_from_now, now)
}

/// Fields of each trigger kind.
const AT_FIELDS: &[&str] = &["at"];
const EVERY_FIELDS: &[&str] = &["every", "start", "end"];
const CRON_FIELDS: &[&str] = &["cron", "timezone", "start", "end"];

/// Checks a `trigger` object. An `every` without `start` comes back with a placeholder start
/// and `true`: [`finish_trigger`] sets it to the time of the request.
pub(super) fn check_trigger(v: Json<'_, TriggerShape<'_>>) -> Result<(Trigger, bool), SpecError> {
    let Json::Object(t) = v else {
        return Err(SpecError::new(
            "trigger",
            "must be an object with exactly one of at, every, cron",
        ));
    };
    let is = |f: &Option<Leaf<'_>>| matches!(f, Some(v) if !matches!(v, Json::Null));
    let kinds: Vec<&str> = [
        ("at", is(&t.at)),
        ("every", is(&t.every)),
        ("cron", is(&t.cron)),
    ]
    .into_iter()
    .filter_map(|(k, here)| here.then_some(k))
    .collect();
    let allowed = match one_kind(&kinds)? {
        "at" => AT_FIELDS,
        "every" => EVERY_FIELDS,
        _ => CRON_FIELDS,
    };
    // Every key the kind does not take (`null` ones too), known or not: the first in key order.
    let extra = [
        ("at", t.at.is_some()),
        ("cron", t.cron.is_some()),
        ("end", t.end.is_some()),
        ("every", t.every.is_some()),
        ("start", t.start.is_some()),
        ("timezone", t.timezone.is_some()),
    ]
    .into_iter()
    .find(|(k, here)| *here && !allowed.contains(k))
    .map(|(k, _)| k);
    let first = match (extra, t.unknown.as_deref()) {
        (Some(e), Some(u)) => Some(e.min(u)),
        (e, u) => e.or(u),
    };
    refuse_unknown("trigger", first, allowed)?;
    if let Some(at) = present(t.at) {
        let at = timestamp_str(&string(at, "trigger.at", TIMESTAMP_HINT)?, "trigger.at")?;
        return Ok((Trigger::At(at), false));
    }
    if let Some(every) = present(t.every) {
        let p = "trigger.every";
        let every = string(every, p, DURATION_HINT)?;
        let interval = duration_str(&every, p, MIN_INTERVAL, MAX_INTERVAL)?;
        let start = opt_timestamp(t.start, "trigger.start")?;
        let end = opt_timestamp(t.end, "trigger.end")?;
        check_end(start, end)?;
        let trigger = Trigger::Every {
            interval,
            start: start.unwrap_or(Timestamp::UNIX_EPOCH),
            end,
        };
        return Ok((trigger, start.is_none()));
    }
    let cron = required(t.cron, "trigger.cron")?;
    let expr = cron_str(&string(
        cron,
        "trigger.cron",
        "must be a crontab string such as \"45 19 * * THU\"",
    )?)?;
    let zone = match present(t.timezone) {
        None => Zone::utc(),
        Some(name) => zone_str(&string(
            name,
            "trigger.timezone",
            "must be an IANA time zone name such as \"Europe/Berlin\"",
        )?)?,
    };
    let start = opt_timestamp(t.start, "trigger.start")?;
    let end = opt_timestamp(t.end, "trigger.end")?;
    check_end(start, end)?;
    Ok((
        Trigger::Cron {
            expr,
            zone,
            start,
            end,
        },
        false,
    ))
}

/// Applies the rules that need the time of the request to a checked trigger (see
/// [`JobDraft::finish`](super::JobDraft::finish)).
pub(super) fn finish_trigger(
    trigger: Trigger,
    every_from_now: bool,
    now: Option<Timestamp>,
) -> Result<Trigger, SpecError> {
    match trigger {
        Trigger::At(at) => at_trigger(at, now),
        Trigger::Every { interval, end, .. } if every_from_now => {
            let Some(now) = now else {
                return Err(SpecError::new(
                    "trigger.start",
                    "is required in a stored job (the API fills it in with the creation time)",
                ));
            };
            check_end(Some(now), end)?;
            Ok(Trigger::Every {
                interval,
                start: now,
                end,
            })
        }
        other => Ok(other),
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
