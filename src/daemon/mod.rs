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

pub mod db_watch;
pub mod health;
pub mod health_job;
pub mod hold_off;
pub mod lock;
pub mod notify;
mod startup;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use sd_notify::NotifyState;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::JoeClient;
use crate::app::App;
use crate::config::{self, EXIT_CONFIG, LoadOptions};
use crate::db;
use crate::{intake, pipeline, telemetry};

pub use db_watch::{DatabaseReplaced, EXIT_DATABASE_REPLACED};
pub use health::{HealthReport, check, check_once};
pub use health_job::{HealthMemory, HealthScheduler};
pub use lock::{InstanceLock, LockError};
pub use notify::Notifier;

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

/// What `jbxd run` was given on the command line.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    pub load: LoadOptions,
    /// `--new-database`: create a database even though `data_dir` holds samples or reports
    /// (without it, a missing database next to existing storage is exit 78).
    pub new_database: bool,
}

/// Exit code for failures systemd should restart on (I/O errors, a worker crash).
pub const EXIT_FAILURE: u8 = 1;

/// The bootstrap of `jbxd run`: returns the process exit code (0 after a clean stop, 78 for
/// configuration errors, 1 otherwise). Call it from within a multi-threaded tokio runtime,
/// without having installed a tracing subscriber (this installs the configured one).
pub async fn main(opts: DaemonOptions) -> ExitCode {
    disable_core_dumps();
    // First of all: a stop request during start-up must end in a clean stop (run() sees the
    // cancelled token and returns at once), not in death by the signal's default action.
    let cancel = CancellationToken::new();
    if let Err(error) = install_signal_handler(cancel.clone()) {
        eprintln!("jbxd: cannot install the signal handler: {error}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let loaded = match config::load(&opts.load) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("jbxd: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _telemetry = match telemetry::init(&loaded.loaded.config.log) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("jbxd: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match &loaded.loaded.file {
        Some(path) => {
            tracing::info!(config = %path.display(), key_source = %loaded.key_source, "configuration loaded")
        }
        None => {
            tracing::info!(key_source = %loaded.key_source, "configuration loaded (defaults, no file)")
        }
    }
    for warning in &loaded.loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.loaded.config;

    let _lock = match startup::take_lock(&config) {
        Ok(lock) => lock,
        Err((code, message)) => {
            tracing::error!("{message}");
            eprintln!("jbxd: {message}");
            return ExitCode::from(code);
        }
    };

    if !opts.new_database
        && let Err(message) = startup::refuse_new_database_next_to_storage(&config)
    {
        tracing::error!("{message}");
        eprintln!("jbxd: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let db = match startup::open_checked_db(&config.db_path()).await {
        Ok(db) => db,
        Err((code, message)) => {
            tracing::error!(error = %message, "cannot open the database");
            eprintln!("jbxd: {message}");
            return ExitCode::from(code);
        }
    };
    let client = match JoeClient::new(config::client_settings(&config, loaded.api_key)) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the API client");
            eprintln!("jbxd: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let app = App::new(config, db, client);

    match run(app, cancel, RunOptions::default()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) if error.downcast_ref::<DatabaseReplaced>().is_some() => {
            // Logged loudly where it was found; stderr for whoever started us by hand.
            eprintln!("jbxd: {error:#}");
            ExitCode::from(EXIT_DATABASE_REPLACED)
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "daemon failed");
            eprintln!("jbxd: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `prctl(PR_SET_DUMPABLE, 0)`: no core dump can carry the API key or sample bytes, and
/// processes without `CAP_SYS_PTRACE` cannot attach.
pub fn disable_core_dumps() {
    // SAFETY: PR_SET_DUMPABLE takes plain integer arguments and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        eprintln!(
            "jbxd: warning: cannot disable core dumps: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// SIGTERM (systemd) and SIGINT (a terminal) cancel `cancel`; a second signal is logged and
/// otherwise ignored (the stop timeout bounds the shutdown).
pub fn install_signal_handler(cancel: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if cancel.is_cancelled() {
                tracing::info!(signal = name, "already stopping");
            } else {
                tracing::info!(signal = name, "stopping");
                cancel.cancel();
            }
        }
    });
    Ok(())
}

/// The spawned tasks and their names.
struct Workers {
    set: JoinSet<anyhow::Result<()>>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl Workers {
    fn new() -> Self {
        Self {
            set: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    fn name(&self, id: tokio::task::Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("unknown worker")
    }
}

/// Every long-running worker of the daemon, in one place.
fn spawn_workers(workers: &mut Workers, app: &App, cancel: &CancellationToken) {
    // First: while the database is not the file at its path, nothing else may act.
    workers.spawn(db_watch::WORKER, db_watch::run(app.clone(), cancel.clone()));
    workers.spawn(
        "intake scanner",
        intake::scanner::run(app.clone(), cancel.clone()),
    );
    workers.spawn("url intake", intake::urls::run(app.clone(), cancel.clone()));
    workers.spawn(hold_off::WORKER, hold_off::run(app.clone(), cancel.clone()));
    workers.spawn("submit", pipeline::submit::run(app.clone(), cancel.clone()));
    workers.spawn(
        "reconcile",
        pipeline::reconcile::run(app.clone(), cancel.clone()),
    );
    workers.spawn("poll", pipeline::poll::run(app.clone(), cancel.clone()));
    workers.spawn(
        "download",
        pipeline::download::run(app.clone(), cancel.clone()),
    );
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

    if !app.config.drop_dir.exists()
        && let Err(error) = std::fs::create_dir_all(&app.config.drop_dir)
    {
        tracing::warn!(drop_dir = %app.config.drop_dir.display(), %error, "cannot create the drop folder");
    }
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

/// Waits for a stop request (`None`) or the first worker to end, which is always a bug: a
/// worker returning, failing or panicking is fatal (`Some`, naming it), and the daemon stops
/// so systemd restarts it with clean state.
async fn supervise(cancel: &CancellationToken, workers: &mut Workers) -> Option<anyhow::Error> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        joined = workers.set.join_next_with_id() => Some(match joined {
            Some(Ok((id, Ok(())))) => anyhow!("worker `{}` stopped unexpectedly", workers.name(id)),
            // As context, so the cause can still be told apart (`DatabaseReplaced`).
            Some(Ok((id, Err(error)))) => {
                error.context(format!("worker `{}` failed", workers.name(id)))
            }
            Some(Err(error)) => {
                let name = workers.name(error.id());
                // The panic payload is not repeated: it could carry anything a worker held.
                if error.is_panic() {
                    anyhow!("worker `{name}` panicked")
                } else {
                    anyhow!("worker `{name}` was cancelled")
                }
            }
            None => anyhow!("no workers are running"),
        }),
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

/// The one-line summary for `STATUS=`: queue depths, pauses, and what only this process
/// knows (a `Retry-After` hold-off, a failed storage write).
pub async fn status_line(app: &App) -> String {
    status_line_with(app, &HealthMemory::default()).await
}

/// [`status_line`], plus a health run whose results could not be stored.
async fn status_line_with(app: &App, memory: &HealthMemory) -> String {
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
async fn status_loop(
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
async fn watchdog(
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

/// Where the database, lock and storage of a configuration live (for messages and tests).
pub fn lock_path(config: &config::Config) -> PathBuf {
    config.data_dir.join(lock::LOCK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn case_98_a_panicking_worker_is_fatal_and_named() {
        let cancel = CancellationToken::new();
        let mut workers = Workers::new();
        let waiting = cancel.clone();
        workers.spawn("patient", async move {
            waiting.cancelled().await;
            Ok(())
        });
        workers.spawn("faulty", async {
            tokio::task::yield_now().await;
            panic!("injected failure");
        });
        let error = supervise(&cancel, &mut workers).await.expect("fatal");
        assert_eq!(error.to_string(), "worker `faulty` panicked");

        let mut workers = Workers::new();
        workers.spawn("quitter", async { Ok(()) });
        let error = supervise(&cancel, &mut workers).await.expect("fatal");
        assert_eq!(error.to_string(), "worker `quitter` stopped unexpectedly");

        let mut workers = Workers::new();
        workers.spawn("patient", std::future::pending());
        cancel.cancel();
        assert!(supervise(&cancel, &mut workers).await.is_none());
    }
}
