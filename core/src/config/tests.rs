//! Unit tests of the configuration parser.

use super::*;

fn host() -> Host {
    Host {
        hostname: Some("node1".to_owned()),
        pid: 42,
    }
}

fn parse(role: Role, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::parse(
        role,
        &Vars::from_pairs(pairs.iter().copied()),
        &FileContents::new(),
        &host(),
    )
}

fn parse_with_files(
    role: Role,
    pairs: &[(&str, &str)],
    files: &[(&str, Result<&[u8], &str>)],
) -> Result<Config, ConfigError> {
    let mut contents = FileContents::new();
    for (var, result) in files {
        contents.insert(var, result.map(<[u8]>::to_vec).map_err(str::to_owned));
    }
    Config::parse(
        role,
        &Vars::from_pairs(pairs.iter().copied()),
        &contents,
        &host(),
    )
}

fn worker(pairs: &[(&str, &str)]) -> WorkerConfig {
    parse(Role::Worker, pairs)
        .expect("valid worker configuration")
        .worker
        .expect("worker role has worker settings")
}

fn err(role: Role, pairs: &[(&str, &str)]) -> ConfigError {
    parse(role, pairs).expect_err("configuration must be refused")
}

// -- Vars ----------------------------------------------------------------------------------

#[test]
fn empty_values_count_as_unset_and_last_pair_wins() {
    let vars = Vars::from_pairs([(ADDR, "a:1"), (ADDR, "b:2"), (NODE_NAME, "")]);
    assert_eq!(vars.get(ADDR), Some("b:2"));
    assert_eq!(vars.get(NODE_NAME), None);
    assert_eq!(vars.get("UNKNOWN"), None);
}

#[test]
fn files_to_read_lists_every_file_variable_that_is_set() {
    let vars = Vars::from_pairs([
        (REGISTRATION_TOKEN_FILE, "/run/token"),
        (NATS_TLS_CA, "/ca.pem"),
        (NATS_TLS_CERT, ""),
        (NATS_CREDS_FILE, "/x.creds"),
        (REGISTRATION_TOKEN, "tok"),
    ]);
    assert_eq!(
        vars.files_to_read(),
        vec![
            (REGISTRATION_TOKEN_FILE, "/run/token".to_owned()),
            (NATS_CREDS_FILE, "/x.creds".to_owned()),
            (NATS_TLS_CA, "/ca.pem".to_owned()),
        ]
    );
}

#[test]
fn unknown_variables_are_ignored() {
    let cfg = parse(
        Role::Worker,
        &[("LOCALAI_SOMETHING_ELSE", "x"), ("PATH", "/bin")],
    );
    assert!(cfg.is_ok());
    // A variable of another role is ignored too: the agent worker has no registration switch.
    let agent = parse(
        Role::AgentWorker,
        &[(REGISTRATION_REQUIRE_AUTH, "not-a-bool")],
    )
    .unwrap();
    assert!(!agent.registration.require_auth);
}

#[test]
fn defaults_are_localai_defaults() {
    let cfg = parse(Role::Worker, &[]).unwrap();
    let w = cfg.worker.as_ref().unwrap();
    assert_eq!(w.serve_addr, "0.0.0.0:50051");
    assert_eq!(w.grpc_max_port, 65535);
    assert_eq!(w.models_path, PathBuf::from("models"));
    assert_eq!(w.max_upload_size, Some(53_687_091_200));
    assert_eq!(w.max_replicas_per_model, 1);
    assert_eq!(cfg.registration.heartbeat_interval, Duration::from_secs(10));
    assert_eq!(cfg.registration.node_name, "node1");
    assert!(cfg.registration.token.is_none());
    assert!(cfg.nats.url.is_none());
    assert_eq!(cfg.nats.credentials, NatsCredentials::None);

    let f = parse(Role::Frontend, &[]).unwrap();
    assert_eq!(f.frontend.as_ref().unwrap().address, ":8080");
    assert_eq!(f.nats.worker_jwt_ttl, Duration::from_secs(86_400));

    let a = parse(Role::AgentWorker, &[(REGISTER_TO, "http://fe:8080")]).unwrap();
    let ac = a.agent.as_ref().unwrap();
    assert_eq!(a.registration.node_name, "agent-node1");
    assert_eq!(ac.subject, "agent.execute");
    assert_eq!(ac.queue, "agent-workers");
    assert_eq!(ac.api_url.as_deref(), Some("http://fe:8080"));
}

#[test]
fn node_name_falls_back_to_localhost_without_a_hostname() {
    let cfg = Config::parse(
        Role::Worker,
        &Vars::default(),
        &FileContents::new(),
        &Host {
            hostname: None,
            pid: 1,
        },
    )
    .unwrap();
    assert_eq!(cfg.registration.node_name, "localhost");
}

#[test]
fn every_role_lists_its_variables_once() {
    for role in Role::ALL {
        let vars = known_variables(role);
        for (i, v) in vars.iter().enumerate() {
            assert!(
                v.name.starts_with("LOCALAI_")
                    || v.name.starts_with("NODEGATE_")
                    || v.name == LOG_FILTER,
                "{}",
                v.name
            );
            assert!(!v.meaning.is_empty());
            assert!(
                vars.iter().skip(i + 1).all(|w| w.name != v.name),
                "{} listed twice for {role}",
                v.name
            );
        }
    }
    assert!(!is_known(Role::AgentWorker, REGISTRATION_REQUIRE_AUTH));
    assert!(!is_known(Role::Worker, NATS_SERVICE_JWT));
    assert!(is_known(Role::Frontend, NATS_ACCOUNT_SEED));
}

// -- Booleans, durations, sizes -------------------------------------------------------------

#[test]
fn bools_accept_go_parsebool_and_yes_no_on_off() {
    for v in [
        "1", "t", "T", "TRUE", "true", "True", "yes", "YES", "On", "on",
    ] {
        assert_eq!(parse_bool(v), Ok(true), "{v}");
    }
    for v in [
        "0", "f", "F", "FALSE", "false", "False", "no", "No", "OFF", "off",
    ] {
        assert_eq!(parse_bool(v), Ok(false), "{v}");
    }
    for v in ["tRUE", "2", "y", " true", "enabled"] {
        assert!(parse_bool(v).is_err(), "{v}");
    }
}

