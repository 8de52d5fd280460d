//! The circuit breaker (RELIABILITY.md cases 58, 64, 78): when the server cannot be
//! reached, stop sending work at it.
//!
//! * **Opens** after [`THRESHOLD`] consecutive transient failures across every worker — the
//!   count is kept by the API client (`JoeClient::consecutive_failures`: connect refused, DNS,
//!   timeouts, resets, 5xx, a page that is not the API), so every request counts, retries
//!   included.
//! * **While open** `App::may_submit` / `App::may_call_api` say no: workers claim nothing, and
//!   the only request is a single `server/online` probe every [`PROBE_INTERVAL`] (or
//!   `pipeline.retry_cap_secs` when that is shorter, so tests run fast), jittered upwards by up
//!   to 20 % and never sooner than an interval after the client's last request (the health
//!   check's own `server/online` counts as a probe). Items whose calls fail while it is open
//!   give their attempt back: an outage is not the item's fault, so 0 items end `failed`.
//! * **Closes** as soon as any request gets an answer (the probe, the health check, or a call
//!   that was in flight), i.e. when the client's count drops back to 0; every worker is woken.
//!
//! The breaker is lazy: it has no task of its own. The workers' gates evaluate it, and the
//! first gate to find a probe due runs it (one at a time). Its state is recorded as the
//! `breaker` health row (`jbxd status`) and shown in the daemon's `STATUS=` line.
//!
//! It is given the narrow handles it needs (the client whose failure count it reads, the
//! database for its health row, the wake-ups it rings on closing) rather than the whole
//! `App`, which holds it: so `app` depends on it and it on neither `app` nor `pipeline`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::api::JoeClient;
use crate::config::Config;
use crate::db::{self, Db, DbError};
use crate::worker::{MIN_DELAY, Wakers};

/// Consecutive transient failures that open the breaker.
pub const THRESHOLD: u32 = 5;

/// How often an open breaker probes the server (production).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(60);

/// The shared breaker (one per `App`, cloned handles share it).
#[derive(Debug, Default)]
pub struct Breaker {
    open: Mutex<Option<Open>>,
    probing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Open {
    since: String,
    next_probe: Instant,
    probes: u32,
}

/// What the breaker looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerStatus {
    pub open: bool,
    /// When it opened (UTC text), while open.
    pub since: Option<String>,
    /// Probes sent since it opened.
    pub probes: u32,
}

/// What the breaker works with: borrowed from the `App` at each call, so an `App` cloned
/// with another client (tests do) is judged by its own client.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub client: &'a JoeClient,
    pub db: &'a Db,
    pub config: &'a Config,
    /// Rung when the breaker closes: every worker goes back to work at once.
    pub wake: &'a Wakers,
}

/// The probe interval for this configuration.
pub fn probe_interval(config: &Config) -> Duration {
    PROBE_INTERVAL
        .min(Duration::from_secs(config.pipeline.retry_cap_secs))
        .max(MIN_DELAY)
}

fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 + 0.2 * fastrand::f64())
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the server counts as unreachable now (without side effects).
    pub fn is_open(&self, client: &JoeClient) -> bool {
        client.consecutive_failures() >= THRESHOLD
    }

    pub fn status(&self, client: &JoeClient) -> BreakerStatus {
        let open = self.lock().clone();
        BreakerStatus {
            open: self.is_open(client),
            since: open.as_ref().map(|o| o.since.clone()),
            probes: open.map_or(0, |o| o.probes),
        }
    }

    /// The gate: whether API work may go on. Records a change of state; while open, sends
    /// the probe when it is due (only one caller at a time does).
    pub async fn admit(&self, app: Handles<'_>) -> Result<bool, DbError> {
        if !self.sync(app).await? {
            return Ok(true);
        }
        let interval = probe_interval(app.config);
        let due = {
            let open = self.lock();
            open.as_ref()
                .is_some_and(|o| Instant::now() >= o.next_probe)
                && app
                    .client
                    .since_last_request()
                    .is_none_or(|quiet| quiet >= interval)
        };
        if due && let Ok(_probing) = self.probing.try_lock() {
            if let Some(open) = self.lock().as_mut() {
                open.probes += 1;
                open.next_probe = Instant::now() + jittered(interval);
            }
            match app.client.probe_online().await {
                Ok(_) => info!("circuit breaker probe: the server answers"),
                Err(error) => {
                    info!(%error, "circuit breaker probe: the server is still unreachable")
                }
            }
        }
        Ok(!self.sync(app).await?)
    }

    /// Brings the recorded state in line with the client's failure count; returns whether
    /// the breaker is open.
    async fn sync(&self, app: Handles<'_>) -> Result<bool, DbError> {
        let failures = app.client.consecutive_failures();
        let now_open = failures >= THRESHOLD;
        let changed = {
            let mut open = self.lock();
            match (open.is_some(), now_open) {
                (false, true) => {
                    *open = Some(Open {
                        since: db::now_text(),
                        next_probe: Instant::now() + jittered(probe_interval(app.config)),
                        probes: 0,
                    });
                    true
                }
                (true, false) => {
                    *open = None;
                    true
                }
                _ => false,
            }
        };
        if changed && now_open {
            let last = app
                .client
                .last_failure()
                .unwrap_or_else(|| "unknown error".into());
            let detail = format!(
                "open: the server is unreachable ({failures} failures in a row, last: {}); \
                 only the server's online check is probed every {} s",
                crate::text::one_line(&last, 300),
                probe_interval(app.config).as_secs_f64()
            );
            warn!(failures, last_error = %last, "circuit breaker open: work stops until the server answers");
            db::health::record(app.db, "breaker", "degraded", &detail).await?;
        } else if changed {
            info!("circuit breaker closed: the server answers again");
            db::health::record(app.db, "breaker", "ok", "closed: the server answers").await?;
            app.wake.all();
        }
        Ok(now_open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_interval_is_a_minute_or_the_retry_cap_when_shorter() {
        let mut config = crate::config::Config::default();
        assert_eq!(probe_interval(&config), PROBE_INTERVAL);
        config.pipeline.retry_cap_secs = 1;
        assert_eq!(probe_interval(&config), Duration::from_secs(1));
        config.pipeline.retry_cap_secs = 0;
        assert_eq!(probe_interval(&config), MIN_DELAY);
        for _ in 0..100 {
            let j = jittered(PROBE_INTERVAL);
            assert!(
                j >= PROBE_INTERVAL && j <= PROBE_INTERVAL.mul_f64(1.2),
                "{j:?}"
            );
        }
    }
}
