//! Interop: the HTTP hardening of issue #13 (items 6, 7, 8, 10, 11, 12, 13), through the real
//! wireguard-go tunnel and the real binary. Oversized heads get 431 without growing memory,
//! slow and oversized bodies are cut, HTTP framing tricks are refused, viewers see no webhook
//! secrets, refused privileged attempts are audited, `since` cannot wrap, writes are
//! rate-limited.
//!
//! Raw requests are sent by a small Python client inside the namespace (curl cannot send two
//! Host headers or an unfinished head). Each scenario owns its namespaces; nothing leaves
//! them. Needs root and the packages that `scripts/test.sh` installs (SKIP without them, FAIL
//! under `CI=true`).

mod common;

use common::*;
use serde_json::{json, Value};

/// An appliance served with `serve_args` and one connected peer "alice" of `role`.
fn alice_on<'a>(ns: &'a Netns, role: &str, serve_args: &[&str]) -> (Appliance<'a>, WgClient<'a>) {
    served_with_peer(ns, "alice", role, serve_args)
}

/// Sends `conns` connections at once, each writing the hex-decoded `payload` padded with `a`
/// to `pad_to` bytes (as far as the server takes it within 5 s) and reading the reply until the server closes or `read_s`
/// passes. Prints one JSON line per connection: status code (0: none), seconds until the
/// connection ended, whether the server closed it, and the reply's text.
const RAW_CLIENT: &str = r#"
import json, socket, sys, threading, time
payload = bytes.fromhex(sys.argv[1]); conns = int(sys.argv[2]); read_s = float(sys.argv[3])
payload = payload.ljust(int(sys.argv[4]), b"a")
out = [None] * conns
def one(i):
    t0 = time.monotonic(); s = socket.create_connection(("10.88.88.1", 8888), timeout=10)
    s.settimeout(5)
    try:
        s.sendall(payload)
    except OSError:
        pass
    s.settimeout(read_s); data = b""; closed = False
    try:
        while True:
            b = s.recv(65536)
            if not b:
                closed = True; break
            data += b
    except socket.timeout:
        pass
    except OSError:
        closed = True
    text = data.decode("latin-1"); code = 0
    if text.startswith("HTTP/1.1 "):
        code = int(text[9:12])
    out[i] = {"status": code, "secs": time.monotonic() - t0, "closed": closed, "text": text}
    s.close()
threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
[t.start() for t in threads]; [t.join() for t in threads]
for o in out:
    print(json.dumps(o))
"#;

#[derive(Debug)]
struct Raw {
    status: u16,
    secs: f64,
    closed: bool,
    text: String,
}

