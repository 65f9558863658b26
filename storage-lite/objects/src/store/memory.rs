//! In-memory backend for unit tests and benchmarks.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ETag, ListPage, Object, ObjectKey, ObjectMeta, ObjectStore, StoreError, clamp_range};

/// A process-local store; every call is atomic under one lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<ObjectKey, Object>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<ObjectKey, Object>> {
        // A panic while holding the lock cannot leave a half-written map: every
        // mutation is a single insert or remove.
        self.objects.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, key: &ObjectKey, bytes: Bytes, condition: Condition<'_>) -> Result<ETag, StoreError> {
        let mut objects = self.objects();
        let current = objects.get(key).map(|object| &object.etag);
        let allowed = match (condition, current) {
            (Condition::None, _) => true,
            (Condition::Absent, current) => current.is_none(),
            (Condition::Matches(expected), Some(current)) => current == expected,
            (Condition::Matches(_), None) => false,
        };
        if !allowed {
            return Err(StoreError::PreconditionFailed { key: key.to_string() });
        }
        let etag = ETag::of_content(&bytes);
        objects.insert(
            key.clone(),
            Object {
                bytes,
                etag: etag.clone(),
            },
        );
        Ok(etag)
    }
}

enum Condition<'a> {
    None,
    Absent,
    Matches(&'a ETag),
}

fn not_found(key: &ObjectKey) -> StoreError {
    StoreError::NotFound { key: key.to_string() }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn get(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        self.objects().get(key).cloned().ok_or_else(|| not_found(key))
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        let object = self.get(key).await?;
        let range = clamp_range(key, range, object.bytes.len() as u64)?;
        Ok(object.bytes.slice(range.start as usize..range.end as usize))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let object = self.get(key).await?;
        Ok(ObjectMeta {
            size: object.bytes.len() as u64,
            etag: object.etag,
        })
    }

    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.write(key, bytes, Condition::None)
    }

    async fn put_if_absent(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.write(key, bytes, Condition::Absent)
    }

    async fn put_if_match(&self, key: &ObjectKey, bytes: Bytes, expected: &ETag) -> Result<ETag, StoreError> {
        self.write(key, bytes, Condition::Matches(expected))
    }

    async fn list(&self, prefix: &str, start_after: Option<&ObjectKey>, limit: usize) -> Result<ListPage, StoreError> {
        let objects = self.objects();
        let keys = objects
            .keys()
            .filter(|key| key.as_str().starts_with(prefix))
            .filter(|key| start_after.is_none_or(|after| *key > after))
            .cloned();
        Ok(page_of(keys, limit))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.objects().remove(key);
        Ok(())
    }
}

/// Cuts an ascending key sequence into one page of at most `limit` keys.
pub(super) fn page_of(mut keys: impl Iterator<Item = ObjectKey>, limit: usize) -> ListPage {
    let page: Vec<ObjectKey> = keys.by_ref().take(limit.max(1)).collect();
    let next = match keys.next() {
        Some(_) => page.last().cloned(),
        None => None,
    };
    ListPage { keys: page, next }
}
