//! Interop: the phone dashboard, driven like a guild leader drives it. Headless Chromium under
//! selenium (tests/support/dashboard_phone.py), at a 390×844 phone viewport, inside the test's
//! namespace, loads `http://10.88.88.1:8888/` through the real wireguard-go tunnel and clicks
//! through it: a leader creates a cron job (with its server-side preview), sends a test to a
//! webhook sink, is told about a bad cron at the field, pauses, edits, duplicates and deletes,
//! and adds a member whose QR code — decoded from a screenshot with `zbarimg` — connects from a
//! second namespace; that member, a viewer, sees no write controls and the API refuses a
//! crafted write. Then a bot (a handler peer in a third namespace) shows online with its
//! methods and calls, the leader builds a job that calls it and runs it now, and sees its
//! answer in the history; pages through a job's history and the audit; and is shown the
//! last-admin guard, changes a member's role, disables and enables it. With
//! `SAVE_SCREENSHOTS=DIR` the phone-size screenshots are copied to DIR (docs/screenshots
//! holds the committed ones).
//!
//! Needs root, the packages `scripts/test.sh` installs, `chromium`, `chromedriver` and
//! python3's selenium (SKIP without them, FAIL under `CI=true`).

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::sink::Sink;
use common::*;
use serde_json::{json, Value};

/// The sink's port in this test (the jobs tests use `common::sink::SINK_PORT`).
const SINK_PORT: u16 = 18090;
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/dashboard_phone.py"
);

/// A python3 that has selenium (Debian's `python3-selenium` lives under /usr/bin/python3,
/// which a pyenv or venv `python3` on PATH may shadow).
fn selenium_python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        output_of(bounded(30, py).args(["-c", "import selenium"]))
            .status
            .success()
    })
}

fn prereqs() -> bool {
    if !require_prereqs() {
        return false;
    }
    let mut missing = Vec::new();
    for tool in ["chromium", "chromedriver", "zbarimg"] {
        if find_on_path(tool).is_none() {
            missing.push(tool);
        }
    }
    if selenium_python().is_none() {
        missing.push("python3 with selenium (python3-selenium)");
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("interop prerequisites missing under CI (the dashboard test): {missing:?}");
    }
    eprintln!("SKIP interop test: missing {missing:?}");
    false
}

/// `serve` arguments: the sink is on the namespace's loopback, which webhooks may reach only
/// when opted in once the destination policy (`--allow-webhook-net`) exists.
fn serve_args(app: &Appliance) -> Vec<&'static str> {
    let help = app.run(&["serve", "--help"]);
    if String::from_utf8_lossy(&help.stdout).contains("--allow-webhook-net") {
        vec!["--allow-webhook-net", "127.0.0.0/8"]
    } else {
        vec![]
    }
}

/// Runs one phase of the browser script inside `ns`; returns what it reported.
/// `arg`: the phase's argument (the sink URL, or the ids a phase works on, as JSON).
fn phase(ns: &Netns, name: &str, shots: &Path, arg: Option<&str>) -> Value {
    // Chromium aborts every request in flight (ERR_NETWORK_CHANGED) when an address of its
    // namespace changes, as an IPv6 link-local address does when its duplicate-address check
    // ends a second or two after a veth comes up: start the browser after that.
    assert!(
        ns.wait_addresses_settled(Duration::from_secs(10)),
        "addresses of the namespace still tentative after 10 s"
    );
    let out_json = shots.join(format!("{name}.json"));
    let mut cmd = ns.bounded(240, selenium_python().expect("checked in prereqs"));
    cmd.arg(SCRIPT).arg(name).arg(&out_json).arg(shots);
    if let Some(arg) = arg {
        cmd.arg(arg);
    }
    let out = output_of(&mut cmd);
    let report: Value = fs::read_to_string(&out_json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["ok"] == true,
        "browser phase {name} failed: {}\nreport: {report:#}\nscreenshots in {}",
        describe(&out),
        shots.display()
    );
    report
}

