//! Loading the configuration: defaults < TOML file < `JBX_*` (the official client's names) <
//! `JBXD_*` environment < command-line overrides, then validation, then the API key.
//!
//! Every failure is a [`ConfigError`] (exit code 78, `EX_CONFIG`, which the systemd unit lists
//! in `RestartPreventExitStatus=` so a typo does not become a restart loop). Messages name the
//! key and where its value came from: the file (with the line where it can be found), the
//! environment variable, or the flag.
//!
//! Environment values are converted by the type of the key they set, not figment's TOML-like
//! guessing: `JBXD_API__URL=1234` stays a string, `JBXD_REPORTS__TYPES=html,xml` is a list.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::Value as Json;

use super::Config;
use crate::api::{self, ApiKey, ApiKeyError, ClientSettings, RetryPolicy};

/// Where `jbxd run` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/jbxd/jbxd.toml";
/// The systemd credential name (`LoadCredential=jbx_api_key:/etc/jbxd/api_key`).
pub const CREDENTIAL_NAME: &str = "jbx_api_key";
/// `EX_CONFIG` from sysexits.h: every configuration error exits with it.
pub const EXIT_CONFIG: u8 = 78;

/// Environment variables with the `JBXD_` prefix that are not configuration keys (the log
/// filter, the simulator's, the test and CI harness's); they are neither read nor warned about.
const NON_CONFIG_ENV: &[&str] = &[
    "JBXD_LOG",
    "JBXD_WORK",
    "JBXD_CRASHPOINT",
    "JBXD_INTEROP_PYTHON",
    "JBXD_REQUIRE_INTEROP",
];
/// Prefixes of further non-configuration variables.
const NON_CONFIG_ENV_PREFIXES: &[&str] = &["JBXD_SIM_", "JBXD_TEST_"];

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
}

impl ConfigError {
    /// Always 78 (`EX_CONFIG`).
    pub fn exit_code(&self) -> u8 {
        EXIT_CONFIG
    }
}

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

/// [`Loaded`] plus the API key: everything `jbxd run` needs before it opens anything.
#[derive(Debug, Clone)]
pub struct LoadedWithKey {
    pub loaded: Loaded,
    pub api_key: ApiKey,
    pub key_source: KeySource,
}

/// Loads, validates and resolves the API key (what `jbxd run` and `jbxd config check` do).
pub fn load(opts: &LoadOptions) -> Result<LoadedWithKey, ConfigError> {
    let mut loaded = load_config(opts)?;
    let (api_key, key_source) = resolve_api_key(&loaded.config)?;
    if key_source == KeySource::Env {
        loaded.warnings.push(
            "the API key comes from the environment (JBX_API_KEY); under systemd use \
             LoadCredential=jbx_api_key:/etc/jbxd/api_key instead"
                .into(),
        );
    }
    Ok(LoadedWithKey {
        loaded,
        api_key,
        key_source,
    })
}

/// Loads and validates the configuration without touching the API key (for commands that
/// only need `data_dir`, like `jbxd status`).
pub fn load_config(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
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

    let env: Vec<(String, String)> = std::env::vars().collect();
    figment = figment.merge(official_env_layer(&env));
    let (env_layer, unknown_env) = jbxd_env_layer(&env, &defaults_json);
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
            return Err(ConfigError::Key {
                origin: describe(&key),
                key,
                message: "unknown key".into(),
            });
        }
    }

    let config: Config = figment
        .extract()
        .map_err(|e| figment_error(&e, &describe))?;
    validate(&config).map_err(|(key, message)| ConfigError::Key {
        origin: describe(key),
        key: key.to_owned(),
        message,
    })?;

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

// ---- layers ---------------------------------------------------------------------------------

/// A provider holding ready-made values, with a metadata that names each key's source.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn insert_nested(dict: &mut Dict, key: &str, value: Value) {
    let nested = figment::util::nest(key, value)
        .into_dict()
        .expect("non-empty key nests into a dict");
    let merged = std::mem::take(dict);
    *dict = merge_dicts(merged, nested);
}

