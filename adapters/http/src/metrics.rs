//! The server's counters, as atomics, exposed on `GET /metrics`.
//!
//! The core names the metrics, bounds their labels and writes the text format
//! ([`nodegate_core::metrics`]); this module only counts. Counters move once per request or
//! per upload, never per chunk: bytes sent are added when a response body ends, bytes received
//! when an upload's body ends.
//!
//! `nodegate_partial_upload_bytes` is the size of the partial files of resumable uploads this
//! process has seen: it is updated after every upload request on a key and whenever `HEAD`
//! finds a partial. Partial files left from before a restart are not walked at start-up (the
//! start-up sweep is bounded and looks for temp files only); each is counted from the first
//! `HEAD` or `PUT` on its key, which is what a resuming client sends first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nodegate_core::keys::{Root, Target};
use nodegate_core::metrics::{
    self as names, MethodLabel, REFUSAL_REASONS, REQUEST_SLOTS, RouteLabel, Snapshot,
    UPLOAD_OUTCOMES, UploadOutcome,
};

/// Every counter of one server.
pub(crate) struct Metrics {
    requests: Box<[AtomicU64]>,
    refusals: [AtomicU64; REFUSAL_REASONS.len()],
    uploads: [AtomicU64; UPLOAD_OUTCOMES.len()],
    received: AtomicU64,
    sent: AtomicU64,
    sendfile: AtomicU64,
    uploads_in_progress: AtomicU64,
    open_connections: AtomicU64,
    partial_bytes: AtomicU64,
    /// The partial sizes counted in `partial_bytes`, per key (bounded by the partial files on
    /// disk).
    partials: Mutex<HashMap<(Root, String), u64>>,
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            requests: (0..REQUEST_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            refusals: std::array::from_fn(|_| AtomicU64::new(0)),
            uploads: std::array::from_fn(|_| AtomicU64::new(0)),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            sendfile: AtomicU64::new(0),
            uploads_in_progress: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            partial_bytes: AtomicU64::new(0),
            partials: Mutex::new(HashMap::new()),
        })
    }

    /// One answered request.
    pub(crate) fn request(&self, route: RouteLabel, method: MethodLabel, status: u16, sent: u64) {
        self.requests[names::request_slot(route, method, status)].fetch_add(1, Ordering::Relaxed);
        if sent > 0 {
            self.sent.fetch_add(sent, Ordering::Relaxed);
        }
    }

    /// One refusal, by its core label.
    pub(crate) fn refusal(&self, reason: &str) {
        self.refusals[names::refusal_slot(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// How an upload request ended.
    pub(crate) fn upload(&self, outcome: UploadOutcome) {
        self.uploads[names::upload_slot(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// Body bytes received by an upload.
    pub(crate) fn received(&self, bytes: u64) {
        if bytes > 0 {
            self.received.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts an upload in progress until the guard drops.
    pub(crate) fn upload_started(self: &Arc<Self>) -> Gauge {
        Gauge::up(self.clone(), |m| &m.uploads_in_progress)
    }

    /// Counts an open connection until the guard drops.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> Gauge {
        Gauge::up(self.clone(), |m| &m.open_connections)
    }

    /// The partial file of `target` now holds `size` bytes (`None`: there is none).
    pub(crate) fn partial(&self, target: &Target, size: Option<u64>) {
        let mut partials = self.partials.lock().unwrap_or_else(PoisonError::into_inner);
        if size.is_none() && partials.is_empty() {
            return;
        }
        let key = (target.root(), target.rel().to_owned());
        let before = match size {
            Some(size) => partials.insert(key, size),
            None => partials.remove(&key),
        }
        .unwrap_or(0);
        let after = size.unwrap_or(0);
        // Under the lock, so the sum never goes below zero.
        if after >= before {
            self.partial_bytes
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.partial_bytes
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Download bytes sent with `sendfile` (also counted as sent when the body ends).
    pub(crate) fn sendfile(&self, bytes: u64) {
        self.sendfile.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The text exposition of every counter.
    pub(crate) fn render(&self) -> String {
        let load = |counters: &[AtomicU64]| -> Vec<u64> {
            counters.iter().map(|c| c.load(Ordering::Relaxed)).collect()
        };
        let requests = load(&self.requests);
        let refusals = load(&self.refusals);
        let uploads = load(&self.uploads);
        names::render(&Snapshot {
            requests: &requests,
            refusals: &refusals,
            uploads: &uploads,
            received_bytes: self.received.load(Ordering::Relaxed),
            sent_bytes: self.sent.load(Ordering::Relaxed),
            sendfile_bytes: self.sendfile.load(Ordering::Relaxed),
            uploads_in_progress: self.uploads_in_progress.load(Ordering::Relaxed),
            partial_upload_bytes: self.partial_bytes.load(Ordering::Relaxed),
            open_connections: self.open_connections.load(Ordering::Relaxed),
        })
    }
}

/// One unit of a gauge, given back on drop (however the task holding it ends).
pub(crate) struct Gauge {
    metrics: Arc<Metrics>,
    gauge: fn(&Metrics) -> &AtomicU64,
}

impl Gauge {
    fn up(metrics: Arc<Metrics>, gauge: fn(&Metrics) -> &AtomicU64) -> Self {
        gauge(&metrics).fetch_add(1, Ordering::Relaxed);
        Self { metrics, gauge }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).fetch_sub(1, Ordering::Relaxed);
    }
}
