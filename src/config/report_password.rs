//! The report password (`encrypt-with-password`, issue 10 §4) as a configured secret:
//! `[reports] password_file`, `password_credential` or `password_command` (the sources every
//! secret shares, `secrets.rs`), never an environment variable, a command line or `url_queue`.
//!
//! The daemon sends it with every submission when `reports.encrypt = true`
//! (`ClientSettings::encrypt_password`); code that opens encrypted downloads calls
//! [`report_password`]. The CLI reads it from `--encrypt-with-password-file`
//! ([`secret_from_flag_file`]).

use std::path::Path;

use super::Config;
use super::error::ConfigError;
use super::layers::Env;
use super::secret_keys::{command_options, report_password_keys};
use super::secrets::{SecretKeys, SecretSource, read_secret_file, resolve_secret};
use crate::api::Secret;

/// The report password and where it came from; `Ok(None)` when none is configured. Runs
/// `reports.password_command` when that is the source: call it once and keep the result.
pub fn resolve_report_password(
    config: &Config,
    env: &Env,
) -> Result<Option<(Secret, SecretSource)>, ConfigError> {
    resolve_secret(
        &report_password_keys(&config.reports),
        env,
        &command_options(config),
    )
}

/// The report password, for code that opens encrypted downloads (the process environment
/// reaches a `systemd` credential or a vault command). `Ok(None)`: none is configured.
pub fn report_password(config: &Config) -> Result<Option<Secret>, ConfigError> {
    Ok(resolve_report_password(config, &Env::process())?.map(|(secret, _)| secret))
}

/// A secret from a file named on the command line (`--encrypt-with-password-file FILE`),
/// with the key-file checks: mode 0600, owned by this user or root, not empty.
pub fn secret_from_flag_file(label: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let keys = SecretKeys {
        label,
        file_key: "",
        credential_key: "",
        command_key: "",
        file: Some(path),
        credential: None,
        command: None,
        default_credential: None,
        env: None,
    };
    read_secret_file(&keys, path)
}
