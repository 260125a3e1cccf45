//! Fuzz entry points: one function per parser of untrusted bytes.
//!
//! Layer: test support, outside the product's layers (hidden from the docs). Each function takes
//! arbitrary bytes, feeds them to the real parser the running appliance uses, and panics only
//! when a documented contract breaks (a round trip that does not round-trip, a fire time that
//! goes backwards). The cargo-fuzz targets in `fuzz/` call these and nothing else, and
//! `tests/fuzz_corpus.rs` replays `fuzz/corpus/<target>/` through the same functions under the
//! stable toolchain, so what is fuzzed and what CI replays cannot drift apart. [`TARGETS`]
//! names them all. No I/O, no clocks: every input gives the same result.

use std::net::{Ipv4Addr, SocketAddr};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey as XPublic, StaticSecret};
use jiff::Timestamp;
use peers::{ClientConfig, Ipv4Net, PresharedKey, PrivateKey};
use rand_core::RngCore;
use serde_json::Value;

use crate::control::{self, Request};
use crate::sched::apscheduler;
use crate::sched::{CronExpr, JobDraft, JobSpec, Trigger, Zone};
use crate::tunnel::{PeerConfig, Router, MAX_DATAGRAM};

/// A fuzz target: its name (the directory under `fuzz/corpus/` and the cargo-fuzz binary) and
/// its entry function.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    ("router_datagram", router_datagram),
    ("http_gate", http_gate),
    ("job_spec", job_spec),
    ("wg_config", wg_config),
    ("cron_tz", cron_tz),
    ("control_request", control_request),
    ("schedulezero_trigger", schedulezero_trigger),
];

/// The tunnel address the gate checks against.
const TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 1);
/// The one peer's tunnel address.
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 2);
/// "Now" for every parser that takes one: 2026-06-01T00:00:00Z.
const NOW_SECONDS: i64 = 1_780_272_000;

/// A router with a fixed server key and one peer (fixed key and PSK, 10.88.88.2/32), and the
/// boringtun client of that peer with a live session to it.
pub struct RouterWorld {
    pub router: Router,
    pub client: Tunn,
    pub from: SocketAddr,
    /// The router's (fixed) time: handshake work runs in `handle_timeout`.
    now: std::time::Instant,
    buf: Vec<u8>,
}

impl RouterWorld {
    /// Builds the world and completes one handshake, so data messages reach a real session.
    #[allow(clippy::disallowed_methods)] // any fixed instant will do; the router only compares
    pub fn new() -> RouterWorld {
        // Fixed keys and indices: every input meets the same router (x25519 clamps on use).
        let server = PrivateKey::from_bytes([13; 32]);
        let client_key = PrivateKey::from_bytes([14; 32]);
        let psk = PresharedKey::from_bytes([15; 32]);
        let mut router = Router::new(&server, Box::new(FixedIndices(14)));
        router
            .upsert_peer(PeerConfig {
                public_key: client_key.public_key(),
                preshared_key: Some(psk.clone()),
                allowed_ips: vec![Ipv4Net::host(PEER_IP)],
                keepalive: None,
            })
            .expect("the only peer overlaps nobody");
        let client = Tunn::new(
            StaticSecret::from(*client_key.as_bytes()),
            XPublic::from(*server.public_key().as_bytes()),
            Some(*psk.as_bytes()),
            None,
            1,
            None,
        );
        let mut world = RouterWorld {
            router,
            client,
            from: SocketAddr::from(([127, 0, 0, 1], 51000)),
            now: std::time::Instant::now(),
            buf: vec![0u8; MAX_DATAGRAM],
        };
        let init = match world
            .client
            .format_handshake_initiation(&mut world.buf, false)
        {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("the client made no initiation: {other:?}"),
        };
        world.router.handle_datagram(world.from, &init);
        world.deliver_to_client();
        world
    }

    /// Hands everything the router wants to send to the client, and what the client answers
    /// back to the router, until both are quiet. Returns the router's datagrams.
    pub fn deliver_to_client(&mut self) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        // Bounded: each round trip is one message; a handshake needs two.
        for _ in 0..8 {
            self.router.handle_timeout(self.now);
            let Some(t) = self.router.poll_transmit() else {
                break;
            };
            sent.push(t.payload.clone());
            let mut replies = Vec::new();
            let mut r = self.client.decapsulate(None, &t.payload, &mut self.buf);
            while let TunnResult::WriteToNetwork(p) = r {
                replies.push(p.to_vec());
                r = self.client.decapsulate(None, &[], &mut self.buf);
            }
            for reply in replies {
                self.router.handle_datagram(self.from, &reply);
            }
        }
        while self.router.poll_inbound().is_some() {}
        sent
    }

    /// The client encrypts `packet` (any bytes) into a data message, if its session is up.
    pub fn seal(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        match self.client.encapsulate(packet, &mut self.buf) {
            TunnResult::WriteToNetwork(p) => Some(p.to_vec()),
            _ => None,
        }
    }
}