#[test]
fn a_bool_that_is_not_a_bool_names_the_variable() {
    let e = err(Role::Worker, &[(DISTRIBUTED_REQUIRE_AUTH, "maybe")]);
    assert_eq!(e.variable(), DISTRIBUTED_REQUIRE_AUTH);
    assert!(
        e.to_string()
            .starts_with("LOCALAI_DISTRIBUTED_REQUIRE_AUTH: ")
    );
    assert!(e.to_string().contains("\"maybe\""));
}

#[test]
fn durations_use_go_syntax() {
    let cases = [
        ("10s", Duration::from_secs(10)),
        ("1m30s", Duration::from_secs(90)),
        ("500ms", Duration::from_millis(500)),
        ("1h", Duration::from_secs(3600)),
        ("1.5h", Duration::from_secs(5400)),
        (".5s", Duration::from_millis(500)),
        ("1.s", Duration::from_secs(1)),
        ("0", Duration::ZERO),
        ("+5s", Duration::from_secs(5)),
        ("-0", Duration::ZERO),
        ("2us", Duration::from_micros(2)),
        ("2µs", Duration::from_micros(2)),
        ("2μs", Duration::from_micros(2)),
        ("3ns", Duration::from_nanos(3)),
        ("1h2m3s4ms", Duration::from_millis(3_723_004)),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    for text in [
        "",
        "10",
        "s",
        "1x",
        "1.5",
        ".s",
        "1s2",
        "- 1s",
        "9999999999h",
        "1e3s",
    ] {
        assert!(
            matches!(
                parse_duration(text),
                Err(ConfigProblem::InvalidDuration { .. })
            ),
            "{text}"
        );
    }
    assert!(matches!(
        parse_duration("-5s"),
        Err(ConfigProblem::NegativeDuration { .. })
    ));
}

#[test]
fn negative_heartbeat_is_an_error_and_zero_means_default() {
    // Spec §8.30: LocalAI panics on a negative heartbeat; nodegate refuses it.
    let e = err(Role::Worker, &[(HEARTBEAT_INTERVAL, "-5s")]);
    assert_eq!(e.variable(), HEARTBEAT_INTERVAL);
    assert!(e.to_string().contains("negative"));
    let e = err(Role::AgentWorker, &[(HEARTBEAT_INTERVAL, "soon")]);
    assert_eq!(e.variable(), HEARTBEAT_INTERVAL);

    let cfg = parse(Role::Worker, &[(HEARTBEAT_INTERVAL, "0")]).unwrap();
    assert_eq!(cfg.registration.heartbeat_interval, Duration::from_secs(10));
    let cfg = parse(Role::Worker, &[(HEARTBEAT_INTERVAL, "2s")]).unwrap();
    assert_eq!(cfg.registration.heartbeat_interval, Duration::from_secs(2));
}

#[test]
fn worker_jwt_ttl_zero_means_24h_and_garbage_names_the_variable() {
    let cfg = parse(Role::Frontend, &[(NATS_WORKER_JWT_TTL, "0")]).unwrap();
    assert_eq!(cfg.nats.worker_jwt_ttl, DEFAULT_WORKER_JWT_TTL);
    let cfg = parse(Role::Frontend, &[(NATS_WORKER_JWT_TTL, "1h")]).unwrap();
    assert_eq!(cfg.nats.worker_jwt_ttl, Duration::from_secs(3600));
    assert_eq!(
        err(Role::Frontend, &[(NATS_WORKER_JWT_TTL, "forever")]).variable(),
        NATS_WORKER_JWT_TTL
    );
}

#[test]
fn sizes_accept_binary_suffixes_and_zero_is_unlimited() {
    // SC-13: 0 = unlimited (LocalAI treats <= 0 as unlimited); negative is refused.
    let cases = [
        ("50GiB", Some(50u64 << 30)),
        ("100M", Some(100 << 20)),
        ("1073741824", Some(1 << 30)),
        ("2k", Some(2048)),
        ("3KB", Some(3072)),
        ("1tib", Some(1 << 40)),
        ("7B", Some(7)),
        ("0", None),
        ("0G", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_size(text), Ok(expected), "{text}");
    }
    for text in [
        "",
        "G",
        "1.5G",
        "1 G",
        "10X",
        "1PiB",
        "99999999999999999999",
        "16777216T",
    ] {
        assert!(
            matches!(parse_size(text), Err(ConfigProblem::InvalidSize { .. })),
            "{text}"
        );
    }
    assert!(matches!(
        parse_size("-1"),
        Err(ConfigProblem::NegativeSize { .. })
    ));
    let w = worker(&[
        (HEADER_TIMEOUT, "2s"),
        (BODY_IDLE_TIMEOUT, "1m"),
        (MAX_CONNECTIONS, "8"),
    ]);
    assert_eq!(w.header_timeout, Duration::from_secs(2));
    assert_eq!(w.body_idle_timeout, Duration::from_secs(60));
    assert_eq!(w.max_connections, 8);
    for (name, bad) in [(HEADER_TIMEOUT, "-1s"), (MAX_CONNECTIONS, "0")] {
        assert_eq!(err(Role::Worker, &[(name, bad)]).variable(), name);
    }
    let w = worker(&[(MAX_UPLOAD_SIZE, "0")]);
    assert_eq!(w.max_upload_size, None);
    assert_eq!(
        err(Role::Worker, &[(MAX_UPLOAD_SIZE, "-5")]).variable(),
        MAX_UPLOAD_SIZE
    );
}

// -- Registration token -------------------------------------------------------------------

#[test]
fn sc06_token_is_parsed_and_builds_the_bearer_policy() {
    let cfg = parse(Role::Worker, &[(REGISTRATION_TOKEN, "s3cret")]).unwrap();
    assert_eq!(cfg.registration.token.as_ref().unwrap().expose(), "s3cret");
    assert_eq!(cfg.registration.token_source, Some(REGISTRATION_TOKEN));
    assert!(!cfg.auth_policy().is_anonymous());
    assert!(
        parse(Role::Worker, &[])
            .unwrap()
            .auth_policy()
            .is_anonymous()
    );
}

#[test]
fn sc03_sc05_bad_tokens_name_the_variable_without_echoing_it() {
    for value in ["   ", "\n", "to ken", "tök", "bad\"quote"] {
        let e = err(Role::Worker, &[(REGISTRATION_TOKEN, value)]);
        assert_eq!(e.variable(), REGISTRATION_TOKEN, "{value:?}");
        assert!(matches!(e.problem(), ConfigProblem::InvalidToken(_)));
        if value.trim().len() > 1 {
            assert!(!e.to_string().contains(value.trim()), "{e}");
        }
    }
}

#[test]
fn sc04_token_file_has_its_trailing_newline_trimmed() {
    for contents in [
        &b"filetok\n"[..],
        b"filetok\r\n",
        b"filetok",
        b"filetok\n\n",
    ] {
        let cfg = parse_with_files(
            Role::Worker,
            &[(REGISTRATION_TOKEN_FILE, "/run/secrets/token")],
            &[(REGISTRATION_TOKEN_FILE, Ok(contents))],
        )
        .unwrap();
        assert_eq!(cfg.registration.token.unwrap().expose(), "filetok");
        assert_eq!(cfg.registration.token_source, Some(REGISTRATION_TOKEN_FILE));
    }
}

#[test]
fn token_file_errors_name_the_variable_and_never_the_contents() {
    let vars = [(REGISTRATION_TOKEN_FILE, "/run/t")];
    let cases: [(Result<&[u8], &str>, &str); 5] = [
        (Ok(b""), "empty"),
        (Ok(b"\n"), "empty"),
        (Ok(b"  secretpart\n"), "character"),
        (Ok(b"\xff\xfe"), "UTF-8"),
        (Err("permission denied"), "permission denied"),
    ];
    for (contents, expected) in cases {
        let e = parse_with_files(Role::Worker, &vars, &[(REGISTRATION_TOKEN_FILE, contents)])
            .unwrap_err();
        assert_eq!(e.variable(), REGISTRATION_TOKEN_FILE);
        let text = e.to_string();
        assert!(text.contains(expected), "{text}");
        assert!(!text.contains("secretpart"), "{text}");
    }
    // An adapter that forgot to read the file does not get a silently anonymous server.
    let e = parse(Role::Worker, &vars).unwrap_err();
    assert!(matches!(e.problem(), ConfigProblem::FileNotRead { .. }));
}

#[test]
fn token_and_token_file_together_are_refused() {
    let e = parse_with_files(
        Role::Frontend,
        &[(REGISTRATION_TOKEN, "a"), (REGISTRATION_TOKEN_FILE, "/t")],
        &[(REGISTRATION_TOKEN_FILE, Ok(b"b"))],
    )
    .unwrap_err();
    assert_eq!(e.variable(), REGISTRATION_TOKEN_FILE);
    assert!(e.to_string().contains(REGISTRATION_TOKEN));
}

#[test]
fn previous_token_is_accepted_only_next_to_a_current_one() {
    let cfg = parse(
        Role::Worker,
        &[
            (REGISTRATION_TOKEN, "new"),
            (REGISTRATION_TOKEN_PREVIOUS, "old"),
        ],
    )
    .unwrap();
    match cfg.auth_policy() {
        AuthPolicy::Bearer(set) => {
            assert!(set.is_rotating());
            assert!(set.accepts(b"old") && set.accepts(b"new"));
        }
        AuthPolicy::Anonymous => panic!("a token is configured"),
    }
    let e = err(Role::Frontend, &[(REGISTRATION_TOKEN_PREVIOUS, "old")]);
    assert_eq!(e.variable(), REGISTRATION_TOKEN_PREVIOUS);
    let e = err(
        Role::Worker,
        &[
            (REGISTRATION_TOKEN, "new"),
            (REGISTRATION_TOKEN_PREVIOUS, "o ld"),
        ],
    );
    assert_eq!(e.variable(), REGISTRATION_TOKEN_PREVIOUS);
}

// -- NATS credentials and TLS -------------------------------------------------------------

#[test]
fn each_static_nats_mode_is_parsed() {
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Pairs<'_>, Option<&str>); 6] = [
        (&[], None),
        (&[(NATS_TOKEN, "t")], Some(NATS_TOKEN)),
        (&[(NATS_USER, "u"), (NATS_PASSWORD, "p")], Some(NATS_USER)),
        (&[(NATS_NKEY_SEED, "SUxyz")], Some(NATS_NKEY_SEED)),
        (
            &[(NATS_JWT, "eyJ"), (NATS_USER_SEED, "SUabc")],
            Some(NATS_JWT),
        ),
        (&[(NATS_CREDS_FILE, "/c.creds")], Some(NATS_CREDS_FILE)),
    ];
    for role in Role::ALL {
        for (pairs, expected) in cases {
            let cfg = parse_with_files(role, pairs, &[(NATS_CREDS_FILE, Ok(b"creds"))]).unwrap();
            assert_eq!(
                cfg.nats.credentials.variable(),
                expected,
                "{role} {pairs:?}"
            );
        }
    }
}

