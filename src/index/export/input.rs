//! The [`ExportInput`] of one analysis, read from the index.
//!
//! The analysis row gives the verdict, score, threat name, target and the sample's hashes; the
//! indicators, signatures and ATT&CK techniques come from the indicator index (`iocs`,
//! `signatures`, `attack_techniques`), or, for an analysis not indexed yet, from its stored
//! reports (`api::report::parse`, JSON preferred, XML otherwise; an encrypted analysis' zip
//! opened with the report password). What could not be read is said in [`Exported::notes`],
//! never left out silently.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{ExportAnalysis, ExportIndicator, ExportInput, ExportSignature, ExportTechnique};
use crate::api::ReportType;
use crate::api::report::{self, ReportFacts, ReportFormat};
use crate::db::{self, AnalysisRow, Db, DbError, ReportState};
use crate::ioc::Kind;

/// An export's input and what the reader should know about it.
#[derive(Debug)]
pub struct Exported {
    pub input: ExportInput,
    /// Why indicators may be missing (no readable report, a report password needed, ...).
    pub notes: Vec<String>,
}

/// Why an analysis cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "webid {0} is not in the index: only analyses the daemon recorded or `jbxd import` \
         brought in can be exported"
    )]
    UnknownWebid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The export input of `webid`: its row, and the facts of its first readable stored report
/// (JSON before XML), opened with `password` when it is encrypted.
pub async fn input_for(
    db: &Db,
    data_dir: &Path,
    webid: &str,
    password: Option<&[u8]>,
) -> Result<Exported, ExportError> {
    let row = db::analyses::get(db, webid)
        .await?
        .ok_or_else(|| ExportError::UnknownWebid(webid.to_owned()))?;
    let mut candidates: Vec<(ReportFormat, String, String)> = db::analyses::reports_for(db, webid)
        .await?
        .into_iter()
        .filter(|r| r.state == ReportState::Stored)
        .filter_map(|r| Some((ReportType::format(&r.report_type)?, r.report_type, r.path?)))
        .collect();
    candidates.sort_by_key(|(format, _, _)| *format != ReportFormat::Json);
    let mut input = ExportInput {
        analysis: analysis_of(&row),
        indicators: Vec::new(),
        signatures: Vec::new(),
        techniques: Vec::new(),
    };
    let mut notes = Vec::new();
    // The indicator index first: what `jbxd iocs` shows is what is exported.
    let iocs = db::exports::iocs_of(db, webid).await?;
    let signatures = db::exports::signatures_of(db, webid).await?;
    let techniques = db::exports::techniques_of(db, webid).await?;
    if !(iocs.is_empty() && signatures.is_empty() && techniques.is_empty()) {
        input.indicators = iocs
            .into_iter()
            .filter_map(|(kind, value, malicious, private)| {
                Some(ExportIndicator {
                    kind: Kind::parse(&kind)?,
                    value,
                    malicious,
                    private,
                })
            })
            .collect();
        input.signatures = signatures
            .into_iter()
            .map(|(description, impact, id)| ExportSignature {
                description,
                impact,
                id,
            })
            .collect();
        input.techniques = techniques
            .into_iter()
            .map(|(id, name, tactic)| ExportTechnique { id, name, tactic })
            .collect();
        return Ok(Exported { input, notes });
    }
    // Not indexed (yet): read the stored reports themselves.
    for (format, report_type, rel) in candidates {
        let path = data_dir.join(&rel);
        let password = password.map(<[u8]>::to_vec);
        let read = tokio::task::spawn_blocking(move || {
            let reader =
                report::open_stored(&path, password.as_deref()).map_err(|e| e.to_string())?;
            report::parse(reader, format).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the reading task failed: {e}")));
        match read {
            Ok(facts) => {
                add_facts(&mut input, &facts);
                if facts.truncated {
                    notes.push(format!(
                        "the {report_type} report has more facts than jbxd keeps; the export \
                         holds the first of them"
                    ));
                }
                return Ok(Exported { input, notes });
            }
            Err(reason) => notes.push(format!("the {report_type} report was not read: {reason}")),
        }
    }
    notes.push(format!(
        "no readable JSON or XML report of webid {webid}: the export holds the verdict and the \
         sample only"
    ));
    Ok(Exported { input, notes })
}

/// The facts of one report as export records (host names and hex in lower case).
fn add_facts(input: &mut ExportInput, facts: &ReportFacts) {
    for ind in &facts.indicators {
        let value = ind.value.trim();
        if value.is_empty() {
            continue;
        }
        let value = match ind.kind {
            Kind::Domain | Kind::Md5 | Kind::Sha1 | Kind::Sha256 | Kind::Sha512 => {
                value.to_ascii_lowercase()
            }
            _ => value.to_owned(),
        };
        input.indicators.push(ExportIndicator {
            kind: ind.kind,
            value,
            malicious: ind.malicious,
            private: ind.private,
        });
    }
    input
        .signatures
        .extend(facts.signatures.iter().map(|s| ExportSignature {
            description: s.description.clone(),
            impact: s.impact,
            id: s.id.clone(),
        }));
    input
        .techniques
        .extend(facts.techniques.iter().map(|t| ExportTechnique {
            id: t.id.clone(),
            name: t.name.clone(),
            tactic: t.tactic.clone(),
        }));
}

/// The analysis part: the server's analysis time (else when jbxd recorded it), so the same
/// analysis always exports with the same timestamps.
pub fn analysis_of(row: &AnalysisRow) -> ExportAnalysis {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let time = parse(&row.time)
        .or_else(|| parse(&row.recorded_at))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let sample_hashes = [
        (Kind::Md5, &row.md5),
        (Kind::Sha1, &row.sha1),
        (Kind::Sha256, &row.sha256),
    ]
    .into_iter()
    .filter_map(|(kind, value)| {
        let value = value.as_deref()?.trim().to_ascii_lowercase();
        (!value.is_empty()).then_some((kind, value))
    })
    .collect();
    ExportAnalysis {
        webid: row.webid.clone(),
        detection: row.detection.clone(),
        score: row.score,
        threatname: row.threatname.clone(),
        target: row.filename.clone(),
        sample_hashes,
        time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_analysis_time_wins_and_hashes_are_lower_case() {
        let row = AnalysisRow {
            webid: "5".into(),
            time: Some("2026-12-04T11:00:00+01:00".into()),
            recorded_at: Some("2026-12-05T00:00:00.000Z".into()),
            sha256: Some("AB".repeat(32)),
            md5: Some(String::new()),
            ..Default::default()
        };
        let a = analysis_of(&row);
        assert_eq!(super::super::rfc3339(&a.time), "2026-12-04T10:00:00.000Z");
        assert_eq!(a.sample_hashes, vec![(Kind::Sha256, "ab".repeat(32))]);
        let recorded = AnalysisRow { time: None, ..row };
        assert_eq!(
            super::super::rfc3339(&analysis_of(&recorded).time),
            "2026-12-05T00:00:00.000Z"
        );
    }

    #[tokio::test]
    async fn an_unknown_webid_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("jbxd.db")).await.unwrap();
        let err = input_for(&db, dir.path(), "404404", None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("webid 404404"), "{err}");
    }
}
