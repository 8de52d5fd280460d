//! `jbxd reports`: queries the daemon's verdict index (`analyses`) and shows, per analysis,
//! the stored report files as absolute paths.

use std::path::Path;

use clap::Args;
use serde::Serialize;

use crate::cli::output::{cell, print_json, table};
use crate::cli::{CliError, Context, Outcome};
use crate::db::analyses::IndexFilter;
use crate::db::{self, AnalysisRow, Db, DbError, ReportRow};

use super::operator::{absolute, db_failed, open};

#[derive(Debug, Args)]
pub struct ReportsArgs {
    /// SHA-256 of the sample (any case).
    #[arg(long, value_name = "HASH")]
    pub sha256: Option<String>,
    /// MD5 of the sample.
    #[arg(long, value_name = "HASH")]
    pub md5: Option<String>,
    /// SHA-1 of the sample.
    #[arg(long, value_name = "HASH")]
    pub sha1: Option<String>,
    /// One analysis.
    #[arg(long, value_name = "WEBID")]
    pub webid: Option<String>,
    /// The verdict.
    #[arg(long, value_name = "VERDICT",
          value_parser = ["clean", "suspicious", "malicious", "unknown"])]
    pub detection: Option<String>,
    /// Part of the threat name (any case).
    #[arg(long, value_name = "NAME")]
    pub threat: Option<String>,
    /// Analyses recorded on or after this day (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub since: Option<chrono::NaiveDate>,
    /// Analyses recorded on or before this day (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub until: Option<chrono::NaiveDate>,
    /// Every analysis that saw this indicator (a domain, IP, URL, hash or file name, as pasted:
    /// defanged or upper-case is fine), from the indicator index.
    #[arg(long, value_name = "VALUE",
          conflicts_with_all = ["sha256", "md5", "sha1", "webid", "detection", "threat", "since", "until"])]
    pub ioc: Option<String>,
    /// At most this many analyses, newest first (0 = all).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
}

fn parse_day(text: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a date of the form YYYY-MM-DD"))
}

impl ReportsArgs {
    fn filter(&self) -> IndexFilter {
        IndexFilter {
            webid: self.webid.clone(),
            sha256: self.sha256.clone(),
            md5: self.md5.clone(),
            sha1: self.sha1.clone(),
            detection: self.detection.clone(),
            threatname: self.threat.clone(),
            since: self.since.map(|d| d.format("%Y-%m-%d").to_string()),
            // The index compares `recorded_at < until`: the day after makes --until inclusive.
            until: self
                .until
                .and_then(|d| d.succ_opt())
                .map(|d| d.format("%Y-%m-%d").to_string()),
            limit: i64::from(self.limit),
        }
    }
}

/// One stored (or failed) report of an analysis, with its absolute path.
#[derive(Debug, Serialize)]
pub struct ReportView {
    #[serde(rename = "type")]
    pub report_type: String,
    pub run: Option<i64>,
    pub state: String,
    pub path: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub error: Option<String>,
    pub downloaded_at: Option<String>,
}

impl ReportView {
    pub fn new(data_dir: &Path, row: ReportRow) -> Self {
        Self {
            path: row
                .path
                .as_deref()
                .map(|rel| absolute(data_dir, rel).display().to_string()),
            report_type: row.report_type,
            run: row.run,
            state: row.state.as_str().to_owned(),
            size: row.size,
            sha256: row.sha256,
            error: row.error,
            downloaded_at: row.downloaded_at,
        }
    }
}

/// An analysis of the index with its reports (`--json`).
#[derive(Debug, Serialize)]
pub struct AnalysisWithReports {
    #[serde(flatten)]
    pub analysis: AnalysisRow,
    pub reports: Vec<ReportView>,
}

/// The reports of each analysis.
pub async fn with_reports(
    db: &Db,
    data_dir: &Path,
    analyses: Vec<AnalysisRow>,
) -> Result<Vec<AnalysisWithReports>, DbError> {
    let mut out = Vec::with_capacity(analyses.len());
    for analysis in analyses {
        let reports = db::analyses::reports_for(db, &analysis.webid)
            .await?
            .into_iter()
            .map(|row| ReportView::new(data_dir, row))
            .collect();
        out.push(AnalysisWithReports { analysis, reports });
    }
    Ok(out)
}

pub async fn run(context: &Context, args: ReportsArgs) -> Result<Outcome, CliError> {
    let ioc = match &args.ioc {
        Some(text) => Some(super::iocs::lookup(text, None)?),
        None => None,
    };
    let (config, db) = open(context).await?;
    let found = async {
        let analyses = match &ioc {
            Some(forms) => {
                db::indicators::analyses_that_saw(&db, forms, i64::from(args.limit)).await?
            }
            None => db::analyses::search(&db, &args.filter()).await?,
        };
        with_reports(&db, &config.data_dir, analyses).await
    }
    .await
    .map_err(db_failed)?;
    db.close().await;
    if context.json {
        print_json(&found)?;
    } else if found.is_empty() {
        eprintln!("no analyses found");
    } else {
        println!("{}", analysis_table(&found));
        println!("{}", report_table(&found));
    }
    Ok(Outcome::success())
}

pub const INDEX_HEADER: &[&str] = &[
    "webid",
    "item",
    "detection",
    "score",
    "threat name",
    "file/URL",
    "time",
];

pub fn index_row(a: &AnalysisRow) -> Vec<String> {
    vec![
        a.webid.clone(),
        cell(a.item_id),
        cell(a.detection.as_deref()),
        cell(a.score),
        cell(a.threatname.as_deref()),
        cell(a.filename.as_deref()),
        cell(a.time.as_deref()),
    ]
}

fn analysis_table(found: &[AnalysisWithReports]) -> comfy_table::Table {
    let mut out = table(INDEX_HEADER);
    for entry in found {
        out.add_row(index_row(&entry.analysis));
    }
    out
}

/// One line per report: the stored path, or the state and error of one not stored.
pub fn report_table<'a>(
    found: impl IntoIterator<Item = &'a AnalysisWithReports>,
) -> comfy_table::Table {
    let mut out = table(&["webid", "type", "state", "path"]);
    for entry in found {
        for report in &entry.reports {
            let where_ = match (&report.path, &report.error) {
                (Some(path), _) if report.state == "stored" => path.clone(),
                (_, Some(error)) => error.clone(),
                _ => String::new(),
            };
            out.add_row(vec![
                entry.analysis.webid.clone(),
                report.report_type.clone(),
                report.state.clone(),
                where_,
            ]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_inclusive_and_dates_are_checked() {
        let args = ReportsArgs {
            sha256: None,
            md5: None,
            sha1: None,
            webid: None,
            detection: None,
            threat: None,
            since: Some(parse_day("2026-01-31").unwrap()),
            until: Some(parse_day("2026-01-31").unwrap()),
            ioc: None,
            limit: 0,
        };
        let f = args.filter();
        assert_eq!(f.since.as_deref(), Some("2026-01-31"));
        assert_eq!(f.until.as_deref(), Some("2026-02-01"));
        assert!(parse_day("31.01.2026").is_err());
    }
}