#[test]
fn sc08_half_pairs_name_the_missing_variable() {
    // Spec §7.6: a JWT without seed is an error even when NATS auth is not required.
    let cases = [
        (Role::Worker, (NATS_JWT, "eyJ"), NATS_USER_SEED),
        (Role::AgentWorker, (NATS_USER_SEED, "SU"), NATS_JWT),
        (Role::Frontend, (NATS_USER, "u"), NATS_PASSWORD),
        (Role::Worker, (NATS_PASSWORD, "p"), NATS_USER),
        (
            Role::AgentWorker,
            (NATS_SERVICE_JWT, "eyJ"),
            NATS_SERVICE_SEED,
        ),
        (Role::Frontend, (NATS_SERVICE_SEED, "SU"), NATS_SERVICE_JWT),
    ];
    for (role, set, missing) in cases {
        let e = err(role, &[set]);
        assert_eq!(e.variable(), missing, "{role} {set:?}");
        assert!(e.to_string().contains(set.0), "{e}");
        assert!(e.to_string().contains("must be set together"), "{e}");
        assert!(!e.to_string().contains(set.1) || set.1.len() < 3, "{e}");
    }
}

#[test]
fn sc08_tls_cert_and_key_must_be_paired() {
    let e = err(Role::Worker, &[(NATS_TLS_CERT, "/c.pem")]);
    assert_eq!(
        e.to_string(),
        "LOCALAI_NATS_TLS_KEY: is required when LOCALAI_NATS_TLS_CERT is set; the two must be set together"
    );
    let e = err(Role::Frontend, &[(NATS_TLS_KEY, "/k.pem")]);
    assert_eq!(e.variable(), NATS_TLS_CERT);
    let cfg = parse_with_files(
        Role::AgentWorker,
        &[
            (NATS_TLS_CERT, "/c.pem"),
            (NATS_TLS_KEY, "/k.pem"),
            (NATS_TLS_CA, "/ca.pem"),
        ],
        &[
            (NATS_TLS_CERT, Ok(b"cert")),
            (NATS_TLS_KEY, Ok(b"key")),
            (NATS_TLS_CA, Ok(b"ca")),
        ],
    )
    .unwrap();
    assert!(cfg.nats.tls_enabled());
    assert_eq!(cfg.nats.tls.key.as_deref(), Some("/k.pem"));
}

