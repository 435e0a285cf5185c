//! Request bodies of the staging client: nothing, or a slice of a file read from disk chunk by
//! chunk (bounded memory whatever the file's size).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from disk per body frame.
const CHUNK: usize = 256 * 1024;

/// A request body of the staging client.
pub(crate) enum ReqBody {
    /// No body.
    Empty,
    /// `remaining` bytes of an open file, from its current position.
    File {
        file: tokio::fs::File,
        remaining: u64,
        buf: Vec<u8>,
        /// Bytes handed to hyper so far (for progress).
        sent: Arc<AtomicU64>,
    },
}

impl ReqBody {
    /// A body of `len` bytes of `file` (already positioned at the first byte to send).
    pub(crate) fn file(file: tokio::fs::File, len: u64, sent: Arc<AtomicU64>) -> Self {
        Self::File {
            file,
            remaining: len,
            buf: vec![0; CHUNK],
            sent,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::File {
                file,
                remaining,
                buf,
                sent,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = usize::try_from(*remaining).unwrap_or(CHUNK).min(CHUNK);
                let mut read = ReadBuf::new(&mut buf[..want]);
                match Pin::new(file).poll_read(cx, &mut read) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
                    Poll::Ready(Ok(())) => {
                        let filled = read.filled();
                        if filled.is_empty() {
                            return Poll::Ready(Some(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the local file shrank while it was being sent",
                            ))));
                        }
                        let n = filled.len() as u64;
                        let chunk = Bytes::copy_from_slice(filled);
                        *remaining -= n;
                        sent.fetch_add(n, Ordering::Relaxed);
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
