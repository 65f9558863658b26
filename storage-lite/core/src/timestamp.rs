//! Storage-node timestamps as a format: what clients send as `after` and
//! read back as `ts`, and what a request's seen-timestamp names. The clock
//! that issues them is the storage node's (`grove_node::Clock`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bits of a timestamp that count events within one millisecond.
const LOGICAL_BITS: u32 = 16;

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

#[cfg(test)]
mod tests {
    use super::*;

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
