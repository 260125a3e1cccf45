//! Where the appliance keeps its files.
//!
//! Layer: driver helper (filesystem). The data directory is `--data-dir`, else the
//! `APPLIANCE_DATA_DIR` environment variable, else `/var/lib/appliance` when running as root
//! (the systemd unit) and `$XDG_DATA_HOME/appliance` (default `~/.local/share/appliance`)
//! otherwise. It is created with mode 0700 and holds `appliance.redb` (mode 0600) and, while
//! serving, the control socket `control.sock` (mode 0600).

use std::fs;
use std::io;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable naming the data directory.
pub const ENV_DATA_DIR: &str = "APPLIANCE_DATA_DIR";

/// The resolved data directory and the files in it.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
    source: &'static str,
}

impl DataDir {
    /// Resolves the directory from the flag, the environment, or the default.
    pub fn resolve(flag: Option<PathBuf>) -> DataDir {
        if let Some(root) = flag {
            return DataDir {
                root,
                source: "--data-dir",
            };
        }
        if let Some(root) = std::env::var_os(ENV_DATA_DIR).filter(|v| !v.is_empty()) {
            return DataDir {
                root: PathBuf::from(root),
                source: "the APPLIANCE_DATA_DIR environment variable",
            };
        }
        DataDir {
            root: default_dir(),
            source: "the default, as neither --data-dir nor APPLIANCE_DATA_DIR is set",
        }
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where [`DataDir::root`] came from, for messages: `--data-dir`, the environment
    /// variable, or the default.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The redb database file.
    pub fn database(&self) -> PathBuf {
        self.root.join("appliance.redb")
    }

    /// The Unix socket the CLI talks to a running server through.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// Creates the directory (mode 0700) if missing, and tightens an existing one. Only `init`
    /// and `serve` call this (through `server::create`).
    pub fn ensure(&self) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
    }

    /// Makes the database file readable by its owner only.
    pub fn protect_database(&self) -> io::Result<()> {
        let db = self.database();
        if db.exists() {
            fs::set_permissions(db, fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }
}

fn default_dir() -> PathBuf {
    // SAFETY-free check: root's uid is 0; read it without libc.
    let is_root = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/appliance");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("appliance");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/appliance"),
        None => PathBuf::from("appliance-data"),
    }
}

/// This machine's host name, the default `Endpoint` for client configs.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Probes the host for `appliance status`: free space on the file system holding `dir`, and
/// whether the kernel considers the clock synchronised (`adjtimex` reports `TIME_ERROR` while
/// no NTP daemon has disciplined it). Each is `None` when the host cannot tell.
pub fn host_checks(dir: &Path) -> crate::status::HostChecks {
    crate::status::HostChecks {
        disk_free: disk_free(dir),
        clock_synced: clock_synced(),
    }
}

/// Free fraction of the file system holding `dir` (`statvfs`), if known.
pub fn disk_free(dir: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a valid, writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    Some(st.f_bavail as f64 / st.f_blocks as f64)
}

/// Whether the kernel considers the clock synchronised (`adjtimex`), if it can tell. Not for
/// `serve`: the systemd unit's SystemCallFilter leaves out `@clock`.
pub fn clock_synced() -> Option<bool> {
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `modes == 0` only reads the kernel's clock state into `tx`.
    let state = unsafe { libc::adjtimex(&mut tx) };
    match state {
        -1 => None,
        libc::TIME_ERROR => Some(false),
        _ => Some(true),
    }
}

/// A file holding secrets (a client config, its QR image): written to a fresh 0600 temporary
/// file beside its destination and renamed over it, so an existing file's looser mode never
/// applies and a failure leaves nothing half-written. Dropped unfinished, the temporary file is
/// removed.
pub struct PrivateFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<fs::File>,
}

impl PrivateFile {
    /// Creates the temporary file now, so an unwritable destination fails before anything
    /// else changes. The error is a sentence naming the path.
    pub fn prepare(dest: &Path) -> Result<PrivateFile, String> {
        if dest.is_dir() {
            return Err(format!("{} is a directory", dest.display()));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| format!("{} does not name a file", dest.display()))?;
        let dir = dest
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(format!("directory {} does not exist", dir.display()));
        }
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        Ok(PrivateFile {
            dest: dest.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// Where the file ends up.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Writes `data`, syncs it and renames the file into place.
    pub fn finish(mut self, data: &[u8]) -> io::Result<()> {
        let mut f = self.file.take().expect("finished once");
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&self.tmp, &self.dest)
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
