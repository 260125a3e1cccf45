//! Scheduler tests, all under virtual time: instants are passed in, nothing sleeps or reads a
//! clock.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn secs(n: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_secs(n)
}

fn cron(expr: &str, zone: &str) -> Trigger {
    Trigger::Cron {
        expr: CronExpr::parse(expr).unwrap(),
        zone: Zone::get(zone).unwrap(),
        start: None,
        end: None,
    }
}

/// The next `n` fires strictly after `after`, as UTC RFC 3339 strings.
fn seq(t: &Trigger, after: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = ts(after);
    for _ in 0..n {
        match t.next_after(cur) {
            Some(next) => {
                assert!(next > cur, "next_after must move forward");
                out.push(next.to_string());
                cur = next;
            }
            None => break,
        }
    }
    out
}

fn hook() -> Value {
    json!({"webhook": {"url": "https://discord.com/api/webhooks/123/secret-token"}})
}

fn spec_json(trigger: Value) -> Value {
    json!({"name": "raid-reminder", "trigger": trigger, "action": hook()})
}

fn spec_with(trigger: Value, extra: Value, now: &str) -> Arc<JobSpec> {
    let mut v = spec_json(trigger);
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    Arc::new(JobSpec::from_json(&v, Some(ts(now))).unwrap())
}

fn err(v: Value, now: Option<&str>) -> SpecError {
    JobSpec::from_json(&v, now.map(ts)).unwrap_err()
}

fn drain(core: &mut Core) -> Vec<Fire> {
    std::iter::from_fn(|| core.poll_fire()).collect()
}

fn id(n: u64) -> JobId {
    JobId::from_u64(n)
}

// ---- triggers --------------------------------------------------------------------------------

#[test]
fn at_fires_once_and_keeps_milliseconds() {
    let at = ts("2026-12-03T19:45:00.250+01:00");
    let t = Trigger::At(at);
    assert_eq!(at.to_string(), "2026-12-03T18:45:00.25Z");
    assert_eq!(t.next_after(ts("2026-12-03T18:45:00.249Z")), Some(at));
    assert_eq!(t.next_after(at), None);
    assert_eq!(t.next_after(ts("2027-01-01T00:00:00Z")), None);
}

#[test]
fn every_fires_on_its_grid_from_start() {
    let t = Trigger::Every {
        interval: Duration::from_secs(90),
        start: ts("2026-01-01T00:00:00Z"),
        end: None,
    };
    // Before start: the first fire is start itself.
    assert_eq!(
        seq(&t, "2025-12-31T00:00:00Z", 3),
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:01:30Z",
            "2026-01-01T00:03:00Z"
        ]
    );
    // Off-grid `after` snaps to the grid.
    assert_eq!(
        seq(&t, "2026-01-01T00:02:59.999Z", 1),
        ["2026-01-01T00:03:00Z"]
    );
    // Wall-clock changes do not move an absolute interval.
    let hourly = Trigger::Every {
        interval: Duration::from_secs(3600),
        start: ts("2026-10-24T22:00:00Z"),
        end: None,
    };
    assert_eq!(seq(&hourly, "2026-10-25T00:30:00Z", 2).len(), 2);
    assert_eq!(
        seq(&hourly, "2026-10-25T00:30:00Z", 2),
        ["2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"]
    );
}

#[test]
fn end_time_stops_every_and_cron_inclusively() {
    let t = Trigger::Every {
        interval: Duration::from_secs(3600),
        start: ts("2026-01-01T00:00:00Z"),
        end: Some(ts("2026-01-01T02:00:00Z")),
    };
    assert_eq!(
        seq(&t, "2025-01-01T00:00:00Z", 10),
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T01:00:00Z",
            "2026-01-01T02:00:00Z"
        ]
    );
    let c = Trigger::Cron {
        expr: CronExpr::parse("0 12 * * *").unwrap(),
        zone: Zone::utc(),
        start: Some(ts("2026-01-02T12:00:00Z")),
        end: Some(ts("2026-01-04T11:59:59Z")),
    };
    // `start` is inclusive, `end` cuts the 4th.
    assert_eq!(
        seq(&c, "2026-01-01T00:00:00Z", 10),
        ["2026-01-02T12:00:00Z", "2026-01-03T12:00:00Z"]
    );
}

#[test]
fn cron_weekday_names_in_utc_and_berlin() {
    // 2026-12-03 is a Thursday.
    assert_eq!(
        seq(&cron("45 19 * * THU", "UTC"), "2026-12-01T00:00:00Z", 2),
        ["2026-12-03T19:45:00Z", "2026-12-10T19:45:00Z"]
    );
    // Berlin is UTC+1 in winter, UTC+2 in summer.
    assert_eq!(
        seq(
            &cron("45 19 * * thu", "Europe/Berlin"),
            "2026-12-01T00:00:00Z",
            1
        ),
        ["2026-12-03T18:45:00Z"]
    );
    assert_eq!(
        seq(
            &cron("45 19 * * THU", "Europe/Berlin"),
            "2026-07-01T00:00:00Z",
            1
        ),
        ["2026-07-02T17:45:00Z"]
    );
    // Month names, ranges, steps, lists.
    assert_eq!(
        seq(
            &cron("0 9-17/4 1,15 JAN-FEB *", "UTC"),
            "2026-01-01T10:00:00Z",
            4
        ),
        [
            "2026-01-01T13:00:00Z",
            "2026-01-01T17:00:00Z",
            "2026-01-15T09:00:00Z",
            "2026-01-15T13:00:00Z"
        ]
    );
}

#[test]
fn cron_six_fields_has_seconds() {
    assert_eq!(
        seq(&cron("*/15 * * * * *", "UTC"), "2026-05-01T10:00:07.5Z", 3),
        [
            "2026-05-01T10:00:15Z",
            "2026-05-01T10:00:30Z",
            "2026-05-01T10:00:45Z"
        ]
    );
    assert_eq!(
        seq(&cron("30 0 12 * * *", "UTC"), "2026-05-01T12:00:30Z", 1),
        ["2026-05-02T12:00:30Z"]
    );
}

#[test]
fn cron_berlin_spring_gap_runs_once_at_the_next_valid_instant() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z.
    let t = cron("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        seq(&t, "2026-03-28T12:00:00Z", 3),
        [
            "2026-03-29T01:00:00Z", // 03:00 CEST: the first instant after the gap
            "2026-03-30T00:30:00Z", // 02:30 CEST
            "2026-03-31T00:30:00Z",
        ]
    );
    // Several matches in the gap and the match at its end collapse into one run.
    assert_eq!(
        seq(
            &cron("*/30 * * * *", "Europe/Berlin"),
            "2026-03-29T00:10:00Z",
            4
        ),
        [
            "2026-03-29T00:30:00Z", // 01:30 CET
            "2026-03-29T01:00:00Z", // 02:00, 02:30 (gap) and 03:00 CEST: once
            "2026-03-29T01:30:00Z", // 03:30 CEST
            "2026-03-29T02:00:00Z",
        ]
    );
    // An hourly-at-:30 job runs at the end of the gap instead of skipping 02:30
    // (croner alone would skip it).
    assert_eq!(
        seq(
            &cron("30 * * * *", "Europe/Berlin"),
            "2026-03-29T00:10:00Z",
            3
        ),
        [
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:30:00Z"
        ]
    );
}

#[test]
fn cron_berlin_fall_overlap_runs_once_at_the_first_occurrence() {
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00Z; 02:00-02:59 happen twice.
    assert_eq!(
        seq(
            &cron("30 2 * * *", "Europe/Berlin"),
            "2026-10-24T12:00:00Z",
            3
        ),
        [
            "2026-10-25T00:30:00Z", // 02:30 CEST, not again at 02:30 CET
            "2026-10-26T01:30:00Z", // 02:30 CET
            "2026-10-27T01:30:00Z",
        ]
    );
    // The same rule for an interval-like expression (croner alone runs both occurrences).
    assert_eq!(
        seq(
            &cron("*/30 * * * *", "Europe/Berlin"),
            "2026-10-25T00:10:00Z",
            4
        ),
        [
            "2026-10-25T00:30:00Z", // 02:30 CEST
            "2026-10-25T02:00:00Z", // 03:00 CET; 02:00 and 02:30 CET are repeats
            "2026-10-25T02:30:00Z",
            "2026-10-25T03:00:00Z",
        ]
    );
    // Starting inside the repeated hour: from the first pass, the rest of the first pass still
    // runs; from the second pass, nothing runs until the repeat is over.
    let every_min = cron("*/20 * * * *", "Europe/Berlin");
    assert_eq!(
        seq(&every_min, "2026-10-25T00:30:00Z", 2),
        ["2026-10-25T00:40:00Z", "2026-10-25T02:00:00Z"]
    );
    assert_eq!(
        seq(&every_min, "2026-10-25T01:10:00Z", 1),
        ["2026-10-25T02:00:00Z"]
    );
    // Every second across the fold: the repeated hour is one jump, not 3600 steps.
    assert_eq!(
        seq(
            &cron("* * * * * *", "Europe/Berlin"),
            "2026-10-25T00:59:58Z",
            2
        ),
        ["2026-10-25T00:59:59Z", "2026-10-25T02:00:00Z"]
    );
}

