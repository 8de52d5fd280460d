//! The connection resolver: the one place where the server URL, the API key, terms
//! acceptance, the CA file, the proxy, timeouts and attempts become [`ClientSettings`], for
//! the daemon and the CLI alike, with one error type ([`ConfigError`], exit 78).
//!
//! * **Values.** The daemon's come from `[api]` of its loaded configuration (defaults < file <
//!   `JBX_*` < `JBXD_*` < `--set`, `load.rs`); the CLI's from defaults < `JBX_API_URL` and
//!   `JBX_ACCEPT_TAC` < its flags ([`command_line`]; it reads no configuration file). Both go
//!   through the same figment layers and the same rules (`validate::check_api`), so an error
//!   names the key and where its value came from: `--url`, `JBX_API_URL`, the file and line.
//! * **The key** ([`resolve_api_key`]): the CLI tries `--api-key-file`, then `JBX_API_KEY`; the
//!   daemon `$CREDENTIALS_DIRECTORY/jbx_api_key` (systemd `LoadCredential=`), then
//!   `api.key_file`, then `JBX_API_KEY`. Every key file passes the same checks, whoever reads
//!   it (RELIABILITY.md cases 94 and 95): a regular file (a symlink is judged by its target),
//!   not readable or writable by group or others (the message says `chmod 600`), owned by this
//!   user or root, holding a key that is not empty.
//! * **Pace** ([`Pace`]): how long a client waits between attempts depends on who is waiting.
//!
//! `api` stays free of configuration: it receives finished `ClientSettings`.

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::Serialized;
use figment::value::Value;

use super::error::ConfigError;
use super::layers::{ENV_KEY, Env, flag_layer, official_env_layer};
use super::origins::{figment_error, origin_of, rule_error};
use super::validate::check_api;
use super::{ApiConfig, Config};
use crate::api::{ApiError, ApiKey, ApiKeyError, ClientSettings, JoeClient, RetryPolicy};

/// The systemd credential name (`LoadCredential=jbx_api_key:/etc/jbxd/api_key`).
pub const CREDENTIAL_NAME: &str = "jbx_api_key";

/// Where the API key came from (shown by `jbxd config check` instead of the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--api-key-file` (the CLI).
    Flag(PathBuf),
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
            Self::Flag(p) => write!(f, "--api-key-file {}", p.display()),
            Self::Credential(p) => write!(f, "systemd credential {}", p.display()),
            Self::KeyFile(p) => write!(f, "api.key_file {}", p.display()),
            Self::Env => write!(f, "environment variable {ENV_KEY}"),
        }
    }
}

