//! The WireGuard packet router: peer table, demultiplexing and the allowed-IP check.
//!
//! Layer: sans-IO core. It owns one [`Peer`] (one boringtun `Tunn`) per WireGuard peer and the
//! shared handshake [`RateLimiter`]. It never touches a socket or reads a clock: the driver
//! feeds it datagrams with [`Router::handle_datagram`], IP packets from the netstack with
//! [`Router::handle_ip_packet`] and time with [`Router::handle_timeout`], then drains
//! [`Router::poll_transmit`] (UDP datagrams to send) and [`Router::poll_inbound`] (decrypted IP
//! packets for the netstack). [`Router::poll_timeout`] is the next deadline.
//!
//! Contract:
//! - Data messages of established sessions are handled at once, in [`Router::handle_datagram`].
//!   Handshake messages only pass the cheap checks there (type and exact length, then mac1, and
//!   under load mac2) and wait in a bounded queue; [`Router::handle_timeout`] does their X25519
//!   work, at most [`HANDSHAKES_PER_TURN`] per call and [`HANDSHAKES_PER_SECOND`] per second,
//!   so a handshake flood can never take the time that data needs (wireguard-go's handshake
//!   queue, on one thread).
//! - The queue and the load policy below are the router's `Admission` (`tunnel/handshake.rs`).
//! - Load is measured by that queue: from [`UNDER_LOAD_QUEUE`] waiting messages, and for
//!   [`UNDER_LOAD_FOR`] after, the router is under load. Then a source address that already
//!   sent [`QUIET_PER_SOURCE`] handshakes this second must prove it owns its address with a
//!   cookie (mac2): without one it gets a cookie reply (at most [`COOKIE_REPLIES_PER_SOURCE`]
//!   per second, the rest is dropped); with one its initiation goes ahead of the others (at
//!   most [`COOKIE_HANDSHAKES_PER_SOURCE`] per second). Past [`FLOODING_PER_SOURCE`] messages
//!   in a second a source is flooding, and the rest of its messages are dropped on a table
//!   lookup, before mac1. A quiet source, such as a phone coming online while someone else
//!   floods, is served without the cookie round trip.
//! - Load or not, a source past [`BAD_MACS_PER_SOURCE`] bad mac1s in a second has the rest of
//!   its handshake messages dropped on the same lookup: a bad-mac1 flood never reaches the
//!   queue, so queue length alone would never see it.
//! - A source dropped for either reason is also blocked: its handshake messages are dropped
//!   for [`BLOCK_FOR`] after the last one that flagged it (at most [`BLOCKED_SOURCES`] sources
//!   at a time; its data messages still pass, so a working peer behind the same address keeps
//!   its session). [`Router::poll_blocked_sources`] tells the driver whenever that list
//!   changes, so it can drop those messages in the kernel, before they cost a copy.
//! - Initiations are then routed by the sender's static key.
//! - Every other message is routed by its receiver index: a random 24-bit index per peer,
//!   never reused in the life of the router.
//! - A peer's endpoint changes only after a packet from it authenticates.
//! - A decrypted packet whose source address is outside the peer's allowed IPs is dropped and
//!   counted; everything that reaches [`Router::poll_inbound`] has a trustworthy source.
//! - Packets from unknown keys or indices get no reply at all.

mod handshake;
mod peer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn};
use boringtun::x25519::{PublicKey as XPublic, StaticSecret};
use peers::{PrivateKey, PublicKey};
use rand_core::RngCore;

use crate::netstack::PacketPool;
use handshake::{Admission, Pending};
pub use handshake::{
    BAD_MACS_PER_SOURCE, BLOCKED_SOURCES, BLOCK_FOR, COOKIE_HANDSHAKES_PER_SOURCE,
    COOKIE_REPLIES_PER_SOURCE, FLOODING_PER_SOURCE, HANDSHAKES_PER_SECOND, HANDSHAKES_PER_TURN,
    HANDSHAKE_QUEUE, QUIET_PER_SOURCE, RATE_LIMIT_RESET, TRACKED_SOURCES, UNDER_LOAD_FOR,
    UNDER_LOAD_QUEUE,
};
use peer::{Decap, Encap};
pub use peer::{Peer, PeerConfig};

