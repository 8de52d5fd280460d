//! The simulator's clock: real monotonic time plus a virtual offset.
//!
//! Everything time-dependent (state progression, search lag, quota days, the `time` fields shown
//! to clients) reads this clock, so tests can jump forward with [`SimClock::advance`] instead of
//! sleeping. Wall-clock timestamps are derived from the same reading (wall time at start-up plus
//! simulated elapsed time), so an advance moves the displayed dates consistently too.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, TimeDelta};

/// A point on the simulated timeline: time elapsed since the simulator started, including every
/// virtual advance made before it was taken.
pub(crate) type SimInstant = Duration;

#[derive(Debug)]
pub(crate) struct SimClock {
    started: Instant,
    wall_at_start: DateTime<Local>,
    offset: Mutex<Duration>,
}

impl SimClock {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            wall_at_start: Local::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// The current simulated instant.
    pub(crate) fn now(&self) -> SimInstant {
        self.started.elapsed() + self.offset()
    }

    /// Total virtual time added so far.
    pub(crate) fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *offset = offset.saturating_add(by);
    }

    /// The wall-clock time corresponding to a simulated instant.
    pub(crate) fn wall(&self, at: SimInstant) -> DateTime<Local> {
        let delta = TimeDelta::from_std(at).unwrap_or(TimeDelta::MAX);
        self.wall_at_start
            .checked_add_signed(delta)
            .unwrap_or(self.wall_at_start)
    }

    pub(crate) fn wall_now(&self) -> DateTime<Local> {
        self.wall(self.now())
    }
}

/// `2026-11-28T21:03:04+01:00`: second precision and a numeric offset, as the real service sends.
pub(crate) fn iso8601(time: &DateTime<Local>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_both_the_instant_and_the_wall_time() {
        let clock = SimClock::new();
        let before = clock.now();
        let wall_before = clock.wall(before);
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now() >= before + Duration::from_secs(3600));
        let wall_after = clock.wall(clock.now());
        assert!(wall_after - wall_before >= TimeDelta::seconds(3600));
    }

    #[test]
    fn timestamps_have_seconds_and_a_numeric_offset() {
        let clock = SimClock::new();
        let text = iso8601(&clock.wall_now());
        // 2026-11-28T21:03:04+01:00
        assert_eq!(text.len(), 25, "{text}");
        assert_eq!(&text[10..11], "T");
        assert!(text[19..].starts_with('+') || text[19..].starts_with('-'));
        assert_eq!(&text[22..23], ":");
    }
}