#[test]
fn sc09_unreadable_nats_files_name_their_variable() {
    for var in [NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY, NATS_CREDS_FILE] {
        let mut pairs = vec![(var, "/missing")];
        let mut files: Vec<(&str, Result<&[u8], &str>)> =
            vec![(var, Err("No such file or directory (os error 2)"))];
        if var == NATS_TLS_CERT {
            pairs.push((NATS_TLS_KEY, "/k"));
            files.push((NATS_TLS_KEY, Ok(b"k")));
        }
        if var == NATS_TLS_KEY {
            pairs.push((NATS_TLS_CERT, "/c"));
            files.push((NATS_TLS_CERT, Ok(b"c")));
        }
        let e = parse_with_files(Role::Worker, &pairs, &files).unwrap_err();
        assert_eq!(e.variable(), var);
        assert!(e.to_string().contains("/missing"), "{e}");
        assert!(e.to_string().contains("No such file"), "{e}");
    }
}

#[test]
fn two_static_nats_modes_are_refused_naming_both() {
    let e = err(
        Role::Worker,
        &[(NATS_JWT, "eyJ"), (NATS_USER_SEED, "SU"), (NATS_TOKEN, "t")],
    );
    assert_eq!(e.variable(), NATS_TOKEN);
    assert!(e.to_string().contains(NATS_JWT));
    let e = err(
        Role::Frontend,
        &[
            (NATS_NKEY_SEED, "SU"),
            (NATS_USER, "u"),
            (NATS_PASSWORD, "p"),
        ],
    );
    assert_eq!(e.variable(), NATS_NKEY_SEED);
    assert!(e.to_string().contains(NATS_USER));
}

#[test]
fn whitespace_only_nats_secrets_are_refused() {
    assert_eq!(
        err(Role::Worker, &[(NATS_TOKEN, "  ")]).variable(),
        NATS_TOKEN
    );
    assert_eq!(
        err(Role::Worker, &[(NATS_USER, " "), (NATS_PASSWORD, "p")]).variable(),
        NATS_USER
    );
}

#[test]
fn service_credentials_are_read_by_frontend_and_agent_only() {
    let pairs = [(NATS_SERVICE_JWT, "eyJ"), (NATS_SERVICE_SEED, "SU")];
    assert!(
        parse(Role::Frontend, &pairs)
            .unwrap()
            .nats
            .service
            .is_some()
    );
    assert!(
        parse(Role::AgentWorker, &pairs)
            .unwrap()
            .nats
            .service
            .is_some()
    );
    assert!(parse(Role::Worker, &pairs).unwrap().nats.service.is_none());
}

#[test]
fn distributed_frontend_requires_a_nats_url() {
    // Spec §6.4 step 2.
    let e = err(Role::Frontend, &[(DISTRIBUTED, "true")]);
    assert_eq!(e.variable(), NATS_URL);
    assert!(e.to_string().contains(DISTRIBUTED));
    assert!(
        parse(
            Role::Frontend,
            &[(DISTRIBUTED, "true"), (NATS_URL, "nats://n:4222")]
        )
        .is_ok()
    );
}

// -- Ports and addresses (spec §2.2, §7.7) -------------------------------------------------

#[test]
fn s7_7_base_port_addr_wins_then_serve_addr_then_50051() {
    let cases: [(&[(&str, &str)], u16); 7] = [
        (
            &[(ADDR, "worker1:60000"), (SERVE_ADDR, "0.0.0.0:50051")],
            60000,
        ),
        (&[(SERVE_ADDR, "0.0.0.0:50051")], 50051),
        (&[], 50051),
        (&[(ADDR, "10.0.0.5:7000")], 7000),
        (&[(ADDR, "[2001:db8::1]:7001")], 7001),
        (&[(ADDR, "worker1:abc"), (SERVE_ADDR, "0.0.0.0:9999")], 9999),
        (
            &[(ADDR, "worker1:70000"), (SERVE_ADDR, "0.0.0.0:9998")],
            9998,
        ),
    ];
    for (pairs, expected) in cases {
        assert_eq!(worker(pairs).base_port(), expected, "{pairs:?}");
    }
    let w = worker(&[(ADDR, "w:0"), (SERVE_ADDR, "bad")]);
    assert_eq!(w.base_port(), 50051);
    assert_eq!(w.unusable_port_vars(), vec![ADDR, SERVE_ADDR]);
    assert_eq!(w.base_port_source(), None);
    let w = worker(&[(ADDR, "w:60000")]);
    assert_eq!(w.base_port_source(), Some(ADDR));
    assert!(w.unusable_port_vars().is_empty());
}

#[test]
fn s7_7_advertise_address() {
    let w = worker(&[(ADVERTISE_ADDR, "public:1"), (ADDR, "10.0.0.5:60000")]);
    assert_eq!(w.advertise("node1"), "public:1");
    let w = worker(&[(ADDR, "10.0.0.5:60000")]);
    assert_eq!(w.advertise("node1"), "10.0.0.5:60000");
    let w = worker(&[]);
    assert_eq!(w.advertise("myhost"), "myhost:50051");
    assert_eq!(w.advertise(""), "localhost:50051");
}