/// How often every peer's timers run.
pub const TICK: Duration = Duration::from_millis(250);
/// Largest UDP payload we produce: an MTU-sized packet plus WireGuard overhead.
pub const MAX_DATAGRAM: usize = 65535;

/// A UDP datagram the driver must send.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    /// Where to send it: the peer's last authenticated endpoint.
    pub dst: SocketAddr,
    /// The encrypted WireGuard message.
    pub payload: Vec<u8>,
}

/// A decrypted IPv4 packet that passed the allowed-IP check.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The peer it came through.
    pub peer: PublicKey,
    /// The IPv4 packet.
    pub packet: Vec<u8>,
}

/// A completed handshake initiation from a peer (authenticated and answered), for the
/// driver's "came online" log. At most [`MAX_EVENTS`] wait; older ones are dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    /// The peer's public key.
    pub peer: PublicKey,
    /// The UDP address it came from.
    pub from: SocketAddr,
}

/// Message type of a handshake initiation (WireGuard wire format).
const HANDSHAKE_INIT: u8 = 1;
/// Message type of a cookie reply.
const HANDSHAKE_COOKIE: u8 = 3;

/// Handshake events kept until [`Router::poll_handshake`] takes them.
pub const MAX_EVENTS: usize = 1024;

/// Counters of what the router did, for health and debugging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Datagrams that parsed as WireGuard messages.
    pub datagrams_in: u64,
    /// Not a WireGuard message at all.
    pub dropped_malformed: u64,
    /// Handshake initiation with a bad mac1 (not meant for our key).
    pub dropped_bad_mac: u64,
    /// Initiation from a key we don't know, or a message for an index we don't know.
    pub dropped_unknown_peer: u64,
    /// Failed to authenticate or decrypt (bad tag, replay, stale session).
    pub dropped_invalid: u64,
    /// Decrypted fine but the source address is outside the peer's allowed IPs.
    pub dropped_spoofed: u64,
    /// IPv6 inside the tunnel (unsupported) or otherwise unroutable inbound.
    pub dropped_unroutable_in: u64,
    /// An outbound IP packet for an address no peer owns, or a peer with no endpoint yet.
    pub dropped_unroutable_out: u64,
    /// Cookie replies sent because the router is under load.
    pub cookie_replies: u64,
    /// Authenticated handshakes answered.
    pub handshakes: u64,
    /// Handshake messages dropped because the handshake queue was full.
    pub dropped_handshake_overload: u64,
    /// Handshake messages dropped under load (a loud source without a cookie beyond its cookie
    /// replies, or with one beyond its per-second share), or from a source past
    /// [`BAD_MACS_PER_SOURCE`] this second.
    pub dropped_rate_limited: u64,
    /// Handshake messages waiting for their X25519 work right now.
    pub handshake_queue: u64,
    /// Source addresses whose handshake messages are blocked right now (at most
    /// [`BLOCKED_SOURCES`]; see [`Router::poll_blocked_sources`]).
    pub blocked_sources: u64,
    /// Times a source was added to the block list (a source that keeps flooding is added
    /// again after each [`BLOCK_FOR`]).
    pub source_blocks: u64,
}

/// The sans-IO WireGuard router. See the module docs for the contract.
pub struct Router {
    secret: StaticSecret,
    public: XPublic,
    /// Checks mac1 only (it is never under load). Shared with every peer's `Tunn`, whose own
    /// check must never answer with a cookie: when to demand one is decided by `admission`.
    mac1: Arc<RateLimiter>,
    /// The handshake queue and the load policy (`handshake.rs`).
    admission: Admission,
    peers: HashMap<u32, Peer>,
    by_key: HashMap<[u8; 32], u32>,
    /// Exact-address routes (/32 allowed IPs), the common case.
    by_host: HashMap<Ipv4Addr, u32>,
    used_indices: HashSet<u32>,
    rng: Box<dyn RngCore + Send>,
    transmit: VecDeque<Transmit>,
    inbound: VecDeque<Inbound>,
    handshakes: VecDeque<Handshake>,
    stats: RouterStats,
    next_tick: Option<Instant>,
    buf: Vec<u8>,
    /// Buffers for transmits and inbound packets, given back by [`Router::recycle`].
    pool: PacketPool,
}

