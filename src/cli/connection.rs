//! The CLI's side of the connection: its flags handed to the resolver the daemon uses too
//! ([`config::command_line`](crate::config::command_line)), which adds `JBX_API_URL`,
//! `JBX_ACCEPT_TAC` and `JBX_API_KEY` and applies the daemon's key-file checks. Errors are the
//! resolver's [`ConfigError`] (exit 78).

use crate::api::ClientSettings;
use crate::config::{self, ConfigError, ConnectionFlags, Env};

use super::args::ConnectionArgs;

/// Resolves the connection settings: flags first, then the environment, then the defaults.
/// `env` is passed in so that tests need not touch the process environment.
pub fn resolve_settings(args: &ConnectionArgs, env: &Env) -> Result<ClientSettings, ConfigError> {
    Ok(config::command_line(&flags(args), env)?.settings)
}

fn flags(args: &ConnectionArgs) -> ConnectionFlags {
    ConnectionFlags {
        url: args.url.clone(),
        key_file: args.api_key_file.clone(),
        accept_tac: args.accept_tac,
        ca_file: args.ca_file.clone(),
        proxy: args.proxy.clone(),
        request_timeout_secs: args.timeout,
        attempts: args.retries,
        max_download_bytes: args.max_download_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_connection_flag_reaches_the_settings() {
        let args = ConnectionArgs {
            url: Some("http://127.0.0.1:9/api".into()),
            api_key_file: None,
            accept_tac: true,
            ca_file: Some("ca.pem".into()),
            proxy: Some("http://127.0.0.1:3128".into()),
            timeout: Some(7),
            retries: Some(1),
            max_download_size: Some(1024),
        };
        let env = Env::from_pairs([("JBX_API_KEY", "k")]);
        let settings = resolve_settings(&args, &env).unwrap();
        assert_eq!(settings.server_url, "http://127.0.0.1:9/api");
        assert!(settings.accept_tac);
        assert_eq!(settings.ca_file.as_deref(), Some("ca.pem".as_ref()));
        assert_eq!(settings.proxy.as_deref(), Some("http://127.0.0.1:3128"));
        assert_eq!(settings.request_timeout, Duration::from_secs(7));
        assert_eq!(settings.retry.max_attempts, 1);
        assert_eq!(settings.max_download_bytes, Some(1024));
    }

    #[test]
    fn without_flags_the_cli_keeps_its_interactive_defaults() {
        let env = Env::from_pairs([("JBX_API_KEY", "k")]);
        let settings = resolve_settings(&ConnectionArgs::default(), &env).unwrap();
        assert_eq!(settings.server_url, crate::api::DEFAULT_SERVER_URL);
        assert!(!settings.accept_tac);
        let interactive = crate::api::RetryPolicy::default();
        assert_eq!(format!("{:?}", settings.retry), format!("{interactive:?}"));
        assert_eq!(settings.request_timeout, Duration::from_secs(120));
        assert_eq!(settings.max_download_bytes, None);
    }
}