#[test]
fn s7_7_http_bind() {
    let w = worker(&[(HTTP_ADDR, "127.0.0.1:9000"), (ADDR, "worker1:60000")]);
    assert_eq!(w.http_bind(), "127.0.0.1:9000");
    assert_eq!(
        worker(&[(ADDR, "worker1:60000")]).http_bind(),
        "0.0.0.0:59999"
    );
    assert_eq!(
        worker(&[(SERVE_ADDR, "0.0.0.0:50051")]).http_bind(),
        "0.0.0.0:50050"
    );
    assert_eq!(worker(&[]).http_bind(), "0.0.0.0:50050");
}

#[test]
fn s7_7_http_advertise() {
    let w = worker(&[
        (ADVERTISE_HTTP_ADDR, "files.example.com:80"),
        (ADDR, "w:60000"),
    ]);
    assert_eq!(w.advertise_http("node1"), "files.example.com:80");
    let w = worker(&[(ADDR, "worker1.example.com:60000")]);
    assert_eq!(w.advertise_http("node1"), "worker1.example.com:59999");
    // The port comes from the base port, not from the advertise address.
    let w = worker(&[
        (ADVERTISE_ADDR, "public.example.com:60000"),
        (ADDR, "10.0.0.5:60000"),
    ]);
    assert_eq!(w.advertise_http("node1"), "public.example.com:59999");
    let w = worker(&[
        (ADVERTISE_ADDR, "public.example.com:1234"),
        (ADDR, "10.0.0.5:7000"),
    ]);
    assert_eq!(w.advertise_http("node1"), "public.example.com:6999");
    let w = worker(&[(ADDR, "[2001:db8::1]:7001")]);
    assert_eq!(w.advertise_http("node1"), "[2001:db8::1]:7000");
    let w = worker(&[]);
    assert_eq!(w.advertise_http("myhost"), "myhost:50050");
    // An advertise address without a port: host falls back to localhost.
    let w = worker(&[(ADVERTISE_ADDR, "public.example.com")]);
    assert_eq!(w.advertise_http("node1"), "localhost:50050");
}

#[test]
fn s8_33_base_port_1_is_refused_naming_its_variable() {
    assert_eq!(err(Role::Worker, &[(ADDR, "w:1")]).variable(), ADDR);
    let e = err(Role::Worker, &[(SERVE_ADDR, "0.0.0.0:1")]);
    assert_eq!(e.variable(), SERVE_ADDR);
    assert!(e.to_string().contains("port 0"), "{e}");
    // Both derived addresses given explicitly: base port 1 is harmless.
    let w = worker(&[
        (ADDR, "w:1"),
        (HTTP_ADDR, "0.0.0.0:8000"),
        (ADVERTISE_HTTP_ADDR, "w:8000"),
    ]);
    assert_eq!(w.base_port(), 1);
}

#[test]
fn invalid_http_addr_is_refused() {
    for value in [
        "0.0.0.0",
        "0.0.0.0:0",
        "host:70000",
        "host:http",
        "::1:80",
        "[::1]",
    ] {
        let e = err(Role::Worker, &[(HTTP_ADDR, value)]);
        assert_eq!(e.variable(), HTTP_ADDR, "{value}");
    }
    for value in ["[::]:8000", "localhost:1"] {
        assert_eq!(worker(&[(HTTP_ADDR, value)]).http_bind(), value);
    }
    // Go's `:PORT` (every interface), as LocalAI binds it.
    assert_eq!(worker(&[(HTTP_ADDR, ":8000")]).http_bind(), "0.0.0.0:8000");
}

#[test]
fn grpc_max_port_zero_means_65535_and_must_not_be_below_base() {
    assert_eq!(worker(&[(GRPC_MAX_PORT, "0")]).grpc_max_port, 65535);
    assert_eq!(worker(&[(GRPC_MAX_PORT, "50100")]).grpc_max_port, 50100);
    assert_eq!(
        err(Role::Worker, &[(GRPC_MAX_PORT, "65536")]).variable(),
        GRPC_MAX_PORT
    );
    assert_eq!(
        err(Role::Worker, &[(GRPC_MAX_PORT, "-1")]).variable(),
        GRPC_MAX_PORT
    );
    let e = err(Role::Worker, &[(GRPC_MAX_PORT, "50000")]);
    assert!(matches!(
        e.problem(),
        ConfigProblem::MaxPortBelowBase { base: 50051, .. }
    ));
}

#[test]
fn host_port_split_and_join_follow_go() {
    assert_eq!(split_host_port("a:1"), Some(("a", "1")));
    assert_eq!(split_host_port(":1"), Some(("", "1")));
    assert_eq!(split_host_port("[::1]:80"), Some(("::1", "80")));
    assert_eq!(split_host_port("::1:80"), None);
    assert_eq!(split_host_port("a"), None);
    assert_eq!(split_host_port("[::1]"), None);
    assert_eq!(join_host_port("::1", 80), "[::1]:80");
    assert_eq!(join_host_port("a", 80), "a:80");
    assert_eq!(port_of("w:+7000"), Some(7000));
    assert_eq!(port_of("w:-1"), None);
    assert_eq!(port_of("w:"), None);
}

// -- Directories and other worker settings --------------------------------------------------

#[test]
fn staging_and_data_are_siblings_of_models_cleaned_like_go() {
    let cases = [
        ("/models", "/models", "/staging", "/data"),
        ("models", "models", "staging", "data"),
        (
            "/srv/ai/models/",
            "/srv/ai/models",
            "/srv/ai/staging",
            "/srv/ai/data",
        ),
        (
            "/srv/./ai//models",
            "/srv/ai/models",
            "/srv/ai/staging",
            "/srv/ai/data",
        ),
        (".", ".", "../staging", "../data"),
        ("/", "/", "/staging", "/data"),
        ("../m", "../m", "../staging", "../data"),
    ];
    for (models, m, s, d) in cases {
        let w = worker(&[(MODELS_PATH, models)]);
        assert_eq!(w.models_path, PathBuf::from(models));
        assert_eq!(w.models_dir(), PathBuf::from(m), "{models}");
        assert_eq!(w.staging_dir(), PathBuf::from(s), "{models}");
        assert_eq!(w.data_dir(), PathBuf::from(d), "{models}");
    }
}

