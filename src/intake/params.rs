//! Per-item submission parameters as JSON (`url_queue.params`, `items.params`).
//!
//! The format is a JSON object of submission parameter name → value: strings, integers and
//! booleans; `systems` and `tags` may also be arrays of strings; `force: true` forces a
//! resubmission past dedup and is not a submission parameter. Intake validates the producer's
//! object here and stores the normalised object (same shape, without `force`) in
//! `items.params`; the pipeline reads it back with [`parse`].

use serde_json::{Map, Value};

use crate::api::{Param, SubmissionParams};

/// The largest `params` text accepted, in bytes. Real parameter objects are a few hundred
/// bytes; the limit keeps a producer's mistake (a file pasted into the column) from being read
/// into memory: `db::url_queue::fetch_new` leaves a larger value unread and the row is rejected
/// with [`ParamsError::TooLarge`] (RELIABILITY.md case 117).
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;

/// A bad `params` value. `Display` is the rejection reason: it names the parameter but never
/// quotes a value (a value could be a password, e.g. `archive-password`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("params is not valid JSON ({0})")]
    NotJson(String),
    #[error("params is not a JSON object")]
    NotObject,
    #[error("params too large ({size} bytes > {max})")]
    TooLarge { size: u64, max: usize },
    /// The column held bytes that are not UTF-8 text (e.g. a BLOB).
    #[error("params is not valid UTF-8 text")]
    NotUtf8,
    #[error("params: parameter `{name}` {problem}")]
    BadParameter { name: String, problem: String },
}

/// Validated per-item parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemParams {
    pub params: SubmissionParams,
    /// Submit even if dedup found an earlier item.
    pub force: bool,
    /// The normalised JSON object (without `force`), `None` when no parameter was given.
    pub json: Option<String>,
}

fn bad(name: &str, problem: impl Into<String>) -> ParamsError {
    ParamsError::BadParameter {
        // A producer's name: one printable line of at most 64 characters.
        name: crate::text::one_line(name, 64),
        problem: problem.into(),
    }
}

/// Parses and validates a `params` JSON text (`None` or blank: no parameters).
pub fn parse(text: Option<&str>) -> Result<ItemParams, ParamsError> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(ItemParams::default());
    };
    if text.len() > MAX_PARAMS_BYTES {
        return Err(ParamsError::TooLarge {
            size: text.len() as u64,
            max: MAX_PARAMS_BYTES,
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json's messages name a position and a category, never the input text.
        ParamsError::NotJson(e.to_string())
    })?;
    let Value::Object(object) = value else {
        return Err(ParamsError::NotObject);
    };
    let mut out = ItemParams::default();
    let mut normalised = Map::new();
    for (name, value) in object {
        if name == "force" {
            out.force = match value {
                Value::Bool(b) => b,
                _ => return Err(bad(&name, "must be true or false")),
            };
            continue;
        }
        if name == Param::EncryptWithPassword.name() {
            // A row of url_queue is readable by every producer and kept in the database.
            return Err(bad(
                &name,
                "is a password and is not accepted in params: set reports.encrypt = true and \
                 reports.password_file (or password_credential / password_command) in jbxd.toml",
            ));
        }
        match &value {
            Value::String(s) => set(&mut out.params, &name, s)?,
            Value::Bool(b) => set(&mut out.params, &name, if *b { "1" } else { "0" })?,
            Value::Number(n) => {
                if !(n.is_u64() || n.is_i64()) {
                    return Err(bad(&name, "must be an integer, not a fraction"));
                }
                set(&mut out.params, &name, &n.to_string())?
            }
            Value::Array(items) if matches!(name.as_str(), "systems" | "tags") => {
                for item in items {
                    let Value::String(s) = item else {
                        return Err(bad(&name, "must be a list of strings"));
                    };
                    set(&mut out.params, &name, s)?;
                }
            }
            Value::Array(_) => return Err(bad(&name, "cannot be a list")),
            Value::Null => return Err(bad(&name, "cannot be null")),
            Value::Object(_) => return Err(bad(&name, "cannot be an object")),
        }
        normalised.insert(name, value);
    }
    if !normalised.is_empty() {
        out.json = Some(Value::Object(normalised).to_string());
    }
    Ok(out)
}

