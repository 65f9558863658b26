//! The records the directory holds.

use grove_core::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// A site's epoch: the etcd revision of its record's last change. Every
/// node that acts for a site names the epoch it acts in; a higher one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SiteEpoch(pub i64);

impl std::fmt::Display for SiteEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Who serves a site's log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SiteRecord {
    /// The node that orders the site's writes.
    pub primary: String,
    /// The node the primary ships its log to, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The nodes holding every acknowledged write: the primary, and the
    /// backup while the primary waits for it. Only these may be promoted.
    pub in_sync: Vec<String>,
    /// The site's latest timestamp on the primary when it took over (zero
    /// for a first primary). A former primary drops what it wrote past
    /// this: the new primary never held it, and nobody saw it.
    #[serde(default)]
    pub adopted: Timestamp,
}

/// A record with the epoch it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub record: SiteRecord,
    pub epoch: SiteEpoch,
}

/// A live node, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` its API (and replication) listens on.
    pub address: String,
    /// Where it runs; a site's backup is chosen in another region.
    pub region: String,
}
