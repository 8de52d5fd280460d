//! The periodic health check (reliability.md §2.4): server online, API key valid, quota left,
//! database writable, free disk, watcher alive. Each result is stored in the `health` table
//! (`jbxd status` shows it) and drives the global pause: a cause seen puts its pause in force,
//! a cause seen cleared lifts it, which is the only way pauses end.
//!
//! The check runs on `health.schedule`, a tokio-cron-scheduler job driven by one task that
//! sleeps until the job's next tick ([`HealthScheduler`]). Runs never overlap (a tick that
//! comes while a run is still going is skipped), a run stops at shutdown (the task selects on
//! the cancellation token), and the task is stopped from the daemon's one shutdown path. One log line per change of a check's status, not per run.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tokio_cron_scheduler::Job;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, ApiErrorKind};
use crate::app::{App, PauseReason};
use crate::db;
use crate::intake::watcher::{WatchStatus, WatcherLiveness};

/// How long the database write probe may take before the database counts as unwritable.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The state of one check, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Working with a handicap (maintenance, disk low, quota used up, polling).
    Degraded,
    /// No progress possible (invalid key, database unwritable).
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Failed => "failed",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

/// The result of one health run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    pub checks: Vec<Check>,
}

impl HealthReport {
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The worst status of all checks.
    pub fn overall(&self) -> Status {
        let mut worst = Status::Ok;
        for check in &self.checks {
            match check.status {
                Status::Failed => return Status::Failed,
                Status::Degraded => worst = Status::Degraded,
                Status::Ok => {}
            }
        }
        worst
    }

    fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }
}

/// One health run without a watcher to ask (tests, or a process without intake).
pub async fn check_once(app: &App) -> HealthReport {
    check(app, None).await
}

/// One health run: every check, results stored, pauses put in force or lifted.
pub async fn check(app: &App, watcher: Option<&WatcherLiveness>) -> HealthReport {
    let mut report = HealthReport::default();
    let online = check_server(app, &mut report).await;
    if online {
        check_account(app, &mut report).await;
    }
    check_terms(app, &mut report).await;
    check_db(app, &mut report).await;
    check_disk(app, &mut report).await;
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
    store(app, &report).await;
    report
}

async fn set_pause(app: &App, reason: PauseReason, on: bool, detail: &str) {
    let result = if on {
        app.pause(reason, detail).await
    } else {
        app.resume(reason).await
    };
    if let Err(error) = result {
        tracing::error!(%error, ?reason, "cannot record the pause state");
    }
}

/// `server/online`. Returns whether the server answered and is online (the account checks
/// only make sense then).
async fn check_server(app: &App, report: &mut HealthReport) -> bool {
    // While the breaker is open this is one of its probes: a single request, no retries.
    let online = if app.breaker_open() {
        app.client.probe_online().await
    } else {
        app.client.server_online().await
    };
    match online {
        Ok(true) => {
            set_pause(app, PauseReason::Maintenance, false, "").await;
            report.push("server", Status::Ok, "online");
            true
        }
        Ok(false) => {
            maintenance(app, report, "server/online reports maintenance").await;
            false
        }
        Err(e) if e.kind() == Some(ApiErrorKind::ServerOffline) => {
            maintenance(app, report, &e.server_message()).await;
            false
        }
        // server/online needs the key too; the account check says what is wrong with it.
        Err(e) if e.kind() == Some(ApiErrorKind::InvalidApiKey) => {
            set_pause(app, PauseReason::Maintenance, false, "").await;
            report.push("server", Status::Ok, "reachable");
            true
        }
        Err(e) => {
            // Unreachable or erroring: the workers' own retries cope; nothing to pause.
            report.push("server", Status::Degraded, format!("unreachable: {e}"));
            false
        }
    }
}

async fn maintenance(app: &App, report: &mut HealthReport, detail: &str) {
    set_pause(app, PauseReason::Maintenance, true, detail).await;
    report.push("server", Status::Degraded, format!("maintenance: {detail}"));
}

