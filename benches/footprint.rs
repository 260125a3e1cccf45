//! Memory footprint (issue 12): RSS of `appliance serve` right after a restart with 250 peers
//! and 10,000 cron jobs, and where it goes.
//!
//! Two measurements, each against a baseline taken side by side in the same run:
//! 1. **The whole binary**: four data directories (empty; 250 peers; 10,000 cron jobs; both),
//!    each served by the real binary (`serve --listen 127.0.0.1:0`), rounds alternating. VmRSS
//!    and VmHWM are read from /proc once the control socket answers (`peer list`) and again
//!    after 2 s of idle. Bytes per peer = (peers − empty) / 250; bytes per job = (both −
//!    peers) / 10,000.
//! 2. **In process**, with a counting global allocator: live heap after opening the store,
//!    after `Store::jobs()` (the decoded records held), and after dropping them again (what
//!    the store itself keeps: redb's page cache), divided per job.
//!
//! Run: `cargo bench --bench footprint`. Figures: benches/RESULTS.md ("Memory").
#![allow(clippy::disallowed_methods)] // benchmark: reads clocks and sleeps

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use appliance::model::JobRecord;
use appliance::sched::JobSpec;
use appliance::store::Store;
use jiff::Timestamp;

#[path = "support/mod.rs"]
#[allow(dead_code)] // each bench uses its own share of it
mod support;
use support::raid_job;
use support::serve::Served;
use support::temp_dir::TempDir;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::live;

const PEERS: usize = 250;
const JOBS: usize = 10_000;
const ROUNDS: usize = 3;

