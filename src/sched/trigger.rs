//! Triggers: when a job fires.
//!
//! Layer: pure time arithmetic under [`crate::sched`]; no I/O, no clocks. Owns the three trigger
//! kinds ([`Trigger::At`], [`Trigger::Every`], [`Trigger::Cron`]), the checked cron expression
//! ([`CronExpr`]) and the checked IANA time zone ([`Zone`]). May touch `jiff` and `croner`, nothing
//! else. Contract: [`Trigger::next_after`] returns the first fire strictly after the instant it is
//! given, never a fire before the trigger's `start` or after its `end`, and is a pure function of
//! its arguments.
//!
//! # Time zones and daylight saving time
//!
//! `at` and `every` are absolute: they name instants, and a wall clock change does not move them.
//! `cron` matches wall-clock times in its [`Zone`] (UTC unless the job names one). Each wall-clock
//! time the expression matches becomes exactly one instant:
//!
//! - a time that does not exist (the clock springs forward over it) runs **once, at the first
//!   instant after the gap**: `30 2 * * *` in Europe/Berlin on 2026-03-29 runs at 03:00 CEST
//!   (01:00Z). Several matched times in one gap (`*/15 * * * *`) collapse into that one run, and a
//!   match at the end of the gap (03:00) is the same run, not a second one;
//! - a time that occurs twice (the clock falls back over it) runs **once, at its first
//!   occurrence**: `30 2 * * *` in Europe/Berlin on 2026-10-25 runs at 02:30 CEST (00:30Z) and not
//!   again at 02:30 CET. This holds for every expression, so `*/30 * * * *` does not run during the
//!   repeated hour; use an `every` trigger for a fixed period in absolute time.
//!
//! `croner` itself applies these rules only to "fixed-time" expressions (no wildcard in the
//! second, minute or hour field); for the others it skips times in a gap and runs both
//! occurrences of a repeated time. We therefore use `croner` only to parse expressions and to
//! search wall-clock time (`jiff::civil::DateTime`, which has no gaps or folds), and map matches to
//! instants here, with one rule for every expression.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// When a job fires. Built only by [`crate::sched::JobSpec::from_json`] or by hand from checked
/// parts, so every value is valid: `interval >= 1s`, `end > start` where both are set.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Fires once, at this instant.
    At(Timestamp),
    /// Fires at `start + k * interval` for `k = 0, 1, 2, …`, never after `end`.
    Every {
        /// The period, at least one second.
        interval: Duration,
        /// The anchor of the grid and the earliest fire. The JSON field `start` is optional; when
        /// it is missing, the job's creation time is stored here, so a restart keeps the phase.
        start: Timestamp,
        /// No fire after this instant (a fire exactly at `end` still happens).
        end: Option<Timestamp>,
    },
    /// Fires at the wall-clock times matched by `expr` in `zone`; see the module docs for DST.
    Cron {
        /// The checked expression.
        expr: CronExpr,
        /// The zone whose wall clock `expr` is matched against.
        zone: Zone,
        /// No fire before this instant.
        start: Option<Timestamp>,
        /// No fire after this instant (a fire exactly at `end` still happens).
        end: Option<Timestamp>,
    },
}

impl Trigger {
    /// The first fire time strictly after `after`, or `None` when the trigger is exhausted (an
    /// `at` that is not after `after`, or no fire left before `end`).
    ///
    /// Never returns a time before the trigger's `start` or after its `end`. Pure: the same
    /// arguments always give the same answer.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let next = match self {
            Trigger::At(at) => return (*at > after).then_some(*at),
            Trigger::Every {
                interval, start, ..
            } => every_next_after(*interval, *start, after)?,
            Trigger::Cron {
                expr, zone, start, ..
            } => {
                // Fires at or after `start`: search strictly after the instant just before it.
                let after = match start {
                    Some(start) if *start > after => {
                        start.checked_sub(SignedDuration::from_nanos(1)).ok()?
                    }
                    _ => after,
                };
                cron_next_after(expr, zone.tz(), after)?
            }
        };
        match self.end() {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    /// The trigger's `end`, if it has one. `at` has none (it fires once anyway).
    pub fn end(&self) -> Option<Timestamp> {
        match self {
            Trigger::At(_) => None,
            Trigger::Every { end, .. } | Trigger::Cron { end, .. } => *end,
        }
    }
}

