//! Reconciliation: items left in `submitting` (an unknown outcome, or a crash after the intent
//! commit) are looked up on the server before anything is sent again (reliability.md §2.8).
//!
//! For each such item, once its time has come (the grace period after an unknown outcome; the
//! lease after a crash, shortened to the grace period by [`super::recover`]):
//!
//! 1. Attempts with a recorded submission id (chunked uploads record it before the first
//!    chunk) are asked about with `submission/info`. No analyses while the attempt never
//!    confirmed all chunks (`chunked_pending`) → the dangling submission is deleted
//!    (`submission/delete`). Anything further along → adopted with that submission id.
//! 2. Every other attempt key the item has used is searched: `analysis/search` for
//!    `jbxd:<key>`, keeping only hits whose `comments` really carry that exact key (search is
//!    a substring match: `…-1` must not match `…-10`). Found → the analyses are recorded and
//!    the item becomes `submitted` — with the attempt's submission id if it had one, else
//!    without (the poller then follows the analyses, see the module docs of `pipeline`).
//! 3. Nothing found and the grace period since the last attempt started has passed → back to
//!    `queued`; the next claim uses a new key (n + 1). Only a search lagging beyond the grace
//!    period can make that a second submission (catalog 8). The older key is looked up once
//!    more when the item's analysis finishes ([`super::poll`]); a submission found then is
//!    recorded as a duplicate (attempt detail and item note), its reports not downloaded.
//!
//! Nothing is ever resubmitted blindly: a failed search leaves the item `submitting` and
//! tries again later.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::classify::{Action, Call, classify};
use super::poll::analysis_record;
use super::submit::give_up_or_requeue;
use super::{all_done, at, backoff, grace};
use crate::api::types::Analysis;
use crate::api::{ApiError, ApiErrorKind, SearchQuery};
use crate::app::{App, StepOutcome};
use crate::db::{self, Attempt, Item, ItemState};

/// Runs the reconcile worker until `cancel` fires. It has no wake-up of its own: its work
/// becomes due by time (grace periods, leases), which the idle interval catches.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    super::worker_loop(
        &app,
        &cancel,
        "reconcile",
        Some(&app.wake.reconcile),
        super::DueFrom::Items(db::ItemState::Submitting),
        || run_once(&app),
    )
    .await
}

fn lease_ms(app: &App) -> i64 {
    let secs = app
        .config
        .api
        .request_timeout_secs
        .saturating_mul(4)
        .max(120);
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
}

/// One step: reconciles up to `max(pipeline.submit_concurrency, 4)` due items concurrently.
pub async fn run_once(app: &App) -> anyhow::Result<StepOutcome> {
    if !app.may_call_api().await? {
        return Ok(StepOutcome::Paused);
    }
    let limit = app.config.pipeline.submit_concurrency.max(4) as i64;
    let items = db::items::claim_for_reconcile(&app.db, limit, lease_ms(app)).await?;
    if items.is_empty() {
        return Ok(StepOutcome::Idle);
    }
    let count = items.len();
    all_done(items.into_iter().map(|item| reconcile_one(app, item))).await?;
    Ok(StepOutcome::Worked(count))
}

/// What the server knows about an item's attempts.
struct Findings {
    /// The attempt to adopt, its submission id (if known) and its analyses.
    adopt: Option<(String, Option<String>, Vec<Analysis>)>,
    /// Analyses of further attempts: a duplicate submission, recorded but not followed.
    duplicates: Vec<(String, Vec<Analysis>)>,
    /// Whether a request of an attempt went out with an unknown fate (counts as an attempt).
    sent_unknown: bool,
}

