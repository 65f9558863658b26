//! The storage node (issue 7): per-site logs of JSON entries with hybrid
//! logical clock timestamps, group commit in redb, gap-free watches,
//! transactions and trimming (`log`, `writer`, `ops`); its HTTP API
//! (`http`); log segments shipped to the object store so a node can be
//! rebuilt on an empty disk (`segments`); and the pieces run as one
//! (`run`), by `grove-storage` and by the proxy's embedded node.
//!
//! Behind the `node` feature: the `grove` CLI depends on this crate for
//! formats only and must not compile a database.

mod hlc;
mod http;
mod log;
mod ops;
mod run;
mod segments;
mod writer;

pub use hlc::{Clock, ClockError, MalformedTimestamp, Timestamp};
pub use http::{NodeApi, NodeLimits};
pub use log::{Entry, Log, LogError, LogStats, Page, WallClock, Watch};
pub use run::{NodeSettings, RunningNode};
pub use segments::{SegmentError, SegmentOptions, Shipper};
