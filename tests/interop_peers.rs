//! Interop: the peer lifecycle (issue 3) against the real wireguard-go client. Every command runs
//! the real `appliance peer ...` CLI, through `control.sock` while `serve` runs and on the
//! database directly when it does not, and every client is `wg-quick` with the exact config the
//! CLI printed: disable/enable, rotate and remove take effect at once, a new peer handshakes
//! within a second, the QR PNG decodes to the printed config, `--public-key` registration works
//! with the device's own key, bad input exits 2 and changes nothing, and statistics survive a
//! restart.
//!
//! Every scenario owns its network namespace(s) (see `common`); no packet leaves them. Needs root
//! and the Debian packages `scripts/test.sh` installs (plus `zbar-tools` for the QR test); without
//! them the tests print SKIP and pass, except under `CI=true`, where they fail.
// A driver in STYLE.md's sense: it measures wall-clock latencies of the real processes.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// How long a fresh client whose key the appliance must refuse is watched for a handshake: its
/// first initiation plus one retry (wireguard-go: REKEY_TIMEOUT 5 s + up to 333 ms jitter).
const REFUSED_WINDOW: Duration = Duration::from_secs(7);
/// How long a client that is retrying handshakes gets to succeed once its key is accepted again:
/// two retries at most.
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a client that kept its tunnel up through a disable gets to recover after enable:
/// wireguard-go keeps its (now dead) session until data has gone unanswered for 15 s
/// (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT), then re-handshakes and retries every 5 s.
const STALE_SESSION_RECOVERY: Duration = Duration::from_secs(35);
/// The promise: "a new peer can handshake within a second".
const LIVE_ADD_BUDGET: Duration = Duration::from_secs(1);
/// `curl --max-time` for requests that must fail at once ("within a second").
const FAIL_FAST_S: &str = "1";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A second namespace wired to `ns` by a veth pair (192.0.2.1 there, 192.0.2.2 here; TEST-NET,
/// existing only inside the two namespaces), and the endpoint that reaches `app` over it, for
/// `peer add --endpoint`.
fn remote_client_ns(ns: &Netns, app: &Appliance, tag: &str) -> (Netns, String) {
    let remote = Netns::new(tag);
    ns.link_veth(&remote, "192.0.2.1/24", "192.0.2.2/24");
    (remote, format!("192.0.2.1:{}", app.port()))
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `appliance peer ARGS`, which must succeed; returns stdout.
fn cli_ok(app: &Appliance, args: &[&str]) -> String {
    let out = app.run(args);
    assert!(
        out.status.success(),
        "appliance {args:?} failed: {}\n--- serve log ---\n{}",
        describe(&out),
        app.log_tail(60)
    );
    stdout_of(&out)
}

/// `appliance peer add ARGS...` (name and options), which must succeed and print a config.
fn add(app: &Appliance, args: &[&str]) -> String {
    let mut full = vec!["peer", "add"];
    full.extend_from_slice(args);
    let config = cli_ok(app, &full);
    assert!(
        config.contains("[Interface]") && config.contains("[Peer]"),
        "appliance {full:?} did not print a wg-quick config:\n{config}"
    );
    config
}

/// `peer list --json` as parsed JSON (an array).
fn list_json(app: &Appliance) -> Value {
    let text = cli_ok(app, &["peer", "list", "--json"]);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("peer list --json printed non-JSON ({e}):\n{text}"));
    assert!(v.is_array(), "peer list --json is not an array: {v}");
    v
}

/// `peer show NAME --json` as parsed JSON (an object).
fn show_json(app: &Appliance, name: &str) -> Value {
    let text = cli_ok(app, &["peer", "show", name, "--json"]);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("peer show {name} --json printed non-JSON ({e}):\n{text}"));
    assert_eq!(v["name"], name, "peer show {name}: {v}");
    v
}

/// `wg ARGS` with `input` on stdin (genkey, pubkey): pure computation, no network.
fn wg_tool(args: &[&str], input: &str) -> String {
    let out = wg_tool_output(args, input);
    assert!(out.status.success(), "wg {args:?}: {}", describe(&out));
    stdout_of(&out).trim().to_string()
}

/// [`wg_tool`] without the success check.
fn wg_tool_output(args: &[&str], input: &str) -> Output {
    let mut child = bounded(CMD_TIMEOUT_S, "wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run wg {args:?}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write to wg");
    child.wait_with_output().expect("wait for wg")
}

/// A fresh (private, public) key pair from `wg genkey | wg pubkey`.
fn wg_keypair() -> (String, String) {
    let private = wg_tool(&["genkey"], "");
    let public = wg_tool(&["pubkey"], &private);
    (private, public)
}

/// The public key of a printed config's PrivateKey.
fn config_public_key(config: &str) -> String {
    let private = config_value(config, "PrivateKey")
        .unwrap_or_else(|| panic!("config has no PrivateKey:\n{config}"));
    wg_tool(&["pubkey"], &private)
}

/// GET /api/v1/whoami from `ns` with `curl --max-time SECS`.
fn whoami(ns: &Netns, max_time_s: &str) -> HttpResponse {
    curl_full(ns, &api_url("/api/v1/whoami"), &["--max-time", max_time_s])
}

