//! The cluster member on smol: drives the core's [`Startup`] machine — registration over
//! HTTP(S), the file-transfer server (through [`FileService`]), NATS through the core's
//! protocol ([`crate::nats`]), heartbeats, signals, drain and deregistration. Every decision
//! (when to retry, which credential, when to give up, what to log) is the machine's; this
//! module performs the effects and feeds back their results, as `nodegate-tokio`'s member
//! does on tokio.
//!
//! Two entry points:
//! - [`run_worker`]: the supervisor worker, to its exit code;
//! - [`start_agent`]: the agent worker, which returns once the node is registered and its NATS
//!   subscriptions are confirmed, handing over the connection and the subscriptions.

mod files;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_signal::{Signal, Signals};
use futures_lite::StreamExt as _;
use futures_lite::future::or;
use nodegate_core::config::{Config, Host};
use nodegate_core::keys::Roots;
use nodegate_core::node_files;
use nodegate_core::startup::{
    Effect, Handler, HttpResult, Level, NatsConnectError, NatsEvent, NatsServerInfo, Startup,
    StopReason, Subscription, Time,
};
use smol::channel::{Receiver, Sender, unbounded};
use tracing::{error, info, warn};

pub use files::{FileService, NodeFiles, Readiness, Serving};

use crate::nats::{self, Client, CredentialCell, NatsOptions, Subscriber};
use crate::register::FrontendClient;
use crate::rt;

/// Time given to the file server and NATS to close at exit.
const CLOSE_GRACE: Duration = Duration::from_secs(6);

/// What the supervisor worker serves once it is approved.
pub struct WorkerSetup {
    /// The file server to start.
    pub service: Box<dyn FileService>,
    /// The address to bind (`LOCALAI_HTTP_ADDR`, or the derived default).
    pub bind: String,
    /// The roots it serves (for the log and the disk figures).
    pub roots: Roots,
}

/// Runs a supervisor worker to its end and returns the process exit code (0 after a clean
/// stop; 1 after a refusal or a failure). Stops on SIGTERM or SIGINT (a second one exits at
/// once) and on `nodes.<id>.stop`.
pub async fn run_worker(config: Config, host: Host, setup: WorkerSetup) -> u8 {
    let models = Some(setup.roots.models.clone());
    Driver::new(config, host, Some(setup), models, None)
        .run()
        .await
}

/// A registered agent worker with a confirmed, authenticated NATS connection.
pub struct AgentWorker {
    client: Client,
    node_id: String,
    subscriptions: Vec<(Subscription, Subscriber)>,
    task: rt::Task<u8>,
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
        self.task.await
    }
}

/// Starts an agent worker: refuses, registers, connects and subscribes as the core decides.
///
/// # Errors
/// The exit code when the member stopped before it was ready (refusal, rejected token, wrong
/// NATS credentials, denied subscription, …); the reason has been logged.
pub async fn start_agent(config: Config, host: Host) -> Result<AgentWorker, u8> {
    let (ready_tx, ready_rx) = smol::channel::bounded(1);
    let driver = Driver::new(config, host, None, None, Some(ready_tx));
    let task = rt::spawn(driver.run());
    match ready_rx.recv().await {
        Ok(parts) => Ok(AgentWorker {
            client: parts.client,
            node_id: parts.node_id,
            subscriptions: parts.subscriptions,
            task,
        }),
        Err(_) => Err(task.await),
    }
}

struct AgentParts {
    client: Client,
    node_id: String,
    subscriptions: Vec<(Subscription, Subscriber)>,
}

/// Results of effects and reports of the live parts, coming back to the loop.
enum Input {
    Register(HttpResult),
    Heartbeat(HttpResult),
    Drain(HttpResult),
    InFlight(HttpResult),
    Deregister(HttpResult),
    Connected(Result<(NatsServerInfo, Client), NatsConnectError>),
    Subscribed(Result<Vec<(Subscription, Subscriber)>, String>),
    Nats(NatsEvent),
    Stop(StopReason),
}

