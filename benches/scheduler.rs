//! Scheduler figures from issue 4 ("Measure and note"): job creates per second, startup with
//! 100k jobs, and firing lateness of 1k jobs due at the same instant posting to a local sink.
//!
//! Layer: benchmark (a driver: reads clocks, sleeps, spawns the binary). Each figure is measured
//! side by side with a baseline in the same process and session (STYLE.md rule 11):
//! - creates/s through `scheduler::Handle::create` vs bare redb commits/s (one `Durability::Immediate` write
//!   transaction per insert of a value the size of a stored job row, fresh database, same disk);
//! - `scheduler::start` with 100k stored jobs vs `Store::jobs()` alone (raw load + JSON decode), and
//!   the whole `appliance serve` binary with 100k jobs vs an empty database;
//! - lateness of 1000 scheduler fires at a loopback sink vs a bare tokio task that sleeps until
//!   the same kind of instant and fires the same 1000 webhooks through the same `Executor`;
//!   the same with the 1000 fires spread 1 ms apart over one second vs 1000 bare tasks each
//!   sleeping until its own instant.
//!
//! All traffic stays on 127.0.0.1 (the sink runs in this process); every loop is bounded; data
//! lives in temp dirs under `std::env::temp_dir()`, removed on drop. The 100k-job and 1k-job
//! databases are filled untimed through `Store::insert_jobs_unaudited`, 10k jobs per
//! transaction (the `Store` API's creates commit one job each, which would take minutes of
//! fsyncs), so the rows and their schedule summaries are the store's own encoding.
//!
//! Run: `cargo bench --bench scheduler` (one part: `-- creates`, `-- startup`, `-- lateness`
//! (1000 fires at one instant), `-- spread` (1000 fires 1 ms apart: "1000 jobs due within a
//! second", issue 12's keep-goal) or `-- history` (with `APPLIANCE_BEFORE`: see
//! `support/history.rs`)). Figures and ratios: benches/RESULTS-scheduler.md.
#![allow(clippy::disallowed_methods)] // benchmark: reads clocks and sleeps

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance::model::{Actor, AuditEntry, JobRecord};
use appliance::sched::{Action, JobId, JobSpec, Webhook};
use appliance::scheduler::{self, Handle};
use appliance::store::Store;
use appliance::webhook::{Executor, NetPolicy};
use jiff::{SignedDuration, Timestamp};
use redb::{Database, TableDefinition};
use serde_json::{json, Value};
use tokio::sync::watch;

#[path = "support/mod.rs"]
#[allow(dead_code)] // each bench uses its own share of it
mod support;
use support::bare_commits::bare_commits;
use support::serve::Served;
use support::temp_dir::TempDir;
use support::webhook_sink::{start_sink, Hits};
use support::{history, parts, raid_job};

/// Sequential creates per round, and the concurrent split (callers x creates each).
const CREATES: usize = 512;
const CALLERS: usize = 16;
const CREATE_ROUNDS: usize = 5;
/// Jobs in the startup database.
const STARTUP_JOBS: usize = 100_000;
const STARTUP_ROUNDS: usize = 5;
/// The id of the startup database's first job.
const FIRST_JOB: u64 = 0x5eed_0000_0000;
/// Jobs due at the same instant, and rounds of (appliance, baseline).
const BURST: usize = 1000;
const BURST_ROUNDS: usize = 5;
/// How far ahead the burst instant is set.
const LEAD: Duration = Duration::from_secs(3);
/// Upper bound on waiting for a burst to arrive.
const BURST_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Opens the bench database, creating it (schema only, no server key) on first use.
fn open_db(path: &std::path::Path) -> Result<Store, appliance::store::OpenError> {
    if path.exists() {
        Store::open(path)
    } else {
        Store::create(path, None)
    }
}

fn actor() -> Actor {
    Actor {
        peer: "bench".into(),
        fingerprint: None,
        address: Some("10.88.88.2".into()),
        endpoint: None,
        via: appliance::model::Via::Api,
    }
}

