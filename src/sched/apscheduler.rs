//! APScheduler triggers, as ScheduleZero clients send them, translated to our trigger JSON.
//!
//! Layer: pure translation under [`crate::sched`]; no I/O, no clocks. Owns the mapping of
//! `{"type": "date" | "interval" | "cron", …}` to the `trigger` object that
//! [`crate::sched::JobSpec::from_json`] parses, plus an optional jitter. Contract: every
//! refusal names the ScheduleZero field (`trigger.run_date`, `trigger.day_of_week`, …) and
//! says what to send instead; whatever is accepted means what APScheduler means by it, or it is
//! refused:
//!
//! - `date`: `run_date` is an ISO string (with an offset, or naive = in `timezone`, else UTC;
//!   a bare date is midnight) or Unix seconds (integer or fraction).
//! - `interval`: `weeks + days + hours + minutes + seconds` (numbers) is the period, at least
//!   one second, whole milliseconds; `start_date`/`end_date` anchor and end it.
//! - `cron`: APScheduler's fields become a 6-field expression `sec min hour dom mon dow`.
//!   Fields after the least significant one given default to their minimum (`hour=9` means
//!   09:00:00), fields before it to `*`, as in APScheduler. `day_of_week` counts `mon=0 … sun=6`
//!   (cron counts `sun=0`), so it is written out as day names. `year` and `week` can only be
//!   `*`. APScheduler requires `day` *and* `day_of_week` to match, cron either one, so both
//!   restricted at once is refused.

use jiff::civil::{Date, DateTime};
use jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::trigger::{CronExpr, Zone};

/// A refused trigger: the ScheduleZero field and a sentence saying what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TriggerError {
    /// The offending field, e.g. `trigger.day_of_week`.
    pub field: String,
    /// What is wrong and what to send instead.
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> TriggerError {
    TriggerError {
        field: format!("trigger.{field}"),
        message: message.into(),
    }
}

/// An APScheduler trigger in our terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The `trigger` object of a job spec.
    pub trigger: Value,
    /// APScheduler's `jitter` (seconds) as a job-level duration string, if given.
    pub jitter: Option<String>,
}

const CRON_FIELDS: [&str; 8] = [
    "year",
    "month",
    "day",
    "week",
    "day_of_week",
    "hour",
    "minute",
    "second",
];
const COMMON: [&str; 4] = ["type", "timezone", "jitter", "start_date"];