fn merge_dicts(mut base: Dict, other: Dict) -> Dict {
    for (k, v) in other {
        match (base.remove(&k), v) {
            (Some(Value::Dict(_, a)), Value::Dict(tag, b)) => {
                base.insert(k, Value::Dict(tag, merge_dicts(a, b)));
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
    base
}

/// `JBX_API_URL` and `JBX_ACCEPT_TAC`, the official client's names (`JBX_API_KEY` is read
/// with the other key sources).
fn official_env_layer(env: &[(String, String)]) -> Layer {
    let mut dict = Dict::new();
    for (name, value) in env {
        match name.as_str() {
            "JBX_API_URL" => insert_nested(&mut dict, "api.url", Value::from(value.clone())),
            // jbxapi treats only "1" as acceptance; so do we.
            "JBX_ACCEPT_TAC" => insert_nested(
                &mut dict,
                "api.accept_tac",
                Value::from(value.trim() == "1"),
            ),
            _ => {}
        }
    }
    Layer {
        metadata: Metadata::named("environment variable").interpolater(
            |_, keys: &[&str]| match keys.join(".").as_str() {
                "api.url" => "JBX_API_URL".into(),
                "api.accept_tac" => "JBX_ACCEPT_TAC".into(),
                other => other.to_owned(),
            },
        ),
        dict,
    }
}

/// `JBXD_SECTION__KEY` variables, converted by the key's type; also returns the names of
/// `JBXD_*` variables that are not configuration keys.
fn jbxd_env_layer(env: &[(String, String)], defaults: &Json) -> (Layer, Vec<String>) {
    let mut dict = Dict::new();
    let mut unknown = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("JBXD_") else {
            continue;
        };
        if NON_CONFIG_ENV.contains(&name.as_str())
            || NON_CONFIG_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
            || rest.is_empty()
        {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        match typed_value(&key, raw, defaults) {
            Some(value) => insert_nested(&mut dict, &key, value),
            None => unknown.push(name.clone()),
        }
    }
    unknown.sort();
    let layer = Layer {
        metadata: Metadata::named("environment variable").interpolater(|_, keys: &[&str]| {
            format!("JBXD_{}", keys.join("__").to_ascii_uppercase())
        }),
        dict,
    };
    (layer, unknown)
}

/// Command-line overrides. Unknown keys go through as strings so the unknown-key check names
/// them with this source.
fn override_layer(overrides: &[(String, String)], defaults: &Json) -> Layer {
    let mut dict = Dict::new();
    for (key, raw) in overrides {
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        let value = typed_value(key, raw, defaults).unwrap_or_else(|| Value::from(raw.clone()));
        insert_nested(&mut dict, key, value);
    }
    Layer {
        metadata: Metadata::named("command-line override")
            .interpolater(|_, keys: &[&str]| format!("--set {}", keys.join("."))),
        dict,
    }
}

/// Converts a text value by the type of the default at `key`; `None` when `key` is not a
/// configuration key. Values that do not convert stay strings, so extraction reports them
/// with the key and its source.
fn typed_value(key: &str, raw: &str, defaults: &Json) -> Option<Value> {
    let mut node = defaults;
    let mut open_map = false;
    for part in key.split('.') {
        if open_map {
            // Below a free-form table (submission.params): any name is a key.
            return Some(Value::from(raw.to_owned()));
        }
        node = node.as_object()?.get(part)?;
        open_map = node.as_object().is_some_and(|m| m.is_empty());
    }
    Some(match node {
        // Strings, paths and unset optional strings/paths: the text as it is.
        Json::String(_) | Json::Null => Value::from(raw.to_owned()),
        Json::Bool(_) => match api::parse_bool(raw) {
            Some(b) => Value::from(b),
            None => Value::from(raw.to_owned()),
        },
        Json::Number(_) => raw
            .trim()
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(raw.to_owned())),
        Json::Array(_) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                trimmed.parse::<Value>().expect("infallible")
            } else {
                let items: Vec<Value> = trimmed
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::from(s.to_owned()))
                    .collect();
                Value::from(items)
            }
        }
        Json::Object(_) => return None,
    })
}

// ---- describing sources -------------------------------------------------------------------

/// Finds the line of a dotted key in a TOML text (best effort: `[section]` headers and
/// `name =` lines).
struct KeyLines {
    lines: Vec<(String, String, usize)>,
}

impl KeyLines {
    fn new(text: &str) -> Self {
        let mut section = String::new();
        let mut lines = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = header.trim().to_owned();
            } else if let Some((name, _)) = line.split_once('=')
                && !line.starts_with('#')
            {
                let name = name.trim().trim_matches('"').to_owned();
                lines.push((section.clone(), name, index + 1));
            }
        }
        Self { lines }
    }

    fn line_of(&self, key: &str) -> Option<usize> {
        let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
        self.lines
            .iter()
            .find(|(s, n, _)| s == section && n == name)
            .map(|(_, _, line)| *line)
    }
}

