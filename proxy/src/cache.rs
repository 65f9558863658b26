//! The blob cache: memory (moka, weighed in bytes), then a size-bounded
//! content-addressed disk cache, then the object store.
//!
//! Concurrent misses for one blob coalesce into one store fetch (moka runs
//! one loader per key and hands its result to every waiter). Every blob is
//! verified against its hash before it is cached; a corrupt blob is an error,
//! never a response. Blobs larger than `max_memory_object` are fetched in
//! ranges into a disk file and served from there in pieces. A disk file is
//! hashed again only the first time this process reads it (files a previous
//! run left are not trusted blindly); re-reading it into memory after the
//! memory tier evicted it checks its length, not its hash.
//!
//! A blob held in memory that is at least `sendfile_min_bytes` keeps its
//! disk file open beside its bytes, so plaintext HTTP/1 can send it from
//! the page cache ([`crate::sendfile`]) while TLS and HTTP/2 send the bytes.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use grove_core::ContentHash;
use grove_objects::content::{ContentError, ContentStore};
use grove_objects::store::{ObjectStore, StoreError};
use moka::ops::compute::Op;
use tokio::io::AsyncWriteExt;

use crate::cached_read;
use crate::metrics;
use crate::reply::Body;

/// Piece size for fetching large blobs from the store.
const CHUNK_BYTES: u64 = 4 << 20;

/// A cached blob: held in memory, or an open, verified file of the disk
/// cache. Holding the file open (not its path) keeps its bytes readable even
/// if the disk cache evicts and unlinks it meanwhile.
#[derive(Debug, Clone)]
pub enum CachedBlob {
    /// In memory; `file` is the same bytes' verified disk-cache file, kept
    /// open for a blob large enough to be sent from there.
    Memory {
        bytes: Bytes,
        file: Option<Arc<std::fs::File>>,
    },
    Disk {
        file: Arc<std::fs::File>,
        size: u64,
    },
}

impl CachedBlob {
    /// The whole blob as a reply's body.
    pub fn body(&self) -> Body {
        match self {
            Self::Memory { bytes, file: None } => Body::Bytes(bytes.clone()),
            Self::Memory {
                bytes,
                file: Some(file),
            } => Body::Mirrored {
                bytes: bytes.clone(),
                file: Arc::clone(file),
                start: 0,
            },
            Self::Disk { file, size } => Body::File {
                file: Arc::clone(file),
                start: 0,
                len: *size,
            },
        }
    }

