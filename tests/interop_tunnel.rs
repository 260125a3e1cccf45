//! Interop: the real wireguard-go client, brought up by `wg-quick` with the exact config that
//! `appliance peer add` printed, reaches the API and ICMP on 10.88.88.1 through the tunnel; a
//! peer that forges another peer's inner address reaches nothing; and the appliance owns no TCP
//! socket on the host at all.
//!
//! Every scenario owns its network namespace(s) (see `common`); no packet leaves them. Needs root
//! and the Debian packages `scripts/test.sh` installs; without them the tests print SKIP and
//! pass, except under `CI=true`, where they fail.

mod common;

use std::time::Duration;

use common::*;

/// How long a freshly brought-up client gets to complete its first handshake: wireguard-go
/// initiates at once (PersistentKeepalive is set) and retries every 5 s.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// GETs `path` through the tunnel from `ns`, expects 200 and a JSON body.
fn get_json(ns: &Netns, app: &Appliance, path: &str) -> serde_json::Value {
    let r = curl_full(ns, &api_url(path), &[]);
    assert_eq!(
        r.status,
        200,
        "GET {path} through the tunnel: {r:?}\n--- serve log ---\n{}",
        app.log_tail(60)
    );
    serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("GET {path} returned non-JSON ({e}): {:?}", r.body))
}

/// The spoofed-packet counter of a health body, top level or under "tunnel", if it has one.
fn dropped_spoofed(health: &serde_json::Value) -> Option<u64> {
    health
        .get("dropped_spoofed")
        .or_else(|| health.get("tunnel")?.get("dropped_spoofed"))
        .and_then(serde_json::Value::as_u64)
}

/// A second namespace wired to `ns` by a veth pair (192.0.2.1 there, 192.0.2.2 here; TEST-NET,
/// existing only inside the two namespaces), and `config` rewritten to reach `app` over it.
fn remote_client_ns(ns: &Netns, app: &Appliance, tag: &str) -> (Netns, String) {
    let remote = Netns::new(tag);
    ns.link_veth(&remote, "192.0.2.1/24", "192.0.2.2/24");
    (remote, format!("192.0.2.1:{}", app.port()))
}

#[test]
fn health_answers_through_the_tunnel() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("health");
    let app = Appliance::start(&ns);
    let config = app.peer_add("alice", "admin");
    let _alice = WgClient::up(&ns, &config);

    let health = get_json(&ns, &app, "/api/v1/health");
    assert_eq!(health["status"], "ok", "health: {health}");
    assert!(
        health["peers"].as_u64().is_some_and(|n| n >= 1),
        "health must count alice among the peers: {health}"
    );
    assert!(
        !health["version"].is_null(),
        "health has no version: {health}"
    );
    assert!(
        health["uptime_s"].is_number(),
        "health has no uptime_s: {health}"
    );
}

#[test]
fn whoami_names_the_peer() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("whoami");
    let app = Appliance::start(&ns);
    let config = app.peer_add("alice", "admin");
    let address = config_address(&config);
    let _alice = WgClient::up(&ns, &config);

    let me = get_json(&ns, &app, "/api/v1/whoami");
    assert_eq!(me["peer"], "alice", "whoami: {me}");
    assert_eq!(me["role"], "admin", "whoami: {me}");
    assert_eq!(
        me["address"],
        address.as_str(),
        "whoami vs config Address: {me}"
    );
}

#[test]
fn ping_answers_through_the_tunnel() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("ping");
    let app = Appliance::start(&ns);
    let config = app.peer_add("alice", "admin");
    let alice = WgClient::up(&ns, &config);

    assert!(
        wait_until(HANDSHAKE_TIMEOUT, || ping(&ns, APPLIANCE_IP)),
        "no echo reply from {APPLIANCE_IP} through the tunnel (handshake: {:?})\n--- serve log ---\n{}",
        alice.latest_handshake(),
        app.log_tail(60)
    );
}

