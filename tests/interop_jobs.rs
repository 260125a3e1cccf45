//! Interop: the scheduler through the real wireguard-go tunnel (issue 4, and issue 5's audit of
//! job changes). Jobs are created over the API and post to a webhook sink
//! (`tests/support/webhook_sink.py`) that runs inside the test's own namespace on 127.0.0.1, so
//! every request, tunnelled or outbound, stays inside namespaces the test created.
//!
//! What is checked: each fire happens once, never early and at most ~1.5 s late, and is recorded
//! in the run history; jobs and runs survive `kill -9`; misfires after downtime follow the core's
//! documented rules; retries, Retry-After, final 4xx and timeouts; pause, resume and run-now;
//! bad input is refused naming the field and stores nothing; roles and a secret-free audit trail;
//! delete, patch and cursor pagination; a restart neither repeats nor shifts a fire (every
//! scheduled time stays exactly on its trigger's grid, to the nanosecond the API shows).
//!
//! Needs root, the packages `scripts/test.sh` installs and `python3` (SKIP without them, FAIL
//! under `CI=true`). Timing tolerances allow a few hundred ms of noise on a 2-core machine; the
//! observed lateness is printed (run with `--nocapture` to see it).
// A driver in STYLE.md's sense: it runs real processes against wall-clock deadlines, so it reads
// the clock (clippy.toml reserves the clocks for drivers).
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::Duration;

use common::sink::{Sink, SINK_PORT};
use common::*;
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

/// How late a fire may reach the sink (scheduled time to arrival).
const MAX_LATENESS_S: f64 = 1.5;
/// Float slack when comparing the sink's `time.time()` with a scheduled instant (not lateness:
/// a fire before its time fails).
const CLOCK_EPS_S: f64 = 0.001;
/// `serve` arguments that let webhooks reach the sink on the namespace's 127.0.0.1 (by
/// default webhooks reach public addresses only).
const ALLOW_SINK: &[&str] = &["--allow-webhook-net", "127.0.0.0/8"];

// ---------------------------------------------------------------------------------------------
// Prerequisites

/// [`require_prereqs`] plus `python3` for the sink, with the same SKIP / CI rules.
fn prereqs() -> bool {
    require_prereqs_and_python("tests/support/webhook_sink.py needs it")
}

// ---------------------------------------------------------------------------------------------
// API calls through the tunnel

fn create(ns: &Netns, job: &Value) -> Value {
    let v = expect(ns, "POST", "/api/v1/jobs", Some(job), 201);
    assert!(
        v["id"].as_str().is_some_and(|id| id.len() == 16),
        "201 without an id: {v}"
    );
    v
}

fn id_of(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_string()
}

fn get_job(ns: &Netns, id: &str) -> Value {
    expect(ns, "GET", &format!("/api/v1/jobs/{id}"), None, 200)
}

/// Every job, in the API's order.
fn all_jobs(ns: &Netns) -> Vec<Value> {
    let v = expect(ns, "GET", "/api/v1/jobs?limit=500", None, 200);
    assert!(v["next_cursor"].is_null(), "more than 500 jobs? {v}");
    v["jobs"].as_array().expect("jobs array").clone()
}

/// The job's runs, oldest scheduled first.
fn runs_of(ns: &Netns, id: &str) -> Vec<Value> {
    let v = expect(
        ns,
        "GET",
        &format!("/api/v1/jobs/{id}/runs?limit=500"),
        None,
        200,
    );
    let mut runs = v["runs"].as_array().expect("runs array").clone();
    runs.sort_by_key(|r| (ts(&r["scheduled_at"]), r["id"].as_u64()));
    runs
}

/// Polls the job's runs until `done` holds; panics with them otherwise.
fn wait_runs(
    ns: &Netns,
    app: &Appliance,
    id: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    wait_runs_by(app, id, timeout, what, || runs_of(ns, id), done)
}

/// The job's only run, once it has finished (within `timeout`).
fn one_finished_run(ns: &Netns, app: &Appliance, id: &str, timeout: Duration, what: &str) -> Value {
    let mut runs = wait_runs(ns, app, id, timeout, what, |r| r.len() == 1 && finished(r));
    runs.remove(0)
}

/// `POST /api/v1/jobs/{id}/run`, which must be accepted (202).
fn run_now(ns: &Netns, id: &str) -> Value {
    expect(ns, "POST", &format!("/api/v1/jobs/{id}/run"), None, 202)
}

/// The run ended `status` on attempt `attempt`.
fn assert_outcome(run: &Value, status: &str, attempt: u64) {
    assert_eq!(run["status"], status, "{run}");
    assert_eq!(run["attempt"], attempt, "{run}");
}

/// The job's runs once none is running any more (within 10 s).
fn all_finished(ns: &Netns, app: &Appliance, id: &str) -> Vec<Value> {
    wait_runs(
        ns,
        app,
        id,
        Duration::from_secs(10),
        "all runs finished",
        finished,
    )
}

fn finished(runs: &[Value]) -> bool {
    runs.iter().all(|r| r["status"] != "running")
}

/// Starts an appliance in `ns` (serving with [`ALLOW_SINK`]) with one connected peer `name` of
/// `role`; returns the config too (to reconnect after a restart).
fn appliance_with_peer<'a>(
    ns: &'a Netns,
    name: &str,
    role: &str,
) -> (Appliance<'a>, WgClient<'a>, String) {
    let mut app = Appliance::init(ns, &[]);
    app.serve_with(ALLOW_SINK);
    let config = app.peer_add(name, role);
    let client = connect(ns, &app, &config);
    (app, client, config)
}

/// Connects and waits for the jobs API.
fn connect<'a>(ns: &'a Netns, app: &Appliance, config: &str) -> WgClient<'a> {
    connect_on(ns, app, config, "/api/v1/jobs?limit=1")
}

// ---------------------------------------------------------------------------------------------
// Time and jobs

fn ts(v: &Value) -> Timestamp {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"))
}

/// Unix seconds, as the sink writes them.
fn unix(t: Timestamp) -> f64 {
    t.as_nanosecond() as f64 / 1e9
}

/// Seconds from `a` to `b`.
fn secs(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_nanosecond() - a.as_nanosecond()) as f64 / 1e9
}

fn after(d: Duration) -> Timestamp {
    Timestamp::now() + SignedDuration::try_from(d).unwrap()
}

/// `t` rounded to a whole millisecond that is not a whole second, so the job JSON carries
/// milliseconds.
fn with_millis(t: Timestamp) -> Timestamp {
    let mut ms = t.as_millisecond();
    if ms % 1000 == 0 {
        ms += 7;
    }
    Timestamp::from_millisecond(ms).unwrap()
}

/// A webhook job posting `{"content": "hello from NAME"}` to `url`.
fn job(name: &str, trigger: Value, url: &str) -> Value {
    json!({
        "name": name,
        "trigger": trigger,
        "action": {"webhook": {"url": url, "body": {"content": format!("hello from {name}")}}},
    })
}

/// `job` with extra top-level fields.
fn job_with(name: &str, trigger: Value, url: &str, extra: Value) -> Value {
    let mut j = job(name, trigger, url);
    for (k, v) in extra.as_object().expect("extra is an object") {
        j[k] = v.clone();
    }
    j
}

/// Far enough ahead that it never fires during a test.
fn far_at() -> Value {
    json!({"at": with_millis(after(Duration::from_secs(86_400))).to_string()})
}

/// A finished, successful first-attempt run with consistent times.
fn assert_good_run(run: &Value, trigger: &str) {
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["http_status"], 204, "{run}");
    assert_eq!(run["attempt"], 1, "{run}");
    assert_eq!(run["trigger"], trigger, "{run}");
    assert!(run["error"].is_null(), "{run}");
    assert!(
        run["duration_ms"].as_u64().is_some(),
        "no duration_ms: {run}"
    );
    let (sched, start, end) = (
        ts(&run["scheduled_at"]),
        ts(&run["started_at"]),
        ts(&run["finished_at"]),
    );
    assert!(sched <= start && start <= end, "times out of order: {run}");
}

/// Checks a schedule's fires against its run records and the sink: one sink request per run, in
/// order, none before its scheduled time, none later than [`MAX_LATENESS_S`]. Returns the
/// lateness of each, in seconds.
fn check_fires(label: &str, runs: &[Value], arrivals: &[f64]) -> Vec<f64> {
    assert_eq!(
        runs.len(),
        arrivals.len(),
        "{label}: {} runs recorded but {} requests reached the sink; runs: {}",
        runs.len(),
        arrivals.len(),
        Value::from(runs.to_vec())
    );
    runs.iter()
        .zip(arrivals)
        .map(|(run, &t)| {
            assert_good_run(run, "schedule");
            let sched = unix(ts(&run["scheduled_at"]));
            let late = t - sched;
            assert!(
                late >= -CLOCK_EPS_S,
                "{label}: fired {:.3} s EARLY: {run}",
                -late
            );
            assert!(
                late <= MAX_LATENESS_S,
                "{label}: fired {late:.3} s late: {run}"
            );
            late
        })
        .collect()
}

fn pause(ns: &Netns, id: &str) -> Value {
    let v = expect(ns, "POST", &format!("/api/v1/jobs/{id}/pause"), None, 200);
    assert_eq!(v["paused"], true, "{v}");
    assert!(
        v["next_fire_at"].is_null(),
        "a paused job has no next fire: {v}"
    );
    v
}

fn percentile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn report_lateness(label: &str, late: &[f64]) {
    if late.is_empty() {
        return;
    }
    eprintln!(
        "{label}: lateness over {} fires: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        late.len(),
        percentile(late, 0.5) * 1e3,
        percentile(late, 0.99) * 1e3,
        percentile(late, 1.0) * 1e3
    );
}

// ---------------------------------------------------------------------------------------------
// 1. On time, once, recorded

