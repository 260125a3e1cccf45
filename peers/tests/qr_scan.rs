//! The QR codes scan back to the exact config text with a real decoder (zbarimg, from
//! zbar-tools): the PNG as rendered, and the terminal art as it looks on a terminal of either
//! theme (its explicit colours make both the same).
//!
//! Fails under `CI=true` when zbarimg is missing; elsewhere it is skipped with a note.

mod common;

use std::path::Path;
use std::process::Command;

use common::{require, TempDir};
use peers::{
    render_png, render_terminal, ClientConfig, Endpoint, PresharedKey, PrivateKey, DEFAULT_MTU,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn config_text() -> String {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    ClientConfig {
        private_key: Some(PrivateKey::generate(&mut rng)),
        address: "10.88.88.23".parse().unwrap(),
        dns: vec!["10.88.88.1".parse().unwrap()],
        mtu: DEFAULT_MTU,
        server_public_key: PrivateKey::generate(&mut rng).public_key(),
        preshared_key: Some(PresharedKey::generate(&mut rng)),
        endpoint: Endpoint::parse("appliance.crew.example.org:51820", 51820).unwrap(),
        allowed_ips: vec!["10.88.88.0/24".parse().unwrap()],
        persistent_keepalive: Some(25),
        name: Some("alice-phone".into()),
    }
    .render()
}

fn scan(path: &Path) -> String {
    let out = Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sbinary"])
        .arg(path)
        .output()
        .expect("run zbarimg");
    assert!(
        out.status.success(),
        "zbarimg found no code in {path:?} ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("zbarimg output is UTF-8")
}

/// zbarimg ends its raw output with a newline of its own (absent in binary mode on some
/// versions); accept either.
fn assert_scans_to(scanned: &str, text: &str) {
    let scanned = if scanned.len() == text.len() + 1 {
        scanned.strip_suffix('\n').unwrap_or(scanned)
    } else {
        scanned
    };
    assert_eq!(scanned, text);
}

fn write_gray_png(path: &Path, width: u32, height: u32, pixels: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(pixels).unwrap();
    w.finish().unwrap();
}

#[test]
fn png_scans_back_to_the_config() {
    if !require("zbarimg", "the QR scan check") {
        return;
    }
    let text = config_text();
    let dir = TempDir::new("qr-png");
    let path = dir.path().join("peer.png");
    std::fs::write(&path, render_png(&text).unwrap()).unwrap();
    assert_scans_to(&scan(&path), &text);
}

/// Paints the terminal art as a terminal whose own background is `theme_bg` shows it: the
/// art's explicit colours (black glyph halves on white) inside, the theme around it. A cell is
/// one module wide and two tall. No `-Stest-inverted`: the code must scan as it is.
fn paint_terminal(text: &str, theme_bg: u8, path: &Path) {
    let art = render_terminal(text, peers::Cells::HalfBlocks).unwrap().art;
    const PX: usize = 6;
    let lines = common::art_cells(&art);
    let cols = lines[0].len();
    let (width, height) = (cols * PX, lines.len() * 2 * PX);
    let margin = 4 * PX;
    let (w, h) = (width + 2 * margin, height + 2 * margin);
    let mut pixels = vec![theme_bg; w * h];
    for (row, line) in lines.iter().enumerate() {
        for (col, ch) in line.iter().enumerate() {
            let (top, bottom) = match ch {
                '\u{2588}' => (true, true),
                '\u{2580}' => (true, false),
                '\u{2584}' => (false, true),
                _ => (false, false),
            };
            for (half, dark) in [(0, top), (1, bottom)] {
                for y in 0..PX {
                    let py = margin + (2 * row + half) * PX + y;
                    let start = py * w + margin + col * PX;
                    pixels[start..start + PX].fill(if dark { 0x00 } else { 0xFF });
                }
            }
        }
    }
    write_gray_png(path, w as u32, h as u32, &pixels);
}

#[test]
fn terminal_art_scans_back_on_dark_and_light_terminals() {
    if !require("zbarimg", "the QR scan check") {
        return;
    }
    let text = config_text();
    let dir = TempDir::new("qr-term");
    for (theme, bg) in [("dark", 0x10), ("light", 0xF0)] {
        let path = dir.path().join(format!("terminal-{theme}.png"));
        paint_terminal(&text, bg, &path);
        assert_scans_to(&scan(&path), &text);
    }
}
