//! Command-level failures and their exit codes.

use std::process::ExitCode;

use crate::config::ConfigError;

/// Why a command could not do its job as a whole (per-item failures are counted in an
/// [`Outcome`](super::Outcome) instead).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments that clap accepted but that are still unusable (e.g. a bad `--param`).
    #[error("{0}")]
    Usage(String),
    /// A usage error reported in the seed's failure shape (`Search failed. Status Code: 400.
    /// Message: …`): printed as it is, exit 2.
    #[error("{0}")]
    Refused(String),
    /// Settings that cannot work (connection flags and `JBX_*` variables, the API key, the
    /// configuration file); nothing was sent. The message is the daemon's for the same fault.
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    /// The daemon's database was made by a newer jbxd: only an upgrade helps (exit 78, as
    /// for the daemon).
    #[error("{0}")]
    NewerDatabase(String),
    /// Anything else that ended the command.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// sysexits' EX_CONFIG, which service managers and scripts know as "fix the configuration".
pub const EXIT_CONFIG: u8 = 78;
/// clap's own exit code for usage errors.
pub const EXIT_USAGE: u8 = 2;

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) | Self::Refused(_) => ExitCode::from(EXIT_USAGE),
            Self::Config(_) | Self::NewerDatabase(_) => ExitCode::from(EXIT_CONFIG),
            Self::Failed(_) => ExitCode::FAILURE,
        }
    }
}

impl From<super::args::BadArgument> for CliError {
    fn from(error: super::args::BadArgument) -> Self {
        Self::Usage(error.0)
    }
}

impl From<crate::api::ParamError> for CliError {
    fn from(error: crate::api::ParamError) -> Self {
        Self::Usage(error.to_string())
    }
}
