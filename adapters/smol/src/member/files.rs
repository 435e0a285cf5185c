//! The seam through which the member starts the file-transfer server, and serves the
//! `nodes.<id>.files.*` requests over the same roots. The member decides nothing about files:
//! it starts the service when the start-up machine says so, hands it the readiness the
//! machine drives, and stops it at exit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What `/readyz` answers: `Ok` → 200, `Err(reason)` → 503 naming the reason.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A file-transfer server the member can start (for example `nodegate_http::Server` on
/// smol, or any server of the embedding program's).
pub trait FileService: Send {
    /// Binds `bind` and starts serving, `/readyz` answering as `readiness` says.
    ///
    /// # Errors
    /// A text naming what could not be bound, created or opened.
    fn start(self: Box<Self>, bind: &str, readiness: Readiness) -> Result<Serving, String>;
}

/// A started file server.
pub struct Serving {
    /// The bound address, for the log.
    pub addr: String,
    /// The handlers of the node's file subjects, over the server's roots.
    pub files: Arc<dyn NodeFiles>,
    /// Stops accepting and lets in-flight requests finish (bounded by the server).
    pub stop: Box<dyn FnOnce() + Send>,
    /// Ends when the server has stopped.
    pub done: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// The worker's answers to `nodes.<id>.files.listdir` and `nodes.<id>.files.temp`, through
/// the core's rules (`nodegate_core::node_files`). Blocking: the member calls them on the
/// blocking pool.
pub trait NodeFiles: Send + Sync {
    /// The reply to a `files.listdir` request with this payload.
    fn listdir(&self, payload: &[u8]) -> Vec<u8>;
    /// The reply to a `files.temp` request.
    fn temp(&self) -> Vec<u8>;
}