async fn reconcile_one(app: &App, item: Item) -> anyhow::Result<()> {
    let attempts = db::items::attempts_of(&app.db, item.id).await?;
    let findings = match look_up(app, &attempts).await {
        Ok(findings) => findings,
        Err(error) => {
            let retry_in = match classify(&error, Call::Read, 0, backoff(app)) {
                Action::Pause { reason, detail } => {
                    app.pause(reason, &detail).await?;
                    grace(app)
                }
                Action::Retry { after } => after,
                _ => backoff(app).delay(2),
            };
            warn!(item = item.id, error = %error, ?retry_in, "reconciliation lookup failed; item stays submitting");
            db::pipeline::extend_lease(&app.db, item.id, ItemState::Submitting, at(retry_in))
                .await?;
            return Ok(());
        }
    };

    if let Some((key, submission_id, analyses)) = findings.adopt {
        let records: Vec<_> = analyses
            .iter()
            .map(|a| analysis_record(a, submission_id.as_deref()))
            .collect();
        db::analyses::upsert_many(&app.db, Some(item.id), &records).await?;
        let mut note = format!("adopted attempt {key} after reconciliation");
        if !findings.duplicates.is_empty() {
            note.push_str(&record_duplicates(app, &findings.duplicates).await?);
        }
        db::items::mark_submitted(
            &app.db,
            item.id,
            Some(&key),
            submission_id.as_deref(),
            db::now_ms(),
            Some(&note),
        )
        .await?;
        info!(item = item.id, attempt = %key, submission_id = ?submission_id, analyses = records.len(), "submission found by reconciliation; adopted");
        app.wake.poll.notify_one();
        return Ok(());
    }

    // Nothing on the server. Wait out the grace period since the last attempt started, so
    // that a slow search index gets its chance before a new attempt is made.
    let last_start = attempts
        .last()
        .and_then(|a| db::parse_time(&a.started_at))
        .map(|t| t.timestamp_millis())
        .unwrap_or(0);
    let due = last_start.saturating_add(grace(app).as_millis() as i64);
    if due > db::now_ms() {
        db::pipeline::extend_lease(&app.db, item.id, ItemState::Submitting, due).await?;
        return Ok(());
    }
    for attempt in &attempts {
        if matches!(attempt.outcome.as_deref(), None | Some("unknown")) {
            db::items::set_attempt_outcome(
                &app.db,
                &attempt.attempt_key,
                "not_found",
                None,
                Some("not found on the server by reconciliation"),
            )
            .await?;
        }
    }
    let detail = "no submission found on the server for the earlier attempt; submitting again";
    if findings.sent_unknown {
        give_up_or_requeue(
            app,
            &item,
            detail,
            backoff(app).delay(item.attempts.max(0) as u32),
        )
        .await?;
    } else {
        // Orphaned by a crash: not the item's fault, no attempt used.
        db::items::requeue(&app.db, item.id, Some(detail), db::now_ms(), false).await?;
        info!(
            item = item.id,
            "nothing found for the interrupted attempt; requeued"
        );
    }
    app.wake.submit.notify_one();
    Ok(())
}

/// Records analyses of a duplicate submission without linking them to the item (their
/// reports are not downloaded twice); returns the text for the item's note.
pub(crate) async fn record_duplicates(
    app: &App,
    duplicates: &[(String, Vec<Analysis>)],
) -> anyhow::Result<String> {
    let mut note = String::new();
    for (key, analyses) in duplicates {
        let records: Vec<_> = analyses.iter().map(|a| analysis_record(a, None)).collect();
        db::analyses::upsert_many(&app.db, None, &records).await?;
        let webids: Vec<&str> = analyses.iter().map(|a| a.webid.as_str()).collect();
        let detail = format!("duplicate submission: analyses {}", webids.join(", "));
        db::items::set_attempt_outcome(&app.db, key, "accepted", None, Some(&detail)).await?;
        warn!(attempt = %key, %detail, "duplicate submission detected");
        note.push_str(&format!(
            "; duplicate submission by attempt {key} ({detail})"
        ));
    }
    Ok(note)
}

/// Asks the server about every attempt (see the module docs).
async fn look_up(app: &App, attempts: &[Attempt]) -> Result<Findings, ApiError> {
    let mut findings = Findings {
        adopt: None,
        duplicates: Vec::new(),
        sent_unknown: false,
    };
    for attempt in attempts {
        let outcome = attempt.outcome.as_deref();
        // Refused and abandoned attempts created nothing (or what they created is deleted).
        if matches!(outcome, Some("refused" | "abandoned")) {
            continue;
        }
        if matches!(outcome, Some("unknown" | "chunked_pending")) {
            findings.sent_unknown = true;
        }
        let found = match attempt.submission_id.as_deref() {
            Some(id) => by_submission_id(app, attempt, id).await?,
            None => by_key(app, &attempt.attempt_key)
                .await?
                .map(|analyses| (None, analyses)),
        };
        let Some((submission_id, analyses)) = found else {
            continue;
        };
        if findings.adopt.is_none() {
            findings.adopt = Some((attempt.attempt_key.clone(), submission_id, analyses));
        } else if !analyses.is_empty() {
            findings
                .duplicates
                .push((attempt.attempt_key.clone(), analyses));
        }
    }
    Ok(findings)
}

