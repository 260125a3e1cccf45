//! Who is calling: the map from tunnel source address to peer record.
//!
//! Layer: core data shared (behind an `RwLock`) by the driver, which keeps it in step with the
//! router's peer table, and the HTTP API, which resolves each request's identity from it. The
//! mapping is trustworthy because the router drops any packet whose source address is outside
//! the sending peer's allowed IPs, and allowed IPs never overlap.

use std::net::Ipv4Addr;

use peers::PeerName;

use crate::model::PeerRecord;

/// The roster of peers the running appliance serves (enabled and disabled), looked up by
/// address or name.
#[derive(Default, Debug)]
pub struct Roster {
    peers: Vec<PeerRecord>,
}

impl Roster {
    /// A roster of these peers.
    pub fn new(peers: Vec<PeerRecord>) -> Roster {
        Roster { peers }
    }

    /// The enabled peer whose allowed IPs contain `ip`.
    pub fn by_address(&self, ip: Ipv4Addr) -> Option<&PeerRecord> {
        self.peers
            .iter()
            .find(|p| p.enabled && p.allowed_ips.iter().any(|n| n.contains(ip)))
    }

    /// The peer with this name.
    pub fn by_name(&self, name: &PeerName) -> Option<&PeerRecord> {
        self.peers.iter().find(|p| &p.name == name)
    }

    /// Inserts or replaces (by name) a peer.
    pub fn upsert(&mut self, rec: PeerRecord) {
        self.peers.retain(|p| p.name != rec.name);
        self.peers.push(rec);
    }

    /// Drops a peer; returns its record if it was there.
    pub fn remove(&mut self, name: &PeerName) -> Option<PeerRecord> {
        let i = self.peers.iter().position(|p| &p.name == name)?;
        Some(self.peers.remove(i))
    }

    /// How many peers it holds.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether it holds no peer.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Every peer, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &PeerRecord> {
        self.peers.iter()
    }
}
