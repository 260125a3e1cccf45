//! The job table: what the API needs to know of every job without reading it from the store,
//! kept in step with the core by the driver.
//!
//! Layer: pure (memory only). Owns `Listed` (a job's name, next fire, paused flag and running
//! count: a few dozen bytes, not the job's spec), [`JobEntry`] (a stored job plus its running
//! count, as the API shows it), the listing order ([`sort_key`]) and filters ([`JobQuery`]: a
//! listing picks its page here before it reads a row), the name-uniqueness rule
//! ([`name_key`], [`name_taken`]) and the index of ScheduleZero ids (`Jobs::schedulezero`).
//! A job's spec is read from the store when it is shown or fires (`Handle::get`,
//! `Handle::list_page`, `Handle::by_schedulezero_id`).

use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::BuildHasher;
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
    /// Whether the job's ScheduleZero id is its name, as for a job `POST /api/schedule`
    /// created and nobody renamed: then the name index finds it, and the ScheduleZero index
    /// holds nothing for it. Set by [`Jobs::insert`] (a byte of what was padding).
    schedulezero_is_name: bool,
}

impl Listed {
    pub(super) fn new(
        name: Box<str>,
        next_fire_at: Option<Timestamp>,
        paused: bool,
        running: u32,
    ) -> Listed {
        Listed {
            name,
            next_fire_at,
            paused,
            running,
            schedulezero_is_name: false,
        }
    }
}

/// The jobs the table holds, with an index of their names: a create's or rename's uniqueness
/// check ([`Jobs::name_taken`]) is one hash lookup, not a pass over every job (it runs under
/// the handle's naming lock, so a pass would serialise creates at O(jobs) each).
///
/// The index maps a hash of each [`name_key`] to the jobs holding it (usually one: jobs
/// stored before names were unique may share one), 8 bytes of id per job plus the map's own;
/// candidates are confirmed against their names. Names change only through
/// [`Jobs::insert`], which keeps the index in step; [`Jobs::get_mut`] is for the other fields.
///
/// The ScheduleZero ids jobs carry in their metadata
/// ([`crate::sched::JobSpec::schedulezero_id`]) are indexed too, so ScheduleZero's routes
/// read the one row they need, not every job: a job whose id is its name (the usual case)
/// through the name index and a flag in its entry, any other through a second index of
/// the id's hash, not the id. A job without an id costs nothing, and one whose id is its
/// name nothing more; [`Jobs::schedulezero`] answers the candidates, which the reader
/// confirms against their rows (that it reads anyway).
pub(super) struct Jobs {
    entries: HashMap<JobId, Listed>,
    by_name: HashMap<u64, Holders>,
    /// The hash of each ScheduleZero id other than its job's name, by job (to unindex it).
    schedulezero_of: HashMap<JobId, u64>,
    /// Jobs by the hash of their ScheduleZero id, if it is not their name.
    by_schedulezero: HashMap<u64, Holders>,
    hasher: RandomState,
    /// Names compared by [`Jobs::name_taken`] so far (tests check it stays O(1)).
    #[cfg(test)]
    compared: std::sync::atomic::AtomicUsize,
}

/// The jobs whose names (or ScheduleZero ids) share one index hash.
enum Holders {
    One(JobId),
    Many(Vec<JobId>),
}

impl Holders {
    fn ids(&self) -> &[JobId] {
        match self {
            Holders::One(id) => std::slice::from_ref(id),
            Holders::Many(ids) => ids,
        }
    }
}

/// Adds `id` to the holders of hash `h`.
fn hold(index: &mut HashMap<u64, Holders>, h: u64, id: JobId) {
    match index.entry(h) {
        Entry::Vacant(v) => {
            v.insert(Holders::One(id));
        }
        Entry::Occupied(mut o) => match o.get_mut() {
            Holders::One(other) => {
                let other = *other;
                o.insert(Holders::Many(vec![other, id]));
            }
            Holders::Many(ids) => ids.push(id),
        },
    }
}

