//! The config on a terminal: the QR code the admin scans from an SSH session, sized for the
//! terminal it lands on.
//!
//! The code carries the config's compact form ([`peers::ClientConfig::render_compact`]) and
//! comes first and alone (the config text only with `--show-config`, after it), so the code
//! stays on screen. Whether it fits the terminal (`TIOCGWINSZ`) is decided by [`plan`] before
//! `peer add`/`rotate` change anything: a code that would scroll off is never printed. When it
//! cannot fit and the admin asked for nothing else to scan or copy (`--qr-png`,
//! `--show-config`), the command refuses (exit 2, nothing changed) and says how many rows it
//! needs and how to get them; with one of those, the code is left out with a note.
//!
//! Sizes (see `peers::qr`): a usual config is QR version 11, 33 rows of half blocks: it needs
//! a 34-row window. No config fits 24 rows in half blocks; `--qr-sextants` draws 2×3 modules
//! per cell, 22 rows, for terminals whose font has Unicode 13's sextants.

use std::io::{IsTerminal, Write};

use appliance::paths::DataDir;
use appliance::peer_ops::PeerAdded;
use peers::{Cells, Endpoint, Ipv4Net, PeerName, Role};

use super::args::ConfigArgs;
use super::format::terminal_size;
use super::peer::{config_for, ClientKeys};
use super::{fatal, usage, Failure};

/// Lines printed with the code: the heading above it and the hint below it.
const TEXT_ROWS: usize = 2;

/// What [`print`] will draw, decided before anything changed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// How to draw the code; `None`: leave it out.
    cells: Option<Cells>,
    /// Said on stderr after the output, when the code was left out.
    note: Option<String>,
}

/// On a terminal, how the QR code will be drawn, decided before `peer add`/`rotate` change
/// anything: from a config at least as long as the one the server will hand out (the longest
/// address and subnet, the endpoint in force). `None` when no code goes to a terminal.
pub(super) fn before_change(
    dir: &DataDir,
    keys: &ClientKeys,
    args: &ConfigArgs,
    unchanged: &str,
    as_image: &str,
) -> Result<Option<Plan>, Failure> {
    if args.out.is_some() || !std::io::stdout().is_terminal() {
        return Ok(None);
    }
    let endpoint = super::endpoint::current(dir)?;
    let longest = PeerAdded {
        name: PeerName::new("x").map_err(fatal)?,
        role: Role::Viewer,
        address: std::net::Ipv4Addr::new(255, 255, 255, 255),
        server_public_key: keys.public,
        endpoint: Endpoint::parse(&endpoint, 1).map_err(fatal)?,
        subnet: Ipv4Net::parse("255.255.255.255/32").map_err(fatal)?,
    };
    let text = appliance::peer_ops::qr_text(&config_for(&longest, keys, args)?);
    let other_way = args.qr_png.is_some() || args.show_config;
    plan(&text, args.qr_sextants, other_way, unchanged, as_image).map(Some)
}

/// Decides how the code for `text` (or a text at least as long) is drawn on the terminal on
/// stdout. `sextants`: `--qr-sextants` was given. `other_way`: the admin also gets the config
/// another way (`--qr-png`, `--show-config`). `unchanged` says what refusing leaves
/// unchanged ("nothing was added"); `as_image` is the command that writes the code as an
/// image instead (`appliance peer add NAME --role ROLE --qr-png NAME.png`): an admin
/// adding the first member has no tunnel, so no dashboard, yet. Refuses, as a usage error, a
/// code that cannot fit when there is no other way.
fn plan(
    text: &str,
    sextants: bool,
    other_way: bool,
    unchanged: &str,
    as_image: &str,
) -> Result<Plan, Failure> {
    let cells = if sextants {
        Cells::Sextants
    } else {
        Cells::HalfBlocks
    };
    let Some((columns, rows)) = terminal_size(libc::STDOUT_FILENO) else {
        // A terminal that does not know its size: draw, as a terminal of unknown size could
        // hold it.
        return Ok(Plan {
            cells: Some(cells),
            note: None,
        });
    };
    decide(text, cells, other_way, unchanged, as_image, columns, rows)
}

