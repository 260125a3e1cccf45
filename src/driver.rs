//! The driver: the one task that owns the network state and does its I/O.
//!
//! Layer: driver. It owns the UDP socket, the [`Router`] and the [`Netstack`], reads the clock
//! and sleeps. One loop: receive datagrams (a batch at a time), run them through the router,
//! hand decrypted packets to the netstack, poll it, encrypt what it sends, send. Then sleep
//! until the earliest of: the router's next timer (every 250 ms), smoltcp's `poll_delay`, a
//! new datagram, a command, or a stream asking for service. It never busy-polls: an idle
//! appliance wakes four times a second for WireGuard timers and nothing else.
//!
//! Everything else (hyper connections, the control socket, the HTTP API) reaches it through
//! the bounded [`Command`] channel and the [`Notify`] that streams ring.
#![allow(clippy::disallowed_methods)] // the driver reads the clock and sleeps

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use peers::{PeerName, PublicKey};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::directory::Directory;
use crate::netstack::{Accepted, Limits, Netstack, NetstackStats};
use crate::store::PeerRecord;
use crate::tunnel::{PeerConfig, Router, RouterStats};

/// Datagrams read per wake-up before the loop processes them.
const RECV_BATCH: usize = 64;

/// Requests from the rest of the process to the driver.
pub enum Command {
    /// Start serving (or replace) a peer; existing sessions of a replaced key end.
    UpsertPeer(PeerRecord, oneshot::Sender<()>),
    /// Stop serving a peer: its sessions and TCP connections end at once.
    RemovePeer {
        name: PeerName,
        done: oneshot::Sender<()>,
    },
    /// Live per-peer statistics.
    PeerStats(oneshot::Sender<Vec<LivePeerStats>>),
}

/// Statistics of one peer as the running router sees them.
#[derive(Debug, Clone)]
pub struct LivePeerStats {
    pub public_key: PublicKey,
    pub since_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub endpoint: Option<SocketAddr>,
}

/// Counters the driver publishes for `/api/v1/health` and `/metrics`.
#[derive(Default, Debug)]
pub struct Metrics {
    pub dropped_spoofed: AtomicU64,
    pub dropped_unknown_peer: AtomicU64,
    pub dropped_malformed: AtomicU64,
    pub dropped_bad_mac: AtomicU64,
    pub dropped_invalid: AtomicU64,
    pub dropped_unroutable_in: AtomicU64,
    pub dropped_unroutable_out: AtomicU64,
    pub cookie_replies: AtomicU64,
    pub handshakes: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    /// TCP connections the netstack holds right now (half-open included).
    pub open_connections: AtomicU64,
}

impl Metrics {
    fn publish(&self, r: RouterStats, n: NetstackStats) {
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
        self.connections_accepted
            .store(n.accepted, Ordering::Relaxed);
        self.connections_refused
            .store(n.refused_over_cap, Ordering::Relaxed);
        self.open_connections
            .store(n.open_connections as u64, Ordering::Relaxed);
    }
}

/// Where new TCP connections go (the HTTP server).
pub type AcceptFn = Box<dyn FnMut(Accepted) + Send>;

/// Everything the driver needs.
pub struct DriverParts {
    pub socket: UdpSocket,
    pub router: Router,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub limits: Limits,
    pub commands: mpsc::Receiver<Command>,
    pub directory: Arc<RwLock<Directory>>,
    pub metrics: Arc<Metrics>,
    pub on_accept: AcceptFn,
    pub shutdown: watch::Receiver<bool>,
}

pub fn peer_config(rec: &PeerRecord) -> PeerConfig {
    PeerConfig {
        public_key: rec.public_key,
        preshared_key: rec.preshared_key.clone(),
        allowed_ips: rec.allowed_ips.clone(),
        keepalive: None,
    }
}

