//! Metric names, bounded labels and the Prometheus text exposition, as pure functions.
//!
//! The adapter keeps one atomic counter per *slot*; this module says which slot a request
//! lands in ([`request_slot`], [`refusal_slot`], [`upload_slot`]) and turns a [`Snapshot`] of
//! the counters into the text format (version 0.0.4) that Prometheus scrapes ([`render`]).
//! Every label takes its value from a small fixed set: routes, methods, the statuses the
//! server answers, refusal reasons and upload outcomes. Keys, paths and remote addresses
//! never become labels, so a scanner cannot grow the series count.
//!
//! ```
//! use http::Method;
//! use nodegate_core::metrics::{self, MethodLabel, RouteLabel, Snapshot};
//!
//! let mut requests = vec![0; metrics::REQUEST_SLOTS];
//! let route = RouteLabel::of_path("/v1/files/models/a.gguf");
//! requests[metrics::request_slot(route, MethodLabel::of(&Method::GET), 200)] += 1;
//! let refusals = vec![0; metrics::REFUSAL_REASONS.len()];
//! let uploads = vec![0; metrics::UPLOAD_OUTCOMES.len()];
//! let text = metrics::render(&Snapshot {
//!     requests: &requests,
//!     refusals: &refusals,
//!     uploads: &uploads,
//!     ..Snapshot::default()
//! });
//! assert!(text.contains("nodegate_requests_total{route=\"files\",method=\"GET\",status=\"200\"} 1\n"));
//! ```

use std::fmt::Write as _;

use http::Method;

