//! Which configuration keys feed each secret: the [`SecretKeys`] of the API key (`[api]`) and
//! of the report password (`[reports]`), and how vault commands run (`[secrets]`). A leaf the
//! resolver, the validation and the report password all use.

use std::time::Duration;

use super::layers::ENV_KEY;
use super::secrets::{CommandOptions, SecretKeys};
use super::{ApiConfig, Config, ReportsConfig};

/// The systemd credential name (`LoadCredential=jbx_api_key:/etc/jbxd/api_key`).
pub const CREDENTIAL_NAME: &str = "jbx_api_key";

/// The sources of the API key as `[api]` configures them.
pub fn api_key_keys(api: &ApiConfig) -> SecretKeys<'_> {
    SecretKeys {
        label: "API key",
        file_key: "api.key_file",
        credential_key: "api.key_credential",
        command_key: "api.key_command",
        file: api.key_file.as_deref(),
        credential: api.key_credential.as_deref(),
        command: api.key_command.as_deref(),
        default_credential: Some(CREDENTIAL_NAME),
        env: Some(ENV_KEY),
    }
}

/// The sources of the report password as `[reports]` configures them.
pub fn report_password_keys(reports: &ReportsConfig) -> SecretKeys<'_> {
    SecretKeys {
        label: "report password",
        file_key: "reports.password_file",
        credential_key: "reports.password_credential",
        command_key: "reports.password_command",
        file: reports.password_file.as_deref(),
        credential: reports.password_credential.as_deref(),
        command: reports.password_command.as_deref(),
        default_credential: None,
        env: None,
    }
}

/// How vault commands run, as `[secrets]` says.
pub fn command_options(config: &Config) -> CommandOptions {
    CommandOptions {
        timeout: Duration::from_secs(config.secrets.command_timeout_secs),
        extra_env: config.secrets.command_env.clone(),
    }
}