#[test]
fn cron_new_york_gap_and_overlap() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00Z.
    assert_eq!(
        seq(
            &cron("30 2 * * *", "America/New_York"),
            "2026-03-07T12:00:00Z",
            2
        ),
        ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    );
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST at 06:00Z; 01:00-01:59 happen twice.
    assert_eq!(
        seq(
            &cron("30 1 * * *", "America/New_York"),
            "2026-10-31T12:00:00Z",
            2
        ),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
    assert_eq!(
        seq(
            &cron("0 * * * *", "America/New_York"),
            "2026-11-01T04:30:00Z",
            3
        ),
        [
            "2026-11-01T05:00:00Z", // 01:00 EDT
            "2026-11-01T07:00:00Z", // 02:00 EST; 01:00 EST is a repeat
            "2026-11-01T08:00:00Z",
        ]
    );
    // Times outside the transition are unaffected, weekly jobs keep local time.
    assert_eq!(
        seq(
            &cron("0 9 * * SUN", "America/New_York"),
            "2026-03-01T15:00:00Z",
            2
        ),
        ["2026-03-08T13:00:00Z", "2026-03-15T13:00:00Z"]
    );
}

#[test]
fn cron_leap_day() {
    assert_eq!(
        seq(&cron("0 12 29 2 *", "UTC"), "2026-01-01T00:00:00Z", 2),
        ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"]
    );
    assert_eq!(
        seq(&cron("0 0 L 2 *", "UTC"), "2027-01-01T00:00:00Z", 2),
        ["2027-02-28T00:00:00Z", "2028-02-29T00:00:00Z"]
    );
}

#[test]
fn cron_expr_rejections() {
    assert_eq!(
        CronExpr::parse("* * *").unwrap_err(),
        CronExprError::FieldCount { found: 3 }
    );
    assert_eq!(
        CronExpr::parse("0 0 1 1 * 2026 x").unwrap_err(),
        CronExprError::FieldCount { found: 7 }
    );
    assert!(matches!(
        CronExpr::parse("60 * * * *").unwrap_err(),
        CronExprError::Field { name: "minute", .. }
    ));
    assert_eq!(CronExpr::parse("  ").unwrap_err(), CronExprError::Empty);
    assert_eq!(
        CronExpr::parse("0 0 30 2 *").unwrap_err(),
        CronExprError::NeverMatches
    );
    assert_eq!(
        CronExpr::parse(" 0  12 * *  MON ").unwrap().as_str(),
        "0 12 * * MON"
    );
    assert_eq!(CronExpr::parse("@daily").unwrap().as_str(), "@daily");
}

/// A bad field is named in words a non-engineer can act on: which field, what it takes, what
/// was given; never the parser's own jargon.
#[test]
fn cron_errors_name_the_field_in_plain_words() {
    for (expr, want) in [
        (
            "45 19 * * THURSDAY",
            "the day of week (5th field) must be 0-7 or MON-SUN (0 and 7 are Sunday), e.g. 4, THU or MON-FRI; got \"THURSDAY\"",
        ),
        (
            "60 19 * * THU",
            "the minute (1st field) must be 0-59, e.g. 0, 45 or */15; got \"60\"",
        ),
        (
            "45 24 * * *",
            "the hour (2nd field) must be 0-23, e.g. 19, 9-17 or */2; got \"24\"",
        ),
        (
            "0 12 32 * *",
            "the day of month (3rd field) must be 1-31 or L (the last day), e.g. 1, 15 or 1-7; got \"32\"",
        ),
        (
            "0 12 1 JANUARY *",
            "the month (4th field) must be 1-12 or JAN-DEC, e.g. 6, JUN or JAN-MAR; got \"JANUARY\"",
        ),
        (
            "0 12 * 13 *",
            "the month (4th field) must be 1-12 or JAN-DEC, e.g. 6, JUN or JAN-MAR; got \"13\"",
        ),
        (
            "75 0 12 * * *",
            "the second (1st field) must be 0-59, e.g. 0, 30 or */10; got \"75\"",
        ),
        (
            "0 0 12 * * MONDAY",
            "the day of week (6th field) must be 0-7 or MON-SUN (0 and 7 are Sunday), e.g. 4, THU or MON-FRI; got \"MONDAY\"",
        ),
    ] {
        let e = CronExpr::parse(expr).unwrap_err().to_string();
        assert_eq!(e, want, "{expr}");
        for jargon in ["CronPattern", "illegal", "Component", "Pattern"] {
            assert!(!e.contains(jargon), "{expr}: {e}");
        }
    }
    // The first bad field is the one named.
    assert!(matches!(
        CronExpr::parse("99 99 * * *").unwrap_err(),
        CronExprError::Field { position: 1, .. }
    ));
    let e = CronExpr::parse("@weekdays").unwrap_err();
    assert_eq!(
        e,
        CronExprError::UnknownShortcut {
            got: "@weekdays".into()
        }
    );
    assert!(e.to_string().contains("@daily"), "{e}");
}

// ---- spec parsing ----------------------------------------------------------------------------

const NOW: &str = "2026-06-01T12:00:00Z";

#[test]
fn spec_defaults() {
    let s = JobSpec::from_json(
        &spec_json(json!({"cron": "45 19 * * THU", "timezone": "europe/berlin"})),
        Some(ts(NOW)),
    )
    .unwrap();
    assert_eq!(s.name, "raid-reminder");
    assert_eq!(s.misfire_grace, Duration::from_secs(60));
    assert!(s.coalesce);
    assert_eq!(s.max_instances, 1);
    assert_eq!(s.jitter, Duration::ZERO);
    assert_eq!(
        s.retry,
        Retry {
            attempts: 1,
            backoff: Duration::from_secs(10)
        }
    );
    assert_eq!(s.timeout, Duration::from_secs(30));
    assert!(!s.paused);
    assert!(s.metadata.is_empty());
    let Trigger::Cron { zone, .. } = &s.trigger else {
        panic!("cron expected")
    };
    assert_eq!(zone.name(), "Europe/Berlin");
    let Action::Webhook(w) = &s.action else {
        panic!("webhook expected")
    };
    assert_eq!(w.method, hyper::Method::POST);
    assert!(w.headers.is_empty());
    assert_eq!(w.body, None);
}

#[test]
fn every_without_start_is_anchored_at_creation() {
    let s = JobSpec::from_json(&spec_json(json!({"every": "1h30m"})), Some(ts(NOW))).unwrap();
    assert_eq!(
        s.trigger,
        Trigger::Every {
            interval: Duration::from_secs(5400),
            start: ts(NOW),
            end: None
        }
    );
    // The stored JSON carries the anchor, so loading needs no `now`.
    assert_eq!(s.to_json()["trigger"]["start"], json!(NOW));
    assert_eq!(JobSpec::from_json(&s.to_json(), None).unwrap(), s);
    // A stored job without it is refused rather than re-anchored.
    assert_eq!(
        err(spec_json(json!({"every": "1h"})), None).field,
        "trigger.start"
    );
}

#[test]
fn to_json_round_trips() {
    let full = json!({
        "name": "  raid reminder ",
        "trigger": {"cron": "0 45 19 * * THU", "timezone": "America/New_York",
                    "start": "2026-07-01T00:00:00.5Z", "end": "2027-07-01T00:00:00+02:00"},
        "action": {"webhook": {
            "url": "https://discord.com/api/webhooks/123/tok?wait=true",
            "method": "put",
            "headers": {"X-Trace": "abc", "Authorization": "Bot xyz"},
            "body": {"content": "<@&42> raid at 19:45", "embeds": [1, 2.5, null]}
        }},
        "misfire_grace": "5m", "coalesce": false, "max_instances": 3, "jitter": "1500ms",
        "retry": {"attempts": 3, "backoff": "10s"}, "timeout": "2m", "paused": true,
        "metadata": {"guild": "raiders", "n": 1}
    });
    let s = JobSpec::from_json(&full, Some(ts(NOW))).unwrap();
    let out = s.to_json();
    assert_eq!(JobSpec::from_json(&out, None).unwrap(), s);
    assert_eq!(out["trigger"]["start"], json!("2026-07-01T00:00:00.5Z"));
    assert_eq!(out["trigger"]["end"], json!("2027-06-30T22:00:00Z"));
    assert_eq!(out["action"]["webhook"]["method"], json!("PUT"));
    assert_eq!(
        out["action"]["webhook"]["headers"],
        json!({"authorization": "Bot xyz", "x-trace": "abc"})
    );
    assert_eq!(out["jitter"], json!("1s500ms"));
    assert_eq!(out["timeout"], json!("2m"));
    assert_eq!(out["name"], json!("  raid reminder "));
    // Every kind of trigger round-trips, `at` with milliseconds too.
    for trigger in [
        json!({"at": "2026-12-03T19:45:00.123+01:00"}),
        json!({"every": "90s", "end": "2026-12-31T00:00:00Z"}),
        json!({"cron": "*/5 * * * *"}),
    ] {
        let s = JobSpec::from_json(&spec_json(trigger), Some(ts(NOW))).unwrap();
        assert_eq!(JobSpec::from_json(&s.to_json(), None).unwrap(), s);
    }
}

