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
//!   daemon `$CREDENTIALS_DIRECTORY/jbx_api_key` (systemd `LoadCredential=`) when present, then
//!   the one of `api.key_file`, `api.key_credential` and `api.key_command` that is set, then
//!   `JBX_API_KEY`. The sources are the shape every secret shares (`secrets.rs`): every key
//!   file passes the same checks, whoever reads it (RELIABILITY.md cases 94 and 95), and a
//!   vault command runs without a shell, with a clean environment and a timeout.
//! * **Pace** ([`Pace`]): how long a client waits between attempts depends on who is waiting.
//!
//! `api` stays free of configuration: it receives finished `ClientSettings`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::Serialized;
use figment::value::Value;

use super::error::ConfigError;
use super::layers::{ENV_KEY, Env, flag_layer, official_env_layer};
use super::origins::{figment_error, origin_of, rule_error};
use super::secret_keys::{CREDENTIAL_NAME, api_key_keys, command_options};
use super::secrets::{CommandOptions, SecretKeys, SecretSource, read_secret_file, resolve_secret};
use super::validate::check_api;
use super::{ApiConfig, Config};
use crate::api::{ApiError, ApiKey, ApiKeyError, ClientSettings, JoeClient, RetryPolicy, Secret};

/// Where the API key came from (shown by `jbxd config check` instead of the key): the
/// source of any secret.
pub type KeySource = SecretSource;

/// Where a front end looks for the API key.
#[derive(Debug, Clone, Copy)]
pub enum KeyLookup<'a> {
    /// The CLI: `--api-key-file`, then `JBX_API_KEY`.
    CommandLine { key_file: Option<&'a Path> },
    /// The daemon: the systemd credential `jbx_api_key` when present, then the one of
    /// `api.key_file`, `api.key_credential`, `api.key_command` that is set, then
    /// `JBX_API_KEY`.
    Daemon(&'a Config),
}

/// Finds the API key where `lookup` says, first source first. An empty `JBX_API_KEY` is
/// refused, not skipped: it can only be a mistake. Runs `api.key_command` when that is the
/// source (this blocks for up to `secrets.command_timeout_secs`).
pub fn resolve_api_key(
    lookup: KeyLookup<'_>,
    env: &Env,
) -> Result<(ApiKey, KeySource), ConfigError> {
    let (keys, options) = match lookup {
        KeyLookup::CommandLine {
            key_file: Some(path),
        } => {
            let keys = api_key_keys(&CLI_API);
            let secret = read_secret_file(&keys, path)?;
            let source = SecretSource::Flag {
                flag: "--api-key-file",
                path: path.to_owned(),
            };
            return Ok((api_key(&secret, &source)?, source));
        }
        KeyLookup::CommandLine { key_file: None } => {
            let keys = SecretKeys {
                default_credential: None,
                ..api_key_keys(&CLI_API)
            };
            (keys, CommandOptions::default())
        }
        KeyLookup::Daemon(config) => (api_key_keys(&config.api), command_options(config)),
    };
    match resolve_secret(&keys, env, &options)? {
        Some((secret, source)) => Ok((api_key(&secret, &source)?, source)),
        None => Err(ConfigError::ApiKey(match lookup {
            KeyLookup::CommandLine { .. } => format!(
                "no API key: set {ENV_KEY} or pass --api-key-file FILE (a file of mode 0600)"
            ),
            KeyLookup::Daemon(_) => format!(
                "no API key: set api.key_file (a file of mode 0600), api.key_command (a vault \
                 command), or LoadCredential={CREDENTIAL_NAME}:... in the systemd unit, or \
                 {ENV_KEY}"
            ),
        })),
    }
}

/// The CLI reads no configuration file: no key source but its flag and the environment.
static CLI_API: ApiConfig = ApiConfig {
    url: String::new(),
    key_file: None,
    key_credential: None,
    key_command: None,
    accept_tac: false,
    ca_file: None,
    proxy: None,
    connect_timeout_secs: 0,
    read_timeout_secs: 0,
    request_timeout_secs: 0,
    attempts: 0,
};

fn api_key(secret: &Secret, source: &SecretSource) -> Result<ApiKey, ConfigError> {
    ApiKey::from_secret(secret).map_err(|e| {
        ConfigError::ApiKey(match e {
            ApiKeyError::Empty => format!("the API key from {source} is empty"),
            ApiKeyError::BadCharacters => {
                format!("the API key from {source} contains whitespace or control characters")
            }
        })
    })
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
    use std::os::unix::fs::PermissionsExt;

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
        assert_eq!(c.key_source, KeySource::Env(ENV_KEY));

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
        assert_eq!(c.key_source, KeySource::Env(ENV_KEY));
        assert_eq!(c.settings.api_key, ApiKey::new("from-env").unwrap());

        let flags = ConnectionFlags {
            url: Some("http://flag.example/api".into()),
            key_file: Some(flag_key.clone()),
            ..ConnectionFlags::default()
        };
        let c = command_line(&flags, &env).unwrap();
        assert_eq!(c.settings.server_url, "http://flag.example/api");
        assert_eq!(
            c.key_source,
            KeySource::Flag {
                flag: "--api-key-file",
                path: flag_key
            }
        );
        assert_eq!(c.settings.api_key, ApiKey::new("from-flag").unwrap());

        // The daemon's key: the systemd credential < api.key_file < JBX_API_KEY.
        let daemon = |key_file: Option<&Path>, env: &Env| {
            let mut config = Config::default();
            config.api.key_file = key_file.map(Path::to_owned);
            resolve_api_key(KeyLookup::Daemon(&config), env).unwrap()
        };
        let (key, source) = daemon(Some(&config_key), &env);
        assert_eq!(
            source,
            KeySource::Credential {
                name: CREDENTIAL_NAME.into(),
                path: credential
            }
        );
        assert_eq!(key, ApiKey::new("from-credential").unwrap());
        let (key, source) = daemon(Some(&config_key), &bare);
        assert_eq!(
            source,
            KeySource::File {
                key: "api.key_file",
                path: config_key
            }
        );
        assert_eq!(key, ApiKey::new("from-config").unwrap());
        assert_eq!(daemon(None, &bare).1, KeySource::Env(ENV_KEY));
    }

    #[test]
    fn a_named_credential_and_a_vault_command_are_key_sources_of_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        key_file(&creds, "joe_key", "from-named-credential");
        let env = Env::from_pairs([
            ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
            ("PATH", "/usr/bin:/bin"),
        ]);
        let mut config = Config::default();
        config.api.key_credential = Some("joe_key".into());
        let (key, source) = resolve_api_key(KeyLookup::Daemon(&config), &env).unwrap();
        assert_eq!(key, ApiKey::new("from-named-credential").unwrap());
        assert_eq!(
            source.to_string(),
            format!("systemd credential {}", creds.join("joe_key").display())
        );

        let mut config = Config::default();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-vault.sh");
        config.api.key_command = Some(vec![script.into(), "key".into(), "from-vault".into()]);
        let (key, source) = resolve_api_key(KeyLookup::Daemon(&config), &env).unwrap();
        assert_eq!(key, ApiKey::new("from-vault").unwrap());
        assert_eq!(source.to_string(), "api.key_command (fake-vault.sh)");

        // Two explicit sources at once are a mistake, not a precedence puzzle.
        config.api.key_file = Some(dir.path().join("k"));
        let text = resolve_api_key(KeyLookup::Daemon(&config), &env)
            .unwrap_err()
            .to_string();
        assert!(text.contains("api.key_file and api.key_command"), "{text}");
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
        let config = Config::default();
        let daemon = KeyLookup::Daemon(&config);
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
