//! The worker's NATS credentials against real `nats-server`s in every mode (issue 9 tests 6 and
//! 7; security.md SC-10, NA-01…NA-07, NA-16, D11): the right credential → ready and reported
//! protected; a wrong one → a bounded failure (non-zero exit in < 30 s) naming the variable to
//! fix, never ready. TLS with a client certificate, and without it. A server that accepts
//! anonymous clients under NATS auth → reported (a warning), and refused under the umbrella
//! switch. Each test runs the right and the wrong worker side by side against one server, and
//! every output is checked for the secrets configured.

// `per_runtime!` reads the file item by item.
#![recursion_limit = "512"]

mod common;

// Every test below runs once against each worker: `tokio::<test>` and `smol::<test>`.
crate::per_runtime! {

    use std::time::{Duration, Instant};

    use common::cluster::{MemberCommand, REG_TOKEN, Secrets};
    use common::frontend::{Frontend, FrontendOptions};
    use common::nats::{Auth, NatsServer, Operator, Tls, unix_now, user_nkey};
    use nodegate::jwt::Permissions;

    /// How long a worker with the right credential may take to be ready.
    const READY: Duration = Duration::from_secs(20);
    /// The bound on a failure (issue 9: "exit non-zero in < 30 s").
    const BOUNDED: Duration = Duration::from_secs(30);

    /// One server mode, a frontend (no minting: the workers bring static credentials) and the
    /// secrets of the test.
    struct Bench {
        secrets: Secrets,
        nats: NatsServer,
        frontend: Frontend,
    }

    impl Bench {
        fn new(auth: &Auth, tls: Option<Tls>) -> Self {
            Self {
                secrets: Secrets::new(),
                nats: NatsServer::start_with(auth, tls),
                frontend: Frontend::start(FrontendOptions {
                    token: REG_TOKEN.to_owned(),
                    ..FrontendOptions::default()
                }),
            }
        }

        /// A worker that registers with the token and requires NATS auth.
        fn worker(&self, name: &str) -> MemberCommand {
            MemberCommand::worker(name, &self.secrets)
                .register_to(&self.frontend)
                .token()
                .nats(&self.nats)
                .nats_require_auth()
        }
    }

    /// The member with the right credential becomes ready, with the bus reported protected by
    /// `variable` and no warning.
    fn expect_protected(member: &mut common::cluster::Member, variable: &str) {
        member.expect_ready(READY);
        let line = format!("NATS bus: protected (connected with the credential in {variable};");
        member.expect_log(&line, Duration::from_secs(1));
        assert!(member.warn_lines().is_empty(), "{:?}", member.warn_lines());
        member.assert_no_secrets();
    }

    /// The member with the wrong credential is never ready and exits non-zero within
    /// [`BOUNDED`], naming every one of `names`.
    fn expect_rejected(member: &mut common::cluster::Member, names: &[&str]) {
        let start = member.started();
        while member.exited().is_none() && start.elapsed() < BOUNDED {
            assert_ne!(
                member.probe("/readyz"),
                Some(200),
                "ready with a wrong credential"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let code = member.expect_exit(Duration::from_millis(100));
        assert_ne!(code, 0);
        assert!(start.elapsed() < BOUNDED, "took {:?}", start.elapsed());
        let output = member.output();
        for name in names {
            assert!(
                output.contains(name),
                "the failure does not name {name}:\n{output}"
            );
        }
        member.assert_no_secrets();
    }

    #[test]
    fn token_mode_right_token_ready_wrong_token_bounded_failure() {
        let token = "nats-Right_token.e2e~0001";
        let bench = Bench::new(&Auth::Token(token.to_owned()), None);
        let mut right = bench
            .worker("gpu-tok-right")
            .secret("LOCALAI_NATS_TOKEN", token)
            .spawn();
        let mut wrong = bench
            .worker("gpu-tok-wrong")
            .secret("LOCALAI_NATS_TOKEN", &format!("{token}-not"))
            .spawn();
        expect_protected(&mut right, "LOCALAI_NATS_TOKEN");
        expect_rejected(
            &mut wrong,
            &["LOCALAI_NATS_TOKEN", "authorization violation"],
        );
    }

    #[test]
    fn user_password_mode_right_password_ready_wrong_password_bounded_failure() {
        let (user, password) = ("worker-e2e", "nats-Right_password.e2e~0002");
        let bench = Bench::new(
            &Auth::UserPassword {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            None,
        );
        let mut right = bench
            .worker("gpu-up-right")
            .env("LOCALAI_NATS_USER", user)
            .secret("LOCALAI_NATS_PASSWORD", password)
            .spawn();
        let mut wrong = bench
            .worker("gpu-up-wrong")
            .env("LOCALAI_NATS_USER", user)
            .secret("LOCALAI_NATS_PASSWORD", "nats-Wrong_password.e2e~0002")
            .spawn();
        expect_protected(&mut right, "LOCALAI_NATS_USER");
        expect_rejected(
            &mut wrong,
            &["LOCALAI_NATS_USER", "authorization violation"],
        );
    }

    /// NA-17: a password in the user info of `LOCALAI_NATS_URL` appears in no output when the
    /// connection fails.
    #[test]
    fn password_in_the_nats_url_is_never_logged_when_the_connection_fails() {
        let (user, password) = ("worker-e2e", "nats-Server_password.e2e~0007");
        let bench = Bench::new(
            &Auth::UserPassword {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            None,
        );
        let in_url = "nats-Url_password.e2e~0007";
        bench.secrets.add("password in LOCALAI_NATS_URL", in_url);
        let url = format!("nats://{user}:{in_url}@127.0.0.1:{}", bench.nats.port());
        let mut wrong = bench
            .worker("gpu-url-creds")
            .env("LOCALAI_NATS_URL", url)
            .env("LOCALAI_NATS_USER", user)
            .secret("LOCALAI_NATS_PASSWORD", "nats-Wrong_password.e2e~0007")
            .spawn();
        expect_rejected(&mut wrong, &["LOCALAI_NATS_USER"]);
    }

    #[test]
    fn nkey_mode_listed_seed_ready_unlisted_seed_bounded_failure() {
        let (public, seed) = user_nkey();
        let (_, other_seed) = user_nkey();
        let bench = Bench::new(&Auth::Nkey { public_key: public }, None);
        let mut right = bench
            .worker("gpu-nkey-right")
            .secret("LOCALAI_NATS_NKEY_SEED", &seed)
            .spawn();
        let mut wrong = bench
            .worker("gpu-nkey-wrong")
            .secret("LOCALAI_NATS_NKEY_SEED", &other_seed)
            .spawn();
        expect_protected(&mut right, "LOCALAI_NATS_NKEY_SEED");
        expect_rejected(
            &mut wrong,
            &["LOCALAI_NATS_NKEY_SEED", "authorization violation"],
        );
    }

    /// Allow lists of a static worker user: the node id is only known after registration.
    fn any_node() -> Permissions {
        Permissions {
            subscribe: vec!["nodes.>".to_owned(), "_INBOX.>".to_owned()],
            publish: vec!["nodes.>".to_owned(), "_INBOX.>".to_owned()],
        }
    }

    #[test]
    fn static_jwt_mode_matching_seed_ready_other_seed_bounded_failure() {
        let operator = Operator::new();
        let bench = Bench::new(&operator.auth(), None);
        let (jwt, seed) = operator.mint_user_with(any_node(), Some(unix_now() + 3600));
        let (_, other_seed) = user_nkey();
        let mut right = bench
            .worker("gpu-jwt-right")
            .secret("LOCALAI_NATS_JWT", &jwt)
            .secret("LOCALAI_NATS_USER_SEED", &seed)
            .spawn();
        // The JWT is valid, but the nonce is signed with another user's key (NA-07).
        let mut wrong = bench
            .worker("gpu-jwt-wrong")
            .secret("LOCALAI_NATS_JWT", &jwt)
            .secret("LOCALAI_NATS_USER_SEED", &other_seed)
            .spawn();
        expect_protected(&mut right, "LOCALAI_NATS_JWT");
        expect_rejected(&mut wrong, &["LOCALAI_NATS_JWT", "authorization violation"]);
    }

    #[test]
    fn creds_file_mode_known_account_ready_unknown_account_bounded_failure() {
        let operator = Operator::new();
        let bench = Bench::new(&operator.auth(), None);
        let (jwt, seed) = operator.mint_user_with(any_node(), Some(unix_now() + 3600));
        let stranger = nkeys::KeyPair::new_account();
        let (bad_jwt, bad_seed) =
            operator.mint_user_signed_by(&stranger, any_node(), Some(unix_now() + 3600));
        for (label, value) in [
            ("creds JWT", &jwt),
            ("creds seed", &seed),
            ("unknown-account creds JWT", &bad_jwt),
            ("unknown-account creds seed", &bad_seed),
        ] {
            bench.secrets.add(label, value);
        }
        let mut right = bench
            .worker("gpu-creds-right")
            .env("LOCALAI_NATS_CREDS_FILE", operator.creds_file(&jwt, &seed))
            .spawn();
        let mut wrong = bench
            .worker("gpu-creds-wrong")
            .env(
                "LOCALAI_NATS_CREDS_FILE",
                operator.creds_file(&bad_jwt, &bad_seed),
            )
            .spawn();
        expect_protected(&mut right, "LOCALAI_NATS_CREDS_FILE");
        expect_rejected(
            &mut wrong,
            &["LOCALAI_NATS_CREDS_FILE", "authorization violation"],
        );
    }

    #[test]
    fn mutual_tls_with_client_certificate_ready_without_it_bounded_failure() {
        let token = "nats-Tls_token.e2e~0003";
        let bench = Bench::new(
            &Auth::Token(token.to_owned()),
            Some(Tls {
                verify_client: true,
            }),
        );
        let files = bench.nats.tls_files().expect("TLS files").clone();
        assert!(bench.nats.url().starts_with("tls://"));
        let mut right = bench
            .worker("gpu-tls-right")
            .secret("LOCALAI_NATS_TOKEN", token)
            .env("LOCALAI_NATS_TLS_CA", &files.ca)
            .env("LOCALAI_NATS_TLS_CERT", &files.client_cert)
            .env("LOCALAI_NATS_TLS_KEY", &files.client_key)
            .spawn();
        let mut wrong = bench
            .worker("gpu-tls-nocert")
            .secret("LOCALAI_NATS_TOKEN", token)
            .env("LOCALAI_NATS_TLS_CA", &files.ca)
            .spawn();
        expect_protected(&mut right, "LOCALAI_NATS_TOKEN");
        expect_rejected(&mut wrong, &["TLS", "LOCALAI_NATS_TLS_CERT"]);
    }

    /// D11: under `LOCALAI_NATS_REQUIRE_AUTH` a server that accepts anonymous clients is reported
    /// (the worker is ready, one warning says so); under the umbrella switch it is a refusal.
    #[test]
    fn anonymous_accepting_server_warns_under_nats_auth_and_refuses_under_the_umbrella() {
        let bench = Bench::new(&Auth::Anonymous, None);
        let token = "nats-Ignored_token.e2e~0004";
        let mut warned = bench
            .worker("gpu-anon-warn")
            .secret("LOCALAI_NATS_TOKEN", token)
            .spawn();
        let mut refused = bench
            .worker("gpu-anon-umbrella")
            .umbrella()
            .secret("LOCALAI_NATS_TOKEN", token)
            .spawn();

        warned.expect_ready(READY);
        warned.expect_log("accepts anonymous clients", Duration::from_secs(1));
        let warnings = warned.warn_lines();
        assert!(
            warnings
                .iter()
                .any(|l| l.contains("accepts anonymous clients")
                    && l.contains("LOCALAI_NATS_REQUIRE_AUTH")),
            "{warnings:?}"
        );
        assert!(
            !warned.output().contains("NATS bus: protected ("),
            "an anonymous-accepting bus reported protected"
        );
        warned.assert_no_secrets();

        let start = Instant::now();
        let code = refused.expect_exit(BOUNDED);
        assert_eq!(code, 1, "{}", refused.output());
        assert!(start.elapsed() < BOUNDED);
        let output = refused.output();
        assert!(
            output.contains("accepts anonymous clients")
                && output.contains("LOCALAI_DISTRIBUTED_REQUIRE_AUTH")
                && output.contains("refusing"),
            "{output}"
        );
        refused.assert_no_secrets();
    }
}
