//! The task that owns one NATS connection: the socket (plaintext or TLS) and the core's
//! [`NatsClient`], run by the core's drain contract — write every transmit, handle every
//! event, then wait for bytes, a command or the machine's timer. Reconnects happen when, and
//! after the delay that, [`NatsClient::should_reconnect`] says.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt as _, AsyncWriteExt as _};
use nodegate_core::nats::{
    CloseReason, Event, FlushId, Msg, NatsClient, RequestFailure, RequestId, ServerError, Sid,
};
use nodegate_core::startup::{NatsConnectError, NatsEvent, NatsServerInfo, Time};
use rustls::ClientConfig;
use smol::channel::{Receiver, Sender};
use tracing::warn;

use super::CredentialCell;
use super::credential;
use crate::rt;
use crate::tls::{self, Stream};

/// The answer to a confirmed subscription: the subscribers and the server errors seen.
pub(super) type Confirmed = Result<(Vec<super::Subscriber>, Vec<ServerError>), String>;

/// What a [`Client`](super::Client) asks of its connection.
pub(super) enum Command {
    /// `SUB` each subject, then a round trip; answer with the subscribers and every server
    /// error that arrived before the round trip ended.
    Subscribe {
        subjects: Vec<(String, Option<String>)>,
        reply: Sender<Confirmed>,
    },
    /// `PUB`.
    Publish {
        subject: String,
        reply_to: Option<String>,
        payload: Bytes,
        done: Sender<Result<(), String>>,
    },
    /// A request on the connection's inbox.
    Request {
        subject: String,
        payload: Bytes,
        reply: Sender<Result<Msg, RequestFailure>>,
    },
    /// A round trip.
    Flush { reply: Sender<Result<(), String>> },
    /// Close the connection and end the task.
    Close { done: Sender<()> },
}

/// Where and how to (re)connect.
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    /// TLS settings when the connection upgrades to TLS.
    pub(super) tls: Option<Arc<ClientConfig>>,
    /// Bound on one TCP connect.
    pub(super) connect_timeout: Duration,
}

/// The connection task's state.
pub(super) struct Link {
    pub(super) client: NatsClient,
    pub(super) stream: Option<Stream>,
    pub(super) target: Target,
    pub(super) cell: CredentialCell,
    pub(super) events: Sender<NatsEvent>,
    /// The answer to the first attempt, until it is given.
    pub(super) first: Option<Sender<Result<NatsServerInfo, NatsConnectError>>>,
    subs: HashMap<Sid, Sender<Msg>>,
    requests: HashMap<RequestId, Sender<Result<Msg, RequestFailure>>>,
    flushes: Vec<Flush>,
    /// The last I/O or TLS error, to tell a TLS refusal from a lost link.
    io_error: Option<io::Error>,
    /// The member was told the link is up.
    up: bool,
    closing: Option<Sender<()>>,
}

struct Flush {
    id: FlushId,
    errors: Vec<ServerError>,
    reply: FlushReply,
}

enum FlushReply {
    Plain(Sender<Result<(), String>>),
    Subscribe(Vec<super::Subscriber>, Sender<Confirmed>),
}

enum Wake {
    Read(io::Result<usize>),
    Command(Option<Command>),
    Timer,
}

