//! Aggregation of refusal logs (issue 12, item 9): a flood of refused requests (401s from a
//! scanner, 404s from a crawler) must not become a flood of log lines.
//!
//! Refusals are grouped by [`RefusalKey`] (the reason and the remote IP address). The first
//! refusal of a key is logged in full; later ones within the same interval are only counted,
//! and one summary per interval reports the count. A key quiet for a whole interval is
//! forgotten, so its next refusal is logged in full again. Memory is bounded: past
//! `max_keys` distinct keys, new keys share an overflow key without a remote (one per reason;
//! reasons are a small fixed set of labels).
//!
//! Time is an argument: `now` is any monotonic [`Duration`] (the adapter passes the time since
//! it started). Drain contract: after [`RefusalLog::handle_refusal`], or periodically (at least
//! once per interval), call [`RefusalLog::poll_summary`] until it returns `None`.
//!
//! ```
//! use std::time::Duration;
//! use nodegate_core::refusal_log::{LogDecision, RefusalKey, RefusalLog};
//!
//! let mut log = RefusalLog::new(Duration::from_secs(10), 1024);
//! let key = RefusalKey::new("unauthorized", Some("192.0.2.1".parse().unwrap()));
//! let at = Duration::from_secs;
//! assert_eq!(log.handle_refusal(key, at(0)), LogDecision::Log);
//! for s in 1..9 {
//!     assert_eq!(log.handle_refusal(key, at(s)), LogDecision::Count);
//! }
//! assert!(log.poll_summary(at(9)).is_none());
//! let summary = log.poll_summary(at(10)).expect("one line per interval");
//! assert_eq!((summary.key, summary.count), (key, 8));
//! assert!(log.poll_summary(at(10)).is_none());
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// What refusals are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RefusalKey {
    /// A short, stable, secret-free label of the reason (`unauthorized`, `bad_key`, ...).
    pub reason: &'static str,
    /// The remote address; `None` for the overflow group of remotes past the key limit.
    pub remote: Option<IpAddr>,
}

impl RefusalKey {
    /// A key for `reason` from `remote`.
    #[must_use]
    pub fn new(reason: &'static str, remote: Option<IpAddr>) -> Self {
        Self { reason, remote }
    }
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecision {
    /// Log this refusal in full: the first of its key in this interval.
    Log,
    /// Only count it; a later [`Summary`] reports the count.
    Count,
}

/// One summary line: `count` refusals of `key` were counted, not logged, over `over`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The group.
    pub key: RefusalKey,
    /// Refusals counted since the previous line of this key.
    pub count: u64,
    /// The time those refusals span (at least the interval).
    pub over: Duration,
}

/// The aggregation state. See the module documentation.
#[derive(Debug, Clone)]
pub struct RefusalLog {
    interval: Duration,
    max_keys: usize,
    groups: BTreeMap<RefusalKey, Group>,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    since: Duration,
    counted: u64,
}

/// Interval of the adapter's default: one summary line per key every 10 s.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Keys tracked at once by default before new remotes share the overflow key.
pub const DEFAULT_MAX_KEYS: usize = 4096;

impl RefusalLog {
    /// Aggregates over `interval` (a zero interval logs every refusal), tracking at most
    /// `max_keys` keys (at least one: the overflow key).
    #[must_use]
    pub fn new(interval: Duration, max_keys: usize) -> Self {
        Self {
            interval,
            max_keys: max_keys.max(1),
            groups: BTreeMap::new(),
        }
    }