#[test]
fn jobs_fire_once_on_time_and_are_recorded() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jfire");
    let (app, _c, _) = appliance_with_peer(&ns, "olga", "officer");
    let sink = Sink::start(&ns);

    let every = create(
        &ns,
        &job(
            "every-second",
            json!({"every": "1s"}),
            &sink.url("/ok/every"),
        ),
    );
    let cron = create(
        &ns,
        &job(
            "even-seconds",
            json!({"cron": "*/2 * * * * *"}),
            &sink.url("/ok/cron"),
        ),
    );
    assert_eq!(cron["trigger"]["timezone"], "UTC", "{cron}");
    let cron_created = ts(&cron["created_at"]);
    // `at` with milliseconds, once in UTC and once with an offset.
    let at1 = with_millis(after(Duration::from_millis(2300)));
    let j1 = create(
        &ns,
        &job(
            "at-utc",
            json!({"at": at1.to_string()}),
            &sink.url("/ok/at1"),
        ),
    );
    let at2 = with_millis(after(Duration::from_millis(2900)));
    let at2_text = at2.display_with_offset(Offset::constant(2)).to_string();
    assert!(
        at2_text.contains('.') && at2_text.ends_with("+02:00"),
        "{at2_text}"
    );
    let j2 = create(
        &ns,
        &job("at-offset", json!({"at": at2_text}), &sink.url("/ok/at2")),
    );
    for (j, at) in [(&j1, at1), (&j2, at2)] {
        assert_eq!(ts(&j["trigger"]["at"]), at, "{j}");
        assert_eq!(ts(&j["next_fire_at"]), at, "{j}");
    }
    let start = ts(&every["trigger"]["start"]);
    assert_eq!(
        ts(&every["next_fire_at"]),
        start + SignedDuration::from_secs(1),
        "{every}"
    );

    // Both `at` jobs fire, and the recurring ones get a few seconds.
    assert!(
        wait_until(Duration::from_secs(10), || {
            sink.hits("/ok/at1").len() == 1 && sink.hits("/ok/at2").len() == 1
        }),
        "the at jobs did not fire within 10 s; sink: {:?}\nserve log:\n{}",
        sink.requests(),
        app.log_tail(40)
    );
    let five = || sink.hits("/ok/every").len() >= 5;
    assert!(
        wait_until(Duration::from_secs(10), five),
        "every 1s: not 5 fires in 10 s"
    );
    let before = Timestamp::now();
    pause(&ns, &id_of(&every));
    let after_pause = Timestamp::now();
    pause(&ns, &id_of(&cron));
    // Late duplicates of the `at` fires would show up in this second.
    sleep(Duration::from_secs(1));

    let mut lateness = Vec::new();
    for (label, j, at, path) in [
        ("at-utc", &j1, at1, "/ok/at1"),
        ("at-offset", &j2, at2, "/ok/at2"),
    ] {
        let id = id_of(j);
        let runs = wait_runs(
            &ns,
            &app,
            &id,
            Duration::from_secs(10),
            "a finished run",
            |r| !r.is_empty() && finished(r),
        );
        assert_eq!(
            runs.len(),
            1,
            "{label} ran more than once: {}",
            Value::from(runs)
        );
        assert_eq!(ts(&runs[0]["scheduled_at"]), at, "{}", runs[0]);
        lateness.extend(check_fires(label, &runs, &sink.times(path)));
        let j = get_job(&ns, &id);
        assert!(
            j["next_fire_at"].is_null(),
            "a fired at job has no next fire: {j}"
        );
    }

    // The every job: start + k s for k = 1, 2, ..., one per second until the pause.
    let id = id_of(&every);
    let runs = all_finished(&ns, &app, &id);
    for (k, run) in runs.iter().enumerate() {
        let want = start + SignedDuration::from_secs(k as i64 + 1);
        assert_eq!(
            ts(&run["scheduled_at"]),
            want,
            "every run {k} is off the grid: {run}"
        );
    }
    let expected = secs(start, before).floor() as i64;
    let upper = secs(start, after_pause).floor() as i64;
    let n = runs.len() as i64;
    assert!(
        (expected - 1..=upper).contains(&n),
        "every 1s ran {n} times in {:.2}-{:.2} s (expected {expected}..={upper})",
        secs(start, before),
        secs(start, after_pause)
    );
    lateness.extend(check_fires("every", &runs, &sink.times("/ok/every")));

    // The cron job: even whole seconds, 2 s apart, none before it was created.
    let id = id_of(&cron);
    let runs = all_finished(&ns, &app, &id);
    assert!(
        runs.len() >= 2,
        "cron */2 s ran {} times: {}",
        runs.len(),
        Value::from(runs)
    );
    for (i, run) in runs.iter().enumerate() {
        let t = ts(&run["scheduled_at"]);
        assert!(
            t.subsec_nanosecond() == 0 && t.as_second() % 2 == 0,
            "not an even second: {run}"
        );
        assert!(
            t > cron_created,
            "cron fired for a time before the job existed: {run}"
        );
        if i > 0 {
            assert_eq!(
                secs(ts(&runs[i - 1]["scheduled_at"]), t),
                2.0,
                "gap in the cron runs: {run}"
            );
        }
    }
    lateness.extend(check_fires("cron", &runs, &sink.times("/ok/cron")));

    // The webhook request itself: POST, JSON body and content type, our user agent.
    for r in sink.requests() {
        assert_eq!(r["method"], "POST", "{r}");
        assert_eq!(r["headers"]["content-type"], "application/json", "{r}");
        assert!(
            r["headers"]["user-agent"]
                .as_str()
                .is_some_and(|u| u.starts_with("appliance/")),
            "{r}"
        );
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).expect("JSON body");
        assert!(
            body["content"]
                .as_str()
                .is_some_and(|c| c.starts_with("hello from ")),
            "{r}"
        );
    }
    let at1_body: Value =
        serde_json::from_str(sink.hits("/ok/at1")[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(at1_body, json!({"content": "hello from at-utc"}));

    // The global run listing and the stats agree.
    let all = expect(
        &ns,
        "GET",
        "/api/v1/runs?status=succeeded&limit=500",
        None,
        200,
    );
    let total = sink.requests().len();
    assert_eq!(all["runs"].as_array().unwrap().len(), total, "{all}");
    let stats = expect(&ns, "GET", "/api/v1/stats", None, 200);
    assert_eq!(stats["jobs"], 4, "{stats}");
    assert_eq!(stats["paused"], 2, "{stats}");
    assert_eq!(stats["since_start"]["fired"], total, "{stats}");
    assert_eq!(stats["since_start"]["succeeded"], total, "{stats}");
    assert!(
        stats["lateness"]["samples"]
            .as_u64()
            .is_some_and(|n| n as usize == total),
        "{stats}"
    );
    report_lateness("scenario 1 (sink arrival - scheduled)", &lateness);
    eprintln!("scenario 1: server-side lateness {}", stats["lateness"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Durability: kill -9 loses no acknowledged job and no run

#[test]
fn kill_9_loses_no_acknowledged_job_or_run() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jkill");
    let (mut app, client, config) = appliance_with_peer(&ns, "olga", "officer");
    let sink = Sink::start(&ns);

    // A run recorded before the crash.
    let pre = create(
        &ns,
        &job(
            "before-crash",
            json!({"at": with_millis(after(Duration::from_millis(1200))).to_string()}),
            &sink.url("/ok/pre"),
        ),
    );
    let pre_id = id_of(&pre);
    let pre_runs = wait_runs(
        &ns,
        &app,
        &pre_id,
        Duration::from_secs(10),
        "a succeeded run",
        |r| r.len() == 1 && r[0]["status"] == "succeeded",
    );

    // Twenty jobs of every shape, created concurrently (so that they share group commits),
    // then one due while the appliance is down; SIGKILL right after the last 201.
    let mut created: BTreeMap<String, Value> = BTreeMap::new();
    let mut bodies = vec![];
    for i in 0..20 {
        let trigger = match i % 4 {
            0 => json!({"every": "1h"}),
            1 => json!({"cron": "45 19 * * THU", "timezone": "Europe/Berlin"}),
            2 => far_at(),
            _ => {
                json!({"cron": "0 0 1 1 *", "start": "2030-01-01T00:00:00Z", "end": "2040-01-01T00:00:00Z"})
            }
        };
        let extra = json!({
            "retry": {"attempts": 1 + i % 3, "backoff": "2s"},
            "timeout": format!("{}s", 5 + i),
            "paused": i % 5 == 0,
            "coalesce": i % 2 == 0,
            "max_instances": 1 + i % 2,
            "misfire_grace": "5m",
            "jitter": if i % 3 == 0 { "0s" } else { "10s" },
            "metadata": {"i": i, "tags": ["raid", "reminder"]},
        });
        let mut j = job_with(
            &format!("durable-{i:02}"),
            trigger,
            &sink.url(&format!("/ok/d{i}")),
            extra,
        );
        j["action"]["webhook"]["headers"] = json!({"X-Index": i.to_string()});
        bodies.push(j);
    }
    std::thread::scope(|s| {
        let creates: Vec<_> = bodies.iter().map(|j| s.spawn(|| create(&ns, j))).collect();
        for c in creates {
            let v = c.join().expect("create thread");
            created.insert(id_of(&v), v);
        }
    });
    let due_at = with_millis(after(Duration::from_millis(1500)));
    let due = create(
        &ns,
        &job(
            "due-while-down",
            json!({"at": due_at.to_string()}),
            &sink.url("/ok/due"),
        ),
    );
    let due_id = id_of(&due);
    let killed = app.kill9().expect("was serving");
    assert!(!killed.success(), "serve survived SIGKILL? {killed}");
    drop(client);

    // Down past the due time (well within the default 60 s misfire grace), then back.
    sleep(Duration::from_secs(2));
    app.serve_with(ALLOW_SINK);
    let _client = connect(&ns, &app, &config);

    let listed = all_jobs(&ns);
    let by_id: BTreeMap<String, Value> = listed.iter().map(|j| (id_of(j), j.clone())).collect();
    assert_eq!(
        listed.len(),
        22,
        "jobs after kill -9: {}",
        Value::from(listed.clone())
    );
    for (id, before) in &created {
        let mut after = by_id
            .get(id)
            .unwrap_or_else(|| panic!("job {id} lost by kill -9: {before}"))
            .clone();
        let mut before = before.clone();
        for v in [&mut before, &mut after] {
            v.as_object_mut().unwrap().remove("running");
            v.as_object_mut().unwrap().remove("next_fire_at");
        }
        assert_eq!(after, before, "job {id} changed across kill -9");
    }
    assert!(by_id.contains_key(&pre_id) && by_id.contains_key(&due_id));

    // The run from before the crash is still there, unchanged, in both listings.
    let runs = runs_of(&ns, &pre_id);
    assert_eq!(runs, pre_runs, "run history changed across kill -9");
    let global = expect(&ns, "GET", "/api/v1/runs?limit=500", None, 200);
    assert!(
        global["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == pre_runs[0]["id"]),
        "{global}"
    );

    // The job due during the downtime runs once after the restart, for its own time.
    let run = one_finished_run(
        &ns,
        &app,
        &due_id,
        Duration::from_secs(10),
        "the catch-up run",
    );
    assert_good_run(&run, "schedule");
    assert_eq!(ts(&run["scheduled_at"]), due_at, "{run}");
    sleep(Duration::from_secs(1));
    assert_eq!(sink.hits("/ok/due").len(), 1, "{:?}", sink.requests());
    assert_eq!(sink.hits("/ok/pre").len(), 1, "{:?}", sink.requests());
    let unexpected: Vec<Value> = sink
        .requests()
        .into_iter()
        .filter(|r| r["path"] != "/ok/due" && r["path"] != "/ok/pre")
        .collect();
    assert!(
        unexpected.is_empty(),
        "far-future jobs fired: {unexpected:?}"
    );

    // And each job's next fire is the same instant as before the crash.
    for (id, before) in &created {
        assert_eq!(
            by_id[id]["next_fire_at"], before["next_fire_at"],
            "next_fire_at of job {id} changed across kill -9: trigger {}",
            before["trigger"]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Misfires after downtime

/// What happened to an every-1s job around a downtime that ended at `restart`.
struct Catchup {
    /// Runs recorded as missed.
    missed: Vec<Value>,
    /// Runs started after the restart for times at or before it.
    catchup: Vec<Value>,
}

/// Which fire of an every-1s job starting at `start` a run stands for (rounded to the nearest).
fn grid_index(start: Timestamp, run: &Value) -> i64 {
    secs(start, ts(&run["scheduled_at"])).round() as i64
}

/// Every run of an every-`period_s` job is for a time exactly on its grid `start + k * period`,
/// and no grid point is recorded twice. Checked last in the tests that restart the appliance,
/// after the properties that do not depend on sub-millisecond exactness.
fn assert_on_grid(label: &str, runs: &[Value], start: Timestamp, period_s: i64) {
    let mut seen = HashSet::new();
    for run in runs {
        let t = ts(&run["scheduled_at"]);
        let k = secs(start, t) / period_s as f64;
        assert!(
            k == k.round(),
            "{label}: run for {t} is off the job's grid start + k * {period_s} s (start {start}, k = {k:.9}): {run}\nall runs: {}",
            Value::from(runs.to_vec())
        );
        assert!(
            seen.insert(k.round() as i64),
            "{label}: fire k = {} (start + {} s) recorded twice: {}",
            k.round(),
            k.round() as i64 * period_s,
            Value::from(runs.to_vec())
        );
    }
}

/// Checks one every-1s job's history across a stop/start (see the test below).
fn check_catchup(
    label: &str,
    runs: &[Value],
    start: Timestamp,
    restart: Timestamp,
    grace_s: f64,
) -> Catchup {
    let started = |r: &Value| ts(&r["started_at"]);
    let sched = |r: &Value| ts(&r["scheduled_at"]);
    let (missed, ran): (Vec<Value>, Vec<Value>) =
        runs.iter().cloned().partition(|r| r["status"] == "missed");
    let before: Vec<&Value> = ran.iter().filter(|r| started(r) < restart).collect();
    let after: Vec<&Value> = ran.iter().filter(|r| started(r) >= restart).collect();
    let all = Value::from(runs.to_vec());
    assert!(
        !before.is_empty() && !after.is_empty(),
        "{label}: runs on both sides expected: {all}"
    );
    // The first pass after the restart (one handle_timeout) starts every catch-up run: they
    // are the runs after the restart that were scheduled before the first of them started
    // (each run's started_at is its own first attempt, microseconds apart).
    let first_start = after.iter().map(|r| started(r)).min().unwrap();
    let catchup: Vec<Value> = after
        .iter()
        .filter(|r| sched(r) <= first_start)
        .map(|r| (*r).clone())
        .collect();
    assert!(!catchup.is_empty(), "{label}: no catch-up run: {all}");
    let last_before = grid_index(start, before.last().unwrap());

    // Every fire from the last run before the stop up to the catch-up is accounted for, in
    // order: missed ones first, each older than the grace when it was seen, then the catch-up
    // (src/sched/core.rs, "Misfires"). Fires are compared by grid index here; exactness last.
    let mut missed_k: Vec<i64> = missed.iter().map(|m| grid_index(start, m)).collect();
    missed_k.dedup();
    assert!(
        missed_k.len() >= 2,
        "{label}: a 4 s downtime with a 2 s grace must miss fires: {all}"
    );
    let want: Vec<i64> = (last_before + 1..last_before + 1 + missed_k.len() as i64).collect();
    assert_eq!(
        missed_k, want,
        "{label}: missed fires are not the ones right after the last run: {all}"
    );
    for m in &missed {
        assert!(
            m["error"]
                .as_str()
                .is_some_and(|e| e.contains("misfire_grace")),
            "{m}"
        );
        assert!(
            m["finished_at"].is_string() && m["http_status"].is_null(),
            "{m}"
        );
        assert!(
            secs(sched(m), first_start) > grace_s,
            "{label}: {m} was within the grace at {first_start}"
        );
    }
    assert_eq!(
        grid_index(start, &catchup[0]),
        missed_k.last().unwrap() + 1,
        "{label}: the catch-up is not the first fire after the missed ones: {all}"
    );
    for c in &catchup {
        assert_good_run(c, "schedule");
        let late = secs(sched(c), started(c));
        assert!(
            late <= grace_s + 0.25,
            "{label}: catch-up {late:.3} s late, over the grace: {c}"
        );
    }
    // After the catch-up, the regular schedule: the first fire after the restart pass.
    let next: Vec<&&Value> = after.iter().filter(|r| sched(r) > first_start).collect();
    if let Some(n) = next.first() {
        let gap = secs(first_start, sched(n));
        assert!(
            gap > 0.0 && gap <= 1.0,
            "{label}: after the catch-up the next fire is {gap:.3} s later: {n}"
        );
    }
    Catchup { missed, catchup }
}

#[test]
fn misfires_after_downtime_are_recorded_and_caught_up_once() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jmiss");
    let (mut app, client, config) = appliance_with_peer(&ns, "olga", "officer");
    let sink = Sink::start(&ns);
    let a = create(
        &ns,
        &job_with(
            "coalesced",
            json!({"every": "1s"}),
            &sink.url("/ok/a"),
            json!({"misfire_grace": "2s", "coalesce": true}),
        ),
    );
    // The same without coalescing (and enough instances for the catch-ups to run side by side).
    let b = create(
        &ns,
        &job_with(
            "each",
            json!({"every": "1s"}),
            &sink.url("/ok/b"),
            json!({"misfire_grace": "2s", "coalesce": false, "max_instances": 5}),
        ),
    );
    assert_eq!(
        (a["misfire_grace"].as_str(), a["coalesce"].as_bool()),
        (Some("2s"), Some(true)),
        "{a}"
    );
    let (a_id, b_id) = (id_of(&a), id_of(&b));
    let two_each = || sink.hits("/ok/a").len() >= 2 && sink.hits("/ok/b").len() >= 2;
    assert!(
        wait_until(Duration::from_secs(10), two_each),
        "not 2 fires each in 10 s"
    );

    let status = app.stop().expect("was serving");
    assert!(
        status.success(),
        "serve did not stop cleanly: {status}\n{}",
        app.log_tail(30)
    );
    drop(client);
    let stopped = Timestamp::now();
    let count_at_stop = sink.requests().len();
    sleep(Duration::from_millis(4200));
    assert_eq!(
        sink.requests().len(),
        count_at_stop,
        "requests while the appliance was down"
    );
    let restart = Timestamp::now();
    app.serve_with(ALLOW_SINK);
    let _client = connect(&ns, &app, &config);
    // A few regular fires after the catch-up, then stop both and let the runs finish.
    sleep(Duration::from_millis(2500));
    pause(&ns, &a_id);
    pause(&ns, &b_id);
    let a_runs = all_finished(&ns, &app, &a_id);
    let b_runs = all_finished(&ns, &app, &b_id);
    eprintln!(
        "scenario 3: down {:.2} s (stop..restart)",
        secs(stopped, restart)
    );

    let a_start = ts(&a["trigger"]["start"]);
    let b_start = ts(&b["trigger"]["start"]);
    let ca = check_catchup("coalesce", &a_runs, a_start, restart, 2.0);
    assert_eq!(
        ca.catchup.len(),
        1,
        "coalesce: the catch-up must run once: {}",
        Value::from(a_runs.clone())
    );
    let cb = check_catchup("no coalesce", &b_runs, b_start, restart, 2.0);
    // Without coalescing, every fire within the 2 s grace runs: a closed 2 s window holds 2 or 3
    // whole-second grid points.
    assert!(
        (2..=3).contains(&cb.catchup.len()),
        "no coalesce: {} catch-up runs, expected 2 or 3: {}",
        cb.catchup.len(),
        Value::from(b_runs.clone())
    );
    eprintln!(
        "scenario 3: coalesce: {} missed + 1 catch-up; no coalesce: {} missed + {} catch-ups",
        ca.missed.len(),
        cb.missed.len(),
        cb.catchup.len()
    );

    // Missed fires never reached the sink: it saw exactly the runs that ran.
    for (path, runs) in [("/ok/a", &a_runs), ("/ok/b", &b_runs)] {
        let ran = runs.iter().filter(|r| r["status"] != "missed").count();
        assert_eq!(
            sink.hits(path).len(),
            ran,
            "{path}: sink requests vs runs: {}",
            Value::from(runs.clone())
        );
    }
    let missed = expect(
        &ns,
        "GET",
        "/api/v1/runs?status=missed&limit=500",
        None,
        200,
    );
    assert_eq!(
        missed["runs"].as_array().unwrap().len(),
        ca.missed.len() + cb.missed.len(),
        "{missed}"
    );
    let stats = expect(&ns, "GET", "/api/v1/stats", None, 200);
    assert_eq!(
        stats["since_start"]["missed"],
        ca.missed.len() + cb.missed.len(),
        "{stats}"
    );
    // Missed fires are logged at WARN with their reason.
    let missed_logged = app
        .log()
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("run missed: missed:"))
        .count();
    assert!(missed_logged >= 1, "{}", app.log_tail(40));
    // Exactly on the grid, each fire recorded once.
    assert_on_grid("coalesce", &a_runs, a_start, 1);
    assert_on_grid("no coalesce", &b_runs, b_start, 1);
}

// ---------------------------------------------------------------------------------------------
// 4. Retries, Retry-After, final 4xx, timeouts

#[test]
fn retries_backoff_retry_after_final_4xx_and_timeouts() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jretry");
    let (app, _c, _) = appliance_with_peer(&ns, "olga", "officer");
    let sink = Sink::start(&ns);
    let at = json!({"at": with_millis(after(Duration::from_millis(1500))).to_string()});
    let [fail, rate, gone, slow] = [
        (
            "fail",
            "/fail/x",
            json!({"retry": {"attempts": 3, "backoff": "1s"}}),
        ),
        // A 5 s backoff: only Retry-After explains a retry after ~1 s.
        (
            "ratelimited",
            "/ratelimit/x",
            json!({"retry": {"attempts": 2, "backoff": "5s"}}),
        ),
        (
            "gone",
            "/gone/x",
            json!({"retry": {"attempts": 3, "backoff": "1s"}}),
        ),
        ("slow", "/slow/x", json!({"timeout": "1s"})),
    ]
    .map(|(name, path, extra)| create(&ns, &job_with(name, at.clone(), &sink.url(path), extra)));

    let done =
        |id: &str| one_finished_run(&ns, &app, id, Duration::from_secs(20), "a finished run");

    // 500 three times: failed on attempt 3, backoff 1 s then 2 s.
    let run = done(&id_of(&fail));
    assert_outcome(&run, "failed", 3);
    assert_eq!(run["http_status"], 500, "{run}");
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains("500")),
        "{run}"
    );
    assert!(
        run["duration_ms"].as_u64().is_some_and(|d| d >= 2900),
        "{run}"
    );
    let t = sink.times("/fail/x");
    assert_eq!(t.len(), 3, "{:?}", sink.hits("/fail/x"));
    let (d1, d2) = (t[1] - t[0], t[2] - t[1]);
    eprintln!(
        "scenario 4: /fail/ retries after {d1:.3} s and {d2:.3} s (backoff 1 s, exponential)"
    );
    assert!(
        (0.95..=1.8).contains(&d1),
        "first backoff {d1:.3} s, want ~1 s"
    );
    assert!(
        (1.95..=2.8).contains(&d2),
        "second backoff {d2:.3} s, want ~2 s"
    );

    // 429 with Retry-After: 1, then 204: succeeded on attempt 2 about a second later.
    let run = done(&id_of(&rate));
    assert_outcome(&run, "succeeded", 2);
    assert_eq!(run["http_status"], 204, "{run}");
    let t = sink.times("/ratelimit/x");
    assert_eq!(t.len(), 2, "{:?}", sink.hits("/ratelimit/x"));
    eprintln!(
        "scenario 4: 429 retried after {:.3} s (Retry-After: 1, backoff 5 s)",
        t[1] - t[0]
    );
    assert!(
        (0.95..=2.0).contains(&(t[1] - t[0])),
        "Retry-After: 1 not honoured: retried after {:.3} s",
        t[1] - t[0]
    );

    // 404 is final: one attempt although three were allowed.
    let run = done(&id_of(&gone));
    assert_outcome(&run, "failed", 1);
    assert_eq!(run["http_status"], 404, "{run}");
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains("404")),
        "{run}"
    );

    // The slow reply outlives the 1 s timeout.
    let run = done(&id_of(&slow));
    assert_outcome(&run, "failed", 1);
    assert!(run["http_status"].is_null(), "{run}");
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out")),
        "{run}"
    );
    assert!(
        run["duration_ms"]
            .as_u64()
            .is_some_and(|d| (950..2500).contains(&d)),
        "{run}"
    );

    // Nothing retried later behind our back.
    sleep(Duration::from_millis(1500));
    assert_eq!(sink.hits("/gone/x").len(), 1, "{:?}", sink.hits("/gone/x"));
    assert_eq!(sink.hits("/slow/x").len(), 1, "{:?}", sink.hits("/slow/x"));
    assert_eq!(sink.hits("/fail/x").len(), 3);
    let failed = expect(&ns, "GET", "/api/v1/runs?status=failed", None, 200);
    assert_eq!(failed["runs"].as_array().unwrap().len(), 3, "{failed}");

    // Each failed run is logged at WARN with its error, so `journalctl -p warning` shows
    // it; the webhook's path (its secret part) is scrubbed from the log like from the run.
    let log = app.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("run failed"))
        .collect();
    assert_eq!(warned.len(), 3, "{}", app.log_tail(40));
    assert!(warned.iter().any(|l| l.contains("404")), "{warned:?}");
    assert!(warned.iter().any(|l| l.contains("timed out")), "{warned:?}");
    assert!(!log.contains("/gone/x"), "webhook path in the log");
}

