//! The QR renderers draw exactly the modules of the QR code for the text: the PNG decodes (with
//! the png crate) to the promised size and pixels, and the terminal art maps back to the same
//! module grid, quiet zone included.

mod common;

use common::art_cells;
use peers::{render_png, render_terminal, Cells};
use qrcode::{Color, EcLevel, QrCode};

const CONFIG: &str = "# appliance peer: alice\n[Interface]\n\
    PrivateKey = ERERERERERERERERERERERERERERERERERERERERERE=\nAddress = 10.88.88.2/32\n\
    DNS = 1.1.1.1, 9.9.9.9\nMTU = 1420\n\n[Peer]\n\
    PublicKey = IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n\
    PresharedKey = MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=\n\
    Endpoint = appliance.crew.example.org:51820\nAllowedIPs = 10.88.88.0/24\n\
    PersistentKeepalive = 25\n";

/// The module grid with the 4-module quiet zone, `true` = dark.
fn expected_modules(text: &str) -> Vec<Vec<bool>> {
    modules_with_margin(text, 4)
}

/// The module grid with a `q`-module quiet zone, `true` = dark.
fn modules_with_margin(text: &str, q: usize) -> Vec<Vec<bool>> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).unwrap();
    let w = code.width();
    let colors = code.to_colors();
    let side = w + 2 * q;
    (0..side)
        .map(|y| {
            (0..side)
                .map(|x| {
                    (q..w + q).contains(&x)
                        && (q..w + q).contains(&y)
                        && colors[(y - q) * w + (x - q)] == Color::Dark
                })
                .collect()
        })
        .collect()
}

#[test]
fn png_has_signature_size_and_modules() {
    let bytes = render_png(CONFIG).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    let decoder = png::Decoder::new(bytes.as_slice());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);

    let modules = expected_modules(CONFIG);
    let side = modules.len() as u32 * 8;
    assert_eq!((info.width, info.height), (side, side));
    assert!(side <= 1024, "{side}px");

    let stride = info.line_size;
    for py in 0..side as usize {
        for px in 0..side as usize {
            let dark = modules[py / 8][px / 8];
            let value = buf[py * stride + px];
            assert_eq!(value, if dark { 0 } else { 255 }, "pixel ({px}, {py})");
        }
    }
}

#[test]
fn terminal_art_maps_back_to_the_modules() {
    let art = render_terminal(CONFIG, Cells::HalfBlocks).unwrap().art;
    let modules = modules_with_margin(CONFIG, peers::qr::TERMINAL_QUIET_ZONE_MODULES);
    let side = modules.len();
    let lines = art_cells(&art);
    assert_eq!(lines.len(), side.div_ceil(2));
    for (row, line) in lines.iter().enumerate() {
        assert_eq!(line.len(), side);
        for (x, ch) in line.iter().enumerate() {
            // A glyph's painted half is dark (black foreground), its blank half light.
            let (top_dark, bottom_dark) = match ch {
                '\u{2588}' => (true, true),
                '\u{2580}' => (true, false),
                '\u{2584}' => (false, true),
                ' ' => (false, false),
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(top_dark, modules[2 * row][x], "({x}, {})", 2 * row);
            if 2 * row + 1 < side {
                assert_eq!(
                    bottom_dark,
                    modules[2 * row + 1][x],
                    "({x}, {})",
                    2 * row + 1
                );
            }
        }
    }
}

#[test]
fn a_full_config_fits_an_80_column_terminal() {
    let qr = render_terminal(CONFIG, Cells::HalfBlocks).unwrap();
    assert!(qr.columns <= 80, "{} columns", qr.columns);
    assert!(art_cells(&qr.art).iter().all(|l| l.len() <= 80));
}