fn origin_of(
    figment: &Figment,
    key: &str,
    file: Option<&Path>,
    lines: Option<&KeyLines>,
) -> String {
    let Some(md) = figment.find_metadata(key) else {
        return "default".into();
    };
    describe_metadata(md, key, file, lines)
}

fn describe_metadata(
    md: &Metadata,
    key: &str,
    file: Option<&Path>,
    lines: Option<&KeyLines>,
) -> String {
    match &md.source {
        Some(figment::Source::File(path)) => {
            let path = file.unwrap_or(path);
            match lines.and_then(|l| l.line_of(key)) {
                Some(line) => format!("{}, line {line}", path.display()),
                None => path.display().to_string(),
            }
        }
        // Only the built-in defaults (`Serialized::defaults`) carry a source code location.
        Some(figment::Source::Code(_)) => "default".into(),
        _ => {
            let keys: Vec<&str> = key.split('.').collect();
            format!("{} {}", md.name, md.interpolate(&Profile::Default, &keys))
        }
    }
}

fn figment_error(error: &figment::Error, describe: &dyn Fn(&str) -> String) -> ConfigError {
    let key = error.path.join(".");
    let origin = match &error.metadata {
        Some(md) if !key.is_empty() => {
            let own = describe(&key);
            if own == "default" {
                describe_metadata(md, &key, None, None)
            } else {
                own
            }
        }
        Some(md) => md.name.to_string(),
        None => "unknown source".into(),
    };
    ConfigError::Key {
        key: if key.is_empty() {
            "(top level)".into()
        } else {
            key
        },
        origin,
        message: error.kind.to_string(),
    }
}

fn find_unknown(dict: &Dict, known: &Json, prefix: &str, out: &mut Vec<String>) {
    let Some(known) = known.as_object() else {
        return;
    };
    if known.is_empty() {
        // A free-form table.
        return;
    }
    for (name, value) in dict {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match known.get(name.as_str()) {
            None => out.push(key),
            Some(child) => {
                if let Value::Dict(_, inner) = value {
                    find_unknown(inner, child, &key, out);
                }
            }
        }
    }
}

