//! QR codes of a client config, for the WireGuard mobile apps' "scan from QR code".
//!
//! Layer: pure rendering. This module owns how text becomes a QR code image — for a terminal
//! (Unicode half blocks), as PNG bytes, or as SVG text — and returns the result; it never writes
//! to a terminal or a file. Contract: every renderer uses error-correction level L (a full
//! config with a preshared key, ~400 bytes, stays near version 13, 69 modules, so the terminal
//! form fits in 80 columns), includes the 4-module quiet zone, and fails only with
//! [`QrError::TooLong`].

use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module side in [`render_png`].
pub const PNG_MODULE_PX: u32 = 8;

/// Modules of light margin around the code, as the QR standard requires.
pub const QUIET_ZONE_MODULES: u32 = 4;

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

/// The QR code as lines of Unicode half blocks (`▀`, `▄`, `█`, space), each ending in `\n`.
///
/// Each character cell carries two modules stacked vertically, so the code looks square in a
/// typical terminal font. Light modules and the quiet zone are drawn as glyphs and dark modules
/// are left blank, so on the usual terminal (light text on a dark background) the code appears
/// dark-on-light, the way phone scanners expect it — the same convention as `qrencode -t utf8`.
pub fn render_terminal(text: &str) -> Result<String, QrError> {
    let code = encode(text)?;
    let art = code
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .module_dimensions(1, 1)
        .build();
    let mut out = String::with_capacity(art.len() + art.len() / 40);
    for line in art.lines() {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
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
    fn terminal_is_half_blocks_and_fits_80_columns() {
        let art = render_terminal(SAMPLE).unwrap();
        assert!(!art.is_empty());
        assert!(art.ends_with('\n'));
        assert!(art
            .chars()
            .all(|c| matches!(c, ' ' | '\u{2580}' | '\u{2584}' | '\u{2588}' | '\n')));
        let widths: Vec<usize> = art.lines().map(|l| l.chars().count()).collect();
        let code = encode(SAMPLE).unwrap();
        let side = code.width() + 8;
        assert!(widths.iter().all(|&w| w == side), "{widths:?}");
        assert!(side <= 80, "{side} columns");
        assert_eq!(widths.len(), side.div_ceil(2));
        // The quiet zone is drawn (light), so the first line is all full blocks.
        assert!(art.lines().next().unwrap().chars().all(|c| c == '\u{2588}'));
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
        assert_eq!(render_terminal(&text), Err(QrError::TooLong { len: 3000 }));
        assert_eq!(render_png(&text), Err(QrError::TooLong { len: 3000 }));
        assert_eq!(render_svg(&text), Err(QrError::TooLong { len: 3000 }));
        assert_eq!(
            QrError::TooLong { len: 3000 }.to_string(),
            "the text (3000 bytes) is too long for a QR code; share the config as a file instead"
        );
    }
}