#[test]
fn labels_replicas_and_vram_budget() {
    let w = worker(&[
        (NODE_LABELS, "gpu=a100, zone=eu ,,"),
        (MAX_REPLICAS_PER_MODEL, "3"),
        (VRAM_BUDGET, "80%"),
    ]);
    assert_eq!(w.node_labels.get("gpu").map(String::as_str), Some("a100"));
    assert_eq!(w.node_labels.get("zone").map(String::as_str), Some("eu"));
    assert_eq!(w.max_replicas_per_model, 3);
    assert_eq!(w.vram_budget.as_deref(), Some("80%"));
    assert_eq!(
        err(Role::Worker, &[(NODE_LABELS, "gpu")]).variable(),
        NODE_LABELS
    );
    assert_eq!(
        err(Role::Worker, &[(NODE_LABELS, "=x")]).variable(),
        NODE_LABELS
    );
    assert_eq!(
        err(Role::Worker, &[(MAX_REPLICAS_PER_MODEL, "many")]).variable(),
        MAX_REPLICAS_PER_MODEL
    );
}

// -- Secrets --------------------------------------------------------------------------------

#[test]
fn secrets_never_appear_in_debug_output() {
    let pairs = [
        (REGISTRATION_TOKEN, "regTOKENsecret"),
        (REGISTRATION_TOKEN_PREVIOUS, "prevTOKENsecret"),
        (NATS_URL, "nats://alice:urlPASSsecret@nats:4222"),
        (NATS_USER, "alice"),
        (NATS_PASSWORD, "natsPASSsecret"),
        (NATS_SERVICE_JWT, "serviceJWTsecret"),
        (NATS_SERVICE_SEED, "serviceSEEDsecret"),
        (NATS_ACCOUNT_SEED, "accountSEEDsecret"),
    ];
    let cfg = parse(Role::Frontend, &pairs).unwrap();
    let text = format!("{cfg:?}");
    for (_, value) in &pairs[..] {
        if value.contains("secret") {
            assert!(!text.contains(value), "{value} leaked in {text}");
        }
    }
    assert!(!text.contains("urlPASSsecret"), "{text}");
    assert!(text.contains("nats://***:***@nats:4222"), "{text}");
    let vars = Vars::from_pairs(pairs);
    assert!(!format!("{vars:?}").contains("secret"));
    let mut files = FileContents::new();
    files.insert(REGISTRATION_TOKEN_FILE, Ok(b"fileTOKENsecret".to_vec()));
    assert!(!format!("{files:?}").contains("secret"));
    let agent = parse(
        Role::AgentWorker,
        &[
            (API_TOKEN, "apiTOKENsecret"),
            (NATS_NKEY_SEED, "nkeySEEDsecret"),
        ],
    )
    .unwrap();
    assert!(!format!("{agent:?}").contains("secret"));
}

#[test]
fn redact_userinfo_masks_credentials_in_urls() {
    assert_eq!(
        redact_userinfo("nats://u:p@h:4222"),
        "nats://***:***@h:4222"
    );
    assert_eq!(redact_userinfo("nats://tok@h"), "nats://***:***@h");
    assert_eq!(redact_userinfo("http://h:8080/a@b"), "http://h:8080/a@b");
    assert_eq!(redact_userinfo("nats://h:4222"), "nats://h:4222");
    assert_eq!(redact_userinfo("no-scheme@x"), "***:***@x");
    assert_eq!(
        redact_userinfo("worker:pa55@nats:4222"),
        "***:***@nats:4222"
    );
}

fn any_value() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just(String::new()),
        Just("true".to_owned()),
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("-1s".to_owned()),
        Just("[::1]:1".to_owned()),
        Just("w:65535".to_owned()),
        Just("10GiB".to_owned()),
        "[0-9]{1,25}[a-zA-Zµ.:]{0,4}",
        "[ -~]{0,16}",
        "\\PC{0,12}",
    ]
}

fn any_name() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let names: Vec<String> = Role::ALL
        .iter()
        .flat_map(|&r| known_variables(r).iter().map(|v| v.name.to_owned()))
        .collect();
    prop_oneof![4 => proptest::sample::select(names), 1 => "[A-Z_]{0,12}"]
}

proptest::proptest! {
    /// Parsing never panics, whatever the pairs, files and host.
    #[test]
    fn parse_never_panics(
        pairs in proptest::collection::vec((any_name(), any_value()), 0..24),
        file_results in proptest::collection::vec(
            proptest::option::of(proptest::result::maybe_ok(
                proptest::collection::vec(proptest::num::u8::ANY, 0..12), "[ -~]{0,8}")),
            FILE_VARS.len()),
        hostname in proptest::option::of("\\PC{0,8}"),
    ) {
        let vars = Vars::from_pairs(pairs);
        let mut files = FileContents::new();
        for (var, result) in FILE_VARS.iter().zip(file_results) {
            if let Some(result) = result {
                files.insert(var, result);
            }
        }
        let host = Host { hostname, pid: 7 };
        for role in Role::ALL {
            if let Ok(cfg) = Config::parse(role, &vars, &files, &host) {
                let _ = cfg.auth_policy();
                if let Some(w) = &cfg.worker {
                    let _ = (w.http_bind(), w.advertise("h"), w.advertise_http("h"));
                    let _ = (w.staging_dir(), w.data_dir(), w.unusable_port_vars());
                }
            }
        }
    }

    /// Parse errors never contain a secret value, and always name a variable the role knows.
    #[test]
    fn errors_never_leak_secrets(
        pairs in proptest::collection::vec((any_name(), any_value()), 0..16),
        secret_suffix in "[ -~]{0,8}",
    ) {
        for role in Role::ALL {
            let mut all = pairs.clone();
            for info in known_variables(role).iter().filter(|v| v.secret) {
                all.push((info.name.to_owned(), format!("SeCrEtVaLuE{secret_suffix}")));
            }
            let vars = Vars::from_pairs(all);
            match Config::parse(role, &vars, &FileContents::new(), &host()) {
                Err(e) => {
                    proptest::prop_assert!(!e.to_string().contains("SeCrEtVaLuE"), "{}", e);
                    proptest::prop_assert!(is_known(role, e.variable()), "{}", e);
                }
                Ok(cfg) => {
                    let text = format!("{:?}", cfg);
                    proptest::prop_assert!(!text.contains("SeCrEtVaLuE"));
                }
            }
        }
    }
}