fn leaf_keys(value: &Json) -> Vec<String> {
    fn walk(value: &Json, prefix: &str, out: &mut Vec<String>) {
        match value.as_object() {
            Some(map) if !map.is_empty() => {
                for (name, child) in map {
                    let key = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(child, &key, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

// ---- validation ----------------------------------------------------------------------------

/// Checks values the types cannot: returns the offending key and why.
fn validate(c: &Config) -> Result<(), (&'static str, String)> {
    fn absolute(key: &'static str, path: &Path) -> Result<(), (&'static str, String)> {
        if path.is_absolute() {
            Ok(())
        } else {
            Err((
                key,
                format!(
                    "`{}` must be an absolute path (the daemon runs from /)",
                    path.display()
                ),
            ))
        }
    }
    fn at_least(key: &'static str, value: u64, min: u64) -> Result<(), (&'static str, String)> {
        if value >= min {
            Ok(())
        } else {
            Err((key, format!("must be at least {min}, got {value}")))
        }
    }

    absolute("data_dir", &c.data_dir)?;
    absolute("drop_dir", &c.drop_dir)?;
    // By where they really are, not how they are written (RELIABILITY.md case 113).
    super::paths::check_separate(&c.data_dir, &c.drop_dir)?;

    api::api_base(&c.api.url).map_err(|e| ("api.url", e.to_string()))?;
    if let Some(path) = &c.api.key_file {
        absolute("api.key_file", path)?;
    }
    if let Some(path) = &c.api.ca_file {
        absolute("api.ca_file", path)?;
    }
    if let Some(proxy) = &c.api.proxy {
        let parsed = url::Url::parse(proxy).map_err(|e| ("api.proxy", format!("{e}")))?;
        if !matches!(parsed.scheme(), "http" | "https" | "socks5" | "socks5h") {
            return Err((
                "api.proxy",
                "must be an http://, https:// or socks5:// URL".into(),
            ));
        }
    }
    at_least("api.connect_timeout_secs", c.api.connect_timeout_secs, 1)?;
    at_least("api.read_timeout_secs", c.api.read_timeout_secs, 1)?;
    at_least("api.request_timeout_secs", c.api.request_timeout_secs, 1)?;
    at_least("api.attempts", c.api.attempts.into(), 1)?;

    let mut params = api::SubmissionParams::new();
    for (name, value) in &c.submission.params {
        params
            .set(name, value)
            .map_err(|e| ("submission.params", e.to_string()))?;
    }
    for system in &c.submission.systems {
        if system.trim().is_empty() {
            return Err(("submission.systems", "contains an empty name".into()));
        }
    }

    at_least("intake.max_file_size", c.intake.max_file_size, 1)?;
    at_least("intake.scan_interval_secs", c.intake.scan_interval_secs, 1)?;
    if !(1..=8000).contains(&c.intake.max_url_length) {
        return Err((
            "intake.max_url_length",
            format!(
                "must be between 1 and 8000, got {}",
                c.intake.max_url_length
            ),
        ));
    }

    at_least(
        "pipeline.submit_concurrency",
        c.pipeline.submit_concurrency as u64,
        1,
    )?;
    at_least(
        "pipeline.poll_concurrency",
        c.pipeline.poll_concurrency as u64,
        1,
    )?;
    at_least(
        "pipeline.download_concurrency",
        c.pipeline.download_concurrency as u64,
        1,
    )?;
    at_least("pipeline.max_attempts", c.pipeline.max_attempts.into(), 1)?;
    c.pipeline.check_reconcile()?;
    if c.pipeline.retry_base_secs > c.pipeline.retry_cap_secs {
        return Err((
            "pipeline.retry_base_secs",
            format!(
                "must not exceed pipeline.retry_cap_secs ({} > {})",
                c.pipeline.retry_base_secs, c.pipeline.retry_cap_secs
            ),
        ));
    }

    at_least("poll.max_interval_secs", c.poll.max_interval_secs, 1)?;
    if c.poll.min_interval_secs > c.poll.max_interval_secs {
        return Err((
            "poll.min_interval_secs",
            format!(
                "must not exceed poll.max_interval_secs ({} > {})",
                c.poll.min_interval_secs, c.poll.max_interval_secs
            ),
        ));
    }
    at_least(
        "poll.max_analysis_age_secs",
        c.poll.max_analysis_age_secs,
        1,
    )?;

    if c.reports.types.is_empty() {
        return Err((
            "reports.types",
            "must name at least one report type (e.g. [\"html\", \"irjsonfixed\", \"xml\"])".into(),
        ));
    }
    for (i, kind) in c.reports.types.iter().enumerate() {
        if !api::ReportType::is_known(kind) {
            return Err(("reports.types", format!("unknown report type `{kind}`")));
        }
        if c.reports.types[..i].contains(kind) {
            return Err(("reports.types", format!("`{kind}` is listed twice")));
        }
    }
    at_least("reports.max_size", c.reports.max_size, 1)?;

    validate_schedule(&c.health.schedule).map_err(|m| ("health.schedule", m))?;

    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&c.log.level) {
        return Err(("log.level", format!("not a tracing filter: {e}")));
    }
    if let Some(dir) = &c.log.dir {
        absolute("log.dir", dir)?;
    }
    at_least("log.max_files", c.log.max_files as u64, 1)?;
    Ok(())
}

/// A cron expression with seconds: exactly 6 fields, parsed as tokio-cron-scheduler will.
pub fn validate_schedule(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "`{expr}` has {fields} fields; a cron expression with seconds has 6 \
             (sec min hour day month weekday, e.g. `0 * * * * *` = every minute, UTC)"
        ));
    }
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|_| format!("`{expr}` is not a valid cron expression"))
}

// ---- the API key ----------------------------------------------------------------------------

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

// ---- uses of the configuration -------------------------------------------------------------

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

/// `jbxd config check`: loads and validates exactly as `jbxd run` would (API key included)
/// and returns the effective configuration as TOML, key redacted. Print the text on stdout
/// and exit 0; on `Err`, print the error and exit with [`ConfigError::exit_code`] (78).
pub fn check(opts: &LoadOptions) -> Result<String, ConfigError> {
    let loaded = load(opts)?;
    let mut text = redacted_toml(&loaded.loaded, Some(&loaded.key_source));
    for warning in &loaded.loaded.warnings {
        text.push_str(&format!("# warning: {warning}\n"));
    }
    Ok(text)
}

/// The effective configuration as TOML for `jbxd config check`: every key, unset optional
/// keys commented out, non-default values annotated with their source, and the API key shown
/// only as `[set from <source>]`.
pub fn redacted_toml(loaded: &Loaded, key_source: Option<&KeySource>) -> String {
    let json = serde_json::to_value(&loaded.config).expect("config serialises");
    let mut out = String::new();
    out.push_str("# jbxd effective configuration\n");
    match &loaded.file {
        Some(path) => out.push_str(&format!("# file: {}\n", path.display())),
        None => out.push_str("# file: none (defaults and environment)\n"),
    }
    let object = json.as_object().expect("config is a table");
    // Top-level scalars first (TOML needs them before any table).
    for (name, value) in object {
        if !value.is_object() {
            emit_value(&mut out, name, name, value, &loaded.origins);
        }
    }
    for (name, value) in object {
        if let Some(table) = value.as_object() {
            emit_table(&mut out, name, table, &loaded.origins);
            if name == "api" {
                let shown = match key_source {
                    Some(source) => format!("[set from {source}]"),
                    None => "[not set]".into(),
                };
                out.push_str(&format!("# key = {shown}\n"));
            }
        }
    }
    out
}

fn emit_table(
    out: &mut String,
    path: &str,
    table: &serde_json::Map<String, Json>,
    origins: &BTreeMap<String, String>,
) {
    out.push_str(&format!("\n[{path}]\n"));
    for (name, value) in table {
        if !value.is_object() {
            emit_value(out, &format!("{path}.{name}"), name, value, origins);
        }
    }
    for (name, value) in table {
        if let Some(inner) = value.as_object() {
            emit_table(out, &format!("{path}.{}", toml_key(name)), inner, origins);
        }
    }
}

fn emit_value(
    out: &mut String,
    path: &str,
    name: &str,
    value: &Json,
    origins: &BTreeMap<String, String>,
) {
    let origin = origins
        .get(path)
        .map(|o| format!("  # from {o}"))
        .unwrap_or_default();
    match value {
        Json::Null => out.push_str(&format!("# {} = (unset)\n", toml_key(name))),
        other => out.push_str(&format!(
            "{} = {}{origin}\n",
            toml_key(name),
            toml_value(other)
        )),
    }
}

fn toml_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_owned()
    } else {
        Json::String(name.to_owned()).to_string()
    }
}

