//! The scheduler core: which job fires when, under a clock it is handed.
//!
//! Layer: sans-IO core (quinn-proto style) under [`crate::sched`]; no I/O, no clocks, no OS
//! randomness. Owns the set of scheduled jobs, each one's next fire time and running-instance
//! count, and the queue of [`Fire`]s waiting to be taken. Touches nothing but its own state.
//! Contract, for a driver that owns the clock, the store and the executor:
//!
//! 1. Load every stored job with [`Core::load`] (or one by one with [`Core::upsert`]),
//!    passing the persisted `next_fire_at`.
//! 2. Loop: sleep until [`Core::poll_timeout`] (or new input), call [`Core::handle_timeout`]
//!    with the current time, drain [`Core::poll_fire`] until `None`, execute each
//!    [`FireKind::Run`] and record the others, persist [`Core::take_dirty`], and call
//!    [`Core::handle_finished`] when an executed fire is done (after its last retry).
//! 3. API calls map to [`Core::upsert`], [`Core::remove`], [`Core::pause`], [`Core::resume`]
//!    and [`Core::run_now`]; drain `poll_fire` and `take_dirty` after each of them too.
//!
//! # Semantics
//!
//! - **Never early.** A fire scheduled at `t` is emitted by the first `handle_timeout(now)` with
//!   `now >= t + jitter_offset`, never before.
//! - **Jitter.** With `jitter > 0`, the fire scheduled at `t` is due at `t + offset`, where
//!   `offset` in `[0, jitter)` is a hash of (job id, `t`): deterministic across restarts, no RNG.
//!   [`Fire::scheduled_at`] and [`Core::next_fire_at`] carry `t`; [`Core::poll_timeout`] the due
//!   time.
//! - **Misfires.** When `handle_timeout` finds due fires (after downtime, a suspended host, or a
//!   persisted `next_fire_at` in the past), it walks them oldest first. A fire is *late* when it
//!   is scheduled more than `misfire_grace + jitter` before `now` (so lateness counts from the
//!   latest instant jitter could have put it at, and is monotone in the schedule). Late fires are
//!   reported as [`FireKind::Missed`], one each, at most [`MAX_LISTED_PER_CALL`] per job per call;
//!   beyond that one [`FireKind::MissedMany`] stands for the rest. The remaining due fires run:
//!   once if `coalesce` (the [`Fire`] carries the oldest of them), otherwise once each, oldest
//!   first, again at most [`MAX_LISTED_PER_CALL`] with one `MissedMany` for the excess.
//! - **max_instances.** Each [`FireKind::Run`] emitted (from the schedule or [`Core::run_now`])
//!   takes an instance slot until [`Core::handle_finished`]. A scheduled fire that finds all
//!   `max_instances` slots taken is emitted as [`FireKind::Skipped`] instead: recorded, not run,
//!   and not retried later. `run_now` at the limit emits nothing and returns `false`.
//! - **First fire.** A new or changed spec fires first strictly after the `now` it is upserted
//!   at ([`Core::first_fire`]), never at `now` itself.
//! - **Pause/resume.** A paused job has no next fire. Resuming computes the next fire strictly
//!   after the resume time, so the fires missed while paused do not burst; resuming with
//!   catch-up ([`Core::resume_catching_up`]) restarts from the pause time instead, and the
//!   misfire rules decide about the fires missed meanwhile.
//! - **Exhaustion.** A job whose trigger has no fire left (an `at` that fired, an `end` passed)
//!   stays in the core with `next_fire_at == None` until removed.
//!
//! Cost: a binary heap keyed by due time with lazy deletion; every operation is `O(log n)`
//! amortised, plus the trigger arithmetic of the job concerned. Stale heap entries are dropped
//! from the top eagerly and the heap is rebuilt when more than half of it is stale.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::spec::{JobId, JobSpec};
use super::trigger::Trigger;

/// Most fires one job reports one by one in one [`Core::handle_timeout`] call, per kind (late
/// fires, and catch-up runs without `coalesce`); the excess is one [`FireKind::MissedMany`].
pub const MAX_LISTED_PER_CALL: usize = 100;

/// One fire of one job, taken with [`Core::poll_fire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// The job.
    pub job: JobId,
    /// The time the trigger named (before jitter); `now` for [`Core::run_now`].
    pub scheduled_at: Timestamp,
    /// Run it, or record why not.
    pub kind: FireKind,
}