// ---------------------------------------------------------------------------------------------
// 5. Pause, resume, run now, max_instances

#[test]
fn pause_resume_run_now_and_max_instances() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jpause");
    let (app, _c, _) = appliance_with_peer(&ns, "olga", "officer");
    let sink = Sink::start(&ns);
    let every = create(
        &ns,
        &job("every", json!({"every": "1s"}), &sink.url("/ok/p")),
    );
    let id = id_of(&every);
    let two_fires = || sink.hits("/ok/p").len() >= 2;
    assert!(
        wait_until(Duration::from_secs(10), two_fires),
        "not 2 fires in 10 s"
    );

    // Paused: no fires for 3 s.
    pause(&ns, &id);
    sleep(Duration::from_millis(300)); // a request sent just before the pause may still arrive
    let c0 = sink.hits("/ok/p").len();
    sleep(Duration::from_secs(3));
    assert_eq!(sink.hits("/ok/p").len(), c0, "fired while paused");
    let listed = expect(&ns, "GET", "/api/v1/jobs?paused=true", None, 200);
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1, "{listed}");

    // Resumed: from now, without a burst of the ~3 fires missed while paused.
    let resumed_at = Timestamp::now();
    let v = expect(&ns, "POST", &format!("/api/v1/jobs/{id}/resume"), None, 200);
    assert_eq!(v["paused"], false, "{v}");
    let next = ts(&v["next_fire_at"]);
    assert!(
        next > resumed_at && secs(resumed_at, next) <= 1.5,
        "next fire after resume: {v}"
    );
    sleep(Duration::from_millis(2500));
    let new: Vec<f64> = sink.times("/ok/p")[c0..].to_vec();
    assert!(!new.is_empty(), "no fire within 2.5 s of resume");
    assert!(new.iter().all(|&t| t >= unix(resumed_at)), "{new:?}");
    assert!(
        new.len() <= 3,
        "burst after resume: {} fires in 2.5 s: {new:?}",
        new.len()
    );
    assert!(
        new.windows(2).all(|w| w[1] - w[0] >= 0.5),
        "burst after resume: {new:?}"
    );
    pause(&ns, &id);
    let runs = wait_runs(
        &ns,
        &app,
        &id,
        Duration::from_secs(10),
        "all finished",
        finished,
    );
    assert!(
        runs.iter().all(|r| r["status"] == "succeeded"),
        "missed/skipped runs recorded for a pause: {}",
        Value::from(runs.clone())
    );

    // Run now on the paused job: 202, a manual run through the normal path, still paused.
    let c1 = sink.hits("/ok/p").len();
    let before = runs.len();
    let v = run_now(&ns, &id);
    assert_eq!(v["job"], id.as_str(), "{v}");
    let runs = wait_runs(
        &ns,
        &app,
        &id,
        Duration::from_secs(10),
        "the manual run",
        |r| r.len() == before + 1 && finished(r),
    );
    let manual: Vec<&Value> = runs.iter().filter(|r| r["trigger"] == "manual").collect();
    assert_eq!(manual.len(), 1, "{}", Value::from(runs.clone()));
    assert_good_run(manual[0], "manual");
    // The 202 named the run it started.
    assert_eq!(
        v["run"].as_str(),
        Some(manual[0]["id"].to_string().as_str()),
        "run-now reply {v} vs the manual run {}",
        manual[0]
    );
    assert_eq!(sink.hits("/ok/p").len(), c1 + 1);
    let j = get_job(&ns, &id);
    assert_eq!(
        (j["paused"].as_bool(), j["next_fire_at"].is_null()),
        (Some(true), true),
        "{j}"
    );

    // Run now on an `at` job: its own schedule does not move.
    let at = create(&ns, &job("later", far_at(), &sink.url("/ok/later")));
    let at_id = id_of(&at);
    run_now(&ns, &at_id);
    let run = one_finished_run(&ns, &app, &at_id, Duration::from_secs(10), "the manual run");
    assert_good_run(&run, "manual");
    assert_eq!(sink.hits("/ok/later").len(), 1);
    assert_eq!(get_job(&ns, &at_id)["next_fire_at"], at["next_fire_at"]);

    // max_instances 1: a second run while the slow one is going gets 409.
    let slow = create(
        &ns,
        &job_with(
            "slow",
            far_at(),
            &sink.url("/slow/m"),
            json!({"max_instances": 1, "timeout": "10s"}),
        ),
    );
    let slow_id = id_of(&slow);
    run_now(&ns, &slow_id);
    let (s, v) = call(
        &ns,
        "POST",
        &format!("/api/v1/jobs/{slow_id}/run"),
        None,
        &[],
    );
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("busy")), "{v}");
    assert_eq!(get_job(&ns, &slow_id)["running"], 1);
    let run = one_finished_run(&ns, &app, &slow_id, Duration::from_secs(10), "the slow run");
    assert_good_run(&run, "manual");
    assert_eq!(sink.hits("/slow/m").len(), 1);
    // The slot is free again.
    run_now(&ns, &slow_id);
}

