//! The whole stack in one process, under virtual time: no sockets, no root, no sleeps.
//!
//! The phone is a boringtun client `Tunn` plus a smoltcp interface (its TCP/IP stack) with
//! hyper's HTTP/1 client on top. The appliance is the real [`Engine`] (router + netstack) with
//! the real HTTP API (`api::serve_connection` on an [`Appliance`] over a temporary redb store),
//! exactly as `driver::run` wires them. Datagrams travel through two in-memory queues (a test
//! may drop one). Virtual time advances only when nothing moves, straight to the next deadline
//! of the engine, the phone's smoltcp or the phone's WireGuard timers; boringtun's own clock
//! (`mock_instant`, thread-local, enabled by the `mock-clock` feature in tests) follows it.
//! Everything runs on the test thread in a current-thread tokio runtime.
#![allow(clippy::disallowed_methods)] // tests pick an arbitrary origin instant

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey as XPublic, StaticSecret};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use mock_instant::MockClock;
use peers::{Endpoint, Ipv4Net, PeerName, PresharedKey, PrivateKey, Role};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, Notify};

use super::{Command, Engine, Metrics};
use crate::directory::Roster;
use crate::model::{PeerRecord, ServerRecord};
use crate::netstack::stream::Connection;
use crate::netstack::{smol_now, Limits, QueueDevice};
use crate::service::{Appliance, ApplianceParts, StatsBook};
use crate::store::Store;
use crate::tunnel::{Router, MAX_DATAGRAM};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 1);
const PHONE: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 2);
/// The phone's WireGuard endpoint as the appliance sees it (a value only: nothing is sent).
const PHONE_UDP: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 40002);
const PHONE_TICK: Duration = Duration::from_millis(250);
/// WireGuard message type of a transport data packet.
const DATA: u8 = 4;

/// The phone: WireGuard client, TCP/IP stack, and the wakers of its hyper client's sockets.
struct Phone {
    tunn: Tunn,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    buf: Vec<u8>,
    next_tick: Duration,
    next_port: u16,
    wakers: Vec<Waker>,
}

/// Decides whether a datagram from the appliance to the phone is lost.
type DropFilter = Box<dyn FnMut(&[u8]) -> bool + Send>;

struct World {
    origin: Instant,
    /// Virtual time since `origin`.
    now: Duration,
    engine: Engine,
    deadline: Instant,
    phone: Phone,
    service: Arc<Appliance>,
    api: Arc<crate::api::ApiState>,
    commands: mpsc::Receiver<Command>,
    notify: Arc<Notify>,
    to_server: VecDeque<Vec<u8>>,
    drop_to_phone: Option<DropFilter>,
    /// Datagrams the filter dropped.
    dropped: usize,
    /// Datagrams delivered to the phone, and how many of them were larger than 200 bytes
    /// (data-bearing: handshake messages, keepalives and bare ACKs are smaller).
    to_phone: usize,
    to_phone_large: usize,
    /// Receiver indices of the phone's data packets, in order of first use.
    receiver_indices: Vec<u32>,
    accepted: usize,
    data_dir: PathBuf,
    server_public: peers::PublicKey,
    /// Datagrams an attacker at [`ATTACKER`] sends, `flood_per_step` of them in every step.
    flood: Vec<Vec<u8>>,
    flood_per_step: usize,
    /// Datagrams the appliance sent to the attacker (cookie replies).
    flood_replies: usize,
}

/// Where the flooding attacker sends from (a value only: nothing is sent).
const ATTACKER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66)), 6666);

type Shared = Arc<Mutex<World>>;

