//! The index worker: indexes analyses whose reports are all settled and one of which is
//! `pending` (a report stored, or stored again, since the last indexing; every stored report
//! after the 0003 migration). Woken by the download worker when a report settles, and at start
//! it finds whatever a previous run left pending, since the state is in SQLite.
//!
//! Indexing comes after an item is `done` and apart from it: a report the index cannot read
//! is recorded on its row (`reports.index_state = 'failed'`, `index_error`) and in `jbxd
//! status`, and the worker goes on with the next analysis.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ingest::{Extract, index_analysis};
use crate::api::Secret;
use crate::app::{App, StepOutcome};
use crate::db::indicators::{self, Replaced};
use crate::worker::{self, Turn, Worker};

/// The worker's name in heartbeats and logs.
pub const WORKER: &str = "index";

/// Analyses indexed per step.
const BATCH: i64 = 16;

/// How long an idle worker sleeps when no wake-up comes (the download worker wakes it).
const IDLE: Duration = Duration::from_secs(60);

/// Paused (the disk is low): ask again after this.
const PAUSED: Duration = Duration::from_secs(5);

const STEP_BACKOFF: worker::Backoff = worker::Backoff {
    first: Duration::from_secs(2),
    cap: Duration::from_secs(60),
};

/// Runs the index worker until `cancel` fires. `password` (the configured report password)
/// opens the reports of encrypted analyses; without it such reports are recorded as failed
/// with the opener's reason.
pub async fn run(
    app: App,
    extract: Extract,
    password: Option<Secret>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let worker = Worker {
        name: WORKER,
        heartbeats: &app.heartbeats,
        status: &app.wake.status,
        cancel: &cancel,
        backoff: STEP_BACKOFF,
    };
    worker::run(
        worker,
        || async {
            let outcome =
                run_once(&app, extract, password.as_ref().map(Secret::expose_bytes)).await?;
            let next = match outcome {
                StepOutcome::Worked(_) => None,
                StepOutcome::Idle => Some(IDLE),
                StepOutcome::Paused => Some(PAUSED),
            };
            Ok(Turn { outcome, next })
        },
        |_| worker::notified(Some(&app.wake.index)),
    )
    .await
}

/// One step: indexes up to [`BATCH`] due analyses, one transaction each.
pub async fn run_once(
    app: &App,
    extract: Extract,
    password: Option<&[u8]>,
) -> anyhow::Result<StepOutcome> {
    if !app.may_write_locally().await? {
        return Ok(StepOutcome::Paused);
    }
    let due = indicators::due_analyses(&app.db, BATCH).await?;
    let mut written = 0;
    for webid in due {
        let indexed =
            index_analysis(&app.db, &app.config.data_dir, &webid, password, extract).await?;
        for (report, reason) in &indexed.failed {
            warn!(%webid, %report, %reason, "report not indexed");
        }
        match indexed.outcome {
            Replaced::Written => {
                written += 1;
                info!(%webid, from = ?indexed.used, skipped = indexed.skipped, "analysis indexed");
            }
            // Stored again meanwhile: the new file is pending and taken on a later step.
            Replaced::ReportsChanged => info!(%webid, "reports changed while indexing; later"),
        }
    }
    Ok(if written == 0 {
        StepOutcome::Idle
    } else {
        StepOutcome::Worked(written)
    })
}
