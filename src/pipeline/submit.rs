//! The submit worker: `queued` → `submitting` → `submitted` (RELIABILITY.md promise I2, cases 6–8, 115).
//!
//! 1. `claim_for_submit` commits the move to `submitting` and a new attempt key in
//!    `submit_attempts` (the outbox) before any request.
//! 2. Files, unless forced: the server is asked for a finished analysis of the same sha256
//!    (`dedup.server_lookup`); one found is adopted instead of submitting (no submission id:
//!    the poller follows the analysis itself).
//! 3. The submission carries `comments = "[<user comments> ]jbxd:<attempt key>"`, so an
//!    unknown outcome can be looked up. Large files go in chunks; the submission id of a
//!    chunked upload is committed (`chunked_pending`) before the first chunk.
//! 4. The outcome: `submitted`, unknown (left to [`super::reconcile`]), retry with backoff,
//!    `rejected`, a global pause (no attempt consumed), or `failed` once attempts run out.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::classify::{Action, Call, classify};
use super::outcomes::{all_done, give_up_or_requeue};
use super::pace::{DueFrom, at, backoff, grace, plan_for, worker_loop};
pub use super::params::{attempt_params, default_params};
use super::schedule::{jittered, random_unit};
use super::server_dedup;
use crate::api::{ApiError, SampleUpload, SubmissionParams, SubmitError};
use crate::app::{App, StepOutcome};
use crate::db::{
    self, AttemptCost, AttemptOutcome, AttemptUpdate, DbError, Item, ItemState, Submitted,
};

/// Runs the submit worker until `cancel` fires.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    worker_loop(
        &app,
        &cancel,
        "submit",
        Some(&app.wake.submit),
        DueFrom::Items(ItemState::Queued),
        || run_once(&app),
    )
    .await
}

/// One step: claims up to `pipeline.submit_concurrency` due items and submits them
/// concurrently.
pub async fn run_once(app: &App) -> anyhow::Result<StepOutcome> {
    if !app.may_submit().await? {
        return Ok(StepOutcome::Paused);
    }
    // Built before claiming: a bad default is a configuration error, not the items' fault.
    let defaults = default_params(&app.config.submission)?;
    let limit = app.config.pipeline.submit_concurrency.max(1) as i64;
    let claimed = db::items::claim_for_submit(&app.db, limit, lease(app)).await?;
    if claimed.is_empty() {
        return Ok(StepOutcome::Idle);
    }
    crate::crashpoint::hit("after_submit_intent");
    let count = claimed.len();
    all_done(
        claimed
            .into_iter()
            .map(|(item, key)| submit_one(app, &defaults, item, key)),
    )
    .await?;
    Ok(StepOutcome::Worked(count))
}

/// The lease of a claim: how long an item may stay `submitting` before reconciliation takes
/// it over if this process died. While a request is in flight it is renewed (see
/// [`with_lease`]), so it only has to outlive the renewal period.
fn lease(app: &App) -> i64 {
    lease_duration(app).as_millis() as i64
}

fn lease_duration(app: &App) -> Duration {
    Duration::from_secs(
        app.config
            .api
            .request_timeout_secs
            .saturating_mul(2)
            .max(120),
    )
}

/// The first poll of a fresh submission, jittered: 0.9 × its analysis time when it has one,
/// else a quarter of `poll.expected_analysis_secs` (see `schedule::PollPlan`).
pub(crate) fn first_poll_at(app: &App, item: &Item) -> i64 {
    at(jittered(plan_for(app, item).first_delay(), random_unit()))
}

/// Why sending failed.
enum SendError {
    Api(ApiError),
    Db(DbError),
}

impl From<ApiError> for SendError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<DbError> for SendError {
    fn from(e: DbError) -> Self {
        Self::Db(e)
    }
}

