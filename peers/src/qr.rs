//! QR codes of a client config, for the WireGuard mobile apps' "scan from QR code".
//!
//! Layer: pure rendering. This module owns how text becomes a QR code image — for a terminal
//! (Unicode half blocks, or sextants), as PNG bytes, or as SVG text — and returns the result;
//! it never writes to a terminal or a file. Contract: every renderer uses error-correction
//! level L, the lowest (phones scan a screen or a print, not a damaged label), and fails only
//! with [`QrError::TooLong`]. The PNG and SVG carry the standard 4-module quiet zone; the
//! terminal form a 2-module one ([`TERMINAL_QUIET_ZONE_MODULES`]) drawn in its own background
//! colour, which scanners (zbar, the WireGuard apps) read and which saves two rows.
//!
//! Sizes, for [`crate::ClientConfig::render_compact`]'s text (two or three 44-character
//! keys): the smallest config the apps accept (keys, address, endpoint, allowed IPs; ~199
//! bytes) is version 9, 53 modules, 57 with the terminal margin: 29 rows of half blocks. A
//! usual one (PSK, MTU, keepalive; ~298 bytes) is version 11, 65 modules with the margin: 33
//! rows of half blocks, 22 of sextants. 24 rows of half blocks hold 48 modules, version 6 at
//! most (134 bytes): no config fits an 80×24 terminal in half blocks, and a usual one does
//! in sextants.

use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module side in [`render_png`].
pub const PNG_MODULE_PX: u32 = 8;

/// Modules of light margin around the code, as the QR standard requires.
pub const QUIET_ZONE_MODULES: u32 = 4;

/// Modules of light margin around the terminal form: the code has its own explicit
/// background there, so the terminal's colours around it do not matter.
pub const TERMINAL_QUIET_ZONE_MODULES: usize = 2;

/// The terminal colours: 256-colour palette entries 16 (black) and 231 (white) as foreground
/// and background. Themes recolour the 16 basic colours (a light theme's "black" may be
/// grey, its default foreground dark), never the 6×6×6 cube, so the code is dark on light
/// on every theme and scans the same way everywhere.
pub const TERMINAL_COLOURS: &str = "\x1b[38;5;16;48;5;231m";
/// Resets the colours at the end of every line (so a wrapped or cut line never leaks them).
pub const TERMINAL_RESET: &str = "\x1b[0m";

/// Why text could not be made into a QR code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    /// The text does not fit in the largest QR code (2953 bytes at level L).
    #[error(
        "the text ({len} bytes) is too long for a QR code; share the config as a file instead"
    )]
    TooLong {
        /// Length of the text in bytes.
        len: usize,
    },
}

fn encode(text: &str) -> Result<QrCode, QrError> {
    // With byte-mode data and a free choice of version, running out of room is the only way
    // encoding can fail.
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)
        .map_err(|_| QrError::TooLong { len: text.len() })
}

/// How a terminal character cell carries modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cells {
    /// `▀ ▄ █` and space: 1 module wide, 2 tall. A cell is about twice as tall as wide, so
    /// modules come out square; every terminal font has these.
    HalfBlocks,
    /// The 64 "block sextant" patterns (U+1FB00…U+1FB3B plus `▌ ▐ █` and space): 2 modules
    /// wide, 3 tall, so a code takes two thirds of the rows and half the columns of
    /// [`Cells::HalfBlocks`]. Modules come out 3:4 (scanners read that); it needs a font with
    /// Unicode 13's sextants (most current terminals draw them themselves).
    Sextants,
}

impl Cells {
    /// Modules a cell carries: (wide, tall).
    pub fn modules(self) -> (usize, usize) {
        match self {
            Cells::HalfBlocks => (1, 2),
            Cells::Sextants => (2, 3),
        }
    }

    /// The character for a cell whose modules are dark where `dark[row][column]` is.
    fn glyph(self, dark: [[bool; 2]; 3]) -> char {
        match self {
            Cells::HalfBlocks => match (dark[0][0], dark[1][0]) {
                (true, true) => '\u{2588}',
                (true, false) => '\u{2580}',
                (false, true) => '\u{2584}',
                (false, false) => ' ',
            },
            Cells::Sextants => {
                // Bit 0 top left, 1 top right, 2 middle left, … 5 bottom right: the order of
                // the Unicode block, which leaves out the four patterns that existed before it.
                let n = (0..6).fold(0u32, |n, i| n | (u32::from(dark[i / 2][i % 2]) << i));
                match n {
                    0 => ' ',
                    21 => '\u{258C}',
                    42 => '\u{2590}',
                    63 => '\u{2588}',
                    _ => {
                        let skipped = u32::from(n > 21) + u32::from(n > 42);
                        char::from_u32(0x1FB00 + n - 1 - skipped).expect("in the sextant block")
                    }
                }
            }
        }
    }
}

