//! Times an admin types on the command line (`--since`): the one parser for every CLI flag that
//! takes a time.
//!
//! Accepted: an RFC 3339 time (`2026-11-30T18:00:00Z`), a date and time without an offset
//! (`2026-11-30 18:00`, this machine's time zone), a date (`2026-11-30`, its start in this
//! machine's time zone), a time ago (`90s`, `30m`, `1h`, `2d`, `1w`), `today`, `yesterday`,
//! and Unix seconds (as `GET /api/v1/audit?since=` takes them). Pure: `now` and the zone are
//! passed in.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// What [`parse`] accepts, for its error and the flags' help.
pub const ACCEPTED: &str = "an RFC 3339 time (2026-11-30T18:00:00Z), a date (2026-11-30) or \
     date and time (2026-11-30 18:00) in this machine's time zone, a time ago (30m, 1h, 2d, 1w), \
     today, yesterday, or Unix seconds";

/// `text`, given to `flag`, as Unix milliseconds (a time before 1970 as 0). The error names
/// the flag, what was given and every accepted form.
pub fn parse(flag: &str, text: &str, now: Timestamp, tz: &TimeZone) -> Result<u64, String> {
    let t = text.trim();
    let refuse = || format!("invalid {flag} '{text}': give {ACCEPTED}");
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return appliance::api::parse_since(t).map_err(|e| format!("invalid {flag}: {e}"));
    }
    let at = match t.to_ascii_lowercase().as_str() {
        "today" => start_of(now.to_zoned(tz.clone()).date(), tz),
        "yesterday" => {
            (now.to_zoned(tz.clone()).date().yesterday().ok()).and_then(|d| start_of(d, tz))
        }
        lower => ago(lower, now)
            .or_else(|| t.parse::<Timestamp>().ok())
            // A date and time before a date: jiff reads the date of "2026-11-30 18:00" too.
            .or_else(|| {
                let dt = t.parse::<DateTime>().ok()?;
                dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
            })
            .or_else(|| t.parse::<Date>().ok().and_then(|d| start_of(d, tz))),
    };
    at.map(|t| t.as_millisecond().max(0) as u64)
        .ok_or_else(refuse)
}

fn start_of(d: Date, tz: &TimeZone) -> Option<Timestamp> {
    d.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

/// `30m`, `1h`, `2d`: that long before `now` (`None` for anything else, or beyond the calendar).
fn ago(text: &str, now: Timestamp) -> Option<Timestamp> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit_s: i64 = match unit.trim_start() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    let secs = n.checked_mul(unit_s)?;
    now.checked_sub(jiff::SignedDuration::from_secs(secs)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Result<u64, String> {
        // 2026-12-02 15:30 UTC, read in Berlin (UTC+1).
        let now: Timestamp = "2026-12-02T15:30:00Z".parse().unwrap();
        parse(
            "--since",
            text,
            now,
            &TimeZone::get("Europe/Berlin").unwrap(),
        )
    }

    fn ms(rfc3339: &str) -> u64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    #[test]
    fn what_an_admin_types_is_a_time() {
        assert_eq!(at("2026-11-30T18:00:00Z"), Ok(ms("2026-11-30T18:00:00Z")));
        assert_eq!(
            at("2026-11-30"),
            Ok(ms("2026-11-29T23:00:00Z")),
            "Berlin's midnight"
        );
        assert_eq!(at("2026-11-30 18:00"), Ok(ms("2026-11-30T17:00:00Z")));
        assert_eq!(at("30m"), Ok(ms("2026-12-02T15:00:00Z")));
        assert_eq!(at("1h"), Ok(ms("2026-12-02T14:30:00Z")));
        assert_eq!(at("2d"), Ok(ms("2026-11-30T15:30:00Z")));
        assert_eq!(at("1w"), Ok(ms("2026-11-25T15:30:00Z")));
        assert_eq!(at("90s"), Ok(ms("2026-12-02T15:28:30Z")));
        assert_eq!(at("today"), Ok(ms("2026-12-01T23:00:00Z")));
        assert_eq!(at("Yesterday"), Ok(ms("2026-11-30T23:00:00Z")));
        assert_eq!(at("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(at("1969-12-31"), Ok(0), "before 1970 is 0");
    }

    #[test]
    fn anything_else_names_the_flag_and_every_accepted_form() {
        for bad in [
            "",
            "soon",
            "yesterday-ish",
            "3 fortnights",
            "30x",
            "2026-13-01",
            "-1h",
        ] {
            assert_eq!(
                at(bad),
                Err(format!("invalid --since '{bad}': give {ACCEPTED}"))
            );
        }
        // Beyond the calendar: refused, never wrapped.
        assert!(at("99999999999999d").is_err());
        assert!(at("18446744073709552")
            .unwrap_err()
            .contains("out of range"));
    }
}