fn save_screenshots(shots: &Path, names: &[&str]) {
    let Ok(dir) = std::env::var("SAVE_SCREENSHOTS") else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    fs::create_dir_all(&dir).expect("create the screenshot directory");
    for n in names {
        let from = shots.join(format!("{n}.png"));
        fs::copy(&from, dir.join(format!("{n}.png")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

#[test]
fn a_leader_runs_the_guild_from_a_phone() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("dashboard");
    let mut app = Appliance::init(&ns, &[]);
    let args = serve_args(&app);
    app.serve_with(&args);
    let leader = WgClient::up(&ns, &app.peer_add("leader", "admin"));
    assert!(
        leader.wait_handshake(Duration::from_secs(20)),
        "no handshake"
    );
    let sink = Sink::start_at(&ns, "127.0.0.1", SINK_PORT);
    // The token-like tail must never reach a viewer's screen.
    let sink_url = format!("http://127.0.0.1:{SINK_PORT}/ok/hooks/SeCrEtToken");

    // Nothing listens on port 9: this job's runs fail, for the failures view.
    let unreachable = json!({
        "name": "unreachable-hook",
        "trigger": {"every": "1s"},
        "action": {"webhook": {"url": "http://127.0.0.1:9/x"}},
        "timeout": "2s"
    });
    let (s, v) = call(&ns, "POST", "/api/v1/jobs", Some(&unreachable), &[]);
    assert_eq!(s, 201, "{v}");
    assert!(
        wait_until(Duration::from_secs(15), || {
            let (s, v) = call(&ns, "GET", "/api/v1/runs?status=failed", None, &[]);
            s == 200 && !v["runs"].as_array().unwrap().is_empty()
        }),
        "no failed run recorded"
    );
    // It keeps failing every second while the leader works, for history paging (20 a page).
    let busy = v_id(&ns, "unreachable-hook");

    // The page and its assets come with a strict policy: this origin only, no inline script.
    for path in ["/", "/assets/app.js", "/assets/app.css"] {
        let r = curl_full(&ns, &api_url(path), &["-D", "-"]);
        assert_eq!(r.status, 200, "{path}");
        let head = r.body.to_ascii_lowercase();
        assert!(
            head.contains(
                "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self';"
            ) && !head.contains("unsafe-"),
            "{path}: {head:.600}"
        );
    }

    // The page's two helpers, over plain HTTP: errors name the field, nothing is stored.
    let bad_cron = json!({"trigger": {"cron": "61 * * * *"}});
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/schedule/preview",
        Some(&bad_cron),
        &[],
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("trigger.cron")),
        "{v}"
    );
    assert_eq!(
        v["error"]["message"],
        "the minute (1st field) must be 0-59, e.g. 0, 45 or */15; got \"61\"",
        "{v}"
    );
    let bad_url = json!({"action": {"webhook": {"url": "ftp://example.invalid/x"}}});
    let (s, v) = call(&ns, "POST", "/api/v1/jobs/test", Some(&bad_url), &[]);
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("action.webhook.url")),
        "{v}"
    );

    let shots = unique_temp_dir("shots");
    let r = phase(&ns, "leader", &shots, Some(&sink_url));

    // The preview came from the server and matches the scheduler (19:45 Berlin is 18:45Z in
    // winter); "send a test now" reached the sink once, with the composed message.
    assert_eq!(r["preview"].as_array().unwrap().len(), 5, "{r:#}");
    let hits = sink.requests();
    assert_eq!(hits.len(), 1, "one test request: {hits:#?}");
    assert_eq!(hits[0]["path"], "/ok/hooks/SeCrEtToken");
    let body: Value = serde_json::from_str(hits[0]["body"].as_str().unwrap()).unwrap();
    let message = json!({
        "content": "@raiders raid in 15 minutes!",
        "embeds": [{"title": "Raid night", "color": 0x5865f2}]
    });
    assert_eq!(body, message);
    // The bad cron is named in words: which field, what it takes, what was typed.
    assert_eq!(
        r["bad_cron_error"], "the minute (1st field) must be 0-59, e.g. 0, 45 or */15; got \"61\"",
        "{r:#}"
    );
    // The failures view showed a stored failure of the failing job, with its error text.
    let (_, failed) = call(
        &ns,
        "GET",
        "/api/v1/runs?status=failed&limit=500",
        None,
        &[],
    );
    let errors: Vec<&str> = failed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["job_id"] == busy.as_str())
        .filter_map(|r| r["error"].as_str())
        .collect();
    let shown = r["failure_error"].as_str().unwrap();
    assert!(
        !shown.is_empty() && errors.contains(&shown),
        "{shown:?} is not a stored error of unreachable-hook: {errors:?}"
    );
    assert_eq!(r["failure_job"], "unreachable-hook", "{r:#}");

    // Enough runs of the busy job for two history pages, then it stops.
    assert!(
        wait_until(Duration::from_secs(30), || run_count(&ns, &busy) > 20),
        "unreachable-hook has {} runs, not over 20",
        run_count(&ns, &busy)
    );
    let (s, v) = call(
        &ns,
        "POST",
        &format!("/api/v1/jobs/{busy}/pause"),
        None,
        &[],
    );
    assert_eq!(s, 200, "{v}");

    // What the browser did is what is stored: one edited, paused job besides the failing one.
    let (s, v) = call(&ns, "GET", "/api/v1/jobs", None, &[]);
    assert_eq!(s, 200);
    let jobs = v["jobs"].as_array().unwrap();
    let mut names: Vec<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["raid-reminder-edited", "unreachable-hook"], "{v:#}");
    let raid = jobs
        .iter()
        .find(|j| j["name"] == "raid-reminder-edited")
        .unwrap();
    assert_eq!(raid["id"], r["job_id"]);
    assert_eq!(raid["paused"], true);
    assert_eq!(
        raid["trigger"],
        json!({"cron": "30 20 * * THU", "timezone": "Europe/Berlin"})
    );
    assert_eq!(raid["action"]["webhook"]["url"], sink_url.as_str());
    assert_eq!(raid["action"]["webhook"]["body"], message);
    let (_, audit) = call(&ns, "GET", "/api/v1/audit?limit=100", None, &[]);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"]["peer"] == "leader")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "job.test",
        "job.create",
        "job.pause",
        "job.update",
        "job.delete",
        "peer.add",
        "server.endpoint",
    ] {
        assert!(actions.contains(&a), "audit lacks {a}: {actions:?}");
    }
    assert!(
        !audit.to_string().contains("SeCrEtToken"),
        "the audit trail shows the webhook token"
    );
    // The Audit page reads in sentences, an update naming only what changed; no raw JSON.
    let said: Vec<&str> = r["audit_texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for sentence in [
        "Changed job raid-reminder-edited: name raid-reminder → raid-reminder-edited; \
         trigger cron 45 19 * * THU (Europe/Berlin) → cron 30 20 * * THU (Europe/Berlin).",
        "Paused job raid-reminder.",
    ] {
        assert!(said.contains(&sentence), "no {sentence:?} in {said:#?}");
    }
    assert!(
        said.iter()
            .any(|t| t.starts_with("Added peer vera as viewer at 10.88.88.")),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .all(|t| !t.contains('"') && !t.contains("SeCrEtToken")),
        "{said:#?}"
    );

    // The admin changed the endpoint on the Members page: shown before and after, live.
    assert_eq!(
        r["endpoint_before"],
        format!("Phones dial {}", app.endpoint()),
        "{r:#}"
    );
    let now = format!("vpn.example.org:{}", app.port());
    assert_eq!(r["endpoint_after"], format!("Phones dial {now}"), "{r:#}");
    // Why the loopback endpoint was a problem, in words for a phone: no terminal command.
    assert_eq!(
        r["endpoint_reason_before"],
        format!(
            "The endpoint {} is a loopback address that only this machine can reach.",
            app.endpoint()
        ),
        "{r:#}"
    );
    assert_eq!(r["endpoint_reason_after"], "", "{r:#}");
    let (s, v) = call(&ns, "GET", "/api/v1/endpoint", None, &[]);
    assert_eq!((s, v["endpoint"].as_str()), (200, Some(now.as_str())));

    // The QR code on the screen carries the config on the screen in its compact form, as the
    // CLI's codes do (`peer_ops::qr_text`), and it connects.
    let qr = output_of(
        bounded(30, "zbarimg")
            .args(["--quiet", "--raw"])
            .arg(r["qr_png"].as_str().unwrap()),
    );
    assert!(qr.status.success(), "zbarimg: {}", describe(&qr));
    let decoded = String::from_utf8_lossy(&qr.stdout).trim().to_string();
    let shown = peers::ClientConfig::parse(r["config"].as_str().unwrap())
        .expect("the shown config parses")
        .render_compact();
    assert_eq!(
        decoded,
        shown.trim(),
        "the QR code is not the compact form of the config text"
    );
    assert_eq!(r["download"], "vera.conf");
    let remote = Netns::new("vera");
    ns.link_veth(&remote, "192.0.2.1/24", "192.0.2.2/24");
    let vera_conf = with_config_value(&decoded, "Endpoint", &format!("192.0.2.1:{}", app.port()));
    let vera = WgClient::up(&remote, &vera_conf);
    assert!(
        vera.wait_handshake(Duration::from_secs(20)),
        "the scanned config does not connect"
    );
    let (s, who) = call(&remote, "GET", "/api/v1/whoami", None, &[]);
    assert_eq!(s, 200);
    assert_eq!(
        (who["peer"].as_str(), who["role"].as_str()),
        (Some("vera"), Some("viewer"))
    );

    // Vera, a viewer, on her phone: read-only, no token, crafted writes refused.
    let r = phase(&remote, "viewer", &shots, None);
    let mut seen: Vec<&str> = r["jobs_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, ["raid-reminder-edited", "unreachable-hook"]);
    assert!(
        !r["viewer_page_text"]
            .as_str()
            .unwrap()
            .contains("SeCrEtToken"),
        "{r:#}"
    );
    let list = r["viewer_jobs_text"].as_str().unwrap();
    assert!(
        list.contains(&format!("webhook to 127.0.0.1:{SINK_PORT}"))
            && !list.contains("SeCrEtToken"),
        "a viewer sees where a job posts, never its token: {list}"
    );
    for (what, res) in r["crafted"].as_object().unwrap() {
        assert_eq!(res[0], 403, "crafted {what} as a viewer: {res}");
        assert!(res[1].as_str().unwrap().contains("forbidden_role"), "{res}");
    }
    let (_, v) = call(&ns, "GET", "/api/v1/jobs?name=sneaky", None, &[]);
    assert_eq!(v["jobs"], json!([]));

    // Rotate from the member list (where vera shows online): a new key, and it connects.
    let r = phase(&ns, "rotate", &shots, None);
    let rotated = r["config"].as_str().unwrap();
    assert_ne!(
        config_value(rotated, "PrivateKey"),
        config_value(&decoded, "PrivateKey")
    );
    drop(vera);
    let vera = WgClient::up(
        &remote,
        &with_config_value(rotated, "Endpoint", &format!("192.0.2.1:{}", app.port())),
    );
    assert!(
        vera.wait_handshake(Duration::from_secs(20)),
        "the rotated config does not connect"
    );
    let (s, who) = call(&remote, "GET", "/api/v1/whoami", None, &[]);
    assert_eq!((s, who["peer"].as_str()), (200, Some("vera")));
    let (_, audit) = call(&ns, "GET", "/api/v1/audit?limit=5", None, &[]);
    assert_eq!(audit["entries"][0]["action"], "peer.rotate", "{audit:#}");

    handlers_and_members(&ns, &app, &shots, &busy);

    save_screenshots(
        &shots,
        &[
            "members",
            "jobs",
            "job-form",
            "job-form-error",
            "failures",
            "members-qr",
            "audit",
            "viewer",
            "viewer-dark",
            "handlers",
            "job-form-handler",
            "handler-run",
            "members-guard",
        ],
    );
    let _ = fs::remove_dir_all(&shots);
}

