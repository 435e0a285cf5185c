//! The supervisor worker as a member of a cluster (issue 9), end to end: the real `worker`
//! example binary, a real `nats-server` per test (operator mode with a memory resolver unless
//! said otherwise) and the frontend double minting per-node JWTs with the operator's account,
//! all on loopback.
//!
//! Covered: registration with the token in header and body, the minted JWT, `/readyz`, the node
//! subjects `files.listdir` / `files.temp` / `stop` (spec §5.6), heartbeats (§4.5), drain on
//! SIGTERM (§4.6), a wrong registration token (401), approval after pending rounds with no NATS
//! connection before it, a minted JWT of an unknown account, JWT refresh before expiry, another
//! node's subjects denied (NA-12), a NATS server restarted with other credentials (NA-19), and
//! the umbrella row of the startup matrix. Every member's output is checked for every secret the
//! test configured (`common::cluster::Member` does it on drop).

// `per_runtime!` reads the file item by item.
#![recursion_limit = "512"]

mod common;

// Every test below runs once against each worker: `tokio::<test>` and `smol::<test>`.
crate::per_runtime! {

    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use common::cluster::{
        Bus, MemberCommand, MintLog, REG_TOKEN, Secrets, TcpCounter, custom_minter, recording_minter,
        subject_token,
    };
    use common::frontend::{Frontend, FrontendOptions, NodeStatus};
    use common::nats::{Auth, NatsServer, Operator, unix_now};
    use common::request_to;
    use nodegate::jwt::{self, NodeType, Permissions};
    use serde_json::{Value, json};

    /// How long a member may take to become ready.
    const READY: Duration = Duration::from_secs(20);
    /// The drain deadline of the issue (SIGTERM → exit 0 within 15 s).
    const DRAIN_EXIT: Duration = Duration::from_secs(15);

    /// An operator-mode `nats-server` and a frontend that mints per-node JWTs with its account.
    struct Cluster {
        secrets: Secrets,
        operator: Arc<Operator>,
        nats: NatsServer,
        frontend: Frontend,
        mints: MintLog,
    }

    impl Cluster {
        /// Minted JWTs live `ttl_secs`; `options` tweaks the frontend (its token and minter are set
        /// here).
        fn new(ttl_secs: u64, options: FrontendOptions) -> Self {
            let secrets = Secrets::new();
            let operator = Arc::new(Operator::new());
            secrets.add("NATS account seed", &operator.account_seed());
            let nats = NatsServer::start(&operator.auth());
            let (minter, mints) = recording_minter(&operator, ttl_secs, &secrets);
            let frontend = Frontend::start(FrontendOptions {
                token: REG_TOKEN.to_owned(),
                minter: Some(minter),
                ..options
            });
            Self {
                secrets,
                operator,
                nats,
                frontend,
                mints,
            }
        }

        /// A worker that registers with the token and connects with the minted JWT
        /// (`LOCALAI_NATS_REQUIRE_AUTH=true`).
        fn worker(&self, name: &str) -> MemberCommand {
            MemberCommand::worker(name, &self.secrets)
                .register_to(&self.frontend)
                .token()
                .nats(&self.nats)
                .nats_require_auth()
        }

        /// The frontend's id of `name` and its subject token.
        fn node(&self, name: &str) -> (String, String) {
            let node = self.frontend.node(name).expect("the node registered");
            let token = subject_token(&node.id);
            (node.id, token)
        }

        /// A test client allowed to publish on `nodes.<token>.>` and use inboxes (replies, round
        /// trips).
        fn requester(&self, node_token: &str) -> Bus {
            let permissions = Permissions {
                publish: vec![format!("nodes.{node_token}.>"), "_INBOX.>".to_owned()],
                subscribe: vec!["_INBOX.>".to_owned()],
            };
            let (jwt, seed) = self
                .operator
                .mint_user_with(permissions, Some(unix_now() + 600));
            Bus::connect_jwt(&self.nats.url(), &jwt, &seed)
        }
    }

    /// Paths of the drain sequence (drain, models poll, deregister) among `requests`, in order.
    fn drain_sequence(frontend: &Frontend, id: &str, since: Instant) -> Vec<String> {
        let node = format!("/api/node/{id}/");
        frontend
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with(&node) && !r.path.ends_with("/heartbeat"))
            .map(|r| {
                assert!(
                    r.at >= since,
                    "{} {} arrived before the stop was asked for",
                    r.method,
                    r.path
                );
                r.path.rsplit('/').next().unwrap_or_default().to_owned()
            })
            .collect()
    }

    /// Asserts that the stop made the frontend see drain → models (at least once) → deregister, and
    /// nothing after.
    fn assert_drained(frontend: &Frontend, name: &str, since: Instant) {
        let node = frontend.node(name).expect("registered");
        let sequence = drain_sequence(frontend, &node.id, since);
        assert!(
            sequence.len() >= 3
                && sequence[0] == "drain"
                && sequence[1..sequence.len() - 1]
                    .iter()
                    .all(|s| s == "models")
                && sequence.last().map(String::as_str) == Some("deregister"),
            "drain sequence seen by the frontend: {sequence:?}"
        );
        assert_eq!(node.status, NodeStatus::Offline);
    }

    /// Issue 9, test 1: register (token in header and body), minted JWT, ready, node subjects,
    /// heartbeats, SIGTERM → drain → models → deregister → exit 0 within 15 s.
    #[test]
    fn worker_joins_with_a_minted_jwt_serves_its_subjects_heartbeats_and_drains_on_sigterm() {
        let cluster = Cluster::new(3600, FrontendOptions::default());
        let name = "gpu-e2e-join";
        let mut worker = cluster.worker(name).spawn();
        worker.expect_ready(READY);

        // Registration: the token in the header AND the body; approved with minted credentials.
        let registers = cluster.frontend.requests_to("/api/node/register");
        assert_eq!(registers.len(), 1, "one registration");
        let register = &registers[0];
        assert_eq!(register.bearer(), Some(REG_TOKEN));
        let body = register.json().expect("a JSON registration body");
        assert_eq!(body["token"], REG_TOKEN);
        assert_eq!(body["name"], name);
        assert_eq!(register.status, Some(201));
        let answer = register.response_json().expect("JSON answer");
        assert_eq!(answer["status"], "healthy");
        assert!(answer["nats_jwt"].is_string() && answer["nats_user_seed"].is_string());
        let (id, tok) = cluster.node(name);
        let minted = cluster.mints.all();
        assert_eq!(minted.len(), 1);
        assert_eq!(
            (minted[0].node_id.as_str(), minted[0].node_type.as_str()),
            (id.as_str(), "backend")
        );
        worker.expect_log(
            "NATS bus: protected (connected with the user JWT minted by the frontend",
            Duration::from_secs(1),
        );
        assert!(worker.warn_lines().is_empty(), "{:?}", worker.warn_lines());

        // A file PUT over HTTP is listed over NATS; an escaping prefix is refused.
        let put = request_to(
            worker.http_addr(),
            "PUT",
            "/v1/files/models/e2e-weights.bin",
            Some(REG_TOKEN),
            &[],
            b"weights",
        );
        assert!(
            matches!(put.status, 200 | 201),
            "PUT: {} {}",
            put.status,
            put.text()
        );
        let bus = cluster.requester(&tok);
        let listing = bus.request_json(
            &format!("nodes.{tok}.files.listdir"),
            &json!({ "key_prefix": "models/" }),
        );
        let files = listing["files"]
            .as_array()
            .unwrap_or_else(|| panic!("{listing}"));
        assert!(
            files.iter().any(|f| f == "e2e-weights.bin"),
            "listing: {listing}"
        );
        let refused = bus.request_json(
            &format!("nodes.{tok}.files.listdir"),
            &json!({ "key_prefix": "../../etc" }),
        );
        assert_eq!(refused, json!({ "error": "invalid key prefix" }));

        // A temp file under staging that exists.
        let temp = bus.request_json(&format!("nodes.{tok}.files.temp"), &json!({}));
        let local = std::path::PathBuf::from(
            temp["local_path"]
                .as_str()
                .unwrap_or_else(|| panic!("{temp}")),
        );
        let staging = worker.dir().join("root/staging");
        assert!(
            local.starts_with(&staging),
            "{} not under {}",
            local.display(),
            staging.display()
        );
        assert!(local.is_file(), "{} does not exist", local.display());

        // Heartbeats arrive, addressed to the node id.
        assert!(
            cluster.frontend.wait_for(
                |f| f.node(name).is_some_and(|n| n.heartbeats >= 2),
                Duration::from_secs(10)
            ),
            "heartbeats: {:?}",
            cluster.frontend.node(name).map(|n| n.heartbeats)
        );
        assert!(
            cluster
                .frontend
                .requests_to("/heartbeat")
                .iter()
                .all(|r| r.path == format!("/api/node/{id}/heartbeat") && r.bearer() == Some(REG_TOKEN))
        );

        // SIGTERM: drain → models → deregister → exit 0 within 15 s.
        let stop = Instant::now();
        worker.signal("TERM");
        let code = worker.expect_exit(DRAIN_EXIT);
        assert_eq!(code, 0, "{}", worker.output());
        assert!(stop.elapsed() < DRAIN_EXIT);
        assert_drained(&cluster.frontend, name, stop);
        worker.assert_no_secrets();
    }

    /// Issue 9, test 2: `nodes.<id>.stop` over NATS drains and exits 0.
    #[test]
    fn stop_published_on_nats_drains_and_exits_0() {
        let cluster = Cluster::new(3600, FrontendOptions::default());
        let name = "gpu-e2e-natsstop";
        let mut worker = cluster.worker(name).spawn();
        worker.expect_ready(READY);
        let (_, tok) = cluster.node(name);
        let bus = cluster.requester(&tok);
        let stop = Instant::now();
        bus.publish(&format!("nodes.{tok}.stop"), b"{}");
        let code = worker.expect_exit(DRAIN_EXIT);
        assert_eq!(code, 0, "{}", worker.output());
        assert!(worker.output().contains("stop requested over NATS"));
        assert_drained(&cluster.frontend, name, stop);
        worker.assert_no_secrets();
    }

    /// Issue 9, test 3: a frontend that answers 401 (wrong token) → non-zero exit within a minute,
    /// naming `LOCALAI_REGISTRATION_TOKEN`; the file server never listened.
    #[test]
    fn wrong_registration_token_exits_non_zero_naming_the_variable() {
        let secrets = Secrets::new();
        let frontend_token = "frontend-Only_token.9~zz";
        secrets.add("frontend token", frontend_token);
        let frontend = Frontend::start(FrontendOptions {
            token: frontend_token.to_owned(),
            ..FrontendOptions::default()
        });
        let mut worker = MemberCommand::worker("gpu-e2e-401", &secrets)
            .register_to(&frontend)
            .token()
            .spawn();
        let start = Instant::now();
        while worker.exited().is_none() && start.elapsed() < Duration::from_secs(60) {
            let ports = worker.listening_ports();
            assert!(ports.is_empty(), "listening on {ports:?} before approval");
            std::thread::sleep(Duration::from_millis(100));
        }
        let code = worker.expect_exit(Duration::from_secs(1));
        let output = worker.output();
        assert_ne!(code, 0, "{output}");
        assert!(start.elapsed() < Duration::from_secs(60));
        assert!(output.contains("LOCALAI_REGISTRATION_TOKEN"), "{output}");
        let registers = frontend.requests_to("/api/node/register");
        assert!(!registers.is_empty());
        assert!(registers.iter().all(|r| r.status == Some(401)));
        assert!(
            frontend
                .requests()
                .iter()
                .all(|r| r.path == "/api/node/register"),
            "only registration was tried"
        );
        worker.assert_no_secrets();
    }

    /// Issue 9, test 4: pending ×3, then approved: while pending the file server port is closed and
    /// no NATS connection is opened (counted by a forwarder in front of the server); re-registration
    /// backs off 2 s, 4 s, 8 s; after approval the worker is ready.
    #[test]
    fn pending_three_rounds_then_approved_opens_nothing_before_approval() {
        let cluster = Cluster::new(
            3600,
            FrontendOptions {
                auto_approve: false,
                pending_rounds: 3,
                ..FrontendOptions::default()
            },
        );
        let counter = TcpCounter::start(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            cluster.nats.port(),
        )));
        let name = "gpu-e2e-pending";
        let mut worker = cluster
            .worker(name)
            .env("LOCALAI_NATS_URL", counter.nats_url())
            .spawn();
        let healthy = |f: &Frontend| {
            f.requests_to("/api/node/register")
                .iter()
                .any(|r| r.response_json().is_some_and(|j| j["status"] == "healthy"))
        };
        let start = Instant::now();
        let mut checks = 0;
        loop {
            let bound = worker.listening_ports();
            let connections = counter.accepted();
            let log = worker.output();
            if healthy(&cluster.frontend) {
                break;
            }
            // Observed before the approving answer was recorded (it is recorded before it is sent).
            assert!(
                bound.is_empty(),
                "listening on {bound:?} while pending:\n{log}"
            );
            assert_eq!(connections, 0, "NATS connection opened while pending");
            assert!(!log.contains("connecting to NATS") && !log.contains("NATS bus: protected ("));
            assert!(worker.exited().is_none(), "{log}");
            assert!(start.elapsed() < Duration::from_secs(30), "never approved");
            checks += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        // Three pending rounds with 2 s + 4 s + 8 s of backoff: ~14 s observed while pending.
        let pending = start.elapsed();
        assert!(
            // A handful of checks is enough: each one looks at the process's sockets, the NATS
            // counter and the log, and a loaded machine makes each slow.
            pending >= Duration::from_secs(12) && checks >= 3,
            "pending observed for {pending:?} with {checks} checks"
        );
        worker.expect_ready(READY);
        assert!(counter.accepted() >= 1, "connected to NATS after approval");
        // The probe used above does see the port once the worker listens.
        assert_eq!(worker.listening_ports(), [worker.http_addr().port()]);

        let registers = cluster.frontend.requests_to("/api/node/register");
        let statuses: Vec<Value> = registers
            .iter()
            .map(|r| r.response_json().expect("JSON")["status"].clone())
            .collect();
        assert_eq!(statuses, ["pending", "pending", "pending", "healthy"]);
        let gaps: Vec<f64> = registers
            .windows(2)
            .map(|w| (w[1].at - w[0].at).as_secs_f64())
            .collect();
        for (gap, expected) in gaps.iter().zip([2.0, 4.0, 8.0]) {
            assert!(
                (gap - expected).abs() < 1.0,
                "re-registration gaps {gaps:?}, expected 2 s, 4 s, 8 s"
            );
        }
        let node = cluster.frontend.node(name).expect("node");
        assert_eq!(
            node.credentials_minted, 1,
            "credentials minted only once approved"
        );
        assert_eq!(worker.output().matches("pending admin approval").count(), 3);
        worker.assert_no_secrets();
    }

    /// Issue 9, test 5: a minted JWT of an account the server does not know → never ready, exits
    /// non-zero naming the variable to fix.
    #[test]
    fn minted_jwt_of_an_unknown_account_never_gets_ready() {
        let secrets = Secrets::new();
        let operator = Arc::new(Operator::new());
        let nats = NatsServer::start(&operator.auth());
        let stranger = nkeys::KeyPair::new_account();
        secrets.add("unknown account seed", &stranger.seed().expect("seed"));
        let mint_operator = Arc::clone(&operator);
        let minter = custom_minter(&secrets, move |id, _| {
            mint_operator.mint_user_signed_by(
                &stranger,
                jwt::worker_permissions(NodeType::Backend, id),
                Some(unix_now() + 3600),
            )
        });
        let frontend = Frontend::start(FrontendOptions {
            token: REG_TOKEN.to_owned(),
            minter: Some(minter),
            ..FrontendOptions::default()
        });
        let mut worker = MemberCommand::worker("gpu-e2e-stranger", &secrets)
            .register_to(&frontend)
            .token()
            .nats(&nats)
            .nats_require_auth()
            .spawn();
        let start = Instant::now();
        while worker.exited().is_none() && start.elapsed() < Duration::from_secs(30) {
            assert_ne!(
                worker.probe("/readyz"),
                Some(200),
                "ready with a rejected JWT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let code = worker.expect_exit(Duration::from_secs(1));
        let output = worker.output();
        assert_ne!(code, 0, "{output}");
        assert!(
            output.contains("authorization violation") && output.contains("LOCALAI_NATS_ACCOUNT_SEED"),
            "{output}"
        );
        assert_eq!(
            frontend
                .node("gpu-e2e-stranger")
                .map(|n| n.credentials_minted),
            Some(1)
        );
        worker.assert_no_secrets();
    }

    /// Issue 9, test 8: a minted JWT with a short lifetime is refreshed by re-registering at ~75 %
    /// of it, and the worker stays ready across the first JWT's expiry: the server disconnects the
    /// expired user and the driver reconnects with the refreshed credential.
    #[test]
    fn minted_jwt_is_refreshed_before_expiry_and_the_worker_stays_ready() {
        const TTL: u64 = 8;
        let cluster = Cluster::new(TTL, FrontendOptions::default());
        let name = "gpu-e2e-refresh";
        let mut worker = cluster.worker(name).spawn();
        worker.expect_ready(READY);
        let first = cluster.mints.last().expect("minted at registration");
        let exp = first.exp.expect("the minted JWT has an expiry");
        let lifetime = (exp - first.minted_at) as f64;

        assert!(
            cluster
                .frontend
                .wait_for(|_| cluster.mints.all().len() >= 2, Duration::from_secs(TTL)),
            "no re-registration before the JWT expired; output:\n{}",
            worker.output()
        );
        let second = cluster.mints.all()[1].clone();
        let after = (second.at - first.at).as_secs_f64();
        assert!(
            (0.6 * lifetime..0.9 * lifetime).contains(&after),
            "refresh {after:.2} s after minting a {lifetime} s JWT (expected ~75 %)"
        );
        assert!(unix_now() < exp, "refreshed before expiry");
        let registers = cluster.frontend.requests_to("/api/node/register");
        assert_eq!(registers.len(), 2);
        assert_eq!(registers[1].bearer(), Some(REG_TOKEN));
        assert_eq!(registers[1].json().expect("JSON")["token"], REG_TOKEN);
        worker.expect_log("NATS credentials refreshed", Duration::from_secs(2));

        // Across the first JWT's expiry (and two seconds more), readiness holds (a reconnect may
        // show as a brief 503) and the worker does not exit.
        let mut not_ready = Duration::ZERO;
        while unix_now() <= exp + 2 {
            let t = Instant::now();
            if worker.probe("/readyz") != Some(200) {
                not_ready += Duration::from_millis(50);
            }
            assert!(worker.exited().is_none(), "{}", worker.output());
            std::thread::sleep(Duration::from_millis(50).saturating_sub(t.elapsed()));
        }
        assert!(
            not_ready < Duration::from_secs(2),
            "not ready for ~{not_ready:?} around the expiry; output:\n{}",
            worker.output()
        );
        worker.expect_ready(Duration::from_secs(5));
        // The node subjects still answer on the connection made with the refreshed JWT.
        let (_, tok) = cluster.node(name);
        let listing = cluster.requester(&tok).request_json(
            &format!("nodes.{tok}.files.listdir"),
            &json!({ "key_prefix": "models/" }),
        );
        assert!(
            listing.is_object() && listing.get("error").is_none(),
            "{listing}"
        );
        // The server did close the expired user's connection, and the driver came back with the
        // refreshed JWT (its auth callback reads the replaced credential) — not with an error.
        let output = worker.output();
        let closed = output
            .find("closed the connection made with the previous JWT")
            .unwrap_or_else(|| panic!("the expiry disconnect was not seen:\n{output}"));
        assert!(output[closed..].contains("NATS reconnected"), "{output}");
        assert!(
            !worker.output().contains("rejected this node's credentials"),
            "{}",
            worker.output()
        );
        worker.assert_no_secrets();
    }

    /// Issue 9, test 9 (NA-12): with the JWT the frontend minted for the worker, a client cannot
    /// subscribe to another node's subjects nor publish on them; its own subjects work.
    #[test]
    fn the_minted_jwt_denies_another_nodes_subjects() {
        let cluster = Cluster::new(3600, FrontendOptions::default());
        let name = "gpu-e2e-na12";
        let mut worker = cluster.worker(name).spawn();
        worker.expect_ready(READY);
        let (_, tok) = cluster.node(name);
        let minted = cluster.mints.last().expect("minted");
        let bus = Bus::connect_jwt(&cluster.nats.url(), &minted.jwt, &minted.seed);

        // Its own subjects: allowed (the worker answers).
        let own = bus.request_json(
            &format!("nodes.{tok}.files.listdir"),
            &json!({ "key_prefix": "models/" }),
        );
        assert!(own.get("error").is_none(), "{own}");
        assert!(bus.errors().is_empty(), "{:?}", bus.errors());

        let _denied = bus.subscribe("nodes.other-node.>");
        let sub = bus.wait_error(
            "Permissions Violation for Subscription to \"nodes.other-node.>\"",
            Duration::from_secs(3),
        );
        assert!(sub.is_some(), "errors: {:?}", bus.errors());
        bus.publish("nodes.other-node.files.x", b"{}");
        let publish = bus.wait_error(
            "Permissions Violation for Publish to \"nodes.other-node.files.x\"",
            Duration::from_secs(3),
        );
        assert!(publish.is_some(), "errors: {:?}", bus.errors());
        worker.assert_no_secrets();
    }

    /// Issue 9, test 10 (NA-19): the NATS server restarts with other credentials: `/readyz` turns
    /// 503 while the worker cannot reconnect (heartbeats are skipped), `/healthz` stays 200; back to
    /// the old credentials, it is ready again.
    #[test]
    fn nats_restart_with_other_credentials_makes_readyz_503_and_healthz_stays_200() {
        let secrets = Secrets::new();
        let (old, new) = ("nats-Old_token.e2e~1111", "nats-New_token.e2e~2222");
        secrets.add("new NATS token", new);
        let mut nats = NatsServer::start(&Auth::Token(old.to_owned()));
        let frontend = Frontend::start(FrontendOptions {
            token: REG_TOKEN.to_owned(),
            ..FrontendOptions::default()
        });
        let name = "gpu-e2e-na19";
        let mut worker = MemberCommand::worker(name, &secrets)
            .register_to(&frontend)
            .token()
            .nats(&nats)
            .nats_require_auth()
            .secret("LOCALAI_NATS_TOKEN", old)
            .spawn();
        worker.expect_ready(READY);

        nats.restart_with(&Auth::Token(new.to_owned()));
        assert!(
            worker.wait_status("/readyz", 503, Duration::from_secs(10)),
            "readyz did not turn 503; output:\n{}",
            worker.output()
        );
        assert_eq!(worker.probe("/healthz"), Some(200));
        worker.expect_log("NATS disconnected", Duration::from_secs(1));
        // It stays not ready (the new server rejects the old token), alive, and skips heartbeats.
        std::thread::sleep(Duration::from_millis(1500));
        let heartbeats = frontend.node(name).expect("node").heartbeats;
        for _ in 0..25 {
            assert_eq!(worker.probe("/readyz"), Some(503));
            assert_eq!(worker.probe("/healthz"), Some(200));
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(worker.exited().is_none(), "{}", worker.output());
        assert_eq!(
            frontend.node(name).expect("node").heartbeats,
            heartbeats,
            "heartbeats sent while NATS was down"
        );
        worker.expect_log(
            "skipping heartbeat: NATS disconnected",
            Duration::from_secs(1),
        );

        nats.restart_with(&Auth::Token(old.to_owned()));
        assert!(
            worker.wait_status("/readyz", 200, Duration::from_secs(15)),
            "not ready again after the old credentials came back; output:\n{}",
            worker.output()
        );
        assert!(
            frontend.wait_for(
                |f| f.node(name).is_some_and(|n| n.heartbeats > heartbeats),
                Duration::from_secs(5)
            ),
            "heartbeats did not resume"
        );
        worker.assert_no_secrets();
    }

    /// NA-20, pinned: a NATS server unreachable at start (with NATS auth required) is retried with
    /// backoff — the file server is live (`/healthz` 200), `/readyz` says 503 — and the worker becomes
    /// ready once the server is up; it neither exits nor connects anonymously.
    #[test]
    fn nats_unreachable_at_start_is_retried_until_the_server_is_up() {
        let secrets = Secrets::new();
        let token = "nats-Late_token.e2e~3333";
        let mut nats = NatsServer::start(&Auth::Token(token.to_owned()));
        nats.stop();
        let frontend = Frontend::start(FrontendOptions {
            token: REG_TOKEN.to_owned(),
            ..FrontendOptions::default()
        });
        let mut worker = MemberCommand::worker("gpu-e2e-na20", &secrets)
            .register_to(&frontend)
            .token()
            .nats(&nats)
            .nats_require_auth()
            .secret("LOCALAI_NATS_TOKEN", token)
            .spawn();
        worker.expect_log("connecting to NATS failed", READY);
        assert!(worker.wait_status("/healthz", 200, Duration::from_secs(5)));
        assert_eq!(worker.probe("/readyz"), Some(503));
        worker.expect_log("retrying in 2s", Duration::from_secs(1));
        std::thread::sleep(Duration::from_secs(3));
        assert!(worker.exited().is_none(), "{}", worker.output());
        assert_eq!(worker.probe("/readyz"), Some(503));

        nats.restart_with(&Auth::Token(token.to_owned()));
        worker.expect_ready(READY);
        worker.expect_log(
            "NATS bus: protected (connected with the credential in LOCALAI_NATS_TOKEN;",
            Duration::from_secs(1),
        );
        worker.assert_no_secrets();
    }

    /// Issue 9, test 12: the startup matrix of the worker as a cluster member under the umbrella
    /// switch: token + frontend minting → protected (no warning, ready); without the token → refused
    /// before anything is bound, registered or created.
    #[test]
    fn umbrella_cluster_member_is_protected_with_token_and_refused_without() {
        let cluster = Cluster::new(3600, FrontendOptions::default());
        let mut protected = cluster.worker("gpu-e2e-umbrella").umbrella().spawn();

        let refused_cmd = MemberCommand::worker("gpu-e2e-umbrella-notoken", &cluster.secrets)
            .register_to(&cluster.frontend)
            .nats(&cluster.nats)
            .umbrella();
        let models = refused_cmd.models_dir();
        let mut refused = refused_cmd.spawn();
        let start = Instant::now();
        while refused.exited().is_none() && start.elapsed() < Duration::from_secs(10) {
            let ports = refused.listening_ports();
            assert!(ports.is_empty(), "a refused worker listens on {ports:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(refused.expect_exit(Duration::from_secs(1)), 1);
        let output = refused.output();
        assert!(
            output.contains("refusing to start")
                && output.contains("LOCALAI_REGISTRATION_TOKEN")
                && output.contains("LOCALAI_DISTRIBUTED_REQUIRE_AUTH"),
            "{output}"
        );
        assert!(!models.exists(), "a refused worker created its roots");
        assert!(cluster.frontend.node("gpu-e2e-umbrella-notoken").is_none());

        protected.expect_ready(READY);
        let output = protected.output();
        assert!(protected.warn_lines().is_empty(), "{output}");
        assert!(
            output.contains("protected by LOCALAI_REGISTRATION_TOKEN"),
            "{output}"
        );
        assert!(
            output.contains("NATS bus: protected (connected with the user JWT minted by the frontend"),
            "{output}"
        );
        assert!(
            cluster
                .frontend
                .requests()
                .iter()
                .all(|r| r.bearer() == Some(REG_TOKEN)),
            "every request carried the token"
        );
        protected.assert_no_secrets();
        refused.assert_no_secrets();
    }
}
