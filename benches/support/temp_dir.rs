//! A private directory under the temp dir for one bench case, removed on drop. Shared by the
//! benches with `#[path]` (each bench is its own crate).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory `appliance-bench-<bench>-<pid>-<n>-<tag>` (mode 0700), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(bench: &str, tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "appliance-bench-{bench}-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod temp dir");
        TempDir(p)
    }

    /// The database file inside it.
    #[allow(dead_code)] // not every bench opens a database by path
    pub fn db(&self) -> PathBuf {
        self.0.join("appliance.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
