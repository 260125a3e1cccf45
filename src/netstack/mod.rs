//! The userspace TCP/IP stack that owns the tunnel address.
//!
//! Layer: sans-IO core. [`Stack`] wraps a smoltcp `Interface` (`Medium::Ip`) holding the
//! server's tunnel address (default `10.88.88.1/24`). It answers ICMP echo and accepts TCP on
//! one port (8888). The driver feeds it decrypted IP packets with [`Stack::handle_packet`],
//! calls [`Stack::poll`] with the current time, and drains [`Stack::poll_transmit`] (IP
//! packets for the router) and [`Stack::poll_accept`] (new connections). [`Stack::poll_delay`]
//! says when to poll again. It never reads a clock, sleeps or touches a runtime.
//!
//! Memory: socket buffers are reserved at full size but backed by pages only as they are used,
//! and given back once a connection has been quiet for [`Limits::idle_release`] (the private
//! `pages` module), so an idle keep-alive connection holds no buffer memory.
//!
//! Connections: smoltcp has one socket per connection, so the stack arms one listening socket
//! per SYN it sees (plus a small spare pool), capped per peer address and overall. The caps are
//! applied to the SYN itself, before any socket or buffer exists: a SYN over its peer's cap is
//! dropped (nothing allocated, nothing sent). At the overall cap a peer still under its fair
//! share gets room by evicting (RST) the oldest idle connection of the peer holding the most,
//! so a few peers cannot lock the others out. That admission lives in the private `admission`
//! module, the smoltcp device (two packet queues) in `device`. Each established connection is
//! bridged to the application through a [`Pipe`] (two bounded byte buffers with readable /
//! writable / closed state, [`pipe`]). The tokio adapter lives apart in [`stream`]: its
//! [`stream::Stream`] is `AsyncRead`/`AsyncWrite` over a pipe and rings the driver's `Notify`
//! when it writes, reads or closes, so the driver never polls on a timer for data.
//!
//! Service: a poll visits only the connections with something to do, not all of them. Each
//! connection's smoltcp socket and its pipe hold a waker that puts the connection on a
//! *to-serve* list: smoltcp wakes it when data arrives, when sent data is acknowledged (room
//! to send) and on every state change (including timeouts and resets); the pipe wakes it when
//! the application writes, drains a full pipe, closes or drops its end. New connections are on
//! the list, and a quiet connection comes due once more when its buffer pages may be released
//! (a min-heap of those deadlines). The cost of a poll is thus the connections that moved, not
//! the connections held. smoltcp itself still visits every socket to egress (it has no list of
//! sockets with something to send), so a poll runs ingress, then the pipes, then one egress walk
//! ([`Stats::egress_walks`]).

mod admission;
mod device;
mod pages;
pub mod pipe;
pub mod pool;
pub mod stream;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::time::Duration;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

pub(crate) use device::{smol_now, QueueDevice};
pub use pipe::{AppPipe, Pipe, SharedPipe};
pub use pool::PacketPool;

/// Tunables for the TCP side.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The TCP port served; by default [`crate::API_PORT`] (8888).
    pub port: u16,
    /// Connections (including half-open) one tunnel address may hold. SYNs over it are
    /// dropped before anything is allocated. Default: the API's own per-peer cap (32) plus
    /// [`Limits::REFUSAL_HEADROOM`], so a client slightly over the cap still reads the API's
    /// explanatory 429 while a client far over it costs nothing.
    pub per_peer: usize,
    /// Connections (including half-open) overall; the spare listening sockets come on top.
    pub total: usize,
    /// smoltcp receive buffer per connection. Requests are small and smoltcp cannot grow a
    /// socket's buffers, so this stays small; the peer's own window scaling is still honoured.
    pub socket_rx_buffer: usize,
    /// smoltcp send buffer per connection: bytes in flight towards the phone. 128 KiB holds
    /// the whole 81 KB openapi.json, so one reply never waits for the application.
    pub socket_tx_buffer: usize,
    /// Bytes buffered between a socket and its [`Pipe`], each direction.
    pub stream_buffer: usize,
    /// Spare listening sockets kept armed even when no SYN is pending.
    pub spare_listeners: usize,
    /// A connection quiet this long, with nothing queued either way, gives its socket
    /// buffers' pages back (they fault in again, zeroed, on the next request).
    pub idle_release: Duration,
    /// TCP keepalive interval; with `timeout`, dead phones release their sockets.
    pub keepalive: Duration,
    /// Abort a connection whose peer stops acknowledging for this long.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            port: crate::API_PORT,
            per_peer: 32 + Limits::REFUSAL_HEADROOM,
            total: 512,
            socket_rx_buffer: 16 * 1024,
            socket_tx_buffer: 128 * 1024,
            stream_buffer: 64 * 1024,
            spare_listeners: 2,
            idle_release: Duration::from_secs(2),
            keepalive: Duration::from_secs(25),
            timeout: Duration::from_secs(75),
        }
    }
}

