//! Comparing two trees by descending only where their hashes differ.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::node::{Entry, Node};
use super::{NODE_IO_CONCURRENCY, TreeError, Trees};
use crate::hash::ContentHash;
use crate::names::SitePath;

/// How one path differs between an old and a new tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Added(Entry),
    Removed(Entry),
    /// Same path, different hash, size or content type.
    Changed { old: Entry, new: Entry },
}

impl Difference {
    pub fn path(&self) -> &SitePath {
        match self {
            Self::Added(entry) | Self::Removed(entry) => &entry.path,
            Self::Changed { new, .. } => &new.path,
        }
    }
}

type Frontier = Vec<(ContentHash, Arc<Node>)>;

impl Trees {
    /// The differences from `old` to `new`, in path order.
    ///
    /// Both trees are held as frontiers of subtrees. Subtrees present on both
    /// sides hold identical entries, so they are dropped from both; then the
    /// highest remaining nodes are opened, until only leaves are left. Only
    /// nodes on the paths to changes are ever read.
    pub async fn diff(&self, old: &ContentHash, new: &ContentHash) -> Result<Vec<Difference>, TreeError> {
        if old == new {
            return Ok(Vec::new());
        }
        let mut old_side: Frontier = vec![(*old, self.node(old).await?)];
        let mut new_side: Frontier = vec![(*new, self.node(new).await?)];
        loop {
            drop_common(&mut old_side, &mut new_side);
            let highest = old_side.iter().chain(&new_side).map(|(_, node)| node.level()).max();
            match highest {
                None | Some(0) => break,
                Some(level) => {
                    old_side = self.open_level(old_side, level).await?;
                    new_side = self.open_level(new_side, level).await?;
                }
            }
        }
        Ok(compare_leaves(&old_side, &new_side))
    }

    /// Replaces every node at `level` in the frontier by its children.
    async fn open_level(&self, frontier: Frontier, level: u8) -> Result<Frontier, TreeError> {
        let mut pairs = Vec::new();
        let mut kept = Vec::new();
        for (hash, node) in frontier {
            match node.as_ref() {
                Node::Interior { children, .. } if node.level() == level => {
                    pairs.extend(children.iter().map(|child| (Arc::clone(&node), child.clone())));
                }
                _ => kept.push((hash, node)),
            }
        }
        let opened: Frontier = futures::stream::iter(pairs)
            .map(|(parent, child)| async move {
                let node = self.child(&parent, &child).await?;
                Ok::<_, TreeError>((child.hash, node))
            })
            .buffered(NODE_IO_CONCURRENCY)
            .try_collect()
            .await?;
        kept.extend(opened);
        Ok(kept)
    }
}

fn drop_common(old_side: &mut Frontier, new_side: &mut Frontier) {
    let old_hashes: HashSet<ContentHash> = old_side.iter().map(|(hash, _)| *hash).collect();
    let new_hashes: HashSet<ContentHash> = new_side.iter().map(|(hash, _)| *hash).collect();
    old_side.retain(|(hash, _)| !new_hashes.contains(hash));
    new_side.retain(|(hash, _)| !old_hashes.contains(hash));
}

fn leaf_entries(frontier: &Frontier) -> BTreeMap<&SitePath, &Entry> {
    frontier
        .iter()
        .flat_map(|(_, node)| match node.as_ref() {
            Node::Leaf(entries) => entries.as_slice(),
            Node::Interior { .. } => &[],
        })
        .map(|entry| (&entry.path, entry))
        .collect()
}

fn compare_leaves(old_side: &Frontier, new_side: &Frontier) -> Vec<Difference> {
    let old_entries = leaf_entries(old_side);
    let mut new_entries = leaf_entries(new_side);
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
