//! A site's history as records: each [`Version`] (`sites/<site>/versions/<n>`)
//! and the [`Root`] pointer that names the live one. The host writes them
//! (`grove_objects::site`); the CLI and the proxy read them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::hash::ContentHash;

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionKind {
    Publish,
    Rollback,
}

/// One entry of a site's history (`sites/<site>/versions/<n>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub n: u64,
    pub tree: ContentHash,
    /// `n - 1`, or `None` for the first version.
    pub parent: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub message: String,
    pub kind: VersionKind,
    /// For a rollback, the version whose tree it restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<u64>,
    /// Random per commit attempt: lets a committer recognise its own record
    /// when a retried create-only write reports that the record exists.
    pub commit_id: String,
}

/// The root pointer (`sites/<site>/root`). It is derived from the version it
/// names, so a committer and a helper write the same bytes, and it carries the
/// version number, so each write is unique (ETags are content hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    pub version: u64,
    pub tree: ContentHash,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&Version> for Root {
    fn from(version: &Version) -> Self {
        Self {
            version: version.n,
            tree: version.tree,
            created_at: version.created_at,
        }
    }
}