/// Why a peer could not be added to the router.
#[derive(Debug, thiserror::Error)]
pub enum AddRouteError {
    /// The allowed IPs overlap another peer's; source addresses would be ambiguous.
    #[error("allowed IPs of the new peer overlap those of another peer")]
    Overlap,
}

impl Router {
    /// A router for the server key, drawing peer indices from `rng`.
    pub fn new(server_key: &PrivateKey, rng: Box<dyn RngCore + Send>) -> Router {
        let secret = StaticSecret::from(*server_key.as_bytes());
        let public = XPublic::from(&secret);
        Router {
            mac1: Arc::new(RateLimiter::new(&public, u64::MAX)),
            admission: Admission::new(&public),
            secret,
            public,
            peers: HashMap::new(),
            by_key: HashMap::new(),
            by_host: HashMap::new(),
            used_indices: HashSet::new(),
            rng,
            transmit: VecDeque::new(),
            inbound: VecDeque::new(),
            handshakes: VecDeque::new(),
            stats: RouterStats::default(),
            next_tick: None,
            buf: vec![0u8; MAX_DATAGRAM],
            pool: PacketPool::default(),
        }
    }

    /// Adds a peer, or replaces the one with the same public key (dropping its sessions).
    pub fn upsert_peer(&mut self, config: PeerConfig) -> Result<u32, AddRouteError> {
        self.remove_peer(&config.public_key);
        for p in self.peers.values() {
            if p.config
                .allowed_ips
                .iter()
                .any(|a| config.allowed_ips.iter().any(|b| a.overlaps(b)))
            {
                return Err(AddRouteError::Overlap);
            }
        }
        let index = self.fresh_index();
        for net in &config.allowed_ips {
            if net.prefix() == 32 {
                self.by_host.insert(net.addr(), index);
            }
        }
        self.by_key.insert(*config.public_key.as_bytes(), index);
        let peer = Peer::new(&self.secret, config, index, self.mac1.clone());
        self.peers.insert(index, peer);
        Ok(index)
    }

    /// Removes a peer; its sessions end at once. Returns whether it existed.
    pub fn remove_peer(&mut self, key: &PublicKey) -> bool {
        let Some(index) = self.by_key.remove(key.as_bytes()) else {
            return false;
        };
        self.by_host.retain(|_, i| *i != index);
        self.peers.remove(&index);
        true
    }

    /// A random 24-bit index that no peer of this router has ever used.
    fn fresh_index(&mut self) -> u32 {
        loop {
            let i = self.rng.next_u32() & 0x00ff_ffff;
            if self.used_indices.insert(i) {
                return i;
            }
        }
    }