fn cli(bin: &Path, dir: &TempDir, args: &[&str]) {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(&dir.0)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run appliance");
    assert!(
        out.status.success(),
        "appliance {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cron job; expressions and zones vary the way a guild's do (1,440 distinct times, 4 zones).
fn cron_job(i: usize, now: Timestamp) -> JobRecord {
    raid_job::weekly_record(i, i % 60, i / 60 % 24, now, "bench")
}

fn fill(bin: &Path, peers: usize, jobs: usize) -> TempDir {
    let dir = TempDir::new("footprint", &format!("p{peers}-j{jobs}"));
    cli(bin, &dir, &["init", "--endpoint", "127.0.0.1:51820"]);
    for i in 0..peers {
        cli(bin, &dir, &["peer", "add", &format!("member-{i}")]);
    }
    if jobs > 0 {
        let store = Store::open(&dir.db()).expect("open store");
        let now = Timestamp::now();
        for i in 0..jobs {
            assert!(store.insert_job(&cron_job(i, now), None).unwrap());
        }
    }
    dir
}

/// The raw `jobs` rows of a closed database, read with redb directly.
fn raw_job_rows(db: &Path) -> Vec<Vec<u8>> {
    use redb::{ReadableTable, TableDefinition};
    const JOBS_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
    let db = redb::Database::open(db).expect("open redb");
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(JOBS_TABLE).expect("jobs table");
    let rows = table
        .iter()
        .expect("iterate")
        .map(|r| r.expect("row").1.value().to_vec())
        .collect();
    rows
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

struct Sample {
    ready_ms: f64,
    rss_ready: u64,
    rss_idle: u64,
    hwm: u64,
}

/// Serves `dir` until it is ready, reads its memory, idles 2 s, reads again, stops it.
fn serve_once(bin: &Path, dir: &TempDir) -> Sample {
    let mut served = Served::start(bin, &dir.0);
    let ready_ms = served.ready_ms();
    let rss_ready = status_kib(served.pid(), "VmRSS:");
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = status_kib(served.pid(), "VmRSS:");
    let hwm = status_kib(served.pid(), "VmHWM:");
    served.stop();
    Sample {
        ready_ms,
        rss_ready,
        rss_idle,
        hwm,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "footprint bench: not run under `cargo test` (use `cargo bench --bench footprint`)"
        );
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_appliance"));
    let t = Instant::now();
    let dirs = [
        ("empty", fill(bin, 0, 0)),
        ("250 peers", fill(bin, PEERS, 0)),
        ("10,000 cron jobs", fill(bin, 0, JOBS)),
        ("250 peers + 10,000 cron jobs", fill(bin, PEERS, JOBS)),
    ];
    eprintln!("footprint setup in {:?}", t.elapsed());

    // 1. The whole binary, rounds alternating over the four directories (one warm-up each),
    //    and over the binaries: this commit's, and `APPLIANCE_BEFORE` (an earlier commit's
    //    build) when it is set, so a change is a before/after in one run.
    let mut bins: Vec<(String, PathBuf)> = vec![("this commit".into(), bin.to_path_buf())];
    if let Some(before) = std::env::var_os("APPLIANCE_BEFORE") {
        bins.push((
            format!("before ({})", Path::new(&before).display()),
            before.into(),
        ));
    }
    for (_, b) in &bins {
        for (_, d) in &dirs {
            serve_once(b, d);
        }
    }
    let mut samples: Vec<Vec<Vec<Sample>>> = bins
        .iter()
        .map(|_| dirs.iter().map(|_| vec![]).collect())
        .collect();
    for _ in 0..ROUNDS {
        for (i, (_, d)) in dirs.iter().enumerate() {
            for (b, (_, path)) in bins.iter().enumerate() {
                samples[b][i].push(serve_once(path, d));
            }
        }
    }
    let mut out = String::new();
    for (b, (label, _)) in bins.iter().enumerate() {
        let med = |i: usize, f: fn(&Sample) -> f64| median(samples[b][i].iter().map(f).collect());
        out.push_str(&format!(
            "Binary: {label}\n\n| data | ready (ms) | VmRSS at ready (MiB) | VmRSS after 2 s idle (MiB) | VmHWM (MiB) |\n|---|---:|---:|---:|---:|\n",
        ));
        for (i, (name, _)) in dirs.iter().enumerate() {
            out.push_str(&format!(
                "| {name} | {:.0} | {:.1} | {:.1} | {:.1} |\n",
                med(i, |s| s.ready_ms),
                med(i, |s| s.rss_ready as f64) / 1024.0,
                med(i, |s| s.rss_idle as f64) / 1024.0,
                med(i, |s| s.hwm as f64) / 1024.0,
            ));
        }
        let idle = |i: usize| med(i, |s| s.rss_idle as f64) * 1024.0;
        out.push_str(&format!(
            "\nPer peer: {:.0} B of RSS ((250 peers − empty) / 250). Per job: {:.0} B of RSS \
             ((both − 250 peers) / 10,000).\n\n",
            (idle(1) - idle(0)) / PEERS as f64,
            (idle(3) - idle(1)) / JOBS as f64,
        ));
    }

    // 2. In process: the decoded records against what the store keeps.
    let h0 = live();
    let store = Store::open(&dirs[2].1.db()).expect("open store");
    let h_open = live();
    let loaded = store.jobs().expect("load jobs");
    assert_eq!(loaded.rows.len(), JOBS);
    let h_loaded = live();
    drop(loaded);
    let h_dropped = live();
    drop(store);
    // The same rows decoded the way they were before the typed decode: a JSON tree, then
    // `JobSpec::from_json` (the scheduler then also held a second copy of each spec).
    let rows = raw_job_rows(&dirs[2].1.db());
    let h_rows = live();
    let specs: Vec<JobSpec> = rows
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r).expect("row is JSON");
            JobSpec::from_json(&v["spec"], None).expect("row is a spec")
        })
        .collect();
    let h_specs = live();
    assert_eq!(specs.len(), JOBS);
    drop(specs);
    out.push_str(&format!(
        "\nIn process (live heap, counting allocator): open {} KiB; `Store::jobs()` records held \
         {:.0} B per job; after dropping them the store keeps {} KiB (redb's cache and \
         allocator state) = {:.0} B per job. Baseline, same rows: a spec decoded through a \
         JSON tree and `JobSpec::from_json` holds {:.0} B per job (and the scheduler used to \
         keep two).\n",
        (h_open - h0) / 1024,
        (h_loaded - h_dropped) as f64 / JOBS as f64,
        (h_dropped - h0) / 1024,
        (h_dropped - h_open) as f64 / JOBS as f64,
        (h_specs - h_rows) as f64 / JOBS as f64,
    ));
    println!(
        "\n## footprint bench ({:.0} s)\n\n{out}",
        t.elapsed().as_secs_f64()
    );
}
