//! grove's storage node: per-site logs of JSON entries with hybrid
//! logical clock timestamps, group commit in redb, gap-free watches,
//! transactions and trimming (`log`, `writer`, `ops`); its HTTP API on
//! axum (`api`); log segments shipped to the object store so a node can be
//! rebuilt on an empty disk (`segments`); and the pieces run as one
//! (`run`), by `grove-storage` and by the proxy's embedded node.
//!
//! The node owns the dynamic side of a site; the `grove` CLI never depends on
//! this crate, so it compiles no database or HTTP server.

mod api;
mod hlc;
mod log;
pub mod logging;
mod metrics;
mod ops;
mod replica;
mod run;
mod segments;
mod types;
mod visibility;
mod writer;

pub use api::{NodeApi, NodeLimits};
pub use hlc::{Clock, ClockError};
pub use log::{Changes, Log, Watch};
pub use replica::{Replica, ReplicaSettings, ReplicaStats, SiteRole};
pub use run::{NodeSettings, RunningNode};
pub use segments::{SegmentError, SegmentOptions, Shipper};
pub use types::{Entry, LogError, LogStats, Page, WallClock};
pub use visibility::Visibility;
