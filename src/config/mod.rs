//! Daemon configuration: the typed keys of `jbxd.toml` (a public contract, documented in the
//! README and shipped with every default in `config/jbxd.toml`).
//!
//! Loading (defaults < TOML file < `JBXD_*` environment < flags) is put in order by `load.rs`,
//! one file per concern beside it: `layers.rs` (the providers), `origins.rs` (where a value came
//! from), `validate.rs` (rules beyond types), `paths.rs` (`drop_dir` and `data_dir` compared by
//! where they really are), `connection.rs` (the connection resolver the CLI shares: URL, API key, client settings),
//! `secrets.rs` (the sources every secret shares: file, credential, vault command),
//! `vault_command.rs` (running a vault command), `secret_keys.rs` (which keys configure each
//! secret),
//! `report_password.rs` (`[reports]`'s password), `redacted.rs`
//! (the `config check` output), `error.rs` (`ConfigError`, exit 78). This
//! file is the schema. Durations carry their unit in the key name.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod connection;
mod error;
mod layers;
mod load;
mod origins;
mod paths;
mod redacted;
mod report_password;
mod secret_keys;
mod secrets;
mod validate;
mod vault_command;

pub use connection::{
    Connection, ConnectionFlags, KeyLookup, KeySource, Pace, client, client_settings, command_line,
    resolve_api_key, settings,
};
pub use error::{ConfigError, EXIT_CONFIG};
pub use layers::{ENV_ACCEPT_TAC, ENV_KEY, ENV_URL, Env};
pub use load::{DEFAULT_CONFIG_FILE, LoadOptions, Loaded, LoadedWithKey, load, load_config};
pub use redacted::{check, redacted_toml};
pub use report_password::{report_password, resolve_report_password, secret_from_flag_file};
pub use secret_keys::{CREDENTIAL_NAME, api_key_keys, command_options, report_password_keys};
pub use secrets::{CommandOptions, SecretKeys, SecretSource, resolve_secret};
pub use validate::validate_schedule;
pub use vault_command::{CHILD_ENV, CHILD_ENV_PREFIXES};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Database (`jbxd.db`), quarantined samples and reports live here.
    pub data_dir: PathBuf,
    /// Files dropped here are submitted.
    pub drop_dir: PathBuf,
    pub api: ApiConfig,
    /// Default submission parameters for every item.
    pub submission: SubmissionConfig,
    pub intake: IntakeConfig,
    pub dedup: DedupConfig,
    pub pipeline: PipelineConfig,
    pub poll: PollConfig,
    pub reports: ReportsConfig,
    pub health: HealthConfig,
    pub log: LogConfig,
    pub secrets: SecretsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/jbxd"),
            drop_dir: PathBuf::from("/srv/jbx-drop"),
            api: ApiConfig::default(),
            submission: SubmissionConfig::default(),
            intake: IntakeConfig::default(),
            dedup: DedupConfig::default(),
            pipeline: PipelineConfig::default(),
            poll: PollConfig::default(),
            reports: ReportsConfig::default(),
            health: HealthConfig::default(),
            log: LogConfig::default(),
            secrets: SecretsConfig::default(),
        }
    }
}

/// The Joe Sandbox connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Server URL or API base (`.../api`).
    pub url: String,
    /// File holding the API key (mode 0600 or stricter). The key may also come from
    /// `$CREDENTIALS_DIRECTORY/jbx_api_key` (systemd `LoadCredential=`, which wins when
    /// present), `key_credential`, `key_command` or `JBX_API_KEY` (`secrets.rs`).
    pub key_file: Option<PathBuf>,
    /// A systemd credential holding the key, by name (`$CREDENTIALS_DIRECTORY/<name>`).
    pub key_credential: Option<String>,
    /// A vault command printing the key on its first stdout line, as an argv array run
    /// without a shell, e.g. `["pass", "show", "joe/api"]`. Re-run when the server rejects
    /// the key and on SIGHUP, never per request.
    pub key_command: Option<Vec<String>>,
    /// Accept Joe Sandbox Cloud's terms and conditions (`accept-tac=1`).
    pub accept_tac: bool,
    /// Extra CA certificates (PEM) for on-premise servers with a private CA.
    pub ca_file: Option<PathBuf>,
    /// HTTP(S) proxy URL.
    pub proxy: Option<String>,
    pub connect_timeout_secs: u64,
    pub read_timeout_secs: u64,
    pub request_timeout_secs: u64,
    /// Attempts per read-only call (1 = no retry).
    pub attempts: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            url: crate::api::DEFAULT_SERVER_URL.to_owned(),
            key_file: None,
            key_credential: None,
            key_command: None,
            accept_tac: false,
            ca_file: None,
            proxy: None,
            connect_timeout_secs: 10,
            read_timeout_secs: 60,
            request_timeout_secs: 120,
            attempts: 3,
        }
    }
}

