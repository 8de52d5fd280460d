//! What every worker shares: the wake-ups ([`Wakers`]), the heartbeats the watchdog reads
//! ([`Heartbeats`]), what one step did ([`StepOutcome`]) and the one loop ([`run`]) that
//! steps a worker, sleeps until its next due time or wake-up, and backs off after errors.
//!
//! Each worker keeps its one-step function (`run_once`, which tests drive) and hands the loop
//! a closure around it that also says how long to sleep ([`Turn`]), plus what wakes it
//! ([`Woken`]). This module depends on no other module of the crate, so `app`, `intake`,
//! `pipeline` and the circuit breaker can all use it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The floor of every configured delay (0 in tests means "as fast as the floor allows").
pub const MIN_DELAY: Duration = Duration::from_millis(100);

/// Wake-ups: a worker waits on its `Notify` or its timer, whichever comes first. They carry
/// nothing; SQLite holds the work.
#[derive(Debug, Default)]
pub struct Wakers {
    pub scan: Notify,
    pub urls: Notify,
    pub submit: Notify,
    pub reconcile: Notify,
    pub poll: Notify,
    pub download: Notify,
    /// The index worker: a report settled (stored or failed), so an analysis may be ready.
    pub index: Notify,
    /// Something changed that the `STATUS=` line may show (a worker did work or changed from
    /// idle to paused or failing, a pause began or ended): the line is refreshed soon, instead
    /// of an idle daemon querying its database every few seconds for an unchanged line.
    pub status: Notify,
}

impl Wakers {
    /// Wakes every worker and the `STATUS=` refresh (a pause lifted, the server back).
    pub fn all(&self) {
        for notify in [
            &self.scan,
            &self.urls,
            &self.submit,
            &self.reconcile,
            &self.poll,
            &self.download,
            &self.index,
            &self.status,
        ] {
            notify.notify_one();
        }
    }
}

/// Each worker's last sign of life; the watchdog pings systemd only while no worker is
/// overdue (see [`Heartbeats::stalled`]).
///
/// A busy worker beats once per step. A worker going to sleep says until when
/// ([`Heartbeats::sleeping_until`]) instead of waking up to beat: it is alive while it waits
/// for its next due row or a wake-up, so an idle daemon has no timer firing just to say so,
/// and it only counts as stalled once the end of its sleep is overdue by the stall limit.
/// Times are monotonic: a wall-clock jump can neither fake nor hide a stall.
#[derive(Debug, Default)]
pub struct Heartbeats {
    pulses: Mutex<HashMap<&'static str, Pulse>>,
}

/// One worker's last sign of life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulse {
    /// When the worker last beat (started a step, or went to sleep).
    pub at: Instant,
    /// When its next beat is due: `at` for a busy worker, the end of the sleep for an idle one.
    pub due: Instant,
}

impl Pulse {
    /// How long the next beat is overdue at `now` (zero while it is not due yet).
    pub fn overdue(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.due)
    }

    /// Whether the worker was asleep (rather than busy) when it last beat.
    pub fn sleeping(&self) -> bool {
        self.due > self.at
    }
}

impl Heartbeats {
    /// The worker shows progress now (it is working, its next beat is due at once).
    pub fn beat(&self, worker: &'static str) {
        let now = Instant::now();
        self.record(worker, Pulse { at: now, due: now });
    }

    /// The worker goes to sleep for `wait` and is alive until then (a wake-up may come
    /// sooner: it beats again when it does).
    pub fn sleeping_until(&self, worker: &'static str, wait: Duration) {
        let now = Instant::now();
        let due = now.checked_add(wait).unwrap_or(now);
        self.record(worker, Pulse { at: now, due });
    }

    fn record(&self, worker: &'static str, pulse: Pulse) {
        self.pulses
            .lock()
            .expect("heartbeat lock")
            .insert(worker, pulse);
    }

    /// Every worker's last sign of life, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, Pulse)> {
        let pulses = self.pulses.lock().expect("heartbeat lock");
        let mut out: Vec<_> = pulses.iter().map(|(k, v)| (*k, *v)).collect();
        out.sort_by_key(|(name, _)| *name);
        out
    }

    /// The worker whose next beat is the most overdue at `now`, if that is by more than
    /// `limit`: a busy worker silent for longer than `limit`, or a sleeper that has not come
    /// back `limit` after the end of its sleep.
    pub fn stalled(&self, now: Instant, limit: Duration) -> Option<(&'static str, Pulse)> {
        self.snapshot()
            .into_iter()
            .filter(|(_, pulse)| pulse.overdue(now) > limit)
            .max_by_key(|(_, pulse)| pulse.overdue(now))
    }
}

