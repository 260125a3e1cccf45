//! Deterministic netstack tests under virtual time: a second smoltcp interface plays the phone,
//! packets move between the two through plain queues, and streams (the tokio adapter over each
//! pipe) are polled with a no-op waker. No sockets, no sleeps.

use super::stream::{Connection, Stream};
use super::*;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 88, 88, 1);

struct Phone {
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
}

impl Phone {
    fn new(addr: Ipv4Addr) -> Phone {
        let mut dev = QueueDevice::default();
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut dev,
            SmolInstant::from_millis(0),
        );
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(addr), 24)).unwrap();
        });
        Phone {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
        }
    }

    fn connect(&mut self, local_port: u16) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        s.connect(
            self.iface.context(),
            IpEndpoint::new(IpAddress::Ipv4(SERVER), 8888),
            local_port,
        )
        .unwrap();
        self.sockets.add(s)
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }
}

struct Sim {
    now: Duration,
    stack: Stack,
    notify: Arc<Notify>,
    accepted: Vec<Connection>,
    /// When set, connections stay as the core hands them out (no tokio adapter).
    raw: Option<Vec<Accepted>>,
}

impl Sim {
    fn new(limits: Limits) -> Sim {
        let notify = Arc::new(Notify::new());
        let stack = Stack::new(SERVER, 24, limits, 42, Duration::ZERO);
        Sim {
            now: Duration::ZERO,
            stack,
            notify,
            accepted: Vec::new(),
            raw: None,
        }
    }

    /// Exchanges packets between the phones and the stack until both are quiet, advancing
    /// virtual time by 1 ms a round.
    fn run(&mut self, phones: &mut [&mut Phone]) {
        for _ in 0..200 {
            let mut moved = false;
            for ph in phones.iter_mut() {
                ph.iface
                    .poll(smol_now(self.now), &mut ph.dev, &mut ph.sockets);
                while let Some(p) = ph.dev.tx.pop_front() {
                    self.stack.handle_packet(p);
                    moved = true;
                }
            }
            self.stack.poll(self.now);
            while let Some(a) = self.stack.poll_accept() {
                match &mut self.raw {
                    Some(raw) => raw.push(a),
                    None => self.accepted.push(Connection::new(a, self.notify.clone())),
                }
            }
            while let Some(p) = self.stack.poll_transmit() {
                let dst = Ipv4Packet::new_checked(&p[..]).unwrap().dst_addr();
                for ph in phones.iter_mut() {
                    if ph.iface.ipv4_addr() == Some(dst) {
                        ph.dev.rx.push_back(p.clone());
                    }
                }
                moved = true;
            }
            self.now += Duration::from_millis(1);
            if !moved {
                return;
            }
        }
    }
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn read_all(stream: &mut Stream) -> Poll<io::Result<Vec<u8>>> {
    let mut out = vec![0u8; 1 << 20];
    let mut rb = ReadBuf::new(&mut out);
    match Pin::new(stream).poll_read(&mut cx(), &mut rb) {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().to_vec())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Reads the connection from client port `port` and checks it got exactly `want`.
fn expect_read<'a>(conns: &'a mut [Connection], port: u16, want: &[u8]) -> &'a mut Connection {
    let conn = conns
        .iter_mut()
        .find(|c| c.remote.port() == port)
        .expect("a connection from that port");
    match read_all(&mut conn.stream) {
        Poll::Ready(Ok(v)) => assert_eq!(v, want),
        other => panic!("{other:?}"),
    }
    conn
}

/// A stack with `limits` and one phone (10.88.88.2) connected from `port`, accepted.
fn one_connection(limits: Limits, port: u16) -> (Sim, Phone, SocketHandle, Connection) {
    let mut sim = Sim::new(limits);
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let h = phone.connect(port);
    sim.run(&mut [&mut phone]);
    let conn = sim.accepted.pop().expect("accepted");
    (sim, phone, h, conn)
}

fn write(stream: &mut Stream, data: &[u8]) -> usize {
    match Pin::new(stream).poll_write(&mut cx(), data) {
        Poll::Ready(Ok(n)) => n,
        other => panic!("write failed: {other:?}"),
    }
}

