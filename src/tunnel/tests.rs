//! Deterministic router tests: a boringtun client `Tunn` talks to the router through plain
//! byte vectors. No sockets.
#![allow(clippy::disallowed_methods)] // tests pick an arbitrary origin instant

use super::*;
use crate::testing::ipv4_packet;
use boringtun::noise::{Tunn, TunnResult};
use peers::{Ipv4Net, PresharedKey, PrivateKey};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 1);

fn client_addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000 + n as u16))
}

struct Client {
    tunn: Tunn,
    key: PrivateKey,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl Client {
    fn new(rng: &mut ChaCha20Rng, server: &PrivateKey, psk: &PresharedKey, n: u8) -> Client {
        let key = PrivateKey::generate(rng);
        let tunn = Tunn::new(
            StaticSecret::from(*key.as_bytes()),
            XPublic::from(*server.public_key().as_bytes()),
            Some(*psk.as_bytes()),
            None,
            n as u32,
            None,
        );
        Client {
            tunn,
            key,
            addr: client_addr(n),
            buf: vec![0u8; MAX_DATAGRAM],
        }
    }

    fn initiation(&mut self) -> Vec<u8> {
        match self.tunn.format_handshake_initiation(&mut self.buf, true) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("no initiation: {other:?}"),
        }
    }

    /// Feeds a server datagram; returns what the client wants to send back and any IPv4
    /// packet it decrypted.
    fn receive(&mut self, datagram: &[u8]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
        let mut out = Vec::new();
        let mut ip = None;
        match self.tunn.decapsulate(None, datagram, &mut self.buf) {
            TunnResult::WriteToNetwork(p) => {
                out.push(p.to_vec());
                while let TunnResult::WriteToNetwork(p) =
                    self.tunn.decapsulate(None, &[], &mut self.buf)
                {
                    out.push(p.to_vec());
                }
            }
            TunnResult::WriteToTunnelV4(p, _) => ip = Some(p.to_vec()),
            TunnResult::Done => {}
            other => panic!("client could not decapsulate: {other:?}"),
        }
        (out, ip)
    }

    fn encapsulate(&mut self, packet: &[u8]) -> Vec<u8> {
        match self.tunn.encapsulate(packet, &mut self.buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("client could not encapsulate: {other:?}"),
        }
    }
}

struct World {
    rng: ChaCha20Rng,
    server_key: PrivateKey,
    router: Router,
    psk: PresharedKey,
    /// Virtual time: the instant the last `turn` used.
    now: Instant,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let server_key = PrivateKey::generate(&mut rng);
        let router = Router::new(&server_key, Box::new(ChaCha20Rng::seed_from_u64(seed + 1)));
        let psk = PresharedKey::generate(&mut rng);
        World {
            rng,
            server_key,
            router,
            psk,
            now: Instant::now(),
        }
    }

    /// One driver turn, `step` after the last one: the router's queued handshake work and
    /// timers run.
    fn turn(&mut self, step: Duration) {
        self.now += step;
        self.router.handle_timeout(self.now);
    }

    /// `n` initiations with a valid mac1 from keys the router does not know.
    fn stranger_initiations(&mut self, n: u8) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| Client::new(&mut self.rng, &self.server_key, &self.psk, 100 + i).initiation())
            .collect()
    }

    /// An initiation whose mac1 is wrong (one byte of it flipped).
    fn bad_mac1_initiation(&mut self) -> Vec<u8> {
        let mut bad = self.stranger_initiations(1).remove(0);
        bad[120] ^= 0xff;
        bad
    }

    /// Registers a client with the given allowed /32 and returns it.
    fn add_client(&mut self, n: u8, address: Ipv4Addr) -> Client {
        let client = Client::new(&mut self.rng, &self.server_key, &self.psk, n);
        self.router
            .upsert_peer(PeerConfig {
                public_key: client.key.public_key(),
                preshared_key: Some(self.psk.clone()),
                allowed_ips: vec![Ipv4Net::host(address)],
                keepalive: None,
            })
            .unwrap();
        client
    }

    fn drain_transmit(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.router.poll_transmit()).collect()
    }

    /// Runs a full handshake between `client` and the router.
    fn handshake(&mut self, client: &mut Client) {
        let init = client.initiation();
        self.router.handle_datagram(client.addr, &init);
        assert!(
            self.drain_transmit().is_empty(),
            "X25519 work waits for the turn"
        );
        self.turn(Duration::from_millis(1));
        let out = self.drain_transmit();
        assert_eq!(out.len(), 1, "one handshake response");
        assert_eq!(out[0].dst, client.addr);
        let (replies, _) = client.receive(&out[0].payload);
        // The client confirms the session with a keepalive.
        for r in replies {
            self.router.handle_datagram(client.addr, &r);
        }
        assert!(self.drain_transmit().is_empty());
    }
}

