//! The client's view of tree nodes: the ones it built, in memory, plus the
//! host's, fetched on demand. Presented as a [`TreeNodeStore`] so the core's
//! own [`Trees`] code (build, diff) runs unchanged on the client: diffing the
//! local build against the live version reads only the host nodes on the
//! paths to changes.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use grove_core::tree::{MemoryTreeNodes, TreeNodeError, TreeNodeStore, Trees};
use grove_core::{ContentHash, SiteName};

use crate::client::Client;

/// Decoded nodes kept by the client's tree cache.
const NODE_CACHE_ITEMS: u64 = 1_000_000;

/// Local nodes first; nodes missing locally come from the host (and are kept).
#[derive(Debug)]
pub struct NodeOverlay {
    local: MemoryTreeNodes,
    remote: Option<(Client, SiteName)>,
}

impl NodeOverlay {
    /// Trees over local nodes only, or backed by `remote`'s nodes of `site`;
    /// and the local nodes, which hold everything the client built.
    pub fn trees(remote: Option<(Client, SiteName)>) -> (Trees, MemoryTreeNodes) {
        let local = MemoryTreeNodes::new();
        let overlay = Arc::new(Self {
            local: local.clone(),
            remote,
        });
        (Trees::new(overlay, NODE_CACHE_ITEMS), local)
    }
}

#[async_trait]
impl TreeNodeStore for NodeOverlay {
    async fn load(&self, hash: &ContentHash) -> Result<Bytes, TreeNodeError> {
        if let Some(bytes) = self.local.get(hash) {
            return Ok(bytes);
        }
        let Some((client, site)) = &self.remote else {
            return Err(TreeNodeError::NotFound(*hash));
        };
        let bytes = client.node(site, hash).await.map_err(|error| match error.code() {
            Some("not_found") => TreeNodeError::NotFound(*hash),
            _ => TreeNodeError::Backend(Box::new(error)),
        })?;
        // Verifies the host's bytes against their name before keeping them.
        self.local.save(hash, bytes.clone()).await?;
        Ok(bytes)
    }

    async fn save(&self, hash: &ContentHash, bytes: Bytes) -> Result<(), TreeNodeError> {
        self.local.save(hash, bytes).await
    }
}
