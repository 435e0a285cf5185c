//! Reference model of one upload key, and an in-memory adapter that drives the core against it.
//!
//! The spec (security.md §4.4, §4.5, §4.7, §6.3) states what every upload request must do to a
//! key: it is absent, partial (bytes and the hash they are meant to reach), complete, or complete
//! with a new partial beside it. [`Model`] is that statement, written without the core.
//! [`Disk`] is a directory in memory driven by an adapter written only against the core's public
//! API (`UploadRequest::from_headers`, `plan_upload`, `finish_full`, `after_append`,
//! `finish_range`, `answer_head`, the publish protocol of the upload module and the names of
//! `Target`), where a crash stops a request at a step boundary and a restart follows.
//!
//! Both the property test of `nodegate-core` (`core/tests/upload_model.rs`, driven by
//! proptest-state-machine) and the `plan_upload` fuzz target (`fuzz/src/upload.rs`, driven by
//! libFuzzer) apply the same [`Op`]s to both and compare after every step: the status (INV-5),
//! the `HEAD` answer and headers (INV-1), that a 416 changes nothing (INV-2), the bytes on disk
//! (INV-3), that no stray name survives (INV-4) and that a trusted sidecar describes the file
//! (HR-C06). A disagreement panics with the invariant's name.
//!
//! This crate is test support: it is not published and asserts instead of returning errors.
//!
//! ```
//! use nodegate_model::Disk;
//!
//! // An honest client (HEAD, then a range PUT with the hash) uploads to an empty key: the
//! // in-memory adapter, driven only through the core, publishes it and keeps no partial.
//! let mut disk = Disk::new(false, None);
//! disk.client_upload(b"weights").expect("an upload to an empty key succeeds");
//! assert!(disk.partial().is_none(), "nothing partial is left behind");
//! ```

use std::collections::BTreeMap;

use http::header::{CONTENT_LENGTH, CONTENT_RANGE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use nodegate_core::keys::{Target, is_temp_name, parse_key, resolve_key};
use nodegate_core::response::Reply;
use nodegate_core::upload::{
    AppendOutcome, Discard, Entry, FileState, Finish, HeadAnswer, NoRoom, Sha256, Sidecar,
    UploadPlan, UploadRequest, X_CONTENT_SHA256, X_FILE_SIZE, X_TARGET_SHA256, after_append,
    after_append_failed, answer_head, finish_full, finish_range, plan_upload, short_body,
    too_large, total_sidecar, upload_ok,
};

/// The key every sequence uploads to.
pub const KEY: &[u8] = b"models/m/w.bin";
/// The absolute path the worker reports.
pub const LOCAL_PATH: &str = "/srv/models/m/w.bin";

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Where a request stops because the process dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
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
pub enum Fault {
    /// The request runs to its end.
    None,
    /// The process dies at this point.
    Crash(CrashPoint),
    /// The disk is full after this many body bytes (ENOSPC, HR-D01; a range append then
    /// discards its partial, issue 12).
    DiskFull(usize),
}

/// How a test damages the `.sha256` cache behind the server's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoil {
    /// A fresh sidecar that is not hex.
    Garbage,
    /// A fresh sidecar with the wrong hash in upper case.
    UpperCaseWrong,
    /// The wrong hash, then the file touched (`cp -p`, rsync): the sidecar is older.
    Stale,
}

/// A decoded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `PUT` without `Content-Range`: the whole file in one body.
    PutFull {
        /// The request body.
        body: Vec<u8>,
        /// The `X-Content-SHA256` sent, if any.
        hash: Option<Sha256>,
        /// Whether `Content-Length` is sent (otherwise the body is chunked).
        send_length: bool,
        /// What goes wrong.
        fault: Fault,
    },
    /// A range upload; `(start, end, total)` may be invalid (then the header is refused).
    PutRange {
        /// First byte of the range.
        start: u64,
        /// Last byte of the range (inclusive).
        end: u64,
        /// Size of the whole file.
        total: u64,
        /// The request body (may be shorter or longer than the range says).
        body: Vec<u8>,
        /// The `X-Content-SHA256` sent, if any.
        hash: Option<Sha256>,
        /// Whether that hash is sent in upper case.
        upper_hex: bool,
        /// Whether `Content-Length` is sent.
        send_length: bool,
        /// What goes wrong.
        fault: Fault,
    },
    /// `HEAD` of the key.
    Head,
    /// The `.sha256` cache damaged behind the server's back.
    Spoil(Spoil),
}

