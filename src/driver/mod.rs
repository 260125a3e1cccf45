//! The driver: the one task that owns the network state and does its I/O.
//!
//! Layer: driver. The network state itself — the [`Router`] and the [`netstack::Stack`] —
//! lives in the sans-IO [`Engine`]: input in (`handle_datagram`, `handle_command`), one
//! synchronous step `turn(now)` that runs everything and returns the next deadline, work out
//! (`poll_transmit`, `poll_accept`). [`run`] is the thin shell around it: it owns the UDP
//! socket, reads the clock and sleeps. Receive datagrams (`recvmmsg`, a batch per system call,
//! [`udp`]), call the step, send (`sendmmsg`), spawn hyper on new connections, and move the
//! router's blocked sources into the socket's kernel filter ([`udp::filter`]); then sleep until the earliest of: the engine's
//! deadline (the router's 250 ms timer tick, smoltcp's `poll_delay`), a new datagram, a
//! command, or a stream asking for service. It never busy-polls: an idle appliance wakes four
//! times a second for WireGuard timers and nothing else.
//!
//! Everything else (hyper connections, the control socket, the HTTP API) reaches it through
//! the bounded [`Command`] channel and the [`Notify`] that streams ring.

mod engine;
#[cfg(test)]
mod tests;
pub mod udp;

pub use engine::Engine;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use peers::{PeerName, PublicKey};
use socket2::SockRef;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::directory::Roster;
use crate::model::PeerRecord;
use crate::netstack::stream::Connection;
use crate::netstack::{self, Limits};
use crate::tunnel::{PeerConfig, Router, RouterStats};

/// At most this many `recvmmsg` batches ([`udp::BATCH`] datagrams each) are read per turn;
/// more only while each came back full.
const RECV_BATCHES_PER_TURN: usize = 4;
/// How often the driver reads the kernel's drop count of the UDP socket (one `getsockopt`).
const SOCKET_DROPS_EVERY: Duration = Duration::from_secs(1);

/// Requests from the rest of the process to the driver.
pub enum Command {
    /// Start serving (or replace) a peer; existing sessions of a replaced key end.
    UpsertPeer(PeerRecord, oneshot::Sender<()>),
    /// Stop serving a peer: its sessions and TCP connections end at once.
    RemovePeer {
        /// The peer to drop.
        name: PeerName,
        /// Answered once it is gone.
        done: oneshot::Sender<()>,
    },
    /// Live per-peer statistics.
    PeerStats(oneshot::Sender<Vec<LivePeerStats>>),
}

/// Statistics of one peer as the running router sees them.
#[derive(Debug, Clone)]
pub struct LivePeerStats {
    /// The peer's key.
    pub public_key: PublicKey,
    /// Time since its last handshake; `None`: never.
    pub since_handshake: Option<Duration>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// Its last authenticated UDP endpoint.
    pub endpoint: Option<SocketAddr>,
}

/// Counters the driver publishes for `/api/v1/health`.
#[derive(Default, Debug)]
pub struct Metrics {
    /// Decrypted packets whose source lay outside the peer's allowed IPs.
    pub dropped_spoofed: AtomicU64,
    /// Messages from an unknown key or for an unknown index.
    pub dropped_unknown_peer: AtomicU64,
    /// Datagrams that were not WireGuard messages.
    pub dropped_malformed: AtomicU64,
    /// Initiations with a bad mac1 (not meant for our key).
    pub dropped_bad_mac: AtomicU64,
    /// Messages that failed to authenticate or decrypt.
    pub dropped_invalid: AtomicU64,
    /// Inbound packets nothing could route (IPv6, …).
    pub dropped_unroutable_in: AtomicU64,
    /// Outbound packets for an address no peer owns.
    pub dropped_unroutable_out: AtomicU64,
    /// Cookie replies sent under load.
    pub cookie_replies: AtomicU64,
    /// Authenticated handshakes answered.
    pub handshakes: AtomicU64,
    /// Handshake messages dropped because the queue was full.
    pub dropped_handshake_overload: AtomicU64,
    /// Handshake messages dropped for an address over its share.
    pub dropped_rate_limited: AtomicU64,
    /// Handshake messages waiting for their X25519 work right now.
    pub handshake_queue: AtomicU64,
    /// Sources whose handshake messages are dropped right now (by the router, and in the
    /// kernel by the socket filter once attached).
    pub blocked_sources: AtomicU64,
    /// Times a source was added to the block list.
    pub source_blocks: AtomicU64,
    /// Datagrams the kernel dropped on the UDP socket (socket filter, full receive buffer or
    /// bad checksum), as of the last reading (once a second); meaningful only
    /// while `socket_drops_known`.
    pub socket_drops: AtomicU64,
    /// Whether the kernel reports `socket_drops` (`SO_MEMINFO`).
    pub socket_drops_known: AtomicBool,
    /// TCP connections accepted.
    pub connections_accepted: AtomicU64,
    /// SYNs refused over a connection cap.
    pub connections_refused: AtomicU64,
    /// TCP connections the netstack holds right now (half-open included).
    pub open_connections: AtomicU64,
    /// Idle TCP connections reset at the overall cap to make room for a lighter peer.
    pub connections_evicted: AtomicU64,
    /// Resident bytes of the netstack's socket buffers. Refreshed when per-peer statistics
    /// are sampled (every `/metrics` scrape), not every turn: it costs a `mincore` per buffer.
    pub socket_buffer_resident_bytes: AtomicU64,
}

