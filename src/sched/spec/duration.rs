//! The duration syntax (part of [`super`]): `"90s"`, `"30m"`, `"1h30m"`, `"250ms"`.

use std::time::Duration;

/// Why a duration string was rejected by [`parse_duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("the duration is empty; write e.g. \"90s\", \"30m\", \"2h\" or \"1h30m\"")]
    Empty,
    /// Something other than `<digits><unit>` pairs, e.g. `"5 minutes"` or `"1.5h"`.
    #[error("{found:?} is not a duration; write whole numbers with units d, h, m, s or ms and no spaces, e.g. \"90s\", \"30m\", \"1h30m\"")]
    Syntax {
        /// The string as given.
        found: String,
    },
    /// A unit appears twice or out of order (`"30m1h"`).
    #[error("{found:?} repeats a unit or has them out of order; write larger units first, each once, e.g. \"1h30m\"")]
    UnitOrder {
        /// The string as given.
        found: String,
    },
    /// The value does not fit.
    #[error("{found:?} is too long a duration")]
    Overflow {
        /// The string as given.
        found: String,
    },
}

/// Parses `"90s"`, `"30m"`, `"2h"`, `"1h30m"`, `"1d"`, `"250ms"`: whole numbers, each followed
/// by one of `d h m s ms`, largest unit first, each unit at most once, no spaces.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    const UNITS: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let syntax = || DurationError::Syntax {
        found: s.to_string(),
    };
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u64 = 0;
    let mut last_unit: Option<usize> = None;
    while i < bytes.len() {
        let digits_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start || i - digits_start > 12 {
            return Err(syntax());
        }
        let n: u64 = s[digits_start..i].parse().map_err(|_| syntax())?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let idx = UNITS
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(syntax)?;
        if last_unit.is_some_and(|last| idx <= last) {
            return Err(DurationError::UnitOrder {
                found: s.to_string(),
            });
        }
        last_unit = Some(idx);
        total_ms = n
            .checked_mul(UNITS[idx].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| DurationError::Overflow {
                found: s.to_string(),
            })?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Writes a duration the way [`parse_duration`] reads it, in hours, minutes, seconds and
/// milliseconds (`"1h30m"`, `"90ms"`, `"0s"`); sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}
