//! Drives the core's [`RefusalLog`]: the clock, the lock and the summary lines.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nodegate_core::refusal_log::{self, LogDecision, RefusalKey, RefusalLog, Summary};
use tracing::{debug, info};

use crate::runtime::Runtime;

/// Refusal log aggregation shared by all connections.
pub(crate) struct Refusals {
    log: Mutex<RefusalLog>,
    epoch: Instant,
    interval: Duration,
}

impl Refusals {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            log: Mutex::new(RefusalLog::new(interval, refusal_log::DEFAULT_MAX_KEYS)),
            epoch: Instant::now(),
            interval,
        }
    }

    /// Records one refusal; `true` when it is to be logged in full.
    pub(crate) fn record(&self, reason: &'static str, remote: IpAddr) -> bool {
        let decision = self
            .lock()
            .handle_refusal(RefusalKey::new(reason, Some(remote)), self.now());
        decision == LogDecision::Log
    }

    /// Emits due summaries, forever (the server aborts this task when it stops).
    pub(crate) async fn run<R: Runtime>(&self, runtime: &R) {
        if self.interval.is_zero() {
            return;
        }
        let period = self.interval.min(Duration::from_secs(1));
        loop {
            // A tick a period after the previous one was handled (a late tick delays the next).
            runtime.sleep(period).await;
            let due: Vec<Summary> = {
                let now = self.now();
                let mut log = self.lock();
                std::iter::from_fn(|| log.poll_summary(now)).collect()
            };
            for summary in due {
                emit(&summary);
            }
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RefusalLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn emit(summary: &Summary) {
    let reason = summary.key.reason;
    let remote = summary
        .key
        .remote
        .map_or_else(|| "other remotes".to_owned(), |ip| ip.to_string());
    let count = summary.count;
    let seconds = summary.over.as_secs();
    if matches!(reason, "not_found" | "redirect") {
        debug!(
            remote,
            reason, count, seconds, "more requests refused, counted not logged"
        );
    } else {
        info!(
            remote,
            reason, count, seconds, "more requests refused, counted not logged"
        );
    }
}