/// A job body of kind `i % 3` (every / cron / at), posting to a loopback URL that is never hit
/// (none of these fires within the benchmark).
fn job_body(i: usize, now: Timestamp) -> Value {
    let trigger = match i % 3 {
        0 => {
            let every = ["30m", "1h", "2h", "6h"][i / 3 % 4];
            json!({"every": every})
        }
        1 => json!({"cron": "45 19 * * THU", "timezone": "Europe/Berlin"}),
        _ => {
            let at = now + SignedDuration::from_secs(86_400 + i as i64);
            json!({"at": at.to_string()})
        }
    };
    raid_job::raid_reminder(
        i,
        trigger,
        &format!("http://127.0.0.1:9/api/webhooks/{i}/not-a-real-token"),
    )
}

/// Creates (or opens) the appliance database at `dir` and stores `jobs` (id, spec, next fire)
/// through `Store::insert_jobs_unaudited`, 10k per transaction (untimed setup: the `Store` API's
/// creates commit one job each, which would take minutes of fsyncs). The rows and their
/// schedule summaries are the store's own encoding.
fn bulk_fill(dir: &TempDir, jobs: impl Iterator<Item = (u64, JobSpec, Option<Timestamp>)>) {
    let store = open_db(&dir.db()).expect("open store");
    let now_ms = Timestamp::now().as_millisecond() as u64;
    let mut jobs = jobs
        .map(|(id, spec, next)| JobRecord {
            id: JobId::from_u64(id),
            spec: Arc::new(spec),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            created_by: "bench".into(),
            next_fire_at: next,
            paused_at_ms: None,
        })
        .peekable();
    while jobs.peek().is_some() {
        let chunk: Vec<JobRecord> = jobs.by_ref().take(10_000).collect();
        store.insert_jobs_unaudited(&chunk).expect("store jobs");
    }
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Webhooks may reach the loopback sink (as with `serve --allow-webhook-net 127.0.0.0/8`).
fn loopback_policy() -> NetPolicy {
    NetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()])
}

/// Start the appliance's scheduler on `store`; returns it with its stop switch and task.
fn start_jobs(store: Arc<Store>) -> (Handle, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let config = scheduler::Config {
        webhook_policy: loopback_policy(),
        ..scheduler::Config::default()
    };
    let (jobs, task) = scheduler::start(store, config, rx).expect("start jobs");
    (jobs, tx, task)
}

async fn stop_jobs(jobs: Handle, tx: watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
    let _ = tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    drop(jobs);
}

// ---------------------------------------------------------------------------------------------
// 1. Creates per second

/// `Store::insert_job` (job row + audit entry in one durable transaction) `n` times from
/// `callers` threads on a fresh appliance database, records built beforehand. Returns
/// inserts/s.
fn store_inserts(n: usize, callers: usize) -> f64 {
    let dir = TempDir::new("sched", "store");
    let store = open_db(&dir.db()).unwrap();
    let now = Timestamp::now();
    let now_ms = now.as_millisecond() as u64;
    let records: Vec<(JobRecord, AuditEntry)> = (0..n)
        .map(|i| {
            let spec = JobSpec::from_json(&job_body(i, now), Some(now)).unwrap();
            let id = JobId::from_u64(i as u64 + 1);
            let audit = AuditEntry {
                seq: 0,
                at_ms: now_ms,
                actor: actor(),
                action: appliance::model::JobAction::Create.into(),
                target: Some(id.to_string()),
                summary: spec.redacted_json(),
            };
            let rec = JobRecord {
                id,
                spec: std::sync::Arc::new(spec),
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                created_by: "bench".into(),
                next_fire_at: None,
                paused_at_ms: None,
            };
            (rec, audit)
        })
        .collect();
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..callers {
            let (store, next, records) = (&store, &next, &records);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let (rec, audit) = &records[i];
                assert!(store.insert_job(rec, Some(audit.clone())).unwrap());
            });
        }
    });
    n as f64 / t0.elapsed().as_secs_f64()
}

/// This process's CPU time so far, (user, system) in µs.
fn cpu_us() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    (us(u.ru_utime), us(u.ru_stime))
}

/// What one round of `Handle::create` measured.
struct Creates {
    /// Creates per second.
    rate: f64,
    /// Creates per group commit.
    per_batch: f64,
    /// Process CPU per create, µs: user (our code, redb, the runtime) and system (syscalls,
    /// the disk's writes and syncs). Load-independent, unlike the rate on a shared disk.
    user_us: f64,
    sys_us: f64,
}

