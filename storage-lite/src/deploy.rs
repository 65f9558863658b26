//! The host's half of the publish protocol (see [`crate::publish_api`]):
//! negotiating what to upload, accepting uploads and verifying a tree before
//! it becomes a version. Independent of HTTP, which the proxy adds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::content::{ContentError, ContentStore};
use crate::hash::ContentHash;
use crate::names::SiteName;
use crate::publish_api::{self, BatchError, CommitRequest, OfferReply, ProbeReply, UploadTarget};
use crate::site::{Commit, SiteError, Sites, Version};
use crate::store::{ObjectStore, StoreError};
use crate::tree::{DecodeError, Difference, Entry, Node, TreeError, Trees};

/// Store requests in flight at once for one negotiation step.
const CHECK_CONCURRENCY: usize = 64;
/// Blobs verified at once during a commit.
const VERIFY_CONCURRENCY: usize = 16;
/// How long a presigned upload URL stays valid.
const PRESIGN_TTL: Duration = Duration::from_secs(3600);

/// Limits on what one site may publish.
#[derive(Debug, Clone, Copy)]
pub struct DeployLimits {
    pub max_file_bytes: u64,
    pub max_files_per_site: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// `limit` names the configuration key.
    #[error("{message} (limit {limit} = {value})")]
    Limit {
        limit: &'static str,
        value: u64,
        message: String,
    },
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

impl From<SiteError> for DeployError {
    fn from(error: SiteError) -> Self {
        Self::Site(Box::new(error))
    }
}

impl From<TreeError> for DeployError {
    fn from(error: TreeError) -> Self {
        match error {
            TreeError::Load { ref source, .. } if source.is_not_found() => Self::IncompleteTree(error),
            TreeError::Decode { .. } | TreeError::Structure { .. } => Self::IncompleteTree(error),
            other => Self::Tree(other),
        }
    }
}

/// A verified commit.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub version: Version,
    pub files: u64,
}

/// Runs the host side of publishing against one store.
#[derive(Debug, Clone)]
pub struct Deployer {
    blobs: ContentStore,
    nodes: ContentStore,
    trees: Trees,
    sites: Sites,
    limits: DeployLimits,
}

impl Deployer {
    pub fn new(store: Arc<dyn ObjectStore>, trees: Trees, limits: DeployLimits) -> Self {
        Self {
            blobs: ContentStore::blobs(Arc::clone(&store)),
            nodes: ContentStore::trees(Arc::clone(&store)),
            sites: Sites::new(store, trees.clone()),
            trees,
            limits,
        }
    }

    pub fn sites(&self) -> &Sites {
        &self.sites
    }

    pub fn limits(&self) -> DeployLimits {
        self.limits
    }

