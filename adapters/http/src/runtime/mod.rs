//! The runtime seam: the little the file-transfer server needs from an async runtime.
//!
//! The server is written once against [`Runtime`]; each runtime is a small implementation of it
//! (quinn's pattern): `TokioRuntime` behind the `tokio` feature, `SmolRuntime` behind the
//! `smol` feature. Everything else the server uses is runtime-agnostic: `tokio::sync` channels,
//! semaphores and `select!` (which need no tokio runtime), `futures-util`, hyper's connection
//! state machine and tokio-tungstenite's WebSocket codec over the upgraded connection.
//!
//! # The contract
//!
//! An implementation promises:
//! - [`Runtime::spawn`] runs the future to completion (or until the future itself returns) on
//!   the runtime's executor, concurrently with the caller; the server never waits on a handle,
//!   it tracks its tasks itself.
//! - [`Runtime::unblock`] runs blocking work (file reads and writes, hashing) on a thread where
//!   blocking is allowed, never on the executor's threads. The work starts even if the
//!   returned future is dropped unpolled, and runs to the end (downloads hand their reader to
//!   it and never await it); a panic in the work is reported as [`Unfinished`].
//! - [`Runtime::sleep`] completes once `duration` has passed, and [`Runtime::timer`] is the same
//!   clock as hyper's [`Timer`](hyper::rt::Timer) (header read timeouts).
//! - [`Runtime::accept`] waits for the next connection on the listener and returns it with
//!   `TCP_NODELAY` set (small answers are not delayed); an error is returned as is, so the
//!   server can tell descriptor exhaustion (`EMFILE`, `ENFILE`) from other failures.
//! - [`Runtime::poll_sendfile`], where [`Runtime::SENDFILE`] says it works, sends file bytes on
//!   a connection with `sendfile(2)` and waits like a write: `Pending` with the waker
//!   registered while the socket is full. The default says it does not work, and downloads
//!   then copy every chunk.

#[cfg(feature = "smol")]
mod smol;
#[cfg(feature = "tokio")]
mod tokio;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

#[cfg(feature = "smol")]
pub use self::smol::{SmolConn, SmolRuntime};
#[cfg(feature = "tokio")]
pub use self::tokio::TokioRuntime;

/// What the file-transfer server needs from an async runtime (see the [module docs](self) for
/// the contract).
pub trait Runtime: Clone + Send + Sync + Unpin + 'static {
    /// A bound TCP listener the server accepts on.
    type Listener: Send + Sync + 'static;
    /// An accepted connection, with the I/O traits hyper reads and writes through.
    type Conn: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static;
    /// The timer hyper's connection builder is given (header read timeouts).
    type Timer: hyper::rt::Timer + Send + Sync + 'static;
    /// A future that completes after a duration.
    type Sleep: Future<Output = ()> + Send + 'static;

    /// Runs `future` on the executor, detached.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Runs blocking `work` on a thread pool meant for it; the future yields its result.
    fn unblock<T, F>(
        &self,
        work: F,
    ) -> impl Future<Output = Result<T, Unfinished>> + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static;

    /// A future that completes once `duration` has passed.
    fn sleep(&self, duration: Duration) -> Self::Sleep;

    /// The timer for hyper's connection builder.
    fn timer(&self) -> Self::Timer;

    /// Waits for the next connection; `TCP_NODELAY` is set on it.
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;

    /// The address `listener` is bound to.
    ///
    /// # Errors
    /// When the socket has no local address.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Whether [`poll_sendfile`](Self::poll_sendfile) works on this runtime's connections.
    const SENDFILE: bool = false;

    /// Sends up to `len` bytes of `file` from `offset` on `conn` with `sendfile(2)`, as a write
    /// would: `Pending` (the waker registered) while the socket is full, the bytes sent (0 at
    /// the end of the file) otherwise. Called only for ranges in the page cache.
    ///
    /// # Errors
    /// The system call's error; by default [`io::ErrorKind::Unsupported`].
    fn poll_sendfile(
        conn: &Self::Conn,
        cx: &mut Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let _ = (conn, cx, file, offset, len);
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

/// Blocking work that did not return: it panicked, or the pool dropped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished(pub String);

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blocking work did not finish: {}", self.0)
    }
}

impl std::error::Error for Unfinished {}

/// `future` did not complete in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Runs `future` for at most `duration`: the future is polled before the clock, so one that is
/// ready wins even when the time is already up (as `tokio::time::timeout`).
pub(crate) async fn timeout<R: Runtime, F: Future>(
    runtime: &R,
    duration: Duration,
    future: F,
) -> Result<F::Output, Elapsed> {
    let future = pin!(future);
    let sleep = pin!(runtime.sleep(duration));
    match futures_util::future::select(future, sleep).await {
        futures_util::future::Either::Left((output, _)) => Ok(output),
        futures_util::future::Either::Right(((), _)) => Err(Elapsed),
    }
}

/// Yields once to the executor, so that other tasks run before the caller goes on.
pub(crate) fn yield_now() -> impl Future<Output = ()> {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false)
}

// The contract needs a runtime to run on: built with either feature.
#[cfg(all(test, any(feature = "tokio", feature = "smol")))]
mod tests;