/// Translates a ScheduleZero `trigger` object.
pub fn translate(v: &Value) -> Result<Translated, TriggerError> {
    let Value::Object(m) = v else {
        return Err(TriggerError {
            field: "trigger".into(),
            message: "must be an object such as {\"type\": \"interval\", \"minutes\": 5}".into(),
        });
    };
    let kind = match m.get("type") {
        Some(Value::String(k)) => k.as_str(),
        _ => return Err(err("type", "must be \"date\", \"interval\" or \"cron\"")),
    };
    let zone = match m.get("timezone") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => {
            Some(Zone::get(name).map_err(|e| err("timezone", e.to_string()))?)
        }
        Some(_) => {
            return Err(err(
                "timezone",
                "must be an IANA time zone name such as \"Europe/Berlin\"",
            ))
        }
    };
    let jitter = match m.get("jitter") {
        None | Some(Value::Null) => None,
        Some(j) => Some(
            j.as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
                .map(|s| format!("{}ms", (s * 1000.0).round() as u64))
                .ok_or_else(|| err("jitter", "must be a number of seconds from 0 to 3600"))?,
        ),
    };
    let allowed: Vec<&str> = match kind {
        "date" => vec!["type", "timezone", "jitter", "run_date"],
        "interval" => COMMON
            .iter()
            .chain(&["end_date", "weeks", "days", "hours", "minutes", "seconds"])
            .copied()
            .collect(),
        "cron" => COMMON
            .iter()
            .chain(&["end_date"])
            .chain(&CRON_FIELDS)
            .copied()
            .collect(),
        other => {
            return Err(err(
                "type",
                format!("unknown trigger type {other:?}; use \"date\", \"interval\" or \"cron\""),
            ))
        }
    };
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(err(
            k,
            format!(
                "is not a field of a {kind} trigger; expected one of: {}",
                allowed.join(", ")
            ),
        ));
    }
    let opt_date = |k: &str| -> Result<Option<Timestamp>, TriggerError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => instant(v, zone.as_ref()).map(Some).map_err(|e| err(k, e)),
        }
    };
    let trigger = match kind {
        "date" => {
            let at = match m.get("run_date") {
                None | Some(Value::Null) => {
                    return Err(err(
                        "run_date",
                        "is required: an ISO time such as \"2026-12-24T18:00:00+01:00\" or Unix seconds",
                    ))
                }
                Some(v) => instant(v, zone.as_ref()).map_err(|e| err("run_date", e))?,
            };
            json!({"at": at.to_string()})
        }
        "interval" => {
            let mut ms = 0f64;
            for (k, unit) in [
                ("weeks", 604_800_000f64),
                ("days", 86_400_000f64),
                ("hours", 3_600_000f64),
                ("minutes", 60_000f64),
                ("seconds", 1_000f64),
            ] {
                match m.get(k) {
                    None | Some(Value::Null) => {}
                    Some(v) => {
                        let n = v
                            .as_f64()
                            .filter(|n| n.is_finite() && *n >= 0.0)
                            .ok_or_else(|| err(k, "must be a number, zero or more"))?;
                        ms += n * unit;
                    }
                }
            }
            if ms < 1000.0 {
                return Err(err(
                    "seconds",
                    "the interval (weeks + days + hours + minutes + seconds) must be at least 1 second",
                ));
            }
            if ms > 366.0 * 86_400_000.0 {
                return Err(err(
                    "days",
                    "the interval (weeks + days + hours + minutes + seconds) must be at most 366 days",
                ));
            }
            let mut t = Map::new();
            t.insert("every".into(), json!(format!("{}ms", ms.round() as u64)));
            if let Some(s) = opt_date("start_date")? {
                t.insert("start".into(), json!(s.to_string()));
            }
            if let Some(e) = opt_date("end_date")? {
                t.insert("end".into(), json!(e.to_string()));
            }
            Value::Object(t)
        }
        _ => {
            let expr = cron_expression(m)?;
            CronExpr::parse(&expr).map_err(|e| TriggerError {
                field: "trigger".into(),
                message: format!("these cron fields never match or are invalid ({expr}): {e}"),
            })?;
            let mut t = Map::new();
            t.insert("cron".into(), json!(expr));
            t.insert(
                "timezone".into(),
                json!(zone.as_ref().map(|z| z.name()).unwrap_or("UTC")),
            );
            if let Some(s) = opt_date("start_date")? {
                t.insert("start".into(), json!(s.to_string()));
            }
            if let Some(e) = opt_date("end_date")? {
                t.insert("end".into(), json!(e.to_string()));
            }
            Value::Object(t)
        }
    };
    Ok(Translated { trigger, jitter })
}

/// An ISO string (offset, naive or date only) or Unix seconds.
fn instant(v: &Value, zone: Option<&Zone>) -> Result<Timestamp, String> {
    const HINT: &str = "must be an ISO time such as \"2026-12-24T18:00:00+01:00\" (naive means UTC or the trigger's timezone) or Unix seconds";
    match v {
        Value::Number(n) => {
            let secs = n.as_f64().ok_or(HINT)?;
            Timestamp::from_millisecond((secs * 1000.0).round() as i64).map_err(|_| HINT.into())
        }
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = s.parse::<Timestamp>() {
                return Ok(t);
            }
            let civil = match s.parse::<DateTime>() {
                Ok(dt) => dt,
                Err(_) => s.parse::<Date>().map_err(|_| HINT.to_string())?.into(),
            };
            let tz = zone
                .map(|z| z.tz().clone())
                .unwrap_or(jiff::tz::TimeZone::UTC);
            civil
                .to_zoned(tz)
                .map(|z| z.timestamp())
                .map_err(|e| format!("{s} is not a time in that zone: {e}"))
        }
        _ => Err(HINT.into()),
    }
}

