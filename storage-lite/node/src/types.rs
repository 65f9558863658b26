//! The log's vocabulary, below every module that uses it: its errors,
//! entries and pages, counters, the wall clock and the data-path rule.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::hlc::ClockError;
use grove_core::timestamp::Timestamp;

/// Longest path accepted, in bytes.
const MAX_PATH_BYTES: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Clock(#[from] ClockError),
    #[error("{path} is serialized and its latest entry is {latest}; write with after = {latest} to append")]
    Conflict { path: String, latest: Timestamp },
    #[error("{path:?} was created {}; it cannot be created {}", serialized_word(*.existing), serialized_word(!*.existing))]
    CreatedOtherwise { path: String, existing: bool },
    #[error("the data is not JSON: {0}")]
    InvalidData(String),
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    #[error("the log's database failed: {0}")]
    Database(String),
    #[error("{0} is open in another process")]
    InUse(String),
    #[error("trimmed: the history asked for is gone; the first available timestamp is {first_available}")]
    Trimmed { first_available: Timestamp },
    #[error("the log's writer has stopped")]
    WriterGone,
    #[error("this node was superseded: {0}; it takes no more writes")]
    Fenced(String),
}

fn serialized_word(serialized: bool) -> &'static str {
    if serialized { "serialized" } else { "plain" }
}

/// One entry of a path's log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub ts: Timestamp,
    /// The JSON value written, as text.
    pub data: Box<serde_json::value::RawValue>,
    /// Id of the handle that wrote it.
    pub author: String,
}

/// A page of a path's entries, oldest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Pass as `after` for the next page; `None` when this page reached the end.
    pub next: Option<Timestamp>,
}

/// Counters for tests and metrics: group commit shows as fewer commits
/// than writes.
#[derive(Debug, Default)]
pub struct LogStats {
    pub writes: AtomicU64,
    pub commits: AtomicU64,
}

/// Wall-clock milliseconds; tests replace it.
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Refuses paths that are not data paths: 1 to 512 bytes of `/`-separated
/// segments of the object-key alphabet, so a path is also a token path
/// (`sites/<site>/<path>`) that grants can name.
pub fn check_path(path: &str) -> Result<(), LogError> {
    let refuse = |reason| LogError::InvalidPath {
        path: path.chars().take(80).collect(),
        reason,
    };
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return Err(refuse("it must be 1 to 512 bytes"));
    }
    if path.starts_with('/') || path.ends_with('/') || path.split('/').any(|segment| segment.is_empty()) {
        return Err(refuse("it must be segments separated by single slashes"));
    }
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
    if path
        .split('/')
        .any(|segment| segment == "." || segment == ".." || !segment.bytes().all(allowed))
    {
        return Err(refuse(
            "segments are A-Z, a-z, 0-9, '.', '_' and '-', and not '.' or '..'",
        ));
    }
    Ok(())
}

/// The system clock in milliseconds since the Unix epoch: the [`WallClock`]
/// outside tests.
pub fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}
