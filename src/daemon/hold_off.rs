//! The `Retry-After` hold-off, recorded for `jbxd status` (RELIABILITY.md case 118).
//!
//! While the server's `Retry-After` holds every request back (`api::throttle`), workers and
//! the health check's server part wait, and nothing in the database moved: `jbxd status`, a
//! separate process, said "ok". This worker writes the hold-off (until when, the HTTP status
//! that asked for it) to `daemon_state` when it starts or is extended, and removes it when it
//! is over. It sleeps on the client's change notification: no wake-ups while idle.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::db::{self, health::HoldOffRecord};

/// The worker's name (the supervisor's messages).
pub const WORKER: &str = "hold-off recorder";

/// Runs until `stop` fires.
pub async fn run(app: App, stop: CancellationToken) -> anyhow::Result<()> {
    let mut changes = app.client.hold_off_changes();
    // A record left by a daemon that died during a hold-off: over by now, or not ours.
    let mut recorded = true;
    loop {
        changes.mark_unchanged();
        match app.client.hold_off() {
            Some(hold_off) => {
                let until = chrono::Utc::now()
                    + chrono::Duration::from_std(hold_off.remaining).unwrap_or_default();
                let record = HoldOffRecord {
                    until: db::time_text(until),
                    status: hold_off.status,
                    recorded_at: db::now_text(),
                };
                match db::health::set_fact(&app.db, db::health::HOLD_OFF_KEY, &record).await {
                    Ok(()) => recorded = true,
                    Err(error) => tracing::warn!(%error, "cannot record the Retry-After hold-off"),
                }
                app.wake.status.notify_one();
                // Its end, or an extension, whichever comes first. A millisecond past the end,
                // so the hold-off is over when we look again.
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(hold_off.remaining + Duration::from_millis(1)) => {}
                }
            }
            None => {
                if recorded {
                    match db::health::clear_state(&app.db, db::health::HOLD_OFF_KEY).await {
                        Ok(()) => {
                            recorded = false;
                            app.wake.status.notify_one();
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot remove the ended Retry-After hold-off")
                        }
                    }
                }
                // Retried at the next change when it could not be removed: status ignores a
                // hold-off whose end has passed anyway.
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    changed = changes.changed() => {
                        // The client is gone (never while the daemon runs): nothing to watch.
                        if changed.is_err() {
                            stop.cancelled().await;
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}
