//! The token bucket that keeps purge requests within the CDN's rate limit.
//! Its state is kept in the store with the sender's lease, so a restart or a
//! change of sender does not hand out a fresh burst.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How fast requests may be sent: `per_minute` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

/// Milliseconds in a minute: one token is this many units, so a rate of
/// `per_minute` tokens refills exactly `per_minute` units a millisecond and
/// all the arithmetic is in integers.
const UNITS_PER_TOKEN: u64 = 60_000;

/// Tokens left at a moment (wall-clock milliseconds, so that any process
/// can carry on from the stored state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    units: u64,
    at_ms: u64,
}

impl TokenBucket {
    pub fn full(rate: Rate, now_ms: u64) -> Self {
        Self {
            units: u64::from(rate.burst.max(1)) * UNITS_PER_TOKEN,
            at_ms: now_ms,
        }
    }

    /// Takes one token, or says how long until one is there. A clock that
    /// went backwards refills nothing.
    pub fn take(&mut self, rate: Rate, now_ms: u64) -> Result<(), Duration> {
        let per_ms = u64::from(rate.per_minute.max(1));
        let capacity = u64::from(rate.burst.max(1)) * UNITS_PER_TOKEN;
        let refill = now_ms.saturating_sub(self.at_ms).saturating_mul(per_ms);
        self.units = self.units.saturating_add(refill).min(capacity);
        let held_off = self.at_ms.saturating_sub(now_ms);
        self.at_ms = self.at_ms.max(now_ms);
        if self.units >= UNITS_PER_TOKEN {
            self.units -= UNITS_PER_TOKEN;
            Ok(())
        } else {
            Err(Duration::from_millis(
                held_off + (UNITS_PER_TOKEN - self.units).div_ceil(per_ms),
            ))
        }
    }

    /// After a 429: nothing is sent for `wait`, and the burst is spent.
    pub fn hold_off(&mut self, now_ms: u64, wait: Duration) {
        self.units = 0;
        self.at_ms = self
            .at_ms
            .max(now_ms + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    }

    /// Called when a request's answer arrives: the server took its token at
    /// some moment between sending and now, so refill counts from now, and
    /// this bucket never runs ahead of the server's.
    pub fn settle(&mut self, now_ms: u64) {
        self.at_ms = self.at_ms.max(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_average_rate() {
        let rate = Rate {
            per_minute: 5,
            burst: 25,
        };
        let mut bucket = TokenBucket::full(rate, 1_000);
        for _ in 0..25 {
            bucket.take(rate, 1_000).unwrap();
        }
        assert_eq!(bucket.take(rate, 1_000), Err(Duration::from_secs(12)));
        assert_eq!(bucket.take(rate, 7_000), Err(Duration::from_secs(6)));
        bucket.take(rate, 13_000).unwrap();
        // An hour idle refills the burst, no more.
        let later = 13_000 + 3_600_000;
        for _ in 0..25 {
            bucket.take(rate, later).unwrap();
        }
        assert!(bucket.take(rate, later).is_err());
        // A clock that went backwards neither refills nor panics.
        assert!(bucket.take(rate, 0).is_err());
        // Time a request spent in flight refills nothing.
        let mut bucket = TokenBucket::full(rate, 0);
        bucket.take(rate, 0).unwrap();
        bucket.settle(12_000);
        for _ in 0..24 {
            bucket.take(rate, 12_000).unwrap();
        }
        assert_eq!(bucket.take(rate, 12_000), Err(Duration::from_secs(12)));
        // A 429's Retry-After empties the bucket and holds it off.
        let mut bucket = TokenBucket::full(rate, 0);
        bucket.hold_off(1_000, Duration::from_secs(30));
        assert_eq!(bucket.take(rate, 1_000), Err(Duration::from_secs(42)));
        bucket.take(rate, 43_000).unwrap();
    }
}
