//! Errors of the storage layer (part of [`crate::store`]): opening a file, and every read or
//! write on an open one. redb's errors are classified in exactly one place here.

use super::SCHEMA_VERSION;

/// Failure to open or create the database file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// There is no file at the path (and nothing was created).
    #[error("there is no database at {path}")]
    Missing {
        /// Where the database was looked for.
        path: String,
    },
    /// [`Store::create`](super::Store::create) found a file already there; it is never overwritten.
    #[error("the database {path} already exists; it is never overwritten")]
    Exists {
        /// The file already there.
        path: String,
    },
    /// The file is empty, not a redb database, truncated, or lacks the appliance's schema or
    /// server key. Nothing was written to it.
    #[error("the database {path} is empty or damaged ({len} bytes: {reason}); restore a backup, or move it aside to start over")]
    Damaged {
        /// The file.
        path: String,
        /// Its size in bytes.
        len: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process (normally `appliance serve`) holds the file.
    #[error("the database {path} is in use by another process (is `appliance serve` running?)")]
    Locked {
        /// The file.
        path: String,
    },
    /// The file was written by a newer appliance.
    #[error("the database {path} has schema version {found}, newer than this binary understands ({SCHEMA_VERSION}); upgrade appliance")]
    SchemaTooNew {
        /// The file.
        path: String,
        /// Its schema version.
        found: u32,
    },
    /// The file has an older schema and upgrading it failed; the upgrade is one transaction,
    /// so the file is unchanged.
    #[error("cannot upgrade the database {path} from schema version {from} to {SCHEMA_VERSION} ({reason}); it is unchanged: restore a backup, or run an older appliance")]
    Migration {
        /// The file.
        path: String,
        /// Its schema version.
        from: u32,
        /// Why the upgrade failed.
        reason: String,
    },
    /// redb could not read or create the file.
    #[error("cannot open the database {path}: {source}")]
    Storage {
        /// The file.
        path: String,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The file opened but its schema could not be read or written (a full disk, a damaged
    /// file).
    #[error("cannot open the database {path}: {source}")]
    Unusable {
        /// The file.
        path: String,
        /// The error reading or writing its schema.
        #[source]
        source: StoreError,
    },
}

/// Failure of a read or write on an open database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The filesystem holding the database is full (ENOSPC) or over quota (EDQUOT). Nothing
    /// of the failed operation was written; the store recovers by itself once space is freed.
    #[error(
        "the appliance's disk is full: nothing was saved; free space on the server and try again"
    )]
    DiskFull,
    /// The database hit another I/O error, or is being reopened after one. Nothing of the
    /// failed operation was written; the store reopens the file by itself.
    #[error("the database is unavailable after a disk error ({reason}): nothing was saved; the appliance reopens it by itself, try again in a few seconds")]
    Unavailable {
        /// The I/O error, or that a reopen is under way.
        reason: String,
    },
    /// redb reported a consistency problem.
    #[error("database error: {0}")]
    Redb(Box<redb::Error>),
    /// A stored row failed validation: the file was edited or is damaged.
    #[error("stored record {key:?} is damaged: {reason}")]
    Corrupt {
        /// The table and key of the row.
        key: String,
        /// Why it did not decode.
        reason: String,
    },
}

impl StoreError {
    /// The same failure for another waiter: the class and the sentence are kept (redb's own
    /// errors cannot be cloned, so those become `Unavailable` with their text).
    pub fn same_kind(&self) -> StoreError {
        match self {
            StoreError::DiskFull => StoreError::DiskFull,
            StoreError::Unavailable { reason } => StoreError::Unavailable {
                reason: reason.clone(),
            },
            StoreError::Redb(e) => StoreError::Unavailable {
                reason: e.to_string(),
            },
            StoreError::Corrupt { key, reason } => StoreError::Corrupt {
                key: key.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// Whether an I/O error means "no space": ENOSPC or EDQUOT, however it is wrapped.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
        || {
            let text = e.to_string();
            text.contains("No space left on device") || text.contains("Disk quota exceeded")
        }
}

impl From<redb::Error> for StoreError {
    /// The one place redb errors are classified.
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(io) if is_disk_full(&io) => StoreError::DiskFull,
            redb::Error::Io(io) => StoreError::Unavailable {
                reason: io.to_string(),
            },
            redb::Error::PreviousIo => StoreError::Unavailable {
                reason: "an earlier write failed".into(),
            },
            other => StoreError::Redb(Box::new(other)),
        }
    }
}

macro_rules! impl_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::from(redb::Error::from(e)) }
        }
    )*};
}
impl_from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
