//! A bounded cache of the file states `HEAD` answers from, checked against the disk on every
//! use.
//!
//! Reading a key's [`FileState`] takes about a dozen system calls: the entry, its hash
//! sidecar and three probes for an upload in progress, each resolved beneath the root. A
//! driver can instead observe [`Stamps`] — the `statx` of the key's directory, of the entry and
//! of its hash sidecar, three calls — and reuse a state read earlier while the stamps are
//! unchanged. This module decides when that is sound; the driver only reports what it saw.
//!
//! # Why equal stamps mean an unchanged state
//!
//! - Everything the state holds lives in the key's directory: the entry, `rel.sha256`,
//!   `rel.sha256.target`, `.name.partial` and its total sidecar. Creating, removing, renaming
//!   or replacing any of them (with a file or a symbolic link) changes the directory's change
//!   time; rewriting the entry or the hash sidecar in place changes their own.
//! - Timestamps are coarse (a kernel tick, two seconds on FAT), so a change made just after a
//!   stamp was taken can leave it equal. A state is therefore only kept when every stamp is at
//!   least [`SETTLE_NS`] older than a clock reading taken *before* the stamps: any later
//!   change is stamped after that and cannot match. (A wall clock stepped back by more than
//!   that defeats the rule; the driver reads the clock, the core only compares.)
//! - The stamps are taken before the state is read. A change in between makes the state newer
//!   than its stamps, and the next lookup sees different stamps and reads again.
//! - Never kept: a state with an upload in progress (a partial grows without touching the
//!   directory), one whose `HEAD` still needs a hash, anything but a regular file, and any
//!   state whose entry or sidecar is a symbolic link (its stamp says nothing about the
//!   target). Those are read in full every time, as without the cache.
//!
//! The cache never decides an answer: [`crate::upload::answer_head`] runs on the state it
//! returns exactly as on a fresh one.

use std::collections::BTreeMap;

use crate::keys::{Root, Target};
use crate::upload::{self, Entry, FileState, HeadAnswer};

/// How much older than the clock reading every stamp must be for a state to be kept, in
/// nanoseconds: above any filesystem's timestamp granularity (FAT's two seconds).
pub const SETTLE_NS: i128 = 5_000_000_000;

/// Entries kept by [`StateCache::new_default`]. A state holds at most three sidecars of 256
/// bytes and the key, so the cache stays well under a megabyte.
pub const DEFAULT_CAPACITY: usize = 512;

/// What kind of entry a stamp describes (`statx` without following a final link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Link,
    /// A FIFO, socket or device.
    Other,
}

/// One `statx` result, reduced to what changes when the entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The entry's kind.
    pub kind: StampKind,
    /// Device (major and minor together).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Permission bits and kind, as `statx` reports them.
    pub mode: u32,
    /// Length in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the Unix epoch.
    pub ctime_ns: i128,
}

/// What a driver observed about a key before reading its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamps {
    /// The directory holding the key (the root for a top-level key).
    pub dir: Stamp,
    /// The key's own entry, `None` if absent.
    pub entry: Option<Stamp>,
    /// The hash sidecar `rel.sha256`, `None` if absent.
    pub sidecar: Option<Stamp>,
}

impl Stamps {
    /// Whether every stamp is at least [`SETTLE_NS`] older than `now_ns`.
    fn settled(&self, now_ns: i128) -> bool {
        let limit = now_ns.saturating_sub(SETTLE_NS);
        [Some(self.dir), self.entry, self.sidecar]
            .into_iter()
            .flatten()
            .all(|stamp| stamp.mtime_ns <= limit && stamp.ctime_ns <= limit)
    }

    /// Whether the stamps describe `state` exactly: a regular file of the state's size and
    /// mtime, and a regular-file sidecar of the state's mtime (or none on both sides).
    fn describe(&self, state: &FileState) -> bool {
        let Entry::File { size, mtime_ns } = state.entry else {
            return false;
        };
        let entry_matches = self.entry.is_some_and(|entry| {
            entry.kind == StampKind::File && entry.size == size && entry.mtime_ns == mtime_ns
        });
        let sidecar_matches = match (&self.sidecar, &state.sidecar) {
            (None, None) => true,
            (Some(stamp), Some(sidecar)) => {
                stamp.kind == StampKind::File && stamp.mtime_ns == sidecar.mtime_ns
            }
            _ => false,
        };
        entry_matches && sidecar_matches && self.dir.kind == StampKind::Directory
    }
}

/// One kept state.
#[derive(Debug)]
struct Kept {
    stamps: Stamps,
    state: FileState,
    /// Insertion order, for eviction.
    seq: u64,
}

/// A bounded map from keys to the states last read for them, with the stamps they were read
/// under. Pure data: the driver supplies stamps, states and the clock.
#[derive(Debug)]
pub struct StateCache {
    kept: BTreeMap<(RootTag, String), Kept>,
    /// `seq` → key, oldest first.
    order: BTreeMap<u64, (RootTag, String)>,
    next_seq: u64,
    capacity: usize,
}

/// [`Root`] as an ordered map key.
type RootTag = u8;

fn tag(root: Root) -> RootTag {
    match root {
        Root::Models => 0,
        Root::Staging => 1,
        Root::Data => 2,
    }
}

fn key_of(target: &Target) -> (RootTag, String) {
    (tag(target.root()), target.rel().to_owned())
}

impl StateCache {
    /// An empty cache holding at most `capacity` states (0 keeps none).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            kept: BTreeMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            capacity,
        }
    }

    /// An empty cache of [`DEFAULT_CAPACITY`].
    #[must_use]
    pub fn new_default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }

    /// Number of states kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether no state is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The state kept for `target` if it was read under exactly `observed`; `None` means read
    /// the state (and [`offer`](Self::offer) it).
    #[must_use]
    pub fn get(&self, target: &Target, observed: &Stamps) -> Option<FileState> {
        let kept = self.kept.get(&key_of(target))?;
        (kept.stamps == *observed).then(|| kept.state.clone())
    }

    /// Keeps `state`, read after `stamps` were taken, which were taken after the clock read
    /// `now_ns` (nanoseconds since the Unix epoch), if it may be reused (see the module
    /// documentation); otherwise drops whatever was kept for the key. Returns whether it was
    /// kept.
    pub fn offer(
        &mut self,
        target: &Target,
        stamps: &Stamps,
        state: &FileState,
        now_ns: i128,
    ) -> bool {
        let key = key_of(target);
        self.remove(&key);
        let keep = self.capacity > 0
            && state.partial.is_none()
            && upload::answer_head(state) != HeadAnswer::NeedHash
            && stamps.describe(state)
            && stamps.settled(now_ns);
        if !keep {
            return false;
        }
        while self.kept.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.kept.remove(&oldest);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.order.insert(seq, key.clone());
        self.kept.insert(
            key,
            Kept {
                stamps: *stamps,
                state: state.clone(),
                seq,
            },
        );
        true
    }

    /// Drops whatever is kept for `target` (a driver that changed the key itself may call
    /// this; the stamps would catch the change anyway).
    pub fn forget(&mut self, target: &Target) {
        self.remove(&key_of(target));
    }

    fn remove(&mut self, key: &(RootTag, String)) {
        if let Some(kept) = self.kept.remove(key) {
            self.order.remove(&kept.seq);
        }
    }
}

#[cfg(test)]
mod tests;