#[test]
fn spec_errors_name_the_field() {
    let now = Some(NOW);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "colour": 1}),
            "colour",
        ),
        (spec_json(json!({"every": "1m", "tz": "UTC"})), "trigger.tz"),
        (
            spec_json(json!({"at": "2026-12-03T19:45:00Z", "start": "2026-01-01T00:00:00Z"})),
            "trigger.start",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"},
                   "action": {"webhook": {"url": "https://a.example/", "verb": "POST"}}}),
            "action.webhook.verb",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": {"email": {}}}),
            "action.email",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(),
                   "retry": {"attempts": 2, "jitter": "1s"}}),
            "retry.jitter",
        ),
        (spec_json(json!({"cron": "61 * * * *"})), "trigger.cron"),
        (spec_json(json!({"cron": "0 0 31 4 *"})), "trigger.cron"),
        (spec_json(json!({"cron": "* * *"})), "trigger.cron"),
        (
            spec_json(json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus"})),
            "trigger.timezone",
        ),
        (
            spec_json(json!({"at": "2026-06-01T11:59:59Z"})),
            "trigger.at",
        ),
        (spec_json(json!({"at": NOW})), "trigger.at"),
        (
            spec_json(json!({"at": "2026-12-03T19:45:00"})),
            "trigger.at",
        ),
        (spec_json(json!({"every": "5 minutes"})), "trigger.every"),
        (spec_json(json!({"every": "500ms"})), "trigger.every"),
        (
            spec_json(json!({"every": "1m", "start": "2026-07-01T00:00:00Z",
                             "end": "2026-07-01T00:00:00Z"})),
            "trigger.end",
        ),
        (spec_json(json!({})), "trigger"),
        (
            spec_json(json!({"every": "1m", "cron": "* * * * *"})),
            "trigger",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"},
                   "action": {"webhook": {"url": "ftp://files.example/x"}}}),
            "action.webhook.url",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"},
                   "action": {"webhook": {"url": "/api/webhooks/1/x"}}}),
            "action.webhook.url",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"},
                   "action": {"webhook": {"url": "https://u:p@a.example/"}}}),
            "action.webhook.url",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"},
                   "action": {"webhook": {"url": "https://a.example/", "method": "TRACE"}}}),
            "action.webhook.method",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"},
                   "action": {"webhook": {"url": "https://a.example/",
                                          "headers": {"Content-Length": "5"}}}}),
            "action.webhook.headers.Content-Length",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"},
                   "action": {"webhook": {"url": "https://a.example/",
                                          "headers": {"X-A": "line\nbreak"}}}}),
            "action.webhook.headers.X-A",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"},
                   "action": {"webhook": {"url": "https://a.example/",
                                          "headers": {"X-A": "1", "x-a": "2"}}}}),
            "action.webhook.headers.x-a",
        ),
        (
            json!({"name": "   ", "trigger": {"every": "1m"}, "action": hook()}),
            "name",
        ),
        (
            json!({"name": "x".repeat(101), "trigger": {"every": "1m"}, "action": hook()}),
            "name",
        ),
        (
            json!({"trigger": {"every": "1m"}, "action": hook()}),
            "name",
        ),
        (json!({"name": "x", "trigger": {"every": "1m"}}), "action"),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "misfire_grace": "5 minutes"}),
            "misfire_grace",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "misfire_grace": "0s"}),
            "misfire_grace",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "timeout": "11m"}),
            "timeout",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "max_instances": 0}),
            "max_instances",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "max_instances": 1.5}),
            "max_instances",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "retry": {"attempts": 11}}),
            "retry.attempts",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "coalesce": "yes"}),
            "coalesce",
        ),
        (
            json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "metadata": [1]}),
            "metadata",
        ),
        (json!([1, 2]), ""),
    ];
    for (v, field) in cases {
        let e = err(v.clone(), now);
        assert_eq!(e.field, field, "for {v}: {e}");
        assert!(!e.message.is_empty());
    }
    // Messages are sentences that say what to do.
    let e = err(
        spec_json(json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus"})),
        now,
    );
    assert_eq!(
        e.to_string(),
        "trigger.timezone: unknown time zone \"Mars/Olympus\"; use an IANA name such as \"Europe/Berlin\" or \"UTC\""
    );
    let e = err(
        json!({"name": "x", "trigger": {"every": "1m"}, "action": hook(), "colour": 1}),
        now,
    );
    assert!(e.to_string().starts_with("colour: unknown field"), "{e}");
    // A Discord URL pasted without its https:// (as a phone's share sheet may): told to add it.
    let e = err(
        json!({"name": "x", "trigger": {"every": "1m"},
               "action": {"webhook": {"url": "discord.com/api/webhooks/1/abc"}}}),
        now,
    );
    assert_eq!(e.field, "action.webhook.url");
    assert!(e.message.starts_with("must start with https://"), "{e}");
    // A past `at` is fine when loading from storage.
    assert!(JobSpec::from_json(&spec_json(json!({"at": "2020-01-01T00:00:00Z"})), None).is_ok());
    // `null` is the same as absent.
    let s = JobSpec::from_json(
        &json!({"name": "x", "trigger": {"every": "1m", "end": null}, "action": hook(),
                "jitter": null, "metadata": null}),
        Some(ts(NOW)),
    )
    .unwrap();
    assert_eq!(s.jitter, Duration::ZERO);
}

#[test]
fn patched_merges_like_rfc_7386() {
    let s = JobSpec::from_json(
        &json!({
            "name": "raid",
            "trigger": {"every": "1h", "start": "2026-01-01T00:00:00Z"},
            "action": {"webhook": {"url": "https://a.example/h", "headers": {"X-Keep": "1", "X-Drop": "2"},
                                   "body": {"content": "hi", "tts": false}}},
            "metadata": {"a": 1, "b": 2}
        }),
        Some(ts(NOW)),
    )
    .unwrap();

    // Scalars replace, objects merge, null deletes; untouched fields stay.
    let p = s
        .patched(
            &json!({"name": "raid 2", "metadata": {"a": null, "c": 3},
                    "action": {"webhook": {"headers": {"x-drop": null, "X-New": "3"},
                                           "body": {"tts": null}}},
                    "trigger": {"every": "2h"}}),
            Some(ts(NOW)),
        )
        .unwrap();
    assert_eq!(p.name, "raid 2");
    assert_eq!(p.metadata, *json!({"b": 2, "c": 3}).as_object().unwrap());
    let Action::Webhook(w) = &p.action else {
        panic!("webhook expected")
    };
    let names: Vec<&str> = w.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-keep", "x-new"]);
    assert_eq!(
        w.body.as_ref().map(JsonBody::to_value),
        Some(json!({"content": "hi"}))
    );
    assert_eq!(
        p.trigger,
        Trigger::Every {
            interval: Duration::from_secs(7200),
            start: ts("2026-01-01T00:00:00Z"),
            end: None
        }
    );
    assert_eq!(p.retry, s.retry);

    // Naming another trigger kind replaces the trigger.
    let p = s
        .patched(&json!({"trigger": {"cron": "0 9 * * MON"}}), Some(ts(NOW)))
        .unwrap();
    assert_eq!(p.trigger, cron("0 9 * * MON", "UTC"));

    // Errors name the field, unknown fields included.
    assert_eq!(
        s.patched(&json!({"trigger": {"cron": "bad"}}), Some(ts(NOW)))
            .unwrap_err()
            .field,
        "trigger.cron"
    );
    assert_eq!(
        s.patched(&json!({"retry": {"tries": 2}}), None)
            .unwrap_err()
            .field,
        "retry.tries"
    );
    assert_eq!(s.patched(&json!("x"), None).unwrap_err().field, "");

    // A past `at` blocks only a patch that touches the trigger.
    let past = JobSpec::from_json(&spec_json(json!({"at": "2026-01-01T00:00:00Z"})), None).unwrap();
    assert_eq!(
        past.patched(&json!({"name": "renamed"}), Some(ts(NOW)))
            .unwrap()
            .name,
        "renamed"
    );
    assert_eq!(
        past.patched(
            &json!({"trigger": {"at": "2026-02-01T00:00:00Z"}}),
            Some(ts(NOW))
        )
        .unwrap_err()
        .field,
        "trigger.at"
    );
}

/// Found by the `job_spec` fuzzer (corpus `regress-non-ascii-header-value`): a header value
/// with non-ASCII characters was accepted, then stored by `to_json` as `""`, silently.
#[test]
fn non_ascii_header_values_are_refused_not_stored_empty() {
    for value in ["Bearer s\u{35E}ret", "caf\u{e9}", "\u{1F511}"] {
        let mut v = spec_json(json!({"every": "1h"}));
        v["action"]["webhook"]["headers"] = json!({"Authorization": value});
        let e = err(v, Some(NOW));
        assert_eq!(e.field, "action.webhook.headers.Authorization", "{value}");
        assert!(e.message.contains("visible ASCII"), "{e}");
    }
    let mut v = spec_json(json!({"every": "1h"}));
    v["action"]["webhook"]["headers"] = json!({"X-Tab": "a\tb", "X-Text": "Bot s3cr3t ~!"});
    let spec = JobSpec::from_json(&v, Some(ts(NOW))).unwrap();
    assert_eq!(JobSpec::from_json(&spec.to_json(), None).unwrap(), spec);
}

