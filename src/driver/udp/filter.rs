//! The kernel's first look at a datagram: a classic BPF socket filter that drops what can
//! never be a WireGuard message, and the handshake messages of sources the router blocked,
//! before the kernel queues them on the socket.
//!
//! Layer: driver. [`program`] is a pure function (the block list in, instructions out) and
//! [`attach`] is the one system call (`SO_ATTACH_FILTER`, which needs no privilege and
//! replaces the previous program atomically). Every datagram dropped here costs the appliance
//! nothing: no wake-up, no copy into userspace, no share of a `recvmmsg`.
//!
//! What passes, for a UDP socket (the program's offset 0 is the UDP header, so the WireGuard
//! message starts at [`UDP_HEADER`]; negative offsets from `SKF_NET_OFF` read the IP header):
//! - a message whose first word is type 1–4 followed by three zero bytes, with the exact
//!   length of its type (initiation 148, response 92, cookie reply 64) or, for data, at least
//!   32 bytes and at most [`SLOT`] (longer ones would be truncated and dropped anyway);
//! - of handshake messages (types 1–3), only those whose IPv4 or IPv6 source address is not
//!   in the block list. Data (type 4) is never blocked by source, so a working peer behind an
//!   address that floods keeps its session.
//!
//! The router still checks everything that passes; the filter only moves its cheapest
//! refusals into the kernel. The router decides what to block (`Router::poll_blocked_sources`);
//! this module only compiles and attaches.

use std::io;
use std::net::IpAddr;

use socket2::SockRef;

use super::SLOT;

/// Bytes of the UDP header in front of the message, as the filter sees a datagram.
pub const UDP_HEADER: u32 = 8;

/// Source addresses a program blocks at most; [`program`] ignores the rest. It keeps every
/// jump of the program within classic BPF's 8-bit offsets.
pub const MAX_BLOCKED: usize = 16;

/// First word of each message type, read big-endian: the type byte, then three zero bytes.
const TYPE_INIT: u32 = 0x0100_0000;
const TYPE_RESPONSE: u32 = 0x0200_0000;
const TYPE_COOKIE: u32 = 0x0300_0000;
const TYPE_DATA: u32 = 0x0400_0000;

/// Message lengths (boringtun's `parse_incoming_packet` checks the same).
const INIT_LEN: u32 = 148;
const RESPONSE_LEN: u32 = 92;
const COOKIE_LEN: u32 = 64;
const DATA_MIN_LEN: u32 = 32;

/// What a program returns to keep a datagram whole, and to drop it.
const ACCEPT: u32 = u32::MAX;
const DROP: u32 = 0;

/// Where a jump goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Next,
    Accept,
    Drop,
    Init,
    Response,
    Cookie,
    Data,
    Handshake,
    V4,
    /// The `n`th IPv6 entry of the block list (or, past the last, the accept after them).
    V6(usize),
}

/// Instructions with symbolic jump targets, resolved by [`Asm::finish`].
#[derive(Default)]
struct Asm {
    insns: Vec<(u16, Label, Label, u32)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.insns.len()));
    }
    fn stmt(&mut self, code: u32, k: u32) {
        self.insns.push((code as u16, Label::Next, Label::Next, k));
    }
    fn jump(&mut self, code: u32, k: u32, jt: Label, jf: Label) {
        self.insns
            .push(((libc::BPF_JMP | code | libc::BPF_K) as u16, jt, jf, k));
    }
    fn ret(&mut self, k: u32) {
        self.stmt(libc::BPF_RET | libc::BPF_K, k);
    }
    /// `A = skb->len`: the UDP header plus the message.
    fn load_len(&mut self) {
        self.stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN, 0);
    }
    /// `A = word at offset k` (big-endian; negative offsets from `SKF_NET_OFF` read the IP
    /// header). A load past the end ends the program with "drop".
    fn load_word(&mut self, k: i32) {
        self.stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, k as u32);
    }
    fn finish(self) -> Vec<libc::sock_filter> {
        let at = |l: Label| {
            self.labels
                .iter()
                .find(|(m, _)| *m == l)
                .map(|(_, i)| *i)
                .expect("every jump target is placed")
        };
        let offset = |from: usize, l: Label| match l {
            Label::Next => 0,
            l => u8::try_from(at(l) - from - 1).expect("jumps stay within 255 instructions"),
        };
        self.insns
            .iter()
            .enumerate()
            .map(|(i, &(code, jt, jf, k))| libc::sock_filter {
                code,
                jt: offset(i, jt),
                jf: offset(i, jf),
                k,
            })
            .collect()
    }
}

