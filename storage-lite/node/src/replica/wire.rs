//! Replication's wire format: a backup pulls from a primary, naming for
//! each site the epoch it follows and how far it has made the primary's
//! history durable (its acknowledgement), and gets what follows.

use std::collections::BTreeMap;

use grove_core::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ops::Op;

/// The route a backup pulls from, on the primary's API listener.
pub const PULL_ROUTE: &str = "/v1/replica/pull";

/// What a backup asks of one site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Want {
    /// The site epoch the backup follows.
    pub(crate) epoch: i64,
    /// Everything of the site up to here is durable on the backup.
    pub(crate) after: Timestamp,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PullRequest {
    /// The backup's node name.
    pub(crate) node: String,
    pub(crate) sites: BTreeMap<String, Want>,
    /// How long the primary may hold the pull open when nothing is new.
    pub(crate) wait_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PullReply {
    /// Each site's operations after the backup's `after`, in order.
    pub(crate) ops: BTreeMap<String, Vec<Op>>,
    /// Sites this node will not ship to the caller in that epoch: it is
    /// not their primary there, or the caller is not their backup.
    pub(crate) refused: BTreeMap<String, String>,
}
