//! tokio's I/O traits over hyper's: tokio-tungstenite speaks `tokio::io`, an upgraded hyper
//! connection speaks `hyper::rt`. A pure trait adapter (as `hyper_util::rt::TokioIo`, without
//! unsafe code and without tokio's runtime), so the log WebSocket works on every runtime.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// `T`'s hyper I/O as `tokio::io::AsyncRead + AsyncWrite`.
pub(crate) struct TokioCompat<T>(pub(crate) T);

impl<T: hyper::rt::Read + Unpin> tokio::io::AsyncRead for TokioCompat<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = {
            let mut inner = hyper::rt::ReadBuf::new(buf.initialize_unfilled());
            ready!(Pin::new(&mut self.get_mut().0).poll_read(cx, inner.unfilled()))?;
            inner.filled().len()
        };
        buf.advance(read);
        Poll::Ready(Ok(()))
    }
}

impl<T: hyper::rt::Write + Unpin> tokio::io::AsyncWrite for TokioCompat<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
