//! `jbxd import WEBID...` and `jbxd import --since DAY`: analyses submitted elsewhere (the web
//! interface, another tool) brought into the daemon's index with the daemon's configuration.
//!
//! Per analysis: its info through the API client (an unknown webid is an error naming it; the
//! others are still imported), one `analyses` row without an item, marked `imported_at`
//! (`db::imports`), the configured report types as `pending` report rows, then the downloads —
//! made by the download worker's own step (`pipeline::download::download_one`) on rows claimed
//! like the worker claims them, so the files land where the daemon's do (same atomic storage,
//! same names) and a daemon running beside the command never downloads the same report twice.
//! Importing again changes nothing: the rows are unique and stored reports stay stored. Then
//! the analysis is indexed by the index worker's own step (`index::index_analysis`, with the
//! configured report password for encrypted analyses), which replaces its rows whoever ran it.
//! An analysis that has not finished is not imported (its reports do not exist yet).

use std::time::Duration;

use chrono::{Days, NaiveDate};
use clap::{ArgGroup, Args};
use serde::Serialize;

use crate::api::{JoeClient, SearchQuery};
use crate::app::App;
use crate::cli::output::{ItemFailure, cell, table};
use crate::cli::{CliError, Context, Outcome};
use crate::config::{self, LoadOptions};
use crate::db::{self, ReportState};
use crate::index;
use crate::pipeline::{self, outcomes::analysis_record};

use super::operator::{LocalFailure, db_failed, open_db};
use super::{Jobs, for_each};

/// The longest wait for a report someone else (the daemon) is downloading, between looks.
const SETTLE_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["webids", "since"])))]
pub struct ImportArgs {
    /// Analyses to import.
    #[arg(value_name = "WEBID")]
    pub webids: Vec<String>,

    /// Every analysis of the account from this day on (YYYY-MM-DD), found through the
    /// server's search.
    #[arg(long, value_name = "DAY", conflicts_with = "webids", value_parser = parse_day)]
    pub since: Option<NaiveDate>,

    #[command(flatten)]
    pub jobs: Jobs,
}

fn parse_day(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a day in the form YYYY-MM-DD"))
}

/// One imported analysis (`--json`: under `data`).
#[derive(Debug, Serialize)]
pub struct Imported {
    pub webid: String,
    /// `imported` (new in the index), `already imported`, or `submitted by the daemon`.
    pub origin: &'static str,
    pub detection: Option<String>,
    pub score: Option<i64>,
    pub threatname: Option<String>,
    /// Report types stored (now or before).
    pub stored: Vec<String>,
    /// Report types that could not be had, with the reason.
    pub failed: Vec<FailedReport>,
    /// Stored reports the indicator index could not read, with the reason.
    pub index_failed: Vec<FailedReport>,
}

#[derive(Debug, Serialize)]
pub struct FailedReport {
    #[serde(rename = "type")]
    pub report_type: String,
    pub error: Option<String>,
}

/// A failure of one webid: from the server (seed-shaped line) or local.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Failure {
    Api(ItemFailure),
    Local(LocalFailure),
}

impl crate::cli::output::Failure for Failure {
    fn stderr_line(&self) -> &str {
        match self {
            Self::Api(f) => f.line(),
            Self::Local(f) => f.stderr_line(),
        }
    }
}

pub async fn run(context: &Context, args: ImportArgs) -> Result<Outcome, CliError> {
    let loaded = config::load(&LoadOptions {
        config_file: context.config_file.clone(),
        overrides: Vec::new(),
    })?;
    let password = loaded.report_password.map(|(secret, _)| secret);
    let config = loaded.loaded.config;
    let db = open_db(&config).await?;
    let client = JoeClient::new(config::client_settings(&config, loaded.api_key))
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot build the API client: {e}")))?;
    let app = App::new(config, db, client);
    let result = import(
        context,
        &app,
        args,
        password.as_ref().map(|p| p.expose_bytes()),
    )
    .await;
    app.db.close().await;
    result
}

