//! `posture`: configuration parsing and the security posture (security.md §3 SC-01…SC-13,
//! §5.5, FZ-6). Input: an environment as text.
//!
//! ```text
//! worker                                  (first line: frontend, worker or agent-worker)
//! LOCALAI_REGISTRATION_REQUIRE_AUTH=true  (a variable; \n, \r, \t, \\ and \xNN escapes)
//! file LOCALAI_REGISTRATION_TOKEN_FILE=tok\n   (what the adapter read from that file)
//! unreadable LOCALAI_NATS_TLS_CA=permission denied
//! host=worker-1                           (or: nohost)
//! ```

use nodegate_core::config::{
    API_URL, Config, DISTRIBUTED_REQUIRE_AUTH, FileContents, Host, NATS_CREDS_FILE,
    NATS_REQUIRE_AUTH, NATS_TLS_KEY, NATS_URL, REGISTER_TO, REGISTRATION_REQUIRE_AUTH,
    REGISTRATION_TOKEN, REGISTRATION_TOKEN_FILE, Role, Vars, known_variables,
};
use nodegate_core::posture::{Layer, LayerState, Posture, RefusalKind};

use crate::util::{lines, twin, twin_bytes, unescape};

/// Files whose content is a secret.
const SECRET_FILES: &[&str] = &[REGISTRATION_TOKEN_FILE, NATS_CREDS_FILE, NATS_TLS_KEY];
/// Variables that hold URLs, whose user-info password is a secret.
const URL_VARS: &[&str] = &[NATS_URL, REGISTER_TO, API_URL];

/// A decoded environment.
#[derive(Debug, Clone)]
struct Env {
    role: Role,
    vars: Vec<(String, String)>,
    files: Vec<(String, Result<Vec<u8>, String>)>,
    hostname: Option<String>,
}

/// Oracle of the `posture` target. Panics when:
///
/// - a require-auth switch applies and a layer it covers is reported open (registration:
///   `LOCALAI_REGISTRATION_REQUIRE_AUTH` or the umbrella, on the frontend and the worker; NATS:
///   `LOCALAI_NATS_REQUIRE_AUTH` or the umbrella, when `LOCALAI_NATS_URL` is set) — SC-02, SC-07;
/// - the server's auth policy is anonymous while registration auth is required and startup
///   goes on, or bearer while the file-transfer layer is reported open;
/// - startup is refused although no switch applies, or names a switch that is off (SC-01, SC-06);
/// - the posture is `Anonymous` without an open layer or `Protected` with one, or the warnings
///   do not match the open layers one to one;
/// - the layers are not those of the role, or NATS is reported configured without a URL;
/// - a secret (secret variables, the token, creds and TLS key files, URL passwords) influences
///   any text: `Debug` of the variables, files, configuration and posture, error messages and
///   warnings are identical for the twin secrets (SC-03…SC-05 error texts, NA-17, NA-18).
pub fn posture(data: &[u8]) {
    let env = decode(data);
    let twin_env = twin_env(&env);
    let texts = evaluate(&env);
    assert_eq!(texts, evaluate(&twin_env), "a secret reached a text");
}

/// Parses and evaluates `env`, checks the posture rules, and returns every text an operator or
/// a log could see.
fn evaluate(env: &Env) -> Vec<String> {
    let vars = Vars::from_pairs(env.vars.iter().cloned());
    let mut files = FileContents::new();
    for (var, content) in &env.files {
        files.insert(var, content.clone());
    }
    let host = Host {
        hostname: env.hostname.clone(),
        pid: 7,
    };
    let mut texts = vec![format!("{vars:?}"), format!("{files:?}")];
    let config = match Config::parse(env.role, &vars, &files, &host) {
        Ok(config) => config,
        Err(error) => {
            texts.push(error.to_string());
            texts.push(format!("{error:?}"));
            return texts;
        }
    };
    texts.push(format!("{config:?}"));
    let posture = Posture::evaluate(&config);
    assert_eq!(
        posture,
        Posture::evaluate(&config),
        "the evaluation is deterministic"
    );
    check_posture(env, &vars, &config, &posture);
    texts.push(format!("{posture:?}"));
    texts.extend(posture.warnings().iter().map(ToString::to_string));
    if let Some(refusal) = posture.refusal() {
        texts.push(refusal.to_string());
    }
    texts
}

