//! The storage backends under redb (part of [`crate::store`]): the file, the watch that notes
//! the first I/O error, the in-memory overlay a read-only reopen uses, and a guard against
//! redb's panics on truncated files.

use std::cell::Cell;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{Database, StorageBackend};

use super::is_disk_full;

/// Opens redb on a fresh backend from `factory`; with `read_only`, over an [`Overlay`]. Only
/// with `initialize` may empty storage become a new database: [`Store::open`] and every reopen
/// refuse a file that is (or was meanwhile made) empty instead of writing a schema over it.
pub(super) fn open_db(
    factory: &BackendFactory,
    watch: &Arc<IoWatch>,
    read_only: bool,
    initialize: bool,
) -> Result<Database, redb::DatabaseError> {
    let mut inner = factory()?;
    if !initialize && inner.len()? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the database file is empty",
        )
        .into());
    }
    if read_only {
        inner = Box::new(Overlay::new(inner)?);
    }
    super::footprint::builder().create_with_backend(Watched {
        inner,
        watch: watch.clone(),
    })
}

/// The backend factory for a database file: opens it read-write on every call, creating it
/// (mode 0600) only with `create` — [`Store::create`]'s temporary file, never the real one.
pub(super) fn file_backend(path: PathBuf, create: bool) -> BackendFactory {
    Box::new(move || {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        Ok(Box::new(FileBackend::new(f)?) as Box<dyn StorageBackend>)
    })
}

/// The first I/O error the storage backend returned since the database was (re)opened. redb
/// refuses every further operation on that handle (`PreviousIo`) until it is reopened, so "an
/// error is recorded here" and "the handle is poisoned" are the same thing.
#[derive(Debug, Default)]
pub(super) struct IoWatch {
    failed: std::sync::Mutex<Option<IoFailure>>,
}

#[derive(Debug, Clone)]
pub(super) struct IoFailure {
    pub(super) disk_full: bool,
    pub(super) message: String,
}

impl IoWatch {
    pub(super) fn record(&self, e: &std::io::Error) {
        let mut failed = self.failed.lock().unwrap();
        if failed.is_none() {
            *failed = Some(IoFailure {
                disk_full: is_disk_full(e),
                message: e.to_string(),
            });
        }
    }

    pub(super) fn get(&self) -> Option<IoFailure> {
        self.failed.lock().unwrap().clone()
    }

    pub(super) fn clear(&self) {
        *self.failed.lock().unwrap() = None;
    }
}

/// The backend every [`Store`] opens redb on: the real one (a file, or a test's) plus a note of
/// the first error it returned.
#[derive(Debug)]
struct Watched {
    inner: Box<dyn StorageBackend>,
    watch: Arc<IoWatch>,
}

impl Watched {
    fn note<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            self.watch.record(e);
        }
        r
    }
}

impl StorageBackend for Watched {
    fn len(&self) -> std::io::Result<u64> {
        self.note(self.inner.len())
    }
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.note(self.inner.read(offset, len))
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.note(self.inner.set_len(len))
    }
    fn sync_data(&self, eventual: bool) -> std::io::Result<()> {
        self.note(self.inner.sync_data(eventual))
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.note(self.inner.write(offset, data))
    }
}

/// Makes a fresh storage backend over the same bytes: the first open and every reopen.
pub(super) type BackendFactory =
    Box<dyn Fn() -> Result<Box<dyn StorageBackend>, redb::DatabaseError> + Send + Sync>;

/// The same bytes, but every write, resize and sync stays in memory: what redb needs to open a
/// file that must be repaired (after an I/O error) when the disk cannot take the repair. The
/// file itself is never written through it, so it still needs (and gets) the real repair later.
#[derive(Debug)]
pub(super) struct Overlay {
    inner: Box<dyn StorageBackend>,
    state: std::sync::Mutex<OverlayState>,
}

#[derive(Debug)]
pub(super) struct OverlayState {
    len: u64,
    /// File bytes at or beyond this offset read as zeros (the length was cut below it).
    cut: u64,
    blocks: std::collections::HashMap<u64, Vec<u8>>,
}

const OVERLAY_BLOCK: u64 = 4096;

impl Overlay {
    pub(super) fn new(inner: Box<dyn StorageBackend>) -> std::io::Result<Overlay> {
        let len = inner.len()?;
        Ok(Overlay {
            inner,
            state: std::sync::Mutex::new(OverlayState {
                len,
                cut: len,
                blocks: Default::default(),
            }),
        })
    }

    fn block(&self, st: &OverlayState, b: u64) -> std::io::Result<Vec<u8>> {
        if let Some(bytes) = st.blocks.get(&b) {
            return Ok(bytes.clone());
        }
        let mut buf = vec![0; OVERLAY_BLOCK as usize];
        let start = b * OVERLAY_BLOCK;
        if start < st.cut {
            let n = (st.cut - start).min(OVERLAY_BLOCK) as usize;
            buf[..n].copy_from_slice(&self.inner.read(start, n)?);
        }
        Ok(buf)
    }
}

impl StorageBackend for Overlay {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.state.lock().unwrap().len)
    }

    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let st = self.state.lock().unwrap();
        let end = offset + len as u64;
        if end > st.len {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        let mut out = Vec::with_capacity(len);
        for b in offset / OVERLAY_BLOCK..end.div_ceil(OVERLAY_BLOCK) {
            let block = self.block(&st, b)?;
            let from = offset.max(b * OVERLAY_BLOCK) - b * OVERLAY_BLOCK;
            let to = end.min((b + 1) * OVERLAY_BLOCK) - b * OVERLAY_BLOCK;
            out.extend_from_slice(&block[from as usize..to as usize]);
        }
        Ok(out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.len = len;
        st.cut = st.cut.min(len);
        st.blocks.retain(|b, _| b * OVERLAY_BLOCK < len);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap();
        let end = offset + data.len() as u64;
        for b in offset / OVERLAY_BLOCK..end.div_ceil(OVERLAY_BLOCK) {
            let mut block = self.block(&st, b)?;
            let from = offset.max(b * OVERLAY_BLOCK);
            let to = end.min((b + 1) * OVERLAY_BLOCK);
            block[(from - b * OVERLAY_BLOCK) as usize..(to - b * OVERLAY_BLOCK) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            st.blocks.insert(b, block);
        }
        st.len = st.len.max(end);
        Ok(())
    }
}

/// Runs `f`, turning a panic into `Err(message)` without printing it (redb asserts on some
/// truncated files instead of returning an error). Other threads' panics print as usual.
pub(super) fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    thread_local! {
        static QUIET: Cell<bool> = const { Cell::new(false) };
    }
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the storage library gave up reading it".into())
    })
}

/// redb's file signature (its first nine bytes).
pub(super) const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
