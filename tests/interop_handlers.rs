//! Interop: handlers through the real wireguard-go tunnel (issue 9, server side). Each handler
//! is a peer with role `handler` in its own namespace, linked to the appliance's namespace by
//! veth; the officer who schedules sits in the appliance's namespace. The handler side is
//! driven with curl (first test) and with `tests/support/handler.py` (urllib, long polls,
//! heartbeats) — every request stays inside namespaces the test created.
//!
//! What is checked: a scheduled call reaches its handler through a long poll as soon as it is
//! due and its ack makes the run `succeeded` with the result; roles and ownership (a handler
//! cannot create jobs, lease another handler's tasks or ack a task it does not hold; officers
//! do not lease); bad input to every new route is refused naming the field; a handler killed
//! mid-task gets the task back as attempt 2 once the lease expires; a handler offline when the
//! job fires gets the task when it comes back; `kill -9` of the appliance loses no queued or
//! leased task; no task is acked twice; a 12 s call (longer than ScheduleZero's 10 s RPC
//! timeout) runs exactly once thanks to heartbeats.
//!
//! Needs root, the packages `scripts/test.sh` installs and `python3` (SKIP without them, FAIL
//! under `CI=true`).
// A driver in STYLE.md's sense: real processes against wall-clock deadlines.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

fn prereqs() -> bool {
    require_prereqs_and_python("tests/support/handler.py needs it")
}

fn runs_of(ns: &Netns, job: &str) -> Vec<Value> {
    let v = expect(
        ns,
        "GET",
        &format!("/api/v1/jobs/{job}/runs?limit=500"),
        None,
        200,
    );
    let mut runs = v["runs"].as_array().expect("runs").clone();
    runs.sort_by_key(|r| r["id"].as_u64());
    runs
}

fn wait_runs(
    ns: &Netns,
    app: &Appliance,
    job: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    wait_runs_by(app, job, timeout, what, || runs_of(ns, job), done)
}

/// An appliance in `ns` with officer "olga" connected from `ns` itself, and handler peer
/// `handler` connected from `handler_ns` over 192.0.2.0/24.
fn with_officer_and_handler<'a>(
    ns: &'a Netns,
    handler_ns: &'a Netns,
    handler: &str,
) -> (Appliance<'a>, WgClient<'a>, WgClient<'a>) {
    let app = Appliance::start(ns);
    let conf = app.peer_add("olga", "officer");
    let olga = connect(ns, &app, &conf);
    let client = remote_peer(ns, &app, handler_ns, handler, "handler", "192.0.2");
    (app, olga, client)
}

/// The id of the job's (first) run, once there is one.
fn run_of(ns: &Netns, app: &Appliance, job: &str) -> String {
    let runs = wait_runs(ns, app, job, Duration::from_secs(10), "a run", |r| {
        !r.is_empty()
    });
    runs[0]["id"].to_string()
}

fn after(secs: i64) -> Timestamp {
    Timestamp::now() + SignedDuration::from_secs(secs)
}

fn handler_job(name: &str, at: Timestamp, handler: &str, method: &str, params: Value) -> Value {
    json!({
        "name": name,
        "trigger": {"at": at.to_string()},
        "action": {"handler": {"id": handler, "method": method, "params": params}},
        "retry": {"attempts": 3, "backoff": "0s"},
        "timeout": "60s",
    })
}

fn create(ns: &Netns, job: &Value) -> String {
    let v = expect(ns, "POST", "/api/v1/jobs", Some(job), 201);
    v["id"].as_str().expect("job id").to_string()
}