// ---------------------------------------------------------------------------------------------
// 6. Bad input

#[test]
fn bad_input_is_refused_naming_the_field_and_stores_nothing() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jbad");
    let (mut app, _c, _) = appliance_with_peer(&ns, "olga", "officer");
    let url = &format!("http://127.0.0.1:{SINK_PORT}/ok/bad");
    let good = create(&ns, &job("good", json!({"every": "1h"}), url));
    let good_id = id_of(&good);

    let past = Timestamp::now() - SignedDuration::from_secs(60);
    let mut unknown_nested = job("nested", json!({"every": "1h"}), url);
    unknown_nested["action"]["webhook"]["timeout_ms"] = json!(5);
    let unknown_retry = job_with(
        "retry",
        json!({"every": "1h"}),
        url,
        json!({"retry": {"attempts": 2, "jitter": "1s"}}),
    );
    let cases: Vec<(&str, Value)> = vec![
        (
            "trigger.cron",
            job("cron", json!({"cron": "61 * * * *"}), url),
        ),
        (
            "trigger.timezone",
            job(
                "tz",
                json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons"}),
                url,
            ),
        ),
        (
            "trigger.at",
            job("past", json!({"at": past.to_string()}), url),
        ),
        (
            "trigger.at",
            job("no offset", json!({"at": "2030-01-01T00:00:00"}), url),
        ),
        (
            "action.webhook.url",
            job("ftp", json!({"every": "1h"}), "ftp://127.0.0.1/x"),
        ),
        (
            "colour",
            job_with(
                "unknown",
                json!({"every": "1h"}),
                url,
                json!({"colour": "red"}),
            ),
        ),
        ("action.webhook.timeout_ms", unknown_nested),
        (
            "trigger.foo",
            job("trigger", json!({"every": "1h", "foo": 1}), url),
        ),
        ("retry.jitter", unknown_retry),
        (
            "trigger",
            job("two", json!({"every": "1h", "cron": "* * * * *"}), url),
        ),
        ("name", job("", json!({"every": "1h"}), url)),
        // The appliance's own API, even though loopback is opted in (ALLOW_SINK).
        (
            "action.webhook.url",
            job(
                "self",
                json!({"every": "1h"}),
                "http://10.88.88.1:8888/api/v1/peers",
            ),
        ),
        (
            "action.webhook.url",
            job(
                "metadata",
                json!({"every": "1h"}),
                "http://169.254.169.254/latest",
            ),
        ),
    ];
    for (field, body) in &cases {
        let (s, v) = call(&ns, "POST", "/api/v1/jobs", Some(body), &[]);
        assert_eq!(s, 400, "{body} answered {s}: {v}");
        assert_eq!(v["error"]["code"], "invalid", "{v}");
        assert_eq!(v["error"]["field"], *field, "{body}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }

    // Over 64 KiB: 413; not JSON: 415; not even JSON: 400 naming the body.
    let big = job_with(
        "big",
        json!({"every": "1h"}),
        url,
        json!({"metadata": {"blob": "x".repeat(70 * 1024)}}),
    );
    let (s, v) = call(&ns, "POST", "/api/v1/jobs", Some(&big), &[]);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("body_too_large")),
        "{v}"
    );
    let text = job("text", json!({"every": "1h"}), url).to_string();
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/jobs",
        None,
        &["-H", "Content-Type: text/plain", "--data-binary", &text],
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{v}"
    );
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/jobs",
        None,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "{\"name\":",
        ],
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("body")),
        "{v}"
    );

    // A bad PATCH leaves the job as it was.
    let (s, v) = call(
        &ns,
        "PATCH",
        &format!("/api/v1/jobs/{good_id}"),
        Some(&json!({"trigger": {"every": null, "cron": "0 25 * * *"}})),
        &[],
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("trigger.cron")),
        "{v}"
    );
    let (s, v) = call(
        &ns,
        "PATCH",
        &format!("/api/v1/jobs/{good_id}"),
        Some(&json!({"retry": {"attempts": 0}})),
        &[],
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("retry.attempts")),
        "{v}"
    );
    let (s, v) = call(
        &ns,
        "PATCH",
        &format!("/api/v1/jobs/{good_id}"),
        Some(&json!({"action": {"webhook": {"url": "http://[::ffff:10.88.88.1]:8888/"}}})),
        &[],
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("action.webhook.url")),
        "{v}"
    );

    // Nothing was stored.
    let jobs = all_jobs(&ns);
    assert_eq!(
        jobs.len(),
        1,
        "bad input stored a job: {}",
        Value::from(jobs.clone())
    );
    let mut now = jobs[0].clone();
    let mut was = good.clone();
    for v in [&mut now, &mut was] {
        v.as_object_mut().unwrap().remove("running");
    }
    assert_eq!(now, was, "a refused PATCH changed the job");
    assert!(
        app.is_running(),
        "serve died on bad input:\n{}",
        app.log_tail(30)
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Roles and a secret-free audit trail (issue 5)

#[test]
fn roles_gate_jobs_and_the_audit_trail_has_no_webhook_secrets() {
    if !prereqs() {
        return;
    }
    const TOKEN: &str = "SECRETTOKENq9Zx7";
    const AUTH: &str = "SECRET2hunter7";
    const TOKEN2: &str = "SECRET3rotated";
    let ns = Netns::new("jaudit");
    let (app, _olga, _) = appliance_with_peer(&ns, "olga", "officer");
    let sink = Sink::start(&ns);
    // The admin and the viewer each in their own namespace, over veth links.
    let admin_ns = Netns::new("jadm");
    ns.link_veth(&admin_ns, "192.0.2.1/24", "192.0.2.2/24");
    let admin_conf = with_config_value(
        &app.peer_add("adam", "admin"),
        "Endpoint",
        &format!("192.0.2.1:{}", app.port()),
    );
    let _adam = connect(&admin_ns, &app, &admin_conf);
    let viewer_ns = Netns::new("jview");
    ns.link_veth(&viewer_ns, "198.51.100.1/24", "198.51.100.2/24");
    let viewer_conf = with_config_value(
        &app.peer_add("vic", "viewer"),
        "Endpoint",
        &format!("198.51.100.1:{}", app.port()),
    );
    let _vic = connect(&viewer_ns, &app, &viewer_conf);

    let secret_path = format!("/ok/api/webhooks/123/{TOKEN}");
    let mut spec = job("raid-reminder", far_at(), &sink.url(&secret_path));
    spec["action"]["webhook"]["headers"] =
        json!({"Authorization": format!("Bot {AUTH}"), "X-Guild": "raiders"});

    // A viewer may not create jobs; nothing is stored.
    let (s, v) = call(&viewer_ns, "POST", "/api/v1/jobs", Some(&spec), &[]);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("forbidden_role")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("officer"),
        "{v}"
    );
    assert!(all_jobs(&viewer_ns).is_empty());

    // The officer creates it and sees it in full.
    let created = create(&ns, &spec);
    let id = id_of(&created);
    assert_eq!(
        created["action"]["webhook"]["url"],
        sink.url(&secret_path),
        "{created}"
    );
    assert_eq!(created["created_by"], "olga");

    // The viewer sees scheme, host and a fingerprint, no header values outside the allow-list
    // and no body, and may not change or run it.
    let viewer_url = format!("http://127.0.0.1:{SINK_PORT}/***");
    for j in [get_job(&viewer_ns, &id), all_jobs(&viewer_ns)[0].clone()] {
        assert_eq!(j["action"]["webhook"]["url"], viewer_url.as_str(), "{j}");
        assert!(
            j["action"]["webhook"]["url_fingerprint"]
                .as_str()
                .is_some_and(|f| f.len() == 8),
            "{j}"
        );
        assert_eq!(
            j["action"]["webhook"]["headers"]["authorization"], "***",
            "{j}"
        );
        assert_eq!(j["action"]["webhook"]["headers"]["x-guild"], "***", "{j}");
        assert_eq!(j["action"]["webhook"]["body"], "***", "{j}");
        assert!(
            !j.to_string().contains(TOKEN) && !j.to_string().contains(AUTH),
            "{j}"
        );
    }
    for (method, path) in [
        ("PATCH", format!("/api/v1/jobs/{id}")),
        ("DELETE", format!("/api/v1/jobs/{id}")),
        ("POST", format!("/api/v1/jobs/{id}/run")),
        ("POST", format!("/api/v1/jobs/{id}/pause")),
    ] {
        let body = (method == "PATCH").then(|| json!({"name": "hijacked"}));
        let (s, v) = call(&viewer_ns, method, &path, body.as_ref(), &[]);
        assert_eq!(s, 403, "viewer {method} {path}: {v}");
    }
    let (s, _) = call(&viewer_ns, "GET", "/api/v1/audit", None, &[]);
    assert_eq!(s, 403, "viewers do not read the audit trail");

    // The officer runs it (the real URL and header reach the sink) and rotates the token.
    run_now(&ns, &id);
    one_finished_run(&ns, &app, &id, Duration::from_secs(10), "the manual run");
    let hit = sink.hits(&secret_path);
    assert_eq!(hit.len(), 1, "{:?}", sink.requests());
    assert_eq!(hit[0]["headers"]["authorization"], format!("Bot {AUTH}"));
    let patch = json!({"action": {"webhook": {"url": sink.url(&format!("/ok/api/webhooks/123/{TOKEN2}"))}}});
    let v = expect(
        &ns,
        "PATCH",
        &format!("/api/v1/jobs/{id}"),
        Some(&patch),
        200,
    );
    assert!(
        v["action"]["webhook"]["url"]
            .as_str()
            .unwrap()
            .ends_with(TOKEN2),
        "{v}"
    );

    // The admin's audit trail: who did what, with the secrets redacted.
    let redacted_url = format!("http://127.0.0.1:{SINK_PORT}/ok/api/webhooks/123/***");
    let audit = expect(&admin_ns, "GET", "/api/v1/audit?limit=500", None, 200);
    let entries = audit["entries"].as_array().unwrap();
    let entry = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["target"] == id.as_str())
            .unwrap_or_else(|| panic!("no {action} of {id} in {audit}"))
    };
    let c = entry("job.create");
    assert_eq!(c["actor"]["peer"], "olga", "{c}");
    assert_eq!(c["actor"]["via"], "api", "{c}");
    assert!(
        c["actor"]["fingerprint"]
            .as_str()
            .is_some_and(|f| !f.is_empty()),
        "{c}"
    );
    assert_eq!(
        c["summary"]["action"]["webhook"]["url"],
        redacted_url.as_str(),
        "{c}"
    );
    assert_eq!(
        c["summary"]["action"]["webhook"]["headers"]["authorization"], "***",
        "{c}"
    );
    assert_eq!(c["summary"]["name"], "raid-reminder", "{c}");
    let u = entry("job.update");
    assert_eq!(u["actor"]["peer"], "olga", "{u}");
    assert_eq!(
        u["summary"]["after"]["action"]["webhook"]["url"],
        redacted_url.as_str(),
        "{u}"
    );
    assert_eq!(entry("job.run")["actor"]["peer"], "olga");

    // No secret anywhere: audit API, CLI audit, run history, serve log.
    let cli = app.run(&["audit", "--json"]);
    assert!(cli.status.success(), "{}", describe(&cli));
    let cli = String::from_utf8_lossy(&cli.stdout).to_string();
    assert!(cli.contains("job.create"), "{cli}");
    let runs = expect(&admin_ns, "GET", "/api/v1/runs?limit=500", None, 200).to_string();
    let log = app.log();
    for secret in [TOKEN, AUTH, TOKEN2] {
        assert!(
            !audit.to_string().contains(secret),
            "{secret} in the audit API: {audit}"
        );
        assert!(
            !cli.contains(secret),
            "{secret} in `appliance audit --json`"
        );
        assert!(
            !runs.contains(secret),
            "{secret} in the run history: {runs}"
        );
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret} in the serve log: {lines:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Delete, patch, pagination

#[test]
fn delete_patch_and_cursor_pagination() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jcrud");
    let (_app, _c, _) = appliance_with_peer(&ns, "olga", "officer");
    let url = &format!("http://127.0.0.1:{SINK_PORT}/ok/crud");

    // Pagination: five jobs created out of order, read two at a time in next-fire order.
    let base = Timestamp::now() + SignedDuration::from_hours(24);
    let mut ids_by_time = Vec::new();
    for k in [3i64, 0, 4, 1, 2] {
        let at = with_millis(base + SignedDuration::from_mins(k));
        let v = create(
            &ns,
            &job(&format!("page-{k}"), json!({"at": at.to_string()}), url),
        );
        ids_by_time.push((at, id_of(&v)));
    }
    ids_by_time.sort();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let path = match &cursor {
            None => "/api/v1/jobs?limit=2".to_string(),
            Some(c) => format!("/api/v1/jobs?limit=2&cursor={c}"),
        };
        let v = expect(&ns, "GET", &path, None, 200);
        let page = v["jobs"].as_array().unwrap();
        pages.push(page.len());
        seen.extend(page.iter().map(id_of));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(pages, vec![2, 2, 1]);
    let want: Vec<String> = ids_by_time.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(seen, want, "not every job exactly once in next-fire order");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
    let (s, v) = call(&ns, "GET", "/api/v1/jobs?cursor=nonsense", None, &[]);
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("cursor")),
        "{v}"
    );

    // PATCH moves the next fire: a new `at`, and a longer `every` on the same grid.
    let (first_at, first) = ids_by_time[0].clone();
    let new_at = with_millis(base + SignedDuration::from_hours(2));
    let v = expect(
        &ns,
        "PATCH",
        &format!("/api/v1/jobs/{first}"),
        Some(&json!({"trigger": {"at": new_at.to_string()}})),
        200,
    );
    assert_eq!(ts(&v["next_fire_at"]), new_at, "{v}");
    assert_ne!(new_at, first_at);
    assert_eq!(ts(&get_job(&ns, &first)["next_fire_at"]), new_at);
    assert_eq!(
        id_of(all_jobs(&ns).last().unwrap()),
        first,
        "the listing follows the new time"
    );
    let every = create(&ns, &job("hourly", json!({"every": "1h"}), url));
    let start = ts(&every["trigger"]["start"]);
    assert_eq!(
        ts(&every["next_fire_at"]),
        start + SignedDuration::from_hours(1)
    );
    let v = expect(
        &ns,
        "PATCH",
        &format!("/api/v1/jobs/{}", id_of(&every)),
        Some(&json!({"trigger": {"every": "2h"}, "name": "two-hourly"})),
        200,
    );
    assert_eq!(
        ts(&v["next_fire_at"]),
        start + SignedDuration::from_hours(2),
        "{v}"
    );
    assert_eq!(v["name"], "two-hourly");
    // Replacing the trigger kind: RFC 7386 merge, so the old keys are nulled.
    let v = expect(
        &ns,
        "PATCH",
        &format!("/api/v1/jobs/{}", id_of(&every)),
        Some(
            &json!({"trigger": {"every": null, "start": null, "cron": "0 12 1 1 *", "timezone": "Europe/Berlin"}}),
        ),
        200,
    );
    let next = ts(&v["next_fire_at"]);
    let berlin = next.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    assert_eq!(
        (berlin.month(), berlin.day(), berlin.hour(), berlin.minute()),
        (1, 1, 12, 0),
        "{v}"
    );

    // DELETE, then the job is gone everywhere.
    let (_, victim) = ids_by_time[1].clone();
    let v = expect(&ns, "DELETE", &format!("/api/v1/jobs/{victim}"), None, 200);
    assert_eq!(v["deleted"], victim.as_str(), "{v}");
    for (method, path) in [
        ("GET", format!("/api/v1/jobs/{victim}")),
        ("DELETE", format!("/api/v1/jobs/{victim}")),
        ("GET", format!("/api/v1/jobs/{victim}/runs")),
        ("POST", format!("/api/v1/jobs/{victim}/run")),
    ] {
        let (s, v) = call(&ns, method, &path, None, &[]);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {v}"
        );
    }
    let (s, v) = call(
        &ns,
        "PATCH",
        &format!("/api/v1/jobs/{victim}"),
        Some(&json!({"name": "x"})),
        &[],
    );
    assert_eq!(s, 404, "{v}");
    assert!(!all_jobs(&ns).iter().any(|j| id_of(j) == victim));
    assert_eq!(all_jobs(&ns).len(), 5);
    let (s, v) = call(&ns, "GET", "/api/v1/jobs/not-an-id", None, &[]);
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("id")), "{v}");
}

