//! Downloads without the copy through user space: file chunks go out with `sendfile(2)`
//! beneath hyper.
//!
//! hyper writes a response body from the buffers the body yields and cannot hand a file to the
//! kernel itself (hyperium/hyper#3026). A download still skips the copy, without hyper seeing
//! any difference: the body yields *stand-ins* — buffers of the chunk's length in a zeroed
//! region that nothing reads — and records on the connection's [`Link`] which file range each
//! one stands for. The connection's I/O wrapper ([`SendfileIo`]) recognises a stand-in by its
//! address when hyper writes it and sends that file range with `sendfile` instead; hyper only
//! sees how many bytes were written, as with any write.
//!
//! # Why a stand-in's zeroes never reach a client
//!
//! - hyper writes body buffers in place (by address, with `writev`) in its queue strategy,
//!   which the server asks for ([`hyper::server::conn::http1::Builder::writev`]); a copying
//!   strategy would turn stand-ins into zeroes on the wire. So a connection makes stand-ins
//!   only once it has *seen* hyper write in place: the first chunk of a download is real data,
//!   kept alive until then, and the wrapper marks the link verified only when it is handed
//!   that chunk's own memory. A hyper that copied never verifies a link, and every chunk stays
//!   real data.
//! - The wrapper passes no stand-in memory to the kernel. A write that starts in stand-in
//!   memory anywhere but at the exact next range the link recorded fails the connection.
//! - `sendfile` returning 0 (the file shrank during the download) fails the connection, as a
//!   short read does for a copied chunk: the client sees a short body, never other bytes.
//!
//! A chunk is sent this way only when its first and last bytes are in the page cache
//! ([`nodegate_store::range_cached`]); otherwise it is read as before (on the blocking pool if
//! it is not cached). Stand-ins hold no memory: the region is allocated once, zeroed by the
//! kernel and never touched, so it is not resident, and the download budget is not charged.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::rt::{Read, ReadBufCursor, Write};

use crate::linger::Lingering;
use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// Largest stand-in, and the size of a chunk sent with `sendfile`.
pub(crate) const STANDIN_MAX: usize = 1024 * 1024;
/// Stand-in slots per region: a connection has at most two stand-ins queued in hyper at once
/// (hyper polls the body again only when less than its buffer limit is left to write).
const SLOTS: usize = 4;

/// The zeroed region stand-ins point into, shared by all connections (a stand-in is only ever
/// resolved on the link that made it).
fn region() -> &'static [u8] {
    static REGION: OnceLock<Box<[u8]>> = OnceLock::new();
    REGION.get_or_init(|| vec![0_u8; STANDIN_MAX * SLOTS].into_boxed_slice())
}

/// Whether `slice` starts inside the stand-in region.
fn in_region(slice: &[u8]) -> bool {
    let region = region().as_ptr_range();
    region.contains(&slice.as_ptr())
}

/// What a connection's downloads and its I/O wrapper share.
#[derive(Clone)]
pub(crate) struct Link {
    state: Arc<Mutex<State>>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct State {
    /// The wrapper has seen hyper write a body chunk in place.
    verified: bool,
    /// A real chunk the wrapper should be handed in place. It is kept alive until then, so
    /// its memory cannot be reused by a buffer of hyper's own and seen by mistake.
    probe: Option<Bytes>,
    /// Stand-ins yielded and not yet completely sent, oldest first.
    queued: VecDeque<Standin>,
    /// The region slot the next stand-in takes.
    next_slot: usize,
}

/// The file range a stand-in stands for, and where it points.
struct Standin {
    /// Address of its next unsent byte.
    at: usize,
    /// Bytes not yet sent.
    len: usize,
    file: Arc<File>,
    /// File offset of its next unsent byte.
    offset: u64,
}

/// What the wrapper does with a write hyper asks for.
enum Next {
    /// Write the first `n` buffers as they are.
    Plain(usize),
    /// Send this file range instead of the first buffer.
    Send {
        file: Arc<File>,
        offset: u64,
        len: usize,
    },
    /// Stand-in memory out of order: fail the connection.
    Refuse,
}

impl Link {
    /// A link for a new connection; bytes it sends are counted in `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            state: Arc::default(),
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stand-in for `len` bytes (at most [`STANDIN_MAX`]) of `file` at `offset`, if this
    /// connection has shown that hyper writes in place, a slot is free and `cached` (asked
    /// only then) says the range is in the page cache.
    pub(crate) fn standin(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
        cached: impl FnOnce() -> bool,
    ) -> Option<Bytes> {
        let mut state = self.state();
        let len = len.min(STANDIN_MAX);
        if !state.verified || len == 0 || state.queued.len() >= SLOTS - 1 || !cached() {
            return None;
        }
        let slot = state.next_slot;
        state.next_slot = (slot + 1) % SLOTS;
        let memory = &region()[slot * STANDIN_MAX..slot * STANDIN_MAX + len];
        state.queued.push_back(Standin {
            at: memory.as_ptr() as usize,
            len,
            file: file.clone(),
            offset,
        });
        Some(Bytes::from_static(memory))
    }

