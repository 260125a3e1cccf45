//! The config on a terminal: the QR code the admin scans from an SSH session, sized for the
//! terminal it lands on.
//!
//! The code comes first and alone (the config text only with `--show-config`, after it), so
//! the code stays on screen. Its size is checked against the terminal (`TIOCGWINSZ`); when
//! it does not fit, the code is still printed (zooming out brings it whole into view) and a
//! sentence says how many rows it needs and offers `--qr-png`.

use std::io::Write;

use super::{fatal, Failure};

/// Lines printed with the code: the heading above it and the hint below it.
const TEXT_ROWS: usize = 2;

/// Prints the code (and the config if asked) to the terminal on stdout.
pub fn print(text: &str, show_config: bool, out: &mut impl Write) -> Result<(), Failure> {
    let qr = peers::render_terminal(text).map_err(fatal)?;
    writeln!(
        out,
        "Scan with the WireGuard app (+, then \"Scan from QR code\"):"
    )
    .map_err(fatal)?;
    out.write_all(qr.art.as_bytes()).map_err(fatal)?;
    if show_config {
        out.write_all(text.as_bytes()).map_err(fatal)?;
    } else {
        writeln!(
            out,
            "(config text: --show-config prints it, --out FILE writes it)"
        )
        .map_err(fatal)?;
    }
    out.flush().map_err(fatal)?;
    if let Some((columns, rows)) = terminal_size() {
        if !qr.fits(columns, rows, TEXT_ROWS) {
            // Two short lines: the note must not wrap on the terminal it talks about.
            eprintln!(
                "note: the QR code needs {} x {} and this terminal has {columns} x {rows}:\n\
                 zoom out (Ctrl -) or enlarge the window, or use --qr-png FILE for an image",
                qr.columns,
                qr.rows + TEXT_ROWS
            );
        }
    }
    Ok(())
}

/// Columns and rows of the terminal on stdout, if it is one that knows its size.
fn terminal_size() -> Option<(usize, usize)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, writable `ws`.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col as usize, ws.ws_row as usize))
}
