//! The filter program twice: run by a small classic-BPF interpreter on made-up datagrams (no
//! sockets, every branch), and attached to real loopback sockets, where the kernel runs it.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// A message of `kind` (then three zero bytes) padded to `len` bytes.
fn msg(kind: u8, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    m[..4.min(len)].copy_from_slice(&[kind, 0, 0, 0][..4.min(len)]);
    m
}

/// What the kernel hands the program for a UDP datagram: the IP header (reached through
/// `SKF_NET_OFF`) and, from offset 0, the UDP header and the message.
struct Skb {
    net: Vec<u8>,
    data: Vec<u8>,
}

fn skb(from: IpAddr, message: &[u8]) -> Skb {
    let net = match from {
        IpAddr::V4(a) => {
            let mut h = vec![0x45u8; 20];
            h[12..16].copy_from_slice(&a.octets());
            h
        }
        IpAddr::V6(a) => {
            let mut h = vec![0x60u8; 40];
            h[8..24].copy_from_slice(&a.octets());
            h
        }
    };
    let mut data = vec![0u8; UDP_HEADER as usize];
    data.extend_from_slice(message);
    Skb { net, data }
}

/// Runs `prog` the way the kernel runs a socket filter, for the instructions [`program`]
/// emits; an out-of-bounds load drops, as in the kernel. Returns whether the datagram passes.
fn run(prog: &[libc::sock_filter], p: &Skb) -> bool {
    let load = |k: u32, size: usize| -> Option<u32> {
        let k = k as i32;
        let (bytes, at) = if k >= 0 {
            (&p.data, k as usize)
        } else {
            assert!(k >= libc::SKF_NET_OFF, "only SKF_NET_OFF is used");
            (&p.net, (k - libc::SKF_NET_OFF) as usize)
        };
        let b = bytes.get(at..at + size)?;
        Some(b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)))
    };
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = prog[pc];
        pc += 1;
        let code = u32::from(i.code);
        match code {
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => match load(i.k, 4) {
                Some(v) => a = v,
                None => return false,
            },
            c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_ABS => match load(i.k, 1) {
                Some(v) => a = v,
                None => return false,
            },
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_LEN => a = p.data.len() as u32,
            c if c == libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K => a >>= i.k,
            c if c == libc::BPF_RET | libc::BPF_K => return i.k != 0,
            c if code & 0x07 == libc::BPF_JMP => {
                let taken = match c & 0xf0 {
                    x if x == libc::BPF_JEQ => a == i.k,
                    x if x == libc::BPF_JGE => a >= i.k,
                    x if x == libc::BPF_JGT => a > i.k,
                    other => panic!("unexpected jump {other:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            other => panic!("unexpected instruction {other:#x}"),
        }
    }
}

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const PHONE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const FLOODER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x66));
/// Differs from [`FLOODER6`] in its last word only.
const PHONE6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x67));

#[test]
fn only_wireguard_shaped_datagrams_pass() {
    let prog = program(&[]);
    let passes = |m: &[u8]| run(&prog, &skb(PHONE, m));
    for (kind, len) in [(1, 148), (2, 92), (3, 64), (4, 32), (4, 1452), (4, SLOT)] {
        assert!(passes(&msg(kind, len)), "type {kind}, {len} bytes");
    }
    let mut reserved = msg(1, 148);
    reserved[2] = 1;
    for (what, m) in [
        ("type 0", msg(0, 148)),
        ("type 5", msg(5, 148)),
        ("type 255", msg(255, 64)),
        ("a reserved byte set", reserved),
        ("initiation 147", msg(1, 147)),
        ("initiation 149", msg(1, 149)),
        ("response 93", msg(2, 93)),
        ("cookie reply 63", msg(3, 63)),
        ("data 31", msg(4, 31)),
        ("data longer than a slot", msg(4, SLOT + 1)),
        ("3 bytes", msg(1, 3)),
        ("empty", Vec::new()),
    ] {
        assert!(!passes(&m), "{what} passed");
    }
}

