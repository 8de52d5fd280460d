//! Server-side deduplication (`dedup.server_lookup`): before a sample is sent, the server is asked
//! whether it already holds a finished analysis of exactly that sha256; one found is adopted
//! instead of a new submission. Used by the submit worker; imports no worker.

use tracing::info;

use super::outcomes::analysis_record;
use crate::api::ApiError;
use crate::api::SearchQuery;
use crate::api::types::Analysis;
use crate::app::App;
use crate::db::{self, AttemptOutcome, AttemptUpdate, Item, Submitted};

/// How many hits of the sha256 lookup are examined at most.
const MAX_LOOKUP_HITS: usize = 20;

/// Looks the item's sha256 up on the server: the newest finished analysis of exactly that
/// hash (checked again here: search may match loosely) whose runs did not all fail, and which
/// is not already recorded for another item.
pub(crate) async fn lookup(app: &App, item: &Item) -> Result<Option<Analysis>, ApiError> {
    let Some(sha256) = item.sha256.as_deref() else {
        return Ok(None);
    };
    let hits = app
        .client
        .analysis_search(&SearchQuery::sha256(sha256))
        .await?;
    let mut best: Option<Analysis> = None;
    for hit in hits.into_iter().take(MAX_LOOKUP_HITS) {
        let analysis = if hit.sha256.is_some() && hit.status.is_some() {
            hit
        } else {
            app.client.analysis_info(&hit.webid).await?
        };
        let same_hash = analysis
            .sha256
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(sha256));
        let all_runs_failed = analysis
            .runs
            .as_ref()
            .is_some_and(|runs| !runs.is_empty() && runs.iter().all(|r| r.error.is_some()));
        if !same_hash || !analysis.is_finished() || all_runs_failed {
            continue;
        }
        if let Ok(Some(row)) = db::analyses::get(&app.db, &analysis.webid).await
            && row.item_id.is_some_and(|owner| owner != item.id)
        {
            continue;
        }
        let newer = best
            .as_ref()
            .is_none_or(|b| webid_order(&analysis.webid) > webid_order(&b.webid));
        if newer {
            best = Some(analysis);
        }
    }
    Ok(best)
}

/// Webids are numbers on every known server; compare them as numbers when they are.
fn webid_order(webid: &str) -> (u64, String) {
    (webid.parse().unwrap_or(0), webid.to_owned())
}

/// Adopts an analysis found by the sha256 lookup: recorded, the attempt marked as not sent,
/// the item `submitted` without a submission id (the poller follows the analysis itself).
pub(crate) async fn adopt(
    app: &App,
    item: &Item,
    key: &str,
    analysis: &Analysis,
) -> anyhow::Result<()> {
    let note = format!("reused analysis {} from the server", analysis.webid);
    db::analyses::upsert_many(&app.db, item.id, &[analysis_record(analysis, None)]).await?;
    let detail = format!("not sent: {note}");
    let update = AttemptUpdate::new(AttemptOutcome::Abandoned, &detail);
    db::items::set_attempt_outcome(&app.db, key, update).await?;
    let how = Submitted {
        accepted_attempt: None,
        submission_id: None,
        first_poll_at: db::now_ms(),
        note: Some(&note),
    };
    db::items::mark_submitted(&app.db, item.id, how).await?;
    info!(item = item.id, webid = %analysis.webid, "{note}");
    app.wake.poll.notify_one();
    Ok(())
}