/// A bot (a handler peer in its own namespace) and the admin: the handler list, a job that
/// calls the bot built in the form and run now, the bot's answer in the job's history; then
/// history and audit paging, the last-admin guard, a role change, disable and enable.
fn handlers_and_members(ns: &Netns, app: &Appliance, shots: &Path, busy: &str) {
    let bot_ns = Netns::new("bot");
    ns.link_veth(&bot_ns, "198.51.100.1/24", "198.51.100.2/24");
    let bot = WgClient::up(
        &bot_ns,
        &with_config_value(
            &app.peer_add("discord-bot", "handler"),
            "Endpoint",
            &format!("198.51.100.1:{}", app.port()),
        ),
    );
    assert!(
        bot.wait_handshake(Duration::from_secs(20)),
        "bot: no handshake"
    );
    let methods = json!({"methods": ["send_message", "roll_dice"]});
    let (s, v) = call(&bot_ns, "PUT", "/api/v1/handler", Some(&methods), &[]);
    assert_eq!(s, 200, "{v}");

    // Two calls for the bot: one it holds (leased), one waiting in its queue.
    let lease = |max: u64| {
        let body = json!({"wait_s": 10, "max": max, "lease_s": 600});
        let (s, v) = call(&bot_ns, "POST", "/api/v1/tasks/lease", Some(&body), &[]);
        assert_eq!(s, 200, "{v}");
        v["tasks"].as_array().unwrap().clone()
    };
    let mut held = Vec::new();
    for name in ["bot-held", "bot-waiting"] {
        let job = json!({
            "name": name,
            "trigger": {"at": "2099-01-01T00:00:00Z"},
            "action": {"handler": {"id": "discord-bot", "method": "send_message",
                                   "params": {"content": name}}}
        });
        let (s, v) = call(ns, "POST", "/api/v1/jobs", Some(&job), &[]);
        assert_eq!(s, 201, "{v}");
        let id = v["id"].as_str().unwrap();
        let (s, v) = call(ns, "POST", &format!("/api/v1/jobs/{id}/run"), None, &[]);
        assert_eq!((s, &v["status"]), (202, &json!("started")), "{v}");
        if name == "bot-held" {
            held = lease(1);
            assert_eq!(held.len(), 1, "{held:?}");
            assert_eq!(held[0]["params"], json!({"content": "bot-held"}));
        }
    }

    let r = phase(ns, "handlers", shots, None);
    assert_eq!(
        r["handler_methods"], "Methods: roll_dice, send_message",
        "{r:#}"
    );
    assert_eq!(r["handler_tasks"], "Queued 1 · leased 1", "{r:#}");
    assert_eq!(
        r["handler_options"],
        json!(["discord-bot (online)"]),
        "{r:#}"
    );
    assert_eq!(
        r["method_options"],
        json!(["roll_dice", "send_message"]),
        "{r:#}"
    );
    assert!(
        r["bad_params_error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{r:#}"
    );
    assert!(
        r["dice_row"]
            .as_str()
            .unwrap()
            .contains("handler discord-bot · roll_dice"),
        "{r:#}"
    );
    assert_eq!(r["flash"], "Started dice.", "{r:#}");
    let dice = r["dice_id"].as_str().unwrap().to_string();
    let (_, job) = call(ns, "GET", &format!("/api/v1/jobs/{dice}"), None, &[]);
    assert_eq!(
        job["action"],
        json!({"handler": {"id": "discord-bot", "method": "roll_dice", "params": {"sides": 20}}}),
        "{job:#}"
    );

    // The bot takes the manual run of dice (and the waiting call) and answers every call.
    let mut tasks = lease(10);
    assert!(
        tasks
            .iter()
            .any(|t| t["job_id"] == dice.as_str() && t["params"] == json!({"sides": 20})),
        "the bot got no call of dice: {tasks:?}"
    );
    tasks.extend(held);
    for t in &tasks {
        let id = t["id"].as_str().unwrap();
        let ack = json!({"result": {"rolled": 17}});
        let (s, v) = call(
            &bot_ns,
            "POST",
            &format!("/api/v1/tasks/{id}/ack"),
            Some(&ack),
            &[],
        );
        assert_eq!(s, 200, "{v}");
    }

    // Enough audit entries for two pages of 25: setting the same endpoint again is audited
    // and changes nothing else.
    let mut entries = audit_count(ns);
    while entries <= 30 {
        let same = json!({"endpoint": "vpn.example.org"});
        let (s, v) = call(ns, "PUT", "/api/v1/endpoint", Some(&same), &[]);
        assert_eq!(s, 200, "{v}");
        entries += 1;
    }
    let otto = json!({"name": "otto", "role": "officer"});
    let (s, v) = call(ns, "POST", "/api/v1/peers", Some(&otto), &[]);
    assert_eq!(s, 201, "{v}");

    let ids = json!({"dice": dice, "busy": busy}).to_string();
    let r = phase(ns, "manage", shots, Some(&ids));
    let run = r["handler_run"].as_str().unwrap();
    for needle in [
        "run now",
        "succeeded",
        "handler discord-bot",
        r#"result: {"rolled":17}"#,
    ] {
        assert!(
            run.contains(needle),
            "{needle} not in the handler run: {run}"
        );
    }
    assert!(
        r["dice_card"].as_str().unwrap().contains("Last: succeeded"),
        "{r:#}"
    );
    let seqs = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().parse().unwrap())
            .collect()
    };
    let (h1, h2) = (seqs(&r["history_pages"][0]), seqs(&r["history_pages"][1]));
    assert_eq!(h1.len(), 20, "{r:#}");
    assert!(
        !h2.is_empty() && h2.iter().all(|id| id < h1.iter().min().unwrap()),
        "the second page holds older runs: {h1:?} then {h2:?}"
    );
    let (a1, a2) = (seqs(&r["audit_pages"][0]), seqs(&r["audit_pages"][1]));
    assert_eq!(a1.len(), 25, "{r:#}");
    assert!(a1.windows(2).all(|w| w[0] > w[1]), "newest first: {a1:?}");
    assert!(
        !a2.is_empty() && a2[0] < a1[24],
        "the older page follows: {a1:?} then {a2:?}"
    );
    let guard = r["guard"].as_str().unwrap();
    assert!(
        guard.contains("leader is the only enabled admin") && guard.contains("another admin first"),
        "{guard}"
    );
    assert_eq!(r["guard_disabled"], json!([true, true, true]), "{r:#}");
    assert_eq!(r["otto_roles"], json!(["viewer", "admin"]), "{r:#}");
    assert_eq!(r["otto_states"], json!(["disabled", "offline"]), "{r:#}");

    // What the page did is stored, and audited as the leader's.
    let (_, peers) = call(ns, "GET", "/api/v1/peers", None, &[]);
    let otto = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "otto")
        .expect("otto listed");
    assert_eq!(
        (&otto["role"], &otto["enabled"]),
        (&json!("admin"), &json!(true))
    );
    let (_, audit) = call(ns, "GET", "/api/v1/audit?limit=10", None, &[]);
    // Newest first: each change is audited as the CLI's command is, with what it changed.
    let otto_changes: Vec<Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"]["peer"] == "leader" && e["target"] == "otto")
        .map(|e| json!([e["action"], e["summary"]["role"], e["summary"]["enabled"]]))
        .collect();
    assert_eq!(
        otto_changes,
        [
            json!(["peer.role", "admin", null]),
            json!(["peer.enable", null, true]),
            json!(["peer.disable", null, false]),
            json!(["peer.role", "viewer", null]),
            json!(["peer.add", "officer", null]),
        ],
        "{audit:#}"
    );
}