/// GET /api/v1/whoami from `ns`; expects 200 and returns the JSON body.
fn whoami_ok(ns: &Netns, app: &Appliance) -> Value {
    let r = curl_full(ns, &api_url("/api/v1/whoami"), &[]);
    assert_eq!(
        r.status,
        200,
        "GET /api/v1/whoami through the tunnel: {r:?}\n--- serve log ---\n{}",
        app.log_tail(60)
    );
    serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("whoami returned non-JSON ({e}): {:?}", r.body))
}

/// Asserts that a request from `ns` gets no HTTP answer within [`FAIL_FAST_S`].
fn assert_request_fails(ns: &Netns, app: &Appliance, what: &str) -> Duration {
    let started = Instant::now();
    let r = whoami(ns, FAIL_FAST_S);
    let took = started.elapsed();
    assert_eq!(
        r.status,
        0,
        "{what}: a request still got an HTTP answer: {r:?}\n--- serve log ---\n{}",
        app.log_tail(60)
    );
    took
}

/// Asserts that `client` (freshly up, so it has no session) completes no handshake within
/// [`REFUSED_WINDOW`].
fn assert_no_handshake(client: &WgClient, app: &Appliance, what: &str) {
    let handshook = wait_until(REFUSED_WINDOW, || client.latest_handshake().is_some());
    assert!(
        !handshook,
        "{what}: the appliance completed a handshake with a key it must refuse\n--- serve log \
         ---\n{}",
        app.log_tail(60)
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Whether `zbarimg` is here; like [`require_prereqs`], a missing tool fails under `CI=true` and
/// skips elsewhere.
fn require_zbarimg() -> bool {
    if find_on_path("zbarimg").is_some() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("interop prerequisite missing under CI: `zbarimg` (Debian package zbar-tools)");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIP QR interop test: `zbarimg` is not on PATH (Debian package zbar-tools; \
         scripts/test.sh installs it)"
    );
    false
}

/// The text the QR code in `png` encodes (`zbarimg --raw -q`, which appends one newline; that
/// newline is removed here).
/// What a QR code of `config` carries: the same settings in their compact form (no name
/// comment, no spaces around `=`).
fn compact(config: &str) -> String {
    peers::ClientConfig::parse(config)
        .expect("the printed config parses")
        .render_compact()
}

fn decode_qr(png: &Path) -> String {
    let out = output_of(
        bounded(CMD_TIMEOUT_S, "zbarimg")
            .args(["--raw", "-q"])
            .arg(png),
    );
    assert!(
        out.status.success(),
        "zbarimg found no QR code in {}: {}",
        png.display(),
        describe(&out)
    );
    let text = stdout_of(&out);
    text.strip_suffix('\n').map(str::to_string).unwrap_or(text)
}

fn file_mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

// ---------------------------------------------------------------------------------------------
// Disable / enable

#[test]
fn disable_cuts_a_live_client_at_once_and_enable_restores_it() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("disable");
    let app = Appliance::start(&ns);
    let alice_config = add(&app, &["alice", "--role", "admin"]);
    let alice = WgClient::up(&ns, &alice_config);
    assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");
    // Bob, in his own namespace, shows that disable is aimed at alice alone.
    let (remote, endpoint) = remote_client_ns(&ns, &app, "disable-b");
    let bob_config = add(&app, &["bob", "--endpoint", &endpoint]);
    let _bob = WgClient::up(&remote, &bob_config);
    assert_eq!(whoami_ok(&remote, &app)["peer"], "bob");
    let handshake_before = alice.latest_handshake();

    let started = Instant::now();
    cli_ok(&app, &["peer", "disable", "alice"]);
    let disable_took = started.elapsed();
    // Right after the command returns, alice's still-open session carries nothing.
    let fail_took = assert_request_fails(&ns, &app, "right after `peer disable alice`");
    eprintln!(
        "timing: `peer disable` returned after {disable_took:?}; the next request failed \
         (curl --max-time {FAIL_FAST_S}) after {fail_took:?}"
    );
    assert_eq!(show_json(&app, "alice")["enabled"], false);
    for _ in 0..2 {
        assert_request_fails(&ns, &app, "while alice is disabled");
    }
    assert_eq!(
        alice.latest_handshake(),
        handshake_before,
        "a disabled peer's handshake was renewed"
    );
    assert_eq!(
        whoami_ok(&remote, &app)["peer"],
        "bob",
        "disabling alice affected bob"
    );

    cli_ok(&app, &["peer", "enable", "alice"]);
    assert_eq!(show_json(&app, "alice")["enabled"], true);
    // The client kept its tunnel up; wireguard-go notices the dead session and re-handshakes.
    let started = Instant::now();
    let back = wait_until(STALE_SESSION_RECOVERY, || whoami(&ns, "2").status == 200);
    assert!(
        back,
        "alice's still-up client got no answer within {STALE_SESSION_RECOVERY:?} of `peer enable`\
         \n--- serve log ---\n{}",
        app.log_tail(60)
    );
    eprintln!(
        "timing: alice's kept-up client answered again {:?} after `peer enable`",
        started.elapsed()
    );
    assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");
}