#[test]
fn redacted_json_hides_tokens_and_secret_headers() {
    let s = JobSpec::from_json(
        &json!({
            "name": "raid",
            "trigger": {"every": "1h"},
            "action": {"webhook": {
                "url": "https://discord.com/api/webhooks/123456789/AbC-tok_en?wait=true",
                "headers": {"Authorization": "Bot s3cr3t", "X-Api-Key": "k", "X-Trace": "t"}
            }}
        }),
        Some(ts(NOW)),
    )
    .unwrap();
    let r = s.redacted_json();
    assert_eq!(
        r["action"]["webhook"]["url"],
        json!("https://discord.com/api/webhooks/123456789/***?***")
    );
    assert_eq!(
        r["action"]["webhook"]["headers"],
        json!({"authorization": "***", "x-api-key": "***", "x-trace": "t"})
    );
    let text = r.to_string();
    assert!(
        !text.contains("tok_en") && !text.contains("s3cr3t"),
        "{text}"
    );
    assert_eq!(r["name"], json!("raid"));

    let url = |u: &str| {
        let mut v = spec_json(json!({"every": "1h"}));
        v["action"]["webhook"]["url"] = json!(u);
        JobSpec::from_json(&v, Some(ts(NOW)))
            .unwrap()
            .redacted_json()["action"]["webhook"]["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        url("https://hooks.slack.com/services/T0/B0/XXXX"),
        "https://hooks.slack.com/services/T0/***"
    );
    assert_eq!(
        url("http://10.0.0.2:8080/hook"),
        "http://10.0.0.2:8080/hook"
    );
    assert_eq!(url("https://a.example"), "https://a.example/");
    assert_eq!(
        url("https://discordapp.com/api/v10/webhooks/42/tok"),
        "https://discordapp.com/api/v10/webhooks/42/***"
    );
}

/// A fresh id is the time in milliseconds above 22 random bits: later sorts after earlier
/// whatever the random bits, and the random bits beyond 22 are dropped, not mixed into the time.
#[test]
fn fresh_ids_put_the_time_above_the_random_bits() {
    let t = 1_796_246_746_134u64; // 2026-12-02T21:25:46.134Z
    assert_eq!(JobId::fresh(t, 0).as_u64(), t << 22);
    assert_eq!(JobId::fresh(t, u64::MAX).as_u64(), t << 22 | 0x3f_ffff);
    assert!(JobId::fresh(t, u64::MAX) < JobId::fresh(t + 1, 0));
    assert_eq!(JobId::fresh(t, 0x1234_5678).as_u64() >> 22, t);
    // Good until 2109: the time's 42 bits do not overflow into nothing before then.
    let y2109 = 4_398_046_511_103u64; // 2^42 - 1 ms after 1970
    assert!(JobId::fresh(y2109, 0) > JobId::fresh(t, u64::MAX));
}

#[test]
fn job_id_text_form() {
    let id = JobId::from_u64(0x4d2);
    assert_eq!(id.to_string(), "00000000000004d2");
    assert_eq!("00000000000004d2".parse::<JobId>(), Ok(id));
    assert_eq!(
        "ffffffffffffffff".parse::<JobId>().unwrap().as_u64(),
        u64::MAX
    );
    assert_eq!("4d2".parse::<JobId>(), Err(JobIdError::Length { len: 3 }));
    assert_eq!("00000000000004D2".parse::<JobId>(), Err(JobIdError::NotHex));
    assert_eq!("+000000000000004".parse::<JobId>(), Err(JobIdError::NotHex));
}

#[test]
fn durations() {
    for (s, d) in [
        ("90s", 90_000),
        ("30m", 1_800_000),
        ("2h", 7_200_000),
        ("1h30m", 5_400_000),
        ("1d", 86_400_000),
        ("250ms", 250),
        ("0s", 0),
        ("1h0m5s", 3_605_000),
    ] {
        assert_eq!(parse_duration(s), Ok(Duration::from_millis(d)), "{s}");
    }
    for s in ["", "5 minutes", "5", "m", "1.5h", "-1s", "1H", " 1s", "1s "] {
        assert!(parse_duration(s).is_err(), "{s}");
    }
    assert!(matches!(
        parse_duration("30m1h"),
        Err(DurationError::UnitOrder { .. })
    ));
    assert!(matches!(
        parse_duration("1s1s"),
        Err(DurationError::UnitOrder { .. })
    ));
    assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(format_duration(Duration::from_secs(86_400)), "24h");
    assert_eq!(format_duration(Duration::ZERO), "0s");
    assert_eq!(format_duration(Duration::from_millis(1_250)), "1s250ms");
}

#[test]
fn retry_backoff_doubles_and_is_capped() {
    let r = Retry {
        attempts: 10,
        backoff: Duration::from_secs(10),
    };
    let delays: Vec<u64> = (1..=5).map(|a| r.delay_before(a).as_secs()).collect();
    assert_eq!(delays, [0, 10, 20, 40, 80]);
    assert_eq!(
        r.delay_before(10),
        Duration::from_secs(2560).min(Duration::from_secs(3600))
    );
    let slow = Retry {
        attempts: 10,
        backoff: Duration::from_secs(3600),
    };
    assert_eq!(slow.delay_before(10), Duration::from_secs(3600));
}

// ---- the core --------------------------------------------------------------------------------

const T0: &str = "2026-06-01T00:00:00Z";

fn every(interval: &str, extra: Value) -> Arc<JobSpec> {
    spec_with(
        json!({"every": interval, "start": T0}),
        extra,
        "2026-05-01T00:00:00Z",
    )
}

#[test]
fn core_fires_every_on_time_and_never_early() {
    let mut core = Core::new();
    let t0 = ts(T0);
    core.upsert(
        id(1),
        every("10s", json!({"jitter": "3s"})),
        None,
        ts("2026-05-31T23:59:55Z"),
    );
    core.upsert(
        id(2),
        every("7s", json!({})),
        None,
        ts("2026-05-31T23:59:55Z"),
    );
    let mut fired: Vec<(JobId, Timestamp, Timestamp)> = Vec::new();
    let mut now = ts("2026-05-31T23:59:55Z");
    // Step the virtual clock by 100 ms for two minutes.
    for _ in 0..1_250 {
        now = now
            .checked_add(jiff::SignedDuration::from_millis(100))
            .unwrap();
        if core.poll_timeout().is_some_and(|due| due > now) {
            continue;
        }
        core.handle_timeout(now);
        for f in drain(&mut core) {
            assert_eq!(f.kind, FireKind::Run);
            assert!(f.scheduled_at <= now, "early: {f:?} at {now}");
            fired.push((f.job, f.scheduled_at, now));
            core.handle_finished(f.job);
        }
    }
    let job1: Vec<_> = fired.iter().filter(|f| f.0 == id(1)).collect();
    let job2: Vec<_> = fired.iter().filter(|f| f.0 == id(2)).collect();
    assert_eq!(job1.len(), 12);
    assert_eq!(job2.len(), 18); // 0 s, 7 s, …, 119 s
    for (k, f) in job1.iter().enumerate() {
        assert_eq!(f.1, t0 + secs(10 * k as i64));
        // Jitter delays by less than 3 s (plus the 100 ms step).
        let late = f.2.duration_since(f.1);
        assert!(late < jiff::SignedDuration::from_millis(3_100), "{late:?}");
    }
    // At least one fire was actually jittered.
    assert!(job1
        .iter()
        .any(|f| f.2.duration_since(f.1) > jiff::SignedDuration::from_millis(200)));
    for (k, f) in job2.iter().enumerate() {
        assert_eq!(f.1, t0 + secs(7 * k as i64));
        assert!(f.2.duration_since(f.1) < jiff::SignedDuration::from_millis(100));
    }
}

#[test]
fn core_jitter_is_deterministic_and_within_bounds() {
    let spec = every("1m", json!({"jitter": "30s"}));
    let mut a = Core::new();
    let mut b = Core::new();
    a.upsert(id(9), spec.clone(), None, ts(T0));
    b.upsert(id(9), spec, Some(ts("2026-06-01T00:01:00Z")), ts(T0));
    let due = a.poll_timeout().unwrap();
    assert_eq!(b.poll_timeout(), Some(due));
    assert_eq!(a.next_fire_at(id(9)), Some(ts("2026-06-01T00:01:00Z")));
    let offset = due.duration_since(ts("2026-06-01T00:01:00Z"));
    assert!(offset >= jiff::SignedDuration::ZERO && offset < secs(30));
    // Not due a nanosecond before.
    a.handle_timeout(due - jiff::SignedDuration::from_nanos(1));
    assert_eq!(a.poll_fire(), None);
    a.handle_timeout(due);
    assert_eq!(a.poll_fire().map(|f| f.kind), Some(FireKind::Run));
}

#[test]
fn core_at_and_cron_jobs() {
    let mut core = Core::new();
    let now = ts("2026-03-28T12:00:00Z");
    core.upsert(
        id(1),
        spec_with(
            json!({"at": "2026-03-28T12:00:00.5Z"}),
            json!({}),
            "2026-03-28T12:00:00Z",
        ),
        None,
        now,
    );
    core.upsert(
        id(2),
        spec_with(
            json!({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}),
            json!({}),
            "2026-03-28T12:00:00Z",
        ),
        None,
        now,
    );
    assert_eq!(core.poll_timeout(), Some(ts("2026-03-28T12:00:00.5Z")));
    core.handle_timeout(ts("2026-03-28T12:00:00.499Z"));
    assert!(drain(&mut core).is_empty());
    core.handle_timeout(ts("2026-03-28T12:00:00.5Z"));
    let fires = drain(&mut core);
    assert_eq!(
        fires,
        [Fire {
            job: id(1),
            scheduled_at: ts("2026-03-28T12:00:00.5Z"),
            kind: FireKind::Run
        }]
    );
    // The `at` job is exhausted but still known.
    assert_eq!(core.next_fire_at(id(1)), None);
    assert_eq!(core.len(), 2);
    assert_eq!(core.poll_timeout(), Some(ts("2026-03-29T01:00:00Z")));
    core.handle_timeout(ts("2026-03-29T01:00:00Z"));
    let fires = drain(&mut core);
    assert_eq!(fires.len(), 1);
    assert_eq!(fires[0].scheduled_at, ts("2026-03-29T01:00:00Z"));
    assert_eq!(core.next_fire_at(id(2)), Some(ts("2026-03-30T00:30:00Z")));
}

#[test]
fn core_pause_then_resume_does_not_burst() {
    let mut core = Core::new();
    core.upsert(
        id(1),
        every("1m", json!({"misfire_grace": "1h"})),
        None,
        ts(T0),
    );
    assert_eq!(core.next_fire_at(id(1)), Some(ts("2026-06-01T00:01:00Z")));
    assert!(core.pause(id(1)));
    assert!(core.is_paused(id(1)));
    assert_eq!(core.next_fire_at(id(1)), None);
    assert_eq!(core.poll_timeout(), None);
    core.handle_timeout(ts("2026-06-01T00:30:00Z"));
    assert!(drain(&mut core).is_empty());
    assert!(core.resume(id(1), ts("2026-06-01T00:30:10Z")));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.next_fire_at(id(1)), Some(ts("2026-06-01T00:31:00Z")));
    core.handle_timeout(ts("2026-06-01T00:31:00Z"));
    assert_eq!(drain(&mut core).len(), 1);
    assert!(!core.pause(id(7)));
    assert!(!core.resume(id(7), ts(T0)));
    // A spec stored as paused loads paused.
    core.upsert(
        id(2),
        every("1m", json!({"paused": true})),
        Some(ts("2026-06-01T00:01:00Z")),
        ts(T0),
    );
    assert!(core.is_paused(id(2)));
    assert_eq!(core.next_fire_at(id(2)), None);
}