    /// Asks the wrapper to check that hyper writes `chunk` (real data) in place; the first
    /// such chunk of a connection is its proof.
    pub(crate) fn probe(&self, chunk: &Bytes) {
        let mut state = self.state();
        if !state.verified && state.probe.is_none() && !chunk.is_empty() {
            state.probe = Some(chunk.clone());
        }
    }

    /// A download ended: its probe's memory is released (hyper may not have written it yet;
    /// the next download probes again).
    pub(crate) fn download_ended(&self) {
        self.state().probe = None;
    }

    /// Whether this connection makes stand-ins.
    #[cfg(test)]
    pub(crate) fn verified(&self) -> bool {
        self.state().verified
    }

    fn next(&self, bufs: &[IoSlice<'_>]) -> Next {
        let mut state = self.state();
        if let Some(probe) = &state.probe
            && bufs
                .iter()
                .any(|buf| !buf.is_empty() && probe.as_ptr_range().contains(&buf.as_ptr()))
        {
            state.verified = true;
            state.probe = None;
        }
        // An empty buffer is written (as nothing) whatever it points at.
        let Some(first) = bufs
            .iter()
            .position(|buf| !buf.is_empty() && in_region(buf))
        else {
            return Next::Plain(bufs.len());
        };
        if first > 0 {
            return Next::Plain(first);
        }
        let buf = &bufs[0];
        match state.queued.front() {
            Some(next) if next.at == buf.as_ptr() as usize && buf.len() <= next.len => Next::Send {
                file: next.file.clone(),
                offset: next.offset,
                len: buf.len(),
            },
            _ => Next::Refuse,
        }
    }

    fn sent(&self, n: usize) {
        self.metrics.sendfile(n as u64);
        let mut state = self.state();
        if let Some(front) = state.queued.front_mut() {
            front.at += n;
            front.len -= n.min(front.len);
            front.offset += n as u64;
            if front.len == 0 {
                state.queued.pop_front();
            }
        }
    }
}

/// The connection's stream as hyper sees it: writes of stand-ins become `sendfile` calls.
pub(crate) struct SendfileIo<R: Runtime> {
    inner: Lingering<R>,
    /// `None` where the runtime cannot `sendfile`: every write goes through unchanged.
    link: Option<Link>,
}

impl<R: Runtime> SendfileIo<R> {
    pub(crate) fn new(inner: Lingering<R>, link: Option<Link>) -> Self {
        Self { inner, link }
    }

    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(link) = &self.link else {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        };
        match link.next(bufs) {
            Next::Plain(n) => Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs[..n]),
            Next::Send { file, offset, len } => {
                let n = ready!(R::poll_sendfile(self.inner.conn(), cx, &file, offset, len))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    )));
                }
                link.sent(n);
                Poll::Ready(Ok(n))
            }
            Next::Refuse => Poll::Ready(Err(io::Error::other(
                "a sendfile stand-in was written out of order",
            ))),
        }
    }
}

impl<R: Runtime> Read for SendfileIo<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<R: Runtime> Write for SendfileIo<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