fn run_count(ns: &Netns, job: &str) -> usize {
    let (_, v) = call(
        ns,
        "GET",
        &format!("/api/v1/jobs/{job}/runs?limit=100"),
        None,
        &[],
    );
    v["runs"].as_array().map_or(0, Vec::len)
}

fn audit_count(ns: &Netns) -> usize {
    let (_, v) = call(ns, "GET", "/api/v1/audit?limit=100", None, &[]);
    v["entries"].as_array().map_or(0, Vec::len)
}

/// The id of the job called `name`.
fn v_id(ns: &Netns, name: &str) -> String {
    let (_, v) = call(ns, "GET", &format!("/api/v1/jobs?name={name}"), None, &[]);
    v["jobs"][0]["id"].as_str().expect("job id").to_string()
}

/// A server with damaged rows, seen from the leader's phone: a banner above every view says
/// so in plain words and what to ask the admin; a day of week spelled out is named at the
/// field; every link on the jobs list and a job's page is a 44 px tap target; and a module
/// that fails to load (blocked, as a network change mid-load does) is retried once, then
/// explained with a button that loads the dashboard once the module is reachable.
#[test]
fn a_phone_is_told_what_is_wrong_with_the_server() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("dashhealth");
    let mut app = Appliance::init(&ns, &[]);
    let config = app.peer_add("leader", "admin");
    {
        let store = appliance::store::Store::open(&app.data_dir().join("appliance.redb")).unwrap();
        store
            .write_raw_row_for_tests("jobs", "0000000000000bad", b"not json")
            .unwrap();
    }
    app.serve();
    let leader = WgClient::up(&ns, &config);
    assert!(
        leader.wait_handshake(Duration::from_secs(20)),
        "no handshake"
    );
    // A reachable endpoint, so that the damaged row is the one thing wrong.
    let (s, v) = call(
        &ns,
        "PUT",
        "/api/v1/endpoint",
        Some(&json!({"endpoint": "vpn.example.org"})),
        &[],
    );
    assert_eq!(s, 200, "{v}");
    let job = json!({
        "name": "raid-reminder",
        "trigger": {"cron": "45 19 * * THU", "timezone": "Europe/Berlin"},
        "action": {"webhook": {"url": "https://discord.com/api/webhooks/1/t"}}
    });
    let (s, v) = call(&ns, "POST", "/api/v1/jobs", Some(&job), &[]);
    assert_eq!(s, 201, "{v}");
    let (_, v) = call(&ns, "GET", "/api/v1/health", None, &[]);
    assert_eq!(v["status"], "degraded", "{v}");

    let shots = unique_temp_dir("shots");
    let r = phase(&ns, "degraded", &shots, None);
    assert_eq!(r["health"].as_array().unwrap().len(), 1, "{r:#}");
    for (link, px) in r["link_heights"].as_object().unwrap() {
        assert!(px.as_f64().unwrap() >= 44.0, "{link}: {px} px");
    }
    assert_eq!(
        r["cron_error"],
        "the day of week (5th field) must be 0-7 or MON-SUN (0 and 7 are Sunday), \
         e.g. 4, THU or MON-FRI; got \"THURSDAY\"",
        "{r:#}"
    );
    // A module blocked while the page loads: reloaded once, then explained, then recovered.
    let lf = &r["load_failure"];
    assert_eq!(lf["navigation"], "reload", "the guard did not retry: {r:#}");
    assert!(
        lf["message"]
            .as_str()
            .unwrap()
            .starts_with("The dashboard did not load"),
        "{r:#}"
    );
    assert_eq!(lf["who"], "Not loaded.", "{r:#}");
    assert_eq!(lf["recovered"], true, "{r:#}");
    save_screenshots(&shots, &["health-damaged"]);
}
