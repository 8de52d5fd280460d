//! Loading the configuration: defaults < TOML file < `JBX_*` (the official client's names) <
//! `JBXD_*` environment < command-line overrides, then validation, then the API key.
//!
//! The concerns have a file each: `layers.rs` (the figment providers), `origins.rs` (where a
//! value came from), `validate.rs` (rules beyond types), `connection.rs` (the API key and the
//! client settings), `redacted.rs` (the `config check` output); this file puts them in order.
//! Every failure is a [`ConfigError`] (exit code 78) naming the key and where its value came
//! from: the file (with the line where it can be found), the environment variable, or the flag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::{Figment, Profile, Provider};

use super::Config;
use super::connection::{KeyLookup, KeySource, client_settings, resolve_api_key};
use super::error::ConfigError;
use super::layers::{ENV_KEY, Env, jbxd_env_layer, official_env_layer, override_layer};
use super::origins::{KeyLines, figment_error, find_unknown, leaf_keys, origin_of, rule_error};
use super::report_password::resolve_report_password;
use super::secrets::SecretSource;
use super::validate::validate;
use crate::api::{ApiKey, ClientSettings, Secret};

/// Where `jbxd run` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/jbxd/jbxd.toml";
/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config FILE`. `None` = [`DEFAULT_CONFIG_FILE`], where a missing file means defaults;
    /// a file named explicitly must exist.
    pub config_file: Option<PathBuf>,
    /// Command-line overrides as (dotted key, value), e.g. `("poll.max_interval_secs", "60")`;
    /// they win over everything else.
    pub overrides: Vec<(String, String)>,
}

/// A validated configuration, with where each non-default value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Things worth a WARN line once logging is up (unknown `JBXD_*` variables, the key from
    /// the environment, a missing default file).
    pub warnings: Vec<String>,
    /// Dotted key → where its value came from, for keys not at their default.
    pub origins: BTreeMap<String, String>,
}

/// [`Loaded`] plus the secrets: everything `jbxd run` needs before it opens anything.
#[derive(Debug, Clone)]
pub struct LoadedWithKey {
    pub loaded: Loaded,
    pub api_key: ApiKey,
    pub key_source: KeySource,
    /// The report password and its source, when one is configured (`[reports]`).
    pub report_password: Option<(Secret, SecretSource)>,
}

impl LoadedWithKey {
    /// The daemon's client settings: [`client_settings`] with the API key, and the report
    /// password sent with every submission when `reports.encrypt = true`.
    pub fn client_settings(&self) -> ClientSettings {
        let mut settings = client_settings(&self.loaded.config, self.api_key.clone());
        if self.loaded.config.reports.encrypt {
            settings.encrypt_password = self.report_password.as_ref().map(|(s, _)| s.clone());
        }
        settings
    }
}

/// Loads, validates and resolves the secrets (what `jbxd run` and `jbxd config check` do):
/// the API key and the report password, running their vault commands if they have them.
pub fn load(opts: &LoadOptions) -> Result<LoadedWithKey, ConfigError> {
    let env = Env::process();
    let mut loaded = load_config_from(opts, &env)?;
    let (api_key, key_source) = resolve_api_key(KeyLookup::Daemon(&loaded.config), &env)?;
    if key_source == KeySource::Env(ENV_KEY) {
        loaded.warnings.push(
            "the API key comes from the environment (JBX_API_KEY); under systemd use \
             LoadCredential=jbx_api_key:/etc/jbxd/api_key instead"
                .into(),
        );
    }
    let report_password = resolve_report_password(&loaded.config, &env)?;
    Ok(LoadedWithKey {
        loaded,
        api_key,
        key_source,
        report_password,
    })
}

/// Loads and validates the configuration without touching the API key (for commands that
/// only need `data_dir`, like `jbxd status`).
pub fn load_config(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    load_config_from(opts, &Env::process())
}

fn load_config_from(opts: &LoadOptions, env: &Env) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let defaults_json = serde_json::to_value(Config::default()).expect("defaults serialise");

    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    let mut file_text = None;
    let file = match &opts.config_file {
        Some(path) => {
            let text = read_config_file(path)?;
            file_text = Some(text);
            Some(path.clone())
        }
        None => {
            let path = PathBuf::from(DEFAULT_CONFIG_FILE);
            if path.exists() {
                file_text = Some(read_config_file(&path)?);
                Some(path)
            } else {
                warnings.push(format!(
                    "no configuration file at {DEFAULT_CONFIG_FILE}; using defaults"
                ));
                None
            }
        }
    };
    if let Some(path) = &file {
        // Parse once ourselves so a syntax error names the file plainly.
        if let Err(e) = Toml::string(file_text.as_deref().unwrap_or_default()).data() {
            return Err(ConfigError::File {
                path: path.clone(),
                message: e.kind.to_string(),
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }

    figment = figment.merge(official_env_layer(env));
    let (env_layer, unknown_env) = jbxd_env_layer(env, &defaults_json);
    for name in unknown_env {
        warnings.push(format!(
            "ignoring environment variable {name}: not a configuration key (JBXD_<SECTION>__<KEY>)"
        ));
    }
    figment = figment.merge(env_layer);
    figment = figment.merge(override_layer(&opts.overrides, &defaults_json));

    let lines = file_text.as_deref().map(KeyLines::new);
    let describe = |key: &str| origin_of(&figment, key, file.as_deref(), lines.as_ref());

    // Unknown keys first: figment would attribute them to the enclosing table's source.
    let merged = figment.data().map_err(|e| figment_error(&e, &describe))?;
    if let Some(dict) = merged.get(&Profile::Default) {
        let mut unknown = Vec::new();
        find_unknown(dict, &defaults_json, "", &mut unknown);
        if let Some(key) = unknown.into_iter().next() {
            return Err(rule_error((&key, "unknown key".into()), &describe));
        }
    }

    let config: Config = figment
        .extract()
        .map_err(|e| figment_error(&e, &describe))?;
    validate(&config).map_err(|verdict| rule_error(verdict, &describe))?;

    let mut origins = BTreeMap::new();
    for key in leaf_keys(&serde_json::to_value(&config).expect("config serialises")) {
        let origin = describe(&key);
        if origin != "default" {
            origins.insert(key, origin);
        }
    }

    Ok(Loaded {
        config,
        file,
        warnings,
        origins,
    })
}

fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            "not found".into()
        } else {
            format!("cannot read it: {e}")
        },
    })
}