// -- The settings table, logging and Go-style addresses ----------------------------------------

#[test]
fn the_table_lists_each_variable_once_with_a_flag_default_and_example() {
    for (i, s) in SETTINGS.iter().enumerate() {
        assert!(
            SETTINGS
                .iter()
                .skip(i + 1)
                .all(|t| t.name != s.name && t.flag != s.flag),
            "{} or --{} listed twice",
            s.name,
            s.flag
        );
        assert!(!s.default.is_empty() && !s.example.is_empty(), "{}", s.name);
        assert!(
            s.flag.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "{}",
            s.flag
        );
        assert!(
            Role::ALL.iter().any(|&role| s.applies_to(role)),
            "{}",
            s.name
        );
    }
}

#[test]
fn each_example_of_the_table_is_accepted_by_the_parser() {
    // Examples of file variables name files, and secrets have placeholders: both are skipped.
    for role in Role::ALL {
        for s in known_variables(role) {
            if s.secret || FILE_VARS.contains(&s.name) {
                continue;
            }
            let pairs = [(s.name, s.example), (REGISTER_TO, "http://fe:8080")];
            let mut pairs = pairs.to_vec();
            match s.name {
                DISTRIBUTED => pairs.push((NATS_URL, "nats://n:4222")),
                NATS_USER => pairs.push((NATS_PASSWORD, "pw")),
                _ => {}
            }
            assert!(
                parse(role, &pairs).is_ok(),
                "{role}: the example {}={} is refused: {:?}",
                s.name,
                s.example,
                parse(role, &pairs).err()
            );
        }
    }
}

#[test]
fn every_error_offers_an_example_from_the_table() {
    let e = err(Role::Worker, &[(MAX_UPLOAD_SIZE, "lots")]);
    assert_eq!(
        e.example().as_deref(),
        Some("LOCALAI_MAX_UPLOAD_SIZE=100GiB")
    );
    let e = err(Role::Worker, &[(REGISTRATION_TOKEN, "two words")]);
    assert_eq!(
        e.example().as_deref(),
        Some("LOCALAI_REGISTRATION_TOKEN=$(openssl rand -hex 32)")
    );
}

#[test]
fn log_format_is_plain_or_json_and_anything_else_names_the_variable() {
    for role in Role::ALL {
        assert_eq!(parse(role, &[]).unwrap().logging.format, LogFormat::Plain);
        assert_eq!(parse(role, &[]).unwrap().logging.filter, "info");
        for (value, format) in [
            ("json", LogFormat::Json),
            ("JSON", LogFormat::Json),
            ("plain", LogFormat::Plain),
        ] {
            assert_eq!(
                parse(role, &[(LOG_FORMAT, value)]).unwrap().logging.format,
                format
            );
        }
        let e = err(role, &[(LOG_FORMAT, "xml")]);
        assert_eq!(e.variable(), LOG_FORMAT);
        assert!(
            e.to_string()
                .contains("\"xml\" is not one of plain or json"),
            "{e}"
        );
        let filter = parse(role, &[(LOG_FILTER, "debug,hyper=warn")]).unwrap();
        assert_eq!(filter.logging.filter, "debug,hyper=warn");
    }
}

#[test]
fn go_style_port_only_http_addr_binds_every_interface() {
    assert_eq!(
        worker(&[(HTTP_ADDR, ":50150")]).http_bind(),
        "0.0.0.0:50150"
    );
    assert_eq!(
        worker(&[(HTTP_ADDR, "[::]:50150")]).http_bind(),
        "[::]:50150"
    );
    let e = err(Role::Worker, &[(HTTP_ADDR, ":0")]);
    assert_eq!(e.variable(), HTTP_ADDR);
}

// -- Frontend settings -------------------------------------------------------------------------

fn frontend(pairs: &[(&str, &str)]) -> FrontendConfig {
    parse(Role::Frontend, pairs)
        .expect("valid frontend configuration")
        .frontend
        .expect("frontend role has frontend settings")
}

#[test]
fn frontend_defaults_are_the_tables() {
    let f = frontend(&[]);
    assert_eq!(f.bind(), "0.0.0.0:8080");
    assert_eq!(f.admin_token, None);
    assert_eq!(
        f.registry,
        RegistryLocation::File(PathBuf::from("nodegate-frontend.sqlite"))
    );
    assert_eq!(f.stale_after, Duration::from_secs(60));
    assert_eq!(f.health_check_interval, Duration::from_secs(15));
    for (name, default) in [
        (REGISTRY, DEFAULT_REGISTRY),
        (STALE_AFTER, "60s"),
        (HEALTH_CHECK_INTERVAL, "15s"),
    ] {
        assert_eq!(setting(name).unwrap().default, default, "{name}");
    }
}

#[test]
fn frontend_registry_memory_keeps_nothing_and_any_other_value_is_a_file() {
    assert_eq!(
        frontend(&[(REGISTRY, ":memory:")]).registry,
        RegistryLocation::Memory
    );
    assert_eq!(
        frontend(&[(REGISTRY, "/var/lib/ng/f.sqlite")]).registry,
        RegistryLocation::File(PathBuf::from("/var/lib/ng/f.sqlite"))
    );
}

#[test]
fn frontend_durations_zero_means_default_and_negative_or_bad_names_the_variable() {
    let f = frontend(&[(STALE_AFTER, "0"), (HEALTH_CHECK_INTERVAL, "1m30s")]);
    assert_eq!(f.stale_after, DEFAULT_STALE_AFTER);
    assert_eq!(f.health_check_interval, Duration::from_secs(90));
    for var in [STALE_AFTER, HEALTH_CHECK_INTERVAL] {
        let e = err(Role::Frontend, &[(var, "-5s")]);
        assert_eq!(e.variable(), var);
        assert!(matches!(
            e.problem(),
            ConfigProblem::NegativeDuration { .. }
        ));
        let e = err(Role::Frontend, &[(var, "soon")]);
        assert_eq!(e.variable(), var);
    }
}

