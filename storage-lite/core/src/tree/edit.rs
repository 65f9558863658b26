//! Applying a batch of changes to a tree, rewriting only the nodes it touches.
//!
//! Node boundaries depend only on keys, so at every level the new node
//! sequence differs from the old one only in "runs": start at the first node a
//! change falls into, apply the changes, and keep absorbing the following old
//! nodes until the run ends on a boundary key (or at the end of the level).
//! Cutting the run gives exactly the nodes a build from scratch would give
//! there. The replaced and new nodes become the changes of the level above,
//! whose structure in the old tree is what we navigate by.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::chunk::Item;
use super::node::{ChildRef, Entry, TreeNode, is_boundary};
use super::{TreeError, Trees};
use crate::hash::ContentHash;
use crate::names::SitePath;

/// One change to a tree: a file added or replaced, or a file removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert(Entry),
    Remove(SitePath),
}

impl Trees {
    /// Applies `changes` to the tree `root` and returns the new root. Later
    /// changes to a path override earlier ones; removing an absent path is a
    /// no-op. The result is the tree a build from scratch would give.
    pub async fn apply(
        &self,
        root: &ContentHash,
        changes: impl IntoIterator<Item = Change>,
    ) -> Result<ContentHash, TreeError> {
        let mut leaf_changes = BTreeMap::new();
        for change in changes {
            match change {
                Change::Upsert(entry) => leaf_changes.insert(entry.path.clone(), Some(entry)),
                Change::Remove(path) => leaf_changes.insert(path, None),
            };
        }
        if leaf_changes.is_empty() {
            return Ok(*root);
        }
        let old = OldTree {
            trees: self,
            root_hash: *root,
            root: self.node(root).await?,
        };
        let top = old.root.level();
        let mut outcome = old.edit_level::<Entry>(0, leaf_changes).await?;
        for level in 1..=top {
            let changes = outcome.parent_changes();
            if changes.is_empty() {
                return Ok(*root);
            }
            outcome = old.edit_level::<ChildRef>(level, changes).await?;
        }
        if outcome.is_unchanged() {
            return Ok(*root);
        }
        let created = outcome.created.into_iter().map(|(_, child)| child).collect();
        let root = self.build_up(top, created).await?;
        self.collapse(root).await
    }

    /// Drops roots with a single child: a build from scratch stops at the
    /// first level that has one node.
    async fn collapse(&self, mut root: ContentHash) -> Result<ContentHash, TreeError> {
        loop {
            match self.node(&root).await?.as_ref() {
                TreeNode::Interior { children, .. } if children.len() == 1 => root = children[0].hash,
                _ => return Ok(root),
            }
        }
    }
}

/// A node of the old tree at the level being edited, as its parent lists it
/// (the root has no parent, and an empty root has no first key).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    first_key: Option<SitePath>,
    hash: ContentHash,
}

/// What an edit did to one level: old nodes it replaced and the new ones.
#[derive(Debug, Default)]
struct LevelOutcome {
    consumed: Vec<Slot>,
    created: Vec<(Option<SitePath>, ChildRef)>,
}

impl LevelOutcome {
    fn is_unchanged(&self) -> bool {
        self.consumed.len() == self.created.len()
            && self
                .consumed
                .iter()
                .zip(&self.created)
                .all(|(old, (_, new))| old.hash == new.hash)
    }

    /// The changes this level's edit makes to the level above: replaced nodes
    /// leave it, new ones enter it, and a node that came out identical cancels.
    fn parent_changes(&self) -> BTreeMap<SitePath, Option<ChildRef>> {
        let mut changes = BTreeMap::new();
        let mut unchanged = HashSet::new();
        for slot in &self.consumed {
            if let Some(first_key) = &slot.first_key {
                changes.insert(first_key.clone(), None);
                unchanged.insert((first_key.clone(), slot.hash));
            }
        }
        for (_, child) in &self.created {
            if unchanged.contains(&(child.first_key.clone(), child.hash)) {
                changes.remove(&child.first_key);
            } else {
                changes.insert(child.first_key.clone(), Some(child.clone()));
            }
        }
        changes
    }
}

/// The tree being edited; its upper levels say where each lower node is.
struct OldTree<'a> {
    trees: &'a Trees,
    root_hash: ContentHash,
    root: Arc<TreeNode>,
}