/// What the driver does with a [`Fire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireKind {
    /// Execute the action. An instance slot is taken; call [`Core::handle_finished`] when the
    /// run is over (succeeded, or failed after its last retry).
    Run,
    /// Not run: the fire was seen more than `misfire_grace` (plus `jitter`) after its time.
    /// Record it as missed.
    Missed,
    /// Not run: `max_instances` instances were still running. Record it as missed (skipped).
    Skipped,
    /// Not run: stands for every fire scheduled from [`Fire::scheduled_at`] through `through`
    /// (inclusive) that no other [`Fire`] of this call reports, because there were too many to
    /// list (see [`MAX_LISTED_PER_CALL`]). Record it as one missed entry covering the range.
    MissedMany {
        /// The latest scheduled time the summary may cover.
        through: Timestamp,
    },
}

impl FireKind {
    /// Whether the driver should execute this fire.
    pub fn is_run(self) -> bool {
        matches!(self, FireKind::Run)
    }
}

/// What the core needs of a job: when it fires and under which rules. A job's action, name and
/// metadata stay out of the core (the driver reads them from the store when a fire runs), so a
/// scheduled job costs the core a few hundred bytes whatever its webhook carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// When the job fires.
    pub trigger: Trigger,
    /// How late a fire may still run (see the module docs on misfires).
    pub misfire_grace: Duration,
    /// Run several due fires once instead of once each.
    pub coalesce: bool,
    /// Concurrent instances allowed.
    pub max_instances: u32,
    /// Each fire is delayed by a deterministic offset in `[0, jitter)`.
    pub jitter: Duration,
    /// A paused job has no next fire.
    pub paused: bool,
}

impl Schedule {
    /// The schedule of a checked spec.
    pub fn of(spec: &JobSpec) -> Schedule {
        Schedule {
            trigger: spec.trigger.clone(),
            misfire_grace: spec.misfire_grace,
            coalesce: spec.coalesce,
            max_instances: spec.max_instances,
            jitter: spec.jitter,
            paused: spec.paused,
        }
    }
}

impl From<&JobSpec> for Schedule {
    fn from(spec: &JobSpec) -> Schedule {
        Schedule::of(spec)
    }
}

impl From<Arc<JobSpec>> for Schedule {
    fn from(spec: Arc<JobSpec>) -> Schedule {
        Schedule::of(&spec)
    }
}

#[derive(Debug)]
struct Entry {
    /// Boxed: the job map holds many empty slots (it grows by doubling), each the size of an
    /// entry, so the entry stays small.
    schedule: Box<Schedule>,
    /// The next fire the trigger names (before jitter); `None` when paused or exhausted.
    next: Option<Timestamp>,
    paused: bool,
    running: u32,
    /// Identifies this entry's live heap item; bumped whenever `next` changes.
    generation: u64,
}

/// The scheduler core; see the module docs for the contract.
#[derive(Debug, Default)]
pub struct Core {
    jobs: HashMap<JobId, Entry>,
    /// (due time, job, generation); items whose generation is not the job's are stale.
    heap: BinaryHeap<Reverse<(Timestamp, JobId, u64)>>,
    fires: VecDeque<Fire>,
    dirty: HashSet<JobId>,
    next_generation: u64,
}

impl Core {
    /// An empty core.
    pub fn new() -> Core {
        Core::default()
    }

    /// An empty core with room for `jobs` jobs (a start loads them all at once).
    pub fn with_capacity(jobs: usize) -> Core {
        Core {
            jobs: HashMap::with_capacity(jobs),
            heap: BinaryHeap::with_capacity(jobs),
            ..Core::default()
        }
    }

    /// A core holding these jobs, as [`Core::upsert`] leaves an empty core after adding them
    /// one by one at `now` with their persisted next fires (`None`: computed strictly after
    /// `now`), but with the fire queue built in one pass rather than one push per job: how a
    /// driver loads the stored jobs at start.
    pub fn load(
        jobs: impl ExactSizeIterator<Item = (JobId, Schedule, Option<Timestamp>)>,
        now: Timestamp,
    ) -> Core {
        let mut core = Core::with_capacity(jobs.len());
        let mut heap = Vec::with_capacity(jobs.len());
        for (id, schedule, persisted) in jobs {
            let paused = schedule.paused;
            let next = if paused {
                None
            } else {
                persisted.or_else(|| schedule.trigger.next_after(now))
            };
            core.next_generation += 1;
            let generation = core.next_generation;
            if let Some(t) = next {
                heap.push(Reverse((due_time(id, schedule.jitter, t), id, generation)));
            }
            let entry = Entry {
                schedule: Box::new(schedule),
                next,
                paused,
                running: 0,
                generation,
            };
            // A repeated id replaces the earlier entry (whose heap item goes stale), as an
            // upsert would; the store already holds a persisted next fire.
            core.jobs.insert(id, entry);
            if next == persisted {
                core.dirty.remove(&id);
            } else {
                core.dirty.insert(id);
            }
        }
        core.heap = BinaryHeap::from(heap);
        core.tidy();
        core
    }