#[test]
fn handshake_then_data_reaches_netstack_with_identity() {
    let mut w = World::new(1);
    let addr = Ipv4Addr::new(10, 88, 88, 2);
    let mut c = w.add_client(1, addr);
    w.handshake(&mut c);
    assert_eq!(w.router.stats().handshakes, 1);
    assert_eq!(
        w.router.poll_handshake(),
        Some(super::Handshake {
            peer: c.key.public_key(),
            from: c.addr
        }),
        "a completed handshake is reported once, for the driver's online log"
    );
    assert_eq!(w.router.poll_handshake(), None);
    assert_eq!(
        w.router.peer(&c.key.public_key()).unwrap().endpoint(),
        Some(c.addr)
    );

    let pkt = ipv4_packet(addr, SERVER_IP, b"hello");
    let d = c.encapsulate(&pkt);
    w.router.handle_datagram(c.addr, &d);
    let inb = w.router.poll_inbound().expect("packet delivered");
    assert_eq!(inb.packet, pkt);
    assert_eq!(inb.peer, c.key.public_key());
    assert!(w.router.poll_inbound().is_none());
}

#[test]
fn spoofed_source_is_dropped_and_counted() {
    let mut w = World::new(2);
    let alice_ip = Ipv4Addr::new(10, 88, 88, 2);
    let mallory_ip = Ipv4Addr::new(10, 88, 88, 3);
    let _alice = w.add_client(1, alice_ip);
    let mut mallory = w.add_client(2, mallory_ip);
    w.handshake(&mut mallory);

    // Mallory claims Alice's address: decrypts fine, but must not reach the netstack.
    let d = mallory.encapsulate(&ipv4_packet(alice_ip, SERVER_IP, b"x"));
    w.router.handle_datagram(mallory.addr, &d);
    assert!(w.router.poll_inbound().is_none());
    assert_eq!(w.router.stats().dropped_spoofed, 1);

    // Her own address works.
    let d = mallory.encapsulate(&ipv4_packet(mallory_ip, SERVER_IP, b"x"));
    w.router.handle_datagram(mallory.addr, &d);
    assert_eq!(
        w.router.poll_inbound().unwrap().peer,
        mallory.key.public_key()
    );
}

#[test]
fn unknown_key_gets_no_reply() {
    let mut w = World::new(3);
    let _known = w.add_client(1, Ipv4Addr::new(10, 88, 88, 2));
    // A stranger who knows the server's public key (valid mac1) but is not registered.
    let mut stranger = Client::new(&mut w.rng, &w.server_key, &w.psk, 9);
    let init = stranger.initiation();
    w.router.handle_datagram(stranger.addr, &init);
    w.turn(Duration::from_millis(1));
    assert!(w.drain_transmit().is_empty());
    assert_eq!(w.router.stats().dropped_unknown_peer, 1);

    // A datagram for the wrong server key fails mac1 before any DH.
    let other_server = PrivateKey::generate(&mut w.rng);
    let mut lost = Client::new(&mut w.rng, &other_server, &w.psk, 8);
    let init = lost.initiation();
    w.router.handle_datagram(lost.addr, &init);
    assert_eq!(
        w.router.stats().handshake_queue,
        0,
        "a bad mac1 is dropped before the queue"
    );
    w.turn(Duration::from_millis(1));
    assert!(w.drain_transmit().is_empty());
    assert_eq!(w.router.stats().dropped_bad_mac, 1);

    // Garbage and data for unknown indices: silence.
    w.router.handle_datagram(stranger.addr, b"not wireguard");
    let mut data = vec![4u8, 0, 0, 0];
    data.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    data.extend_from_slice(&[0u8; 40]);
    w.router.handle_datagram(stranger.addr, &data);
    assert!(w.drain_transmit().is_empty());
    assert!(w.router.poll_inbound().is_none());
}