/// A new or changed spec fires first strictly after the `now` handed in (never at `now`),
/// and `first_fire` is what `upsert` computes, so a job stored with it has nothing to write
/// back.
#[test]
fn core_first_fire_is_strictly_after_now_and_what_upsert_computes() {
    let spec = every("1m", json!({}));
    assert_eq!(
        Core::first_fire(&spec, ts("2026-06-01T00:05:00Z")),
        Some(ts("2026-06-01T00:06:00Z"))
    );
    assert_eq!(
        Core::first_fire(&spec, ts("2026-06-01T00:05:59.999Z")),
        Some(ts("2026-06-01T00:06:00Z"))
    );
    assert_eq!(
        Core::first_fire(&spec, ts("2026-05-01T00:00:00Z")),
        Some(ts(T0))
    );
    assert_eq!(
        Core::first_fire(&every("1m", json!({"paused": true})), ts(T0)),
        None
    );
    let ended = spec_with(
        json!({"every": "1m", "start": T0, "end": "2026-06-01T00:03:00Z"}),
        json!({}),
        "2026-05-01T00:00:00Z",
    );
    assert_eq!(Core::first_fire(&ended, ts("2026-06-01T00:03:00Z")), None);

    let now = ts("2026-06-01T00:05:30Z");
    let mut core = Core::new();
    core.upsert(id(1), spec.clone(), None, now);
    assert_eq!(core.next_fire_at(id(1)), Core::first_fire(&spec, now));
    assert_eq!(core.take_dirty(), [(id(1), Core::first_fire(&spec, now))]);
    core.upsert(id(2), spec.clone(), Core::first_fire(&spec, now), now);
    assert!(core.take_dirty().is_empty());
    assert_eq!(core.poll_timeout(), Some(ts("2026-06-01T00:06:00Z")));
}

/// Resume with catch-up restarts from the pause time: the fires missed while paused are due at
/// once and the misfire rules sort them (older than the grace: missed; the rest run, each
/// without `coalesce`). A plain resume from the same state skips them.
#[test]
fn core_resume_catching_up_replays_from_the_pause_under_the_misfire_rules() {
    let spec = every(
        "1m",
        json!({"misfire_grace": "90s", "coalesce": false, "max_instances": 5}),
    );
    let paused_at = ts("2026-06-01T00:02:30Z");
    let now = ts("2026-06-01T00:06:10Z");
    let paused_core = || {
        let mut core = Core::new();
        core.upsert(id(1), spec.clone(), None, paused_at);
        assert!(core.pause(id(1)));
        core.take_dirty();
        core
    };

    let mut core = paused_core();
    assert!(core.resume_catching_up(id(1), paused_at, now));
    assert!(!core.is_paused(id(1)));
    assert_eq!(core.next_fire_at(id(1)), Some(ts("2026-06-01T00:03:00Z")));
    assert_eq!(core.poll_timeout(), Some(ts("2026-06-01T00:03:00Z")));
    // The driver persists the catch-up point with its next round.
    assert_eq!(
        core.take_dirty(),
        [(id(1), Some(ts("2026-06-01T00:03:00Z")))]
    );
    core.handle_timeout(now);
    let at = |s: &str, kind| Fire {
        job: id(1),
        scheduled_at: ts(s),
        kind,
    };
    // Late before 00:04:40 (now - grace).
    assert_eq!(
        drain(&mut core),
        [
            at("2026-06-01T00:03:00Z", FireKind::Missed),
            at("2026-06-01T00:04:00Z", FireKind::Missed),
            at("2026-06-01T00:05:00Z", FireKind::Run),
            at("2026-06-01T00:06:00Z", FireKind::Run),
        ]
    );
    assert_eq!(core.next_fire_at(id(1)), Some(ts("2026-06-01T00:07:00Z")));

    let mut plain = paused_core();
    assert!(plain.resume(id(1), now));
    plain.handle_timeout(now);
    assert!(drain(&mut plain).is_empty());
    assert_eq!(plain.next_fire_at(id(1)), Some(ts("2026-06-01T00:07:00Z")));

    // Nothing left after the pause time: as a plain resume (no next fire). Unknown jobs and
    // jobs that are not paused are left alone.
    let mut core = Core::new();
    let ended = spec_with(
        json!({"every": "1m", "start": T0, "end": "2026-06-01T00:02:00Z"}),
        json!({}),
        "2026-05-01T00:00:00Z",
    );
    core.upsert(id(2), ended, None, paused_at);
    assert!(core.pause(id(2)));
    assert!(core.resume_catching_up(id(2), paused_at, now));
    assert_eq!(core.next_fire_at(id(2)), None);
    assert!(!core.resume_catching_up(id(7), paused_at, now));
    core.upsert(id(3), spec.clone(), None, now);
    core.take_dirty();
    assert!(core.resume_catching_up(id(3), paused_at, now));
    assert_eq!(core.next_fire_at(id(3)), Some(ts("2026-06-01T00:07:00Z")));
    assert!(core.take_dirty().is_empty());
}

