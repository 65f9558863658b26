//! The `data` object, templates' only way to node data. Every call records
//! what it read, so a write marks exactly the pages whose reads it touches,
//! and counts what it read against the render's limits.
//!
//! - `data.entries(path, limit=20)`: the newest entries of `path`, newest
//!   first, each `{ts, data}`;
//! - `data.last(path)`: the newest entry, or none;
//! - `data.paths(prefix)`: the names directly under `prefix` that hold data.

use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Object, Value, from_args};
use minijinja::{Error, ErrorKind, State};
use serde::{Deserialize, Serialize};

use crate::routes::check_data_path;

/// Entries `data.entries` returns unless asked for fewer.
pub const DEFAULT_ENTRIES: usize = 20;

/// One entry as templates see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataEntry {
    /// The node timestamp, as the API writes it.
    pub ts: String,
    pub data: serde_json::Value,
}

/// Where a render's data comes from: one site's node, as of one timestamp.
/// Implementations block (a render runs on a blocking thread).
pub trait DataSource: Send + Sync {
    /// Up to `limit` entries of `path`, newest first.
    fn entries(&self, path: &str, limit: usize) -> Result<Vec<DataEntry>, String>;
    /// The names directly under `prefix` that hold data, sorted.
    fn paths(&self, prefix: &str) -> Result<Vec<String>, String>;
}

/// What a render read: what a later write must touch to make it stale.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Read {
    /// The entries of one path (`entries`, `last`).
    Path(String),
    /// The names under a prefix (`paths`): any write below it may add one.
    Children(String),
}

impl Read {
    /// Whether a write to `written` can change what this read returned.
    pub fn touched_by(&self, written: &str) -> bool {
        match self {
            Self::Path(path) => path == written,
            Self::Children(prefix) => written
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty()),
        }
    }
}

/// How much one render may read.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub entries: usize,
    pub bytes: usize,
}

/// The `data` object of one render.
pub struct Data {
    source: Arc<dyn DataSource>,
    limits: ReadLimits,
    spent: Mutex<Spent>,
}

#[derive(Default)]
struct Spent {
    reads: Vec<Read>,
    entries: usize,
    bytes: usize,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("data")
    }
}

impl Data {
    pub fn new(source: Arc<dyn DataSource>, limits: ReadLimits) -> Arc<Self> {
        Arc::new(Self {
            source,
            limits,
            spent: Mutex::new(Spent::default()),
        })
    }

    /// Every read so far, each once, in order.
    pub fn reads(&self) -> Vec<Read> {
        let mut reads = self.spent.lock().expect("not poisoned").reads.clone();
        reads.sort();
        reads.dedup();
        reads
    }

    fn record(&self, read: Read) {
        self.spent.lock().expect("not poisoned").reads.push(read);
    }

    fn charge(&self, entries: &[DataEntry]) -> Result<(), Error> {
        let bytes: usize = entries.iter().map(|entry| entry.data.to_string().len()).sum();
        let mut spent = self.spent.lock().expect("not poisoned");
        spent.entries += entries.len();
        spent.bytes += bytes;
        if spent.entries > self.limits.entries || spent.bytes > self.limits.bytes {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "the render read more than its limit of {} entries or {} bytes",
                    self.limits.entries, self.limits.bytes
                ),
            ));
        }
        Ok(())
    }

    fn entries(&self, path: &str, limit: usize) -> Result<Vec<DataEntry>, Error> {
        checked(path)?;
        self.record(Read::Path(path.to_owned()));
        let entries = self.source.entries(path, limit).map_err(unavailable)?;
        self.charge(&entries)?;
        Ok(entries)
    }
}

impl Object for Data {
    fn call_method(self: &Arc<Self>, _state: &State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "entries" => {
                let (path, options): (&str, Kwargs) = from_args(args)?;
                let limit: Option<usize> = options.get("limit")?;
                options.assert_all_used()?;
                let limit = limit.unwrap_or(DEFAULT_ENTRIES).min(self.limits.entries);
                Ok(Value::from_serialize(self.entries(path, limit)?))
            }
            "last" => {
                let (path,): (&str,) = from_args(args)?;
                Ok(self
                    .entries(path, 1)?
                    .into_iter()
                    .next()
                    .map_or(Value::from(()), Value::from_serialize))
            }
            "paths" => {
                let (prefix,): (&str,) = from_args(args)?;
                checked(prefix)?;
                self.record(Read::Children(prefix.to_owned()));
                let names = self.source.paths(prefix).map_err(unavailable)?;
                Ok(Value::from_serialize(names))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("data has no method {method}: use entries, last or paths"),
            )),
        }
    }
}

/// A data path of this site, or the template's error: `../x`, `/x` and the
/// like never reach the node (and no path names another site's data).
fn checked(path: &str) -> Result<(), Error> {
    check_data_path(path).map_err(|message| Error::new(ErrorKind::InvalidOperation, message))
}

fn unavailable(message: String) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("reading node data failed: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_touches_the_reads_it_can_change() {
        let path = Read::Path("posts/42/comments".to_owned());
        assert!(path.touched_by("posts/42/comments"));
        assert!(!path.touched_by("posts/42/comments/x") && !path.touched_by("posts/42"));
        let children = Read::Children("posts".to_owned());
        assert!(children.touched_by("posts/43") && children.touched_by("posts/43/comments"));
        assert!(!children.touched_by("posts") && !children.touched_by("postsx/1"));
    }
}
