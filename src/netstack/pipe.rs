//! The byte pipes between a TCP socket and the application.
//!
//! Layer: sans-IO core (no runtime). A [`Pipe`] is two bounded byte buffers plus the state the
//! application needs — readable, writable, end of stream, closed, reset — shared behind a
//! mutex between the [`super::Stack`] (network side, fills `rx`, drains `tx`) and whatever
//! adapts it for the application ([`super::stream::Stream`] for tokio). Like smoltcp's sockets,
//! a pipe keeps one read and one write [`Waker`] that an async adapter may register; the stack
//! wakes them when it changes what the application would see. In the other direction, a pipe
//! holds the stack's *service* waker for its connection: every application action the stack
//! must act on (bytes written, a full pipe read, the write side closed, the application's end
//! dropped) wakes it, which puts the connection on the stack's list of connections to serve,
//! so the stack visits only connections with something to do. Nothing here knows about tokio.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::task::Waker;

/// A pipe shared between the stack and the application side.
pub type SharedPipe = Arc<Mutex<Pipe>>;

/// The application's end of a pipe. Dropping it closes the write side and asks the stack for
/// service, so the connection is closed even when nothing else happens on it.
pub struct AppPipe(SharedPipe);

impl AppPipe {
    pub(super) fn new(pipe: SharedPipe) -> AppPipe {
        AppPipe(pipe)
    }
}

impl Deref for AppPipe {
    type Target = Mutex<Pipe>;

    fn deref(&self) -> &Mutex<Pipe> {
        &self.0
    }
}

impl Drop for AppPipe {
    fn drop(&mut self) {
        if let Ok(mut p) = self.0.lock() {
            p.close_write();
        }
    }
}

/// What a read from the application side found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// `n` bytes were handed over; `unblocked`: the pipe had been full, so the stack stopped
    /// reading its socket and must run again to resume.
    Data {
        /// Bytes handed over.
        n: usize,
        /// The pipe had been full: the stack must run again to resume reading its socket.
        unblocked: bool,
    },
    /// The peer sent FIN and every byte before it has been read.
    Eof,
    /// The connection was reset or aborted.
    Reset,
    /// Nothing to read yet.
    Empty,
}

/// What a write from the application side did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// `n` bytes (at least one) were queued for the socket; the stack must run to send them.
    Queued(usize),
    /// The pipe is full; try again after the stack drained it.
    Full,
    /// The connection was reset or aborted.
    Reset,
    /// The application already closed its write side.
    Closed,
}

/// One connection's buffers and state. See the module docs.
pub struct Pipe {
    /// Received from the network, not yet read by the application.
    pub(super) rx: VecDeque<u8>,
    /// The peer sent FIN and everything before it is in `rx`.
    pub(super) rx_eof: bool,
    /// Written by the application, not yet in the socket.
    pub(super) tx: VecDeque<u8>,
    /// The application shut down its write side (or dropped its end).
    pub(super) tx_closed: bool,
    /// The connection was reset or aborted; reads and writes fail.
    pub(super) reset: bool,
    /// Capacity of `rx` and of `tx`, each.
    pub(super) cap: usize,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// Marks the connection for service by the stack (see the module docs).
    service: Option<Waker>,
}

impl Pipe {
    /// An empty pipe holding at most `cap` bytes each way.
    pub fn new(cap: usize) -> Pipe {
        Pipe::with_service(cap, None)
    }

    /// An empty pipe whose application-side changes wake `service` (the stack's mark).
    pub(super) fn with_service(cap: usize, service: Option<Waker>) -> Pipe {
        Pipe {
            rx: VecDeque::new(),
            rx_eof: false,
            tx: VecDeque::new(),
            tx_closed: false,
            reset: false,
            cap,
            read_waker: None,
            write_waker: None,
            service,
        }
    }

    /// Tells the stack that this connection has work (see the module docs).
    fn request_service(&self) {
        if let Some(w) = &self.service {
            w.wake_by_ref();
        }
    }

    /// Hands up to `max` received bytes to `put` (in at most two slices). Received data is
    /// delivered before a reset or end of stream is reported.
    pub fn read(&mut self, max: usize, mut put: impl FnMut(&[u8])) -> Read {
        if !self.rx.is_empty() {
            let unblocked = self.rx.len() >= self.cap;
            let n = max.min(self.rx.len());
            let (a, b) = self.rx.as_slices();
            let from_a = n.min(a.len());
            put(&a[..from_a]);
            put(&b[..n - from_a]);
            self.rx.drain(..n);
            if unblocked {
                self.request_service();
            }
            return Read::Data { n, unblocked };
        }
        if self.reset {
            return Read::Reset;
        }
        if self.rx_eof {
            return Read::Eof;
        }
        Read::Empty
    }

    /// Queues as much of `data` as fits for the socket.
    pub fn write(&mut self, data: &[u8]) -> Write {
        if self.reset {
            return Write::Reset;
        }
        if self.tx_closed {
            return Write::Closed;
        }
        let room = self.cap.saturating_sub(self.tx.len());
        if room == 0 {
            return Write::Full;
        }
        let n = room.min(data.len());
        self.tx.extend(&data[..n]);
        self.request_service();
        Write::Queued(n)
    }

    /// Whether everything written has reached the socket (`Err` once reset).
    pub fn is_flushed(&self) -> Result<bool, Reset> {
        if self.reset {
            return Err(Reset);
        }
        Ok(self.tx.is_empty())
    }

    /// Closes the application's write side: the stack sends FIN once `tx` is drained.
    pub fn close_write(&mut self) {
        self.tx_closed = true;
        self.request_service();
    }

    /// The waker to wake when [`Pipe::read`] may return something other than `Empty`.
    pub fn register_read_waker(&mut self, waker: &Waker) {
        self.read_waker = Some(waker.clone());
    }

    /// The waker to wake when a `Full` pipe has room or a flush may have completed.
    pub fn register_write_waker(&mut self, waker: &Waker) {
        self.write_waker = Some(waker.clone());
    }

    pub(super) fn wake_reader(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }

    pub(super) fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

/// The connection was reset or aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection was reset; open a new one")]
pub struct Reset;