    /// Feeds one UDP datagram received from `from`. A data message is decrypted at once (see
    /// [`Router::poll_inbound`]); a handshake message passes the cheap checks and waits for
    /// [`Router::handle_timeout`], or is dropped or answered with a cookie reply under load.
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        // Type and exact length only: garbage costs nothing more.
        let Ok(packet) = Tunn::parse_incoming_packet(datagram) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        self.stats.datagrams_in += 1;
        let index = match packet {
            Packet::PacketData(p) => {
                self.deliver(p.receiver_idx >> 8, from, datagram, false);
                return;
            }
            Packet::HandshakeInit(_) => None,
            Packet::HandshakeResponse(p) => Some(p.receiver_idx >> 8),
            Packet::PacketCookieReply(p) => Some(p.receiver_idx >> 8),
        };
        if index.is_some_and(|i| !self.peers.contains_key(&i)) {
            self.stats.dropped_unknown_peer += 1;
            return;
        }
        if let Some(reply) =
            self.admission
                .handle_message(from, datagram, &self.mac1, &mut self.stats)
        {
            self.transmit.push_back(Transmit {
                dst: from,
                payload: self.pool.copy_of(reply.as_bytes()),
            });
        }
    }

    /// Does the X25519 work of one queued handshake message.
    fn handle_handshake(&mut self, p: Pending) {
        let Ok(packet) = Tunn::parse_incoming_packet(&p.datagram) else {
            return; // checked when it was queued
        };
        let initiation = p.datagram[0] == HANDSHAKE_INIT;
        let index = match packet {
            Packet::HandshakeInit(init) => {
                let Ok(half) = parse_handshake_anon(&self.secret, &self.public, &init) else {
                    self.stats.dropped_invalid += 1;
                    return;
                };
                match self.by_key.get(&half.peer_static_public) {
                    Some(i) => *i,
                    None => {
                        self.stats.dropped_unknown_peer += 1;
                        return;
                    }
                }
            }
            Packet::HandshakeResponse(r) => r.receiver_idx >> 8,
            Packet::PacketCookieReply(c) => c.receiver_idx >> 8,
            Packet::PacketData(_) => return, // never queued
        };
        self.deliver(index, p.from, &p.datagram, initiation);
    }

    /// Hands a datagram to the peer with this index and acts on the outcome.
    fn deliver(&mut self, index: u32, from: SocketAddr, datagram: &[u8], is_initiation: bool) {
        let Some(peer) = self.peers.get_mut(&index) else {
            self.stats.dropped_unknown_peer += 1;
            return;
        };
        let stats = &mut self.stats;
        match peer.decapsulate(from, datagram, &mut self.buf) {
            Err(_) => stats.dropped_invalid += 1,
            Ok(Decap::Nothing { authenticated }) => {
                if authenticated {
                    peer.endpoint = Some(from);
                }
            }
            Ok(Decap::Reply {
                packet,
                authenticated,
            }) => {
                self.transmit.push_back(Transmit {
                    dst: from,
                    payload: self.pool.copy_of(packet),
                });
                if !authenticated {
                    stats.cookie_replies += 1;
                    return;
                }
                if is_initiation {
                    stats.handshakes += 1;
                    if self.handshakes.len() >= MAX_EVENTS {
                        self.handshakes.pop_front();
                    }
                    self.handshakes.push_back(Handshake {
                        peer: peer.config.public_key,
                        from,
                    });
                }
                peer.endpoint = Some(from);
                let transmit = &mut self.transmit;
                let pool = &mut self.pool;
                peer.drain_queued(&mut self.buf, |p| {
                    transmit.push_back(Transmit {
                        dst: from,
                        payload: pool.copy_of(p),
                    })
                });
            }
            Ok(Decap::Ipv4 { packet, src }) => {
                peer.endpoint = Some(from);
                if peer.allows(src) {
                    self.inbound.push_back(Inbound {
                        peer: peer.config.public_key,
                        packet: self.pool.copy_of(packet),
                    });
                } else {
                    stats.dropped_spoofed += 1;
                    tracing::debug!(%src, peer = %peer.config.public_key, "dropped packet from outside allowed IPs");
                }
            }
            Ok(Decap::Ipv6) => {
                peer.endpoint = Some(from);
                stats.dropped_unroutable_in += 1;
            }
        }
    }

    /// Routes one IPv4 packet from the netstack to the peer owning its destination.
    pub fn handle_ip_packet(&mut self, packet: &[u8]) {
        let Some(IpAddr::V4(dst)) = Tunn::dst_address(packet) else {
            self.stats.dropped_unroutable_out += 1;
            return;
        };
        let Some(index) = self.route(dst) else {
            self.stats.dropped_unroutable_out += 1;
            return;
        };
        let peer = self
            .peers
            .get_mut(&index)
            .expect("routes point at live peers");
        match (peer.encapsulate(packet, &mut self.buf), peer.endpoint) {
            (Encap::Send(p), Some(dst)) => self.transmit.push_back(Transmit {
                dst,
                payload: self.pool.copy_of(p),
            }),
            (Encap::Send(_), None) => self.stats.dropped_unroutable_out += 1,
            _ => {}
        }
    }

    /// The peer whose allowed IPs contain `dst` (exact /32 first, then wider ranges).
    pub fn route(&self, dst: Ipv4Addr) -> Option<u32> {
        if let Some(i) = self.by_host.get(&dst) {
            return Some(*i);
        }
        self.peers
            .values()
            .filter_map(|p| {
                p.config
                    .allowed_ips
                    .iter()
                    .filter(|n| n.contains(dst))
                    .map(|n| n.prefix())
                    .max()
                    .map(|len| (len, p.index))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Advances time: does the X25519 work of up to [`HANDSHAKES_PER_TURN`] queued handshake
    /// messages (those with a cookie first, at most [`HANDSHAKES_PER_SECOND`] per second), runs
    /// every peer's timers each [`TICK`], and starts the per-second budgets and per-source
    /// counts over each [`RATE_LIMIT_RESET`]. Call it whenever `now >= poll_timeout()`, and
    /// after every batch of datagrams.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.admission.handle_timeout(now, &mut self.stats);
        for _ in 0..HANDSHAKES_PER_TURN {
            let Some(p) = self.admission.next_work() else {
                break;
            };
            self.handle_handshake(p);
        }
        self.stats.handshake_queue = self.admission.queued() as u64;
        if self.next_tick.is_some_and(|t| now < t) {
            return;
        }
        self.next_tick = Some(now + TICK);
        for peer in self.peers.values_mut() {
            if let (Encap::Send(p), Some(dst)) = (peer.update_timers(&mut self.buf), peer.endpoint)
            {
                self.transmit.push_back(Transmit {
                    dst,
                    payload: self.pool.copy_of(p),
                });
            }
        }
    }

    /// The next instant at which [`Router::handle_timeout`] must be called: at once (the last
    /// `now`) while handshake messages wait and this second's budget allows more.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(now) = self.admission.work_due() {
            return Some(now);
        }
        [self.next_tick, self.admission.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The source addresses whose handshake messages (initiations, responses, cookie replies)
    /// the router drops now, when that list changed since the last call; `None` when it did
    /// not. Their data messages are never blocked. Call after every [`Router::handle_timeout`]
    /// (sources are added by [`Router::handle_datagram`] and expire in `handle_timeout`).
    pub fn poll_blocked_sources(&mut self) -> Option<Vec<IpAddr>> {
        self.admission.poll_blocked_sources()
    }

    /// Takes back a buffer for reuse: a sent [`Transmit`]'s payload, or any spare one.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    /// Buffers kept for reuse now.
    pub fn spare_buffers(&self) -> usize {
        self.pool.len()
    }

    /// Next datagram to send (give its payload back with [`Router::recycle`] once sent). Call
    /// until `None` after every `handle_*`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// Next decrypted, allowed-IP-checked packet for the netstack. Call until `None` after
    /// every `handle_datagram`.
    pub fn poll_inbound(&mut self) -> Option<Inbound> {
        self.inbound.pop_front()
    }

    /// Counters so far.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// Next completed handshake initiation. Call until `None` after every `handle_datagram`.
    pub fn poll_handshake(&mut self) -> Option<Handshake> {
        self.handshakes.pop_front()
    }

    /// All peers, for statistics.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// The WireGuard endpoint of the peer owning tunnel address `ip`.
    pub fn endpoint_of(&self, ip: Ipv4Addr) -> Option<SocketAddr> {
        self.route(ip)
            .and_then(|i| self.peers.get(&i))
            .and_then(|p| p.endpoint)
    }

    /// The peer with this public key.
    pub fn peer(&self, key: &PublicKey) -> Option<&Peer> {
        self.by_key
            .get(key.as_bytes())
            .and_then(|i| self.peers.get(i))
    }

    /// How many peers it serves.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether it serves no peer.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests;
