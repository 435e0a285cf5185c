//! The smol ↔ hyper glue, in one place: hyper 1's I/O traits over futures-io streams, its
//! executor and timer (all three from `smol-hyper`), and the few runtime primitives the
//! drivers of this crate use (spawn, sleep, timeouts, the blocking pool).
//!
//! Nothing else in the crate names a runtime type directly, so that moving to another
//! executor is a change of this file.

use std::future::Future;
use std::time::Duration;

pub use smol_hyper::rt::{FuturesIo, SmolExecutor, SmolTimer};

/// A spawned task: awaiting it gives its output; dropping it cancels it.
pub type Task<T> = smol::Task<T>;

/// Runs `future` on smol's global executor.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
    smol::spawn(future)
}

/// Runs blocking work (file system calls) on smol's blocking thread pool.
pub async fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    smol::unblock(work).await
}

/// Waits for `span`.
pub async fn sleep(span: Duration) {
    async_io::Timer::after(span).await;
}

/// `future`'s output, or `None` when `limit` passes first (the future is dropped).
pub async fn timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        sleep(limit).await;
        None
    })
    .await
}

/// Drives `future` to its end on the calling thread while smol's global executor runs the
/// spawned tasks (the entry point of a program on this adapter).
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    smol::block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_gives_the_output_in_time_and_none_after() {
        block_on(async {
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Some(7));
            let late = timeout(Duration::from_millis(20), sleep(Duration::from_secs(5))).await;
            assert_eq!(late, None);
            assert_eq!(spawn(async { 3 }).await, 3);
            assert_eq!(unblock(|| 4).await, 4);
        });
    }
}
