//! Interop: every request is a peer. Through the real wireguard-go tunnel, roles are enforced,
//! changes are audited without secrets, and the browser-safety gate (Origin, Host,
//! Content-Type, body size) holds. An admin onboards a peer over the API and the returned
//! config connects.
//!
//! Each scenario owns its namespaces; nothing leaves them. Needs root and the packages that
//! `scripts/test.sh` installs (SKIP without them, FAIL under `CI=true`).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// An appliance with one connected peer "alice" of `role`.
fn alice_with_role<'a>(ns: &'a Netns, role: &str) -> (Appliance<'a>, WgClient<'a>) {
    served_with_peer(ns, "alice", role, &[])
}

fn peer_names(app: &Appliance) -> Vec<String> {
    let out = app.run(&["peer", "list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    names(&serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn roles_are_enforced_and_role_changes_are_live() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("roles");
    let (app, _c) = alice_with_role(&ns, "viewer");

    let (s, v) = call(&ns, "GET", "/api/v1/whoami", None, &[]);
    assert_eq!((s, v["role"].as_str()), (200, Some("viewer")));

    // A viewer's POST is refused, naming the role required; nothing is created.
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        Some(&json!({"name": "bob"})),
        &[],
    );
    assert_eq!(s, 403, "{v}");
    assert_eq!(error_code(&v), "forbidden_role");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("admin"),
        "{v}"
    );
    assert_eq!(peer_names(&app), vec!["alice"]);
    let (s, _) = call(&ns, "GET", "/api/v1/audit", None, &[]);
    assert_eq!(s, 403);

    // Promote alice from the CLI while she stays connected: her next request is an admin's.
    let out = app.run(&["peer", "role", "alice", "admin"]);
    assert!(out.status.success(), "{}", describe(&out));
    let (s, v) = call(&ns, "GET", "/api/v1/peers", None, &[]);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["name"], "alice");
    assert_eq!(v[0]["role"], "admin");

    // Handlers only see health and whoami.
    let out = app.run(&["peer", "role", "alice", "handler"]);
    assert!(out.status.success());
    assert_eq!(call(&ns, "GET", "/api/v1/health", None, &[]).0, 200);
    assert_eq!(call(&ns, "GET", "/api/v1/peers", None, &[]).0, 403);
}

#[test]
fn browser_safety_gate_refuses_cross_origin_foreign_host_and_non_json() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("gate");
    let (app, _c) = alice_with_role(&ns, "admin");
    let bob = json!({"name": "bob", "role": "viewer"});

    // A cross-origin POST (another web page on the phone) is refused.
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        Some(&bob),
        &["-H", "Origin: http://evil.example"],
    );
    assert_eq!((s, error_code(&v)), (403, "cross_origin"), "{v}");
    assert_eq!(v["error"]["field"], "Origin");
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        Some(&bob),
        &["-H", "Origin: null"],
    );
    assert_eq!((s, error_code(&v)), (403, "cross_origin"), "{v}");

    // text/plain (a form or a simple CORS request) gets 415.
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        None,
        &[
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            r#"{"name":"bob"}"#,
        ],
    );
    assert_eq!((s, error_code(&v)), (415, "unsupported_media_type"), "{v}");

    // A foreign Host header (DNS rebinding) is refused, even for reads.
    let (s, v) = call(
        &ns,
        "GET",
        "/api/v1/health",
        None,
        &["-H", "Host: evil.example"],
    );
    assert_eq!((s, error_code(&v)), (403, "forbidden_host"), "{v}");
    assert_eq!(v["error"]["field"], "Host");

    // Oversized and malformed bodies: clear 4xx naming the problem.
    let big = json!({"name": "x".repeat(70 * 1024)});
    let (s, v) = call(&ns, "POST", "/api/v1/peers", Some(&big), &[]);
    assert_eq!((s, error_code(&v)), (413, "body_too_large"), "{v}");
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        Some(&json!({"name": "bob", "colour": "red"})),
        &[],
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "colour");
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        Some(&json!({"name": "Bad Name"})),
        &[],
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("name")),
        "{v}"
    );

    // None of that created anything, and no CORS header was ever sent.
    assert_eq!(peer_names(&app), vec!["alice"]);
    let r = curl_full(
        &ns,
        &api_url("/api/v1/health"),
        &["-i", "-H", "Origin: http://evil.example"],
    );
    assert!(
        !r.body
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{}",
        r.body
    );

    // The same POST from our own origin works.
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        Some(&bob),
        &["-H", "Origin: http://10.88.88.1:8888"],
    );
    assert_eq!(s, 201, "{v}");
}

