//! The client's view of tree nodes: the ones it built, in memory, plus the
//! host's, fetched on demand. Presented as an object store so the storage
//! core's own [`Trees`] code (build, diff) runs unchanged on the client:
//! diffing the local build against the live version reads only the host
//! nodes on the paths to changes.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use grove_storage::content::ContentStore;
use grove_storage::store::{ETag, ListPage, MemoryStore, Object, ObjectKey, ObjectMeta, ObjectStore, StoreError};
use grove_storage::tree::Trees;
use grove_storage::{ContentHash, SiteName};

use crate::client::Client;

/// Decoded nodes kept by the client's tree cache.
const NODE_CACHE_ITEMS: u64 = 1_000_000;

/// Local nodes first; `trees/<hash>` objects missing locally come from the
/// host (and are kept).
#[derive(Debug)]
pub struct NodeOverlay {
    local: MemoryStore,
    remote: Option<(Client, SiteName)>,
}

impl NodeOverlay {
    /// Trees over local nodes only, or backed by `remote`'s nodes of `site`.
    pub fn trees(remote: Option<(Client, SiteName)>) -> (Trees, ContentStore) {
        let store: Arc<dyn ObjectStore> = Arc::new(Self {
            local: MemoryStore::new(),
            remote,
        });
        (
            Trees::new(Arc::clone(&store), NODE_CACHE_ITEMS),
            ContentStore::trees(store),
        )
    }

    async fn fetch(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        match self.local.get(key).await {
            Err(error) if error.is_not_found() => {}
            found => return found,
        }
        let (Some((client, site)), Some(hash)) = (&self.remote, key.as_str().strip_prefix("trees/")) else {
            return Err(StoreError::NotFound { key: key.to_string() });
        };
        let hash: ContentHash = hash
            .parse()
            .map_err(|_| StoreError::NotFound { key: key.to_string() })?;
        let bytes = client.node(site, &hash).await.map_err(|error| match error.code() {
            Some("not_found") => StoreError::NotFound { key: key.to_string() },
            _ => StoreError::Backend {
                op: grove_storage::store::StoreOp::Get,
                key: key.to_string(),
                source: Box::new(error),
            },
        })?;
        self.local.put(key, bytes).await?;
        self.local.get(key).await
    }
}

#[async_trait]
impl ObjectStore for NodeOverlay {
    async fn get(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        self.fetch(key).await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.fetch(key).await?;
        self.local.get_range(key, range).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.local.head(key).await
    }

    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.local.put(key, bytes).await
    }

    async fn put_if_absent(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.local.put_if_absent(key, bytes).await
    }

    async fn put_if_match(&self, key: &ObjectKey, bytes: Bytes, expected: &ETag) -> Result<ETag, StoreError> {
        self.local.put_if_match(key, bytes, expected).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&ObjectKey>, limit: usize) -> Result<ListPage, StoreError> {
        self.local.list(prefix, start_after, limit).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.local.delete(key).await
    }
}