async fn submit_one(
    app: &App,
    defaults: &SubmissionParams,
    item: Item,
    key: String,
) -> anyhow::Result<()> {
    let params = match attempt_params(
        item.params.as_deref(),
        defaults,
        &app.config.submission,
        &key,
    ) {
        Ok(params) => params,
        Err(reason) => {
            let update = AttemptUpdate::new(AttemptOutcome::Refused, &reason);
            db::items::set_attempt_outcome(&app.db, &key, update).await?;
            db::items::reject(&app.db, item.id, &reason).await?;
            info!(item = item.id, %reason, "item rejected");
            return Ok(());
        }
    };

    if !item.is_url() && app.config.dedup.server_lookup && !item.force {
        match with_lease(app, item.id, server_dedup::lookup(app, &item)).await {
            Ok(Some(analysis)) => return server_dedup::adopt(app, &item, &key, &analysis).await,
            Ok(None) => {}
            Err(error) => {
                if let Action::Pause { reason, detail } =
                    classify(&error, Call::Read, item.attempts as u32, backoff(app))
                {
                    return pause_and_requeue(app, &item, &key, reason, &detail).await;
                }
                // The lookup only saves quota; without it we simply submit.
                warn!(item = item.id, error = %error, "server lookup by sha256 failed; submitting");
            }
        }
    }

    match with_lease(app, item.id, send(app, &item, &key, &params)).await {
        Ok(submission_id) => {
            crate::crashpoint::hit("after_submit_response");
            let how = Submitted {
                accepted_attempt: Some(&key),
                submission_id: Some(&submission_id),
                first_poll_at: first_poll_at(app, &item),
                note: None,
            };
            db::items::mark_submitted(&app.db, item.id, how).await?;
            info!(item = item.id, %submission_id, attempt = %key, "submitted");
            app.wake.poll.notify_one();
            Ok(())
        }
        Err(SendError::Db(error)) => {
            // The chunked submission id could not be recorded: the item stays `submitting`
            // and reconciliation looks the key up once the lease runs out.
            Err(error).context("recording a chunked submission")
        }
        Err(SendError::Api(error)) => handle_failure(app, &item, &key, &error).await,
    }
}

/// What to do after a failed submission.
async fn handle_failure(app: &App, item: &Item, key: &str, error: &ApiError) -> anyhow::Result<()> {
    let detail = error.to_string();
    if let ApiError::ChunkFailed {
        deleted: false,
        submission_id,
        ..
    } = error
    {
        // The incomplete submission is still on the server (its id is on the attempt row):
        // reconciliation deletes it before anything is sent again.
        warn!(item = item.id, %submission_id, error = %detail, "chunked upload failed and its submission could not be deleted");
        let update = AttemptUpdate::new(AttemptOutcome::ChunkedPending, &detail);
        db::items::set_attempt_outcome(&app.db, key, update).await?;
        db::pipeline::extend_lease(&app.db, item.id, ItemState::Submitting, at(grace(app))).await?;
        return Ok(());
    }
    let attempts = item.attempts.max(0) as u32;
    match classify(error, Call::Submit, attempts, backoff(app)) {
        Action::UnknownOutcome => {
            warn!(item = item.id, attempt = %key, error = %detail, "submission outcome unknown; will reconcile");
            db::items::mark_unknown_outcome(&app.db, item.id, key, &detail, at(grace(app))).await?;
            app.wake.reconcile.notify_one();
        }
        Action::Retry { after } => {
            let outcome = if matches!(error, ApiError::ChunkFailed { .. }) {
                AttemptOutcome::Abandoned
            } else {
                AttemptOutcome::Refused
            };
            let update = AttemptUpdate::new(outcome, &detail);
            db::items::set_attempt_outcome(&app.db, key, update).await?;
            give_up_or_requeue(app, item, &detail, after).await?;
        }
        Action::Reject { reason } => {
            let update = AttemptUpdate::new(AttemptOutcome::Refused, &detail);
            db::items::set_attempt_outcome(&app.db, key, update).await?;
            db::items::reject(&app.db, item.id, &reason).await?;
            info!(item = item.id, %reason, "item rejected by the server");
        }
        Action::Fatal { reason } => {
            let update = AttemptUpdate::new(AttemptOutcome::Refused, &detail);
            db::items::set_attempt_outcome(&app.db, key, update).await?;
            db::items::fail(&app.db, item.id, &reason).await?;
            warn!(item = item.id, %reason, "item failed");
        }
        Action::Pause { reason, detail } => {
            pause_and_requeue(app, item, key, reason, &detail).await?;
        }
    }
    Ok(())
}