#[test]
fn a_blocked_source_loses_its_handshakes_but_keeps_its_data() {
    let prog = program(&[FLOODER, FLOODER6]);
    for from in [FLOODER, FLOODER6] {
        for (kind, len) in [(1, 148), (2, 92), (3, 64)] {
            assert!(
                !run(&prog, &skb(from, &msg(kind, len))),
                "{from} type {kind}"
            );
        }
        assert!(run(&prog, &skb(from, &msg(4, 100))), "{from} data");
    }
    for from in [PHONE, PHONE6] {
        for (kind, len) in [(1, 148), (2, 92), (3, 64), (4, 100)] {
            assert!(
                run(&prog, &skb(from, &msg(kind, len))),
                "{from} type {kind}"
            );
        }
    }
    // Garbage from anyone is still dropped.
    assert!(!run(&prog, &skb(PHONE, &msg(0, 148))));
}

#[test]
fn a_full_block_list_keeps_every_jump_short_and_ignores_the_excess() {
    // Sixteen IPv6 addresses make the longest program: every jump must still fit in 8 bits.
    let many: Vec<IpAddr> = (0..MAX_BLOCKED as u16 + 4)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, i)))
        .collect();
    let prog = program(&many);
    assert!(prog.len() < 256, "{} instructions", prog.len());
    for (n, ip) in many.iter().enumerate() {
        let blocked = !run(&prog, &skb(*ip, &msg(1, 148)));
        assert_eq!(blocked, n < MAX_BLOCKED, "entry {n}");
    }
    let mixed: Vec<IpAddr> = (0..MAX_BLOCKED as u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))
        .collect();
    let prog = program(&mixed);
    assert!(mixed.iter().all(|ip| !run(&prog, &skb(*ip, &msg(1, 148)))));
    assert!(run(&prog, &skb(PHONE, &msg(1, 148))));
}

/// The datagrams `rx` receives until `marker` arrived from each of `senders` (loopback keeps
/// each sender's order, so everything a sender sent before its marker has been filtered).
fn receive_until_markers(
    rx: &UdpSocket,
    senders: &[SocketAddr],
    marker: &[u8],
) -> Vec<(SocketAddr, Vec<u8>)> {
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut waiting: Vec<SocketAddr> = senders.to_vec();
    let mut buf = vec![0u8; 2 * SLOT];
    while !waiting.is_empty() {
        let (n, from) = rx.recv_from(&mut buf).expect("the markers arrive");
        let from = super::super::super::canonical(from);
        if buf[..n] == *marker {
            waiting.retain(|s| *s != from);
        } else {
            got.push((from, buf[..n].to_vec()));
        }
    }
    got
}

/// The shapes sent by both senders in the socket tests, with whether each passes when its
/// sender is blocked and when not.
fn shapes() -> Vec<(Vec<u8>, bool, bool)> {
    vec![
        (msg(0, 148), false, false),
        (msg(1, 149), false, false),
        (msg(4, 31), false, false),
        (msg(4, SLOT + 1), false, false),
        (msg(1, 148), false, true),
        (msg(2, 92), false, true),
        (msg(3, 64), false, true),
        (msg(4, 48), true, true),
    ]
}

fn send_shapes_and_check(rx: &UdpSocket, to: SocketAddr, blocked: &UdpSocket, free: &UdpSocket) {
    let marker = msg(4, 33);
    for s in [blocked, free] {
        for (m, _, _) in shapes() {
            s.send_to(&m, to).unwrap();
        }
        s.send_to(&marker, to).unwrap();
    }
    let senders = [blocked.local_addr().unwrap(), free.local_addr().unwrap()];
    let got = receive_until_markers(rx, &senders, &marker);
    let mut want = Vec::new();
    for (sender, is_blocked) in [(senders[0], true), (senders[1], false)] {
        for (m, if_blocked, if_free) in shapes() {
            if (is_blocked && if_blocked) || (!is_blocked && if_free) {
                want.push((sender, m));
            }
        }
    }
    assert_eq!(got.len(), want.len());
    for w in &want {
        assert!(got.contains(w), "missing type {} from {}", w.1[0], w.0);
    }
}

