//! Response bodies: whole buffers, or a file streamed from a blocking reader thread.

use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Size of the chunks read from disk for downloads.
pub(crate) const READ_CHUNK: usize = 256 * 1024;
/// Chunks buffered between the reader thread and the socket (bounds memory per download).
const READ_AHEAD: usize = 4;

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
    pub(crate) fn file(mut file: std::fs::File, offset: u64, len: u64) -> Self {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            if let Err(error) = file.seek(SeekFrom::Start(offset)) {
                let _ = tx.blocking_send(Err(error));
                return;
            }
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left).map_or(READ_CHUNK, |l| l.min(READ_CHUNK));
                let mut buf = BytesMut::zeroed(want);
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
                        if tx.blocking_send(Ok(buf.freeze())).is_err() {
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
        });
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