/// What an operation must produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No request is made (a spoiled sidecar).
    Nothing,
    /// A response with this status.
    Status(u16),
    /// The process died: no response.
    NoReply,
    /// This `HEAD` answer.
    Head(HeadAnswer),
}

/// The key as the spec states it.
#[derive(Debug, Clone)]
pub struct Model {
    /// The key names a directory: every request is refused.
    pub directory: bool,
    /// `LOCALAI_MAX_UPLOAD_SIZE`, if any.
    pub limit: Option<u64>,
    /// The bytes of the complete file, if there is one.
    pub complete: Option<Vec<u8>>,
    /// The bytes of the upload in progress and the hash it is meant to reach, if any.
    pub partial: Option<(Vec<u8>, Option<Sha256>)>,
    /// The `Content-Range` total the upload in progress declared (D18); `Some` exactly while
    /// `partial` is.
    pub partial_total: Option<u64>,
}

impl Model {
    /// An empty key (a directory when `directory`), with an optional upload limit.
    pub fn new(directory: bool, limit: Option<u64>) -> Self {
        Self {
            directory,
            limit,
            complete: None,
            partial: None,
            partial_total: None,
        }
    }

    /// How many bytes the upload in progress holds (0 without one).
    pub fn partial_len(&self) -> usize {
        self.partial.as_ref().map_or(0, |(bytes, _)| bytes.len())
    }