#[test]
fn core_misfire_within_grace_coalesces_or_runs_each() {
    // Persisted next fire 00:01; the host comes back at 00:05:30. Grace 10 m covers all 5 fires.
    let back = ts("2026-06-01T00:05:30Z");
    let mut core = Core::new();
    core.upsert(
        id(1),
        every("1m", json!({"misfire_grace": "10m"})),
        Some(ts("2026-06-01T00:01:00Z")),
        back,
    );
    core.upsert(
        id(2),
        every(
            "1m",
            json!({"misfire_grace": "10m", "coalesce": false, "max_instances": 10}),
        ),
        Some(ts("2026-06-01T00:01:00Z")),
        back,
    );
    assert_eq!(core.poll_timeout(), Some(ts("2026-06-01T00:01:00Z")));
    core.handle_timeout(back);
    let fires = drain(&mut core);
    let one: Vec<_> = fires.iter().filter(|f| f.job == id(1)).collect();
    let two: Vec<_> = fires.iter().filter(|f| f.job == id(2)).collect();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].kind, FireKind::Run);
    assert_eq!(one[0].scheduled_at, ts("2026-06-01T00:01:00Z"));
    assert_eq!(two.len(), 5);
    for (k, f) in two.iter().enumerate() {
        assert_eq!(f.kind, FireKind::Run);
        assert_eq!(
            f.scheduled_at,
            ts("2026-06-01T00:01:00Z") + secs(60 * k as i64)
        );
    }
    assert_eq!(core.running(id(2)), 5);
    // Both resume on the grid after `now`.
    assert_eq!(core.next_fire_at(id(1)), Some(ts("2026-06-01T00:06:00Z")));
    assert_eq!(core.next_fire_at(id(2)), Some(ts("2026-06-01T00:06:00Z")));
    assert_eq!(
        core.take_dirty(),
        [
            (id(1), Some(ts("2026-06-01T00:06:00Z"))),
            (id(2), Some(ts("2026-06-01T00:06:00Z")))
        ]
    );
}

#[test]
fn core_misfire_beyond_grace_is_missed() {
    // Down from 00:00:30 to 00:10:30 with 2 m grace: 00:01 .. 00:08 are missed, 00:09 and
    // 00:10 are within grace and coalesce into one run.
    let mut core = Core::new();
    core.upsert(
        id(1),
        every("1m", json!({"misfire_grace": "2m"})),
        Some(ts("2026-06-01T00:01:00Z")),
        ts("2026-06-01T00:10:30Z"),
    );
    core.handle_timeout(ts("2026-06-01T00:10:30Z"));
    let fires = drain(&mut core);
    let missed: Vec<Timestamp> = fires
        .iter()
        .filter(|f| f.kind == FireKind::Missed)
        .map(|f| f.scheduled_at)
        .collect();
    assert_eq!(missed.len(), 8);
    assert_eq!(missed[0], ts("2026-06-01T00:01:00Z"));
    assert_eq!(missed[7], ts("2026-06-01T00:08:00Z"));
    let runs: Vec<_> = fires.iter().filter(|f| f.kind == FireKind::Run).collect();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].scheduled_at, ts("2026-06-01T00:09:00Z"));
    assert_eq!(fires.len(), 9);

    // An `at` job seen long after its time is missed and exhausted.
    let mut core = Core::new();
    core.upsert(
        id(2),
        spec_with(json!({"at": "2026-06-01T01:00:00Z"}), json!({}), T0),
        Some(ts("2026-06-01T01:00:00Z")),
        ts("2026-06-01T03:00:00Z"),
    );
    core.handle_timeout(ts("2026-06-01T03:00:00Z"));
    assert_eq!(
        drain(&mut core),
        [Fire {
            job: id(2),
            scheduled_at: ts("2026-06-01T01:00:00Z"),
            kind: FireKind::Missed
        }]
    );
    assert_eq!(core.next_fire_at(id(2)), None);
}

#[test]
fn core_long_downtime_is_summarised_not_flooded() {
    // Every second, down for a year, 1 minute grace: 100 listed misses, one summary, one run.
    let mut core = Core::new();
    let back = ts("2027-06-01T00:00:00Z");
    core.upsert(
        id(1),
        every("1s", json!({})),
        Some(ts("2026-06-01T00:00:01Z")),
        back,
    );
    core.handle_timeout(back);
    let fires = drain(&mut core);
    assert_eq!(fires.len(), MAX_LISTED_PER_CALL + 2);
    assert!(fires[..MAX_LISTED_PER_CALL]
        .iter()
        .all(|f| f.kind == FireKind::Missed));
    assert_eq!(
        fires[MAX_LISTED_PER_CALL],
        Fire {
            job: id(1),
            scheduled_at: ts("2026-06-01T00:01:41Z"),
            kind: FireKind::MissedMany {
                through: ts("2027-05-31T23:58:59.999999999Z")
            }
        }
    );
    assert_eq!(
        fires[MAX_LISTED_PER_CALL + 1],
        Fire {
            job: id(1),
            scheduled_at: ts("2027-05-31T23:59:00Z"),
            kind: FireKind::Run
        }
    );
    assert_eq!(core.next_fire_at(id(1)), Some(ts("2027-06-01T00:00:01Z")));

    // Without coalesce, catch-up runs are capped too.
    let mut core = Core::new();
    core.upsert(
        id(2),
        every(
            "1s",
            json!({"coalesce": false, "misfire_grace": "1h", "max_instances": 100}),
        ),
        Some(ts("2027-05-31T23:00:00Z")),
        back,
    );
    core.handle_timeout(back);
    let fires = drain(&mut core);
    assert_eq!(fires.len(), MAX_LISTED_PER_CALL + 1);
    assert!(fires[..MAX_LISTED_PER_CALL]
        .iter()
        .all(|f| f.kind == FireKind::Run));
    assert_eq!(
        fires[MAX_LISTED_PER_CALL],
        Fire {
            job: id(2),
            scheduled_at: ts("2027-05-31T23:01:40Z"),
            kind: FireKind::MissedMany {
                through: ts("2027-06-01T00:00:00Z")
            }
        }
    );
}

#[test]
fn core_max_instances() {
    let mut core = Core::new();
    core.upsert(
        id(1),
        every("1m", json!({"max_instances": 2})),
        None,
        ts(T0),
    );
    let minute = |m: i64| ts(T0) + secs(60 * m);
    let mut kinds = Vec::new();
    for m in 1..=4 {
        core.handle_timeout(minute(m));
        kinds.extend(drain(&mut core).into_iter().map(|f| f.kind));
    }
    assert_eq!(
        kinds,
        [
            FireKind::Run,
            FireKind::Run,
            FireKind::Skipped,
            FireKind::Skipped
        ]
    );
    assert_eq!(core.running(id(1)), 2);
    core.handle_finished(id(1));
    core.handle_timeout(minute(5));
    assert_eq!(drain(&mut core)[0].kind, FireKind::Run);
    // run_now goes through the same limit.
    assert!(!core.run_now(id(1), minute(5)));
    assert!(drain(&mut core).is_empty());
    core.handle_finished(id(1));
    assert!(core.run_now(id(1), minute(5) + secs(1)));
    assert_eq!(
        drain(&mut core),
        [Fire {
            job: id(1),
            scheduled_at: minute(5) + secs(1),
            kind: FireKind::Run
        }]
    );
    assert_eq!(core.running(id(1)), 2);
    // run_now leaves the schedule alone; finished on unknown jobs is ignored.
    assert_eq!(core.next_fire_at(id(1)), Some(minute(6)));
    core.handle_finished(id(99));
    assert!(!core.run_now(id(99), minute(5)));
}

#[test]
fn core_run_now_works_while_paused() {
    let mut core = Core::new();
    core.upsert(id(1), every("1h", json!({"paused": true})), None, ts(T0));
    assert!(core.run_now(id(1), ts(T0)));
    assert_eq!(drain(&mut core).len(), 1);
    assert_eq!(core.poll_timeout(), None);
}

