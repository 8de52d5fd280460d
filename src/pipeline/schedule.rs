//! The adaptive poll schedule (pure functions, unit-tested).
//!
//! `E` is the expected analysis time. How far the schedule trusts it depends on where it came
//! from ([`Expectation`]):
//!
//! * **Known** — the item's `analysis-time` parameter (or the one in `submission.params`). The
//!   sandbox runs the sample that long, so nothing finishes much earlier and most analyses
//!   finish soon after (report generation). The first poll comes at `0.9 × E`; then every
//!   `base = 0.1 × E` until the submission is `2 × E` old. Past that the analysis has overrun
//!   its own time and the interval grows by ×1.15 per poll. The schedule is stateless: a
//!   series of intervals `base·1.15^k` has covered `base·(1.15^k − 1) / 0.15` seconds after `k`
//!   polls, so the interval at age `t` past `2E` is `base + 0.15·(t − 2E)` (below 15 % of `t`).
//! * **Guessed** — only `poll.expected_analysis_secs`, a typical time rather than this
//!   analysis's, so the schedule searches: the first poll comes at `E / 4` (45 s for the default
//!   180 s); after that the interval at age `t` is `0.15 × t`, i.e. each poll comes at 1.15 ×
//!   the age of the one before. An analysis of true duration `d ≥ E / 4` is therefore noticed
//!   less than `max(0.15 × d, poll.min_interval_secs)` after it ends (the poll before its end
//!   was younger than `d`), for about `1 + ln(4d / E) / ln 1.15` calls. Shorter analyses are
//!   noticed at the first poll.
//! * Either way every interval is clamped to `[poll.min_interval_secs,
//!   poll.max_interval_secs]` (the maximum wins if they cross), every delay gets ±10 % jitter
//!   and a floor of 100 ms, and a submission older than `poll.max_analysis_age_secs` is
//!   `failed: timed out`.
//!
//! Benchmark P5 (`benches/figures.rs`) models this schedule over analyses of 60–600 s.

use std::time::Duration;

use super::classify::MIN_DELAY;
use crate::config::PollConfig;

/// First poll of a known analysis time, as a fraction of it.
const KNOWN_FIRST: f64 = 0.9;
/// Steady interval of a known analysis time, as a fraction of it.
const KNOWN_STEP: f64 = 0.1;
/// First poll of a guessed analysis time, as a fraction of it.
const GUESSED_FIRST: f64 = 0.25;
/// Geometric growth: each interval is this fraction of the age (guessed), or grows by it per
/// poll (known, past `2E`). It bounds the notice delay relative to the analysis's duration.
const GROWTH: f64 = 0.15;

/// Where the expected analysis time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// The submission's own `analysis-time`: polls cluster just before and after it.
    Known,
    /// Only the configured default: polls spread geometrically over the submission's age.
    Guessed,
}

/// The schedule of one item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPlan {
    pub expected: Duration,
    pub expectation: Expectation,
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub max_age: Duration,
}

impl PollPlan {
    /// The plan for an item whose submission asked for `analysis_time` seconds (if it did).
    pub fn new(config: &PollConfig, analysis_time: Option<u64>) -> Self {
        let (expected, expectation) = match analysis_time {
            Some(secs) => (secs, Expectation::Known),
            None => (config.expected_analysis_secs, Expectation::Guessed),
        };
        Self {
            expected: Duration::from_secs(expected),
            expectation,
            min_interval: Duration::from_secs(config.min_interval_secs),
            max_interval: Duration::from_secs(config.max_interval_secs),
            max_age: Duration::from_secs(config.max_analysis_age_secs),
        }
    }

    /// Delay from the submission to the first poll, before jitter.
    pub fn first_delay(&self) -> Duration {
        match self.expectation {
            Expectation::Known => self.expected.mul_f64(KNOWN_FIRST),
            Expectation::Guessed => self.expected.mul_f64(GUESSED_FIRST),
        }
    }

