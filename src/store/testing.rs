//! Storage for tests that can run out of space.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::StorageBackend;

use super::Store;
use crate::model::{JobRecord, ServerRecord};
use crate::sched::{JobId, JobSpec};

/// A server record for test databases.
pub fn server() -> ServerRecord {
    ServerRecord {
        private_key: ::peers::PrivateKey::from_bytes([5; 32]),
        listen_port: 51820,
        interface: ::peers::Ipv4Net::parse("10.88.88.1/24").unwrap(),
        endpoint: ::peers::Endpoint::parse("vpn.example.org", 51820).unwrap(),
        created_at: 1,
    }
}

/// A stored job named `name` with id `id`: every minute from 2026-01-01, posting to a
/// loopback port nothing listens on, next fire a minute after the start.
pub fn job_record(id: u64, name: &str) -> JobRecord {
    let spec = JobSpec::from_json(
        &serde_json::json!({
            "name": name,
            "trigger": {"every": "1m", "start": "2026-01-01T00:00:00Z"},
            "action": {"webhook": {"url": "http://127.0.0.1:9/x"}}
        }),
        None,
    )
    .unwrap();
    JobRecord {
        id: JobId::from_u64(id),
        spec: std::sync::Arc::new(spec),
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: "t".into(),
        next_fire_at: Some("2026-01-01T00:01:00Z".parse().unwrap()),
        paused_at_ms: None,
    }
}

const BLOCK: u64 = 4096;
const ENOSPC: i32 = 28;

/// A sparse file in memory on a filesystem that can fill up. Like ext4 or tmpfs: growing
/// the length allocates nothing; writing a block never written before needs a free block,
/// which fails with ENOSPC while [`Disk::set_full`] is on; rewriting a block already
/// allocated always works. [`Disk::set_failing`] makes every write, resize and sync fail
/// (a disk with no space even for redb's header rewrites). Clones share the bytes, so a
/// reopened store sees what was committed before.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    state: Arc<Mutex<(Vec<u8>, HashSet<u64>)>>,
    full: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
}

impl Disk {
    pub fn set_full(&self, on: bool) {
        self.full.store(on, Ordering::SeqCst);
    }

    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// Cuts the bytes to nothing, as if the file had been emptied under the store.
    pub fn wipe(&self) {
        let mut s = self.state.lock().unwrap();
        s.0.clear();
        s.1.clear();
    }

    /// Bytes written to this disk so far (what commits cost it).
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().0.len()
    }

    /// A store on this disk; each reopen gets a fresh backend over the same bytes.
    pub fn store(&self) -> Store {
        let disk = self.clone();
        Store::open_with_backend(move || Ok(Box::new(disk.clone()) as Box<dyn StorageBackend>))
            .expect("the test disk opens")
    }

    fn refuse(&self) -> io::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(io::Error::from_raw_os_error(ENOSPC))
        } else {
            Ok(())
        }
    }
}

impl StorageBackend for Disk {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().unwrap().0.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let s = self.state.lock().unwrap();
        let (a, b) = (offset as usize, offset as usize + len);
        if b > s.0.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        Ok(s.0[a..b].to_vec())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.refuse()?;
        let mut s = self.state.lock().unwrap();
        s.0.resize(len as usize, 0);
        s.1.retain(|b| b * BLOCK < len);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        self.refuse()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.refuse()?;
        let mut s = self.state.lock().unwrap();
        let end = offset + data.len() as u64;
        let blocks = offset / BLOCK..end.div_ceil(BLOCK);
        if self.full.load(Ordering::SeqCst) && blocks.clone().any(|b| !s.1.contains(&b)) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        if end as usize > s.0.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        s.0[offset as usize..end as usize].copy_from_slice(data);
        s.1.extend(blocks);
        self.written.fetch_add(data.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}