/// `start + k * interval` for the smallest `k >= 0` that lands strictly after `after`.
fn every_next_after(interval: Duration, start: Timestamp, after: Timestamp) -> Option<Timestamp> {
    if after < start {
        return Some(start);
    }
    let step = i128::try_from(interval.as_nanos()).ok()?.max(1);
    let elapsed = after.as_nanosecond() - start.as_nanosecond();
    let k = elapsed / step + 1;
    Timestamp::from_nanosecond(start.as_nanosecond().checked_add(k.checked_mul(step)?)?).ok()
}

/// Bounds the loop in [`cron_next_after`]. Each round either returns or jumps past a whole gap or
/// fold, and transitions are months apart, so two or three rounds are the most ever needed.
const CRON_ROUNDS: usize = 16;

/// The first instant strictly after `after` that a wall-clock match of `expr` in `tz` maps to.
///
/// Matches map to instants monotonically (a gap time maps to the gap's end, a repeated time to
/// its first occurrence), and `after`'s own wall-clock time maps to `after` or earlier, so the
/// answer is the first match after `after`'s wall-clock time whose instant is after `after`.
fn cron_next_after(expr: &CronExpr, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
    let mut cursor = tz.to_datetime(after);
    for _ in 0..CRON_ROUNDS {
        let civil = expr.next_civil_after(cursor)?;
        let (instant, skip_to) = match tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => (offset.to_timestamp(civil).ok()?, None),
            AmbiguousOffset::Gap { after: later, .. } => {
                // Wall times in the gap are [T + before, T + later); they all run at T.
                let transition = next_transition(tz, later.to_timestamp(civil).ok()?)?;
                (transition, Some(later.to_datetime(transition)))
            }
            AmbiguousOffset::Fold { before, .. } => {
                // Wall times in the fold are [T + after, T + before); they run at the earlier one.
                let earlier = before.to_timestamp(civil).ok()?;
                let transition = next_transition(tz, earlier)?;
                (earlier, Some(before.to_datetime(transition)))
            }
        };
        if instant > after {
            return Some(instant);
        }
        // Every later match inside this gap or fold maps to an instant at or before `after` too:
        // resume the search at its end (one second before, as the search is exclusive).
        cursor = match skip_to {
            Some(end) => end
                .checked_sub(SignedDuration::from_secs(1))
                .ok()?
                .max(civil),
            None => civil,
        };
    }
    None
}

/// The first time zone transition strictly after `ts`.
fn next_transition(tz: &TimeZone, ts: Timestamp) -> Option<Timestamp> {
    tz.following(ts).next().map(|t| t.timestamp())
}

/// A checked crontab expression: 5 fields (minute hour day-of-month month day-of-week) or 6 (a
/// seconds field first). Month and day names (`JAN`, `THU`), ranges, steps, lists, `L`, `W`, `#`
/// and the `@daily`-style nicknames are accepted, case-insensitively. Day-of-month and
/// day-of-week combine with OR when both are restricted, as in Vixie cron. The expression is
/// known to match at least one date.
#[derive(Debug, Clone)]
pub struct CronExpr {
    /// Shared by every job with the same expression (see [`CronExpr::parse`]).
    compiled: std::sync::Arc<Compiled>,
}

/// A parsed and checked expression.
#[derive(Debug)]
struct Compiled {
    /// Trimmed, single spaces between fields: the cache key.
    source: String,
    cron: croner::Cron,
}

/// Expressions parsed so far, by normalised source. Entries are weak: an expression no job uses
/// any more is dropped with its last job, and dead entries are swept whenever the map doubles,
/// so the cache never holds more than twice the live expressions.
struct CronCache {
    map: std::collections::HashMap<String, std::sync::Weak<Compiled>>,
    sweep_at: usize,
}

