//! The network state of the appliance as one synchronous step.
//!
//! Layer: sans-IO core (the composition of [`Router`] and [`Stack`]). It owns both and the
//! plumbing between them; it never touches a socket, reads a clock or sleeps, so the whole
//! stack can run under virtual time (see `src/driver/tests.rs`). Input in:
//! [`Engine::handle_datagram`] and [`Engine::handle_command`]. Then [`Engine::turn`] with the
//! current time: runs the WireGuard timers, hands decrypted packets to smoltcp, polls it,
//! encrypts what it sends, and returns the next deadline. Work out, drained after every turn:
//! [`Engine::poll_transmit`] (UDP datagrams) and [`Engine::poll_accept`] (new TCP
//! connections, with the peer's endpoint filled in).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use peers::PublicKey;

use super::{peer_config, Command, LivePeerStats};
use crate::directory::Roster;
use crate::netstack::{self, Accepted, Limits, Stack};
use crate::tunnel::{Handshake, Router, RouterStats, Transmit, TICK};

/// A peer that handshakes after this long or more without one (or for the first time since
/// start) is logged at INFO as online, so journald shows who is active; the handshakes of a
/// peer that stays connected (every 2 minutes) are not.
pub const ONLINE_GAP: Duration = Duration::from_secs(180);

/// Router + netstack, driven by the caller. See the module docs for the contract.
pub struct Engine {
    router: Router,
    stack: Stack,
    directory: Arc<RwLock<Roster>>,
    /// The instant the netstack's clock counts from.
    origin: Instant,
    accepted: VecDeque<Accepted>,
    /// The last completed handshake of each peer, for the "peer online" log.
    handshakes: HashMap<PublicKey, Instant>,
}

impl Engine {
    /// An engine serving the peers already in `router` on `address/prefix`. `directory` is
    /// kept in step with the router by [`Engine::handle_command`]; `seed` seeds smoltcp;
    /// `now` is the origin of the netstack's clock.
    pub fn new(
        router: Router,
        address: Ipv4Addr,
        prefix: u8,
        limits: Limits,
        directory: Arc<RwLock<Roster>>,
        seed: u64,
        now: Instant,
    ) -> Engine {
        Engine {
            router,
            stack: Stack::new(address, prefix, limits, seed, std::time::Duration::ZERO),
            directory,
            origin: now,
            accepted: VecDeque::new(),
            handshakes: HashMap::new(),
        }
    }

    /// Feeds one UDP datagram received from `from`. Run [`Engine::turn`] afterwards (one turn
    /// may follow a batch of datagrams).
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8]) {
        self.router.handle_datagram(from, datagram);
    }

    /// Applies a command from the rest of the process (peer changes take effect at once) and
    /// answers it. Run [`Engine::turn`] afterwards.
    pub fn handle_command(&mut self, cmd: Command) {
        let router = &mut self.router;
        let stack = &mut self.stack;
        match cmd {
            Command::UpsertPeer(rec, done) => {
                let old = self.directory.read().unwrap().by_name(&rec.name).cloned();
                // A role change alone keeps the tunnel and connections; anything that changes
                // who may use the tunnel (key, PSK, addresses, enabled) ends the old sessions.
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
                self.directory.write().unwrap().upsert(rec);
                let _ = done.send(());
            }
            Command::RemovePeer { name, done } => {
                if let Some(old) = self.directory.write().unwrap().remove(&name) {
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

    /// Runs one step at `now`: WireGuard timers, decrypted packets into smoltcp, smoltcp
    /// (ingress, sockets, pipes, egress), its packets into the tunnels. Returns the instant by
    /// which `turn` must run again if no input arrives; run it earlier after any input or
    /// when a connection's pipe was read, written or closed. Afterwards drain
    /// [`Engine::poll_transmit`] and [`Engine::poll_accept`].
    pub fn turn(&mut self, now: Instant) -> Instant {
        self.router.handle_timeout(now);
        while let Some(h) = self.router.poll_handshake() {
            self.note_handshake(h, now);
        }
        while let Some(inb) = self.router.poll_inbound() {
            self.stack.handle_packet(inb.packet);
        }
        let since_origin = now.saturating_duration_since(self.origin);
        self.stack.poll(since_origin);
        while let Some(pkt) = self.stack.poll_transmit() {
            self.router.handle_ip_packet(&pkt);
            self.stack.recycle(pkt);
        }
        // The stack kept the buffers of the packets it read; the router draws those.
        while self.router.spare_buffers() < netstack::pool::KEPT / 2 {
            match self.stack.spare_buffer() {
                Some(b) => self.router.recycle(b),
                None => break,
            }
        }
        while let Some(mut conn) = self.stack.poll_accept() {
            conn.endpoint = self.router.endpoint_of(*conn.remote.ip());
            self.accepted.push_back(conn);
        }
        let mut deadline = self.router.poll_timeout().unwrap_or(now + TICK);
        if let Some(d) = self.stack.poll_delay(since_origin) {
            deadline = deadline.min(now + d);
        }
        deadline
    }

    /// Logs a peer coming online: its first handshake after [`ONLINE_GAP`] or more.
    fn note_handshake(&mut self, h: Handshake, now: Instant) {
        let was_offline = self
            .handshakes
            .insert(h.peer, now)
            .is_none_or(|t| now.saturating_duration_since(t) >= ONLINE_GAP);
        if was_offline {
            let dir = self.directory.read().unwrap();
            let name = dir
                .iter()
                .find(|p| p.public_key == h.peer)
                .map(|p| p.name.to_string())
                .unwrap_or_else(|| "?".into());
            tracing::info!(peer = %name, endpoint = %h.from, "peer online (first handshake after 3 min or more offline)");
        }
    }

    /// Next UDP datagram to send. Call until `None` after every turn; give the payload back
    /// with [`Engine::recycle`] once sent.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.router.poll_transmit()
    }

    /// The sources whose handshake messages the router blocks, when that list changed (see
    /// [`Router::poll_blocked_sources`]). Call after every turn.
    pub fn poll_blocked_sources(&mut self) -> Option<Vec<IpAddr>> {
        self.router.poll_blocked_sources()
    }

    /// Takes back a sent datagram's buffer for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.router.recycle(buf);
    }

    /// Next newly established TCP connection. Call until `None` after every turn.
    pub fn poll_accept(&mut self) -> Option<Accepted> {
        self.accepted.pop_front()
    }

    /// The router's and the netstack's counters.
    pub fn stats(&self) -> (RouterStats, netstack::Stats) {
        (self.router.stats(), self.stack.stats())
    }

    /// Resident bytes of the netstack's socket buffers (a `mincore` per buffer: sample it,
    /// do not call it every turn).
    pub fn socket_buffer_resident_bytes(&self) -> usize {
        self.stack.socket_buffer_resident_bytes()
    }

    /// The router, for inspection.
    pub fn router(&self) -> &Router {
        &self.router
    }
}
