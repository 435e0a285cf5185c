//! Tasks the server owns, on any runtime: spawned detached through [`Runtime::spawn`], joined
//! and aborted through channels, as tokio's `JoinSet` would.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::runtime::{self, Runtime};

/// A set of tasks that end together: [`Tasks::shutdown`] waits for them for a grace period and
/// aborts the rest; dropping the set aborts them all.
pub(crate) struct Tasks {
    /// Each task holds a clone; the receiver sees the channel close once every task ended.
    alive: Option<mpsc::Sender<()>>,
    ended: mpsc::Receiver<()>,
    /// Set to `true` (or dropped) to abort every task at its next poll.
    abort: watch::Sender<bool>,
}

impl Tasks {
    pub(crate) fn new() -> Self {
        let (alive, ended) = mpsc::channel(1);
        Self {
            alive: Some(alive),
            ended,
            abort: watch::Sender::new(false),
        }
    }

    /// Runs `future` on `runtime` until it ends or the set aborts it.
    pub(crate) fn spawn<R, F>(&self, runtime: &R, future: F)
    where
        R: Runtime,
        F: Future<Output = ()> + Send + 'static,
    {
        let alive = self.alive.clone();
        let mut abort = self.abort.subscribe();
        runtime.spawn(async move {
            let _alive = alive;
            // Ends on `true` and when the set is dropped (the sender goes away) alike.
            let aborted = async move {
                let _ = abort.wait_for(|abort| *abort).await;
            };
            futures_util::future::select(pin!(future), pin!(aborted)).await;
        });
    }

    /// Waits for every task to end, for at most `grace`; then aborts those still running.
    pub(crate) async fn shutdown<R: Runtime>(mut self, runtime: &R, grace: Duration) {
        self.alive = None;
        let _ = runtime::timeout(runtime, grace, self.ended.recv()).await;
        let _ = self.abort.send(true);
    }
}