fn decide(
    text: &str,
    cells: Cells,
    other_way: bool,
    unchanged: &str,
    as_image: &str,
    columns: usize,
    rows: usize,
) -> Result<Plan, Failure> {
    let qr = peers::render_terminal(text, cells).map_err(fatal)?;
    if qr.fits(columns, rows, TEXT_ROWS) {
        return Ok(Plan {
            cells: Some(cells),
            note: None,
        });
    }
    let (need_c, need_r) = (qr.columns, qr.rows + TEXT_ROWS);
    // Rows the sextant form needs, when it is not what was asked for and would fit.
    let sextant_rows = (cells == Cells::HalfBlocks)
        .then(|| peers::render_terminal(text, Cells::Sextants).ok())
        .flatten()
        .filter(|s| s.fits(columns, rows, TEXT_ROWS))
        .map(|s| s.rows + TEXT_ROWS);
    let size = format!(
        "the QR code needs a {need_c} x {need_r} terminal and this one is {columns} x {rows}"
    );
    if other_way {
        // Short lines: the note must not wrap on the terminal it talks about.
        let mut note = format!(
            "note: {size},\nso it was left out: enlarge the window (or zoom out) next time"
        );
        if let Some(r) = sextant_rows {
            note.push_str(&format!(
                ",\nor use --qr-sextants ({r} rows; needs a font with Unicode block sextants)"
            ));
        }
        return Ok(Plan {
            cells: None,
            note: Some(note),
        });
    }
    let smaller = sextant_rows
        .map(|r| {
            format!(
                ", or draw it {r} rows tall with --qr-sextants (if your terminal's font has \
                 Unicode block sextants)"
            )
        })
        .unwrap_or_default();
    Err(usage(format!(
        "{size}, so it would scroll off the screen ({unchanged}). Enlarge the window (or zoom \
         out, Ctrl -) to at least {need_c} x {need_r} and run this again{smaller}; or write the \
         code as an image to scan from another screen: {as_image} (the config as text: \
         --show-config, or --out FILE)"
    )))
}

/// Prints the code as planned, for the config `text` whose compact form `compact` it carries,
/// and the config if asked.
pub(super) fn print(
    text: &str,
    compact: &str,
    plan: Plan,
    show_config: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    if let Some(cells) = plan.cells {
        let qr = peers::render_terminal(compact, cells).map_err(fatal)?;
        writeln!(
            out,
            "Scan with the WireGuard app (+, then \"Scan from QR code\"):"
        )
        .map_err(fatal)?;
        out.write_all(qr.art.as_bytes()).map_err(fatal)?;
    }
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
    if let Some(note) = plan.note {
        eprintln!("{note}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A usual config's compact form: 298 bytes, QR version 11, 65 modules with the margin.
    const USUAL: &str = "[Interface]\nPrivateKey=ERERERERERERERERERERERERERERERERERERERERERE=\n\
        Address=10.88.88.2/32\nMTU=1420\n[Peer]\nPublicKey=IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n\
        PresharedKey=MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=\nEndpoint=vpn.example.org:51820\n\
        AllowedIPs=10.88.88.0/24\nPersistentKeepalive=25\n";

    /// What a refusal offers instead.
    const IMG: &str = "appliance peer add leader --role admin --qr-png leader.png";

    /// The plan, or a panic with the refusal's sentence (`Failure` has no `Debug`).
    fn ok(r: Result<Plan, Failure>) -> Plan {
        r.unwrap_or_else(|f| panic!("refused: {}", f.message))
    }

    #[test]
    fn half_blocks_need_35_rows_and_sextants_fit_80_by_24() {
        assert_eq!(USUAL.len(), 298);
        let fits = ok(decide(USUAL, Cells::HalfBlocks, false, "x", IMG, 80, 35));
        assert_eq!(fits.cells, Some(Cells::HalfBlocks));
        let fits = ok(decide(USUAL, Cells::Sextants, false, "x", IMG, 80, 24));
        assert_eq!(fits.cells, Some(Cells::Sextants));

        let refused = decide(
            USUAL,
            Cells::HalfBlocks,
            false,
            "nothing was added",
            IMG,
            80,
            24,
        )
        .expect_err("does not fit 80 x 24");
        assert_eq!(refused.code, 2);
        for needle in [
            "the QR code needs a 65 x 35 terminal and this one is 80 x 24",
            "(nothing was added)",
            "at least 65 x 35",
            "24 rows tall with --qr-sextants",
            "an image to scan from another screen: appliance peer add leader --role admin --qr-png leader.png",
        ] {
            assert!(
                refused.message.contains(needle),
                "{needle}: {}",
                refused.message
            );
        }
        // Not the dashboard: whoever adds the first member has no tunnel to reach it.
        assert!(
            !refused.message.contains("dashboard"),
            "{}",
            refused.message
        );
        // Too small even for sextants: no sextant advice.
        let refused = decide(USUAL, Cells::HalfBlocks, false, "x", IMG, 80, 20).unwrap_err();
        assert!(!refused.message.contains("sextants"), "{}", refused.message);

        // With another way to the config, the code is left out with a note instead.
        let left_out = ok(decide(USUAL, Cells::HalfBlocks, true, "x", IMG, 80, 24));
        assert_eq!(left_out.cells, None);
        assert!(left_out
            .note
            .expect("a note")
            .starts_with("note: the QR code needs a 65 x 35 terminal"));
        let note = ok(decide(USUAL, Cells::HalfBlocks, true, "x", IMG, 80, 24))
            .note
            .expect("a note");
        assert!(note.lines().all(|l| l.len() <= 80), "{note}");
        assert!(note.contains("--qr-sextants (24 rows"), "{note}");
    }
}
