//! Batched UDP I/O for the driver: many datagrams per system call, buffers reused.
//!
//! Layer: driver (does I/O; no protocol knowledge). [`RecvBatch`] reads up to [`BATCH`]
//! datagrams with one `recvmmsg(2)` into slots it keeps for its whole life; [`SendBatch`]
//! queues datagrams in one reusable buffer and writes them with `sendmmsg(2)`. Both work on a
//! tokio [`UdpSocket`] through `try_io`, so tokio's readiness stays right: a call that finds
//! the kernel queue empty (or full) clears readiness and the driver awaits it again.
//! [`size_buffers`] raises the socket's kernel buffers so a burst (or a handshake flood) is
//! queued rather than dropped before the driver can pick the datagrams that matter.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{SockAddr, SockRef};
use tokio::io::Interest;
use tokio::net::UdpSocket;

pub mod filter;

/// Datagrams per system call, each way.
pub const BATCH: usize = 64;

/// Bytes per receive slot. WireGuard datagrams are the client's MTU plus 32 (1452 with our
/// configs' 1420); a slot also fits a client configured for a jumbo MTU up to ~4000. Longer
/// datagrams are truncated by the kernel and dropped here (see [`RecvBatch::recv`]).
pub const SLOT: usize = 4096;

/// Kernel buffer asked for each way: 64 full batches of full-size datagrams, about 6 ms of
/// traffic at 1 Gbit/s; enough to ride out a wake-up's latency under a flood.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// The receive and send buffer sizes the kernel granted (it reports twice what it uses for
/// bookkeeping overhead; these are its reported values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// `SO_RCVBUF` as the kernel reports it.
    pub recv: usize,
    /// `SO_SNDBUF` as the kernel reports it.
    pub send: usize,
}

/// Asks for [`SOCKET_BUFFER`] each way: first with `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`, which
/// pass the `net.core.{r,w}mem_max` caps but need `CAP_NET_ADMIN`; without it (the normal,
/// unprivileged case) falls back silently to `SO_RCVBUF`/`SO_SNDBUF`, which the kernel caps.
/// Returns what the kernel granted.
pub fn size_buffers(socket: SockRef<'_>) -> io::Result<BufferSizes> {
    if force_buffer(&socket, libc::SO_RCVBUFFORCE, SOCKET_BUFFER).is_err() {
        socket.set_recv_buffer_size(SOCKET_BUFFER)?;
    }
    if force_buffer(&socket, libc::SO_SNDBUFFORCE, SOCKET_BUFFER).is_err() {
        socket.set_send_buffer_size(SOCKET_BUFFER)?;
    }
    Ok(BufferSizes {
        recv: socket.recv_buffer_size()?,
        send: socket.send_buffer_size()?,
    })
}

fn force_buffer(socket: &SockRef<'_>, option: libc::c_int, size: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: SO_{RCV,SND}BUFFORCE read an int.
    unsafe { set_socket_option(socket, option, &value) }
}

/// `setsockopt(SOL_SOCKET, option, value)` on a live socket.
///
/// # Safety
/// `T` must be the type the kernel reads for `option`, with every pointer inside `value`
/// valid for the call (the kernel copies what it keeps).
unsafe fn set_socket_option<T>(
    socket: &SockRef<'_>,
    option: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the length given; the caller vouches for its meaning.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel's count of datagrams it dropped on this socket before they reached its queue:
/// refused by the socket filter ([`filter`]), arriving to a full receive buffer, or with a
/// bad UDP checksum (`SK_MEMINFO_DROPS` of `SO_MEMINFO`, the `drops` column of
/// `/proc/net/udp`). The kernel keeps it in 32 bits, so it wraps; [`DropCount`] turns the
/// readings into a total. `Unsupported` from a kernel whose `SO_MEMINFO` lacks it (before 4.9).
pub fn socket_drops(socket: SockRef<'_>) -> io::Result<u32> {
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = size_of::<[u32; SK_MEMINFO_VARS]>() as libc::socklen_t;
    // SAFETY: SO_MEMINFO writes at most `len` bytes of u32 counters into `info`.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let drops = libc::SK_MEMINFO_DROPS as usize;
    if (len as usize) < (drops + 1) * size_of::<u32>() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel's SO_MEMINFO does not report socket drops",
        ));
    }
    Ok(info[drops])
}

/// `SO_MEMINFO` (asm-generic value, as on x86-64 and aarch64; the `libc` crate does not export it).
const SO_MEMINFO: libc::c_int = 55;
/// Counters `SO_MEMINFO` reports (`SK_MEMINFO_VARS`); `SK_MEMINFO_DROPS` is the last.
const SK_MEMINFO_VARS: usize = libc::SK_MEMINFO_DROPS as usize + 1;

