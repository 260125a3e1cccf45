//! Backups of a data directory: restoring one, and the rotated backups `serve` writes.
//!
//! Layer: driver (filesystem and clock). The snapshot itself is [`Store::backup_to`] (one redb
//! read transaction, safe while serving). This module decides where backups go and which old
//! ones to delete ([`plan_prune`], pure), runs `serve --backup-every` ([`run_periodic`]), and
//! fills a data directory from a backup ([`restore`]): refused while a server uses the
//! directory, and refused when it holds anything but `backups/` unless `force`, which first
//! moves the current database aside (never deletes it).
#![allow(clippy::disallowed_methods)] // driver: names backups by the wall clock and sleeps

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::paths::DataDir;
use crate::store::{self, BackupError, BackupInfo, RestoreError, Restored, Store};

/// Subdirectory of the data directory holding rotated backups.
pub const BACKUP_DIR: &str = "backups";
const PREFIX: &str = "appliance-";
const SUFFIX: &str = ".redb";

/// The file name of a rotated backup taken at `now`: `appliance-20261201T221500Z.redb`
/// (sorts by time).
pub fn backup_name(now: Timestamp) -> String {
    format!("{PREFIX}{}{SUFFIX}", now.strftime("%Y%m%dT%H%M%SZ"))
}

fn is_rotated(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(SUFFIX))
        .is_some_and(|stamp| {
            stamp.len() == 16
                && stamp
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'T' || b == b'Z')
        })
}

/// Which of `names` (a directory listing) to delete so that the newest `keep` rotated backups
/// remain. Files that are not rotated backups are never chosen.
pub fn plan_prune(names: &[String], keep: usize) -> Vec<String> {
    let mut ours: Vec<&String> = names.iter().filter(|n| is_rotated(n)).collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    ours.into_iter().take(excess).cloned().collect()
}

/// Backups written by the running server (scheduled or through the control socket), for
/// `GET /metrics`: an alert on an old last success catches a backup job that stopped working.
#[derive(Debug, Default)]
pub struct BackupStats {
    /// Backups written since start.
    pub succeeded: std::sync::atomic::AtomicU64,
    /// Backups that failed since start.
    pub failed: std::sync::atomic::AtomicU64,
    /// Unix seconds of the last successful backup (0: none since start).
    pub last_success_unix: std::sync::atomic::AtomicU64,
}

impl BackupStats {
    /// Counts one backup attempt.
    pub fn record<T, E>(&self, r: &Result<T, E>) {
        use std::sync::atomic::Ordering::Relaxed;
        match r {
            Ok(_) => {
                self.succeeded.fetch_add(1, Relaxed);
                self.last_success_unix
                    .store(Timestamp::now().as_second().max(0) as u64, Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Relaxed);
            }
        }
    }
}

const STAGED_PREFIX: &str = ".backup-";
const STAGED_SUFFIX: &str = ".staged";

/// A fresh name, in the data directory, for a backup the server writes for `appliance backup`
/// (which copies it out and deletes it).
pub fn staged_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{STAGED_PREFIX}{}-{}{STAGED_SUFFIX}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether `name` is a bare staging name from [`staged_name`] (no directory parts).
pub fn is_staged_name(name: &str) -> bool {
    name.starts_with(STAGED_PREFIX)
        && name.ends_with(STAGED_SUFFIX)
        && !name.contains('/')
        && !name.contains("..")
}

/// Deletes staged backups a CLI never collected (it died mid-copy). Called at `serve` start.
pub fn remove_stale_staged(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if is_staged_name(&name) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::info!(file = %name, "stale staged backup removed"),
                Err(err) => {
                    tracing::warn!(file = %name, error = %err, "cannot remove a stale staged backup")
                }
            }
        }
    }
}