/// The 6-field expression for APScheduler's cron fields.
fn cron_expression(m: &Map<String, Value>) -> Result<String, TriggerError> {
    let given: Vec<&str> = CRON_FIELDS
        .iter()
        .copied()
        .filter(|f| !matches!(m.get(*f), None | Some(Value::Null)))
        .collect();
    let last = given.last().copied();
    let mut defaults_on = false;
    let mut text = std::collections::HashMap::new();
    for f in CRON_FIELDS {
        let value = if given.contains(&f) {
            let raw = match &m[f] {
                Value::String(s) => s.trim().to_ascii_lowercase(),
                Value::Number(n) if n.is_u64() => n.to_string(),
                _ => {
                    return Err(err(
                        f,
                        "must be a number or an APScheduler expression string such as \"*/5\" or \"1-5\"",
                    ))
                }
            };
            if Some(f) == last {
                defaults_on = true;
            }
            raw
        } else if defaults_on {
            match f {
                "month" | "day" => "1".into(),
                "hour" | "minute" | "second" => "0".into(),
                _ => "*".into(),
            }
        } else {
            "*".into()
        };
        text.insert(f, value);
    }
    for f in ["year", "week"] {
        if text[f] != "*" {
            return Err(err(
                f,
                format!("{f} can only be \"*\" here: our cron has no {f} field; schedule by month, day and day_of_week instead"),
            ));
        }
    }
    let second = field(&text["second"], "second", 0, 59, &[])?;
    let minute = field(&text["minute"], "minute", 0, 59, &[])?;
    let hour = field(&text["hour"], "hour", 0, 23, &[])?;
    let day = if text["day"] == "last" {
        "L".to_string()
    } else {
        field(&text["day"], "day", 1, 31, &[])?
    };
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = field(&text["month"], "month", 1, 12, &MONTHS)?;
    let dow = day_of_week(&text["day_of_week"])?;
    if day != "*" && dow != "*" {
        return Err(err(
            "day_of_week",
            "day and day_of_week cannot both be restricted: APScheduler runs when both match, our cron when either does; keep one and use \"*\" for the other",
        ));
    }
    Ok(format!("{second} {minute} {hour} {day} {month} {dow}"))
}

/// One value: a number in `min..=max` or a name (`names[i]` is `min + i`).
fn value(s: &str, f: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, TriggerError> {
    if let Some(i) = names.iter().position(|n| *n == s) {
        return Ok(min + i as u32);
    }
    s.parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            err(
                f,
                format!(
                    "{s:?} is not a value from {min} to {max}{}",
                    if names.is_empty() {
                        String::new()
                    } else {
                        format!(" or one of {}", names.join(", "))
                    }
                ),
            )
        })
}

