//! The download worker: stores every pending report of finished analyses under
//! `reports/<webid>/<type>.<ext>` and completes items whose reports are all settled.
//!
//! The stored name comes from the report type and a fixed extension table, never from the
//! server: its `Content-Disposition` name is kept (escaped) in `reports.server_filename` only.
//! Each type fails on its own: a type the account or analysis does not offer is recorded as
//! `failed` with the server's message and does not hold up the others; transient failures
//! (including truncated bodies) are retried with backoff; a report over `reports.max_size` is
//! `failed: too large (limit N)`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::classify::{Action, Backoff, Call, classify};
use super::outcomes::{AfterFailure, after_failure};
use super::{all_done, at, backoff};
use crate::api::{ApiError, ReportType};
use crate::app::{App, StepOutcome};
use crate::db::{self, AttemptCost, ReportRow};
use crate::storage::safe_file_name;
use crate::text::one_line;

/// Runs the download worker until `cancel` fires.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    super::worker_loop(
        &app,
        &cancel,
        "download",
        Some(&app.wake.download),
        super::DueFrom::Reports,
        || run_once(&app),
    )
    .await
}

/// One step: downloads up to `pipeline.download_concurrency` due reports concurrently.
pub async fn run_once(app: &App) -> anyhow::Result<StepOutcome> {
    if !app.may_call_api().await? || !app.may_write_locally().await? {
        return Ok(StepOutcome::Paused);
    }
    let limit = app.config.pipeline.download_concurrency.max(1) as i64;
    let rows = db::analyses::claim_reports(&app.db, limit).await?;
    if rows.is_empty() {
        return Ok(StepOutcome::Idle);
    }
    let count = rows.len();
    all_done(rows.into_iter().map(|row| download_one(app, row))).await?;
    Ok(StepOutcome::Worked(count))
}

/// The file name a report is stored under: `<type>.<ext>` (`-run<N>` before the extension for
/// a specific run), `sample.bin` for the sample. Never derived from the server's reply.
pub fn report_file_name(report_type: &str, run: Option<i64>) -> String {
    if ReportType::is_sample(report_type) && run.is_none() {
        return "sample.bin".to_owned();
    }
    // Types come from our configuration, but stay one safe component whatever they hold.
    let base = safe_file_name(report_type).unwrap_or_else(|| "report".to_owned());
    match run {
        Some(run) => format!("{base}-run{run}.{}", ReportType::extension(report_type)),
        None => format!("{base}.{}", ReportType::extension(report_type)),
    }
}

/// What went wrong with one report.
enum Failure {
    Api(ApiError),
    Local(std::io::Error),
}

struct Stored {
    rel_path: String,
    size: u64,
    sha256: String,
    server_filename: Option<String>,
}

async fn fetch(app: &App, row: &ReportRow) -> Result<Stored, Failure> {
    let run = row.run.and_then(|r| u32::try_from(r).ok());
    let download = app
        .client
        .analysis_download(&row.webid, &row.report_type, run)
        .await
        .map_err(Failure::Api)?;
    let server_filename = download.server_filename().map(|n| one_line(n, 1024));
    let name = report_file_name(&row.report_type, row.run);
    // The sample is live malware: read-only, like the quarantine copies.
    let mode = if ReportType::is_sample(&row.report_type) {
        0o400
    } else {
        0o600
    };
    let (mut file, rel_path) = app
        .store
        .create_report(&row.webid, &name, mode)
        .await
        .map_err(Failure::Local)?;
    // On error the atomic file is dropped here, which removes its temporary name.
    let target = file.target().to_owned();
    let summary = download
        .write_to(file.file_mut(), |_| crate::crashpoint::hit("mid_download"))
        .await
        .map_err(|e| match e {
            // Our disk, not the server: name the file (a full or failing volume, catalog 25/26).
            ApiError::Io { context, source } => Failure::Local(std::io::Error::new(
                source.kind(),
                format!("{context} to {}: {source}", target.display()),
            )),
            other => Failure::Api(other),
        })?;
    file.commit().await.map_err(Failure::Local)?;
    Ok(Stored {
        rel_path,
        size: summary.bytes,
        sha256: summary.sha256,
        server_filename,
    })
}

