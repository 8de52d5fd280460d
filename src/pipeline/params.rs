//! The parameters of a submission: the configured defaults, one attempt's parameters (the
//! item's own over the defaults, and the comments carrying the attempt key), and the analysis
//! time an item was submitted with, which the poll schedule needs. Shared by the submit worker
//! and the poll plan (`pace`), so neither imports the other.

use anyhow::Context as _;

use crate::api::SubmissionParams;
use crate::app::App;
use crate::config::SubmissionConfig;
use crate::db::Item;

/// The submission defaults of the configuration.
pub fn default_params(config: &SubmissionConfig) -> anyhow::Result<SubmissionParams> {
    let mut params = SubmissionParams::new();
    params.systems = config.systems.clone();
    params.tags = config.tags.clone();
    for (name, value) in &config.params {
        params
            .set(name, value)
            .with_context(|| format!("submission.params.{name}"))?;
    }
    Ok(params)
}

/// The parameters of one attempt: the item's own `params` (a JSON object), the configured
/// defaults under them, and the comments carrying the attempt key. `Err` is the reason to
/// reject the item.
pub fn attempt_params(
    item_params: Option<&str>,
    defaults: &SubmissionParams,
    config: &SubmissionConfig,
    attempt_key: &str,
) -> Result<SubmissionParams, String> {
    // The per-item JSON has one reader: intake validated it with the same function when the
    // item was created.
    let mut params = crate::intake::params::parse(item_params)
        .map_err(|e| e.to_string())?
        .params;
    params.merge_defaults(defaults);
    let user = params
        .comments()
        .map(str::to_owned)
        .or_else(|| config.comments.clone())
        .filter(|c| !c.trim().is_empty());
    let comments = match user {
        Some(user) => format!("{user} jbxd:{attempt_key}"),
        None => format!("jbxd:{attempt_key}"),
    };
    params.set_comments(&comments);
    Ok(params)
}

/// The analysis time the item was submitted with: its own parameter, else the configured
/// default's; `None` when neither sets a valid one.
pub(crate) fn analysis_time(app: &App, item: &Item) -> Option<u64> {
    let own = crate::intake::params::parse(item.params.as_deref())
        .ok()
        .and_then(|p| p.params.analysis_time());
    own.or_else(|| default_params(&app.config.submission).ok()?.analysis_time())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SubmissionConfig {
        SubmissionConfig {
            systems: vec!["w10x64".into()],
            tags: vec!["jbxd".into()],
            comments: Some("from the drop folder".into()),
            params: [("internet-access".to_owned(), "1".to_owned())].into(),
        }
    }

    fn form(params: &SubmissionParams) -> Vec<(String, String)> {
        params.to_form()
    }

    fn get<'a>(form: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        form.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn defaults_fill_in_what_the_item_leaves_unset_and_the_key_ends_the_comments() {
        let config = config();
        let defaults = default_params(&config).unwrap();
        let p = attempt_params(None, &defaults, &config, "abc-1").unwrap();
        let f = form(&p);
        assert_eq!(get(&f, "systems[]"), ["w10x64"]);
        assert_eq!(get(&f, "tags[]"), ["jbxd"]);
        assert_eq!(get(&f, "internet-access"), ["1"]);
        assert_eq!(get(&f, "comments"), ["from the drop folder jbxd:abc-1"]);

        let own = r#"{"internet-access": false, "systems": ["w7", "w11"], "comments": "mine",
                      "analysis-time": 120}"#;
        let p = attempt_params(Some(own), &defaults, &config, "abc-2").unwrap();
        let f = form(&p);
        assert_eq!(get(&f, "systems[]"), ["w7", "w11"]);
        assert_eq!(get(&f, "internet-access"), ["0"]);
        assert_eq!(get(&f, "analysis-time"), ["120"]);
        assert_eq!(get(&f, "comments"), ["mine jbxd:abc-2"]);
    }

    #[test]
    fn without_any_user_comment_the_comments_are_just_the_key() {
        let config = SubmissionConfig::default();
        let p = attempt_params(Some("{}"), &SubmissionParams::new(), &config, "k-3").unwrap();
        assert_eq!(get(&form(&p), "comments"), ["jbxd:k-3"]);
    }

    #[test]
    fn bad_item_parameters_are_a_reason_to_reject() {
        let config = SubmissionConfig::default();
        let none = SubmissionParams::new();
        for bad in [
            "not json",
            "[1, 2]",
            r#"{"analysis-time": "long"}"#,
            r#"{"apikey": "x"}"#,
            r#"{"tags": [{"a": 1}]}"#,
        ] {
            let err = attempt_params(Some(bad), &none, &config, "k-1").unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }
}