/// A running total of [`socket_drops`] readings: the kernel's 32-bit count may wrap between
/// two readings (not twice: read it at least every few seconds).
#[derive(Debug, Default, Clone, Copy)]
pub struct DropCount {
    last: u32,
    total: u64,
}

impl DropCount {
    /// Folds in a new reading and returns the total since the socket was created.
    pub fn observe(&mut self, reading: u32) -> u64 {
        self.total += u64::from(reading.wrapping_sub(self.last));
        self.last = reading;
        self.total
    }
}

/// Receive slots and their headers, allocated once.
pub struct RecvBatch {
    slots: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    /// Datagrams longer than a slot, dropped so far.
    pub truncated: u64,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    /// [`BATCH`] slots of [`SLOT`] bytes, allocated once.
    pub fn new() -> RecvBatch {
        RecvBatch {
            slots: vec![0u8; BATCH * SLOT],
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
            addrs: vec![unsafe { zeroed() }; BATCH],
            lens: vec![0; BATCH],
            truncated: 0,
        }
    }

    /// Reads the datagrams waiting on `socket` (at most [`BATCH`]) without waiting and hands
    /// each to `each(from, bytes)`, in arrival order. Returns how many arrived (truncated ones
    /// included, which are dropped); `WouldBlock` when none was waiting.
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let n = socket.try_io(Interest::READABLE, || self.recvmmsg(socket.as_raw_fd()))?;
        for i in 0..n {
            let len = self.lens[i];
            if len > SLOT {
                self.truncated += 1;
                continue;
            }
            let Some(from) = socket_addr(&self.addrs[i]) else {
                continue;
            };
            each(from, &self.slots[i * SLOT..i * SLOT + len]);
        }
        Ok(n)
    }

    fn recvmmsg(&mut self, fd: libc::c_int) -> io::Result<usize> {
        // SAFETY: zeroed iovec/mmsghdr are valid; every pointer set below points into
        // `self`'s buffers, which outlive the call, with the lengths given.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iovs[i] = libc::iovec {
                iov_base: self.slots[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: see above; MSG_TRUNC makes msg_len the datagram's real length.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = r as usize;
        for (len, m) in self.lens.iter_mut().zip(&msgs[..n]) {
            *len = m.msg_len as usize;
        }
        Ok(n)
    }
}

/// The address the kernel wrote into `s` (IPv4 or IPv6; `None` for any other family).
fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it can contain.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Datagrams waiting to be sent, in one reusable buffer.
#[derive(Default)]
pub struct SendBatch {
    bytes: Vec<u8>,
    /// (offset in `bytes`, length, destination) of each datagram, in order.
    queued: Vec<(usize, usize, SockAddr)>,
    /// How many of `queued` are already sent.
    sent: usize,
}

impl SendBatch {
    /// An empty batch (its buffers grow to the largest batch sent and are kept).
    pub fn new() -> SendBatch {
        SendBatch::default()
    }

    /// Queues one datagram.
    pub fn push(&mut self, dst: SocketAddr, payload: &[u8]) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        self.queued.push((at, payload.len(), SockAddr::from(dst)));
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.sent == self.queued.len()
    }

    /// Sends what is queued, [`BATCH`] datagrams per `sendmmsg`, without waiting. A datagram
    /// the kernel refuses for itself (an unreachable or invalid destination) is dropped and
    /// reported to `dropped`; the rest go on. Returns `WouldBlock` when the kernel's buffer is
    /// full with datagrams still queued (await `writable` and call again); once everything is
    /// sent the batch is empty and its buffers are kept for the next one.
    pub fn send(
        &mut self,
        socket: &UdpSocket,
        mut dropped: impl FnMut(SocketAddr, io::Error),
    ) -> io::Result<()> {
        while !self.is_empty() {
            match socket.try_io(Interest::WRITABLE, || self.sendmmsg(socket.as_raw_fd())) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) => {
                    // sendmmsg fails only on the first datagram of the call: skip it.
                    let dst = self.queued[self.sent].2.as_socket();
                    self.sent += 1;
                    if let Some(dst) = dst {
                        dropped(dst, e);
                    }
                }
            }
        }
        self.bytes.clear();
        self.queued.clear();
        self.sent = 0;
        Ok(())
    }

    fn sendmmsg(&mut self, fd: libc::c_int) -> io::Result<usize> {
        let todo = &self.queued[self.sent..];
        let n = todo.len().min(BATCH);
        // SAFETY: zeroed iovec/mmsghdr are valid; the pointers set below point into `self`'s
        // buffers, which are not touched during the call, with the lengths given.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, (at, len, dst)) in todo[..n].iter().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: self.bytes[*at..].as_ptr() as *mut libc::c_void,
                iov_len: *len,
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = dst.as_ptr() as *mut libc::c_void;
            h.msg_namelen = dst.len();
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: see above.
        let r =
            unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests;
