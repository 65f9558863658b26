//! Where a tree's encoded nodes live.
//!
//! [`Trees`](super::Trees) builds, reads and diffs trees over this trait, so
//! the same code runs on the host (nodes in the object store, under
//! `trees/<hash>`) and in the `grove` CLI (its own build in memory, the
//! host's nodes fetched over HTTP on demand), and this crate needs no store
//! client.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use crate::hash::ContentHash;

/// A boxed error from the backend behind a [`TreeNodeStore`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a node could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum TreeNodeError {
    #[error("tree node {0} not found")]
    NotFound(ContentHash),
    /// The store returned bytes that do not hash to the node's name.
    #[error("tree node {hash} is corrupt: its bytes hash to {actual}")]
    Corrupt { hash: ContentHash, actual: ContentHash },
    #[error(transparent)]
    Backend(BoxError),
}

impl TreeNodeError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// Content-addressed storage of encoded tree nodes.
#[async_trait]
pub trait TreeNodeStore: Send + Sync + fmt::Debug {
    /// The bytes of node `hash`, verified to hash to it.
    async fn load(&self, hash: &ContentHash) -> Result<Bytes, TreeNodeError>;

    /// Stores the encoded node `bytes` under `hash` (their hash). Saving a
    /// node that is already there succeeds, so writes are idempotent.
    async fn save(&self, hash: &ContentHash, bytes: Bytes) -> Result<(), TreeNodeError>;
}

/// Nodes in memory: the CLI's own build, and tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryTreeNodes {
    nodes: Arc<Mutex<HashMap<ContentHash, Bytes>>>,
}

impl MemoryTreeNodes {
    pub fn new() -> Self {
        Self::default()
    }

    /// The node `hash`, if this store holds it.
    pub fn get(&self, hash: &ContentHash) -> Option<Bytes> {
        self.nodes.lock().expect("not poisoned").get(hash).cloned()
    }
}

#[async_trait]
impl TreeNodeStore for MemoryTreeNodes {
    async fn load(&self, hash: &ContentHash) -> Result<Bytes, TreeNodeError> {
        self.get(hash).ok_or(TreeNodeError::NotFound(*hash))
    }

    async fn save(&self, hash: &ContentHash, bytes: Bytes) -> Result<(), TreeNodeError> {
        let actual = ContentHash::of(&bytes);
        if actual != *hash {
            return Err(TreeNodeError::Corrupt { hash: *hash, actual });
        }
        self.nodes.lock().expect("not poisoned").insert(*hash, bytes);
        Ok(())
    }
}
