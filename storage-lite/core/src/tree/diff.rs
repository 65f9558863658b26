//! Comparing two trees by descending only where their hashes differ.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::node::{ChildRef, Entry, TreeNode};
use super::{NODE_IO_CONCURRENCY, TreeError, Trees};
use crate::hash::ContentHash;
use crate::names::SitePath;

/// How one path differs between an old and a new tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Added(Entry),
    Removed(Entry),
    /// Same path, different hash, size or content type.
    Changed {
        old: Entry,
        new: Entry,
    },
}

impl Difference {
    pub fn path(&self) -> &SitePath {
        match self {
            Self::Added(entry) | Self::Removed(entry) => &entry.path,
            Self::Changed { new, .. } => &new.path,
        }
    }
}

/// A subtree still to compare: known by hash and level from its parent, and
/// read only if it survives being matched against the other side.
#[derive(Clone)]
struct Subtree {
    hash: ContentHash,
    level: u8,
    /// The parent and its reference, to check the node against when read.
    parent: Option<(Arc<TreeNode>, ChildRef)>,
}

type Frontier = Vec<Subtree>;

impl Trees {
    /// The differences from `old` to `new`, in path order.
    ///
    /// Both trees are held as frontiers of subtrees. Subtrees present on both
    /// sides hold identical entries, so they are dropped from both, by hash,
    /// before anything under them is read; then the highest remaining nodes
    /// are opened, until only leaves are left. Only nodes on the paths to
    /// changes are ever read.
    pub async fn diff(&self, old: &ContentHash, new: &ContentHash) -> Result<Vec<Difference>, TreeError> {
        if old == new {
            return Ok(Vec::new());
        }
        let mut old_side = vec![self.root_subtree(old).await?];
        let mut new_side = vec![self.root_subtree(new).await?];
        loop {
            drop_common(&mut old_side, &mut new_side);
            let highest = old_side.iter().chain(&new_side).map(|subtree| subtree.level).max();
            match highest {
                None | Some(0) => break,
                Some(level) => {
                    old_side = self.open_level(old_side, level).await?;
                    new_side = self.open_level(new_side, level).await?;
                }
            }
        }
        let old_leaves = self.read_all(old_side).await?;
        let new_leaves = self.read_all(new_side).await?;
        Ok(compare_leaves(&old_leaves, &new_leaves))
    }

    async fn root_subtree(&self, hash: &ContentHash) -> Result<Subtree, TreeError> {
        Ok(Subtree {
            hash: *hash,
            level: self.node(hash).await?.level(),
            parent: None,
        })
    }

    async fn read(&self, subtree: &Subtree) -> Result<Arc<TreeNode>, TreeError> {
        match &subtree.parent {
            Some((parent, child)) => self.child(parent, child).await,
            None => self.node(&subtree.hash).await,
        }
    }

    async fn read_all(&self, frontier: Frontier) -> Result<Vec<Arc<TreeNode>>, TreeError> {
        futures::stream::iter(frontier)
            .map(|subtree| async move { self.read(&subtree).await })
            .buffered(NODE_IO_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Replaces every subtree at `level` in the frontier by its children.
    async fn open_level(&self, frontier: Frontier, level: u8) -> Result<Frontier, TreeError> {
        let (to_open, mut kept): (Frontier, Frontier) = frontier.into_iter().partition(|s| s.level == level);
        for node in self.read_all(to_open).await? {
            if let TreeNode::Interior { children, .. } = node.as_ref() {
                kept.extend(children.iter().map(|child| Subtree {
                    hash: child.hash,
                    level: level - 1,
                    parent: Some((Arc::clone(&node), child.clone())),
                }));
            }
        }
        Ok(kept)
    }
}

fn drop_common(old_side: &mut Frontier, new_side: &mut Frontier) {
    let old_hashes: HashSet<ContentHash> = old_side.iter().map(|subtree| subtree.hash).collect();
    let new_hashes: HashSet<ContentHash> = new_side.iter().map(|subtree| subtree.hash).collect();
    old_side.retain(|subtree| !new_hashes.contains(&subtree.hash));
    new_side.retain(|subtree| !old_hashes.contains(&subtree.hash));
}

fn leaf_entries(leaves: &[Arc<TreeNode>]) -> BTreeMap<&SitePath, &Entry> {
    leaves
        .iter()
        .flat_map(|node| match node.as_ref() {
            TreeNode::Leaf(entries) => entries.as_slice(),
            TreeNode::Interior { .. } => &[],
        })
        .map(|entry| (&entry.path, entry))
        .collect()
}

fn compare_leaves(old_leaves: &[Arc<TreeNode>], new_leaves: &[Arc<TreeNode>]) -> Vec<Difference> {
    let old_entries = leaf_entries(old_leaves);
    let mut new_entries = leaf_entries(new_leaves);
    let mut differences = Vec::new();
    for (path, old) in old_entries {
        match new_entries.remove(path) {
            None => differences.push(Difference::Removed(old.clone())),
            Some(new) if new != old => differences.push(Difference::Changed {
                old: old.clone(),
                new: new.clone(),
            }),
            Some(_) => {}
        }
    }
    differences.extend(new_entries.into_values().map(|entry| Difference::Added(entry.clone())));
    differences.sort_by(|a, b| a.path().cmp(b.path()));
    differences
}