/// Parses a comma list of `*`, `*/n`, `a`, `a-b`, `a-b/n`, `a/n` into the values it matches.
fn expand(
    s: &str,
    f: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<Option<Vec<u32>>, TriggerError> {
    if s == "*" {
        return Ok(None);
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    err(
                        f,
                        format!("the step in {part:?} must be a whole number of 1 or more"),
                    )
                })?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, f, min, max, names)?, value(b, f, min, max, names)?)
        } else {
            let a = value(range, f, min, max, names)?;
            (a, if part.contains('/') { max } else { a })
        };
        if lo > hi {
            return Err(err(
                f,
                format!("the range in {part:?} runs backwards; write the smaller value first"),
            ));
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// A numeric field as a cron field (an explicit list, which every cron dialect reads alike).
fn field(s: &str, f: &str, min: u32, max: u32, names: &[&str]) -> Result<String, TriggerError> {
    Ok(match expand(s, f, min, max, names)? {
        None => "*".into(),
        Some(v) => v.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
    })
}

/// APScheduler's day_of_week (`mon=0 … sun=6`, or names) as cron day names.
fn day_of_week(s: &str) -> Result<String, TriggerError> {
    const APS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    const CRON: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    Ok(match expand(s, "day_of_week", 0, 6, &APS)? {
        None => "*".into(),
        Some(days) => days
            .iter()
            .map(|d| CRON[*d as usize])
            .collect::<Vec<_>>()
            .join(","),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: Value) -> Value {
        translate(&v).unwrap().trigger
    }

    fn refused(v: Value) -> String {
        translate(&v).unwrap_err().field
    }

    #[test]
    fn date_takes_iso_with_and_without_offset_and_unix_seconds() {
        let at = |v: Value| t(v)["at"].as_str().unwrap().to_string();
        assert_eq!(
            at(json!({"type": "date", "run_date": "2026-12-24T18:00:00+01:00"})),
            "2026-12-24T17:00:00Z"
        );
        assert_eq!(
            at(json!({"type": "date", "run_date": "2026-12-24T18:00:00"})),
            "2026-12-24T18:00:00Z",
            "naive is UTC"
        );
        assert_eq!(
            at(
                json!({"type": "date", "run_date": "2026-07-01T18:00:00", "timezone": "Europe/Berlin"})
            ),
            "2026-07-01T16:00:00Z",
            "naive is in the given zone (CEST)"
        );
        assert_eq!(
            at(json!({"type": "date", "run_date": "2026-12-24"})),
            "2026-12-24T00:00:00Z"
        );
        assert_eq!(
            at(json!({"type": "date", "run_date": 1_798_000_000})),
            "2026-12-23T04:26:40Z"
        );
        assert_eq!(
            at(json!({"type": "date", "run_date": 1_798_000_000.25})),
            "2026-12-23T04:26:40.25Z"
        );
        assert_eq!(refused(json!({"type": "date"})), "trigger.run_date");
        assert_eq!(
            refused(json!({"type": "date", "run_date": "next tuesday"})),
            "trigger.run_date"
        );
        assert_eq!(
            refused(json!({"type": "date", "run_date": true})),
            "trigger.run_date"
        );
    }

    #[test]
    fn interval_sums_its_units() {
        let v = t(json!({"type": "interval", "hours": 1, "minutes": 30, "seconds": 0.5}));
        assert_eq!(v, json!({"every": "5400500ms"}));
        let v = t(json!({"type": "interval", "weeks": 1, "days": 1,
                         "start_date": "2026-12-01T00:00:00Z", "end_date": 1_800_000_000}));
        assert_eq!(
            v,
            json!({"every": "691200000ms", "start": "2026-12-01T00:00:00Z", "end": "2027-01-15T08:00:00Z"})
        );
        let spec = crate::sched::JobSpec::from_json(
            &json!({"name": "x", "trigger": t(json!({"type": "interval", "minutes": 5})),
                    "action": {"handler": {"id": "bot", "method": "m"}}}),
            Some(Timestamp::UNIX_EPOCH),
        )
        .unwrap();
        assert!(matches!(
            spec.trigger,
            crate::sched::Trigger::Every { interval, .. } if interval.as_secs() == 300
        ));
        assert_eq!(
            refused(json!({"type": "interval", "seconds": 0.2})),
            "trigger.seconds"
        );
        assert_eq!(
            refused(json!({"type": "interval", "minutes": "5"})),
            "trigger.minutes"
        );
        assert_eq!(
            refused(json!({"type": "interval", "days": 400})),
            "trigger.days"
        );
        assert_eq!(
            refused(json!({"type": "interval", "minutes": 1, "every": 2})),
            "trigger.every"
        );
    }

    #[test]
    fn cron_defaults_follow_apscheduler() {
        let cron = |v: Value| t(v)["cron"].as_str().unwrap().to_string();
        assert_eq!(cron(json!({"type": "cron", "hour": 9})), "0 0 9 * * *");
        assert_eq!(
            cron(json!({"type": "cron", "minute": "*/15"})),
            "0 0,15,30,45 * * * *"
        );
        assert_eq!(cron(json!({"type": "cron", "month": "jun"})), "0 0 0 1 6 *");
        assert_eq!(
            cron(json!({"type": "cron", "hour": "8-10", "second": "30"})),
            "30 * 8,9,10 * * *"
        );
        assert_eq!(cron(json!({"type": "cron", "day": "last"})), "0 0 0 L * *");
        assert_eq!(
            cron(json!({"type": "cron", "year": "*", "week": "*"})),
            "0 0 0 * * *"
        );
        let v = t(json!({"type": "cron", "hour": 19, "minute": 45, "timezone": "Europe/Berlin"}));
        assert_eq!(
            v,
            json!({"cron": "0 45 19 * * *", "timezone": "Europe/Berlin"})
        );
    }

    #[test]
    fn cron_day_of_week_counts_from_monday() {
        let cron = |v: Value| t(v)["cron"].as_str().unwrap().to_string();
        // APScheduler: 0 is Monday, 6 is Sunday; cron: 0 is Sunday.
        assert_eq!(
            cron(json!({"type": "cron", "day_of_week": 0})),
            "0 0 0 * * MON"
        );
        assert_eq!(
            cron(json!({"type": "cron", "day_of_week": "6"})),
            "0 0 0 * * SUN"
        );
        assert_eq!(
            cron(json!({"type": "cron", "day_of_week": "0-4", "hour": 9})),
            "0 0 9 * * MON,TUE,WED,THU,FRI"
        );
        assert_eq!(
            cron(json!({"type": "cron", "day_of_week": "sat,sun", "hour": 10})),
            "0 0 10 * * SAT,SUN"
        );
        assert_eq!(
            cron(json!({"type": "cron", "day_of_week": "mon-wed,5"})),
            "0 0 0 * * MON,TUE,WED,SAT"
        );
        // And the expression fires on those days: 2026-12-07 is a Monday.
        let spec = crate::sched::JobSpec::from_json(
            &json!({"name": "x", "trigger": t(json!({"type": "cron", "day_of_week": 0, "hour": 9})),
                    "action": {"handler": {"id": "bot", "method": "m"}}}),
            None,
        )
        .unwrap();
        let next = spec
            .trigger
            .next_after("2026-12-02T00:00:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(next.to_string(), "2026-12-07T09:00:00Z");
    }

    #[test]
    fn cron_refusals_name_the_field() {
        assert_eq!(
            refused(json!({"type": "cron", "year": 2027})),
            "trigger.year"
        );
        assert_eq!(
            refused(json!({"type": "cron", "week": "1-10"})),
            "trigger.week"
        );
        assert_eq!(refused(json!({"type": "cron", "hour": 24})), "trigger.hour");
        assert_eq!(
            refused(json!({"type": "cron", "day_of_week": 7})),
            "trigger.day_of_week"
        );
        assert_eq!(
            refused(json!({"type": "cron", "day_of_week": "fri-mon"})),
            "trigger.day_of_week"
        );
        assert_eq!(
            refused(json!({"type": "cron", "day": 1, "day_of_week": "mon"})),
            "trigger.day_of_week"
        );
        assert_eq!(
            refused(json!({"type": "cron", "month": 13})),
            "trigger.month"
        );
        assert_eq!(
            refused(json!({"type": "cron", "minute": "*/0"})),
            "trigger.minute"
        );
        assert_eq!(
            refused(json!({"type": "cron", "hours": 3})),
            "trigger.hours"
        );
        assert_eq!(
            refused(json!({"type": "cron", "day": 31, "month": 2})),
            "trigger"
        );
        assert_eq!(
            refused(json!({"type": "cron", "hour": 1, "timezone": "Mars/Base"})),
            "trigger.timezone"
        );
        assert_eq!(refused(json!({"type": "weekly"})), "trigger.type");
        assert_eq!(refused(json!({"hour": 1})), "trigger.type");
        assert_eq!(refused(json!("0 9 * * *")), "trigger");
    }

    #[test]
    fn jitter_is_carried_as_milliseconds() {
        let tr = translate(&json!({"type": "interval", "minutes": 1, "jitter": 2.5})).unwrap();
        assert_eq!(tr.jitter.as_deref(), Some("2500ms"));
        assert_eq!(
            refused(json!({"type": "interval", "minutes": 1, "jitter": -1})),
            "trigger.jitter"
        );
    }
}