/// A QR code drawn for a terminal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalQr {
    /// Lines of cells, each wrapped in [`TERMINAL_COLOURS`] … [`TERMINAL_RESET`] and
    /// ending in `\n`.
    pub art: String,
    /// Character cells per line.
    pub columns: usize,
    /// Lines.
    pub rows: usize,
}

impl TerminalQr {
    /// Whether the code fits a terminal of `columns` × `rows` with `other_rows` lines of text
    /// beside it on the screen.
    pub fn fits(&self, columns: usize, rows: usize, other_rows: usize) -> bool {
        self.columns <= columns && self.rows + other_rows <= rows
    }
}

/// The QR code as lines of Unicode block characters in explicit colours.
///
/// Each character cell carries the modules [`Cells`] says. Dark modules are the glyphs, in
/// black foreground, on a white background that also fills the quiet zone: dark-on-light on
/// any terminal theme. Light modules past the quiet zone (the last row or column of cells may
/// hold more than the code) are drawn light too.
pub fn render_terminal(text: &str, cells: Cells) -> Result<TerminalQr, QrError> {
    let code = encode(text)?;
    let width = code.width();
    let colors = code.to_colors();
    let q = TERMINAL_QUIET_ZONE_MODULES;
    let side = width + 2 * q;
    let dark = |x: usize, y: usize| {
        (q..q + width).contains(&x)
            && (q..q + width).contains(&y)
            && colors[(y - q) * width + (x - q)] == Color::Dark
    };
    let (wide, tall) = cells.modules();
    let (columns, rows) = (side.div_ceil(wide), side.div_ceil(tall));
    let mut art = String::with_capacity(rows * (columns * 4 + 32));
    for row in 0..rows {
        art.push_str(TERMINAL_COLOURS);
        for column in 0..columns {
            let mut modules = [[false; 2]; 3];
            for (dy, line) in modules.iter_mut().enumerate().take(tall) {
                for (dx, m) in line.iter_mut().enumerate().take(wide) {
                    *m = dark(column * wide + dx, row * tall + dy);
                }
            }
            art.push(cells.glyph(modules));
        }
        art.push_str(TERMINAL_RESET);
        art.push('\n');
    }
    Ok(TerminalQr { art, columns, rows })
}

/// The QR code as an 8-bit grayscale PNG: black modules on white, [`PNG_MODULE_PX`] pixels per
/// module and a [`QUIET_ZONE_MODULES`]-module white margin on every side.
pub fn render_png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = encode(text)?;
    let modules = u32::try_from(code.width()).unwrap_or(u32::MAX);
    let side_modules = modules + 2 * QUIET_ZONE_MODULES;
    let side = side_modules * PNG_MODULE_PX;
    let colors = code.to_colors();

    let mut pixels = vec![0xFFu8; (side as usize) * (side as usize)];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let i = i as u32;
        let (mx, my) = (
            i % modules + QUIET_ZONE_MODULES,
            i / modules + QUIET_ZONE_MODULES,
        );
        for py in my * PNG_MODULE_PX..(my + 1) * PNG_MODULE_PX {
            let row = (py * side) as usize;
            let start = row + (mx * PNG_MODULE_PX) as usize;
            pixels[start..start + PNG_MODULE_PX as usize].fill(0);
        }
    }

    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    // Encoding into a Vec cannot hit an I/O error, and the header and data sizes agree by
    // construction, so a failure here is a bug, not a condition a user could act on.
    let mut writer = encoder
        .write_header()
        .expect("PNG header for an in-memory grayscale image");
    writer
        .write_image_data(&pixels)
        .expect("PNG data sized to the header");
    writer.finish().expect("PNG trailer for an in-memory image");
    Ok(out)
}

