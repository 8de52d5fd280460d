//! What the server holds for an item's attempts, looked up by every means the API offers
//! (RELIABILITY cases 115 and 116), shared by [`super::reconcile`] and [`super::poll`].
//!
//! * **By key.** Each attempt's marker (`jbxd:<attempt key>`, in `comments`) is looked up with
//!   `analysis/search` *and* through the account's submission list: the list is not subject to
//!   the search index's lag, but its entries carry no comments, so every listed submission
//!   since the attempts began (less [`CLOCK_SKEW`]) that jbxd has no record of is opened with
//!   `submission/info` ([`crate::api::JoeClient::find_by_markers`]). One view is built per
//!   reconcile step for all its items, so a burst of lost replies costs one list walk, not one
//!   per item.
//! * **Orphaned chunked submissions (case 116).** A chunked `submission/new` whose reply was
//!   lost leaves an empty submission that never shows analyses, so no comments: it is
//!   recognised as a listed submission without analyses, jbxd has no record of, named like the
//!   item's upload and created after the attempt began. It is deleted before anything is sent
//!   again. (What a foreign client of the same account uploaded empty under the same name in
//!   the same minutes would be deleted too; the name and time window make that unlikely.)
//! * **Duplicates.** A marker seen on more than one submission, or two attempts of one item
//!   both found, is a duplicate: the extra submission is deleted on the server (its analyses
//!   with it) and recorded on its attempt (`abandoned`, with the submission id and webids) and
//!   in the item's note.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::api::{ApiError, ApiErrorKind, FoundSubmission, MarkerFindings, wire_file_name};
use crate::app::App;
use crate::db::{self, Attempt, AttemptOutcome, AttemptUpdate, Item};

/// How far the server's clock may be ahead of ours when the list is cut to the attempts'
/// window (its `time` fields have second precision and the server's own offset).
pub const CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The comment marker of an attempt.
pub fn marker(attempt_key: &str) -> String {
    format!("jbxd:{attempt_key}")
}

/// When an attempt row was created (its intent commit), as UTC.
pub(crate) fn started(attempt: &Attempt) -> Option<DateTime<Utc>> {
    db::parse_time(&attempt.started_at)
}

/// Whether the attempt may have created a submission jbxd has no id for, so it must be looked
/// up by its marker: sent with an unknown outcome, interrupted, or concluded not found earlier
/// (looked up again for a late duplicate).
pub(crate) fn needs_marker_lookup(attempt: &Attempt) -> bool {
    attempt.submission_id.is_none()
        && matches!(
            attempt.outcome,
            None | Some(AttemptOutcome::Unknown | AttemptOutcome::NotFound)
        )
}

/// The server's answer for a set of attempts.
#[derive(Debug, Default)]
pub struct ServerView {
    findings: MarkerFindings,
}

impl ServerView {
    /// Every submission carrying the attempt's marker.
    pub fn found(&self, attempt_key: &str) -> &[FoundSubmission] {
        self.findings.for_marker(&marker(attempt_key))
    }

    /// Listed submissions without analyses that may be the item's orphaned chunked upload:
    /// named like its upload, created after `attempt` began (less the clock skew).
    pub fn chunked_orphans(&self, app: &App, item: &Item, attempt: &Attempt) -> Vec<String> {
        let chunked = !item.is_url()
            && item.size.is_some_and(|s| {
                u64::try_from(s).unwrap_or(0) > app.client.settings().chunked_threshold
            });
        if !chunked {
            return Vec::new();
        }
        let from = started(attempt).map(|t| t.timestamp_millis());
        let empty: Vec<&str> = self
            .findings
            .unidentified
            .iter()
            .filter(|u| !u.has_analyses)
            .map(|u| u.submission_id.as_str())
            .collect();
        self.unanalysed_lookalikes(item, from)
            .into_iter()
            .filter(|id| empty.contains(&id.as_str()))
            .collect()
    }

    /// Listed submissions whose markers cannot be read yet (no analyses, or analyses that do
    /// not show their comments yet), named like the item's upload (its file name, or its URL) and
    /// created after `from_ms` (less the clock skew). Such a submission may well be the
    /// item's own, still queued on a busy server: reconciliation waits for it to be analysed
    /// before submitting again (RELIABILITY.md case 115).
    pub fn unanalysed_lookalikes(&self, item: &Item, from_ms: Option<i64>) -> Vec<String> {
        let name = match (&item.url, item.is_url()) {
            (Some(url), true) => url.clone(),
            _ => wire_file_name(&item.name),
        };
        let from = from_ms
            .and_then(chrono::DateTime::<Utc>::from_timestamp_millis)
            .map(|t| t - chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default());
        self.findings
            .unidentified
            .iter()
            .filter(|u| u.name.as_deref().map(str::trim) == Some(name.trim()))
            .filter(|u| match (u.time, from) {
                (Some(time), Some(from)) => time >= from,
                _ => true,
            })
            .map(|u| u.submission_id.clone())
            .collect()
    }
}

