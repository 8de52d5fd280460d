//! Reconciliation: items left in `submitting` (an unknown outcome, or a crash after the intent
//! commit) are looked up on the server before anything is sent again (RELIABILITY.md promise I2, cases 7, 8, 115,
//! RELIABILITY cases 7, 8, 10, 115 and 116).
//!
//! For each such item, once its time has come (the grace period after an unknown outcome; the
//! lease after a crash, shortened to the grace period by [`super::recover`]):
//!
//! 1. Attempts with a recorded submission id (chunked uploads record it before the first
//!    chunk) are asked about with `submission/info`. No analyses while the attempt never
//!    confirmed all chunks (`chunked_pending`) → the dangling submission is deleted
//!    (`submission/delete`). Anything further along → adopted with that submission id.
//! 2. Every other attempt key is looked up in one [`ServerView`] per step (see
//!    [`super::lookup`]): `analysis/search` for `jbxd:<key>`, and the account's submission
//!    list, which the search index's lag does not delay, with `submission/info` for each
//!    listed submission jbxd has no record of. Only comments carrying exactly that key count
//!    (`…-1` must not match `…-10`). Found → the analyses are recorded and the item becomes
//!    `submitted`, with the submission id when the list named it. Several found (an earlier
//!    attempt reappeared) → the first is kept and the others are deleted on the server before
//!    the adoption is committed, and recorded on their attempts and in the item's note.
//! 3. A chunk-sized file whose attempt is not found by key: an empty listed submission named
//!    like its upload and created since the attempt began is its orphaned chunked submission
//!    (the reply to `submission/new` was lost, so no chunk went out): deleted, and the attempt
//!    recorded `abandoned` with its id; nothing else can show up for it.
//! 4. Nothing found → the item stays `submitting` and is looked up again on a growing
//!    schedule (the delay doubles with the time since the attempt began, from the grace
//!    period) until `pipeline.reconcile_window_secs` since the last attempt began have passed;
//!    only then is it `queued` again, for a new key (n + 1). Those attempts are `not_found` and
//!    looked up once more when the item's analysis finishes ([`super::poll`]): a submission
//!    found then is deleted and recorded as a duplicate.
//!
//! Nothing is ever resubmitted blindly: a failed look-up leaves the item `submitting` and
//! tries again later.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::classify::{Action, Call, classify};
use super::lookup::{self, ServerView};
use super::outcomes::{all_done, analysis_records, give_up_or_requeue};
use super::pace::{DueFrom, at, backoff, grace, worker_loop};
use crate::api::types::Analysis;
use crate::api::{ApiError, ApiErrorKind, FoundSubmission};
use crate::app::{App, StepOutcome};
use crate::db::{
    self, Attempt, AttemptCost, AttemptOutcome, AttemptUpdate, Item, ItemState, Submitted,
};

/// Runs the reconcile worker until `cancel` fires. It has no wake-up of its own: its work
/// becomes due by time (grace periods, leases), which the idle interval catches.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    worker_loop(
        &app,
        &cancel,
        "reconcile",
        Some(&app.wake.reconcile),
        DueFrom::Items(ItemState::Submitting),
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

/// One step: reconciles up to `max(pipeline.submit_concurrency, 4)` due items concurrently,
/// against one [`ServerView`] of all their attempts.
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
    let mut work = Vec::with_capacity(count);
    for item in items {
        let attempts = db::items::attempts_of(&app.db, item.id).await?;
        work.push((item, attempts));
    }
    match lookup::server_view(app, work.iter().flat_map(|(_, a)| a)).await? {
        Ok(view) => {
            all_done(
                work.into_iter()
                    .map(|(item, attempts)| reconcile_one(app, item, attempts, &view)),
            )
            .await?;
        }
        Err(error) => {
            for (item, _) in &work {
                lookup_failed(app, item, &error).await?;
            }
        }
    }
    Ok(StepOutcome::Worked(count))
}