#[test]
fn the_kernel_runs_the_filter_on_an_ipv4_socket() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let blocked = UdpSocket::bind("127.0.0.2:0").unwrap();
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    attach(SockRef::from(&rx), &program(&[FLOODER])).unwrap();
    send_shapes_and_check(&rx, rx.local_addr().unwrap(), &blocked, &free);
    // A new program replaces the old one: nobody is blocked now.
    attach(SockRef::from(&rx), &program(&[])).unwrap();
    blocked
        .send_to(&msg(1, 148), rx.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = rx.recv_from(&mut buf).unwrap();
    assert_eq!((n, from), (148, blocked.local_addr().unwrap()));
}

#[test]
fn the_kernel_runs_the_filter_on_a_dual_stack_socket_for_ipv4_sources() {
    // The appliance's own socket: [::] with IPv4 mapped in. Only loopback sends to it.
    let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
    s.set_only_v6(false).unwrap();
    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())
        .unwrap();
    let rx: UdpSocket = s.into();
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, rx.local_addr().unwrap().port()));
    attach(SockRef::from(&rx), &program(&[FLOODER])).unwrap();
    let blocked = UdpSocket::bind("127.0.0.2:0").unwrap();
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_shapes_and_check(&rx, to, &blocked, &free);
}

#[test]
fn the_kernel_runs_the_filter_on_an_ipv6_socket() {
    let rx = UdpSocket::bind("[::1]:0").unwrap();
    let to = rx.local_addr().unwrap();
    let tx = UdpSocket::bind("[::1]:0").unwrap();
    // ::1 sends to itself, so block it and check data still passes, then unblock it.
    attach(
        SockRef::from(&rx),
        &program(&[IpAddr::V6(Ipv6Addr::LOCALHOST)]),
    )
    .unwrap();
    let marker = msg(4, 33);
    for m in [msg(1, 148), msg(2, 92), msg(4, 48), marker.clone()] {
        tx.send_to(&m, to).unwrap();
    }
    let got = receive_until_markers(&rx, &[tx.local_addr().unwrap()], &marker);
    assert_eq!(got, vec![(tx.local_addr().unwrap(), msg(4, 48))]);
    attach(SockRef::from(&rx), &program(&[PHONE6])).unwrap();
    for m in [msg(1, 148), marker.clone()] {
        tx.send_to(&m, to).unwrap();
    }
    let got = receive_until_markers(&rx, &[tx.local_addr().unwrap()], &marker);
    assert_eq!(got, vec![(tx.local_addr().unwrap(), msg(1, 148))]);
}

#[test]
fn the_kernel_counts_what_the_filter_drops_as_socket_drops() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    let marker = msg(4, 33);
    let garbage = [msg(0, 148), msg(1, 149), msg(4, 31), msg(9, 64)];
    // Without a filter garbage is queued like anything else: nothing is dropped.
    for m in garbage.iter().chain([&marker]) {
        tx.send_to(m, to).unwrap();
    }
    let got = receive_until_markers(&rx, &[tx.local_addr().unwrap()], &marker);
    assert_eq!(got.len(), garbage.len());
    assert_eq!(super::super::socket_drops(SockRef::from(&rx)).unwrap(), 0);
    // With it, each refused datagram is one socket drop, and what passes is none.
    attach(SockRef::from(&rx), &program(&[])).unwrap();
    const N: usize = 100;
    for i in 0..N {
        tx.send_to(&garbage[i % garbage.len()], to).unwrap();
    }
    tx.send_to(&marker, to).unwrap();
    let got = receive_until_markers(&rx, &[tx.local_addr().unwrap()], &marker);
    assert_eq!(got, vec![]);
    assert_eq!(
        super::super::socket_drops(SockRef::from(&rx)).unwrap(),
        N as u32
    );
}
