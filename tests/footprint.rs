//! Memory per job (issue 12): the live heap that loaded jobs hold, counted by a global
//! allocator, stays under a bound — for the decoded records (`Store::jobs()`), and for the
//! scheduler once it has started (job table and core, which keep each job's schedule summary
//! and name, not its spec: the spec is read from the store when the job fires or is shown).
//!
//! One test in this binary, so nothing else allocates while it counts; the runtime is
//! single-threaded for the same reason. The bounds sit between the figures before and after
//! the change they guard. Records: 2,081 B before the typed decode and the body kept as text
//! (0a6c53e), 1,455 B after. Started scheduler: 4,530 B per job with each spec held twice
//! (0a6c53e), 1,759 B with one shared spec (48ae411), 560 B with summaries only (what each
//! job adds to a scheduler started on an empty store), 627 B with the job table's name index
//! (a create's uniqueness check is one lookup, not a pass over every job). Half the jobs carry
//! a ScheduleZero id equal to their name, as `POST /api/schedule` creates them: 678 B with a
//! separate index of those ids (729 B for such a job), 627 B finding them through the name
//! index (an id other than the name, as after a rename, still costs about 100 B).

use std::sync::Arc;

use appliance::model::JobRecord;
use appliance::sched::spec::SCHEDULEZERO_ID;
use appliance::scheduler;
use appliance::store::Store;
use jiff::Timestamp;

#[path = "../benches/support/raid_job.rs"]
mod raid_job;

#[path = "../benches/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::live;

const JOBS: usize = 2_000;
/// Live heap of one decoded record (`Store::jobs()`), in bytes.
const RECORD_BOUND: f64 = 1_700.0;
/// Live heap per job of a started scheduler (table entry with the name, core entry with the
/// schedule, the heap item).
const SCHEDULER_BOUND: f64 = 650.0;

/// The footprint bench's job, a weekly Discord reminder with a small JSON body, with 60
/// distinct cron patterns (the bench's 1,440 would make the shared parsed patterns count
/// here as per-job bytes: 2,000 jobs are fewer than in the bench); every other one carries
/// its name as its ScheduleZero id, as a job `POST /api/schedule` created.
fn cron_job(i: usize, now: Timestamp) -> JobRecord {
    let mut job = raid_job::weekly_record(i, i % 60, 19, now, "test");
    if i % 2 == 0 {
        let spec = Arc::make_mut(&mut job.spec);
        let id = serde_json::Value::from(spec.name.as_str());
        spec.metadata.insert(SCHEDULEZERO_ID.into(), id);
    }
    job
}

#[tokio::test(flavor = "current_thread")]
async fn loaded_jobs_hold_a_bounded_heap_per_job() {
    let dir = std::env::temp_dir().join(format!("appliance-footprint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Store::create(&dir.join("appliance.redb"), None).unwrap());
    let now: Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
    for i in 0..JOBS {
        assert!(store.insert_job(&cron_job(i, now), None).unwrap());
    }
    // Once untimed: redb's page cache (bounded, store/footprint.rs) fills on the first read
    // of each table (the rows, and the summaries a scheduler starts from).
    drop(store.jobs().unwrap());
    drop(store.job_summaries().unwrap());

    let before = live();
    let loaded = store.jobs().unwrap();
    let per_record = (live() - before) as f64 / JOBS as f64;
    assert_eq!(loaded.rows.len(), JOBS);
    drop(loaded);
    assert!(
        per_record <= RECORD_BOUND,
        "a decoded job holds {per_record:.0} B of heap; the bound is {RECORD_BOUND} B"
    );

    // What a scheduler holds with no job at all (the webhook client's TLS roots, channels,
    // the task queue): a baseline started the same way on an empty store, so the bound is on
    // what each job adds.
    let empty = Arc::new(Store::create(&dir.join("empty.redb"), None).unwrap());
    let (_stop_empty, stop) = tokio::sync::watch::channel(false);
    let before = live();
    let (idle, _idle_task) = scheduler::start(empty, scheduler::Config::default(), stop).unwrap();
    let fixed = live() - before;
    assert_eq!(idle.counts().0, 0);

    let (_stop, stop) = tokio::sync::watch::channel(false);
    let before = live();
    let (jobs, _task) =
        scheduler::start(store.clone(), scheduler::Config::default(), stop).unwrap();
    let per_job = (live() - before - fixed) as f64 / JOBS as f64;
    assert_eq!(jobs.counts().0, JOBS);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "heap per job: decoded record {per_record:.0} B, started scheduler {per_job:.0} B \
         (beyond the {fixed} B of a scheduler with no job)"
    );
    assert!(
        per_job <= SCHEDULER_BOUND,
        "a started scheduler holds {per_job:.0} B of heap per job; the bound is {SCHEDULER_BOUND} B"
    );
}