use crate::request::{
    FILES_LIST_PREFIX, FILES_PREFIX, HEALTHZ, LOGS_INDEX, LOGS_PREFIX, METRICS, READYZ,
};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `route` label: which family of paths a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    /// `/v1/files/*` (and the `/v1/files` redirect).
    Files,
    /// `/v1/files-list/*`.
    FilesList,
    /// `/v1/backend-logs*`.
    BackendLogs,
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/metrics`.
    Metrics,
    /// Any other path (answered 404).
    Other,
}

impl RouteLabel {
    /// Every route, in slot order.
    pub const ALL: [Self; 7] = [
        Self::Files,
        Self::FilesList,
        Self::BackendLogs,
        Self::Healthz,
        Self::Readyz,
        Self::Metrics,
        Self::Other,
    ];

    /// The route of a request path (the path only: no query string).
    #[must_use]
    pub fn of_path(path: &str) -> Self {
        if path.starts_with(FILES_PREFIX) || path == "/v1/files" {
            Self::Files
        } else if path.starts_with(FILES_LIST_PREFIX) || path == "/v1/files-list" {
            Self::FilesList
        } else if path == LOGS_INDEX || path.starts_with(LOGS_PREFIX) {
            Self::BackendLogs
        } else if path == HEALTHZ {
            Self::Healthz
        } else if path == READYZ {
            Self::Readyz
        } else if path == METRICS {
            Self::Metrics
        } else {
            Self::Other
        }
    }

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Files => "files",
            Self::FilesList => "files_list",
            Self::BackendLogs => "backend_logs",
            Self::Healthz => "healthz",
            Self::Readyz => "readyz",
            Self::Metrics => "metrics",
            Self::Other => "other",
        }
    }

    /// Whether this is a probe (`/healthz`, `/readyz`): logged at debug, never at info.
    #[must_use]
    pub fn is_probe(self) -> bool {
        matches!(self, Self::Healthz | Self::Readyz)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The `method` label: the methods the server serves, and `other` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodLabel {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `PUT`.
    Put,
    /// `POST`.
    Post,
    /// Any other method (answered 405 or 404).
    Other,
}

impl MethodLabel {
    /// Every method, in slot order.
    pub const ALL: [Self; 5] = [Self::Get, Self::Head, Self::Put, Self::Post, Self::Other];

    /// The label of `method`.
    #[must_use]
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET => Self::Get,
            Method::HEAD => Self::Head,
            Method::PUT => Self::Put,
            Method::POST => Self::Post,
            _ => Self::Other,
        }
    }

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Put => "PUT",
            Self::Post => "POST",
            Self::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The statuses the server answers, each its own `status` label; any other is `other`.
pub const STATUSES: [u16; 19] = [
    101, 200, 206, 307, 308, 400, 401, 403, 404, 405, 408, 409, 413, 416, 431, 500, 503, 504, 507,
];

const STATUS_SLOTS: usize = STATUSES.len() + 1;

/// Counter slots of `nodegate_requests_total`: routes × methods × statuses (plus `other`).
pub const REQUEST_SLOTS: usize = RouteLabel::ALL.len() * MethodLabel::ALL.len() * STATUS_SLOTS;

/// The slot of one request in a [`REQUEST_SLOTS`]-long counter array.
#[must_use]
pub fn request_slot(route: RouteLabel, method: MethodLabel, status: u16) -> usize {
    let status = STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len());
    (route.index() * MethodLabel::ALL.len() + method.index()) * STATUS_SLOTS + status
}

fn request_labels(slot: usize) -> (RouteLabel, MethodLabel, Option<u16>) {
    let status = STATUSES.get(slot % STATUS_SLOTS).copied();
    let rest = slot / STATUS_SLOTS;
    let method = MethodLabel::ALL[rest % MethodLabel::ALL.len()];
    let route = RouteLabel::ALL[(rest / MethodLabel::ALL.len()) % RouteLabel::ALL.len()];
    (route, method, status)
}

/// The `reason` label of `nodegate_refusals_total`: the labels of
/// [`RefusalReason`](crate::request::RefusalReason) and the server's own refusals; the last,
/// `other`, takes anything not listed.
pub const REFUSAL_REASONS: [&str; 15] = [
    "not_found",
    "redirect",
    "unauthorized",
    "method_not_allowed",
    "bad_key",
    "reserved_key",
    "bad_upload",
    "bad_framing",
    "missing_model",
    "not_websocket",
    "foreign_origin",
    "log_streams_full",
    "accept_failed",
    "accept_no_descriptors",
    "other",
];

/// The slot of a refusal label in a [`REFUSAL_REASONS`]-long counter array.
#[must_use]
pub fn refusal_slot(reason: &str) -> usize {
    REFUSAL_REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(REFUSAL_REASONS.len() - 1)
}

/// How an upload request ended: the `outcome` label of `nodegate_uploads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Verified and published under its key (200), or already complete.
    Published,
    /// A chunk of a resumable upload was stored; more are expected (308).
    Partial,
    /// Refused or failed after it was accepted (hash mismatch, cut off, disk full, ...).
    Failed,
}

/// The `outcome` label values, in slot order.
pub const UPLOAD_OUTCOMES: [&str; 3] = ["published", "partial", "failed"];

/// The slot of an outcome in an [`UPLOAD_OUTCOMES`]-long counter array.
#[must_use]
pub fn upload_slot(outcome: UploadOutcome) -> usize {
    outcome as usize
}

/// The counter values to expose. Arrays shorter than their slot count read as zeros.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot<'a> {
    /// `nodegate_requests_total`, indexed by [`request_slot`].
    pub requests: &'a [u64],
    /// `nodegate_refusals_total`, indexed by [`refusal_slot`].
    pub refusals: &'a [u64],
    /// `nodegate_uploads_total`, indexed by [`upload_slot`].
    pub uploads: &'a [u64],
    /// Request body bytes received (uploads).
    pub received_bytes: u64,
    /// Response body bytes sent (downloads, listings, replies).
    pub sent_bytes: u64,
    /// Of those, download bytes the kernel sent from the page cache (`sendfile`), without a
    /// copy through the server's memory.
    pub sendfile_bytes: u64,
    /// Uploads streaming right now.
    pub uploads_in_progress: u64,
    /// Bytes held by partial (resumable, not yet complete) uploads on disk.
    pub partial_upload_bytes: u64,
    /// HTTP connections open right now.
    pub open_connections: u64,
}

