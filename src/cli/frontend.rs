//! `nodegate frontend`: the reference frontend on tokio + hyper
//! ([`crate::tokio_adapter::frontend::run_frontend`]).

use std::sync::Arc;

use tracing::error;

use super::{EXIT_CONFIG, EXIT_FAILED, preflight, refuse_setting};
use crate::auth::TokenSet;
use crate::config::{
    Config, ConfigError, ConfigProblem, NATS_ACCOUNT_SEED, REGISTRY, RegistryLocation,
};
use crate::nodes::api::FrontendPolicy;
use crate::posture::Posture;
use crate::tokio_adapter::frontend::store::{MemoryStore, RegistryStore, SqliteStore};
use crate::tokio_adapter::frontend::{self, FrontendSetup, MintError};

/// Runs the frontend to its exit status.
pub(super) async fn run(config: Config, program: &str) -> u8 {
    let Some(settings) = config.frontend.clone() else {
        error!("no frontend settings: Config::parse(Role::Frontend) always yields them");
        return EXIT_FAILED;
    };
    // The account seed is checked by the key library, which only the adapter has.
    let minter = match frontend::minter_from(
        config.nats.account_seed.as_ref(),
        config.nats.worker_jwt_ttl,
    ) {
        Ok(minter) => minter,
        Err(error) => {
            let found = match error {
                MintError::Invalid => None,
                MintError::WrongKind(kind) => Some(kind),
            };
            let error = ConfigError::new(
                NATS_ACCOUNT_SEED,
                ConfigProblem::InvalidAccountSeed { found },
            );
            let _ = refuse_setting(program, &error, true);
            return EXIT_CONFIG;
        }
    };
    // A refused start binds nothing and creates no registry file; otherwise the address and
    // the registry are checked here, so that what cannot be used is reported as the setting
    // to change rather than as an I/O error.
    if let Some(refusal) = Posture::evaluate(&config).refusal() {
        error!(
            variable = refusal.variable(),
            "refusing to start: {refusal}"
        );
        return EXIT_FAILED;
    }
    if let Err(error) = preflight::frontend(&settings) {
        let _ = refuse_setting(program, &error, true);
        return EXIT_CONFIG;
    }
    let store: Arc<dyn RegistryStore> = match &settings.registry {
        RegistryLocation::Memory => Arc::new(MemoryStore::new()),
        RegistryLocation::File(path) => match SqliteStore::open(path) {
            Ok(store) => Arc::new(store),
            Err(reason) => {
                let error = ConfigError::new(
                    REGISTRY,
                    ConfigProblem::UnusableFile {
                        path: path.display().to_string(),
                        reason: reason.to_string(),
                    },
                );
                let _ = refuse_setting(program, &error, true);
                return EXIT_CONFIG;
            }
        },
    };
    let setup = FrontendSetup {
        policy: FrontendPolicy {
            nodes: config.auth_policy(),
            admin: settings
                .admin_token
                .as_ref()
                .map(|token| TokenSet::new(token, None)),
            auto_approve: settings.auto_approve_nodes,
        },
        store,
        minter,
        stale_after: settings.stale_after,
        sweep_every: settings.health_check_interval,
    };
    frontend::run_frontend(config, setup, &settings.bind()).await
}