    /// Adds a job, or replaces the schedule of an existing one (its running count is kept).
    ///
    /// `next_fire_at` is the persisted next fire; `None` (a new job, or a changed spec) computes
    /// it strictly after `now`. A persisted value in the past is handled by the next
    /// [`Core::handle_timeout`] under the misfire rules. A spec with `paused` set is added
    /// paused. The job is reported by [`Core::take_dirty`] unless its next fire is the
    /// persisted one.
    pub fn upsert(
        &mut self,
        id: JobId,
        schedule: impl Into<Schedule>,
        next_fire_at: Option<Timestamp>,
        now: Timestamp,
    ) {
        let schedule = schedule.into();
        let paused = schedule.paused;
        let next = if paused {
            None
        } else {
            next_fire_at.or_else(|| schedule.trigger.next_after(now))
        };
        let running = self.jobs.get(&id).map_or(0, |e| e.running);
        self.jobs.insert(
            id,
            Entry {
                schedule: Box::new(schedule),
                next: None,
                paused,
                running,
                generation: 0,
            },
        );
        self.set_next(id, next);
        if next == next_fire_at {
            // The store already holds this value.
            self.dirty.remove(&id);
        }
        self.tidy();
    }

    /// Removes a job. Returns whether it existed. Fires already queued stay queued.
    pub fn remove(&mut self, id: JobId) -> bool {
        let existed = self.jobs.remove(&id).is_some();
        self.dirty.remove(&id);
        self.tidy();
        existed
    }