#[test]
fn disabled_peer_cannot_handshake_until_enabled() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("dishs");
    let app = Appliance::start(&ns);
    let config = add(&app, &["alice", "--role", "officer"]);
    cli_ok(&app, &["peer", "disable", "alice"]);
    let listed = list_json(&app);
    assert_eq!(listed[0]["enabled"], false, "peer list: {listed}");

    let alice = WgClient::up(&ns, &config);
    assert_no_handshake(&alice, &app, "alice is disabled");
    assert_eq!(whoami(&ns, FAIL_FAST_S).status, 0);

    cli_ok(&app, &["peer", "enable", "alice"]);
    let started = Instant::now();
    assert!(
        alice.wait_handshake(RETRY_TIMEOUT),
        "alice's retrying client did not handshake within {RETRY_TIMEOUT:?} of `peer enable`\
         \n--- serve log ---\n{}",
        app.log_tail(60)
    );
    eprintln!(
        "timing: a retrying client handshook {:?} after `peer enable`",
        started.elapsed()
    );
    let me = whoami_ok(&ns, &app);
    assert_eq!(me["peer"], "alice", "whoami: {me}");
    assert_eq!(me["role"], "officer", "whoami: {me}");
}

// ---------------------------------------------------------------------------------------------
// Rotate

#[test]
fn rotate_kills_the_old_config_and_the_new_one_works() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("rotate");
    let app = Appliance::start(&ns);
    let old_config = add(&app, &["alice", "--role", "admin"]);
    let address = config_address(&old_config);
    let old_public = config_public_key(&old_config);
    assert_eq!(show_json(&app, "alice")["public_key"], old_public.as_str());
    let old_client = WgClient::up(&ns, &old_config);
    assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");

    let new_config = cli_ok(&app, &["peer", "rotate", "alice"]);
    assert!(
        new_config.contains("[Interface]") && new_config.contains("[Peer]"),
        "peer rotate did not print a wg-quick config:\n{new_config}"
    );
    let new_public = config_public_key(&new_config);
    assert_ne!(new_public, old_public, "rotate kept the key pair");
    assert_ne!(
        config_value(&new_config, "PresharedKey"),
        config_value(&old_config, "PresharedKey"),
        "rotate kept the preshared key"
    );
    assert_eq!(
        config_address(&new_config),
        address,
        "rotate moved the address"
    );
    let shown = show_json(&app, "alice");
    assert_eq!(
        shown["public_key"],
        new_public.as_str(),
        "peer show: {shown}"
    );
    assert_eq!(shown["address"], address.as_str(), "peer show: {shown}");

    // The old session, still up on the client, carries nothing...
    assert_request_fails(
        &ns,
        &app,
        "old config, session kept up, after `peer rotate`",
    );
    drop(old_client);
    // ...and the old key cannot make a new one.
    let old_again = WgClient::up(&ns, &old_config);
    assert_no_handshake(&old_again, &app, "old config after `peer rotate`");
    drop(old_again);

    let _new_client = WgClient::up(&ns, &new_config);
    let me = whoami_ok(&ns, &app);
    assert_eq!(me["peer"], "alice", "whoami with the rotated config: {me}");
    assert_eq!(me["role"], "admin", "whoami with the rotated config: {me}");
    assert_eq!(
        me["address"],
        address.as_str(),
        "whoami with the rotated config: {me}"
    );
}

// ---------------------------------------------------------------------------------------------
// Remove

#[test]
fn remove_cuts_the_peer_and_frees_its_address_for_the_next_add() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("remove");
    let app = Appliance::start(&ns);
    let alice_config = add(&app, &["alice", "--role", "admin"]);
    let alice_addr = config_address(&alice_config);
    let (remote, endpoint) = remote_client_ns(&ns, &app, "remove-b");
    let bob_config = add(&app, &["bob", "--endpoint", &endpoint]);
    let bob_addr = config_address(&bob_config);
    let _bob = WgClient::up(&remote, &bob_config);
    let alice = WgClient::up(&ns, &alice_config);
    assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");
    assert_eq!(whoami_ok(&remote, &app)["peer"], "bob");

    let started = Instant::now();
    cli_ok(&app, &["peer", "remove", "alice"]);
    let remove_took = started.elapsed();
    let fail_took = assert_request_fails(&ns, &app, "right after `peer remove alice`");
    eprintln!(
        "timing: `peer remove` returned after {remove_took:?}; the next request failed after \
         {fail_took:?}"
    );
    assert_eq!(names(&list_json(&app)), ["bob"]);
    let out = app.run(&["peer", "show", "alice"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "peer show of a removed peer: {}",
        describe(&out)
    );
    assert_eq!(
        whoami_ok(&remote, &app)["peer"],
        "bob",
        "removing alice affected bob"
    );
    drop(alice);

    // The lowest free address is alice's again.
    let carol_config = add(&app, &["carol", "--role", "viewer"]);
    assert_eq!(
        config_address(&carol_config),
        alice_addr,
        "carol did not get the lowest free address (alice's; bob has {bob_addr})"
    );
    assert_eq!(show_json(&app, "carol")["address"], alice_addr.as_str());

    // Alice's old key does not come back with her old address.
    let old_alice = WgClient::up(&ns, &alice_config);
    assert_no_handshake(&old_alice, &app, "removed alice's config");
    drop(old_alice);

    let _carol = WgClient::up(&ns, &carol_config);
    let me = whoami_ok(&ns, &app);
    assert_eq!(me["peer"], "carol", "whoami: {me}");
    assert_eq!(me["address"], alice_addr.as_str(), "whoami: {me}");
}