async fn import(
    context: &Context,
    app: &App,
    args: ImportArgs,
    password: Option<&[u8]>,
) -> Result<Outcome, CliError> {
    app.store.prepare().map_err(|e| {
        CliError::Failed(anyhow::anyhow!(
            "cannot prepare the storage tree under {}: {e}",
            app.config.data_dir.display()
        ))
    })?;
    let mut failures = Vec::new();
    let webids = match args.since {
        Some(day) => match since(&app.client, day).await {
            Ok(webids) => webids,
            Err(failure) => {
                failures.push(failure);
                Vec::new()
            }
        },
        None => dedup(args.webids),
    };
    let types = pipeline::report_types(&app.config);
    let results = for_each(webids, args.jobs, |webid| {
        let types = &types;
        async move {
            let result = record(app, &webid, types).await;
            (webid, result)
        }
    })
    .await;
    let mut recorded = Vec::new();
    for (webid, result) in results {
        match result {
            Ok(origin) => recorded.push((webid, origin)),
            Err(failure) => failures.push(failure),
        }
    }
    let wanted: Vec<String> = recorded.iter().map(|(w, _)| w.clone()).collect();
    download(app, &wanted).await?;
    let mut data = Vec::new();
    for (webid, origin) in recorded {
        // The index worker's own step: the same rows whoever (daemon or command) runs it.
        let indexed = index::index_analysis(
            &app.db,
            &app.config.data_dir,
            &webid,
            password,
            index::READ_REPORT,
        )
        .await
        .map_err(db_failed)?;
        let mut row = summary(app, &webid, origin).await?;
        row.index_failed = indexed
            .failed
            .into_iter()
            .map(|(report_type, reason)| FailedReport {
                report_type,
                error: Some(reason),
            })
            .collect();
        data.push(row);
    }
    crate::cli::output::finish_items(context, &data, &failures, imported_table)
}

fn dedup(webids: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for webid in webids.into_iter().map(|w| w.trim().to_owned()) {
        if !webid.is_empty() && !out.contains(&webid) {
            out.push(webid);
        }
    }
    out
}

/// The webids of the analyses from `day` on (the server's filter is "after", exclusive).
async fn since(client: &JoeClient, day: NaiveDate) -> Result<Vec<String>, Failure> {
    let before = day.checked_sub_days(Days::new(1)).unwrap_or(day);
    let query = SearchQuery::after_date(&before.format("%Y-%m-%d").to_string());
    match client.analysis_search(&query).await {
        Ok(hits) => Ok(dedup(hits.into_iter().map(|a| a.webid).collect())),
        Err(error) => Err(Failure::Api(ItemFailure::new(
            "Search",
            &format!("analyses since {day}"),
            &day.to_string(),
            &error,
        ))),
    }
}

/// The analysis' info, recorded with its report rows.
async fn record(app: &App, webid: &str, types: &[String]) -> Result<&'static str, Failure> {
    let analysis = app.client.analysis_info(webid).await.map_err(|error| {
        Failure::Api(ItemFailure::new(
            "Get Analysis Information",
            &format!("webid {webid}"),
            webid,
            &error,
        ))
    })?;
    let status = analysis.status.as_deref().unwrap_or("unknown");
    if status != "finished" {
        return Err(Failure::Local(LocalFailure::new(
            webid,
            format!(
                "webid {webid}: the analysis has not finished (status {status}); import it \
                 once it has"
            ),
        )));
    }
    let row = analysis_record(&analysis, None);
    let recorded = db::imports::record_imported(&app.db, &row, types)
        .await
        .map_err(|e| Failure::Local(LocalFailure::new(webid, format!("webid {webid}: {e}"))))?;
    Ok(if recorded.own {
        "submitted by the daemon"
    } else if recorded.new_analysis {
        "imported"
    } else {
        "already imported"
    })
}

