//! The poll worker: follows `submitted` items until their analyses finish, on the adaptive
//! schedule of [`super::schedule`], and records every analysis with its verdict fields.
//!
//! * With a submission id: `submission/info`. Without one (adopted by reconciliation or by the
//!   server dedup lookup): `analysis/info` for each recorded analysis.
//! * Finished → `record_finished` (analyses, one pending report row per configured type); the
//!   item moves to `downloading`, or to `done` when there is nothing to download — a finished
//!   submission without any analysis is a recorded outcome, not an error. Analyses whose every
//!   run ended in an error are recorded as they are, with the error in the item's note; they
//!   are not resubmitted.
//! * Still running → the analyses seen so far are recorded and the next poll scheduled; past
//!   `poll.max_analysis_age_secs` the item is `failed: timed out`.
//! * The submission (or analysis) is gone from the server → `failed` with that reason; never
//!   resubmitted in a loop.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::classify::{Action, Call, classify};
use super::outcomes::{all_done, analysis_records, report_types};
use super::pace::{DueFrom, at, backoff, plan_for, worker_loop};
use super::schedule::{PollPlan, jittered, random_unit};
use crate::api::ApiError;
use crate::api::types::Analysis;
use crate::app::{App, StepOutcome};
use crate::db::{self, AttemptOutcome, Item, ItemState};
use crate::text::one_line;

/// A poll claim's lease (start-up recovery releases the leases a crash left behind).
const LEASE_MS: i64 = 10 * 60 * 1000;

/// Runs the poll worker until `cancel` fires.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    worker_loop(
        &app,
        &cancel,
        "poll",
        Some(&app.wake.poll),
        DueFrom::Items(ItemState::Submitted),
        || run_once(&app),
    )
    .await
}

/// One step: polls up to `pipeline.poll_concurrency` due items concurrently.
pub async fn run_once(app: &App) -> anyhow::Result<StepOutcome> {
    if !app.may_call_api().await? {
        return Ok(StepOutcome::Paused);
    }
    let limit = app.config.pipeline.poll_concurrency.max(1) as i64;
    let items = db::items::claim_for_poll(&app.db, limit, LEASE_MS).await?;
    if items.is_empty() {
        return Ok(StepOutcome::Idle);
    }
    let count = items.len();
    all_done(items.into_iter().map(|item| poll_one(app, item))).await?;
    Ok(StepOutcome::Worked(count))
}

/// What one poll saw.
enum Observed {
    Finished(Vec<Analysis>),
    Running(Vec<Analysis>),
}

/// How long ago the item was submitted (zero when unknown).
fn age_of(item: &Item) -> Duration {
    item.submitted_at
        .as_deref()
        .and_then(db::parse_time)
        .map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default())
        .unwrap_or_default()
}

async fn poll_one(app: &App, item: Item) -> anyhow::Result<()> {
    let plan = plan_for(app, &item);
    let observed = match &item.submission_id {
        Some(id) => observe_submission(app, id).await,
        None => {
            let webids: Vec<String> = db::analyses::for_item(&app.db, item.id)
                .await?
                .into_iter()
                .map(|a| a.webid)
                .collect();
            observe_analyses(app, &webids).await
        }
    };
    let age = age_of(&item);
    match observed {
        Ok(Observed::Finished(analyses)) => {
            // Every extra submission goes before the item leaves `submitted` (case 115).
            let late = match settle_late_duplicates(app, &item).await? {
                Ok(note) => note,
                Err(error) => match classify(&error, Call::Read, 0, backoff(app)) {
                    Action::Retry { after } => {
                        warn!(item = item.id, %error, "looking up earlier attempts failed; will poll again");
                        let next = after.max(jittered(plan.interval_at(age), random_unit()));
                        db::items::schedule_poll(&app.db, item.id, at(next)).await?;
                        return Ok(());
                    }
                    Action::Pause { reason, detail } => {
                        app.pause(reason, &detail).await?;
                        let next = jittered(plan.interval_at(age), random_unit());
                        db::items::schedule_poll(&app.db, item.id, at(next)).await?;
                        return Ok(());
                    }
                    _ => Some(format!(
                        "earlier attempts could not be checked for a duplicate: {}",
                        one_line(&error.to_string(), 300)
                    )),
                },
            };
            finish(app, &item, &analyses, late).await
        }
        Ok(Observed::Running(analyses)) => {
            let records = analysis_records(&analyses, item.submission_id.as_deref());
            if !records.is_empty() {
                db::analyses::upsert_many(&app.db, item.id, &records).await?;
            }
            if plan.timed_out(age) {
                let reason = format!("timed out: analysis not finished after {} s", age.as_secs());
                db::items::fail(&app.db, item.id, &reason).await?;
                warn!(item = item.id, %reason, "item failed");
                return Ok(());
            }
            let next = jittered(plan.interval_at(age), random_unit());
            db::items::schedule_poll(&app.db, item.id, at(next)).await?;
            Ok(())
        }
        Err(error) => on_error(app, &item, &plan, age, &error).await,
    }
}

