//! The URL-queue worker: turns producers' `url_queue` rows (`status = 'new'`) into items or
//! rejects them with a reason.
//!
//! Each batch (≤ 100 rows) is read, validated in memory, and decided in one write transaction
//! (`db::url_queue::apply`), which re-checks that every row is still `new`: a row the producer
//! changed in between is skipped, never taken twice. Validation is pure, so no transaction is
//! held across anything but SQL.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{floor, params, url_validate};
use crate::app::{App, StepOutcome};
use crate::db::url_queue::{self, Applied, UrlDecision};

/// Rows read and decided per transaction.
pub const BATCH: i64 = 100;

const WORKER: &str = "urls";

/// Polls `url_queue` every `intake.url_poll_ms` (and when `app.wake.urls` fires) until
/// cancelled. Errors are logged and retried with a growing delay; they never end the loop.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    let interval = floor(Duration::from_millis(app.config.intake.url_poll_ms));
    let mut backoff = Duration::ZERO;
    loop {
        app.heartbeats.beat(WORKER);
        let delay = match run_once(&app).await {
            Ok(StepOutcome::Worked(n)) if n as i64 >= BATCH => {
                backoff = Duration::ZERO;
                // A full batch: more rows are probably waiting.
                Duration::ZERO
            }
            Ok(_) => {
                backoff = Duration::ZERO;
                interval
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(interval, interval.max(Duration::from_secs(30)));
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64,
                    "url queue pass failed");
                backoff
            }
        };
        if delay.is_zero() {
            if cancel.is_cancelled() {
                break;
            }
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = app.wake.urls.notified() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
    Ok(())
}

/// One pass: reads up to [`BATCH`] new rows, decides each, applies the decisions in one
/// transaction and wakes the submit worker when something was queued.
pub async fn run_once(app: &App) -> anyhow::Result<StepOutcome> {
    let rows = url_queue::fetch_new(&app.db, BATCH).await?;
    if rows.is_empty() {
        return Ok(StepOutcome::Idle);
    }
    let max_len = app.config.intake.max_url_length;
    let decisions: Vec<(i64, UrlDecision)> = rows
        .iter()
        .map(|row| (row.id, decide(&row.url, row.params.as_deref(), max_len)))
        .collect();
    let window =
        i64::try_from(app.config.dedup.url_window_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
    let applied = url_queue::apply(&app.db, &decisions, window).await?;
    crate::crashpoint::hit("after_url_claim");
    let mut queued = 0;
    for ((queue_id, decision), outcome) in decisions.iter().zip(&applied) {
        match (decision, outcome) {
            (UrlDecision::Accept { url, .. }, Applied::Queued(item)) => {
                queued += 1;
                // `url` is the validated form: no credentials, no control characters.
                tracing::info!(item_id = item, url_queue_id = queue_id, url = %url, "url queued");
            }
            (UrlDecision::Accept { url, .. }, Applied::Duplicate { item, of }) => {
                tracing::info!(item_id = item, url_queue_id = queue_id, duplicate_of = of,
                    url = %url, "url is a duplicate of a recent item");
            }
            (UrlDecision::Reject { reason }, Applied::Rejected) => {
                // The input is not logged: it may hold credentials or control characters.
                tracing::warn!(url_queue_id = queue_id, reason = %reason, "url rejected");
            }
            (_, Applied::Skipped) => {
                tracing::info!(
                    url_queue_id = queue_id,
                    "url_queue row changed by its producer before intake took it; skipped"
                );
            }
            (_, other) => {
                tracing::debug!(url_queue_id = queue_id, outcome = ?other, "url decision applied");
            }
        }
    }
    if queued > 0 {
        app.wake.submit.notify_one();
    }
    Ok(StepOutcome::Worked(rows.len()))
}

/// The decision for one row: a valid URL with valid parameters is accepted (normalised), else
/// rejected with the first failing rule's reason.
pub fn decide(
    value: &Result<String, url_queue::UrlValueError>,
    params_json: Option<&str>,
    max_len: usize,
) -> UrlDecision {
    let url = match url_validate::validate_value(value, max_len) {
        Ok(url) => url,
        Err(e) => {
            return UrlDecision::Reject {
                reason: e.to_string(),
            };
        }
    };
    match params::parse(params_json) {
        Ok(p) => UrlDecision::Accept {
            url,
            params: p.json,
            force: p.force,
        },
        Err(e) => UrlDecision::Reject {
            reason: e.to_string(),
        },
    }
}