// ---------------------------------------------------------------------------------------------
// 9. A restart keeps every job on its grid

#[test]
fn a_restart_neither_repeats_nor_shifts_a_fire() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jgrid");
    let (mut app, client, config) = appliance_with_peer(&ns, "olga", "officer");
    let sink = Sink::start(&ns);
    // Without coalescing every due fire runs, so a repeated one would be posted twice.
    let j = create(
        &ns,
        &job_with(
            "each",
            json!({"every": "1s"}),
            &sink.url("/ok/g"),
            json!({"coalesce": false, "max_instances": 5}),
        ),
    );
    let id = id_of(&j);
    let start = ts(&j["trigger"]["start"]);
    let two_fires = || sink.hits("/ok/g").len() >= 2;
    assert!(
        wait_until(Duration::from_secs(10), two_fires),
        "not 2 fires in 10 s"
    );

    // A quick restart (well within the default 60 s grace).
    let status = app.stop().expect("was serving");
    assert!(status.success(), "{status}");
    drop(client);
    app.serve_with(ALLOW_SINK);
    let _client = connect(&ns, &app, &config);
    let listed = get_job(&ns, &id);
    sleep(Duration::from_millis(2500));
    pause(&ns, &id);
    let runs = all_finished(&ns, &app, &id);

    // No fire is posted twice: one arrival per run, and each run is for its own time on the
    // grid (below). Arrivals are a second apart, except that the fire the downtime delayed runs
    // late, at the restart, and may arrive just before the next one on time (a restart longer
    // than half a second does that; `sched::tests::core_restart_at_any_phase_…` has the case):
    // at most one close pair per late run.
    let times = sink.times("/ok/g");
    assert_eq!(
        times.len(),
        runs.iter().filter(|r| r["status"] != "missed").count(),
        "arrivals {times:?}; runs {}",
        Value::from(runs.clone())
    );
    let late = runs
        .iter()
        .filter(|r| secs(ts(&r["scheduled_at"]), ts(&r["started_at"])) > 0.5)
        .count();
    let close = times.windows(2).filter(|w| w[1] - w[0] < 0.5).count();
    assert!(
        close <= late,
        "{close} arrivals less than 0.5 s after the one before, but {late} runs started late: arrivals {times:?}; runs {}",
        Value::from(runs.clone())
    );
    assert!(
        runs.iter().all(|r| r["status"] == "succeeded"),
        "{}",
        Value::from(runs.clone())
    );
    // Each run is for a time on the grid, once; and the next fire shown after the restart is too.
    assert_on_grid("every 1s across a restart", &runs, start, 1);
    let k = secs(start, ts(&listed["next_fire_at"]));
    assert!(
        k == k.round(),
        "next_fire_at after the restart is off the grid start + k s (k = {k:.9}): {listed}"
    );
}

