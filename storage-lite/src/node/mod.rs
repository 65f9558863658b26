//! The storage node (issue 7), built up in parts. So far: the ordered,
//! durable per-path log with hybrid-logical-clock timestamps, group commit,
//! gap-free watches and trimming, and its HTTP API. Segment shipping, the
//! standalone binary and the proxy's embedding come next.
//!
//! Behind the `node` feature: the `grove` CLI depends on this crate for
//! formats only and must not compile a database.

mod hlc;
mod http;
mod log;

pub use hlc::{Clock, ClockError, MalformedTimestamp, Timestamp};
pub use http::{NodeApi, NodeLimits};
pub use log::{Entry, Log, LogError, LogStats, Page, WallClock, Watch};