#[test]
fn demux_by_index_routes_each_peer_and_outbound_by_address() {
    let mut w = World::new(4);
    let mut clients: Vec<(Client, Ipv4Addr)> = (0..20u8)
        .map(|i| {
            let ip = Ipv4Addr::new(10, 88, 88, 2 + i);
            (w.add_client(i, ip), ip)
        })
        .collect();
    for (c, _) in clients.iter_mut() {
        w.handshake(c);
    }
    for (c, ip) in clients.iter_mut() {
        let d = c.encapsulate(&ipv4_packet(*ip, SERVER_IP, &[1, 2, 3]));
        w.router.handle_datagram(c.addr, &d);
        assert_eq!(w.router.poll_inbound().unwrap().peer, c.key.public_key());
    }
    // Outbound: a reply to peer 7 goes to its endpoint and only it can decrypt it.
    let (c7, ip7) = &mut clients[7];
    let reply = ipv4_packet(SERVER_IP, *ip7, b"pong");
    w.router.handle_ip_packet(&reply);
    let out = w.drain_transmit();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dst, c7.addr);
    let (_, ip) = c7.receive(&out[0].payload);
    assert_eq!(ip.unwrap(), reply);

    // Unroutable destination is counted, not sent.
    w.router.handle_ip_packet(&ipv4_packet(
        SERVER_IP,
        Ipv4Addr::new(10, 88, 88, 200),
        b"?",
    ));
    assert!(w.drain_transmit().is_empty());
    assert_eq!(w.router.stats().dropped_unroutable_out, 1);
}

#[test]
fn endpoint_moves_only_after_authentication() {
    let mut w = World::new(5);
    let ip = Ipv4Addr::new(10, 88, 88, 2);
    let mut c = w.add_client(1, ip);
    w.handshake(&mut c);
    let key = c.key.public_key();

    // A forged data packet from elsewhere, reusing a real packet's header with a bad tag.
    let mut forged = c.encapsulate(&ipv4_packet(ip, SERVER_IP, b"a"));
    let n = forged.len();
    forged[n - 1] ^= 0xff;
    let attacker = SocketAddr::from(([127, 0, 0, 66], 6666));
    w.router.handle_datagram(attacker, &forged);
    assert_eq!(w.router.peer(&key).unwrap().endpoint(), Some(c.addr));
    assert_eq!(w.router.stats().dropped_invalid, 1);

    // The phone roams: a genuine packet from the new address moves the endpoint.
    let roamed = SocketAddr::from(([127, 0, 0, 2], 5555));
    let d = c.encapsulate(&ipv4_packet(ip, SERVER_IP, b"b"));
    w.router.handle_datagram(roamed, &d);
    assert_eq!(w.router.peer(&key).unwrap().endpoint(), Some(roamed));
}

#[test]
fn removed_peer_is_silent_and_indices_are_not_reused() {
    let mut w = World::new(6);
    let ip = Ipv4Addr::new(10, 88, 88, 2);
    let mut c = w.add_client(1, ip);
    w.handshake(&mut c);
    let first_index = w.router.peer(&c.key.public_key()).unwrap().index();
    assert!(first_index < (1 << 24));
    assert!(w.router.remove_peer(&c.key.public_key()));

    let d = c.encapsulate(&ipv4_packet(ip, SERVER_IP, b"a"));
    w.router.handle_datagram(c.addr, &d);
    assert!(w.router.poll_inbound().is_none());
    let init = c.initiation();
    w.router.handle_datagram(c.addr, &init);
    w.turn(Duration::from_millis(1));
    assert!(w.drain_transmit().is_empty());

    // Re-adding gets a fresh index; thousands of adds never repeat one.
    let mut seen = std::collections::HashSet::new();
    seen.insert(first_index);
    for _ in 0..2000 {
        let i = w
            .router
            .upsert_peer(PeerConfig {
                public_key: c.key.public_key(),
                preshared_key: None,
                allowed_ips: vec![Ipv4Net::host(ip)],
                keepalive: None,
            })
            .unwrap();
        assert!(seen.insert(i), "index {i} reused");
    }
}

