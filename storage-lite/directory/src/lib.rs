//! Where each site's storage node is, kept in etcd, never in a home-made
//! consensus: the safety kernel of storage node failover.
//!
//! - `<prefix>nodes/<name>`: a live node's address and region, attached to
//!   the node's one lease, so it vanishes when the node stops renewing.
//! - `<prefix>sites/<site>`: the site's [`SiteRecord`]: primary, backup and
//!   the in-sync set. Its etcd revision is the site's [`SiteEpoch`], and
//!   every change is a compare-and-swap on it, so the epoch fences: a node
//!   acting on an old epoch cannot change the record, and learns it lost.
//!
//! [`rules`] holds the protocol's decisions as pure functions, shared by
//! the nodes and by the model checked in this crate's tests.

mod etcd;
mod mirror;
pub mod record;
pub mod rules;

pub use etcd::{DirectoryError, Etcd, EtcdSettings, Lease};
pub use mirror::{Mirror, Snapshot};
pub use record::{NodeInfo, Placed, SiteEpoch, SiteRecord};
