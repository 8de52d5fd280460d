//! The checks of what only this process knows: whether the last storage write failed
//! (RELIABILITY.md case 118) and whether the drop-folder watcher is watching or polling.

use super::{HealthReport, Status};
use crate::app::App;
use crate::intake::watcher::{WatchStatus, WatcherLiveness};

/// The last storage write (staging copy, publish, report) failed: storage is not usable,
/// whatever the free space says (RELIABILITY.md case 118).
pub(super) fn check_storage_writes(app: &App, report: &mut HealthReport) {
    match app.store.last_write_failure() {
        Some(failure) => report.push(
            "storage_writes",
            Status::Failed,
            format!(
                "the last write to data_dir failed: {failure}; dropped files stay in the drop \
                 folder and reports are retried until writes succeed again"
            ),
        ),
        None => report.push(
            "storage_writes",
            Status::Ok,
            "no failed write since the last successful one",
        ),
    }
}

pub(super) fn check_watcher(
    app: &App,
    report: &mut HealthReport,
    watcher: Option<&WatcherLiveness>,
) {
    if let Some(watcher) = watcher {
        match watcher.status() {
            WatchStatus::Watching => report.push(
                "watcher",
                Status::Ok,
                format!("watching {}", app.config.drop_dir.display()),
            ),
            WatchStatus::Polling { reason } => report.push(
                "watcher",
                Status::Degraded,
                format!("polling the drop folder: {reason}"),
            ),
        }
    }
}