#[test]
fn overlapping_allowed_ips_are_refused() {
    let mut w = World::new(7);
    let _a = w.add_client(1, Ipv4Addr::new(10, 88, 88, 2));
    let k = PrivateKey::generate(&mut w.rng).public_key();
    let err = w.router.upsert_peer(PeerConfig {
        public_key: k,
        preshared_key: None,
        allowed_ips: vec!["10.88.88.0/30".parse().unwrap()],
        keepalive: None,
    });
    assert!(err.is_err());
}

const ATTACKER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66)), 6666);

/// Fills the handshake queue past [`UNDER_LOAD_QUEUE`] with valid-mac1 initiations from
/// unknown keys, all from [`ATTACKER`].
fn flood(w: &mut World, inits: &[Vec<u8>], n: usize) {
    for i in 0..n {
        w.router.handle_datagram(ATTACKER, &inits[i % inits.len()]);
    }
}

fn cookie_replies_to(out: &[Transmit], dst: SocketAddr) -> Vec<Vec<u8>> {
    out.iter()
        .filter(|t| t.dst == dst && t.payload[0] == 3)
        .map(|t| t.payload.clone())
        .collect()
}

#[test]
fn a_handshake_flood_never_delays_data_and_its_work_per_turn_is_bounded() {
    let mut w = World::new(8);
    let ip = Ipv4Addr::new(10, 88, 88, 2);
    let mut c = w.add_client(1, ip);
    w.handshake(&mut c);
    let inits = w.stranger_initiations(4);
    for turn in 0..50u8 {
        flood(&mut w, &inits, 200);
        for k in 0..10u8 {
            let d = c.encapsulate(&ipv4_packet(ip, SERVER_IP, &[turn, k]));
            w.router.handle_datagram(c.addr, &d);
        }
        // All of the established peer's data is decrypted at once, before any handshake work.
        let delivered = std::iter::from_fn(|| w.router.poll_inbound()).count();
        assert_eq!(delivered, 10, "turn {turn}");
        let before = w.router.stats().dropped_unknown_peer;
        w.turn(Duration::from_millis(1));
        let s = w.router.stats();
        assert!(
            s.dropped_unknown_peer - before <= u64::from(HANDSHAKES_PER_TURN),
            "turn {turn}: {} initiations worked on",
            s.dropped_unknown_peer - before
        );
        assert!(s.handshake_queue <= HANDSHAKE_QUEUE as u64);
    }
    let s = w.router.stats();
    // 10,000 initiations in 50 ms of virtual time: a few hundred queued, the rest dropped on
    // a table lookup; a source this loud is flooding and gets not even cookie replies.
    assert_eq!(s.cookie_replies, 0);
    assert!(s.dropped_rate_limited > 9_000, "{s:?}");
    assert!(s.dropped_unknown_peer <= 50 * u64::from(HANDSHAKES_PER_TURN));
    // Within the second, the budget caps the work; the next second starts a new one.
    let worked = s.dropped_unknown_peer;
    for _ in 0..100 {
        w.turn(Duration::from_millis(1));
    }
    assert!(w.router.stats().dropped_unknown_peer - worked <= u64::from(HANDSHAKES_PER_SECOND));
}

#[test]
fn under_load_a_flooding_source_is_dropped_before_mac1() {
    let mut w = World::new(14);
    w.turn(Duration::from_millis(1));
    let inits = w.stranger_initiations(4);
    flood(&mut w, &inits, 400);
    let s = w.router.stats();
    assert!(s.handshake_queue >= UNDER_LOAD_QUEUE as u64);
    // Bad-mac1 initiations from the same, flooding, address: not even mac1 is computed.
    let mut bad = inits[0].clone();
    bad[120] ^= 0xff;
    for _ in 0..100 {
        w.router.handle_datagram(ATTACKER, &bad);
    }
    let t = w.router.stats();
    assert_eq!(t.dropped_bad_mac, s.dropped_bad_mac);
    assert_eq!(t.dropped_rate_limited, s.dropped_rate_limited + 100);
    // Another address is not affected: its bad mac1 is checked and counted as such.
    w.router
        .handle_datagram(SocketAddr::from(([127, 0, 0, 9], 9)), &bad);
    assert_eq!(w.router.stats().dropped_bad_mac, s.dropped_bad_mac + 1);
}