#[test]
fn answers_icmp_echo() {
    let mut sim = Sim::new(Limits::default());
    let phone = Ipv4Addr::new(10, 88, 88, 2);
    let echo = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 1,
        data: b"ping!",
    };
    let ip = Ipv4Repr {
        src_addr: phone,
        dst_addr: SERVER,
        next_header: IpProtocol::Icmp,
        payload_len: echo.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; ip.buffer_len() + echo.buffer_len()];
    let mut pkt = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut pkt, &Default::default());
    echo.emit(
        &mut Icmpv4Packet::new_unchecked(pkt.payload_mut()),
        &Default::default(),
    );
    sim.stack.handle_packet(buf);
    sim.stack.poll(Duration::from_millis(1));
    let reply = sim.stack.poll_transmit().expect("echo reply");
    let reply = Ipv4Packet::new_checked(&reply[..]).unwrap();
    assert_eq!(reply.dst_addr(), phone);
    assert_eq!(reply.src_addr(), SERVER);
    let icmp = Icmpv4Packet::new_checked(reply.payload()).unwrap();
    let repr = Icmpv4Repr::parse(&icmp, &Default::default()).unwrap();
    assert!(
        matches!(repr, Icmpv4Repr::EchoReply { ident: 7, seq_no: 1, data } if data == b"ping!")
    );
}