impl Limits {
    /// Connections a peer may open past the API's per-peer cap, so that it is told why
    /// (429) rather than silently dropped; past that, SYNs are dropped.
    pub const REFUSAL_HEADROOM: usize = 4;

    /// The defaults with the per-peer cap matched to the API's `max_connections_per_peer`.
    pub fn for_api_cap(max_connections_per_peer: usize) -> Limits {
        Limits {
            per_peer: max_connections_per_peer + Limits::REFUSAL_HEADROOM,
            ..Limits::default()
        }
    }
}

/// Counters for health and debugging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections handed to the application.
    pub accepted: u64,
    /// SYNs dropped because the peer or the appliance was at its connection cap.
    pub refused_over_cap: u64,
    /// Idle connections reset at the overall cap to make room for a lighter peer.
    pub evicted: u64,
    /// TCP connections held right now, half-open included.
    pub open_connections: usize,
    /// Capacity of the smoltcp socket buffers reserved now (listening sockets included):
    /// address space, of which only the pages in use are memory
    /// ([`Stack::socket_buffer_resident_bytes`]).
    pub socket_buffer_bytes: usize,
    /// Connection visits by the polls so far: each one a connection that had something to do
    /// (see "Service" in the module docs); idle connections add nothing.
    pub serviced: u64,
    /// Times a poll had smoltcp walk every socket for egress: one per poll, two when the
    /// pipes of connections that egress itself changed (a FIN sent, a timeout) had more to send.
    pub egress_walks: u64,
}

/// A freshly established TCP connection. Dropping it (or every holder of its pipe) closes
/// the connection.
pub struct Accepted {
    /// The client's tunnel address and port (trustworthy: the router checked allowed IPs).
    pub remote: SocketAddrV4,
    /// The peer's WireGuard endpoint at accept time (filled in by the driver).
    pub endpoint: Option<std::net::SocketAddr>,
    /// The application's end of the connection.
    pub pipe: AppPipe,
}

struct Conn {
    remote: Option<SocketAddrV4>,
    /// Set once established and handed to the application.
    pipe: Option<SharedPipe>,
    fin_sent: bool,
    /// When data last moved either way (or the connection was established).
    last_active: Duration,
    /// Reset to make room at the overall cap; no longer counted, reaped once closed.
    evicted: bool,
    /// Its socket buffers may hold pages (data moved since they were last released).
    pages_held: bool,
    /// Its page-release deadline is in [`Stack::release_due`].
    release_armed: bool,
    /// Puts this connection on the to-serve list (registered with its socket and pipe).
    mark: Waker,
}

/// The list of connections to serve at the next poll, filled by wakers.
type ToServe = Arc<Mutex<Vec<SocketHandle>>>;

/// The waker of one connection: waking it puts the connection on the to-serve list.
struct Mark {
    handle: SocketHandle,
    to_serve: ToServe,
}

impl Wake for Mark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.to_serve.lock().unwrap().push(self.handle);
    }
}

/// The memory behind one socket's buffers (see [`pages`]).
struct SocketPages {
    rx: pages::PageBuf,
    tx: pages::PageBuf,
}

/// The userspace TCP/IP stack. See the module docs for the contract.
pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    device: QueueDevice,
    address: Ipv4Addr,
    limits: Limits,
    listeners: Vec<SocketHandle>,
    conns: HashMap<SocketHandle, Conn>,
    /// Connections in `conns` not evicted (the ones the caps count).
    live: usize,
    /// Connections marked for service since the last poll (duplicates possible).
    to_serve: ToServe,
    /// Scratch for the list being served (kept for its allocation).
    serving: Vec<SocketHandle>,
    /// Connections found closed by the pipes' service, released after this poll's egress
    /// (duplicates possible).
    dead: Vec<SocketHandle>,
    /// When quiet connections may give their buffer pages back (earliest first; an entry may
    /// be stale: the connection is re-checked and re-armed when it comes due).
    release_due: BinaryHeap<Reverse<(Duration, SocketHandle)>>,
    /// SYNs seen since the last poll, by source address.
    pending_syns: HashMap<Ipv4Addr, usize>,
    accepted: VecDeque<Accepted>,
    stats: Stats,
    /// The memory of every socket's buffers, by socket. Declared after `sockets` so that it
    /// is dropped after them: a socket's buffers point into these mappings.
    pages: HashMap<SocketHandle, SocketPages>,
}

