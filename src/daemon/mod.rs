//! `jbxd run`: the daemon's lifecycle.
//!
//! [`main`] is the bootstrap the CLI calls: no core dumps, configuration and key (exit 78 on
//! error), logging, the single-instance lock (78 when taken), the database (78 when its schema
//! is newer or cannot be migrated, or when it is missing while `data_dir` holds samples or
//! reports and `--new-database` was not given), the API client, the signal handler, then
//! [`run`]. Exit codes: 0 clean stop, 1 failures a restart may cure, 78 what only the operator
//! can fix, [`EXIT_DATABASE_REPLACED`] (75) the database file deleted or replaced while running.
//!
//! [`run`] is the daemon proper, started in-process by tests:
//!
//! 1. storage tree prepared, temporary files of an interrupted run removed;
//! 2. local recovery (`pipeline::recover`: interrupted downloads, orphaned submissions);
//! 3. the drop-folder watch installed, the health job scheduled, every worker spawned;
//! 4. `READY=1` (only now: a file dropped after READY is seen), then `STATUS=` lines while
//!    running and `WATCHDOG=1` pings only while the database takes writes and every worker
//!    shows progress;
//! 5. on cancellation (SIGTERM/SIGINT) or a worker ending (a bug, fatal): `STOPPING=1`, no new
//!    claims, in-flight steps get the stop timeout to finish (anything cut off is recovered at
//!    the next start), the scheduler stops, the WAL is checkpointed, the database closed.
//!    When the worker that ended is the database watch ([`db_watch`]: the file was deleted
//!    or replaced), in-flight steps are cut off at once instead: nothing they do can be
//!    recorded any more.
//!
//! This file holds [`run`] and its options; one file per concern holds the rest:
//! [`bootstrap`] ([`main`]), [`startup`] (lock, database checks), `process` (core dumps,
//! signals), [`key_reload`] (the API key re-read on SIGHUP and after a rejection), `workers` (spawning and supervising the workers), `status` (`STATUS=`),
//! `watchdog` (`WATCHDOG=1`), [`health`] and [`health_job`] (the checks and their schedule).
//! Creating `data_dir` and the drop folder is `storage`'s and `intake`'s
//! ([`Store::create_root`](crate::storage::Store::create_root),
//! [`intake::drop_folder::create_if_missing`]).

pub mod db_watch;
pub mod health;
pub mod health_job;
pub mod hold_off;
pub mod key_reload;
pub mod lock;
pub mod notify;

mod bootstrap;
mod process;
mod startup;
mod status;
mod watchdog;
mod workers;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::{self, EXIT_CONFIG};
use crate::{intake, pipeline};
use status::{status_line_with, status_loop};
use watchdog::watchdog;
use workers::{Workers, spawn_workers, supervise};

pub use bootstrap::{DaemonOptions, main};
pub use process::{disable_core_dumps, install_signal_handler};
pub use status::status_line;

pub use db_watch::{DatabaseReplaced, EXIT_DATABASE_REPLACED};
pub use health::{HealthReport, check, check_once, check_remote};
pub use health_job::{HealthMemory, HealthScheduler};
pub use lock::{InstanceLock, LockError};
pub use notify::Notifier;

/// Exit code for failures systemd should restart on (I/O errors, a worker crash).
pub const EXIT_FAILURE: u8 = 1;

/// How long in-flight steps get to finish after a stop request (below the unit's
/// `TimeoutStopSec=30s`).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the `STATUS=` line is refreshed at most while the daemon works (sent only when
/// it changed).
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// How often it is refreshed while nothing reports a change (`App::wake.status`): the line is
/// recomputed from the database, six queries an idle daemon need not make every 5 s (P6).
/// Changes nobody reports (the circuit breaker opening, a `jbxd retry` from another process)
/// show within this time.
pub const STATUS_IDLE_INTERVAL: Duration = Duration::from_secs(60);

/// How [`run`] talks to systemd and how patient it is.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Time in-flight steps get after a stop request before they are aborted.
    pub stop_timeout: Duration,
    /// systemd notifications ([`Notifier::from_env`] under systemd).
    pub notifier: Notifier,
    /// A worker whose next heartbeat is overdue by more than this (a busy worker silent this
    /// long, a sleeping one not back this long after its wake-up time) counts as stalled and
    /// withholds the watchdog ping; `None` = the default (the longer of 10 minutes and three
    /// scan intervals or request timeouts: a long upload must not look like a hang).
    pub stall_after: Option<Duration>,
    /// The shortest time between two refreshes of the `STATUS=` line.
    pub status_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            notifier: Notifier::from_env(),
            stall_after: None,
            status_interval: DEFAULT_STATUS_INTERVAL,
        }
    }
}

impl RunOptions {
    fn stall_after(&self, app: &App) -> Duration {
        self.stall_after.unwrap_or_else(|| {
            let c = &app.config;
            Duration::from_secs(600)
                .max(Duration::from_secs(
                    c.intake.scan_interval_secs.saturating_mul(3),
                ))
                .max(Duration::from_secs(
                    c.api.request_timeout_secs.saturating_mul(3),
                ))
        })
    }
}

