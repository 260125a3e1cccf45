//! Packet buffers kept for reuse, so the packet path does not allocate one `Vec` per packet.
//!
//! Layer: sans-IO core (memory only). The router draws its datagrams and decrypted packets
//! from one [`PacketPool`], the stack its outgoing packets from another; whoever is done with a
//! buffer gives it back (the driver after sending, the engine after encrypting, the stack after
//! smoltcp read a packet), and the engine moves spare buffers to where they are drawn.

/// Buffers kept at most; more given back are freed.
pub const KEPT: usize = 256;
/// Capacity of a new buffer: a tunnel packet (MTU 1420) or a WireGuard datagram (+32) fits.
pub const CAPACITY: usize = 2048;

/// A free list of packet buffers. See the module docs.
#[derive(Default)]
pub struct PacketPool {
    free: Vec<Vec<u8>>,
}

impl PacketPool {
    /// A buffer holding a copy of `bytes`.
    pub fn copy_of(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut b = self.take(bytes.len());
        b.extend_from_slice(bytes);
        b
    }

    /// A buffer of `len` zero bytes.
    pub fn zeroed(&mut self, len: usize) -> Vec<u8> {
        let mut b = self.take(len);
        b.resize(len, 0);
        b
    }

    fn take(&mut self, len: usize) -> Vec<u8> {
        match self.free.pop() {
            Some(b) => b,
            None => Vec::with_capacity(CAPACITY.max(len)),
        }
    }

    /// Gives a buffer back for reuse (freed if [`KEPT`] are kept already or it grew large).
    pub fn give(&mut self, mut buf: Vec<u8>) {
        if self.free.len() < KEPT && buf.capacity() <= 4 * CAPACITY {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// A kept buffer, to move to another pool.
    pub fn spare(&mut self) -> Option<Vec<u8>> {
        self.free.pop()
    }

    /// Buffers kept now.
    pub fn len(&self) -> usize {
        self.free.len()
    }

    /// Whether no buffer is kept now.
    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_back_buffer_is_reused_and_the_pool_is_bounded() {
        let mut pool = PacketPool::default();
        let a = pool.copy_of(b"first packet");
        let at = a.as_ptr();
        pool.give(a);
        let b = pool.zeroed(1500);
        assert_eq!(b.as_ptr(), at, "the same allocation came back");
        assert_eq!(b, vec![0u8; 1500], "and holds nothing of the old packet");
        let c = pool.copy_of(b"xy");
        assert_ne!(c.as_ptr(), at);
        assert_eq!(c, b"xy");

        for _ in 0..KEPT + 10 {
            pool.give(Vec::with_capacity(CAPACITY));
        }
        assert_eq!(pool.len(), KEPT);
        pool.give(Vec::with_capacity(64 * 1024));
        assert_eq!(pool.len(), KEPT, "an oversized buffer is freed, not kept");
    }
}
