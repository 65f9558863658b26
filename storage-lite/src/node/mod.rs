//! The storage node (issue 7), built up in parts. So far: the ordered,
//! durable per-path log with hybrid-logical-clock timestamps, group commit,
//! gap-free watches and trimming. The HTTP API, segment shipping and the
//! proxy's embedding come next.
//!
//! Behind the `node` feature: the `grove` CLI depends on this crate for
//! formats only and must not compile a database.

mod hlc;
mod log;

pub use hlc::{Clock, ClockError, Timestamp};
pub use log::{Entry, Log, LogError, LogStats, Page, WallClock, Watch};
