//! Connection settings: the one place where flags and the environment become
//! [`ClientSettings`]. A configuration file (a later addition) slots in here, between the flags
//! and the environment, without touching the commands.

use std::path::Path;
use std::time::Duration;

use crate::api::{self, ApiError, ApiKey, ClientSettings};

use super::args::ConnectionArgs;

pub const ENV_URL: &str = "JBX_API_URL";
pub const ENV_KEY: &str = "JBX_API_KEY";
pub const ENV_ACCEPT_TAC: &str = "JBX_ACCEPT_TAC";

/// A setting that cannot work. Each message names the setting and where its value came from,
/// and never contains the key itself.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no API key: set {ENV_KEY} or pass --api-key-file FILE")]
    NoApiKey,
    #[error("cannot read the API key file {path} (--api-key-file): {source}")]
    KeyFileUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API key from {origin} is unusable: {reason}")]
    BadApiKey {
        origin: String,
        reason: api::ApiKeyError,
    },
    #[error("the server URL from {origin} is unusable: {detail}")]
    BadUrl { origin: String, detail: String },
    #[error("{0}")]
    Client(String),
}

/// Reads a process environment variable; an empty value counts as unset, as in jbxapi.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Resolves the connection settings: flags first, then the environment, then the defaults.
/// `env` is injected so that tests need not touch the process environment.
pub fn resolve_settings(
    args: &ConnectionArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientSettings, ConfigError> {
    let (server_url, url_origin) = match (&args.url, env(ENV_URL)) {
        (Some(url), _) => (url.clone(), "--url".to_owned()),
        (None, Some(url)) => (url, ENV_URL.to_owned()),
        (None, None) => (api::DEFAULT_SERVER_URL.to_owned(), "the default".to_owned()),
    };
    // Checked here rather than when the client is built, so the message can name the origin.
    api::api_base(&server_url).map_err(|e| ConfigError::BadUrl {
        origin: url_origin,
        detail: match e {
            ApiError::Config(detail) => detail,
            other => other.to_string(),
        },
    })?;

    let api_key = match &args.api_key_file {
        Some(path) => key_from_file(path)?,
        None => {
            let raw = env(ENV_KEY).ok_or(ConfigError::NoApiKey)?;
            ApiKey::new(raw).map_err(|reason| ConfigError::BadApiKey {
                origin: ENV_KEY.to_owned(),
                reason,
            })?
        }
    };

    let mut settings = ClientSettings::new(server_url, api_key);
    // Only "1" means yes, exactly like jbxapi reads JBX_ACCEPT_TAC.
    settings.accept_tac = args.accept_tac || env(ENV_ACCEPT_TAC).as_deref() == Some("1");
    settings.ca_file = args.ca_file.clone();
    settings.proxy = args.proxy.clone();
    if let Some(secs) = args.timeout {
        settings.request_timeout = Duration::from_secs(secs);
    }
    if let Some(attempts) = args.retries {
        settings.retry.max_attempts = attempts;
    }
    settings.max_download_bytes = args.max_download_size;
    Ok(settings)
}

fn key_from_file(path: &Path) -> Result<ApiKey, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFileUnreadable {
        path: path.display().to_string(),
        source,
    })?;
    ApiKey::new(raw).map_err(|reason| ConfigError::BadApiKey {
        origin: format!("--api-key-file {}", path.display()),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_missing_key_names_both_ways_to_give_one() {
        let err = resolve_settings(&ConnectionArgs::default(), &env_of(&[])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(ENV_KEY) && text.contains("--api-key-file"),
            "{text}"
        );
    }

    #[test]
    fn the_key_file_wins_over_the_environment_and_its_newline_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-file\n").unwrap();
        let args = ConnectionArgs {
            api_key_file: Some(path),
            ..Default::default()
        };
        let settings = resolve_settings(&args, &env_of(&[(ENV_KEY, "from-env")])).unwrap();
        assert_eq!(settings.api_key, ApiKey::new("from-file").unwrap());
    }

    #[test]
    fn an_unreadable_key_file_is_named() {
        let args = ConnectionArgs {
            api_key_file: Some("/nonexistent/jbxd-key".into()),
            ..Default::default()
        };
        let text = resolve_settings(&args, &env_of(&[(ENV_KEY, "k")]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("/nonexistent/jbxd-key"), "{text}");
    }

    #[test]
    fn only_one_means_accept_tac_like_jbxapi() {
        let args = ConnectionArgs::default();
        for (value, expected) in [("1", true), ("true", false), ("0", false)] {
            let env = env_of(&[(ENV_KEY, "k"), (ENV_ACCEPT_TAC, value)]);
            assert_eq!(resolve_settings(&args, &env).unwrap().accept_tac, expected);
        }
    }

    #[test]
    fn a_bad_url_names_its_origin_and_the_flag_wins_over_the_environment() {
        let env = env_of(&[(ENV_KEY, "k"), (ENV_URL, "ftp://x")]);
        let text = resolve_settings(&ConnectionArgs::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(text.contains(ENV_URL), "{text}");
        let args = ConnectionArgs {
            url: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_settings(&args, &env).unwrap().server_url,
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn timeouts_retries_and_size_limit_reach_the_settings() {
        let args = ConnectionArgs {
            timeout: Some(7),
            retries: Some(1),
            max_download_size: Some(1024),
            ..Default::default()
        };
        let settings = resolve_settings(&args, &env_of(&[(ENV_KEY, "k")])).unwrap();
        assert_eq!(settings.request_timeout, Duration::from_secs(7));
        assert_eq!(settings.retry.max_attempts, 1);
        assert_eq!(settings.max_download_bytes, Some(1024));
    }
}
