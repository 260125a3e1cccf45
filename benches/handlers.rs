//! Handler figures from issue 9: how late handler calls reach their handlers through the long
//! poll, against webhook firing lateness in the same run, and tasks per second through
//! lease + ack with 4 handlers.
//!
//! Layer: benchmark (a driver: reads clocks, sleeps). In process, through the same operations
//! the HTTP routes call (`scheduler::Handle::create`, `tasks::Queue::lease`, `tasks::Queue::ack`) — not through the
//! tunnel, whose own cost is measured in benches/RESULTS.md; these figures are the queue's.
//! - **delivery**: 1000 handler jobs (250 for each of 4 handlers, each handler a task
//!   long-polling `lease(max 100, wait 10 s)` and acking what it gets) and 1000 webhook jobs
//!   posting to a loopback sink, all due at the same instant, in the same scheduler. Each
//!   handler keeps long-polling while the calls it got are acked concurrently (a handler with
//!   calls in flight). Figures: due → lease delivery per handler call, and due → arrival at
//!   the sink per webhook.
//! - **throughput**: 2000 queued tasks (inserted untimed in one transaction), drained by 4
//!   handler tasks with `lease(max 1 | 10, wait 0)` + one `ack` per task, each handler one
//!   call at a time. Baseline: bare redb commits/s (one `Durability::Immediate` transaction
//!   each) from 4 threads on the same disk; without group commit a task costs two commits at
//!   max 1 (lease, ack) and 1.1 at max 10, which the ratios divide by.
//!
//! All traffic stays on 127.0.0.1; data lives in temp dirs removed on drop; every wait is
//! bounded. Run: `cargo bench --bench handlers` (one part: `-- delivery` or `-- throughput`).
//! Results: benches/RESULTS-handlers.md.
#![allow(clippy::disallowed_methods)] // benchmark: reads clocks and sleeps

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appliance::model::{Actor, RunRecord, RunStatus};
use appliance::queue::Task;
use appliance::sched::{JobId, Retry};
use appliance::scheduler::{self, RunStats};
use appliance::store::Store;
use appliance::tasks::Queue;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

#[path = "support/mod.rs"]
#[allow(dead_code)] // each bench uses its own share of it
mod support;
use support::bare_commits::bare_commits;
use support::parts;
use support::temp_dir::TempDir;
use support::webhook_sink::{start_sink, Hits};

const HANDLERS: usize = 4;
const CALLS: usize = 1000;
const HOOKS: usize = 1000;
const DELIVERY_ROUNDS: usize = 3;
/// How far ahead the burst is due (creating 2000 jobs, one commit each, must fit).
const LEAD: Duration = Duration::from_secs(25);
const DEADLINE: Duration = Duration::from_secs(120);
const QUEUED: usize = 2000;
const THROUGHPUT_ROUNDS: usize = 3;

fn actor() -> Actor {
    Actor {
        peer: "bench".into(),
        fingerprint: None,
        address: Some("10.88.88.2".into()),
        endpoint: None,
        via: appliance::model::Via::Api,
    }
}

