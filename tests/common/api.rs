//! Reaching the API through a wireguard-go client: prerequisites beyond the base set, bringing a
//! client up until the API answers, peers in namespaces of their own, and JSON calls that must
//! answer a given status.
//!
//! Every request runs under `ip netns exec` in a namespace the test created ([`call`]).

use std::time::Duration;

use serde_json::Value;

use super::{
    call, find_on_path, require_prereqs, wait_until, with_config_value, Appliance, Netns, WgClient,
};

/// How long a fresh wg-quick client may take to complete its first handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// True when every one of `tools` is on PATH. Otherwise, like [`require_prereqs`], it panics
/// under `CI=true` and prints a SKIP line naming the missing ones and `why` they are needed.
pub fn require_tools(tools: &[&str], why: &str) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_on_path(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("interop prerequisites missing under CI: {missing:?} on PATH ({why})");
    }
    eprintln!("SKIP interop test: missing {missing:?} on PATH ({why})");
    false
}

/// [`require_prereqs`] plus `python3` (for the helper script named in `why`).
pub fn require_prereqs_and_python(why: &str) -> bool {
    require_prereqs() && require_tools(&["python3"], why)
}

/// [`call`] that must answer `status`; returns the JSON.
pub fn expect(ns: &Netns, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
    expect_with(ns, method, path, body, status, &[])
}

/// [`expect`] with extra curl arguments.
pub fn expect_with(
    ns: &Netns,
    method: &str,
    path: &str,
    body: Option<&Value>,
    status: u16,
    extra: &[&str],
) -> Value {
    let (s, v) = call(ns, method, path, body, extra);
    assert_eq!(s, status, "{method} {path} {body:?} answered {s}: {v}");
    v
}

/// A 4xx whose error names `field` and carries a sentence.
pub fn refused(
    ns: &Netns,
    method: &str,
    path: &str,
    body: Option<&Value>,
    status: u16,
    field: &str,
) {
    let v = expect(ns, method, path, body, status);
    assert_names_field(&v, field, &format!("{method} {path} {body:?}"));
}

/// The error body `v` (of the request `what`) names `field` and carries a sentence.
pub fn assert_names_field(v: &Value, field: &str, what: &str) {
    assert_eq!(v["error"]["field"], field, "{what}: {v}");
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| m.len() > 10),
        "{v}"
    );
}

/// Waits up to 30 s until `GET probe` answers 200 through the tunnel (after a start or
/// restart).
pub fn wait_api_on(ns: &Netns, app: &Appliance, probe: &str) {
    let ok = wait_until(Duration::from_secs(30), || {
        call(ns, "GET", probe, None, &["--max-time", "5"]).0 == 200
    });
    assert!(
        ok,
        "the API did not answer within 30 s; serve log:\n{}",
        app.log_tail(60)
    );
}

/// [`wait_api_on`] `/api/v1/whoami`, which every role may call.
pub fn wait_api(ns: &Netns, app: &Appliance) {
    wait_api_on(ns, app, "/api/v1/whoami");
}

/// Brings up a wg-quick client with `config` in `ns` and waits for its handshake
/// ([`HANDSHAKE_TIMEOUT`]) and for `GET probe` to answer.
pub fn connect_on<'a>(ns: &'a Netns, app: &Appliance, config: &str, probe: &str) -> WgClient<'a> {
    let client = WgClient::up(ns, config);
    assert!(
        client.wait_handshake(HANDSHAKE_TIMEOUT),
        "no handshake; serve log:\n{}",
        app.log_tail(40)
    );
    wait_api_on(ns, app, probe);
    client
}

/// [`connect_on`] probing `/api/v1/whoami`.
pub fn connect<'a>(ns: &'a Netns, app: &Appliance, config: &str) -> WgClient<'a> {
    connect_on(ns, app, config, "/api/v1/whoami")
}

/// Peer `name` of `role`, connected from `remote` (its own namespace, which the caller owns and
/// so deletes when the test ends, panicking or not), linked to `ns` over veth subnet `net`
/// (`"192.0.2"`: appliance side .1, peer side .2).
pub fn remote_peer<'a>(
    ns: &Netns,
    app: &Appliance,
    remote: &'a Netns,
    name: &str,
    role: &str,
    net: &str,
) -> WgClient<'a> {
    ns.link_veth(remote, &format!("{net}.1/24"), &format!("{net}.2/24"));
    let conf = with_config_value(
        &app.peer_add(name, role),
        "Endpoint",
        &format!("{net}.1:{}", app.port()),
    );
    connect(remote, app, &conf)
}

/// Polls `fetch` (a job's runs) until `done` holds; panics with the last runs and the serve
/// log otherwise.
pub fn wait_runs_by(
    app: &Appliance,
    job: &str,
    timeout: Duration,
    what: &str,
    mut fetch: impl FnMut() -> Vec<Value>,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut last = Vec::new();
    if wait_until(timeout, || {
        last = fetch();
        done(&last)
    }) {
        return last;
    }
    panic!(
        "job {job}: {what} not seen within {timeout:?}; runs: {}\nserve log:\n{}",
        Value::from(last),
        app.log_tail(40)
    );
}

/// An appliance served with `serve_args` and one peer `name` of `role`, whose wg-quick client in
/// `ns` has completed a handshake (the API itself is not waited for).
pub fn served_with_peer<'a>(
    ns: &'a Netns,
    name: &str,
    role: &str,
    serve_args: &[&str],
) -> (Appliance<'a>, WgClient<'a>) {
    let mut app = Appliance::init(ns, &[]);
    app.serve_with(serve_args);
    let config = app.peer_add(name, role);
    let client = WgClient::up(ns, &config);
    assert!(
        client.wait_handshake(HANDSHAKE_TIMEOUT),
        "no handshake; log:\n{}",
        app.log_tail(40)
    );
    (app, client)
}

/// The `code` of an API error body (empty if there is none).
pub fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The names in a peer list (`peer list --json` or `GET /api/v1/peers`).
pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().expect("name is a string").to_string())
        .collect()
}
