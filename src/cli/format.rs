//! How the CLI writes times and sizes for people: dates (with jiff), "2 min ago", "1.5 KiB".

/// "2 min ago", "never".
pub fn ago(unix: Option<u64>, now: u64) -> String {
    let Some(t) = unix else {
        return "never".into();
    };
    let s = now.saturating_sub(t);
    match s {
        0..=9 => "just now".into(),
        10..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds.
pub fn date(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| format!("{unix} (Unix seconds, beyond the calendar)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations_read_well() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(1_709_208_000), "2024-02-29 12:00 UTC");
        assert_eq!(
            date(1_709_208_059),
            "2024-02-29 12:00 UTC",
            "minutes, not rounded"
        );
        assert_eq!(
            date(u64::MAX),
            "18446744073709551615 (Unix seconds, beyond the calendar)"
        );
        assert_eq!(ago(None, 100), "never");
        assert_eq!(ago(Some(100), 105), "just now");
        assert_eq!(ago(Some(0), 150), "2 min ago");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