/// The Prometheus text exposition of `snapshot`. Series whose counter is zero are left out of
/// the labelled families (absent means zero to Prometheus); gauges and unlabelled counters
/// are always present.
#[must_use]
pub fn render(snapshot: &Snapshot<'_>) -> String {
    let mut out = String::with_capacity(4096);
    header(
        &mut out,
        "nodegate_requests_total",
        "counter",
        "Requests answered, by route, method and status.",
    );
    for (slot, count) in snapshot.requests.iter().enumerate().take(REQUEST_SLOTS) {
        if *count == 0 {
            continue;
        }
        let (route, method, status) = request_labels(slot);
        let _ = write!(
            out,
            "nodegate_requests_total{{route=\"{}\",method=\"{}\",status=\"",
            route.as_str(),
            method.as_str()
        );
        match status {
            Some(status) => {
                let _ = write!(out, "{status}");
            }
            None => out.push_str("other"),
        }
        let _ = writeln!(out, "\"}} {count}");
    }
    header(
        &mut out,
        "nodegate_refusals_total",
        "counter",
        "Requests refused before any effect, by reason.",
    );
    labelled(
        &mut out,
        "nodegate_refusals_total",
        "reason",
        &REFUSAL_REASONS,
        snapshot.refusals,
    );
    header(
        &mut out,
        "nodegate_uploads_total",
        "counter",
        "Upload requests that reached the disk, by outcome.",
    );
    labelled(
        &mut out,
        "nodegate_uploads_total",
        "outcome",
        &UPLOAD_OUTCOMES,
        snapshot.uploads,
    );
    for (name, kind, help, value) in [
        (
            "nodegate_received_bytes_total",
            "counter",
            "Request body bytes received by uploads.",
            snapshot.received_bytes,
        ),
        (
            "nodegate_sent_bytes_total",
            "counter",
            "Response body bytes sent.",
            snapshot.sent_bytes,
        ),
        (
            "nodegate_sendfile_bytes_total",
            "counter",
            "Download bytes sent with sendfile, without a copy through user space.",
            snapshot.sendfile_bytes,
        ),
        (
            "nodegate_uploads_in_progress",
            "gauge",
            "Uploads streaming now.",
            snapshot.uploads_in_progress,
        ),
        (
            "nodegate_partial_upload_bytes",
            "gauge",
            "Bytes held by partial resumable uploads seen since start.",
            snapshot.partial_upload_bytes,
        ),
        (
            "nodegate_open_connections",
            "gauge",
            "HTTP connections open now (upgraded log streams not counted).",
            snapshot.open_connections,
        ),
    ] {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labelled(out: &mut String, name: &str, label: &str, values: &[&str], counts: &[u64]) {
    for (value, count) in values.iter().zip(counts) {
        if *count > 0 {
            let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RefusalReason;

    #[test]
    fn every_request_slot_maps_back_to_its_labels() {
        for route in RouteLabel::ALL {
            for method in MethodLabel::ALL {
                for status in STATUSES.iter().copied().map(Some).chain([None]) {
                    let slot = request_slot(route, method, status.unwrap_or(999));
                    assert!(slot < REQUEST_SLOTS);
                    assert_eq!(request_labels(slot), (route, method, status));
                }
            }
        }
    }

    #[test]
    fn routes_come_from_the_path_only() {
        assert_eq!(RouteLabel::of_path("/v1/files/models/x"), RouteLabel::Files);
        assert_eq!(
            RouteLabel::of_path("/v1/files-list/"),
            RouteLabel::FilesList
        );
        assert_eq!(
            RouteLabel::of_path("/v1/backend-logs/m/ws"),
            RouteLabel::BackendLogs
        );
        assert_eq!(RouteLabel::of_path("/metrics"), RouteLabel::Metrics);
        assert_eq!(RouteLabel::of_path("/metrics/x"), RouteLabel::Other);
        assert!(RouteLabel::of_path("/readyz").is_probe());
    }

    #[test]
    fn every_refusal_reason_has_its_own_label() {
        let reasons = [
            RefusalReason::NotFound,
            RefusalReason::Redirect,
            RefusalReason::Unauthorized(crate::auth::RejectReason::Missing),
            RefusalReason::MethodNotAllowed,
            RefusalReason::BadKey(crate::keys::KeyError::Empty),
            RefusalReason::ReservedKey,
            RefusalReason::BadUpload,
            RefusalReason::BadFraming,
            RefusalReason::MissingModel,
            RefusalReason::NotWebSocket,
            RefusalReason::ForeignOrigin,
        ];
        for reason in reasons {
            assert_eq!(
                REFUSAL_REASONS[refusal_slot(reason.label())],
                reason.label()
            );
        }
        assert_eq!(refusal_slot("anything else"), REFUSAL_REASONS.len() - 1);
    }

    #[test]
    fn render_writes_the_text_exposition_format() {
        let mut requests = vec![0; REQUEST_SLOTS];
        requests[request_slot(RouteLabel::Files, MethodLabel::Put, 308)] = 2;
        requests[request_slot(RouteLabel::Other, MethodLabel::Other, 418)] = 1;
        let mut refusals = vec![0; REFUSAL_REASONS.len()];
        refusals[refusal_slot("unauthorized")] = 7;
        let mut uploads = vec![0; UPLOAD_OUTCOMES.len()];
        uploads[upload_slot(UploadOutcome::Partial)] = 2;
        let text = render(&Snapshot {
            requests: &requests,
            refusals: &refusals,
            uploads: &uploads,
            received_bytes: 10,
            sent_bytes: 20,
            sendfile_bytes: 16,
            uploads_in_progress: 1,
            partial_upload_bytes: 5,
            open_connections: 3,
        });
        let expected = "\
# HELP nodegate_requests_total Requests answered, by route, method and status.
# TYPE nodegate_requests_total counter
nodegate_requests_total{route=\"files\",method=\"PUT\",status=\"308\"} 2
nodegate_requests_total{route=\"other\",method=\"other\",status=\"other\"} 1
# HELP nodegate_refusals_total Requests refused before any effect, by reason.
# TYPE nodegate_refusals_total counter
nodegate_refusals_total{reason=\"unauthorized\"} 7
# HELP nodegate_uploads_total Upload requests that reached the disk, by outcome.
# TYPE nodegate_uploads_total counter
nodegate_uploads_total{outcome=\"partial\"} 2
# HELP nodegate_received_bytes_total Request body bytes received by uploads.
# TYPE nodegate_received_bytes_total counter
nodegate_received_bytes_total 10
# HELP nodegate_sent_bytes_total Response body bytes sent.
# TYPE nodegate_sent_bytes_total counter
nodegate_sent_bytes_total 20
# HELP nodegate_sendfile_bytes_total Download bytes sent with sendfile, without a copy through user space.
# TYPE nodegate_sendfile_bytes_total counter
nodegate_sendfile_bytes_total 16
# HELP nodegate_uploads_in_progress Uploads streaming now.
# TYPE nodegate_uploads_in_progress gauge
nodegate_uploads_in_progress 1
# HELP nodegate_partial_upload_bytes Bytes held by partial resumable uploads seen since start.
# TYPE nodegate_partial_upload_bytes gauge
nodegate_partial_upload_bytes 5
# HELP nodegate_open_connections HTTP connections open now (upgraded log streams not counted).
# TYPE nodegate_open_connections gauge
nodegate_open_connections 3
";
        assert_eq!(text, expected);
    }

    #[test]
    fn short_arrays_read_as_zeros() {
        let text = render(&Snapshot::default());
        assert!(text.contains("nodegate_open_connections 0\n"));
        assert!(!text.contains("nodegate_requests_total{"));
    }
}