/// What wakes the loop.
enum Wake {
    Input(Input),
    Signal(&'static str),
    Timer,
}

/// What `/readyz` says.
const PHASE_STARTING: u8 = 0;
const PHASE_READY: u8 = 1;
const PHASE_NATS_DOWN: u8 = 2;
const PHASE_STOPPING: u8 = 3;

struct Driver {
    machine: Startup,
    config: Config,
    frontend: Option<FrontendClient>,
    inputs: (Sender<Input>, Receiver<Input>),
    cell: Option<CredentialCell>,
    client: Option<Client>,
    phase: Arc<AtomicU8>,
    stopping: bool,
    worker: Option<WorkerSetup>,
    server: Option<Serving>,
    files: Option<Arc<dyn NodeFiles>>,
    models: Option<PathBuf>,
    agent: Option<Sender<AgentParts>>,
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
        agent: Option<Sender<AgentParts>>,
    ) -> Self {
        let frontend = config.registration.register_to.as_ref().and_then(|_| {
            let token = config.registration.token.as_ref().map(|t| t.expose());
            match FrontendClient::new(token) {
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
            inputs: unbounded(),
            cell: None,
            client: None,
            phase: Arc::new(AtomicU8::new(PHASE_STARTING)),
            stopping: false,
            worker,
            server: None,
            files: None,
            models,
            agent,
        }
    }

    async fn run(mut self) -> u8 {
        let mut signals = match Signals::new([Signal::Term, Signal::Int]) {
            Ok(signals) => Some(signals),
            Err(e) => {
                warn!("cannot listen for SIGTERM/SIGINT: {e}");
                None
            }
        };
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
            let inputs = self.inputs.1.clone();
            let input = async move {
                match inputs.recv().await {
                    Ok(input) => Wake::Input(input),
                    Err(_) => std::future::pending().await,
                }
            };
            let signal = async {
                match signals.as_mut() {
                    Some(signals) => match signals.next().await {
                        Some(Ok(Signal::Term)) => Wake::Signal("SIGTERM"),
                        Some(Ok(_)) => Wake::Signal("SIGINT"),
                        _ => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            let timer = async {
                match sleep {
                    Some(span) => rt::sleep(span).await,
                    None => std::future::pending().await,
                }
                Wake::Timer
            };
            match or(input, or(signal, timer)).await {
                Wake::Input(input) => self.feed(input),
                Wake::Signal(name) => {
                    info!("{name} received: shutting down");
                    self.stop(StopReason::Signal);
                }
                Wake::Timer => {
                    let models = self.models.clone();
                    let facts =
                        rt::unblock(move || nodegate_store::machine::measure(models.as_deref()))
                            .await;
                    self.machine.handle_facts(facts);
                    self.machine.handle_timeout(now());
                }
            }
        }
    }

    fn stop(&mut self, reason: StopReason) {
        self.stopping = true;
        self.machine.handle_stop(now(), reason);
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
                            let _ = ready.try_send(AgentParts {
                                client: client.clone(),
                                node_id: node_id.to_owned(),
                                subscriptions,
                            });
                        }
                        None => serve_worker(
                            client,
                            subscriptions,
                            self.files.clone(),
                            self.inputs.0.clone(),
                        ),
                    }
                }
                self.machine.handle_subscribed(t, Ok(()));
            }
            Input::Subscribed(Err(error)) => self.machine.handle_subscribed(t, Err(error)),
            Input::Nats(event) => self.machine.handle_nats_event(t, event),
            Input::Stop(reason) => self.stop(reason),
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
                let options = NatsOptions {
                    url,
                    tls: self.config.nats.tls.clone(),
                    name: self.machine.node_id().map(str::to_owned),
                };
                let inputs = self.inputs.0.clone();
                rt::spawn(async move {
                    let (events_tx, events_rx) = unbounded();
                    let result = nats::connect(&options, cell, events_tx).await;
                    let connected = result.is_ok();
                    let _ = inputs.send(Input::Connected(result)).await;
                    if connected {
                        while let Ok(event) = events_rx.recv().await {
                            if inputs.send(Input::Nats(event)).await.is_err() {
                                break;
                            }
                        }
                    }
                })
                .detach();
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
                let inputs = self.inputs.0.clone();
                rt::spawn(async move {
                    let result = nats::subscribe_all(&client, &subscriptions).await;
                    let _ = inputs.send(Input::Subscribed(result)).await;
                })
                .detach();
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
        let inputs = self.inputs.0.clone();
        let Some(client) = self.frontend.clone() else {
            let _ = inputs.try_send(wrap(HttpResult::Failed(
                "no HTTP client for the frontend".into(),
            )));
            return;
        };
        rt::spawn(async move {
            let result = if get {
                client.get(&url).await
            } else {
                client.post(&url, body).await
            };
            let _ = inputs.send(wrap(result)).await;
        })
        .detach();
    }

