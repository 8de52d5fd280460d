//! The facts a report yields (the parser's output and the index's input).

use crate::ioc::Kind;

/// Which of Joe's two report families a document belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFamily {
    /// The full report: root `analysis` with `generalinfo`, `fileinfo`, `signaturedetections`, ...
    Full,
    /// The incident report (`reporttype` = `IR`): flat `detection`, `contacted`, `dropped`, ...
    Incident,
}

/// Everything jbxd takes from one report document.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReportFacts {
    pub family: Option<ReportFamily>,
    pub verdict: Option<ReportVerdict>,
    pub indicators: Vec<RawIndicator>,
    pub signatures: Vec<RawSignature>,
    pub techniques: Vec<RawTechnique>,
    pub yara: Vec<RawYaraHit>,
    pub configs: Vec<RawConfig>,
    /// The report's own error texts (`errorinfo/error`, IR `errors/error`).
    pub errors: Vec<String>,
    /// Set when a cap on the number of facts was reached: the document had more than was kept.
    pub truncated: bool,
}

/// The verdict as the report states it (empiric strategy, or IR `detection`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReportVerdict {
    /// `malicious` | `suspicious` | `clean` | `unknown` (the API's words, not `MAL`/`SUS`).
    pub detection: Option<String>,
    pub score: Option<i64>,
    pub threatname: Option<String>,
    /// IR `confidence/score` (0–5).
    pub confidence: Option<i64>,
}

/// One indicator: a host, address, URL, hash or file name the analysis saw.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RawIndicator {
    pub kind: Kind,
    /// As the report spells it.
    pub value: String,
    /// `None` when the report does not say.
    pub malicious: Option<bool>,
    /// For IPs: whether the report calls the address private (`@private`), else `None`.
    pub private: Option<bool>,
    /// Where it came from, as a report path: `domaininfo`, `ipinfo`, `urlinfo`, `droppedinfo`,
    /// `fileinfo`, `contacted.domains`, `contacted.ips`, `contacted.urls`, `dropped`, `hashes`,
    /// `behavior.network`, ...
    pub section: &'static str,
}

/// A signature that fired.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RawSignature {
    pub id: Option<String>,
    pub description: String,
    /// `@impact` (full report); IR signatures carry none.
    pub impact: Option<i64>,
}

/// A MITRE ATT&CK technique the analysis mapped.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RawTechnique {
    /// As spelled (`T1055`, `t1055.001`).
    pub id: String,
    pub name: Option<String>,
    pub tactic: Option<String>,
}

/// A YARA rule that matched.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RawYaraHit {
    pub rule: String,
    /// `sample` | `droppedfiles` | `memorydumps` | `unpackedpes`.
    pub scope: String,
}

/// One extracted malware configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RawConfig {
    /// `@threatname` (the family), when given.
    pub threatname: Option<String>,
    /// The config object as JSON text (from the XML: its attributes and children as JSON).
    pub json: String,
}