/// Downloads every pending report of `webids` with the worker's step until none is pending
/// or being downloaded (by us or by the daemon). Retries follow the worker's rules
/// (`pipeline.max_attempts`, backoff), so this ends.
async fn download(app: &App, webids: &[String]) -> Result<(), CliError> {
    if webids.is_empty() {
        return Ok(());
    }
    let limit = app.config.pipeline.download_concurrency.max(1) as i64;
    loop {
        if !app.may_call_api().await.map_err(db_failed)? {
            let pauses = app.pauses().await.map_err(db_failed)?;
            let why: Vec<String> = pauses.iter().map(|p| p.detail.clone()).collect();
            return Err(CliError::Failed(anyhow::anyhow!(
                "API calls are paused ({}); the imported reports stay pending and are \
                 downloaded by the daemon, or by `jbxd import` again, once the pause ends",
                why.join("; ")
            )));
        }
        let rows = db::imports::claim_reports_of(&app.db, webids, limit)
            .await
            .map_err(db_failed)?;
        if !rows.is_empty() {
            let steps = rows
                .into_iter()
                .map(|row| pipeline::download::download_one(app, row));
            for result in futures_util::future::join_all(steps).await {
                result.map_err(CliError::Failed)?;
            }
            continue;
        }
        let (unsettled, next_due) = db::imports::unsettled_of(&app.db, webids)
            .await
            .map_err(db_failed)?;
        if unsettled == 0 {
            return Ok(());
        }
        let wait = next_due
            .map(|due| Duration::from_millis((due - db::now_ms()).max(0) as u64))
            .unwrap_or(SETTLE_POLL)
            .clamp(Duration::from_millis(50), Duration::from_secs(60));
        tokio::time::sleep(wait).await;
    }
}

async fn summary(app: &App, webid: &str, origin: &'static str) -> Result<Imported, CliError> {
    let analysis = db::analyses::get(&app.db, webid)
        .await
        .map_err(db_failed)?
        .unwrap_or_default();
    let reports = db::analyses::reports_for(&app.db, webid)
        .await
        .map_err(db_failed)?;
    let stored = reports
        .iter()
        .filter(|r| r.state == ReportState::Stored)
        .map(|r| r.report_type.clone())
        .collect();
    let failed = reports
        .iter()
        .filter(|r| r.state == ReportState::Failed)
        .map(|r| FailedReport {
            report_type: r.report_type.clone(),
            error: r.error.clone(),
        })
        .collect();
    Ok(Imported {
        webid: webid.to_owned(),
        origin,
        detection: analysis.detection,
        score: analysis.score,
        threatname: analysis.threatname,
        stored,
        failed,
        index_failed: Vec::new(),
    })
}

fn imported_table(rows: &[Imported]) -> comfy_table::Table {
    let mut out = table(&[
        "webid",
        "origin",
        "detection",
        "score",
        "threat name",
        "reports stored",
        "reports failed",
    ]);
    for row in rows {
        let failed: Vec<String> = row
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.report_type, f.error.as_deref().unwrap_or("")))
            .chain(row.index_failed.iter().map(|f| {
                format!(
                    "{} (not indexed): {}",
                    f.report_type,
                    f.error.as_deref().unwrap_or("")
                )
            }))
            .collect();
        out.add_row(vec![
            row.webid.clone(),
            row.origin.to_owned(),
            cell(row.detection.as_deref()),
            cell(row.score),
            cell(row.threatname.as_deref()),
            row.stored.join(", "),
            failed.join("; "),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        import: ImportArgs,
    }

    #[test]
    fn webids_or_a_day_is_required_and_a_bad_day_is_a_usage_error_naming_it() {
        assert!(Command::try_parse_from(["import"]).is_err());
        let err = Command::try_parse_from(["import", "--since", "yesterday"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("yesterday"), "{err}");
        assert!(Command::try_parse_from(["import", "1", "--since", "2026-01-01"]).is_err());
        let parsed = Command::try_parse_from(["import", "--since", "2026-01-02"]).unwrap();
        assert_eq!(parsed.import.since, NaiveDate::from_ymd_opt(2026, 1, 2));
    }

    #[test]
    fn repeated_webids_are_imported_once() {
        assert_eq!(
            dedup(vec!["1".into(), " 2".into(), "1".into(), "".into()]),
            vec!["1", "2"]
        );
    }
}