/// An attempt whose submission id is on record.
async fn by_submission_id(
    app: &App,
    attempt: &Attempt,
    id: &str,
) -> Result<Option<(Option<String>, Vec<Analysis>)>, ApiError> {
    let submission = match app.client.submission_info(id).await {
        Ok(s) => s,
        Err(e) if e.kind() == Some(ApiErrorKind::InvalidParameter) => {
            db_note(
                app,
                &attempt.attempt_key,
                "not_found",
                "submission no longer exists",
            )
            .await;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let analyses = submission.analyses.clone().unwrap_or_default();
    // A chunked upload we never saw complete, with no analysis to show: its chunks did not
    // all arrive. (Real servers keep it `accepted`; the simulator, like some servers, may
    // even call a chunked submission without chunks `finished` with no analyses — adopting
    // that would record an empty result for a real sample.)
    let incomplete = matches!(
        attempt.outcome.as_deref(),
        Some("chunked_pending" | "unknown")
    ) && analyses.is_empty();
    if incomplete {
        match app.client.submission_delete(id).await {
            Ok(()) => {}
            Err(e) if e.kind() == Some(ApiErrorKind::InvalidParameter) => {}
            Err(e) => return Err(e),
        }
        info!(submission_id = %id, attempt = %attempt.attempt_key, "deleted the incomplete chunked submission");
        db_note(
            app,
            &attempt.attempt_key,
            "abandoned",
            "incomplete chunked upload deleted by reconciliation",
        )
        .await;
        return Ok(None);
    }
    Ok(Some((Some(id.to_owned()), analyses)))
}

/// Best-effort bookkeeping on an attempt row (what the server said); losing it only costs
/// one more lookup.
async fn db_note(app: &App, key: &str, outcome: &str, detail: &str) {
    if let Err(e) = db::items::set_attempt_outcome(&app.db, key, outcome, None, Some(detail)).await
    {
        warn!(attempt = %key, error = %e, "could not record the attempt's outcome");
    }
}

/// Searches for analyses whose comments carry exactly `jbxd:<key>`.
pub(crate) async fn by_key(app: &App, key: &str) -> Result<Option<Vec<Analysis>>, ApiError> {
    let marker = format!("jbxd:{key}");
    let hits = app
        .client
        .analysis_search(&SearchQuery::Text(marker.clone()))
        .await?;
    let mut found = Vec::new();
    for hit in hits {
        let analysis = if hit.comments.is_some() {
            hit
        } else {
            // A `{webid}` stub: the comments come with the full object.
            app.client.analysis_info(&hit.webid).await?
        };
        if analysis
            .comments
            .as_deref()
            .is_some_and(|c| carries_marker(c, &marker))
        {
            found.push(analysis);
        }
    }
    Ok((!found.is_empty()).then_some(found))
}

/// Whether `comments` contains `marker` as a whole token (not as the prefix of a longer key).
pub fn carries_marker(comments: &str, marker: &str) -> bool {
    comments.match_indices(marker).any(|(i, m)| {
        comments[i + m.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_counts_as_a_hit() {
        let m = "jbxd:abc-1";
        assert!(carries_marker("jbxd:abc-1", m));
        assert!(carries_marker("user text jbxd:abc-1", m));
        assert!(carries_marker(
            "jbxd:abc-1\nSample was extracted from a.zip",
            m
        ));
        assert!(!carries_marker("jbxd:abc-10", m));
        assert!(!carries_marker("jbxd:abc-1x", m));
        assert!(!carries_marker("jbxd:abc-", m));
        assert!(carries_marker("jbxd:abc-10 jbxd:abc-1", m));
    }
}
