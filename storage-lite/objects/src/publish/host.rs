//! The host's half of the publish protocol (see [`grove_core::publish_api`]):
//! negotiating what to upload, accepting uploads and verifying a tree before
//! it becomes a version. Independent of HTTP, which the proxy adds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use grove_core::hash::ContentHash;
use grove_core::names::SiteName;
use grove_core::publish_api::{self, BatchError, CommitRequest, Offer, OfferReply, ProbeReply, UploadTarget};
use grove_core::tree::{DecodeError, Difference, Entry, TreeError, TreeNode, TreeNodeError, Trees};
use grove_core::version::Version;

use crate::content::{ContentError, ContentStore};
use crate::site::{Commit, SiteError, Sites};
use crate::store::{ObjectStore, StoreError};

/// Store requests in flight at once for one negotiation step.
const CHECK_CONCURRENCY: usize = 64;
/// Blobs verified at once during a commit.
const VERIFY_CONCURRENCY: usize = 16;
/// How long a presigned upload URL stays valid.
const PRESIGN_TTL: Duration = Duration::from_secs(3600);

/// Limits on what one site may publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishLimits {
    /// Largest file, in bytes.
    pub max_file_bytes: u64,
    /// Most files in one version.
    pub max_files_per_site: u64,
}

/// Which of the [`PublishLimits`] a publish exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    FileBytes,
    FilesPerSite,
}

impl Limit {
    /// The configuration key, as operators write it.
    pub fn key(self) -> &'static str {
        match self {
            Self::FileBytes => "publish.max_file_bytes",
            Self::FilesPerSite => "publish.max_files_per_site",
        }
    }
}

