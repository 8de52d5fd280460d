//! The bootstrap of `jbxd run` ([`main`]): everything the process needs before the daemon
//! proper ([`run`](super::run)) can start, in order, each failure with its exit code.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::process::{disable_core_dumps, install_signal_handler};
use super::{DatabaseReplaced, EXIT_DATABASE_REPLACED, EXIT_FAILURE, RunOptions, run, startup};
use crate::api::JoeClient;
use crate::app::App;
use crate::config::{self, EXIT_CONFIG, LoadOptions};
use crate::telemetry;

/// What `jbxd run` was given on the command line.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    pub load: LoadOptions,
    /// `--new-database`: create a database even though `data_dir` holds samples or reports
    /// (without it, a missing database next to existing storage is exit 78).
    pub new_database: bool,
}

/// The bootstrap of `jbxd run`: returns the process exit code (0 after a clean stop, 75 when
/// the database file was deleted or replaced under the daemon, 78 for configuration errors,
/// 1 otherwise). Call it from within a multi-threaded tokio runtime,
/// without having installed a tracing subscriber (this installs the configured one).
pub async fn main(opts: DaemonOptions) -> ExitCode {
    disable_core_dumps();
    // First of all: a stop request during start-up must end in a clean stop (run() sees the
    // cancelled token and returns at once), not in death by the signal's default action.
    let cancel = CancellationToken::new();
    if let Err(error) = install_signal_handler(cancel.clone()) {
        eprintln!("jbxd: cannot install the signal handler: {error}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let loaded = match config::load(&opts.load) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("jbxd: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _telemetry = match telemetry::init(&loaded.loaded.config.log) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("jbxd: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match &loaded.loaded.file {
        Some(path) => {
            tracing::info!(config = %path.display(), key_source = %loaded.key_source, "configuration loaded")
        }
        None => {
            tracing::info!(key_source = %loaded.key_source, "configuration loaded (defaults, no file)")
        }
    }
    if let Some((_, source)) = &loaded.report_password {
        tracing::info!(password_source = %source, encrypt = loaded.loaded.config.reports.encrypt, "report password loaded");
    }
    for warning in &loaded.loaded.warnings {
        tracing::warn!("{warning}");
    }
    let settings = loaded.client_settings();
    let config = loaded.loaded.config;

    let _lock = match startup::take_lock(&config) {
        Ok(lock) => lock,
        Err((code, message)) => {
            tracing::error!("{message}");
            eprintln!("jbxd: {message}");
            return ExitCode::from(code);
        }
    };

    if !opts.new_database
        && let Err(message) = startup::refuse_new_database_next_to_storage(&config)
    {
        tracing::error!("{message}");
        eprintln!("jbxd: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let db = match startup::open_checked_db(&config.db_path()).await {
        Ok(db) => db,
        Err((code, message)) => {
            tracing::error!(error = %message, "cannot open the database");
            eprintln!("jbxd: {message}");
            return ExitCode::from(code);
        }
    };
    let client = match JoeClient::new(settings) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the API client");
            eprintln!("jbxd: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let app = App::new(config, db, client);

    match run(app, cancel, RunOptions::default()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) if error.downcast_ref::<DatabaseReplaced>().is_some() => {
            // Logged loudly where it was found; stderr for whoever started us by hand.
            eprintln!("jbxd: {error:#}");
            ExitCode::from(EXIT_DATABASE_REPLACED)
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "daemon failed");
            eprintln!("jbxd: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
