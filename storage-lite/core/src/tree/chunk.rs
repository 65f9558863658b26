//! Cutting a level's sorted items into nodes, shared by building and editing.

use super::node::{ChildRef, Entry, TreeNode, is_boundary};
use crate::names::SitePath;

/// What a node holds at some level: entries in leaves, child refs above.
pub(crate) trait Item: Clone + PartialEq + Send + Sync + 'static {
    fn key(&self) -> &SitePath;
    fn into_node(level: u8, items: Vec<Self>) -> TreeNode;
    /// The node's items, or `None` if the node holds the other kind.
    fn items_of(node: &TreeNode) -> Option<&[Self]>;
}

impl Item for Entry {
    fn key(&self) -> &SitePath {
        &self.path
    }

    fn into_node(_: u8, items: Vec<Self>) -> TreeNode {
        TreeNode::Leaf(items)
    }

    fn items_of(node: &TreeNode) -> Option<&[Self]> {
        match node {
            TreeNode::Leaf(entries) => Some(entries),
            TreeNode::Interior { .. } => None,
        }
    }
}

impl Item for ChildRef {
    fn key(&self) -> &SitePath {
        &self.first_key
    }

    fn into_node(level: u8, children: Vec<Self>) -> TreeNode {
        TreeNode::Interior { level, children }
    }

    fn items_of(node: &TreeNode) -> Option<&[Self]> {
        match node {
            TreeNode::Interior { children, .. } => Some(children),
            TreeNode::Leaf(_) => None,
        }
    }
}

/// Splits sorted items after every boundary key; the last chunk may end
/// without one. An empty input gives no chunks.
pub(crate) fn chunks<I: Item>(level: u8, items: Vec<I>) -> Vec<Vec<I>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    for item in items {
        let boundary = is_boundary(level, item.key());
        current.push(item);
        if boundary {
            chunks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}
