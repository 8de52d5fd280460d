//! [`App`]: the handle every worker and command shares (configuration, database, API client,
//! storage, wake-ups, the global pause and worker heartbeats). Cheap to clone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::api::JoeClient;
use crate::config::Config;
use crate::db::{self, Db, DbError};
use crate::storage::Store;

/// Why the daemon stopped consuming work. Pauses consume no item attempts and are lifted by
/// the health check once the cause is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// Joe Sandbox is in maintenance (`server/online` false, or code 5): all API traffic waits.
    Maintenance,
    /// The API key was refused (code 4 / HTTP 403): all API traffic waits.
    InvalidApiKey,
    /// The cloud refused a submission without accepted terms: submissions wait.
    TermsNotAccepted,
    /// The account's submission quota is used up: submissions wait, polls and downloads go on.
    QuotaExceeded,
    /// Too little free disk in `data_dir`: intake and downloads wait.
    DiskLow,
}

impl PauseReason {
    /// Whether this pause stops every API call (else only submissions, or local work).
    pub fn stops_all_api_calls(self) -> bool {
        matches!(self, Self::Maintenance | Self::InvalidApiKey)
    }

    pub fn stops_submissions(self) -> bool {
        !matches!(self, Self::DiskLow)
    }

    pub fn stops_local_writes(self) -> bool {
        matches!(self, Self::DiskLow)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Maintenance => "Joe Sandbox is offline for maintenance",
            Self::InvalidApiKey => "Joe Sandbox rejected the API key (InvalidApiKey)",
            Self::TermsNotAccepted => {
                "the cloud requires accepting the terms and conditions (api.accept_tac = true)"
            }
            Self::QuotaExceeded => "the account's submission quota is used up",
            Self::DiskLow => "free disk space in data_dir is below health.min_free_disk_mb",
        }
    }
}

/// One active pause, as stored in `daemon_state` (key `pause:<reason>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: PauseReason,
    pub detail: String,
    pub since: String,
}

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
    /// Something changed that the `STATUS=` line may show (a worker did work or changed from
    /// idle to paused or failing, a pause began or ended): the line is refreshed soon, instead
    /// of an idle daemon querying its database every few seconds for an unchanged line.
    pub status: Notify,
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

/// The shared handle.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub db: Db,
    pub client: JoeClient,
    pub store: Store,
    pub wake: Arc<Wakers>,
    pub heartbeats: Arc<Heartbeats>,
    /// The circuit breaker: while the server is unreachable, API work waits (no attempts).
    pub breaker: Arc<crate::pipeline::breaker::Breaker>,
    /// Files the watcher saw renamed in from a temp name: the scanner takes them at once.
    pub renamed_in: Arc<crate::intake::RenamedIn>,
}

impl App {
    pub fn new(config: Config, db: Db, client: JoeClient) -> Self {
        let store = Store::new(&config.data_dir);
        Self {
            config: Arc::new(config),
            db,
            client,
            store,
            wake: Arc::new(Wakers::default()),
            heartbeats: Arc::new(Heartbeats::default()),
            breaker: Arc::default(),
            renamed_in: Arc::default(),
        }
    }

    fn pause_key(reason: PauseReason) -> String {
        format!(
            "pause:{}",
            serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )
    }

    /// Puts a pause in force (idempotent: the first `since` is kept).
    pub async fn pause(&self, reason: PauseReason, detail: &str) -> Result<(), DbError> {
        let key = Self::pause_key(reason);
        if db::health::get_state(&self.db, &key).await?.is_some() {
            return Ok(());
        }
        tracing::warn!(reason = reason.describe(), detail, "pausing");
        let pause = Pause {
            reason,
            detail: detail.to_owned(),
            since: db::now_text(),
        };
        let value = serde_json::to_string(&pause).expect("pause serialises");
        db::health::set_state(&self.db, &key, &value).await?;
        self.wake.status.notify_one();
        Ok(())
    }

    /// Lifts a pause; wakes every worker (and the `STATUS=` refresh).
    pub async fn resume(&self, reason: PauseReason) -> Result<(), DbError> {
        let key = Self::pause_key(reason);
        if db::health::get_state(&self.db, &key).await?.is_some() {
            tracing::info!(reason = reason.describe(), "resuming");
            db::health::clear_state(&self.db, &key).await?;
            self.wake_all();
        }
        Ok(())
    }

    /// Every pause in force.
    pub async fn pauses(&self) -> Result<Vec<Pause>, DbError> {
        let mut out = Vec::new();
        for reason in [
            PauseReason::Maintenance,
            PauseReason::InvalidApiKey,
            PauseReason::TermsNotAccepted,
            PauseReason::QuotaExceeded,
            PauseReason::DiskLow,
        ] {
            if let Some(value) = db::health::get_state(&self.db, &Self::pause_key(reason)).await?
                && let Ok(pause) = serde_json::from_str(&value)
            {
                out.push(pause);
            }
        }
        Ok(out)
    }

    /// Whether submissions may be sent now (no pause stops them and the circuit breaker is
    /// closed; while it is open this may send its probe).
    pub async fn may_submit(&self) -> Result<bool, DbError> {
        let paused = self
            .pauses()
            .await?
            .iter()
            .any(|p| p.reason.stops_submissions());
        Ok(!paused && self.breaker.admit(self).await?)
    }

    /// Whether read-only API calls (polls, downloads) may be made now (as `may_submit`, for
    /// the pauses that stop every call).
    pub async fn may_call_api(&self) -> Result<bool, DbError> {
        let paused = self
            .pauses()
            .await?
            .iter()
            .any(|p| p.reason.stops_all_api_calls());
        Ok(!paused && self.breaker.admit(self).await?)
    }

    /// Whether the circuit breaker is open (the server is unreachable): failures now are not
    /// the items' fault and consume no attempts.
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open(self)
    }

    /// Whether local writes (staging samples, storing reports) may proceed.
    pub async fn may_write_locally(&self) -> Result<bool, DbError> {
        Ok(!self
            .pauses()
            .await?
            .iter()
            .any(|p| p.reason.stops_local_writes()))
    }

    pub fn wake_all(&self) {
        self.wake.scan.notify_one();
        self.wake.urls.notify_one();
        self.wake.submit.notify_one();
        self.wake.reconcile.notify_one();
        self.wake.poll.notify_one();
        self.wake.download.notify_one();
        self.wake.status.notify_one();
    }
}

#[cfg(test)]
mod tests {
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
}