/// The adapter's clock.
pub(super) fn now() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Link {
    pub(super) fn new(
        client: NatsClient,
        stream: Stream,
        target: Target,
        cell: CredentialCell,
        events: Sender<NatsEvent>,
        first: Sender<Result<NatsServerInfo, NatsConnectError>>,
    ) -> Self {
        Self {
            client,
            stream: Some(stream),
            target,
            cell,
            events,
            first: Some(first),
            subs: HashMap::new(),
            requests: HashMap::new(),
            flushes: Vec::new(),
            io_error: None,
            up: false,
            closing: None,
        }
    }

    /// Runs the connection until it is closed for good.
    pub(super) async fn run(mut self, commands: Receiver<Command>) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            self.write_pending().await;
            let (start_tls, closed) = self.handle_events();
            if start_tls {
                self.start_tls().await;
                continue;
            }
            if let Some(reason) = closed {
                if self.write_and_close(reason, &commands).await {
                    return;
                }
                continue;
            }
            let wake = {
                let deadline = self.client.poll_timeout();
                let stream = &mut self.stream;
                let read = async {
                    match stream {
                        Some(stream) => Wake::Read(stream.read(&mut buf).await),
                        None => std::future::pending().await,
                    }
                };
                let command = async { Wake::Command(commands.recv().await.ok()) };
                let timer = async {
                    match deadline {
                        Some(at) => rt::sleep(at.saturating_sub(now())).await,
                        None => std::future::pending().await,
                    }
                    Wake::Timer
                };
                futures_lite::future::or(read, futures_lite::future::or(command, timer)).await
            };
            match wake {
                Wake::Read(Ok(0)) => self.client.handle_disconnected(),
                Wake::Read(Ok(n)) => self.client.handle_input(&buf[..n], now()),
                Wake::Read(Err(error)) => self.lost(error),
                Wake::Command(Some(command)) => self.command(command),
                Wake::Command(None) => self.client.close(),
                Wake::Timer => self.client.handle_timeout(now()),
            }
        }
    }

    fn lost(&mut self, error: io::Error) {
        self.io_error = Some(error);
        self.client.handle_disconnected();
    }

    async fn write_pending(&mut self) {
        while let Some(bytes) = self.client.poll_transmit() {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let written = async {
                stream.write_all(&bytes).await?;
                stream.flush().await
            };
            if let Err(error) = written.await {
                self.lost(error);
                return;
            }
        }
    }

    /// Handles every event; returns whether TLS must start, and the close reason if closed.
    fn handle_events(&mut self) -> (bool, Option<CloseReason>) {
        let (mut start_tls, mut closed) = (false, None);
        while let Some(event) = self.client.poll_event() {
            match event {
                Event::StartTls => start_tls = true,
                Event::Connected { server_info } => {
                    let info = NatsServerInfo {
                        auth_required: server_info.auth_required,
                    };
                    if let Some(first) = self.first.take() {
                        let _ = first.try_send(Ok(info));
                    } else if !self.up {
                        let _ = self.events.try_send(NatsEvent::Reconnected);
                    }
                    self.up = true;
                }
                Event::Message(msg) => {
                    if let Some(tx) = self.subs.get(&msg.sid)
                        && tx.try_send(msg.clone()).is_err()
                    {
                        // The subscriber was dropped: end the subscription.
                        self.subs.remove(&msg.sid);
                        let _ = self.client.unsubscribe(msg.sid);
                    }
                }
                Event::Reply { request, msg } => {
                    if let Some(tx) = self.requests.remove(&request) {
                        let _ = tx.try_send(Ok(msg));
                    }
                }
                Event::RequestFailed { request, reason } => {
                    if let Some(tx) = self.requests.remove(&request) {
                        let _ = tx.try_send(Err(reason));
                    }
                }
                Event::Flushed(id) => {
                    if let Some(i) = self.flushes.iter().position(|f| f.id == id) {
                        let flush = self.flushes.remove(i);
                        match flush.reply {
                            FlushReply::Plain(tx) => {
                                let _ = tx.try_send(Ok(()));
                            }
                            FlushReply::Subscribe(subscribers, tx) => {
                                let _ = tx.try_send(Ok((subscribers, flush.errors)));
                            }
                        }
                    }
                }
                Event::ServerError(error) => {
                    for flush in &mut self.flushes {
                        flush.errors.push(error.clone());
                    }
                    let _ = self
                        .events
                        .try_send(NatsEvent::ServerError(error.server_text()));
                }
                Event::Dropped { sid, error } => {
                    warn!(
                        sid = sid.0,
                        "NATS: a message with malformed headers was dropped: {error}"
                    );
                }
                Event::Closed(reason) => closed = Some(reason),
            }
        }
        (start_tls, closed)
    }

    async fn start_tls(&mut self) {
        let (Some(Stream::Plain(plain)), Some(config)) =
            (self.stream.take(), self.target.tls.clone())
        else {
            self.client.handle_disconnected();
            return;
        };
        let limit = self.target.connect_timeout;
        match rt::timeout(limit, tls::upgrade(plain, config, &self.target.host)).await {
            Some(Ok(stream)) => {
                self.stream = Some(stream);
                self.client.handle_tls_established(now());
            }
            Some(Err(error)) => self.lost(error),
            None => self.lost(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake did not finish in time",
            )),
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Subscribe { subjects, reply } => {
                let mut subscribers = Vec::with_capacity(subjects.len());
                for (subject, queue) in subjects {
                    match self.client.subscribe(&subject, queue.as_deref()) {
                        Ok(sid) => {
                            let (tx, rx) = smol::channel::unbounded();
                            self.subs.insert(sid, tx);
                            subscribers.push(super::Subscriber { sid, messages: rx });
                        }
                        Err(error) => {
                            let _ =
                                reply.try_send(Err(format!("subscribing to {subject}: {error}")));
                            return;
                        }
                    }
                }
                match self.client.flush() {
                    Ok(id) => self.flushes.push(Flush {
                        id,
                        errors: Vec::new(),
                        reply: FlushReply::Subscribe(subscribers, reply),
                    }),
                    Err(error) => {
                        let _ = reply.try_send(Err(format!("confirming subscriptions: {error}")));
                    }
                }
            }
            Command::Publish {
                subject,
                reply_to,
                payload,
                done,
            } => {
                let result = self
                    .client
                    .publish(&subject, reply_to.as_deref(), None, &payload)
                    .map_err(|e| e.to_string());
                let _ = done.try_send(result);
            }
            Command::Request {
                subject,
                payload,
                reply,
            } => match self.client.request(&subject, &payload, now()) {
                Ok(id) => {
                    self.requests.insert(id, reply);
                }
                Err(_) => {
                    let _ = reply.try_send(Err(RequestFailure::ConnectionClosed));
                }
            },
            Command::Flush { reply } => match self.client.flush() {
                Ok(id) => self.flushes.push(Flush {
                    id,
                    errors: Vec::new(),
                    reply: FlushReply::Plain(reply),
                }),
                Err(error) => {
                    let _ = reply.try_send(Err(error.to_string()));
                }
            },
            Command::Close { done } => {
                self.closing = Some(done);
                self.client.close();
            }
        }
    }

    /// After a close: answers the first attempt, or reports the outage and reconnects when
    /// the core says so. Returns whether the task ends.
    async fn write_and_close(&mut self, reason: CloseReason, commands: &Receiver<Command>) -> bool {
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.close().await;
        }
        for flush in self.flushes.drain(..) {
            let text = format!("the connection closed: {reason}");
            match flush.reply {
                FlushReply::Plain(tx) => {
                    let _ = tx.try_send(Err(text));
                }
                FlushReply::Subscribe(_, tx) => {
                    let _ = tx.try_send(Err(text));
                }
            }
        }
        let io_error = self.io_error.take();
        if let Some(first) = self.first.take() {
            let error = match (&reason, io_error) {
                (CloseReason::ConnectionLost, Some(e)) if tls::is_tls_error(&e) => {
                    NatsConnectError::Tls(e.to_string())
                }
                (CloseReason::ConnectionLost, Some(e)) => {
                    NatsConnectError::Unreachable(e.to_string())
                }
                _ => NatsConnectError::from_close(&reason),
            };
            let _ = first.try_send(Err(error));
            return true;
        }
        if reason == CloseReason::Requested {
            if let Some(done) = self.closing.take() {
                let _ = done.try_send(());
            }
            return true;
        }
        if self.up {
            self.up = false;
            let _ = self.events.try_send(NatsEvent::Disconnected);
        }
        if let CloseReason::ServerError(error) = &reason {
            let _ = self
                .events
                .try_send(NatsEvent::ServerError(error.server_text()));
        }
        let Some(delay) = self.client.should_reconnect(&reason) else {
            warn!("NATS: not reconnecting ({reason})");
            // Answer commands until the member closes the connection.
            while let Ok(command) = commands.recv().await {
                if let Command::Close { done } = command {
                    let _ = done.try_send(());
                    return true;
                }
                self.command(command);
            }
            return true;
        };
        if self.wait_answering(delay, commands).await {
            return true;
        }
        self.reconnect().await;
        false
    }

    /// Waits `delay` while answering commands (which fail: not connected); `true` when the
    /// connection was closed meanwhile.
    async fn wait_answering(&mut self, delay: Duration, commands: &Receiver<Command>) -> bool {
        let until = now() + delay;
        loop {
            let left = until.saturating_sub(now());
            if left.is_zero() {
                return false;
            }
            match rt::timeout(left, commands.recv()).await {
                None => return false,
                Some(Ok(Command::Close { done })) => {
                    let _ = done.try_send(());
                    return true;
                }
                Some(Ok(command)) => self.command(command),
                Some(Err(_)) => return true,
            }
            self.handle_events();
        }
    }

    /// Opens a new socket and starts the handshake again, with the credential the member
    /// holds now (a refreshed JWT).
    async fn reconnect(&mut self) {
        let opened = tls::connect_tcp(
            &self.target.host,
            self.target.port,
            self.target.connect_timeout,
        )
        .await;
        let credential = self.cell.read().ok().map(|c| credential::for_core(&c));
        match credential {
            Some(Ok(credential)) => self.client.set_credential(credential),
            Some(Err(error)) => warn!("NATS: keeping the previous credential: {error:?}"),
            None => {}
        }
        self.client.reset_for_reconnect(now());
        match opened {
            Ok(stream) => self.stream = Some(Stream::Plain(stream)),
            Err(error) => self.lost(error),
        }
    }
}