/// A global pause: the item goes back without using an attempt.
async fn pause_and_requeue(
    app: &App,
    item: &Item,
    key: &str,
    reason: crate::app::PauseReason,
    detail: &str,
) -> anyhow::Result<()> {
    let update = AttemptUpdate::new(AttemptOutcome::Refused, detail);
    db::items::set_attempt_outcome(&app.db, key, update).await?;
    app.pause(reason, detail).await?;
    db::items::requeue(&app.db, item.id, detail, db::now_ms(), AttemptCost::Free).await?;
    info!(
        item = item.id,
        reason = reason.describe(),
        "submission paused; item requeued without using an attempt"
    );
    Ok(())
}

/// Runs `work` while renewing the item's claim, so that reconciliation never takes a
/// submission in flight for an abandoned one, however long the upload takes.
async fn with_lease<T>(app: &App, item_id: i64, work: impl Future<Output = T>) -> T {
    let lease = lease_duration(app);
    let mut renew = tokio::time::interval(lease / 4);
    renew.tick().await;
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = renew.tick() => {
                // A long upload is progress, not a hang: keep the watchdog fed too.
                app.heartbeats.beat("submit");
                let until = at(lease);
                if let Err(error) = db::pipeline::extend_lease(&app.db, item_id, ItemState::Submitting, until).await {
                    warn!(item = item_id, error = %error, "could not renew the submission lease");
                }
            }
        }
    }
}

/// Sends the submission: a URL, or the quarantined sample (chunked above the client's
/// threshold, with the submission id recorded before the first chunk).
async fn send(
    app: &App,
    item: &Item,
    key: &str,
    params: &SubmissionParams,
) -> Result<String, SendError> {
    if item.is_url() {
        let url = item.url.as_deref().unwrap_or(&item.name);
        return Ok(app.client.submit_url(url, params).await?);
    }
    let rel = item.sample_path.as_deref().ok_or_else(|| ApiError::Io {
        context: format!("item {} has no stored sample", item.id),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let path = app.store.abs(rel);
    let upload = SampleUpload {
        name: Some(item.name.clone()),
        progress: mid_upload(),
    };
    // The id of a chunked submission is committed before its first chunk: a crash after this
    // leaves an id reconciliation finds and deletes (RELIABILITY case 116).
    let record = |submission_id: String| async move {
        db::items::set_attempt_outcome(
            &app.db,
            key,
            AttemptUpdate::chunked_pending(&submission_id),
        )
        .await?;
        crate::crashpoint::hit("after_chunked_create");
        Ok(())
    };
    app.client
        .submit_sample_recorded(&path, params, &upload, record)
        .await
        .map_err(|error| match error {
            SubmitError::Api(error) => SendError::Api(error),
            // The client deleted the empty submission (or the reconciler will).
            SubmitError::NotRecorded { source, .. } => SendError::Db(source),
        })
}

/// Upload progress for the `mid_upload` crash point: fires once bytes past the first chunk go
/// out, i.e. after the server accepted chunk 1. `None` (no callback at all) in normal builds.
fn mid_upload() -> Option<crate::api::Progress> {
    cfg!(feature = "fault-injection").then(|| -> crate::api::Progress {
        std::sync::Arc::new(|sent| {
            if sent > crate::api::CHUNK_SIZE {
                crate::crashpoint::hit("mid_upload");
            }
        })
    })
}