/// A failed look-up leaves the item `submitting`; it is asked about again later. Nothing is
/// ever sent on a failed look-up.
async fn lookup_failed(app: &App, item: &Item, error: &ApiError) -> anyhow::Result<()> {
    let retry_in = match classify(error, Call::Read, 0, backoff(app)) {
        Action::Pause { reason, detail } => {
            app.pause(reason, &detail).await?;
            grace(app)
        }
        Action::Retry { after } => after,
        _ => backoff(app).delay(2),
    };
    warn!(item = item.id, error = %error, ?retry_in, "reconciliation lookup failed; item stays submitting");
    db::pipeline::extend_lease(&app.db, item.id, ItemState::Submitting, at(retry_in)).await?;
    Ok(())
}

/// A submission of a later attempt, found besides the adopted one.
struct Duplicate {
    key: String,
    found: FoundSubmission,
}

/// What the server knows about an item's attempts.
struct Findings {
    /// The attempt to adopt, its submission id (if known) and its analyses.
    adopt: Option<(String, Option<String>, Vec<Analysis>)>,
    /// Further submissions of the item: deleted on the server before the adoption is recorded.
    duplicates: Vec<Duplicate>,
    /// Attempts that may still show up (sent or interrupted, not found yet), with their start.
    open: Vec<(String, i64)>,
    /// Whether a request of an attempt went out with an unknown fate (counts as an attempt).
    sent_unknown: bool,
}

async fn reconcile_one(
    app: &App,
    item: Item,
    attempts: Vec<Attempt>,
    view: &ServerView,
) -> anyhow::Result<()> {
    let findings = match look_up(app, &item, &attempts, view).await? {
        Ok(findings) => findings,
        Err(error) => return lookup_failed(app, &item, &error).await,
    };

    if let Some((key, submission_id, analyses)) = findings.adopt {
        // Never more than one live submission per item: the extras go before we commit.
        for duplicate in &findings.duplicates {
            if let Err(error) = lookup::delete_duplicate(app, &duplicate.found).await {
                return lookup_failed(app, &item, &error).await;
            }
        }
        let records = analysis_records(&analyses, submission_id.as_deref());
        db::analyses::upsert_many(&app.db, item.id, &records).await?;
        let mut note = format!("adopted attempt {key} after reconciliation");
        for duplicate in &findings.duplicates {
            let text =
                lookup::record_deleted_duplicate(app, &duplicate.key, &duplicate.found).await?;
            note.push_str("; ");
            note.push_str(&text);
        }
        // Attempts not seen yet are looked up once more when the analysis finishes (poll).
        for (open, _) in &findings.open {
            let detail = format!("not found when attempt {key} was adopted");
            let update = AttemptUpdate::new(AttemptOutcome::NotFound, &detail);
            db::items::set_attempt_outcome(&app.db, open, update).await?;
        }
        let how = Submitted {
            accepted_attempt: Some(&key),
            submission_id: submission_id.as_deref(),
            first_poll_at: db::now_ms(),
            note: Some(&note),
        };
        db::items::mark_submitted(&app.db, item.id, how).await?;
        info!(item = item.id, attempt = %key, submission_id = ?submission_id, analyses = records.len(), "submission found by reconciliation; adopted");
        app.wake.poll.notify_one();
        return Ok(());
    }

    // Nothing on the server. An attempt that may still appear is looked for until the
    // look-up window since it began has passed, on a growing schedule: a lagging search or a
    // slow server gets far more time than a lag lasts before anything is sent again.
    if let Some(last_start) = findings.open.iter().map(|(_, start)| *start).max() {
        let window = Duration::from_secs(app.config.pipeline.reconcile_window_secs).max(grace(app));
        let end =
            last_start.saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2));
        let now = db::now_ms();
        if now < end {
            let waited = Duration::from_millis(u64::try_from(now - last_start).unwrap_or(0));
            let next = at(waited.max(grace(app))).min(end);
            db::pipeline::extend_lease(&app.db, item.id, ItemState::Submitting, next).await?;
            return Ok(());
        }
        // A submission named like this item that the server has not analysed yet cannot be
        // told apart by its marker: on a busy server it is most likely ours, still queued.
        // Submitting again now would make a second live submission, so wait for it to be
        // analysed (and so identified), for up to ten windows more.
        let lookalikes = view.unanalysed_lookalikes(&item, Some(last_start));
        let patience = end.saturating_add(
            i64::try_from(window.as_millis().saturating_mul(10)).unwrap_or(i64::MAX / 2),
        );
        if !lookalikes.is_empty() && now < patience {
            info!(item = item.id, submissions = ?lookalikes, "a submission named like this item has no analyses yet; waiting for it before submitting again");
            let next = at(window.min(Duration::from_secs(60)).max(grace(app)));
            db::pipeline::extend_lease(&app.db, item.id, ItemState::Submitting, next).await?;
            return Ok(());
        }
        for (key, _) in &findings.open {
            let detail = format!(
                "not found on the server within the {} s look-up window",
                window.as_secs()
            );
            let update = AttemptUpdate::new(AttemptOutcome::NotFound, &detail);
            db::items::set_attempt_outcome(&app.db, key, update).await?;
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
        db::items::requeue(&app.db, item.id, detail, db::now_ms(), AttemptCost::Free).await?;
        info!(
            item = item.id,
            "nothing found for the interrupted attempt; requeued"
        );
    }
    app.wake.submit.notify_one();
    Ok(())
}

