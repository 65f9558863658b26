//! Local-directory backend: the embedded default.
//!
//! Layout under the root directory:
//! - `objects/<key>`: one file per object;
//! - `.tmp/`: files being written, renamed into place when complete;
//! - `.locks/<00..ff>`: lock files, one per stripe of keys.
//!
//! Every write goes temp file -> fsync -> (lock) -> check condition -> rename ->
//! fsync directory -> (unlock). Readers never lock: a rename is atomic, so they
//! see the old object or the new one, never a torn one, even after a crash.
//! The lock is an OS file lock, so compare-and-swap is atomic across
//! processes sharing the directory as well as across threads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::memory::page_of;
use super::{ETag, ListPage, Object, ObjectKey, ObjectMeta, ObjectStore, StoreError, StoreOp, clamp_range};
use grove_core::hash::ContentHash;

/// Temp files older than this are leftovers of a crashed writer.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// An object store in a directory, safe to share between processes.
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<Dirs>,
}

#[derive(Debug)]
struct Dirs {
    objects: PathBuf,
    tmp: PathBuf,
    locks: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`, and removes temp
    /// files that crashed writers left behind.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root: PathBuf = root.into();
        let dirs = Dirs {
            objects: root.join("objects"),
            tmp: root.join(".tmp"),
            locks: root.join(".locks"),
        };
        for dir in [&dirs.objects, &dirs.tmp, &dirs.locks] {
            fs::create_dir_all(dir)?;
        }
        remove_stale_temp_files(&dirs.tmp)?;
        Ok(Self { inner: Arc::new(dirs) })
    }

    /// Runs blocking file work off the async runtime's worker threads.
    async fn blocking<T: Send + 'static>(
        &self,
        op: StoreOp,
        key: &ObjectKey,
        work: impl FnOnce(&Dirs, &ObjectKey) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let dirs = Arc::clone(&self.inner);
        let owned_key = key.clone();
        tokio::task::spawn_blocking(move || work(&dirs, &owned_key))
            .await
            .map_err(|join_error| StoreError::backend(op, key, join_error))?
    }

    async fn write(
        &self,
        op: StoreOp,
        key: &ObjectKey,
        bytes: Bytes,
        condition: Option<Condition>,
    ) -> Result<ETag, StoreError> {
        self.blocking(op, key, move |dirs, key| dirs.write(op, key, &bytes, condition))
            .await
    }
}

#[derive(Debug, Clone)]
enum Condition {
    Absent,
    Matches(ETag),
}

impl Dirs {
    fn object_path(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey admits no empty, '.' or '..' segment, so this stays inside `objects`.
        self.objects.join(key.as_str())
    }

    fn lock_stripe(&self, key: &ObjectKey) -> io::Result<File> {
        let stripe = ContentHash::of(key.as_str().as_bytes()).as_bytes()[0];
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.locks.join(format!("{stripe:02x}")))?;
        file.lock()?;
        Ok(file)
    }

    fn write(
        &self,
        op: StoreOp,
        key: &ObjectKey,
        bytes: &[u8],
        condition: Option<Condition>,
    ) -> Result<ETag, StoreError> {
        let io_error = |error: io::Error| StoreError::backend(op, key, error);
        let temp = TempFile::create(&self.tmp).map_err(io_error)?;
        temp.write_durably(bytes).map_err(io_error)?;

        let target = self.object_path(key);
        let _lock = self.lock_stripe(key).map_err(io_error)?;
        if let Some(condition) = condition {
            let allowed = match &condition {
                // Existence is enough; the object may be large.
                Condition::Absent => !target.try_exists().map_err(io_error)?,
                Condition::Matches(expected) => match read_if_exists(&target).map_err(io_error)? {
                    Some(current) => ETag::of_content(&current) == *expected,
                    None => false,
                },
            };
            if !allowed {
                return Err(StoreError::PreconditionFailed { key: key.to_string() });
            }
        }
        let parent = target.parent().expect("object paths have a parent");
        create_dirs_durably(&self.objects, parent).map_err(io_error)?;
        temp.persist(&target).map_err(io_error)?;
        sync_dir(parent).map_err(io_error)?;
        Ok(ETag::of_content(bytes))
    }
}

/// A temp file that removes itself unless persisted.
struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    fn create(dir: &Path) -> io::Result<Self> {
        let name = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Ok(Self {
            path: dir.join(name),
            persisted: false,
        })
    }

    fn write_durably(&self, bytes: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&self.path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn persist(mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates `dir` and any missing parents below `root`, syncing each new
/// directory's parent, so a new site's first object survives a power loss.
fn create_dirs_durably(root: &Path, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(current) = next {
        if current == root || current.is_dir() {
            break;
        }
        missing.push(current);
        next = current.parent();
    }
    for created in missing.into_iter().rev() {
        match fs::create_dir(created) {
            Ok(()) => sync_dir(created.parent().expect("below the store root"))?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if is_missing(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A missing file, or a missing directory on its path (`NotADirectory` when a
/// key's prefix names an object rather than a folder).
fn is_missing(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn remove_stale_temp_files(tmp: &Path) -> io::Result<()> {
    let now = SystemTime::now();
    for entry in fs::read_dir(tmp)? {
        // Other processes rename their temp files away at any moment.
        let Ok(modified) = entry.and_then(|entry| Ok((entry.path(), entry.metadata()?.modified()?))) else {
            continue;
        };
        let (path, modified) = modified;
        if now.duration_since(modified).unwrap_or_default() > STALE_TEMP_AGE {
            let _ = fs::remove_file(path);
        }
    }
    Ok(())
}

/// Collects every object key under `dir` (which is `objects/<relative>`).
fn collect_keys(dir: &Path, relative: &str, keys: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if is_missing(&error) => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let key = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        if entry.file_type()?.is_dir() {
            collect_keys(&entry.path(), &key, keys)?;
        } else {
            keys.push(key);
        }
    }
    Ok(())
}

fn missing_or(op: StoreOp, key: &ObjectKey) -> impl Fn(io::Error) -> StoreError + '_ {
    move |error| {
        if is_missing(&error) {
            StoreError::NotFound { key: key.to_string() }
        } else {
            StoreError::backend(op, key, error)
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn get(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        self.blocking(StoreOp::Get, key, |dirs, key| {
            let bytes = fs::read(dirs.object_path(key)).map_err(missing_or(StoreOp::Get, key))?;
            let etag = ETag::of_content(&bytes);
            Ok(Object {
                bytes: Bytes::from(bytes),
                etag,
            })
        })
        .await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.blocking(StoreOp::GetRange, key, move |dirs, key| {
            let failed = missing_or(StoreOp::GetRange, key);
            let mut file = File::open(dirs.object_path(key)).map_err(&failed)?;
            let size = file.metadata().map_err(&failed)?.len();
            let range = clamp_range(key, range, size)?;
            file.seek(SeekFrom::Start(range.start)).map_err(&failed)?;
            let mut bytes = vec![0; (range.end - range.start) as usize];
            file.read_exact(&mut bytes).map_err(&failed)?;
            Ok(Bytes::from(bytes))
        })
        .await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let object = self.get(key).await?;
        Ok(ObjectMeta {
            size: object.bytes.len() as u64,
            etag: object.etag,
        })
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64, StoreError> {
        self.blocking(StoreOp::Head, key, |dirs, key| {
            let metadata = fs::metadata(dirs.object_path(key)).map_err(missing_or(StoreOp::Head, key))?;
            Ok(metadata.len())
        })
        .await
    }

    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.write(StoreOp::Put, key, bytes, None).await
    }

    async fn put_if_absent(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.write(StoreOp::PutIfAbsent, key, bytes, Some(Condition::Absent))
            .await
    }

    async fn put_if_match(&self, key: &ObjectKey, bytes: Bytes, expected: &ETag) -> Result<ETag, StoreError> {
        let condition = Some(Condition::Matches(expected.clone()));
        self.write(StoreOp::PutIfMatch, key, bytes, condition).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&ObjectKey>, limit: usize) -> Result<ListPage, StoreError> {
        let dirs = Arc::clone(&self.inner);
        let prefix = prefix.to_owned();
        let start_after = start_after.cloned();
        // Only the part of the prefix before its last '/' becomes a directory
        // path; it must be a valid key, so it cannot leave the store.
        let walk_from = prefix.rfind('/').map_or("", |slash| &prefix[..slash]).to_owned();
        if !walk_from.is_empty() {
            ObjectKey::new(walk_from.as_str())?;
        }
        let walk = move || {
            // Walk only the deepest directory the prefix names in full.
            let walk_from = walk_from.as_str();
            let mut keys = Vec::new();
            collect_keys(&dirs.objects.join(walk_from), walk_from, &mut keys)
                .map_err(|error| StoreError::backend(StoreOp::List, &prefix, error))?;
            keys.retain(|key| key.starts_with(&prefix));
            keys.sort_unstable();
            let keys = keys
                .into_iter()
                .filter_map(|key| ObjectKey::new(key).ok())
                .filter(|key| start_after.as_ref().is_none_or(|after| key > after));
            Ok(page_of(keys, limit))
        };
        tokio::task::spawn_blocking(walk)
            .await
            .map_err(|join_error| StoreError::backend(StoreOp::List, "", join_error))?
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.blocking(StoreOp::Delete, key, |dirs, key| {
            let io_error = |error| StoreError::backend(StoreOp::Delete, key, error);
            let path = dirs.object_path(key);
            let _lock = dirs.lock_stripe(key).map_err(io_error)?;
            match fs::remove_file(&path) {
                Ok(()) => sync_dir(path.parent().expect("object paths have a parent")).map_err(io_error),
                Err(error) if is_missing(&error) => Ok(()),
                Err(error) => Err(io_error(error)),
            }
        })
        .await
    }
}