impl World {
    fn new(name: &str) -> Shared {
        let origin = Instant::now();
        MockClock::set_time(Duration::ZERO);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let server_key = PrivateKey::generate(&mut rng);
        let phone_key = PrivateKey::generate(&mut rng);
        let psk = PresharedKey::generate(&mut rng);

        let record = PeerRecord {
            name: PeerName::new("leader").unwrap(),
            role: Role::Admin,
            public_key: phone_key.public_key(),
            preshared_key: Some(psk.clone()),
            address: PHONE,
            allowed_ips: vec![Ipv4Net::host(PHONE)],
            enabled: true,
            created_at: 0,
        };
        let mut router = Router::new(&server_key, Box::new(ChaCha20Rng::seed_from_u64(8)));
        router.upsert_peer(super::peer_config(&record)).unwrap();
        let directory = Arc::new(RwLock::new(Roster::new(vec![record])));
        let engine = Engine::new(
            router,
            SERVER,
            24,
            Limits::default(),
            directory.clone(),
            42,
            origin,
        );

        let data_dir =
            std::env::temp_dir().join(format!("appliance-sim-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).unwrap();
        let server = ServerRecord {
            private_key: server_key.clone(),
            listen_port: 51820,
            interface: Ipv4Net::new(SERVER, 24).unwrap(),
            endpoint: Endpoint::parse("vpn.example.org", 51820).unwrap(),
            created_at: 0,
        };
        let store = Store::create(&data_dir.join("appliance.redb"), Some(&server)).unwrap();
        let (commands_tx, commands) = mpsc::channel(64);
        let store = Arc::new(store);
        let (_, stop) = tokio::sync::watch::channel(false);
        let (jobs, _) = crate::scheduler::start(store.clone(), Default::default(), stop).unwrap();
        let service = Arc::new(Appliance::new(ApplianceParts {
            store,
            server,
            listen: "0.0.0.0:51820".parse().unwrap(),
            data_dir: data_dir.clone(),
            commands: commands_tx,
            directory,
            metrics: Arc::new(Metrics::default()),
            stats: StatsBook::new(Vec::new()),
            started: origin,
            jobs,
            damaged_rows: 0,
        }));
        let api = Arc::new(crate::api::ApiState::new(Default::default()));

        let tunn = Tunn::new(
            StaticSecret::from(*phone_key.as_bytes()),
            XPublic::from(*server_key.public_key().as_bytes()),
            Some(*psk.as_bytes()),
            None,
            1,
            None,
        );
        let mut dev = QueueDevice::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = 9;
        let mut iface = Interface::new(config, &mut dev, smol_now(Duration::ZERO));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(PHONE), 24)).unwrap();
        });
        let phone = Phone {
            tunn,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            buf: vec![0u8; MAX_DATAGRAM],
            next_tick: Duration::ZERO,
            next_port: 50000,
            wakers: Vec::new(),
        };

        Arc::new(Mutex::new(World {
            origin,
            now: Duration::ZERO,
            engine,
            deadline: origin,
            phone,
            service,
            api,
            commands,
            notify: Arc::new(Notify::new()),
            to_server: VecDeque::new(),
            drop_to_phone: None,
            dropped: 0,
            to_phone: 0,
            to_phone_large: 0,
            receiver_indices: Vec::new(),
            accepted: 0,
            data_dir,
            server_public: server_key.public_key(),
            flood: Vec::new(),
            flood_per_step: 0,
            flood_replies: 0,
        }))
    }

    /// Moves everything that can move at the current virtual time, the way one wake-up of
    /// `driver::run` does. Returns whether any packet moved.
    fn step(&mut self) -> bool {
        MockClock::set_time(self.now);
        let mut moved = false;
        let phone = &mut self.phone;

        // The phone: TCP/IP out, through its tunnel.
        phone
            .iface
            .poll(smol_now(self.now), &mut phone.dev, &mut phone.sockets);
        while let Some(pkt) = phone.dev.tx.pop_front() {
            match phone.tunn.encapsulate(&pkt, &mut phone.buf) {
                TunnResult::WriteToNetwork(d) => self.to_server.push_back(d.to_vec()),
                TunnResult::Done => {} // queued until the handshake completes
                other => panic!("phone could not encapsulate: {other:?}"),
            }
        }
        if self.now >= phone.next_tick {
            phone.next_tick = self.now + PHONE_TICK;
            if let TunnResult::WriteToNetwork(d) = phone.tunn.update_timers(&mut phone.buf) {
                self.to_server.push_back(d.to_vec());
            }
        }

        // The appliance: commands and datagrams in, one turn, datagrams and connections out.
        while let Ok(cmd) = self.commands.try_recv() {
            self.engine.handle_command(cmd);
        }
        for i in 0..self.flood_per_step {
            self.engine
                .handle_datagram(ATTACKER, &self.flood[i % self.flood.len()]);
        }
        while let Some(d) = self.to_server.pop_front() {
            if d[0] == DATA {
                let idx = u32::from_le_bytes(d[4..8].try_into().unwrap());
                if self.receiver_indices.last() != Some(&idx) {
                    self.receiver_indices.push(idx);
                }
            }
            self.engine.handle_datagram(PHONE_UDP, &d);
            moved = true;
        }
        self.deadline = self.engine.turn(self.origin + self.now);
        while let Some(t) = self.engine.poll_transmit() {
            if t.dst == ATTACKER {
                self.flood_replies += 1;
                continue;
            }
            assert_eq!(t.dst, PHONE_UDP);
            moved = true;
            if let Some(lose) = &mut self.drop_to_phone {
                if lose(&t.payload) {
                    self.dropped += 1;
                    continue;
                }
            }
            self.to_phone += 1;
            if t.payload.len() > 200 {
                self.to_phone_large += 1;
            }
            match phone.tunn.decapsulate(None, &t.payload, &mut phone.buf) {
                TunnResult::WriteToNetwork(d) => {
                    self.to_server.push_back(d.to_vec());
                    while let TunnResult::WriteToNetwork(d) =
                        phone.tunn.decapsulate(None, &[], &mut phone.buf)
                    {
                        self.to_server.push_back(d.to_vec());
                    }
                }
                TunnResult::WriteToTunnelV4(p, _) => phone.dev.rx.push_back(p.to_vec()),
                TunnResult::Done => {}
                other => panic!("phone could not decapsulate: {other:?}"),
            }
        }
        while let Some(conn) = self.engine.poll_accept() {
            self.accepted += 1;
            crate::api::serve_connection(
                Connection::new(conn, self.notify.clone()),
                self.service.clone(),
                self.api.clone(),
            );
        }
        // The phone: its TCP/IP stack takes what arrived; its sockets' readers may proceed.
        phone
            .iface
            .poll(smol_now(self.now), &mut phone.dev, &mut phone.sockets);
        for w in phone.wakers.drain(..) {
            w.wake();
        }
        moved
    }

    /// Jumps virtual time to the earliest deadline of the engine, the phone's smoltcp and the
    /// phone's WireGuard timers (at least 1 ms ahead).
    fn advance(&mut self) {
        let mut next = self.deadline.saturating_duration_since(self.origin);
        next = next.min(self.phone.next_tick);
        if let Some(d) = self
            .phone
            .iface
            .poll_delay(smol_now(self.now), &self.phone.sockets)
        {
            next = next.min(self.now + Duration::from(d));
        }
        self.now = next.max(self.now + Duration::from_millis(1));
    }

    fn connect(&mut self) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        let port = self.phone.next_port;
        self.phone.next_port += 1;
        s.connect(
            self.phone.iface.context(),
            IpEndpoint::new(IpAddress::Ipv4(SERVER), 8888),
            port,
        )
        .unwrap();
        self.phone.sockets.add(s)
    }

    fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.phone.sockets.get_mut::<tcp::Socket>(h)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Runs the world until `done` holds: lets every task (hyper on both sides) run, moves