/// The driver's contract in miniature, for `interop_jobs`'
/// `a_restart_neither_repeats_nor_shifts_a_fire`: every round commits its fires together with
/// the next fire times `take_dirty` reports (one transaction), a stop falls between two rounds,
/// and the next life loads what was committed. Whatever the phase of the stop and the length of
/// the downtime, every fire of an every-1s job (no `coalesce`) is run exactly once — none
/// repeated, none lost. Two runs can still start milliseconds apart: the fire missed during the
/// downtime runs late, at the restart, and the next one on time right after it.
#[test]
fn core_restart_at_any_phase_neither_repeats_nor_loses_a_fire() {
    let spec = every(
        "1s",
        json!({"coalesce": false, "max_instances": 5, "misfire_grace": "60s"}),
    );
    let ms = |n: i64| jiff::SignedDuration::from_millis(n);
    let t0 = ts(T0);
    let end = t0 + secs(12);
    // (scheduled, started) of every run, and the persisted next fire.
    let life = |core: &mut Core,
                runs: &mut Vec<(Timestamp, Timestamp)>,
                stored: &mut Option<Timestamp>,
                from: Timestamp,
                until: Timestamp,
                inclusive: bool| {
        let mut now = from;
        loop {
            core.handle_timeout(now);
            for f in drain(core) {
                assert_eq!(f.kind, FireKind::Run, "{f:?}");
                runs.push((f.scheduled_at, now));
                core.handle_finished(f.job);
            }
            for (_, next) in core.take_dirty() {
                *stored = next;
            }
            match core.poll_timeout() {
                Some(due) if due < until || (inclusive && due == until) => now = due.max(now),
                _ => return,
            }
        }
    };
    let mut two_close = false;
    for stop_ms in (5000..6000).step_by(100) {
        for downtime_ms in (0..3000).step_by(100).chain([998, 1698, 1999]) {
            for inclusive in [false, true] {
                let stop = t0 + ms(stop_ms);
                let back = stop + ms(downtime_ms);
                let mut runs = Vec::new();
                let mut core = Core::new();
                core.upsert(id(1), spec.clone(), None, t0);
                let mut stored = core.take_dirty()[0].1;
                life(&mut core, &mut runs, &mut stored, t0, stop, inclusive);
                // Restart: a new core from what was committed.
                let mut core = Core::new();
                core.upsert(id(1), spec.clone(), stored, back);
                assert!(core.take_dirty().is_empty());
                life(&mut core, &mut runs, &mut stored, back, end, true);

                let scheduled: Vec<Timestamp> = runs.iter().map(|r| r.0).collect();
                let grid: Vec<Timestamp> = (1..=12).map(|k| t0 + secs(k)).collect();
                assert_eq!(
                    scheduled, grid,
                    "stop at +{stop_ms} ms, down {downtime_ms} ms: {runs:?}"
                );
                two_close |= runs
                    .windows(2)
                    .any(|w| w[1].1.duration_since(w[0].1) < ms(500) && w[1].0 != w[0].0);
            }
        }
    }
    assert!(
        two_close,
        "a late catch-up run and the next on-time run start close together"
    );

    // The case seen once in interop: stopped at +5.3 s (fire 5 recorded, next 6 stored), back
    // at +6.998 s. Fire 6 runs late at the restart, fire 7 on time 2 ms later.
    let mut runs = Vec::new();
    let mut stored = None;
    let mut core = Core::new();
    core.upsert(id(1), spec.clone(), None, t0);
    life(&mut core, &mut runs, &mut stored, t0, t0 + ms(5300), false);
    assert_eq!(stored, Some(t0 + secs(6)));
    let mut core = Core::new();
    core.upsert(id(1), spec.clone(), stored, t0 + ms(6998));
    life(
        &mut core,
        &mut runs,
        &mut stored,
        t0 + ms(6998),
        t0 + secs(7),
        true,
    );
    assert_eq!(
        runs[runs.len() - 2..],
        [(t0 + secs(6), t0 + ms(6998)), (t0 + secs(7), t0 + secs(7))]
    );
}

#[test]
fn core_restart_uses_persisted_next_fire() {
    // First life: created at 00:00:20 (anchor), fires at 00:01:20, persisted next 00:02:20.
    let created = ts("2026-06-01T00:00:20Z");
    let spec =
        Arc::new(JobSpec::from_json(&spec_json(json!({"every": "1m"})), Some(created)).unwrap());
    let mut core = Core::new();
    core.upsert(id(1), spec.clone(), None, created);
    assert_eq!(
        core.take_dirty(),
        [(id(1), Some(ts("2026-06-01T00:01:20Z")))]
    );
    core.handle_timeout(ts("2026-06-01T00:01:20Z"));
    assert_eq!(drain(&mut core).len(), 1);
    let persisted = core.take_dirty();
    assert_eq!(persisted, [(id(1), Some(ts("2026-06-01T00:02:20Z")))]);
    let stored_json = spec.to_json();

    // Power cut. Second life, 30 s after the persisted fire: it runs late, once.
    let reloaded = Arc::new(JobSpec::from_json(&stored_json, None).unwrap());
    let mut core = Core::new();
    let now = ts("2026-06-01T00:02:50Z");
    core.upsert(id(1), reloaded, persisted[0].1, now);
    assert!(core.take_dirty().is_empty(), "nothing changed yet");
    assert_eq!(core.poll_timeout(), Some(ts("2026-06-01T00:02:20Z")));
    core.handle_timeout(now);
    assert_eq!(
        drain(&mut core),
        [Fire {
            job: id(1),
            scheduled_at: ts("2026-06-01T00:02:20Z"),
            kind: FireKind::Run
        }]
    );
    // The anchor survived: the grid is still :20.
    assert_eq!(
        core.take_dirty(),
        [(id(1), Some(ts("2026-06-01T00:03:20Z")))]
    );
}

#[test]
fn core_upsert_replace_and_remove() {
    let mut core = Core::new();
    core.upsert(id(1), every("1m", json!({})), None, ts(T0));
    core.handle_timeout(ts("2026-06-01T00:01:00Z"));
    assert_eq!(drain(&mut core).len(), 1);
    assert_eq!(core.running(id(1)), 1);
    // Replacing the spec recomputes the next fire and keeps the running count.
    core.upsert(
        id(1),
        every("1h", json!({})),
        None,
        ts("2026-06-01T00:01:30Z"),
    );
    assert_eq!(core.next_fire_at(id(1)), Some(ts("2026-06-01T01:00:00Z")));
    assert_eq!(core.running(id(1)), 1);
    assert_eq!(core.poll_timeout(), Some(ts("2026-06-01T01:00:00Z")));
    // The old schedule's stale heap item does not fire.
    core.handle_timeout(ts("2026-06-01T00:02:00Z"));
    assert!(drain(&mut core).is_empty());
    assert!(core.remove(id(1)));
    assert!(!core.remove(id(1)));
    assert_eq!(core.len(), 0);
    assert!(core.is_empty());
    assert_eq!(core.poll_timeout(), None);
    core.handle_timeout(ts("2026-06-02T00:00:00Z"));
    assert!(drain(&mut core).is_empty());
    assert!(core.take_dirty().is_empty());
}

#[test]
fn core_many_upserts_do_not_grow_the_heap_without_bound() {
    let mut core = Core::new();
    for k in 0..10_000 {
        core.upsert(
            id(1),
            every("1m", json!({})),
            Some(ts(T0) + secs(k)),
            ts(T0),
        );
    }
    assert!(core.heap_len_for_tests() <= 2 + 1024 + 1);
    assert_eq!(core.poll_timeout(), Some(ts(T0) + secs(9_999)));
}

#[test]
fn core_100k_jobs_fire_once_in_order() {
    const N: u64 = 100_000;
    let start = ts(T0);
    let mut core = Core::new();
    let template = spec_with(json!({"at": "2026-06-02T00:00:00Z"}), json!({}), T0);
    for k in 0..N {
        // A permutation of 100k distinct instants, 10 ms apart.
        let at = start + jiff::SignedDuration::from_millis(((k * 7_919) % N) as i64 * 10 + 10);
        let spec = Arc::new(JobSpec {
            trigger: Trigger::At(at),
            ..(*template).clone()
        });
        core.upsert(id(k), spec, None, start);
    }
    assert_eq!(core.len(), N as usize);
    assert_eq!(core.take_dirty().len(), N as usize);
    let mut seen = vec![false; N as usize];
    let mut last = start;
    let mut count = 0;
    // The driver loop under virtual time: jump to each deadline.
    while let Some(due) = core.poll_timeout() {
        assert!(due >= last);
        core.handle_timeout(due);
        while let Some(f) = core.poll_fire() {
            assert_eq!(f.kind, FireKind::Run);
            assert_eq!(f.scheduled_at, due, "fired at its own time");
            assert!(f.scheduled_at >= last);
            last = f.scheduled_at;
            let k = f.job.as_u64() as usize;
            assert!(!seen[k], "job {k} fired twice");
            seen[k] = true;
            count += 1;
        }
    }
    assert_eq!(count, N);
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn handler_actions_parse_round_trip_and_name_the_field() {
    let call = json!({"handler": {"id": "discord-bot", "method": "send_message",
                                  "params": {"channel_id": "1", "content": "hi"}}});
    let v = json!({"name": "hi", "trigger": {"every": "1m"}, "action": call});
    let s = JobSpec::from_json(&v, Some(ts(NOW))).unwrap();
    let Action::Handler(h) = &s.action else {
        panic!("handler expected")
    };
    assert_eq!(
        (h.id.as_str(), h.method.as_str()),
        ("discord-bot", "send_message")
    );
    assert_eq!(h.params["content"], "hi");
    assert_eq!(JobSpec::from_json(&s.to_json(), None).unwrap(), s);
    assert_eq!(
        s.redacted_json(),
        s.to_json(),
        "nothing secret in a handler call"
    );
    // params default to {}.
    let bare = json!({"name": "x", "trigger": {"every": "1m"},
                      "action": {"handler": {"id": "bot", "method": "ping"}}});
    let s = JobSpec::from_json(&bare, Some(ts(NOW))).unwrap();
    assert!(s.action.handler().unwrap().params.is_empty());

    let with_action = |a: Value| json!({"name": "x", "trigger": {"every": "1m"}, "action": a});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"handler": {"method": "ping"}}), "action.handler.id"),
        (
            json!({"handler": {"id": "Bad Name", "method": "ping"}}),
            "action.handler.id",
        ),
        (
            json!({"handler": {"id": 7, "method": "ping"}}),
            "action.handler.id",
        ),
        (json!({"handler": {"id": "bot"}}), "action.handler.method"),
        (
            json!({"handler": {"id": "bot", "method": "no spaces"}}),
            "action.handler.method",
        ),
        (
            json!({"handler": {"id": "bot", "method": "m", "params": [1]}}),
            "action.handler.params",
        ),
        (
            json!({"handler": {"id": "bot", "method": "m", "timeout": 1}}),
            "action.handler.timeout",
        ),
        (
            json!({"handler": {"id": "bot", "method": "m"}, "webhook": {"url": "https://a.example/"}}),
            "action",
        ),
        (json!({}), "action"),
    ];
    for (action, field) in cases {
        let e = err(with_action(action.clone()), Some(NOW));
        assert_eq!(e.field, field, "{action}: {e}");
    }
    assert!(check_method_name("send_message").is_ok());
    assert!(check_method_name("cogs.raid:remind-1").is_ok());
    assert!(check_method_name("").is_err());
    assert!(check_method_name("1st").is_err());
    assert!(check_method_name(&"m".repeat(65)).is_err());
}

