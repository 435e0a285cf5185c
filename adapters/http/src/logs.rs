//! The backend log store the embedding program feeds, and its WebSocket stream.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nodegate_core::logs::{self as proto, LogBuffers, LogLine, Stream};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::runtime::{self, Runtime};
use crate::tasks::Tasks;

/// Lines queued per WebSocket subscriber before new lines are dropped (spec §2.12).
const SUBSCRIBER_QUEUE: usize = 100;
/// Server ping period.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A client that answers no ping for this long is dropped.
const READ_DEADLINE: Duration = Duration::from_secs(90);
/// Each write must complete within this time.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// Per-process ring buffers of backend output, shared by the embedding program (which pushes
/// lines) and the server (which serves them over REST and WebSocket).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    buffers: Mutex<LogBuffers>,
    live: broadcast::Sender<(String, LogLine)>,
}

impl Default for LogStore {
    fn default() -> Self {
        Self::new()
    }
}

impl LogStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                buffers: Mutex::new(LogBuffers::new()),
                live,
            }),
        }
    }

    /// Records one line of a backend process (`<model>#<replica>` or a bare model ID), stamped
    /// with the current time.
    pub fn push(&self, process_key: &str, stream: Stream, text: &str) {
        let at_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
        let line = LogLine {
            timestamp: proto::format_timestamp(at_ns),
            stream,
            text: text.to_owned(),
            at_ns,
        };
        self.lock().push(process_key, line.clone());
        let _ = self.inner.live.send((process_key.to_owned(), line));
    }

    /// Model IDs with logs (the REST index).
    #[must_use]
    pub fn models(&self) -> Vec<String> {
        self.lock().models()
    }

    /// Buffered lines of a model or process key (the REST per-model route).
    #[must_use]
    pub fn lines(&self, model: &str) -> Vec<LogLine> {
        self.lock().lines(model)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogBuffers> {
        self.inner
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves one upgraded WebSocket: the initial frame, then each new line, with pings every
    /// 30 s, a 90 s read deadline extended by every pong, and client frames read and discarded.
    pub(crate) async fn watch<R, S>(
        &self,
        runtime: &R,
        model: String,
        mut socket: WebSocketStream<S>,
    ) where
        R: Runtime,
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use futures_util::{SinkExt, StreamExt};

        // Subscribe before reading the backlog so no line falls between the two.
        let mut live = self.inner.live.subscribe();
        let (keys, initial) = {
            let buffers = self.lock();
            let mut keys: HashSet<String> = buffers.keys_for(&model).into_iter().collect();
            keys.insert(model.clone());
            (keys, proto::initial_frame(&buffers.lines(&model)))
        };
        if send(runtime, &mut socket, initial).await.is_err() {
            return;
        }
        let (queue_tx, mut queue_rx) = tokio::sync::mpsc::channel::<String>(SUBSCRIBER_QUEUE);
        // Aborted when this function returns (the set is dropped).
        let forward = Tasks::new();
        forward.spawn(runtime, async move {
            loop {
                match live.recv().await {
                    Ok((key, line)) if keys.contains(&key) => {
                        // A full queue drops the line, as LocalAI does.
                        let _ = queue_tx.try_send(proto::line_frame(&line));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        // Both timers live across loop turns: a busy stream still pings every period, and
        // only a pong moves the read deadline.
        let mut ping = Box::pin(runtime.sleep(PING_EVERY));
        let mut deadline = Box::pin(runtime.sleep(READ_DEADLINE));
        loop {
            tokio::select! {
                frame = queue_rx.recv() => {
                    let Some(frame) = frame else { break };
                    if send(runtime, &mut socket, frame).await.is_err() { break; }
                }
                () = ping.as_mut() => {
                    ping.set(runtime.sleep(PING_EVERY));
                    let pinged = socket.send(Message::Ping(Default::default()));
                    let sent = runtime::timeout(runtime, WRITE_DEADLINE, pinged).await;
                    if !matches!(sent, Ok(Ok(()))) { break; }
                }
                () = deadline.as_mut() => break,
                incoming = socket.next() => {
                    match incoming {
                        Some(Ok(Message::Pong(_))) => deadline.set(runtime.sleep(READ_DEADLINE)),
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    }
                }
            }
        }
        drop(forward);
    }
}

async fn send<R, S>(runtime: &R, socket: &mut WebSocketStream<S>, text: String) -> Result<(), ()>
where
    R: Runtime,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::SinkExt;
    match runtime::timeout(runtime, WRITE_DEADLINE, socket.send(Message::text(text))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
