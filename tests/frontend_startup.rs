//! Process-level startup matrix of the reference frontend, like the worker's
//! (`tests/startup.rs`): each row spawns the real binary with a clean environment and checks
//! the exit code, what the output names, that no configured secret is echoed, and — for
//! refusals — that nothing was bound and no registry file was created (spec §6.4, §5.4;
//! security.md SC-01, SC-02, SC-06, SC-07).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::processes::{
    FrontendClient, Proc, STARTUP, assert_no_secret_in, frontend_command, loopback, outputs_of,
    start_frontend, worker_body,
};
use common::{free_port, wait_listening};

const TOKEN: &str = "startup-registration-Token_1";
const ADMIN: &str = "startup-admin-Token_2";

/// One frontend over a temp dir: a free port and a registry file that must not appear when
/// the frontend refuses.
struct Setup {
    tmp: tempfile::TempDir,
    port: u16,
}

impl Setup {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().expect("tmp"),
            port: free_port(),
        }
    }

    fn registry(&self) -> PathBuf {
        self.tmp.path().join("registry.sqlite")
    }

    fn command(&self, vars: &[(&str, &str)]) -> Command {
        let mut command = frontend_command(self.port, &self.registry().display().to_string());
        for (name, value) in vars {
            command.env(name, value);
        }
        command
    }

    /// Runs the frontend to its exit: asserts `code`, nothing listening, no registry file, no
    /// "frontend started"; returns the output.
    fn expect_exit(&self, vars: &[(&str, &str)], code: i32, secrets: &[&str]) -> String {
        let mut frontend = Proc::spawn("frontend", self.command(vars));
        let status = frontend.wait_exit(STARTUP);
        let output = frontend.output();
        let status = status.unwrap_or_else(|| panic!("the frontend kept running:\n{output}"));
        assert_eq!(status.code(), Some(code), "exit code; output:\n{output}");
        assert!(
            !wait_listening(loopback(self.port), Duration::from_millis(300)),
            "nothing may listen after a refusal"
        );
        assert!(
            !self.registry().exists(),
            "no registry file may be created before the configuration is accepted:\n{output}"
        );
        assert!(!output.contains("frontend started"), "{output}");
        check_secrets(&frontend, secrets);
        output
    }

    fn serving(&self, vars: &[(&str, &str)]) -> Proc {
        start_frontend(self.command(vars), self.port)
    }

    fn client(&self) -> FrontendClient<'static> {
        FrontendClient {
            addr: loopback(self.port),
            token: Some(TOKEN),
            admin: Some(ADMIN),
        }
    }
}

fn check_secrets(frontend: &Proc, secrets: &[&str]) {
    let secrets: Vec<String> = secrets.iter().map(|s| (*s).to_owned()).collect();
    assert_no_secret_in(&outputs_of(&[frontend]), &secrets);
}

fn warn_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.split_whitespace().nth(1) == Some("WARN"))
        .collect()
}

fn assert_names(output: &str, names: &[&str]) {
    for name in names {
        assert!(
            output.contains(name),
            "output does not name {name}:\n{output}"
        );
    }
}

/// A service user JWT + seed and an account seed, as nats-setup writes them (only their
/// shape matters here: the refusals come before any connection).
fn service_credentials() -> (String, String, String) {
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let now = common::nats::unix_now();
    let claims = nodegate::jwt::UserClaims::new(user.public_key(), "svc", now);
    let jwt = claims
        .encode(&common::nats::NkeySigner(&account))
        .expect("jwt")
        .expose()
        .to_owned();
    (
        jwt,
        user.seed().expect("seed"),
        account.seed().expect("seed"),
    )
}

#[test]
fn sc02_registration_require_auth_without_token_exits_1_naming_the_token() {
    for switch in [
        "LOCALAI_REGISTRATION_REQUIRE_AUTH",
        "LOCALAI_DISTRIBUTED_REQUIRE_AUTH",
    ] {
        let setup = Setup::new();
        let output = setup.expect_exit(
            &[(switch, "true"), ("NODEGATE_ADMIN_TOKEN", ADMIN)],
            1,
            &[ADMIN],
        );
        assert_names(
            &output,
            &["LOCALAI_REGISTRATION_TOKEN", switch, "refusing to start"],
        );
    }
}

