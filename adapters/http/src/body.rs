//! Response bodies: whole buffers, or a file streamed from a blocking reader thread.

use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::runtime::Runtime;

/// Size of the chunks read from disk for downloads.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Chunks buffered between the reader thread and the socket (bounds memory per download).
const READ_AHEAD: usize = 1;
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
    _permit: Option<tokio::sync::SemaphorePermit<'static>>,
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
    /// A file range streamed from a blocking reader.
    File {
        /// Chunks from the reader thread.
        rx: mpsc::Receiver<io::Result<Bytes>>,
        /// Bytes still to send.
        remaining: u64,
    },
}

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

    /// Streams `len` bytes of `file` from `offset`, reading on the blocking pool so the async
    /// threads never wait on the disk. Memory stays bounded by a few chunks.
    pub(crate) fn file<R: Runtime>(
        runtime: &R,
        mut file: std::fs::File,
        offset: u64,
        len: u64,
    ) -> Self {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        // Not awaited: the reader runs to its end on its own (the runtime contract).
        drop(runtime.unblock(move || {
            if let Err(error) = file.seek(SeekFrom::Start(offset)) {
                let _ = tx.blocking_send(Err(error));
                return;
            }
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left).map_or(READ_CHUNK, |l| l.min(READ_CHUNK));
                let permits = u32::try_from(want).expect("a chunk is far below 4 GiB");
                let (want, permit) = match BUDGET.try_acquire_many(permits) {
                    Ok(permit) => (want, Some(permit)),
                    Err(_) => (want.min(SMALL_CHUNK), None),
                };
                let mut buf = vec![0_u8; want];
                match file.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while being sent",
                        )));
                        return;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        left -= n as u64;
                        let chunk = Bytes::from_owner(Budgeted {
                            buf,
                            _permit: permit,
                        });
                        if tx.blocking_send(Ok(chunk)).is_err() {
                            return; // client went away
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        let _ = tx.blocking_send(Err(error));
                        return;
                    }
                }
            }
        }));
        Self::File { rx, remaining: len }
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
            Self::File { rx, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                match rx.poll_recv(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(chunk))) => {
                        *remaining = remaining.saturating_sub(chunk.len() as u64);
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
                    Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file reader stopped early",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
