//! The tokio side of a netstack connection.
//!
//! Layer: adapter (async, used by the driver and the HTTP API). A [`Stream`] turns a
//! [`Pipe`](super::Pipe) into tokio `AsyncRead` + `AsyncWrite`: it registers the task's waker on the pipe
//! when it must wait, and rings the driver's [`Notify`] whenever the stack has work to do
//! because of it (bytes written, a full receive pipe drained, the write side closed), so the
//! driver never polls on a timer for data. [`Connection`] is an accepted connection with its
//! stream, as the HTTP server receives it.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::pipe::{AppPipe, Read, Write};
use super::Accepted;

/// A TCP connection accepted by the stack, ready for the application.
pub struct Connection {
    /// The client's tunnel address and port (trustworthy: the router checked allowed IPs).
    pub remote: SocketAddrV4,
    /// The peer's WireGuard endpoint at accept time.
    pub endpoint: Option<SocketAddr>,
    /// The byte stream to hand to hyper.
    pub stream: Stream,
}

impl Connection {
    /// Wraps what the stack accepted; `driver` is rung whenever the stack must run again.
    pub fn new(accepted: Accepted, driver: Arc<Notify>) -> Connection {
        Connection {
            remote: accepted.remote,
            endpoint: accepted.endpoint,
            stream: Stream::new(accepted.pipe, driver),
        }
    }
}

/// One TCP connection as seen by the application: tokio `AsyncRead` + `AsyncWrite`.
pub struct Stream {
    pipe: AppPipe,
    driver: Arc<Notify>,
}

impl Stream {
    /// A stream over `pipe` that rings `driver` whenever it writes, reads or closes.
    pub fn new(pipe: AppPipe, driver: Arc<Notify>) -> Stream {
        Stream { pipe, driver }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut p = self.pipe.lock().unwrap();
        match p.read(buf.remaining(), |s| buf.put_slice(s)) {
            Read::Data { unblocked, .. } => {
                drop(p);
                if unblocked {
                    // The driver stopped reading the socket when the pipe filled up.
                    self.driver.notify_one();
                }
                Poll::Ready(Ok(()))
            }
            Read::Eof => Poll::Ready(Ok(())),
            Read::Reset => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            Read::Empty => {
                p.register_read_waker(cx.waker());
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut p = self.pipe.lock().unwrap();
        match p.write(data) {
            Write::Queued(n) => {
                drop(p);
                self.driver.notify_one();
                Poll::Ready(Ok(n))
            }
            Write::Full => {
                p.register_write_waker(cx.waker());
                Poll::Pending
            }
            Write::Reset => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            Write::Closed => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut p = self.pipe.lock().unwrap();
        match p.is_flushed() {
            Err(_) => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => {
                p.register_write_waker(cx.waker());
                Poll::Pending
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pipe.lock().unwrap().close_write();
        self.driver.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.pipe.lock().unwrap().close_write();
        self.driver.notify_one();
    }
}