fn check_posture(env: &Env, vars: &Vars, config: &Config, posture: &Posture) {
    let on = |name: &str| {
        vars.get(name).is_some_and(|v| {
            ["1", "t", "T", "true", "TRUE", "True"].contains(&v)
                || v.eq_ignore_ascii_case("yes")
                || v.eq_ignore_ascii_case("on")
        })
    };
    let registration_switch = env.role != Role::AgentWorker && on(REGISTRATION_REQUIRE_AUTH);
    let umbrella = on(DISTRIBUTED_REQUIRE_AUTH);
    let registration_required = env.role != Role::AgentWorker && (registration_switch || umbrella);
    let nats_url = vars.get(NATS_URL).is_some();
    let nats_required = nats_url && (on(NATS_REQUIRE_AUTH) || umbrella);
    let has_token = config.registration.token.is_some();
    assert_eq!(config.registration_auth_required(), registration_required);

    let expected_layers: &[Layer] = match env.role {
        Role::Frontend => &[Layer::NodeEndpoints, Layer::NatsBus],
        Role::Worker => &[
            Layer::NodeEndpoints,
            Layer::FileTransfer,
            Layer::NatsBus,
        ],
        Role::AgentWorker => &[Layer::NodeEndpoints, Layer::NatsBus],
    };

    if let Some(error) = posture.refusal() {
        assert!(posture.layers().is_empty() && posture.warnings().is_empty());
        match error.kind() {
            RefusalKind::RegistrationTokenMissing => {
                assert!(registration_required && !has_token, "SC-01/SC-06: {error}");
                assert_eq!(error.variable(), REGISTRATION_TOKEN);
            }
            RefusalKind::NatsCredentialsMissing | RefusalKind::NatsAccountSeedMissing => {
                assert!(nats_required, "refused NATS without a switch: {error}");
            }
        }
        let by = error.required_by().expect("a refusal names its switch");
        assert!(on(by), "{by} named but not set");
        assert!(
            known_variables(env.role)
                .iter()
                .any(|v| v.name == error.variable()),
            "{} is not a variable of the role",
            error.variable()
        );
        // SC-02: registration first.
        if registration_required && !has_token {
            assert_eq!(error.kind(), RefusalKind::RegistrationTokenMissing);
        }
        return;
    }

    assert!(
        !registration_required || has_token,
        "SC-02: registration auth required without a token, yet startup goes on"
    );
    let layers: Vec<Layer> = posture.layers().iter().map(|l| l.layer).collect();
    assert_eq!(layers, expected_layers, "layers of {:?}", env.role);
    let open: Vec<Layer> = posture
        .layers()
        .iter()
        .filter(|l| matches!(l.state, LayerState::Open { .. }))
        .map(|l| l.layer)
        .collect();
    match posture {
        Posture::Protected { .. } => assert!(open.is_empty()),
        Posture::Anonymous { warnings, .. } => {
            assert!(!open.is_empty());
            let warned: Vec<Layer> = warnings.iter().map(|w| w.layer).collect();
            assert_eq!(warned, open, "one warning per open layer");
            for warning in warnings {
                let Some(LayerState::Open { fix }) = posture.layer(warning.layer) else {
                    panic!("warning for a layer that is not open");
                };
                assert_eq!(warning.fix, fix);
                assert!(warning.message.contains(fix), "the warning names {fix}");
            }
        }
        Posture::Refused { .. } => unreachable!("handled above"),
    }

    let token_layers = [Layer::FileTransfer];
    for layer in &open {
        if registration_required {
            assert!(
                *layer == Layer::NatsBus
                    || (*layer == Layer::NodeEndpoints && env.role == Role::AgentWorker),
                "{layer:?} is open although registration auth is required"
            );
        }
        if nats_required {
            assert_ne!(*layer, Layer::NatsBus, "SC-07: NATS open although required");
        }
        if token_layers.contains(layer)
            || (*layer == Layer::NodeEndpoints && env.role == Role::Frontend)
        {
            assert!(!has_token, "{layer:?} open with a token");
        }
    }
    for report in posture.layers() {
        let token_layer = token_layers.contains(&report.layer)
            || (report.layer == Layer::NodeEndpoints && env.role == Role::Frontend);
        if token_layer && matches!(report.state, LayerState::Protected { .. }) {
            assert!(has_token, "{:?} protected without a token", report.layer);
        }
    }
    if env.role == Role::Worker {
        let file_transfer = posture.layer(Layer::FileTransfer);
        assert_eq!(
            config.auth_policy().is_anonymous(),
            matches!(file_transfer, Some(LayerState::Open { .. })),
            "the file server's policy and its reported layer disagree"
        );
    }
    if registration_required {
        assert!(
            !config.auth_policy().is_anonymous(),
            "anonymous although required"
        );
    }
    // Only what runs: without a frontend a worker or agent has no node id and uses no NATS.
    let nats_used =
        nats_url && (env.role == Role::Frontend || config.registration.register_to.is_some());
    if !nats_used {
        assert_eq!(
            posture.layer(Layer::NatsBus),
            Some(LayerState::NotConfigured)
        );
    }
}

