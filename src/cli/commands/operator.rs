//! What the operator commands (`status`, `queue add`, `reports`, `retry`, `analysis search
//! --xpath`) share: the configuration (only for `data_dir`), the daemon's existing database,
//! and the multi-item result document for commands whose failures are local, not API errors.
//!
//! These commands never need the API key: they read (or, for `queue add` and `retry`, make
//! one small write to) the database the daemon keeps, exactly as a producer with `sqlite3`
//! would. They never create or migrate the database: a missing one is exit 1 with a message
//! saying to start the daemon or check `data_dir`; one of a newer jbxd is exit 78.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::{CliError, Context, Outcome};
use crate::config::{self, Config, LoadOptions};
use crate::db::{Db, DbError};

/// The configuration named by `--config` (default file, or defaults when it is missing),
/// without the API key. A bad configuration is exit 78 with the loader's message.
pub fn load_config(context: &Context) -> Result<Config, CliError> {
    let opts = LoadOptions {
        config_file: context.config_file.clone(),
        overrides: Vec::new(),
    };
    config::load_config(&opts)
        .map(|loaded| loaded.config)
        .map_err(config_error)
}

/// A configuration loading error as the CLI's exit-78 error.
pub fn config_error(error: config::ConfigError) -> CliError {
    CliError::Config(error)
}

/// Opens the daemon's database for an operator command: never creates or migrates it.
pub async fn open_db(config: &Config) -> Result<Db, CliError> {
    let path = config.db_path();
    Db::open_existing(&path).await.map_err(|error| match error {
        // The operator must upgrade jbxd: a configuration problem, like for the daemon.
        DbError::SchemaNewer { .. } => CliError::NewerDatabase(error.to_string()),
        other => CliError::Failed(anyhow::Error::new(other)),
    })
}

/// The configuration and the open database.
pub async fn open(context: &Context) -> Result<(Config, Db), CliError> {
    let config = load_config(context)?;
    let db = open_db(&config).await?;
    Ok((config, db))
}

/// A path stored relative to `data_dir`, made absolute for people and scripts.
pub fn absolute(data_dir: &Path, rel: &str) -> PathBuf {
    data_dir.join(rel)
}

/// A database error while a command ran.
pub fn db_failed(error: DbError) -> CliError {
    CliError::Failed(anyhow::Error::new(error))
}

/// One failed item of a local multi-item command (`errors` in `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct LocalFailure {
    /// The id or URL the failure belongs to.
    pub indicator: String,
    pub message: String,
}

impl LocalFailure {
    pub fn new(indicator: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            indicator: indicator.into(),
            message: message.into(),
        }
    }
}

impl crate::cli::output::Failure for LocalFailure {
    fn stderr_line(&self) -> &str {
        &self.message
    }
}

/// The table or `{"data": [...], "errors": [...]}` on stdout, one line per failure and the
/// `Successful`/`Partially Successful`/`Failed` summary on stderr (as for the API commands).
pub fn finish<T: Serialize>(
    context: &Context,
    data: &[T],
    failures: &[LocalFailure],
    table: impl FnOnce(&[T]) -> comfy_table::Table,
) -> Result<Outcome, CliError> {
    crate::cli::output::finish_items(context, data, failures, table)
}