// ---------------------------------------------------------------------------------------------
// QR PNG and --out

#[test]
fn qr_png_decodes_to_the_printed_config_and_out_is_private() {
    if !require_prereqs() || !require_zbarimg() {
        return;
    }
    let ns = Netns::new("qr");
    let app = Appliance::start(&ns);
    let files = unique_temp_dir("qr");

    // stdout and the PNG.
    let png = files.join("alice.png");
    let printed = add(
        &app,
        &[
            "alice",
            "--role",
            "admin",
            "--dns",
            "10.88.88.1",
            "--qr-png",
            png.to_str().unwrap(),
        ],
    );
    assert_eq!(
        decode_qr(&png),
        compact(&printed),
        "the QR PNG does not decode to the config printed on stdout"
    );
    assert!(
        printed.contains("DNS"),
        "--dns is missing from the config:\n{printed}"
    );

    // --out and the PNG: the file is 0600 and the QR decodes to exactly it.
    let conf = files.join("bob.conf");
    let png = files.join("bob.png");
    let out = app.run(&[
        "peer",
        "add",
        "bob",
        "--out",
        conf.to_str().unwrap(),
        "--qr-png",
        png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "peer add bob --out: {}",
        describe(&out)
    );
    assert_eq!(file_mode(&conf), 0o600, "--out file mode");
    let written = std::fs::read_to_string(&conf).expect("read --out file");
    assert!(
        written.contains("[Interface]") && written.contains("[Peer]"),
        "--out wrote no config:\n{written}"
    );
    let stdout = stdout_of(&out);
    assert!(
        stdout.is_empty() || stdout == written,
        "with --out, stdout must be empty or the same config; stdout:\n{stdout}\nfile:\n{written}"
    );
    assert_eq!(
        decode_qr(&png),
        compact(&written),
        "the QR PNG does not decode to the --out file"
    );

    // The written config is the real thing.
    let _bob = WgClient::up(&ns, &written);
    assert_eq!(whoami_ok(&ns, &app)["peer"], "bob");
    let _ = std::fs::remove_dir_all(&files);
}

#[test]
fn out_over_an_existing_file_leaves_it_private() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("outmode");
    let app = Appliance::start(&ns);
    let files = unique_temp_dir("outmode");
    // A world-readable file already there (a previous export, `touch`, a umask 022 editor):
    // the private key must not land in it readable by others.
    let conf = files.join("alice.conf");
    std::fs::write(&conf, "old\n").expect("write");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let out = app.run(&["peer", "add", "alice", "--out", conf.to_str().unwrap()]);
    if out.status.success() {
        let written = std::fs::read_to_string(&conf).expect("read --out file");
        assert!(
            written.contains("PrivateKey"),
            "--out wrote no config:\n{written}"
        );
        assert_eq!(
            file_mode(&conf),
            0o600,
            "`peer add --out` over an existing mode 0644 file left the private key readable by \
             others"
        );
    } else {
        // Refusing to overwrite is fine too, if nothing changed.
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(
            names(&list_json(&app)).is_empty(),
            "a refused add added a peer"
        );
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "old\n");
    }
    let _ = std::fs::remove_dir_all(&files);
}

// ---------------------------------------------------------------------------------------------
// --public-key