/// Resume with `{"catch_up": true}`: the fires missed while paused are run (each, without
/// `coalesce`) within the grace, instead of being skipped as a plain resume does.
#[test]
fn resume_with_catch_up_runs_the_fires_missed_while_paused() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jcatchup");
    let (app, _c, _) = appliance_with_peer(&ns, "olga", "officer");
    let sink = Sink::start(&ns);
    let every = create(
        &ns,
        &job_with(
            "catchup",
            json!({"every": "1s"}),
            &sink.url("/ok/c"),
            json!({"coalesce": false, "misfire_grace": "30s", "max_instances": 10}),
        ),
    );
    let id = id_of(&every);
    assert!(
        wait_until(Duration::from_secs(10), || !sink.hits("/ok/c").is_empty()),
        "no first fire"
    );
    pause(&ns, &id);
    sleep(Duration::from_millis(300));
    let paused_at = Timestamp::now();
    let c0 = sink.hits("/ok/c").len();
    sleep(Duration::from_millis(3500));
    assert_eq!(sink.hits("/ok/c").len(), c0, "fired while paused");

    let resumed_at = Timestamp::now();
    let body = json!({"catch_up": true});
    let v = expect(
        &ns,
        "POST",
        &format!("/api/v1/jobs/{id}/resume"),
        Some(&body),
        200,
    );
    assert_eq!(v["paused"], false, "{v}");
    // The ~3 missed fires arrive at once (a burst, as asked), then the schedule continues.
    assert!(
        wait_until(Duration::from_secs(3), || sink.hits("/ok/c").len()
            >= c0 + 3),
        "catch-up fires did not arrive: {} new",
        sink.hits("/ok/c").len() - c0
    );
    let runs = wait_runs(
        &ns,
        &app,
        &id,
        Duration::from_secs(10),
        "caught up",
        finished,
    );
    let caught: Vec<&Value> = runs
        .iter()
        .filter(|r| {
            let s = ts(&r["scheduled_at"]);
            s > paused_at && s < resumed_at
        })
        .collect();
    assert!(
        caught.len() >= 3,
        "fires scheduled while paused were not run: {}",
        Value::from(runs.clone())
    );
    assert!(
        caught.iter().all(|r| r["status"] == "succeeded"),
        "{}",
        Value::from(runs.clone())
    );

    // Bad catch_up values are refused naming the field.
    pause(&ns, &id);
    let (s, v) = call(
        &ns,
        "POST",
        &format!("/api/v1/jobs/{id}/resume"),
        Some(&json!({"catch_up": "yes"})),
        &[],
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("catch_up")),
        "{v}"
    );
}