    /// The blob's bytes, if memory holds them.
    pub fn in_memory(&self) -> Option<&Bytes> {
        match self {
            Self::Memory { bytes, .. } => Some(bytes),
            Self::Disk { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("blob {0} is not in the store")]
    Missing(ContentHash),
    #[error("blob {hash} is corrupt in the store")]
    Corrupt { hash: ContentHash },
    #[error("the store is unavailable: {0}")]
    Store(#[source] StoreError),
    #[error("the disk cache failed: {0}")]
    Disk(#[from] io::Error),
}

impl CacheError {
    fn from_content(hash: ContentHash, error: ContentError) -> Self {
        match error {
            ContentError::Corrupt { .. } => Self::Corrupt { hash },
            ContentError::Store(StoreError::NotFound { .. }) => Self::Missing(hash),
            ContentError::Store(error) => Self::Store(error),
        }
    }
}

pub struct BlobCache {
    memory: moka::future::Cache<ContentHash, CachedBlob>,
    disk: DiskCache,
    blobs: ContentStore,
    max_memory_object: u64,
    /// Blobs held in memory from this size keep their disk file open;
    /// `None` keeps none (sendfile is off).
    files_kept_from: Option<u64>,
}

impl BlobCache {
    /// `files_kept_from`: blobs held in memory from this size keep their
    /// disk file open, for sendfile (`None`: none do). It bounds the files
    /// the memory tier holds open to `memory_bytes` over it.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        memory_bytes: u64,
        disk: DiskCache,
        max_memory_object: u64,
        files_kept_from: Option<u64>,
    ) -> Self {
        let memory = moka::future::Cache::builder()
            .max_capacity(memory_bytes)
            .weigher(|_, blob: &CachedBlob| match blob {
                CachedBlob::Memory { bytes, .. } => u32::try_from(bytes.len()).unwrap_or(u32::MAX).max(64),
                // Counted heavily: each holds an open file descriptor.
                CachedBlob::Disk { .. } => 64 * 1024,
            })
            .build();
        Self {
            memory,
            disk,
            blobs: ContentStore::blobs(store),
            max_memory_object,
            files_kept_from: files_kept_from.map(|from| from.max(1)),
        }
    }

    /// Keeps bytes made here (a rendered page) in the memory tier, so they
    /// are served like any blob.
    pub async fn insert(&self, hash: ContentHash, bytes: Bytes) {
        self.memory.insert(hash, CachedBlob::Memory { bytes, file: None }).await;
    }

    /// The blob `hash` of `size` bytes, from the nearest tier that has it.
    pub async fn get(&self, hash: &ContentHash, size: u64) -> Result<CachedBlob, Arc<CacheError>> {
        if let Some(blob) = self.memory.get(hash).await {
            metrics::CACHE_LOOKUPS.with_label_values(&["memory"]).inc();
            return Ok(blob);
        }
        self.memory.try_get_with(*hash, self.load(*hash, size)).await
    }

    /// The blob `hash` when no manifest says its size (`/_grove/blob/<hash>`):
    /// a memory hit costs nothing; a miss asks the store for the size first.
    pub async fn get_unsized(&self, hash: &ContentHash) -> Result<CachedBlob, Arc<CacheError>> {
        if let Some(blob) = self.memory.get(hash).await {
            metrics::CACHE_LOOKUPS.with_label_values(&["memory"]).inc();
            return Ok(blob);
        }
        let size = match self.blobs.size(hash).await {
            Ok(size) => size,
            Err(error) => return Err(Arc::new(CacheError::from_content(*hash, error.into()))),
        };
        self.get(hash, size).await
    }

    /// Whole bytes of a blob small enough to hold in memory (rule files,
    /// compression input); `None` if it is too large for that.
    pub async fn bytes(&self, hash: &ContentHash, size: u64) -> Result<Option<Bytes>, Arc<CacheError>> {
        Ok(self.get(hash, size).await?.in_memory().cloned())
    }

    /// A blob for the memory tier, with its disk file if it is large enough
    /// to be sent from there.
    fn held(&self, bytes: Bytes, file: Option<std::fs::File>) -> CachedBlob {
        let keep_file = self.files_kept_from.is_some_and(|from| bytes.len() as u64 >= from);
        CachedBlob::Memory {
            bytes,
            file: file.filter(|_| keep_file).map(Arc::new),
        }
    }

    async fn load(&self, hash: ContentHash, size: u64) -> Result<CachedBlob, CacheError> {
        let in_memory = size <= self.max_memory_object;
        if let Some(blob) = self.disk.get(&hash, size, in_memory).await {
            metrics::CACHE_LOOKUPS.with_label_values(&["disk"]).inc();
            return Ok(match blob {
                DiskBlob::Read { bytes, file } => self.held(bytes, Some(file)),
                DiskBlob::Open { file } => CachedBlob::Disk {
                    file: Arc::new(file),
                    size,
                },
            });
        }
        metrics::CACHE_LOOKUPS.with_label_values(&["store"]).inc();
        let started = Instant::now();
        let fetched = if in_memory {
            self.fetch_small(hash, size).await
        } else {
            self.fetch_large(hash, size).await
        };
        metrics::STORE_FETCH_SECONDS.observe(started.elapsed().as_secs_f64());
        if fetched.is_err() {
            metrics::STORE_ERRORS.inc();
        }
        fetched
    }

    async fn fetch_small(&self, hash: ContentHash, size: u64) -> Result<CachedBlob, CacheError> {
        let bytes = self
            .blobs
            .get_sized(&hash, size)
            .await
            .map_err(|error| CacheError::from_content(hash, error))?;
        let file = match self.disk.insert(&hash, &bytes).await {
            Ok(file) => Some(file),
            Err(error) => {
                tracing::warn!(%hash, %error, "could not write the disk cache");
                None
            }
        };
        Ok(self.held(bytes, file))
    }

    /// Streams a large blob into the disk cache in pieces, and keeps it only
    /// if the whole blob turns out to have the right size and hash.
    async fn fetch_large(&self, hash: ContentHash, size: u64) -> Result<CachedBlob, CacheError> {
        let (temp, temp_path) = self.disk.temp_file().await?;
        let mut temp = tokio::io::BufWriter::new(temp);
        let mut pieces = self.blobs.pieces(&hash, size, CHUNK_BYTES);
        loop {
            match pieces.next().await {
                Ok(Some(piece)) => temp.write_all(&piece).await?,
                Ok(None) => break,
                Err(error) => {
                    drop(temp);
                    let _ = tokio::fs::remove_file(&temp_path).await;
                    return Err(CacheError::from_content(hash, error));
                }
            }
        }
        temp.flush().await?;
        temp.get_ref().sync_all().await?;
        drop(temp);
        // Opened before it is handed to the index, which may evict it at once.
        let file = std::fs::File::open(&temp_path)?;
        self.disk.adopt(&hash, &temp_path, size).await?;
        Ok(CachedBlob::Disk {
            file: Arc::new(file),
            size,
        })
    }
}

/// Content-addressed files under one directory, bounded in total size.
/// Eviction deletes the file (a reader that has it open keeps reading).
pub struct DiskCache {
    dir: PathBuf,
    index: moka::sync::Cache<ContentHash, DiskEntry>,
}

/// What the disk cache knows of one of its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DiskEntry {
    size: u64,
    /// This process wrote the file from verified bytes, or has read it back
    /// whole and matched its hash. A file found at start-up is not trusted
    /// until its first read hashes it; after that, reading it into memory
    /// again (the memory tier may evict and re-promote it often when the
    /// working set outgrows it) costs no SHA-256 over the whole file.
    verified: bool,
}

impl DiskCache {
    /// Opens the cache in `dir`, indexing the files a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        let index = moka::sync::Cache::builder()
            // Weighed in KiB so sizes fit moka's u32 weights.
            .max_capacity(max_bytes / 1024)
            .weigher(|_, entry: &DiskEntry| u32::try_from(entry.size / 1024 + 1).unwrap_or(u32::MAX))
            .eviction_listener({
                let dir = dir.to_owned();
                // A replaced entry (marked verified, or written again) names
                // the same file, still wanted: only a removal deletes it.
                move |hash: Arc<ContentHash>, _, cause| {
                    if cause != moka::notification::RemovalCause::Replaced {
                        let _ = std::fs::remove_file(file_path(&dir, &hash));
                    }
                }
            })
            .build();
        for shard in std::fs::read_dir(dir)? {
            let shard = shard?;
            if shard.file_name() == "tmp" || !shard.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(shard.path())? {
                let file = file?;
                if let Some(hash) = file
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse::<ContentHash>().ok())
                {
                    let size = file.metadata()?.len();
                    index.insert(hash, DiskEntry { size, verified: false });
                }
            }
        }
        for stale in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(stale?.path());
        }
        Ok(Self {
            dir: dir.to_owned(),
            index,
        })
    }

    fn path(&self, hash: &ContentHash) -> PathBuf {
        file_path(&self.dir, hash)
    }

    /// The cached blob of `size` bytes, read into memory if `into_memory`,
    /// else opened. A file of the wrong size, or one whose first read in
    /// this process does not match its hash, is dropped.
    async fn get(&self, hash: &ContentHash, size: u64, into_memory: bool) -> Option<DiskBlob> {
        let entry = self.index.get(hash)?;
        let path = self.path(hash);
        let found = if entry.size != size {
            None
        } else if into_memory {
            match read_whole(path, size).await {
                Ok((bytes, file))
                    if bytes.len() as u64 == size && (entry.verified || ContentHash::of(&bytes) == *hash) =>
                {
                    if !entry.verified {
                        self.mark_verified(hash);
                    }
                    Some(DiskBlob::Read {
                        bytes: Bytes::from(bytes),
                        file,
                    })
                }
                _ => None,
            }
        } else {
            // Large files were hashed as they were written and fsynced before
            // being renamed into place; the size check catches truncation.
            std::fs::File::open(&path)
                .ok()
                .filter(|file| file.metadata().is_ok_and(|meta| meta.len() == size))
                .map(|file| DiskBlob::Open { file })
        };
        if found.is_none() {
            tracing::warn!(%hash, "disk cache entry unreadable, corrupt or of the wrong size; dropping it");
            self.index.invalidate(hash);
        }
        found
    }

    /// Records that `hash`'s file matched its hash, unless it was evicted
    /// (and its file deleted) meanwhile: that entry is not brought back.
    fn mark_verified(&self, hash: &ContentHash) {
        self.index.entry(*hash).and_compute_with(|entry| match entry {
            Some(entry) => Op::Put(DiskEntry {
                verified: true,
                ..entry.into_value()
            }),
            None => Op::Nop,
        });
    }

    async fn temp_file(&self) -> io::Result<(tokio::fs::File, PathBuf)> {
        let path = self.dir.join("tmp").join(format!("{:016x}", rand::random::<u64>()));
        Ok((tokio::fs::File::create(&path).await?, path))
    }

    /// Writes `bytes` as `hash`'s file, and returns it open for reading.
    async fn insert(&self, hash: &ContentHash, bytes: &[u8]) -> io::Result<std::fs::File> {
        let (mut file, temp) = self.temp_file().await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        drop(file);
        // Opened before it is handed to the index, which may evict it at once.
        let file = std::fs::File::open(&temp)?;
        self.adopt(hash, &temp, bytes.len() as u64).await?;
        Ok(file)
    }

    /// Moves a complete, verified, fsynced temp file into place.
    async fn adopt(&self, hash: &ContentHash, temp: &Path, size: u64) -> io::Result<()> {
        let path = self.path(hash);
        tokio::fs::create_dir_all(path.parent().expect("sharded path")).await?;
        tokio::fs::rename(temp, &path).await?;
        self.index.insert(*hash, DiskEntry { size, verified: true });
        Ok(())
    }
}

