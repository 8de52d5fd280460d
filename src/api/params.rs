//! Submission parameters and search queries, and their exact wire encoding.
//!
//! The encoding follows the official client (jbxapi 3.25.0): booleans as `"1"`/`"0"`, unset
//! parameters left out, `systems[]` and `tags[]` repeated per element, `document-password` sent
//! as `office-files-password`, integers as decimal text.

use std::collections::BTreeMap;
use std::fmt;

/// The value type of a known submission parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Bool,
    Int,
    Text,
    /// `YYYY-MM-DD`.
    Date,
}

/// Every submission parameter jbxapi knows, in jbxapi's order, with its type. `systems` and
/// `tags` are lists and handled separately.
pub const KNOWN_PARAMS: &[(&str, ParamType)] = &[
    ("analyze-on-reverser", ParamType::Bool),
    ("comments", ParamType::Text),
    ("analysis-time", ParamType::Int),
    ("internet-access", ParamType::Bool),
    ("document-password", ParamType::Text),
    ("archive-password", ParamType::Text),
    ("command-line-argument", ParamType::Text),
    ("localized-internet-country", ParamType::Text),
    ("internet-simulation", ParamType::Bool),
    ("report-cache", ParamType::Bool),
    ("hybrid-code-analysis", ParamType::Bool),
    ("hybrid-decompilation", ParamType::Bool),
    ("ssl-inspection", ParamType::Bool),
    ("vba-instrumentation", ParamType::Bool),
    ("js-instrumentation", ParamType::Bool),
    ("java-jar-tracing", ParamType::Bool),
    ("dotnet-tracing", ParamType::Bool),
    ("amsi-unpacking", ParamType::Bool),
    ("fast-mode", ParamType::Bool),
    ("secondary-results", ParamType::Bool),
    ("apk-instrumentation", ParamType::Bool),
    ("email-notification", ParamType::Bool),
    ("start-as-normal-user", ParamType::Bool),
    ("system-date", ParamType::Date),
    ("language-and-locale", ParamType::Text),
    ("archive-no-unpack", ParamType::Bool),
    ("hypervisor-based-inspection", ParamType::Bool),
    ("powershell-logging", ParamType::Bool),
    ("disable-chained-runs", ParamType::Bool),
    ("live-interaction", ParamType::Bool),
    ("encrypt-with-password", ParamType::Text),
    ("browser", ParamType::Text),
    ("url-reputation", ParamType::Bool),
    ("delete-after-days", ParamType::Int),
    ("proxy-mode-config", ParamType::Text),
    ("priority", ParamType::Int),
    // Deprecated, still accepted by jbxapi.
    ("anti-evasion-date", ParamType::Bool),
    ("remote-assistance", ParamType::Bool),
    ("remote-assistance-view-only", ParamType::Bool),
    ("static-only", ParamType::Bool),
    ("export-to-jbxview", ParamType::Bool),
];

/// Fields the client sets itself; a parameter may not override them.
const RESERVED: &[&str] = &[
    "apikey",
    "accept-tac",
    "sample",
    "chunked-sample",
    "sample-url",
    "url",
    "command-line",
    "cookbook",
    "submission_id",
];

/// A parameter name or value that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter `{name}` expects {expected}, got `{value}`")]
    BadValue {
        name: String,
        expected: &'static str,
        value: String,
    },
    #[error("parameter `{0}` is set by jbxd itself and cannot be given")]
    Reserved(String),
    #[error("`{0}` is not of the form NAME=VALUE")]
    NotAnAssignment(String),
}

/// The parameters jbxd sets by meaning (the CLI's flags, the attempt marker in the
/// comments), so that no caller outside `api` spells their wire names. Anything else goes
/// through [`SubmissionParams::set`] by the name the user typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Comments,
    AnalysisTime,
    InternetAccess,
    ReportCache,
    ArchivePassword,
    DocumentPassword,
    EncryptWithPassword,
    Browser,
    DeleteAfterDays,
}