#[test]
fn admin_onboards_a_peer_over_the_api_and_it_is_audited_without_secrets() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("onboard");
    let (app, _c) = alice_with_role(&ns, "admin");

    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        Some(&json!({"name": "bob", "role": "officer"})),
        &[],
    );
    assert_eq!(s, 201, "{v}");
    let config = v["config"].as_str().expect("config text").to_string();
    assert!(v["qr_svg"].as_str().unwrap().contains("<svg"), "QR as SVG");
    assert_eq!(v["peer"]["name"], "bob");
    let private = config_value(&config, "PrivateKey").unwrap();
    let psk = config_value(&config, "PresharedKey").unwrap();

    // The returned config connects (from its own namespace, over a veth link).
    let remote = Netns::new("bob");
    ns.link_veth(&remote, "192.0.2.1/24", "192.0.2.2/24");
    let bob_conf = with_config_value(&config, "Endpoint", &format!("192.0.2.1:{}", app.port()));
    let bob = WgClient::up(&remote, &bob_conf);
    assert!(
        bob.wait_handshake(HANDSHAKE_TIMEOUT),
        "bob's config does not connect"
    );
    let (s, who) = call(&remote, "GET", "/api/v1/whoami", None, &[]);
    assert_eq!(s, 200);
    assert_eq!(
        (who["peer"].as_str(), who["role"].as_str()),
        (Some("bob"), Some("officer"))
    );

    // The audit trail names who (peer + key fingerprint), what, when and from where.
    let (s, audit) = call(&ns, "GET", "/api/v1/audit", None, &[]);
    assert_eq!(s, 200, "{audit}");
    let add = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "peer.add" && e["target"] == "bob")
        .unwrap_or_else(|| panic!("no peer.add bob in {audit}"));
    assert_eq!(add["actor"]["peer"], "alice");
    assert_eq!(add["actor"]["via"], "api");
    assert!(add["actor"]["fingerprint"]
        .as_str()
        .is_some_and(|f| !f.is_empty()));
    assert!(
        add["actor"]["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("127.0.0.1:")),
        "{add}"
    );
    assert!(add["at_ms"].as_u64().unwrap() > 0);

    // Secrets appear nowhere: not in the audit trail, not in the CLI's audit, not in the logs.
    let cli = app.run(&["audit", "--json"]);
    assert!(cli.status.success(), "{}", describe(&cli));
    let cli = String::from_utf8_lossy(&cli.stdout).to_string();
    assert!(cli.contains("peer.add"), "{cli}");
    for secret in [&private, &psk] {
        assert!(
            !audit.to_string().contains(secret.as_str()),
            "secret in audit API"
        );
        assert!(!cli.contains(secret.as_str()), "secret in CLI audit");
        assert!(!app.log().contains(secret.as_str()), "secret in serve log");
    }

    // PATCH disables bob at once; the last admin cannot lock everyone out over the API.
    let (s, v) = call(
        &ns,
        "PATCH",
        "/api/v1/peers/bob",
        Some(&json!({"enabled": false})),
        &[],
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false);
    let r = curl_full(&remote, &api_url("/api/v1/whoami"), &["--max-time", "2"]);
    assert_eq!(r.status, 0, "disabled bob still answered: {r:?}");
    let (s, v) = call(
        &ns,
        "PATCH",
        "/api/v1/peers/alice",
        Some(&json!({"role": "viewer"})),
        &[],
    );
    assert_eq!((s, error_code(&v)), (409, "conflict"), "{v}");
    let (s, v) = call(&ns, "DELETE", "/api/v1/peers/alice", None, &[]);
    assert_eq!(s, 409, "{v}");
    let (s, v) = call(&ns, "DELETE", "/api/v1/peers/bob", None, &[]);
    assert_eq!(s, 200, "{v}");
    assert_eq!(peer_names(&app), vec!["alice"]);
    let (_, audit) = call(&ns, "GET", "/api/v1/audit?limit=2", None, &[]);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["peer.remove", "peer.disable"], "{audit}");
    // Follow the cursor: the next page continues where this one ended.
    let cursor = audit["next_cursor"]
        .as_str()
        .expect("a string cursor on a full page");
    let (s, older) = call(
        &ns,
        "GET",
        &format!("/api/v1/audit?limit=2&cursor={cursor}"),
        None,
        &[],
    );
    assert_eq!(s, 200, "{older}");
    let first_older = older["entries"][0]["seq"].as_u64().unwrap();
    assert!(first_older < audit["entries"][1]["seq"].as_u64().unwrap());
    let (s, v) = call(&ns, "GET", "/api/v1/audit?colour=red", None, &[]);
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("colour")),
        "{v}"
    );
}

/// An appliance served with `serve_args` and one connected peer "alice" of `role`.
fn alice_on<'a>(ns: &'a Netns, role: &str, serve_args: &[&str]) -> (Appliance<'a>, WgClient<'a>) {
    served_with_peer(ns, "alice", role, serve_args)
}

/// Slowloris: a client that never finishes its headers is cut off after --header-timeout.
#[test]
fn unfinished_headers_are_cut_off_after_the_header_timeout() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("slowloris");
    let (_app, _c) = alice_on(&ns, "viewer", &["--header-timeout", "2"]);
    // Send half a request and wait for the server to close the connection.
    let script = r#"exec 3<>/dev/tcp/10.88.88.1/8888
