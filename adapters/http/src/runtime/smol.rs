//! [`Runtime`] on smol: tasks on an async-executor (yours, or smol's global one), files on the
//! `blocking` pool, async-io's timers and sockets.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use smol::{Async, Executor};
use smol_hyper::rt::{FuturesIo, SmolTimer};

use super::{Runtime, Unfinished};

/// smol: tasks go to the executor given to [`SmolRuntime::new`], or to smol's global executor
/// ([`smol::spawn`]) for [`SmolRuntime::global`]; blocking work to the `blocking` pool; timers
/// and sockets to the async-io reactor, which needs no thread of the caller's.
///
/// The server's listener is a [`smol::net::TcpListener`]; one bound elsewhere converts with
/// `From<Async<std::net::TcpListener>>` or `TryFrom<std::net::TcpListener>`.
#[derive(Clone, Default)]
pub struct SmolRuntime {
    executor: Option<Arc<Executor<'static>>>,
}

impl std::fmt::Debug for SmolRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let executor = if self.executor.is_some() {
            "own"
        } else {
            "global"
        };
        f.debug_struct("SmolRuntime")
            .field("executor", &executor)
            .finish()
    }
}

impl SmolRuntime {
    /// Tasks run on `executor`: the caller runs it (`executor.run(..)`) on as many threads as it
    /// likes.
    #[must_use]
    pub fn new(executor: Arc<Executor<'static>>) -> Self {
        Self {
            executor: Some(executor),
        }
    }

    /// Tasks run on smol's global executor (its threads are started on first use; see
    /// `SMOL_THREADS`).
    #[must_use]
    pub fn global() -> Self {
        Self { executor: None }
    }
}

/// A sleep on async-io's timer.
#[derive(Debug)]
pub struct SmolSleep(smol::Timer);

impl Future for SmolSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// An accepted connection: the stream hyper reads and writes, and its reactor handle, which
/// waits for the socket to take more bytes when a download sends file data on it.
#[derive(Debug)]
pub struct SmolConn {
    io: FuturesIo<smol::net::TcpStream>,
    socket: Arc<Async<std::net::TcpStream>>,
}

impl Read for SmolConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for SmolConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Runtime for SmolRuntime {
    type Listener = smol::net::TcpListener;
    type Conn = SmolConn;
    type Timer = SmolTimer;
    type Sleep = SmolSleep;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.executor {
            Some(executor) => executor.spawn(future).detach(),
            None => smol::spawn(future).detach(),
        }
    }

    fn unblock<T, F>(&self, work: F) -> impl Future<Output = Result<T, Unfinished>> + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // A smol task is cancelled when dropped; the contract wants the work to run to its end
        // whatever happens to the future, so the task is detached and the result comes back
        // on a channel (dropped unsent if the work panics).
        let (tx, rx) = tokio::sync::oneshot::channel();
        smol::unblock(move || {
            let _ = tx.send(work());
        })
        .detach();
        async move {
            rx.await
                .map_err(|_| Unfinished("the blocking work panicked".to_owned()))
        }
    }

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        SmolSleep(smol::Timer::after(duration))
    }

    fn timer(&self) -> Self::Timer {
        SmolTimer::new()
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Conn, SocketAddr)> {
        let (stream, remote) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let socket = stream.clone().into();
        Ok((
            SmolConn {
                io: FuturesIo::new(stream),
                socket,
            },
            remote,
        ))
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    const SENDFILE: bool = cfg!(target_os = "linux");

    fn poll_sendfile(
        conn: &Self::Conn,
        cx: &mut Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            match nodegate_store::send_file(conn.socket.get_ref().as_fd(), file, offset, len) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    ready!(conn.socket.poll_writable(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    }
}
