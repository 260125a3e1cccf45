//! `appliance backup FILE` and `appliance restore FILE [--force]`.
//!
//! `backup` asks a running server for a snapshot through the control socket (the server holds
//! the database's lock); the server writes it into the data directory — under the systemd
//! unit the only place it may write — and the CLI copies it to FILE as the caller and deletes
//! the staged file. When nothing serves, the CLI opens the database itself. Either way the
//! snapshot is one read transaction ([`appliance::store::Store::backup_to`]). `restore` never
//! runs while a server uses the directory ([`appliance::backups::restore`]).

use std::path::{Path, PathBuf};

use appliance::backups::{self, RestoreDirError};
use appliance::control::{ControlFailure, Request};
use appliance::paths::DataDir;
use appliance::store::{BackupInfo, RestoreError};

use super::{call, fatal, to_value, usage, Failure};

/// Makes `file` absolute (the server's working directory is not the caller's) and checks it
/// can be written: its directory exists and nothing is there yet.
fn destination(file: &Path) -> Result<PathBuf, Failure> {
    let abs = if file.is_absolute() {
        file.to_path_buf()
    } else {
        std::env::current_dir().map_err(fatal)?.join(file)
    };
    if abs.file_name().is_none() || abs.is_dir() {
        return Err(usage(format!(
            "invalid FILE {}: name a file, not a directory",
            file.display()
        )));
    }
    if std::fs::symlink_metadata(&abs).is_ok() {
        return Err(usage(format!(
            "{} already exists; a backup never overwrites a file: choose a new name or move it away",
            abs.display()
        )));
    }
    match abs.parent() {
        Some(dir) if dir.is_dir() => Ok(abs),
        _ => Err(usage(format!(
            "cannot write a backup to {}: its directory does not exist",
            abs.display()
        ))),
    }
}

pub fn cmd_backup(dir: &DataDir, file: &Path) -> Result<(), Failure> {
    let dest = destination(file)?;
    let offline_dest = dest.clone();
    let v = call(dir, Request::Backup, move |store, _| {
        Ok(to_value(
            &store
                .backup_to(&offline_dest)
                .map_err(ControlFailure::from)?,
        ))
    })?;
    let mut info: BackupInfo = serde_json::from_value(v).map_err(fatal)?;
    if backups::is_staged_name(&info.path) {
        // The server wrote it into the data directory (the only place its sandbox may
        // write); copy it out as the caller and delete the staged file whatever happens.
        let staged = dir.root().join(&info.path);
        let copied = backups::copy_private(&staged, &dest);
        let _ = std::fs::remove_file(&staged);
        copied.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => usage(format!(
                "{} already exists; a backup never overwrites a file: choose a new name or move it away",
                dest.display()
            )),
            _ => fatal(format!("cannot write the backup {}: {e}", dest.display())),
        })?;
        info.path = dest.display().to_string();
    }
    println!(
        "backup written to {} ({} bytes, schema version {}): {} peers, {} jobs, {} runs",
        info.path, info.bytes, info.schema_version, info.peers, info.jobs, info.runs
    );
    println!("server public key: {}", info.server_public_key);
    eprintln!(
        "note: the backup holds the server's private key and the peers' preshared keys; it is \
         readable by its owner only (mode 0600): keep it as secret as the data directory."
    );
    Ok(())
}

pub fn cmd_restore(dir: &DataDir, file: &Path, force: bool) -> Result<(), Failure> {
    let out = backups::restore(dir, file, force).map_err(|e| match e {
        RestoreDirError::Serving { .. }
        | RestoreDirError::NotEmpty { .. }
        | RestoreDirError::Restore(RestoreError::Missing { .. })
        | RestoreDirError::Restore(RestoreError::Unusable { .. })
        | RestoreDirError::Restore(RestoreError::Raced { .. }) => usage(e),
        e => fatal(e),
    })?;
    let r = &out.restored;
    let schema = if r.from_version < appliance::store::SCHEMA_VERSION {
        format!(
            "schema version {}, upgraded to {}",
            r.from_version,
            appliance::store::SCHEMA_VERSION
        )
    } else {
        format!("schema version {}", r.from_version)
    };
    println!(
        "restored {} into {} ({schema}): {} peers, {} jobs",
        file.display(),
        dir.root().display(),
        r.peers,
        r.jobs
    );
    println!("server public key: {}", r.server_public_key);
    if let Some(old) = &out.kept_aside {
        println!("the previous database was kept at {}", old.display());
    }
    println!("start it with `appliance serve` (systemd: systemctl start appliance)");
    Ok(())
}
