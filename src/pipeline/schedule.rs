//! The adaptive poll schedule (pure functions, unit-tested).
//!
//! With `E` the expected analysis time (the item's `analysis-time` parameter, else
//! `poll.expected_analysis_secs`):
//!
//! * the first poll comes at `0.9 × E` after the submission (nothing can be finished earlier);
//! * then every `base = clamp(0.1 × E, poll.min_interval_secs, poll.max_interval_secs)`;
//! * once the submission is older than `2 × E` the interval grows by ×1.5 per poll. The
//!   schedule is stateless: a geometric series of intervals `base·1.5^k` has covered
//!   `2·base·(1.5^k − 1)` seconds after `k` polls, so the interval at age `t` past `2E` is
//!   `base + 0.5·(t − 2E)`, capped at `poll.max_interval_secs`;
//! * every delay gets ±10 % jitter and a floor of 100 ms;
//! * a submission older than `poll.max_analysis_age_secs` is `failed: timed out`.

use std::time::Duration;

use super::classify::MIN_DELAY;
use crate::config::PollConfig;

/// The schedule of one item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPlan {
    pub expected: Duration,
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub max_age: Duration,
}

impl PollPlan {
    /// The plan for an item whose submission asked for `analysis_time` seconds (if it did).
    pub fn new(config: &PollConfig, analysis_time: Option<u64>) -> Self {
        Self {
            expected: Duration::from_secs(analysis_time.unwrap_or(config.expected_analysis_secs)),
            min_interval: Duration::from_secs(config.min_interval_secs),
            max_interval: Duration::from_secs(config.max_interval_secs),
            max_age: Duration::from_secs(config.max_analysis_age_secs),
        }
    }

    /// Delay from the submission to the first poll, before jitter.
    pub fn first_delay(&self) -> Duration {
        self.expected.mul_f64(0.9)
    }

    /// The steady interval, before growth and jitter.
    pub fn base_interval(&self) -> Duration {
        // `clamp` panics when min > max; a config with max < min means "max wins".
        self.expected
            .mul_f64(0.1)
            .max(self.min_interval)
            .min(self.max_interval)
    }

    /// Delay before the next poll of a submission that is `age` old, before jitter.
    pub fn interval_at(&self, age: Duration) -> Duration {
        let base = self.base_interval();
        let slow_after = self.expected.saturating_mul(2);
        if age <= slow_after {
            return base;
        }
        let grown = base + (age - slow_after).mul_f64(0.5);
        grown.min(self.max_interval.max(base))
    }

    /// Whether a submission of this age has run out of time.
    pub fn timed_out(&self, age: Duration) -> bool {
        age > self.max_age
    }
}

/// Applies ±10 % jitter (`unit` in `[-1, 1]`, e.g. `fastrand::f64() * 2.0 - 1.0`) and the
/// 100 ms floor.
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    let factor = 1.0 + 0.1 * unit.clamp(-1.0, 1.0);
    delay.mul_f64(factor).max(MIN_DELAY)
}

/// A random jitter unit in `[-1, 1]`.
pub fn random_unit() -> f64 {
    fastrand::f64() * 2.0 - 1.0
}

/// The `analysis-time` parameter from a JSON object of submission parameters, if it is there
/// and numeric (as a number or as text).
pub fn analysis_time_of(params: Option<&serde_json::Value>) -> Option<u64> {
    let value = params?.get("analysis-time")?;
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(expected: u64) -> PollPlan {
        PollPlan::new(
            &PollConfig {
                expected_analysis_secs: expected,
                min_interval_secs: 5,
                max_interval_secs: 600,
                max_analysis_age_secs: 24 * 3600,
            },
            None,
        )
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_first_poll_comes_at_nine_tenths_of_the_expected_time() {
        assert_eq!(plan(200).first_delay(), S(180));
        let own = PollPlan::new(&PollConfig::default(), Some(60));
        assert_eq!(own.first_delay(), S(54));
    }

    #[test]
    fn the_steady_interval_is_a_tenth_of_the_expected_time_within_the_bounds() {
        assert_eq!(plan(200).base_interval(), S(20));
        assert_eq!(plan(20).base_interval(), S(5));
        assert_eq!(plan(100_000).base_interval(), S(600));
        assert_eq!(plan(200).interval_at(S(100)), S(20));
        assert_eq!(plan(200).interval_at(S(400)), S(20));
    }

    #[test]
    fn polls_slow_down_past_twice_the_expected_time_up_to_the_maximum() {
        let p = plan(200);
        // 40 s past 2E: base + 20 s.
        assert_eq!(p.interval_at(S(440)), S(40));
        // The closed form equals ×1.5 per poll: after polls at 400+20, +30, +45 ...
        let mut age = S(400);
        let mut interval = S(20);
        for _ in 0..4 {
            age += interval;
            interval = interval.mul_f64(1.5);
            let closed = p.interval_at(age);
            assert!(
                (closed.as_secs_f64() - interval.as_secs_f64()).abs() < 1e-6,
                "{closed:?} vs {interval:?}"
            );
        }
        assert_eq!(p.interval_at(S(100_000)), S(600));
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_above_the_floor() {
        assert_eq!(jittered(S(100), 1.0), S(110));
        assert_eq!(jittered(S(100), -1.0), S(90));
        assert_eq!(jittered(S(100), 7.0), S(110));
        assert_eq!(jittered(Duration::ZERO, 0.3), MIN_DELAY);
        for _ in 0..100 {
            let d = jittered(S(10), random_unit());
            assert!(d >= S(9) && d <= S(11));
        }
    }

    #[test]
    fn zero_delays_in_tests_mean_the_floor() {
        let p = PollPlan::new(
            &PollConfig {
                expected_analysis_secs: 0,
                min_interval_secs: 0,
                max_interval_secs: 1,
                max_analysis_age_secs: 60,
            },
            None,
        );
        assert_eq!(jittered(p.first_delay(), 0.0), MIN_DELAY);
        assert_eq!(jittered(p.interval_at(Duration::ZERO), 0.0), MIN_DELAY);
        assert_eq!(p.interval_at(S(30)), S(1));
        assert!(!p.timed_out(S(60)));
        assert!(p.timed_out(S(61)));
    }

    #[test]
    fn analysis_time_is_read_from_numbers_and_text() {
        let v = serde_json::json!({"analysis-time": 120});
        assert_eq!(analysis_time_of(Some(&v)), Some(120));
        let v = serde_json::json!({"analysis-time": " 90 "});
        assert_eq!(analysis_time_of(Some(&v)), Some(90));
        let v = serde_json::json!({"analysis-time": "soon"});
        assert_eq!(analysis_time_of(Some(&v)), None);
        assert_eq!(analysis_time_of(None), None);
    }
}
