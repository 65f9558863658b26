//! The log's operations and the tables they change. The writer commits
//! them, the journal records them for shipping, and a rebuild replays them
//! from shipped segments. One [`Tables::apply`] serves both the live writer
//! and the replay, so a rebuilt node holds exactly what the original
//! committed.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::types::LogError;
use grove_core::timestamp::Timestamp;

/// Entries by (site and path, timestamp): `{data, author}` as JSON.
pub(super) const ENTRIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("entries");
/// The latest timestamp of each site and path.
pub(super) const LATEST: TableDefinition<&str, u64> = TableDefinition::new("latest");
/// Paths created explicitly, and whether they are serialized.
pub(super) const PATHS: TableDefinition<&str, bool> = TableDefinition::new("paths");
/// For each site and path trimmed: the latest timestamp removed.
pub(super) const TRIMMED: TableDefinition<&str, u64> = TableDefinition::new("trimmed");
/// Counters: the clock bound, the journal's next sequence number, the epoch.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Which paths of a site each timestamp wrote, by (site, timestamp): the
/// site's change feed, JSON lists of paths.
pub(super) const CHANGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("changes");
/// Committed operations not yet shipped to the object store, by sequence
/// number (only when the log ships segments).
pub(super) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");

/// The clock's persisted bound, in milliseconds.
pub(super) const CLOCK_BOUND: &str = "clock_bound_ms";
/// The sequence number the next journaled operation gets.
pub(super) const JOURNAL_NEXT: &str = "journal_next";
/// The epoch this log writes segments under.
pub(super) const EPOCH: &str = "epoch";

pub(super) fn db_error<E: Into<redb::Error>>(error: E) -> LogError {
    LogError::Database(error.into().to_string())
}

/// What an entry's value holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stored {
    pub data: Box<serde_json::value::RawValue>,
    pub author: String,
}

/// One entry written by a [`Op::Write`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct KeyedWrite {
    pub key: String,
    pub data: Box<serde_json::value::RawValue>,
    pub author: String,
}

/// A committed change to the log. Keys are `<site>\0<path>`. Externally
/// tagged (`{"write": {...}}`): an internally tagged enum would buffer its
/// fields, and the raw JSON values inside cannot be read from a buffer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Op {
    Create {
        key: String,
        serialized: bool,
    },
    /// One timestamp for every write: a plain write has one, a transaction
    /// several (on distinct paths).
    Write {
        ts: Timestamp,
        writes: Vec<KeyedWrite>,
    },
    Trim {
        key: String,
        before: Timestamp,
    },
}

/// The log's tables, open in one write transaction.
pub(super) struct Tables<'txn> {
    entries: Table<'txn, (&'static str, u64), &'static [u8]>,
    latest: Table<'txn, &'static str, u64>,
    paths: Table<'txn, &'static str, bool>,
    trimmed: Table<'txn, &'static str, u64>,
    meta: Table<'txn, &'static str, u64>,
    journal: Table<'txn, u64, &'static [u8]>,
    changes: Table<'txn, (&'static str, u64), &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, LogError> {
        Ok(Self {
            entries: txn.open_table(ENTRIES).map_err(db_error)?,
            latest: txn.open_table(LATEST).map_err(db_error)?,
            paths: txn.open_table(PATHS).map_err(db_error)?,
            trimmed: txn.open_table(TRIMMED).map_err(db_error)?,
            meta: txn.open_table(META).map_err(db_error)?,
            journal: txn.open_table(JOURNAL).map_err(db_error)?,
            changes: txn.open_table(CHANGES).map_err(db_error)?,
        })
    }

    /// The latest timestamp written to `key`, or zero.
    pub fn latest(&self, key: &str) -> Result<Timestamp, LogError> {
        Ok(self
            .latest
            .get(key)
            .map_err(db_error)?
            .map_or(Timestamp::ZERO, |ts| Timestamp::from_u64(ts.value())))
    }

    /// Whether `key` was created serialized (`None`: never created).
    pub fn created(&self, key: &str) -> Result<Option<bool>, LogError> {
        Ok(self.paths.get(key).map_err(db_error)?.map(|flag| flag.value()))
    }

    pub fn meta(&self, name: &str) -> Result<Option<u64>, LogError> {
        Ok(self.meta.get(name).map_err(db_error)?.map(|value| value.value()))
    }

    pub fn set_meta(&mut self, name: &str, value: u64) -> Result<(), LogError> {
        self.meta.insert(name, value).map_err(db_error)?;
        Ok(())
    }

    /// Applies a validated operation.
    pub fn apply(&mut self, op: &Op) -> Result<(), LogError> {
        match op {
            Op::Create { key, serialized } => {
                self.paths.insert(key.as_str(), *serialized).map_err(db_error)?;
            }
            Op::Write { ts, writes } => {
                let mut by_site: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
                for write in writes {
                    let (site, path) = write.key.split_once('\u{0}').unwrap_or((write.key.as_str(), ""));
                    by_site.entry(site).or_default().push(path);
                }
                for (site, paths) in by_site {
                    let paths = serde_json::to_vec(&paths).expect("paths serialize");
                    self.changes
                        .insert((site, ts.as_u64()), paths.as_slice())
                        .map_err(db_error)?;
                }
                for write in writes {
                    let stored = serde_json::to_vec(&Stored {
                        data: write.data.clone(),
                        author: write.author.clone(),
                    })
                    .expect("entries serialize");
                    self.entries
                        .insert((write.key.as_str(), ts.as_u64()), stored.as_slice())
                        .map_err(db_error)?;
                    self.latest.insert(write.key.as_str(), ts.as_u64()).map_err(db_error)?;
                }
            }
            Op::Trim { key, before } => {
                let mut gone = Vec::new();
                for item in self
                    .entries
                    .range((key.as_str(), 0)..(key.as_str(), before.as_u64()))
                    .map_err(db_error)?
                {
                    gone.push(item.map_err(db_error)?.0.value().1);
                }
                if let Some(&last) = gone.last() {
                    for ts in &gone {
                        self.entries.remove((key.as_str(), *ts)).map_err(db_error)?;
                    }
                    let earlier = self
                        .trimmed
                        .get(key.as_str())
                        .map_err(db_error)?
                        .map_or(0, |ts| ts.value());
                    self.trimmed.insert(key.as_str(), earlier.max(last)).map_err(db_error)?;
                }
            }
        }
        Ok(())
    }

    /// Records `op` in the journal, for shipping, under the next sequence
    /// number.
    pub fn journal(&mut self, op: &Op) -> Result<(), LogError> {
        let seq = self.meta(JOURNAL_NEXT)?.unwrap_or(1);
        let line = serde_json::to_vec(op).expect("operations serialize");
        self.journal.insert(seq, line.as_slice()).map_err(db_error)?;
        self.set_meta(JOURNAL_NEXT, seq + 1)
    }

    /// Drops journaled operations up to `through`, once they are shipped.
    pub fn forget(&mut self, through: u64) -> Result<(), LogError> {
        self.journal.retain_in(..=through, |_, _| false).map_err(db_error)?;
        Ok(())
    }
}