fn set(params: &mut SubmissionParams, name: &str, value: &str) -> Result<(), ParamsError> {
    if name.trim().is_empty() {
        return Err(bad(name, "has an empty name"));
    }
    // A name is sent as a form field name: control characters, spaces or `=` can only be a
    // mangled or hostile name (the reason quotes it escaped, RELIABILITY.md case 119).
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '=')
    {
        return Err(bad(
            name,
            "has control characters, spaces or '=' in its name",
        ));
    }
    params.set(name, value).map_err(|e| match e {
        crate::api::ParamError::BadValue { expected, .. } => {
            bad(name, format!("expects {expected}"))
        }
        crate::api::ParamError::Reserved(_) => bad(name, "is set by jbxd itself"),
        crate::api::ParamError::NotAnAssignment(_) => bad(name, "is malformed"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ParamValue;

    #[test]
    fn a_valid_object_becomes_typed_parameters_and_force_is_split_off() {
        let p = parse(Some(
            r#"{"systems": ["w10x64", "w11"], "tags": "t", "internet-access": false,
                "analysis-time": 120, "comments": "hi", "force": true}"#,
        ))
        .unwrap();
        assert!(p.force);
        assert_eq!(p.params.systems, ["w10x64", "w11"]);
        assert_eq!(p.params.tags, ["t"]);
        assert_eq!(
            p.params.get("internet-access"),
            Some(&ParamValue::Bool(false))
        );
        assert_eq!(p.params.get("analysis-time"), Some(&ParamValue::Int(120)));
        assert!(!p.json.as_deref().unwrap().contains("force"));
        // The stored form parses back to the same parameters.
        let again = parse(p.json.as_deref()).unwrap();
        assert_eq!(again.params, p.params);
        assert!(!again.force);
    }

    #[test]
    fn no_params_means_defaults() {
        assert_eq!(parse(None).unwrap(), ItemParams::default());
        assert_eq!(parse(Some("  ")).unwrap(), ItemParams::default());
        assert_eq!(parse(Some("{}")).unwrap().json, None);
    }

    #[test]
    fn bad_params_are_rejected_with_a_reason_naming_the_parameter() {
        let r = |t: &str| parse(Some(t)).unwrap_err().to_string();
        assert!(r("{").starts_with("params is not valid JSON"));
        assert_eq!(r("[1]"), "params is not a JSON object");
        assert_eq!(
            r(r#"{"analysis-time": "soon"}"#),
            "params: parameter `analysis-time` expects a non-negative integer"
        );
        assert_eq!(
            r(r#"{"internet-access": "maybe"}"#),
            "params: parameter `internet-access` expects 1 or 0"
        );
        assert_eq!(
            r(r#"{"apikey": "secret"}"#),
            "params: parameter `apikey` is set by jbxd itself"
        );
        assert_eq!(
            r(r#"{"analysis-time": 1.5}"#),
            "params: parameter `analysis-time` must be an integer, not a fraction"
        );
        assert_eq!(
            r(r#"{"force": "yes"}"#),
            "params: parameter `force` must be true or false"
        );
        assert_eq!(
            r(r#"{"systems": [1]}"#),
            "params: parameter `systems` must be a list of strings"
        );
        assert_eq!(
            r(r#"{"comments": null}"#),
            "params: parameter `comments` cannot be null"
        );
        assert_eq!(
            r(r#"{"a\nb": {}}"#),
            "params: parameter `a\\nb` cannot be an object"
        );
        let huge = format!(r#"{{"comments": "{}"}}"#, "x".repeat(MAX_PARAMS_BYTES));
        assert_eq!(r(&huge), "params too large (65552 bytes > 65536)");
        // A secret value is never quoted.
        assert!(!r(r#"{"system-date": "hunter2"}"#).contains("hunter2"));
    }

    #[test]
    fn a_report_password_in_params_is_refused_with_a_pointer_to_the_configuration() {
        let text = parse(Some(r#"{"encrypt-with-password": "hunter2"}"#))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("`encrypt-with-password` is a password"),
            "{text}"
        );
        assert!(text.contains("reports.password_file"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
