//! `plan_upload`: the upload planner driven through sequences of requests, crashes and full
//! disks, compared with a reference model (security.md §4.4, §4.5, §4.7, §6.3 INV-1…INV-5).
//!
//! Quinn-style stateful target: the input decodes (with `arbitrary::Unstructured`, one byte at a
//! time, so seeds are easy to write) into an initial state and a `Vec` of operations. Each
//! operation is applied to two systems:
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

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use nodegate_core::keys::{Target, is_temp_name, parse_key, resolve_key};
use nodegate_core::response::Reply;
use nodegate_core::upload::{
    AppendOutcome, Discard, Entry, FileState, Finish, HeadAnswer, Sha256, Sidecar, UploadPlan,
    UploadRequest, X_CONTENT_SHA256, X_FILE_SIZE, X_TARGET_SHA256, after_append, answer_head,
    finish_full, finish_range, plan_upload as core_plan_upload, short_body, too_large, upload_ok,
};

/// The key every sequence uploads to.
const KEY: &[u8] = b"models/m/w.bin";
/// The absolute path the worker reports.
const LOCAL_PATH: &str = "/srv/models/m/w.bin";
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
    let mut model = Model {
        directory,
        limit,
        complete: None,
        partial: None,
    };
    let mut disk = Disk::new(directory, limit);
    let mut sources: Vec<Vec<u8>> = Vec::new();
    // `NODEGATE_FUZZ_TRACE=1` prints each operation and the model's answer (to read a crash).
    let trace = std::env::var_os("NODEGATE_FUZZ_TRACE").is_some();
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
    // contents it used, once the faults are gone.
    for content in &sources {
        if directory || limit.is_some_and(|l| content.len() as u64 > l) {
            continue;
        }
        let mut fresh = disk.clone();
        if let Err(failure) = fresh.client_upload(content) {
            panic!(
                "a LocalAI client cannot upload {} bytes: {failure}",
                content.len()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations and their encoding
// ---------------------------------------------------------------------------------------------

/// Where a request stops because the process dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// After this many body bytes were written.
    MidBody(usize),
    /// After the body was written and hashed, before publishing.
    BeforePublish,
    /// After the rename, before the new sidecar was written.
    AfterRename,
    /// After the new sidecar was written, before the in-progress files were removed.
    AfterSidecar,
}

/// What goes wrong during a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Crash(CrashPoint),
    /// The disk is full after this many body bytes (ENOSPC, HR-D01/D02).
    DiskFull(usize),
}

/// How a test damages the `.sha256` cache behind the server's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spoil {
    /// A fresh sidecar that is not hex.
    Garbage,
    /// A fresh sidecar with the wrong hash in upper case.
    UpperCaseWrong,
    /// The wrong hash, then the file touched (`cp -p`, rsync): the sidecar is older.
    Stale,
}

/// A decoded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    PutFull {
        body: Vec<u8>,
        hash: Option<Sha256>,
        send_length: bool,
        fault: Fault,
    },
    /// A range upload; `(start, end, total)` may be invalid (then the header is refused).
    PutRange {
        start: u64,
        end: u64,
        total: u64,
        body: Vec<u8>,
        hash: Option<Sha256>,
        upper_hex: bool,
        send_length: bool,
        fault: Fault,
    },
    Head,
    Spoil(Spoil),
}

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

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

/// What an operation must produce.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Nothing,
    Status(u16),
    /// The process died: no response.
    NoReply,
    Head(HeadAnswer),
}

/// The key as the spec states it.
#[derive(Debug, Clone)]
struct Model {
    directory: bool,
    limit: Option<u64>,
    complete: Option<Vec<u8>>,
    partial: Option<(Vec<u8>, Option<Sha256>)>,
}

impl Model {
    fn partial_len(&self) -> usize {
        self.partial.as_ref().map_or(0, |(bytes, _)| bytes.len())
    }

    fn apply(&mut self, op: &Op) -> Expect {
        match op {
            Op::PutFull {
                body,
                hash,
                send_length,
                fault,
            } => self.put_full(body, *hash, *send_length, *fault),
            Op::PutRange {
                start,
                end,
                total,
                body,
                hash,
                send_length,
                fault,
                ..
            } => {
                if start <= end && end < total {
                    self.put_range((*start, *end, *total), body, *hash, *send_length, *fault)
                } else {
                    // CR-06/CR-07: refused before anything else.
                    Expect::Status(400)
                }
            }
            Op::Head => Expect::Head(self.head()),
            Op::Spoil(_) => Expect::Nothing,
        }
    }

