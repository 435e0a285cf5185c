//! Backend log buffers and the JSON shapes of the backend-log routes (spec §2.12).
//!
//! The embedding program feeds lines per *process key* (`<model>#<replica>`, or a bare model
//! ID); each key keeps the last [`LINES_PER_PROCESS`] lines. Lookups follow LocalAI: an exact key
//! returns its lines; a bare model ID also collects every `<model>#N` buffer, merged in
//! timestamp order. Timestamps are supplied by the caller (the core has no clock) as RFC 3339
//! strings plus a sortable nanosecond value.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

/// Lines kept per process key.
pub const LINES_PER_PROCESS: usize = 1000;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One log line, serialised as `{"timestamp":…,"stream":…,"text":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// RFC 3339 timestamp with nanoseconds and offset.
    pub timestamp: String,
    /// Output stream.
    pub stream: Stream,
    /// The text of the line, without its newline.
    pub text: String,
    /// Sort key: nanoseconds since the Unix epoch (not serialised).
    #[serde(skip)]
    pub at_ns: i128,
}

/// Ring buffers of log lines keyed by process key.
#[derive(Debug, Default, Clone)]
pub struct LogBuffers {
    buffers: BTreeMap<String, VecDeque<LogLine>>,
}

impl LogBuffers {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a line to the buffer of `process_key`, dropping the oldest past the capacity.
    pub fn push(&mut self, process_key: &str, line: LogLine) {
        let buffer = self.buffers.entry(process_key.to_owned()).or_default();
        if buffer.len() == LINES_PER_PROCESS {
            buffer.pop_front();
        }
        buffer.push_back(line);
    }

    /// The model IDs that have logs: replica suffixes (`#N`) stripped, de-duplicated, sorted.
    #[must_use]
    pub fn models(&self) -> Vec<String> {
        let ids: BTreeSet<&str> = self
            .buffers
            .keys()
            .map(|key| key.split('#').next().unwrap_or(key))
            .collect();
        ids.into_iter().map(str::to_owned).collect()
    }

    /// The process keys a subscription to `model` attaches to: the exact key, and for a bare
    /// model ID every `<model>#N` key that exists now.
    #[must_use]
    pub fn keys_for(&self, model: &str) -> Vec<String> {
        let mut keys = Vec::new();
        if self.buffers.contains_key(model) {
            keys.push(model.to_owned());
        }
        if !model.contains('#') {
            let prefix = format!("{model}#");
            keys.extend(
                self.buffers
                    .keys()
                    .filter(|key| key.starts_with(&prefix))
                    .cloned(),
            );
        }
        keys
    }

    /// The buffered lines of `model`: the exact key's lines if it exists; else, for a bare model
    /// ID, every replica's lines merged by timestamp (stable); else none.
    #[must_use]
    pub fn lines(&self, model: &str) -> Vec<LogLine> {
        if let Some(buffer) = self.buffers.get(model) {
            return buffer.iter().cloned().collect();
        }
        if model.contains('#') {
            return Vec::new();
        }
        let mut lines: Vec<LogLine> = self
            .keys_for(model)
            .iter()
            .filter_map(|key| self.buffers.get(key))
            .flat_map(|buffer| buffer.iter().cloned())
            .collect();
        lines.sort_by_key(|line| line.at_ns);
        lines
    }
}

/// The first WebSocket frame: `{"lines":[…],"type":"initial"}`.
#[must_use]
pub fn initial_frame(lines: &[LogLine]) -> String {
    serde_json::json!({ "lines": lines, "type": "initial" }).to_string()
}

/// A frame for one new line: `{"line":{…},"type":"line"}`.
#[must_use]
pub fn line_frame(line: &LogLine) -> String {
    serde_json::json!({ "line": line, "type": "line" }).to_string()
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 in UTC with nine fractional digits
/// (`2026-11-28T13:48:49.123456789Z`), the shape of Go's `time.RFC3339Nano` for UTC times.
#[must_use]
pub fn format_timestamp(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at_ns: i128, text: &str) -> LogLine {
        LogLine {
            timestamp: format!("2026-01-01T00:00:00.{at_ns:09}Z"),
            stream: Stream::Stdout,
            text: text.to_owned(),
            at_ns,
        }
    }

    #[test]
    fn models_strip_replica_suffixes_and_sort() {
        let mut logs = LogBuffers::new();
        logs.push("b#0", line(1, "x"));
        logs.push("a#1", line(2, "y"));
        logs.push("a#0", line(3, "z"));
        logs.push("c", line(4, "w"));
        assert_eq!(logs.models(), ["a", "b", "c"]);
        assert!(LogBuffers::new().models().is_empty());
    }

    #[test]
    fn bare_model_merges_replicas_by_time() {
        let mut logs = LogBuffers::new();
        logs.push("m#0", line(1, "first"));
        logs.push("m#1", line(2, "second"));
        logs.push("m#0", line(3, "third"));
        let texts: Vec<_> = logs.lines("m").into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["first", "second", "third"]);
        assert_eq!(logs.lines("m#1").len(), 1);
        assert!(logs.lines("m#7").is_empty());
        assert!(logs.lines("unknown").is_empty());
    }

    #[test]
    fn buffers_keep_the_last_thousand_lines() {
        let mut logs = LogBuffers::new();
        for i in 0..1500 {
            logs.push("m", line(i, &i.to_string()));
        }
        let lines = logs.lines("m");
        assert_eq!(lines.len(), LINES_PER_PROCESS);
        assert_eq!(lines[0].text, "500");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_timestamp(1_795_873_729_123_456_789),
            "2026-11-28T13:48:49.123456789Z"
        );
        assert_eq!(
            format_timestamp(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn frames_have_localai_shapes() {
        let l = line(5, "hello");
        assert_eq!(
            line_frame(&l),
            r#"{"line":{"stream":"stdout","text":"hello","timestamp":"2026-01-01T00:00:00.000000005Z"},"type":"line"}"#
        );
        assert_eq!(initial_frame(&[]), r#"{"lines":[],"type":"initial"}"#);
    }
}
