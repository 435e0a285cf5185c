//! Response bodies: whole buffers, or a file range sent chunk by chunk as hyper asks for it.
//!
//! On a connection that can (see [`crate::sendfile`]), a chunk in the page cache is not read
//! at all: the body yields a stand-in and the kernel sends the pages with `sendfile`. Otherwise
//! a chunk in the page cache is read on the connection's own thread (`preadv2(RWF_NOWAIT)`, no
//! hand-off), and a chunk that would wait for the disk on the blocking pool. Either way a
//! download holds only the chunks hyper has not written yet.

use std::io;
use std::os::unix::fs::FileExt as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::SemaphorePermit;

use crate::runtime::Runtime;
use crate::sendfile::{Link, STANDIN_MAX};

/// Size of the chunks read for downloads, and the largest body read in one piece.
pub(crate) const READ_CHUNK: usize = 256 * 1024;
/// Chunk size when the budget is spent: every download keeps moving, in small steps.
const SMALL_CHUNK: usize = 16 * 1024;
/// Bytes of download chunks alive at once in the whole process (issue 12, item 8): read-ahead
/// per download times 200 downloads used to reach 287 MB. A chunk holds its share from the read
/// until hyper has written it; past the budget, downloads read [`SMALL_CHUNK`]s (so a few
/// stalled clients holding the budget cannot stop the others).
const DOWNLOAD_BUDGET: usize = 16 * 1024 * 1024;

/// The process-wide budget of download chunk bytes, as permits of one byte.
static BUDGET: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(DOWNLOAD_BUDGET);

/// A chunk that gives its bytes back to [`BUDGET`] when hyper is done with it.
struct Budgeted {
    buf: Vec<u8>,
    _permit: Option<SemaphorePermit<'static>>,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// The body of every response the server sends.
pub enum ResponseBody {
    /// A complete in-memory body (errors, JSON, probes).
    Full(Option<Bytes>),
    /// A file range, read as it is sent.
    File(FileBody),
}

/// A file range being sent.
pub struct FileBody {
    file: Arc<std::fs::File>,
    /// Offset of the next byte to read.
    offset: u64,
    /// Bytes still to send.
    remaining: u64,
    /// Reads a chunk that is not in the page cache on the runtime's blocking pool.
    read_cold: Box<dyn Fn(ColdRead) -> PendingRead + Send + Sync>,
    /// A chunk being read on the blocking pool.
    pending: Option<PendingRead>,
    /// The connection's `sendfile` link: cached chunks go out as stand-ins
    /// ([`crate::sendfile`]).
    link: Option<Link>,
}

/// A chunk to read on the blocking pool: the file, the buffer and the offset.
type ColdRead = (Arc<std::fs::File>, Budgeted, u64);

/// A chunk being read on the blocking pool.
type PendingRead = Pin<Box<dyn std::future::Future<Output = io::Result<Budgeted>> + Send>>;

impl ResponseBody {
    /// An in-memory body.
    #[must_use]
    pub fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Self::Full(None)
        } else {
            Self::Full(Some(bytes))
        }
    }

    /// Sends `len` bytes of `file` from `offset`. Memory stays bounded by the chunks hyper
    /// holds, and by the process-wide budget; with a `link`, cached chunks are sent with
    /// `sendfile` and hold no memory at all.
    pub(crate) fn file<R: Runtime>(
        runtime: &R,
        file: std::fs::File,
        offset: u64,
        len: u64,
        link: Option<Link>,
    ) -> Self {
        let runtime = runtime.clone();
        let read_cold = move |(file, mut chunk, offset): ColdRead| -> PendingRead {
            let read = runtime.unblock(move || {
                let n = file.read_at(&mut chunk.buf, offset)?;
                chunk.buf.truncate(n);
                Ok(chunk)
            });
            Box::pin(async move {
                read.await
                    .unwrap_or_else(|unfinished| Err(io::Error::other(unfinished.to_string())))
            })
        };
        Self::File(FileBody {
            file: Arc::new(file),
            offset,
            remaining: len,
            read_cold: Box::new(read_cold),
            pending: None,
            link,
        })
    }
}

impl FileBody {
    /// The next chunk: from the page cache at once, else from the blocking pool.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        if self.pending.is_none()
            && let Some(link) = &self.link
        {
            let want = usize::try_from(self.remaining).map_or(STANDIN_MAX, |l| l.min(STANDIN_MAX));
            let (file, offset) = (&self.file, self.offset);
            if let Some(standin) = link.standin(file, offset, want, || {
                nodegate_store::range_cached(file, offset, want as u64)
            }) {
                self.offset += want as u64;
                self.remaining -= want as u64;
                return Poll::Ready(Ok(standin));
            }
        }
        if self.pending.is_none() {
            let want = usize::try_from(self.remaining).map_or(READ_CHUNK, |l| l.min(READ_CHUNK));
            let permits = u32::try_from(want).expect("a chunk is far below 4 GiB");
            let (want, permit) = match BUDGET.try_acquire_many(permits) {
                Ok(permit) => (want, Some(permit)),
                Err(_) => (want.min(SMALL_CHUNK), None),
            };
            let mut chunk = Budgeted {
                buf: vec![0_u8; want],
                _permit: permit,
            };
            match nodegate_store::read_cached(&self.file, &mut chunk.buf, self.offset)? {
                Some(n) => {
                    chunk.buf.truncate(n);
                    return Poll::Ready(self.advance(chunk));
                }
                None => {
                    self.pending = Some((self.read_cold)((self.file.clone(), chunk, self.offset)));
                }
            }
        }
        let pending = self.pending.as_mut().expect("set above");
        let read = ready!(pending.as_mut().poll(cx));
        self.pending = None;
        Poll::Ready(read.and_then(|chunk| self.advance(chunk)))
    }

    /// Accounts for a chunk read: an empty one means the file shrank under the download.
    fn advance(&mut self, chunk: Budgeted) -> io::Result<Bytes> {
        let n = chunk.buf.len() as u64;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
        self.offset += n;
        self.remaining = self.remaining.saturating_sub(n);
        let bytes = Bytes::from_owner(chunk);
        if let Some(link) = &self.link {
            link.probe(&bytes);
        }
        Ok(bytes)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            link.download_ended();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::File(body) => {
                if body.remaining == 0 {
                    return Poll::Ready(None);
                }
                body.poll_chunk(cx)
                    .map(|chunk| Some(chunk.map(Frame::data)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::File(body) => body.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::File(body) => SizeHint::with_exact(body.remaining),
        }
    }
}