#[test]
fn tcp_round_trip_with_close() {
    let mut sim = Sim::new(Limits::default());
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let h = phone.connect(50000);
    sim.run(&mut [&mut phone]);
    assert_eq!(phone.tcp(h).state(), tcp::State::Established);
    assert_eq!(sim.accepted.len(), 1);
    let mut conn = sim.accepted.pop().unwrap();
    assert_eq!(
        conn.remote,
        SocketAddrV4::new(Ipv4Addr::new(10, 88, 88, 2), 50000)
    );

    phone
        .tcp(h)
        .send_slice(b"GET /api/v1/health HTTP/1.1\r\n\r\n")
        .unwrap();
    sim.run(&mut [&mut phone]);
    let got = match read_all(&mut conn.stream) {
        Poll::Ready(Ok(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(got, b"GET /api/v1/health HTTP/1.1\r\n\r\n");
    assert!(read_all(&mut conn.stream).is_pending());

    // A reply larger than one segment and than the phone's window arrives whole.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    let mut received = Vec::new();
    for _ in 0..1000 {
        if sent < body.len() {
            if let Poll::Ready(Ok(n)) =
                Pin::new(&mut conn.stream).poll_write(&mut cx(), &body[sent..])
            {
                sent += n;
            }
        }
        sim.run(&mut [&mut phone]);
        let mut chunk = vec![0u8; 65536];
        while let Ok(n) = phone.tcp(h).recv_slice(&mut chunk) {
            if n == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..n]);
        }
        if received.len() == body.len() {
            break;
        }
    }
    assert_eq!(received.len(), body.len());
    assert!(received == body);

    // Application closes: the phone sees FIN; the phone closes: the socket is reaped.
    drop(conn);
    sim.run(&mut [&mut phone]);
    assert!(!phone.tcp(h).may_recv());
    phone.tcp(h).close();
    sim.run(&mut [&mut phone]);
    sim.now += Duration::from_secs(30);
    sim.run(&mut [&mut phone]);
    assert_eq!(sim.stack.stats().open_connections, 0);
}

#[test]
fn many_simultaneous_syns_are_all_accepted() {
    let mut sim = Sim::new(Limits {
        per_peer: 64,
        ..Limits::default()
    });
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let handles: Vec<_> = (0..64).map(|i| phone.connect(40000 + i)).collect();
    sim.run(&mut [&mut phone]);
    for h in &handles {
        assert_eq!(phone.tcp(*h).state(), tcp::State::Established);
    }
    assert_eq!(sim.accepted.len(), 64);
}

#[test]
fn per_peer_cap_refuses_extra_connections_only_for_that_peer() {
    let limits = Limits {
        per_peer: 4,
        ..Limits::default()
    };
    let mut sim = Sim::new(limits);
    let mut greedy = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let mut other = Phone::new(Ipv4Addr::new(10, 88, 88, 3));
    let g: Vec<_> = (0..6).map(|i| greedy.connect(40000 + i)).collect();
    let o = other.connect(40000);
    sim.run(&mut [&mut greedy, &mut other]);
    let established = g
        .iter()
        .filter(|h| greedy.tcp(**h).state() == tcp::State::Established)
        .count();
    assert_eq!(established, 4);
    assert!(sim.stack.stats().refused_over_cap >= 2);
    assert_eq!(other.tcp(o).state(), tcp::State::Established);
}

#[test]
fn abort_from_resets_streams_of_that_peer() {
    let mut sim = Sim::new(Limits::default());
    let mut a = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let mut b = Phone::new(Ipv4Addr::new(10, 88, 88, 3));
    let ha = a.connect(40000);
    let hb = b.connect(40000);
    sim.run(&mut [&mut a, &mut b]);
    assert_eq!(sim.accepted.len(), 2);
    let n = sim
        .stack
        .abort_from(&[peers::Ipv4Net::host(Ipv4Addr::new(10, 88, 88, 2))]);
    assert_eq!(n, 1);
    sim.run(&mut [&mut a, &mut b]);
    assert_eq!(a.tcp(ha).state(), tcp::State::Closed, "phone got RST");
    assert_eq!(b.tcp(hb).state(), tcp::State::Established);
    let mut streams: Vec<_> = sim.accepted.drain(..).collect();
    let idx = streams
        .iter()
        .position(|s| *s.remote.ip() == Ipv4Addr::new(10, 88, 88, 2))
        .unwrap();
    let mut aborted = streams.remove(idx);
    assert!(matches!(read_all(&mut aborted.stream), Poll::Ready(Err(_))));
    assert_eq!(write(&mut streams[0].stream, b"still here"), 10);
}

#[test]
fn idle_stack_asks_for_no_early_wakeup() {
    let mut sim = Sim::new(Limits::default());
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let _h = phone.connect(40000);
    sim.run(&mut [&mut phone]);
    // With one idle established connection, the next deadline is the keepalive, not ~now.
    let d = sim.stack.poll_delay(sim.now);
    assert!(
        d.is_none_or(|d| d >= Duration::from_secs(1)),
        "idle stack wants a wake-up in {d:?}"
    );
    // The notify handle is the only thing that wakes the driver for stream I/O.
    let _ = &sim.notify;
}

#[test]
fn pipe_core_serves_without_the_tokio_adapter_and_closes_when_dropped() {
    let mut sim = Sim::new(Limits::default());
    sim.raw = Some(Vec::new());
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let h = phone.connect(50000);
    sim.run(&mut [&mut phone]);
    let conn = sim.raw.as_mut().unwrap().pop().expect("accepted");

    phone.tcp(h).send_slice(b"ping").unwrap();
    sim.run(&mut [&mut phone]);
    let mut got = Vec::new();
    let read = conn
        .pipe
        .lock()
        .unwrap()
        .read(64, |s| got.extend_from_slice(s));
    assert_eq!(
        read,
        pipe::Read::Data {
            n: 4,
            unblocked: false
        }
    );
    assert_eq!(got, b"ping");
    assert_eq!(
        conn.pipe.lock().unwrap().read(64, |_| {}),
        pipe::Read::Empty
    );
    assert_eq!(
        conn.pipe.lock().unwrap().write(b"pong"),
        pipe::Write::Queued(4)
    );
    sim.run(&mut [&mut phone]);
    let mut buf = [0u8; 16];
    assert_eq!(phone.tcp(h).recv_slice(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"pong");

    // Nobody holds the application's end any more: the stack closes the connection.
    drop(conn);
    sim.run(&mut [&mut phone]);
    assert!(!phone.tcp(h).may_recv(), "the phone got FIN");
}

/// A phone at its cap opening more: each extra SYN is dropped before the stack allocates a
/// socket or a buffer, and nothing is sent back.
#[test]
fn syn_over_the_per_peer_cap_allocates_nothing() {
    let limits = Limits {
        per_peer: 4,
        ..Limits::default()
    };
    let mut sim = Sim::new(limits);
    let mut greedy = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    for i in 0..4 {
        greedy.connect(40000 + i);
    }
    sim.run(&mut [&mut greedy]);
    assert_eq!(sim.accepted.len(), 4);
    let bytes = sim.stack.stats().socket_buffer_bytes;
    let refused = sim.stack.stats().refused_over_cap;
    for i in 0..16 {
        greedy.connect(41000 + i);
    }
    greedy
        .iface
        .poll(smol_now(sim.now), &mut greedy.dev, &mut greedy.sockets);
    let syns: Vec<_> = greedy.dev.tx.drain(..).collect();
    assert_eq!(syns.len(), 16);
    for p in syns {
        sim.stack.handle_packet(p);
    }
    sim.stack.poll(sim.now);
    assert_eq!(sim.stack.stats().refused_over_cap, refused + 16);
    assert_eq!(
        sim.stack.stats().socket_buffer_bytes,
        bytes,
        "a refused SYN allocated socket buffers"
    );
    assert!(
        sim.stack.poll_transmit().is_none(),
        "a refused SYN was answered"
    );
}

/// With the default limits, a peer opening twice the API's cap (64, as `wrk -c64` does) gets
/// the cap plus the headroom for the 429, not 64 sockets of buffers.
#[test]
fn default_cap_refuses_far_over_the_api_cap_at_the_syn() {
    let mut sim = Sim::new(Limits::default());
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    for i in 0..64 {
        phone.connect(40000 + i);
    }
    sim.run(&mut [&mut phone]);
    assert_eq!(
        sim.accepted.len(),
        crate::api::ApiConfig::default().max_connections_per_peer + Limits::REFUSAL_HEADROOM
    );
    assert!(sim.stack.stats().refused_over_cap >= 64 - 36);
}

/// Bytes of socket buffers an idle keep-alive connection holds (the spare listeners aside).
#[test]
fn idle_connection_memory_is_bounded() {
    let mut sim = Sim::new(Limits::default());
    let base = sim.stack.stats().socket_buffer_bytes;
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    for i in 0..8 {
        phone.connect(40000 + i);
    }
    sim.run(&mut [&mut phone]);
    assert_eq!(sim.accepted.len(), 8);
    let per_conn = (sim.stack.stats().socket_buffer_bytes - base) / 8;
    assert!(
        per_conn <= 160 * 1024,
        "an idle connection holds {per_conn} bytes of socket buffers"
    );
}

/// Socket buffers hold memory only while used: a fresh connection holds none, a keep-alive
/// connection that just sent an 81 KB reply holds its pages, and once it has been quiet for
/// `idle_release` with nothing queued it holds none again, while keeping its full capacity
/// (the next reply still fits in flight). Resident pages are counted with mincore: exact and
/// deterministic for our own anonymous mappings.
#[test]
fn idle_keepalive_connections_give_their_buffer_pages_back() {
    let limits = Limits::default();
    let mut sim = Sim::new(limits.clone());
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let handles: Vec<_> = (0..8).map(|i| phone.connect(41000 + i)).collect();
    sim.run(&mut [&mut phone]);
    assert_eq!(sim.accepted.len(), 8);
    assert_eq!(
        sim.stack.socket_buffer_resident_bytes(),
        0,
        "accepting touches no buffer page"
    );

    let body: Vec<u8> = (0..81_000u32).map(|i| (i % 251) as u8).collect();
    let mut conns = std::mem::take(&mut sim.accepted);
    let mut sent = [0; 8];
    let mut received = [0; 8];
    let mut peak = 0;
    for _ in 0..1000 {
        for (c, s) in conns.iter_mut().zip(sent.iter_mut()) {
            if *s < body.len() {
                if let Poll::Ready(Ok(n)) =
                    Pin::new(&mut c.stream).poll_write(&mut cx(), &body[*s..])
                {
                    *s += n;
                }
            }
        }
        sim.run(&mut [&mut phone]);
        peak = peak.max(sim.stack.socket_buffer_resident_bytes());
        let mut chunk = vec![0u8; 65536];
        for (h, r) in handles.iter().zip(received.iter_mut()) {
            while let Ok(n) = phone.tcp(*h).recv_slice(&mut chunk) {
                if n == 0 {
                    break;
                }
                *r += n;
            }
        }
        if received.iter().all(|r| *r == body.len()) {
            break;
        }
    }
    assert!(received.iter().all(|r| *r == body.len()), "{received:?}");
    assert!(
        peak >= 8 * 16 * 1024,
        "replies in flight are held in memory ({peak} bytes at most)"
    );

    // Quiet for idle_release: the stack asks to be polled then, and gives the pages back.
    sim.run(&mut [&mut phone]);
    let wait = sim.stack.poll_delay(sim.now).expect("a release deadline");
    assert!(wait <= limits.idle_release, "{wait:?}");
    sim.now += wait;
    sim.run(&mut [&mut phone]);
    assert_eq!(
        sim.stack.socket_buffer_resident_bytes(),
        0,
        "idle keep-alive connections hold no buffer memory"
    );
    assert_eq!(sim.stack.stats().open_connections, 8);
    assert!(
        sim.stack.stats().socket_buffer_bytes >= 8 * (16 + 128) * 1024,
        "the capacity (address space) is kept for the next reply"
    );

    // The next request on a connection faults pages in again and is served.
    phone
        .tcp(handles[0])
        .send_slice(b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    sim.run(&mut [&mut phone]);
    expect_read(&mut conns, 41000, b"GET / HTTP/1.1\r\n\r\n");
    let held = sim.stack.socket_buffer_resident_bytes();
    assert!(
        held > 0 && held <= 2 * 4096,
        "one request holds a page or two: {held}"
    );
}

/// Four peers holding the overall cap between them cannot lock out a fifth: it connects, and
/// the heaviest peer's oldest idle connection is reset to make room.
#[test]
fn fifth_peer_connects_when_four_hold_the_overall_cap() {
    let limits = Limits {
        per_peer: 8,
        total: 16,
        ..Limits::default()
    };
    let mut sim = Sim::new(limits);
    let mut phones: Vec<Phone> = (2..6)
        .map(|i| Phone::new(Ipv4Addr::new(10, 88, 88, i)))
        .collect();
    // The heaviest peer (.2, five connections) opens its oldest one first.
    let oldest = phones[0].connect(40000);
    sim.run(&mut phones.iter_mut().collect::<Vec<_>>());
    sim.now += Duration::from_secs(1);
    let mut rest = vec![];
    for i in 1..5 {
        rest.push(phones[0].connect(40000 + i));
    }
    for (n, ph) in [4, 4, 3].into_iter().zip(phones[1..].iter_mut()) {
        for i in 0..n {
            ph.connect(40000 + i);
        }
    }
    sim.run(&mut phones.iter_mut().collect::<Vec<_>>());
    assert_eq!(sim.accepted.len(), 16);
    assert_eq!(sim.stack.stats().open_connections, 16);

    let mut fifth = Phone::new(Ipv4Addr::new(10, 88, 88, 6));
    let f = fifth.connect(40000);
    let mut all: Vec<&mut Phone> = phones.iter_mut().collect();
    all.push(&mut fifth);
    sim.run(&mut all);
    assert_eq!(fifth.tcp(f).state(), tcp::State::Established);
    assert_eq!(sim.stack.stats().evicted, 1);
    assert_eq!(sim.stack.stats().open_connections, 16);
    assert_eq!(
        phones[0].tcp(oldest).state(),
        tcp::State::Closed,
        "the heaviest peer's oldest idle connection got RST"
    );
    for h in rest {
        assert_eq!(phones[0].tcp(h).state(), tcp::State::Established);
    }
    let evicted = sim
        .accepted
        .iter_mut()
        .find(|c| c.remote == SocketAddrV4::new(Ipv4Addr::new(10, 88, 88, 2), 40000))
        .unwrap();
    assert!(matches!(read_all(&mut evicted.stream), Poll::Ready(Err(_))));
}

/// Eviction only moves towards an even share: a peer already holding as much as the others
/// is refused at the overall cap, and a busy connection is never evicted.
#[test]
fn overall_cap_refuses_a_peer_at_its_fair_share_and_spares_busy_connections() {
    let limits = Limits {
        per_peer: 8,
        total: 4,
        ..Limits::default()
    };
    let mut sim = Sim::new(limits);
    let mut a = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let mut b = Phone::new(Ipv4Addr::new(10, 88, 88, 3));
    let ha: Vec<_> = (0..2).map(|i| a.connect(40000 + i)).collect();
    let hb: Vec<_> = (0..2).map(|i| b.connect(40000 + i)).collect();
    sim.run(&mut [&mut a, &mut b]);
    assert_eq!(sim.accepted.len(), 4);
    // b, holding 2 like a, asks for a third: refused, nobody evicted.
    let extra = b.connect(40010);
    sim.run(&mut [&mut a, &mut b]);
    assert_ne!(b.tcp(extra).state(), tcp::State::Established);
    assert_eq!(sim.stack.stats().evicted, 0);

    // A newcomer while all of a's and b's connections have unread data: nothing to evict.
    for h in &ha {
        a.tcp(*h).send_slice(b"busy").unwrap();
    }
    for h in &hb {
        b.tcp(*h).send_slice(b"busy").unwrap();
    }
    sim.run(&mut [&mut a, &mut b]);
    let mut c = Phone::new(Ipv4Addr::new(10, 88, 88, 4));
    let hc = c.connect(40000);
    sim.run(&mut [&mut a, &mut b, &mut c]);
    assert_ne!(c.tcp(hc).state(), tcp::State::Established);
    assert_eq!(sim.stack.stats().evicted, 0);
}

/// A poll visits only connections with something to do: with 32 idle connections open, a
/// request on one of them costs a handful of visits (that connection's), a reply written by
/// the application the same, and polls with nothing new visit none. Walking every connection
/// on each poll, as the stack once did, costs at least 32 visits a poll.
#[test]
fn a_poll_serves_only_the_connections_that_moved() {
    let mut sim = Sim::new(Limits::default());
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let handles: Vec<_> = (0..32).map(|i| phone.connect(43000 + i)).collect();
    sim.run(&mut [&mut phone]);
    assert_eq!(sim.accepted.len(), 32);
    assert_eq!(sim.stack.stats().open_connections, 32);

    // Nothing new: polls visit nothing.
    let before = sim.stack.stats().serviced;
    for _ in 0..10 {
        sim.now += Duration::from_millis(1);
        sim.stack.poll(sim.now);
    }
    assert_eq!(
        sim.stack.stats().serviced,
        before,
        "idle polls visit nobody"
    );

    // A request on the 8th connection: it is served, and the visits are its own.
    let before = sim.stack.stats().serviced;
    phone
        .tcp(handles[7])
        .send_slice(b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    sim.run(&mut [&mut phone]);
    let visits = sim.stack.stats().serviced - before;
    assert!((1..=4).contains(&visits), "{visits} visits for one request");
    let conn = expect_read(&mut sim.accepted, 43007, b"GET / HTTP/1.1\r\n\r\n");

    // The application answers on it: again only that connection is visited.
    let before = sim.stack.stats().serviced;
    assert_eq!(write(&mut conn.stream, b"HTTP/1.1 200 OK\r\n\r\n"), 19);
    sim.run(&mut [&mut phone]);
    let visits = sim.stack.stats().serviced - before;
    assert!((1..=4).contains(&visits), "{visits} visits for one reply");
    let mut buf = [0u8; 64];
    assert_eq!(phone.tcp(handles[7]).recv_slice(&mut buf), Ok(19));
    for &h in handles.iter().filter(|&&h| h != handles[7]) {
        assert_eq!(phone.tcp(h).recv_queue(), 0, "no other connection got data");
    }
}

/// State changes without data reach the connection too: a phone's FIN is seen (end of stream
/// for the application) and a phone's RST resets the stream, both without a poll walking
/// every connection.
#[test]
fn fin_and_reset_from_the_phone_are_served() {
    let mut sim = Sim::new(Limits::default());
    let mut phone = Phone::new(Ipv4Addr::new(10, 88, 88, 2));
    let a = phone.connect(44000);
    let b = phone.connect(44001);
    sim.run(&mut [&mut phone]);
    assert_eq!(sim.accepted.len(), 2);
    let before = sim.stack.stats().serviced;

    phone.tcp(a).close();
    phone.tcp(b).abort();
    sim.run(&mut [&mut phone]);
    assert!(sim.stack.stats().serviced > before);
    for conn in sim.accepted.iter_mut() {
        let r = read_all(&mut conn.stream);
        match conn.remote.port() {
            44000 => assert!(matches!(&r, Poll::Ready(Ok(v)) if v.is_empty()), "{r:?}"),
            _ => assert!(
                matches!(&r, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset),
                "{r:?}"
            ),
        }
    }
}

/// A flush completes as soon as the pipe holds the bytes (as a kernel socket's does once
/// they are in its buffer): the stack was asked to serve the connection by the write, so
/// waiting for it to move them into smoltcp would only cost the HTTP task one more wake-up
/// per reply. They still reach the phone; a reset connection still fails the flush.
#[test]
fn a_flush_completes_once_the_pipe_holds_the_bytes() {
    let (mut sim, mut phone, h, mut conn) = one_connection(Limits::default(), 45000);

    assert_eq!(write(&mut conn.stream, b"HTTP/1.1 200 OK\r\n\r\n"), 19);
    // No stack poll in between.
    match Pin::new(&mut conn.stream).poll_flush(&mut cx()) {
        Poll::Ready(Ok(())) => {}
        other => panic!("flush waited for the stack: {other:?}"),
    }
    sim.run(&mut [&mut phone]);
    let mut buf = [0u8; 64];
    assert_eq!(phone.tcp(h).recv_slice(&mut buf), Ok(19));

    phone.tcp(h).abort();
    sim.run(&mut [&mut phone]);
    match Pin::new(&mut conn.stream).poll_flush(&mut cx()) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("flush of a reset connection: {other:?}"),
    }
}

/// hyper writes a reply as its head and its body: with vectored writes both go into the pipe
/// in one call (one lock, one wake of the driver) instead of being copied into one buffer
/// first, and as much of each as fits is taken.
#[test]
fn a_vectored_write_queues_every_slice_in_one_call() {
    let limits = Limits {
        stream_buffer: 32,
        ..Limits::default()
    };
    let (mut sim, mut phone, h, mut conn) = one_connection(limits, 45001);
    assert!(conn.stream.is_write_vectored());

    let parts = [
        io::IoSlice::new(b"HTTP/1.1 200 OK\r\n\r\n"),
        io::IoSlice::new(b""),
        io::IoSlice::new(b"0123456789abcdef"),
    ];
    match Pin::new(&mut conn.stream).poll_write_vectored(&mut cx(), &parts) {
        // 19 + 16 bytes offered, 32 fit.
        Poll::Ready(Ok(n)) => assert_eq!(n, 32),
        other => panic!("{other:?}"),
    }
    match Pin::new(&mut conn.stream).poll_write_vectored(&mut cx(), &parts[2..]) {
        Poll::Pending => {}
        other => panic!("a full pipe takes nothing: {other:?}"),
    }
    sim.run(&mut [&mut phone]);
    let mut buf = [0u8; 64];
    assert_eq!(phone.tcp(h).recv_slice(&mut buf), Ok(32));
    assert_eq!(&buf[..32], b"HTTP/1.1 200 OK\r\n\r\n0123456789abc");
}

/// smoltcp walks every socket for egress, so a poll does it once: ingress, then the pipes,
/// then egress. A request in and its reply out each cost one walk (the stack once walked twice
/// a poll, before and after the pipes), and the reply still leaves in the same poll.
#[test]
fn a_poll_walks_the_sockets_for_egress_once() {
    let (mut sim, mut phone, first, _held) = one_connection(Limits::default(), 46000);
    let mut handles = vec![first];
    handles.extend((1..8).map(|i| phone.connect(46000 + i)));
    sim.run(&mut [&mut phone]);
    assert_eq!(sim.accepted.len(), 7, "and the first one, taken out");

    phone
        .tcp(handles[3])
        .send_slice(b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    phone
        .iface
        .poll(smol_now(sim.now), &mut phone.dev, &mut phone.sockets);
    while let Some(p) = phone.dev.tx.pop_front() {
        sim.stack.handle_packet(p);
    }
    let before = sim.stack.stats().egress_walks;
    sim.stack.poll(sim.now);
    assert_eq!(sim.stack.stats().egress_walks - before, 1, "request in");
    let conn = expect_read(&mut sim.accepted, 46003, b"GET / HTTP/1.1\r\n\r\n");

    assert_eq!(write(&mut conn.stream, b"HTTP/1.1 200 OK\r\n\r\n"), 19);
    let before = sim.stack.stats().egress_walks;
    sim.stack.poll(sim.now);
    assert_eq!(sim.stack.stats().egress_walks - before, 1, "reply out");
    // That one walk sent it.
    let mut sent = Vec::new();
    while let Some(p) = sim.stack.poll_transmit() {
        sent.push(p);
    }
    assert!(!sent.is_empty(), "the reply left in the same poll");
    for p in sent {
        phone.dev.rx.push_back(p);
    }
    sim.run(&mut [&mut phone]);
    let mut buf = [0u8; 64];
    assert_eq!(phone.tcp(handles[3]).recv_slice(&mut buf), Ok(19));
}
