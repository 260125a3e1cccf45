//! Helpers shared by the tests that drive real tools (wg-quick, wireguard-go, zbarimg).

#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // test helper: unique temp names from the clock

use std::path::{Path, PathBuf};

/// Whether `program` is an executable file on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Whether this run is CI, where a missing prerequisite is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Reports a prerequisite that is not met: panics under `CI=true`, otherwise prints a note so
/// the caller can return early.
pub fn missing(what: &str, check: &str) {
    if in_ci() {
        panic!("{what}, but CI=true: install it (scripts/test.sh does) so {check} runs");
    }
    eprintln!("note: {what}; skipping {check}");
}

/// `true` if `program` is on PATH; otherwise see [`missing`].
pub fn require(program: &str, check: &str) -> bool {
    let found = on_path(program);
    if !found {
        missing(&format!("{program} is not on PATH"), check);
    }
    found
}

/// A fresh private directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("peers-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Configs hold private keys; keep the directory private, as wg-quick expects.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The half-block characters of the terminal art, colours stripped.
pub fn art_cells(art: &str) -> Vec<Vec<char>> {
    art.lines()
        .map(|l| {
            l.strip_prefix(peers::qr::TERMINAL_COLOURS)
                .and_then(|l| l.strip_suffix(peers::qr::TERMINAL_RESET))
                .expect("coloured line")
                .chars()
                .collect()
        })
        .collect()
}
