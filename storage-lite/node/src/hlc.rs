//! Hybrid logical clock timestamps: strictly increasing, close to wall-clock
//! time, and never going backwards across a restart.

use grove_core::timestamp::Timestamp;

/// How far ahead of the timestamps issued the persisted bound is kept: a
/// restarted node starts above the bound, so it may skip up to this much
/// time, and the bound is rewritten at most this often.
pub const BOUND_AHEAD_MS: u64 = 1_000;

/// An `after` further than this beyond the node's wall clock is refused
/// rather than waited for.
pub const MAX_FUTURE_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("timestamp {after} was never issued by this node (the latest is {latest})")]
    NeverIssued { after: Timestamp, latest: Timestamp },
    #[error("timestamp {after} is more than {MAX_FUTURE_MS} ms ahead of this node's clock")]
    TooFarAhead { after: Timestamp },
}

/// The node's clock: issues strictly increasing timestamps.
#[derive(Debug, Clone)]
pub struct Clock {
    last: Timestamp,
}

impl Clock {
    /// A clock above every timestamp issued before a restart: all of them
    /// were below the persisted `bound_ms`.
    pub fn resume(bound_ms: u64) -> Self {
        Self {
            last: Timestamp::at_ms(bound_ms),
        }
    }

    /// The latest timestamp issued.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// The next timestamp, above the last one, above `after`, and at least
    /// the wall clock `now_ms`. `after` must be one this node issued.
    pub fn next(&mut self, now_ms: u64, after: Timestamp) -> Result<Timestamp, ClockError> {
        if after.physical_ms() > now_ms.saturating_add(MAX_FUTURE_MS) {
            return Err(ClockError::TooFarAhead { after });
        }
        if after > self.last {
            return Err(ClockError::NeverIssued {
                after,
                latest: self.last,
            });
        }
        let next = Timestamp::at_ms(now_ms).max(Timestamp::from_u64(self.last.as_u64() + 1));
        self.last = next;
        Ok(next)
    }

    /// Moves the clock up to `ts`, issued by an earlier incarnation of this
    /// node (a rebuild replays them), so what it issues next is above it.
    pub fn witness(&mut self, ts: Timestamp) {
        self.last = self.last.max(ts);
    }

    /// The bound to persist before `issued` is acknowledged, if the one
    /// persisted (`bound_ms`) no longer covers it.
    pub fn bound_for(issued: Timestamp, bound_ms: u64) -> Option<u64> {
        (issued.physical_ms() >= bound_ms).then(|| issued.physical_ms() + BOUND_AHEAD_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_even_when_the_wall_clock_stalls_or_goes_back() {
        let mut clock = Clock::resume(0);
        let first = clock.next(1_000, Timestamp::ZERO).unwrap();
        assert_eq!(first, Timestamp::at_ms(1_000));
        let second = clock.next(1_000, Timestamp::ZERO).unwrap();
        let third = clock.next(900, first).unwrap();
        assert!(first < second && second < third);
        assert_eq!(third.physical_ms(), 1_000);
        assert_eq!(clock.next(2_000, third).unwrap(), Timestamp::at_ms(2_000));
    }

    #[test]
    fn after_must_be_issued_and_not_far_ahead() {
        let mut clock = Clock::resume(0);
        let issued = clock.next(5_000, Timestamp::ZERO).unwrap();
        let unissued = Timestamp::from_u64(issued.as_u64() + 1);
        assert!(matches!(
            clock.next(5_000, unissued),
            Err(ClockError::NeverIssued { .. })
        ));
        let ahead = Timestamp::at_ms(5_000 + MAX_FUTURE_MS + 1);
        assert!(matches!(clock.next(5_000, ahead), Err(ClockError::TooFarAhead { .. })));
        assert!(clock.next(5_000, issued).unwrap() > issued);
    }

    #[test]
    fn a_resumed_clock_starts_above_its_bound_and_bounds_advance_ahead() {
        let mut clock = Clock::resume(10_000);
        assert!(clock.next(3_000, Timestamp::ZERO).unwrap() > Timestamp::at_ms(10_000));
        assert_eq!(Clock::bound_for(Timestamp::at_ms(9_999), 10_000), None);
        assert_eq!(Clock::bound_for(Timestamp::at_ms(10_000), 10_000), Some(11_000));
    }
}