impl Stack {
    /// A stack owning `address/prefix`; `seed` seeds smoltcp's initial sequence numbers and
    /// ports. `now` is time since an arbitrary, fixed origin.
    pub fn new(address: Ipv4Addr, prefix: u8, limits: Limits, seed: u64, now: Duration) -> Stack {
        let mut device = QueueDevice::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, smol_now(now));
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(address), prefix))
                .expect("one address fits");
        });
        let mut stack = Stack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            address,
            limits,
            listeners: Vec::new(),
            conns: HashMap::new(),
            live: 0,
            to_serve: Arc::new(Mutex::new(Vec::new())),
            serving: Vec::new(),
            dead: Vec::new(),
            release_due: BinaryHeap::new(),
            pending_syns: HashMap::new(),
            accepted: VecDeque::new(),
            stats: Stats::default(),
            pages: HashMap::new(),
        };
        stack.arm_listeners(0);
        stack
    }

    /// A new socket, added to the set, over fresh page-backed buffers (nothing resident).
    fn add_socket(&mut self) -> SocketHandle {
        let pages = SocketPages {
            rx: pages::PageBuf::new(self.limits.socket_rx_buffer),
            tx: pages::PageBuf::new(self.limits.socket_tx_buffer),
        };
        self.stats.socket_buffer_bytes += pages.rx.len() + pages.tx.len();
        // SAFETY: the slices live in this socket only; the socket leaves the set (and is
        // dropped) in `remove_socket` before its pages, and `sockets` drops before `pages`.
        let (rx, tx) = unsafe { (pages.rx.slice(), pages.tx.slice()) };
        let mut s = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        s.set_nagle_enabled(false);
        s.set_keep_alive(Some(self.limits.keepalive.into()));
        s.set_timeout(Some(self.limits.timeout.into()));
        s.set_ack_delay(Some(smoltcp::time::Duration::from_millis(5)));
        s.listen(self.limits.port).expect("port is non-zero");
        let h = self.sockets.add(s);
        self.pages.insert(h, pages);
        h
    }

    /// Drops a socket, then the memory behind its buffers.
    fn remove_socket(&mut self, h: SocketHandle) {
        drop(self.sockets.remove(h));
        if let Some(p) = self.pages.remove(&h) {
            self.stats.socket_buffer_bytes -= p.rx.len() + p.tx.len();
        }
    }

    /// Bytes of socket buffer memory actually held now (resident pages), every socket.
    pub fn socket_buffer_resident_bytes(&self) -> usize {
        self.pages
            .values()
            .map(|p| p.rx.resident() + p.tx.resident())
            .sum()
    }

    /// Runs the stack: ingress, socket state, data to and from pipes, egress.
    /// Call after feeding packets, after the application read, wrote or closed a pipe, and
    /// when [`Stack::poll_delay`] has elapsed.
    pub fn poll(&mut self, now: Duration) {
        let syns: usize = self.pending_syns.drain().map(|(_, n)| n).sum();
        self.arm_listeners(syns);
        let at = now;
        let now = smol_now(now);
        // Ingress, then the pipes, then one egress: what the application already wrote leaves
        // with the acknowledgements of this poll's packets, and smoltcp walks its sockets for
        // egress once per poll, not once before and once after the pipes.
        while self
            .iface
            .poll_ingress_single(now, &mut self.device, &mut self.sockets)
            != PollIngressSingleResult::None
        {}
        self.collect_new_connections(at);
        self.shuttle(at);
        self.stats.egress_walks += 1;
        self.iface
            .poll_egress(now, &mut self.device, &mut self.sockets);
        // Egress can change a socket's state itself (a FIN sent, a timeout): serve those
        // connections now rather than at the next wake-up.
        if self.shuttle(at) {
            self.stats.egress_walks += 1;
            self.iface
                .poll_egress(now, &mut self.device, &mut self.sockets);
        }
        // Only after egress: an aborted or evicted socket sends its RST first.
        self.reap();
        self.arm_listeners(0);
        self.stats.open_connections = self.live_connections();
    }

    fn collect_new_connections(&mut self, now: Duration) {
        let mut still = Vec::with_capacity(self.listeners.len());
        for h in self.listeners.drain(..) {
            let s = self.sockets.get::<tcp::Socket>(h);
            if s.state() == tcp::State::Listen {
                still.push(h);
            } else {
                let remote = s.remote_endpoint().and_then(|e| match e.addr {
                    IpAddress::Ipv4(a) => Some(SocketAddrV4::new(a, e.port)),
                    #[allow(unreachable_patterns)]
                    _ => None,
                });
                let mark = Waker::from(Arc::new(Mark {
                    handle: h,
                    to_serve: self.to_serve.clone(),
                }));
                // Served at this poll (the handshake may have completed already).
                mark.wake_by_ref();
                self.conns.insert(
                    h,
                    Conn {
                        remote,
                        pipe: None,
                        fin_sent: false,
                        last_active: now,
                        evicted: false,
                        pages_held: true,
                        release_armed: false,
                        mark,
                    },
                );
                self.live += 1;
            }
        }
        self.listeners = still;
    }

    /// Moves bytes between sockets and pipes for the connections marked for service (and those
    /// whose page release came due); hands established connections to the application; reaps
    /// closed sockets ([`Stack::reap`], after egress). Returns whether anything was written to a
    /// socket.
    fn shuttle(&mut self, now: Duration) -> bool {
        while let Some(&Reverse((at, h))) = self.release_due.peek() {
            if at > now {
                break;
            }
            self.release_due.pop();
            if let Some(conn) = self.conns.get_mut(&h) {
                conn.release_armed = false;
                self.serving.push(h);
            }
        }
        self.serving.append(&mut self.to_serve.lock().unwrap());
        if self.serving.is_empty() {
            return false;
        }
        self.serving.sort_unstable();
        self.serving.dedup();
        let serving = std::mem::take(&mut self.serving);
        let mut wrote = false;
        let mut dead = std::mem::take(&mut self.dead);
        let mut relisten = Vec::new();
        for &h in &serving {
            let Some(conn) = self.conns.get_mut(&h) else {
                // Already gone, or a listener again: nothing to serve.
                continue;
            };
            self.stats.serviced += 1;
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            // Wakers are one-shot: arm them again before looking, so nothing is missed.
            s.register_recv_waker(&conn.mark);
            s.register_send_waker(&conn.mark);
            match s.state() {
                tcp::State::Listen => {
                    // Reset during the handshake: smoltcp put it back to listening.
                    relisten.push(h);
                    continue;
                }
                tcp::State::Closed => {
                    dead.push(h);
                    continue;
                }
                tcp::State::SynReceived => continue,
                _ => {}
            }
            let pipe = match &conn.pipe {
                Some(p) => p.clone(),
                None => {
                    let Some(remote) = conn.remote else {
                        s.abort();
                        continue;
                    };
                    let p = Arc::new(Mutex::new(Pipe::with_service(
                        self.limits.stream_buffer,
                        Some(conn.mark.clone()),
                    )));
                    conn.pipe = Some(p.clone());
                    self.stats.accepted += 1;
                    self.accepted.push_back(Accepted {
                        remote,
                        endpoint: None,
                        pipe: AppPipe::new(p.clone()),
                    });
                    p
                }
            };
            // Nobody holds the other end any more (the stack's two handles aside): the
            // application is gone, which closes its write side.
            let app_gone = Arc::strong_count(&pipe) == 2;
            let mut p = pipe.lock().unwrap();
            if app_gone {
                p.tx_closed = true;
            }
            // Network -> application, bounded by the pipe's capacity.
            let mut got = false;
            while s.can_recv() && p.rx.len() < p.cap {
                let room = p.cap - p.rx.len();
                let n = s
                    .recv(|data| {
                        let n = data.len().min(room);
                        p.rx.extend(&data[..n]);
                        (n, n)
                    })
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                got = true;
            }
            if got {
                // Reading freed receive window; let the next iface.poll advertise it.
                wrote = true;
            }
            if !s.may_recv() && !p.rx_eof && s.recv_queue() == 0 {
                p.rx_eof = true;
                got = true;
            }
            if got {
                p.wake_reader();
            }
            // Application -> network.
            let mut sent = false;
            while !p.tx.is_empty() && s.can_send() {
                let (a, _) = p.tx.as_slices();
                match s.send_slice(a) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        p.tx.drain(..n);
                        sent = true;
                    }
                }
            }
            if sent {
                wrote = true;
                p.wake_writer();
            }
            if got || sent {
                conn.last_active = now;
                conn.pages_held = true;
            } else if conn.pages_held
                && now >= conn.last_active + self.limits.idle_release
                && s.send_queue() == 0
                && s.recv_queue() == 0
            {
                // Quiet, and both rings empty: nothing in them will be read again.
                if let Some(pages) = self.pages.get(&h) {
                    pages.rx.release();
                    pages.tx.release();
                }
                conn.pages_held = false;
            }
            // Come back when the pages may be released. A deadline already passed found data
            // still queued: the acknowledgement or read that empties it serves it again.
            let release_at = conn.last_active + self.limits.idle_release;
            if conn.pages_held && !conn.release_armed && release_at > now {
                self.release_due.push(Reverse((release_at, h)));
                conn.release_armed = true;
            }
            if p.tx_closed && p.tx.is_empty() && !conn.fin_sent {
                s.close();
                conn.fin_sent = true;
                wrote = true;
            }
            // The application is gone and our FIN is out: nobody will read the rest, so
            // release the socket once the peer has nothing left that we must acknowledge.
            if app_gone
                && conn.fin_sent
                && p.tx.is_empty()
                && matches!(
                    s.state(),
                    tcp::State::FinWait2 | tcp::State::TimeWait | tcp::State::Closed
                )
            {
                dead.push(h);
            }
        }
        self.serving = serving;
        self.serving.clear();
        for h in relisten {
            if let Some(conn) = self.conns.remove(&h) {
                if !conn.evicted {
                    self.live -= 1;
                }
            }
            self.listeners.push(h);
        }
        self.dead = dead;
        wrote
    }

    /// Releases the sockets [`Stack::shuttle`] found closed, telling their pipes.
    fn reap(&mut self) {
        let mut dead = std::mem::take(&mut self.dead);
        dead.sort_unstable();
        dead.dedup();
        for &h in &dead {
            if let Some(conn) = self.conns.remove(&h) {
                if !conn.evicted {
                    self.live -= 1;
                }
                if let Some(p) = conn.pipe {
                    let mut p = p.lock().unwrap();
                    if !p.rx_eof || !p.tx.is_empty() {
                        p.reset = true;
                    }
                    p.rx_eof = true;
                    p.wake_reader();
                    p.wake_writer();
                }
            }
            self.remove_socket(h);
        }
        dead.clear();
        self.dead = dead;
    }

    /// Aborts every connection from an address in `nets` (a removed or disabled peer).
    pub fn abort_from(&mut self, nets: &[peers::Ipv4Net]) -> usize {
        let mut n = 0;
        for (&h, conn) in self.conns.iter_mut() {
            let Some(remote) = conn.remote else { continue };
            if !nets.iter().any(|net| net.contains(*remote.ip())) {
                continue;
            }
            self.sockets.get_mut::<tcp::Socket>(h).abort();
            tracing::debug!(%remote, "connection aborted: its peer lost access");
            if let Some(p) = &conn.pipe {
                let mut p = p.lock().unwrap();
                p.reset = true;
                p.wake_reader();
                p.wake_writer();
            }
            n += 1;
        }
        n
    }

    /// Next IP packet to hand to the router. Give its buffer back with [`Stack::recycle`].
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.device.tx.pop_front()
    }

    /// Takes back a packet buffer for reuse (one from [`Stack::poll_transmit`], or any other).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.device.pool.get_mut().give(buf);
    }

    /// A spare packet buffer (the stack keeps those of the packets it read), for another pool.
    pub fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.device.pool.get_mut().spare()
    }

    /// Next newly established connection.
    pub fn poll_accept(&mut self) -> Option<Accepted> {
        self.accepted.pop_front()
    }

    /// How long until [`Stack::poll`] must run again (`None`: only on new input).
    pub fn poll_delay(&mut self, now: Duration) -> Option<Duration> {
        let smol = self
            .iface
            .poll_delay(smol_now(now), &self.sockets)
            .map(Duration::from);
        // When the next quiet connection may give its buffer pages back (the poll that ran
        // at `now` took every deadline up to `now` off the heap).
        let release = self
            .next_release()
            .filter(|at| *at > now)
            .map(|at| at - now);
        match (smol, release) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest page-release deadline. Entries made stale by later activity move to the
    /// connection's current deadline first, so the stack is not woken early for nothing.
    fn next_release(&mut self) -> Option<Duration> {
        while let Some(&Reverse((at, h))) = self.release_due.peek() {
            let Some(conn) = self.conns.get_mut(&h).filter(|c| c.pages_held) else {
                self.release_due.pop();
                if let Some(conn) = self.conns.get_mut(&h) {
                    conn.release_armed = false;
                }
                continue;
            };
            let due = conn.last_active + self.limits.idle_release;
            if due <= at {
                return Some(at);
            }
            self.release_due.pop();
            self.release_due.push(Reverse((due, h)));
        }
        None
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

#[cfg(test)]
mod tests;