/// Takes `id` from the holders of hash `h` (the entry goes with its last holder).
fn release(index: &mut HashMap<u64, Holders>, h: u64, id: JobId) {
    if let Entry::Occupied(mut o) = index.entry(h) {
        match o.get_mut() {
            Holders::One(held) if *held == id => {
                o.remove();
            }
            Holders::One(_) => {}
            Holders::Many(ids) => {
                ids.retain(|held| *held != id);
                if let [only] = ids[..] {
                    o.insert(Holders::One(only));
                }
            }
        }
    }
}

impl Jobs {
    pub(super) fn with_capacity(n: usize) -> Jobs {
        Jobs {
            entries: HashMap::with_capacity(n),
            by_name: HashMap::with_capacity(n),
            schedulezero_of: HashMap::new(),
            by_schedulezero: HashMap::new(),
            hasher: RandomState::new(),
            #[cfg(test)]
            compared: Default::default(),
        }
    }

    fn name_hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name_key(name))
    }

    /// Adds or replaces a job, with the ScheduleZero id it carries (if any), returning what
    /// it replaces.
    pub(super) fn insert(
        &mut self,
        id: JobId,
        mut listed: Listed,
        schedulezero_id: Option<&str>,
    ) -> Option<Listed> {
        let h = self.name_hash(&listed.name);
        listed.schedulezero_is_name = schedulezero_id == Some(&*listed.name);
        let sz = schedulezero_id
            .filter(|_| !listed.schedulezero_is_name)
            .map(|s| self.hasher.hash_one(s));
        let old = self.entries.insert(id, listed);
        if let Some(old) = &old {
            let was = self.name_hash(&old.name);
            release(&mut self.by_name, was, id);
        }
        hold(&mut self.by_name, h, id);
        let old_sz = match sz {
            Some(h) => self.schedulezero_of.insert(id, h),
            None => self.schedulezero_of.remove(&id),
        };
        if old_sz != sz {
            if let Some(h) = old_sz {
                release(&mut self.by_schedulezero, h, id);
            }
            if let Some(h) = sz {
                hold(&mut self.by_schedulezero, h, id);
            }
        }
        old
    }

    /// Removes a job, returning it.
    pub(super) fn remove(&mut self, id: &JobId) -> Option<Listed> {
        let old = self.entries.remove(id)?;
        let was = self.name_hash(&old.name);
        release(&mut self.by_name, was, *id);
        if let Some(h) = self.schedulezero_of.remove(id) {
            release(&mut self.by_schedulezero, h, *id);
        }
        Some(old)
    }

    /// The jobs that may carry the ScheduleZero id `id` (those named `id` whose id is their
    /// name, and those whose other id has its hash: almost always exactly the ones that
    /// carry it), in no particular order; the caller confirms each against its row.
    pub(super) fn schedulezero(&self, id: &str) -> Vec<JobId> {
        let named = self
            .by_name
            .get(&self.name_hash(id))
            .map_or(&[][..], Holders::ids)
            .iter()
            .filter(|j| {
                self.entries
                    .get(j)
                    .is_some_and(|l| l.schedulezero_is_name && *l.name == *id)
            });
        let other = self
            .by_schedulezero
            .get(&self.hasher.hash_one(id))
            .map_or(&[][..], Holders::ids);
        named.chain(other).copied().collect()
    }

    pub(super) fn get(&self, id: &JobId) -> Option<&Listed> {
        self.entries.get(id)
    }

    /// A job's entry, to change its next fire, paused flag or running count (a name changes
    /// only through [`Jobs::insert`]).
    pub(super) fn get_mut(&mut self, id: &JobId) -> Option<&mut Listed> {
        self.entries.get_mut(id)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&JobId, &Listed)> {
        self.entries.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&JobId, &mut Listed)> {
        self.entries.iter_mut()
    }

    /// The job other than `except` that already has `name` (the same [`name_key`]), if any.
    pub(super) fn name_taken(&self, name: &str, except: Option<JobId>) -> Option<JobId> {
        let candidates = self.by_name.get(&self.name_hash(name))?.ids();
        #[cfg(test)]
        self.compared
            .fetch_add(candidates.len(), std::sync::atomic::Ordering::Relaxed);
        name_taken(
            candidates
                .iter()
                .filter_map(|id| Some((*id, &*self.entries.get(id)?.name))),
            name,
            except,
        )
    }
}

