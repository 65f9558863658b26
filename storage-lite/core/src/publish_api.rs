//! The publish protocol's messages, shared by the host (grove-proxy) and the
//! client (the `grove` CLI), so the two cannot drift apart.
//!
//! Every route is under [`PREFIX`] and takes a bearer token. The exchange:
//! 1. `POST sites/<site>/offer` [`Offer`] -> [`OfferReply`]: the live version
//!    and whether the host lacks the offered root node.
//! 2. `POST sites/<site>/probe` (a [tree node batch](encode_tree_node_batch)) ->
//!    [`ProbeReply`]: for the nodes the host lacked, which of their children
//!    and blobs it lacks too, with an [`UploadTarget`] per blob. Repeated one
//!    tree level down until nothing is missing. Probing stores nothing.
//! 3. The client uploads the blobs, then `POST sites/<site>/nodes` stores the
//!    nodes, leaves first. A node is stored only after everything under it, so
//!    a host that has a node has its whole subtree, and a rerun after an
//!    interruption walks down only to what is still missing.
//! 4. `POST sites/<site>/commit` [`CommitRequest`] -> [`Published`], or an
//!    `ApiError` (`api_error`) with code `conflict` (rebase and retry) or
//!    `missing_content` (upload its `missing_blobs`, then commit again).
//!
//! A host behind a CDN also queues a purge of what each new version changed;
//! `GET sites/<site>/purges/<n>` -> [`PurgeStatus`] follows it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::hash::ContentHash;
use crate::names::SiteName;
use crate::token::Right;
use crate::version::Version;

/// Path prefix of every publish API route.
pub const PREFIX: &str = "/_grove/api/publish/v1";

/// The host path a blob is uploaded to when the store has no presigned URLs.
pub fn host_upload_path(site: &SiteName, hash: &ContentHash) -> String {
    format!("{PREFIX}/sites/{site}/blobs/{hash}")
}

/// Step 1: the root of the tree the client built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    /// Root hash of the client's tree.
    pub root: ContentHash,
    /// Files in the tree, so a site over the host's limit is refused before
    /// anything is uploaded (the commit checks the tree itself).
    #[serde(default)]
    pub files: Option<u64>,
}

/// The host's answer to an [`Offer`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfferReply {
    /// The live version, which a commit of this offer builds on (0: none).
    pub parent: u64,
    /// The live version's tree.
    pub parent_root: Option<ContentHash>,
    /// The offered root, if the host lacks it; empty if it has the whole tree.
    pub missing_nodes: Vec<ContentHash>,
    /// Largest request body the host accepts: node batches must fit.
    #[serde(default)]
    pub max_request_bytes: Option<u64>,
}

/// Step 2: what the host lacks under the probed nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeReply {
    /// Children of the probed nodes that the host lacks: probe them next.
    pub missing_nodes: Vec<ContentHash>,
    /// Files of the probed leaves that the host lacks: upload them.
    pub missing_blobs: Vec<UploadTarget>,
}

/// Where to send one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadTarget {
    pub hash: ContentHash,
    pub size: u64,
    /// An absolute presigned URL (object store), or a path on the host, which
    /// takes the same bearer token as the rest of the API.
    pub url: String,
    /// Headers to send exactly as given (a presigned URL signs them).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

impl UploadTarget {
    /// True if the upload goes to the host rather than straight to the store.
    pub fn via_host(&self) -> bool {
        self.url.starts_with('/')
    }
}

/// Step 4: make the offered tree the next version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitRequest {
    /// Root hash of the tree to publish; its nodes must be stored.
    pub root: ContentHash,
    /// Describes the version in its history.
    #[serde(default)]
    pub message: String,
    /// Commit only on top of this version (0: only as the first version).
    pub parent: u64,
}

/// A new version, published or rolled back to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub site: String,
    pub version: u64,
    pub root: ContentHash,
    /// Files in the version.
    pub files: u64,
    pub url: String,
    pub preview_url: String,
    /// The CDN purge of what this version changed; `None` when the host
    /// purges no CDN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<PurgeState>,
    /// What `/sitemap.xml` serves for this version; `None` when the host
    /// could not tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sitemap: Option<SitemapSummary>,
}

