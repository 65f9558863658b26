//! Reads of the disk cache that never wait on the disk: a file is opened
//! and read on the calling worker thread only as far as the kernel can do
//! it from its caches, and the caller takes the rest to the blocking pool.
//!
//! Why: a working set larger than the memory cache is served from the disk
//! cache's files, which under load are in the page cache. Handing each such
//! read to tokio's blocking pool cost two thread switches and the pool's
//! lock a request, the largest cost of serving random rust-doc pages
//! through a 64 MiB memory cache (perf, pinned). nginx reads on its worker;
//! this does too, but without ever blocking it on storage:
//! - `openat2(RESOLVE_CACHED)` resolves the path from the dentry cache only
//!   (Linux 5.12);
//! - `preadv2(RWF_NOWAIT)` copies only what the page cache holds (4.14).
//!
//! Either refusing (`EAGAIN`), or the kernel not knowing the call or the
//! flag, leaves the read to the blocking pool, as before.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Opens `path` for reading if its name resolves from the kernel's caches
/// alone; `None` when that would mean reading the disk (or this kernel
/// cannot tell), so the caller opens it on the blocking pool.
pub fn open(path: &Path) -> io::Result<Option<File>> {
    let name = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `open_how` is plain integers, for which zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_CACHED;
    // SAFETY: `name` is NUL-terminated and `how` is an `open_how` of the
    // size passed; both outlive the call.
    let descriptor = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if descriptor >= 0 {
        let descriptor = i32::try_from(descriptor).map_err(io::Error::other)?;
        // SAFETY: the descriptor was just opened and nothing else owns it.
        return Ok(Some(unsafe { File::from_raw_fd(descriptor) }));
    }
    let error = io::Error::last_os_error();
    if would_wait(&error) { Ok(None) } else { Err(error) }
}

/// Reads `file` from its current position into `buffer` until it holds
/// `limit` bytes or the file ends, as far as the page cache has the bytes.
/// Returns whether it got there; if not, the file's position is where the
/// cached bytes ended, so a blocking read can go on from there.
pub fn read_to_end(file: &File, buffer: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    loop {
        let wanted = limit.saturating_sub(buffer.len());
        if wanted == 0 {
            return Ok(true);
        }
        buffer.reserve(wanted);
        let spare = buffer.spare_capacity_mut();
        let slice = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: wanted.min(spare.len()),
        };
        // SAFETY: the iovec points into `buffer`'s spare capacity, which is
        // at least `iov_len` bytes and is not touched during the call.
        // Offset -1 reads at (and advances) the file's position.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &slice, 1, -1, libc::RWF_NOWAIT) };
        match usize::try_from(read) {
            Ok(0) => return Ok(true),
            Ok(read) => {
                // SAFETY: the kernel initialized the `read` bytes after the
                // buffer's length.
                unsafe { buffer.set_len(buffer.len() + read) };
            }
            Err(_) => {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    _ if would_wait(&error) => return Ok(false),
                    _ => return Err(error),
                }
            }
        }
    }
}

/// Whether a refusal means "not from the caches" (or "not on this kernel"),
/// not that the file is missing or unreadable.
fn would_wait(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAGAIN | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn written(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join("blob");
        let mut file = File::create(&path).unwrap();
        file.write_all(bytes).unwrap();
        file.sync_all().unwrap();
        path
    }

    #[test]
    fn a_file_in_the_page_cache_is_read_whole_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let path = written(dir.path(), &bytes);
        // Read once, so the pages and the name are cached.
        std::fs::read(&path).unwrap();
        let file = open(&path).unwrap().expect("a just-read file's name is cached");
        let mut buffer = Vec::new();
        assert!(read_to_end(&file, &mut buffer, bytes.len() + 1).unwrap());
        assert_eq!(buffer, bytes, "the end of the file ends the read");
        let file = open(&path).unwrap().unwrap();
        let mut buffer = Vec::new();
        assert!(read_to_end(&file, &mut buffer, 10).unwrap());
        assert_eq!(buffer, bytes[..10], "no more than the limit");
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent");
        // Looked up once, its absence is in the dentry cache.
        assert!(std::fs::metadata(&absent).is_err());
        let error = open(&absent).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn bytes_not_in_the_page_cache_are_left_for_a_blocking_read_from_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let path = written(dir.path(), &bytes);
        let mut file = File::open(&path).unwrap();
        // Drop the (clean, synced) pages from the page cache.
        // SAFETY: a plain advice call on an open descriptor.
        let advised = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(advised, 0);
        let mut buffer = Vec::new();
        assert!(
            !read_to_end(&file, &mut buffer, bytes.len() + 1).unwrap(),
            "bytes only the disk has are not waited for"
        );
        let read_here = buffer.len();
        file.read_to_end(&mut buffer).unwrap();
        assert_eq!(
            buffer, bytes,
            "a blocking read goes on where this one stopped ({read_here} bytes)"
        );
    }
}
