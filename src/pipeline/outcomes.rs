//! What the workers record of the server's answers and how they settle an item, shared by
//! [`super::submit`], [`super::reconcile`], [`super::poll`] and [`super::download`] (which use
//! it and none of each other): an analysis as jbxd records it, the requeue-or-give-up rule after
//! a failed attempt, the report types of an analysis, outside text made safe for a note, and
//! waiting for a batch of items.

use std::future::Future;
use std::time::Duration;

use tracing::{info, warn};

use super::pace::at;
use crate::api::types::Analysis;
use crate::app::App;
use crate::db::{self, AnalysisRow, AttemptCost, Item};

/// Every analysis of `analyses` as jbxd records it (see [`analysis_record`]).
pub fn analysis_records(analyses: &[Analysis], submission_id: Option<&str>) -> Vec<AnalysisRow> {
    analyses
        .iter()
        .map(|a| analysis_record(a, submission_id))
        .collect()
}

/// What jbxd records of an analysis: its verdict fields and hashes (empty strings, as servers
/// send for URL analyses, become NULL), the systems of its runs, and the whole object.
pub fn analysis_record(a: &Analysis, submission_id: Option<&str>) -> AnalysisRow {
    fn text(v: &Option<String>) -> Option<String> {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
    let systems: Vec<&str> = a
        .runs
        .iter()
        .flatten()
        .filter_map(|r| r.system.as_deref())
        .filter(|s| !s.is_empty())
        .collect();
    AnalysisRow {
        webid: a.webid.clone(),
        submission_id: submission_id.map(str::to_owned),
        analysisid: text(&a.analysisid),
        status: text(&a.status),
        detection: text(&a.detection),
        score: a.score,
        threatname: text(&a.threatname),
        classification: text(&a.classification),
        filename: text(&a.filename),
        md5: text(&a.md5),
        sha1: text(&a.sha1),
        sha256: text(&a.sha256),
        scriptname: text(&a.scriptname),
        systems: (!systems.is_empty()).then(|| systems.join(",")),
        time: text(&a.time),
        duration: a.duration,
        encrypted: a.encrypted,
        info_json: serde_json::to_string(a).ok(),
        // The database's: the item is given to the upsert, the time is the first record's.
        item_id: None,
        recorded_at: None,
    }
}

/// What a retryable failure comes to, for an item's submission or a report's download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// The server is unreachable (circuit breaker open): not the item's fault, the attempt is
    /// given back.
    Unreachable,
    /// Try again later; the attempt counts.
    Retry,
    /// `pipeline.max_attempts` are used up: give up, with the last error.
    GiveUp,
}

/// [`AfterFailure`] for a failure of the `used`-th attempt (1 = the first).
pub(crate) fn after_failure(app: &App, used: i64) -> AfterFailure {
    if app.breaker_open() {
        AfterFailure::Unreachable
    } else if used >= i64::from(app.config.pipeline.max_attempts.max(1)) {
        AfterFailure::GiveUp
    } else {
        AfterFailure::Retry
    }
}

/// Requeues after a retryable failure (counting the attempt unless the server is
/// unreachable), or fails the item once `pipeline.max_attempts` are used up.
pub(crate) async fn give_up_or_requeue(
    app: &App,
    item: &Item,
    detail: &str,
    after: Duration,
) -> anyhow::Result<()> {
    let used = item.attempts.max(0) + 1;
    match after_failure(app, used) {
        AfterFailure::Unreachable => {
            db::items::requeue(&app.db, item.id, detail, at(after), AttemptCost::Free).await?;
            info!(item = item.id, error = %detail, "server unreachable; requeued without using an attempt");
        }
        AfterFailure::GiveUp => {
            let reason = format!("gave up after {used} attempts: {detail}");
            db::items::fail(&app.db, item.id, &reason).await?;
            warn!(item = item.id, %reason, "item failed");
        }
        AfterFailure::Retry => {
            db::items::requeue(&app.db, item.id, detail, at(after), AttemptCost::Counted).await?;
            info!(item = item.id, attempts = used, retry_in = ?after, error = %detail, "submission failed; will retry");
        }
    }
    Ok(())
}

/// The report types downloaded for every analysis: `reports.types`, plus `sample` and the
/// archives when configured, without repeats.
pub fn report_types(config: &crate::config::Config) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    let extra = config.reports.sample.then_some("sample").into_iter().chain(
        config
            .reports
            .archives
            .then_some(["bins", "unpackpe"])
            .into_iter()
            .flatten(),
    );
    for t in config.reports.types.iter().map(String::as_str).chain(extra) {
        let t = t.trim();
        if !t.is_empty() && !types.iter().any(|x| x == t) {
            types.push(t.to_owned());
        }
    }
    types
}

/// Waits for all `futures` and returns the first error, after every one has finished (so a
/// failing item never abandons its siblings mid-flight).
pub(crate) async fn all_done<Fut>(futures: impl IntoIterator<Item = Fut>) -> anyhow::Result<()>
where
    Fut: Future<Output = anyhow::Result<()>>,
{
    let results = futures_util::future::join_all(futures).await;
    let mut first = None;
    for result in results {
        if let Err(error) = result {
            warn!(error = %format!("{error:#}"), "pipeline step failed");
            first.get_or_insert(error);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_types_add_sample_and_archives_once() {
        let mut config = crate::config::Config::default();
        assert_eq!(report_types(&config), ["html", "irjsonfixed", "xml"]);
        config.reports.sample = true;
        config.reports.archives = true;
        config.reports.types.push("html".into());
        assert_eq!(
            report_types(&config),
            ["html", "irjsonfixed", "xml", "sample", "bins", "unpackpe"]
        );
    }

    #[test]
    fn an_analysis_becomes_a_record_with_its_verdict_and_systems() {
        let a: Analysis = serde_json::from_str(
            r#"{"webid": 42, "analysisid": "42", "status": "finished", "detection": "malicious",
                "score": 88, "threatname": "Emotet", "sha256": "", "md5": "abc",
                "filename": "x.exe", "runs": [{"system": "w10x64"}, {"system": "w7"}]}"#,
        )
        .unwrap();
        let r = analysis_record(&a, Some("7"));
        assert_eq!(r.webid, "42");
        assert_eq!(r.submission_id.as_deref(), Some("7"));
        assert_eq!(r.detection.as_deref(), Some("malicious"));
        assert_eq!(r.score, Some(88));
        assert_eq!(r.sha256, None);
        assert_eq!(r.md5.as_deref(), Some("abc"));
        assert_eq!(r.systems.as_deref(), Some("w10x64,w7"));
        let info: serde_json::Value =
            serde_json::from_str(r.info_json.as_deref().unwrap()).unwrap();
        assert_eq!(info["threatname"], "Emotet");
    }
}