#[test]
fn a_bad_mac1_flood_is_dropped_before_mac1_without_load() {
    let mut w = World::new(15);
    w.turn(Duration::from_millis(1));
    let bad = w.bad_mac1_initiation();
    // Bad mac1 never reaches the queue, so the router is not under load; still, past its
    // allowance a source's handshake messages cost a table lookup, not a BLAKE2s.
    for _ in 0..1_000 {
        w.router.handle_datagram(ATTACKER, &bad);
    }
    let s = w.router.stats();
    assert_eq!(s.handshake_queue, 0);
    assert_eq!(s.dropped_bad_mac, u64::from(BAD_MACS_PER_SOURCE));
    assert_eq!(
        s.dropped_rate_limited,
        1_000 - u64::from(BAD_MACS_PER_SOURCE)
    );
    // A registered peer from another address completes its handshake meanwhile.
    let mut c = w.add_client(1, Ipv4Addr::new(10, 88, 88, 2));
    w.handshake(&mut c);
    // The next second the source is checked again.
    w.turn(RATE_LIMIT_RESET);
    w.router.handle_datagram(ATTACKER, &bad);
    assert_eq!(
        w.router.stats().dropped_bad_mac,
        u64::from(BAD_MACS_PER_SOURCE) + 1
    );
}

#[test]
fn without_load_initiations_need_no_cookie() {
    let mut w = World::new(11);
    let mut c = w.add_client(1, Ipv4Addr::new(10, 88, 88, 2));
    // A phone retrying fast, below the load threshold: every initiation is answered.
    for _ in 0..(UNDER_LOAD_QUEUE - 1) {
        w.router.handle_datagram(c.addr, &c.initiation());
    }
    while w.router.stats().handshake_queue > 0 {
        w.turn(Duration::from_millis(1));
    }
    assert_eq!(w.router.stats().cookie_replies, 0);
    assert_eq!(w.router.stats().dropped_rate_limited, 0);
}

#[test]
fn under_load_a_loud_source_gets_a_cookie_and_its_next_initiation_goes_first() {
    let mut w = World::new(12);
    let mut c = w.add_client(1, Ipv4Addr::new(10, 88, 88, 2));
    c.addr = SocketAddr::from(([127, 0, 0, 77], 7777));
    w.turn(Duration::from_millis(1));
    let inits = w.stranger_initiations(4);
    flood(&mut w, &inits, 400);
    let queued = w.router.stats().handshake_queue;
    assert!(queued >= UNDER_LOAD_QUEUE as u64, "{queued}");
    // The phone's first initiations this second are served without a cookie (queued behind
    // the flood); from then on its address must prove itself.
    for _ in 0..QUIET_PER_SOURCE {
        w.router.handle_datagram(c.addr, &c.initiation());
    }
    assert!(w.drain_transmit().iter().all(|t| t.dst != c.addr));
    w.router.handle_datagram(c.addr, &c.initiation());
    let cookies = cookie_replies_to(&w.drain_transmit(), c.addr);
    assert_eq!(cookies.len(), 1, "a cookie reply, and no X25519 work");
    let (replies, _) = c.receive(&cookies[0]);
    assert!(replies.is_empty());
    // With the cookie (mac2), its initiation overtakes the whole queue in the next turn.
    w.router.handle_datagram(c.addr, &c.initiation());
    w.turn(Duration::from_millis(1));
    let out = w.drain_transmit();
    let response = out
        .iter()
        .find(|t| t.dst == c.addr && t.payload[0] == 2)
        .expect("a handshake response in the first turn");
    let (confirm, _) = c.receive(&response.payload);
    for r in confirm {
        w.router.handle_datagram(c.addr, &r);
    }
    assert_eq!(w.router.stats().handshakes, 1);
    assert!(
        w.router.stats().handshake_queue
            >= (UNDER_LOAD_QUEUE - HANDSHAKES_PER_TURN as usize) as u64,
        "the flood still waits: the cookie lane went first"
    );
}

