//! The wrapper around one boringtun `noise::Tunn`.
//!
//! Layer: core (used only by [`super::Router`]). Turns boringtun's `TunnResult` into our own
//! [`Decap`] / [`Encap`] enums plus a `Result`, runs boringtun's "call again with an empty
//! datagram until Done" loop in exactly one place ([`Peer::drain_queued`]), and keeps the
//! peer's allowed IPs and authenticated endpoint next to its tunnel.
//!
//! boringtun keeps its own timers on its own clock (the process clock; in tests, with the
//! `mock-clock` feature, `mock_instant`'s virtual clock); everything else here is driven by
//! the caller.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey as XPublic, StaticSecret};
use peers::{Ipv4Net, PresharedKey, PublicKey};

/// What the router needs to know to run a peer.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The peer's key: what selects it in handshakes.
    pub public_key: PublicKey,
    /// Its optional preshared key.
    pub preshared_key: Option<PresharedKey>,
    /// Source ranges it may send from; the router drops anything else.
    pub allowed_ips: Vec<Ipv4Net>,
    /// Server-side persistent keepalive (normally `None`: the phone keeps the NAT open).
    pub keepalive: Option<u16>,
}

/// Result of feeding one authenticated-or-not datagram to a peer.
pub enum Decap<'a> {
    /// Nothing to do (a keepalive, a cookie stored, or a bad packet already counted).
    Nothing { authenticated: bool },
    /// Send this to the network (handshake response, keepalive, cookie reply).
    Reply {
        packet: &'a [u8],
        authenticated: bool,
    },
    /// A decrypted IPv4 packet from inside the tunnel, with its claimed source address.
    Ipv4 { packet: &'a [u8], src: Ipv4Addr },
    /// A decrypted IPv6 packet; the tunnel is IPv4-only, so the router drops it.
    Ipv6,
}

/// Result of encapsulating one IP packet or running the timers.
pub enum Encap<'a> {
    /// Nothing to send now.
    Nothing,
    /// Send this datagram to the peer's endpoint.
    Send(&'a [u8]),
    /// The session expired; boringtun dropped its keys.
    Expired,
}

/// One WireGuard peer: its tunnel state, allowed IPs and last authenticated endpoint.
pub struct Peer {
    tunn: Tunn,
    pub(super) config: PeerConfig,
    pub(super) endpoint: Option<SocketAddr>,
    pub(super) index: u32,
}

/// Message type of a cookie reply (WireGuard wire format).
const COOKIE_REPLY: u8 = 3;

impl Peer {
    pub(super) fn new(
        server_secret: &StaticSecret,
        config: PeerConfig,
        index: u32,
        limiter: Arc<RateLimiter>,
    ) -> Peer {
        let tunn = Tunn::new(
            server_secret.clone(),
            XPublic::from(*config.public_key.as_bytes()),
            config.preshared_key.as_ref().map(|k| *k.as_bytes()),
            config.keepalive,
            index,
            Some(limiter),
        );
        Peer {
            tunn,
            config,
            endpoint: None,
            index,
        }
    }

    /// Whether `src` is inside this peer's allowed IPs.
    pub fn allows(&self, src: Ipv4Addr) -> bool {
        self.config.allowed_ips.iter().any(|n| n.contains(src))
    }

    /// Feeds one datagram received from `from` to the tunnel.
    pub(super) fn decapsulate<'a>(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        out: &'a mut [u8],
    ) -> Result<Decap<'a>, WireGuardError> {
        match self.tunn.decapsulate(Some(from.ip()), datagram, out) {
            TunnResult::Done => Ok(Decap::Nothing {
                authenticated: datagram.first() == Some(&4),
            }),
            TunnResult::Err(e) => Err(e),
            TunnResult::WriteToNetwork(p) => {
                // A cookie reply is sent before any authentication (we are under load);
                // everything else here answers a packet that authenticated.
                let authenticated = p.first() != Some(&COOKIE_REPLY);
                Ok(Decap::Reply {
                    packet: p,
                    authenticated,
                })
            }
            TunnResult::WriteToTunnelV4(p, src) => Ok(Decap::Ipv4 { packet: p, src }),
            TunnResult::WriteToTunnelV6(..) => Ok(Decap::Ipv6),
        }
    }

    /// After a `Reply`, boringtun may hold packets queued while the handshake ran. Calls
    /// `decapsulate` with an empty datagram until it is done, handing each datagram to `send`.
    /// This is the only place that loop exists.
    pub(super) fn drain_queued(&mut self, out: &mut [u8], mut send: impl FnMut(&[u8])) {
        while let TunnResult::WriteToNetwork(p) = self.tunn.decapsulate(None, &[], out) {
            send(p);
        }
    }

    /// Encrypts one IP packet for this peer (or starts a handshake and queues it).
    pub(super) fn encapsulate<'a>(&mut self, packet: &[u8], out: &'a mut [u8]) -> Encap<'a> {
        match self.tunn.encapsulate(packet, out) {
            TunnResult::WriteToNetwork(p) => Encap::Send(p),
            TunnResult::Err(WireGuardError::ConnectionExpired) => Encap::Expired,
            _ => Encap::Nothing,
        }
    }

    /// Runs boringtun's timers (rekey, keepalive, expiry).
    pub(super) fn update_timers<'a>(&mut self, out: &'a mut [u8]) -> Encap<'a> {
        match self.tunn.update_timers(out) {
            TunnResult::WriteToNetwork(p) => Encap::Send(p),
            TunnResult::Err(WireGuardError::ConnectionExpired) => Encap::Expired,
            _ => Encap::Nothing,
        }
    }

    /// Time since the last completed handshake, and bytes received / sent inside the tunnel.
    pub fn stats(&self) -> (Option<Duration>, u64, u64) {
        let (since, tx, rx, _, _) = self.tunn.stats();
        (since, rx as u64, tx as u64)
    }

    /// What the router was told about the peer.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// Its last authenticated UDP endpoint; `None` before its first handshake.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    /// Its random 24-bit index; boringtun puts it in the top 24 bits of its session indices.
    pub fn index(&self) -> u32 {
        self.index
    }
}
