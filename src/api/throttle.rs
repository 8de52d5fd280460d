//! The state every clone of one [`super::JoeClient`] shares about the server (RELIABILITY.md
//! cases 58, 62–64):
//!
//! * the **hold-off**: a `Retry-After` on a 429 (or a 503) means "no request before T" for the
//!   whole client, not just for the call that got it — rate limits are per account, so a poll
//!   sent by another worker during the window would only earn the next 429. Every request waits
//!   in [`Throttle::admit`] until the instant has passed. Monotonic time (`tokio::time`), capped
//!   at one hour;
//! * the **consecutive transient failures** (connect refused, DNS, timeouts, resets, 5xx, a
//!   captive-portal page), reset by any answer that proves the server is there. The daemon's
//!   circuit breaker (`pipeline::breaker`) reads it; the client itself never refuses a call.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::error::{ApiError, ApiErrorKind};

/// The longest hold-off a server can impose; RELIABILITY.md case 62 clamps `Retry-After` to 1 h.
pub const MAX_HOLD_OFF: Duration = Duration::from_secs(3600);

/// What a request's result says about the server's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// The server answered as a server does (success, or a Joe error about the request).
    Answered,
    /// The server could not be reached or failed (counts toward the breaker).
    Failed,
    /// Says nothing either way (rate limit, maintenance, refused key, local error).
    Neutral,
}

/// Classifies a request's error for the failure count.
pub(crate) fn health_of(error: &ApiError) -> Health {
    match error {
        ApiError::Unreachable { .. }
        | ApiError::Timeout { .. }
        | ApiError::Transport { .. }
        | ApiError::Truncated { .. } => Health::Failed,
        ApiError::UnknownOutcome { status, .. } => match status {
            None => Health::Failed,
            Some(s) if *s >= 500 => Health::Failed,
            Some(_) => Health::Neutral,
        },
        ApiError::Api { kind, status, .. } => match (*kind, *status) {
            (ApiErrorKind::ServerOffline | ApiErrorKind::InvalidApiKey, _) => Health::Neutral,
            (_, 429) => Health::Neutral,
            (_, 408) => Health::Failed,
            (_, s) if s >= 500 => Health::Failed,
            _ => Health::Answered,
        },
        // An HTML page with 200 is a captive portal or a proxy, not the API.
        ApiError::UnexpectedFormat { status, .. } => match *status {
            429 | 401 | 403 => Health::Neutral,
            s if !(400..500).contains(&s) => Health::Failed,
            _ => Health::Neutral,
        },
        ApiError::TooLarge { .. } => Health::Answered,
        ApiError::ChunkFailed { source, .. } => health_of(source),
        ApiError::Io { .. } | ApiError::Config(_) => Health::Neutral,
    }
}

/// A `Retry-After` hold-off in force: how long it still lasts and the HTTP status of the reply
/// that imposed it (429 or 503). What `jbxd status` shows (RELIABILITY.md case 118).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldOff {
    pub remaining: Duration,
    pub status: u16,
}

/// Shared by every clone of one client.
#[derive(Debug)]
pub(crate) struct Throttle {
    state: Mutex<State>,
    consecutive_failures: AtomicU32,
    requests: AtomicU64,
    /// Bumped whenever a hold-off starts or is extended, for observers that must not poll.
    hold_offs: tokio::sync::watch::Sender<u64>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            consecutive_failures: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            hold_offs: tokio::sync::watch::Sender::new(0),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// No request may start before this instant.
    not_before: Option<Instant>,
    /// The HTTP status of the reply that set `not_before`.
    hold_off_status: u16,
    /// When the last request was sent.
    last_request: Option<Instant>,
    /// The last failure counted, for the breaker's status text.
    last_failure: Option<String>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the hold-off has passed (it may be extended while waiting), then counts the
    /// request as sent. Cancel-safe: dropping the future leaves nothing behind.
    pub(crate) async fn admit(&self) {
        loop {
            let until = self.lock().not_before.filter(|t| *t > Instant::now());
            match until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => break,
            }
        }
        self.lock().last_request = Some(Instant::now());
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies a server's `Retry-After` (already parsed and clamped) to the whole client.
    pub(crate) fn hold_off(&self, wait: Duration, status: u16) {
        let wait = wait.min(MAX_HOLD_OFF);
        let now = Instant::now();
        let until = now + wait;
        let started = {
            let mut state = self.lock();
            let active = state.not_before.is_some_and(|t| t > now);
            if state.not_before.is_none_or(|t| until > t) {
                state.not_before = Some(until);
                state.hold_off_status = status;
                self.hold_offs.send_modify(|n| *n = n.wrapping_add(1));
            }
            !active
        };
        if started {
            // One line per wait, not per request held back.
            warn!(
                status,
                wait_secs = wait.as_secs_f64(),
                "the server asked to slow down (Retry-After): no API request until the wait is over"
            );
        } else {
            debug!(
                status,
                wait_secs = wait.as_secs_f64(),
                "Retry-After while already waiting"
            );
        }
    }