#[test]
fn under_load_a_quiet_source_is_served_without_a_cookie_round_trip() {
    let mut w = World::new(13);
    let mut c = w.add_client(1, Ipv4Addr::new(10, 88, 88, 2));
    c.addr = SocketAddr::from(([127, 0, 0, 77], 7777));
    w.turn(Duration::from_millis(1));
    let inits = w.stranger_initiations(4);
    let started = w.now;
    let mut answered = None;
    // The flood goes on all the time; the phone sends one initiation, as a phone coming
    // online does.
    for turn in 0..400 {
        flood(&mut w, &inits, 500);
        if turn == 0 {
            w.router.handle_datagram(c.addr, &c.initiation());
        }
        w.turn(Duration::from_millis(5));
        let out = w.drain_transmit();
        assert!(cookie_replies_to(&out, c.addr).is_empty());
        if out.iter().any(|t| t.dst == c.addr && t.payload[0] == 2) {
            answered = Some(w.now - started);
            break;
        }
    }
    let took = answered.expect("the phone's handshake was answered");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    assert!(
        w.router.stats().dropped_rate_limited > 0,
        "the flood was dropped"
    );
}

#[test]
fn timers_tick_every_250ms_and_poll_timeout_says_when() {
    let mut w = World::new(9);
    let t0 = Instant::now();
    assert_eq!(w.router.poll_timeout(), None);
    w.router.handle_timeout(t0);
    assert_eq!(w.router.poll_timeout(), Some(t0 + TICK));
    w.router.handle_timeout(t0 + Duration::from_millis(100));
    assert_eq!(w.router.poll_timeout(), Some(t0 + TICK));
    w.router.handle_timeout(t0 + TICK);
    assert_eq!(w.router.poll_timeout(), Some(t0 + TICK * 2));
}

#[test]
fn a_flooding_source_is_blocked_for_block_for_and_the_driver_is_told_each_change() {
    let mut w = World::new(16);
    w.turn(Duration::from_millis(1));
    let flagged_at = w.now;
    assert_eq!(w.router.poll_blocked_sources(), None, "nothing blocked yet");
    let bad = w.bad_mac1_initiation();
    for _ in 0..100 {
        w.router.handle_datagram(ATTACKER, &bad);
    }
    assert_eq!(
        w.router.poll_blocked_sources(),
        Some(vec![ATTACKER.ip()]),
        "past its bad mac1s, the source is listed for the kernel"
    );
    assert_eq!(
        w.router.poll_blocked_sources(),
        None,
        "told once per change"
    );
    assert!(w.router.poll_timeout() <= Some(flagged_at + BLOCK_FOR));
    // The next second starts new counts, but the block holds until BLOCK_FOR has passed...
    w.turn(BLOCK_FOR - Duration::from_millis(1));
    let s = w.router.stats();
    w.router.handle_datagram(ATTACKER, &bad);
    assert_eq!(w.router.stats().dropped_bad_mac, s.dropped_bad_mac);
    assert_eq!(
        w.router.stats().dropped_rate_limited,
        s.dropped_rate_limited + 1
    );
    assert_eq!(w.router.poll_blocked_sources(), None);
    // ...then it lapses, the driver is told, and the source is checked again.
    w.turn(Duration::from_millis(1));
    assert_eq!(w.router.poll_blocked_sources(), Some(vec![]));
    w.router.handle_datagram(ATTACKER, &bad);
    assert_eq!(w.router.stats().dropped_bad_mac, s.dropped_bad_mac + 1);
}