/// Copies `src` to `dest` for the caller: a new file created 0600 beside `dest`, fsynced, and
/// hard-linked into place, so an existing `dest` is never overwritten and a failure leaves
/// nothing at `dest`. Returns the bytes copied.
pub fn copy_private(src: &Path, dest: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let tmp = dest.with_file_name(format!(".{name}.{}.copying", std::process::id()));
    let copied = (|| {
        let mut from = std::fs::File::open(src)?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let n = std::io::copy(&mut from, &mut to)?;
        to.sync_all()?;
        std::fs::hard_link(&tmp, dest)?;
        Ok(n)
    })();
    let _ = std::fs::remove_file(&tmp);
    if copied.is_ok() {
        store::sync_dir(dest.parent().unwrap_or(Path::new(".")));
    }
    copied
}

/// Settings of `serve --backup-every D --backup-keep N`.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Time between two scheduled backups.
    pub every: Duration,
    /// How many rotated backups to keep; older ones are deleted.
    pub keep: usize,
}

/// Writes one rotated backup into `data-dir/backups/` (created 0700) and deletes the oldest
/// beyond `keep`. Blocking.
pub fn rotate_once(store: &Store, dir: &DataDir, keep: usize) -> Result<BackupInfo, BackupError> {
    let target = dir.root().join(BACKUP_DIR);
    ensure_private_dir(&target).map_err(|source| BackupError::Write {
        path: target.display().to_string(),
        source,
    })?;
    let mut now = Timestamp::now();
    let mut dest = target.join(backup_name(now));
    // Two backups within a second: wait for the next name rather than overwrite.
    while dest.exists() {
        std::thread::sleep(Duration::from_millis(200));
        now = Timestamp::now();
        dest = target.join(backup_name(now));
    }
    let info = store.backup_to(&dest)?;
    let names: Vec<String> = std::fs::read_dir(&target)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for old in plan_prune(&names, keep) {
        match std::fs::remove_file(target.join(&old)) {
            Ok(()) => tracing::info!(file = %old, "old backup removed"),
            Err(e) => tracing::warn!(file = %old, error = %e, "could not remove an old backup"),
        }
    }
    Ok(info)
}

fn ensure_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// `serve --backup-every`: a backup every `schedule.every` (the first one `every` after
/// start) until `shutdown` turns true.
pub async fn run_periodic(
    store: Arc<Store>,
    dir: DataDir,
    schedule: Schedule,
    stats: Arc<BackupStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next = tokio::time::Instant::now() + schedule.every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
                continue;
            }
        }
        next += schedule.every;
        let (store, dir, keep) = (store.clone(), dir.clone(), schedule.keep);
        let r = tokio::task::spawn_blocking(move || rotate_once(&store, &dir, keep))
            .await
            .expect("backup task does not panic");
        stats.record(&r);
        match r {
            Ok(info) => tracing::info!(
                file = %info.path,
                bytes = info.bytes,
                jobs = info.jobs,
                "backup written"
            ),
            Err(e) => tracing::error!(error = %e, "scheduled backup failed"),
        }
        // After a long stall (suspend), do not write a burst of catch-up backups.
        let now = tokio::time::Instant::now();
        if next < now {
            next = now + schedule.every;
        }
    }
}

/// Why `appliance restore` refused or failed. The data directory is unchanged in every case
/// except [`RestoreDirError::Restore`] after `force` moved the old database aside (it says
/// where).
#[derive(Debug, thiserror::Error)]
pub enum RestoreDirError {
    /// A server answers on the directory's control socket, or holds its database.
    #[error(
        "an appliance is serving {dir}; stop it first (systemctl stop appliance), then restore"
    )]
    Serving {
        /// The data directory a server is using.
        dir: String,
    },
    /// The directory already holds data and `--force` was not given.
    #[error("{dir} is not empty (it holds {entries}); restore fills an empty data directory: pass --force to move the current database aside first")]
    NotEmpty {
        /// The data directory.
        dir: String,
        /// What it holds, listed for the message.
        entries: String,
    },
    /// The directory could not be created or read.
    #[error("cannot use the data directory {dir}: {source}")]
    DataDir {
        /// The data directory.
        dir: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The backup could not be checked or copied.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Moving the current database aside failed.
    #[error("cannot move the current database {path} aside: {source}")]
    KeepAside {
        /// The current database file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Gives `file` the owner of `dir` when they differ: `sudo appliance restore` into the
/// directory of a service that runs as its own user (systemd's `DynamicUser=`, which only
/// re-owns the directory's contents when the directory itself changed hands). Only root can;
/// anyone else gets a warning.
fn match_owner(dir: &Path, file: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::metadata(file)) else {
        return;
    };
    if (d.uid(), d.gid()) == (f.uid(), f.gid()) {
        return;
    }
    if let Err(e) = std::os::unix::fs::chown(file, Some(d.uid()), Some(d.gid())) {
        tracing::warn!(
            file = %file.display(),
            error = %e,
            "cannot give the restored database the data directory's owner; the server may not be able to open it"
        );
    }
}

/// What [`restore`] did.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// What was restored.
    pub restored: Restored,
    /// Where `--force` moved the previous database, if there was one.
    pub kept_aside: Option<PathBuf>,
}