    /// Keys currently tracked: at most `max_keys`, plus one overflow key per reason.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.groups.len()
    }

    /// Records one refusal at `now` and says whether to log it.
    pub fn handle_refusal(&mut self, key: RefusalKey, now: Duration) -> LogDecision {
        if self.interval.is_zero() {
            return LogDecision::Log;
        }
        let key = if self.groups.contains_key(&key) || self.groups.len() < self.max_keys {
            key
        } else {
            RefusalKey {
                remote: None,
                ..key
            }
        };
        match self.groups.get_mut(&key) {
            Some(group) => {
                group.counted = group.counted.saturating_add(1);
                LogDecision::Count
            }
            None => {
                self.groups.insert(
                    key,
                    Group {
                        since: now,
                        counted: 0,
                    },
                );
                LogDecision::Log
            }
        }
    }

    /// The next summary due at `now`, if any. Groups whose interval ended with nothing counted
    /// are forgotten on the way.
    pub fn poll_summary(&mut self, now: Duration) -> Option<Summary> {
        let interval = self.interval;
        let due = |group: &Group| now.saturating_sub(group.since) >= interval;
        self.groups
            .retain(|_, group| !due(group) || group.counted > 0);
        let (key, group) = self.groups.iter_mut().find(|(_, group)| due(group))?;
        let summary = Summary {
            key: *key,
            count: group.counted,
            over: now.saturating_sub(group.since),
        };
        group.since = now;
        group.counted = 0;
        Some(summary)
    }
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new(DEFAULT_INTERVAL, DEFAULT_MAX_KEYS)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    fn drain(log: &mut RefusalLog, now: Duration) -> Vec<Summary> {
        std::iter::from_fn(|| log.poll_summary(now)).collect()
    }

    #[test]
    fn first_refusal_logs_then_one_summary_per_interval() {
        let mut log = RefusalLog::new(Duration::from_secs(10), 16);
        let key = RefusalKey::new("unauthorized", ip(1));
        let ms = Duration::from_millis;
        assert_eq!(log.handle_refusal(key, ms(0)), LogDecision::Log);
        for t in 1..1000 {
            assert_eq!(log.handle_refusal(key, ms(t * 10)), LogDecision::Count);
        }
        let lines = drain(&mut log, ms(10_000));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].count, 999);
        // The flood goes on: still counted, one line per interval.
        assert_eq!(log.handle_refusal(key, ms(10_001)), LogDecision::Count);
        assert!(drain(&mut log, ms(19_999)).is_empty());
        assert_eq!(drain(&mut log, ms(20_000))[0].count, 1);
        // Quiet for an interval: forgotten, the next one is logged in full.
        assert!(drain(&mut log, ms(30_000)).is_empty());
        assert_eq!(log.tracked(), 0);
        assert_eq!(log.handle_refusal(key, ms(30_001)), LogDecision::Log);
    }

    #[test]
    fn keys_are_reason_and_remote() {
        let mut log = RefusalLog::new(Duration::from_secs(1), 16);
        let t = Duration::ZERO;
        assert_eq!(
            log.handle_refusal(RefusalKey::new("a", ip(1)), t),
            LogDecision::Log
        );
        assert_eq!(
            log.handle_refusal(RefusalKey::new("b", ip(1)), t),
            LogDecision::Log
        );
        assert_eq!(
            log.handle_refusal(RefusalKey::new("a", ip(2)), t),
            LogDecision::Log
        );
        assert_eq!(
            log.handle_refusal(RefusalKey::new("a", ip(1)), t),
            LogDecision::Count
        );
    }

    #[test]
    fn remotes_past_the_limit_share_the_overflow_key() {
        let mut log = RefusalLog::new(Duration::from_secs(1), 2);
        let t = Duration::ZERO;
        let mut logged = 0;
        for last in 0..=255 {
            if log.handle_refusal(RefusalKey::new("a", ip(last)), t) == LogDecision::Log {
                logged += 1;
            }
        }
        assert_eq!(logged, 3, "two remotes, then the overflow key once");
        assert_eq!(log.tracked(), 3);
        let lines = drain(&mut log, Duration::from_secs(1));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].key.remote, None);
        assert_eq!(lines[0].count, 253);
    }

    #[test]
    fn a_zero_interval_logs_everything() {
        let mut log = RefusalLog::new(Duration::ZERO, 2);
        for _ in 0..3 {
            assert_eq!(
                log.handle_refusal(RefusalKey::new("a", ip(1)), Duration::ZERO),
                LogDecision::Log
            );
        }
        assert_eq!(log.tracked(), 0);
    }

    proptest! {
        /// Every refusal is either logged or reported in exactly one summary, and at most one
        /// line (full or summary) per key is emitted per interval, plus one.
        #[test]
        fn every_refusal_is_accounted_for_and_lines_are_bounded(
            events in proptest::collection::vec((0u8..4, 0u8..6, 0u64..500), 0..300),
        ) {
            let interval = Duration::from_millis(100);
            let mut log = RefusalLog::new(interval, 3);
            let mut now = Duration::ZERO;
            let (mut logged, mut summed, mut lines) = (0u64, 0u64, 0u64);
            let reasons = ["a", "b", "c", "d"];
            for (reason, remote, step) in &events {
                now += Duration::from_millis(*step);
                for summary in drain(&mut log, now) {
                    summed += summary.count;
                    lines += 1;
                }
                let key = RefusalKey::new(reasons[usize::from(*reason)], ip(*remote));
                if log.handle_refusal(key, now) == LogDecision::Log {
                    logged += 1;
                    lines += 1;
                }
                prop_assert!(log.tracked() <= 3 + reasons.len());
            }
            now += interval;
            for summary in drain(&mut log, now) {
                summed += summary.count;
                lines += 1;
            }
            prop_assert_eq!(logged + summed, events.len() as u64);
            let span_intervals = now.as_millis() / interval.as_millis() + 1;
            // 4 reasons x (3 tracked remotes + overflow), at most 2 lines per interval each.
            prop_assert!(u128::from(lines) <= 2 * 16 * span_intervals);
        }
    }
}