static CRON_CACHE: std::sync::LazyLock<std::sync::Mutex<CronCache>> =
    std::sync::LazyLock::new(|| {
        std::sync::Mutex::new(CronCache {
            map: std::collections::HashMap::new(),
            sweep_at: 64,
        })
    });

impl CronExpr {
    /// Parses and checks an expression. An expression already in use by another job is not
    /// parsed again: a guild's jobs share a few expressions (`0 20 * * *`), and restoring
    /// 100,000 jobs at start-up would otherwise parse and check each one anew.
    pub fn parse(source: &str) -> Result<CronExpr, CronExprError> {
        let source = source.trim();
        if source.is_empty() {
            return Err(CronExprError::Empty);
        }
        let normal = source.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(compiled) = Self::cached(&normal) {
            return Ok(CronExpr { compiled });
        }
        let expr = Self::compile(source, normal)?;
        let mut cache = CRON_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.map.len() >= cache.sweep_at {
            cache.map.retain(|_, w| w.strong_count() > 0);
            cache.sweep_at = (cache.map.len() * 2).max(64);
        }
        let key = expr.compiled.source.clone();
        cache
            .map
            .insert(key, std::sync::Arc::downgrade(&expr.compiled));
        Ok(expr)
    }

    fn cached(normal: &str) -> Option<std::sync::Arc<Compiled>> {
        let cache = CRON_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        cache.map.get(normal).and_then(std::sync::Weak::upgrade)
    }

    fn compile(source: &str, normal: String) -> Result<CronExpr, CronExprError> {
        if !source.starts_with('@') {
            let fields = source.split_whitespace().count();
            if fields != 5 && fields != 6 {
                return Err(CronExprError::FieldCount { found: fields });
            }
        }
        let cron = cron_parser()
            .parse(source)
            .map_err(|e| explain_rejection(source, &e))?;
        let expr = CronExpr {
            compiled: std::sync::Arc::new(Compiled {
                source: normal,
                cron,
            }),
        };
        // A pattern like `0 0 30 2 *` (or `* * * * +`, whose empty day-of-week croner accepts)
        // parses but never matches; croner would then walk day by day to year 5000 on every
        // search (seconds per call). Reject it once, here, with a bounded scan of our own.
        if !expr.is_satisfiable() {
            return Err(CronExprError::NeverMatches);
        }
        Ok(expr)
    }

    /// Whether two values share one parsed expression (for tests of the cache).
    #[cfg(test)]
    pub(crate) fn shares_parse_with(&self, other: &CronExpr) -> bool {
        std::sync::Arc::ptr_eq(&self.compiled, &other.compiled)
    }

    /// Whether some wall-clock time matches. The time-of-day fields are independent of the
    /// date, so they are checked value by value; the date fields repeat with the weekdays every
    /// 28 years from 1901 to 2099, so one scan of [`SATISFIABLE_SCAN_DAYS`] days from 2000-01-01
    /// settles them. A match found there recurs 400 years later on the same weekday, so every
    /// later search by croner finds a match within 400 years too.
    fn is_satisfiable(&self) -> bool {
        let p = &self.compiled.cron.pattern;
        let any = |n: u32, f: &dyn Fn(u32) -> Result<bool, croner::errors::CronError>| {
            (0..n).any(|v| f(v).unwrap_or(false))
        };
        any(60, &|v| p.second_match(v))
            && any(60, &|v| p.minute_match(v))
            && any(24, &|v| p.hour_match(v))
            && self
                .first_matching_date(jiff::civil::date(2000, 1, 1), SATISFIABLE_SCAN_DAYS)
                .is_some()
    }

