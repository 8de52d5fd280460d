//! Retry policy for read-only calls: capped exponential backoff with full jitter, honouring
//! `Retry-After`.

use std::time::{Duration, SystemTime};

use super::error::ApiError;

/// How read-only calls are retried. Submissions are never retried through this policy except
/// where nothing can have reached the server (see `JoeClient::submit_*`).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts, the first one included (jbxapi's `retries`). 1 = no retry.
    pub max_attempts: u32,
    /// Backoff base: attempt n waits up to `base * 2^(n-1)`.
    pub base: Duration,
    /// Cap on a computed backoff.
    pub cap: Duration,
    /// The longest `Retry-After` this caller is willing to wait; a longer one ends the call
    /// with the server's error so the user learns when to come back.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The ceiling of the wait after attempt `attempt` (1-based): `min(cap, base * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)))
            .min(self.cap)
    }

    /// Full jitter: a uniformly random wait in `[0, ceiling(attempt)]`, where `attempt` is the
    /// 1-based number of the attempt that just failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.ceiling(attempt).mul_f64(fastrand::f64())
    }

    /// [`Self::backoff`] drawing from `rng`, so a seeded generator gives a known sequence.
    pub fn backoff_with(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        self.ceiling(attempt).mul_f64(rng.f64())
    }

    /// How long to wait before the next attempt after `error` on attempt `attempt` (1-based),
    /// or `None` when the call should give up.
    pub fn delay_after(&self, error: &ApiError, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts || !error.is_transient() {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(attempt)),
        }
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date. Garbage, negative numbers and
/// dates in the past give `None` (the caller falls back to backoff); waits are clamped to
/// [1 s, 1 h] so a hostile header cannot stall us for days.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(now).ok()?
    };
    let max = super::throttle::MAX_HOLD_OFF;
    if wait > max {
        tracing::warn!(
            retry_after = value,
            "the server's Retry-After is longer than an hour; waiting an hour"
        );
    }
    Some(wait.clamp(Duration::from_secs(1), max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::ApiErrorKind;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates_and_ignores_garbage() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(parse_retry_after(&past, now), None);
        assert_eq!(
            parse_retry_after("999999", now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::from_secs(1)));
    }

    #[test]
    fn backoff_stays_within_the_capped_exponential_ceiling() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(60),
        };
        for attempt in 1..10 {
            let ceiling = Duration::from_millis(100 * 2u64.pow(attempt - 1)).min(policy.cap);
            for _ in 0..50 {
                assert!(policy.backoff(attempt) <= ceiling);
            }
        }
        // Full jitter: waits differ.
        let waits: Vec<_> = (0..20).map(|_| policy.backoff(5)).collect();
        assert!(waits.iter().any(|w| *w != waits[0]));
    }

    #[test]
    fn server_retry_after_wins_over_backoff_unless_it_is_too_long() {
        let policy = RetryPolicy::default();
        let limited = |secs| ApiError::Api {
            kind: ApiErrorKind::Other,
            code: 0,
            message: "slow down".into(),
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            policy.delay_after(&limited(7), 1),
            Some(Duration::from_secs(7))
        );
        assert_eq!(policy.delay_after(&limited(7200), 1), None);
        assert_eq!(policy.delay_after(&limited(7), policy.max_attempts), None);
    }
}