/// The router's peer indices in a fuzz run: a fixed SplitMix64 sequence, so every input meets
/// the same indices. Never used for key material.
struct FixedIndices(u64);

impl RngCore for FixedIndices {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl Default for RouterWorld {
    fn default() -> Self {
        RouterWorld::new()
    }
}

/// `router_datagram`: UDP datagrams from the internet into [`Router::handle_datagram`].
///
/// The first byte chooses what the rest is, so one target reaches every layer:
/// - `0 mod 3`: a raw datagram from the peer's endpoint (parsing, mac1, index routing, AEAD);
/// - `1 mod 3`: an IP packet the peer's client encrypts in its live session, so the router's
///   decrypted-packet path and allowed-IP check see arbitrary plaintext;
/// - `2 mod 3`: an IP packet from the netstack into [`Router::handle_ip_packet`].
pub fn router_datagram(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut world = RouterWorld::new();
    match mode % 3 {
        0 => world.router.handle_datagram(world.from, rest),
        1 => {
            if let Some(sealed) = world.seal(rest) {
                world.router.handle_datagram(world.from, &sealed);
            }
        }
        _ => world.router.handle_ip_packet(rest),
    }
    world.deliver_to_client();
    while world.router.poll_inbound().is_some() {}
}

/// `http_gate`: a request head as it arrives on port 8888, through the same parser hyper uses
/// (`httparse`), then the gate's Host/target and Origin checks, the request target's parsing, query
/// decoding and path splitting.
pub fn http_gate(data: &[u8]) {
    let extra = ["appliance.lan".to_string()];
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(data).is_err() {
        return;
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return;
    };
    let mut builder = hyper::Request::builder().method(method).uri(target);
    for h in req.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    if let Ok(request) = builder.body(()) {
        let state_changing = !matches!(
            *request.method(),
            hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
        );
        let target_ok = crate::api::check_target(TUNNEL, &extra, &request);
        let origin_ok = crate::api::check_origin(TUNNEL, &extra, request.headers(), state_changing);
        for e in [target_ok.err(), origin_ok.err()].into_iter().flatten() {
            assert!(
                e.status.is_client_error(),
                "the gate refused with {}",
                e.status
            );
        }
    }
    if let Ok(uri) = target.parse::<hyper::Uri>() {
        let query = crate::api::parse_query(uri.query());
        for (k, v) in &query {
            // Decoding never invents bytes: each decoded pair is at most as long as its source.
            assert!(k.len() + v.len() <= 3 * uri.query().map_or(0, str::len));
        }
        let segs = crate::api::path_segments(uri.path());
        assert!(segs.iter().all(|s| !s.contains('/')));
    }
}

/// `job_spec`: a job's JSON as the API receives it (a `Value`), through the one decoder
/// ([`JobDraft::from_value`], then [`JobDraft::finish`] at a fixed "now"); a second JSON value
/// in the same input is applied as a PATCH with [`JobSpec::patched`]. Checks that the same JSON
/// as text ([`JobDraft::from_slice`]) decodes to the same spec or the same refusal, the
/// documented round trip through the stored text (`Deserialize for JobSpec` of
/// [`JobSpec::to_json`] gives the spec back), and that a parsed trigger's next fires are
/// strictly increasing.
pub fn job_spec(data: &[u8]) {
    let now = Timestamp::from_second(NOW_SECONDS).expect("a valid instant");
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let Some(Ok(first)) = values.next() else {
        return;
    };
    let patch = values.next().and_then(Result::ok);
    let decoded = JobDraft::from_value(&first).and_then(|d| d.finish(Some(now)));
    let text = serde_json::to_vec(&first).expect("a value serialises");
    let from_text = JobDraft::from_slice(&text).and_then(|d| d.finish(Some(now)));
    assert_eq!(
        decoded, from_text,
        "a value and its text decode differently: {first}"
    );
    let base = match decoded {
        Ok(spec) => spec,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    check_spec(&base, now);
    if let Some(patch) = patch {
        if let Ok(spec) = base.patched(&patch, Some(now)) {
            check_spec(&spec, now);
        }
    }
}

fn check_spec(spec: &JobSpec, now: Timestamp) {
    let json = spec.to_json();
    let stored = serde_json::to_vec(&json).expect("a spec serialises");
    let again: JobSpec = serde_json::from_slice(&stored)
        .unwrap_or_else(|e| panic!("to_json wrote a spec the decoder refuses: {e}: {json}"));
    assert_eq!(&again, spec, "the spec did not round-trip through {json}");
    let _ = spec.redacted_json();
    fires_increase(&spec.trigger, now);
}

/// The next few fires of `trigger` after `after`, each strictly later than the one before.
fn fires_increase(trigger: &Trigger, mut after: Timestamp) {
    for _ in 0..4 {
        let Some(next) = trigger.next_after(after) else {
            return;
        };
        assert!(
            next > after,
            "{trigger:?}: next fire {next} is not after {after}"
        );
        after = next;
    }
}

/// `wg_config`: a wg-quick config (a user's pasted file) into [`ClientConfig::parse`]; what
/// parses must render to a text that parses to the same config.
pub fn wg_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = ClientConfig::parse(text) else {
        return;
    };
    let rendered = config.render();
    let again = ClientConfig::parse(&rendered)
        .unwrap_or_else(|e| panic!("render wrote a config parse refuses: {e}\n{rendered}"));
    assert_eq!(
        again, config,
        "the config did not round-trip through\n{rendered}"
    );
}

/// `cron_tz`: lines `CRON`, `ZONE` and optionally `SECONDS` (the Unix time to search after,
/// clamped to years 1970..2200) into [`CronExpr::parse`], [`Zone::get`] and a bounded number of
/// [`Trigger::next_after`] calls, which must move strictly forward.
pub fn cron_tz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let cron = lines.next().unwrap_or("");
    let zone = lines.next();
    let after = lines
        .next()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(NOW_SECONDS)
        .clamp(0, 7_258_118_400);
    let zone = match zone {
        Some(name) => match Zone::get(name) {
            Ok(z) => z,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        },
        None => Zone::utc(),
    };
    let expr = match CronExpr::parse(cron) {
        Ok(expr) => expr,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(
        CronExpr::parse(expr.as_str()).as_ref(),
        Ok(&expr),
        "the normalised expression does not parse to itself"
    );
    let trigger = Trigger::Cron {
        expr,
        zone,
        start: None,
        end: None,
    };
    fires_increase(
        &trigger,
        Timestamp::from_second(after).expect("clamped into range"),
    );
}

/// `control_request`: one request line on the control socket into [`control::parse_request`]
/// and then the same checks the server runs before touching any state (names, roles, keys,
/// allowed IPs).
pub fn control_request(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let req = match control::parse_request(line) {
        Ok(req) => req,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // Names, roles, keys and allowed IPs were checked as the request was read (checked
    // types); the endpoint is parsed by the server exactly like this before changing anything.
    if let Request::Endpoint { set: Some(text) } = req {
        let _ = peers::Endpoint::parse(&text, 51820).map_err(|e| e.to_string());
    }
}

/// `schedulezero_trigger`: the `trigger` object of a ScheduleZero `POST /api/schedule` (an
/// APScheduler `date`, `interval` or `cron` form) into [`apscheduler::translate`], then the job
/// spec the route builds from it into the job decoder ([`JobDraft::from_value`], finished at a
/// fixed "now"), as the route does. What `translate` accepts, the decoder may refuse only for
/// lying in the past (a
/// `run_date` or an `end_date` not after its start or now: `trigger.at`, `trigger.end`);
/// any other refusal means `translate` wrote a trigger our parser does not take. An accepted
/// spec round-trips and fires strictly forward like every other spec.
pub fn schedulezero_trigger(data: &[u8]) {
    let Ok(form) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let translated = match apscheduler::translate(&form) {
        Ok(t) => t,
        Err(e) => {
            assert!(
                e.field.starts_with("trigger"),
                "a refusal names {:?}, not a trigger field",
                e.field
            );
            let _ = e.to_string();
            return;
        }
    };
    let mut spec = serde_json::json!({
        "name": "fuzz",
        "trigger": translated.trigger,
        "action": {"handler": {"id": "discord-bot", "method": "send_message", "params": {}}},
    });
    if let Some(j) = translated.jitter {
        spec["jitter"] = Value::String(j);
    }
    let now = Timestamp::from_second(NOW_SECONDS).expect("a valid instant");
    match JobDraft::from_value(&spec).and_then(|d| d.finish(Some(now))) {
        Ok(spec) => check_spec(&spec, now),
        Err(e) => assert!(
            matches!(e.field.as_str(), "trigger.at" | "trigger.end"),
            "translate accepted {form} but the spec it gave is refused: {e}"
        ),
    }
}
