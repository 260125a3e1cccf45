//! The `history` part of the scheduler bench (issue 12): `appliance serve` ready with 100k jobs
//! and a month of finished runs, this build against an earlier one (`APPLIANCE_BEFORE`), each
//! on its own copy of the same data, alternating. Before `open_runs` (schema 5) a start decoded
//! every run row to find the few a stop interrupted.
//!
//! The database is filled untimed through the store's own API (`Store::start_runs`, 50k runs
//! per transaction), then turned into what a version 4 file holds (no `open_runs`, schema 4),
//! so the earlier binary opens it as its own and this one upgrades its copy at its first start
//! (timed once, reported apart). Only loopback is listened on; nothing is sent anywhere.
#![allow(clippy::disallowed_methods)] // benchmark: reads clocks

use std::path::{Path, PathBuf};
use std::process::Command;

use appliance::model::{RunRecord, RunStatus};
use appliance::sched::JobId;
use appliance::store::Store;
use jiff::{SignedDuration, Timestamp};
use redb::{Database, TableDefinition};

use super::serve::Served;
use super::temp_dir::TempDir;

/// Finished runs in the history: 30 days of a busy guild (about 23 fires a minute).
pub const HISTORY_RUNS: usize = 1_000_000;
/// Rounds of (this build, the earlier one), after one warm-up each.
const ROUNDS: usize = 5;
const CHUNK: usize = 50_000;

/// Appends `n` succeeded runs over the last 30 days, spread over `jobs` (their ids from
/// `first_job`), to the database at `db`.
fn fill_runs(db: &Path, n: usize, first_job: u64, jobs: usize) {
    let store = Store::open(db).expect("open store");
    let start = Timestamp::now() - SignedDuration::from_hours(24 * 30);
    let step = SignedDuration::from_hours(24 * 30) / n as i32;
    for lo in (0..n).step_by(CHUNK) {
        let mut runs: Vec<RunRecord> = (lo..(lo + CHUNK).min(n))
            .map(|i| {
                let at = start + step * i as i32;
                let job = i % jobs;
                RunRecord {
                    started_at: Some(at),
                    finished_at: Some(at + SignedDuration::from_millis(42)),
                    attempt: 1,
                    status: RunStatus::Succeeded,
                    http_status: Some(204),
                    duration_ms: Some(42),
                    ..RunRecord::starting(
                        JobId::from_u64(first_job + job as u64),
                        format!("raid-reminder-{job}"),
                        at,
                        "schedule",
                    )
                }
            })
            .collect();
        store.start_runs(&mut runs, &[]).expect("store runs");
    }
}

/// Makes the closed database at `db` what a version 4 file holds: no `open_runs`.
fn as_version_4(db: &Path) {
    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    const OPEN_RUNS: TableDefinition<u64, ()> = TableDefinition::new("open_runs");
    let db = Database::open(db).expect("open redb");
    let txn = db.begin_write().expect("write");
    txn.delete_table(OPEN_RUNS).expect("drop open_runs");
    txn.open_table(META)
        .expect("meta")
        .insert("schema_version", b"4".as_slice())
        .expect("set version");
    txn.commit().expect("commit");
}

fn copy_dir(from: &Path, to: &Path) {
    let mut src = from.as_os_str().to_owned();
    src.push("/.");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(ok.success(), "cp -a: {ok}");
}

fn ready_ms(bin: &Path, dir: &Path) -> f64 {
    let mut served = Served::start(bin, dir);
    let ms = served.ready_ms();
    served.stop();
    ms
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The earlier build to compare with (`APPLIANCE_BEFORE`); without it the part only says how
/// to run it.
pub fn before(out: &mut String) -> Option<PathBuf> {
    let before = std::env::var_os("APPLIANCE_BEFORE").map(PathBuf::from);
    if before.is_none() {
        out.push_str(
            "### History: set APPLIANCE_BEFORE to an earlier build of `appliance` to compare\n\n",
        );
    }
    before
}

/// The part: `jobs` is an `init`ed data directory holding the startup bench's jobs (ids from
/// `first_job`); `bin` this build, `before` the earlier one.
pub fn bench(
    out: &mut String,
    bin: &Path,
    before: &Path,
    jobs: &TempDir,
    first_job: u64,
    job_count: usize,
) {
    let t = std::time::Instant::now();
    fill_runs(&jobs.db(), HISTORY_RUNS, first_job, job_count);
    as_version_4(&jobs.db());
    eprintln!("history setup: {HISTORY_RUNS} runs in {:?}", t.elapsed());
    let mine = TempDir::new("sched", "history-after");
    let theirs = TempDir::new("sched", "history-before");
    copy_dir(&jobs.0, &mine.0);
    copy_dir(&jobs.0, &theirs.0);
    // `HISTORY_KEEP=DIR` also keeps a copy of the version 4 data in DIR (for `perf record`).
    if let Some(keep) = std::env::var_os("HISTORY_KEEP") {
        std::fs::create_dir_all(&keep).expect("create HISTORY_KEEP");
        copy_dir(&jobs.0, Path::new(&keep));
    }
    let upgrade = ready_ms(bin, &mine.0);
    ready_ms(before, &theirs.0);
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        a.push(ready_ms(bin, &mine.0));
        b.push(ready_ms(before, &theirs.0));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("history: after {a:?} ms, before {b:?} ms, first start (upgrade) {upgrade:.0} ms");
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (ma, mb) = (median(a.clone()), median(b.clone()));
    out.push_str(&format!(
        "### History: ready with {job_count} jobs and {HISTORY_RUNS} finished runs \
         ({ROUNDS} rounds alternating, each binary on its own copy; load {})\n\n\
         | binary | ready (ms), runs | median (ms) |\n|---|---|---|\n\
         | baseline: `APPLIANCE_BEFORE` | {} | {mb:.0} |\n\
         | this build | {} | {ma:.0} |\n\
         | **ratio** this / before | | **{:.2}** |\n\n\
         This build's first start on its copy (the 4 → 5 upgrade fills `open_runs`): \
         {upgrade:.0} ms.\n\n",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        fmt(&b),
        fmt(&a),
        ma / mb
    ));
}
