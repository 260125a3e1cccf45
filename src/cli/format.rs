//! How the CLI writes for people: dates (with jiff), "2m ago", "1.5 KiB", sentences wrapped
//! at the words and tables cut to the terminal they land on (80 columns when not on one).

/// "just now", "42s ago", "2m ago", "3h ago", "12d ago", "never": at most 8 characters, for
/// table columns.
pub fn ago(unix: Option<u64>, now: u64) -> String {
    let Some(t) = unix else {
        return "never".into();
    };
    let s = now.saturating_sub(t);
    match s {
        0..=9 => "just now".into(),
        10..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// The width tables and wrapped text are made for: the terminal's, on one; 80 columns when
/// stdout is a pipe or a file.
pub fn stdout_columns() -> usize {
    terminal_size(libc::STDOUT_FILENO).map_or(80, |(cols, _)| cols)
}

/// `s` cut to `max` columns, its last one `…` when it was longer, and the columns a string
/// takes on a terminal (the audit wording's, one for both).
pub use appliance::api::audit_text::{cut, width};

/// `label` then `value`, wrapped at its words to `columns`, its further lines indented under
/// the value's start: a `status` field that fits the terminal.
pub fn hang(label: &str, value: &str, columns: usize) -> String {
    let indent = width(label);
    let text = wrap(value, columns.saturating_sub(indent).max(20));
    let pad = format!("\n{}", " ".repeat(indent));
    format!("{label}{}\n", text.replace('\n', &pad))
}

/// A table: `head` and `rows`, each column as wide as its widest cell (in terminal columns), two spaces apart, every
/// line after `indent` spaces. When that is wider than `columns`, the columns in `shrink` (by
/// index, first cut first) are cut with `…`, each down to its header's width at the least.
pub fn table(
    head: &[&str],
    rows: &[Vec<String>],
    shrink: &[usize],
    indent: usize,
    columns: usize,
) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| width(h)).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(width(c));
        }
    }
    let total = |w: &[usize]| indent + w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    for &i in shrink {
        let over = total(&widths).saturating_sub(columns);
        let least = width(head[i]).max(2);
        widths[i] -= over.min(widths[i].saturating_sub(least));
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let s: Vec<String> = cells
            .zip(&widths)
            .map(|(c, &w)| {
                // Padded by columns: `{:<w$}` would count characters.
                let c = cut(c, w);
                let pad = w.saturating_sub(width(&c));
                format!("{c}{}", " ".repeat(pad))
            })
            .collect();
        format!("{}{}\n", " ".repeat(indent), s.join("  ").trim_end())
    };
    let mut out = line(&mut head.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
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

/// Columns and rows of the terminal on `fd` (e.g. `libc::STDOUT_FILENO`), if it is one that
/// knows its size.
pub fn terminal_size(fd: libc::c_int) -> Option<(usize, usize)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, writable `ws`.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col as usize, ws.ws_row as usize))
}

/// `text` with each line broken at spaces so that none is wider than `columns` columns (a
/// word longer than that stays whole on its own line). Lines already short enough, and the
/// line breaks in `text`, are kept as they are.
pub fn wrap(text: &str, columns: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / columns.max(1));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut used = 0;
        for (j, word) in line.split(' ').enumerate() {
            let w = width(word);
            if j > 0 && used + 1 + w > columns {
                out.push('\n');
                used = 0;
            } else if j > 0 {
                out.push(' ');
                used += 1;
            }
            out.push_str(word);
            used += w;
        }
    }
    out
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
        assert_eq!(ago(Some(0), 150), "2m ago");
        assert_eq!(ago(Some(0), 42), "42s ago");
        assert_eq!(ago(Some(0), 3 * 3600 + 5), "3h ago");
        assert_eq!(ago(Some(0), 400 * 86400), "400d ago");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn a_table_too_wide_is_cut_in_the_columns_given() {
        let rows = vec![
            vec![
                "alice".to_string(),
                "[2001:db8::1234:5678]:51820".to_string(),
            ],
            vec!["bob".to_string(), "-".to_string()],
        ];
        assert_eq!(
            table(&["NAME", "ENDPOINT"], &rows, &[1], 0, 80),
            "NAME   ENDPOINT\nalice  [2001:db8::1234:5678]:51820\nbob    -\n"
        );
        assert_eq!(
            table(&["NAME", "ENDPOINT"], &rows, &[1], 2, 20),
            "  NAME   ENDPOINT\n  alice  [2001:db8:…\n  bob    -\n"
        );
        // Never below the header's width: the line stays too wide rather than lose the column.
        assert_eq!(
            table(&["NAME", "ENDPOINT"], &rows, &[1], 0, 5)
                .lines()
                .nth(1),
            Some("alice  [2001:d…")
        );
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abcd", 4), "abcd");
    }

    /// A guild's names carry emoji and CJK, two columns each on a terminal: the table is
    /// measured in columns, so every row's second column starts at the same column and a cut
    /// line fits, never splitting a wide character.
    #[test]
    fn a_table_of_wide_names_stays_straight_and_fits() {
        let rows = vec![
            vec!["🐉dragon-phone".to_string(), "officer".to_string()],
            vec!["公会长".to_string(), "admin".to_string()],
            vec!["bob".to_string(), "viewer".to_string()],
        ];
        let t = table(&["NAME", "ROLE"], &rows, &[0], 0, 80);
        let starts: Vec<usize> = t
            .lines()
            .map(|l| {
                let (before, _) = l.split_at(l.rfind("  ").unwrap() + 2);
                width(before)
            })
            .collect();
        assert_eq!(starts, vec![16, 16, 16, 16], "{t}");
        let narrow = table(&["NAME", "ROLE"], &rows, &[0], 0, 14);
        for l in narrow.lines() {
            assert!(width(l) <= 14, "{l:?} is {} columns", width(l));
        }
        assert_eq!(narrow.lines().nth(1), Some("🐉dr…  officer"));
        assert_eq!(narrow.lines().nth(2), Some("公会…  admin"));
        assert_eq!(cut("公会长", 4), "公…");
        assert_eq!(cut("公会长", 6), "公会长");
        assert_eq!(width("🐉a"), 3);
    }

    #[test]
    fn wrap_breaks_at_spaces_only() {
        assert_eq!(wrap("one two three", 7), "one two\nthree");
        assert_eq!(wrap("short", 80), "short");
        assert_eq!(wrap("a\nb c", 3), "a\nb c");
        assert_eq!(
            wrap("x averyveryverylongword y", 6),
            "x\naveryveryverylongword\ny"
        );
        let long = "error: the QR code needs a 65 x 35 terminal and this one is 80 x 24, so it would scroll off";
        assert!(wrap(long, 40).lines().all(|l| width(l) <= 40));
        assert_eq!(wrap(long, 40).replace('\n', " "), long);
    }
}