impl Metrics {
    /// The flood guard's figures for `appliance status`.
    pub fn filter_status(&self) -> crate::status::FilterStatus {
        crate::status::FilterStatus {
            blocked_sources: self.blocked_sources.load(Ordering::Relaxed),
            source_blocks: self.source_blocks.load(Ordering::Relaxed),
            socket_drops: self
                .socket_drops_known
                .load(Ordering::Relaxed)
                .then(|| self.socket_drops.load(Ordering::Relaxed)),
        }
    }

    fn publish(&self, r: RouterStats, n: netstack::Stats) {
        self.dropped_spoofed
            .store(r.dropped_spoofed, Ordering::Relaxed);
        self.dropped_unknown_peer
            .store(r.dropped_unknown_peer, Ordering::Relaxed);
        self.dropped_malformed
            .store(r.dropped_malformed, Ordering::Relaxed);
        self.dropped_bad_mac
            .store(r.dropped_bad_mac, Ordering::Relaxed);
        self.dropped_invalid
            .store(r.dropped_invalid, Ordering::Relaxed);
        self.dropped_unroutable_in
            .store(r.dropped_unroutable_in, Ordering::Relaxed);
        self.dropped_unroutable_out
            .store(r.dropped_unroutable_out, Ordering::Relaxed);
        self.cookie_replies
            .store(r.cookie_replies, Ordering::Relaxed);
        self.handshakes.store(r.handshakes, Ordering::Relaxed);
        self.dropped_handshake_overload
            .store(r.dropped_handshake_overload, Ordering::Relaxed);
        self.dropped_rate_limited
            .store(r.dropped_rate_limited, Ordering::Relaxed);
        self.handshake_queue
            .store(r.handshake_queue, Ordering::Relaxed);
        self.blocked_sources
            .store(r.blocked_sources, Ordering::Relaxed);
        self.source_blocks.store(r.source_blocks, Ordering::Relaxed);
        self.connections_accepted
            .store(n.accepted, Ordering::Relaxed);
        self.connections_refused
            .store(n.refused_over_cap, Ordering::Relaxed);
        self.open_connections
            .store(n.open_connections as u64, Ordering::Relaxed);
        self.connections_evicted.store(n.evicted, Ordering::Relaxed);
    }
}

/// Where new TCP connections go (the HTTP server).
pub type AcceptFn = Box<dyn FnMut(Connection) + Send>;

/// Everything the driver needs.
pub struct DriverParts {
    /// The one UDP socket.
    pub socket: UdpSocket,
    /// The WireGuard peer table.
    pub router: Router,
    /// The server's tunnel address.
    pub address: Ipv4Addr,
    /// The tunnel subnet's prefix length.
    pub prefix: u8,
    /// TCP caps and buffer sizes of the netstack.
    pub limits: Limits,
    /// Peer changes and statistics requests from the rest of the process.
    pub commands: mpsc::Receiver<Command>,
    /// Which peer owns which tunnel address, kept in step with the router.
    pub directory: Arc<RwLock<Roster>>,
    /// Counters published for the health route.
    pub metrics: Arc<Metrics>,
    /// Where accepted TCP connections go (the HTTP server).
    pub on_accept: AcceptFn,
    /// Turns true to stop the loop.
    pub shutdown: watch::Receiver<bool>,
}

/// The router's configuration of a stored peer.
pub fn peer_config(rec: &PeerRecord) -> PeerConfig {
    PeerConfig {
        public_key: rec.public_key,
        preshared_key: rec.preshared_key.clone(),
        allowed_ips: rec.allowed_ips.clone(),
        keepalive: None,
    }
}