/// Downloads one claimed report and records the outcome (stored, retried, failed), then
/// completes its item if that was the last one. Also `jbxd import`'s step, on rows it claimed.
pub async fn download_one(app: &App, row: ReportRow) -> anyhow::Result<()> {
    match fetch(app, &row).await {
        Ok(stored) => {
            crate::crashpoint::hit("after_report_rename");
            db::analyses::report_stored(
                &app.db,
                row.id,
                &stored.rel_path,
                stored.size as i64,
                &stored.sha256,
                stored.server_filename.as_deref(),
            )
            .await?;
            info!(webid = %row.webid, report = %row.report_type, path = %stored.rel_path, bytes = stored.size, "report stored");
        }
        Err(Failure::Api(error)) => on_api_error(app, &row, &error).await?,
        Err(Failure::Local(error)) => {
            let detail = format!("cannot store the report: {error}");
            retry_or_fail(
                app,
                &row,
                &detail,
                backoff(app).delay(attempts_before(&row)),
            )
            .await?;
        }
    }
    // The analysis may now have all its reports settled: the index worker takes it from here.
    app.wake.index.notify_one();
    if let Some(item) = db::analyses::item_of_report(&app.db, row.id).await?
        && db::items::complete_if_reports_done(&app.db, item).await?
    {
        info!(item, "item done");
    }
    Ok(())
}

/// Attempts used before this one (`claim_reports` has already counted this one).
fn attempts_before(row: &ReportRow) -> u32 {
    (row.attempts - 1).max(0) as u32
}

async fn on_api_error(app: &App, row: &ReportRow, error: &ApiError) -> anyhow::Result<()> {
    let b: Backoff = backoff(app);
    match classify(error, Call::Download, attempts_before(row), b) {
        Action::Fatal { reason } | Action::Reject { reason } => {
            let reason = one_line(&reason, 500);
            db::analyses::report_failed(&app.db, row.id, &reason).await?;
            info!(webid = %row.webid, report = %row.report_type, %reason, "report not available");
        }
        Action::Retry { after } => retry_or_fail(app, row, &error.to_string(), after).await?,
        Action::UnknownOutcome => {
            retry_or_fail(app, row, &error.to_string(), b.delay(attempts_before(row))).await?
        }
        Action::Pause { reason, detail } => {
            app.pause(reason, &detail).await?;
            let next = at(b.delay(0).max(Duration::from_secs(1)));
            db::analyses::report_retry(&app.db, row.id, &detail, next, AttemptCost::Free).await?;
        }
    }
    Ok(())
}

async fn retry_or_fail(
    app: &App,
    row: &ReportRow,
    detail: &str,
    after: Duration,
) -> anyhow::Result<()> {
    // The claim counted this attempt already.
    match after_failure(app, row.attempts) {
        AfterFailure::Unreachable => {
            db::analyses::report_retry(&app.db, row.id, detail, at(after), AttemptCost::Free)
                .await?;
            warn!(webid = %row.webid, report = %row.report_type, error = %detail, "server unreachable; download retried later without using an attempt");
        }
        AfterFailure::GiveUp => {
            let reason = format!("gave up after {} attempts: {detail}", row.attempts);
            db::analyses::report_failed(&app.db, row.id, &reason).await?;
            warn!(webid = %row.webid, report = %row.report_type, %reason, "report failed");
        }
        AfterFailure::Retry => {
            db::analyses::report_retry(&app.db, row.id, detail, at(after), AttemptCost::Counted)
                .await?;
            warn!(webid = %row.webid, report = %row.report_type, error = %detail, retry_in = ?after, "download failed; will retry");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_files_are_named_from_the_type_and_a_fixed_extension_table() {
        for (t, name) in [
            ("html", "html.html"),
            ("lighthtml", "lighthtml.html"),
            ("executive", "executive.html"),
            ("classhtml", "classhtml.html"),
            ("iochtml", "iochtml.html"),
            ("irjsonfixed", "irjsonfixed.json"),
            ("json", "json.json"),
            ("iocjson", "iocjson.json"),
            ("xml", "xml.xml"),
            ("lightxml", "lightxml.xml"),
            ("pdf", "pdf.pdf"),
            ("pdfexecutive", "pdfexecutive.pdf"),
            ("pcap", "pcap.pcap"),
            ("pcapslim", "pcapslim.pcap"),
            ("bins", "bins.zip"),
            ("unpackpe", "unpackpe.zip"),
            ("memdumps", "memdumps.zip"),
            ("shoots", "shoots.zip"),
            ("sample", "sample.bin"),
            ("stix", "stix.bin"),
        ] {
            assert_eq!(report_file_name(t, None), name, "{t}");
        }
        assert_eq!(report_file_name("html", Some(2)), "html-run2.html");
    }

    #[test]
    fn a_strange_type_still_gives_one_safe_component() {
        let name = report_file_name("../../etc/passwd", None);
        assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
        assert_eq!(report_file_name("..", None), "report.bin");
    }
}