/// Why a publish step was refused or failed. Only [`PublishError::Store`],
/// [`PublishError::Content`] and some [`PublishError::Site`] errors are worth
/// retrying; every other one changes nothing and will fail again.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{message} (limit {} = {value})", .limit.key())]
    Limit { limit: Limit, value: u64, message: String },
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("tree node {hash} is malformed: {source}")]
    BadNode {
        hash: ContentHash,
        #[source]
        source: DecodeError,
    },
    #[error("the uploaded bytes hash to {actual}, not to {expected}; nothing was stored")]
    HashMismatch { expected: ContentHash, actual: ContentHash },
    #[error("the tree is incomplete on the host ({0}); store its nodes before committing")]
    IncompleteTree(#[source] TreeError),
    #[error("the tree on the host is malformed: {0}")]
    MalformedTree(#[source] TreeError),
    /// A tree node refers to a child that is neither in its batch nor stored.
    #[error("tree node {node} refers to child {child}, which the host does not have; store children first")]
    ChildMissing { node: ContentHash, child: ContentHash },
    #[error("{0}")]
    Invalid(String),
    #[error("{} file(s) are missing on the host or were corrupt; upload them and commit again", .0.len())]
    MissingContent(Vec<UploadTarget>),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Site(Box<SiteError>),
    #[error(transparent)]
    Tree(TreeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Content(#[from] ContentError),
}

impl From<SiteError> for PublishError {
    fn from(error: SiteError) -> Self {
        Self::Site(Box::new(error))
    }
}

impl From<TreeError> for PublishError {
    fn from(error: TreeError) -> Self {
        match error {
            TreeError::Load { ref source, .. } if source.is_not_found() => Self::IncompleteTree(error),
            TreeError::Load {
                source: TreeNodeError::Corrupt { .. },
                ..
            }
            | TreeError::Decode { .. }
            | TreeError::Structure { .. } => Self::MalformedTree(error),
            other => Self::Tree(other),
        }
    }
}

/// A verified commit.
#[derive(Debug, Clone)]
pub struct Committed {
    pub version: Version,
    /// Files in the version.
    pub files: u64,
}

/// Runs the host side of publishing against one store.
#[derive(Debug, Clone)]
pub struct PublishHost {
    blobs: ContentStore,
    nodes: ContentStore,
    trees: Trees,
    sites: Sites,
    limits: PublishLimits,
}

impl PublishHost {
    /// `trees` should be the host's shared tree cache: commits read every
    /// node of the tree they verify.
    pub fn new(store: Arc<dyn ObjectStore>, trees: Trees, limits: PublishLimits) -> Self {
        Self {
            blobs: ContentStore::blobs(Arc::clone(&store)),
            nodes: ContentStore::trees(Arc::clone(&store)),
            sites: Sites::new(store, trees.clone()),
            trees,
            limits,
        }
    }

    /// Versions and roots, for the routes that only read them.
    pub fn sites(&self) -> &Sites {
        &self.sites
    }

    /// Step 1: the live version, and whether the host lacks `root`.
    pub async fn offer(&self, site: &SiteName, offer: &Offer) -> Result<OfferReply, PublishError> {
        if let Some(files) = offer.files {
            self.check_file_count(files)?;
        }
        let root = &offer.root;
        let live = self.sites.root(site).await?.map(|(root, _)| root);
        let missing_nodes = if self.nodes.contains(root).await? {
            Vec::new()
        } else {
            vec![*root]
        };
        Ok(OfferReply {
            parent: live.as_ref().map_or(0, |root| root.version),
            parent_root: live.map(|root| root.tree),
            missing_nodes,
            max_request_bytes: None,
        })
    }

    /// Step 2: decodes the nodes in `batch` and answers which of their
    /// children and blobs the host lacks. Stores nothing.
    pub async fn probe(&self, site: &SiteName, batch: &[u8]) -> Result<ProbeReply, PublishError> {
        let mut children = HashSet::new();
        let mut files: Vec<Entry> = Vec::new();
        for bytes in publish_api::decode_tree_node_batch(batch)? {
            match decode(bytes)? {
                (_, TreeNode::Interior { children: refs, .. }) => {
                    children.extend(refs.into_iter().map(|child| child.hash))
                }
                (_, TreeNode::Leaf(entries)) => files.extend(entries),
            }
        }
        let files = self.distinct_within_limit(files)?;
        let missing_nodes = keep_concurrently(
            children
                .into_iter()
                .map(|hash| async move { Ok((hash, !self.nodes.contains(&hash).await?)) }),
            CHECK_CONCURRENCY,
        )
        .await?;
        let missing_blobs = keep_concurrently(
            files.into_iter().map(|entry| async move {
                let missing = !self.blobs.contains(&entry.hash).await?;
                Ok((entry, missing))
            }),
            CHECK_CONCURRENCY,
        )
        .await?;
        Ok(ProbeReply {
            missing_nodes,
            missing_blobs: self.upload_targets(site, missing_blobs).await?,
        })
    }

    /// Step 3b: stores the nodes of `batch`, each checked to decode and, for
    /// an interior node, to have every child in the batch or already stored.
    /// So a stored node always has its whole tree of nodes below it, which is
    /// what lets [`Self::offer`] and [`Self::probe`] stop at nodes the host
    /// has. Returns how many nodes were stored.
    pub async fn store_tree_nodes(&self, batch: &[u8]) -> Result<usize, PublishError> {
        let mut nodes = Vec::new();
        let mut children = Vec::new();
        for bytes in publish_api::decode_tree_node_batch(batch)? {
            let (hash, node) = decode(bytes)?;
            let level = node.level();
            if let TreeNode::Interior { children: refs, .. } = node {
                children.extend(refs.into_iter().map(|child| (hash, child.hash)));
            }
            nodes.push((level, hash, Bytes::copy_from_slice(bytes)));
        }
        let in_batch: HashSet<ContentHash> = nodes.iter().map(|(_, hash, _)| *hash).collect();
        children.retain(|(_, child)| !in_batch.contains(child));
        let absent = keep_concurrently(
            children.into_iter().map(|(node, child)| async move {
                let missing = !self.nodes.contains(&child).await?;
                Ok(((node, child), missing))
            }),
            CHECK_CONCURRENCY,
        )
        .await?;
        if let Some(&(node, child)) = absent.first() {
            return Err(PublishError::ChildMissing { node, child });
        }
        // Level by level from the leaves, so that even a batch cut short by a
        // failure leaves no node stored without its children.
        let count = nodes.len();
        nodes.sort_by_key(|(level, _, _)| *level);
        for level in nodes.chunk_by(|a, b| a.0 == b.0) {
            let level: Vec<Bytes> = level.iter().map(|(_, _, bytes)| bytes.clone()).collect();
            futures::stream::iter(level)
                .map(|bytes| self.nodes.put(bytes))
                .buffer_unordered(CHECK_CONCURRENCY)
                .try_collect::<Vec<_>>()
                .await?;
        }
        Ok(count)
    }

    /// Step 3a, for stores without presigned URLs: keeps `bytes` as blob
    /// `expected`, or nothing if they hash to anything else. The write
    /// replaces whatever is stored under that hash: the bytes are verified,
    /// so this is how a corrupt object found at commit gets repaired.
    pub async fn upload_blob(&self, expected: &ContentHash, bytes: Bytes) -> Result<(), PublishError> {
        if bytes.len() as u64 > self.limits.max_file_bytes {
            return Err(self.too_large(format!("the file is {} bytes", bytes.len())));
        }
        let actual = ContentHash::of(&bytes);
        if actual != *expected {
            return Err(PublishError::HashMismatch {
                expected: *expected,
                actual,
            });
        }
        self.blobs.replace(bytes).await?;
        Ok(())
    }

    /// Step 4: checks that the whole tree `request.root` is on the host and
    /// that every file new since the live version hashes right, then commits
    /// it on top of `request.parent`.
    ///
    /// Files of the live version were verified when it was committed, and
    /// content-addressed objects never change, so only the difference is
    /// read: a small change to a large site costs little.
    pub async fn commit(&self, site: &SiteName, request: CommitRequest) -> Result<Committed, PublishError> {
        let live = self.sites.root(site).await?.map(|(root, _)| root);
        let current = live.as_ref().map_or(0, |root| root.version);
        if current != request.parent {
            return Err(SiteError::Conflict {
                site: site.clone(),
                expected: request.parent,
                current,
            }
            .into());
        }
        let entries = self.trees.entries(&request.root).await?;
        let files = entries.len() as u64;
        self.check_file_count(files)?;
        let fresh: Vec<Entry> = match live {
            Some(live) => self
                .trees
                .diff(&live.tree, &request.root)
                .await?
                .into_iter()
                .filter_map(|difference| match difference {
                    Difference::Added(entry) | Difference::Changed { new: entry, .. } => Some(entry),
                    Difference::Removed(_) => None,
                })
                .collect(),
            None => entries,
        };
        self.verify_files(site, fresh).await?;
        let version = self
            .sites
            .commit(
                site,
                Commit {
                    tree: request.root,
                    message: request.message,
                    expected_parent: Some(request.parent),
                },
            )
            .await?;
        Ok(Committed { version, files })
    }

    /// A new version with the tree of version `to`; by default the version
    /// before the live one. Rolling forward is rolling back to a later version.
    pub async fn rollback(&self, site: &SiteName, to: Option<u64>) -> Result<Committed, PublishError> {
        let live = self
            .sites
            .root(site)
            .await?
            .map(|(root, _)| root.version)
            .ok_or_else(|| SiteError::NoVersions { site: site.clone() })?;
        let to = match to {
            Some(n) if (1..=live).contains(&n) => n,
            Some(n) => return Err(SiteError::UnknownVersion { site: site.clone(), n }.into()),
            None if live > 1 => live - 1,
            None => {
                return Err(PublishError::Invalid(format!(
                    "site {site} has only one version: there is nothing to roll back to"
                )));
            }
        };
        let version = self.sites.rollback(site, to, Some(live)).await?;
        let files = self.trees.entries(&version.tree).await?.len() as u64;
        Ok(Committed { version, files })
    }

    /// A stored tree node, for a client comparing its tree with the host's.
    pub async fn tree_node_bytes(&self, hash: &ContentHash) -> Result<Bytes, PublishError> {
        match self.nodes.get(hash).await {
            Ok(bytes) => Ok(bytes),
            Err(error) if error.is_not_found() => Err(PublishError::NotFound(format!("no tree node {hash}"))),
            Err(error) => Err(error.into()),
        }
    }

    /// Verifies every file's blob and reports every missing or corrupt one
    /// with an upload target. Nothing is deleted here: a corrupt object is
    /// replaced by the verified upload that follows, so a concurrent publish
    /// that already repaired it cannot lose its repair.
    async fn verify_files(&self, site: &SiteName, files: Vec<Entry>) -> Result<(), PublishError> {
        let files = self.distinct_within_limit(files)?;
        let missing = keep_concurrently(
            files.into_iter().map(|entry| async move {
                let missing = match self.blobs.verify(&entry.hash, entry.size).await {
                    Ok(()) => false,
                    Err(error) if error.is_not_found() => true,
                    Err(ContentError::Corrupt { key, actual }) => {
                        tracing::warn!(%key, %actual, "a stored blob is corrupt; asking for it again");
                        true
                    }
                    Err(ContentError::Store(error)) => return Err(error),
                };
                Ok((entry, missing))
            }),
            VERIFY_CONCURRENCY,
        )
        .await?;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(PublishError::MissingContent(self.upload_targets(site, missing).await?))
        }
    }

    /// `files` without repeated blobs, or the limit error if one is too large.
    fn distinct_within_limit(&self, mut files: Vec<Entry>) -> Result<Vec<Entry>, PublishError> {
        if let Some(large) = files.iter().find(|entry| entry.size > self.limits.max_file_bytes) {
            return Err(self.too_large(format!("{} is {} bytes", large.path, large.size)));
        }
        let mut seen = HashSet::new();
        files.retain(|entry| seen.insert(entry.hash));
        Ok(files)
    }

    async fn upload_targets(&self, site: &SiteName, entries: Vec<Entry>) -> Result<Vec<UploadTarget>, StoreError> {
        futures::stream::iter(entries)
            .map(|entry| async move {
                let key = self.blobs.key(&entry.hash);
                let presigned = self.blobs.store().presign_put(&key, &entry.hash, PRESIGN_TTL).await?;
                Ok(match presigned {
                    Some(presigned) => UploadTarget {
                        hash: entry.hash,
                        size: entry.size,
                        url: presigned.url,
                        headers: presigned.headers,
                    },
                    None => UploadTarget {
                        hash: entry.hash,
                        size: entry.size,
                        url: publish_api::host_upload_path(site, &entry.hash),
                        headers: Vec::new(),
                    },
                })
            })
            .buffered(CHECK_CONCURRENCY)
            .try_collect()
            .await
    }

    fn check_file_count(&self, files: u64) -> Result<(), PublishError> {
        if files > self.limits.max_files_per_site {
            return Err(PublishError::Limit {
                limit: Limit::FilesPerSite,
                value: self.limits.max_files_per_site,
                message: format!("the site has {files} files"),
            });
        }
        Ok(())
    }

    fn too_large(&self, message: String) -> PublishError {
        PublishError::Limit {
            limit: Limit::FileBytes,
            value: self.limits.max_file_bytes,
            message,
        }
    }
}

/// Runs `checks`, `concurrency` at a time, and keeps the items they answer
/// true for.
async fn keep_concurrently<T>(
    checks: impl Iterator<Item = impl Future<Output = Result<(T, bool), StoreError>>>,
    concurrency: usize,
) -> Result<Vec<T>, StoreError> {
    let checked: Vec<(T, bool)> = futures::stream::iter(checks)
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok(checked
        .into_iter()
        .filter_map(|(item, keep)| keep.then_some(item))
        .collect())
}

fn decode(bytes: &[u8]) -> Result<(ContentHash, TreeNode), PublishError> {
    let hash = ContentHash::of(bytes);
    let node = TreeNode::decode(bytes).map_err(|source| PublishError::BadNode { hash, source })?;
    Ok((hash, node))
}