/// Default submission parameters (per-URL `params` in `url_queue` override them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionConfig {
    pub systems: Vec<String>,
    pub tags: Vec<String>,
    /// Prepended to jbxd's own `jbxd:<key>` marker in `comments`.
    pub comments: Option<String>,
    /// Any other parameter jbxapi knows, by its API name, e.g. `"internet-access" = "1"`.
    pub params: std::collections::BTreeMap<String, String>,
}

/// The drop folder and the URL queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// A file is taken when its size and mtime stayed unchanged this long.
    pub settle_ms: u64,
    /// Full rescans of the drop folder (the watcher only hurries them).
    pub scan_interval_secs: u64,
    /// Largest sample accepted; larger files are rejected.
    pub max_file_size: u64,
    /// Accept files with more than one hard link.
    pub allow_hardlinks: bool,
    /// How often `url_queue` is checked for new rows when the database's WAL cannot be
    /// watched; with the watch, rows are checked for soon after every database change and
    /// every `max(url_poll_ms, 5 s)` as a safety net (`intake::urls`).
    pub url_poll_ms: u64,
    /// Longest URL accepted, in bytes.
    pub max_url_length: usize,
    /// How long an unreadable file is retried before it is rejected.
    pub unreadable_grace_secs: u64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            settle_ms: 2000,
            scan_interval_secs: 30,
            max_file_size: 100 * 1024 * 1024,
            allow_hardlinks: false,
            url_poll_ms: 500,
            max_url_length: 8000,
            unreadable_grace_secs: 600,
        }
    }
}

/// Avoiding repeated analyses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Link a sample already analysed (same sha256) to its earlier item instead of submitting.
    pub samples: bool,
    /// Link a URL analysed within this many hours to its earlier item (0 = never).
    pub url_window_hours: u64,
    /// Before submitting a new sample, look its sha256 up on the server and reuse a finished
    /// analysis found there.
    pub server_lookup: bool,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            samples: true,
            url_window_hours: 24,
            server_lookup: true,
        }
    }
}

/// Submission, reconciliation and retries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    pub submit_concurrency: usize,
    pub poll_concurrency: usize,
    pub download_concurrency: usize,
    /// Attempts per item before it is `failed`.
    pub max_attempts: u32,
    pub retry_base_secs: u64,
    pub retry_cap_secs: u64,
    /// After an unknown submission outcome, wait this long for the server's search to catch
    /// up before looking the submission up.
    pub reconcile_grace_secs: u64,
    /// How long an attempt with an unknown outcome is looked for (search, submission list)
    /// before jbxd concludes it never reached the server and submits again; look-ups run on a
    /// growing schedule inside it (RELIABILITY case 115). Far longer than a search lag lasts.
    pub reconcile_window_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            submit_concurrency: 2,
            poll_concurrency: 4,
            download_concurrency: 2,
            max_attempts: 12,
            retry_base_secs: 30,
            retry_cap_secs: 6 * 3600,
            reconcile_grace_secs: 120,
            reconcile_window_secs: 3600,
        }
    }
}

impl PipelineConfig {
    /// The longest accepted `reconcile_window_secs`: a week.
    pub const MAX_RECONCILE_WINDOW_SECS: u64 = 7 * 24 * 3600;