/// Builds the view for every attempt of `attempts` that [`needs_marker_lookup`]. A server
/// without `submission/list` (unknown endpoint, or not permitted for the key) still gets the
/// search. The outer `Err` is a database failure, the inner one the server's.
pub async fn server_view<'a>(
    app: &App,
    attempts: impl IntoIterator<Item = &'a Attempt>,
) -> anyhow::Result<Result<ServerView, ApiError>> {
    let open: Vec<&Attempt> = attempts
        .into_iter()
        .filter(|a| needs_marker_lookup(a))
        .collect();
    if open.is_empty() {
        return Ok(Ok(ServerView::default()));
    }
    let earliest = open
        .iter()
        .filter_map(|a| started(a))
        .min()
        .unwrap_or_else(Utc::now);
    let since = earliest - chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
    let listed = match app.client.list_submissions_since(since).await {
        Ok(listed) => listed,
        Err(e)
            if matches!(
                e.kind(),
                Some(ApiErrorKind::UnknownEndpoint | ApiErrorKind::PermissionDenied)
            ) =>
        {
            warn!(error = %e, "the server offers no submission list; looking attempts up by search only");
            Vec::new()
        }
        Err(e) => return Ok(Err(e)),
    };
    let ids: Vec<String> = listed.iter().map(|s| s.submission_id.clone()).collect();
    let known = db::pipeline::known_submission_ids(&app.db, &ids).await?;
    let candidates: Vec<_> = listed
        .into_iter()
        .filter(|s| !known.contains(&s.submission_id))
        .collect();
    let markers: Vec<String> = open.iter().map(|a| marker(&a.attempt_key)).collect();
    Ok(app
        .client
        .find_by_markers(&markers, &candidates)
        .await
        .map(|findings| ServerView { findings }))
}

/// Deletes a duplicate submission on the server: by its id, or (seen only by search, which
/// does not name the submission) analysis by analysis.
pub async fn delete_duplicate(app: &App, found: &FoundSubmission) -> Result<(), ApiError> {
    match &found.submission_id {
        Some(id) => app.client.delete_submission_if_present(id).await,
        None => {
            for analysis in &found.analyses {
                app.client
                    .delete_analysis_if_present(&analysis.webid)
                    .await?;
            }
            Ok(())
        }
    }
}

/// Records a deleted duplicate on its attempt (`abandoned`: what it created is gone) and
/// returns the text for the item's note.
pub async fn record_deleted_duplicate(
    app: &App,
    attempt_key: &str,
    found: &FoundSubmission,
) -> anyhow::Result<String> {
    let webids: Vec<&str> = found.analyses.iter().map(|a| a.webid.as_str()).collect();
    let what = match &found.submission_id {
        Some(id) => format!("submission {id}"),
        None => "a submission".to_owned(),
    };
    let detail = format!(
        "duplicate submission: {what} (analyses {}) deleted on the server",
        webids.join(", ")
    );
    let update = AttemptUpdate {
        submission_id: found.submission_id.as_deref(),
        ..AttemptUpdate::new(AttemptOutcome::Abandoned, &detail)
    };
    db::items::set_attempt_outcome(&app.db, attempt_key, update).await?;
    warn!(attempt = %attempt_key, %detail, "duplicate submission detected and deleted");
    Ok(format!(
        "duplicate submission by attempt {attempt_key} ({detail})"
    ))
}

/// Deletes the orphaned chunked submissions of an attempt whose `submission/new` reply was
/// lost and records them on the attempt (`abandoned`, with the first id).
pub async fn delete_orphans(
    app: &App,
    attempt: &Attempt,
    ids: &[String],
) -> anyhow::Result<Result<(), ApiError>> {
    for id in ids {
        if let Err(e) = app.client.delete_submission_if_present(id).await {
            return Ok(Err(e));
        }
    }
    let detail = format!(
        "the reply creating the chunked submission was lost; its empty submission {} was found \
         by name and time and deleted",
        ids.join(", ")
    );
    let update = AttemptUpdate {
        submission_id: ids.first().map(String::as_str),
        ..AttemptUpdate::new(AttemptOutcome::Abandoned, &detail)
    };
    db::items::set_attempt_outcome(&app.db, &attempt.attempt_key, update).await?;
    info!(attempt = %attempt.attempt_key, submissions = ?ids, "deleted the orphaned chunked submission");
    Ok(Ok(()))
}