#[test]
fn device_generated_key_registers_and_connects() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("pubkey");
    let app = Appliance::start(&ns);
    let (private, public) = wg_keypair();

    let out = app.run(&[
        "peer",
        "add",
        "phone",
        "--role",
        "officer",
        "--public-key",
        &public,
    ]);
    assert!(
        out.status.success(),
        "peer add --public-key: {}",
        describe(&out)
    );
    let printed = stdout_of(&out);
    assert!(
        !printed.contains(&private),
        "the printed config contains the device's private key"
    );
    let placeholder = config_value(&printed, "PrivateKey")
        .unwrap_or_else(|| panic!("no PrivateKey line to fill in:\n{printed}"));
    assert!(
        !wg_tool_output(&["pubkey"], &placeholder).status.success(),
        "the placeholder PrivateKey {placeholder:?} is a usable key"
    );
    assert!(
        printed.contains('#') && printed.to_lowercase().contains("private key"),
        "the config does not say what to fill in:\n{printed}"
    );
    let shown = show_json(&app, "phone");
    assert_eq!(shown["public_key"], public.as_str(), "peer show: {shown}");
    assert_eq!(shown["role"], "officer", "peer show: {shown}");

    // The device puts its own key in; the rest is the printed config, byte for byte.
    let filled = printed.replacen(&placeholder, &private, 1);
    let _phone = WgClient::up(&ns, &filled);
    let me = whoami_ok(&ns, &app);
    assert_eq!(me["peer"], "phone", "whoami: {me}");
    assert_eq!(me["role"], "officer", "whoami: {me}");
    assert_eq!(
        me["address"],
        config_address(&printed).as_str(),
        "whoami: {me}"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input

/// Runs every kind of bad input against `app` (serving or not; it holds exactly one peer,
/// alice): each exits 2 with "error: ..." on stderr, prints no config, writes no file and leaves
/// `peer list --json` as it was.
fn assert_bad_input_changes_nothing(app: &Appliance, alice_config: &str, mode: &str) {
    let files = unique_temp_dir("badinput");
    let before = list_json(app);
    assert_eq!(names(&before), ["alice"], "{mode}: setup");
    let alice_public = before[0]["public_key"].as_str().unwrap().to_string();
    let server_public = config_value(alice_config, "PublicKey").expect("server PublicKey");
    let long_name = "a".repeat(33);
    let missing_dir_conf = files.join("no-such-dir").join("carol.conf");
    let missing_dir_png = files.join("no-such-dir").join("carol.png");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "name with a space and capitals",
            vec!["peer", "add", "Bad Name"],
        ),
        ("name too long", vec!["peer", "add", &long_name]),
        ("empty name", vec!["peer", "add", ""]),
        ("duplicate name", vec!["peer", "add", "alice"]),
        (
            "key not base64",
            vec!["peer", "add", "carol", "--public-key", "not-a-key!"],
        ),
        (
            "key of 31 bytes",
            vec![
                "peer",
                "add",
                "carol",
                "--public-key",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
            ],
        ),
        (
            "another peer's key",
            vec!["peer", "add", "carol", "--public-key", &alice_public],
        ),
        (
            "the server's key",
            vec!["peer", "add", "carol", "--public-key", &server_public],
        ),
        (
            "prefix /33",
            vec!["peer", "add", "carol", "--allowed-ips", "10.0.0.0/33"],
        ),
        (
            "not a CIDR",
            vec!["peer", "add", "carol", "--allowed-ips", "not-a-cidr"],
        ),
        (
            "one bad CIDR in a list",
            vec![
                "peer",
                "add",
                "carol",
                "--allowed-ips",
                "10.88.88.0/24,300.1.1.0/24",
            ],
        ),
        (
            "unknown role",
            vec!["peer", "add", "carol", "--role", "boss"],
        ),
        (
            "--out in a missing directory",
            vec![
                "peer",
                "add",
                "carol",
                "--out",
                missing_dir_conf.to_str().unwrap(),
            ],
        ),
        (
            "--qr-png in a missing directory",
            vec![
                "peer",
                "add",
                "carol",
                "--qr-png",
                missing_dir_png.to_str().unwrap(),
            ],
        ),
        ("rotate unknown peer", vec!["peer", "rotate", "nobody"]),
        ("disable unknown peer", vec!["peer", "disable", "nobody"]),
        ("enable unknown peer", vec!["peer", "enable", "nobody"]),
        ("remove unknown peer", vec!["peer", "remove", "nobody"]),
        ("show unknown peer", vec!["peer", "show", "nobody"]),
        (
            "disable with an invalid name",
            vec!["peer", "disable", "Bad Name"],
        ),
        (
            "rotate with a bad CIDR",
            vec!["peer", "rotate", "alice", "--allowed-ips", "10.0.0.0/33"],
        ),
        (
            "rotate with a bad key",
            vec!["peer", "rotate", "alice", "--public-key", "nope"],
        ),
    ];
    for (what, args) in &cases {
        let out = app.run(args);
        let stderr = stderr_of(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{mode}, {what}: `appliance {args:?}` must exit 2: {}",
            describe(&out)
        );
        assert!(
            stderr.starts_with("error:") && stderr.trim().len() > "error:".len() + 10,
            "{mode}, {what}: stderr must be `error: <sentence>`: {}",
            describe(&out)
        );
        assert!(
            !stdout_of(&out).contains("PrivateKey"),
            "{mode}, {what}: a config was printed anyway: {}",
            describe(&out)
        );
        assert_eq!(
            list_json(app),
            before,
            "{mode}, {what}: `appliance {args:?}` changed the peer list"
        );
    }
    assert!(!missing_dir_conf.exists() && !missing_dir_png.exists());
    let _ = std::fs::remove_dir_all(&files);
}

#[test]
fn bad_input_exits_2_and_changes_nothing_while_serving() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("badlive");
    let mut app = Appliance::start(&ns);
    let config = add(&app, &["alice", "--role", "admin"]);
    assert_bad_input_changes_nothing(&app, &config, "serving");
    assert!(app.is_running(), "serve died during the bad input");
    // The live peer table is unchanged too: alice still connects with her config.
    let _alice = WgClient::up(&ns, &config);
    assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");
}

#[test]
fn bad_input_exits_2_and_changes_nothing_offline() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("badoff");
    let mut app = Appliance::init(&ns, &[]);
    let config = add(&app, &["alice", "--role", "admin"]);
    assert_bad_input_changes_nothing(&app, &config, "offline");
    // What serve loads is unchanged: alice connects with her config.
    app.serve();
    let _alice = WgClient::up(&ns, &config);
    assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");
    assert_eq!(names(&list_json(&app)), ["alice"]);
}

