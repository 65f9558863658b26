//! A wrapper that reports every call its store makes, so an edge can show
//! what it costs the store (R2 bills per request) on its metrics.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use grove_core::hash::ContentHash;

use super::{ETag, ListPage, Object, ObjectKey, ObjectMeta, ObjectStore, PresignedPut, StoreError, StoreOp};

/// Told of each request before it is made.
pub type OnRequest = Arc<dyn Fn(StoreOp) + Send + Sync>;

pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    on_request: OnRequest,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, on_request: OnRequest) -> Self {
        Self { inner, on_request }
    }
}

impl fmt::Debug for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingStore").field("inner", &self.inner).finish()
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn get(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        (self.on_request)(StoreOp::Get);
        self.inner.get(key).await
    }

    async fn get_if_changed(&self, key: &ObjectKey, known: &ETag) -> Result<Option<Object>, StoreError> {
        (self.on_request)(StoreOp::Get);
        self.inner.get_if_changed(key, known).await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        (self.on_request)(StoreOp::GetRange);
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        (self.on_request)(StoreOp::Head);
        self.inner.head(key).await
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64, StoreError> {
        (self.on_request)(StoreOp::Head);
        self.inner.size(key).await
    }

    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        (self.on_request)(StoreOp::Put);
        self.inner.put(key, bytes).await
    }

    async fn put_if_absent(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        (self.on_request)(StoreOp::PutIfAbsent);
        self.inner.put_if_absent(key, bytes).await
    }

    async fn put_if_match(&self, key: &ObjectKey, bytes: Bytes, expected: &ETag) -> Result<ETag, StoreError> {
        (self.on_request)(StoreOp::PutIfMatch);
        self.inner.put_if_match(key, bytes, expected).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&ObjectKey>, limit: usize) -> Result<ListPage, StoreError> {
        (self.on_request)(StoreOp::List);
        self.inner.list(prefix, start_after, limit).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        (self.on_request)(StoreOp::Delete);
        self.inner.delete(key).await
    }

    /// Signed locally: no request.
    async fn presign_put(
        &self,
        key: &ObjectKey,
        sha256: &ContentHash,
        expires_in: Duration,
    ) -> Result<Option<PresignedPut>, StoreError> {
        self.inner.presign_put(key, sha256, expires_in).await
    }

    /// Signed locally: no request.
    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        content_type: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.presign_get(key, expires_in, content_type).await
    }
}
