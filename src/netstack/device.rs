//! The smoltcp device of the stack: two packet queues, no I/O.
//!
//! Layer: sans-IO core. [`QueueDevice`] is what smoltcp's `Interface` reads packets from and
//! writes packets to: the stack pushes the router's decrypted packets onto `rx` and drains
//! `tx` for the router. Packet buffers circulate through one [`PacketPool`]. Crate tests use
//! the same device for the phone's interface.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant as SmolInstant;

use super::PacketPool;

/// A smoltcp device that is two packet queues (also the phone's device in crate tests).
#[derive(Default)]
pub(crate) struct QueueDevice {
    /// Packets for smoltcp to receive.
    pub(crate) rx: VecDeque<Vec<u8>>,
    /// Packets smoltcp sent.
    pub(crate) tx: VecDeque<Vec<u8>>,
    /// Buffers of packets read, for packets sent (both tokens of one exchange share it).
    pub(super) pool: RefCell<PacketPool>,
}

pub(crate) struct Rx<'a>(Vec<u8>, &'a RefCell<PacketPool>);
pub(crate) struct Tx<'a>(&'a mut VecDeque<Vec<u8>>, &'a RefCell<PacketPool>);

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.0);
        self.1.borrow_mut().give(self.0);
        r
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.1.borrow_mut().zeroed(len);
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(Rx<'_>, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p, &self.pool), Tx(&mut self.tx, &self.pool)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx, &self.pool))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        // The MTU client configs carry.
        caps.max_transmission_unit = usize::from(peers::DEFAULT_MTU);
        caps
    }
}

/// `now` (time since the stack's fixed origin) as smoltcp's instant.
pub(crate) fn smol_now(now: Duration) -> SmolInstant {
    SmolInstant::from_micros(now.as_micros() as i64)
}