/// An `--out` / `--qr-png` that cannot be written (here: a directory) must not leave a peer
/// behind whose private key nobody ever saw.
#[test]
fn unwritable_out_adds_no_peer() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("outdir");
    let app = Appliance::init(&ns, &[]);
    let files = unique_temp_dir("outdir");
    for flag in ["--out", "--qr-png"] {
        let out = app.run(&["peer", "add", "carol", flag, files.to_str().unwrap()]);
        assert!(
            !out.status.success() && stderr_of(&out).starts_with("error:"),
            "peer add {flag} DIRECTORY must fail with `error: ...`: {}",
            describe(&out)
        );
        let listed = names(&list_json(&app));
        assert!(
            listed.is_empty(),
            "`peer add carol {flag} {}` failed (exit {:?}: {}) but added the peer anyway: {listed:?}",
            files.display(),
            out.status.code(),
            stderr_of(&out).trim()
        );
    }
    let _ = std::fs::remove_dir_all(&files);
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// The stats fields of a peer view.
fn stats_of(view: &Value) -> (Value, Value, Value, Value) {
    (
        view["last_handshake"].clone(),
        view["rx_bytes"].clone(),
        view["tx_bytes"].clone(),
        view["endpoint"].clone(),
    )
}

fn assert_has_stats(view: &Value, not_before: u64, what: &str) {
    let now = unix_now();
    let hs = view["last_handshake"].as_u64();
    assert!(
        hs.is_some_and(|t| (not_before..=now).contains(&t)),
        "{what}: last_handshake should be between {not_before} and {now}: {view}"
    );
    assert!(
        view["rx_bytes"].as_u64().is_some_and(|n| n > 0),
        "{what}: rx_bytes should be > 0: {view}"
    );
    assert!(
        view["tx_bytes"].as_u64().is_some_and(|n| n > 0),
        "{what}: tx_bytes should be > 0: {view}"
    );
    assert!(
        view["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("127.0.0.1:")),
        "{what}: endpoint should be the client's 127.0.0.1:PORT: {view}"
    );
}

#[test]
fn stats_survive_a_restart() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("stats");
    let mut app = Appliance::start(&ns);
    let started = unix_now();
    let config = add(&app, &["alice", "--role", "admin"]);
    {
        let _alice = WgClient::up(&ns, &config);
        assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");
        assert_has_stats(&show_json(&app, "alice"), started, "serving");
    } // wg-quick down: from here on nothing can change alice's numbers

    let status = app.stop().expect("was serving");
    assert!(status.success(), "serve exited {status} on SIGTERM");
    let offline = show_json(&app, "alice");
    assert_has_stats(&offline, started, "offline after SIGTERM");
    let listed = list_json(&app);
    assert_eq!(
        listed[0], offline,
        "peer list and peer show disagree offline"
    );

    app.serve();
    let again = show_json(&app, "alice");
    assert_eq!(
        stats_of(&again),
        stats_of(&offline),
        "serving again shows other statistics than were persisted:\nbefore: {offline}\nafter: \
         {again}"
    );

    // A second shutdown with no traffic keeps them too.
    let status = app.stop().expect("was serving");
    assert!(status.success(), "serve exited {status} on SIGTERM");
    assert_eq!(
        stats_of(&show_json(&app, "alice")),
        stats_of(&offline),
        "a restart without traffic lost the persisted statistics"
    );
}

#[test]
fn peer_list_shows_live_endpoint_and_handshake() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("listlive");
    let app = Appliance::start(&ns);
    let started = unix_now();
    let config = add(&app, &["alice", "--role", "admin"]);
    add(&app, &["bob"]);
    let _alice = WgClient::up(&ns, &config);
    assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");

    // Long before the 30 s persistence tick: these are the live numbers.
    let view = show_json(&app, "alice");
    assert_has_stats(&view, started, "peer show --json while serving");
    let endpoint = view["endpoint"].as_str().unwrap().to_string();
    let listed = list_json(&app);
    let alice_listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "alice")
        .unwrap_or_else(|| panic!("alice missing from peer list --json: {listed}"));
    assert_has_stats(alice_listed, started, "peer list --json while serving");

    let table = cli_ok(&app, &["peer", "list"]);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in peer list:\n{table}"))
            .to_string()
    };
    // Columns start where their headers do: HANDSHAKE (relative, "12s ago"), then ENDPOINT.
    let header = table.lines().next().unwrap();
    let at = |h: &str| {
        header
            .find(h)
            .unwrap_or_else(|| panic!("no {h} in {header}"))
    };
    let (handshake, endpoint_col) = (at("HANDSHAKE"), at("ENDPOINT"));
    let cell = |row: &str, from: usize, to: usize| {
        row.get(from..to.min(row.len()))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let alice_row = row("alice");
    assert_eq!(
        cell(&alice_row, endpoint_col, usize::MAX),
        endpoint,
        "peer list does not show alice's live endpoint {endpoint}:\n{table}"
    );
    let ago = cell(&alice_row, handshake, endpoint_col);
    assert!(
        ago == "just now" || (ago.ends_with("s ago") && ago.len() <= 7),
        "peer list does not show alice's handshake as recent ({ago:?}):\n{table}"
    );
    assert!(alice_row.contains(&config_address(&config)), "{table}");
    let bob_row = row("bob");
    assert_eq!(
        cell(&bob_row, handshake, endpoint_col),
        "never",
        "bob never connected, peer list should say `never`:\n{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");

    let shown = cli_ok(&app, &["peer", "show", "alice"]);
    assert!(
        shown.contains(&endpoint),
        "peer show does not show alice's live endpoint {endpoint}:\n{shown}"
    );
}