printf 'GET /api/v1/health HTTP/1.1\r\nHost: 10.88.88.1\r\n' >&3
start=$(date +%s.%N); cat <&3 >/dev/null; end=$(date +%s.%N)
echo "$start $end""#;
    let out = output_of(ns.bounded(20, "bash").args(["-c", script]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let t: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(t.len(), 2, "no timing: {text:?} {}", describe(&out));
    let held = t[1] - t[0];
    assert!(
        (1.0..8.0).contains(&held),
        "connection with unfinished headers was held {held:.1} s (timeout 2 s)"
    );
    // A complete request still works.
    assert_eq!(call(&ns, "GET", "/api/v1/health", None, &[]).0, 200);
}

/// More than --max-connections-per-peer concurrent connections get a clear 429.
#[test]
fn connections_over_the_per_peer_limit_get_429() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("connlimit");
    let (_app, _c) = alice_on(&ns, "viewer", &["--max-connections-per-peer", "3"]);
    let idle = IdleConnections::open(&ns, 3, 20);
    let refused = wait_until(Duration::from_secs(10), || {
        call(&ns, "GET", "/api/v1/health", None, &[]).0 == 429
    });
    let (s, v) = call(&ns, "GET", "/api/v1/health", None, &[]);
    assert!(refused, "a fourth connection was not refused: {s} {v}");
    assert_eq!((s, error_code(&v)), (429, "too_many_connections"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains('3'), "{v}");
    drop(idle);
    assert!(
        wait_until(Duration::from_secs(10), || {
            call(&ns, "GET", "/api/v1/health", None, &[]).0 == 200
        }),
        "connections freed but requests still refused"
    );
}

#[test]
fn damaged_rows_degrade_health_and_low_order_keys_are_refused() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("damaged");
    let mut app = Appliance::init(&ns, &[]);
    let config = app.peer_add("alice", "admin");
    {
        // A damaged job row and a stored peer whose key is the all-zero (low-order) point.
        let store = appliance::store::Store::open(&app.data_dir().join("appliance.redb")).unwrap();
        store
            .write_raw_row_for_tests("jobs", "0000000000000bad", b"not json")
            .unwrap();
        let mut mallory: Value =
            serde_json::from_str(&String::from_utf8(peer_row(&store, "alice")).unwrap()).unwrap();
        mallory["name"] = "mallory".into();
        mallory["public_key"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
        mallory["address"] = "10.88.88.99".into();
        mallory["allowed_ips"] = json!(["10.88.88.99/32"]);
        store
            .write_raw_row_for_tests("peers", "mallory", mallory.to_string().as_bytes())
            .unwrap();
        // A damaged finished run (loading reads only the open runs) and a damaged audit row
        // (loading never reads the audit trail).
        store
            .write_raw_row_for_tests("runs", "5", b"{\"id\": 5, truncated")
            .unwrap();
        store
            .write_raw_row_for_tests("audit", "999", b"{\"seq\": 999, truncated")
            .unwrap();
    }
    app.serve();
    let _client = WgClient::up(&ns, &config);

    // The rest serves; health says what loading skipped.
    let (s, v) = call(&ns, "GET", "/api/v1/health", None, &[]);
    assert_eq!(s, 200, "{v}; log:\n{}", app.log_tail(40));
    assert_eq!(v["status"], "degraded", "{v}");
    assert_eq!(v["damaged_rows"], 2, "{v}");
    assert_eq!(v["peers"], 1, "the low-order peer is not routed: {v}");
    // `appliance status` from the running server gives the same count as health.
    let status = |app: &Appliance| -> Value {
        let out = app.run(&["status", "--json"]);
        assert!(out.status.success(), "{}", describe(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let st = status(&app);
    assert_eq!(st["serving"], true, "{st}");
    assert_eq!(st["storage"]["damaged_rows"], 2, "{st}");
    // `appliance doctor` scans every table, and health and status then count the damaged
    // run and audit rows too.
    let out = app.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let (_, v) = call(&ns, "GET", "/api/v1/health", None, &[]);
    assert_eq!(v["damaged_rows"], 4, "{v}");
    assert_eq!(status(&app)["storage"]["damaged_rows"], 4);

    // The API refuses a low-order key, naming the field; nothing is created.
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        Some(&json!({"name": "eve", "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})),
        &[],
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "public_key", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("low-order point"),
        "{v}"
    );
    assert!(!peer_names(&app).contains(&"eve".to_string()));

    // doctor --quarantine through the control socket clears the report.
    let out = app.run(&["doctor", "--quarantine"]);
    assert!(out.status.success(), "{}", describe(&out));
    let (_, v) = call(&ns, "GET", "/api/v1/health", None, &[]);
    assert_eq!(
        (v["status"].as_str(), v["damaged_rows"].as_u64()),
        (Some("ok"), Some(0))
    );
    let st = status(&app);
    assert_eq!(st["storage"]["damaged_rows"], 0, "{st}");
    assert_eq!(st["storage"]["quarantined_rows"], 4, "{st}");
}

/// The stored bytes of one peer row, read back through the store's own encoding.
fn peer_row(store: &appliance::store::Store, name: &str) -> Vec<u8> {
    let loaded = store.peers().unwrap();
    let rec = loaded
        .rows
        .iter()
        .find(|p| p.name.as_str() == name)
        .expect("peer stored");
    appliance::store::encode_peer(rec)
}
