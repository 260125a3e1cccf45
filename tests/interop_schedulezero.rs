//! Interop: ScheduleZero's routes through the real wireguard-go tunnel (issue 9, compatibility).
//! A ScheduleZero client (`tests/support/schedulezero_client.py`, urllib) runs unchanged in the
//! officer's namespace against `/api/*` while ScheduleZero's DingDongHandler, ported to the
//! Python handler library (`clients/python/examples/ding_dong_handler.py`, run with
//! `python3 -m appliance_handler`), leases the calls as peer `ding-dong-handler`; a second
//! handler peer (`tests/support/handler.py`) supplies failing and slow methods. Every request
//! stays inside namespaces the test created.
//!
//! What is checked: health and handler status (Connected); a date ding-dong fires and shows as
//! `success` in `/api/executions`; `/api/schedules` shows next fire times and ScheduleZero's
//! `args`; `run_now` returns the handler's result (and 502 on failure, 202 when it takes
//! longer than 30 s); deleting works; the fixed bugs: 409 for a repeated `job_id`, 404 for an
//! unknown id, 415 for a non-JSON body. Bad input to each route names the field; viewers read,
//! officers change, only admins clear the history (audited).
//!
//! Needs root, the packages `scripts/test.sh` installs and `python3` (SKIP without them, FAIL
//! under `CI=true`).
// A driver in STYLE.md's sense: real processes against wall-clock deadlines.
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::{self, File};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn prereqs() -> bool {
    require_prereqs_and_python("the handler scripts need it")
}

/// Calls here may wait on a handler: up to 60 s, not curl's default.
const SLOW: &[&str] = &["--max-time", "60"];

fn expect(ns: &Netns, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
    expect_with(ns, method, path, body, status, SLOW)
}

fn refused(ns: &Netns, method: &str, path: &str, body: Option<&Value>, status: u16, field: &str) {
    let v = expect(ns, method, path, body, status);
    assert_names_field(&v, field, &format!("{method} {path} {body:?}"));
}

/// `tests/support/handler.py` (methods echo, slow, boom) in `ns`; killed on drop.
struct Handler(Child, std::path::PathBuf);

impl Handler {
    fn start(ns: &Netns) -> Handler {
        let dir = unique_temp_dir("szhandler");
        let log = dir.join("events.jsonl");
        let out = File::create(dir.join("handler.out")).expect("create handler.out");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/handler.py");
        let child = ns
            .cmd("python3")
            .arg("-u")
            .arg(script)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("spawn handler.py");
        assert!(
            wait_until(Duration::from_secs(20), || fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("\"registered\"")),
            "handler.py did not register"
        );
        Handler(child, dir)
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = fs::remove_dir_all(&self.1);
    }
}

/// ScheduleZero's DingDongHandler through `python3 -m appliance_handler` in `ns`; killed on
/// drop.
struct DingDong(Child, std::path::PathBuf);

impl DingDong {
    fn start(ns: &Netns) -> DingDong {
        let dir = unique_temp_dir("dingdong");
        let out = File::create(dir.join("handler.out")).expect("create handler.out");
        let child = ns
            .cmd("python3")
            .args([
                "-u",
                "-m",
                "appliance_handler",
                "examples/ding_dong_handler.py:DingDongHandler",
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python"))
            .env("DING_DONG_LOG_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("spawn appliance_handler");
        DingDong(child, dir)
    }

    fn output(&self) -> String {
        fs::read_to_string(self.1.join("handler.out")).unwrap_or_default()
    }
}

impl Drop for DingDong {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = fs::remove_dir_all(&self.1);
    }
}

/// The report's calls to `method path` (path without its query), in order.
fn calls<'a>(report: &'a Value, method: &str, path: &str) -> Vec<&'a Value> {
    report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["method"] == method && c["path"].as_str().unwrap().split('?').next() == Some(path)
        })
        .collect()
}