/// Runs the daemon until `cancel` fires (Ok) or a worker ends or panics (Err naming it).
pub async fn run(app: App, cancel: CancellationToken, opts: RunOptions) -> anyhow::Result<()> {
    let notifier = opts.notifier.clone();
    notifier.status("starting: preparing storage");
    prepare_storage(&app).await?;

    notifier.status("starting: recovering interrupted work");
    pipeline::recover(&app)
        .await
        .context("start-up recovery failed")?;

    intake::drop_folder::create_if_missing(&app.config.drop_dir);
    let watcher = intake::watcher::Watcher::start(&app);

    // Workers stop on this token; the caller's token only starts the stop.
    let stop = CancellationToken::new();
    let health = HealthScheduler::start(app.clone(), Some(watcher.liveness()), stop.clone())
        .await
        .context("cannot start the health check")?;

    let mut workers = Workers::new();
    spawn_workers(&mut workers, &app, &stop);

    let memory = health.memory();
    let status = status_line_with(&app, &memory).await;
    notifier.notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    {
        let (app, notifier, stop_token) = (app.clone(), notifier.clone(), stop.clone());
        let interval = opts.status_interval;
        workers.spawn("status", async move {
            status_loop(app, notifier, interval, status, stop_token, memory).await;
            Ok(())
        });
    }
    {
        let (app, stop_token) = (app.clone(), stop.clone());
        workers.spawn("key reload", key_reload::on_hangup(app, stop_token));
    }
    // Pings start after READY=1: systemd ignores earlier ones, and they would claim progress
    // before there was any.
    if let Some(interval) = notifier.watchdog() {
        let (app, notifier, stop_token) = (app.clone(), notifier.clone(), stop.clone());
        let stall_after = opts.stall_after(&app);
        workers.spawn("watchdog", async move {
            watchdog(app, notifier, interval, stall_after, stop_token).await;
            Ok(())
        });
    }
    tracing::info!(drop_dir = %app.config.drop_dir.display(), data_dir = %app.config.data_dir.display(), "ready");

    let fatal = supervise(&cancel, &mut workers).await;

    let replaced = fatal
        .as_ref()
        .is_some_and(|e| e.downcast_ref::<DatabaseReplaced>().is_some());
    notifier.notify(&[
        NotifyState::Stopping,
        NotifyState::Status(if replaced {
            "stopping: the database file was deleted or replaced"
        } else {
            "stopping"
        }),
    ]);
    match &fatal {
        None => tracing::info!(
            timeout_secs = opts.stop_timeout.as_secs_f64(),
            "stopping: letting in-flight work finish"
        ),
        Some(error) => {
            tracing::error!(error = %format!("{error:#}"), "stopping after a fatal worker failure")
        }
    }
    stop.cancel();
    if replaced {
        // Nothing an in-flight step does from now on can be recorded: cut it off rather than
        // let it make requests or open connections to whatever file is at the path now.
        workers.set.abort_all();
    }
    crate::crashpoint::hit("during_shutdown");

    let started = tokio::time::Instant::now();
    let drained = tokio::time::timeout(opts.stop_timeout, async {
        while let Some(joined) = workers.set.join_next_with_id().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((id, Err(error))) => {
                    tracing::warn!(worker = workers.name(id), error = %format!("{error:#}"), "worker failed while stopping")
                }
                Err(error) if error.is_panic() => {
                    tracing::error!(worker = workers.name(error.id()), "worker panicked while stopping")
                }
                Err(_) => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "in-flight work did not finish within the stop timeout; cut off (it is recovered at the next start)"
        );
        workers.set.abort_all();
        while workers.set.join_next().await.is_some() {}
    }
    let left = opts
        .stop_timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    health.shutdown(left).await;
    drop(watcher);

    // After a swap, `close` checkpoints through a connection to the old file only.
    if !replaced && let Err(error) = app.db.checkpoint().await {
        tracing::warn!(%error, "WAL checkpoint at shutdown failed");
    }
    app.db.close().await;
    match fatal {
        None => Ok(()),
        Some(error) => Err(error),
    }
}

async fn prepare_storage(app: &App) -> anyhow::Result<()> {
    let store = app.store.clone();
    let removed = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
        store.prepare()?;
        store.remove_temporaries()
    })
    .await
    .context("storage preparation panicked")?
    .with_context(|| {
        format!(
            "cannot prepare the storage tree in {}",
            app.config.data_dir.display()
        )
    })?;
    if removed > 0 {
        tracing::info!(
            removed,
            "removed temporary files left by an interrupted run"
        );
    }
    Ok(())
}

/// Where the database, lock and storage of a configuration live (for messages and tests).
pub fn lock_path(config: &config::Config) -> PathBuf {
    config.data_dir.join(lock::LOCK_FILE)
}