fn handler(i: usize) -> String {
    format!("bot{}", i % HANDLERS)
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// 1. Delivery delay vs webhook lateness

struct Delivery {
    /// Due → lease, ms, sorted.
    calls: Vec<f64>,
    /// Due → arrival at the sink, ms, sorted.
    hooks: Vec<f64>,
    /// Every call delivered exactly once, every webhook arrived exactly once.
    once: bool,
}

async fn delivery_round(addr: SocketAddr, hits: &Hits, round: usize) -> Delivery {
    let dir = TempDir::new("handlers", "delivery");
    let store = Arc::new(Store::create(&dir.0.join("db.redb"), None).unwrap());
    let (tx, rx) = watch::channel(false);
    let (jobs, task) =
        scheduler::start(store, scheduler::Config::default(), rx).expect("start jobs");
    let jobs = Arc::new(jobs);
    for h in 0..HANDLERS {
        jobs.tasks
            .register(&handler(h), vec!["work".into()], &actor())
            .await
            .unwrap();
    }
    let t = Timestamp::now() + SignedDuration::try_from(LEAD).unwrap();
    let at = Timestamp::from_second(t.as_second() + 1).unwrap();
    let prefix = format!("/r{round}/");
    let bodies: Vec<Value> = (0..CALLS)
        .map(|i| {
            json!({"name": format!("call-{i}"), "trigger": {"at": at.to_string()},
                   "action": {"handler": {"id": handler(i), "method": "work", "params": {"i": i}}}})
        })
        .chain((0..HOOKS).map(|i| {
            json!({"name": format!("hook-{i}"), "trigger": {"at": at.to_string()},
                   "action": {"webhook": {"url": format!("http://{addr}{prefix}{i}"),
                                          "body": {"content": "raid starts now"}}}})
        }))
        .collect();
    let chunks: Vec<Vec<Value>> = bodies
        .chunks(bodies.len() / 16 + 1)
        .map(|c| c.to_vec())
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for chunk in chunks {
        let jobs = jobs.clone();
        set.spawn(async move {
            for b in chunk {
                let job = appliance::sched::JobDraft::from_value(&b).unwrap();
                jobs.create(job, &actor()).await.unwrap();
            }
        });
    }
    while set.join_next().await.is_some() {}
    assert!(
        Timestamp::now() < at,
        "creating the jobs took longer than LEAD"
    );

    // Four handlers long-polling, acking each call at once.
    let delivered: Arc<Mutex<Vec<(u64, Timestamp)>>> = Arc::default();
    let mut workers = tokio::task::JoinSet::new();
    for h in 0..HANDLERS {
        let tasks = jobs.tasks.clone();
        let delivered = delivered.clone();
        workers.spawn(async move {
            let name = handler(h);
            let start = Instant::now();
            let mut got = 0;
            // A concurrent handler: it keeps long-polling while earlier calls are acked.
            let mut acks = tokio::task::JoinSet::new();
            while got < CALLS / HANDLERS && start.elapsed() < DEADLINE {
                let leases = tasks
                    .lease(&name, 100, Duration::from_secs(60), Duration::from_secs(10))
                    .await
                    .unwrap();
                let now = Timestamp::now();
                for l in leases {
                    delivered.lock().unwrap().push((l.run_id, now));
                    let (tasks, name) = (tasks.clone(), name.clone());
                    acks.spawn(async move { tasks.ack(l.id, &name, Value::Null).await.unwrap() });
                    got += 1;
                }
            }
            while acks.join_next().await.is_some() {}
        });
    }
    while workers.join_next().await.is_some() {}
    let t0 = Instant::now();
    while hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.0.starts_with(&prefix))
        .count()
        < HOOKS
        && t0.elapsed() < DEADLINE
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ms = |t: &Timestamp| at.duration_until(*t).as_secs_f64() * 1e3;
    let (calls, hooks, once) = {
        let d = delivered.lock().unwrap();
        let mut calls: Vec<f64> = d.iter().map(|(_, t)| ms(t)).collect();
        calls.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let unique: HashSet<u64> = d.iter().map(|(r, _)| *r).collect();
        let hits = hits.lock().unwrap();
        let mine: Vec<&(String, Timestamp)> =
            hits.iter().filter(|h| h.0.starts_with(&prefix)).collect();
        let mut hooks: Vec<f64> = mine.iter().map(|(_, t)| ms(t)).collect();
        hooks.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let hook_paths: HashSet<&str> = mine.iter().map(|h| h.0.as_str()).collect();
        let once = d.len() == CALLS
            && unique.len() == CALLS
            && mine.len() == HOOKS
            && hook_paths.len() == HOOKS;
        (calls, hooks, once)
    };
    let _ = tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    Delivery { calls, hooks, once }
}