#[test]
fn appliance_owns_no_tcp_socket() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("notcp");
    let app = Appliance::start(&ns);
    let config = app.peer_add("alice", "admin");
    let _alice = WgClient::up(&ns, &config);
    // The API answers, so a listener opened lazily would exist by now.
    get_json(&ns, &app, "/api/v1/health");

    let pid = app.pid();
    let owned = format!("pid={pid},");
    let mentions_appliance = |line: &&str| line.contains(&owned) || line.contains("\"appliance\"");
    for (place, listing) in [
        ("its namespace", ss(Some(&ns), &["-ltnp"])),
        ("the root namespace", ss(None, &["-ltnp"])),
        ("its namespace (any TCP state)", ss(Some(&ns), &["-tanp"])),
    ] {
        let offending: Vec<&str> = listing.lines().filter(mentions_appliance).collect();
        assert!(
            offending.is_empty(),
            "the appliance (pid {pid}) has TCP sockets in {place}:\n{}",
            offending.join("\n")
        );
    }

    // Its UDP socket is there, on the port it was given...
    let udp = ss(Some(&ns), &["-uanp"]);
    assert!(
        udp.lines()
            .any(|l| l.contains(&owned) && l.contains(&format!(":{}", app.port()))),
        "the appliance (pid {pid}) has no UDP socket on port {}:\n{udp}",
        app.port()
    );
    // ...and every socket it has is UDP or Unix (control.sock, runtime internals).
    let all = ss(Some(&ns), &["-anp"]);
    let not_udp_or_unix: Vec<&str> = all
        .lines()
        .filter(|l| l.contains(&owned))
        .filter(|l| {
            let netid = l.split_whitespace().next().unwrap_or("");
            netid != "udp" && !netid.starts_with("u_")
        })
        .collect();
    assert!(
        not_udp_or_unix.is_empty(),
        "the appliance (pid {pid}) has sockets other than UDP and Unix:\n{}",
        not_udp_or_unix.join("\n")
    );
}

#[test]
fn forged_inner_address_is_dropped() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("spoof");
    let app = Appliance::start(&ns);
    let alice_config = app.peer_add("alice", "admin");
    let mallory_config = app.peer_add("mallory", "viewer");
    let alice_addr = config_address(&alice_config);
    let mallory_addr = config_address(&mallory_config);
    assert_ne!(alice_addr, mallory_addr, "two peers were given one address");

    let alice = WgClient::up(&ns, &alice_config);
    assert_eq!(get_json(&ns, &app, "/api/v1/whoami")["peer"], "alice");

    // Mallory lives in a second namespace (her interface would clash with alice's route here)
    // and claims alice's address with her own, valid keys.
    let (remote, endpoint) = remote_client_ns(&ns, &app, "spoof-m");
    let mallory_real = with_config_value(&mallory_config, "Endpoint", &endpoint);
    let mallory_forged = with_config_value(&mallory_real, "Address", &format!("{alice_addr}/32"));
    {
        let forged = WgClient::up(&remote, &mallory_forged);
        assert!(
            forged.wait_handshake(HANDSHAKE_TIMEOUT),
            "mallory's handshake must complete (her keys are valid; only the inner source is \
             forged)\n--- serve log ---\n{}",
            app.log_tail(60)
        );
        // If the appliance let the forged packets in, its answers would go to alice's tunnel (the
        // forged source is hers) or back to mallory, and it would log the request: watch all.
        let spoofed_before = dropped_spoofed(&get_json(&ns, &app, "/api/v1/health"));
        std::thread::sleep(Duration::from_millis(500)); // alice's connections wind down
        let alice_rx = alice.rx_packets();
        let served_before = app.log().matches("/api/v1/whoami").count();
        let r = curl_full(&remote, &api_url("/api/v1/whoami"), &["--max-time", "5"]);
        assert_eq!(
            r.status,
            0,
            "mallory forging alice's address got an HTTP answer: {r:?}\n--- serve log ---\n{}",
            app.log_tail(60)
        );
        assert!(
            !ping(&remote, APPLIANCE_IP),
            "mallory forging alice's address got an echo reply"
        );
        let alice_rx_after = alice.rx_packets();
        assert_eq!(
            alice_rx,
            alice_rx_after,
            "the appliance answered mallory's forged packets into alice's tunnel: the allowed-IP \
             check let them through\n--- serve log ---\n{}",
            app.log_tail(60)
        );
        assert_eq!(
            app.log().matches("/api/v1/whoami").count(),
            served_before,
            "the appliance logged a whoami request during mallory's forgery\n--- serve log ---\n{}",
            app.log_tail(60)
        );
        // The counter is optional in the contract; when health has it, it must have counted.
        if let Some(before) = spoofed_before {
            let health = get_json(&ns, &app, "/api/v1/health");
            let after = dropped_spoofed(&health).expect("dropped_spoofed vanished");
            assert!(
                after > before,
                "health's dropped_spoofed did not count mallory's packets ({before} -> {after}): \
                 {health}"
            );
        }
    }

    // Alice is unaffected.
    let me = get_json(&ns, &app, "/api/v1/whoami");
    assert_eq!(me["peer"], "alice", "whoami after the forgery: {me}");

    // Mallory with her own address gets through the same path: the failure above was the
    // allowed-IP check, not the veth, the endpoint or her keys.
    let _mallory = WgClient::up(&remote, &mallory_real);
    let me = get_json(&remote, &app, "/api/v1/whoami");
    assert_eq!(me["peer"], "mallory", "whoami: {me}");
    assert_eq!(me["role"], "viewer", "whoami: {me}");
    assert_eq!(me["address"], mallory_addr.as_str(), "whoami: {me}");
}