fn is_key_refusal(e: &ApiError) -> bool {
    e.kind() == Some(ApiErrorKind::InvalidApiKey)
}

/// The key (and, on the cloud, the quota): `account/info`, or `server/info` on on-premise
/// servers that do not have `account/info`.
async fn check_account(app: &App, report: &mut HealthReport) {
    match app.client.account_info().await {
        Ok(info) => {
            key_valid(app, report).await;
            let mut exhausted = None;
            let mut parts = Vec::new();
            if let Some(quotas) = &info.quota {
                for (period, quota) in [("daily", &quotas.daily), ("monthly", &quotas.monthly)] {
                    let Some(quota) = quota else { continue };
                    match (quota.remaining, quota.limit) {
                        (Some(remaining), limit) => {
                            parts.push(format!("{period} {remaining} left"));
                            if remaining <= 0 && exhausted.is_none() {
                                exhausted = Some(format!(
                                    "{period} quota used up (limit {})",
                                    limit.map_or("?".into(), |l| l.to_string())
                                ));
                            }
                        }
                        (None, _) => parts.push(format!("{period} unlimited")),
                    }
                }
            }
            match exhausted {
                Some(detail) => {
                    set_pause(app, PauseReason::QuotaExceeded, true, &detail).await;
                    report.push("quota", Status::Degraded, detail);
                }
                None => {
                    set_pause(app, PauseReason::QuotaExceeded, false, "").await;
                    let detail = if parts.is_empty() {
                        "no quota reported".to_owned()
                    } else {
                        parts.join(", ")
                    };
                    report.push("quota", Status::Ok, detail);
                }
            }
        }
        Err(e) if is_key_refusal(&e) => key_invalid(app, report, &e).await,
        Err(e)
            if matches!(
                e.kind(),
                Some(ApiErrorKind::UnknownEndpoint | ApiErrorKind::PermissionDenied)
            ) =>
        {
            // On-premise: no account/info and no quota; server/info proves the key.
            match app.client.server_info().await {
                Ok(_) => {
                    key_valid(app, report).await;
                    set_pause(app, PauseReason::QuotaExceeded, false, "").await;
                    report.push("quota", Status::Ok, "not applicable (on-premise)");
                }
                Err(e) if is_key_refusal(&e) => key_invalid(app, report, &e).await,
                Err(e) => report.push("api_key", Status::Degraded, format!("cannot check: {e}")),
            }
        }
        Err(e) => report.push("api_key", Status::Degraded, format!("cannot check: {e}")),
    }
}

async fn key_valid(app: &App, report: &mut HealthReport) {
    set_pause(app, PauseReason::InvalidApiKey, false, "").await;
    report.push("api_key", Status::Ok, "accepted");
}

async fn key_invalid(app: &App, report: &mut HealthReport, e: &ApiError) {
    let detail = format!("refused: {}", e.server_message());
    set_pause(app, PauseReason::InvalidApiKey, true, &detail).await;
    report.push("api_key", Status::Failed, detail);
}

/// Acceptance of the terms cannot be tested without submitting; the pause (set by a refused
/// submission) is lifted once `api.accept_tac` is on.
async fn check_terms(app: &App, report: &mut HealthReport) {
    let paused = app
        .pauses()
        .await
        .map(|p| p.iter().any(|p| p.reason == PauseReason::TermsNotAccepted))
        .unwrap_or(false);
    if app.config.api.accept_tac {
        if paused {
            set_pause(app, PauseReason::TermsNotAccepted, false, "").await;
        }
        report.push("terms", Status::Ok, "accepted (api.accept_tac = true)");
    } else if paused {
        report.push(
            "terms",
            Status::Failed,
            "the server requires accepting the terms: set api.accept_tac = true",
        );
    } else {
        report.push(
            "terms",
            Status::Ok,
            "not accepted (only the cloud requires it)",
        );
    }
}