    /// How long requests are still held back, if they are.
    pub(crate) fn hold_off_remaining(&self) -> Option<Duration> {
        let now = Instant::now();
        self.lock().not_before.filter(|t| *t > now).map(|t| t - now)
    }

    /// The hold-off in force, with the status that imposed it.
    pub(crate) fn hold_off_info(&self) -> Option<HoldOff> {
        let now = Instant::now();
        let state = self.lock();
        state.not_before.filter(|t| *t > now).map(|t| HoldOff {
            remaining: t - now,
            status: state.hold_off_status,
        })
    }

    /// Changes whenever a hold-off starts or is extended.
    pub(crate) fn hold_off_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.hold_offs.subscribe()
    }

    /// Counts a request's result toward (or resets) the consecutive failures.
    pub(crate) fn record<T>(&self, result: &Result<T, ApiError>) {
        match result {
            Ok(_) => self.answered(),
            Err(error) => match health_of(error) {
                Health::Answered => self.answered(),
                Health::Failed => self.failed(error),
                Health::Neutral => {}
            },
        }
    }

    pub(crate) fn answered(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    fn failed(&self, error: &ApiError) {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        self.lock().last_failure = Some(error.to_string());
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn last_failure(&self) -> Option<String> {
        self.lock().last_failure.clone()
    }

    pub(crate) fn since_last_request(&self) -> Option<Duration> {
        self.lock().last_request.map(|t| t.elapsed())
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(kind: ApiErrorKind, status: u16) -> ApiError {
        ApiError::Api {
            kind,
            code: 0,
            message: String::new(),
            status,
            retry_after: None,
        }
    }

    #[tokio::test]
    async fn a_hold_off_delays_every_request_until_it_is_over_and_is_capped_at_an_hour() {
        let throttle = Throttle::default();
        throttle.hold_off(Duration::from_millis(300), 429);
        let started = Instant::now();
        throttle.admit().await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        // A shorter second Retry-After never shortens a running wait.
        throttle.hold_off(Duration::from_millis(300), 429);
        throttle.hold_off(Duration::from_millis(10), 429);
        let started = Instant::now();
        throttle.admit().await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        let changes = throttle.hold_off_changes();
        throttle.hold_off(Duration::from_secs(999_999), 503);
        assert!(
            changes.has_changed().unwrap(),
            "observers hear of the extension"
        );
        assert_eq!(throttle.hold_off_info().unwrap().status, 503);
        let left = throttle.hold_off_remaining().unwrap();
        assert!(left <= MAX_HOLD_OFF && left > MAX_HOLD_OFF - Duration::from_secs(5));
        assert_eq!(throttle.requests(), 2);
    }

    #[test]
    fn failures_count_until_the_server_answers_and_rate_limits_are_neutral() {
        let throttle = Throttle::default();
        let refused: Result<(), _> = Err(ApiError::Unreachable {
            url: "u".into(),
            detail: "refused".into(),
        });
        throttle.record(&refused);
        throttle.record(&Err::<(), _>(api(ApiErrorKind::InternalServerError, 500)));
        throttle.record(&Err::<(), _>(ApiError::UnexpectedFormat {
            status: 200,
            snippet: "<html>".into(),
        }));
        throttle.record(&Err::<(), _>(api(ApiErrorKind::Other, 429)));
        throttle.record(&Err::<(), _>(api(ApiErrorKind::ServerOffline, 503)));
        assert_eq!(throttle.consecutive_failures(), 3);
        assert!(
            throttle
                .last_failure()
                .unwrap()
                .contains("unexpected format")
        );
        // A Joe error about the request proves the server is there.
        throttle.record(&Err::<(), _>(api(ApiErrorKind::InvalidParameter, 400)));
        assert_eq!(throttle.consecutive_failures(), 0);
        throttle.record(&refused);
        throttle.record(&Ok::<(), ApiError>(()));
        assert_eq!(throttle.consecutive_failures(), 0);
    }
}