/// `Handle::create` `n` times from `callers` tasks on a fresh appliance database.
async fn appliance_creates(n: usize, callers: usize) -> Creates {
    let dir = TempDir::new("sched", "creates");
    let store = Arc::new(open_db(&dir.db()).unwrap());
    let (batches0, changes0) = store.group_commit_counts();
    let (jobs, tx, task) = start_jobs(store.clone());
    let jobs = Arc::new(jobs);
    let now = Timestamp::now();
    let bodies: Arc<Vec<Value>> = Arc::new((0..n).map(|i| job_body(i, now)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let actor = actor();
    let t0 = Instant::now();
    let cpu0 = cpu_us();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (jobs, bodies, next, actor) =
            (jobs.clone(), bodies.clone(), next.clone(), actor.clone());
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                // Decoded here, as the API route does before it calls `create`.
                let job = appliance::sched::JobDraft::from_value(&bodies[i]).expect("a job");
                jobs.create(job, &actor).await.expect("create");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let cpu1 = cpu_us();
    let (batches, changes) = store.group_commit_counts();
    let per_batch = (changes - changes0) as f64 / (batches - batches0).max(1) as f64;
    assert_eq!(jobs.counts().0, n, "every create is scheduled");
    let jobs = Arc::try_unwrap(jobs).ok().expect("callers are done");
    stop_jobs(jobs, tx, task).await;
    Creates {
        rate,
        per_batch,
        user_us: (cpu1.0 - cpu0.0) / n as f64,
        sys_us: (cpu1.1 - cpu0.1) / n as f64,
    }
}

/// The disk's own rate of durable writes: `n` times, 4 KiB written at the start of a file and
/// `fdatasync`; returns syncs/s. Context for the create rates: a batch costs one commit, and
/// a redb commit syncs more than once.
fn fsync_probe(n: usize) -> f64 {
    use std::io::{Seek, SeekFrom, Write};
    let dir = TempDir::new("sched", "fsync");
    let mut f = std::fs::File::create(dir.0.join("probe")).expect("create probe file");
    let block = [0x5a_u8; 4096];
    let t0 = Instant::now();
    for _ in 0..n {
        f.seek(SeekFrom::Start(0)).expect("seek");
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

async fn bench_creates(out: &mut String) {
    let now = Timestamp::now();
    let spec = JobSpec::from_json(&job_body(0, now), Some(now)).unwrap();
    let row_size = appliance::store::encode_job_for_fixture(&JobRecord {
        id: JobId::from_u64(1),
        next_fire_at: spec.trigger.next_after(now),
        spec: Arc::new(spec),
        created_at_ms: now.as_millisecond() as u64,
        updated_at_ms: now.as_millisecond() as u64,
        created_by: "bench".into(),
        paused_at_ms: None,
    })
    .len();
    let mut rows = Vec::new();
    for round in 1..=CREATE_ROUNDS {
        for callers in [1, CALLERS] {
            let dir = TempDir::new("sched", "bare");
            let bare = tokio::task::spawn_blocking(move || {
                bare_commits(&dir.0, CREATES, callers, row_size)
            })
            .await
            .unwrap();
            let c = appliance_creates(CREATES, callers).await;
            let (app, per_batch) = (c.rate, c.per_batch);
            let syncs = tokio::task::spawn_blocking(|| fsync_probe(200))
                .await
                .unwrap();
            let st = tokio::task::spawn_blocking(move || store_inserts(CREATES, callers))
                .await
                .unwrap();
            rows.push((
                round, callers, app, st, bare, per_batch, syncs, c.user_us, c.sys_us,
            ));
            eprintln!(
                "creates round {round} callers {callers}: {app:.0}/s ({per_batch:.1} per batch; CPU per create {:.0} µs user + {:.0} µs sys), insert_job {st:.0}/s, bare {bare:.0}/s, disk {syncs:.0} fdatasync/s",
                c.user_us, c.sys_us
            );
        }
    }
    out.push_str(&format!(
        "### 1. Job creates per second ({CREATES} creates per run, fresh database each run)\n\n\
         Baseline: bare redb, one `Durability::Immediate` write transaction per insert of a \
         {row_size}-byte value (the size of a stored job row), same callers, same disk. In \
         between, for attribution: `Store::insert_job` alone (the same job row plus its audit \
         entry in one durable transaction; records built beforehand: no validation, no async \
         hop, no scheduling). Order in each round: bare, `Jobs::create`, `insert_job`.\n\n\
         `Jobs::create` also shows the creates per group commit (changes / batches) and the \
         process's CPU time per create (user and system, from `getrusage`: the load-independent \
         figure on a shared disk), and each \
         round ends with the disk's own rate: 200 × (4 KiB write + `fdatasync`) on one file.\n\n\
         | round | callers | `Jobs::create` /s | creates per commit | CPU µs per create (user + sys) | `Store::insert_job` /s | bare redb commits/s \
         | ratio create / bare | ratio insert_job / bare | disk fdatasync/s |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    ));
    for (round, callers, app, st, bare, per_batch, syncs, user, sys) in &rows {
        out.push_str(&format!(
            "| {round} | {callers} | {app:.0} | {per_batch:.1} | {user:.0} + {sys:.0} | {st:.0} | {bare:.0} | {:.2} | {:.2} | {syncs:.0} |\n",
            app / bare,
            st / bare
        ));
    }
    type Row = (usize, usize, f64, f64, f64, f64, f64, f64, f64);
    for callers in [1, CALLERS] {
        let pick =
            |f: fn(&Row) -> f64| median(rows.iter().filter(|r| r.1 == callers).map(f).collect());
        let (app, st, bare) = (pick(|r| r.2), pick(|r| r.3), pick(|r| r.4));
        let (per_batch, syncs) = (pick(|r| r.5), pick(|r| r.6));
        let (user, sys) = (pick(|r| r.7), pick(|r| r.8));
        out.push_str(&format!(
            "| **median** | {callers} | **{app:.0}** | {per_batch:.1} | **{user:.0} + {sys:.0}** | **{st:.0}** | **{bare:.0}** \
             | **{:.2}** | **{:.2}** | {syncs:.0} |\n",
            app / bare,
            st / bare
        ));
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------------------------
// 2. Startup with 100k jobs

fn fill_startup(dir: &TempDir) {
    let now = Timestamp::now();
    // Every job's next fire is at least an hour away: nothing fires while the binary runs.
    let horizon = now + SignedDuration::from_secs(3600);
    bulk_fill(
        dir,
        (0..STARTUP_JOBS).map(|i| {
            let spec = JobSpec::from_json(&job_body(i, now), Some(now)).unwrap();
            let next = spec.trigger.next_after(horizon);
            assert!(next.is_some());
            (FIRST_JOB + i as u64, spec, next)
        }),
    );
}

/// Reads every `jobs` row of the closed database at `db` with redb (outside the timing) and
/// decodes each through a JSON tree and `JobSpec::from_json`, as the store did before the
/// typed decode; returns (ms of the decode, rows).
fn tree_decode(db: &Path) -> (f64, usize) {
    use redb::ReadableTable;
    const JOBS_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
    let db = Database::open(db).expect("open redb");
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(JOBS_TABLE).expect("jobs table");
    let rows: Vec<Vec<u8>> = table
        .iter()
        .expect("iterate")
        .map(|r| r.expect("row").1.value().to_vec())
        .collect();
    let t = Instant::now();
    let specs: Vec<JobSpec> = rows
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(r).expect("row is JSON");
            JobSpec::from_json(&v["spec"], None).expect("row is a spec")
        })
        .collect();
    (t.elapsed().as_secs_f64() * 1e3, specs.len())
}

/// Spawns `appliance serve` on `dir`; returns (socket file exists, control socket answers),
/// in ms since spawn, then stops it with SIGTERM.
fn serve_once(bin: &Path, dir: &TempDir) -> (f64, f64) {
    let mut served = Served::start(bin, &dir.0);
    let times = (served.socket_ms(), served.ready_ms());
    served.stop();
    times
}

/// An `init`ed data directory holding [`STARTUP_JOBS`] jobs (filled untimed).
fn startup_dir(bin: &Path, tag: &str) -> TempDir {
    let full = TempDir::new("sched", tag);
    // `serve` refuses a database without a server record (exit 3, issue 13), so the jobs go
    // into a directory `init` made, as a user's would.
    let init = Command::new(bin)
        .arg("--data-dir")
        .arg(&full.0)
        .args(["init", "--endpoint", "127.0.0.1:51820"])
        .stdout(Stdio::null())
        .status()
        .expect("run appliance init");
    assert!(init.success(), "appliance init: {init}");
    let t = Instant::now();
    tokio::task::block_in_place(|| fill_startup(&full));
    eprintln!(
        "startup setup: {STARTUP_JOBS} jobs written in {:?}",
        t.elapsed()
    );
    full
}

async fn bench_startup(out: &mut String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_appliance"));
    let full = startup_dir(bin, "startup100k");

    // In process: Store::jobs() vs scheduler::start, alternating, and the rows read with
    // redb and decoded the way they were before the typed decode (a JSON tree, then
    // `JobSpec::from_json`), between them.
    let (mut load, mut start, mut tree) = (Vec::new(), Vec::new(), Vec::new());
    let mut summaries = Vec::new();
    for _ in 0..STARTUP_ROUNDS {
        let store = Arc::new(open_db(&full.db()).unwrap());
        let t = Instant::now();
        let n = tokio::task::block_in_place(|| store.jobs().unwrap().rows.len());
        load.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(n, STARTUP_JOBS, "every stored row loads back");

        let t = Instant::now();
        let n = tokio::task::block_in_place(|| store.job_summaries().unwrap().rows.len());
        summaries.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(n, STARTUP_JOBS, "every stored job has its summary");

        let t = Instant::now();
        let (jobs, tx, task) = tokio::task::block_in_place(|| start_jobs(store.clone()));
        start.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(jobs.counts().0, STARTUP_JOBS);
        stop_jobs(jobs, tx, task).await;
        drop(store);

        let (ms, n) = tokio::task::block_in_place(|| tree_decode(&full.db()));
        assert_eq!(n, STARTUP_JOBS);
        tree.push(ms);
    }
    eprintln!("startup in process: load {load:?} ms, summaries {summaries:?} ms, start {start:?} ms, tree decode {tree:?} ms");

    // The whole binary: 100k jobs vs empty, alternating after one untimed warm-up each (which
    // also writes the server record on first run).
    // With `APPLIANCE_BEFORE` (an earlier commit's build) set, that binary serves the same
    // 100k database in the same rounds: a before/after in one run.
    let before = std::env::var_os("APPLIANCE_BEFORE").map(std::path::PathBuf::from);
    let empty = TempDir::new("sched", "startup-empty");
    let (mut e_sock, mut e_ready, mut f_sock, mut f_ready) = (vec![], vec![], vec![], vec![]);
    let mut b_ready = vec![];
    tokio::task::block_in_place(|| {
        serve_once(bin, &empty);
        serve_once(bin, &full);
        if let Some(b) = &before {
            serve_once(b, &full);
        }
        for _ in 0..STARTUP_ROUNDS {
            let (s, r) = serve_once(bin, &empty);
            e_sock.push(s);
            e_ready.push(r);
            let (s, r) = serve_once(bin, &full);
            f_sock.push(s);
            f_ready.push(r);
            if let Some(b) = &before {
                b_ready.push(serve_once(b, &full).1);
            }
        }
    });
    eprintln!(
        "binary: empty ready {e_ready:?} ms, 100k ready {f_ready:?} ms, before {b_ready:?} ms"
    );

    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (ml, ms, mt, msu) = (
        median(load.clone()),
        median(start.clone()),
        median(tree.clone()),
        median(summaries.clone()),
    );
    out.push_str(&format!(
        "### 2. Startup with {STARTUP_JOBS} jobs (every / cron / at, one third each; \
         {STARTUP_ROUNDS} runs each, alternating; median)\n\n\
         | measurement | runs (ms) | median (ms) |\n|---|---|---|\n\
         | baseline: the rows through a JSON tree + `JobSpec::from_json` (the decode before) | {} | {mt:.0} |\n\
         | `Store::jobs()` (read + typed decode + spec check) | {} | {ml:.0} |\n\
         | `Store::job_summaries()` (what the scheduler loads: summaries checked against the rows' hashes) | {} | {msu:.0} |\n\
         | `Jobs::start` (summaries + core upserts + table) | {} | {ms:.0} |\n\
         | **ratio** `Store::jobs()` / tree decode | | **{:.2}** |\n\
         | **ratio** `Store::job_summaries()` / `Store::jobs()` | | **{:.2}** |\n\
         | **ratio** `Jobs::start` / `Store::jobs()` | | **{:.2}** |\n\n",
        fmt(&tree),
        fmt(&load),
        fmt(&summaries),
        fmt(&start),
        ml / mt,
        msu / ml,
        ms / ml
    ));
    if !b_ready.is_empty() {
        let mb = median(b_ready.clone());
        out.push_str(&format!(
            "Before/after, same rounds: `APPLIANCE_BEFORE` ready with {STARTUP_JOBS} jobs {} ms \
             (median {mb:.0}); this commit {:.0}; **ratio {:.2}**.\n\n",
            fmt(&b_ready),
            median(f_ready.clone()),
            median(f_ready.clone()) / mb
        ));
    }
    let (es, er, fs, fr) = (
        median(e_sock.clone()),
        median(e_ready.clone()),
        median(f_sock.clone()),
        median(f_ready.clone()),
    );
    out.push_str(&format!(
        "Whole binary, `appliance --data-dir D serve --listen 127.0.0.1:0`, spawn until \
         `D/control.sock` exists, and until it answers a `peer_list` request (the control \
         socket is bound before the scheduler loads, but served only after `Jobs::start`), \
         then SIGTERM:\n\n\
         | database | control.sock exists (ms) | answers (ms), runs | answers, median (ms) |\n\
         |---|---|---|---|\n\
         | baseline: empty | {es:.0} | {} | {er:.0} |\n\
         | {STARTUP_JOBS} jobs | {fs:.0} | {} | {fr:.0} |\n\
         | **difference** | {:.0} | | **{:.0}** (ratio {:.1}) |\n\n",
        fmt(&e_ready),
        fmt(&f_ready),
        fs - es,
        fr - er,
        fr / er
    ));
}

// ---------------------------------------------------------------------------------------------
// 3. Firing lateness

/// A whole second at least `LEAD` from now.
fn burst_instant() -> Timestamp {
    let t = Timestamp::now() + SignedDuration::try_from(LEAD).unwrap();
    Timestamp::from_second(t.as_second() + 1).unwrap()
}

/// When job `i` of a round is due: all at `at` (a burst, `step` zero), or `i` steps after it
/// (spread: 1000 jobs 1 ms apart are "1000 jobs due within one second").
fn due(at: Timestamp, i: usize, step: Duration) -> Timestamp {
    at + SignedDuration::try_from(step * i as u32).unwrap()
}

fn burst_body(addr: SocketAddr, prefix: &str, i: usize, at: Timestamp) -> Value {
    json!({
        "name": format!("burst-{i}"),
        "trigger": {"at": at.to_string()},
        "action": {"webhook": {
            "url": format!("http://{addr}/{prefix}/{i}"),
            "body": {"content": "@raiders raid starts now"}
        }}
    })
}

/// Waits until `n` hits under `prefix` arrived (bounded), then a little longer to catch
/// duplicates; returns each hit's lateness in ms (against its own due time, [`due`]), and
/// whether every index arrived exactly once.
async fn collect(
    hits: &Hits,
    prefix: &str,
    at: Timestamp,
    step: Duration,
    n: usize,
) -> (Vec<f64>, bool) {
    let p = format!("/{prefix}/");
    let count = || {
        hits.lock()
            .unwrap()
            .iter()
            .filter(|h| h.0.starts_with(&p))
            .count()
    };
    let t0 = Instant::now();
    while count() < n && t0.elapsed() < BURST_DEADLINE + LEAD + step * n as u32 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = hits.lock().unwrap();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut late = Vec::new();
    for (path, t) in hits.iter().filter(|h| h.0.starts_with(&p)) {
        let i: usize = path[p.len()..].parse().unwrap();
        *seen.entry(i).or_default() += 1;
        late.push(due(at, i, step).duration_until(*t).as_secs_f64() * 1e3);
    }
    late.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let once = seen.len() == n && seen.values().all(|&c| c == 1);
    (late, once)
}

/// The scheduler's own lateness (p50 ms, p99 ms, samples) and (fired, succeeded, failed).
type SchedStats = ((u64, u64, usize), (u64, u64, u64));

struct Burst {
    /// Lateness at the sink, ms, sorted.
    late: Vec<f64>,
    /// Every job's request arrived exactly once.
    once: bool,
    stats: Option<SchedStats>,
}

async fn appliance_burst(addr: SocketAddr, hits: &Hits, round: usize, step: Duration) -> Burst {
    let dir = TempDir::new("sched", "burst");
    let prefix = format!("a{round}-{}", step.as_micros());
    let now = Timestamp::now();
    let at = burst_instant();
    tokio::task::block_in_place(|| {
        bulk_fill(
            &dir,
            (0..BURST).map(|i| {
                let at = due(at, i, step);
                let spec =
                    JobSpec::from_json(&burst_body(addr, &prefix, i, at), Some(now)).unwrap();
                (0xb0_0000 + i as u64, spec, Some(at))
            }),
        )
    });
    let store = Arc::new(open_db(&dir.db()).unwrap());
    let (jobs, tx, task) = start_jobs(store);
    assert!(Timestamp::now() < at, "setup took longer than the lead");
    let (late, once) = collect(hits, &prefix, at, step, BURST).await;
    // Finished runs are recorded in batches; give the driver a bounded moment.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let finished = {
            let s = jobs.stats.lock().unwrap();
            s.succeeded + s.failed
        };
        if finished >= BURST as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = {
        let s = jobs.stats.lock().unwrap();
        s.lateness_percentiles()
            .map(|p| (p, (s.fired, s.succeeded, s.failed)))
    };
    stop_jobs(jobs, tx, task).await;
    Burst { late, once, stats }
}

async fn baseline_burst(addr: SocketAddr, hits: &Hits, round: usize, step: Duration) -> Burst {
    let prefix = format!("b{round}-{}", step.as_micros());
    let now = Timestamp::now();
    let at = burst_instant();
    let executor = Executor::new(loopback_policy());
    let hooks: Vec<(Webhook, JobSpec, Timestamp)> = (0..BURST)
        .map(|i| {
            let at = due(at, i, step);
            let spec = JobSpec::from_json(&burst_body(addr, &prefix, i, at), Some(now)).unwrap();
            let Action::Webhook(h) = spec.action.clone() else {
                unreachable!("burst jobs are webhooks")
            };
            (h, spec, at)
        })
        .collect();
    let fire = tokio::spawn(async move {
        let until = |t: Timestamp| {
            let wait = Timestamp::now().duration_until(t);
            tokio::time::sleep(wait.try_into().unwrap_or(Duration::ZERO))
        };
        // A burst: one sleep, then every webhook at once. Spread: a task per webhook, each
        // sleeping until its own instant (a timer each, as a bare executor would).
        if step.is_zero() {
            until(at).await;
        }
        let mut set = tokio::task::JoinSet::new();
        for (hook, spec, due) in hooks {
            let executor = executor.clone();
            let wait = (!step.is_zero()).then(|| until(due));
            set.spawn(async move {
                if let Some(wait) = wait {
                    wait.await;
                }
                executor
                    .run(&hook, spec.retry, spec.timeout, |_| {})
                    .await
                    .last
                    .succeeded()
            });
        }
        let mut ok = 0;
        while let Some(r) = set.join_next().await {
            ok += r.unwrap() as usize;
        }
        ok
    });
    let (late, once) = collect(hits, &prefix, at, step, BURST).await;
    let ok = fire.await.unwrap();
    assert_eq!(ok, BURST, "every baseline post succeeded");
    Burst {
        late,
        once,
        stats: None,
    }
}

/// Lateness of `BURST` fires `step` apart (zero: all at one instant), appliance and baseline
/// alternating.
async fn bench_lateness(out: &mut String, step: Duration) {
    let (addr, hits, sink) = start_sink().await;
    let mut rounds = Vec::new();
    for round in 1..=BURST_ROUNDS {
        let a = appliance_burst(addr, &hits, round, step).await;
        let b = baseline_burst(addr, &hits, round, step).await;
        eprintln!(
            "lateness (step {step:?}) round {round}: appliance p50 {:.1} p99 {:.1} ({} arrived) | baseline p50 {:.1} p99 {:.1} ({} arrived)",
            pct(&a.late, 0.5),
            pct(&a.late, 0.99),
            a.late.len(),
            pct(&b.late, 0.5),
            pct(&b.late, 0.99),
            b.late.len()
        );
        rounds.push((a, b));
    }
    sink.abort();
    let (title, baseline) = if step.is_zero() {
        (
            format!("### 3. Firing lateness: {BURST} `at` jobs due at the same instant"),
            format!(
                "a bare tokio task sleeps until the same kind of instant, then starts the same \
                 {BURST} webhooks concurrently"
            ),
        )
    } else {
        (
            format!(
                "### 3b. Firing lateness: {BURST} `at` jobs due within {:?}, {step:?} apart",
                step * BURST as u32
            ),
            format!(
                "{BURST} bare tokio tasks, each sleeping until its own instant, then posting its \
                 webhook"
            ),
        )
    };
    out.push_str(&format!(
        "{title}, each posting to a loopback sink (arrival at the sink − its scheduled \
         instant; {BURST_ROUNDS} rounds, alternating)\n\n\
         Baseline: {baseline} through a fresh `webhook::Executor`.\n\n\
         | round | who | arrived (each once?) | p50 (ms) | p99 (ms) | max (ms) | min (ms) |\n\
         |---|---|---|---|---|---|---|\n"
    ));
    let row = |out: &mut String, round: &str, who: &str, b: &Burst| {
        out.push_str(&format!(
            "| {round} | {who} | {} ({}) | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            b.late.len(),
            if b.once { "yes" } else { "NO" },
            pct(&b.late, 0.5),
            pct(&b.late, 0.99),
            b.late.last().unwrap(),
            b.late[0],
        ));
    };
    for (i, (a, b)) in rounds.iter().enumerate() {
        row(out, &(i + 1).to_string(), "appliance", a);
        row(out, &(i + 1).to_string(), "baseline", b);
    }
    // Summaries as medians over rounds (one stalled round on a shared VM would dominate a
    // pooled p99), plus the median of the per-round ratios.
    let med = |q: f64, f: fn(&(Burst, Burst)) -> &Burst| {
        median(rounds.iter().map(|r| pct(&f(r).late, q)).collect())
    };
    let ratio = |q: f64| {
        median(
            rounds
                .iter()
                .map(|(a, b)| pct(&a.late, q) / pct(&b.late, q))
                .collect(),
        )
    };
    let (a50, a99, b50, b99) = (
        med(0.5, |r| &r.0),
        med(0.99, |r| &r.0),
        med(0.5, |r| &r.1),
        med(0.99, |r| &r.1),
    );
    out.push_str(&format!(
        "| median of rounds | appliance | | **{a50:.1}** | **{a99:.1}** | | |\n\
         | median of rounds | baseline | | **{b50:.1}** | **{b99:.1}** | | |\n\
         | median of rounds | **ratio** appliance / baseline | | **{:.2}** | **{:.2}** | | |\n\
         | median of per-round ratios | appliance / baseline | | {:.2} | {:.2} | | |\n\n",
        a50 / b50,
        a99 / b99,
        ratio(0.5),
        ratio(0.99),
    ));
    out.push_str(
        "The scheduler's own view (`Jobs.stats`: scheduled instant → the start of the first \
         attempt, after the fire was recorded):\n\n\
         | round | stats p50 (ms) | stats p99 (ms) | samples | fired / succeeded / failed |\n\
         |---|---|---|---|---|\n",
    );
    for (i, (a, _)) in rounds.iter().enumerate() {
        match a.stats {
            Some(((p50, p99, n), (f, s, fl))) => out.push_str(&format!(
                "| {} | {p50} | {p99} | {n} | {f} / {s} / {fl} |\n",
                i + 1
            )),
            None => out.push_str(&format!("| {} | – | – | 0 | – |\n", i + 1)),
        }
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------------------------

fn main() {
    parts::main("scheduler", async |parts, out| {
        parts.part("creates", bench_creates(out)).await;
        parts.part("startup", bench_startup(out)).await;
        parts
            .part("lateness", bench_lateness(out, Duration::ZERO))
            .await;
        parts
            .part("spread", bench_lateness(out, Duration::from_millis(1)))
            .await;
        parts
            .part("history", async {
                let bin = Path::new(env!("CARGO_BIN_EXE_appliance"));
                let Some(before) = history::before(out) else {
                    return;
                };
                let dir = startup_dir(bin, "history");
                let bench = || history::bench(out, bin, &before, &dir, FIRST_JOB, STARTUP_JOBS);
                tokio::task::block_in_place(bench);
            })
            .await;
    });
}