/// What one step of a worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// It handled this many units of work; call again soon.
    Worked(usize),
    /// Nothing was due.
    Idle,
    /// A pause is in force; nothing was attempted.
    Paused,
}

/// A step's result for the loop: what it did, and when to step again (`None`: at once, more
/// work may be waiting; `Some(wait)`: after `wait`, or sooner when woken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    pub outcome: StepOutcome,
    pub next: Option<Duration>,
}

/// What ended a worker's sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// Step now.
    Now,
    /// A burst of events began: let it pass until then, so it costs one step.
    SettleUntil(tokio::time::Instant),
}

/// The delay after consecutive failed steps: `first`, doubling per failure, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The delay after the `failures`-th failure in a row (1 = the first).
    pub fn after(self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.cap)
    }
}

/// Who runs the loop and with what it reports.
#[derive(Clone, Copy)]
pub struct Worker<'a> {
    /// The name in heartbeats and logs.
    pub name: &'static str,
    pub heartbeats: &'a Heartbeats,
    /// Notified when the `STATUS=` line may have changed (see [`Wakers::status`]).
    pub status: &'a Notify,
    pub cancel: &'a CancellationToken,
    pub backoff: Backoff,
}

/// The worker loop: beat, step, then at once again if the step says so, else record until
/// when it sleeps (`Heartbeats::sleeping_until`, so the watchdog knows it is alive without
/// the sleep being cut into pieces: idle wake-ups cost CPU for nothing, P6) and wait for the
/// turn's delay, a wake-up (`wake`, given when the last step started) or cancellation.
/// Errors are logged (once per distinct message, and once when steps work again) and backed
/// off, never returned: a worker that stops is a bug.
pub async fn run<S, SFut, W, WFut>(
    worker: Worker<'_>,
    mut step: S,
    mut wake: W,
) -> anyhow::Result<()>
where
    S: FnMut() -> SFut,
    SFut: Future<Output = anyhow::Result<Turn>>,
    W: FnMut(tokio::time::Instant) -> WFut,
    WFut: Future<Output = Woken>,
{
    let Worker {
        name,
        heartbeats,
        status,
        cancel,
        backoff,
    } = worker;
    let mut failures: u32 = 0;
    let mut last_error: Option<String> = None;
    let mut last = Outcome::Idle;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        heartbeats.beat(name);
        let started = tokio::time::Instant::now();
        let (outcome, wait) = match step().await {
            Ok(turn) => {
                failures = 0;
                if last_error.take().is_some() {
                    info!(worker = name, "worker steps work again");
                }
                (Outcome::from(turn.outcome), turn.next)
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let wait = backoff.after(failures);
                let message = format!("{error:#}");
                if last_error.as_deref() != Some(message.as_str()) {
                    warn!(worker = name, error = %message, ?wait, "worker step failed; backing off");
                    last_error = Some(message);
                }
                (Outcome::Failed, Some(wait))
            }
        };
        if outcome.changes_status(last) {
            status.notify_one();
        }
        last = outcome;
        let Some(wait) = wait.filter(|w| !w.is_zero()) else {
            tokio::task::yield_now().await;
            continue;
        };
        heartbeats.sleeping_until(name, wait);
        let woken = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            woken = wake(started) => woken,
            _ = tokio::time::sleep(wait) => Woken::Now,
        };
        if let Woken::SettleUntil(until) = woken {
            heartbeats.sleeping_until(
                name,
                until.saturating_duration_since(tokio::time::Instant::now()),
            );
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

/// A wake-up source for [`run`]: `notify`, or nothing (the timer alone).
pub async fn notified(notify: Option<&Notify>) -> Woken {
    match notify {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
    Woken::Now
}

/// What one step of a worker loop came to, for the `STATUS=` refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Worked,
    Idle,
    Paused,
    Failed,
}

impl From<StepOutcome> for Outcome {
    fn from(outcome: StepOutcome) -> Self {
        match outcome {
            StepOutcome::Worked(_) => Self::Worked,
            StepOutcome::Idle => Self::Idle,
            StepOutcome::Paused => Self::Paused,
        }
    }
}

impl Outcome {
    /// Whether the `STATUS=` line may have changed: work moved items, or the worker went from
    /// idle to paused or failing (a pause, the circuit breaker) or back. A worker that stays
    /// idle, or paused, changes nothing there.
    fn changes_status(self, last: Outcome) -> bool {
        self == Outcome::Worked || self != last
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(600);

    #[test]
    fn a_sleeping_worker_is_not_stalled_before_its_wake_up_time_plus_the_limit() {
        let beats = Heartbeats::default();
        beats.sleeping_until("poll", Duration::from_secs(30));
        let pulse = beats.snapshot()[0].1;
        assert!(pulse.sleeping());
        // Long past the limit since its last beat, but still asleep: alive.
        let later = pulse.at + LIMIT + Duration::from_secs(20);
        assert_eq!(beats.stalled(later, LIMIT), None);
        // Woken on time plus the limit: still within it.
        assert_eq!(beats.stalled(pulse.due + LIMIT, LIMIT), None);
        // Not back a limit after the end of its sleep: stalled.
        let overdue = pulse.due + LIMIT + Duration::from_millis(1);
        assert_eq!(beats.stalled(overdue, LIMIT), Some(("poll", pulse)));
    }

    #[test]
    fn a_busy_worker_is_stalled_once_silent_longer_than_the_limit() {
        let beats = Heartbeats::default();
        beats.beat("submit");
        let pulse = beats.snapshot()[0].1;
        assert!(!pulse.sleeping());
        assert_eq!(beats.stalled(pulse.at + LIMIT, LIMIT), None);
        let silent = pulse.at + LIMIT + Duration::from_millis(1);
        assert_eq!(beats.stalled(silent, LIMIT), Some(("submit", pulse)));
    }

    #[test]
    fn the_most_overdue_worker_is_named_and_a_new_beat_clears_a_sleeper() {
        let beats = Heartbeats::default();
        beats.beat("download");
        beats.sleeping_until("reconcile", Duration::from_secs(5));
        let now = Instant::now() + LIMIT + Duration::from_secs(60);
        assert_eq!(beats.stalled(now, LIMIT).map(|(w, _)| w), Some("download"));
        beats.sleeping_until("download", Duration::from_secs(3600));
        assert_eq!(beats.stalled(now, LIMIT).map(|(w, _)| w), Some("reconcile"));
        beats.beat("reconcile");
        assert_eq!(beats.stalled(Instant::now(), LIMIT), None);
    }

    #[test]
    fn only_work_or_a_change_of_outcome_refreshes_the_status_line() {
        use Outcome::*;
        assert!(Worked.changes_status(Worked));
        assert!(Worked.changes_status(Idle));
        assert!(Paused.changes_status(Idle));
        assert!(Idle.changes_status(Failed));
        assert!(!Idle.changes_status(Idle));
        assert!(!Paused.changes_status(Paused));
        assert!(!Failed.changes_status(Failed));
    }

    #[test]
    fn the_backoff_doubles_from_its_first_delay_up_to_its_cap() {
        let b = Backoff {
            first: Duration::from_secs(2),
            cap: Duration::from_secs(32),
        };
        let secs: Vec<u64> = (1..=7).map(|n| b.after(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(b.after(u32::MAX), Duration::from_secs(32));
    }

    /// Polls `steps` until it reaches `n` (generous deadline: CI on 2 cores).
    async fn reaches(steps: &AtomicUsize, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if steps.load(Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    #[tokio::test]
    async fn the_loop_steps_again_at_once_after_work_backs_off_after_a_failure_and_wakes_on_notify()
    {
        let heartbeats = Heartbeats::default();
        let status = Notify::new();
        let wake = Notify::new();
        let cancel = CancellationToken::new();
        let steps = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            name: "test",
            heartbeats: &heartbeats,
            status: &status,
            cancel: &cancel,
            backoff: Backoff {
                first: Duration::from_millis(50),
                cap: Duration::from_millis(50),
            },
        };
        let counted = steps.clone();
        let looping = run(
            worker,
            || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok(match n {
                        // Work twice (no sleep in between), fail once, then idle for an hour.
                        0 | 1 => Turn {
                            outcome: StepOutcome::Worked(1),
                            next: None,
                        },
                        2 => anyhow::bail!("a failure backs off"),
                        _ => Turn {
                            outcome: StepOutcome::Idle,
                            next: Some(Duration::from_secs(3600)),
                        },
                    })
                }
            },
            |_| notified(Some(&wake)),
        );
        let checks = async {
            assert!(
                reaches(&steps, 4).await,
                "work, work, failure, step after the backoff"
            );
            let pulse = heartbeats.snapshot()[0].1;
            assert!(pulse.sleeping(), "asleep for the idle hour");
            assert!(
                pulse.due >= pulse.at + Duration::from_secs(3000),
                "{pulse:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(steps.load(Ordering::SeqCst), 4, "no step while idle");
            wake.notify_one();
            assert!(reaches(&steps, 5).await, "a wake-up steps at once");
            cancel.cancel();
        };
        let (result, ()) = tokio::join!(looping, checks);
        result.unwrap();
        assert_eq!(
            steps.load(Ordering::SeqCst),
            5,
            "cancelled: no further step"
        );
    }
}
