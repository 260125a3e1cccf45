//! How much memory the database may keep: redb's page cache, bounded.
//!
//! Layer: storage. redb's default cache is 1 GiB (90 % read cache, 10 % write buffer), and it
//! keeps every page it reads until that fills: after a restart with 10,000 jobs the whole job
//! table stayed in memory next to the decoded jobs (issue 12 measured 160 MiB of RSS). The
//! appliance reads the job and peer tables once at start and afterwards serves them from
//! memory; redb's cache only speeds up run history and audit pages, so a few MiB do. Every
//! database the appliance opens (the live one, a backup being written) is built here.

/// Bytes of redb page cache per open database: 90 % for pages read, 10 % for pages written
/// by a transaction before they are flushed at its commit.
pub(crate) const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The redb builder every appliance database is opened or created with.
pub(crate) fn builder() -> redb::Builder {
    let mut b = redb::Builder::new();
    b.set_cache_size(CACHE_BYTES);
    b
}

#[cfg(test)]
mod tests {
    use super::super::{Store, META};
    use super::*;
    use redb::ReadableTable as _;

    /// The store's page cache stays within CACHE_BYTES: reading twice as much data as that
    /// evicts pages (redb counts evictions), where the default 1 GiB cache would keep them all.
    #[test]
    fn the_page_cache_is_bounded() {
        let dir =
            std::env::temp_dir().join(format!("appliance-store-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::create(&dir.join("db.redb"), None).unwrap();
        let value = vec![7u8; 1024];
        let rows = 2 * CACHE_BYTES / value.len();
        {
            let db = store.writer().unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(META).unwrap();
                for i in 0..rows {
                    t.insert(format!("bulk-{i:06}").as_str(), value.as_slice())
                        .unwrap();
                }
            }
            store.commit(txn).unwrap();
        }
        let db = store.reader().unwrap();
        let before = db.cache_stats().evictions();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(META).unwrap();
        let mut n = 0;
        for row in t.iter().unwrap() {
            n += row.unwrap().1.value().len();
        }
        assert!(n >= rows * value.len());
        assert!(
            db.cache_stats().evictions() > before,
            "reading {n} bytes evicted nothing: the cache is not bounded by {CACHE_BYTES}"
        );
        drop((t, txn, db));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
