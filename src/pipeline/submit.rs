//! The submit worker: `queued` → `submitting` → `submitted` (reliability.md §2.8).
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
use super::schedule::{PollPlan, jittered, random_unit};
use super::{all_done, at, backoff, grace, poll::analysis_record};
use crate::api::types::Analysis;
use crate::api::{ApiError, SampleUpload, SearchQuery, SubmissionParams, SubmitError};
use crate::app::{App, StepOutcome};
use crate::config::SubmissionConfig;
use crate::db::{self, DbError, Item, ItemState};

/// How many hits of the sha256 lookup are examined at most.
const MAX_LOOKUP_HITS: usize = 20;

/// Runs the submit worker until `cancel` fires.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    super::worker_loop(
        &app,
        &cancel,
        "submit",
        Some(&app.wake.submit),
        super::DueFrom::Items(db::ItemState::Queued),
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

/// The submission defaults of the configuration.
pub fn default_params(config: &SubmissionConfig) -> anyhow::Result<SubmissionParams> {
    let mut params = SubmissionParams::new();
    params.systems = config.systems.clone();
    params.tags = config.tags.clone();
    for (name, value) in &config.params {
        params
            .set(name, value)
            .with_context(|| format!("submission.params.{name}"))?;
    }
    Ok(params)
}

/// The parameters of one attempt: the item's own `params` (a JSON object), the configured
/// defaults under them, and the comments carrying the attempt key. `Err` is the reason to
/// reject the item.
pub fn attempt_params(
    item_params: Option<&str>,
    defaults: &SubmissionParams,
    config: &SubmissionConfig,
    attempt_key: &str,
) -> Result<SubmissionParams, String> {
    // The per-item JSON has one reader: intake validated it with the same function when the
    // item was created.
    let mut params = crate::intake::params::parse(item_params)
        .map_err(|e| e.to_string())?
        .params;
    params.merge_defaults(defaults);
    let user = params
        .comments()
        .map(str::to_owned)
        .or_else(|| config.comments.clone())
        .filter(|c| !c.trim().is_empty());
    let comments = match user {
        Some(user) => format!("{user} jbxd:{attempt_key}"),
        None => format!("jbxd:{attempt_key}"),
    };
    params.set_comments(&comments);
    Ok(params)
}

/// The first poll of a fresh submission, jittered: 0.9 × its analysis time when it has one,
/// else a quarter of `poll.expected_analysis_secs` (see `schedule::PollPlan`).
pub(crate) fn first_poll_at(app: &App, item: &Item) -> i64 {
    let plan = PollPlan::new(&app.config.poll, analysis_time(app, item));
    at(jittered(plan.first_delay(), random_unit()))
}

/// The analysis time the item was submitted with: its own parameter, else the configured
/// default's; `None` when neither sets a valid one.
pub(crate) fn analysis_time(app: &App, item: &Item) -> Option<u64> {
    let own = crate::intake::params::parse(item.params.as_deref())
        .ok()
        .and_then(|p| p.params.analysis_time());
    own.or_else(|| default_params(&app.config.submission).ok()?.analysis_time())
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
            db::items::set_attempt_outcome(&app.db, &key, "refused", None, Some(&reason)).await?;
            db::items::reject(&app.db, item.id, &reason).await?;
            info!(item = item.id, %reason, "item rejected");
            return Ok(());
        }
    };

    if !item.is_url() && app.config.dedup.server_lookup && !item.force {
        match with_lease(app, item.id, lookup_on_server(app, &item)).await {
            Ok(Some(analysis)) => return adopt_server_analysis(app, &item, &key, &analysis).await,
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
            db::items::mark_submitted(
                &app.db,
                item.id,
                Some(&key),
                Some(&submission_id),
                first_poll_at(app, &item),
                None,
            )
            .await?;
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
        db::items::set_attempt_outcome(&app.db, key, "chunked_pending", None, Some(&detail))
            .await?;
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
                "abandoned"
            } else {
                "refused"
            };
            db::items::set_attempt_outcome(&app.db, key, outcome, None, Some(&detail)).await?;
            give_up_or_requeue(app, item, &detail, after).await?;
        }
        Action::Reject { reason } => {
            db::items::set_attempt_outcome(&app.db, key, "refused", None, Some(&detail)).await?;
            db::items::reject(&app.db, item.id, &reason).await?;
            info!(item = item.id, %reason, "item rejected by the server");
        }
        Action::Fatal { reason } => {
            db::items::set_attempt_outcome(&app.db, key, "refused", None, Some(&detail)).await?;
            db::items::fail(&app.db, item.id, &reason).await?;
            warn!(item = item.id, %reason, "item failed");
        }
        Action::Pause { reason, detail } => {
            pause_and_requeue(app, item, key, reason, &detail).await?;
        }
    }
    Ok(())
}