async fn bench_delivery(out: &mut String) {
    let (addr, hits, sink) = start_sink().await;
    let mut rows = String::new();
    let (mut c50, mut c99, mut h50, mut h99, mut r50, mut r99) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=DELIVERY_ROUNDS {
        let d = delivery_round(addr, &hits, round).await;
        let (a50, a99, b50, b99) = (
            pct(&d.calls, 0.5),
            pct(&d.calls, 0.99),
            pct(&d.hooks, 0.5),
            pct(&d.hooks, 0.99),
        );
        rows += &format!(
            "| {round} | {} ({}) | {a50:.1} | {a99:.1} | {} | {b50:.1} | {b99:.1} | {:.2} | {:.2} |\n",
            d.calls.len(),
            if d.once { "yes" } else { "NO" },
            d.hooks.len(),
            a50 / b50,
            a99 / b99
        );
        c50.push(a50);
        c99.push(a99);
        h50.push(b50);
        h99.push(b99);
        r50.push(a50 / b50);
        r99.push(a99 / b99);
    }
    sink.abort();
    *out += &format!(
        "### Delivery: {CALLS} handler calls ({HANDLERS} handlers, long poll) and {HOOKS} webhooks due at the same instant\n\n\
         | round | calls delivered (each once) | call p50 ms | call p99 ms | webhooks | webhook p50 ms | webhook p99 ms | ratio p50 call/webhook | ratio p99 |\n\
         |---|---|---|---|---|---|---|---|---|\n{rows}\
         | median | | **{:.1}** | **{:.1}** | | **{:.1}** | **{:.1}** | **{:.2}** | **{:.2}** |\n\n",
        median(c50), median(c99), median(h50), median(h99), median(r50), median(r99)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Throughput through lease + ack

/// Drains `QUEUED` tasks with 4 handlers leasing `max` at a time; returns tasks/s.
async fn drain(max: usize) -> f64 {
    let dir = TempDir::new("handlers", "drain");
    let store = Arc::new(Store::create(&dir.0.join("db.redb"), None).unwrap());
    let now = Timestamp::now();
    let mut runs: Vec<RunRecord> = (0..QUEUED)
        .map(|i| RunRecord {
            id: 0,
            job_id: JobId::from_u64(1 + i as u64),
            job_name: format!("call-{i}"),
            scheduled_at: now,
            started_at: None,
            finished_at: None,
            attempt: 0,
            status: RunStatus::Queued,
            trigger: "schedule".into(),
            http_status: None,
            error: None,
            duration_ms: None,
            count: None,
            handler: Some(handler(i)),
            result: None,
            queue_delay_ms: None,
        })
        .collect();
    let mut tasks: Vec<(usize, Task)> = (0..QUEUED)
        .map(|i| {
            let t = Task::new(
                JobId::from_u64(1 + i as u64),
                &handler(i),
                "work",
                &Map::new(),
                now,
                Retry::default(),
                Duration::from_secs(60),
                now,
            );
            (i, t)
        })
        .collect();
    store
        .start_runs_with_tasks(&mut runs, &[], &mut tasks)
        .unwrap();
    let (q, _finished, _) =
        Queue::load(store.clone(), Arc::new(Mutex::new(RunStats::default()))).unwrap();
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for h in 0..HANDLERS {
        let q = q.clone();
        set.spawn(async move {
            let name = handler(h);
            loop {
                let leases = q
                    .lease(&name, max, Duration::from_secs(60), Duration::ZERO)
                    .await
                    .unwrap();
                if leases.is_empty() {
                    break;
                }
                for l in leases {
                    q.ack(l.id, &name, json!({"ok": true})).await.unwrap();
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let rate = QUEUED as f64 / t0.elapsed().as_secs_f64();
    let left = q.list().await;
    assert!(
        left.is_empty(),
        "handlers were never registered in this part"
    );
    rate
}

async fn bench_throughput(out: &mut String) {
    let mut rows = String::new();
    let (mut one, mut ten, mut bare, mut r1, mut r10) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=THROUGHPUT_ROUNDS {
        let a = drain(1).await;
        let b = drain(10).await;
        let dir = TempDir::new("handlers", "bare");
        let c = tokio::task::block_in_place(|| bare_commits(&dir.0, QUEUED, HANDLERS, 600));
        rows += &format!(
            "| {round} | {a:.0} | {b:.0} | {c:.0} | {:.2} | {:.2} |\n",
            a / (c / 2.0),
            b / (c / 1.1)
        );
        one.push(a);
        ten.push(b);
        bare.push(c);
        r1.push(a / (c / 2.0));
        r10.push(b / (c / 1.1));
    }
    *out += &format!(
        "### Throughput: {QUEUED} queued tasks drained by {HANDLERS} handlers (lease + ack)\n\n\
         | round | tasks/s, lease max 1 | tasks/s, lease max 10 | bare redb commits/s ({HANDLERS} threads) | ratio max 1 / (commits/2) | ratio max 10 / (commits/1.1) |\n\
         |---|---|---|---|---|---|\n{rows}\
         | median | **{:.0}** | **{:.0}** | **{:.0}** | **{:.2}** | **{:.2}** |\n\n",
        median(one), median(ten), median(bare), median(r1), median(r10)
    );
}

fn main() {
    parts::main("handlers", async |parts, out| {
        parts.part("delivery", bench_delivery(out)).await;
        parts.part("throughput", bench_throughput(out)).await;
    });
}
