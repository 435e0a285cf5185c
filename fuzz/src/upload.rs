//! `plan_upload`: the upload planner driven through sequences of requests, crashes and full
//! disks, compared with a reference model (security.md §4.4, §4.5, §4.7, §6.3 INV-1…INV-5).
//!
//! Quinn-style stateful target: the input decodes (with `arbitrary::Unstructured`, one byte at a
//! time, so seeds are easy to write) into an initial state and a `Vec` of operations. Each
//! operation is applied to two systems, both from the `nodegate-model` crate (`core/model/`),
//! which the core's own property test `core/tests/upload_model.rs` drives too:
//!
//! - the **model**: the key as the spec states it — absent, partial (bytes + target hash),
//!   complete, or complete plus a partial — and the status every request must get;
//! - the **disk**: an in-memory directory driven by an adapter written against the core's API
//!   (`UploadRequest::from_headers`, `plan_upload`, `finish_full`, `after_append`,
//!   `finish_range`, `answer_head`, the publish protocol of the upload module, the names of
//!   `Target::{sidecar, target_sidecar, partial, temp}` and the startup clean-up by
//!   `is_temp_name`), where a crash stops the request at a step boundary and a restart follows.
//!
//! After every operation the two must agree (INV-5), and the disk must hold exactly the
//! model's bytes with no stray file (INV-3, INV-4).

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use nodegate_core::upload::Sha256;
use nodegate_model::{CrashPoint, Disk, Fault, Model, Op, Spoil};

/// Most operations decoded from one input.
const MAX_OPS: usize = 48;
/// Most recent contents an operation can pick again.
const MAX_SOURCES: usize = 8;
/// `directory` byte that makes the key a directory.
pub(crate) const DIRECTORY: u8 = 0xd1;

