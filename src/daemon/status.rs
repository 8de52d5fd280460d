//! The `STATUS=` line: queue depths, pauses, and what only this process knows, refreshed
//! when something reports a change and at most every interval.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{HealthMemory, Notifier, STATUS_IDLE_INTERVAL};
use crate::app::App;
use crate::db;

/// The one-line summary for `STATUS=`: queue depths, pauses, and what only this process
/// knows (a `Retry-After` hold-off, a failed storage write).
pub async fn status_line(app: &App) -> String {
    status_line_with(app, &HealthMemory::default()).await
}

/// [`status_line`], plus a health run whose results could not be stored.
pub(super) async fn status_line_with(app: &App, memory: &HealthMemory) -> String {
    let mut parts = Vec::new();
    match db::items::counts_by_state(&app.db).await {
        Ok(counts) => {
            let shown: Vec<String> = counts
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(state, n)| format!("{} {n}", state.as_str()))
                .collect();
            if shown.is_empty() {
                parts.push("idle, no items".to_owned());
            } else {
                parts.push(shown.join(", "));
            }
        }
        Err(error) => parts.push(format!("database unavailable: {error}")),
    }
    if let Ok(pauses) = app.pauses().await
        && !pauses.is_empty()
    {
        let reasons: Vec<String> = pauses
            .iter()
            .map(|p| {
                serde_json::to_value(p.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        parts.push(format!("paused: {}", reasons.join(", ")));
    }
    if app.breaker_open() {
        parts.push("Joe Sandbox unreachable: circuit breaker open, probing".to_owned());
    }
    if let Some(hold_off) = app.client.hold_off() {
        parts.push(format!(
            "held off by the server (HTTP {} Retry-After) for {} s more",
            hold_off.status,
            hold_off.remaining.as_secs()
        ));
    }
    if let Some(failure) = app.store.last_write_failure() {
        parts.push(format!("storage write failed: {failure}"));
    }
    if let Some(unrecorded) = memory.unrecorded() {
        parts.push(format!("health check not recorded: {unrecorded}"));
    }
    parts.join("; ")
}

/// Refreshes `STATUS=` when the summary changes; `last` is what READY carried. The line is
/// recomputed at most every `interval`, and only when something reported a change
/// (`app.wake.status`) or [`STATUS_IDLE_INTERVAL`] has passed.
pub(super) async fn status_loop(
    app: App,
    notifier: Notifier,
    interval: Duration,
    mut last: String,
    stop: CancellationToken,
    memory: std::sync::Arc<HealthMemory>,
) {
    let interval = interval.max(Duration::from_millis(100));
    let idle = STATUS_IDLE_INTERVAL.max(interval);
    loop {
        let refreshed = tokio::time::Instant::now();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = app.wake.status.notified() => {}
            _ = tokio::time::sleep_until(refreshed + idle) => {}
        }
        let line = status_line_with(&app, &memory).await;
        if line != last {
            notifier.status(&line);
            last = line;
        }
    }
}