/// Runs the loop until `shutdown` turns true.
pub async fn run(parts: DriverParts) -> io::Result<()> {
    let DriverParts {
        socket,
        mut router,
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
    let wake = Arc::new(Notify::new());
    let seed = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
    let mut stack = Netstack::new(address, prefix, limits, wake.clone(), seed, Duration::ZERO);
    let mut buf = vec![0u8; 65536];
    let mut commands_open = true;

    loop {
        let now = Instant::now();
        let mut deadline = router.poll_timeout().unwrap_or(now + crate::tunnel::TICK);
        if let Some(d) = stack.poll_delay(now - origin) {
            deadline = deadline.min(now + d);
        }
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            r = socket.recv_from(&mut buf) => {
                match r {
                    Ok((n, from)) => {
                        router.handle_datagram(from, &buf[..n]);
                        for _ in 1..RECV_BATCH {
                            match socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => router.handle_datagram(from, &buf[..n]),
                                Err(_) => break,
                            }
                        }
                    }
                    // ICMP port unreachable from an old endpoint, and the like: not fatal.
                    Err(e) => tracing::debug!(error = %e, "udp receive"),
                }
            }
            cmd = commands.recv(), if commands_open => match cmd {
                Some(cmd) => handle_command(cmd, &mut router, &mut stack, &directory),
                None => commands_open = false,
            },
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }

        let now = Instant::now();
        router.handle_timeout(now);
        while let Some(inb) = router.poll_inbound() {
            stack.handle_packet(inb.packet);
        }
        stack.poll(now - origin);
        while let Some(pkt) = stack.poll_transmit() {
            router.handle_ip_packet(&pkt);
        }
        while let Some(t) = router.poll_transmit() {
            if let Err(e) = socket.try_send_to(&t.payload, t.dst) {
                if e.kind() == io::ErrorKind::WouldBlock {
                    // Kernel buffer full: wait for room rather than drop (backpressure).
                    if let Err(e) = socket.send_to(&t.payload, t.dst).await {
                        tracing::debug!(error = %e, dst = %t.dst, "udp send");
                    }
                } else {
                    tracing::debug!(error = %e, dst = %t.dst, "udp send");
                }
            }
        }
        while let Some(mut conn) = stack.poll_accept() {
            conn.endpoint = router.endpoint_of(*conn.remote.ip());
            on_accept(conn);
        }
        metrics.publish(router.stats(), stack.stats());
    }
    Ok(())
}

fn handle_command(
    cmd: Command,
    router: &mut Router,
    stack: &mut Netstack,
    directory: &RwLock<Directory>,
) {
    match cmd {
        Command::UpsertPeer(rec, done) => {
            let old = directory.read().unwrap().by_name(&rec.name).cloned();
            // A role change alone keeps the tunnel and connections; anything that changes who
            // may use the tunnel (key, PSK, addresses, enabled) ends the old sessions.
            let tunnel_changed = old.as_ref().is_none_or(|o| {
                o.public_key != rec.public_key
                    || o.preshared_key != rec.preshared_key
                    || o.allowed_ips != rec.allowed_ips
                    || o.enabled != rec.enabled
            });
            if tunnel_changed {
                if let Some(old) = &old {
                    router.remove_peer(&old.public_key);
                    let n = stack.abort_from(&old.allowed_ips);
                    tracing::debug!(peer = %old.name, connections = n, "old tunnel ended");
                }
                if rec.enabled {
                    if let Err(e) = router.upsert_peer(peer_config(&rec)) {
                        tracing::warn!(peer = %rec.name, error = %e, "peer not routed");
                    }
                }
            }
            tracing::info!(peer = %rec.name, address = %rec.address, role = %rec.role, enabled = rec.enabled, "peer live");
            directory.write().unwrap().upsert(rec);
            let _ = done.send(());
        }
        Command::RemovePeer { name, done } => {
            if let Some(old) = directory.write().unwrap().remove(&name) {
                router.remove_peer(&old.public_key);
                let n = stack.abort_from(&old.allowed_ips);
                tracing::info!(peer = %name, connections = n, "peer removed");
            }
            let _ = done.send(());
        }
        Command::PeerStats(reply) => {
            let stats = router
                .peers()
                .map(|p| {
                    let (since, rx, tx) = p.stats();
                    LivePeerStats {
                        public_key: p.config().public_key,
                        since_handshake: since,
                        rx_bytes: rx,
                        tx_bytes: tx,
                        endpoint: p.endpoint(),
                    }
                })
                .collect();
            let _ = reply.send(stats);
        }
    }
}
