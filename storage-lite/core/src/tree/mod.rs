//! Site manifests as prolly trees.
//!
//! A site version maps each path to `{hash, size, content_type}`. Entries are
//! sorted by path and cut into nodes at content-defined boundaries (see
//! [`node`]); interior nodes list `(first key, child hash)` and every node is
//! stored content-addressed under `trees/<hash>`. That gives us:
//! - the same set of files has the same root hash, however it was built;
//! - changing one file rewrites O(log n) nodes ([`Trees::apply`]);
//! - [`Trees::diff`] descends only into subtrees whose hashes differ, so its
//!   cost follows the size of the change, not of the site.

mod chunk;
mod diff;
mod edit;
pub mod node;
mod source;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::hash::ContentHash;
use crate::names::SitePath;

pub use diff::Difference;
pub use edit::Change;
pub use node::{ChildRef, DecodeError, Entry, TreeNode};
pub use source::{MemoryTreeNodes, TreeNodeError, TreeNodeStore};

/// How many node reads or writes are in flight at once.
const NODE_IO_CONCURRENCY: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("tree node {hash}: {source}")]
    Load {
        hash: ContentHash,
        #[source]
        source: TreeNodeError,
    },
    #[error("tree node {hash} is malformed: {source}")]
    Decode {
        hash: ContentHash,
        #[source]
        source: DecodeError,
    },
    #[error("tree node {hash} does not fit its parent: {reason}")]
    Structure { hash: ContentHash, reason: &'static str },
    #[error("writing a tree node failed: {0}")]
    Write(#[source] TreeNodeError),
    #[error("path {0} appears more than once")]
    DuplicatePath(SitePath),
}

/// Counts of node reads (cache misses) and writes, for tests and benchmarks
/// that check the O(log n) promises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    pub nodes_read: u64,
    pub nodes_written: u64,
}

/// Reads and writes manifest trees in one [`TreeNodeStore`], with a cache of
/// decoded nodes (nodes are immutable, so the cache never goes stale).
#[derive(Debug, Clone)]
pub struct Trees {
    inner: Arc<TreesInner>,
}

#[derive(Debug)]
struct TreesInner {
    nodes: Arc<dyn TreeNodeStore>,
    cache: moka::sync::Cache<ContentHash, Arc<TreeNode>>,
    nodes_read: AtomicU64,
    nodes_written: AtomicU64,
}

impl Trees {
    /// `cache_items` bounds the cache by the number of entries held in cached nodes.
    pub fn new(nodes: Arc<dyn TreeNodeStore>, cache_items: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(cache_items)
            .weigher(|_, node: &Arc<TreeNode>| u32::try_from(node.len()).unwrap_or(u32::MAX).max(1))
            .build();
        Self {
            inner: Arc::new(TreesInner {
                nodes,
                cache,
                nodes_read: AtomicU64::new(0),
                nodes_written: AtomicU64::new(0),
            }),
        }
    }

    pub fn stats(&self) -> TreeStats {
        TreeStats {
            nodes_read: self.inner.nodes_read.load(Ordering::Relaxed),
            nodes_written: self.inner.nodes_written.load(Ordering::Relaxed),
        }
    }

    /// Drops every cached node, so the next reads go to the store.
    pub fn clear_cache(&self) {
        self.inner.cache.invalidate_all();
    }