/// The QR code as a standalone SVG document: black modules on a white background, 8 user units
/// per module, quiet zone included.
pub fn render_svg(text: &str) -> Result<String, QrError> {
    let code = encode(text)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "[Interface]\nPrivateKey = ERERERERERERERERERERERERERERERERERERERERERE=\n\
                          Address = 10.88.88.2/32\nMTU = 1420\n\n[Peer]\n\
                          PublicKey = IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n\
                          PresharedKey = MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=\n\
                          Endpoint = vpn.example.org:51820\nAllowedIPs = 10.88.88.0/24\n\
                          PersistentKeepalive = 25\n";

    #[test]
    fn terminal_is_coloured_half_blocks_with_a_two_module_margin() {
        let qr = render_terminal(SAMPLE, Cells::HalfBlocks).unwrap();
        let art = &qr.art;
        assert!(art.ends_with('\n'));
        let code = encode(SAMPLE).unwrap();
        let side = code.width() + 4;
        assert_eq!(qr.columns, side);
        assert_eq!(qr.rows, side.div_ceil(2));
        assert_eq!(art.lines().count(), qr.rows);
        for line in art.lines() {
            let inner = line
                .strip_prefix(TERMINAL_COLOURS)
                .and_then(|l| l.strip_suffix(TERMINAL_RESET))
                .expect("every line carries its own colours and resets them");
            assert!(inner
                .chars()
                .all(|c| matches!(c, ' ' | '\u{2580}' | '\u{2584}' | '\u{2588}')));
            assert_eq!(inner.chars().count(), side);
        }
        // The first row is the quiet zone: light (blank) cells only.
        let first = art.lines().next().unwrap();
        assert!(first[TERMINAL_COLOURS.len()..].starts_with(&" ".repeat(side)));
        assert!(qr.fits(80, 40, 2));
        assert!(!qr.fits(80, qr.rows + 1, 2));
        assert!(!qr.fits(side - 1, 100, 0));
    }

    /// Decodes sextant art back into modules: the inverse of [`Cells::glyph`].
    fn sextant_modules(c: char) -> u32 {
        match c {
            ' ' => 0,
            '\u{258C}' => 21,
            '\u{2590}' => 42,
            '\u{2588}' => 63,
            c => {
                let i = c as u32 - 0x1FB00 + 1;
                // Patterns 21 and 42 have no code point in the block: step over them.
                let n = if i >= 21 { i + 1 } else { i };
                if n >= 42 {
                    n + 1
                } else {
                    n
                }
            }
        }
    }

    #[test]
    fn sextant_glyphs_cover_every_pattern_once() {
        let mut seen = std::collections::HashSet::new();
        for n in 0u32..64 {
            let dark = std::array::from_fn(|r| std::array::from_fn(|c| n >> (2 * r + c) & 1 == 1));
            let g = Cells::Sextants.glyph(dark);
            assert!(seen.insert(g), "pattern {n} drawn as {g:?} twice");
            assert_eq!(sextant_modules(g), n, "{g:?}");
        }
        // Spot checks against the Unicode names: U+1FB00 is SEXTANT-1 (top left), U+1FB3B
        // SEXTANT-23456, U+1FB13 SEXTANT-35 (left column without the top: pattern 20).
        let s = |n: u32| sextant_modules(char::from_u32(n).unwrap());
        assert_eq!((s(0x1FB00), s(0x1FB3B), s(0x1FB13)), (1, 62, 20));
    }

    #[test]
    fn sextants_carry_the_same_modules_in_two_thirds_of_the_rows() {
        let half = render_terminal(SAMPLE, Cells::HalfBlocks).unwrap();
        let sext = render_terminal(SAMPLE, Cells::Sextants).unwrap();
        let side = encode(SAMPLE).unwrap().width() + 2 * TERMINAL_QUIET_ZONE_MODULES;
        assert_eq!(
            (sext.columns, sext.rows),
            (side.div_ceil(2), side.div_ceil(3))
        );
        let grid = |qr: &TerminalQr, cells: Cells| -> Vec<Vec<bool>> {
            let (wide, tall) = cells.modules();
            let mut g = vec![vec![false; qr.columns * wide]; qr.rows * tall];
            for (row, line) in qr.art.lines().enumerate() {
                let inner = &line[TERMINAL_COLOURS.len()..line.len() - TERMINAL_RESET.len()];
                for (column, c) in inner.chars().enumerate() {
                    let n = match cells {
                        Cells::Sextants => sextant_modules(c),
                        Cells::HalfBlocks => match c {
                            '\u{2588}' => 5,
                            '\u{2580}' => 1,
                            '\u{2584}' => 4,
                            _ => 0,
                        },
                    };
                    for i in 0..6 {
                        let (dy, dx) = (i / 2, i % 2);
                        if dx < wide && dy < tall {
                            g[row * tall + dy][column * wide + dx] = n >> i & 1 == 1;
                        }
                    }
                }
            }
            g.truncate(side);
            g.iter_mut().for_each(|r| r.truncate(side));
            g
        };
        let modules = grid(&half, Cells::HalfBlocks);
        assert_eq!(grid(&sext, Cells::Sextants), modules);
        assert!(
            modules[2][2] && !modules[1][1],
            "finder corner inside a light margin"
        );
    }

    #[test]
    fn svg_is_a_document() {
        let svg = render_svg(SAMPLE).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("<svg"));
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn too_long() {
        let text = "x".repeat(3000);
        for cells in [Cells::HalfBlocks, Cells::Sextants] {
            assert_eq!(
                render_terminal(&text, cells),
                Err(QrError::TooLong { len: 3000 })
            );
        }
        assert_eq!(render_png(&text), Err(QrError::TooLong { len: 3000 }));
        assert_eq!(render_svg(&text), Err(QrError::TooLong { len: 3000 }));
        assert_eq!(
            QrError::TooLong { len: 3000 }.to_string(),
            "the text (3000 bytes) is too long for a QR code; share the config as a file instead"
        );
    }
}