// ---------------------------------------------------------------------------------------------
// 11. A webhook cannot call the appliance itself or its host (hardening issue #13, item 1)

/// `/etc/netns/NAME/hosts`: `ip netns exec NAME` bind-mounts it over `/etc/hosts` for every
/// process it starts, so names resolve inside the test's namespace only, from a file, with no
/// DNS traffic. Removed on drop (and `/etc/netns` too when this created it and it is empty).
struct NetnsHosts {
    dir: PathBuf,
    created_parent: bool,
}

impl NetnsHosts {
    fn new(ns: &Netns, entries: &str) -> NetnsHosts {
        let parent = PathBuf::from("/etc/netns");
        let created_parent = !parent.exists();
        let dir = parent.join(ns.name());
        fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        fs::write(dir.join("hosts"), entries).expect("write /etc/netns/NAME/hosts");
        NetnsHosts {
            dir,
            created_parent,
        }
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        if self.created_parent {
            // Fails, harmlessly, if another test's namespace still has an entry there.
            let _ = fs::remove_dir("/etc/netns");
        }
    }
}

/// The attack: a webhook pointed at the appliance's own API, through a WireGuard client
/// of an admin on the same host, would enter the API as that admin. And one pointed at a
/// loopback service would reach it. Literal addresses are refused when the job is created;
/// names that resolve to them are refused when the run connects — nothing is sent, no peer
/// appears, and the run says why. `--allow-webhook-net` opens a LAN range (here loopback,
/// where the sink is) but never the tunnel subnet.
#[test]
fn webhooks_cannot_reach_the_appliance_or_loopback() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("jssrf");
    // Before `serve` starts: the names its resolver will see.
    let _hosts = NetnsHosts::new(
        &ns,
        "127.0.0.1 localhost\n10.88.88.1 appliance.test\n127.0.0.1 sink.test\n",
    );
    let mut app = Appliance::init(&ns, &[]);
    app.serve(); // no --allow-webhook-net: public destinations only
    let config = app.peer_add("olga", "officer");
    let client = connect(&ns, &app, &config);
    let sink = Sink::start(&ns);
    let mallory = json!({"name": "mallory", "role": "admin",
                         "public_key": "wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="});

    // Literal addresses: 400 naming the field, nothing stored.
    for (url, why) in [
        (
            "http://10.88.88.1:8888/api/v1/peers".to_string(),
            "destination 10.88.88.1 is inside the appliance's own network 10.88.88.0/24",
        ),
        (
            sink.url("/ok/literal"),
            "destination 127.0.0.1 is not a public address (loopback)",
        ),
        (
            format!("http://2130706433:{SINK_PORT}/ok/numeric"),
            "destination 127.0.0.1 is not a public address (loopback)",
        ),
        (
            format!("http://localhost:{SINK_PORT}/ok/localhost"),
            "destination 127.0.0.1 is not a public address (loopback)",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{SINK_PORT}/ok/mapped"),
            "destination 127.0.0.1 is not a public address (loopback)",
        ),
    ] {
        let mut body = job("literal", far_at(), &url);
        body["action"]["webhook"]["body"] = mallory.clone();
        let (s, v) = call(&ns, "POST", "/api/v1/jobs", Some(&body), &[]);
        assert_eq!(s, 400, "{url}: {v}");
        assert_eq!(v["error"]["field"], "action.webhook.url", "{url}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(why), "{url}: {msg}");
    }
    assert!(all_jobs(&ns).is_empty(), "a refused job was stored");

    // Names are judged on the address they resolve to, when the run connects.
    let mut own = job_with(
        "own-api",
        far_at(),
        "http://appliance.test:8888/api/v1/peers",
        json!({"retry": {"attempts": 3, "backoff": "1s"}}),
    );
    own["action"]["webhook"]["body"] = mallory.clone();
    let own = id_of(&create(&ns, &own));
    let local = id_of(&create(
        &ns,
        &job_with(
            "loopback-sink",
            far_at(),
            &format!("http://sink.test:{SINK_PORT}/ok/named"),
            json!({"retry": {"attempts": 3, "backoff": "1s"}}),
        ),
    ));
    // The tunnel client now speaks for an admin, as the host's own client in the issue did.
    let out = app.run(&["peer", "role", "olga", "admin"]);
    assert!(out.status.success(), "{}", describe(&out));
    // Runs job `id` now (its `n`th run) and checks that it failed with `why`, unretried.
    let refused_run = |app: &Appliance, id: &str, n: usize, why: &str| {
        run_now(&ns, id);
        let runs = wait_runs(
            &ns,
            app,
            id,
            Duration::from_secs(15),
            "a finished run",
            |r| r.len() == n && finished(r),
        );
        let run = runs.last().unwrap();
        assert_eq!(run["status"], "failed", "{run}");
        assert_eq!(run["attempt"], 1, "a refusal is not retried: {run}");
        assert!(run["http_status"].is_null(), "{run}");
        let err = run["error"].as_str().unwrap_or_default();
        assert!(err.starts_with(why), "{run}");
    };
    refused_run(
        &app,
        &own,
        1,
        "destination 10.88.88.1 is inside the appliance's own network 10.88.88.0/24; a webhook \
         can never call the appliance itself",
    );
    refused_run(
        &app,
        &local,
        1,
        "destination 127.0.0.1 is not a public address (loopback); allow a LAN range with serve \
         --allow-webhook-net",
    );
    assert!(sink.requests().is_empty(), "{:?}", sink.requests());
    let peers = app.run(&["peer", "list", "--json"]);
    assert!(peers.status.success(), "{}", describe(&peers));
    let peers: Value = serde_json::from_slice(&peers.stdout).expect("peer list --json");
    let names: Vec<&str> = peers
        .as_array()
        .expect("peer list is an array")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["olga"], "a webhook created a peer: {peers}");

    // Opting networks in opens them — but never the tunnel subnet.
    drop(client);
    app.stop();
    app.serve_with(&[
        "--allow-webhook-net",
        "10.0.0.0/8",
        "--allow-webhook-net",
        "127.0.0.0/8",
    ]);
    let _client = connect(&ns, &app, &config);
    let (s, v) = call(
        &ns,
        "PATCH",
        &format!("/api/v1/jobs/{local}"),
        Some(&json!({"action": {"webhook": {"url": "http://10.88.88.1:8888/api/v1/peers"}}})),
        &[],
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("action.webhook.url")),
        "{v}"
    );
    refused_run(
        &app,
        &own,
        2,
        "destination 10.88.88.1 is inside the appliance's own network 10.88.88.0/24",
    );
    run_now(&ns, &local);
    let runs = wait_runs(
        &ns,
        &app,
        &local,
        Duration::from_secs(15),
        "a succeeded run",
        |r| r.iter().any(|r| r["status"] == "succeeded"),
    );
    assert_eq!(runs.len(), 2, "{}", Value::from(runs.clone()));
    assert_eq!(sink.hits("/ok/named").len(), 1, "{:?}", sink.requests());
    assert_eq!(sink.requests().len(), 1, "{:?}", sink.requests());

    // A public address of the host itself (here: of the namespace, on its `lo`) is refused when
    // the run connects, though it is public and the job was accepted.
    ns.ip(&["addr", "add", "1.2.3.4/32", "dev", "lo"]);
    let host_sink = Sink::start_on(&ns, "1.2.3.4");
    let host = id_of(&create(
        &ns,
        &job(
            "host-public",
            far_at(),
            &format!("http://1.2.3.4:{SINK_PORT}/ok/host"),
        ),
    ));
    refused_run(
        &app,
        &host,
        1,
        "destination 1.2.3.4 is an address of the appliance's own host; webhooks cannot call it \
         unless serve --allow-webhook-net names it",
    );
    assert!(
        host_sink.requests().is_empty(),
        "{:?}",
        host_sink.requests()
    );
}