// ---------------------------------------------------------------------------------------------
// Live add latency

/// "A new peer can handshake within a second": measured from `peer add` returning to the
/// completed handshake. The client interface already exists (a placeholder config that sends
/// nothing), and the printed config is loaded into it with `wg setconf` after `wg-quick strip`,
/// so wireguard-go's start-up time is not part of the measurement; wireguard-go initiates at once
/// because PersistentKeepalive is set.
#[test]
fn peer_added_while_serving_handshakes_within_a_second() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("addfast");
    let app = Appliance::start(&ns);
    // Warm up the control path and the client tooling, so the measurement sees the steady state.
    add(&app, &["warmup"]);
    let (placeholder_private, _) = wg_keypair();
    let (_, nobody_public) = wg_keypair();
    let placeholder = format!(
        "[Interface]\nPrivateKey = {placeholder_private}\nAddress = 10.88.88.254/32\n\n\
         [Peer]\nPublicKey = {nobody_public}\nAllowedIPs = 10.88.88.0/24\n"
    );
    let client = WgClient::up(&ns, &placeholder);
    let files = unique_temp_dir("addfast");
    let conf = files.join("wgstrip.conf");
    let setconf = files.join("setconf");

    let add_started = Instant::now();
    let config = add(&app, &["alice", "--role", "admin"]);
    let added = Instant::now();
    std::fs::write(&conf, &config).expect("write config");
    let strip = run_ok(bounded(CMD_TIMEOUT_S, "wg-quick").arg("strip").arg(&conf));
    std::fs::write(&setconf, &strip.stdout).expect("write stripped config");
    let out = ns.exec(&["wg", "setconf", client.iface(), setconf.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "wg setconf with the stripped printed config: {}\n--- stripped ---\n{}",
        describe(&out),
        String::from_utf8_lossy(&strip.stdout)
    );
    let configured = Instant::now();
    let handshook = wait_until(Duration::from_secs(6), || {
        client.latest_handshake().is_some()
    });
    let latency = added.elapsed();
    eprintln!(
        "timing: `peer add` took {:?}; client configured {:?} after it returned; handshake seen \
         {latency:?} after it returned",
        added - add_started,
        configured - added
    );
    assert!(
        handshook,
        "no handshake within 6 s of `peer add` returning\n--- serve log ---\n{}",
        app.log_tail(60)
    );
    assert!(
        latency <= LIVE_ADD_BUDGET,
        "the new peer's handshake completed {latency:?} after `peer add` returned; the issue \
         promises {LIVE_ADD_BUDGET:?}\n--- serve log ---\n{}",
        app.log_tail(60)
    );

    // And it carries traffic, with the printed address.
    let address = config_address(&config);
    ns.ip(&["addr", "flush", "dev", client.iface()]);
    ns.ip(&[
        "addr",
        "add",
        &format!("{address}/32"),
        "dev",
        client.iface(),
    ]);
    ns.ip(&["route", "replace", "10.88.88.0/24", "dev", client.iface()]);
    let me = whoami_ok(&ns, &app);
    assert_eq!(me["peer"], "alice", "whoami: {me}");
    let _ = std::fs::remove_dir_all(&files);
}

