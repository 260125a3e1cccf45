//! Interop: the dashboard a guild leader opens on a phone. Headless Chromium, inside the test's
//! namespace, loads `http://10.88.88.1:8888/` through the real wireguard-go tunnel and runs the
//! page's script; the rendered DOM must show who the caller is, the jobs with their schedules,
//! recent runs, and the run/pause buttons only for roles that may use them.
//!
//! Needs root, the packages `scripts/test.sh` installs and `chromium` (SKIP without them, FAIL
//! under `CI=true`).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn prereqs() -> bool {
    if !require_prereqs() {
        return false;
    }
    if find_on_path("chromium").is_some() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("interop prerequisites missing under CI: `chromium` on PATH (the dashboard test)");
    }
    eprintln!("SKIP interop test: missing `chromium` on PATH");
    false
}

/// The page's DOM after its script has run, as headless Chromium renders it inside `ns`.
fn rendered(ns: &Netns) -> String {
    let profile = unique_temp_dir("chromium");
    let out = output_of(
        ns.bounded(90, "chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(api_url("/")),
    );
    let _ = std::fs::remove_dir_all(&profile);
    assert!(out.status.success(), "chromium failed: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_dashboard_shows_jobs_runs_and_role_appropriate_actions() {
    if !prereqs() {
        return;
    }
    let ns = Netns::new("dashboard");
    // The jobs post to 127.0.0.1, which webhooks may reach only when opted in.
    let mut app = Appliance::init(&ns, &[]);
    app.serve_with(&["--allow-webhook-net", "127.0.0.0/8"]);
    let config = app.peer_add("olga", "officer");
    let client = WgClient::up(&ns, &config);
    assert!(
        client.wait_handshake(Duration::from_secs(20)),
        "no handshake"
    );

    let raid = json!({
        "name": "raid-reminder",
        "trigger": {"cron": "45 19 * * THU", "timezone": "Europe/Berlin"},
        "action": {"webhook": {"url": "http://127.0.0.1:9/ok"}}
    });
    // Nothing listens on port 9 in the namespace: its runs fail, visibly.
    let unreachable = json!({
        "name": "unreachable-hook",
        "trigger": {"every": "1s"},
        "action": {"webhook": {"url": "http://127.0.0.1:9/x"}},
        "timeout": "2s"
    });
    for job in [&raid, &unreachable] {
        let (s, v) = call(&ns, "POST", "/api/v1/jobs", Some(job), &[]);
        assert_eq!(s, 201, "{v}");
    }
    assert!(
        wait_until(Duration::from_secs(15), || {
            let (s, v) = call(&ns, "GET", "/api/v1/runs?status=failed", None, &[]);
            s == 200 && !v["runs"].as_array().unwrap().is_empty()
        }),
        "no failed run recorded"
    );

    // The dump holds the page's own script too: match rendered markup, not bare words.
    let dom = rendered(&ns);
    for needle in [
        ">You are olga (officer) at 10.88.88.2.<",
        ">raid-reminder<",
        ">cron 45 19 * * THU (Europe/Berlin)<",
        ">unreachable-hook<",
        ">every 1s<",
        ">Run now</button>",
        ">Pause</button>",
        "class=\"failed\">failed",
    ] {
        assert!(dom.contains(needle), "dashboard lacks {needle:?}:\n{dom}");
    }
    assert_eq!(
        dom.matches(">Run now</button>").count(),
        2,
        "one Run now button per job:\n{dom}"
    );

    // A viewer sees the same jobs but no buttons that would only earn a 403.
    let out = app.run(&["peer", "role", "olga", "viewer"]);
    assert!(out.status.success(), "{}", describe(&out));
    let dom = rendered(&ns);
    assert!(dom.contains(">You are olga (viewer)"), "{dom}");
    assert!(dom.contains(">raid-reminder<"), "{dom}");
    assert!(
        !dom.contains("</button>"),
        "a viewer got action buttons:\n{dom}"
    );

    // A handler may not read jobs: the page says why instead of breaking.
    let out = app.run(&["peer", "role", "olga", "handler"]);
    assert!(out.status.success(), "{}", describe(&out));
    let dom = rendered(&ns);
    assert!(
        dom.contains(">this needs the viewer, officer or admin role"),
        "{dom}"
    );
}