/// Oracle of the `plan_upload` target (see the module documentation). Panics when the disk and
/// the model disagree on a status (INV-5), a `HEAD` answer or its headers (INV-1), the bytes of
/// the complete file or the partial and its target (INV-3), when a 416 changes anything
/// (INV-2), when a stray name (temp file) survives a request or a restart, or a hidden name is a
/// valid key (INV-4), or when a trusted sidecar describes other bytes than the file (HR-C06).
pub fn plan_upload(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let directory = byte(&mut u) == DIRECTORY;
    let limit = match byte(&mut u) {
        0 => None,
        n => Some(u64::from(n)),
    };
    let mut model = Model::new(directory, limit);
    let mut disk = Disk::new(directory, limit);
    let mut sources: Vec<Vec<u8>> = Vec::new();
    // `NODEGATE_FUZZ_TRACE=1` prints each operation and the model's answer (to read a crash).
    static TRACE: OnceLock<bool> = OnceLock::new();
    let trace = *TRACE.get_or_init(|| std::env::var_os("NODEGATE_FUZZ_TRACE").is_some());
    if trace {
        eprintln!("directory={directory} limit={limit:?}");
    }
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let op = decode_op(&mut u, &model, &mut sources);
        let expect = model.apply(&op);
        if trace {
            eprintln!("{op:?} => {expect:?}");
        }
        disk.apply(&op, &expect);
        disk.check_invariants(&model);
    }
    // Liveness: whatever the sequence left behind, a LocalAI client can still upload each of the
    // contents it used, once the faults are gone. The one exception: a misbehaving client can
    // claim a partial begun without a hash for this content's hash (a chunk at start > 0 that
    // declares it). The honest client then resumes bytes that are not its own, and the final hash
    // check refuses them with 400 and discards the partial; or it resumes a partial that records
    // another total (D18), which is 409 and discards the partial too. Only then may the first
    // call fail, and the next must succeed: no state may make a client fail twice.
    for content in &sources {
        if directory || limit.is_some_and(|l| content.len() as u64 > l) {
            continue;
        }
        let state = disk.state();
        let claimed = state.target_hash() == Some(Sha256::of(content))
            && (disk
                .partial()
                .is_some_and(|bytes| !content.starts_with(bytes))
                || state
                    .partial_total()
                    .is_some_and(|total| total != content.len() as u64));
        let mut fresh = disk.clone();
        if let Err(first) = fresh.client_upload(content) {
            assert!(
                claimed,
                "a LocalAI client cannot upload {} bytes: {first}",
                content.len()
            );
            assert!(
                fresh.partial().is_none(),
                "a failed upload of {} bytes left the claimed partial behind: {first}",
                content.len()
            );
            if let Err(second) = fresh.client_upload(content) {
                panic!(
                    "a LocalAI client cannot upload {} bytes: {first}, then {second}",
                    content.len()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding operations
// ---------------------------------------------------------------------------------------------

/// One byte, 0 once the input is exhausted.
fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

/// A length byte, then that many bytes (fewer at the end of the input).
fn blob(u: &mut Unstructured<'_>) -> Vec<u8> {
    let len = usize::from(byte(u)).min(u.len());
    u.bytes(len).map(<[u8]>::to_vec).unwrap_or_default()
}

/// Selector byte < 0x80: fresh bytes follow; otherwise a recent content (0x80 = the latest).
fn content(u: &mut Unstructured<'_>, sources: &mut Vec<Vec<u8>>) -> Vec<u8> {
    let selector = byte(u);
    if selector >= 0x80 && !sources.is_empty() {
        let back = usize::from(selector - 0x80) % sources.len();
        return sources[sources.len() - 1 - back].clone();
    }
    let fresh = blob(u);
    sources.push(fresh.clone());
    if sources.len() > MAX_SOURCES {
        sources.remove(0);
    }
    fresh
}

/// 0: none; 1: the hash of something else; 2, 3: the hash of `content`.
fn declared(u: &mut Unstructured<'_>, content: &[u8]) -> Option<Sha256> {
    match byte(u) % 4 {
        0 => None,
        1 => Some(Sha256::of(b"something else")),
        _ => Some(Sha256::of(content)),
    }
}

fn fault(u: &mut Unstructured<'_>) -> Fault {
    match byte(u) % 20 {
        14 => Fault::DiskFull(usize::from(byte(u) % 32)),
        15 => Fault::Crash(CrashPoint::MidBody(usize::from(byte(u) % 32))),
        16 => Fault::Crash(CrashPoint::BeforePublish),
        17 => Fault::Crash(CrashPoint::AfterRename),
        18 => Fault::Crash(CrashPoint::AfterSidecar),
        _ => Fault::None,
    }
}

/// Decodes one operation. Range uploads pick their start from the model (resume where the
/// partial ends, restart at 0, or anywhere), as a client that probed with `HEAD` would.
fn decode_op(u: &mut Unstructured<'_>, model: &Model, sources: &mut Vec<Vec<u8>>) -> Op {
    match byte(u) % 8 {
        0 | 1 => {
            let body = content(u, sources);
            let hash = declared(u, &body);
            let send_length = byte(u) & 1 == 1;
            Op::PutFull {
                body,
                hash,
                send_length,
                fault: fault(u),
            }
        }
        2..=4 => {
            let mut source = content(u, sources);
            if source.is_empty() {
                source.push(b'x');
            }
            let total = source.len();
            let current = model.partial_len();
            let start = match byte(u) {
                0 if current < total => current,
                0 | 1 => 0,
                n => usize::from(n - 2) % total,
            };
            let end = match byte(u) {
                0 => total - 1,
                n => start + usize::from(n - 1) % (total - start),
            };
            let hash = declared(u, &source);
            let mut body = source[start..=end].to_vec();
            match byte(u) % 10 {
                0 => {
                    let keep = usize::from(byte(u)) % body.len();
                    body.truncate(keep);
                }
                1 => body.extend_from_slice(b"excess"),
                _ => {}
            }
            let flags = byte(u);
            Op::PutRange {
                start: start as u64,
                end: end as u64,
                total: total as u64,
                body,
                hash,
                upper_hex: flags & 2 == 2,
                send_length: flags & 1 == 1,
                fault: fault(u),
            }
        }
        5 => {
            let (start, end, total) = (byte(u), byte(u), byte(u));
            let body = blob(u);
            let hash = declared(u, &body);
            let flags = byte(u);
            Op::PutRange {
                start: u64::from(start),
                end: u64::from(end),
                total: u64::from(total),
                body,
                hash,
                upper_hex: flags & 2 == 2,
                send_length: flags & 1 == 1,
                fault: fault(u),
            }
        }
        6 => Op::Head,
        _ => Op::Spoil(match byte(u) % 3 {
            0 => Spoil::Garbage,
            1 => Spoil::UpperCaseWrong,
            _ => Spoil::Stale,
        }),
    }
}

/// Writes operations in the input format, for seeds (`seeds::plan_upload`).
pub(crate) mod encode {
    use super::DIRECTORY;

    /// An input under construction.
    pub(crate) struct Input(Vec<u8>);

    /// A content: fresh bytes, or the `n`-th most recent one (0 = the latest).
    pub(crate) enum Content<'a> {
        Fresh(&'a [u8]),
        Recent(u8),
    }

    /// A declared hash.
    #[derive(Clone, Copy)]
    pub(crate) enum Hash {
        None,
        Wrong,
        Right,
    }

    /// A fault.
    #[derive(Clone, Copy)]
    pub(crate) enum Fault {
        None,
        DiskFull(u8),
        MidBody(u8),
        BeforePublish,
        AfterRename,
        AfterSidecar,
    }

    /// Where a range starts.
    #[derive(Clone, Copy)]
    pub(crate) enum Start {
        /// Where the partial ends (0 without one).
        Resume,
        Zero,
        At(u8),
    }

    /// How the body relates to the range.
    #[derive(Clone, Copy)]
    pub(crate) enum Body {
        Exact,
        Truncated(u8),
        Excess,
    }

    impl Input {
        pub(crate) fn new(directory: bool, limit: Option<u8>) -> Self {
            Self(vec![
                if directory { DIRECTORY } else { 0 },
                limit.unwrap_or(0),
            ])
        }

        pub(crate) fn bytes(self) -> Vec<u8> {
            self.0
        }

        fn content(&mut self, content: &Content<'_>) {
            match content {
                Content::Fresh(bytes) => {
                    self.0.push(0);
                    self.0
                        .push(u8::try_from(bytes.len()).expect("at most 255 bytes"));
                    self.0.extend_from_slice(bytes);
                }
                Content::Recent(n) => self.0.push(0x80 + n),
            }
        }

        fn hash(&mut self, hash: Hash) {
            self.0.push(match hash {
                Hash::None => 0,
                Hash::Wrong => 1,
                Hash::Right => 2,
            });
        }

        fn fault(&mut self, fault: Fault) {
            match fault {
                Fault::None => self.0.push(0),
                Fault::DiskFull(at) => self.0.extend_from_slice(&[14, at]),
                Fault::MidBody(at) => self.0.extend_from_slice(&[15, at]),
                Fault::BeforePublish => self.0.push(16),
                Fault::AfterRename => self.0.push(17),
                Fault::AfterSidecar => self.0.push(18),
            }
        }

        /// A full upload.
        pub(crate) fn full(
            mut self,
            body: &Content<'_>,
            hash: Hash,
            length: bool,
            fault: Fault,
        ) -> Self {
            self.0.push(0);
            self.content(body);
            self.hash(hash);
            self.0.push(u8::from(length));
            self.fault(fault);
            self
        }

        /// A range upload of `source`, from `start` to `end` (`None` = the last byte; `Some(n)`
        /// = the n-th byte after `start`), with the declared hash of `source`.
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn range(
            mut self,
            source: &Content<'_>,
            start: Start,
            end: Option<u8>,
            hash: Hash,
            body: Body,
            length: bool,
            upper_hex: bool,
            fault: Fault,
        ) -> Self {
            self.0.push(2);
            self.content(source);
            self.0.push(match start {
                Start::Resume => 0,
                Start::Zero => 1,
                Start::At(n) => n + 2,
            });
            self.0.push(end.map_or(0, |n| n + 1));
            self.hash(hash);
            match body {
                Body::Exact => self.0.push(2),
                Body::Truncated(keep) => self.0.extend_from_slice(&[0, keep]),
                Body::Excess => self.0.push(1),
            }
            self.0.push(u8::from(length) | (u8::from(upper_hex) << 1));
            self.fault(fault);
            self
        }

        /// A range upload with any numbers (possibly invalid) and any body; the declared hash is
        /// the body's.
        pub(crate) fn raw_range(
            mut self,
            (start, end, total): (u8, u8, u8),
            body: &[u8],
            hash: Hash,
            length: bool,
        ) -> Self {
            self.0.extend_from_slice(&[5, start, end, total]);
            self.0
                .push(u8::try_from(body.len()).expect("at most 255 bytes"));
            self.0.extend_from_slice(body);
            self.hash(hash);
            self.0.push(u8::from(length));
            self.fault(Fault::None);
            self
        }

        pub(crate) fn head(mut self) -> Self {
            self.0.push(6);
            self
        }

        pub(crate) fn spoil(mut self, kind: u8) -> Self {
            self.0.extend_from_slice(&[7, kind]);
            self
        }
    }
}