/// Open TCP connections of a peer that loses access (disable, rotate, remove) are aborted
/// inside the appliance at once: `open_connections` in health, seen by another peer, drops,
/// and the serve log names the aborted connection.
#[test]
fn losing_access_tears_down_open_connections() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("teardown");
    let app = Appliance::start(&ns);
    let mut alice_config = add(&app, &["alice", "--role", "admin"]);
    let (remote, endpoint) = remote_client_ns(&ns, &app, "teardown-b");
    let bob_config = add(&app, &["bob", "--endpoint", &endpoint]);
    let _bob = WgClient::up(&remote, &bob_config);
    assert_eq!(whoami_ok(&remote, &app)["peer"], "bob");

    // Bob's own health request holds one connection while it is answered.
    let open = || -> u64 {
        let r = curl_full(&remote, &api_url("/api/v1/health"), &[]);
        assert_eq!(r.status, 200, "bob's health: {r:?}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["tunnel"]["open_connections"]
            .as_u64()
            .expect("open_connections in health")
    };
    for action in ["disable", "rotate", "remove"] {
        // A fresh client with alice's current config, and three idle connections from it.
        let alice = WgClient::up(&ns, &alice_config);
        assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");
        let idle = IdleConnections::open(&ns, 3, 25);
        assert!(
            wait_until(Duration::from_secs(10), || open() >= 4),
            "alice's three idle connections never showed up before `{action}`"
        );
        let aborts_before = app
            .log()
            .matches("connection aborted: its peer lost access")
            .count();
        let out = cli_ok(&app, &["peer", action, "alice"]);
        assert!(
            wait_until(Duration::from_secs(2), || open() == 1),
            "`peer {action} alice` left her connections open: open_connections = {}\n{}",
            open(),
            app.log_tail(40)
        );
        let aborts = app
            .log()
            .matches("connection aborted: its peer lost access")
            .count();
        assert!(
            aborts >= aborts_before + 3,
            "`peer {action}` aborted {} connections, expected 3",
            aborts - aborts_before
        );
        drop(idle);
        drop(alice);
        match action {
            "disable" => {
                cli_ok(&app, &["peer", "enable", "alice"]);
            }
            "rotate" => alice_config = out,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoint

/// `appliance endpoint` (control socket) and `PUT /api/v1/endpoint` change the endpoint live:
/// the next `peer add` and `POST /api/v1/peers` carry it, a config carrying it works through
/// wireguard-go, and the tunnel that was up stays up. The default listen (`[::]`, dual-stack)
/// serves these IPv4 clients.
#[test]
fn endpoint_changes_live_new_configs_carry_it_and_tunnels_stay_up() {
    if !require_prereqs() {
        return;
    }
    let ns = Netns::new("endpoint");
    let app = Appliance::start(&ns);
    let alice_config = add(&app, &["alice", "--role", "admin"]);
    assert_eq!(
        config_value(&alice_config, "Endpoint").as_deref(),
        Some(app.endpoint().as_str())
    );
    let alice = WgClient::up(&ns, &alice_config);
    assert_eq!(whoami_ok(&ns, &app)["peer"], "alice");
    let handshake = alice.latest_handshake();

    // Live, through the control socket: the address of a second namespace.
    let (remote, endpoint) = remote_client_ns(&ns, &app, "endpoint-b");
    let out = cli_ok(&app, &["endpoint", &endpoint]);
    assert!(
        out.contains(&format!("clients dial {endpoint} (was {})", app.endpoint())),
        "{out}"
    );
    assert_eq!(
        whoami_ok(&ns, &app)["peer"],
        "alice",
        "the tunnel stayed up"
    );
    assert_eq!(
        alice.latest_handshake(),
        handshake,
        "no new handshake needed"
    );

    // The next config carries it (no --endpoint override) and works from there.
    let bob_config = add(&app, &["bob"]);
    assert_eq!(
        config_value(&bob_config, "Endpoint").as_deref(),
        Some(endpoint.as_str())
    );
    let _bob = WgClient::up(&remote, &bob_config);
    assert_eq!(whoami_ok(&remote, &app)["peer"], "bob");

    // The API: anyone who reads sees it; only an admin changes it; bad input names the field.
    let (status, v) = call(&remote, "GET", "/api/v1/endpoint", None, &[]);
    assert_eq!(
        (status, v["endpoint"].as_str()),
        (200, Some(endpoint.as_str()))
    );
    let put = |ns: &Netns, body: Value| call(ns, "PUT", "/api/v1/endpoint", Some(&body), &[]);
    let (status, v) = put(&remote, serde_json::json!({"endpoint": "vpn.example.org"}));
    assert_eq!(status, 403, "a viewer cannot change it: {v}");
    for (body, field) in [
        (serde_json::json!({"endpoint": "bad host"}), "endpoint"),
        (serde_json::json!({"endpoint": 5}), "endpoint"),
        (serde_json::json!({}), "endpoint"),
        (
            serde_json::json!({"endpoint": "vpn.example.org", "x": 1}),
            "x",
        ),
    ] {
        let (status, v) = put(&ns, body.clone());
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    let (status, v) = call(&ns, "GET", "/api/v1/endpoint", None, &[]);
    assert_eq!(
        (status, v["endpoint"].as_str()),
        (200, Some(endpoint.as_str())),
        "unchanged"
    );
    let (status, v) = put(&ns, serde_json::json!({"endpoint": "vpn.example.org"}));
    let new = format!("vpn.example.org:{}", app.port());
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        serde_json::json!({"endpoint": new, "previous": endpoint, "warning": null, "reason": null})
    );
    let (status, v) = call(
        &ns,
        "POST",
        "/api/v1/peers",
        Some(&serde_json::json!({"name": "carol", "role": "viewer"})),
        &[],
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        config_value(v["config"].as_str().unwrap(), "Endpoint").as_deref(),
        Some(new.as_str())
    );
    assert_eq!(
        config_value(&add(&app, &["dave"]), "Endpoint").as_deref(),
        Some(new.as_str())
    );
    assert_eq!(whoami_ok(&ns, &app)["peer"], "alice", "still up");
    assert_eq!(whoami_ok(&remote, &app)["peer"], "bob", "still up");

    // Both changes are audited, with who made them.
    let audit: Value =
        serde_json::from_str(&cli_ok(&app, &["audit", "--json"])).expect("audit JSON");
    let changes: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "server.endpoint")
        .map(|e| {
            (
                e["actor"]["peer"].as_str().unwrap().to_string(),
                e["summary"]["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("alice".to_string(), new.clone()),
            ("local".to_string(), endpoint)
        ]
    );
    // And `status` while serving reports the live state.
    let st: Value = serde_json::from_str(&cli_ok(&app, &["status", "--json"])).unwrap();
    assert_eq!(st["serving"], true);
    assert_eq!(st["server"]["endpoint"], new);
    assert_eq!(st["server"]["listen"], format!("[::]:{}", app.port()));
    let online: Vec<&str> = st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["online"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(online, ["alice", "bob"]);
    assert!(
        app.log().contains("peer online"),
        "a first handshake is logged at INFO:\n{}",
        app.log_tail(40)
    );
}
