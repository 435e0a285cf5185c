//! The cluster member: drives the core's [`Startup`] machine on tokio — registration over
//! HTTP(S), the file-transfer server, NATS through async-nats, heartbeats, signals, drain and
//! deregistration. Every decision (when to retry, which credential, when to give up, what to
//! log) is the machine's; this module performs the effects and feeds back their results.
//!
//! Two entry points:
//! - [`run_worker`]: the supervisor worker, to its exit code;
//! - [`start_agent`]: the agent worker, which returns once the node is registered and its NATS
//!   subscriptions are confirmed, handing the embedding program the authenticated connection
//!   and the subscriptions to read ([`AgentWorker`]).

mod http;
mod nats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{Client, Subscriber};
use nodegate_core::config::{Config, Host};
use nodegate_core::startup::{
    Effect, HttpResult, Level, NatsConnectError, NatsServerInfo, Startup, StopReason, Subscription,
    Time,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{error, info, warn};

use crate::server::{Server, ServerConfig};
use nats::{CredentialCell, Report};

pub use nodegate_http::NatsRoots;

/// Time given to the file server and NATS to close at exit.
const CLOSE_GRACE: Duration = Duration::from_secs(6);

/// What the supervisor worker serves once it is approved.
pub struct WorkerSetup {
    /// The file server's configuration (its `readiness` is replaced by the member's).
    pub server: ServerConfig,
    /// The address to bind (`LOCALAI_HTTP_ADDR`, or the derived default).
    pub bind: String,
}

/// Runs a supervisor worker to its end and returns the process exit code (0 after a clean
/// stop; 1 after a refusal or a failure). Stops on SIGTERM or SIGINT (a second one exits at
/// once) and on `nodes.<id>.stop`.
pub async fn run_worker(config: Config, host: Host, setup: WorkerSetup) -> u8 {
    let models = Some(setup.server.roots.models.clone());
    Driver::new(config, host, Some(setup), models, None)
        .run()
        .await
}

/// A registered agent worker with a confirmed, authenticated NATS connection.
pub struct AgentWorker {
    client: Client,
    node_id: String,
    subscriptions: Vec<(Subscription, Subscriber)>,
    task: tokio::task::JoinHandle<u8>,
}

impl AgentWorker {
    /// The NATS connection, authenticated with the agent's credential.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The node id the frontend assigned.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The agent's subscriptions (confirmed by the server), to read messages from. Taken once.
    pub fn take_subscriptions(&mut self) -> Vec<(Subscription, Subscriber)> {
        std::mem::take(&mut self.subscriptions)
    }

    /// Waits until the member stops (signal, refresh failure) and returns its exit code.
    pub async fn wait(self) -> u8 {
        self.task.await.unwrap_or(1)
    }
}

/// Starts an agent worker: refuses, registers, connects and subscribes as the core decides.
///
/// # Errors
/// The exit code when the member stopped before it was ready (refusal, rejected token, wrong
/// NATS credentials, denied subscription, …); the reason has been logged.
pub async fn start_agent(config: Config, host: Host) -> Result<AgentWorker, u8> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let driver = Driver::new(config, host, None, None, Some(ready_tx));
    let task = tokio::spawn(driver.run());
    match ready_rx.await {
        Ok(parts) => Ok(AgentWorker {
            client: parts.client,
            node_id: parts.node_id,
            subscriptions: parts.subscriptions,
            task,
        }),
        Err(_) => Err(task.await.unwrap_or(1)),
    }
}

struct AgentParts {
    client: Client,
    node_id: String,
    subscriptions: Vec<(Subscription, Subscriber)>,
}

/// Results of effects, coming back to the loop.
enum Input {
    Register(HttpResult),
    Heartbeat(HttpResult),
    Drain(HttpResult),
    InFlight(HttpResult),
    Deregister(HttpResult),
    Connected(Result<(NatsServerInfo, Client), NatsConnectError>),
    Subscribed(Result<Vec<(Subscription, Subscriber)>, String>),
}

/// What `/readyz` says.
const PHASE_STARTING: u8 = 0;
const PHASE_READY: u8 = 1;
const PHASE_NATS_DOWN: u8 = 2;
const PHASE_STOPPING: u8 = 3;

struct Driver {
    machine: Startup,
    config: Config,
    frontend: Option<http::FrontendClient>,
    inputs: (mpsc::UnboundedSender<Input>, mpsc::UnboundedReceiver<Input>),
    reports: (
        mpsc::UnboundedSender<Report>,
        mpsc::UnboundedReceiver<Report>,
    ),
    errors: broadcast::Sender<String>,
    cell: Option<CredentialCell>,
    client: Option<Client>,
    phase: Arc<AtomicU8>,
    stopping: bool,
    worker: Option<WorkerSetup>,
    server: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    roots: Option<Arc<NatsRoots>>,
    models: Option<PathBuf>,
    agent: Option<oneshot::Sender<AgentParts>>,
}

