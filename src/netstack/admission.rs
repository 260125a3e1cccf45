//! Connection admission: which SYNs get a socket.
//!
//! Layer: sans-IO core, part of [`Stack`]. smoltcp needs one listening socket per connection,
//! so every TCP SYN to our port is counted by source address as it arrives
//! ([`Stack::handle_packet`]), before any socket or buffer exists: over its peer's cap
//! (`Limits::per_peer`) it is dropped; at the overall cap (`Limits::total`) a peer holding at
//! least two fewer than the heaviest one gets room by evicting (RST) that peer's oldest idle
//! connection, else the SYN is dropped. The next poll arms one listening socket per admitted
//! SYN (plus the spare pool). Dropping costs nothing and sends nothing.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use smoltcp::socket::tcp;
use smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket};

use super::Stack;

impl Stack {
    /// Feeds one decrypted IPv4 packet (already allowed-IP checked by the router).
    pub fn handle_packet(&mut self, packet: Vec<u8>) {
        if let Some(src) = self.syn_source(&packet) {
            let open = self.connections_from(src) + self.pending_syns.get(&src).unwrap_or(&0);
            if open >= self.limits.per_peer {
                self.stats.refused_over_cap += 1;
                tracing::debug!(%src, open, "dropping SYN over the per-peer connection cap");
                return;
            }
            let used = self.live_connections() + self.pending_syns.values().sum::<usize>();
            if used >= self.limits.total && !self.evict_for(src, open) {
                self.stats.refused_over_cap += 1;
                tracing::debug!(%src, used, "dropping SYN over the overall connection cap");
                return;
            }
            *self.pending_syns.entry(src).or_default() += 1;
        }
        self.device.rx.push_back(packet);
    }

    /// Connections counted against the caps (evicted ones are on their way out).
    pub(super) fn live_connections(&self) -> usize {
        self.live
    }

    /// At the overall cap, makes room for `src` (holding `open`) by resetting the oldest idle
    /// connection of the peer holding the most, if that peer holds at least two more than
    /// `src` (so eviction always moves towards an even share). Returns whether it did.
    fn evict_for(&mut self, src: Ipv4Addr, open: usize) -> bool {
        let mut held: HashMap<Ipv4Addr, usize> = HashMap::new();
        for c in self.conns.values().filter(|c| !c.evicted) {
            if let Some(r) = c.remote {
                *held.entry(*r.ip()).or_default() += 1;
            }
        }
        let Some(&most) = held.values().max() else {
            return false;
        };
        if most < open + 2 {
            return false;
        }
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.evicted
                    && !c.fin_sent
                    && c.remote
                        .is_some_and(|r| *r.ip() != src && held.get(r.ip()) == Some(&most))
            })
            .filter(|(h, c)| {
                let s = self.sockets.get::<tcp::Socket>(**h);
                let quiet = s.state() == tcp::State::Established
                    && s.send_queue() == 0
                    && s.recv_queue() == 0;
                quiet
                    && c.pipe.as_ref().is_some_and(|p| {
                        let p = p.lock().unwrap();
                        p.rx.is_empty() && p.tx.is_empty()
                    })
            })
            .min_by_key(|(h, c)| (c.last_active, **h))
            .map(|(h, _)| *h);
        let Some(h) = victim else { return false };
        let conn = self.conns.get_mut(&h).expect("victim is a connection");
        conn.evicted = true;
        self.live -= 1;
        self.sockets.get_mut::<tcp::Socket>(h).abort();
        if let Some(p) = &conn.pipe {
            let mut p = p.lock().unwrap();
            p.reset = true;
            p.wake_reader();
            p.wake_writer();
        }
        self.stats.evicted += 1;
        tracing::debug!(%src, victim = ?conn.remote, "evicted an idle connection to make room");
        true
    }

    /// The source address if `packet` is a TCP SYN (without ACK) to our port.
    fn syn_source(&self, packet: &[u8]) -> Option<Ipv4Addr> {
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        if ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != self.address {
            return None;
        }
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        (tcp.syn() && !tcp.ack() && tcp.dst_port() == self.limits.port).then(|| ip.src_addr())
    }

    fn connections_from(&self, src: Ipv4Addr) -> usize {
        self.conns
            .values()
            .filter(|c| !c.evicted && c.remote.is_some_and(|r| *r.ip() == src))
            .count()
    }

    /// Keeps enough listening sockets for `syns` pending SYNs plus the spare pool.
    pub(super) fn arm_listeners(&mut self, syns: usize) {
        let want = syns.max(self.limits.spare_listeners);
        while self.listeners.len() < want
            && self.listeners.len() + self.live_connections()
                < self.limits.total + self.limits.spare_listeners
        {
            let h = self.add_socket();
            self.listeners.push(h);
        }
    }
}
