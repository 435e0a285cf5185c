//! [`Runtime`] on tokio: tasks on the current runtime, files on its blocking pool, tokio's
//! timers and sockets.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};

use super::{Runtime, Unfinished};

/// The tokio runtime the caller runs in (like `tokio::spawn`, every method must be called from
/// within a tokio runtime). Needs tokio's `rt`, `net` and `time` drivers enabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    type Listener = tokio::net::TcpListener;
    type Conn = TokioIo<tokio::net::TcpStream>;
    type Timer = TokioTimer;
    type Sleep = tokio::time::Sleep;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(tokio::spawn(future));
    }

    fn unblock<T, F>(&self, work: F) -> impl Future<Output = Result<T, Unfinished>> + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // Started here, not when first polled: the work runs even if the future is dropped.
        let handle = tokio::task::spawn_blocking(work);
        async move { handle.await.map_err(|join| Unfinished(join.to_string())) }
    }

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn timer(&self) -> Self::Timer {
        TokioTimer::new()
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Conn, SocketAddr)> {
        let (stream, remote) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((TokioIo::new(stream), remote))
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
        let stream = conn.inner();
        loop {
            ready!(stream.poll_write_ready(cx))?;
            // `try_io` clears the readiness on `WouldBlock`, so the next poll waits for it.
            match stream.try_io(tokio::io::Interest::WRITABLE, || {
                nodegate_store::send_file(stream.as_fd(), file, offset, len)
            }) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }
}