impl Param {
    pub const ALL: &'static [Param] = &[
        Self::Comments,
        Self::AnalysisTime,
        Self::InternetAccess,
        Self::ReportCache,
        Self::ArchivePassword,
        Self::DocumentPassword,
        Self::EncryptWithPassword,
        Self::Browser,
        Self::DeleteAfterDays,
    ];

    /// The wire name (a [`KNOWN_PARAMS`] entry).
    pub fn name(self) -> &'static str {
        match self {
            Self::Comments => "comments",
            Self::AnalysisTime => "analysis-time",
            Self::InternetAccess => "internet-access",
            Self::ReportCache => "report-cache",
            Self::ArchivePassword => "archive-password",
            Self::DocumentPassword => "document-password",
            Self::EncryptWithPassword => "encrypt-with-password",
            Self::Browser => "browser",
            Self::DeleteAfterDays => "delete-after-days",
        }
    }
}

/// A typed parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    Bool(bool),
    Int(u64),
    Text(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
            Self::Int(i) => write!(f, "{i}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// The parameters of one `submission/new`, apart from what is analysed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmissionParams {
    /// Analysis systems; empty = the server's automatic choice.
    pub systems: Vec<String>,
    pub tags: Vec<String>,
    /// Known parameters by name (see [`KNOWN_PARAMS`]); unset ones are simply absent.
    values: BTreeMap<String, ParamValue>,
    /// Raw `name=value` pairs sent verbatim after the known ones (the escape hatch for
    /// parameters newer than this build).
    raw: Vec<(String, String)>,
}

/// Looks up a known parameter's type. `office-files-password` is the deprecated wire name of
/// `document-password`.
pub fn param_type(name: &str) -> Option<ParamType> {
    let name = canonical_name(name);
    KNOWN_PARAMS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, t)| *t)
}

fn canonical_name(name: &str) -> &str {
    match name {
        "office-files-password" => "document-password",
        other => other,
    }
}

/// Parses a boolean the way a human types it on the command line.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn is_iso_date(value: &str) -> bool {
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok() && value.len() == 10
}