/// A blob the disk cache found: read whole (with the file it was read
/// from, still open), or only opened.
#[derive(Debug)]
enum DiskBlob {
    Read { bytes: Bytes, file: std::fs::File },
    Open { file: std::fs::File },
}

/// Up to `size + 1` bytes of the file at `path` (one more than expected
/// shows a file that grew), and the file, still open. Read on this worker
/// thread as far as the kernel's caches have it ([`cached_read`]), and on
/// the blocking pool from there. The buffer is made here either way: it
/// lives on in the memory tier and is freed by a worker thread, so it comes
/// from a worker's heap, not from a short-lived blocking-pool thread's.
async fn read_whole(path: PathBuf, size: u64) -> io::Result<(Vec<u8>, std::fs::File)> {
    let limit = usize::try_from(size + 1).unwrap_or(usize::MAX);
    let mut buffer = Vec::with_capacity(limit);
    let opened = match cached_read::open(&path)? {
        Some(file) if cached_read::read_to_end(&file, &mut buffer, limit)? => return Ok((buffer, file)),
        opened => opened,
    };
    tokio::task::spawn_blocking(move || {
        let mut file = match opened {
            Some(file) => file,
            None => std::fs::File::open(&path)?,
        };
        let rest = (limit - buffer.len()) as u64;
        (&mut file).take(rest).read_to_end(&mut buffer)?;
        Ok((buffer, file))
    })
    .await
    .map_err(io::Error::other)?
}

