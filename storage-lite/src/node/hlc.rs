//! Hybrid logical clock timestamps: strictly increasing, close to wall-clock
//! time, and never going backwards across a restart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bits of a timestamp that count events within one millisecond.
const LOGICAL_BITS: u32 = 16;

/// How far ahead of the timestamps issued the persisted bound is kept: a
/// restarted node starts above the bound, so it may skip up to this much
/// time, and the bound is rewritten at most this often.
pub const BOUND_AHEAD_MS: u64 = 1_000;

/// An `after` further than this beyond the node's wall clock is refused
/// rather than waited for.
pub const MAX_FUTURE_MS: u64 = 60_000;

/// Milliseconds since the Unix epoch in the high 48 bits, a counter of
/// events within that millisecond in the low 16. Ordered as a `u64`. In
/// JSON it is a decimal string: it does not fit in a JavaScript number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Before every timestamp: `after=0` reads from the start.
    pub const ZERO: Self = Self(0);

    pub fn from_u64(value: u64) -> Self {
        Self(value)
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The first timestamp of millisecond `ms`.
    pub fn at_ms(ms: u64) -> Self {
        Self(ms << LOGICAL_BITS)
    }

    pub fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a timestamp is a decimal number, not {0:?}")]
pub struct MalformedTimestamp(String);

impl FromStr for Timestamp {
    type Err = MalformedTimestamp;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(MalformedTimestamp(text.chars().take(40).collect()));
        }
        text.parse()
            .map(Self)
            .map_err(|_| MalformedTimestamp(text.chars().take(40).collect()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

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
        let next = Timestamp::at_ms(now_ms).max(Timestamp(self.last.0 + 1));
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

    #[test]
    fn json_carries_decimal_strings() {
        let ts = Timestamp::from_u64(u64::MAX);
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(json, "\"18446744073709551615\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        for bad in ["\"-1\"", "\"1e3\"", "\"\"", "\"18446744073709551616\"", "12"] {
            assert!(serde_json::from_str::<Timestamp>(bad).is_err(), "{bad}");
        }
    }
}