/// `tests/support/handler.py` running in `ns`; killed with SIGKILL on drop (or by `kill9`).
struct Handler {
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Handler {
    fn start(ns: &Netns) -> Handler {
        let dir = unique_temp_dir("handler");
        let log = dir.join("events.jsonl");
        let mut h = Handler {
            dir,
            log,
            child: None,
        };
        h.restart(ns);
        h
    }

    /// Starts the script (again), appending to the same event log; waits until registered.
    fn restart(&mut self, ns: &Netns) {
        let out = File::create(self.dir.join("handler.out")).expect("create handler.out");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/handler.py");
        let before = self.events("registered").len();
        self.child = Some(
            ns.cmd("python3")
                .arg("-u")
                .arg(script)
                .arg(&self.log)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone"))
                .stderr(out)
                .spawn()
                .expect("spawn handler.py"),
        );
        assert!(
            wait_until(Duration::from_secs(20), || self.events("registered").len()
                > before),
            "handler.py did not register:\n{}",
            fs::read_to_string(self.dir.join("handler.out")).unwrap_or_default()
        );
        let reg = self.events("registered").pop().unwrap();
        assert_eq!(reg["status"], 200, "{reg}");
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event"] == kind)
            .collect()
    }

    fn for_run(&self, kind: &str, run: &str) -> Vec<Value> {
        self.events(kind)
            .into_iter()
            .filter(|e| e["run_id"] == run)
            .collect()
    }

    fn wait_event(&self, kind: &str, run: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let ok = wait_until(timeout, || self.for_run(kind, run).len() >= n);
        assert!(
            ok,
            "no {n} {kind} events for run {run} within {timeout:?}; log:\n{}",
            tail(&fs::read_to_string(&self.log).unwrap_or_default(), 30)
        );
        self.for_run(kind, run)
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "handler dir kept: {}\n--- events ---\n{}",
                self.dir.display(),
                tail(&fs::read_to_string(&self.log).unwrap_or_default(), 40)
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every ack that the appliance answered 200 for the first time (not a repeat): at most one
/// per run.
fn assert_acked_once(h: &Handler) {
    let mut seen = std::collections::HashMap::new();
    for e in h.events("ack") {
        if e["status"] == 200 && e["reply"]["repeated"] == false {
            *seen
                .entry(e["run_id"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    for (run, n) in seen {
        assert_eq!(n, 1, "run {run} was acked {n} times");
    }
}

#[test]
fn a_scheduled_call_reaches_its_handler_through_a_long_poll_and_roles_hold() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("hcall");
    let bot_ns = Netns::new("bot");
    let (mut app, _olga, _bot) = with_officer_and_handler(&ns, &bot_ns, "bot");
    let eve_ns = Netns::new("eve");
    let _eve = remote_peer(&ns, &app, &eve_ns, "eve", "handler", "198.51.100");

    // Nobody registered yet: the officer cannot schedule a call to bot.
    let at = after(3);
    let job = handler_job("greet", at, "bot", "echo", json!({"x": 1}));
    refused(
        &ns,
        "POST",
        "/api/v1/jobs",
        Some(&job),
        400,
        "action.handler.id",
    );

    // Registration: bad input names the field, and only handlers register.
    for (body, field) in [
        (json!({}), "methods"),
        (json!({"methods": "echo"}), "methods"),
        (json!({"methods": ["echo", 7]}), "methods.1"),
        (json!({"methods": ["echo", "no spaces"]}), "methods.1"),
        (json!({"methods": ["echo", "echo"]}), "methods.1"),
        (json!({"methods": ["echo"], "name": "bot"}), "name"),
    ] {
        refused(&bot_ns, "PUT", "/api/v1/handler", Some(&body), 400, field);
    }
    let v = expect(
        &ns,
        "PUT",
        "/api/v1/handler",
        Some(&json!({"methods": ["echo"]})),
        403,
    );
    assert_eq!(v["error"]["code"], "forbidden_role");
    let v = expect(
        &bot_ns,
        "PUT",
        "/api/v1/handler",
        Some(&json!({"methods": ["echo", "slow"]})),
        200,
    );
    assert_eq!(v, json!({"handler_id": "bot", "methods": ["echo", "slow"]}));
    expect(
        &eve_ns,
        "PUT",
        "/api/v1/handler",
        Some(&json!({"methods": ["echo"]})),
        200,
    );

    // An unregistered method is refused naming it; a handler cannot create jobs or read them.
    let wrong = handler_job("greet", at, "bot", "dance", json!({}));
    refused(
        &ns,
        "POST",
        "/api/v1/jobs",
        Some(&wrong),
        400,
        "action.handler.method",
    );
    for (m, p) in [
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/handlers"),
        ("GET", "/api/v1/runs"),
    ] {
        let v = expect(
            &bot_ns,
            m,
            p,
            if m == "POST" { Some(&job) } else { None },
            403,
        );
        assert_eq!(v["error"]["code"], "forbidden_role", "{m} {p}: {v}");
    }
    // Officers do not lease.
    expect(&ns, "POST", "/api/v1/tasks/lease", Some(&json!({})), 403);

    // Bad input to the lease route names the field.
    for (body, field) in [
        (json!({"wait_s": 61}), "wait_s"),
        (json!({"max": 0}), "max"),
        (json!({"max": 101}), "max"),
        (json!({"lease_s": 4}), "lease_s"),
        (json!({"lease_s": "5"}), "lease_s"),
        (json!({"queue": "x"}), "queue"),
        (json!([1]), "body"),
    ] {
        refused(
            &bot_ns,
            "POST",
            "/api/v1/tasks/lease",
            Some(&body),
            400,
            field,
        );
    }

    // bot long-polls before the job is even created; the call is returned as soon as it is due.
    let job_id = create(&ns, &job);
    let (s, v, got_at) = std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            let (s, v) = call(
                &bot_ns,
                "POST",
                "/api/v1/tasks/lease",
                Some(&json!({"wait_s": 20, "max": 10, "lease_s": 30})),
                &["--max-time", "30"],
            );
            (s, v, Timestamp::now())
        });
        // eve asks for work too, but nothing is addressed to her.
        let v = expect(
            &eve_ns,
            "POST",
            "/api/v1/tasks/lease",
            Some(&json!({"wait_s": 5})),
            200,
        );
        assert_eq!(v, json!({"tasks": []}), "eve got bot's task");
        poll.join().unwrap()
    });
    assert_eq!(s, 200, "{v}");
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{v}");
    let task = &tasks[0];
    let late = (got_at.as_nanosecond() - at.as_nanosecond()) as f64 / 1e9;
    println!("long-poll delivery {late:.3} s after the due time");
    assert!(late >= 0.0, "delivered {late} s early");
    assert!(late < 2.0, "delivered {late} s late");
    assert_eq!(task["job_id"], job_id.as_str());
    assert_eq!(task["method"], "echo");
    assert_eq!(task["params"], json!({"x": 1}));
    assert_eq!(task["attempt"], 1);
    let id = task["id"].as_str().unwrap().to_string();
    let run_id = task["run_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);

    // The run shows leased; the handler list shows bot online with one leased task.
    let runs = runs_of(&ns, &job_id);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "leased", "{}", runs[0]);
    assert_eq!(runs[0]["id"].to_string(), run_id);
    assert_eq!(runs[0]["handler"], "bot");
    let v = expect(&ns, "GET", "/api/v1/runs?status=leased", None, 200);
    assert_eq!(v["runs"].as_array().unwrap().len(), 1, "{v}");
    let hs = expect(&ns, "GET", "/api/v1/handlers", None, 200);
    let bot = hs["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["handler_id"] == "bot")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            bot["online"].clone(),
            bot["leased"].clone(),
            bot["queued"].clone()
        ),
        (json!(true), json!(1), json!(0)),
        "{hs}"
    );

    let stats = expect(&ns, "GET", "/api/v1/stats", None, 200);
    assert_eq!(stats["tasks"], json!({"queued": 0, "leased": 1}), "{stats}");
    assert_eq!(
        stats["running"], 1,
        "a leased call holds its instance: {stats}"
    );

    // eve cannot touch bot's task; bad input to heartbeat, ack and fail names the field.
    let tp = |verb: &str| format!("/api/v1/tasks/{id}/{verb}");
    for verb in ["heartbeat", "ack"] {
        let v = expect(&eve_ns, "POST", &tp(verb), Some(&json!({})), 409);
        assert_eq!(v["error"]["code"], "lease_lost", "{v}");
    }
    expect(
        &eve_ns,
        "POST",
        &tp("fail"),
        Some(&json!({"error": "x"})),
        409,
    );
    refused(
        &bot_ns,
        "POST",
        "/api/v1/tasks/nothex/ack",
        Some(&json!({})),
        400,
        "id",
    );
    refused(
        &bot_ns,
        "POST",
        &format!("/api/v1/tasks/{}/ack", "0".repeat(32)),
        Some(&json!({})),
        404,
        "id",
    );
    refused(
        &bot_ns,
        "POST",
        &tp("heartbeat"),
        Some(&json!({"lease_s": 3601})),
        400,
        "lease_s",
    );
    refused(
        &bot_ns,
        "POST",
        &tp("heartbeat"),
        Some(&json!({"extend": 5})),
        400,
        "extend",
    );
    refused(&bot_ns, "POST", &tp("fail"), Some(&json!({})), 400, "error");
    refused(
        &bot_ns,
        "POST",
        &tp("fail"),
        Some(&json!({"error": "x", "retry": "yes"})),
        400,
        "retry",
    );
    refused(
        &bot_ns,
        "POST",
        &tp("ack"),
        Some(&json!({"outcome": 1})),
        400,
        "outcome",
    );
    let big = json!({"result": "x".repeat(70 * 1024)});
    let (s, v) = call(&bot_ns, "POST", &tp("ack"), Some(&big), &[]);
    assert!(
        s == 413 && (v["error"]["field"] == "result" || v["error"]["field"] == "body"),
        "{s} {v}"
    );

    // A heartbeat extends the lease; the ack finishes the run with the result, once.
    let v = expect(
        &bot_ns,
        "POST",
        &tp("heartbeat"),
        Some(&json!({"lease_s": 10})),
        200,
    );
    assert_eq!(v["cancel_requested"], false);
    let result = json!({"echo": {"x": 1}, "message_id": "42"});
    let ack = || {
        expect(
            &bot_ns,
            "POST",
            &tp("ack"),
            Some(&json!({"result": result})),
            200,
        )
    };
    assert_eq!(ack()["repeated"], false);
    assert_eq!(ack()["repeated"], true, "a repeated ack is idempotent");
    expect(&bot_ns, "POST", &tp("heartbeat"), Some(&json!({})), 409);
    let runs = runs_of(&ns, &job_id);
    let r = &runs[0];
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["result"], result, "{r}");
    assert_eq!(r["attempt"], 1, "{r}");
    assert!(
        r["queue_delay_ms"].as_u64().is_some_and(|d| d < 2000),
        "{r}"
    );
    assert!(r["error"].is_null(), "{r}");
    let stats = expect(&ns, "GET", "/api/v1/stats", None, 200);
    assert_eq!(stats["since_start"]["succeeded"], 1, "{stats}");
    assert_eq!(stats["tasks"], json!({"queued": 0, "leased": 0}), "{stats}");
    assert_eq!(stats["running"], 0, "{stats}");
    assert!(stats["lateness"]["samples"].as_u64() >= Some(1), "{stats}");