/// A version's sitemap, as a publish reply reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SitemapSummary {
    /// Generated by the host: how many URLs, in how many files (more than
    /// one: a sitemap index and its parts).
    Generated { urls: u64, files: u64 },
    /// The site brings its own; the file's name.
    Own(String),
}

/// Where a version's CDN purge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeState {
    /// Queued or being sent.
    Pending,
    /// Every URL the version changed has been purged (or none needed it).
    Done,
    /// Dead-lettered after its attempts ran out; `error` says why.
    Failed,
}

/// The CDN purge of one version: what changed since the version before it,
/// and how sending it went. The host keeps it in the store
/// (`sites/<site>/purges/<n>`), so it outlives restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeStatus {
    pub version: u64,
    pub state: PurgeState,
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: OffsetDateTime,
    /// What to purge, once worked out from the tree diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PurgePlan>,
    /// How many of the plan's tags have been purged.
    #[serde(default)]
    pub sent: usize,
    /// Purge requests that carried part of this version.
    #[serde(default)]
    pub requests: u32,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last failure, kept after a retry succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<OffsetDateTime>,
}

/// What one version's purge covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgePlan {
    /// These cache tags.
    Tags(Vec<String>),
    /// Everything cached for these host names: the change was too large to
    /// purge tag by tag.
    Hosts(Vec<String>),
}

/// Make an earlier (or later) version's tree live again, as a new version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Default: the version before the live one.
    #[serde(default)]
    pub to: Option<u64>,
}

/// A page of a site's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionsReply {
    /// The live version.
    pub live: u64,
    /// Newest first.
    pub versions: Vec<Version>,
    /// Pass as `before` for the next (older) page.
    pub next_before: Option<u64>,
    /// CDN purges of the versions on this page that have one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purges: Vec<PurgeStatus>,
    /// Database-backed pages of the versions on this page whose last
    /// render failed (their last good page is served meanwhile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub render_failures: Vec<RenderFailure>,
}

/// A database-backed page whose last render failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderFailure {
    pub version: u64,
    /// The page's URL path.
    pub url: String,
    /// The template at fault, and the line (0 when it has none).
    pub template: String,
    pub line: usize,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Grant a token limited to `path`, `rights` and `until`, on the authority
/// of the bearer token (which must hold `grant` there).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRequest {
    /// Storage path the token is limited to: `sites/<site>` for one site.
    pub path: String,
    pub rights: Vec<Right>,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// A new token: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantReply {
    pub handle: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// Revoke a token, and with it every token granted through it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeRequest {
    pub handle: String,
}

/// A node batch is a sequence of `u32` big-endian lengths, each followed by
/// that many bytes of one encoded node.
pub fn encode_tree_node_batch<'a>(nodes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut batch = Vec::new();
    for node in nodes {
        let length = u32::try_from(node.len()).expect("nodes are far smaller than 4 GiB");
        batch.extend_from_slice(&length.to_be_bytes());
        batch.extend_from_slice(node);
    }
    batch
}

/// A node batch whose framing does not add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed node batch: a length prefix runs past the end of the body")]
pub struct BatchError;

/// Splits a node batch; any truncation is an error.
pub fn decode_tree_node_batch(mut batch: &[u8]) -> Result<Vec<&[u8]>, BatchError> {
    let mut nodes = Vec::new();
    while !batch.is_empty() {
        let (length, rest) = batch.split_first_chunk::<4>().ok_or(BatchError)?;
        let length = u32::from_be_bytes(*length) as usize;
        if rest.len() < length {
            return Err(BatchError);
        }
        let (node, rest) = rest.split_at(length);
        nodes.push(node);
        batch = rest;
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_batches_round_trip_and_refuse_truncation() {
        let nodes: [&[u8]; 3] = [b"one", b"", b"three"];
        let batch = encode_tree_node_batch(nodes);
        assert_eq!(decode_tree_node_batch(&batch).unwrap(), nodes);
        for cut in 1..batch.len() {
            let decoded = decode_tree_node_batch(&batch[..cut]);
            assert!(decoded.is_err() || decoded.unwrap().len() < 3, "cut at {cut}");
        }
        assert_eq!(decode_tree_node_batch(&batch[..batch.len() - 1]), Err(BatchError));
    }
}
