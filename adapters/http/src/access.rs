//! The access log: one event per completed request, emitted when its response body ends.
//!
//! # Which requests are logged, and how
//!
//! - A request the core classified into a command (it passed routing, authentication and the
//!   key and header checks) gets **one access event at INFO** once its response has been sent
//!   or abandoned, whatever its status (a download's 404, an upload's 400 for a wrong hash,
//!   a 507): `method`, `key` (file and listing routes; the decoded key, escaped) or `path`
//!   (other routes; the path only, never a query string), `status`, `bytes` (body bytes sent,
//!   or for an upload received), `duration_ms` (head received to body ended) and `remote`.
//!   `/healthz` and `/readyz` are logged the same way at DEBUG only, so probes never fill an
//!   INFO log.
//! - A request the core **refused** before any effect (401, 404 for an unknown path, 400 for
//!   a bad key, 405, 413 from `Content-Length`, ...) is not access-logged: it goes through the
//!   refusal aggregation (the first per reason and remote in full, with the reason in words,
//!   then one summary line per interval), so a 401 flood does not become a log flood.
//! - Both kinds are counted in `nodegate_requests_total`, refusals also in
//!   `nodegate_refusals_total`.
//! - Requests hyper answers itself (a head over 64 KiB, a head timeout) never reach the
//!   service and are neither logged here nor counted.
//!
//! String fields are written quoted and escaped in the plain format (and as JSON strings in
//! the JSON format), so a key cannot inject a line or split a field. The event never carries
//! a header value: no `Authorization`, no token.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use nodegate_core::metrics::{MethodLabel, RouteLabel};
use tracing::{debug, info};

use crate::metrics::Metrics;

/// Target of the access log: one event per completed request (log sinks may treat this
/// high-volume stream apart from the rest, as `nodegate`'s buffers it).
pub const ACCESS_LOG_TARGET: &str = "nodegate_http::access";

/// What the access event names the request by.
pub(crate) enum Subject {
    /// A file or listing key, as decoded by the core.
    Key(String),
    /// The path of any other route (percent-encoded as received, so plain ASCII).
    Path(Cow<'static, str>),
}

/// Everything the access event reports except what is only known at the end.
pub(crate) struct Record {
    pub(crate) started: Instant,
    pub(crate) method: http::Method,
    pub(crate) route: RouteLabel,
    pub(crate) remote: SocketAddr,
    /// `None` for refusals: counted, not access-logged.
    pub(crate) subject: Option<Subject>,
    /// Request body bytes received (uploads).
    pub(crate) received: u64,
}

/// A response body that counts the bytes it yields and, when dropped (sent completely, or
/// abandoned by a client that went away), counts the request and emits its access event.
pub(crate) struct AccessBody<B> {
    inner: B,
    sent: u64,
    status: u16,
    record: Record,
    metrics: Arc<Metrics>,
}

impl<B> AccessBody<B> {
    pub(crate) fn new(inner: B, status: u16, record: Record, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            sent: 0,
            status,
            record,
            metrics,
        }
    }
}

impl<B> Drop for AccessBody<B> {
    fn drop(&mut self) {
        let record = &self.record;
        let method = MethodLabel::of(&record.method);
        self.metrics
            .request(record.route, method, self.status, self.sent);
        let Some(subject) = &record.subject else {
            return;
        };
        // An upload reports what it received, everything else what it sent.
        let bytes = if record.method == http::Method::PUT {
            record.received
        } else {
            self.sent
        };
        let duration_ms = millis(record.started.elapsed());
        let method = record.method.as_str();
        let status = self.status;
        let remote = record.remote;
        match subject {
            Subject::Key(key) => info!(
                target: ACCESS_LOG_TARGET,
                method,
                key = key.as_str(),
                status,
                bytes,
                duration_ms,
                %remote,
                "request"
            ),
            Subject::Path(path) if record.route.is_probe() => {
                debug!(target: ACCESS_LOG_TARGET, method, path = &**path, status, bytes, duration_ms, %remote, "request");
            }
            Subject::Path(path) => {
                info!(target: ACCESS_LOG_TARGET, method, path = &**path, status, bytes, duration_ms, %remote, "request");
            }
        }
    }
}

impl<B> Body for AccessBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.sent += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Milliseconds with microsecond precision.
pub(crate) fn millis(elapsed: std::time::Duration) -> f64 {
    // Precision loss only past 2^53 µs (285 years).
    #[allow(clippy::cast_precision_loss, reason = "see above")]
    let micros = elapsed.as_micros() as f64;
    micros / 1000.0
}
