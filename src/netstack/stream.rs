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
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    /// Queues as much of `parts`, in order, as the pipe has room for, under one lock and with
    /// one ring of the driver: hyper hands a reply's head and body as separate slices and
    /// need not copy them into one buffer first.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        parts: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut p = self.pipe.lock().unwrap();
        let mut queued = 0;
        for part in parts.iter().filter(|part| !part.is_empty()) {
            match p.write(part) {
                Write::Queued(n) => {
                    queued += n;
                    if n < part.len() {
                        break;
                    }
                }
                Write::Full => break,
                Write::Reset => return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
                Write::Closed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        if queued == 0 && parts.iter().any(|part| !part.is_empty()) {
            p.register_write_waker(cx.waker());
            return Poll::Pending;
        }
        drop(p);
        if queued > 0 {
            self.driver.notify_one();
        }
        Poll::Ready(Ok(queued))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Complete once the bytes are in the pipe, as a kernel socket's flush is once they are
    /// in its send buffer: the write already asked the driver to move them, so waiting for it
    /// would only cost this task another wake-up per reply. Fails once the connection was
    /// reset.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pipe.lock().unwrap().reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Poll::Ready(Ok(()))
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