    /// Checks the reconciliation keys: `Err` names the key and what is wrong.
    pub fn check_reconcile(&self) -> Result<(), (&'static str, String)> {
        let window = self.reconcile_window_secs;
        if window < self.reconcile_grace_secs {
            return Err((
                "pipeline.reconcile_window_secs",
                format!(
                    "must be at least pipeline.reconcile_grace_secs ({window} < {}): the look-up \
                     window starts with the grace period",
                    self.reconcile_grace_secs
                ),
            ));
        }
        if window > Self::MAX_RECONCILE_WINDOW_SECS {
            return Err((
                "pipeline.reconcile_window_secs",
                format!(
                    "must be at most {} (a week), got {window}",
                    Self::MAX_RECONCILE_WINDOW_SECS
                ),
            ));
        }
        Ok(())
    }
}

/// Adaptive polling of submissions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PollConfig {
    /// Analysis time assumed when the submission does not set `analysis-time`.
    pub expected_analysis_secs: u64,
    pub min_interval_secs: u64,
    pub max_interval_secs: u64,
    /// A submission not finished after this long is `failed: timed out`.
    pub max_analysis_age_secs: u64,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            expected_analysis_secs: 180,
            min_interval_secs: 5,
            max_interval_secs: 600,
            max_analysis_age_secs: 24 * 3600,
        }
    }
}

/// What is downloaded for each finished analysis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    pub types: Vec<String>,
    /// Also download the analysed sample (`sample`, stored 0400).
    pub sample: bool,
    /// Also download dropped files and unpacked PE images (`bins`, `unpackpe`, zips with the
    /// password `infected`).
    pub archives: bool,
    /// Largest report accepted, in bytes.
    pub max_size: u64,
    /// Ask for encrypted analyses (`encrypt-with-password`) with the report password below;
    /// their downloads are AES zips kept as they came. Requires a password source.
    pub encrypt: bool,
    /// The report password: a file (mode 0600), a systemd credential by name, or a vault
    /// command (argv array). Used to encrypt when `encrypt = true`, and to open encrypted
    /// downloads either way. Never in `url_queue` params or on a command line.
    pub password_file: Option<PathBuf>,
    pub password_credential: Option<String>,
    pub password_command: Option<Vec<String>>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            types: vec!["html".into(), "irjsonfixed".into(), "xml".into()],
            sample: false,
            archives: false,
            max_size: 512 * 1024 * 1024,
            encrypt: false,
            password_file: None,
            password_credential: None,
            password_command: None,
        }
    }
}

/// Periodic health checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Cron expression with seconds (6 fields, UTC), e.g. `0 * * * * *` = every minute.
    pub schedule: String,
    /// Below this much free space in `data_dir`, intake and downloads pause.
    pub min_free_disk_mb: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            schedule: "0 * * * * *".into(),
            min_free_disk_mb: 1024,
        }
    }
}

/// How vault commands (`*_command`) are run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// A command still running after this long is killed (with what it started) and is a
    /// configuration error.
    pub command_timeout_secs: u64,
    /// Environment variables passed to vault commands beyond the built-in list
    /// (`vault_command::CHILD_ENV`); `JBX*` names are refused.
    pub command_env: Vec<String>,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            command_timeout_secs: 10,
            command_env: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `jbxd=debug,info`.
    pub level: String,
    pub format: LogFormat,
    /// When set, logs also go to daily-rotated files in this directory.
    pub dir: Option<PathBuf>,
    /// Rotated files kept.
    pub max_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            dir: None,
            max_files: 14,
        }
    }
}

impl Config {
    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("jbxd.db")
    }
}

#[cfg(test)]
mod tests {
    use super::PipelineConfig;

    #[test]
    fn the_reconcile_window_must_cover_the_grace_period_and_stay_under_a_week() {
        let mut c = PipelineConfig::default();
        assert_eq!(c.check_reconcile(), Ok(()));
        assert!(c.reconcile_window_secs >= 3600, "a safe default");
        c.reconcile_window_secs = 60;
        let (key, message) = c.check_reconcile().unwrap_err();
        assert_eq!(key, "pipeline.reconcile_window_secs");
        assert!(
            message.contains("reconcile_grace_secs (60 < 120)"),
            "{message}"
        );
        c.reconcile_window_secs = PipelineConfig::MAX_RECONCILE_WINDOW_SECS + 1;
        assert!(c.check_reconcile().unwrap_err().1.contains("a week"));
        c.reconcile_grace_secs = 0;
        c.reconcile_window_secs = 0;
        assert_eq!(c.check_reconcile(), Ok(()));
    }
}