    /// Step 1: the live version, and whether the host lacks `root`.
    pub async fn offer(&self, site: &SiteName, root: &ContentHash) -> Result<OfferReply, DeployError> {
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
        })
    }

    /// Step 2: decodes the nodes in `batch` and answers which of their
    /// children and blobs the host lacks. Stores nothing.
    pub async fn probe(&self, site: &SiteName, batch: &[u8]) -> Result<ProbeReply, DeployError> {
        let mut children = HashSet::new();
        let mut files: Vec<Entry> = Vec::new();
        for bytes in publish_api::decode_node_batch(batch)? {
            match decode(bytes)? {
                (_, Node::Interior { children: refs, .. }) => children.extend(refs.into_iter().map(|child| child.hash)),
                (_, Node::Leaf(entries)) => files.extend(entries),
            }
        }
        if let Some(large) = files.iter().find(|entry| entry.size > self.limits.max_file_bytes) {
            return Err(self.file_too_large(large));
        }
        let mut seen = HashSet::new();
        files.retain(|entry| seen.insert(entry.hash));
        let missing_nodes = futures::stream::iter(children)
            .map(|hash| async move { Ok::<_, StoreError>((!self.nodes.contains(&hash).await?).then_some(hash)) })
            .buffer_unordered(CHECK_CONCURRENCY)
            .try_collect::<Vec<Option<ContentHash>>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        let missing_blobs = futures::stream::iter(files)
            .map(
                |entry| async move { Ok::<_, StoreError>((!self.blobs.contains(&entry.hash).await?).then_some(entry)) },
            )
            .buffer_unordered(CHECK_CONCURRENCY)
            .try_collect::<Vec<Option<Entry>>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        Ok(ProbeReply {
            missing_nodes,
            missing_blobs: self.upload_targets(site, missing_blobs).await?,
        })
    }

    /// Step 3b: stores the nodes of `batch`, each checked to decode. Returns
    /// how many were stored.
    pub async fn store_nodes(&self, batch: &[u8]) -> Result<usize, DeployError> {
        let mut nodes = Vec::new();
        for bytes in publish_api::decode_node_batch(batch)? {
            decode(bytes)?;
            nodes.push(Bytes::copy_from_slice(bytes));
        }
        let count = nodes.len();
        futures::stream::iter(nodes)
            .map(|bytes| self.nodes.put(bytes))
            .buffer_unordered(CHECK_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(count)
    }

    /// Step 3a, for stores without presigned URLs: keeps `bytes` as blob
    /// `expected`, or nothing if they hash to anything else.
    pub async fn upload_blob(&self, expected: &ContentHash, bytes: Bytes) -> Result<(), DeployError> {
        if bytes.len() as u64 > self.limits.max_file_bytes {
            return Err(DeployError::Limit {
                limit: "max_file_bytes",
                value: self.limits.max_file_bytes,
                message: format!("the file is {} bytes", bytes.len()),
            });
        }
        let actual = ContentHash::of(&bytes);
        if actual != *expected {
            return Err(DeployError::HashMismatch {
                expected: *expected,
                actual,
            });
        }
        self.blobs.put(bytes).await?;
        Ok(())
    }

    /// Step 4: checks that the whole tree `request.root` is on the host and
    /// that every file new since the live version hashes right, then commits
    /// it on top of `request.parent`.
    ///
    /// Files of the live version were verified when it was committed, and
    /// content-addressed objects never change, so only the difference is
    /// read: a small change to a large site costs little.
    pub async fn commit(&self, site: &SiteName, request: CommitRequest) -> Result<Deployed, DeployError> {
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
        if files > self.limits.max_files_per_site {
            return Err(DeployError::Limit {
                limit: "max_files_per_site",
                value: self.limits.max_files_per_site,
                message: format!("the site has {files} files"),
            });
        }
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
        Ok(Deployed { version, files })
    }

    /// A new version with the tree of version `to`; by default the version
    /// before the live one. Rolling forward is rolling back to a later version.
    pub async fn rollback(&self, site: &SiteName, to: Option<u64>) -> Result<Deployed, DeployError> {
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
                return Err(DeployError::NotFound(format!(
                    "site {site} has only one version: there is nothing to roll back to"
                )));
            }
        };
        let version = self.sites.rollback(site, to, Some(live)).await?;
        let files = self.trees.entries(&version.tree).await?.len() as u64;
        Ok(Deployed { version, files })
    }

    /// A stored tree node, for a client comparing its tree with the host's.
    pub async fn node_bytes(&self, hash: &ContentHash) -> Result<Bytes, DeployError> {
        match self.nodes.get(hash).await {
            Ok(bytes) => Ok(bytes),
            Err(error) if error.is_not_found() => Err(DeployError::NotFound(format!("no tree node {hash}"))),
            Err(error) => Err(error.into()),
        }
    }

    /// Verifies every file's blob; a corrupt blob is removed so that it can be
    /// uploaded again, and every missing one is reported with its target.
    async fn verify_files(&self, site: &SiteName, mut files: Vec<Entry>) -> Result<(), DeployError> {
        if let Some(large) = files.iter().find(|entry| entry.size > self.limits.max_file_bytes) {
            return Err(self.file_too_large(large));
        }
        let mut seen = HashSet::new();
        files.retain(|entry| seen.insert(entry.hash));
        let missing: Vec<Entry> = futures::stream::iter(files)
            .map(|entry| async move {
                match self.blobs.verify(&entry.hash, entry.size).await {
                    Ok(()) => Ok(None),
                    Err(error) if error.is_not_found() => Ok(Some(entry)),
                    Err(ContentError::Corrupt { key, actual }) => {
                        tracing::warn!(%key, %actual, "removing a corrupt upload");
                        self.blobs.remove(&entry.hash).await?;
                        Ok(Some(entry))
                    }
                    Err(ContentError::Store(error)) => Err(error),
                }
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .try_collect::<Vec<Option<Entry>>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DeployError::MissingContent(self.upload_targets(site, missing).await?))
        }
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

    fn file_too_large(&self, entry: &Entry) -> DeployError {
        DeployError::Limit {
            limit: "max_file_bytes",
            value: self.limits.max_file_bytes,
            message: format!("{} is {} bytes", entry.path, entry.size),
        }
    }
}

fn decode(bytes: &[u8]) -> Result<(ContentHash, Node), DeployError> {
    let hash = ContentHash::of(bytes);
    let node = Node::decode(bytes).map_err(|source| DeployError::BadNode { hash, source })?;
    Ok((hash, node))
}
