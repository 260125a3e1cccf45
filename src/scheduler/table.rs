//! The job table: what the API needs to know of every job without reading it from the store,
//! kept in step with the core by the driver.
//!
//! Layer: pure (memory only). Owns `Listed` (a job's name, next fire, paused flag and running
//! count: a few dozen bytes, not the job's spec), [`JobEntry`] (a stored job plus its running
//! count, as the API shows it), the listing order ([`sort_key`]) and filters ([`JobQuery`]: a
//! listing picks its page here before it reads a row) and the name-uniqueness rule
//! ([`name_key`], [`name_taken`]). A job's spec is read from the store when it is shown or
//! fires (`Handle::get`, `Handle::list_page`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use crate::model::JobRecord;
use crate::sched::JobId;
use jiff::Timestamp;

/// What the table keeps of one job.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Listed {
    /// The job's name (for the uniqueness rule and the listing's name filter).
    pub(super) name: Box<str>,
    /// The core's next fire time.
    pub(super) next_fire_at: Option<Timestamp>,
    /// Whether the job is paused.
    pub(super) paused: bool,
    /// Instances running now (webhook runs executing, handler calls queued or leased).
    pub(super) running: u32,
}

/// The in-memory job table. The driver owns this writer and is its only writer: it changes
/// an entry when the core changes the job. The handle holds a [`TableView`].
pub(super) struct Table(Arc<RwLock<HashMap<JobId, Listed>>>);

/// A read-only view of the [`Table`], for the handle's reads.
#[derive(Clone)]
pub(super) struct TableView(Arc<RwLock<HashMap<JobId, Listed>>>);

impl Table {
    pub(super) fn new(entries: HashMap<JobId, Listed>) -> Table {
        Table(Arc::new(RwLock::new(entries)))
    }

    /// A view for readers.
    pub(super) fn view(&self) -> TableView {
        TableView(self.0.clone())
    }

    /// The entries, for a change.
    pub(super) fn write(&self) -> RwLockWriteGuard<'_, HashMap<JobId, Listed>> {
        self.0.write().unwrap()
    }
}

impl TableView {
    /// One job.
    pub(super) fn get(&self, id: JobId) -> Option<Listed> {
        self.0.read().unwrap().get(&id).cloned()
    }

    /// The first `n` jobs that `query` admits after the listing position `after` (or from the
    /// start), in listing order ([`sort_key`]: next fire time, jobs without one last, then
    /// id). Sorts only the matches, and of those only the `n` it returns.
    pub(super) fn select(
        &self,
        query: &JobQuery,
        after: Option<(i128, u64)>,
        n: usize,
    ) -> Vec<(JobId, Listed)> {
        let t = self.0.read().unwrap();
        let mut hits: Vec<((i128, u64), JobId)> = t
            .iter()
            .map(|(id, l)| (listing_key(*id, l.next_fire_at), *id, l))
            .filter(|(key, _, l)| after.is_none_or(|a| *key > a) && query.admits(&l.name, l.paused))
            .map(|(key, id, _)| (key, id))
            .collect();
        if n == 0 {
            return Vec::new();
        }
        if hits.len() > n {
            hits.select_nth_unstable(n - 1);
            hits.truncate(n);
        }
        hits.sort_unstable();
        hits.into_iter()
            .map(|(_, id)| (id, t[&id].clone()))
            .collect()
    }

    /// (jobs, paused, running).
    pub(super) fn counts(&self) -> (usize, usize, u32) {
        let t = self.0.read().unwrap();
        let paused = t.values().filter(|e| e.paused).count();
        let running = t.values().map(|e| e.running).sum();
        (t.len(), paused, running)
    }

    /// The job other than `except` that already has `name` (see [`name_taken`]).
    pub(super) fn name_taken(&self, name: &str, except: Option<JobId>) -> Option<JobId> {
        let t = self.0.read().unwrap();
        name_taken(t.iter().map(|(id, l)| (*id, &*l.name)), name, except)
    }
}

/// Which jobs a listing shows (`GET /api/v1/jobs?paused=&name=&cursor=&limit=`): the filters,
/// where the page starts, and how many it takes at most.
#[derive(Debug, Clone, PartialEq)]
pub struct JobQuery {
    /// Only paused (`true`) or only running-on-schedule (`false`) jobs.
    pub paused: Option<bool>,
    /// Only jobs whose name, lowercased, contains this (give it lowercased).
    pub name: Option<String>,
    /// Only jobs after this listing position (a [`sort_key`], as a page's cursor names it).
    pub after: Option<(i128, u64)>,
    /// At most this many jobs.
    pub limit: usize,
}

impl JobQuery {
    /// Every job, in listing order.
    pub fn all() -> JobQuery {
        JobQuery {
            paused: None,
            name: None,
            after: None,
            limit: usize::MAX,
        }
    }

    /// Whether a job with this name and paused flag passes the filters.
    fn admits(&self, name: &str, paused: bool) -> bool {
        self.paused.is_none_or(|p| p == paused)
            && self
                .name
                .as_ref()
                .is_none_or(|n| name.to_lowercase().contains(n.as_str()))
    }

    /// Whether a job as read from the store passes the filters and lies after the start.
    pub(super) fn admits_entry(&self, e: &JobEntry) -> bool {
        self.admits(e.record.spec.name.as_str(), e.record.spec.paused)
            && self.after.is_none_or(|a| sort_key(&e.record) > a)
    }
}

/// The form of a job name that must be unique: lowercase, without surrounding whitespace.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The job other than `except` whose name has the same [`name_key`] as `name`, if any, among
/// `jobs` (id and name).
pub fn name_taken<'a>(
    jobs: impl IntoIterator<Item = (JobId, &'a str)>,
    name: &str,
    except: Option<JobId>,
) -> Option<JobId> {
    let key = name_key(name);
    jobs.into_iter()
        .find(|(id, n)| Some(*id) != except && name_key(n) == key)
        .map(|(id, _)| id)
}

/// Sort key for listings: next fire (none last), then id.
pub fn sort_key(r: &JobRecord) -> (i128, u64) {
    listing_key(r.id, r.next_fire_at)
}

pub(super) fn listing_key(id: JobId, next_fire_at: Option<Timestamp>) -> (i128, u64) {
    (
        next_fire_at.map(|t| t.as_nanosecond()).unwrap_or(i128::MAX),
        id.as_u64(),
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
        let recs = [rec(1, "Raid Reminder"), rec(2, "weekly")];
        let jobs: Vec<(JobId, &str)> = recs.iter().map(|r| (r.id, r.spec.name.as_str())).collect();
        assert_eq!(
            name_taken(jobs.iter().copied(), "raid reminder", None),
            Some(JobId::from_u64(1))
        );
        assert_eq!(
            name_taken(jobs.iter().copied(), " WEEKLY ", None),
            Some(JobId::from_u64(2))
        );
        assert_eq!(name_taken(jobs.iter().copied(), "raid", None), None);
        assert_eq!(
            name_taken(
                jobs.iter().copied(),
                "RAID REMINDER",
                Some(JobId::from_u64(1))
            ),
            None,
            "a job does not collide with itself"
        );
    }
}
