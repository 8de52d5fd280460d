//! [`ConfigError`]: every way the configuration or the connection settings can be unusable,
//! for the daemon and the CLI alike (the one error type of the connection resolver). Always exit code 78 (`EX_CONFIG`), which the systemd unit
//! lists in `RestartPreventExitStatus=` so a typo does not become a restart loop.

use std::path::PathBuf;

/// `EX_CONFIG` from sysexits.h: every configuration error exits with it.
pub const EXIT_CONFIG: u8 = 78;

/// A configuration error: exit code 78, message naming the key and its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file is missing (when named explicitly), unreadable or not TOML.
    #[error("configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    /// A key that does not exist, or a value of the wrong type or out of range.
    #[error("configuration key `{key}` ({origin}): {message}")]
    Key {
        key: String,
        origin: String,
        message: String,
    },
    /// The API key is missing, empty, or its file is unsafe.
    #[error("API key: {0}")]
    ApiKey(String),
    /// Another secret (the report password): its source is missing, unsafe or failed.
    #[error("{label}: {message}")]
    Secret {
        label: &'static str,
        message: String,
    },
    /// Settings the API client refuses once it reads them (a CA file that is unreadable or not
    /// PEM, a proxy it cannot use).
    #[error("{0}")]
    Client(String),
}

impl ConfigError {
    /// Always 78 (`EX_CONFIG`).
    pub fn exit_code(&self) -> u8 {
        EXIT_CONFIG
    }
}
