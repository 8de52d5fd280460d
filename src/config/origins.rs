//! Where each value came from: the file (with the line where the key can be found), the
//! environment variable, the flag, or the default. Also turns figment's errors into
//! [`ConfigError::Key`] with that origin, and finds keys the schema does not know.

use std::path::Path;

use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Profile};
use serde_json::Value as Json;

use super::error::ConfigError;

/// Finds the line of a dotted key in a TOML text (best effort: `[section]` headers and
/// `name =` lines).
pub(super) struct KeyLines {
    lines: Vec<(String, String, usize)>,
}

impl KeyLines {
    pub(super) fn new(text: &str) -> Self {
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

pub(super) fn origin_of(
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

/// A rule's verdict (the key and what is wrong with its value) as an error naming the origin.
pub(super) fn rule_error(
    (key, message): (&str, String),
    describe: &dyn Fn(&str) -> String,
) -> ConfigError {
    ConfigError::Key {
        origin: describe(key),
        key: key.to_owned(),
        message,
    }
}

pub(super) fn figment_error(
    error: &figment::Error,
    describe: &dyn Fn(&str) -> String,
) -> ConfigError {
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

pub(super) fn find_unknown(dict: &Dict, known: &Json, prefix: &str, out: &mut Vec<String>) {
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

pub(super) fn leaf_keys(value: &Json) -> Vec<String> {
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
