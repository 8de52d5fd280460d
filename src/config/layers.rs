//! The layers of the configuration, as figment providers: the built-in defaults (figment's
//! `Serialized`), the TOML file (figment's `Toml`), the official client's `JBX_API_URL` and
//! `JBX_ACCEPT_TAC`, the `JBXD_SECTION__KEY` variables, and command-line overrides.
//!
//! Each [`Layer`] carries a metadata that names the variable or flag a key came from, which
//! `origins.rs` turns into the "(environment variable JBXD_POLL__MAX_INTERVAL_SECS)" of an error.
//! Text values are converted by the type of the key they set ([`typed_value`]), not by figment's
//! TOML-like guessing: `JBXD_API__URL=1234` stays a string, `JBXD_REPORTS__TYPES=html,xml` is a
//! list.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use serde_json::Value as Json;

use crate::api;

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

/// The official client's (jbxapi's) variables, which the CLI and the daemon both read.
pub const ENV_URL: &str = "JBX_API_URL";
pub const ENV_KEY: &str = "JBX_API_KEY";
pub const ENV_ACCEPT_TAC: &str = "JBX_ACCEPT_TAC";

/// A snapshot of the environment, taken once per load so that the layers and the API key
/// lookup see the same values, and so that tests can pass their own instead of changing the
/// process environment. Variables whose name or value is not UTF-8 are left out: none of
/// jbxd's can be such. No `Debug`: it holds `JBX_API_KEY` in clear.
#[derive(Clone, Default)]
pub struct Env(Vec<(String, String)>);

/// The snapshot holds `JBX_API_KEY` (and a vault's `VAULT_TOKEN`, `BW_SESSION`, …) in clear:
/// zeroed when dropped, like every other copy of a secret.
impl Drop for Env {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for (name, value) in &mut self.0 {
            name.zeroize();
            value.zeroize();
        }
    }
}

impl Env {
    /// The process environment, now.
    pub fn process() -> Self {
        Self(
            std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()?))
                })
                .collect(),
        )
    }

    /// Exactly these variables.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }

    /// The value of `name`, if it is set (an empty value is set, and empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// A provider holding ready-made values, with a metadata that names each key's source.
pub(super) struct Layer {
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
pub(super) fn official_env_layer(env: &Env) -> Layer {
    let mut dict = Dict::new();
    if let Some(url) = env.get(ENV_URL) {
        insert_nested(&mut dict, "api.url", Value::from(url.to_owned()));
    }
    if let Some(accept) = env.get(ENV_ACCEPT_TAC) {
        // jbxapi treats only "1" as acceptance; so do we.
        insert_nested(
            &mut dict,
            "api.accept_tac",
            Value::from(accept.trim() == "1"),
        );
    }
    Layer {
        metadata: Metadata::named("environment variable").interpolater(
            |_, keys: &[&str]| match keys.join(".").as_str() {
                "api.url" => ENV_URL.into(),
                "api.accept_tac" => ENV_ACCEPT_TAC.into(),
                other => other.to_owned(),
            },
        ),
        dict,
    }
}

/// `JBXD_SECTION__KEY` variables, converted by the key's type; also returns the names of
/// `JBXD_*` variables that are not configuration keys.
pub(super) fn jbxd_env_layer(env: &Env, defaults: &Json) -> (Layer, Vec<String>) {
    let mut dict = Dict::new();
    let mut unknown = Vec::new();
    for (name, raw) in env.iter() {
        let Some(rest) = name.strip_prefix("JBXD_") else {
            continue;
        };
        if NON_CONFIG_ENV.contains(&name)
            || NON_CONFIG_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
            || rest.is_empty()
        {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        match typed_value(&key, raw, defaults) {
            Some(value) => insert_nested(&mut dict, &key, value),
            None => unknown.push(name.to_owned()),
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
pub(super) fn override_layer(overrides: &[(String, String)], defaults: &Json) -> Layer {
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

/// Values of command-line flags as (dotted key, flag, value); an error names the flag.
pub(super) fn flag_layer(values: Vec<(&'static str, &'static str, Value)>) -> Layer {
    let mut dict = Dict::new();
    let mut flags: Vec<(&'static str, &'static str)> = Vec::new();
    for (key, flag, value) in values {
        insert_nested(&mut dict, key, value);
        flags.push((key, flag));
    }
    Layer {
        metadata: Metadata::named("command-line flag").interpolater(move |_, keys: &[&str]| {
            let key = keys.join(".");
            match flags.iter().find(|(k, _)| *k == key) {
                Some((_, flag)) => (*flag).to_owned(),
                None => key,
            }
        }),
        dict,
    }
}

/// Converts a text value by the type of the default at `key`; `None` when `key` is not a
/// configuration key. Values that do not convert stay strings, so extraction reports them
/// with the key and its source.
pub(super) fn typed_value(key: &str, raw: &str, defaults: &Json) -> Option<Value> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
}
