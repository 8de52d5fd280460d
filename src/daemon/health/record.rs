//! The bookkeeping of results: every check's result stored in the `health` table (what
//! `jbxd status` shows), one log line per change of a check's status, not per run.

use super::{HealthReport, Status};
use crate::app::App;
use crate::db;

/// Stores every result, logging each check whose status changed since the stored one.
/// Returns the first storing error.
pub(super) async fn store(app: &App, report: &HealthReport) -> Result<(), String> {
    let mut first_error = None;
    let previous = db::health::all(&app.db).await.unwrap_or_default();
    for check in &report.checks {
        let before = previous.iter().find(|row| row.name == check.name);
        let changed = before.is_none_or(|row| row.status != check.status.as_str());
        if changed {
            let was = before.map_or("unknown", |row| row.status.as_str());
            match check.status {
                Status::Ok => {
                    tracing::info!(check = check.name, was, detail = %check.detail, "health: ok")
                }
                Status::Degraded => {
                    tracing::warn!(check = check.name, was, detail = %check.detail, "health: degraded")
                }
                Status::Failed => {
                    tracing::error!(check = check.name, was, detail = %check.detail, "health: failed")
                }
            }
        }
        let stored =
            db::health::record(&app.db, check.name, check.status.as_str(), &check.detail).await;
        // When the database is the problem, its check says so; one line per change.
        if let Err(error) = stored {
            if changed {
                tracing::error!(%error, check = check.name, "cannot store the health result");
            }
            first_error.get_or_insert_with(|| format!("cannot store the health results: {error}"));
        }
    }
    match first_error {
        None => Ok(()),
        Some(error) => Err(error),
    }
}