/// Requeues after a retryable failure (counting the attempt), or fails the item once
/// `pipeline.max_attempts` are used up.
pub(crate) async fn give_up_or_requeue(
    app: &App,
    item: &Item,
    detail: &str,
    after: Duration,
) -> anyhow::Result<()> {
    if app.breaker_open() {
        // The server is unreachable (circuit breaker): not the item's fault, no attempt used.
        db::items::requeue(&app.db, item.id, Some(detail), at(after), false).await?;
        info!(item = item.id, error = %detail, "server unreachable; requeued without using an attempt");
        return Ok(());
    }
    let used = item.attempts.max(0) as u32 + 1;
    if used >= app.config.pipeline.max_attempts.max(1) {
        let reason = format!("gave up after {used} attempts: {detail}");
        db::items::fail(&app.db, item.id, &reason).await?;
        warn!(item = item.id, %reason, "item failed");
    } else {
        db::items::requeue(&app.db, item.id, Some(detail), at(after), true).await?;
        info!(item = item.id, attempts = used, retry_in = ?after, error = %detail, "submission failed; will retry");
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
    db::items::set_attempt_outcome(&app.db, key, "refused", None, Some(detail)).await?;
    app.pause(reason, detail).await?;
    db::items::requeue(&app.db, item.id, Some(detail), db::now_ms(), false).await?;
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
        db::items::set_attempt_outcome(&app.db, key, "chunked_pending", Some(&submission_id), None)
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

/// Looks the item's sha256 up on the server: the newest finished analysis of exactly that
/// hash (checked again here: search may match loosely) whose runs did not all fail, and which
/// is not already recorded for another item.
async fn lookup_on_server(app: &App, item: &Item) -> Result<Option<Analysis>, ApiError> {
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
async fn adopt_server_analysis(
    app: &App,
    item: &Item,
    key: &str,
    analysis: &Analysis,
) -> anyhow::Result<()> {
    let note = format!("reused analysis {} from the server", analysis.webid);
    db::analyses::upsert_many(&app.db, Some(item.id), &[analysis_record(analysis, None)]).await?;
    db::items::set_attempt_outcome(
        &app.db,
        key,
        "abandoned",
        None,
        Some(&format!("not sent: {note}")),
    )
    .await?;
    db::items::mark_submitted(&app.db, item.id, None, None, db::now_ms(), Some(&note)).await?;
    info!(item = item.id, webid = %analysis.webid, "{note}");
    app.wake.poll.notify_one();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SubmissionConfig {
        SubmissionConfig {
            systems: vec!["w10x64".into()],
            tags: vec!["jbxd".into()],
            comments: Some("from the drop folder".into()),
            params: [("internet-access".to_owned(), "1".to_owned())].into(),
        }
    }

    fn form(params: &SubmissionParams) -> Vec<(String, String)> {
        params.to_form()
    }

    fn get<'a>(form: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        form.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn defaults_fill_in_what_the_item_leaves_unset_and_the_key_ends_the_comments() {
        let config = config();
        let defaults = default_params(&config).unwrap();
        let p = attempt_params(None, &defaults, &config, "abc-1").unwrap();
        let f = form(&p);
        assert_eq!(get(&f, "systems[]"), ["w10x64"]);
        assert_eq!(get(&f, "tags[]"), ["jbxd"]);
        assert_eq!(get(&f, "internet-access"), ["1"]);
        assert_eq!(get(&f, "comments"), ["from the drop folder jbxd:abc-1"]);

        let own = r#"{"internet-access": false, "systems": ["w7", "w11"], "comments": "mine",
                      "analysis-time": 120}"#;
        let p = attempt_params(Some(own), &defaults, &config, "abc-2").unwrap();
        let f = form(&p);
        assert_eq!(get(&f, "systems[]"), ["w7", "w11"]);
        assert_eq!(get(&f, "internet-access"), ["0"]);
        assert_eq!(get(&f, "analysis-time"), ["120"]);
        assert_eq!(get(&f, "comments"), ["mine jbxd:abc-2"]);
    }

    #[test]
    fn without_any_user_comment_the_comments_are_just_the_key() {
        let config = SubmissionConfig::default();
        let p = attempt_params(Some("{}"), &SubmissionParams::new(), &config, "k-3").unwrap();
        assert_eq!(get(&form(&p), "comments"), ["jbxd:k-3"]);
    }

    #[test]
    fn bad_item_parameters_are_a_reason_to_reject() {
        let config = SubmissionConfig::default();
        let none = SubmissionParams::new();
        for bad in [
            "not json",
            "[1, 2]",
            r#"{"analysis-time": "long"}"#,
            r#"{"apikey": "x"}"#,
            r#"{"tags": [{"a": 1}]}"#,
        ] {
            let err = attempt_params(Some(bad), &none, &config, "k-1").unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }
}
