//! The object store: one small trait over a local directory, S3/R2 and memory.
//!
//! Every durable byte grove owns lives behind [`ObjectStore`]. The trait is the
//! smallest surface that gives content-addressed immutable objects
//! ([`ObjectStore::put_if_absent`]) and compare-and-swap pointers
//! ([`ObjectStore::put_if_match`]); everything above it (blobs, trees, site
//! roots, tokens) is built from those two primitives.

mod counting;
#[cfg(feature = "testing")]
mod faulty;
mod local;
mod memory;
mod s3;

use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use grove_core::hash::ContentHash;

pub use counting::{CountingStore, OnRequest};
#[cfg(feature = "testing")]
pub use faulty::{Fault, FaultKind, FaultyStore};
pub use grove_core::keys::{InvalidKey, ObjectKey};
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use s3::{S3Credentials, S3Store, S3StoreConfig};

/// Boxed error from a backend's own client (I/O, HTTP, SDK).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a store call. Callers match on the first three; the rest
/// are reported.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found")]
    NotFound { key: String },
    /// A conditional write lost: the object exists (put-if-absent) or changed
    /// since it was read (put-if-match). S3's 412 and 409 both land here.
    #[error("conditional write to {key} lost the race (precondition failed)")]
    PreconditionFailed { key: String },
    #[error("range {start}..{end} of {key} is not satisfiable (object has {size} bytes)")]
    RangeNotSatisfiable {
        key: String,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    #[error("object store {op} of {key} failed: {source}")]
    Backend {
        op: StoreOp,
        key: String,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    pub(crate) fn backend(op: StoreOp, key: impl fmt::Display, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            op,
            key: key.to_string(),
            source: source.into(),
        }
    }

    /// True for a lost conditional write, which callers resolve by re-reading.
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, Self::PreconditionFailed { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// The store calls, named in errors and used to aim injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    Get,
    GetRange,
    Head,
    Put,
    PutIfAbsent,
    PutIfMatch,
    List,
    Delete,
    PresignPut,
    PresignGet,
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Get => "get",
            Self::GetRange => "ranged get",
            Self::Head => "head",
            Self::Put => "put",
            Self::PutIfAbsent => "put-if-absent",
            Self::PutIfMatch => "put-if-match",
            Self::List => "list",
            Self::Delete => "delete",
            Self::PresignPut => "presign",
            Self::PresignGet => "presign get",
        };
        f.write_str(name)
    }
}

/// An opaque version tag for one write of one object.
///
/// Only compared for equality. Backends whose tags are content hashes (S3, R2,
/// and ours, to match) give equal tags to equal bytes, which is why every
/// object swapped by CAS carries something unique per write.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    pub fn new(tag: impl Into<String>) -> Self {
        Self(tag.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag the in-process backends give to `bytes`.
    pub(crate) fn of_content(bytes: &[u8]) -> Self {
        Self(format!("\"{}\"", ContentHash::of(bytes)))
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({})", self.0)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A whole object and the tag of the write that produced it.
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: Bytes,
    pub etag: ETag,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: ETag,
}

/// One page of a listing, in ascending key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub keys: Vec<ObjectKey>,
    /// Pass as `start_after` to get the next page; `None` on the last page.
    pub next: Option<ObjectKey>,
}

/// A URL a client can PUT an object's bytes to directly, bypassing the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub url: String,
    /// Headers the client must send exactly as given (they are signed),
    /// including the SHA-256 checksum that makes the store refuse other bytes.
    pub headers: Vec<(String, String)>,
    pub expires_at: SystemTime,
}

/// The storage primitive every grove component is built on.
///
/// Implementations must make each call atomic: a reader sees an object whole
/// or not at all, and conditional writes are linearizable with respect to each
/// other (across processes, for backends that processes share).
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Reads a whole object.
    async fn get(&self, key: &ObjectKey) -> Result<Object, StoreError>;

    /// Reads the object unless its tag is still `known`; `Ok(None)` means
    /// unchanged. Pollers use this so an unchanged object costs no transfer
    /// (S3 answers `If-None-Match` with 304). The default reads and compares.
    async fn get_if_changed(&self, key: &ObjectKey, known: &ETag) -> Result<Option<Object>, StoreError> {
        let object = self.get(key).await?;
        Ok((object.etag != *known).then_some(object))
    }

    /// Reads `range` (end exclusive, clamped to the object's size) so large
    /// objects can be streamed in pieces. A start at or past the end is
    /// [`StoreError::RangeNotSatisfiable`].
    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError>;

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError>;

    /// The object's size, or [`StoreError::NotFound`]. Existence checks of
    /// thousands of blobs during a publish use this: it may skip computing
    /// the tag, which costs a full read on backends that derive tags from
    /// content. The default asks [`Self::head`].
    async fn size(&self, key: &ObjectKey) -> Result<u64, StoreError> {
        Ok(self.head(key).await?.size)
    }

    /// Writes unconditionally.
    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError>;

    /// Writes only if no object exists under `key`; otherwise
    /// [`StoreError::PreconditionFailed`]. This is how immutable, create-only
    /// objects (versions, log segments) are written.
    async fn put_if_absent(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError>;

    /// Writes only if the current object's tag is `expected` (compare-and-swap);
    /// otherwise, or if the object is gone, [`StoreError::PreconditionFailed`].
    async fn put_if_match(&self, key: &ObjectKey, bytes: Bytes, expected: &ETag) -> Result<ETag, StoreError>;

    /// Lists keys that start with `prefix` (a plain string prefix, not only
    /// whole segments), in ascending order, after `start_after`, at most
    /// `limit` per page.
    async fn list(&self, prefix: &str, start_after: Option<&ObjectKey>, limit: usize) -> Result<ListPage, StoreError>;

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// A URL for uploading exactly the bytes whose SHA-256 is `sha256` to
    /// `key`, valid for `expires_in`; `None` where the backend has no such URLs
    /// (then uploads go through the host), which is the default.
    async fn presign_put(
        &self,
        key: &ObjectKey,
        sha256: &ContentHash,
        expires_in: Duration,
    ) -> Result<Option<PresignedPut>, StoreError> {
        let _ = (key, sha256, expires_in);
        Ok(None)
    }

    /// A URL anyone can GET the object at for `expires_in`, answered with
    /// `content_type`, so a big file's bytes can come from the store
    /// instead of through an edge; `None` where the backend has no such
    /// URLs, which is the default.
    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        content_type: &str,
    ) -> Result<Option<String>, StoreError> {
        let _ = (key, expires_in, content_type);
        Ok(None)
    }
}

/// Clamps a requested range to an object of `size` bytes, as every backend must.
pub(crate) fn clamp_range(key: &ObjectKey, range: Range<u64>, size: u64) -> Result<Range<u64>, StoreError> {
    if range.start >= size || range.start >= range.end {
        return Err(StoreError::RangeNotSatisfiable {
            key: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(range.start..range.end.min(size))
}