/// Fills `dir` from the backup `file`. See the module docs for the rules.
pub fn restore(dir: &DataDir, file: &Path, force: bool) -> Result<RestoreOutcome, RestoreDirError> {
    let root = dir.root().display().to_string();
    if std::os::unix::net::UnixStream::connect(dir.control_socket()).is_ok() {
        return Err(RestoreDirError::Serving { dir: root });
    }
    let db = dir.database();
    let entries: Vec<String> = match std::fs::read_dir(dir.root()) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != BACKUP_DIR)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(source) => return Err(RestoreDirError::DataDir { dir: root, source }),
    };
    if !entries.is_empty() && !force {
        let mut entries = entries;
        entries.sort();
        return Err(RestoreDirError::NotEmpty {
            dir: root,
            entries: entries.join(", "),
        });
    }
    // redb's lock tells whether a server (without an answering socket yet) holds the file.
    if Store::is_locked(&db) {
        return Err(RestoreDirError::Serving { dir: root });
    }
    dir.ensure().map_err(|source| RestoreDirError::DataDir {
        dir: root.clone(),
        source,
    })?;
    // Check and copy the backup beside the database first; only then touch the old one.
    let staged = dir
        .root()
        .join(format!(".appliance.redb.{}.staged", std::process::id()));
    let _ = std::fs::remove_file(&staged);
    let restored = store::restore_file(file, &staged)?;
    let mut kept_aside = None;
    if std::fs::symlink_metadata(&db).is_ok() {
        let aside = dir.root().join(format!(
            "appliance.redb.before-restore-{}",
            Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        ));
        if let Err(source) = std::fs::rename(&db, &aside) {
            let _ = std::fs::remove_file(&staged);
            return Err(RestoreDirError::KeepAside {
                path: db.display().to_string(),
                source,
            });
        }
        kept_aside = Some(aside);
    }
    std::fs::rename(&staged, &db).map_err(|source| {
        let _ = std::fs::remove_file(&staged);
        RestoreDirError::Restore(RestoreError::Write {
            path: db.display().to_string(),
            source,
        })
    })?;
    store::sync_dir(dir.root());
    match_owner(dir.root(), &db);
    Ok(RestoreOutcome {
        restored,
        kept_aside,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_and_ignores_other_files() {
        let names: Vec<String> = [
            "appliance-20261201T000000Z.redb",
            "appliance-20261203T000000Z.redb",
            "appliance-20261202T000000Z.redb",
            "notes.txt",
            "appliance-manual.redb",
            ".appliance-20261204T000000Z.redb.1.0.partial",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            plan_prune(&names, 2),
            vec!["appliance-20261201T000000Z.redb".to_string()]
        );
        assert_eq!(plan_prune(&names, 5), Vec::<String>::new());
        assert_eq!(plan_prune(&names, 0).len(), 3);
        assert_eq!(
            backup_name("2026-12-01T22:15:00.5Z".parse().unwrap()),
            "appliance-20261201T221500Z.redb"
        );
        assert!(is_rotated(&backup_name(
            "2026-12-01T22:15:00Z".parse().unwrap()
        )));
    }
}
