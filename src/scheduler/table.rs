//! The job table: every job as the API reads it, kept in step with the core by the driver.
//!
//! Layer: pure (memory only). Owns [`JobEntry`] (a stored job plus its running count), the
//! listing order ([`sort_key`]) and the name-uniqueness rule ([`name_key`],
//! [`name_taken`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use crate::model::JobRecord;
use crate::sched::JobId;

/// The in-memory job table. The driver owns this writer and is its only writer: it changes
/// an entry when the core changes the job. The handle holds a [`TableView`].
pub(super) struct Table(Arc<RwLock<HashMap<JobId, JobEntry>>>);

/// A read-only view of the [`Table`], for the handle's reads.
#[derive(Clone)]
pub(super) struct TableView(Arc<RwLock<HashMap<JobId, JobEntry>>>);

impl Table {
    pub(super) fn new(entries: HashMap<JobId, JobEntry>) -> Table {
        Table(Arc::new(RwLock::new(entries)))
    }

    /// A view for readers.
    pub(super) fn view(&self) -> TableView {
        TableView(self.0.clone())
    }

    /// The entries, for a change.
    pub(super) fn write(&self) -> RwLockWriteGuard<'_, HashMap<JobId, JobEntry>> {
        self.0.write().unwrap()
    }
}

impl TableView {
    /// One job.
    pub(super) fn get(&self, id: JobId) -> Option<JobEntry> {
        self.0.read().unwrap().get(&id).cloned()
    }

    /// Every job, sorted by next fire time (jobs without one last), then id.
    pub(super) fn list(&self) -> Vec<JobEntry> {
        let mut v: Vec<JobEntry> = self.0.read().unwrap().values().cloned().collect();
        v.sort_by_key(|e| sort_key(&e.record));
        v
    }

    /// (jobs, paused, running).
    pub(super) fn counts(&self) -> (usize, usize, u32) {
        let t = self.0.read().unwrap();
        let paused = t.values().filter(|e| e.record.spec.paused).count();
        let running = t.values().map(|e| e.running).sum();
        (t.len(), paused, running)
    }

    /// The job other than `except` that already has `name` (see [`name_taken`]).
    pub(super) fn name_taken(&self, name: &str, except: Option<JobId>) -> Option<JobId> {
        let t = self.0.read().unwrap();
        name_taken(t.values().map(|e| &e.record), name, except)
    }
}

/// The form of a job name that must be unique: lowercase, without surrounding whitespace.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The job other than `except` whose name has the same [`name_key`] as `name`, if any.
pub fn name_taken<'a>(
    jobs: impl IntoIterator<Item = &'a JobRecord>,
    name: &str,
    except: Option<JobId>,
) -> Option<JobId> {
    let key = name_key(name);
    jobs.into_iter()
        .find(|r| Some(r.id) != except && name_key(&r.spec.name) == key)
        .map(|r| r.id)
}

/// Sort key for listings: next fire (none last), then id.
pub fn sort_key(r: &JobRecord) -> (i128, u64) {
    (
        r.next_fire_at
            .map(|t| t.as_nanosecond())
            .unwrap_or(i128::MAX),
        r.id.as_u64(),
    )
}

/// A job as the API reads it (its reply is `api::view::JobView`).
#[derive(Debug, Clone)]
pub struct JobEntry {
    /// The job as stored, with the core's next fire time.
    pub record: JobRecord,
    /// Instances running now (webhook runs executing, handler calls queued or leased).
    pub running: u32,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sched::JobSpec;

    #[test]
    fn job_names_are_unique_ignoring_case_and_surrounding_spaces() {
        let rec = |id: u64, name: &str| {
            let mut spec = JobSpec::from_json(
                &json!({
                    "name": "x",
                    "trigger": {"every": "1m", "start": "2026-01-01T00:00:00Z"},
                    "action": {"webhook": {"url": "https://example.com/hook"}}
                }),
                None,
            )
            .unwrap();
            spec.name = name.into();
            JobRecord {
                id: JobId::from_u64(id),
                spec: std::sync::Arc::new(spec),
                created_at_ms: 0,
                updated_at_ms: 0,
                created_by: "olga".into(),
                next_fire_at: None,
                paused_at_ms: None,
            }
        };
        let jobs = [rec(1, "Raid Reminder"), rec(2, "weekly")];
        assert_eq!(
            name_taken(&jobs, "raid reminder", None),
            Some(JobId::from_u64(1))
        );
        assert_eq!(
            name_taken(&jobs, " WEEKLY ", None),
            Some(JobId::from_u64(2))
        );
        assert_eq!(name_taken(&jobs, "raid", None), None);
        assert_eq!(
            name_taken(&jobs, "RAID REMINDER", Some(JobId::from_u64(1))),
            None,
            "a job does not collide with itself"
        );
    }
}