    /// Delay before the next poll of a submission that is `age` old, before jitter.
    pub fn interval_at(&self, age: Duration) -> Duration {
        let interval = match self.expectation {
            Expectation::Known => {
                let overrun = age.saturating_sub(self.expected.saturating_mul(2));
                self.expected
                    .mul_f64(KNOWN_STEP)
                    .saturating_add(overrun.mul_f64(GROWTH))
            }
            Expectation::Guessed => age.mul_f64(GROWTH),
        };
        // `clamp` panics when min > max; a config with max < min means "max wins".
        interval.max(self.min_interval).min(self.max_interval)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(expected: u64) -> PollConfig {
        PollConfig {
            expected_analysis_secs: expected,
            min_interval_secs: 5,
            max_interval_secs: 600,
            max_analysis_age_secs: 24 * 3600,
        }
    }

    /// The plan when only the configured default `expected` is known.
    fn guessed(expected: u64) -> PollPlan {
        PollPlan::new(&config(expected), None)
    }

    /// The plan for a submission that set `analysis-time = secs`.
    fn known(secs: u64) -> PollPlan {
        PollPlan::new(&config(180), Some(secs))
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    /// Polls (without jitter) until one sees an analysis of `duration` seconds finished: the
    /// number of polls and the notice delay in seconds.
    fn notice(plan: &PollPlan, duration: f64) -> (u32, f64) {
        let mut age = plan.first_delay().as_secs_f64();
        let mut polls = 1;
        while age < duration {
            age += plan.interval_at(Duration::from_secs_f64(age)).as_secs_f64();
            polls += 1;
        }
        (polls, age - duration)
    }

    fn close(a: Duration, b: Duration) -> bool {
        (a.as_secs_f64() - b.as_secs_f64()).abs() < 1e-6
    }

    #[test]
    fn the_expectation_is_known_only_when_the_submission_sets_an_analysis_time() {
        assert_eq!(known(60).expectation, Expectation::Known);
        assert_eq!(known(60).expected, S(60));
        assert_eq!(guessed(180).expectation, Expectation::Guessed);
        assert_eq!(guessed(180).expected, S(180));
    }

    #[test]
    fn a_known_analysis_time_is_polled_first_at_nine_tenths_of_it() {
        assert_eq!(known(200).first_delay(), S(180));
        assert_eq!(known(60).first_delay(), S(54));
    }

    #[test]
    fn a_known_analysis_time_is_polled_every_tenth_of_it_until_twice_its_length() {
        assert_eq!(known(200).interval_at(S(180)), S(20));
        assert_eq!(known(200).interval_at(S(400)), S(20));
        assert_eq!(known(20).interval_at(S(30)), S(5));
        assert_eq!(known(100_000).interval_at(S(100_000)), S(600));
        // An analysis that ends on time is seen by the second poll, at once.
        assert_eq!(notice(&known(200), 200.0), (2, 0.0));
    }

    #[test]
    fn polls_of_a_known_analysis_time_slow_down_by_fifteen_percent_per_poll_past_twice_its_length()
    {
        let p = known(200);
        // 40 s past 2E: base + 6 s.
        assert_eq!(p.interval_at(S(440)), S(26));
        // The closed form equals ×1.15 per poll: after polls at 400+20, +23, +26.45 ...
        let mut age = S(400);
        let mut interval = S(20);
        for _ in 0..6 {
            age += interval;
            interval = interval.mul_f64(1.15);
            let closed = p.interval_at(age);
            assert!(close(closed, interval), "{closed:?} vs {interval:?}");
        }
        assert_eq!(p.interval_at(S(100_000)), S(600));
    }

    #[test]
    fn a_guessed_expectation_is_polled_first_at_a_quarter_of_it() {
        assert_eq!(guessed(180).first_delay(), S(45));
        assert_eq!(guessed(600).first_delay(), S(150));
    }

    #[test]
    fn a_guessed_expectation_polls_at_fifteen_percent_of_the_age_within_the_bounds() {
        let p = guessed(180);
        assert_eq!(p.interval_at(S(100)), S(15));
        assert_eq!(p.interval_at(S(45)), Duration::from_millis(6750));
        assert_eq!(p.interval_at(S(20)), S(5));
        assert_eq!(p.interval_at(S(10_000)), S(600));
        // Each poll comes 15 % later than the one before.
        let mut age = p.first_delay();
        for _ in 0..10 {
            let next = age + p.interval_at(age);
            assert!(close(next, age.mul_f64(1.15)), "{next:?} after {age:?}");
            age = next;
        }
    }

    #[test]
    fn a_guessed_expectation_never_delays_notice_by_more_than_15_percent_for_analyses_between_60_and_600_s()
     {
        let p = guessed(180);
        for d in 60..=600 {
            let (_, delay) = notice(&p, d as f64);
            assert!(delay <= 0.15 * d as f64 + 1e-6, "{d} s: {delay} s late");
        }
    }

    #[test]
    fn between_60_and_600_s_every_expectation_costs_under_half_the_calls_of_10_s_polling_and_under_10_percent_delay()
     {
        type Expect = fn(u64) -> Option<u64>;
        let scenarios: [Expect; 3] = [Some, |d| Some(d * 10 / 13), |_| None];
        for expect in scenarios {
            let (mut calls, mut fixed_calls, mut relative_delay) = (0.0, 0.0, 0.0);
            for d in 60..=600u64 {
                let (polls, delay) = notice(&PollPlan::new(&config(180), expect(d)), d as f64);
                calls += f64::from(polls);
                fixed_calls += (d as f64 / 10.0).ceil();
                relative_delay += delay / d as f64;
            }
            let mean_delay = relative_delay / 541.0;
            assert!(calls <= 0.5 * fixed_calls, "{calls} vs {fixed_calls} calls");
            assert!(mean_delay <= 0.10, "mean delay {mean_delay}");
        }
    }

    #[test]
    fn a_short_analysis_under_a_guessed_expectation_is_noticed_at_the_first_poll() {
        assert_eq!(notice(&guessed(180), 30.0), (1, 15.0));
    }

    #[test]
    fn an_analysis_that_never_finishes_is_polled_at_the_maximum_interval_until_the_timeout() {
        for p in [guessed(180), known(180)] {
            let (polls, _) = notice(&p, p.max_age.as_secs_f64());
            // About 24 h / 10 min at the cap, plus the ramp up to it.
            assert!(
                (144..=190).contains(&polls),
                "{:?}: {polls} polls",
                p.expectation
            );
            assert_eq!(p.interval_at(S(5000)), S(600));
            assert!(p.timed_out(p.max_age + S(1)));
        }
    }

    #[test]
    fn a_maximum_below_the_minimum_wins() {
        let p = PollPlan::new(
            &PollConfig {
                min_interval_secs: 60,
                max_interval_secs: 30,
                ..config(180)
            },
            None,
        );
        assert_eq!(p.interval_at(S(100)), S(30));
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
}