async fn check_db(app: &App, report: &mut HealthReport) {
    // SQLite keeps writing to a deleted file's inode without complaint: look at the path
    // (catalog 29), or the probe below would say all is well while nothing is kept.
    let db = app.db.clone();
    if tokio::task::spawn_blocking(move || db.file_replaced())
        .await
        .unwrap_or(true)
    {
        report.push(
            "database",
            Status::Failed,
            format!(
                "the database file {} is gone or was replaced while jbxd runs; stop jbxd \
                 and restore it",
                app.db.path().display()
            ),
        );
        return;
    }
    match tokio::time::timeout(DB_PROBE_TIMEOUT, app.db.write_probe()).await {
        Ok(Ok(took)) => report.push(
            "database",
            if took > Duration::from_secs(1) {
                Status::Degraded
            } else {
                Status::Ok
            },
            format!("writable (write lock in {} ms)", took.as_millis()),
        ),
        Ok(Err(e)) => report.push("database", Status::Failed, format!("not writable: {e}")),
        Err(_) => report.push(
            "database",
            Status::Failed,
            format!(
                "write lock not obtained within {} s",
                DB_PROBE_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// Free space for unprivileged users in the filesystem of `path`, in bytes.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    // SAFETY: statvfs writes only into the zeroed struct we pass; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

async fn check_disk(app: &App, report: &mut HealthReport) {
    let dir = app.config.data_dir.clone();
    let min = app.config.health.min_free_disk_mb;
    let free = tokio::task::spawn_blocking(move || free_bytes(&dir))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match free {
        Ok(bytes) => {
            let mb = bytes / (1024 * 1024);
            if mb < min {
                let detail = format!("{mb} MiB free in data_dir, below {min} MiB");
                set_pause(app, PauseReason::DiskLow, true, &detail).await;
                report.push("disk", Status::Degraded, detail);
            } else {
                set_pause(app, PauseReason::DiskLow, false, "").await;
                report.push("disk", Status::Ok, format!("{mb} MiB free in data_dir"));
            }
        }
        Err(e) => report.push(
            "disk",
            Status::Failed,
            format!(
                "cannot stat data_dir {}: {e}",
                app.config.data_dir.display()
            ),
        ),
    }
}

/// Stores every result, logging each check whose status changed since the stored one.
async fn store(app: &App, report: &HealthReport) {
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
        if let Err(error) = stored
            && changed
        {
            tracing::error!(%error, check = check.name, "cannot store the health result");
        }
    }
}

/// The running health job.
pub struct HealthScheduler {
    task: tokio::task::JoinHandle<()>,
}

impl HealthScheduler {
    /// Starts the job on `health.schedule` (validated at load); the first check runs at once,
    /// so pauses are right soon after start.
    pub async fn start(
        app: App,
        watcher: Option<WatcherLiveness>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        let schedule = app.config.health.schedule.clone();
        let schedule = Schedule::new(&schedule)
            .with_context(|| format!("health.schedule `{schedule}` is not a valid schedule"))?;
        let task = tokio::spawn(run_on_schedule(schedule, app, watcher, cancel));
        Ok(Self { task })
    }

    /// Stops the job and waits (up to `timeout`) for a running check to end; running checks
    /// stop at their next await once the cancellation token fires.
    pub async fn shutdown(mut self, timeout: Duration) {
        if tokio::time::timeout(timeout, &mut self.task).await.is_err() {
            tracing::warn!("a health check was still running at shutdown");
            self.task.abort();
        }
    }
}

/// Runs a check now, then at every tick of `schedule` until it has no next tick. Checks never
/// overlap: a tick that comes while a check is still running (slow server) is skipped.
async fn run_on_schedule(
    mut schedule: Schedule,
    app: App,
    watcher: Option<WatcherLiveness>,
    cancel: CancellationToken,
) {
    loop {
        run_one(&app, watcher.as_ref(), &cancel).await;
        // Ticks that passed while the check ran are skipped, not caught up.
        if schedule.due() {
            tracing::debug!("health check still running at its next tick; that tick is skipped");
        }
        loop {
            let Some(wait) = schedule.until_next() else {
                tracing::warn!("health.schedule has no next time; no further health checks");
                return;
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if schedule.due() {
                break;
            }
        }
    }
}

/// One check in a task of its own (a panic ends that check, not the schedule), given up at
/// its next await once `cancel` fires.
async fn run_one(app: &App, watcher: Option<&WatcherLiveness>, cancel: &CancellationToken) {
    if cancel.is_cancelled() {
        return;
    }
    let (app, watcher, cancel) = (app.clone(), watcher.cloned(), cancel.clone());
    let run = tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = check(&app, watcher.as_ref()) => {}
        }
    });
    if let Err(error) = run.await
        && error.is_panic()
    {
        tracing::error!("a health check panicked; the next one runs on schedule");
    }
}

/// The longest single sleep towards the next tick: the wait is measured on the wall clock the
/// schedule is written in but slept on the monotonic one, so a clock step is noticed after at
/// most this long.
const MAX_TICK_SLEEP: Duration = Duration::from_secs(60);

/// How far past a tick the sleep ends: ticks are whole seconds of the wall clock, and the
/// monotonic sleep must not end a hair before one.
const TICK_MARGIN: Duration = Duration::from_millis(10);

/// `health.schedule` as a tokio-cron-scheduler `Job`, driven by the health task instead of a
/// `JobScheduler`: that one checks its jobs every 500 ms (fixed in 0.15), two wake-ups a second
/// in an otherwise idle daemon (P6); the task sleeps until the job's next tick instead. The
/// job's own closure is never run.
struct Schedule {
    job: Job,
}

impl Schedule {
    fn new(expr: &str) -> Result<Self, tokio_cron_scheduler::JobSchedulerError> {
        let mut job = Job::new_async(expr, |_, _| Box::pin(async {}))?;
        // `Job::tick` fires only once the job has a last tick (0.15 has no first-tick case for
        // cron jobs), and a call records one: make it now, before the first tick, or a first
        // call after that tick would leave it unfired and its time in the past for good.
        let _ = job.tick();
        Ok(Self { job })
    }

    /// Whether a tick was reached since the last call (several count as one); the next tick
    /// is then the first one after now.
    fn due(&mut self) -> bool {
        self.job.tick().unwrap_or(false)
    }

    /// How long to sleep for the next tick (`None`: there is none), at most
    /// [`MAX_TICK_SLEEP`].
    fn until_next(&mut self) -> Option<Duration> {
        let next = self.job.job_data().ok()?.next_tick;
        if next == 0 {
            return None;
        }
        let at = std::time::UNIX_EPOCH + Duration::from_secs(next);
        let wait = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Some((wait + TICK_MARGIN).min(MAX_TICK_SLEEP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_due_once_slept_to_its_next_tick_and_not_again_before_the_one_after() {
        let mut schedule = Schedule::new("* * * * * *").unwrap();
        let wait = schedule.until_next().unwrap();
        assert!(wait <= Duration::from_millis(1010), "{wait:?}");
        std::thread::sleep(wait);
        assert!(schedule.due());
        assert!(!schedule.due());
        let wait = schedule.until_next().unwrap();
        assert!(
            wait > TICK_MARGIN && wait <= Duration::from_millis(1010),
            "{wait:?}"
        );
    }

    #[test]
    fn ticks_missed_while_busy_count_once_and_the_next_one_is_ahead() {
        let mut schedule = Schedule::new("* * * * * *").unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        assert!(schedule.due());
        assert!(!schedule.due());
        assert!(schedule.until_next().unwrap() > TICK_MARGIN);
    }

    #[test]
    fn a_far_tick_is_slept_towards_in_pieces_so_a_clock_step_is_noticed() {
        // Midnight on the first of January.
        let mut schedule = Schedule::new("0 0 0 1 1 *").unwrap();
        assert_eq!(schedule.until_next(), Some(MAX_TICK_SLEEP));
    }
}