/// packets, and advances virtual time when nothing moved. Panics after `limit` of virtual time.
async fn pump(world: &Shared, mut done: impl FnMut(&World) -> bool, limit: Duration) {
    let give_up = world.lock().unwrap().now + limit;
    let mut quiet = 0;
    loop {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let mut w = world.lock().unwrap();
        if done(&w) {
            return;
        }
        assert!(
            w.now < give_up,
            "nothing happened within {limit:?} of virtual time"
        );
        if w.step() {
            quiet = 0;
        } else {
            quiet += 1;
            if quiet >= 2 {
                w.advance();
            }
        }
    }
}

/// Runs `f` in a current-thread runtime on this thread (boringtun's mock clock is per thread).
fn simulate<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The phone's side of one TCP connection: tokio I/O over its smoltcp socket.
struct PhoneStream {
    world: Shared,
    handle: SocketHandle,
}

impl AsyncRead for PhoneStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut w = self.world.lock().unwrap();
        let s = w.socket(self.handle);
        if s.can_recv() {
            let n = s.recv_slice(buf.initialize_unfilled()).unwrap_or(0);
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        if !s.may_recv() && s.state() != tcp::State::SynSent {
            return Poll::Ready(Ok(()));
        }
        w.phone.wakers.push(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for PhoneStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut w = self.world.lock().unwrap();
        let s = w.socket(self.handle);
        if s.can_send() {
            if let Ok(n) = s.send_slice(data) {
                if n > 0 {
                    return Poll::Ready(Ok(n));
                }
            }
        } else if !s.may_send()
            && !matches!(s.state(), tcp::State::SynSent | tcp::State::SynReceived)
        {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        w.phone.wakers.push(cx.waker().clone());
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut w = self.world.lock().unwrap();
        w.socket(self.handle).close();
        Poll::Ready(Ok(()))
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Opens a TCP connection from the phone and an HTTP/1 client on it.
async fn http_client(world: &Shared) -> Sender {
    let handle = world.lock().unwrap().connect();
    let io = TokioIo::new(PhoneStream {
        world: world.clone(),
        handle,
    });
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// Sends `GET path` on `sender` while pumping the world; returns status and JSON body.
async fn get(world: &Shared, sender: &mut Sender, path: &str) -> (u16, serde_json::Value) {
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "10.88.88.1:8888")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let fut = sender.send_request(req);
    let task = tokio::spawn(async move {
        let resp = fut.await.expect("response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).expect("JSON body"))
    });
    pump(world, |_| task.is_finished(), Duration::from_secs(30)).await;
    task.await.unwrap()
}

#[test]
fn handshake_then_whoami_through_the_whole_stack() {
    simulate(async {
        let world = World::new("whoami");
        let mut http = http_client(&world).await;
        let (status, body) = get(&world, &mut http, "/api/v1/whoami").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["peer"], "leader");
        assert_eq!(body["role"], "admin");
        assert_eq!(body["address"], "10.88.88.2");
        let w = world.lock().unwrap();
        let (router, stack) = w.engine.stats();
        assert_eq!(router.handshakes, 1);
        assert_eq!(stack.accepted, 1);
        assert_eq!(w.accepted, 1);
        assert_eq!(
            w.engine.router().endpoint_of(PHONE),
            Some(PHONE_UDP),
            "the peer's endpoint is its authenticated source"
        );
    });
}

/// Handshake initiations with a valid mac1 for `server` from `n` random keys it does not know.
fn stranger_initiations(server: &peers::PublicKey, n: u32) -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    (0..n)
        .map(|i| {
            let key = PrivateKey::generate(&mut rng);
            let mut t = Tunn::new(
                StaticSecret::from(*key.as_bytes()),
                XPublic::from(*server.as_bytes()),
                None,
                None,
                i,
                None,
            );
            match t.format_handshake_initiation(&mut buf, false) {
                TunnResult::WriteToNetwork(p) => p.to_vec(),
                other => panic!("no initiation: {other:?}"),
            }
        })
        .collect()
}

/// 200 valid-mac1 initiations from random keys arrive with every step, all the time: the phone
/// still handshakes without a cookie round trip (its address is quiet), connects and gets 20
/// answers, well within 5 s of virtual time; the attacker gets a few cookie replies at most.
#[test]
fn a_handshake_flood_does_not_keep_the_phone_from_connecting_or_being_served() {
    simulate(async {
        let world = World::new("flood");
        let started = {
            let mut w = world.lock().unwrap();
            w.flood = stranger_initiations(&w.server_public, 8);
            w.flood_per_step = 200;
            w.now
        };
        let mut http = http_client(&world).await;
        for _ in 0..20 {
            let (status, body) = get(&world, &mut http, "/api/v1/whoami").await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["peer"], "leader");
        }
        let w = world.lock().unwrap();
        let took = w.now - started;
        assert!(
            took < Duration::from_secs(5),
            "took {took:?} of virtual time"
        );
        let (router, _) = w.engine.stats();
        assert_eq!(router.handshakes, 1);
        assert!(router.dropped_rate_limited > 0, "{router:?}");
        let seconds = took.as_secs() as usize + 1;
        assert!(
            w.flood_replies <= crate::tunnel::COOKIE_REPLIES_PER_SOURCE as usize * seconds,
            "{} replies to the attacker in {took:?}",
            w.flood_replies
        );
    });
}

#[test]
fn rekey_after_two_minutes_keeps_the_connection_serving() {
    simulate(async {
        let world = World::new("rekey");
        let mut http = http_client(&world).await;
        let (status, _) = get(&world, &mut http, "/api/v1/whoami").await;
        assert_eq!(status, 200);
        let first_index = {
            let w = world.lock().unwrap();
            assert_eq!(w.engine.stats().0.handshakes, 1);
            *w.receiver_indices.last().unwrap()
        };

        // Two minutes and a bit of idle virtual time: TCP keepalives cross the tunnel, and the
        // phone's session passes REKEY_AFTER_TIME (120 s).
        let until = world.lock().unwrap().now + Duration::from_secs(130);
        pump(&world, |w| w.now >= until, Duration::from_secs(140)).await;

        // Traffic continues on the same HTTP connection, over a new session.
        let (status, body) = get(&world, &mut http, "/api/v1/whoami").await;
        assert_eq!(status, 200);
        assert_eq!(body["peer"], "leader");
        let w = world.lock().unwrap();
        assert_eq!(w.engine.stats().0.handshakes, 2, "the phone re-keyed once");
        assert_eq!(w.accepted, 1, "same TCP connection");
        let last_index = *w.receiver_indices.last().unwrap();
        assert_ne!(last_index, first_index, "data now uses the new session");
        assert_eq!(
            last_index >> 8,
            first_index >> 8,
            "same peer index, new session"
        );
    });
}

#[test]
fn lost_reply_datagram_is_retransmitted_and_the_request_completes() {
    simulate(async {
        let world = World::new("loss");
        let mut http = http_client(&world).await;
        // Lose the first data-bearing datagram to the phone: the HTTP reply.
        world.lock().unwrap().drop_to_phone = Some(Box::new({
            let mut lost = false;
            move |d: &[u8]| {
                let lose = !lost && d[0] == DATA && d.len() > 200;
                lost |= lose;
                lose
            }
        }));
        let (status, body) = get(&world, &mut http, "/api/v1/whoami").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["peer"], "leader");
        let w = world.lock().unwrap();
        assert_eq!(w.dropped, 1);
        assert!(
            w.to_phone_large >= 1,
            "the appliance's TCP retransmitted the reply"
        );
        assert!(
            w.now >= Duration::from_millis(100),
            "the retransmission waited for smoltcp's timer ({:?})",
            w.now
        );
    });
}