/// JSON scalars and arrays are valid TOML inline values (basic strings share JSON's
/// escapes), except null, which has no TOML form and is never nested here.
fn toml_value(value: &Json) -> String {
    match value {
        Json::Array(items) => {
            let inner: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_convert_by_the_type_of_their_key() {
        let defaults = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(
            typed_value("api.url", "1234", &defaults),
            Some(Value::from("1234".to_owned()))
        );
        assert_eq!(
            typed_value("poll.max_interval_secs", "60", &defaults),
            Some(Value::from(60u64))
        );
        assert_eq!(
            typed_value("api.accept_tac", "yes", &defaults),
            Some(Value::from(true))
        );
        assert_eq!(
            typed_value("reports.types", "html, xml", &defaults),
            Some(Value::from(vec![
                Value::from("html".to_owned()),
                Value::from("xml".to_owned())
            ]))
        );
        assert_eq!(
            typed_value("submission.params.internet-access", "1", &defaults),
            Some(Value::from("1".to_owned()))
        );
        assert_eq!(typed_value("api.nonsense", "1", &defaults), None);
        assert_eq!(typed_value("api", "1", &defaults), None);
    }

    #[test]
    fn schedules_need_six_fields() {
        assert!(validate_schedule("0 * * * * *").is_ok());
        assert!(
            validate_schedule("* * * * *")
                .unwrap_err()
                .contains("5 fields")
        );
        assert!(validate_schedule("0 61 * * * *").is_err());
    }

    #[test]
    fn defaults_are_valid_apart_from_nothing() {
        validate(&Config::default()).unwrap();
    }

    #[test]
    fn the_redacted_output_is_toml_that_loads_back() {
        let loaded = Loaded {
            config: Config::default(),
            file: None,
            warnings: vec![],
            origins: BTreeMap::new(),
        };
        let text = redacted_toml(&loaded, Some(&KeySource::Env));
        let back: Config = Figment::from(Toml::string(&text)).extract().unwrap();
        assert_eq!(back, Config::default());
        assert!(text.contains("# key = [set from environment variable JBX_API_KEY]"));
    }
}