fn raw_many(ns: &Netns, payload: &[u8], pad_to: usize, conns: usize, read_s: f64) -> Vec<Raw> {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let out = output_of(ns.bounded(120, "python3").args([
        "-c",
        RAW_CLIENT,
        &hex,
        &conns.to_string(),
        &read_s.to_string(),
        &pad_to.to_string(),
    ]));
    assert!(out.status.success(), "raw client: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("raw client prints JSON");
            Raw {
                status: v["status"].as_u64().unwrap() as u16,
                secs: v["secs"].as_f64().unwrap(),
                closed: v["closed"].as_bool().unwrap(),
                text: v["text"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

fn raw(ns: &Netns, request: &str, read_s: f64) -> Raw {
    raw_many(ns, request.as_bytes(), 0, 1, read_s)
        .pop()
        .expect("one result")
}

/// The JSON body of a raw reply (Null if none).
fn raw_json(r: &Raw) -> Value {
    r.text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Item 6: a 300 KB head that never ends gets 431 at once, and 4 rounds of 32 such
/// connections do not balloon the appliance's memory.
#[test]
fn oversized_heads_get_431_at_once_and_memory_stays_bounded() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("bighead");
    let (app, _c) = alice_on(&ns, "viewer", &[]);
    assert_eq!(call(&ns, "GET", "/api/v1/health", None, &[]).0, 200);
    let before = vm_rss_kib(app.pid());

    // 300 KB of head with no end: the server must decide on its own.
    let head = b"GET /api/v1/health HTTP/1.1\r\nHost: 10.88.88.1\r\nX-Pad: ";
    for round in 0..4 {
        let results = raw_many(&ns, head, 300 * 1024, 32, 20.0);
        assert_eq!(results.len(), 32);
        for r in &results {
            assert_eq!(r.status, 431, "round {round}: {r:?}");
            assert!(r.closed, "round {round}: connection left open: {r:?}");
            assert!(r.secs < 10.0, "round {round}: took {:.1} s", r.secs);
        }
    }
    let after = vm_rss_kib(app.pid());
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("VmRSS before {before} KiB, after 4x32 oversized heads {after} KiB");
    assert!(
        grown_mib < 64,
        "RSS grew by {grown_mib} MiB ({before} -> {after} KiB)"
    );
    // A head within the limit is still served, and the budget metric is back to zero.
    let (s, v) = call(&ns, "GET", "/api/v1/health", None, &[]);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["api"]["buffered_body_bytes"], 0, "{v}");
}

/// Item 7: a body that stalls is cut after --body-timeout; a Content-Length over --max-body
/// gets 413 before any of the body is sent.
#[test]
fn stalled_bodies_time_out_and_oversized_ones_are_refused_up_front() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("slowbody");
    let (_app, _c) = alice_on(
        &ns,
        "admin",
        &["--body-timeout", "2", "--min-body-rate", "100000"],
    );
    // Complete head, 10 of 100 body bytes, then nothing.
    let stalled = "POST /api/v1/jobs HTTP/1.1\r\nHost: 10.88.88.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\": ";
    let r = raw(&ns, stalled, 20.0);
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(error_code(&raw_json(&r)), "body_timeout", "{r:?}");
    assert!(r.closed, "{r:?}");
    assert!((1.5..8.0).contains(&r.secs), "cut after {:.1} s", r.secs);

    // 10 MB announced, no body sent: refused at once.
    let big = "POST /api/v1/jobs HTTP/1.1\r\nHost: 10.88.88.1\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n";
    let r = raw(&ns, big, 20.0);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(error_code(&raw_json(&r)), "body_too_large", "{r:?}");
    assert!(r.secs < 1.5, "413 took {:.1} s", r.secs);
    assert!(r.closed, "{r:?}");
    // Nothing was created, and a normal request still works.
    let (s, v) = call(&ns, "GET", "/api/v1/jobs", None, &[]);
    assert_eq!(
        (s, v["jobs"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
}

/// Item 11: HEAD wherever GET works; one Host; no foreign absolute-form target; one Origin;
/// no cross-site writes even without Origin.
#[test]
fn http_conformance_head_host_target_origin_and_fetch_site() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("conform");
    let (_app, _c) = alice_on(&ns, "admin", &[]);

    for path in [
        "/",
        "/api/v1/health",
        "/api/v1/jobs",
        "/api/v1/openapi.json",
    ] {
        let get = curl_full(&ns, &api_url(path), &[]);
        assert_eq!(get.status, 200, "GET {path}");
        let head = raw(
            &ns,
            &format!("HEAD {path} HTTP/1.1\r\nHost: 10.88.88.1\r\nConnection: close\r\n\r\n"),
            10.0,
        );
        assert_eq!(head.status, 200, "HEAD {path}: {head:?}");
        let (headers, body) = head.text.split_once("\r\n\r\n").unwrap();
        assert!(body.is_empty(), "HEAD {path} sent a body: {body:?}");
        assert!(
            headers.to_ascii_lowercase().contains("content-type:"),
            "HEAD {path}: {headers}"
        );
    }

    let two_hosts = raw(
        &ns,
        "GET /api/v1/whoami HTTP/1.1\r\nHost: 10.88.88.1\r\nHost: 10.88.88.1\r\nConnection: close\r\n\r\n",
        10.0,
    );
    assert_eq!(two_hosts.status, 400, "{two_hosts:?}");
    assert_eq!(raw_json(&two_hosts)["error"]["field"], "Host");

    let foreign = raw(
        &ns,
        "GET http://evil.example/api/v1/whoami HTTP/1.1\r\nHost: 10.88.88.1\r\nConnection: close\r\n\r\n",
        10.0,
    );
    assert_eq!(foreign.status, 400, "{foreign:?}");
    assert_eq!(error_code(&raw_json(&foreign)), "foreign_target");
    let own = raw(
        &ns,
        "GET http://10.88.88.1:8888/api/v1/whoami HTTP/1.1\r\nHost: 10.88.88.1\r\nConnection: close\r\n\r\n",
        10.0,
    );
    assert_eq!(own.status, 200, "absolute form naming us: {own:?}");

    let (s, v) = call(
        &ns,
        "GET",
        "/api/v1/whoami",
        None,
        &[
            "-H",
            "Origin: http://10.88.88.1:8888",
            "-H",
            "Origin: http://evil.example",
        ],
    );
    assert_eq!((s, error_code(&v)), (403, "cross_origin"), "{v}");

    let job = json!({"name": "x", "trigger": {"every": "1h"},
        "action": {"webhook": {"url": "https://example.com/hook"}}});
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/jobs",
        Some(&job),
        &["-H", "Sec-Fetch-Site: cross-site"],
    );
    assert_eq!((s, error_code(&v)), (403, "cross_origin"), "{v}");
    assert_eq!(v["error"]["field"], "Sec-Fetch-Site");
    let (s, v) = call(&ns, "GET", "/api/v1/jobs", None, &[]);
    assert_eq!(
        (s, v["jobs"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    // The dashboard's own requests (same-origin) still change things.
    let (s, v) = call(
        &ns,
        "POST",
        "/api/v1/jobs",
        Some(&job),
        &["-H", "Sec-Fetch-Site: same-origin"],
    );
    assert_eq!(s, 201, "{v}");
}

/// Items 8, 12, 13: a viewer sees no Telegram token, healthchecks UUID or ntfy topic, nor
/// headers outside the allow-list or bodies; job names are unique and free of bidi and
/// invisible characters; an `at` too far ahead is called out of range.
#[test]
fn viewers_see_no_webhook_secrets_and_job_names_are_checked() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("viewer");
    let (app, _c) = alice_on(&ns, "officer", &[]);
    let at = json!({"at": "2099-01-01T00:00:00Z"});
    let secrets = [
        (
            "telegram",
            "https://api.telegram.org/bot123456:AAHsecretTG/sendMessage",
        ),
        (
            "healthchecks",
            "https://hc-ping.com/0f3c1a2b-8d4e-4f6a-9b7c-123456789abc",
        ),
        ("ntfy", "https://ntfy.sh/guild-raid-topic-q7"),
    ];
    for (name, url) in secrets {
        let job = json!({"name": name, "trigger": at,
            "action": {"webhook": {"url": url,
                "headers": {"X-Api-Thing": "hdrsecret", "Content-Type": "application/json"},
                "body": {"chat_id": "-100777", "text": "raid"}}}});
        let (s, v) = call(&ns, "POST", "/api/v1/jobs", Some(&job), &[]);
        assert_eq!(s, 201, "{v}");
    }

    // Names: a duplicate (ignoring case) is a 409 naming the field; bidi and zero-width
    // characters are refused; nothing is stored.
    for (name, status) in [
        ("Telegram", 409),
        ("tele\u{202E}margelet", 400),
        ("ntfy\u{200B}", 400),
    ] {
        let job = json!({"name": name, "trigger": at,
            "action": {"webhook": {"url": "https://example.com/x"}}});
        let (s, v) = call(&ns, "POST", "/api/v1/jobs", Some(&job), &[]);
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (status, Some("name")),
            "{name:?}: {v}"
        );
    }
    // An `at` past the representable range says so.
    let job = json!({"name": "far", "trigger": {"at": "9999-12-31T23:59:59Z"},
        "action": {"webhook": {"url": "https://example.com/x"}}});
    let (s, v) = call(&ns, "POST", "/api/v1/jobs", Some(&job), &[]);
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("trigger.at")),
        "{v}"
    );
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("out of range") && !msg.contains("RFC 3339"),
        "{msg}"
    );

    // The officer sees everything; the viewer only scheme, host and a fingerprint.
    let (_, full) = call(&ns, "GET", "/api/v1/jobs", None, &[]);
    assert!(full.to_string().contains("AAHsecretTG"), "{full}");
    let out = app.run(&["peer", "role", "alice", "viewer"]);
    assert!(out.status.success(), "{}", describe(&out));
    let (s, list) = call(&ns, "GET", "/api/v1/jobs", None, &[]);
    assert_eq!(s, 200, "{list}");
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "{list}");
    let mut fingerprints = std::collections::BTreeSet::new();
    for j in jobs {
        let id = j["id"].as_str().unwrap();
        let (_, one) = call(&ns, "GET", &format!("/api/v1/jobs/{id}"), None, &[]);
        for v in [j, &one] {
            let hook = &v["action"]["webhook"];
            let url = hook["url"].as_str().unwrap();
            assert!(url.ends_with("/***"), "{url}");
            assert_eq!(hook["headers"]["content-type"], "application/json", "{v}");
            assert_eq!(hook["headers"]["x-api-thing"], "***", "{v}");
            assert_eq!(hook["body"], "***", "{v}");
            fingerprints.insert(hook["url_fingerprint"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        fingerprints.len(),
        3,
        "one fingerprint per URL: {fingerprints:?}"
    );
    let text = list.to_string();
    for secret in [
        "AAHsecretTG",
        "bot123456",
        "sendMessage",
        "0f3c1a2b-8d4e-4f6a-9b7c-123456789abc",
        "guild-raid-topic-q7",
        "hdrsecret",
        "-100777",
    ] {
        assert!(!text.contains(secret), "viewer sees {secret}: {text}");
    }
}

/// Item 10: refused privileged attempts are audited (once per minute per route, the rest
/// counted), `since` past the year 9999 is a 400, and writes beyond the rate get 429 with
/// Retry-After.
#[test]
fn denials_are_audited_since_cannot_wrap_and_writes_are_rate_limited() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("auditgap");
    let (app, _c) = alice_on(&ns, "officer", &["--write-rate", "1", "--write-burst", "3"]);

    // An officer probing for admin rights: three refusals, one audit entry.
    for _ in 0..3 {
        let (s, v) = call(&ns, "GET", "/api/v1/audit", None, &[]);
        assert_eq!((s, error_code(&v)), (403, "forbidden_role"), "{v}");
    }

    // Writes: a burst of 3, then 429 with Retry-After (the limiter runs before the body).
    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..5 {
        let r = curl_full(
            &ns,
            &api_url("/api/v1/jobs/0000000000000001/pause"),
            &["-X", "POST", "-D", "/dev/stderr"],
        );
        statuses.push(r.status);
        if r.status == 429 && limited.is_none() {
            limited = Some((i, r));
        }
    }
    let (i, r) = limited.unwrap_or_else(|| panic!("no 429 among {statuses:?}"));
    assert_eq!(i, 3, "the burst is 3: {statuses:?}");
    let retry_after = r
        .stderr
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Retry-After: {}", r.stderr));
    assert_eq!(retry_after, "1", "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(error_code(&v), "rate_limited", "{v}");

    // Reads are never rate-limited.
    assert_eq!(call(&ns, "GET", "/api/v1/jobs", None, &[]).0, 200);

    let out = app.run(&["peer", "role", "alice", "admin"]);
    assert!(out.status.success(), "{}", describe(&out));
    let (s, audit) = call(&ns, "GET", "/api/v1/audit?limit=500", None, &[]);
    assert_eq!(s, 200, "{audit}");
    let denied: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{audit}");
    let d = denied[0];
    assert_eq!(d["actor"]["peer"], "alice", "{d}");
    assert_eq!(d["target"], "GET /api/v1/audit", "{d}");
    assert_eq!(d["summary"]["role"], "officer", "{d}");
    assert!(
        d["summary"]["reason"].as_str().unwrap().contains("admin"),
        "{d}"
    );

    // `since` in Unix seconds that would wrap to 1970 is refused, naming the field.
    let (s, v) = call(
        &ns,
        "GET",
        "/api/v1/audit?since=18446744073709552",
        None,
        &[],
    );
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("since")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("out of range"),
        "{v}"
    );
}
