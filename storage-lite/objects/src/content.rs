//! Content-addressed objects: blobs (file contents) and tree nodes.
//!
//! An object's key is the SHA-256 of its bytes, so it is immutable and its
//! integrity can be checked by anyone holding the key. Every read is verified:
//! a store that returns other bytes (bit rot, a bad upload, a tampered bucket)
//! produces an error, never content.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use grove_core::hash::{ContentHash, Hasher};
use grove_core::keys::{self, ObjectKey};
use grove_core::tree::{TreeNodeError, TreeNodeStore, Trees};

use crate::store::{ObjectStore, StoreError};

/// Size of the reads [`ContentStore::verify`] hashes a blob in.
const VERIFY_PIECE_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("object {key} is corrupt: its bytes hash to {actual}")]
    Corrupt { key: String, actual: ContentHash },
}

impl ContentError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Store(error) if error.is_not_found())
    }
}

/// One namespace of content-addressed objects (`blobs/` or `trees/`).
#[derive(Debug, Clone)]
pub struct ContentStore {
    store: Arc<dyn ObjectStore>,
    key_of: fn(&ContentHash) -> ObjectKey,
}

impl ContentStore {
    /// File contents, under `blobs/<hash>`.
    pub fn blobs(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            key_of: keys::blob,
        }
    }

    /// Manifest tree nodes, under `trees/<hash>`.
    pub fn trees(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            key_of: keys::tree_node,
        }
    }

    pub fn key(&self, hash: &ContentHash) -> ObjectKey {
        (self.key_of)(hash)
    }

    /// Stores `bytes` under their hash. Storing what is already there is a
    /// no-op that succeeds, so uploads are idempotent.
    pub async fn put(&self, bytes: Bytes) -> Result<ContentHash, ContentError> {
        let hash = ContentHash::of(&bytes);
        match self.store.put_if_absent(&self.key(&hash), bytes).await {
            Ok(_) => Ok(hash),
            Err(error) if error.is_precondition_failed() => Ok(hash),
            Err(error) => Err(error.into()),
        }
    }

    /// Reads and verifies the object named `hash`.
    pub async fn get(&self, hash: &ContentHash) -> Result<Bytes, ContentError> {
        let key = self.key(hash);
        let object = self.store.get(&key).await?;
        verified(&key, hash, object.bytes)
    }

    /// Reads and verifies the object named `hash`, which a manifest says has
    /// `size` bytes. Reads at most `size + 1` bytes, so a lying manifest or a
    /// swapped object cannot make the reader hold more than it planned for.
    pub async fn get_sized(&self, hash: &ContentHash, size: u64) -> Result<Bytes, ContentError> {
        let key = self.key(hash);
        let bytes = match self.store.get_range(&key, 0..size + 1).await {
            Ok(bytes) => bytes,
            Err(StoreError::RangeNotSatisfiable { size: 0, .. }) => Bytes::new(),
            Err(error) => return Err(error.into()),
        };
        verified(&key, hash, bytes)
    }

    /// Checks that the object named `hash` exists, has `size` bytes and
    /// hashes to its name, reading it in bounded pieces so that verifying a
    /// large file does not hold it in memory.
    pub async fn verify(&self, hash: &ContentHash, size: u64) -> Result<(), ContentError> {
        let mut pieces = self.pieces(hash, size, VERIFY_PIECE_BYTES);
        while pieces.next().await?.is_some() {}
        Ok(())
    }

    /// Reads the object named `hash`, which a manifest says has `size` bytes,
    /// in pieces of at most `piece_bytes`, checking its size and hash once the
    /// last piece is read: how large objects are copied or verified without
    /// being held whole.
    pub fn pieces(&self, hash: &ContentHash, size: u64, piece_bytes: u64) -> Pieces<'_> {
        Pieces {
            content: self,
            key: self.key(hash),
            hash: *hash,
            size,
            piece_bytes: piece_bytes.max(1),
            offset: 0,
            hasher: Some(Hasher::new()),
        }
    }

    /// The stored object's size (not verified).
    pub async fn size(&self, hash: &ContentHash) -> Result<u64, StoreError> {
        self.store.size(&self.key(hash)).await
    }

    /// True if an object is stored under `hash` (not verified: use [`Self::get`]
    /// where the bytes matter).
    pub async fn contains(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        match self.size(hash).await {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Stores `bytes` under their hash, replacing whatever is there: for
    /// bytes just verified, where the stored object may be corrupt.
    pub async fn replace(&self, bytes: Bytes) -> Result<ContentHash, ContentError> {
        let hash = ContentHash::of(&bytes);
        self.store.put(&self.key(&hash), bytes).await?;
        Ok(hash)
    }

    /// The backend, for what the content namespace does not cover (presigned
    /// uploads).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

/// An object read piece by piece; see [`ContentStore::pieces`].
pub struct Pieces<'a> {
    content: &'a ContentStore,
    key: ObjectKey,
    hash: ContentHash,
    size: u64,
    piece_bytes: u64,
    offset: u64,
    /// `None` once the object was checked.
    hasher: Option<Hasher>,
}

impl Pieces<'_> {
    /// The next piece, or `Ok(None)` once every piece was read and the whole
    /// object has the expected size and hash. Pieces are not verified until
    /// then: a caller keeping them must discard them all if this fails.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ContentError> {
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(None);
        };
        let store = &self.content.store;
        if self.offset < self.size {
            let end = (self.offset + self.piece_bytes).min(self.size);
            match store.get_range(&self.key, self.offset..end).await {
                Ok(piece) if !piece.is_empty() => {
                    self.offset += piece.len() as u64;
                    hasher.update(&piece);
                    return Ok(Some(piece));
                }
                // Shorter than the manifest says: the check below fails.
                Ok(_) | Err(StoreError::RangeNotSatisfiable { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let actual = self.hasher.take().expect("checked above").finish();
        // Longer than the manifest says: one byte past the end must not exist.
        let longer = match store.get_range(&self.key, self.size..self.size + 1).await {
            Ok(extra) => !extra.is_empty(),
            Err(StoreError::RangeNotSatisfiable { .. }) => false,
            Err(error) => return Err(error.into()),
        };
        if self.offset != self.size || longer || actual != self.hash {
            tracing::error!(key = %self.key, %actual, "content-addressed object is corrupt");
            return Err(ContentError::Corrupt {
                key: self.key.to_string(),
                actual,
            });
        }
        Ok(None)
    }
}

/// The tree nodes of `store` (`trees/<hash>`), read through a cache of
/// `cache_items` entries: how the host reads and writes manifests.
pub fn trees_in(store: Arc<dyn ObjectStore>, cache_items: u64) -> Trees {
    Trees::new(Arc::new(ContentStore::trees(store)), cache_items)
}

/// A [`ContentStore`] of tree nodes is where [`Trees`] keeps them.
#[async_trait]
impl TreeNodeStore for ContentStore {
    async fn load(&self, hash: &ContentHash) -> Result<Bytes, TreeNodeError> {
        self.get(hash).await.map_err(|error| match error {
            ContentError::Corrupt { actual, .. } => TreeNodeError::Corrupt { hash: *hash, actual },
            error if error.is_not_found() => TreeNodeError::NotFound(*hash),
            error => TreeNodeError::Backend(Box::new(error)),
        })
    }

    async fn save(&self, hash: &ContentHash, bytes: Bytes) -> Result<(), TreeNodeError> {
        let stored = self
            .put(bytes)
            .await
            .map_err(|error| TreeNodeError::Backend(Box::new(error)))?;
        if stored != *hash {
            return Err(TreeNodeError::Corrupt {
                hash: *hash,
                actual: stored,
            });
        }
        Ok(())
    }
}

fn verified(key: &ObjectKey, hash: &ContentHash, bytes: Bytes) -> Result<Bytes, ContentError> {
    let actual = ContentHash::of(&bytes);
    if actual != *hash {
        tracing::error!(%key, %actual, "content-addressed object is corrupt");
        return Err(ContentError::Corrupt {
            key: key.to_string(),
            actual,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn stores_idempotently_and_verifies_reads() {
        let memory = Arc::new(MemoryStore::new());
        let blobs = ContentStore::blobs(memory.clone());
        let hash = blobs.put(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(blobs.put(Bytes::from_static(b"hello")).await.unwrap(), hash);
        assert_eq!(blobs.get(&hash).await.unwrap(), Bytes::from_static(b"hello"));
        assert!(blobs.contains(&hash).await.unwrap());
        blobs.verify(&hash, 5).await.unwrap();
        assert!(blobs.verify(&hash, 4).await.is_err());
        assert!(blobs.verify(&hash, 6).await.is_err());

        assert_eq!(blobs.get_sized(&hash, 5).await.unwrap(), Bytes::from_static(b"hello"));
        // A manifest that understates the size reads a bounded prefix, which fails verification.
        assert!(matches!(
            blobs.get_sized(&hash, 2).await,
            Err(ContentError::Corrupt { .. })
        ));
        let empty = blobs.put(Bytes::new()).await.unwrap();
        assert!(blobs.get_sized(&empty, 0).await.unwrap().is_empty());

        // Tamper with the stored bytes behind the content store's back.
        memory
            .put(&blobs.key(&hash), Bytes::from_static(b"hellO"))
            .await
            .unwrap();
        let error = blobs.get(&hash).await.unwrap_err();
        assert!(matches!(error, ContentError::Corrupt { .. }), "{error}");
        assert!(matches!(
            blobs.verify(&hash, 5).await,
            Err(ContentError::Corrupt { .. })
        ));
        blobs.replace(Bytes::from_static(b"hello")).await.unwrap();
        blobs.verify(&hash, 5).await.unwrap();
    }

    #[tokio::test]
    async fn missing_objects_are_not_found() {
        let blobs = ContentStore::blobs(Arc::new(MemoryStore::new()));
        let hash = ContentHash::of(b"absent");
        assert!(blobs.get(&hash).await.unwrap_err().is_not_found());
        assert!(!blobs.contains(&hash).await.unwrap());
    }
}
