//! The health job (RELIABILITY.md group I, case 111): [`check`](super::health::check) on
//! `health.schedule`, and what the daemon remembers of its last run.
//!
//! The check runs on `health.schedule`, a tokio-cron-scheduler job driven by one task that
//! sleeps until the job's next tick ([`HealthScheduler`]). Runs never overlap (a tick that
//! comes while a run is still going is skipped), a run stops at shutdown (the task selects on
//! the cancellation token), and the task is stopped from the daemon's one shutdown path. Each
//! finished run is recorded in `daemon_state` (started, finished, next tick), from which
//! `jbxd status` tells fresh health rows from stale ones (RELIABILITY.md case 118).

use std::time::Duration;

use anyhow::Context as _;
use tokio_cron_scheduler::Job;
use tokio_util::sync::CancellationToken;

use super::health::{HealthReport, check};
use crate::app::App;
use crate::db;
use crate::intake::watcher::WatcherLiveness;

/// What the daemon remembers of its last health run that the database may not have taken:
/// why its results could not be stored (shown on the `STATUS=` line).
#[derive(Debug, Default)]
pub struct HealthMemory {
    unrecorded: std::sync::Mutex<Option<String>>,
}

impl HealthMemory {
    /// Why the last run's results could not be stored, if they could not.
    pub fn unrecorded(&self) -> Option<String> {
        self.unrecorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Returns whether it changed.
    fn set(&self, value: Option<String>) -> bool {
        let mut slot = self.unrecorded.lock().unwrap_or_else(|p| p.into_inner());
        let changed = *slot != value;
        *slot = value;
        changed
    }
}

/// The running health job.
pub struct HealthScheduler {
    task: tokio::task::JoinHandle<()>,
    memory: std::sync::Arc<HealthMemory>,
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
        let memory = std::sync::Arc::<HealthMemory>::default();
        let task = tokio::spawn(run_on_schedule(
            schedule,
            app,
            watcher,
            cancel,
            memory.clone(),
        ));
        Ok(Self { task, memory })
    }

    /// What the job remembers of its last run.
    pub fn memory(&self) -> std::sync::Arc<HealthMemory> {
        self.memory.clone()
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
    memory: std::sync::Arc<HealthMemory>,
) {
    loop {
        let started_at = db::now_text();
        if let Some(report) = run_one(&app, watcher.as_ref(), &cancel).await {
            // The run's record, from which another process tells fresh results from stale
            // ones (RELIABILITY.md case 118): it cannot be written when the rows could not.
            let run = db::health::HealthRun {
                started_at,
                finished_at: db::now_text(),
                next_at: schedule.next_tick().map(db::time_text),
            };
            let recorded = db::health::set_fact(&app.db, db::health::HEALTH_RUN_KEY, &run)
                .await
                .map_err(|e| format!("cannot record the health run: {e}"));
            if memory.set(report.unrecorded.or(recorded.err())) {
                app.wake.status.notify_one();
            }
        }
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
/// its next await once `cancel` fires. Its report, if it finished.
async fn run_one(
    app: &App,
    watcher: Option<&WatcherLiveness>,
    cancel: &CancellationToken,
) -> Option<HealthReport> {
    if cancel.is_cancelled() {
        return None;
    }
    let (app, watcher, cancel) = (app.clone(), watcher.cloned(), cancel.clone());
    let run = tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => None,
            report = check(&app, watcher.as_ref()) => Some(report),
        }
    });
    match run.await {
        Ok(report) => report,
        Err(error) => {
            if error.is_panic() {
                tracing::error!("a health check panicked; the next one runs on schedule");
            }
            None
        }
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

    /// The wall-clock time of the next tick, if there is one.
    fn next_tick(&mut self) -> Option<chrono::DateTime<chrono::Utc>> {
        let next = self.job.job_data().ok()?.next_tick;
        if next == 0 {
            return None;
        }
        chrono::DateTime::from_timestamp(i64::try_from(next).ok()?, 0)
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