    /// INV-1.
    fn head(&self) -> HeadAnswer {
        if self.directory {
            return HeadAnswer::IsDirectory;
        }
        match (&self.partial, &self.complete) {
            (Some((bytes, target)), _) => HeadAnswer::Partial {
                size: bytes.len() as u64,
                target: *target,
            },
            (None, Some(bytes)) => HeadAnswer::Complete {
                size: bytes.len() as u64,
                sha256: Sha256::of(bytes),
            },
            (None, None) => HeadAnswer::NotFound,
        }
    }

    /// A full upload (D2, D3): checked against the limit, streamed, verified, published.
    fn put_full(
        &mut self,
        body: &[u8],
        hash: Option<Sha256>,
        send_length: bool,
        fault: Fault,
    ) -> Expect {
        let over = |n: usize| self.limit.is_some_and(|l| n as u64 > l);
        if send_length && over(body.len()) {
            return Expect::Status(413);
        }
        if self.directory {
            return Expect::Status(400);
        }
        for at in 0..body.len() {
            if over(at + 1) {
                return Expect::Status(413);
            }
            if fault == Fault::DiskFull(at) {
                return Expect::Status(507);
            }
            if fault == Fault::Crash(CrashPoint::MidBody(at)) {
                return Expect::NoReply;
            }
        }
        if hash.is_some_and(|h| h != Sha256::of(body)) {
            return Expect::Status(400);
        }
        match fault {
            Fault::Crash(CrashPoint::BeforePublish) => Expect::NoReply,
            Fault::Crash(CrashPoint::AfterRename | CrashPoint::AfterSidecar) => {
                self.complete = Some(body.to_vec());
                Expect::NoReply
            }
            _ => {
                self.complete = Some(body.to_vec());
                self.partial = None;
                Expect::Status(200)
            }
        }
    }