/// Asks the server (and the view) about every attempt (see the module docs).
async fn look_up(
    app: &App,
    item: &Item,
    attempts: &[Attempt],
    view: &ServerView,
) -> anyhow::Result<Result<Findings, ApiError>> {
    let mut findings = Findings {
        adopt: None,
        duplicates: Vec::new(),
        open: Vec::new(),
        sent_unknown: false,
    };
    for attempt in attempts {
        let outcome = attempt.outcome;
        // Refused and abandoned attempts created nothing (or what they created is deleted).
        if matches!(
            outcome,
            Some(AttemptOutcome::Refused | AttemptOutcome::Abandoned)
        ) {
            continue;
        }
        if matches!(
            outcome,
            Some(AttemptOutcome::Unknown | AttemptOutcome::ChunkedPending)
        ) {
            findings.sent_unknown = true;
        }
        let found: Vec<FoundSubmission> = match attempt.submission_id.as_deref() {
            Some(id) => match by_submission_id(app, attempt, id).await {
                Ok(Some(found)) => vec![found],
                Ok(None) => Vec::new(),
                Err(e) => return Ok(Err(e)),
            },
            None => view.found(&attempt.attempt_key).to_vec(),
        };
        if found.is_empty() {
            if lookup::needs_marker_lookup(attempt) && outcome != Some(AttemptOutcome::NotFound) {
                let orphans = view.chunked_orphans(app, item, attempt);
                if !orphans.is_empty() {
                    if let Err(e) = lookup::delete_orphans(app, attempt, &orphans).await? {
                        return Ok(Err(e));
                    }
                    continue;
                }
                let start = lookup::started(attempt).map_or(0, |t| t.timestamp_millis());
                findings.open.push((attempt.attempt_key.clone(), start));
            }
            continue;
        }
        for one in found {
            if findings.adopt.is_none() {
                findings.adopt =
                    Some((attempt.attempt_key.clone(), one.submission_id, one.analyses));
            } else {
                findings.duplicates.push(Duplicate {
                    key: attempt.attempt_key.clone(),
                    found: one,
                });
            }
        }
    }
    Ok(Ok(findings))
}

/// An attempt whose submission id is on record.
async fn by_submission_id(
    app: &App,
    attempt: &Attempt,
    id: &str,
) -> Result<Option<FoundSubmission>, ApiError> {
    let submission = match app.client.submission_info(id).await {
        Ok(s) => s,
        Err(e) if e.kind() == Some(ApiErrorKind::InvalidParameter) => {
            db_note(
                app,
                &attempt.attempt_key,
                AttemptOutcome::NotFound,
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
        attempt.outcome,
        Some(AttemptOutcome::ChunkedPending | AttemptOutcome::Unknown)
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
            AttemptOutcome::Abandoned,
            "incomplete chunked upload deleted by reconciliation",
        )
        .await;
        return Ok(None);
    }
    Ok(Some(FoundSubmission {
        submission_id: Some(id.to_owned()),
        analyses,
    }))
}

/// Best-effort bookkeeping on an attempt row (what the server said); losing it only costs
/// one more lookup.
async fn db_note(app: &App, key: &str, outcome: AttemptOutcome, detail: &str) {
    let update = AttemptUpdate::new(outcome, detail);
    if let Err(e) = db::items::set_attempt_outcome(&app.db, key, update).await {
        warn!(attempt = %key, error = %e, "could not record the attempt's outcome");
    }
}
