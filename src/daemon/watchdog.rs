//! The systemd watchdog: pings only while the database takes writes and every worker shows
//! progress, so systemd restarts a hung daemon.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::Notifier;
use crate::app::App;

/// Why a watchdog ping is withheld now, if it is: (what stalls, a readable message). The
/// first part stays the same while the same thing stalls, so it is logged once.
async fn stall_reason(
    app: &App,
    probe_timeout: Duration,
    stall_after: Duration,
) -> Option<(String, String)> {
    match tokio::time::timeout(probe_timeout, app.db.write_probe()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            return Some((
                "database".into(),
                format!("database write probe failed: {error}"),
            ));
        }
        Err(_) => {
            return Some((
                "database".into(),
                format!(
                    "database write lock not obtained within {} ms",
                    probe_timeout.as_millis()
                ),
            ));
        }
    }
    let (worker, pulse) = app
        .heartbeats
        .stalled(std::time::Instant::now(), stall_after)?;
    let silent = pulse.at.elapsed().as_secs();
    let message = if pulse.sleeping() {
        format!(
            "worker `{worker}` went to sleep {silent} s ago and is {} s past its wake-up time",
            pulse.due.elapsed().as_secs()
        )
    } else {
        format!("worker `{worker}` has shown no progress for {silent} s")
    };
    Some((format!("worker {worker}"), message))
}

/// Pings systemd at half its watchdog interval while the database takes writes and no worker
/// is overdue (a sleeping worker is alive until its wake-up time); withholds pings (and says
/// so once) while anything stalls, so systemd kills and restarts a hung daemon instead of a
/// timer keeping it "alive".
pub(super) async fn watchdog(
    app: App,
    notifier: Notifier,
    interval: Duration,
    stall_after: Duration,
    stop: CancellationToken,
) {
    let period = (interval / 2).max(Duration::from_millis(50));
    let probe_timeout = period.min(Duration::from_secs(5));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut withheld: Option<String> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let reason = tokio::select! {
            _ = stop.cancelled() => return,
            reason = stall_reason(&app, probe_timeout, stall_after) => reason,
        };
        match reason {
            None => {
                if withheld.take().is_some() {
                    tracing::info!("progress again; watchdog pings resume");
                }
                notifier.notify(&[NotifyState::Watchdog]);
            }
            Some((what, reason)) => {
                if withheld.as_deref() != Some(what.as_str()) {
                    tracing::error!(%reason, "stalled; withholding the watchdog ping");
                }
                withheld = Some(what);
            }
        }
    }
}
