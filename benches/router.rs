//! Router hot path: decapsulate + demux + allowed-IP check (inbound) and route + encapsulate
//! (outbound), with 1 peer and with 250 peers. Datagrams are encrypted by real boringtun
//! clients in the untimed setup, so only the server side is measured.
//!
//! Baseline, run side by side in the same process (STYLE.md rule 11): `baseline/N-peers` does
//! the same cryptographic work with bare server-side boringtun `Tunn`s and no router around
//! them — `Tunn::decapsulate` of the same kind of datagrams, `Tunn::encapsulate` of the same
//! packets, the `Tunn` picked by position in a `Vec`. router time / baseline time is the
//! router's overhead: parse + index demux + allowed-IP check + endpoint update + the owned
//! `Vec` copies into its `Inbound`/`Transmit` queues.
//!
//! Run: `cargo bench --bench router -- --warm-up-time 1 --measurement-time 3`
//! (figures and ratios: benches/RESULTS.md).
#![allow(clippy::disallowed_methods)] // benchmark setup paces handshakes

use std::net::{Ipv4Addr, SocketAddr};

use appliance::testing::ipv4_packet;
use appliance::tunnel::{PeerConfig, Router};
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey as XPublic, StaticSecret};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use peers::{Ipv4Net, PresharedKey, PrivateKey};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 1);
/// A typical HTTP-sized packet inside the tunnel.
const PAYLOAD: usize = 512;

struct Client {
    tunn: Tunn,
    addr: SocketAddr,
    ip: Ipv4Addr,
    buf: Vec<u8>,
}

impl Client {
    /// Client `i` ([`client_addr`], [`client_ip`]) with `key` and `psk`, talking to `server`;
    /// `index` is its boringtun session index.
    fn new(i: usize, key: &PrivateKey, psk: &PresharedKey, server: XPublic, index: u32) -> Client {
        Client {
            tunn: Tunn::new(
                StaticSecret::from(*key.as_bytes()),
                server,
                Some(*psk.as_bytes()),
                None,
                index,
                None,
            ),
            addr: client_addr(i),
            ip: client_ip(i),
            buf: vec![0u8; 65536],
        }
    }

    /// A handshake initiation to the server.
    fn initiation(&mut self) -> Vec<u8> {
        match self.tunn.format_handshake_initiation(&mut self.buf, true) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    fn encapsulate(&mut self, packet: &[u8]) -> Vec<u8> {
        match self.tunn.encapsulate(packet, &mut self.buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("{other:?}"),
        }
    }
    /// A [`PAYLOAD`]-byte packet from this client to the server, encrypted: one inbound
    /// datagram.
    fn inbound(&mut self) -> Vec<u8> {
        self.encapsulate(&ipv4_packet(self.ip, SERVER_IP, &[0; PAYLOAD]))
    }

    fn decapsulate(&mut self, d: &[u8]) {
        match self.tunn.decapsulate(None, d, &mut self.buf) {
            TunnResult::Err(e) => panic!("{e:?}"),
            TunnResult::WriteToNetwork(_) => {
                while let TunnResult::WriteToNetwork(_) =
                    self.tunn.decapsulate(None, &[], &mut self.buf)
                {}
            }
            _ => {}
        }
    }
}

/// One [`PAYLOAD`]-byte packet from the server to each client, for the outbound benches.
fn outbound_packets(clients: &[Client]) -> Vec<Vec<u8>> {
    clients
        .iter()
        .map(|cl| ipv4_packet(SERVER_IP, cl.ip, &[0; PAYLOAD]))
        .collect()
}

/// A router with `n` peers, each with a completed handshake.
fn setup(n: usize) -> (Router, Vec<Client>) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let server = PrivateKey::generate(&mut rng);
    let mut router = Router::new(&server, Box::new(ChaCha20Rng::seed_from_u64(2)));
    let mut clients = Vec::new();
    for i in 0..n {
        let key = PrivateKey::generate(&mut rng);
        let psk = PresharedKey::generate(&mut rng);
        router
            .upsert_peer(PeerConfig {
                public_key: key.public_key(),
                preshared_key: Some(psk.clone()),
                allowed_ips: vec![Ipv4Net::host(client_ip(i))],
                keepalive: None,
            })
            .unwrap();
        let server_public = XPublic::from(*server.public_key().as_bytes());
        let mut c = Client::new(i, &key, &psk, server_public, i as u32);
        let init = c.initiation();
        router.handle_datagram(c.addr, &init);
        // Handshake messages wait in the router's queue; its timeout step does their work.
        router.handle_timeout(std::time::Instant::now());
        let resp = router.poll_transmit().expect("handshake response");
        c.decapsulate(&resp.payload);
        // Confirm the session with a keepalive so the router uses it for sending.
        let ka = c.encapsulate(&[]);
        router.handle_datagram(c.addr, &ka);
        while router.poll_transmit().is_some() {}
        // Handshakes are rate limited per second; keep setup under the limit.
        if i % 40 == 39 {
            std::thread::sleep(std::time::Duration::from_millis(1100));
            // `cargo test` and `cargo bench` build dev-dependencies, which turn on the
            // test-only `mock-clock` feature: boringtun then reads mock_instant's clock, which
            // only moves when told to.
            #[cfg(feature = "mock-clock")]
            mock_instant::MockClock::advance(std::time::Duration::from_millis(1100));
            router.handle_timeout(std::time::Instant::now());
        }
        clients.push(c);
    }
    (router, clients)
}

