//! Drives the core's [`ConnectionTable`]: the clock, the lock, and the signals that close the
//! connections the table sheds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use nodegate_core::connections::{ConnId, ConnectionLimits, ConnectionTable, UpgradeDecision};
use tokio::sync::{Notify, oneshot};

use crate::body::ResponseBody;

/// The connection table of one server, shared by the accept loop and every connection.
pub(crate) struct Connections {
    state: Mutex<State>,
    /// Signalled when a slot may have become reclaimable (a response ended, a connection
    /// closed), for an accept loop waiting in [`Connections::wait_admit`].
    changed: Notify,
    epoch: Instant,
}

struct State {
    table: ConnectionTable,
    /// Closes a connection when fired (or dropped).
    shed: HashMap<ConnId, oneshot::Sender<()>>,
}

impl Connections {
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                table: ConnectionTable::new(limits),
                shed: HashMap::new(),
            }),
            changed: Notify::new(),
            epoch: Instant::now(),
        })
    }

    pub(crate) fn first_head_timeout(&self) -> Duration {
        self.lock().table.limits().first_head_timeout
    }

    /// Waits until a connection can be admitted (a free slot, or one to reclaim).
    pub(crate) async fn wait_admit(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.lock().table.can_admit() {
                return;
            }
            changed.await;
        }
    }

    /// Admits a connection; closes the ones shed for it. The receiver fires when this one is
    /// shed in turn.
    pub(crate) fn accept(&self, remote: IpAddr) -> (ConnId, oneshot::Receiver<()>) {
        let now = self.now();
        let mut state = self.lock();
        let admitted = state.table.handle_accept(remote, now);
        for victim in admitted.shed {
            if let Some(shed) = state.shed.remove(&victim) {
                let _ = shed.send(());
            }
        }
        let (tx, rx) = oneshot::channel();
        state.shed.insert(admitted.id, tx);
        (admitted.id, rx)
    }

    pub(crate) fn request(&self, id: ConnId) {
        self.lock().table.handle_request(id);
    }

    pub(crate) fn response_done(&self, id: ConnId) {
        let now = self.now();
        self.lock().table.handle_response_done(id, now);
        self.changed.notify_one();
    }

    /// The first-head deadline of `id` passed: `true` when it is to be closed.
    pub(crate) fn first_head_deadline(&self, id: ConnId) -> bool {
        let now = self.now();
        let mut state = self.lock();
        let expired = state.table.handle_first_head_deadline(id, now);
        if expired {
            state.shed.remove(&id);
        }
        expired
    }

    pub(crate) fn upgrade(&self, id: ConnId) -> UpgradeDecision {
        // An upgraded connection is never shed: the table no longer names it.
        self.lock().table.handle_upgrade(id)
    }

    pub(crate) fn closed(&self, id: ConnId) {
        {
            let mut state = self.lock();
            state.table.handle_closed(id);
            state.shed.remove(&id);
        }
        self.changed.notify_one();
    }

    pub(crate) fn upgrade_closed(&self, id: ConnId) {
        self.lock().table.handle_upgrade_closed(id);
        self.changed.notify_one();
    }

    /// Accept failed for lack of descriptors: sheds one connection if any can be reclaimed.
    pub(crate) fn descriptors_exhausted(&self) -> bool {
        let mut state = self.lock();
        match state.table.handle_descriptors_exhausted() {
            Some(victim) => {
                if let Some(shed) = state.shed.remove(&victim) {
                    let _ = shed.send(());
                }
                true
            }
            None => false,
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Tells the table when `id`'s connection task ends, however it ends.
pub(crate) struct ClosedGuard {
    pub(crate) connections: Arc<Connections>,
    pub(crate) id: ConnId,
}

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        self.connections.closed(self.id);
    }
}

/// A response body that tells the table when it was sent completely (hyper drops it then) or
/// abandoned: the connection is idle from that moment.
pub(crate) struct TrackedBody {
    inner: ResponseBody,
    done: Option<(Arc<Connections>, ConnId)>,
}

impl TrackedBody {
    pub(crate) fn new(inner: ResponseBody, connections: Arc<Connections>, id: ConnId) -> Self {
        Self {
            inner,
            done: Some((connections, id)),
        }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some((connections, id)) = self.done.take() {
            connections.response_done(id);
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