    /// Builds the tree of `entries` (in any order) and returns its root hash.
    pub async fn build(&self, entries: impl IntoIterator<Item = Entry>) -> Result<ContentHash, TreeError> {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].path == pair[1].path) {
            return Err(TreeError::DuplicatePath(pair[0].path.clone()));
        }
        let leaves = self.write_chunks(0, entries, &HashSet::new()).await?;
        self.build_up(0, leaves).await
    }

    /// Finds the entry for `path`, reading one node per level.
    pub async fn lookup(&self, root: &ContentHash, path: &SitePath) -> Result<Option<Entry>, TreeError> {
        let mut node = self.node(root).await?;
        loop {
            let child = match node.as_ref() {
                TreeNode::Leaf(entries) => {
                    let found = entries.binary_search_by(|entry| entry.path.cmp(path));
                    return Ok(found.ok().map(|index| entries[index].clone()));
                }
                TreeNode::Interior { children, .. } => {
                    let after = children.partition_point(|child| child.first_key <= *path);
                    match after.checked_sub(1) {
                        Some(index) => children[index].clone(),
                        None => return Ok(None),
                    }
                }
            };
            node = self.child(&node, &child).await?;
        }
    }

    /// Every entry of the tree, in path order. Reads one level at a time with
    /// bounded concurrency, which matters on a high-latency store.
    pub async fn entries(&self, root: &ContentHash) -> Result<Vec<Entry>, TreeError> {
        let mut level = vec![self.node(root).await?];
        while let Some(TreeNode::Interior { .. }) = level.first().map(Arc::as_ref) {
            let pairs: Vec<(Arc<TreeNode>, ChildRef)> = level
                .iter()
                .flat_map(|parent| match parent.as_ref() {
                    TreeNode::Interior { children, .. } => {
                        children.iter().map(|c| (Arc::clone(parent), c.clone())).collect()
                    }
                    TreeNode::Leaf(_) => Vec::new(),
                })
                .collect();
            level = futures::stream::iter(pairs)
                .map(|(parent, child)| async move { self.child(&parent, &child).await })
                .buffered(NODE_IO_CONCURRENCY)
                .try_collect()
                .await?;
        }
        Ok(level
            .iter()
            .flat_map(|leaf| match leaf.as_ref() {
                TreeNode::Leaf(entries) => entries.clone(),
                TreeNode::Interior { .. } => Vec::new(),
            })
            .collect())
    }

    /// Reads and decodes one node (from the cache when possible).
    pub async fn node(&self, hash: &ContentHash) -> Result<Arc<TreeNode>, TreeError> {
        if let Some(node) = self.inner.cache.get(hash) {
            return Ok(node);
        }
        let bytes = self
            .inner
            .nodes
            .load(hash)
            .await
            .map_err(|source| TreeError::Load { hash: *hash, source })?;
        self.inner.nodes_read.fetch_add(1, Ordering::Relaxed);
        let node = Arc::new(TreeNode::decode(&bytes).map_err(|source| TreeError::Decode { hash: *hash, source })?);
        self.inner.cache.insert(*hash, Arc::clone(&node));
        Ok(node)
    }

    /// Reads `child` of `parent`, checking it is where the parent says it is:
    /// one level down and starting at the key the parent lists.
    pub(crate) async fn child(&self, parent: &TreeNode, child: &ChildRef) -> Result<Arc<TreeNode>, TreeError> {
        let node = self.node(&child.hash).await?;
        let structure = |reason| TreeError::Structure {
            hash: child.hash,
            reason,
        };
        if node.level() + 1 != parent.level() {
            return Err(structure("its level is not one below its parent's"));
        }
        if node.first_key() != Some(&child.first_key) {
            return Err(structure("its first key is not the one its parent lists"));
        }
        Ok(node)
    }

    /// Stores `node`, encoded as `encoded`, whose hash is `hash`.
    async fn write_node(&self, hash: ContentHash, node: TreeNode, encoded: Bytes) -> Result<ContentHash, TreeError> {
        self.inner.nodes.save(&hash, encoded).await.map_err(TreeError::Write)?;
        self.inner.nodes_written.fetch_add(1, Ordering::Relaxed);
        self.inner.cache.insert(hash, Arc::new(node));
        Ok(hash)
    }

    /// Cuts one level's items into nodes, writes those not in `stored`
    /// (nodes known to exist, e.g. the ones an edit replaces), and returns the
    /// references the level above lists.
    async fn write_chunks<I: chunk::Item>(
        &self,
        level: u8,
        items: Vec<I>,
        stored: &HashSet<ContentHash>,
    ) -> Result<Vec<ChildRef>, TreeError> {
        let nodes = chunk::chunks(level, items).into_iter().map(|items| {
            let first_key = items[0].key().clone();
            (first_key, I::into_node(level, items))
        });
        futures::stream::iter(nodes)
            .map(|(first_key, node)| async move {
                let encoded = Bytes::from(node.encode());
                let hash = ContentHash::of(&encoded);
                if !stored.contains(&hash) {
                    self.write_node(hash, node, encoded).await?;
                }
                Ok(ChildRef { first_key, hash })
            })
            .buffered(NODE_IO_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Stacks levels above the nodes `refs` (at `level`) until one root remains.
    async fn build_up(&self, mut level: u8, mut refs: Vec<ChildRef>) -> Result<ContentHash, TreeError> {
        if refs.is_empty() {
            let empty = TreeNode::Leaf(Vec::new());
            let encoded = Bytes::from(empty.encode());
            return self.write_node(ContentHash::of(&encoded), empty, encoded).await;
        }
        while refs.len() > 1 {
            level += 1;
            refs = self.write_chunks(level, refs, &HashSet::new()).await?;
        }
        Ok(refs[0].hash)
    }
}