/// Runs the loop until `shutdown` turns true.
#[allow(clippy::disallowed_methods)] // the driver shell reads the clock and sleeps
pub async fn run(parts: DriverParts) -> io::Result<()> {
    let DriverParts {
        socket,
        router,
        address,
        prefix,
        limits,
        mut commands,
        directory,
        metrics,
        mut on_accept,
        mut shutdown,
    } = parts;
    let origin = Instant::now();
    sync_boringtun_clock(origin, origin);
    let wake = Arc::new(Notify::new());
    let seed = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
    let mut engine = Engine::new(router, address, prefix, limits, directory, seed, origin);
    let mut rx = udp::RecvBatch::new();
    let mut tx = udp::SendBatch::new();
    let mut commands_open = true;
    let mut deadline = origin;
    let dual_stack = socket.local_addr()?.is_ipv6();
    let mut drops = udp::DropCount::default();
    let mut next_drops_reading = origin;
    // What can never be a WireGuard message is dropped in the kernel; without the filter the
    // router still drops it, at the cost of a copy each.
    let filter_on = match udp::filter::attach(SockRef::from(&socket), &udp::filter::program(&[])) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "no socket filter: every datagram is checked in userspace");
            false
        }
    };

    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
                Event::Wake
            }
            r = socket.readable() => Event::Readable(r),
            cmd = commands.recv(), if commands_open => match cmd {
                Some(cmd) => Event::Command(cmd),
                None => { commands_open = false; Event::Wake }
            },
            _ = wake.notified() => Event::Wake,
            _ = tokio::time::sleep_until(deadline.into()) => Event::Wake,
        };
        let now = Instant::now();
        // No await from here to the sends: every boringtun call below sees this time.
        sync_boringtun_clock(origin, now);
        match event {
            Event::Readable(Ok(())) => {
                for _ in 0..RECV_BATCHES_PER_TURN {
                    let got = rx.recv(&socket, |from, datagram| {
                        engine.handle_datagram(canonical(from), datagram)
                    });
                    match got {
                        Ok(n) if n == udp::BATCH => continue,
                        Ok(_) => break,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // ICMP port unreachable from an old endpoint, and the like: not fatal.
                        Err(e) => {
                            tracing::debug!(error = %e, "udp receive");
                            break;
                        }
                    }
                }
            }
            Event::Readable(Err(e)) => tracing::debug!(error = %e, "udp receive"),
            Event::Command(cmd) => {
                // Before the reply, so a scrape that awaited it reads a fresh value.
                if matches!(cmd, Command::PeerStats(_)) {
                    metrics.socket_buffer_resident_bytes.store(
                        engine.socket_buffer_resident_bytes() as u64,
                        Ordering::Relaxed,
                    );
                }
                engine.handle_command(cmd)
            }
            Event::Wake => {}
        }

        deadline = engine.turn(now);
        if let Some(blocked) = engine.poll_blocked_sources() {
            tracing::debug!(
                ?blocked,
                "sources whose handshakes are dropped in the kernel"
            );
            let program = udp::filter::program(&blocked);
            if filter_on {
                if let Err(e) = udp::filter::attach(SockRef::from(&socket), &program) {
                    tracing::warn!(error = %e, "socket filter not updated");
                }
            }
        }
        while let Some(t) = engine.poll_transmit() {
            tx.push(if dual_stack { mapped(t.dst) } else { t.dst }, &t.payload);
            engine.recycle(t.payload);
        }
        loop {
            match tx.send(
                &socket,
                |dst, e| tracing::debug!(error = %e, %dst, "udp send"),
            ) {
                Ok(()) => break,
                // Kernel buffer full: wait for room rather than drop (backpressure).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = socket.writable().await {
                        tracing::debug!(error = %e, "udp send");
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "udp send");
                    break;
                }
            }
        }
        while let Some(conn) = engine.poll_accept() {
            on_accept(Connection::new(conn, wake.clone()));
        }
        let (r, n) = engine.stats();
        metrics.publish(r, n);
        if now >= next_drops_reading {
            next_drops_reading = now + SOCKET_DROPS_EVERY;
            match udp::socket_drops(SockRef::from(&socket)) {
                Ok(reading) => {
                    let total = drops.observe(reading);
                    metrics.socket_drops.store(total, Ordering::Relaxed);
                    metrics.socket_drops_known.store(true, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(error = %e, "socket drop count"),
            }
        }
    }
    Ok(())
}

/// An IPv4 peer seen through the dual-stack socket arrives as `[::ffff:a.b.c.d]`; the router,
/// logs and statistics see it as the plain IPv4 address it is.
fn canonical(from: SocketAddr) -> SocketAddr {
    match from {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => from,
        },
        v4 => v4,
    }
}

/// The reverse of [`canonical`], for sending from the dual-stack socket.
fn mapped(dst: SocketAddr) -> SocketAddr {
    match dst {
        SocketAddr::V4(v4) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
        v6 => v6,
    }
}

/// What woke the driver.
enum Event {
    /// The UDP socket has datagrams waiting.
    Readable(io::Result<()>),
    Command(Command),
    /// A stream, the timer, a closed command channel: just run the step.
    Wake,
}

/// Keeps boringtun's clock on real time. A no-op unless the test-only `mock-clock` feature
/// put boringtun on `mock_instant`'s thread-local clock — which Cargo does for every binary
/// `cargo test` builds, including the one the interop tests start. The clock is per thread and
/// the runtime may move this task between threads, so it is set after every wake-up, before
/// the first boringtun call.
fn sync_boringtun_clock(origin: Instant, now: Instant) {
    #[cfg(feature = "mock-clock")]
    mock_instant::MockClock::set_time(now - origin);
    #[cfg(not(feature = "mock-clock"))]
    let _ = (origin, now);
}