    // The run and the registration survive a restart.
    app.stop();
    app.serve();
    wait_api(&ns, &app);
    assert_eq!(runs_of(&ns, &job_id)[0]["result"], result);
    let hs = expect(&ns, "GET", "/api/v1/handlers", None, 200);
    assert_eq!(hs["handlers"].as_array().unwrap().len(), 2, "{hs}");
}

#[test]
fn tasks_survive_crashed_handlers_offline_handlers_and_appliance_restarts() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("hdur");
    let bot_ns = Netns::new("hbot");
    let (mut app, _olga, _bot) = with_officer_and_handler(&ns, &bot_ns, "hbot");
    let mut bot = Handler::start(&bot_ns);
    bot.kill9();

    // 1. Offline when the job fires: the run waits as queued, across a kill -9 of the
    //    appliance, and the handler gets it when it comes back.
    let offline = create(
        &ns,
        &handler_job("offline", after(2), "hbot", "echo", json!({"n": 1})),
    );
    wait_runs(
        &ns,
        &app,
        &offline,
        Duration::from_secs(10),
        "queued",
        |r| r.len() == 1 && r[0]["status"] == "queued",
    );
    app.kill9();
    app.serve();
    wait_api(&ns, &app);
    assert_eq!(runs_of(&ns, &offline)[0]["status"], "queued");
    bot.restart(&bot_ns);
    let runs = wait_runs(
        &ns,
        &app,
        &offline,
        Duration::from_secs(20),
        "succeeded",
        |r| r.len() == 1 && r[0]["status"] == "succeeded",
    );
    assert_eq!(runs[0]["attempt"], 1, "{}", runs[0]);
    assert_eq!(runs[0]["result"], json!({"echo": {"n": 1}}));

    // 2. Killed mid-task: the lease runs out (5 s) and the task comes back as attempt 2.
    let crash = create(
        &ns,
        &handler_job("crash", after(1), "hbot", "slow", json!({"seconds": 3})),
    );
    let crash_run = run_of(&ns, &app, &crash);
    bot.wait_event("lease", &crash_run, 1, Duration::from_secs(15));
    bot.kill9();
    let killed_at = Instant::now();
    bot.restart(&bot_ns);
    let leases = bot.wait_event("lease", &crash_run, 2, Duration::from_secs(20));
    assert_eq!(leases[1]["attempt"], 2, "{leases:?}");
    assert!(
        killed_at.elapsed() >= Duration::from_secs(3),
        "redelivered before the lease ran out"
    );
    let runs = wait_runs(
        &ns,
        &app,
        &crash,
        Duration::from_secs(20),
        "succeeded",
        |r| r[0]["status"] == "succeeded",
    );
    assert_eq!(runs[0]["attempt"], 2, "{}", runs[0]);

    // 3. kill -9 of the appliance while the handler holds a lease: nothing is lost. The
    //    handler's heartbeats fail while it is down; afterwards the lease it held either
    //    still stands (ack accepted) or expired (409, redelivered as attempt 2) — either way
    //    the run succeeds, once.
    let restart = create(
        &ns,
        &handler_job("restart", after(1), "hbot", "slow", json!({"seconds": 6})),
    );
    let restart_run = run_of(&ns, &app, &restart);
    bot.wait_event("lease", &restart_run, 1, Duration::from_secs(15));
    let runs = runs_of(&ns, &restart);
    assert_eq!(runs[0]["status"], "leased", "{}", runs[0]);
    app.kill9();
    app.serve();
    wait_api(&ns, &app);
    let runs = wait_runs(
        &ns,
        &app,
        &restart,
        Duration::from_secs(40),
        "succeeded",
        |r| r[0]["status"] == "succeeded",
    );
    assert_eq!(runs[0]["result"], json!({"slept": 6}));

    // 4. A 12 s call, longer than ScheduleZero's 10 s RPC timeout, with 5 s leases kept alive
    //    by heartbeats: delivered and run exactly once.
    let long = create(
        &ns,
        &handler_job("long", after(1), "hbot", "slow", json!({"seconds": 12})),
    );
    let long_run = run_of(&ns, &app, &long);
    let runs = wait_runs(
        &ns,
        &app,
        &long,
        Duration::from_secs(30),
        "succeeded",
        |r| r[0]["status"] == "succeeded",
    );
    assert_eq!(runs[0]["attempt"], 1, "{}", runs[0]);
    assert!(
        runs[0]["duration_ms"].as_u64() >= Some(12_000),
        "{}",
        runs[0]
    );
    assert_eq!(
        bot.for_run("lease", &long_run).len(),
        1,
        "delivered more than once"
    );
    assert!(bot.for_run("heartbeat", &long_run).len() >= 5);

    assert_acked_once(&bot);
    for job in [&offline, &crash, &restart, &long] {
        assert_eq!(runs_of(&ns, job).len(), 1, "job {job} ran more than once");
    }
}