    /// The first date from `from` on, within `days` days, whose month and day fields match.
    /// Counts the days it examines in [`cron_days_searched`].
    fn first_matching_date(&self, from: jiff::civil::Date, days: u32) -> Option<jiff::civil::Date> {
        let p = &self.compiled.cron.pattern;
        let mut date = from;
        for n in 1..=days {
            let weekday = croner::Weekday::from_days_from_sunday(
                date.weekday().to_sunday_zero_offset() as u32,
            );
            let (y, m, d) = (date.year().into(), date.month() as u32, date.day() as u32);
            let hit =
                p.month_match(m).unwrap_or(false) && p.day_match(y, m, d, weekday).unwrap_or(false);
            if hit || n == days {
                DAYS_SEARCHED.with(|c| c.set(c.get() + u64::from(n)));
                return hit.then_some(date);
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The expression as given (trimmed, single spaces between fields).
    pub fn as_str(&self) -> &str {
        &self.compiled.source
    }

    /// The first matching wall-clock time strictly after `cursor`, to the second. The pattern
    /// is satisfiable (checked by [`CronExpr::parse`]), so croner's walk ends within 400 years
    /// of `cursor`; the calendar days it spans count in [`cron_days_searched`].
    fn next_civil_after(&self, cursor: DateTime) -> Option<DateTime> {
        let found = self.compiled.cron.find_next_occurrence(&cursor, false).ok();
        let end = found.map_or(DateTime::MAX, |f| f);
        let span = cursor
            .date()
            .until((jiff::Unit::Day, end.date()))
            .map_or(i64::MAX, |s| i64::from(s.get_days()));
        DAYS_SEARCHED.with(|c| c.set(c.get().saturating_add(span.unsigned_abs())));
        found
    }
}

/// Days from 2000-01-01 that [`CronExpr::parse`] scans for a matching date: 28 years, one
/// cycle of dates and weekdays.
pub const SATISFIABLE_SCAN_DAYS: u32 = 10_227;

thread_local! {
    static DAYS_SEARCHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Calendar days that cron parsing and searching on this thread have walked so far: the days
/// the satisfiability scan examined plus the span of every croner search (a failed one counts to
/// the end of time). A clock-free measure of work, for the fuzz corpus test to bound per input.
pub fn cron_days_searched() -> u64 {
    DAYS_SEARCHED.with(|c| c.get())
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.compiled.source == other.compiled.source
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.compiled.source)
    }
}

impl FromStr for CronExpr {
    type Err = CronExprError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronExpr::parse(s)
    }
}

/// The parser every expression goes through: 5 fields, or 6 with seconds first; no year.
fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// The fields of an expression in order, each with what it accepts; a 5-field expression has no
/// `second`, a 6-field one starts with it.
const CRON_FIELDS: [(&str, &str); 6] = [
    ("second", "0-59, e.g. 0, 30 or */10"),
    ("minute", "0-59, e.g. 0, 45 or */15"),
    ("hour", "0-23, e.g. 19, 9-17 or */2"),
    (
        "day of month",
        "1-31 or L (the last day), e.g. 1, 15 or 1-7",
    ),
    ("month", "1-12 or JAN-DEC, e.g. 6, JUN or JAN-MAR"),
    (
        "day of week",
        "0-7 or MON-SUN (0 and 7 are Sunday), e.g. 4, THU or MON-FRI",
    ),
];

/// Turns the parser's complaint about `source` (already known to have 5 or 6 fields, or to
/// start with `@`) into a sentence naming the field at fault: each field is parsed on its own,
/// every other one `*`, and the first one the parser refuses is named. Only a combination the
/// parser refuses although each field passes alone keeps the parser's own words.
fn explain_rejection(source: &str, e: &croner::errors::CronError) -> CronExprError {
    if source.starts_with('@') {
        return CronExprError::UnknownShortcut {
            got: source.to_string(),
        };
    }
    let parts: Vec<&str> = source.split_whitespace().collect();
    let names = &CRON_FIELDS[CRON_FIELDS.len().saturating_sub(parts.len())..];
    for (i, (part, (name, accepts))) in parts.iter().zip(names).enumerate() {
        let mut probe = vec!["*"; parts.len()];
        probe[i] = part;
        if cron_parser().parse(&probe.join(" ")).is_err() {
            return CronExprError::Field {
                name,
                position: i + 1,
                accepts,
                got: (*part).to_string(),
            };
        }
    }
    CronExprError::Invalid {
        reason: e.to_string(),
    }
}

/// "1st", "2nd", "3rd", "4th", … (positions of fields: 1 to 6).
fn ordinal(n: &usize) -> String {
    let suffix = match *n {
        1 => "st",
        2 => "nd",
        3 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Why a cron expression was rejected by [`CronExpr::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronExprError {
    /// The string was empty or only whitespace.
    #[error("the cron expression is empty; give 5 fields (minute hour day month weekday), e.g. \"45 19 * * THU\"")]
    Empty,
    /// Not 5 or 6 whitespace-separated fields.
    #[error("a cron expression has 5 fields (minute hour day month weekday) or 6 (seconds first); this one has {found}")]
    FieldCount {
        /// How many fields were found.
        found: usize,
    },
    /// One field is out of range or malformed.
    #[error("the {name} ({} field) must be {accepts}; got \"{got}\"", ordinal(.position))]
    Field {
        /// The field's name: `minute`, `day of week`, …
        name: &'static str,
        /// Its position in the expression, from 1.
        position: usize,
        /// What it accepts, with examples.
        accepts: &'static str,
        /// The text given for it.
        got: String,
    },
    /// An `@` shortcut that does not exist.
    #[error("\"{got}\" is not a shortcut this scheduler knows: use @yearly, @monthly, @weekly, @daily or @hourly, or 5 fields (minute hour day month weekday) such as \"45 19 * * THU\"")]
    UnknownShortcut {
        /// The expression given.
        got: String,
    },
    /// The fields are each valid but the parser refuses them together; `reason` is its
    /// explanation.
    #[error("the cron expression is not valid ({reason}); write 5 fields (minute hour day month weekday) such as \"45 19 * * THU\"")]
    Invalid {
        /// The parser's explanation.
        reason: String,
    },
    /// The expression parses but matches no date (for example the 30th of February).
    #[error("the cron expression never matches a real date (for example the 30th of February); check the day and month fields")]
    NeverMatches,
}

/// A checked IANA time zone, kept with its canonical name (`Europe/Berlin`, `UTC`).
#[derive(Debug, Clone)]
pub struct Zone {
    /// Shared by clones: every job of a guild names one of a few zones.
    name: std::sync::Arc<str>,
    tz: TimeZone,
}

impl Zone {
    /// Looks up an IANA time zone name, case-insensitively. Uses the time zone database bundled
    /// into the binary (and the system one, where present); this is the only place in
    /// `sched` that may read it.
    pub fn get(name: &str) -> Result<Zone, ZoneError> {
        let tz = TimeZone::get(name).map_err(|_| ZoneError::Unknown {
            name: name.to_string(),
        })?;
        let name = tz.iana_name().unwrap_or(name).into();
        Ok(Zone { name, tz })
    }

    /// Coordinated Universal Time, the default zone of a cron trigger.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    /// The canonical IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's rules.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The zone's UTC offset at `ts`.
    pub fn offset_at(&self, ts: Timestamp) -> Offset {
        self.tz.to_offset(ts)
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Why a time zone name was rejected by [`Zone::get`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// The name is not in the IANA time zone database.
    #[error("unknown time zone {name:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    Unknown {
        /// The name as given.
        name: String,
    },
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    /// Jobs with the same expression share one parsed pattern (restoring 100,000 jobs parses
    /// each distinct expression once), spacing does not matter, and the shared value still
    /// answers like a fresh parse.
    #[test]
    fn equal_expressions_share_one_parse() {
        let a = CronExpr::parse("7 3 * * SUN").unwrap();
        let b = CronExpr::parse("  7  3 * *   SUN ").unwrap();
        let c = CronExpr::parse("8 3 * * SUN").unwrap();
        assert!(a.shares_parse_with(&b));
        assert!(!a.shares_parse_with(&c));
        assert_eq!(b.as_str(), "7 3 * * SUN");
        let after = DateTime::constant(2026, 12, 1, 0, 0, 0, 0);
        assert_eq!(
            b.next_civil_after(after),
            Some(DateTime::constant(2026, 12, 6, 3, 7, 0, 0))
        );
        // A rejected expression is not cached as valid.
        assert_eq!(
            CronExpr::parse("0 0 30 2 *").unwrap_err(),
            CronExprError::NeverMatches
        );
        assert_eq!(
            CronExpr::parse("0 0 30 2 *").unwrap_err(),
            CronExprError::NeverMatches
        );
    }
}
