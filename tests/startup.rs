//! Process-level startup matrix of the reference worker (security.md §3 SC-01…SC-13, §2.4
//! SC-L; localai-wire.md §6.5, §7.3, §7.6): each row spawns the binary with a clean
//! environment and checks the exit code, what stderr names, that no configured secret is
//! echoed, and — for refusals — that nothing was bound and no directory was created.
//!
//! SC-10 (credentials rejected by a live NATS server) is not covered: this build does not
//! connect to NATS.
//!
//! The binary is the reference example, or `$NODEGATE_WORKER_BIN worker` when that variable
//! names a `nodegate` command (CI runs this file against `cargo install`'s binary). Values that
//! cannot be honoured — including an address in use and roots that are files or not writable —
//! exit 2 with exactly one line naming the setting and a valid example.

// `per_runtime!` reads the file item by item.
#![recursion_limit = "512"]

mod common;

// Every test below runs once against each worker: `tokio::<test>` and `smol::<test>`.
crate::per_runtime! {

    use std::net::{SocketAddr, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use common::{
        RawResponse, TOKEN, WorkerProcess, free_port, request_to, wait_healthy, worker_command,
        worker_program,
    };

    /// How long a refusing worker may take to exit, or a serving one to answer `/healthz`.
    const STARTUP: Duration = Duration::from_secs(15);

    /// A temp tree for one worker: `LOCALAI_MODELS_PATH=<tmp>/root/models` (so staging and data
    /// are `<tmp>/root/staging` and `<tmp>/root/data`), secrets under `<tmp>/secrets`, and a free
    /// loopback port.
    struct Setup {
        tmp: tempfile::TempDir,
        port: u16,
    }

    impl Setup {
        fn new() -> Self {
            Self {
                tmp: tempfile::tempdir().expect("temp dir"),
                port: free_port(),
            }
        }

        fn root(&self) -> PathBuf {
            self.tmp.path().join("root")
        }

        fn models(&self) -> PathBuf {
            self.root().join("models")
        }

        fn addr(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], self.port))
        }

        /// The worker bound to `127.0.0.1:<port>` over this tree.
        fn command(&self) -> Command {
            worker_command(&self.models(), &format!("127.0.0.1:{}", self.port))
        }

        /// Writes `contents` to `<tmp>/secrets/<name>` and returns the path.
        fn secret_file(&self, name: &str, contents: &[u8]) -> PathBuf {
            let dir = self.tmp.path().join("secrets");
            std::fs::create_dir_all(&dir).expect("secrets dir");
            let path = dir.join(name);
            std::fs::write(&path, contents).expect("secret file");
            path
        }
    }

    /// Runs `command` to its exit and asserts the refusal contract: exit code `code`, the port
    /// never listening, none of the roots created. Returns stdout + stderr.
    fn expect_exit(setup: &Setup, command: Command, code: i32) -> String {
        let mut worker = WorkerProcess::spawn(command);
        let status = worker.wait_exit(STARTUP);
        let output = format!("{}{}", worker.stdout(), worker.stderr());
        let status = status.unwrap_or_else(|| panic!("the worker kept running:\n{output}"));
        assert_eq!(status.code(), Some(code), "exit code; output:\n{output}");
        assert!(
            TcpStream::connect_timeout(&setup.addr(), Duration::from_millis(500)).is_err(),
            "nothing may listen on the port after a refusal"
        );
        assert!(
            !setup.root().exists(),
            "no directory may be created before the configuration is accepted:\n{output}"
        );
        assert!(
            !output.contains("server started"),
            "a refused worker must not report serving:\n{output}"
        );
        output
    }

    /// Spawns `command` and waits until `/healthz` answers 200 on `addr`.
    fn expect_serving(command: Command, addr: SocketAddr) -> WorkerProcess {
        let mut worker = WorkerProcess::spawn(command);
        if !wait_healthy(addr, STARTUP) {
            let status = worker.wait_exit(Duration::from_millis(100));
            panic!(
                "the worker does not serve /healthz on {addr} (status {status:?}):\n{}",
                worker.stderr()
            );
        }
        worker
    }

    /// The lines logged at WARN level (plain format: `<time>  WARN <target>: <message>`).
    fn warn_lines(log: &str) -> Vec<&str> {
        log.lines()
            .filter(|line| line.split_whitespace().nth(1) == Some("WARN"))
            .collect()
    }

    fn assert_no_secret(output: &str, secrets: &[&str]) {
        for secret in secrets {
            assert!(
                !output.contains(secret),
                "the secret {secret:?} appears in the worker's output:\n{output}"
            );
        }
    }

    fn assert_names(output: &str, names: &[&str]) {
        for name in names {
            assert!(
                output.contains(name),
                "output does not name {name}:\n{output}"
            );
        }
    }

    fn put(addr: SocketAddr, key: &str, token: Option<&str>, body: &[u8]) -> RawResponse {
        request_to(addr, "PUT", &format!("/v1/files/{key}"), token, &[], body)
    }

    fn head(addr: SocketAddr, key: &str, token: Option<&str>) -> RawResponse {
        request_to(addr, "HEAD", &format!("/v1/files/{key}"), token, &[], b"")
    }

    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    // --- SC-01 / SC-12: anonymous start, one warning ----------------------------------------------

    #[test]
    fn sc01_empty_token_starts_anonymous_with_exactly_one_warning() {
        for token in [Some(""), None] {
            let setup = Setup::new();
            let mut command = setup.command();
            if let Some(token) = token {
                command.env("LOCALAI_REGISTRATION_TOKEN", token);
            }
            let worker = expect_serving(command, setup.addr());
            let log = worker.stderr();
            let warns = warn_lines(&log);
            assert_eq!(warns.len(), 1, "exactly one WARN line at startup:\n{log}");
            let warn = warns[0];
            let bind = format!("127.0.0.1:{}", setup.port);
            let root = setup.root();
            for expected in [
                "LOCALAI_REGISTRATION_TOKEN",
                bind.as_str(),
                &root.join("models").display().to_string(),
                &root.join("staging").display().to_string(),
                &root.join("data").display().to_string(),
            ] {
                assert!(
                    warn.contains(expected),
                    "warning lacks {expected:?}: {warn}"
                );
            }
            // Anonymous: no token needed.
            assert_eq!(head(setup.addr(), "models/absent.bin", None).status, 404);
            assert_eq!(
                put(setup.addr(), "models/sc01.bin", None, b"anon").status,
                200
            );
            assert_eq!(
                std::fs::read(setup.models().join("sc01.bin")).expect("uploaded"),
                b"anon"
            );
        }
    }

    #[test]
    fn sc12_public_bind_without_token_warns_only() {
        let setup = Setup::new();
        let bind = format!("0.0.0.0:{}", setup.port);
        let mut command = setup.command();
        command.env("LOCALAI_HTTP_ADDR", &bind);
        let worker = expect_serving(command, setup.addr());
        let log = worker.stderr();
        let warns = warn_lines(&log);
        assert_eq!(warns.len(), 1, "exactly one WARN line at startup:\n{log}");
        assert_names(warns[0], &["LOCALAI_REGISTRATION_TOKEN", &bind]);
        assert_eq!(head(setup.addr(), "models/absent.bin", None).status, 404);
    }

    // --- SC-02 / SC-03 / SC-05: registration token refusals ----------------------------------------

    #[test]
    fn sc02_required_auth_without_token_refuses_before_binding() {
        for switch in [
            "LOCALAI_REGISTRATION_REQUIRE_AUTH",
            "LOCALAI_DISTRIBUTED_REQUIRE_AUTH",
        ] {
            for token in [Some(""), None] {
                let setup = Setup::new();
                let mut command = setup.command();
                command.env(switch, "true");
                if let Some(token) = token {
                    command.env("LOCALAI_REGISTRATION_TOKEN", token);
                }
                let output = expect_exit(&setup, command, 1);
                assert_names(&output, &["LOCALAI_REGISTRATION_TOKEN", switch, "refusing"]);
            }
        }
    }

    #[test]
    fn sc03_whitespace_only_token_is_a_config_error_naming_the_variable() {
        for value in ["   ", "\n", " \t "] {
            for require in [None, Some("true")] {
                let setup = Setup::new();
                let mut command = setup.command();
                command.env("LOCALAI_REGISTRATION_TOKEN", value);
                if let Some(require) = require {
                    command.env("LOCALAI_REGISTRATION_REQUIRE_AUTH", require);
                }
                let output = expect_exit(&setup, command, 2);
                assert_names(&output, &["LOCALAI_REGISTRATION_TOKEN", "whitespace"]);
            }
        }
    }

    #[test]
    fn sc05_token_outside_b64token_is_a_config_error_without_echoing_it() {
        for value in [
            "Sekr1t with-a-space",
            "Sekr1t-n\u{f6}n-ascii-value",
            "Sekr1t\"quoted\"value",
        ] {
            let setup = Setup::new();
            let mut command = setup.command();
            command.env("LOCALAI_REGISTRATION_TOKEN", value);
            let output = expect_exit(&setup, command, 2);
            assert_names(&output, &["LOCALAI_REGISTRATION_TOKEN"]);
            assert_no_secret(&output, &[value]);
        }
    }

    // --- SC-04 / SC-06: configured tokens ----------------------------------------------------------

    #[test]
    fn sc04_token_file_trailing_newline_is_trimmed() {
        let token = "From-File_Token.42~";
        for ending in ["\n", "\r\n"] {
            let setup = Setup::new();
            let path = setup.secret_file("token", format!("{token}{ending}").as_bytes());
            let mut command = setup.command();
            command.env("LOCALAI_REGISTRATION_TOKEN_FILE", &path);
            let worker = expect_serving(command, setup.addr());
            assert_eq!(
                put(setup.addr(), "models/sc04.bin", Some(token), b"filed").status,
                200,
                "the trimmed token is the token"
            );
            assert_eq!(put(setup.addr(), "models/sc04.bin", None, b"x").status, 401);
            assert_eq!(
                put(
                    setup.addr(),
                    "models/sc04.bin",
                    Some("From-File_Token.42"),
                    b"x"
                )
                .status,
                401
            );
            assert_eq!(
                std::fs::read(setup.models().join("sc04.bin")).expect("uploaded"),
                b"filed"
            );
            let log = format!("{}{}", worker.stdout(), worker.stderr());
            assert!(
                warn_lines(&log).is_empty(),
                "no warning with a token:\n{log}"
            );
            assert_no_secret(&log, &[token]);
        }
    }

    #[test]
    fn sc04_token_file_holding_only_a_newline_is_a_config_error() {
        let setup = Setup::new();
        let path = setup.secret_file("token", b"\n");
        let mut command = setup.command();
        command.env("LOCALAI_REGISTRATION_TOKEN_FILE", &path);
        let output = expect_exit(&setup, command, 2);
        assert_names(&output, &["LOCALAI_REGISTRATION_TOKEN_FILE"]);
    }

    #[test]
    fn sc06_token_set_starts_protected_without_warning() {
        let setup = Setup::new();
        let mut command = setup.command();
        command.env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
        let worker = expect_serving(command, setup.addr());
        let log = format!("{}{}", worker.stdout(), worker.stderr());
        assert!(
            warn_lines(&log).is_empty(),
            "no WARN line with a token:\n{log}"
        );
        assert!(log.contains("protected"), "posture is logged:\n{log}");
        assert_eq!(head(setup.addr(), "models/absent.bin", None).status, 401);
        assert_eq!(
            head(setup.addr(), "models/absent.bin", Some(TOKEN)).status,
            404
        );
        assert_no_secret(&log, &[TOKEN]);
    }

    // --- SC-07 / SC-08 / SC-09: NATS settings -------------------------------------------------------

    #[test]
    fn sc07_nats_require_auth_without_credentials_refuses() {
        let url_password = "Pw-in-url-9931";
        let url = format!("nats://natsuser:{url_password}@127.0.0.1:4222");
        for switch in [
            "LOCALAI_NATS_REQUIRE_AUTH",
            "LOCALAI_DISTRIBUTED_REQUIRE_AUTH",
        ] {
            let setup = Setup::new();
            let mut command = setup.command();
            command
                .env("LOCALAI_REGISTRATION_TOKEN", TOKEN)
                .env("LOCALAI_NATS_URL", &url)
                .env(switch, "true");
            let output = expect_exit(&setup, command, 1);
            assert_names(
                &output,
                &[
                    "LOCALAI_NATS_REQUIRE_AUTH",
                    "refusing",
                    "NATS JWT+seed required",
                ],
            );
            assert_no_secret(&output, &[TOKEN, url_password]);
        }
    }

    #[test]
    fn sc08_half_pairs_are_config_errors_naming_both_halves() {
        let jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.secret-jwt-payload.sig";
        let seed = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";
        let setup = Setup::new();
        let cert = setup.secret_file("client.pem", b"-----BEGIN CERTIFICATE-----\n");
        let key = setup.secret_file("client.key", b"-----BEGIN PRIVATE KEY-----\n");
        let rows: [(&str, &str, &str); 4] = [
            ("LOCALAI_NATS_JWT", jwt, "LOCALAI_NATS_USER_SEED"),
            ("LOCALAI_NATS_USER_SEED", seed, "LOCALAI_NATS_JWT"),
            (
                "LOCALAI_NATS_TLS_CERT",
                cert.to_str().expect("utf-8"),
                "LOCALAI_NATS_TLS_KEY",
            ),
            (
                "LOCALAI_NATS_TLS_KEY",
                key.to_str().expect("utf-8"),
                "LOCALAI_NATS_TLS_CERT",
            ),
        ];
        for (set, value, missing) in rows {
            let row = Setup::new();
            let mut command = row.command();
            command
                .env("LOCALAI_REGISTRATION_TOKEN", TOKEN)
                .env("LOCALAI_NATS_URL", "nats://127.0.0.1:4222")
                .env(set, value);
            let output = expect_exit(&row, command, 2);
            assert_names(&output, &[set, missing]);
            assert_no_secret(&output, &[TOKEN, jwt, seed]);
        }
    }

    #[test]
    fn sc09_missing_or_unreadable_tls_ca_names_the_variable() {
        let setup = Setup::new();
        let directory = setup.tmp.path().join("secrets-dir");
        std::fs::create_dir_all(&directory).expect("dir");
        for ca in [setup.tmp.path().join("missing-ca.pem"), directory] {
            let row = Setup::new();
            let mut command = row.command();
            command
                .env("LOCALAI_NATS_URL", "nats://127.0.0.1:4222")
                .env("LOCALAI_NATS_TLS_CA", &ca);
            let output = expect_exit(&row, command, 2);
            assert_names(&output, &["LOCALAI_NATS_TLS_CA"]);
        }
    }

    // --- SC-11: roots -------------------------------------------------------------------------------

    #[test]
    fn sc11_a_root_that_is_a_regular_file_refuses_to_serve() {
        for root in ["models", "staging", "data"] {
            let setup = Setup::new();
            std::fs::create_dir_all(setup.root()).expect("root");
            let file = setup.root().join(root);
            std::fs::write(&file, b"not a directory").expect("file");
            let mut worker = WorkerProcess::spawn(setup.command());
            let status = worker.wait_exit(STARTUP);
            let output = format!("{}{}", worker.stdout(), worker.stderr());
            let status =
                status.unwrap_or_else(|| panic!("{root} is a file, yet the worker runs:\n{output}"));
            assert_eq!(status.code(), Some(2), "{root} is a file:\n{output}");
            assert_names(
                &output,
                &[
                    "LOCALAI_MODELS_PATH",
                    "is not a directory",
                    &file.display().to_string(),
                ],
            );
            assert_one_line(&output);
            assert!(
                TcpStream::connect_timeout(&setup.addr(), Duration::from_millis(500)).is_err(),
                "nothing may be served when {root} is a file"
            );
            assert!(!output.contains("server started"), "{output}");
            assert_eq!(std::fs::read(&file).expect("file kept"), b"not a directory");
        }
    }

    #[test]
    fn sc11_missing_roots_are_created_with_mode_0750() {
        let setup = Setup::new();
        // A shell sets a known umask, then becomes the worker.
        let (program, args) = worker_program();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("umask 022 && exec \"$0\" \"$@\"")
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LOCALAI_MODELS_PATH", setup.models())
            .env("LOCALAI_HTTP_ADDR", format!("127.0.0.1:{}", setup.port))
            .env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
        let _worker = expect_serving(command, setup.addr());
        for root in ["models", "staging", "data"] {
            let path = setup.root().join(root);
            assert!(path.is_dir(), "{root} created");
            assert_eq!(mode_of(&path), 0o750, "{root} mode");
        }
    }

    // --- SC-13: upload size limit -------------------------------------------------------------------

    #[test]
    fn sc13_max_upload_size_zero_is_unlimited() {
        let body = vec![b'z'; 4096];
        // 64 GiB: above the 50 GiB default.
        let huge_range = format!("bytes 0-9/{}", 64u64 << 30);
        let range = [("Content-Range", huge_range.as_str())];

        let small = Setup::new();
        let mut command = small.command();
        command.env("LOCALAI_MAX_UPLOAD_SIZE", "1K");
        let _small = expect_serving(command, small.addr());
        assert_eq!(put(small.addr(), "models/big.bin", None, &body).status, 413);

        let default = Setup::new();
        let _default = expect_serving(default.command(), default.addr());
        let refused = request_to(
            default.addr(),
            "PUT",
            "/v1/files/models/huge.bin",
            None,
            &range,
            b"0123456789",
        );
        assert_eq!(
            refused.status, 413,
            "the default limit refuses a 64 GiB total"
        );

        let unlimited = Setup::new();
        let mut command = unlimited.command();
        command.env("LOCALAI_MAX_UPLOAD_SIZE", "0");
        let _unlimited = expect_serving(command, unlimited.addr());
        assert_eq!(
            put(unlimited.addr(), "models/big.bin", None, &body).status,
            200
        );
        assert_eq!(
            std::fs::read(unlimited.models().join("big.bin")).expect("uploaded"),
            body
        );
        let accepted = request_to(
            unlimited.addr(),
            "PUT",
            "/v1/files/models/huge.bin",
            None,
            &range,
            b"0123456789",
        );
        assert_eq!(
            accepted.status,
            308,
            "0 means no limit: {}",
            accepted.text()
        );
        assert_eq!(accepted.header("X-File-Size"), Some("10"));
    }

    #[test]
    fn sc13_negative_max_upload_size_is_a_config_error() {
        let setup = Setup::new();
        let mut command = setup.command();
        command.env("LOCALAI_MAX_UPLOAD_SIZE", "-1");
        let output = expect_exit(&setup, command, 2);
        assert_names(&output, &["LOCALAI_MAX_UPLOAD_SIZE", "negative"]);
    }

    // --- Other invalid values -----------------------------------------------------------------------

    #[test]
    fn invalid_values_exit_2_naming_the_variable() {
        let rows = [
            ("LOCALAI_REGISTRATION_REQUIRE_AUTH", "maybe"),
            ("LOCALAI_DISTRIBUTED_REQUIRE_AUTH", "sometimes"),
            ("NODEGATE_BODY_IDLE_TIMEOUT", "soon"),
            ("NODEGATE_HEADER_TIMEOUT", "-5s"),
            ("LOCALAI_HTTP_ADDR", "127.0.0.1:70000"),
            ("LOCALAI_HTTP_ADDR", "127.0.0.1:0"),
            ("LOCALAI_HTTP_ADDR", "no-port"),
            ("LOCALAI_MAX_UPLOAD_SIZE", "lots"),
            ("NODEGATE_MAX_CONNECTIONS", "0"),
        ];
        for (variable, value) in rows {
            let setup = Setup::new();
            let mut command = setup.command();
            command.env(variable, value);
            let output = expect_exit(&setup, command, 2);
            assert_names(&output, &[variable, value]);
        }
    }

    #[test]
    fn help_lists_the_localai_settings() {
        let (program, args) = worker_program();
        let output = Command::new(program)
            .args(args)
            .arg("--help")
            .env_clear()
            .output()
            .expect("run --help");
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert_names(
            &text,
            &[
                "LOCALAI_REGISTRATION_TOKEN",
                "LOCALAI_REGISTRATION_TOKEN_FILE",
                "LOCALAI_MAX_UPLOAD_SIZE",
                "LOCALAI_MODELS_PATH",
                "LOCALAI_HTTP_ADDR",
            ],
        );
    }

    // --- Shutdown -----------------------------------------------------------------------------------

    #[test]
    fn sigterm_and_sigint_stop_the_worker_gracefully_with_exit_0() {
        for signal in ["TERM", "INT"] {
            let setup = Setup::new();
            let mut command = setup.command();
            command.env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
            let mut worker = expect_serving(command, setup.addr());
            worker.signal(signal);
            let status = worker.wait_exit(Duration::from_secs(10));
            let log = worker.stderr();
            let status =
                status.unwrap_or_else(|| panic!("SIG{signal} did not stop the worker:\n{log}"));
            assert_eq!(status.code(), Some(0), "SIG{signal}:\n{log}");
            assert!(log.contains(&format!("SIG{signal} received")), "{log}");
        }
    }

    // --- SC-L: secrets in logs ----------------------------------------------------------------------

    #[test]
    fn sc_l_tokens_never_appear_in_debug_logs() {
        let previous = "Prev10us-Rotation_Secret";
        let setup = Setup::new();
        let mut command = setup.command();
        command
            .env("RUST_LOG", "debug")
            .env("LOCALAI_REGISTRATION_TOKEN", TOKEN)
            .env("LOCALAI_REGISTRATION_TOKEN_PREVIOUS", previous);
        let mut worker = expect_serving(command, setup.addr());
        let addr = setup.addr();
        let near_miss = &TOKEN[..TOKEN.len() - 1];
        let longer = format!("{TOKEN}x");
        for wrong in [near_miss, longer.as_str(), "wrong", "A"] {
            assert_eq!(head(addr, "models/a.bin", Some(wrong)).status, 401);
            assert_eq!(put(addr, "models/a.bin", Some(wrong), b"no").status, 401);
        }
        for header in [
            format!("bearer  {near_miss}"),
            format!("Basic {TOKEN}"),
            format!("Token {TOKEN}"),
        ] {
            let response = request_to(
                addr,
                "GET",
                "/v1/files/models/a.bin",
                None,
                &[("Authorization", header.as_str())],
                b"",
            );
            assert_eq!(response.status, 401, "{header}");
        }
        let body = vec![7u8; 300_000];
        assert_eq!(put(addr, "models/a.bin", Some(TOKEN), &body).status, 200);
        assert_eq!(
            put(addr, "models/b.bin", Some(previous), b"previous ok").status,
            200
        );
        assert_eq!(head(addr, "models/a.bin", Some(TOKEN)).status, 200);
        let get = request_to(addr, "GET", "/v1/files/models/a.bin", Some(TOKEN), &[], b"");
        assert_eq!(get.body, body);
        let chunk = request_to(
            addr,
            "PUT",
            "/v1/files/models/c.bin",
            Some(TOKEN),
            &[("Content-Range", "bytes 0-4/10")],
            b"01234",
        );
        assert_eq!(chunk.status, 308);
        let list = request_to(addr, "GET", "/v1/files-list/models/", Some(TOKEN), &[], b"");
        assert_eq!(list.status, 200);
        worker.signal("TERM");
        assert!(
            worker.wait_exit(Duration::from_secs(10)).is_some(),
            "worker stops"
        );
        let log = format!("{}{}", worker.stdout(), worker.stderr());
        assert!(
            log.contains("receiving upload"),
            "debug logs were captured:\n{log}"
        );
        assert_no_secret(
            &log,
            &[TOKEN, &format!("Bearer {TOKEN}"), previous, near_miss],
        );
    }

    // --- Strict configuration: what cannot be honoured exits 2, once, naming the setting ----------

    /// The whole output is one line: each error is printed exactly once, and nothing else is.
    fn assert_one_line(output: &str) {
        let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "exactly one line of output:\n{output}");
    }

    #[test]
    fn log_settings_that_cannot_be_honoured_exit_2_with_an_example() {
        let rows = [
            ("NODEGATE_LOG_FORMAT", "xml", "NODEGATE_LOG_FORMAT=json"),
            ("RUST_LOG", "bogus===", "RUST_LOG=info"),
            ("RUST_LOG", "nodegate=loud", "RUST_LOG=info"),
        ];
        for (variable, value, example) in rows {
            let setup = Setup::new();
            let mut command = setup.command();
            command.env(variable, value);
            let output = expect_exit(&setup, command, 2);
            assert_names(&output, &[variable, value, example]);
            assert_one_line(&output);
        }
    }

    #[test]
    fn every_configuration_error_is_printed_once_with_an_example() {
        let rows = [
            (
                "LOCALAI_MAX_UPLOAD_SIZE",
                "lots",
                "LOCALAI_MAX_UPLOAD_SIZE=100GiB",
            ),
            (
                "LOCALAI_HTTP_ADDR",
                "no-port",
                "LOCALAI_HTTP_ADDR=0.0.0.0:50050",
            ),
            (
                "NODEGATE_HEADER_TIMEOUT",
                "-5s",
                "NODEGATE_HEADER_TIMEOUT=10s",
            ),
            ("LOCALAI_REGISTRATION_REQUIRE_AUTH", "maybe", "=true"),
        ];
        for (variable, value, example) in rows {
            let setup = Setup::new();
            let mut command = setup.command();
            command.env(variable, value);
            let output = expect_exit(&setup, command, 2);
            assert_names(&output, &[variable, value, example]);
            assert_one_line(&output);
        }
        // A refusal (exit 1) is one line too.
        let setup = Setup::new();
        let mut command = setup.command();
        command.env("LOCALAI_REGISTRATION_REQUIRE_AUTH", "true");
        let output = expect_exit(&setup, command, 1);
        assert_one_line(&output);
    }

    #[test]
    fn go_style_port_only_http_addr_listens_on_every_interface() {
        let setup = Setup::new();
        let mut command = setup.command();
        command
            .env("LOCALAI_HTTP_ADDR", format!(":{}", setup.port))
            .env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
        let worker = expect_serving(command, setup.addr());
        let log = worker.stderr();
        assert!(
            log.contains(&format!("0.0.0.0:{}", setup.port)),
            "bound on every interface:\n{log}"
        );
    }

    #[test]
    fn a_port_in_use_exits_2_naming_the_address_setting() {
        let setup = Setup::new();
        let _taken = std::net::TcpListener::bind(setup.addr()).expect("take the port");
        let mut command = setup.command();
        command.env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
        let mut worker = WorkerProcess::spawn(command);
        let status = worker.wait_exit(STARTUP);
        let output = format!("{}{}", worker.stdout(), worker.stderr());
        let status = status.unwrap_or_else(|| panic!("the worker kept running:\n{output}"));
        assert_eq!(status.code(), Some(2), "{output}");
        assert_names(
            &output,
            &[
                "LOCALAI_HTTP_ADDR",
                "already in use",
                "LOCALAI_HTTP_ADDR=0.0.0.0:50050",
            ],
        );
        assert_one_line(&output);
        assert!(!setup.root().exists(), "nothing created:\n{output}");
        assert_no_secret(&output, &[TOKEN]);
    }

    #[test]
    fn an_unresolvable_http_addr_exits_2_naming_it() {
        let setup = Setup::new();
        let mut command = setup.command();
        command.env("LOCALAI_HTTP_ADDR", "no-such-host.invalid:50050");
        let output = expect_exit(&setup, command, 2);
        assert_names(
            &output,
            &["LOCALAI_HTTP_ADDR", "no-such-host.invalid:50050"],
        );
        assert_one_line(&output);
    }

    #[test]
    fn a_root_that_cannot_be_written_exits_2_naming_the_models_path() {
        // /proc refuses new files even to root, so this holds whoever runs the tests.
        let setup = Setup::new();
        let mut command = setup.command();
        command.env("LOCALAI_MODELS_PATH", "/proc/nodegate-test/models");
        let output = expect_exit(&setup, command, 2);
        assert_names(
            &output,
            &[
                "LOCALAI_MODELS_PATH",
                "/proc/nodegate-test/models",
                "not writable",
            ],
        );
        assert_one_line(&output);
    }

    #[test]
    fn a_refused_posture_is_reported_before_any_unusable_root() {
        // Nothing is probed for a worker that refuses: the refusal is the one message.
        let setup = Setup::new();
        let mut command = setup.command();
        command
            .env("LOCALAI_MODELS_PATH", "/proc/nodegate-test/models")
            .env("LOCALAI_REGISTRATION_REQUIRE_AUTH", "true");
        let output = expect_exit(&setup, command, 1);
        assert_names(&output, &["refusing", "LOCALAI_REGISTRATION_TOKEN"]);
        assert_one_line(&output);
    }

    #[test]
    fn metrics_need_the_token_unless_nodegate_metrics_public_is_set() {
        for (public, expected) in [(None, 401), (Some("true"), 200)] {
            let setup = Setup::new();
            let mut command = setup.command();
            command.env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
            if let Some(value) = public {
                command.env("NODEGATE_METRICS_PUBLIC", value);
            }
            let _worker = expect_serving(command, setup.addr());
            let anonymous = request_to(setup.addr(), "GET", "/metrics", None, &[], b"");
            assert_eq!(
                anonymous.status, expected,
                "NODEGATE_METRICS_PUBLIC={public:?}"
            );
            let authorised = request_to(setup.addr(), "GET", "/metrics", Some(TOKEN), &[], b"");
            assert_eq!(authorised.status, 200);
            assert!(authorised.text().contains("nodegate_requests_total"));
        }
    }
}
