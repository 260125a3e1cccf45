//! The running scheduler: the job operations the API calls and the task that fires jobs.
//!
//! Layer: driver, around the sans-IO [`sched::Core`](crate::sched::Core) (which decides what
//! fires when). One task, the [`runner`], owns the core: it reads the clock, sleeps until the core's
//! next deadline, takes its fires, records them (runs and the jobs' next fire times in one store
//! transaction), and hands each webhook run to [`webhook::delivery`](crate::webhook::delivery)
//! on its own task (handler calls go to the handler queue, [`crate::tasks`]). Finished runs
//! come back on a channel and are written in batches.
//!
//! - [`error`]: one error enum per operation of the handle.
//! - [`handle`]: [`Handle`], what the API holds. Every change is committed (with its audit
//!   entry) before the driver hears of it and before the caller gets its answer: a 201 means
//!   the job is on disk. Names, order and counts come from the job [`table`]; a job's spec is
//!   read from the store when it is shown (the core and the table keep no spec). The handle
//!   writes no table and reads only the driver's own clock, without a round trip: the driver
//!   takes the fires due by then before it applies a change. Fire times follow the core's
//!   rules (`Core::first_fire`), and the driver applies each change to the core and the table.
//! - [`runner`]: [`start`] (load the stored jobs, close interrupted runs) and the loop.
//! - [`runs`]: what a fire becomes in the run history.
//! - [`table`]: the in-memory job table (names, next fires, running counts) and the JSON views.
//! - [`stats`]: run counters since start.
//!
//! When a commit fails (a full disk) nothing unrecorded runs: the driver stops taking fires,
//! tries [`Store::recover`](crate::store::Store::recover) every few seconds, then reloads the
//! stored next fire times so the fires that could not be recorded come due again under the
//! misfire rules.

pub mod error;
pub mod handle;
pub mod runner;
pub mod runs;
pub mod stats;
pub mod table;

use std::time::Duration;

pub use error::{
    ChangeError, ClearError, CreateError, JobNotFound, NameTaken, RunNowError, ShuttingDown,
    TestError, UpdateError,
};
pub use handle::Handle;
pub use runner::start;
pub use stats::{Lateness, RunStats};
pub use table::{name_key, name_taken, sort_key, JobEntry, JobQuery};

use crate::webhook::NetPolicy;

/// Options for the scheduler.
#[derive(Debug, Clone)]
pub struct Config {
    /// Runs older than this are pruned.
    pub run_retention: Duration,
    /// Audit entries older than this are pruned.
    pub audit_retention: Duration,
    /// The audit trail is pruned, oldest first, to at most this many bytes of entries (hourly,
    /// and as soon as an eighth of it was appended since the last prune).
    pub audit_max_bytes: u64,
    /// Where webhooks may connect (public addresses by default; `serve` adds the tunnel subnet
    /// as forbidden and the `--allow-webhook-net` networks as allowed).
    pub webhook_policy: NetPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            run_retention: Duration::from_secs(30 * 86_400),
            audit_retention: Duration::from_secs(365 * 86_400),
            audit_max_bytes: 64 * 1024 * 1024,
            webhook_policy: NetPolicy::default(),
        }
    }
}