    /// Carries out `op` on the model and says what the server must answer.
    pub fn apply(&mut self, op: &Op) -> Expect {
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

    /// The `HEAD` answer for the key (INV-1).
    pub fn head(&self) -> HeadAnswer {
        if self.directory {
            return HeadAnswer::IsDirectory;
        }
        match (&self.partial, &self.complete) {
            // D19: the complete file (what GET serves) and the partial (what a client resumes).
            (Some((bytes, target)), Some(complete)) => HeadAnswer::Replacing {
                size: complete.len() as u64,
                sha256: Sha256::of(complete),
                partial: bytes.len() as u64,
                target: *target,
            },
            (Some((bytes, target)), None) => HeadAnswer::Partial {
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
                self.partial_total = None;
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
            self.partial_total = None;
            return Expect::Status(200);
        }
        let mut kept = self.partial.take();
        let mut kept_total = self.partial_total.take();
        // CR-16/CR-17: a restart keeps the partial only for the same declared hash and total
        // (D18), and only while it can still be resumed (it is shorter than the whole file).
        let resumable = kept
            .as_ref()
            .is_some_and(|(bytes, _)| (bytes.len() as u64) < total);
        let same = hash.is_some() && hash == target && kept_total.is_none_or(|t| t == total);
        if start == 0 && kept.is_some() && !(same && resumable) {
            kept = None;
            kept_total = None;
        }
        // CR-13: a hash change, or no hash where one was declared.
        if start > 0 && kept.is_some() {
            match (hash, target) {
                (Some(h), Some(t)) if h != t => return Expect::Status(409),
                (None, Some(_)) => {
                    self.partial = kept;
                    self.partial_total = kept_total;
                    return Expect::Status(409);
                }
                _ => {}
            }
            // D18: another total is another file; the partial is discarded.
            if kept_total.is_some_and(|t| t != total) {
                return Expect::Status(409);
            }
        }
        // CR-04, INV-2.
        let current = kept.as_ref().map_or(0, |(bytes, _)| bytes.len() as u64);
        if start != current {
            self.partial = kept;
            self.partial_total = kept_total;
            return Expect::Status(416);
        }
        // From here on the partial (kept or new) records this request's total.
        self.partial_total = Some(total);
        let (mut bytes, old_target) = kept.unwrap_or_default();
        let target = hash.or(old_target);
        let n = body.len().min(span as usize);
        for (at, &b) in body.iter().take(n).enumerate() {
            if fault == Fault::DiskFull(at) {
                // Issue 12: a partial whose append found the disk full is discarded, so it
                // cannot block every later write of the root.
                self.partial_total = None;
                return Expect::Status(507);
            }
            if fault == Fault::Crash(CrashPoint::MidBody(at)) {
                self.partial = Some((bytes, target));
                return Expect::NoReply;
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
            self.partial_total = None;
            return Expect::Status(400);
        }
        match fault {
            Fault::Crash(CrashPoint::BeforePublish) => {
                self.partial = Some((bytes, target));
                Expect::NoReply
            }
            Fault::Crash(CrashPoint::AfterRename | CrashPoint::AfterSidecar) => {
                self.complete = Some(bytes);
                self.partial_total = None;
                Expect::NoReply
            }
            _ => {
                self.complete = Some(bytes);
                self.partial_total = None;
                Expect::Status(200)
            }
        }
    }
}

/// The process died in the middle of a request.
struct Crashed;

/// One directory of one root, in memory: relative name → (content, mtime), with an adapter
/// that serves [`Op`]s through the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    target: Target,
    directory: bool,
    limit: Option<u64>,
    files: BTreeMap<String, (Vec<u8>, i128)>,
    clock: i128,
    nonce: u64,
}

impl Disk {
    /// An empty directory holding [`KEY`] (a directory itself when `directory`).
    pub fn new(directory: bool, limit: Option<u64>) -> Self {
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

    /// The bytes of the upload in progress, if any.
    pub fn partial(&self) -> Option<&[u8]> {
        self.content(&self.target.partial())
    }

    /// What the adapter reads before asking the core: the key's entry, its sidecars and the
    /// size of its partial.
    pub fn state(&self) -> FileState {
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
            total: self
                .content(&total_sidecar(&self.target))
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
            self.remove(&total_sidecar(&self.target));
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
        let plan = plan_upload(request, &self.state());
        if plan != UploadPlan::NeedHash {
            return plan;
        }
        self.rehash();
        let plan = plan_upload(request, &self.state());
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
        self.remove(&total_sidecar(&self.target));
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
                write_total,
                completes,
            } => {
                self.discard(discard);
                let partial = self.target.partial();
                if let Some(target) = write_target {
                    self.write(&self.target.target_sidecar(), target.to_hex().into_bytes());
                }
                if let Some(total) = write_total {
                    self.write(&total_sidecar(&self.target), total.to_string().into_bytes());
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
                        self.discard(after_append_failed(NoRoom::DiskFull));
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
    ///
    /// # Errors
    /// The statuses the client saw and the state left, when it cannot upload.
    pub fn client_upload(&mut self, content: &[u8]) -> Result<(), String> {
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
    ///
    /// # Panics
    /// When the server's answer is not `expect`, or the `HEAD` headers or a 416 break INV-1/INV-2.
    pub fn apply(&mut self, op: &Op, expect: &Expect) {
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

    /// Compares the disk with the model after an operation (INV-3, INV-4, HR-C06).
    ///
    /// # Panics
    /// When they differ, naming the invariant.
    pub fn check_invariants(&self, model: &Model) {
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
        if model.partial.is_some() {
            assert_eq!(
                self.state().partial_total(),
                model.partial_total,
                "D18: the partial records its declared total"
            );
        }
        // INV-4: nothing but the key's own names remains, and the hidden ones are no keys.
        let names = [
            self.rel(),
            self.target.sidecar(),
            self.target.target_sidecar(),
            self.target.partial(),
            total_sidecar(&self.target),
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

/// INV-1 and D19: `X-Content-SHA256` and `Content-Length` exactly for a complete file (what GET
/// serves), `X-Target-SHA256` exactly for a partial with a target; `X-File-Size` is the size of
/// the partial when there is one, else of the complete file.
fn check_head_headers(answer: &HeadAnswer, reply: &Reply) {
    let text = |name| {
        reply
            .header(name)
            .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let length = text(&CONTENT_LENGTH);
    let (content, target, size) = (
        text(&X_CONTENT_SHA256),
        text(&X_TARGET_SHA256),
        text(&X_FILE_SIZE),
    );
    match answer {
        HeadAnswer::Complete { size: n, sha256 } => {
            assert_eq!(content, Some(sha256.to_hex()));
            assert_eq!(length, Some(n.to_string()));
            assert_eq!(target, None);
            assert_eq!(size, Some(n.to_string()));
        }
        HeadAnswer::Replacing {
            size: n,
            sha256,
            partial,
            target: t,
        } => {
            assert_eq!(content, Some(sha256.to_hex()), "D19: what GET serves");
            assert_eq!(length, Some(n.to_string()), "D19: what GET serves");
            assert_eq!(target, t.map(|t| t.to_hex()));
            assert_eq!(size, Some(partial.to_string()), "D19: the partial");
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
