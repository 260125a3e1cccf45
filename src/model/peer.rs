//! The server and its peers: what the appliance knows about who may connect.
//!
//! Pure data in checked types ([`peers`] crate types for names, keys, addresses). Stored by
//! [`crate::store`] (its rows are private to it), decided on by [`crate::registry`], routed by
//! the network driver.

use std::net::Ipv4Addr;

use peers::{Endpoint, Ipv4Net, PeerName, PresharedKey, PrivateKey, PublicKey, Role};

use super::AuditEntry;

/// The server's identity and network settings, written once by `init`.
#[derive(Clone, Debug)]
pub struct ServerRecord {
    /// The server's static WireGuard key.
    pub private_key: PrivateKey,
    /// UDP port the WireGuard socket listens on.
    pub listen_port: u16,
    /// The tunnel interface address with its prefix, e.g. `10.88.88.1/24`.
    pub interface: Ipv4Net,
    /// What clients put in `Endpoint =`.
    pub endpoint: Endpoint,
    /// Unix seconds when the server was initialised.
    pub created_at: u64,
}

impl ServerRecord {
    /// The tunnel subnet (network address and prefix), e.g. `10.88.88.0/24`.
    pub fn subnet(&self) -> Ipv4Net {
        Ipv4Net::new(self.interface.network(), self.interface.prefix())
            .expect("a stored prefix is valid")
    }
}

/// One WireGuard peer as the server knows it. The client's private key is never stored.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerRecord {
    /// Unique name.
    pub name: PeerName,
    /// What it may do.
    pub role: Role,
    /// Its WireGuard public key.
    pub public_key: PublicKey,
    /// Optional preshared key (post-quantum hedge).
    pub preshared_key: Option<PresharedKey>,
    /// The peer's tunnel address (first entry of its allowed IPs, a /32).
    pub address: Ipv4Addr,
    /// Source addresses the peer may use inside the tunnel.
    pub allowed_ips: Vec<Ipv4Net>,
    /// A disabled peer stays stored but cannot handshake.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: u64,
}

/// Per-peer traffic statistics, persisted now and then by the server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerStats {
    /// Unix seconds of the last completed handshake.
    pub last_handshake: Option<u64>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// The peer's current UDP endpoint, as `ip:port`.
    pub endpoint: Option<String>,
}

/// What a planned peer operation writes.
#[derive(Debug, Default)]
pub struct PeerChange {
    /// Rows to insert or replace (keyed by name).
    pub upsert: Vec<PeerRecord>,
    /// Names to delete, with their statistics.
    pub remove: Vec<PeerName>,
    /// The audit entry committed in the same transaction.
    pub audit: Option<AuditEntry>,
}
