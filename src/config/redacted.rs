//! The effective configuration as TOML for `jbxd config check`: every key, unset optional keys
//! commented out, non-default values annotated with their source, no secret ever shown: for
//! each secret, the source that won (file path, credential, command program, variable name),
//! and for a vault command only its program (its arguments may name a vault path or carry a
//! token).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::connection::KeySource;
use super::error::ConfigError;
use super::load::{LoadOptions, Loaded, load};
use super::secrets::SecretSource;

/// `jbxd config check`: loads and validates exactly as `jbxd run` would (API key included)
/// and returns the effective configuration as TOML, key redacted. Print the text on stdout
/// and exit 0; on `Err`, print the error and exit with [`ConfigError::exit_code`] (78).
pub fn check(opts: &LoadOptions) -> Result<String, ConfigError> {
    let loaded = load(opts)?;
    let password = loaded.report_password.as_ref().map(|(_, source)| source);
    let mut text = redacted_toml(&loaded.loaded, Some(&loaded.key_source), password);
    for warning in &loaded.loaded.warnings {
        text.push_str(&format!("# warning: {warning}\n"));
    }
    Ok(text)
}

/// The effective configuration as TOML for `jbxd config check`: every key, unset optional
/// keys commented out, non-default values annotated with their source, the API key and the
/// report password shown only as `[set from <source>]`, vault commands as their program.
pub fn redacted_toml(
    loaded: &Loaded,
    key_source: Option<&KeySource>,
    password_source: Option<&SecretSource>,
) -> String {
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
            let secret = match name.as_str() {
                "api" => Some(("key", key_source)),
                "reports" => Some(("password", password_source)),
                _ => None,
            };
            if let Some((secret, source)) = secret {
                let shown = match source {
                    Some(source) => format!("[set from {source}]"),
                    None => "[not set]".into(),
                };
                out.push_str(&format!("# {secret} = {shown}\n"));
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
        // A vault command: its program only (`secrets.rs`).
        Json::Array(argv) if name.ends_with("_command") => {
            let program = argv.first().and_then(Json::as_str).unwrap_or_default();
            let program = std::path::Path::new(program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push_str(&format!(
                "# {} = (runs {} with {} argument(s), not shown){origin}\n",
                toml_key(name),
                crate::text::one_line(&program, 64),
                argv.len().saturating_sub(1)
            ));
        }
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
    use crate::config::Config;
    use figment::Figment;
    use figment::providers::{Format, Toml};

    #[test]
    fn the_redacted_output_is_toml_that_loads_back() {
        let loaded = Loaded {
            config: Config::default(),
            file: None,
            warnings: vec![],
            origins: BTreeMap::new(),
        };
        let text = redacted_toml(&loaded, Some(&KeySource::Env("JBX_API_KEY")), None);
        let back: Config = Figment::from(Toml::string(&text)).extract().unwrap();
        assert_eq!(back, Config::default());
        assert!(text.contains("# key = [set from environment variable JBX_API_KEY]"));
        assert!(text.contains("# password = [not set]"), "{text}");
    }

    #[test]
    fn a_vault_command_shows_its_program_and_never_its_arguments() {
        let mut config = Config::default();
        config.api.key_command = Some(vec![
            "/usr/bin/vault".into(),
            "kv".into(),
            "-token=JBXD-SENTINEL-token".into(),
        ]);
        let loaded = Loaded {
            config,
            file: None,
            warnings: vec![],
            origins: BTreeMap::new(),
        };
        let source = SecretSource::Command {
            key: "api.key_command",
            program: "vault".into(),
        };
        let text = redacted_toml(&loaded, Some(&source), None);
        assert!(
            text.contains("# key_command = (runs vault with 2 argument(s), not shown)"),
            "{text}"
        );
        assert!(
            text.contains("# key = [set from api.key_command (vault)]"),
            "{text}"
        );
        assert!(!text.contains("SENTINEL"), "{text}");
    }
}