    /// Pauses a job: it keeps its spec and running count but has no next fire. Returns whether
    /// the job exists. The driver persists `paused` in the stored spec itself.
    pub fn pause(&mut self, id: JobId) -> bool {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return false;
        };
        if !entry.paused {
            entry.paused = true;
            self.set_next(id, None);
            self.tidy();
        }
        true
    }

    /// Resumes a paused job from `now`: the next fire is the first strictly after `now`, so
    /// fires missed while paused do not burst. Returns whether the job exists; resuming a job
    /// that is not paused changes nothing. (To replay missed fires instead, `upsert` the
    /// unpaused spec with the old `next_fire_at`; the misfire rules then apply.)
    pub fn resume(&mut self, id: JobId, now: Timestamp) -> bool {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return false;
        };
        if entry.paused {
            entry.paused = false;
            let next = entry.schedule.trigger.next_after(now);
            self.set_next(id, next);
            self.tidy();
        }
        true
    }

    /// Resumes a paused job with catch-up: the next fire is the first strictly after
    /// `paused_since` (when the job was paused), so every fire missed while paused is due at
    /// once and the next [`Core::handle_timeout`] applies the misfire rules to them (within
    /// `misfire_grace` they run, once with `coalesce`; older ones are reported missed). A
    /// trigger with no fire after `paused_since` resumes as [`Core::resume`] does. Returns
    /// whether the job exists; a job that is not paused changes nothing.
    pub fn resume_catching_up(
        &mut self,
        id: JobId,
        paused_since: Timestamp,
        now: Timestamp,
    ) -> bool {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return false;
        };
        if entry.paused {
            entry.paused = false;
            let trigger = &entry.schedule.trigger;
            let next = trigger
                .next_after(paused_since)
                .or_else(|| trigger.next_after(now));
            self.set_next(id, next);
            self.tidy();
        }
        true
    }

    /// The first fire of a new or changed spec at `now`: strictly after `now`, and `None` for
    /// a paused spec or a trigger with no fire left. [`Core::upsert`] computes exactly this for
    /// a job without a persisted next fire; a driver that stores a new job together with its
    /// first fire (one commit) asks here first, with the time it will pass to `upsert`.
    pub fn first_fire(spec: &JobSpec, now: Timestamp) -> Option<Timestamp> {
        if spec.paused {
            None
        } else {
            spec.trigger.next_after(now)
        }
    }

    /// "Run now": queues `Fire { kind: Run, scheduled_at: now }` and takes an instance slot,
    /// paused or not. Returns `false`, queueing nothing, for an unknown job or one already
    /// running `max_instances` instances. The schedule is not changed.
    pub fn run_now(&mut self, id: JobId, now: Timestamp) -> bool {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return false;
        };
        if entry.running >= entry.schedule.max_instances {
            return false;
        }
        entry.running += 1;
        self.fires.push_back(Fire {
            job: id,
            scheduled_at: now,
            kind: FireKind::Run,
        });
        true
    }

    /// Processes every job whose next fire is due at or before `now` (see the module docs for
    /// misfires, coalescing, jitter and `max_instances`) and advances it to its first fire due
    /// after `now`. Never fires early. Drain [`Core::poll_fire`] afterwards.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(&Reverse((due, id, generation))) = self.heap.peek() {
            if due > now {
                break;
            }
            self.heap.pop();
            let live = self
                .jobs
                .get(&id)
                .is_some_and(|e| e.generation == generation && e.next.is_some());
            if live {
                self.process_due(id, now);
            }
        }
        self.tidy();
    }

    /// The next queued fire, oldest first. Call until it returns `None` after every `handle_*`
    /// call, `run_now` and `resume`.
    pub fn poll_fire(&mut self) -> Option<Fire> {
        self.fires.pop_front()
    }

    /// The earliest instant at which [`Core::handle_timeout`] has work (a due time, jitter
    /// included), over all unpaused jobs; `None` when nothing is scheduled. May be in the past
    /// (call `handle_timeout` at once). Changes after any `handle_*`/`upsert`/`remove`/`pause`/
    /// `resume` call, so ask again after each.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        // `tidy` leaves the top live after every mutation.
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// An instance of `id` finished (succeeded, or failed after its last retry): frees one of
    /// its `max_instances` slots. Unknown jobs and jobs with no running instance are ignored.
    pub fn handle_finished(&mut self, id: JobId) {
        if let Some(entry) = self.jobs.get_mut(&id) {
            entry.running = entry.running.saturating_sub(1);
        }
    }

    /// Counts `n` more running instances of `id` without a fire: instances that outlived a
    /// restart (handler tasks still queued or leased). Call after [`Core::upsert`]; each is
    /// freed by [`Core::handle_finished`]. Unknown jobs are ignored.
    pub fn add_running(&mut self, id: JobId, n: u32) {
        if let Some(entry) = self.jobs.get_mut(&id) {
            entry.running = entry.running.saturating_add(n);
        }
    }

    /// The job's next scheduled fire (before jitter): `None` for unknown, paused and exhausted
    /// jobs.
    pub fn next_fire_at(&self, id: JobId) -> Option<Timestamp> {
        self.jobs.get(&id).and_then(|e| e.next)
    }

    /// Instances of `id` taken by [`FireKind::Run`] fires and not yet finished.
    pub fn running(&self, id: JobId) -> u32 {
        self.jobs.get(&id).map_or(0, |e| e.running)
    }

    /// Whether the job exists and is paused.
    pub fn is_paused(&self, id: JobId) -> bool {
        self.jobs.get(&id).is_some_and(|e| e.paused)
    }

    /// The job's schedule, as last upserted.
    pub fn schedule(&self, id: JobId) -> Option<&Schedule> {
        self.jobs.get(&id).map(|e| &*e.schedule)
    }

    /// Whether the core has this job.
    pub fn contains(&self, id: JobId) -> bool {
        self.jobs.contains_key(&id)
    }

    /// Number of jobs (paused and exhausted ones included).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether the core has no jobs.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Jobs whose next fire changed since the last call, with the value to persist, in id
    /// order. Removed jobs are not reported (the driver deleted them).
    pub fn take_dirty(&mut self) -> Vec<(JobId, Option<Timestamp>)> {
        let mut out: Vec<(JobId, Option<Timestamp>)> = self
            .dirty
            .drain()
            .filter_map(|id| self.jobs.get(&id).map(|e| (id, e.next)))
            .collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }

    /// Heap size, stale items included, for tests of the compaction.
    #[cfg(test)]
    pub(crate) fn heap_len_for_tests(&self) -> usize {
        self.heap.len()
    }

    // ---- internals ---------------------------------------------------------------------------

    /// Sets a job's next fire, marks it dirty and schedules its heap item.
    fn set_next(&mut self, id: JobId, next: Option<Timestamp>) {
        let Some(entry) = self.jobs.get_mut(&id) else {
            return;
        };
        self.next_generation += 1;
        entry.generation = self.next_generation;
        entry.next = next;
        self.dirty.insert(id);
        if let Some(t) = next {
            let due = due_time(id, entry.schedule.jitter, t);
            self.heap.push(Reverse((due, id, entry.generation)));
        }
    }

    /// Walks the due fires of one job (see the module docs) and queues what they turn into.
    fn process_due(&mut self, id: JobId, now: Timestamp) {
        let Some(entry) = self.jobs.get(&id) else {
            return;
        };
        let schedule = &entry.schedule;
        let trigger = &schedule.trigger;
        let jitter = schedule.jitter;
        let mut pending = entry.next;
        let mut out: Vec<Fire> = Vec::new();
        let fire = |scheduled_at, kind| Fire {
            job: id,
            scheduled_at,
            kind,
        };

        // Late fires: scheduled before `late_before`.
        let late_before = sub(now, schedule.misfire_grace.saturating_add(jitter));
        let mut listed = 0;
        while let Some(t) = pending {
            if t >= late_before {
                break;
            }
            if listed == MAX_LISTED_PER_CALL {
                out.push(fire(
                    t,
                    FireKind::MissedMany {
                        through: sub(late_before, Duration::from_nanos(1)),
                    },
                ));
                pending = trigger.next_after(sub(late_before, Duration::from_nanos(1)));
                break;
            }
            out.push(fire(t, FireKind::Missed));
            listed += 1;
            pending = trigger.next_after(t);
        }

        // Runnable fires: not late, due at or before `now`. Fires scheduled before
        // `surely_due` are due whatever their jitter, so once the outcome no longer depends on
        // each of them (coalescing, or the listing cap reached) the walk jumps over them.
        let surely_due = sub(now, jitter);
        let mut runs: Vec<Timestamp> = Vec::new();
        let mut excess: Option<(Timestamp, Timestamp)> = None;
        while let Some(t) = pending {
            if due_time(id, jitter, t) > now {
                break;
            }
            if schedule.coalesce {
                if runs.is_empty() {
                    runs.push(t);
                }
            } else if runs.len() < MAX_LISTED_PER_CALL {
                runs.push(t);
            } else {
                excess = Some((excess.map_or(t, |(first, _)| first), t));
            }
            let jump = (schedule.coalesce || excess.is_some()) && t < surely_due;
            pending = if jump {
                let target = sub(surely_due, Duration::from_nanos(1));
                if let Some((first, _)) = excess {
                    excess = Some((first, target));
                }
                trigger.next_after(target)
            } else {
                trigger.next_after(t)
            };
        }

        let max_instances = schedule.max_instances;
        let entry = self.jobs.get_mut(&id).expect("job looked up above");
        for t in runs {
            if entry.running < max_instances {
                entry.running += 1;
                out.push(fire(t, FireKind::Run));
            } else {
                out.push(fire(t, FireKind::Skipped));
            }
        }
        if let Some((first, through)) = excess {
            out.push(fire(first, FireKind::MissedMany { through }));
        }
        self.fires.extend(out);
        self.set_next(id, pending);
    }

    /// Drops stale items from the top of the heap so that `poll_timeout` can peek, and rebuilds
    /// the heap when most of it is stale.
    fn tidy(&mut self) {
        while let Some(&Reverse((_, id, generation))) = self.heap.peek() {
            let live = self
                .jobs
                .get(&id)
                .is_some_and(|e| e.generation == generation && e.next.is_some());
            if live {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 2 * self.jobs.len() + 1024 {
            let jobs = &self.jobs;
            let items: Vec<_> = std::mem::take(&mut self.heap)
                .into_iter()
                .filter(|Reverse((_, id, generation))| {
                    jobs.get(id)
                        .is_some_and(|e| e.generation == *generation && e.next.is_some())
                })
                .collect();
            self.heap = BinaryHeap::from(items);
        }
    }
}

/// `t - d`, saturating at the earliest representable instant.
fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

/// When the fire scheduled at `t` is due: `t` plus a deterministic offset in `[0, jitter)`.
fn due_time(id: JobId, jitter: Duration, t: Timestamp) -> Timestamp {
    let span = jitter.as_nanos();
    if span == 0 {
        return t;
    }
    let nanos = t.as_nanosecond();
    let h = mix(id.as_u64() ^ mix(nanos as u64 ^ mix((nanos >> 64) as u64)));
    // Multiply-shift maps the 64-bit hash onto [0, span) without modulo bias worth caring about.
    let offset = (u128::from(h) * span) >> 64;
    let offset = SignedDuration::from_nanos(offset as i64);
    t.checked_add(offset).unwrap_or(Timestamp::MAX)
}

/// SplitMix64's finaliser: a fixed, well-mixing permutation of `u64`, stable across releases
/// (unlike `std`'s hashers), so jitter offsets survive upgrades.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