#[test]
fn a_schedulezero_client_works_unchanged_through_the_tunnel() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("szc");
    let app = Appliance::start(&ns);
    let olga_conf = app.peer_add("olga", "officer");
    let _olga = connect(&ns, &app, &olga_conf);
    let bot_ns = Netns::new("bot");
    let _bot = remote_peer(&ns, &app, &bot_ns, "bot", "handler", "192.0.2");
    let vic_ns = Netns::new("vic");
    let _vic = remote_peer(&ns, &app, &vic_ns, "vic", "viewer", "198.51.100");
    let ada_ns = Netns::new("ada");
    let _ada = remote_peer(&ns, &app, &ada_ns, "ada", "admin", "203.0.113");
    let _handler = Handler::start(&bot_ns);
    let dd_ns = Netns::new("ding-dong-handler");
    let _dd = remote_peer(
        &ns,
        &app,
        &dd_ns,
        "ding-dong-handler",
        "handler",
        "100.64.9",
    );
    let ding_dong = DingDong::start(&dd_ns);
    assert!(
        wait_until(Duration::from_secs(30), || {
            expect(&ns, "GET", "/api/handlers", None, 200)
                .to_string()
                .contains("play_quarter_chime")
        }),
        "the DingDongHandler did not register:\n{}",
        ding_dong.output()
    );

    // The client script, unchanged: schedule, list, run_now, executions, delete.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/schedulezero_client.py"
    );
    let out = run_ok(
        ns.bounded(120, "python3")
            .arg(script)
            .arg("ding-dong-handler")
            .arg("play_quarter_chime"),
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the client printed no report ({e}): {}", describe(&out)));

    let health = calls(&report, "GET", "/api/health");
    assert_eq!(health[0]["status"], 200);
    assert_eq!(
        health[0]["body"],
        json!({"status": "ok", "service": "ScheduleZero"})
    );
    let handlers = &calls(&report, "GET", "/api/handlers")[0]["body"]["handlers"];
    assert_eq!(handlers.as_array().unwrap().len(), 2, "{report}");
    let bot = &handlers[0];
    assert_eq!(bot["id"], "bot");
    assert_eq!(bot["methods"], json!(["boom", "echo", "slow"]));
    let dd = &handlers[1];
    assert_eq!(dd["id"], "ding-dong-handler");
    assert_eq!(dd["status"], "Connected");
    assert!(
        dd["methods"].to_string().contains("play_quarter_chime"),
        "{dd}"
    );
    assert_eq!(
        bot["status"], "Connected",
        "ScheduleZero always said Disconnected"
    );
    assert!(
        bot["address"].as_str().unwrap().starts_with("10.88.88."),
        "{bot}"
    );

    let sched = calls(&report, "POST", "/api/schedule");
    for (i, id) in ["ding-dong-1", "ding-dong-2", "ding-dong-3"]
        .iter()
        .enumerate()
    {
        assert_eq!(sched[i]["status"], 201, "{}", sched[i]);
        assert_eq!(sched[i]["body"]["status"], "success");
        assert_eq!(sched[i]["body"]["job_id"], *id);
    }
    // Fixed: a repeated job_id is a 409 naming it (ScheduleZero: 201, old schedule kept).
    assert_eq!(sched[3]["status"], 409, "{}", sched[3]);
    assert_eq!(sched[3]["body"]["error"]["field"], "job_id");
    // Fixed: a non-JSON body is a 415 (ScheduleZero: 500 with a traceback).
    assert_eq!(sched[4]["status"], 415, "{}", sched[4]);
    assert_eq!(sched[4]["body"]["error"]["field"], "Content-Type");

    let listed = calls(&report, "GET", "/api/schedules");
    let first = &listed[0]["body"];
    assert_eq!(first["count"], 3, "{first}");
    let by_id = |id: &str| {
        first["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {first}"))
            .clone()
    };
    let two = by_id("ding-dong-2");
    assert!(two["next_fire_time"].is_string(), "{two}");
    assert_eq!(
        two["args"],
        json!(["ding-dong-handler", "play_quarter_chime", {"quarter": 2}, "ding-dong-2"])
    );
    assert_eq!(two["trigger"], "interval[1m]");
    let three = by_id("ding-dong-3");
    assert_eq!(
        three["trigger"],
        "cron[0 30 9 * * MON,TUE,WED,THU,FRI] Europe/Berlin"
    );
    let next: jiff::Timestamp = three["next_fire_time"].as_str().unwrap().parse().unwrap();
    let local = next.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    assert_eq!((local.hour(), local.minute()), (9, 30), "{three}");
    assert!(
        !matches!(
            local.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        ),
        "mon-fri in APScheduler's numbering is Monday to Friday: {local}"
    );
    // After the deletes nothing is left.
    assert_eq!(listed[1]["body"]["count"], 0, "{}", listed[1]);

    // run_now returns the handler's answer.
    let now = &calls(&report, "POST", "/api/run_now")[0];
    assert_eq!(now["status"], 200, "{now}");
    assert_eq!(now["body"]["status"], "success");
    let result = &now["body"]["result"];
    assert_eq!(
        (&result["type"], &result["quarter"], &result["minute"]),
        (&json!("quarter_chime"), &json!(2), &json!(30)),
        "{now}"
    );

    // The date ding-dong fired, reached bot and is a success in the execution log.
    let ex = calls(&report, "GET", "/api/executions");
    let last = &ex.last().unwrap()["body"];
    let rec = last["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "success")
        .unwrap_or_else(|| panic!("ding-dong-1 never succeeded: {last}"));
    assert_eq!(rec["job_id"], "ding-dong-1");
    assert_eq!(rec["handler_id"], "ding-dong-handler");
    assert_eq!(rec["job_method"], "play_quarter_chime");
    assert_eq!(rec["result"]["quarter"], 1, "{rec}");
    let stats = &calls(&report, "GET", "/api/executions/stats")[0]["body"];
    assert!(stats["success_count"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(
        stats["by_handler"]["ding-dong-handler"]["error"], 0,
        "{stats}"
    );

    let del = calls(&report, "DELETE", "/api/schedules/ding-dong-1");
    assert_eq!(del[0]["status"], 200, "{}", del[0]);
    assert_eq!(del[0]["body"]["schedule_id"], "ding-dong-1");
    // Fixed: an unknown id is a 404 (ScheduleZero: 200).
    let unknown = &calls(&report, "DELETE", "/api/schedules/no-such-dong")[0];
    assert_eq!(unknown["status"], 404, "{unknown}");
    assert_eq!(unknown["body"]["error"]["field"], "id");

    // run_now of a failing method is a 502 with the handler's error; one that takes longer
    // than 30 s is a 202 with the run to follow, and it finishes later.
    let v = expect(
        &ns,
        "POST",
        "/api/run_now",
        Some(&json!({"handler_id": "bot", "job_method": "boom"})),
        502,
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("boom"),
        "{v}"
    );
    let v = expect(
        &ns,
        "POST",
        "/api/run_now",
        Some(&json!({"handler_id": "bot", "job_method": "slow", "job_params": {"seconds": 33}})),
        202,
    );
    let job = v["job_id"].as_str().unwrap().to_string();
    let run = v["run_id"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let r = expect(&ns, "GET", &format!("/api/v1/jobs/{job}/runs"), None, 200);
            r["runs"][0]["id"].as_u64() == run.parse::<u64>().ok()
                && r["runs"][0]["status"] == "succeeded"
        }),
        "the slow run_now never finished"
    );
    let errors = expect(&ns, "GET", "/api/executions/errors", None, 200);
    assert_eq!(errors["count"], 1, "{errors}");
    assert_eq!(errors["errors"][0]["handler_id"], "bot");
    let only_errors = expect(&ns, "GET", "/api/executions?status=error", None, 200);
    assert_eq!(only_errors["count"], 1, "{only_errors}");

    // Bad input to each route names the field.
    let call_ok = json!({"handler_id": "bot", "job_method": "echo"});
    for (body, status, field) in [
        (
            json!({"job_method": "echo", "trigger": {"type": "interval", "minutes": 1}}),
            400,
            "handler_id",
        ),
        (
            json!({"handler_id": "bot", "trigger": {"type": "interval", "minutes": 1}}),
            400,
            "job_method",
        ),
        (
            json!({"handler_id": "bot", "job_method": "echo"}),
            400,
            "trigger",
        ),
        (
            json!({"handler_id": "nobody", "job_method": "echo", "trigger": {"type": "interval", "minutes": 1}}),
            404,
            "handler_id",
        ),
        (
            json!({"handler_id": "bot", "job_method": "dance", "trigger": {"type": "interval", "minutes": 1}}),
            400,
            "job_method",
        ),
        (
            json!({"handler_id": "bot", "job_method": "echo", "job_params": [1], "trigger": {"type": "interval", "minutes": 1}}),
            400,
            "job_params",
        ),
        (
            json!({"handler_id": "bot", "job_method": "echo", "trigger": {"type": "cron", "year": 2027}}),
            400,
            "trigger.year",
        ),
        (
            json!({"handler_id": "bot", "job_method": "echo", "trigger": {"type": "cron", "week": 3}}),
            400,
            "trigger.week",
        ),
        (
            json!({"handler_id": "bot", "job_method": "echo", "trigger": {"type": "date", "run_date": "2001-01-01T00:00:00"}}),
            400,
            "trigger.run_date",
        ),
        (
            json!({"handler_id": "bot", "job_method": "echo", "trigger": {"type": "interval"}}),
            400,
            "trigger.seconds",
        ),
        (
            json!({"handler_id": "bot", "job_method": "echo", "trigger": {"type": "interval", "minutes": 1}, "job_id": 7}),
            400,
            "job_id",
        ),
        (
            json!({"handler_id": "bot", "job_method": "echo", "trigger": {"type": "interval", "minutes": 1}, "method_name": "x"}),
            400,
            "method_name",
        ),
        (json!([1]), 400, "body"),
    ] {
        refused(&ns, "POST", "/api/schedule", Some(&body), status, field);
    }
    for (body, status, field) in [
        (json!({"job_method": "echo"}), 400, "handler_id"),
        (json!({"handler_id": "bot"}), 400, "job_method"),
        (
            json!({"handler_id": "bot", "job_method": "echo", "job_params": "x"}),
            400,
            "job_params",
        ),
        (
            json!({"handler_id": "nobody", "job_method": "echo"}),
            404,
            "handler_id",
        ),
        (
            json!({"handler_id": "bot", "job_method": "echo", "trigger": {}}),
            400,
            "trigger",
        ),
    ] {
        refused(&ns, "POST", "/api/run_now", Some(&body), status, field);
    }
    for (path, field) in [
        ("/api/executions?limit=0", "limit"),
        ("/api/executions?limit=1001", "limit"),
        ("/api/executions?status=done", "status"),
        ("/api/executions?handler_id=bot&job_id=x", "job_id"),
        ("/api/executions?since=1", "since"),
        ("/api/executions/errors?limit=501", "limit"),
        ("/api/executions/stats?x=1", "x"),
        ("/api/schedules?x=1", "x"),
        ("/api/handlers?x=1", "x"),
    ] {
        refused(&ns, "GET", path, None, 400, field);
    }
    refused(&ns, "DELETE", "/api/schedules/ding-dong-9", None, 404, "id");
    refused(
        &ada_ns,
        "POST",
        "/api/executions/clear",
        Some(&json!({"all": true})),
        400,
        "all",
    );
    let (s, v) = call(
        &ns,
        "POST",
        "/api/run_now",
        None,
        &[
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            "handler_id=bot",
        ],
    );
    assert_eq!(
        (s, &v["error"]["field"]),
        (415, &json!("Content-Type")),
        "{v}"
    );

    // Roles: viewers read but change nothing; officers do not clear; the handler reads nothing.
    let secret = json!({"handler_id": "bot", "job_method": "echo", "job_id": "viewer-check",
                        "job_params": {"channel_id": "777"},
                        "trigger": {"type": "interval", "hours": 1}});
    expect(&ns, "POST", "/api/schedule", Some(&secret), 201);
    let seen = expect(&vic_ns, "GET", "/api/schedules", None, 200);
    let full = expect(&ns, "GET", "/api/schedules", None, 200);
    let handler_calls = |v: &Value| -> Vec<Value> {
        v["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["args"].as_array().is_some_and(|a| a.len() == 4))
            .map(|s| s["args"][2].clone())
            .collect()
    };
    assert!(
        !handler_calls(&seen).is_empty(),
        "no handler schedule left to check: {seen}"
    );
    assert!(
        handler_calls(&seen).iter().all(|p| p == "***"),
        "a viewer sees handler params: {seen}"
    );
    assert!(
        handler_calls(&full).iter().all(|p| p != "***"),
        "an officer sees them: {full}"
    );
    assert!(!seen.to_string().contains("777"), "{seen}");
    expect(&ns, "DELETE", "/api/schedules/viewer-check", None, 200);
    expect(&vic_ns, "GET", "/api/executions", None, 200);
    for (m, p, b) in [
        ("POST", "/api/schedule", Some(&call_ok)),
        ("POST", "/api/run_now", Some(&call_ok)),
        ("DELETE", "/api/schedules/x", None),
        ("POST", "/api/executions/clear", None),
    ] {
        let v = expect(&vic_ns, m, p, b, 403);
        assert_eq!(v["error"]["code"], "forbidden_role", "{m} {p}: {v}");
    }
    expect(&ns, "POST", "/api/executions/clear", None, 403);
    expect(&bot_ns, "GET", "/api/schedules", None, 403);

    // Admins clear the finished history, audited.
    let v = expect(&ada_ns, "POST", "/api/executions/clear", None, 200);
    assert_eq!(v["status"], "success");
    assert!(v["cleared"].as_u64().unwrap() >= 4, "{v}");
    let after = expect(&ns, "GET", "/api/executions", None, 200);
    assert_eq!(after["count"], 0, "{after}");
    let audit = expect(&ada_ns, "GET", "/api/v1/audit?limit=5", None, 200);
    assert!(
        audit.to_string().contains("runs.clear"),
        "clearing is audited: {audit}"
    );
    drop(app);
}