    async fn start_file_server(&mut self) -> Result<(), String> {
        let Some(setup) = self.worker.take() else {
            return Err("no file server configured".into());
        };
        let phase = self.phase.clone();
        let readiness: Readiness = Arc::new(move || match phase.load(Ordering::SeqCst) {
            PHASE_READY => Ok(()),
            PHASE_NATS_DOWN => Err("NATS connection is down: worker cannot receive work".into()),
            PHASE_STOPPING => Err("shutting down".into()),
            _ => Err("starting: not yet subscribed to NATS".into()),
        });
        let (service, bind, roots) = (setup.service, setup.bind, setup.roots);
        let serving = rt::unblock(move || service.start(&bind, readiness)).await?;
        self.files = Some(serving.files.clone());
        info!(
            addr = serving.addr,
            models = %roots.models.display(),
            staging = %roots.staging.display(),
            data = %roots.data.display(),
            "HTTP file transfer server started"
        );
        self.server = Some(serving);
        Ok(())
    }

    async fn finish(mut self, code: u8) -> u8 {
        self.phase.store(PHASE_STOPPING, Ordering::SeqCst);
        if let Some(serving) = self.server.take() {
            (serving.stop)();
            if rt::timeout(CLOSE_GRACE, serving.done).await.is_none() {
                warn!("the file server did not stop in time");
            }
        }
        if let Some(client) = self.client.take() {
            let _ = rt::timeout(Duration::from_secs(2), client.close()).await;
        }
        code
    }
}

/// Serves the worker's subscriptions until each subscription ends: `files.*` through the
/// core's rules on the blocking pool, `stop` back to the loop.
fn serve_worker(
    client: &Client,
    subscriptions: Vec<(Subscription, Subscriber)>,
    files: Option<Arc<dyn NodeFiles>>,
    inputs: Sender<Input>,
) {
    for (subscription, subscriber) in subscriptions {
        let client = client.clone();
        let files = files.clone();
        let inputs = inputs.clone();
        rt::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let reply = match (subscription.handler, &files) {
                    (Handler::NodeStop, _) => {
                        let _ = inputs.send(Input::Stop(StopReason::NatsStop)).await;
                        None
                    }
                    (Handler::FilesListDir, Some(files)) => {
                        let (files, payload) = (files.clone(), message.payload.clone());
                        Some(rt::unblock(move || files.listdir(&payload)).await)
                    }
                    (Handler::FilesTemp, Some(files)) => {
                        let files = files.clone();
                        Some(rt::unblock(move || files.temp()).await)
                    }
                    _ => Some(node_files::error_reply("not served by this node")),
                };
                if let (Some(reply), Some(to)) = (reply, &message.reply)
                    && let Err(error) = client.publish(to.as_str(), None, reply).await
                {
                    warn!("NATS reply failed: {error}");
                }
            }
        })
        .detach();
    }
}
