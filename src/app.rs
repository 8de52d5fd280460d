//! [`App`]: the handle every worker and command shares (configuration, database, API client,
//! storage, wake-ups, the global pause, the circuit breaker and worker heartbeats). Cheap to
//! clone. Heartbeats: see [`Heartbeats`] (a busy worker beats per step, a sleeping one says
//! until when it sleeps, the watchdog counts a worker stalled only when that is overdue).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::JoeClient;
use crate::breaker::{self, Breaker, BreakerStatus};
use crate::config::Config;
use crate::db::{self, Db, DbError};
use crate::storage::Store;
// The workers' shared pieces live in `worker` (which uses no other module of the crate), so
// that `intake`, `pipeline` and the breaker can use them without depending on `app`; they are
// part of the handle's vocabulary, hence re-exported here.
pub use crate::worker::{Heartbeats, Pulse, StepOutcome, Wakers};

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
            Self::InvalidApiKey => "Joe Sandbox rejected the API key",
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
    pub breaker: Arc<Breaker>,
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

    /// Puts a pause in force (idempotent: the first `since` is kept; a new `detail` replaces
    /// the old one, so the health check's advice — "update <source>" — replaces the error
    /// text of the call that found the cause).
    pub async fn pause(&self, reason: PauseReason, detail: &str) -> Result<(), DbError> {
        let key = Self::pause_key(reason);
        let since = match db::health::get_state(&self.db, &key).await? {
            Some(value) => match serde_json::from_str::<Pause>(&value) {
                Ok(old) if old.detail == detail => return Ok(()),
                Ok(old) => old.since,
                Err(_) => db::now_text(),
            },
            None => {
                tracing::warn!(reason = reason.describe(), detail, "pausing");
                db::now_text()
            }
        };
        let pause = Pause {
            reason,
            detail: detail.to_owned(),
            since,
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
        Ok(!paused && self.breaker.admit(self.breaker_handles()).await?)
    }

    /// Whether read-only API calls (polls, downloads) may be made now (as `may_submit`, for
    /// the pauses that stop every call).
    pub async fn may_call_api(&self) -> Result<bool, DbError> {
        let paused = self
            .pauses()
            .await?
            .iter()
            .any(|p| p.reason.stops_all_api_calls());
        Ok(!paused && self.breaker.admit(self.breaker_handles()).await?)
    }

    fn breaker_handles(&self) -> breaker::Handles<'_> {
        breaker::Handles {
            client: &self.client,
            db: &self.db,
            config: &self.config,
            wake: &self.wake,
        }
    }

    /// Whether the circuit breaker is open (the server is unreachable): failures now are not
    /// the items' fault and consume no attempts.
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open(&self.client)
    }

    /// The circuit breaker as `jbxd status` shows it.
    pub fn breaker_status(&self) -> BreakerStatus {
        self.breaker.status(&self.client)
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
        self.wake.all();
    }
}
