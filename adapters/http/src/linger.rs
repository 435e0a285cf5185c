//! Lingering close: an answer sent before the request body was read must reach the client.
//!
//! When a server closes a socket whose receive queue still holds unread bytes, the kernel
//! resets the connection, and a client still sending its body sees `broken pipe` or
//! `connection reset` instead of the answer (localai-wire.md §A, "Early answers are heard").
//! [`Lingering`] wraps the connection's stream: when hyper shuts the connection down, it first
//! shuts down the write side (the client sees the answer and then end-of-stream), then reads
//! and discards what the client still sends, for at most [`Linger::time`] and
//! [`Linger::bytes`], and only then lets the socket be closed. This is what Go's server and
//! nginx do.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};

use crate::runtime::Runtime;

/// How long and how much a closing connection keeps reading.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Linger {
    /// Longest time spent draining after the write side is shut down.
    pub(crate) time: Duration,
    /// Most bytes read and discarded.
    pub(crate) bytes: u64,
}

/// A connection whose shutdown half-closes, drains for a bounded time and size, then
/// completes.
pub(crate) struct Lingering<R: Runtime> {
    inner: R::Conn,
    runtime: R,
    linger: Linger,
    drain: Option<Drain<R>>,
}

struct Drain<R: Runtime> {
    deadline: Pin<Box<R::Sleep>>,
    left: u64,
    done: bool,
}

impl<R: Runtime> Lingering<R> {
    pub(crate) fn new(inner: R::Conn, runtime: R, linger: Linger) -> Self {
        Self {
            inner,
            runtime,
            linger,
            drain: None,
        }
    }

    /// The connection underneath.
    pub(crate) fn conn(&self) -> &R::Conn {
        &self.inner
    }
}

impl<R: Runtime> Read for Lingering<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<R: Runtime> Write for Lingering<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.drain.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.drain = Some(Drain {
                deadline: Box::pin(this.runtime.sleep(this.linger.time)),
                left: this.linger.bytes,
                done: false,
            });
        }
        let drain = this.drain.as_mut().expect("set just above");
        let mut scratch = [0_u8; 8192];
        while !drain.done {
            if drain.deadline.as_mut().poll(cx).is_ready() || drain.left == 0 {
                drain.done = true;
                break;
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, buf.unfilled()) {
                Poll::Pending => return Poll::Pending,
                // End of stream or an error: nothing more will come, close now.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => drain.done = true,
                Poll::Ready(Err(_)) => drain.done = true,
                Poll::Ready(Ok(())) => {
                    drain.left = drain.left.saturating_sub(buf.filled().len() as u64);
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}