impl SubmissionParams {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a known parameter from text, validating it against its type; an unknown name is
    /// kept as a raw parameter and sent verbatim. `systems`/`tags` (also `systems[]`) append.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ParamError> {
        let name = name.trim();
        if RESERVED.contains(&name) {
            return Err(ParamError::Reserved(name.to_owned()));
        }
        match name {
            "systems" | "systems[]" => {
                self.systems.push(value.to_owned());
                return Ok(());
            }
            "tags" | "tags[]" => {
                self.tags.push(value.to_owned());
                return Ok(());
            }
            _ => {}
        }
        let Some(kind) = param_type(name) else {
            self.raw.push((name.to_owned(), value.to_owned()));
            return Ok(());
        };
        let bad = |expected| ParamError::BadValue {
            name: name.to_owned(),
            expected,
            value: value.to_owned(),
        };
        let typed = match kind {
            ParamType::Bool => ParamValue::Bool(parse_bool(value).ok_or_else(|| bad("1 or 0"))?),
            ParamType::Int => ParamValue::Int(
                value
                    .trim()
                    .parse()
                    .map_err(|_| bad("a non-negative integer"))?,
            ),
            ParamType::Date if !is_iso_date(value.trim()) => {
                return Err(bad("a date YYYY-MM-DD"));
            }
            ParamType::Date => ParamValue::Text(value.trim().to_owned()),
            ParamType::Text => ParamValue::Text(value.to_owned()),
        };
        self.values.insert(canonical_name(name).to_owned(), typed);
        Ok(())
    }

    /// Parses and sets `NAME=VALUE` (the CLI's `--param`).
    pub fn set_assignment(&mut self, assignment: &str) -> Result<(), ParamError> {
        let (name, value) = assignment
            .split_once('=')
            .filter(|(n, _)| !n.trim().is_empty())
            .ok_or_else(|| ParamError::NotAnAssignment(assignment.to_owned()))?;
        self.set(name, value)
    }

    pub fn set_bool(&mut self, name: &str, value: bool) -> Result<(), ParamError> {
        self.set(name, if value { "1" } else { "0" })
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(canonical_name(name))
    }

    /// Removes a known parameter.
    pub fn unset(&mut self, name: &str) {
        self.values.remove(canonical_name(name));
    }

    /// The comments text, if any.
    pub fn comments(&self) -> Option<&str> {
        match self.values.get(Param::Comments.name()) {
            Some(ParamValue::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// Sets `param` from text, validated against its type like [`Self::set`].
    pub fn set_param(&mut self, param: Param, value: &str) -> Result<(), ParamError> {
        self.set(param.name(), value)
    }

    /// Sets a boolean `param` (`1`/`0` on the wire).
    pub fn set_param_bool(&mut self, param: Param, value: bool) -> Result<(), ParamError> {
        self.set_bool(param.name(), value)
    }

    /// Sets the comments text (free text: it cannot be invalid).
    pub fn set_comments(&mut self, text: &str) {
        self.values.insert(
            Param::Comments.name().to_owned(),
            ParamValue::Text(text.to_owned()),
        );
    }

    /// The analysis time in seconds, if set.
    pub fn analysis_time(&self) -> Option<u64> {
        match self.values.get(Param::AnalysisTime.name()) {
            Some(ParamValue::Int(secs)) => Some(*secs),
            _ => None,
        }
    }

    /// Fills in every parameter of `defaults` that this set leaves unset (systems and tags only
    /// when this set has none).
    pub fn merge_defaults(&mut self, defaults: &SubmissionParams) {
        for (name, value) in &defaults.values {
            self.values
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
        if self.systems.is_empty() {
            self.systems = defaults.systems.clone();
        }
        if self.tags.is_empty() {
            self.tags = defaults.tags.clone();
        }
        for pair in &defaults.raw {
            if !self.raw.iter().any(|(n, _)| *n == pair.0) {
                self.raw.push(pair.clone());
            }
        }
    }

    /// The form fields, in jbxapi's order: known parameters, raw ones, then `systems[]` and
    /// `tags[]`. The caller adds `apikey`, `accept-tac` and the field naming what to analyse.
    pub fn to_form(&self) -> Vec<(String, String)> {
        let mut form = Vec::new();
        for (name, _) in KNOWN_PARAMS {
            if let Some(value) = self.values.get(*name) {
                let wire = match *name {
                    "document-password" => "office-files-password",
                    other => other,
                };
                form.push((wire.to_owned(), value.to_string()));
            }
        }
        form.extend(self.raw.iter().cloned());
        form.extend(
            self.systems
                .iter()
                .map(|s| ("systems[]".to_owned(), s.clone())),
        );
        form.extend(self.tags.iter().map(|t| ("tags[]".to_owned(), t.clone())));
        form
    }
}

/// The structured filters of `analysis/search`; all are ANDed by the server.
pub const SEARCH_FILTERS: &[&str] = &[
    "md5",
    "sha1",
    "sha256",
    "filename",
    "url",
    "tag",
    "comments",
    "ioc-url",
    "ioc-dropped-file",
    "detection",
    "threatname",
    "before-date",
    "after-date",
    "ioc-domain",
    "ioc-public-ip",
];

/// An `analysis/search` request: free text (`q`, what jbxapi sends) or structured filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchQuery {
    Text(String),
    Filters(Vec<(String, String)>),
}

impl SearchQuery {
    /// Analyses of exactly this sample (the server may still match loosely: check the hits).
    pub fn sha256(hash: &str) -> Self {
        Self::Filters(vec![("sha256".to_owned(), hash.to_owned())])
    }

    /// Analyses after `date` (`YYYY-MM-DD`, exclusive), whatever else they are.
    pub fn after_date(date: &str) -> Self {
        Self::Filters(vec![("after-date".to_owned(), date.to_owned())])
    }

    pub fn to_form(&self) -> Vec<(String, String)> {
        match self {
            Self::Text(q) => vec![("q".to_owned(), q.clone())],
            Self::Filters(filters) => filters.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(form: &[(String, String)]) -> Vec<(&str, &str)> {
        form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn form_matches_the_recorded_jbxapi_body_order_and_encoding() {
        let mut p = SubmissionParams::new();
        p.set("comments", "hi").unwrap();
        p.set("analysis-time", "120").unwrap();
        p.set_bool("internet-access", false).unwrap();
        p.set("document-password", "pw").unwrap();
        p.systems = vec!["w10x64".into(), "w7".into()];
        p.tags = vec!["a".into(), "b".into()];
        assert_eq!(
            pairs(&p.to_form()),
            vec![
                ("comments", "hi"),
                ("analysis-time", "120"),
                ("internet-access", "0"),
                ("office-files-password", "pw"),
                ("systems[]", "w10x64"),
                ("systems[]", "w7"),
                ("tags[]", "a"),
                ("tags[]", "b"),
            ]
        );
    }

    #[test]
    fn unset_parameters_are_left_out() {
        assert!(SubmissionParams::new().to_form().is_empty());
    }

    #[test]
    fn booleans_accept_human_spellings_and_encode_as_one_or_zero() {
        let mut p = SubmissionParams::new();
        p.set("report-cache", "yes").unwrap();
        p.set("ssl-inspection", "off").unwrap();
        assert_eq!(
            pairs(&p.to_form()),
            vec![("report-cache", "1"), ("ssl-inspection", "0")]
        );
        let err = p.set("fast-mode", "maybe").unwrap_err();
        assert!(err.to_string().contains("fast-mode"), "{err}");
    }

    #[test]
    fn typed_values_are_validated_and_name_the_parameter() {
        let mut p = SubmissionParams::new();
        assert!(p.set("analysis-time", "two minutes").is_err());
        assert!(p.set("system-date", "2026-13-01").is_err());
        p.set("system-date", "2026-02-28").unwrap();
        assert_eq!(
            p.set("apikey", "x"),
            Err(ParamError::Reserved("apikey".into()))
        );
    }

    #[test]
    fn unknown_names_pass_through_verbatim_as_raw_parameters() {
        let mut p = SubmissionParams::new();
        p.set_assignment("brand-new-option=some value").unwrap();
        p.set_assignment("systems=w11x64").unwrap();
        assert_eq!(
            pairs(&p.to_form()),
            vec![("brand-new-option", "some value"), ("systems[]", "w11x64")]
        );
        assert!(p.set_assignment("novalue").is_err());
        assert!(p.set_assignment("=x").is_err());
    }

    #[test]
    fn the_deprecated_office_password_name_maps_to_the_document_password() {
        let mut p = SubmissionParams::new();
        p.set("office-files-password", "pw").unwrap();
        assert_eq!(pairs(&p.to_form()), vec![("office-files-password", "pw")]);
    }

    #[test]
    fn defaults_fill_only_what_is_unset() {
        let mut defaults = SubmissionParams::new();
        defaults.set("analysis-time", "300").unwrap();
        defaults.set("internet-access", "1").unwrap();
        defaults.systems = vec!["w10x64".into()];
        let mut p = SubmissionParams::new();
        p.set("analysis-time", "60").unwrap();
        p.merge_defaults(&defaults);
        assert_eq!(
            pairs(&p.to_form()),
            vec![
                ("analysis-time", "60"),
                ("internet-access", "1"),
                ("systems[]", "w10x64")
            ]
        );
    }

    #[test]
    fn typed_accessors_read_and_write_the_wire_parameters() {
        let mut p = SubmissionParams::new();
        assert_eq!(p.analysis_time(), None);
        p.set("analysis-time", " 90 ").unwrap();
        p.set_comments("mine jbxd:k-1");
        assert_eq!(p.analysis_time(), Some(90));
        assert_eq!(p.comments(), Some("mine jbxd:k-1"));
        assert_eq!(
            pairs(&p.to_form()),
            vec![("comments", "mine jbxd:k-1"), ("analysis-time", "90")]
        );
        p.set_param_bool(Param::InternetAccess, false).unwrap();
        assert!(p.set_param(Param::DeleteAfterDays, "soon").is_err());
        assert_eq!(p.get("internet-access"), Some(&ParamValue::Bool(false)));
        assert_eq!(
            SearchQuery::sha256("ab12").to_form(),
            vec![("sha256".to_owned(), "ab12".to_owned())]
        );
    }

    #[test]
    fn every_param_set_by_meaning_is_a_known_parameter() {
        for &param in Param::ALL {
            assert!(param_type(param.name()).is_some(), "{param:?}");
        }
    }
}