#[test]
fn under_load_a_flooding_source_is_blocked_but_a_peer_behind_it_keeps_its_data() {
    let mut w = World::new(17);
    let ip = Ipv4Addr::new(10, 88, 88, 2);
    let mut c = w.add_client(1, ip);
    // The working peer shares the flooder's address (another port: the same NAT).
    c.addr = SocketAddr::new(ATTACKER.ip(), 7777);
    w.handshake(&mut c);
    w.turn(Duration::from_millis(1));
    let inits = w.stranger_initiations(4);
    flood(&mut w, &inits, 400);
    assert_eq!(w.router.poll_blocked_sources(), Some(vec![ATTACKER.ip()]));
    // Its data still passes.
    let d = c.encapsulate(&ipv4_packet(ip, SERVER_IP, b"still here"));
    w.router.handle_datagram(c.addr, &d);
    assert_eq!(std::iter::from_fn(|| w.router.poll_inbound()).count(), 1);
    // A second phone behind that address: its handshake waits for the block to lapse.
    let mut d = w.add_client(2, Ipv4Addr::new(10, 88, 88, 3));
    d.addr = SocketAddr::new(ATTACKER.ip(), 7778);
    let handshakes = w.router.stats().handshakes;
    w.router.handle_datagram(d.addr, &d.initiation());
    while w.router.stats().handshake_queue > 0 {
        w.turn(Duration::from_millis(5));
    }
    assert_eq!(w.router.stats().handshakes, handshakes, "blocked");
    w.turn(BLOCK_FOR);
    assert_eq!(w.router.poll_blocked_sources(), Some(vec![]));
    w.handshake(&mut d);
    assert_eq!(w.router.stats().handshakes, handshakes + 1);
}

#[test]
fn the_block_list_is_bounded_and_never_names_the_shared_count() {
    let mut w = World::new(18);
    w.turn(Duration::from_millis(1));
    let bad = w.bad_mac1_initiation();
    let addr = |n: u32| SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + n), 9));
    for n in 0..BLOCKED_SOURCES as u32 + 4 {
        for _ in 0..BAD_MACS_PER_SOURCE + 1 {
            w.router.handle_datagram(addr(n), &bad);
        }
    }
    let listed = w.router.poll_blocked_sources().unwrap();
    assert_eq!(listed.len(), BLOCKED_SOURCES);
    assert!(listed
        .iter()
        .all(|ip| *ip != addr(BLOCKED_SOURCES as u32).ip()));
    // The sources beyond TRACKED_SOURCES share one count: past its bad mac1s they are
    // dropped, but no single address of them is to blame, so none is listed.
    let mut w = World::new(19);
    w.turn(Duration::from_millis(1));
    for n in 0..TRACKED_SOURCES as u32 {
        w.router.handle_datagram(addr(n), &bad);
    }
    let s = w.router.stats();
    for n in 0..20 {
        w.router
            .handle_datagram(addr(TRACKED_SOURCES as u32 + n), &bad);
    }
    let t = w.router.stats();
    assert_eq!(
        t.dropped_bad_mac,
        s.dropped_bad_mac + u64::from(BAD_MACS_PER_SOURCE)
    );
    assert_eq!(
        t.dropped_rate_limited,
        s.dropped_rate_limited + 20 - u64::from(BAD_MACS_PER_SOURCE)
    );
    assert_eq!(w.router.poll_blocked_sources(), None);
}

#[test]
fn blocks_are_counted_and_the_blocked_sources_follow_the_list() {
    let mut w = World::new(20);
    w.turn(Duration::from_millis(1));
    let bad = w.bad_mac1_initiation();
    let flood_from = |w: &mut World, from: SocketAddr| {
        for _ in 0..BAD_MACS_PER_SOURCE + 5 {
            w.router.handle_datagram(from, &bad);
        }
    };
    let other = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 77), 9));
    flood_from(&mut w, ATTACKER);
    flood_from(&mut w, other);
    let s = w.router.stats();
    assert_eq!((s.blocked_sources, s.source_blocks), (2, 2), "{s:?}");
    // The blocks lapse: nobody is blocked now, the events stay counted.
    w.turn(BLOCK_FOR);
    let s = w.router.stats();
    assert_eq!((s.blocked_sources, s.source_blocks), (0, 2), "{s:?}");
    // A source that floods again is blocked again: a second event for it.
    flood_from(&mut w, ATTACKER);
    let s = w.router.stats();
    assert_eq!((s.blocked_sources, s.source_blocks), (1, 3), "{s:?}");
    // A full list takes no more, and what it refuses is no block event.
    for n in 0..BLOCKED_SOURCES as u32 + 3 {
        flood_from(
            &mut w,
            SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + n), 9)),
        );
    }
    let s = w.router.stats();
    assert_eq!(s.blocked_sources, BLOCKED_SOURCES as u64, "{s:?}");
    assert_eq!(s.source_blocks, 2 + BLOCKED_SOURCES as u64, "{s:?}");
}