    /// A range upload (spec §2.8 with D9 and the 409 for a missing hash).
    fn put_range(
        &mut self,
        (start, end, total): (u64, u64, u64),
        body: &[u8],
        hash: Option<Sha256>,
        send_length: bool,
        fault: Fault,
    ) -> Expect {
        let span = end - start + 1;
        let over = |n: u64| self.limit.is_some_and(|l| n > l);
        if send_length && over(body.len() as u64) || over(total) {
            return Expect::Status(413);
        }
        if send_length && body.len() as u64 != span {
            return Expect::Status(400);
        }
        if self.directory {
            return Expect::Status(400);
        }
        let target = self.partial.as_ref().and_then(|(_, t)| *t);
        // D9: the same bytes are already complete.
        if let (Some(h), Some(complete)) = (hash, &self.complete)
            && complete.len() as u64 == total
            && Sha256::of(complete) == h
            && target.is_none_or(|t| t == h)
        {
            self.partial = None;
            return Expect::Status(200);
        }
        let mut kept = self.partial.take();
        // CR-16/CR-17: a restart keeps the partial only for the same declared hash, and only
        // while it can still be resumed (it is shorter than the whole file).
        let resumable = kept
            .as_ref()
            .is_some_and(|(bytes, _)| (bytes.len() as u64) < total);
        if start == 0 && kept.is_some() && !(hash.is_some() && hash == target && resumable) {
            kept = None;
        }
        // CR-13: a hash change, or no hash where one was declared.
        if start > 0 && kept.is_some() {
            match (hash, target) {
                (Some(h), Some(t)) if h != t => return Expect::Status(409),
                (None, Some(_)) => {
                    self.partial = kept;
                    return Expect::Status(409);
                }
                _ => {}
            }
        }
        // CR-04, INV-2.
        let current = kept.as_ref().map_or(0, |(bytes, _)| bytes.len() as u64);
        if start != current {
            self.partial = kept;
            return Expect::Status(416);
        }
        let (mut bytes, old_target) = kept.unwrap_or_default();
        let target = hash.or(old_target);
        let n = body.len().min(span as usize);
        for (at, &b) in body.iter().take(n).enumerate() {
            let stop = match fault {
                Fault::DiskFull(k) if k == at => Some(Expect::Status(507)),
                Fault::Crash(CrashPoint::MidBody(k)) if k == at => Some(Expect::NoReply),
                _ => None,
            };
            if let Some(stop) = stop {
                self.partial = Some((bytes, target));
                return stop;
            }
            bytes.push(b);
        }
        if (body.len() as u64) < span {
            self.partial = Some((bytes, target));
            return Expect::Status(400);
        }
        if end + 1 < total {
            self.partial = Some((bytes, target));
            return Expect::Status(308);
        }
        if hash.is_some_and(|h| h != Sha256::of(&bytes)) {
            return Expect::Status(400);
        }
        match fault {
            Fault::Crash(CrashPoint::BeforePublish) => {
                self.partial = Some((bytes, target));
                Expect::NoReply
            }
            Fault::Crash(CrashPoint::AfterRename | CrashPoint::AfterSidecar) => {
                self.complete = Some(bytes);
                Expect::NoReply
            }
            _ => {
                self.complete = Some(bytes);
                Expect::Status(200)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The disk and the adapter
// ---------------------------------------------------------------------------------------------

/// The process died in the middle of a request.
struct Crashed;

/// One directory of one root, in memory: relative name → (content, mtime).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Disk {
    target: Target,
    directory: bool,
    limit: Option<u64>,
    files: BTreeMap<String, (Vec<u8>, i128)>,
    clock: i128,
    nonce: u64,
}

impl Disk {
    fn new(directory: bool, limit: Option<u64>) -> Self {
        Self {
            target: resolve_key(KEY).expect("a valid key"),
            directory,
            limit,
            files: BTreeMap::new(),
            clock: 0,
            nonce: 0,
        }
    }

    fn rel(&self) -> String {
        self.target.rel().to_owned()
    }

    fn tick(&mut self) -> i128 {
        self.clock += 1;
        self.clock
    }

    fn write(&mut self, name: &str, content: Vec<u8>) {
        let now = self.tick();
        self.files.insert(name.to_owned(), (content, now));
    }

    fn append(&mut self, name: &str, b: u8) {
        let now = self.tick();
        let file = self.files.get_mut(name).expect("appending to an open file");
        file.0.push(b);
        file.1 = now;
    }

    fn remove(&mut self, name: &str) {
        self.files.remove(name);
    }

    fn rename(&mut self, from: &str, to: &str) {
        let file = self.files.remove(from).expect("renaming an existing file");
        self.files.insert(to.to_owned(), file);
    }

    fn content(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|(content, _)| content.as_slice())
    }

    /// What the adapter reads before asking the core.
    fn state(&self) -> FileState {
        let entry = match (self.directory, self.files.get(&self.rel())) {
            (true, _) => Entry::Directory,
            (false, Some((content, mtime_ns))) => Entry::File {
                size: content.len() as u64,
                mtime_ns: *mtime_ns,
            },
            (false, None) => Entry::Missing,
        };
        FileState {
            entry,
            sidecar: self
                .files
                .get(&self.target.sidecar())
                .map(|(content, mtime_ns)| Sidecar {
                    content: content.clone(),
                    mtime_ns: *mtime_ns,
                }),
            partial: self.content(&self.target.partial()).map(|c| c.len() as u64),
            target: self
                .content(&self.target.target_sidecar())
                .map(<[u8]>::to_vec),
        }
    }

    /// The files that hold upload state: everything but the `.sha256` cache, which a plan may
    /// refresh (`NeedHash`) before refusing.
    fn uploads(&self) -> BTreeMap<String, (Vec<u8>, i128)> {
        let mut files = self.files.clone();
        files.remove(&self.target.sidecar());
        files
    }

    /// What a restarted server does: remove abandoned temp files (by name only).
    fn recover(&mut self) {
        self.files
            .retain(|name, _| !is_temp_name(name.rsplit('/').next().unwrap_or_default()));
    }

    fn rehash(&mut self) {
        let content = self
            .content(&self.rel())
            .expect("NeedHash only for a complete file")
            .to_vec();
        self.write(
            &self.target.sidecar(),
            Sha256::of(&content).to_hex().into_bytes(),
        );
    }

    fn discard(&mut self, discard: Discard) {
        if discard.partial {
            self.remove(&self.target.partial());
        }
        if discard.target {
            self.remove(&self.target.target_sidecar());
        }
    }

    fn head(&mut self) -> (HeadAnswer, Reply) {
        let mut answer = answer_head(&self.state());
        if answer == HeadAnswer::NeedHash {
            self.rehash();
            answer = answer_head(&self.state());
            assert_ne!(
                answer,
                HeadAnswer::NeedHash,
                "a rewritten sidecar is trusted"
            );
        }
        (answer, answer.reply(LOCAL_PATH))
    }

    fn plan(&mut self, request: &UploadRequest) -> UploadPlan {
        let plan = core_plan_upload(request, &self.state());
        if plan != UploadPlan::NeedHash {
            return plan;
        }
        self.rehash();
        let plan = core_plan_upload(request, &self.state());
        assert_ne!(plan, UploadPlan::NeedHash, "a rewritten sidecar is trusted");
        plan
    }

    /// The publish protocol of the upload module's documentation.
    fn publish(&mut self, from: &str, sha256: Sha256, fault: Fault) -> Result<(), Crashed> {
        if fault == Fault::Crash(CrashPoint::BeforePublish) {
            return Err(Crashed);
        }
        self.remove(&self.target.sidecar());
        self.rename(from, &self.rel());
        if fault == Fault::Crash(CrashPoint::AfterRename) {
            return Err(Crashed);
        }
        self.write(&self.target.sidecar(), sha256.to_hex().into_bytes());
        if fault == Fault::Crash(CrashPoint::AfterSidecar) {
            return Err(Crashed);
        }
        self.remove(&self.target.partial());
        self.remove(&self.target.target_sidecar());
        Ok(())
    }

    fn put(&mut self, headers: &HeaderMap, body: &[u8], fault: Fault) -> Result<Reply, Crashed> {
        let request = match UploadRequest::from_headers(headers, self.limit) {
            Ok(request) => request,
            Err(reply) => return Ok(reply),
        };
        let disk_full = || {
            Reply::error(
                StatusCode::INSUFFICIENT_STORAGE,
                "writing file: no space left on device",
            )
        };
        match self.plan(&request) {
            UploadPlan::NeedHash => unreachable!("resolved by plan()"),
            UploadPlan::Refuse { reply, discard } => {
                self.discard(discard);
                Ok(reply)
            }
            UploadPlan::AlreadyComplete { discard } => {
                self.discard(discard);
                Ok(upload_ok(LOCAL_PATH))
            }
            UploadPlan::WriteFull { max_len } => {
                self.nonce += 1;
                let temp = self.target.temp(self.nonce);
                self.write(&temp, Vec::new());
                for (at, &b) in body.iter().enumerate() {
                    if let Some(max) = max_len
                        && at as u64 >= max
                    {
                        self.remove(&temp);
                        return Ok(too_large(max));
                    }
                    if fault == Fault::DiskFull(at) {
                        self.remove(&temp);
                        return Ok(disk_full());
                    }
                    if fault == Fault::Crash(CrashPoint::MidBody(at)) {
                        return Err(Crashed);
                    }
                    self.append(&temp, b);
                }
                let written = self.content(&temp).unwrap_or_default();
                match finish_full(&request, Sha256::of(written), written.len() as u64) {
                    Finish::Refuse { reply, discard } => {
                        self.remove(&temp);
                        self.discard(discard);
                        Ok(reply)
                    }
                    Finish::Publish { sha256 } => {
                        self.publish(&temp, sha256, fault)?;
                        Ok(upload_ok(LOCAL_PATH))
                    }
                }
            }
            UploadPlan::Append {
                discard,
                offset,
                len,
                write_target,
                completes,
            } => {
                self.discard(discard);
                let partial = self.target.partial();
                if let Some(target) = write_target {
                    self.write(&self.target.target_sidecar(), target.to_hex().into_bytes());
                }
                if !self.files.contains_key(&partial) {
                    self.write(&partial, Vec::new());
                }
                assert_eq!(
                    self.content(&partial).map(<[u8]>::len),
                    Some(offset as usize),
                    "Append at an offset other than the partial's size"
                );
                let expected_len = usize::try_from(len).expect("small bodies");
                for (at, &b) in body.iter().take(expected_len).enumerate() {
                    if fault == Fault::DiskFull(at) {
                        return Ok(disk_full());
                    }
                    if fault == Fault::Crash(CrashPoint::MidBody(at)) {
                        return Err(Crashed);
                    }
                    self.append(&partial, b);
                }
                if body.len() < expected_len {
                    return Ok(short_body(body.len() as u64, len));
                }
                match after_append(&request, offset + len) {
                    AppendOutcome::Incomplete { reply } => {
                        assert!(
                            !completes,
                            "Append said it completes, after_append disagrees"
                        );
                        Ok(reply)
                    }
                    AppendOutcome::Complete => {
                        assert!(completes, "after_append completes what Append did not");
                        let actual = Sha256::of(self.content(&partial).unwrap_or_default());
                        match finish_range(&request, actual) {
                            Finish::Refuse { reply, discard } => {
                                self.discard(discard);
                                Ok(reply)
                            }
                            Finish::Publish { sha256 } => {
                                self.publish(&partial, sha256, fault)?;
                                Ok(upload_ok(LOCAL_PATH))
                            }
                        }
                    }
                }
            }
        }
    }

    fn spoil(&mut self, spoil: Spoil) {
        if !self.files.contains_key(&self.rel()) {
            return;
        }
        let wrong = Sha256::of(b"not the content").to_hex();
        let sidecar = self.target.sidecar();
        match spoil {
            Spoil::Garbage => self.write(&sidecar, b"garbage".to_vec()),
            Spoil::UpperCaseWrong => self.write(&sidecar, wrong.to_uppercase().into_bytes()),
            Spoil::Stale => {
                self.write(&sidecar, wrong.into_bytes());
                let now = self.tick();
                let rel = self.rel();
                if let Some(file) = self.files.get_mut(&rel) {
                    file.1 = now;
                }
            }
        }
    }

    /// `EnsureRemote` of a LocalAI frontend (localai-wire.md §3.2), without faults: skip when
    /// `HEAD` shows the same hash, else up to three attempts that resume from the partial when
    /// its target is the same hash and it is shorter than the file, or start at 0; 308 and 416
    /// are retried, anything else but 200 fails. On success the file must be the content.
    fn client_upload(&mut self, content: &[u8]) -> Result<(), String> {
        let hash = Sha256::of(content);
        let len = content.len() as u64;
        let header = header_text;
        let (_, probe) = self.head();
        if probe.status == StatusCode::OK
            && header(&probe, &X_CONTENT_SHA256).as_deref() == Some(hash.to_hex().as_str())
        {
            return Ok(());
        }
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let (_, probe) = self.head();
            let offset = match (
                header(&probe, &X_FILE_SIZE).and_then(|s| s.parse::<u64>().ok()),
                header(&probe, &X_TARGET_SHA256),
            ) {
                (Some(size), Some(target))
                    if probe.status == StatusCode::OK
                        && 0 < size
                        && size < len
                        && target.eq_ignore_ascii_case(&hash.to_hex()) =>
                {
                    size
                }
                _ => 0,
            };
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len - offset));
            headers.insert(X_CONTENT_SHA256, header_value(hash.to_hex()));
            if len > 0 {
                headers.insert(
                    CONTENT_RANGE,
                    header_value(format!("bytes {offset}-{}/{len}", len - 1)),
                );
            }
            let body = &content[usize::try_from(offset).expect("small")..];
            let Ok(reply) = self.put(&headers, body, Fault::None) else {
                unreachable!("no crash without a fault");
            };
            statuses.push(reply.status.as_u16());
            match reply.status {
                StatusCode::OK => {
                    assert_eq!(
                        self.content(&self.rel()),
                        Some(content),
                        "200 but other bytes"
                    );
                    return Ok(());
                }
                StatusCode::PERMANENT_REDIRECT | StatusCode::RANGE_NOT_SATISFIABLE => {}
                _ => break,
            }
        }
        Err(format!("statuses {statuses:?}, state {:?}", self.state()))
    }

    /// Runs `op` and compares with what the model expects (INV-1, INV-2, INV-5).
    fn apply(&mut self, op: &Op, expect: &Expect) {
        let before = self.clone();
        let (reply, fault) = match op {
            Op::Head => {
                let (answer, reply) = self.head();
                assert_eq!(&Expect::Head(answer), expect, "INV-5: HEAD");
                check_head_headers(&answer, &reply);
                return;
            }
            Op::Spoil(spoil) => {
                self.spoil(*spoil);
                return;
            }
            Op::PutFull {
                body,
                hash,
                send_length,
                fault,
            } => {
                let mut headers = HeaderMap::new();
                if let Some(hash) = hash {
                    headers.insert(X_CONTENT_SHA256, header_value(hash.to_hex()));
                }
                if *send_length {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                }
                (self.put(&headers, body, *fault), *fault)
            }
            Op::PutRange {
                start,
                end,
                total,
                body,
                hash,
                upper_hex,
                send_length,
                fault,
            } => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    CONTENT_RANGE,
                    header_value(format!("bytes {start}-{end}/{total}")),
                );
                if let Some(hash) = hash {
                    let hex = if *upper_hex {
                        hash.to_hex().to_uppercase()
                    } else {
                        hash.to_hex()
                    };
                    headers.insert(X_CONTENT_SHA256, header_value(hex));
                }
                if *send_length {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                }
                (self.put(&headers, body, *fault), *fault)
            }
        };
        match reply {
            Err(Crashed) => {
                assert!(matches!(fault, Fault::Crash(_)));
                assert_eq!(expect, &Expect::NoReply, "INV-5: the model crashed too");
                self.recover();
            }
            Ok(reply) => {
                assert_eq!(
                    &Expect::Status(reply.status.as_u16()),
                    expect,
                    "INV-5: {}",
                    String::from_utf8_lossy(&reply.body)
                );
                let size = self
                    .content(&self.target.partial())
                    .map(<[u8]>::len)
                    .unwrap_or_default()
                    .to_string();
                match reply.status {
                    StatusCode::RANGE_NOT_SATISFIABLE => {
                        assert_eq!(
                            self.uploads(),
                            before.uploads(),
                            "INV-2: 416 changes nothing"
                        );
                        assert_eq!(
                            reply.header(&X_FILE_SIZE).map(HeaderValue::as_bytes),
                            Some(size.as_bytes())
                        );
                    }
                    StatusCode::PERMANENT_REDIRECT => {
                        assert_eq!(
                            reply.header(&X_FILE_SIZE).map(HeaderValue::as_bytes),
                            Some(size.as_bytes())
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    fn check_invariants(&self, model: &Model) {
        // INV-3: the key is absent, partial or complete, with exactly the model's bytes.
        assert_eq!(
            self.content(&self.rel()),
            model.complete.as_deref(),
            "INV-3: complete file"
        );
        let partial = self
            .content(&self.target.partial())
            .map(|bytes| (bytes.to_vec(), self.state().target_hash()));
        assert_eq!(partial, model.partial, "INV-3: partial file and target");
        // INV-4: nothing but the key's own names remains, and the hidden ones are no keys.
        let names = [
            self.rel(),
            self.target.sidecar(),
            self.target.target_sidecar(),
            self.target.partial(),
        ];
        for name in self.files.keys() {
            assert!(names.contains(name), "INV-4: stray {name}");
        }
        let partial_name = self.target.partial();
        let hidden = partial_name.rsplit('/').next().unwrap_or_default();
        assert!(parse_key(hidden.as_bytes()).is_err());
        // HR-C06: a trusted sidecar always describes the complete file.
        if let Some(sha) = self.state().complete_hash() {
            assert_eq!(
                Some(sha),
                self.content(&self.rel()).map(Sha256::of),
                "HR-C06"
            );
        }
    }
}

fn header_text(reply: &Reply, name: &HeaderName) -> Option<String> {
    reply
        .header(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("ASCII")
}

/// INV-1: `X-Content-SHA256` exactly for a complete file, `X-Target-SHA256` exactly for a
/// partial with a target; `X-File-Size` is the size on disk.
fn check_head_headers(answer: &HeadAnswer, reply: &Reply) {
    let text = |name| {
        reply
            .header(name)
            .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let (content, target, size) = (
        text(&X_CONTENT_SHA256),
        text(&X_TARGET_SHA256),
        text(&X_FILE_SIZE),
    );
    match answer {
        HeadAnswer::Complete { size: n, sha256 } => {
            assert_eq!(content, Some(sha256.to_hex()));
            assert_eq!(target, None);
            assert_eq!(size, Some(n.to_string()));
        }
        HeadAnswer::Partial { size: n, target: t } => {
            assert_eq!(content, None, "INV-1: a partial never has X-Content-SHA256");
            assert_eq!(target, t.map(|t| t.to_hex()));
            assert_eq!(size, Some(n.to_string()));
        }
        HeadAnswer::NotFound => assert_eq!(reply.status, StatusCode::NOT_FOUND),
        HeadAnswer::IsDirectory => assert_eq!(reply.status, StatusCode::BAD_REQUEST),
        other => panic!("HEAD must settle on an answer, got {other:?}"),
    }
}
