//! The storage baseline of the benches that time durable writes: bare redb commits, one small
//! insert each, from several threads (the most any store could commit on this disk, measured
//! side by side). Shared by the benches with `#[path]` (each bench is its own crate).
#![allow(clippy::disallowed_methods)] // benchmark: times the commits

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use redb::{Database, Durability, TableDefinition};

const BARE: TableDefinition<u64, &[u8]> = TableDefinition::new("bare");

/// Bare redb in `dir/bare.redb`: `n` write transactions (`Durability::Immediate`, redb's
/// default, as the store's) of one `size`-byte insert each, from `callers` threads. Returns
/// commits/s.
pub fn bare_commits(dir: &Path, n: usize, callers: usize, size: usize) -> f64 {
    let db = Arc::new(Database::create(dir.join("bare.redb")).unwrap());
    let value = vec![b'x'; size];
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..callers {
            let (db, next, value) = (db.clone(), next.clone(), &value);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let mut txn = db.begin_write().unwrap();
                txn.set_durability(Durability::Immediate);
                {
                    let mut t = txn.open_table(BARE).unwrap();
                    t.insert(i as u64, value.as_slice()).unwrap();
                }
                txn.commit().unwrap();
            });
        }
    });
    n as f64 / t0.elapsed().as_secs_f64()
}