impl OldTree<'_> {
    async fn edit_level<I: Item>(
        &self,
        level: u8,
        changes: BTreeMap<SitePath, Option<I>>,
    ) -> Result<LevelOutcome, TreeError> {
        let changes: Vec<(SitePath, Option<I>)> = changes.into_iter().collect();
        let mut outcome = LevelOutcome::default();
        let mut next_change = 0;
        while next_change < changes.len() {
            let mut cursor = self.seek(level, &changes[next_change].0).await?;
            let mut run: Vec<I> = Vec::new();
            let mut replaced = HashSet::new();
            loop {
                let (slot, node) = cursor.current(self).await?;
                let items = I::items_of(&node).ok_or(TreeError::Structure {
                    hash: slot.hash,
                    reason: "a leaf and an interior node are at the same level",
                })?;
                let upper = cursor.next_first_key();
                let end = next_change
                    + changes[next_change..].partition_point(|(key, _)| upper.is_none_or(|upper| key < upper));
                merge(items, &changes[next_change..end], &mut run);
                next_change = end;
                replaced.insert(slot.hash);
                outcome.consumed.push(slot);
                let ends_on_boundary = run.last().is_none_or(|item| is_boundary(level, item.key()));
                if ends_on_boundary || !cursor.advance(self).await? {
                    break;
                }
            }
            let created = self.trees.write_chunks(level, run, &replaced).await?;
            outcome
                .created
                .extend(created.into_iter().map(|child| (Some(child.first_key.clone()), child)));
        }
        Ok(outcome)
    }

    /// Positions a cursor on the node at `level` whose key range holds `key`.
    async fn seek(&self, level: u8, key: &SitePath) -> Result<LevelCursor, TreeError> {
        let mut stack = Vec::new();
        if level < self.root.level() {
            let mut node = Arc::clone(&self.root);
            loop {
                let children = interior_children(&node);
                let index = children
                    .partition_point(|child| child.first_key <= *key)
                    .saturating_sub(1);
                let child = children[index].clone();
                stack.push((Arc::clone(&node), index));
                if node.level() == level + 1 {
                    break;
                }
                node = self.trees.child(&node, &child).await?;
            }
        }
        Ok(LevelCursor {
            depth: usize::from(self.root.level() - level),
            stack,
        })
    }
}

/// A position in the sequence of nodes at one level of the old tree: the path
/// of (interior node, child index) from the root down to the level above.
struct LevelCursor {
    depth: usize,
    stack: Vec<(Arc<TreeNode>, usize)>,
}

impl LevelCursor {
    async fn current(&self, tree: &OldTree<'_>) -> Result<(Slot, Arc<TreeNode>), TreeError> {
        match self.stack.last() {
            None => Ok((
                Slot {
                    first_key: tree.root.first_key().cloned(),
                    hash: tree.root_hash,
                },
                Arc::clone(&tree.root),
            )),
            Some((parent, index)) => {
                let child = &interior_children(parent)[*index];
                let node = tree.trees.child(parent, child).await?;
                let slot = Slot {
                    first_key: Some(child.first_key.clone()),
                    hash: child.hash,
                };
                Ok((slot, node))
            }
        }
    }

    /// The first key of the node after the current one at this level.
    fn next_first_key(&self) -> Option<&SitePath> {
        self.stack.iter().rev().find_map(|(node, index)| {
            let children = interior_children(node);
            children.get(index + 1).map(|child| &child.first_key)
        })
    }

    /// Moves to the next node at this level; false at the end of the level.
    async fn advance(&mut self, tree: &OldTree<'_>) -> Result<bool, TreeError> {
        while let Some((node, index)) = self.stack.last() {
            if index + 1 < interior_children(node).len() {
                break;
            }
            self.stack.pop();
        }
        let Some((_, index)) = self.stack.last_mut() else {
            return Ok(false);
        };
        *index += 1;
        while self.stack.len() < self.depth {
            let (parent, index) = self.stack.last().expect("stack is not empty");
            let child = tree.trees.child(parent, &interior_children(parent)[*index]).await?;
            self.stack.push((child, 0));
        }
        Ok(true)
    }
}

fn interior_children(node: &TreeNode) -> &[ChildRef] {
    match node {
        TreeNode::Interior { children, .. } => children,
        // The cursor only holds nodes above the edited level; `Trees::child`
        // has checked that each is one level above the next, so none is a leaf.
        TreeNode::Leaf(_) => &[],
    }
}

/// Appends `items` with `changes` (sorted, all within the items' key range)
/// applied to `out`.
fn merge<I: Item>(items: &[I], changes: &[(SitePath, Option<I>)], out: &mut Vec<I>) {
    let mut items = items.iter().peekable();
    for (key, change) in changes {
        while let Some(item) = items.next_if(|item| item.key() < key) {
            out.push(item.clone());
        }
        items.next_if(|item| item.key() == key);
        if let Some(item) = change {
            out.push(item.clone());
        }
    }
    out.extend(items.cloned());
}