async fn on_error(
    app: &App,
    item: &Item,
    plan: &PollPlan,
    age: Duration,
    error: &ApiError,
) -> anyhow::Result<()> {
    let interval = jittered(plan.interval_at(age), random_unit());
    match classify(error, Call::Read, 0, backoff(app)) {
        Action::Pause { reason, detail } => {
            app.pause(reason, &detail).await?;
            db::items::schedule_poll(&app.db, item.id, at(interval)).await?;
        }
        Action::Fatal { reason } | Action::Reject { reason } => {
            let what = match &item.submission_id {
                Some(id) => format!("submission {id}"),
                None => "the analysis".to_owned(),
            };
            let reason = format!(
                "{what} is no longer known to the server ({}); not resubmitted",
                one_line(&reason, 300)
            );
            db::items::fail(&app.db, item.id, &reason).await?;
            warn!(item = item.id, %reason, "item failed");
        }
        Action::Retry { after } => {
            if plan.timed_out(age) {
                let reason = format!(
                    "timed out: analysis not finished after {} s (last error: {error})",
                    age.as_secs()
                );
                db::items::fail(&app.db, item.id, &reason).await?;
                warn!(item = item.id, %reason, "item failed");
            } else {
                warn!(item = item.id, %error, "poll failed; will poll again");
                db::items::schedule_poll(&app.db, item.id, at(after.max(interval))).await?;
            }
        }
        Action::UnknownOutcome => {
            db::items::schedule_poll(&app.db, item.id, at(interval)).await?;
        }
    }
    Ok(())
}

async fn observe_submission(app: &App, submission_id: &str) -> Result<Observed, ApiError> {
    let submission = app.client.submission_info(submission_id).await?;
    let analyses = submission.analyses.clone().unwrap_or_default();
    Ok(if submission.is_finished() {
        Observed::Finished(analyses)
    } else {
        Observed::Running(analyses)
    })
}

async fn observe_analyses(app: &App, webids: &[String]) -> Result<Observed, ApiError> {
    let mut analyses = Vec::with_capacity(webids.len());
    for webid in webids {
        analyses.push(app.client.analysis_info(webid).await?);
    }
    Ok(if analyses.iter().all(Analysis::is_finished) {
        Observed::Finished(analyses)
    } else {
        Observed::Running(analyses)
    })
}

async fn finish(
    app: &App,
    item: &Item,
    analyses: &[Analysis],
    late_duplicates: Option<String>,
) -> anyhow::Result<()> {
    let records = analysis_records(analyses, item.submission_id.as_deref());
    let types = report_types(&app.config);
    crate::crashpoint::hit("after_poll_finished");
    let mut state = db::items::record_finished(&app.db, item.id, &records, &types).await?;
    // Reports of these analyses may all be settled already (an analysis seen before):
    // then there is nothing left to wait for.
    if state == ItemState::Downloading
        && db::items::complete_if_reports_done(&app.db, item.id).await?
    {
        state = ItemState::Done;
    }
    let errors: Vec<String> = analyses
        .iter()
        .filter_map(|a| {
            let runs = a.runs.as_ref().filter(|r| !r.is_empty())?;
            runs.iter().all(|r| r.error.is_some()).then(|| {
                format!(
                    "analysis {} ended in error: {}",
                    a.webid,
                    one_line(runs[0].error.as_deref().unwrap_or_default(), 300)
                )
            })
        })
        .collect();
    let mut notes = errors;
    notes.extend(late_duplicates);
    if !notes.is_empty() {
        // Kept after what the item already says (e.g. how it was adopted).
        let note = item
            .note
            .iter()
            .cloned()
            .chain(notes)
            .collect::<Vec<_>>()
            .join("; ");
        db::pipeline::set_note(&app.db, item.id, &note).await?;
    }
    info!(
        item = item.id,
        state = state.as_str(),
        analyses = records.len(),
        "analysis finished"
    );
    if state == ItemState::Downloading {
        app.wake.download.notify_one();
    }
    Ok(())
}

/// Catalog 8 and case 115: when reconciliation found nothing for an attempt within its
/// look-up window and the item was submitted again, the earlier submission may exist after
/// all. Once the followed submission finished, the earlier keys are looked up once more (search
/// and submission list); what turns up is deleted on the server and recorded on its attempt,
/// and the returned text goes into the item's note. The followed submission is kept: its
/// analyses are the recorded ones, and the earlier one only reappeared after jbxd gave up on it.
async fn settle_late_duplicates(
    app: &App,
    item: &Item,
) -> anyhow::Result<Result<Option<String>, ApiError>> {
    let attempts = db::items::attempts_of(&app.db, item.id).await?;
    let late: Vec<&db::Attempt> = attempts
        .iter()
        .filter(|a| a.outcome == Some(AttemptOutcome::NotFound) && a.submission_id.is_none())
        .collect();
    if late.is_empty() {
        return Ok(Ok(None));
    }
    let view = match super::lookup::server_view(app, late.iter().copied()).await? {
        Ok(view) => view,
        Err(error) => return Ok(Err(error)),
    };
    let mut notes = Vec::new();
    for attempt in late {
        for found in view.found(&attempt.attempt_key) {
            if let Err(error) = super::lookup::delete_duplicate(app, found).await {
                return Ok(Err(error));
            }
            notes.push(
                super::lookup::record_deleted_duplicate(app, &attempt.attempt_key, found).await?,
            );
        }
    }
    Ok(Ok((!notes.is_empty()).then(|| notes.join("; "))))
}