fn file_path(dir: &Path, hash: &ContentHash) -> PathBuf {
    let hex = hash.to_hex();
    dir.join(&hex[..2]).join(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|shard| shard.unwrap())
            .filter(|shard| shard.file_name() != "tmp")
            .map(|shard| std::fs::read_dir(shard.path()).unwrap().count())
            .sum()
    }

    #[tokio::test]
    async fn the_disk_cache_stays_within_its_bound_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::open(dir.path(), 16 * 1024).unwrap();
        let blobs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1024]).collect();
        for blob in &blobs {
            disk.insert(&ContentHash::of(blob), blob).await.unwrap();
        }
        disk.index.run_pending_tasks();
        let kept = files_in(dir.path());
        assert!((1..=16).contains(&kept), "{kept} files of 1 KiB in a 16 KiB cache");

        // Which blobs stay is moka's admission policy; every one that stays is
        // found again, whole, after a restart.
        let reopened = DiskCache::open(dir.path(), 16 * 1024).unwrap();
        let indexed: Vec<ContentHash> = reopened.index.iter().map(|(hash, _)| *hash).collect();
        assert_eq!(indexed.len(), kept, "a restart re-indexes what is on disk");
        for hash in indexed {
            match reopened.get(&hash, 1024, true).await {
                Some(DiskBlob::Read { bytes, .. }) => assert_eq!(ContentHash::of(&bytes), hash),
                other => panic!("an indexed blob is unreadable: {other:?}"),
            }
        }
    }

    /// A file a previous run left is trusted only after its first read
    /// matches its hash: one corrupted in place (same length) is dropped.
    #[tokio::test]
    async fn a_file_from_an_earlier_run_is_hashed_before_it_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let good = b"the original".to_vec();
        let rotten = b"the 0riginal".to_vec();
        let (good_hash, rotten_hash) = (ContentHash::of(&good), ContentHash::of(&rotten));
        let disk = DiskCache::open(dir.path(), 1 << 20).unwrap();
        disk.insert(&good_hash, &good).await.unwrap();
        disk.insert(&rotten_hash, &rotten).await.unwrap();
        drop(disk);
        std::fs::write(file_path(dir.path(), &rotten_hash), &good).unwrap();

        let reopened = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert!(!reopened.index.get(&good_hash).unwrap().verified);
        match reopened.get(&good_hash, good.len() as u64, true).await {
            Some(DiskBlob::Read { bytes, .. }) => assert_eq!(bytes, good),
            other => panic!("an intact file is unreadable: {other:?}"),
        }
        assert!(
            reopened.index.get(&good_hash).unwrap().verified,
            "its first read verified it"
        );
        assert!(reopened.get(&rotten_hash, rotten.len() as u64, true).await.is_none());
        reopened.index.run_pending_tasks();
        assert!(
            !file_path(dir.path(), &rotten_hash).exists(),
            "the corrupt file is deleted"
        );
    }

    /// A verified entry is re-read on a length check alone, so a file that
    /// grew past its size (or shrank) is not served either.
    #[tokio::test]
    async fn a_verified_entry_whose_file_changed_length_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::open(dir.path(), 1 << 20).unwrap();
        let hash = ContentHash::of(b"original");
        disk.insert(&hash, b"original").await.unwrap();
        assert!(disk.index.get(&hash).unwrap().verified, "written from verified bytes");
        std::fs::write(disk.path(&hash), b"original, and then some").unwrap();
        assert!(disk.get(&hash, 8, true).await.is_none());
        assert!(disk.index.get(&hash).is_none(), "the entry is dropped");
    }

    #[tokio::test]
    async fn a_corrupted_disk_entry_is_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::open(dir.path(), 1 << 20).unwrap();
        let hash = ContentHash::of(b"original");
        disk.insert(&hash, b"original").await.unwrap();
        std::fs::write(disk.path(&hash), b"bit rot").unwrap();
        assert!(disk.get(&hash, 8, true).await.is_none());
        disk.index.run_pending_tasks();
        assert!(!disk.path(&hash).exists());
    }

    /// Recording a file as verified, or writing a blob again, replaces its
    /// index entry; the file stays: only an eviction deletes it.
    #[tokio::test]
    async fn a_file_outlives_its_entry_being_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let blob = b"kept across restarts".to_vec();
        let hash = ContentHash::of(&blob);
        let disk = DiskCache::open(dir.path(), 1 << 20).unwrap();
        disk.insert(&hash, &blob).await.unwrap();
        disk.insert(&hash, &blob).await.unwrap();
        disk.index.run_pending_tasks();
        assert!(file_path(dir.path(), &hash).exists(), "writing it again deleted it");
        drop(disk);

        let reopened = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert!(reopened.get(&hash, blob.len() as u64, true).await.is_some());
        assert!(reopened.index.get(&hash).unwrap().verified);
        reopened.index.run_pending_tasks();
        assert!(file_path(dir.path(), &hash).exists(), "verifying it deleted it");
        drop(reopened);
        let third = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert!(
            third.get(&hash, blob.len() as u64, true).await.is_some(),
            "lost by the next restart"
        );
    }

    /// A blob held in memory keeps its disk file open from the threshold
    /// on, whether it came from the store or from the disk cache, and the
    /// file holds the same bytes; with sendfile off no file is kept.
    #[tokio::test]
    async fn memory_keeps_the_disk_file_of_blobs_from_the_threshold_on() {
        use std::os::unix::fs::FileExt;

        let store: Arc<dyn ObjectStore> = Arc::new(grove_objects::store::MemoryStore::new());
        let small = Bytes::from(vec![1u8; 1000]);
        let large = Bytes::from((0..5000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let blobs = ContentStore::blobs(Arc::clone(&store));
        let small_hash = blobs.put(small.clone()).await.unwrap();
        let large_hash = blobs.put(large.clone()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();

        for from_the_disk in [false, true] {
            let disk = DiskCache::open(dir.path(), 1 << 20).unwrap();
            let cache = BlobCache::new(Arc::clone(&store), 1 << 20, disk, 1 << 20, Some(4096));
            let held = cache.get(&large_hash, large.len() as u64).await.unwrap();
            let CachedBlob::Memory {
                bytes,
                file: Some(file),
            } = held
            else {
                panic!("a large blob keeps no file (from the disk: {from_the_disk}): {held:?}");
            };
            assert_eq!(bytes, large);
            let mut on_disk = vec![0; large.len()];
            file.read_exact_at(&mut on_disk, 0).unwrap();
            assert_eq!(on_disk, large, "the file holds the blob's bytes");
            let held = cache.get(&small_hash, small.len() as u64).await.unwrap();
            assert!(matches!(held, CachedBlob::Memory { file: None, .. }), "{held:?}");
        }

        let disk = DiskCache::open(dir.path(), 1 << 20).unwrap();
        let off = BlobCache::new(Arc::clone(&store), 1 << 20, disk, 1 << 20, None);
        let held = off.get(&large_hash, large.len() as u64).await.unwrap();
        assert!(matches!(held, CachedBlob::Memory { file: None, .. }), "{held:?}");
    }
}