fn now() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Driver {
    fn new(
        config: Config,
        host: Host,
        worker: Option<WorkerSetup>,
        models: Option<PathBuf>,
        agent: Option<oneshot::Sender<AgentParts>>,
    ) -> Self {
        let frontend = config.registration.register_to.as_ref().and_then(|_| {
            let token = config.registration.token.as_ref().map(|t| t.expose());
            match http::FrontendClient::new(token) {
                Ok(client) => Some(client),
                Err(e) => {
                    error!("cannot build the HTTP client of the frontend: {e}");
                    None
                }
            }
        });
        let mut machine = Startup::new(config.clone(), host, now());
        machine.handle_facts(nodegate_store::machine::measure(models.as_deref()));
        Self {
            machine,
            config,
            frontend,
            inputs: mpsc::unbounded_channel(),
            reports: mpsc::unbounded_channel(),
            errors: broadcast::channel(64).0,
            cell: None,
            client: None,
            phase: Arc::new(AtomicU8::new(PHASE_STARTING)),
            stopping: false,
            worker,
            server: None,
            roots: None,
            models,
            agent,
        }
    }

    async fn run(mut self) -> u8 {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        loop {
            let sleep = match self.machine.poll_output() {
                Effect::SleepUntil(at) => Some(at.saturating_sub(now())),
                Effect::Wait => None,
                Effect::Exit { code, .. } => return self.finish(code).await,
                effect => {
                    self.perform(effect).await;
                    continue;
                }
            };
            let timer = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600)));
            tokio::select! {
                Some(input) = self.inputs.1.recv() => self.feed(input),
                Some(report) = self.reports.1.recv() => self.report(report),
                Some(()) = recv(&mut term) => self.stop_signal("SIGTERM"),
                Some(()) = recv(&mut int) => self.stop_signal("SIGINT"),
                () = timer, if sleep.is_some() => {
                    self.machine.handle_facts(nodegate_store::machine::measure(self.models.as_deref()));
                    self.machine.handle_timeout(now());
                }
            }
        }
    }

    fn stop_signal(&mut self, name: &str) {
        info!("{name} received: shutting down");
        self.stopping = true;
        self.machine.handle_stop(now(), StopReason::Signal);
    }

    fn feed(&mut self, input: Input) {
        let t = now();
        match input {
            Input::Register(result) => self.machine.handle_register(t, result),
            Input::Heartbeat(result) => self.machine.handle_heartbeat(t, result),
            Input::Drain(result) => self.machine.handle_drain(t, result),
            Input::InFlight(result) => self.machine.handle_in_flight(t, result),
            Input::Deregister(result) => self.machine.handle_deregister(t, result),
            Input::Connected(Ok((info, client))) => {
                self.client = Some(client);
                self.machine.handle_nats_connected(t, Ok(info));
            }
            Input::Connected(Err(error)) => self.machine.handle_nats_connected(t, Err(error)),
            Input::Subscribed(Ok(subscriptions)) => {
                if let (Some(client), Some(node_id)) = (&self.client, self.machine.node_id()) {
                    match self.agent.take() {
                        Some(ready) => {
                            let _ = ready.send(AgentParts {
                                client: client.clone(),
                                node_id: node_id.to_owned(),
                                subscriptions,
                            });
                        }
                        None => nats::serve_worker(
                            client,
                            subscriptions,
                            self.roots.clone(),
                            self.reports.0.clone(),
                        ),
                    }
                }
                self.machine.handle_subscribed(t, Ok(()));
            }
            Input::Subscribed(Err(error)) => self.machine.handle_subscribed(t, Err(error)),
        }
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::Event(event) => self.machine.handle_nats_event(now(), event),
            Report::Stop(reason) => {
                self.stopping = true;
                self.machine.handle_stop(now(), reason);
            }
        }
    }

    async fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::Log { level, message } => match level {
                Level::Info => info!("{message}"),
                Level::Warn => warn!("{message}"),
                Level::Error => error!("{message}"),
            },
            Effect::Register { url, body } => {
                self.http(url, Some(body.to_json()), false, Input::Register);
            }
            Effect::Heartbeat { url, body } => {
                self.http(url, Some(body.to_json()), false, Input::Heartbeat);
            }
            Effect::Drain { url } => self.http(url, None, false, Input::Drain),
            Effect::PollInFlight { url } => self.http(url, None, true, Input::InFlight),
            Effect::Deregister { url } => self.http(url, None, false, Input::Deregister),
            Effect::StartFileServer => {
                let result = self.start_file_server().await;
                self.machine.handle_file_server(now(), result);
            }
            Effect::ConnectNats { credential } => {
                let Some(url) = self.config.nats.url.clone() else {
                    return;
                };
                let cell: CredentialCell = Arc::new(std::sync::RwLock::new(credential));
                self.cell = Some(cell.clone());
                let tls = self.config.nats.tls.clone();
                let (inputs, reports, errors) = (
                    self.inputs.0.clone(),
                    self.reports.0.clone(),
                    self.errors.clone(),
                );
                tokio::spawn(async move {
                    let result = nats::connect(&url, &tls, cell, reports, errors).await;
                    let _ = inputs.send(Input::Connected(result));
                });
            }
            Effect::UpdateNatsCredential { credential } => {
                if let Some(cell) = &self.cell
                    && let Ok(mut slot) = cell.write()
                {
                    *slot = credential;
                }
            }
            Effect::Subscribe { subscriptions } => {
                let Some(client) = self.client.clone() else {
                    return self
                        .machine
                        .handle_subscribed(now(), Err("not connected".into()));
                };
                let (inputs, errors) = (self.inputs.0.clone(), self.errors.clone());
                tokio::spawn(async move {
                    let result = nats::subscribe_all(&client, &subscriptions, &errors).await;
                    let _ = inputs.send(Input::Subscribed(result));
                });
            }
            Effect::SetReady(ready) => {
                let phase = if ready {
                    PHASE_READY
                } else if self.stopping {
                    PHASE_STOPPING
                } else if self.client.is_some() {
                    PHASE_NATS_DOWN
                } else {
                    PHASE_STARTING
                };
                self.phase.store(phase, Ordering::SeqCst);
            }
            Effect::Exit { .. } | Effect::SleepUntil(_) | Effect::Wait => {}
        }
    }

    fn http(&self, url: String, body: Option<Vec<u8>>, get: bool, wrap: fn(HttpResult) -> Input) {
        let Some(client) = self.frontend.clone() else {
            let _ = self.inputs.0.send(wrap(HttpResult::Failed(
                "no HTTP client for the frontend".into(),
            )));
            return;
        };
        let inputs = self.inputs.0.clone();
        tokio::spawn(async move {
            let result = if get {
                client.get(&url).await
            } else {
                client.post(&url, body).await
            };
            let _ = inputs.send(wrap(result));
        });
    }

    async fn start_file_server(&mut self) -> Result<(), String> {
        let Some(setup) = self.worker.take() else {
            return Err("no file server configured".into());
        };
        let bind = setup.bind;
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .map_err(|e| format!("listen {bind}: {e}"))?;
        let mut server_config = setup.server;
        let phase = self.phase.clone();
        server_config.readiness = Some(Arc::new(move || match phase.load(Ordering::SeqCst) {
            PHASE_READY => Ok(()),
            PHASE_NATS_DOWN => Err("NATS connection is down: worker cannot receive work".into()),
            PHASE_STOPPING => Err("shutting down".into()),
            _ => Err("starting: not yet subscribed to NATS".into()),
        }));
        let roots = server_config.roots.clone();
        let server = Server::new(server_config, listener).map_err(|e| e.to_string())?;
        let addr = server
            .local_addr()
            .map_or_else(|_| bind.clone(), |a| a.to_string());
        self.roots = NatsRoots::open(&roots).ok();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stop_rx.await;
        }));
        self.server = Some((stop_tx, task));
        info!(
            addr,
            models = %roots.models.display(),
            staging = %roots.staging.display(),
            data = %roots.data.display(),
            "HTTP file transfer server started"
        );
        Ok(())
    }

    async fn finish(mut self, code: u8) -> u8 {
        self.phase.store(PHASE_STOPPING, Ordering::SeqCst);
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            if tokio::time::timeout(CLOSE_GRACE, task).await.is_err() {
                warn!("the file server did not stop in time");
            }
        }
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
        }
        code
    }
}

/// The error chain of a failed HTTP client request, without the URL (shared with the staging
/// client).
pub(crate) use http::describe as describe_client_error;

/// Connects to NATS once (shared with the frontend).
pub(crate) use nats::connect as nats_connect;

/// Logs a report of a connection the frontend holds.
pub(crate) fn log_report(report: &Report) {
    match report {
        Report::Event(event) => info!("NATS: {event:?}"),
        Report::Stop(_) => {}
    }
}

/// Waits for a signal, or forever when it could not be installed.
pub(crate) async fn recv_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    recv(signal).await
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}
