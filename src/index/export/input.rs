//! The [`ExportInput`] of one analysis, read from the index.
//!
//! Today the index holds the analysis row (verdict, score, threat name, target, the sample's
//! hashes); the indicators, signatures and techniques join it from the report index tables
//! as those are recorded.

use chrono::{DateTime, Utc};

use super::{ExportAnalysis, ExportInput};
use crate::db::{self, AnalysisRow, Db, DbError};
use crate::ioc::Kind;

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

/// The export input of `webid`.
pub async fn input_for(db: &Db, webid: &str) -> Result<ExportInput, ExportError> {
    let row = db::analyses::get(db, webid)
        .await?
        .ok_or_else(|| ExportError::UnknownWebid(webid.to_owned()))?;
    Ok(ExportInput {
        analysis: analysis_of(&row),
        indicators: Vec::new(),
        signatures: Vec::new(),
        techniques: Vec::new(),
    })
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
        let err = input_for(&db, "404404").await.unwrap_err();
        assert!(err.to_string().contains("webid 404404"), "{err}");
    }
}
