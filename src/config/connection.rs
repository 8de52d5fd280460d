//! The connection: where the API key comes from (and the checks every key file passes), and
//! the API client settings built from `[api]`.

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Config, ConfigError};
use crate::api::{ApiKey, ApiKeyError, ClientSettings, RetryPolicy};

/// The systemd credential name (`LoadCredential=jbx_api_key:/etc/jbxd/api_key`).
pub const CREDENTIAL_NAME: &str = "jbx_api_key";

/// Where the API key came from (shown by `jbxd config check` instead of the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `$CREDENTIALS_DIRECTORY/jbx_api_key` (systemd `LoadCredential=`).
    Credential(PathBuf),
    /// `api.key_file`.
    KeyFile(PathBuf),
    /// `JBX_API_KEY`.
    Env,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Credential(p) => write!(f, "systemd credential {}", p.display()),
            Self::KeyFile(p) => write!(f, "api.key_file {}", p.display()),
            Self::Env => f.write_str("environment variable JBX_API_KEY"),
        }
    }
}

/// Finds the API key: `$CREDENTIALS_DIRECTORY/jbx_api_key`, then `api.key_file`, then
/// `JBX_API_KEY`. Key files must be regular files, owned by us or root, not accessible by
/// group or others.
pub fn resolve_api_key(config: &Config) -> Result<(ApiKey, KeySource), ConfigError> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(CREDENTIAL_NAME);
        if path.exists() {
            let key = read_key_file(&path)?;
            return Ok((key, KeySource::Credential(path)));
        }
    }
    if let Some(path) = &config.api.key_file {
        let key = read_key_file(path)?;
        return Ok((key, KeySource::KeyFile(path.clone())));
    }
    if let Ok(raw) = std::env::var("JBX_API_KEY") {
        let key =
            ApiKey::new(&raw).map_err(|e| key_error(&e, "environment variable JBX_API_KEY"))?;
        return Ok((key, KeySource::Env));
    }
    Err(ConfigError::ApiKey(
        "no API key: set api.key_file (a file of mode 0600), or LoadCredential=jbx_api_key:... \
         in the systemd unit, or JBX_API_KEY"
            .into(),
    ))
}

fn key_error(error: &ApiKeyError, source: &str) -> ConfigError {
    ConfigError::ApiKey(match error {
        ApiKeyError::Empty => format!("the API key in {source} is empty"),
        ApiKeyError::BadCharacters => {
            format!("the API key in {source} contains whitespace or control characters")
        }
    })
}

/// Reads a secret file after checking it cannot be read or changed by others.
fn read_key_file(path: &Path) -> Result<ApiKey, ConfigError> {
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| ConfigError::ApiKey(format!("cannot read the key file {shown}: {e}")))?;
    // A symlink is judged by its target (systemd credentials and admins use them); the target
    // must be a regular file.
    let meta = if meta.file_type().is_symlink() {
        std::fs::metadata(path)
            .map_err(|e| ConfigError::ApiKey(format!("cannot read the key file {shown}: {e}")))?
    } else {
        meta
    };
    if !meta.is_file() {
        return Err(ConfigError::ApiKey(format!(
            "the key file {shown} is not a regular file"
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let what = match (mode & 0o044 != 0, mode & 0o022 != 0) {
            (true, true) => "readable and writable by group/others",
            (true, false) => "readable by group/others",
            (false, true) => "writable by group/others",
            (false, false) => "accessible by group/others",
        };
        return Err(ConfigError::ApiKey(format!(
            "{shown} is {what} (mode {mode:04o}); run chmod 600 {shown}"
        )));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(ConfigError::ApiKey(format!(
            "{shown} is owned by uid {}, not by this user (uid {euid}) or root; run chown",
            meta.uid()
        )));
    }
    let raw = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::ApiKey(format!("cannot read the key file {shown}: {e}")))?;
    ApiKey::new(&raw).map_err(|e| key_error(&e, &format!("the key file {shown}")))
}

/// The API client settings of the daemon: the configured timeouts and attempts, patient
/// backoff (1 s base, 60 s cap) and `Retry-After` honoured up to an hour, since nobody waits
/// at a terminal.
pub fn client_settings(config: &Config, api_key: ApiKey) -> ClientSettings {
    let mut s = ClientSettings::new(&config.api.url, api_key);
    s.accept_tac = config.api.accept_tac;
    s.ca_file = config.api.ca_file.clone();
    s.proxy = config.api.proxy.clone();
    s.connect_timeout = Duration::from_secs(config.api.connect_timeout_secs);
    s.read_timeout = Duration::from_secs(config.api.read_timeout_secs);
    s.request_timeout = Duration::from_secs(config.api.request_timeout_secs);
    s.retry = RetryPolicy {
        max_attempts: config.api.attempts,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
        max_retry_after: Duration::from_secs(3600),
    };
    s.max_download_bytes = Some(config.reports.max_size);
    s
}
