//! Reply payloads (`data`) of the Joe Sandbox API, as tolerant serde types.
//!
//! Real servers differ by version (`snort` vs `suricata`, `threatname` `""` vs `"Unknown"`,
//! fields missing in some replies, ids sometimes numbers), so every field is optional except
//! the ids, ids are kept as strings whatever JSON type they arrive in, a field of an unexpected
//! type becomes `None` instead of failing the whole reply, and unknown fields are kept in
//! `extra` so `--json` output shows everything the server sent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Lenient field decoders: they accept the shapes real servers send and map anything else to
/// `None` rather than rejecting the reply.
pub(crate) mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// An id: a JSON string or number, kept as text.
    pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(serde::de::Error::custom(format!(
                "expected an id (string or number), got {other}"
            ))),
        }
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Bool(b) => Some(b),
            Value::Number(n) => n.as_i64().map(|v| v != 0),
            Value::String(s) => match s.as_str() {
                "1" | "true" => Some(true),
                "0" | "false" => Some(false),
                _ => None,
            },
            _ => None,
        })
    }

    pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Value::String(s) if !s.is_empty() => vec![s],
            _ => Vec::new(),
        })
    }
}

/// `server/online`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OnlineStatus {
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub online: Option<bool>,
}

/// `server/info`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerInfo {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub queuesize: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An item of `server/systems`. `description` contains HTML on the real server.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SystemInfo {
    #[serde(deserialize_with = "lenient::id")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub arch: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub count: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `account/info` (cloud only).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AccountInfo {
    #[serde(default, rename = "type", deserialize_with = "lenient::opt_string")]
    pub account_type: Option<String>,
    #[serde(default)]
    pub quota: Option<Quotas>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Quotas {
    #[serde(default)]
    pub daily: Option<Quota>,
    #[serde(default)]
    pub monthly: Option<Quota>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Quota {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub current: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub remaining: Option<i64>,
}

/// `submission/new`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NewSubmission {
    #[serde(deserialize_with = "lenient::id")]
    pub submission_id: String,
}