/// The UDP source address of client `i` (never dialled: the server side only hands it to
/// boringtun's rate limiter and records it as the endpoint).
fn client_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20000 + i as u16))
}

/// The tunnel address of client `i`.
fn client_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 88, 0, 2)) + i as u32)
}

/// `n` bare server-side `Tunn`s, each with a completed, confirmed session to its own client:
/// the same handshake the router setup does, minus the router.
fn setup_bare(n: usize) -> (Vec<Tunn>, Vec<Client>) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let server = PrivateKey::generate(&mut rng);
    let server_secret = StaticSecret::from(*server.as_bytes());
    let server_public = XPublic::from(&server_secret);
    let mut buf = vec![0u8; 65536];
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for i in 0..n {
        let key = PrivateKey::generate(&mut rng);
        let psk = PresharedKey::generate(&mut rng);
        // Each bare Tunn has its own rate limiter (None), so one handshake each never trips it.
        let mut srv = Tunn::new(
            server_secret.clone(),
            XPublic::from(*key.public_key().as_bytes()),
            Some(*psk.as_bytes()),
            None,
            i as u32,
            None,
        );
        let mut c = Client::new(i, &key, &psk, server_public, (1000 + i) as u32);
        let init = c.initiation();
        let resp = match srv.decapsulate(Some(c.addr.ip()), &init, &mut buf) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("{other:?}"),
        };
        c.decapsulate(&resp);
        // Confirm the session with a keepalive so the server side may send on it.
        let ka = c.encapsulate(&[]);
        match srv.decapsulate(Some(c.addr.ip()), &ka, &mut buf) {
            TunnResult::Err(e) => panic!("{e:?}"),
            TunnResult::WriteToNetwork(_) => {
                while let TunnResult::WriteToNetwork(_) = srv.decapsulate(None, &[], &mut buf) {}
            }
            _ => {}
        }
        servers.push(srv);
        clients.push(c);
    }
    (servers, clients)
}

/// The baseline group for `n` peers: bare `Tunn` work, same inputs and harness shape as the
/// router group (`iter_batched` with client-side encryption in the untimed setup inbound,
/// `iter` over pre-built packets outbound).
fn bench_baseline(c: &mut Criterion, n: usize) {
    let (mut servers, mut clients) = setup_bare(n);
    let mut buf = vec![0u8; appliance::tunnel::MAX_DATAGRAM];
    let mut g = c.benchmark_group(format!("baseline/{n}-peers"));
    g.throughput(Throughput::Bytes(PAYLOAD as u64 + 20));
    let mut next = 0usize;
    g.bench_function("inbound Tunn::decapsulate", |b| {
        b.iter_batched(
            || {
                next = (next + 1) % clients.len();
                let cl = &mut clients[next];
                (next, cl.addr, cl.inbound())
            },
            |(i, from, d)| match servers[i].decapsulate(Some(from.ip()), &d, &mut buf) {
                TunnResult::WriteToTunnelV4(p, src) => (p.len(), src),
                other => panic!("{other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    let mut next = 0usize;
    let packets = outbound_packets(&clients);
    g.bench_function("outbound Tunn::encapsulate", |b| {
        b.iter(|| {
            next = (next + 1) % packets.len();
            match servers[next].encapsulate(&packets[next], &mut buf) {
                TunnResult::WriteToNetwork(p) => p.len(),
                other => panic!("{other:?}"),
            }
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    for n in [1usize, 250] {
        let (mut router, mut clients) = setup(n);
        let mut g = c.benchmark_group(format!("router/{n}-peers"));
        g.throughput(Throughput::Bytes(PAYLOAD as u64 + 20));
        let mut next = 0usize;
        g.bench_function("inbound decap+demux+allowed-ip", |b| {
            b.iter_batched(
                || {
                    next = (next + 1) % clients.len();
                    let cl = &mut clients[next];
                    (cl.addr, cl.inbound())
                },
                |(from, d)| {
                    router.handle_datagram(from, &d);
                    router.poll_inbound().expect("delivered")
                },
                BatchSize::SmallInput,
            )
        });
        let mut next = 0usize;
        let packets = outbound_packets(&clients);
        g.bench_function("outbound route+encap", |b| {
            b.iter(|| {
                next = (next + 1) % packets.len();
                router.handle_ip_packet(&packets[next]);
                router.poll_transmit().expect("sent")
            })
        });
        g.finish();
        // The baseline right after, in the same process, so both see the same machine state.
        bench_baseline(c, n);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