#[test]
fn frontend_admin_token_is_validated_and_must_differ_from_every_registration_token() {
    let f = frontend(&[(REGISTRATION_TOKEN, "reg-1"), (ADMIN_TOKEN, "admin-1")]);
    assert_eq!(f.admin_token.as_ref().map(Token::expose), Some("admin-1"));
    let e = err(Role::Frontend, &[(ADMIN_TOKEN, "two words")]);
    assert_eq!(e.variable(), ADMIN_TOKEN);
    assert!(!e.to_string().contains("two words"), "{e}");
    let e = err(
        Role::Frontend,
        &[(REGISTRATION_TOKEN, "same-1"), (ADMIN_TOKEN, "same-1")],
    );
    assert_eq!(e.variable(), ADMIN_TOKEN);
    assert_eq!(
        e.problem(),
        &ConfigProblem::SameAsRegistrationToken {
            other: REGISTRATION_TOKEN
        }
    );
    assert!(!e.to_string().contains("same-1"), "{e}");
    let e = err(
        Role::Frontend,
        &[
            (REGISTRATION_TOKEN, "new-1"),
            (REGISTRATION_TOKEN_PREVIOUS, "old-1"),
            (ADMIN_TOKEN, "old-1"),
        ],
    );
    assert_eq!(
        e.problem(),
        &ConfigProblem::SameAsRegistrationToken {
            other: REGISTRATION_TOKEN_PREVIOUS
        }
    );
    let e = parse_with_files(
        Role::Frontend,
        &[(REGISTRATION_TOKEN_FILE, "/t"), (ADMIN_TOKEN, "filed-1")],
        &[(REGISTRATION_TOKEN_FILE, Ok(b"filed-1\n"))],
    )
    .unwrap_err();
    assert_eq!(
        e.problem(),
        &ConfigProblem::SameAsRegistrationToken {
            other: REGISTRATION_TOKEN_FILE
        }
    );
}

#[test]
fn frontend_address_takes_go_port_only_form_and_refuses_what_has_no_port() {
    assert_eq!(frontend(&[(ADDRESS, ":9090")]).bind(), "0.0.0.0:9090");
    assert_eq!(
        frontend(&[(ADDRESS, "127.0.0.1:9090")]).bind(),
        "127.0.0.1:9090"
    );
    for bad in ["localhost", ":0", "host:http"] {
        assert_eq!(err(Role::Frontend, &[(ADDRESS, bad)]).variable(), ADDRESS);
    }
}

#[test]
fn frontend_settings_are_the_frontends_only() {
    for name in [ADMIN_TOKEN, REGISTRY, STALE_AFTER, HEALTH_CHECK_INTERVAL] {
        let s = setting(name).unwrap();
        assert!(s.applies_to(Role::Frontend), "{name}");
        assert!(!s.applies_to(Role::Worker) && !s.applies_to(Role::AgentWorker));
    }
    assert!(setting(ADMIN_TOKEN).unwrap().secret);
    // A worker ignores them, whatever the value.
    assert!(parse(Role::Worker, &[(STALE_AFTER, "-1s")]).is_ok());
}

// -- Worker limits (issue 12) -----------------------------------------------------------------

#[test]
fn worker_limits_default_to_the_tables_defaults() {
    let w = worker(&[]);
    assert_eq!(w.first_head_timeout, Duration::from_secs(5));
    assert_eq!(w.max_head_per_remote, 128);
    assert_eq!(w.max_log_streams, 128);
    assert_eq!(w.min_body_rate, 1024);
    assert_eq!(w.body_rate_window, Duration::from_secs(60));
    assert_eq!(w.refusal_log_interval, Duration::from_secs(10));
    for (name, default) in [
        (FIRST_HEAD_TIMEOUT, "5s"),
        (MAX_HEAD_PER_REMOTE, "128"),
        (MAX_LOG_STREAMS, "128"),
        (MIN_BODY_RATE, "1024"),
        (BODY_RATE_WINDOW, "60s"),
        (REFUSAL_LOG_INTERVAL, "10s"),
    ] {
        let s = setting(name).unwrap();
        assert_eq!(s.default, default, "{name}");
        assert_eq!((s.group, s.roles), (Group::Limits, Roles::WORKER), "{name}");
    }
}

#[test]
fn worker_limits_are_parsed_and_zero_means_what_each_documents() {
    let w = worker(&[
        (FIRST_HEAD_TIMEOUT, "2s"),
        (MAX_HEAD_PER_REMOTE, "16"),
        (MAX_LOG_STREAMS, "4"),
        (MIN_BODY_RATE, "0"),
        (BODY_RATE_WINDOW, "0"),
        (REFUSAL_LOG_INTERVAL, "0"),
    ]);
    assert_eq!(w.first_head_timeout, Duration::from_secs(2));
    assert_eq!((w.max_head_per_remote, w.max_log_streams), (16, 4));
    // 0 turns the rate check off, gives the default window, and logs every refusal.
    assert_eq!(w.min_body_rate, 0);
    assert_eq!(w.body_rate_window, DEFAULT_BODY_RATE_WINDOW);
    assert_eq!(w.refusal_log_interval, Duration::ZERO);
    assert_eq!(
        worker(&[(FIRST_HEAD_TIMEOUT, "0")]).first_head_timeout,
        DEFAULT_FIRST_HEAD_TIMEOUT
    );
}

#[test]
fn a_bad_worker_limit_names_its_variable() {
    for (name, bad) in [
        (FIRST_HEAD_TIMEOUT, "-1s"),
        (FIRST_HEAD_TIMEOUT, "quick"),
        (MAX_HEAD_PER_REMOTE, "0"),
        (MAX_HEAD_PER_REMOTE, "many"),
        (MAX_LOG_STREAMS, "-3"),
        (MIN_BODY_RATE, "fast"),
        (MIN_BODY_RATE, "-1"),
        (BODY_RATE_WINDOW, "-1m"),
        (REFUSAL_LOG_INTERVAL, "-10s"),
        (REFUSAL_LOG_INTERVAL, "often"),
    ] {
        let e = err(Role::Worker, &[(name, bad)]);
        assert_eq!(e.variable(), name, "{name}={bad}: {e}");
        assert!(e.example().is_some(), "{name}");
    }
}
