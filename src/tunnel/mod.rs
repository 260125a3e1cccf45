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
//! - Handshake initiations are checked for mac1 (and, under load, answered with a cookie reply)
//!   *before* any X25519 work, then routed by the sender's static key.
//! - Every other message is routed by its receiver index: a random 24-bit index per peer,
//!   never reused in the life of the router.
//! - A peer's endpoint changes only after a packet from it authenticates.
//! - A decrypted packet whose source address is outside the peer's allowed IPs is dropped and
//!   counted; everything that reaches [`Router::poll_inbound`] has a trustworthy source.
//! - Packets from unknown keys or indices get no reply at all.

mod peer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey as XPublic, StaticSecret};
use peers::{PrivateKey, PublicKey};
use rand_core::RngCore;

use peer::{Decap, Encap};
pub use peer::{Peer, PeerConfig};

/// How often every peer's timers run.
pub const TICK: Duration = Duration::from_millis(250);
/// How often the handshake rate limiter's counter is reset.
pub const RATE_LIMIT_RESET: Duration = Duration::from_secs(1);
/// Handshake messages per second (before cookies are demanded). Each initiation passes the
/// shared limiter twice (our mac1 pre-check and boringtun's own check), hence the factor 2.
pub const HANDSHAKES_PER_SECOND: u64 = 2 * 50;
/// Largest UDP payload we produce: an MTU-sized packet plus WireGuard overhead.
pub const MAX_DATAGRAM: usize = 65535;

/// A UDP datagram the driver must send.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// A decrypted IPv4 packet that passed the allowed-IP check.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The peer it came through.
    pub peer: PublicKey,
    pub packet: Vec<u8>,
}

/// A completed handshake initiation from a peer (authenticated and answered), for the
/// driver's "came online" log. At most [`MAX_EVENTS`] wait; older ones are dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    pub peer: PublicKey,
    pub from: SocketAddr,
}

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
    /// Cookie replies sent because handshakes arrived faster than the limit.
    pub cookie_replies: u64,
    /// Authenticated handshakes answered.
    pub handshakes: u64,
}

/// The sans-IO WireGuard router. See the module docs for the contract.
pub struct Router {
    secret: StaticSecret,
    public: XPublic,
    limiter: Arc<RateLimiter>,
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
    next_limiter_reset: Option<Instant>,
    buf: Vec<u8>,
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
            limiter: Arc::new(RateLimiter::new(&public, HANDSHAKES_PER_SECOND)),
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
            next_limiter_reset: None,
            buf: vec![0u8; MAX_DATAGRAM],
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
        let peer = Peer::new(&self.secret, config, index, self.limiter.clone());
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

    /// Feeds one UDP datagram received from `from`.
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        let Ok(packet) = Tunn::parse_incoming_packet(datagram) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        self.stats.datagrams_in += 1;
        let is_initiation = matches!(packet, Packet::HandshakeInit(_));
        let index = match packet {
            Packet::HandshakeInit(init) => {
                // mac1 (and under load mac2/cookie) before any X25519 work.
                let mut cookie = [0u8; 64];
                match self
                    .limiter
                    .verify_packet(Some(from.ip()), datagram, &mut cookie)
                {
                    Ok(_) => {}
                    Err(TunnResult::WriteToNetwork(reply)) => {
                        self.stats.cookie_replies += 1;
                        self.transmit.push_back(Transmit {
                            dst: from,
                            payload: reply.to_vec(),
                        });
                        return;
                    }
                    Err(_) => {
                        self.stats.dropped_bad_mac += 1;
                        return;
                    }
                }
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
            Packet::HandshakeResponse(p) => p.receiver_idx >> 8,
            Packet::PacketCookieReply(p) => p.receiver_idx >> 8,
            Packet::PacketData(p) => p.receiver_idx >> 8,
        };
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
                    payload: packet.to_vec(),
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
                peer.drain_queued(&mut self.buf, |p| {
                    transmit.push_back(Transmit {
                        dst: from,
                        payload: p.to_vec(),
                    })
                });
            }
            Ok(Decap::Ipv4 { packet, src }) => {
                peer.endpoint = Some(from);
                if peer.allows(src) {
                    self.inbound.push_back(Inbound {
                        peer: peer.config.public_key,
                        packet: packet.to_vec(),
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
                payload: p.to_vec(),
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

    /// Advances time: runs every peer's timers each [`TICK`] and resets the handshake rate
    /// limiter each [`RATE_LIMIT_RESET`]. Call it whenever `now >= poll_timeout()`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_limiter_reset.is_none_or(|t| now >= t) {
            self.limiter.reset_count();
            self.next_limiter_reset = Some(now + RATE_LIMIT_RESET);
        }
        if self.next_tick.is_some_and(|t| now < t) {
            return;
        }
        self.next_tick = Some(now + TICK);
        for peer in self.peers.values_mut() {
            if let (Encap::Send(p), Some(dst)) = (peer.update_timers(&mut self.buf), peer.endpoint)
            {
                self.transmit.push_back(Transmit {
                    dst,
                    payload: p.to_vec(),
                });
            }
        }
    }

    /// The next instant at which [`Router::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_tick, self.next_limiter_reset) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next datagram to send. Call until `None` after every `handle_*`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// Next decrypted, allowed-IP-checked packet for the netstack. Call until `None` after
    /// every `handle_datagram`.
    pub fn poll_inbound(&mut self) -> Option<Inbound> {
        self.inbound.pop_front()
    }

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

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests;