#[test]
fn peer_removed_mid_request_gets_no_reply_and_its_connection_ends() {
    simulate(async {
        let world = World::new("remove");
        let (handle, service) = {
            let mut w = world.lock().unwrap();
            (w.connect(), w.service.clone())
        };
        let idle_refs = Arc::strong_count(&service);
        // Headers and half of a 100-byte body: the API waits for the rest.
        let head = "POST /api/v1/jobs HTTP/1.1\r\nHost: 10.88.88.1:8888\r\n\
                    Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":";
        pump(
            &world,
            |w| w.phone.sockets.get::<tcp::Socket>(handle).may_send(),
            Duration::from_secs(5),
        )
        .await;
        world
            .lock()
            .unwrap()
            .socket(handle)
            .send_slice(head.as_bytes())
            .unwrap();
        let settle = world.lock().unwrap().now + Duration::from_secs(1);
        pump(&world, |w| w.now >= settle, Duration::from_secs(5)).await;
        {
            let w = world.lock().unwrap();
            assert_eq!(w.accepted, 1);
            assert_eq!(w.engine.stats().1.open_connections, 1);
            assert!(
                Arc::strong_count(&service) > idle_refs,
                "hyper is serving the connection"
            );
        }

        // The peer is removed through the service's command channel, as the API and CLI do.
        let (done, removed) = tokio::sync::oneshot::channel();
        service
            .commands()
            .try_send(Command::RemovePeer {
                name: PeerName::new("leader").unwrap(),
                done,
            })
            .ok()
            .unwrap();
        let delivered_before = world.lock().unwrap().to_phone;
        let soon = world.lock().unwrap().now + Duration::from_millis(10);
        pump(&world, |w| w.now >= soon, Duration::from_secs(1)).await;
        // The phone, unaware, sends the rest of its body.
        world
            .lock()
            .unwrap()
            .socket(handle)
            .send_slice(&[b' '; 92])
            .unwrap();
        let settle = world.lock().unwrap().now + Duration::from_secs(10);
        pump(&world, |w| w.now >= settle, Duration::from_secs(15)).await;
        removed.await.unwrap();

        let mut w = world.lock().unwrap();
        assert_eq!(w.to_phone, delivered_before, "nothing reaches the phone");
        assert_eq!(w.socket(handle).recv_queue(), 0, "no reply leaked");
        let (router, stack) = w.engine.stats();
        assert_eq!(
            stack.open_connections, 0,
            "the socket was aborted and reaped"
        );
        assert!(
            router.dropped_unknown_peer >= 1,
            "the phone's later packets are dropped in silence"
        );
        drop(w);
        assert_eq!(
            Arc::strong_count(&service),
            idle_refs,
            "the HTTP task ended"
        );
    });
}

#[test]
fn driver_keeps_boringtuns_clock_on_real_time_in_test_builds() {
    // `cargo test` builds the appliance binary with the `mock-clock` feature too; the driver
    // sets boringtun's clock after every wake-up so rekeys still happen after real minutes.
    let origin = Instant::now();
    MockClock::set_time(Duration::ZERO);
    super::sync_boringtun_clock(origin, origin + Duration::from_secs(121));
    assert_eq!(MockClock::time(), Duration::from_secs(121));
}

#[test]
fn mapped_ipv4_sources_are_plain_ipv4_inside_and_mapped_again_outside() {
    use super::{canonical, mapped};
    use std::net::SocketAddr;
    let v4: SocketAddr = "203.0.113.7:4242".parse().unwrap();
    let seen: SocketAddr = "[::ffff:203.0.113.7]:4242".parse().unwrap();
    assert_eq!(canonical(seen), v4);
    assert_eq!(mapped(v4), seen);
    let v6: SocketAddr = "[2001:db8::7]:4242".parse().unwrap();
    assert_eq!(canonical(v6), v6);
    assert_eq!(mapped(v6), v6);
}