#[test]
fn peer_added_while_serving_works_without_restart() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("addlive");
    let mut app = Appliance::start(&ns);
    let pid = app.pid();
    let alice_config = app.peer_add("alice", "admin");
    let _alice = WgClient::up(&ns, &alice_config);
    assert_eq!(get_json(&ns, &app, "/api/v1/whoami")["peer"], "alice");

    let bob_config = app.peer_add("bob", "officer");
    assert!(app.is_running(), "serve stopped after peer add");
    assert_eq!(app.pid(), pid);
    let (remote, endpoint) = remote_client_ns(&ns, &app, "addlive-b");
    let _bob = WgClient::up(
        &remote,
        &with_config_value(&bob_config, "Endpoint", &endpoint),
    );

    let me = get_json(&remote, &app, "/api/v1/whoami");
    assert_eq!(me["peer"], "bob", "whoami: {me}");
    assert_eq!(me["role"], "officer", "whoami: {me}");
    let health = get_json(&ns, &app, "/api/v1/health");
    assert!(
        health["peers"].as_u64().is_some_and(|n| n >= 2),
        "health must count alice and bob: {health}"
    );
    assert!(app.is_running(), "serve restarted or died during the test");
}

#[test]
fn peer_added_before_serve_is_loaded() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("offline");
    let mut app = Appliance::init(&ns, &[]);
    let config = app.peer_add("alice", "handler");
    app.serve();
    let _alice = WgClient::up(&ns, &config);

    let me = get_json(&ns, &app, "/api/v1/whoami");
    assert_eq!(me["peer"], "alice", "whoami: {me}");
    assert_eq!(me["role"], "handler", "whoami: {me}");
}

#[test]
fn sigterm_stops_serve_cleanly() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("sigterm");
    let mut app = Appliance::start(&ns);
    let config = app.peer_add("alice", "admin");
    let _alice = WgClient::up(&ns, &config);
    get_json(&ns, &app, "/api/v1/health");

    let status = app.stop().expect("appliance was serving");
    assert!(
        status.success(),
        "serve should exit 0 on SIGTERM within {STOP_TIMEOUT:?}, got {status}\n--- serve log ---\n{}",
        app.log_tail(60)
    );
}