#[test]
fn sc01_no_token_starts_with_exactly_one_prominent_warning_and_open_node_routes() {
    let setup = Setup::new();
    let frontend = setup.serving(&[("NODEGATE_ADMIN_TOKEN", ADMIN)]);
    let log = frontend.output();
    let warns = warn_lines(&log);
    assert_eq!(warns.len(), 1, "exactly one WARN line:\n{log}");
    assert_names(
        warns[0],
        &[
            "SECURITY WARNING",
            "LOCALAI_REGISTRATION_TOKEN",
            "/api/node/",
            "WITHOUT",
        ],
    );
    // What the warning says is true: anyone may register (LocalAI's fail-open default).
    let client = FrontendClient {
        token: None,
        ..setup.client()
    };
    let response = client.register_raw(None, &worker_body("anyone", None));
    assert_eq!(response.status, 201, "{}", response.text());
    assert!(
        setup.registry().exists(),
        "the SQLite registry is created when serving"
    );
    check_secrets(&frontend, &[ADMIN]);
}

#[test]
fn sc06_token_without_nats_starts_protected_without_any_warning() {
    let setup = Setup::new();
    let frontend = setup.serving(&[
        ("LOCALAI_REGISTRATION_TOKEN", TOKEN),
        ("NODEGATE_ADMIN_TOKEN", ADMIN),
    ]);
    let log = frontend.output();
    assert!(warn_lines(&log).is_empty(), "no WARN line:\n{log}");
    assert!(log.contains("frontend started"), "{log}");
    let response = setup
        .client()
        .register_raw(None, &worker_body("anyone", None));
    assert_eq!(response.status, 401, "protected: {}", response.text());
    assert_eq!(setup.client().register("gpu")["status"], "pending");
    check_secrets(&frontend, &[TOKEN, ADMIN]);
}

#[test]
fn sc07_nats_require_auth_with_service_jwt_but_no_account_seed_is_refused() {
    let (jwt, seed, _) = service_credentials();
    for switch in [
        "LOCALAI_NATS_REQUIRE_AUTH",
        "LOCALAI_DISTRIBUTED_REQUIRE_AUTH",
    ] {
        let setup = Setup::new();
        // Nothing listens on the NATS port: the refusal comes before any connection.
        let nats_url = format!("nats://127.0.0.1:{}", free_port());
        let output = setup.expect_exit(
            &[
                (switch, "true"),
                ("LOCALAI_REGISTRATION_TOKEN", TOKEN),
                ("NODEGATE_ADMIN_TOKEN", ADMIN),
                ("LOCALAI_NATS_URL", &nats_url),
                ("LOCALAI_NATS_SERVICE_JWT", &jwt),
                ("LOCALAI_NATS_SERVICE_SEED", &seed),
            ],
            1,
            &[TOKEN, ADMIN, &jwt, &seed],
        );
        assert_names(&output, &["LOCALAI_NATS_ACCOUNT_SEED", "refusing to start"]);
    }
}

#[test]
fn an_invalid_account_seed_exits_2_naming_the_variable_without_echoing_it() {
    let user_seed = nkeys::KeyPair::new_user().seed().expect("seed");
    for (seed, says) in [
        ("SAnot-a-seed-at-all-but-secret", "not a valid nkey seed"),
        (user_seed.as_str(), "must be an account seed"),
    ] {
        let setup = Setup::new();
        let output = setup.expect_exit(
            &[
                ("LOCALAI_REGISTRATION_TOKEN", TOKEN),
                ("NODEGATE_ADMIN_TOKEN", ADMIN),
                ("LOCALAI_NATS_ACCOUNT_SEED", seed),
            ],
            2,
            &[TOKEN, ADMIN, seed],
        );
        assert_names(&output, &["LOCALAI_NATS_ACCOUNT_SEED", says]);
    }
}

#[test]
fn an_admin_token_equal_to_the_registration_token_exits_2() {
    let setup = Setup::new();
    let output = setup.expect_exit(
        &[
            ("LOCALAI_REGISTRATION_TOKEN", TOKEN),
            ("NODEGATE_ADMIN_TOKEN", TOKEN),
        ],
        2,
        &[TOKEN],
    );
    assert_names(
        &output,
        &["NODEGATE_ADMIN_TOKEN", "LOCALAI_REGISTRATION_TOKEN"],
    );
}