/// Where a front end looks for the API key.
#[derive(Debug, Clone, Copy)]
pub enum KeyLookup<'a> {
    /// The CLI: `--api-key-file`, then `JBX_API_KEY`.
    CommandLine { key_file: Option<&'a Path> },
    /// The daemon: the systemd credential, then `api.key_file`, then `JBX_API_KEY`.
    Daemon { key_file: Option<&'a Path> },
}

/// Finds the API key where `lookup` says, first source first. An empty `JBX_API_KEY` is
/// refused, not skipped: it can only be a mistake.
pub fn resolve_api_key(
    lookup: KeyLookup<'_>,
    env: &Env,
) -> Result<(ApiKey, KeySource), ConfigError> {
    match lookup {
        KeyLookup::CommandLine {
            key_file: Some(path),
        } => {
            return Ok((read_key_file(path)?, KeySource::Flag(path.to_owned())));
        }
        KeyLookup::CommandLine { key_file: None } => {}
        KeyLookup::Daemon { key_file } => {
            if let Some(dir) = env.get("CREDENTIALS_DIRECTORY") {
                let path = Path::new(dir).join(CREDENTIAL_NAME);
                if path.exists() {
                    return Ok((read_key_file(&path)?, KeySource::Credential(path)));
                }
            }
            if let Some(path) = key_file {
                return Ok((read_key_file(path)?, KeySource::KeyFile(path.to_owned())));
            }
        }
    }
    if let Some(raw) = env.get(ENV_KEY) {
        let source = format!("environment variable {ENV_KEY}");
        let key = ApiKey::new(raw).map_err(|e| key_error(&e, &source))?;
        return Ok((key, KeySource::Env));
    }
    Err(ConfigError::ApiKey(match lookup {
        KeyLookup::CommandLine { .. } => {
            format!("no API key: set {ENV_KEY} or pass --api-key-file FILE (a file of mode 0600)")
        }
        KeyLookup::Daemon { .. } => format!(
            "no API key: set api.key_file (a file of mode 0600), or \
             LoadCredential={CREDENTIAL_NAME}:... in the systemd unit, or {ENV_KEY}"
        ),
    }))
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
    let euid = rustix::process::geteuid().as_raw();
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

/// How long a client waits between attempts and how much `Retry-After` it honours: it depends
/// on who is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The daemon: nobody waits at a terminal, so 1 s base, 60 s cap, `Retry-After` honoured up
    /// to an hour.
    Patient,
    /// A person at a terminal (the CLI): [`RetryPolicy::default`]'s 0.5 s base, 30 s cap and
    /// `Retry-After` up to 2 minutes.
    Interactive,
    /// Tests and the demo against the local simulator: 20 ms base, 200 ms cap, `Retry-After` up
    /// to 5 s.
    Hurried,
}

impl Pace {
    fn retry(self, max_attempts: u32) -> RetryPolicy {
        let (base, cap, max_retry_after) = match self {
            Self::Patient => (secs(1), secs(60), secs(3600)),
            Self::Interactive => {
                let d = RetryPolicy::default();
                (d.base, d.cap, d.max_retry_after)
            }
            Self::Hurried => (
                Duration::from_millis(20),
                Duration::from_millis(200),
                secs(5),
            ),
        };
        RetryPolicy {
            max_attempts,
            base,
            cap,
            max_retry_after,
        }
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The client settings for `[api]` values that passed the rules, at `pace`, with downloads
/// capped at `max_download_bytes` (`None` = unlimited). Every front end's settings are built
/// here.
pub fn settings(
    api: &ApiConfig,
    api_key: ApiKey,
    pace: Pace,
    max_download_bytes: Option<u64>,
) -> ClientSettings {
    let mut s = ClientSettings::new(&api.url, api_key);
    s.accept_tac = api.accept_tac;
    s.ca_file = api.ca_file.clone();
    s.proxy = api.proxy.clone();
    s.connect_timeout = secs(api.connect_timeout_secs);
    s.read_timeout = secs(api.read_timeout_secs);
    s.request_timeout = secs(api.request_timeout_secs);
    s.retry = pace.retry(api.attempts);
    s.max_download_bytes = max_download_bytes;
    s
}

/// The daemon's client settings: patient, downloads capped at `reports.max_size`.
pub fn client_settings(config: &Config, api_key: ApiKey) -> ClientSettings {
    settings(
        &config.api,
        api_key,
        Pace::Patient,
        Some(config.reports.max_size),
    )
}

/// The client for `settings`. What the client refuses when it reads them (a CA file that is
/// unreadable or not PEM, a proxy it cannot use) is a configuration error.
pub fn client(settings: ClientSettings) -> Result<JoeClient, ConfigError> {
    JoeClient::new(settings).map_err(|e| {
        ConfigError::Client(match e {
            ApiError::Config(detail) => detail,
            other => other.to_string(),
        })
    })
}

/// What a command line says about the connection (`jbxd`'s global flags); `None` and `false`
/// mean "not given".
#[derive(Debug, Clone, Default)]
pub struct ConnectionFlags {
    /// `--url`
    pub url: Option<String>,
    /// `--api-key-file`
    pub key_file: Option<PathBuf>,
    /// `--accept-tac`
    pub accept_tac: bool,
    /// `--ca-file`
    pub ca_file: Option<PathBuf>,
    /// `--proxy`
    pub proxy: Option<String>,
    /// `--timeout`: the deadline of one request.
    pub request_timeout_secs: Option<u64>,
    /// `--retries`: attempts per read-only request.
    pub attempts: Option<u32>,
    /// `--max-download-size`
    pub max_download_bytes: Option<u64>,
}

/// A resolved connection: the settings and where the key came from.
#[derive(Debug, Clone)]
pub struct Connection {
    pub settings: ClientSettings,
    pub key_source: KeySource,
}

/// The CLI's connection: defaults < `JBX_API_URL`/`JBX_ACCEPT_TAC` < flags, the key from
/// `--api-key-file` or `JBX_API_KEY`, at the interactive pace.
pub fn command_line(flags: &ConnectionFlags, env: &Env) -> Result<Connection, ConfigError> {
    let defaults = ApiConfig {
        // The CLI has always made 4 attempts (RetryPolicy's default); the daemon's default is 3.
        attempts: RetryPolicy::default().max_attempts,
        ..ApiConfig::default()
    };
    let figment = Figment::from(Serialized::default("api", defaults))
        .merge(official_env_layer(env))
        .merge(flag_layer(flag_values(flags)));
    let describe = |key: &str| origin_of(&figment, key, None, None);
    let mut api: ApiConfig = figment
        .extract_inner("api")
        .map_err(|e| figment_error(&e, &describe))?;
    // Only the flag names a CA file and no rule reads it (the client names the file when it
    // cannot use it), so the path goes in as it is, even when it is not UTF-8.
    api.ca_file = flags.ca_file.clone();
    check_api(&api).map_err(|verdict| rule_error(verdict, &describe))?;
    let lookup = KeyLookup::CommandLine {
        key_file: flags.key_file.as_deref(),
    };
    let (api_key, key_source) = resolve_api_key(lookup, env)?;
    Ok(Connection {
        settings: settings(&api, api_key, Pace::Interactive, flags.max_download_bytes),
        key_source,
    })
}

/// The flags that were given, as (dotted key, flag, value).
fn flag_values(flags: &ConnectionFlags) -> Vec<(&'static str, &'static str, Value)> {
    let mut values = Vec::new();
    if let Some(url) = &flags.url {
        values.push(("api.url", "--url", Value::from(url.clone())));
    }
    if flags.accept_tac {
        values.push(("api.accept_tac", "--accept-tac", Value::from(true)));
    }
    if let Some(proxy) = &flags.proxy {
        values.push(("api.proxy", "--proxy", Value::from(proxy.clone())));
    }
    if let Some(secs) = flags.request_timeout_secs {
        values.push(("api.request_timeout_secs", "--timeout", Value::from(secs)));
    }
    if let Some(attempts) = flags.attempts {
        values.push(("api.attempts", "--retries", Value::from(attempts)));
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ENV_ACCEPT_TAC, ENV_URL};

    fn key_file(dir: &Path, name: &str, key: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("{key}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_environment_over_defaults_and_key_sources_go_in_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let flag_key = key_file(dir.path(), "flag_key", "from-flag");
        let config_key = key_file(dir.path(), "config_key", "from-config");
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let credential = key_file(&creds, CREDENTIAL_NAME, "from-credential");

        // Values: defaults < JBX_* < flags.
        let bare = Env::from_pairs([(ENV_KEY, "from-env")]);
        let c = command_line(&ConnectionFlags::default(), &bare).unwrap();
        assert_eq!(c.settings.server_url, crate::api::DEFAULT_SERVER_URL);
        assert!(!c.settings.accept_tac);
        assert_eq!(c.key_source, KeySource::Env);

        let env = Env::from_pairs([
            (ENV_KEY, "from-env"),
            (ENV_URL, "http://env.example/api"),
            (ENV_ACCEPT_TAC, "1"),
            ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
        ]);
        let c = command_line(&ConnectionFlags::default(), &env).unwrap();
        assert_eq!(c.settings.server_url, "http://env.example/api");
        assert!(c.settings.accept_tac);
        // The CLI does not look for systemd credentials.
        assert_eq!(c.key_source, KeySource::Env);
        assert_eq!(c.settings.api_key, ApiKey::new("from-env").unwrap());

        let flags = ConnectionFlags {
            url: Some("http://flag.example/api".into()),
            key_file: Some(flag_key.clone()),
            ..ConnectionFlags::default()
        };
        let c = command_line(&flags, &env).unwrap();
        assert_eq!(c.settings.server_url, "http://flag.example/api");
        assert_eq!(c.key_source, KeySource::Flag(flag_key));
        assert_eq!(c.settings.api_key, ApiKey::new("from-flag").unwrap());

        // The daemon's key: the systemd credential < api.key_file < JBX_API_KEY.
        let daemon = |key_file: Option<&Path>, env: &Env| {
            resolve_api_key(KeyLookup::Daemon { key_file }, env).unwrap()
        };
        let (key, source) = daemon(Some(&config_key), &env);
        assert_eq!(source, KeySource::Credential(credential));
        assert_eq!(key, ApiKey::new("from-credential").unwrap());
        let (key, source) = daemon(Some(&config_key), &bare);
        assert_eq!(source, KeySource::KeyFile(config_key));
        assert_eq!(key, ApiKey::new("from-config").unwrap());
        assert_eq!(daemon(None, &bare).1, KeySource::Env);
    }

    #[test]
    fn a_bad_value_names_the_flag_or_variable_it_came_from() {
        let env = Env::from_pairs([(ENV_KEY, "k"), (ENV_URL, "ftp://x")]);
        let text = command_line(&ConnectionFlags::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("`api.url` (environment variable JBX_API_URL)"),
            "{text}"
        );
        let flags = ConnectionFlags {
            proxy: Some("ftp://proxy.example".into()),
            ..ConnectionFlags::default()
        };
        let text = command_line(&flags, &env).unwrap_err().to_string();
        assert!(
            text.contains("`api.url`"),
            "the URL is checked first: {text}"
        );
        let env = Env::from_pairs([(ENV_KEY, "k")]);
        let text = command_line(&flags, &env).unwrap_err().to_string();
        assert!(
            text.contains("`api.proxy` (command-line flag --proxy)"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_environment_key_is_refused_not_skipped_and_no_key_names_the_ways_to_give_one() {
        let empty = Env::from_pairs([(ENV_KEY, "")]);
        let cli = KeyLookup::CommandLine { key_file: None };
        let text = resolve_api_key(cli, &empty).unwrap_err().to_string();
        assert!(text.contains("JBX_API_KEY is empty"), "{text}");
        let text = resolve_api_key(cli, &Env::default())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("JBX_API_KEY") && text.contains("--api-key-file"),
            "{text}"
        );
        let daemon = KeyLookup::Daemon { key_file: None };
        let text = resolve_api_key(daemon, &Env::default())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("api.key_file") && text.contains("LoadCredential=jbx_api_key"),
            "{text}"
        );
    }

    #[test]
    fn each_pace_keeps_the_attempts_and_sets_its_own_backoff() {
        let api = ApiConfig::default();
        let at = |pace| settings(&api, ApiKey::new("k").unwrap(), pace, None).retry;
        assert_eq!(at(Pace::Patient).cap, secs(60));
        assert_eq!(at(Pace::Patient).max_retry_after, secs(3600));
        assert_eq!(at(Pace::Interactive).cap, RetryPolicy::default().cap);
        assert_eq!(at(Pace::Hurried).base, Duration::from_millis(20));
        for pace in [Pace::Patient, Pace::Interactive, Pace::Hurried] {
            assert_eq!(at(pace).max_attempts, api.attempts);
        }
    }
}