impl std::ops::Index<&JobId> for Jobs {
    type Output = Listed;
    fn index(&self, id: &JobId) -> &Listed {
        &self.entries[id]
    }
}

/// The in-memory job table. The driver owns this writer and is its only writer: it changes
/// an entry when the core changes the job. The handle holds a [`TableView`].
pub(super) struct Table(Arc<RwLock<Jobs>>);

/// A read-only view of the [`Table`], for the handle's reads.
#[derive(Clone)]
pub(super) struct TableView(Arc<RwLock<Jobs>>);

impl Table {
    pub(super) fn new(entries: Jobs) -> Table {
        Table(Arc::new(RwLock::new(entries)))
    }

    /// A view for readers.
    pub(super) fn view(&self) -> TableView {
        TableView(self.0.clone())
    }

    /// The entries, for a change.
    pub(super) fn write(&self) -> RwLockWriteGuard<'_, Jobs> {
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
        let paused = t.iter().filter(|(_, e)| e.paused).count();
        let running = t.iter().map(|(_, e)| e.running).sum();
        (t.len(), paused, running)
    }

    /// The job other than `except` that already has `name` (see [`Jobs::name_taken`]).
    pub(super) fn name_taken(&self, name: &str, except: Option<JobId>) -> Option<JobId> {
        self.0.read().unwrap().name_taken(name, except)
    }

    /// The jobs that may carry the ScheduleZero id `id` ([`Jobs::schedulezero`]), in listing
    /// order ([`sort_key`]).
    pub(super) fn schedulezero(&self, id: &str) -> Vec<(JobId, Listed)> {
        let t = self.0.read().unwrap();
        let mut found: Vec<(JobId, Listed)> = t
            .schedulezero(id)
            .into_iter()
            .filter_map(|id| Some((id, t.get(&id)?.clone())))
            .collect();
        found.sort_unstable_by_key(|(id, l)| listing_key(*id, l.next_fire_at));
        found
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

    fn listed(name: &str) -> Listed {
        Listed::new(name.into(), None, false, 0)
    }

    /// The name index answers as a pass over every job would, through renames, removals and
    /// names shared by jobs stored before names were unique, while comparing only the names
    /// that share the asked name's hash: one check among 10,000 jobs compares one name (the
    /// pass compared 10,000, under the naming lock every create holds).
    #[test]
    fn the_name_index_answers_as_a_full_pass_would_and_compares_one_name() {
        let mut jobs = Jobs::with_capacity(0);
        let id = JobId::from_u64;
        let pass = |jobs: &Jobs, name: &str, except: Option<JobId>| {
            let mut all: Vec<(JobId, &str)> = jobs.iter().map(|(i, l)| (*i, &*l.name)).collect();
            all.sort_by_key(|(i, _)| *i);
            name_taken(all, name, except)
        };
        jobs.insert(id(1), listed("Raid Reminder"), None);
        jobs.insert(id(2), listed("weekly"), None);
        // Two jobs from before names were unique.
        jobs.insert(id(3), listed("Dup"), None);
        jobs.insert(id(4), listed(" dup "), None);
        for (name, except) in [
            ("raid reminder", None),
            (" WEEKLY ", None),
            ("RAID REMINDER", Some(id(1))),
            ("raid", None),
            ("DUP", Some(id(3))),
            ("DUP", Some(id(4))),
        ] {
            assert_eq!(
                jobs.name_taken(name, except),
                pass(&jobs, name, except),
                "{name:?} except {except:?}"
            );
        }
        assert_eq!(
            jobs.name_taken("dup", None)
                .map(|i| i == id(3) || i == id(4)),
            Some(true)
        );
        // A rename frees the old name and takes the new one; a removal frees its name.
        jobs.insert(id(1), listed("Raid Night"), None);
        assert_eq!(jobs.name_taken("raid reminder", None), None);
        assert_eq!(jobs.name_taken("raid night", None), Some(id(1)));
        jobs.remove(&id(3));
        assert_eq!(jobs.name_taken("dup", None), Some(id(4)));
        assert_eq!(jobs.name_taken("dup", Some(id(4))), None);
        jobs.remove(&id(4));
        assert_eq!(jobs.name_taken("dup", None), None);
        assert!(jobs.by_name.len() == 2, "no index entry left behind");

        let mut big = Jobs::with_capacity(10_000);
        for i in 0..10_000 {
            big.insert(id(i), listed(&format!("job {i}")), None);
        }
        let before = big.compared.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(big.name_taken("JOB 4321", None), Some(id(4321)));
        assert_eq!(big.name_taken("job 10000", None), None);
        let compared = big.compared.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert!(compared <= 2, "compared {compared} names for two checks");
    }

    /// The ScheduleZero lookup names exactly the jobs a pass over every job's id would find,
    /// through ids given, changed, dropped and shared, renames (a name is not the id, and
    /// names compare ignoring case, ids exactly) and removals; its own index holds nothing
    /// for jobs without an id or whose id is their name, however many.
    #[test]
    fn the_schedulezero_index_names_the_jobs_a_full_pass_would() {
        let mut jobs = Jobs::with_capacity(0);
        let id = JobId::from_u64;
        // What each job carries, as its metadata says.
        let mut carried: HashMap<JobId, &str> = HashMap::new();
        let check = |jobs: &Jobs, carried: &HashMap<JobId, &str>, step: &str| {
            for q in [
                "ding", "dong", "dup", "job 3", "job 4", "JOB 4", "job 5", "Job 5", "nobody",
            ] {
                let mut want: Vec<JobId> = carried
                    .iter()
                    .filter(|(_, c)| **c == q)
                    .map(|(i, _)| *i)
                    .collect();
                let mut got = jobs.schedulezero(q);
                want.sort();
                got.sort();
                assert_eq!(got, want, "{q:?} after {step}");
            }
        };
        let put = |jobs: &mut Jobs,
                   carried: &mut HashMap<JobId, &'static str>,
                   i: u64,
                   name: &str,
                   sz: Option<&'static str>| {
            jobs.insert(id(i), listed(name), sz);
            match sz {
                Some(s) => carried.insert(id(i), s),
                None => carried.remove(&id(i)),
            };
        };
        for i in 0..6 {
            put(&mut jobs, &mut carried, i, &format!("job {i}"), None);
        }
        assert_eq!(
            (
                jobs.schedulezero_of.capacity(),
                jobs.by_schedulezero.capacity()
            ),
            (0, 0),
            "jobs without a ScheduleZero id cost the index nothing"
        );
        let empty =
            |jobs: &Jobs| jobs.schedulezero_of.is_empty() && jobs.by_schedulezero.is_empty();
        put(&mut jobs, &mut carried, 4, "job 4", Some("job 4"));
        check(&jobs, &carried, "a job whose id is its name");
        assert!(empty(&jobs), "found through the name index");
        for (i, name, sz, step) in [
            (5, "job 5", Some("Job 5"), "an id its name in another case"),
            (
                4,
                "job 4 renamed",
                Some("job 4"),
                "the rename of a job named as its id",
            ),
            (1, "ding", Some("ding"), "a job given an id"),
            (1, "renamed", Some("ding"), "a rename (the id stays)"),
            (1, "renamed", Some("dong"), "a changed id"),
            (2, "x", Some("dup"), "a second id"),
            (
                3,
                "dup",
                Some("dup"),
                "an id shared (metadata is free-form)",
            ),
            (1, "renamed", None, "an id dropped from the metadata"),
        ] {
            put(&mut jobs, &mut carried, i, name, sz);
            check(&jobs, &carried, step);
        }
        for (i, step) in [
            (2, "the removal of one of two sharing"),
            (3, "the removal of the other"),
            (4, "a removal"),
            (5, "the last removal"),
        ] {
            jobs.remove(&id(i));
            carried.remove(&id(i));
            check(&jobs, &carried, step);
        }
        assert!(empty(&jobs), "no index entry left behind");
    }
}