/// Reads the text format of the module documentation.
fn decode(data: &[u8]) -> Env {
    let mut lines = lines(data);
    let role = match lines.next().unwrap_or_default() {
        b"frontend" => Role::Frontend,
        b"agent-worker" => Role::AgentWorker,
        _ => Role::Worker,
    };
    let mut env = Env {
        role,
        vars: Vec::new(),
        files: Vec::new(),
        hostname: Some("worker-1".to_owned()),
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(&unescape(bytes)).into_owned();
    for line in lines {
        if line == b"nohost" {
            env.hostname = None;
        } else if let Some(host) = line.strip_prefix(b"host=") {
            env.hostname = Some(text(host));
        } else if let Some((name, value)) = line
            .strip_prefix(b"file ")
            .and_then(|rest| split_at_eq(rest))
        {
            env.files.push((text(name), Ok(unescape(value))));
        } else if let Some((name, value)) = line
            .strip_prefix(b"unreadable ")
            .and_then(|rest| split_at_eq(rest))
        {
            env.files.push((text(name), Err(text(value))));
        } else if let Some((name, value)) = split_at_eq(line) {
            env.vars.push((text(name), text(value)));
        }
    }
    env
}

fn split_at_eq(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = line.iter().position(|&b| b == b'=')?;
    Some((&line[..eq], &line[eq + 1..]))
}

/// The same environment with every secret replaced by its twin.
fn twin_env(env: &Env) -> Env {
    let secret_vars: Vec<&str> = Role::ALL
        .iter()
        .flat_map(|&role| known_variables(role))
        .filter(|v| v.secret)
        .map(|v| v.name)
        .collect();
    let mut twin_env = env.clone();
    for (name, value) in &mut twin_env.vars {
        if secret_vars.contains(&name.as_str()) {
            *value = twin(value);
        } else if URL_VARS.contains(&name.as_str()) {
            *value = twin_password(value);
        }
    }
    for (name, content) in &mut twin_env.files {
        if SECRET_FILES.contains(&name.as_str())
            && let Ok(bytes) = content
        {
            *bytes = twin_bytes(bytes);
        }
    }
    twin_env
}

/// `[scheme://]user:password@host…` with the password replaced by its twin. Without a scheme
/// the value still carries credentials: NATS clients read `user:password@host:4222` as
/// `nats://user:password@host:4222`.
fn twin_password(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let rest = &url[authority_start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}{}",
        &url[..authority_start + colon + 1],
        twin(&userinfo[colon + 1..]),
        &url[authority_start + at..]
    )
}
