//! Exports of one analysis' indicators for other tools: STIX 2.1 ([`stix`], for OpenCTI and
//! any TAXII consumer) and MISP event JSON ([`misp`]).
//!
//! The renderers are pure: they take an [`ExportInput`] (the analysis' verdict, its indicators,
//! signatures and ATT&CK techniques, as the index holds them) and return a JSON value. The
//! same input always gives the same document, byte for byte: every id is a UUIDv5 of what it
//! stands for (webid and value), every time is the analysis' own, lists are sorted and
//! deduplicated, and objects are serialised with sorted keys. Re-exporting an analysis into
//! OpenCTI or MISP therefore updates the objects it created before instead of adding copies.

mod input;
pub mod misp;
pub mod stix;

pub use input::{ExportError, Exported, analysis_of, input_for};

use chrono::{DateTime, SecondsFormat, Utc};
use sha1::{Digest, Sha1};

use crate::ioc::Kind;

/// The verdict and identity of the analysis being exported.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportAnalysis {
    pub webid: String,
    /// `malicious` | `suspicious` | `clean` | `unknown` (or `None` when not known yet).
    pub detection: Option<String>,
    pub score: Option<i64>,
    pub threatname: Option<String>,
    /// The analysed file name or URL.
    pub target: Option<String>,
    /// The sample's own hashes (lower-case hex), kept apart from what the analysis saw.
    pub sample_hashes: Vec<(Kind, String)>,
    /// When the analysis ran: every timestamp of the export is this one, so exports repeat.
    pub time: DateTime<Utc>,
}

impl ExportAnalysis {
    pub fn is_malicious(&self) -> bool {
        self.detection.as_deref() == Some("malicious")
    }
}

/// One indicator as the index holds it (normal form: lower-case host names and hex, canonical
/// IPs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExportIndicator {
    pub kind: Kind,
    pub value: String,
    /// `None` when the report did not say.
    pub malicious: Option<bool>,
    pub private: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExportSignature {
    pub description: String,
    pub impact: Option<i64>,
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExportTechnique {
    /// `T1055`, `T1055.001`.
    pub id: String,
    pub name: Option<String>,
    pub tactic: Option<String>,
}

/// Everything an export is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportInput {
    pub analysis: ExportAnalysis,
    pub indicators: Vec<ExportIndicator>,
    pub signatures: Vec<ExportSignature>,
    pub techniques: Vec<ExportTechnique>,
}

impl ExportInput {
    /// The input in its canonical order, without repeats: one indicator per (kind, value)
    /// (malicious if any source said so), one technique per id (the first with a name).
    pub fn canonical(&self) -> ExportInput {
        let mut indicators: Vec<ExportIndicator> = Vec::new();
        let mut sorted = self.indicators.clone();
        sorted.sort_by(|a, b| (a.kind, &a.value).cmp(&(b.kind, &b.value)));
        for ind in sorted {
            match indicators.last_mut() {
                Some(last) if last.kind == ind.kind && last.value == ind.value => {
                    last.malicious = merge_flag(last.malicious, ind.malicious);
                    last.private = merge_flag(last.private, ind.private);
                }
                _ => indicators.push(ind),
            }
        }
        let mut signatures = self.signatures.clone();
        signatures.sort();
        signatures.dedup();
        let mut techniques = self.techniques.clone();
        techniques.sort_by(|a, b| {
            (a.id.to_ascii_uppercase(), a.name.is_none())
                .cmp(&(b.id.to_ascii_uppercase(), b.name.is_none()))
        });
        techniques.dedup_by(|b, a| a.id.eq_ignore_ascii_case(&b.id));
        let mut analysis = self.analysis.clone();
        analysis.sample_hashes.sort();
        analysis.sample_hashes.dedup();
        ExportInput {
            analysis,
            indicators,
            signatures,
            techniques,
        }
    }
}

/// `true` wins over `false`, which wins over "not said".
fn merge_flag(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), _) | (_, Some(false)) => Some(false),
        _ => None,
    }
}

/// jbxd's own UUIDv5 namespace for the objects it creates (a UUIDv4 picked once, fixed
/// forever: changing it would make every earlier export's ids differ from the next one's).
pub const JBXD_NAMESPACE: [u8; 16] = [
    0x5c, 0x0e, 0x1a, 0x7e, 0x3d, 0x4b, 0x4f, 0x2a, 0x9b, 0x61, 0x0d, 0x8e, 0x52, 0xc4, 0x7f, 0x13,
];

/// UUIDv5 (RFC 9562 §5.5): SHA-1 of namespace and name, version and variant bits set.
pub fn uuid_v5(namespace: &[u8; 16], name: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(namespace);
    hasher.update(name.as_bytes());
    let digest = hasher.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// RFC 3339 in UTC with milliseconds, as STIX requires (`2026-12-04T10:00:00.000Z`).
pub fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v5_matches_the_rfc_example() {
        // RFC 9562 Appendix A.4: the DNS namespace and "www.example.com".
        let dns = [
            0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4,
            0x30, 0xc8,
        ];
        assert_eq!(
            uuid_v5(&dns, "www.example.com"),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2"
        );
    }

    #[test]
    fn canonical_input_is_sorted_deduplicated_and_keeps_the_malicious_flag() {
        let ind = |kind, value: &str, malicious| ExportIndicator {
            kind,
            value: value.into(),
            malicious,
            private: None,
        };
        let input = ExportInput {
            analysis: ExportAnalysis {
                webid: "1".into(),
                detection: None,
                score: None,
                threatname: None,
                target: None,
                sample_hashes: vec![],
                time: DateTime::<Utc>::UNIX_EPOCH,
            },
            indicators: vec![
                ind(Kind::Url, "http://b/", None),
                ind(Kind::Domain, "a.example", Some(false)),
                ind(Kind::Domain, "a.example", Some(true)),
            ],
            signatures: vec![],
            techniques: vec![
                ExportTechnique {
                    id: "T1055".into(),
                    name: None,
                    tactic: None,
                },
                ExportTechnique {
                    id: "t1055".into(),
                    name: Some("Process Injection".into()),
                    tactic: None,
                },
            ],
        };
        let c = input.canonical();
        assert_eq!(
            c.indicators,
            vec![
                ind(Kind::Domain, "a.example", Some(true)),
                ind(Kind::Url, "http://b/", None)
            ]
        );
        assert_eq!(c.techniques.len(), 1);
        assert_eq!(c.techniques[0].name.as_deref(), Some("Process Injection"));
    }
}