// ---------------------------------------------------------------------------------------------
// 12. A full disk (hardening issue #13, item 3)

/// A tmpfs of `size` mounted over an appliance's data dir (what `init` wrote is copied onto
/// it), so the disk can really fill up. Lazily unmounted on drop, even while `serve` still has
/// files open on it.
struct SmallDisk {
    dir: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    fn mount_over(dir: &std::path::Path, size: &str) -> SmallDisk {
        let aside = unique_temp_dir("small-disk");
        run_ok(bounded(30, "cp").arg("-a").arg(dir.join(".")).arg(&aside));
        run_ok(
            bounded(30, "mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "appliance-test",
                ])
                .arg(dir),
        );
        let disk = SmallDisk {
            dir: dir.to_path_buf(),
            filler: dir.join("filler"),
        };
        run_ok(bounded(30, "cp").arg("-a").arg(aside.join(".")).arg(dir));
        let _ = fs::remove_dir_all(&aside);
        disk
    }

    /// Writes a file until the filesystem has no block left.
    fn fill(&self) {
        let mut f = File::create(&self.filler).expect("create the filler");
        let chunk = vec![0x5au8; 4096];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", self.filler.display()),
            }
        }
        let _ = f.sync_all();
    }

    fn free(&self) {
        fs::remove_file(&self.filler).expect("remove the filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = output_of(bounded(30, "umount").arg("-l").arg(&self.dir));
    }
}

#[test]
fn a_full_disk_refuses_writes_with_507_and_recovers_without_a_restart() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("full");
    let sink = Sink::start(&ns);
    let mut app = Appliance::init(&ns, &[]);
    let disk = SmallDisk::mount_over(app.data_dir(), "6m");
    app.serve_with(ALLOW_SINK);
    let pid = app.pid();
    let config = app.peer_add("leader", "admin");
    let _client = connect(&ns, &app, &config);
    create(
        &ns,
        &job("tick", json!({"every": "1s"}), &sink.url("/tick")),
    );
    assert!(
        wait_until(Duration::from_secs(10), || sink.hits("/tick").len() >= 2),
        "the tick job does not fire; serve log:\n{}",
        app.log_tail(40)
    );

    disk.fill();
    // Creates that still fit in pages redb already owns may succeed; the first that needs a new
    // block must be refused with 507 and the sentence, and none may be a 500.
    let padding = "x".repeat(40_000);
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for i in 0..60 {
        let body = job_with(
            &format!("big-{i}"),
            far_at(),
            &sink.url("/never"),
            json!({"action": {"webhook": {"url": sink.url("/never"), "body": {"pad": padding}}}}),
        );
        let (status, v) = call(&ns, "POST", "/api/v1/jobs", Some(&body), &[]);
        match status {
            201 => acknowledged.push(id_of(&v)),
            507 => {
                refusal = Some(v);
                break;
            }
            other => panic!("a create on a full disk answered {other}: {v}"),
        }
    }
    let refusal = refusal.unwrap_or_else(|| {
        panic!(
            "60 creates of 40 KB fit on a full 6 MB disk?\n{}",
            app.log_tail(40)
        )
    });
    assert_eq!(
        refusal["error"],
        json!({
            "code": "insufficient_storage",
            "message": "the appliance's disk is full: nothing was saved; free space on the server and try again",
            "field": null,
        })
    );
    let health = expect(&ns, "GET", "/api/v1/health", None, 200);
    eprintln!("health on a full disk: {health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["storage"]["writable"], false, "{health}");
    assert_eq!(health["storage"]["disk_full"], true, "{health}");
    // Reads keep working meanwhile, and so does the tunnel.
    assert_eq!(
        all_jobs(&ns).len(),
        1 + acknowledged.len(),
        "the job list is served during the condition"
    );
    assert!(ping(&ns, APPLIANCE_IP));
    let tick = all_jobs(&ns)
        .into_iter()
        .find(|j| j["name"] == "tick")
        .expect("the tick job");
    let recorded_ticks = runs_of(&ns, &id_of(&tick));
    assert!(
        !recorded_ticks.is_empty(),
        "run history is served from disk meanwhile"
    );
    // Health never claims the scheduler records fires while it cannot. On a real full disk a
    // small fire commit may still fit in pages redb already owns (and since the job table is
    // read from the store, a read may reopen it sooner), so either health says `recording:
    // false`, or the tick's fires really are recorded meanwhile. What must hold in every case,
    // that no fire runs without its record, is checked at the end; the in-process test
    // `scheduler::runner::tests::no_fire_runs_unrecorded_and_firing_resumes_when_the_disk_recovers`
    // pins `recording: false` on a store that refuses every write.
    let tick_id = id_of(&tick);
    let recorded_at_fill = recorded_ticks.len();
    let mut said_not_recording = false;
    let mut recorded_meanwhile = false;
    assert!(
        wait_until(Duration::from_secs(5), || {
            said_not_recording |=
                expect(&ns, "GET", "/api/v1/health", None, 200)["scheduler"]["recording"] == false;
            recorded_meanwhile |= runs_of(&ns, &tick_id).len() > recorded_at_fill + 1;
            said_not_recording || recorded_meanwhile
        }),
        "on a full disk the scheduler neither records fires nor says it cannot; serve log:\n{}",
        app.log_tail(40)
    );
    eprintln!("full disk: health said not recording: {said_not_recording}; fires recorded meanwhile: {recorded_meanwhile}");
    // The CLI through the control socket gets the same sentence and a non-zero exit (unless
    // this small commit happened to fit: then it is saved like any other).
    let out = app.run(&["peer", "add", "late", "--role", "viewer"]);
    let cli_saved = out.status.success();
    assert!(
        cli_saved || out.status.code() == Some(1),
        "{}",
        describe(&out)
    );
    assert!(
        cli_saved ||
        String::from_utf8_lossy(&out.stderr).contains(
            "the appliance's disk is full: nothing was saved; free space on the server and try again"
        ),
        "peer add on a full disk: {}",
        describe(&out)
    );

    let before = sink.hits("/tick").len();
    disk.free();
    // No restart: the same process accepts writes again, reports healthy and fires again.
    assert!(
        wait_until(Duration::from_secs(15), || {
            expect(&ns, "GET", "/api/v1/health", None, 200)["status"] == "ok"
        }),
        "health does not recover; serve log:\n{}",
        app.log_tail(60)
    );
    let after = create(&ns, &job("after", far_at(), &sink.url("/never")));
    if !cli_saved {
        app.peer_add("late", "viewer");
    }
    assert!(
        wait_until(Duration::from_secs(10), || sink.hits("/tick").len()
            > before + 1),
        "the scheduler does not fire again; serve log:\n{}",
        app.log_tail(60)
    );
    assert_eq!(app.pid(), pid);
    assert!(app.is_running());
    assert!(
        app.log().contains("database writable again"),
        "{}",
        app.log_tail(60)
    );
    // Nothing acknowledged was lost.
    let ids: HashSet<String> = all_jobs(&ns).iter().map(id_of).collect();
    for id in acknowledged.iter().chain([&id_of(&after)]) {
        assert!(ids.contains(id), "acknowledged job {id} is gone");
    }
    let ticks = runs_of(&ns, &id_of(&tick));
    // Oldest first: only the newest tick may still be going.
    assert!(
        ticks.iter().rev().skip(1).all(|r| r["status"] != "running"),
        "no run is left marked running: {ticks:#?}"
    );
    let executed = ticks
        .iter()
        .filter(|r| {
            ["succeeded", "failed", "running"].contains(&r["status"].as_str().unwrap_or(""))
        })
        .count();
    assert!(
        sink.hits("/tick").len() <= executed,
        "{} webhook calls but only {executed} runs recorded as executed: {ticks:#?}",
        sink.hits("/tick").len()
    );
    let ids: HashSet<&Value> = ticks.iter().map(|r| &r["id"]).collect();
    for r in &recorded_ticks {
        assert!(
            ids.contains(&r["id"]),
            "run {} recorded before the disk filled is gone",
            r["id"]
        );
    }
    drop(disk);
}