/// The filter for a block list (the first [`MAX_BLOCKED`] addresses count; IPv4-mapped IPv6
/// addresses should be given as the IPv4 address they are, which is how a dual-stack socket's
/// IPv4 datagrams carry them in their IP header). See the module docs for what passes.
pub fn program(blocked: &[IpAddr]) -> Vec<libc::sock_filter> {
    let blocked = &blocked[..blocked.len().min(MAX_BLOCKED)];
    let v4: Vec<u32> = blocked
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(a) => Some(u32::from(*a)),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<[u8; 16]> = blocked
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V6(a) => Some(a.octets()),
            IpAddr::V4(_) => None,
        })
        .collect();
    let net = libc::SKF_NET_OFF;
    let mut a = Asm::default();
    // Type and reserved bytes (a datagram too short for them is dropped by the load).
    a.load_word(UDP_HEADER as i32);
    a.jump(libc::BPF_JEQ, TYPE_DATA, Label::Data, Label::Next);
    a.jump(libc::BPF_JEQ, TYPE_INIT, Label::Init, Label::Next);
    a.jump(libc::BPF_JEQ, TYPE_RESPONSE, Label::Response, Label::Next);
    a.jump(libc::BPF_JEQ, TYPE_COOKIE, Label::Cookie, Label::Drop);
    for (label, len) in [
        (Label::Init, INIT_LEN),
        (Label::Response, RESPONSE_LEN),
        (Label::Cookie, COOKIE_LEN),
    ] {
        a.label(label);
        a.load_len();
        a.jump(
            libc::BPF_JEQ,
            UDP_HEADER + len,
            Label::Handshake,
            Label::Drop,
        );
    }
    a.label(Label::Data);
    a.load_len();
    a.jump(
        libc::BPF_JGE,
        UDP_HEADER + DATA_MIN_LEN,
        Label::Next,
        Label::Drop,
    );
    a.jump(
        libc::BPF_JGT,
        UDP_HEADER + SLOT as u32,
        Label::Drop,
        Label::Accept,
    );
    // A handshake message: is its source blocked?
    a.label(Label::Handshake);
    if blocked.is_empty() {
        a.ret(ACCEPT);
    } else {
        // The IP version, from the first byte of the IP header.
        a.stmt(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, net as u32);
        a.stmt(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 4);
        a.jump(libc::BPF_JEQ, 4, Label::V4, Label::Next);
        a.jump(libc::BPF_JEQ, 6, Label::V6(0), Label::Accept);
        a.label(Label::V4);
        if !v4.is_empty() {
            a.load_word(net + 12); // IPv4 source address
            for ip in &v4 {
                a.jump(libc::BPF_JEQ, *ip, Label::Drop, Label::Next);
            }
        }
        a.ret(ACCEPT);
        for (n, ip) in v6.iter().enumerate() {
            a.label(Label::V6(n));
            for (w, word) in ip.chunks(4).enumerate() {
                a.load_word(net + 8 + 4 * w as i32); // IPv6 source address, word w
                let word = u32::from_be_bytes(word.try_into().expect("4-byte chunks"));
                let hit = if w == 3 { Label::Drop } else { Label::Next };
                a.jump(libc::BPF_JEQ, word, hit, Label::V6(n + 1));
            }
        }
        a.label(Label::V6(v6.len()));
    }
    a.label(Label::Accept);
    a.ret(ACCEPT);
    a.label(Label::Drop);
    a.ret(DROP);
    a.finish()
}

/// Attaches `program` to `socket` (`SO_ATTACH_FILTER`; no privilege needed), replacing the
/// filter it had. Datagrams already queued stay queued.
pub fn attach(socket: SockRef<'_>, program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: SO_ATTACH_FILTER reads a sock_fprog; it points at `program`, which outlives the
    // call, and the kernel copies the instructions.
    unsafe { super::set_socket_option(&socket, libc::SO_ATTACH_FILTER, &prog) }
}

#[cfg(test)]
mod tests;