#[test]
fn names_that_could_impersonate_others_are_refused() {
    let name = |n: &str| {
        let mut v = spec_json(json!({"every": "1h"}));
        v["name"] = json!(n);
        JobSpec::from_json(&v, Some(ts(NOW)))
    };
    for bad in [
        "raid\u{202E}redner",        // right-to-left override
        "raid\u{2066}x\u{2069}",     // isolates
        "raid\u{200F}",              // right-to-left mark
        "ra\u{200B}id",              // zero-width space
        "ra\u{200D}id",              // zero-width joiner
        "\u{FEFF}raid",              // byte-order mark
        "raid\u{2060}",              // word joiner
        "raid\u{00AD}",              // soft hyphen
        "raid\u{2028}x",             // line separator
        "a\u{0301}\u{0301}\u{0301}", // three stacked combining marks
        "\u{0301}raid",              // a mark with nothing to combine with
        "raid\u{E0041}",             // tag character
    ] {
        let e = name(bad).unwrap_err();
        assert_eq!(e.field, "name", "{bad:?}");
        assert!(e.message.contains("U+"), "{bad:?}: {}", e.message);
    }
    for good in [
        "raid-reminder",
        "Überfall um 20 Uhr",
        "e\u{0301}te\u{0301}", // é written with a combining acute
        "a\u{0308}\u{0301}",   // two marks on one letter
        "レイド 🐉",
        "मराठी", // script vowel signs are not the stacking kind
        "עברית", // right-to-left text itself is fine
    ] {
        assert!(name(good).is_ok(), "{good:?}: {:?}", name(good).err());
    }
}

#[test]
fn an_at_beyond_the_representable_range_is_called_out_of_range() {
    let at = |s: &str| JobSpec::from_json(&spec_json(json!({"at": s})), Some(ts(NOW))).unwrap_err();
    let e = at("9999-12-31T23:59:59Z");
    assert_eq!(e.field, "trigger.at");
    assert!(e.message.contains("out of range"), "{}", e.message);
    assert!(!e.message.contains("must be an RFC 3339"), "{}", e.message);
    // Malformed text still gets the format hint.
    let e = at("next tuesday");
    assert!(e.message.contains("RFC 3339"), "{}", e.message);
    let e = at("2030-01-01T00:00:00");
    assert!(e.message.contains("RFC 3339"), "no offset: {}", e.message);
    // The far but representable future is accepted.
    assert!(JobSpec::from_json(
        &spec_json(json!({"at": "9999-01-01T00:00:00Z"})),
        Some(ts(NOW))
    )
    .is_ok());
}

#[test]
fn viewers_see_scheme_host_and_a_keyed_fingerprint_only() {
    let spec = |url: &str, headers: Value, body: Value| {
        let mut v = spec_json(json!({"every": "1h"}));
        v["action"] = json!({"webhook": {"url": url, "headers": headers, "body": body}});
        JobSpec::from_json(&v, Some(ts(NOW))).unwrap()
    };
    let tg = spec(
        "https://api.telegram.org/bot123456:AAHsecretTOKEN/sendMessage",
        json!({"Content-Type": "application/json", "X-Guild": "raiders", "Authorization": "Bot s3cr3t"}),
        json!({"chat_id": "-100777", "text": "raid"}),
    );
    let v = tg.viewer_json(b"key one");
    let hook = &v["action"]["webhook"];
    assert_eq!(hook["url"], "https://api.telegram.org/***");
    assert_eq!(hook["headers"]["content-type"], "application/json");
    assert_eq!(hook["headers"]["x-guild"], "***");
    assert_eq!(hook["headers"]["authorization"], "***");
    assert_eq!(hook["body"], "***");
    let fp = hook["url_fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fp.len(), 8);
    let text = v.to_string();
    for secret in [
        "AAHsecretTOKEN",
        "bot123456",
        "s3cr3t",
        "raiders",
        "-100777",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(v["name"], "raid-reminder");

    // Same URL, same key: same fingerprint; another key or URL: another.
    assert_eq!(
        tg.viewer_json(b"key one")["action"]["webhook"]["url_fingerprint"],
        fp.as_str()
    );
    assert_ne!(
        tg.viewer_json(b"key two")["action"]["webhook"]["url_fingerprint"],
        fp.as_str()
    );
    let url_of = |u: &str| {
        let v = spec(u, json!({}), Value::Null).viewer_json(b"key one");
        (
            v["action"]["webhook"]["url"].as_str().unwrap().to_string(),
            v["action"]["webhook"]["url_fingerprint"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let (u, f1) = url_of("https://hc-ping.com/0f3c1a2b-8d4e-4f6a-9b7c-123456789abc");
    assert_eq!(u, "https://hc-ping.com/***");
    let (u, f2) = url_of("https://ntfy.sh/guild-raid-alerts-x7");
    assert_eq!(u, "https://ntfy.sh/***");
    assert_ne!(f1, f2);
    assert_eq!(url_of("http://10.0.0.2:8080/").0, "http://10.0.0.2:8080/");
    assert_eq!(url_of("https://a.example/x?y=1").0, "https://a.example/***");
}

/// Viewers see which handler and method a job calls, never its params (they may carry
/// channel ids or tokens, like a webhook body).
#[test]
fn viewers_see_a_handler_call_without_its_params() {
    let mut v = spec_json(json!({"every": "1h"}));
    v["action"] = json!({"handler": {"id": "discord-bot", "method": "send_message",
                                     "params": {"channel_id": "777", "content": "raid"}}});
    let spec = JobSpec::from_json(&v, Some(ts(NOW))).unwrap();
    let seen = spec.viewer_json(b"key one");
    assert_eq!(seen["action"]["handler"]["id"], "discord-bot");
    assert_eq!(seen["action"]["handler"]["method"], "send_message");
    assert_eq!(seen["action"]["handler"]["params"], "***");
    assert!(!seen.to_string().contains("777"), "{seen}");
}

/// `Core::load` leaves the core `upsert` one by one leaves: the same next fires, the same
/// jobs to persist, and the same fires, in the same order, as time passes (jitter, pauses,
/// persisted fires in the past and ones to compute included).
#[test]
fn loading_at_once_is_upserting_one_by_one() {
    let now = ts("2026-06-01T00:00:00Z");
    let jobs: Vec<(JobId, Schedule, Option<Timestamp>)> = (0..200u64)
        .map(|i| {
            let trigger = match i % 4 {
                0 => json!({"every": format!("{}s", 5 + i), "start": "2026-05-31T23:00:00Z"}),
                1 => json!({"cron": "*/2 * * * *", "timezone": "Europe/Berlin"}),
                2 => json!({"at": format!("2026-06-01T00:{:02}:30Z", i % 60)}),
                _ => json!({"every": "1m", "start": "2026-05-01T00:00:00Z"}),
            };
            let extra = json!({
                "paused": i % 7 == 0,
                "jitter": if i % 3 == 0 { "20s" } else { "0s" },
                "coalesce": i % 5 != 0,
            });
            let spec = spec_with(trigger, extra, "2026-05-01T00:00:00Z");
            // Some persisted fires, some long past (misfires), some to be computed.
            let persisted = match i % 3 {
                0 => spec.trigger.next_after(now),
                1 => spec.trigger.next_after(ts("2026-05-31T23:58:00Z")),
                _ => None,
            };
            (id(1000 - i), Schedule::of(&spec), persisted)
        })
        .collect();
    let mut one_by_one = Core::new();
    for (i, s, p) in jobs.clone() {
        one_by_one.upsert(i, s, p, now);
    }
    let mut loaded = Core::load(jobs.clone().into_iter(), now);
    assert_eq!(loaded.len(), one_by_one.len());
    for (i, _, _) in &jobs {
        assert_eq!(loaded.next_fire_at(*i), one_by_one.next_fire_at(*i));
    }
    let mut dirty = (loaded.take_dirty(), one_by_one.take_dirty());
    dirty.0.sort_by_key(|(i, _)| *i);
    dirty.1.sort_by_key(|(i, _)| *i);
    assert!(!dirty.0.is_empty());
    assert_eq!(dirty.0, dirty.1);
    let mut at = now;
    for _ in 0..40 {
        assert_eq!(loaded.poll_timeout(), one_by_one.poll_timeout());
        at = loaded.poll_timeout().unwrap().max(at + secs(7));
        loaded.handle_timeout(at);
        one_by_one.handle_timeout(at);
        assert_eq!(drain(&mut loaded), drain(&mut one_by_one));
    }
}