/// An item of `submission/list`: only the id is certain.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SubmissionStub {
    #[serde(alias = "id", deserialize_with = "lenient::id")]
    pub submission_id: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub time: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `submission/info`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Submission {
    #[serde(deserialize_with = "lenient::id")]
    pub submission_id: String,
    /// The file name, or the URL for URL submissions.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    /// `accepted`, `submitted`, `running` or `finished`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub time: Option<String>,
    /// `null` while there are no analyses, and on a finished submission that spawned none.
    #[serde(default)]
    pub most_relevant_analysis: Option<MostRelevantAnalysis>,
    #[serde(default)]
    pub analyses: Option<Vec<Analysis>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Submission {
    pub fn is_finished(&self) -> bool {
        self.status.as_deref() == Some("finished")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MostRelevantAnalysis {
    #[serde(deserialize_with = "lenient::id")]
    pub webid: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub detection: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub score: Option<i64>,
}

/// An item of `analysis/list` (always a stub).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AnalysisStub {
    #[serde(deserialize_with = "lenient::id")]
    pub webid: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `analysis/info`, items of `analysis/search` and of `submission/info.analyses`. Search results
/// may also be `{webid}` stubs, which parse as an `Analysis` with every other field empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Analysis {
    #[serde(deserialize_with = "lenient::id")]
    pub webid: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub analysisid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub time: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub duration: Option<i64>,
    /// The sample's file name, or the URL of URL analyses.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub filename: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub scriptname: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub md5: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub sha1: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub sha256: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub comments: Option<String>,
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub encrypted: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub classification: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub threatname: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub score: Option<i64>,
    /// `unknown`, `clean`, `suspicious` or `malicious`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub detection: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub has_malwareconfig: Option<bool>,
    #[serde(default)]
    pub runs: Option<Vec<Run>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Analysis {
    pub fn is_finished(&self) -> bool {
        self.status.as_deref() == Some("finished")
    }

    /// The analysed URL for URL analyses (older servers send `url`, newer ones only `filename`).
    pub fn url(&self) -> Option<&str> {
        self.extra.get("url").and_then(Value::as_str).or_else(|| {
            self.filename
                .as_deref()
                .filter(|f| f.starts_with("http://") || f.starts_with("https://"))
        })
    }
}

/// One run of an analysis: one per system (plus chained runs).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Run {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub system: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub detection: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub score: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub error: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub yara: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub sigma: Option<bool>,
    /// Called `snort` until early 2024 and `suricata` since; both are accepted.
    #[serde(default, alias = "snort", deserialize_with = "lenient::opt_bool")]
    pub suricata: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2024-style URL analysis as recorded from the cloud (shape of the Rapid7 fixture).
    const URL_ANALYSIS_2024: &str = r#"{
        "webid": "3675753", "analysisid": "3675753", "status": "finished",
        "time": "2024-03-01T11:46:34+01:00", "duration": 253, "filename": "http://conor",
        "scriptname": "browseurl.jbs", "tags": [], "encrypted": false, "score": 0,
        "detection": "clean", "has_malwareconfig": false,
        "runs": [{"detection": "clean", "system": "w10x64_office", "yara": false,
                  "sigma": false, "snort": false, "score": 0}]
    }"#;

    /// A 2019-style file analysis: distinct analysisid, run error string, `Unknown` threat.
    const FILE_ANALYSIS_2019: &str = r#"{
        "webid": 779566, "analysisid": "771703", "status": "finished",
        "time": "2019-01-28T12:28:47+01:00", "duration": "190", "filename": "xiaoqi.exe",
        "scriptname": "default.jbs", "md5": "6efca10c8e17afe05d27d95fccb716f7",
        "sha1": "", "sha256": "", "comments": "()", "tags": "internal", "encrypted": 0,
        "classification": "", "threatname": "Unknown", "score": 42, "detection": "malicious",
        "runs": [{"detection": "malicious", "error": "Unable to run", "system": "w7x64",
                  "yara": true, "sigma": null, "suricata": true, "score": 42}],
        "live-interaction-url": "https://joesandbox.com/analysis/123456789"
    }"#;

    #[test]
    fn a_2024_url_analysis_with_snort_parses() {
        let a: Analysis = serde_json::from_str(URL_ANALYSIS_2024).unwrap();
        assert_eq!(a.webid, "3675753");
        assert!(a.is_finished());
        assert_eq!(a.url(), Some("http://conor"));
        assert_eq!(a.md5, None);
        let run = &a.runs.as_ref().unwrap()[0];
        assert_eq!(run.suricata, Some(false));
        assert_eq!(run.error, None);
    }

    #[test]
    fn a_2019_file_analysis_with_numeric_ids_and_odd_types_parses() {
        let a: Analysis = serde_json::from_str(FILE_ANALYSIS_2019).unwrap();
        assert_eq!(a.webid, "779566");
        assert_eq!(a.analysisid.as_deref(), Some("771703"));
        assert_eq!(a.duration, Some(190));
        assert_eq!(a.tags, vec!["internal".to_string()]);
        assert_eq!(a.encrypted, Some(false));
        assert_eq!(a.threatname.as_deref(), Some("Unknown"));
        assert_eq!(
            a.runs.as_ref().unwrap()[0].error.as_deref(),
            Some("Unable to run")
        );
        assert!(a.extra.contains_key("live-interaction-url"));
        assert_eq!(a.url(), None);
    }

    #[test]
    fn a_search_stub_parses_as_an_analysis_with_only_the_webid() {
        let hits: Vec<Analysis> = serde_json::from_str(r#"[{"webid": "180"}]"#).unwrap();
        assert_eq!(hits[0].webid, "180");
        assert!(hits[0].detection.is_none());
    }

    #[test]
    fn a_finished_submission_without_analyses_has_a_null_most_relevant_analysis() {
        let s: Submission = serde_json::from_str(
            r#"{"submission_id": "140", "name": "empty.bin", "status": "finished",
                "time": "2025-02-04T15:44:06+01:00", "most_relevant_analysis": null,
                "analyses": []}"#,
        )
        .unwrap();
        assert!(s.is_finished());
        assert!(s.most_relevant_analysis.is_none());
        assert_eq!(s.analyses.unwrap().len(), 0);
    }

    #[test]
    fn a_submission_in_progress_may_lack_analyses_entirely() {
        let s: Submission =
            serde_json::from_str(r#"{"submission_id": 141, "status": "accepted"}"#).unwrap();
        assert_eq!(s.submission_id, "141");
        assert!(s.analyses.is_none());
    }

    #[test]
    fn unknown_fields_survive_a_round_trip_for_json_output() {
        let a: Analysis =
            serde_json::from_str(r#"{"webid": "1", "analysis_type": "reverser", "x": [1]}"#)
                .unwrap();
        let back = serde_json::to_value(&a).unwrap();
        assert_eq!(back["analysis_type"], "reverser");
        assert_eq!(back["x"][0], 1);
    }

    #[test]
    fn account_info_parses_quotas() {
        let a: AccountInfo = serde_json::from_str(
            r#"{"type": "ultimate", "quota": {"daily": {"current": 0, "limit": 100,
                "remaining": 100}, "monthly": {"current": 150, "limit": 250, "remaining": 100}}}"#,
        )
        .unwrap();
        assert_eq!(a.account_type.as_deref(), Some("ultimate"));
        assert_eq!(a.quota.unwrap().monthly.unwrap().remaining, Some(100));
    }
}
