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
/// A site's creates and trims by (site, timestamp), as operation JSON:
/// with `CHANGES` and `ENTRIES`, a site's whole history in timestamp
/// order, which is what replication ships to a backup.
pub(super) const SITE_OPS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("site_ops");
/// Idempotency keys of writes, `<site>\0<key>`, and the timestamp the
/// write got: a retried write answers with it instead of writing again.
pub(super) const IDEMPOTENCY: TableDefinition<&str, u64> = TableDefinition::new("idempotency");
/// The same keys by (site, timestamp), so they replicate with their write
/// and expire oldest first.
pub(super) const IDEMPOTENCY_BY_TS: TableDefinition<(&str, u64), &str> = TableDefinition::new("idempotency_by_ts");

/// How long an idempotency key is remembered: far longer than any retry
/// after a failover (the proxy gives up after 15 s).
pub(super) const IDEMPOTENCY_KEPT_MS: u64 = 3_600_000;

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
    /// `ts` orders it among the site's writes for replication; segments
    /// older than replication carry none (zero).
    Create {
        key: String,
        serialized: bool,
        #[serde(default)]
        ts: Timestamp,
    },
    /// One timestamp for every write: a plain write has one, a transaction
    /// several (on distinct paths, of one site).
    Write {
        ts: Timestamp,
        writes: Vec<KeyedWrite>,
        /// `<site>\0<key>` of the caller's `Idempotency-Key`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
    },
    Trim {
        key: String,
        before: Timestamp,
        #[serde(default)]
        ts: Timestamp,
        /// The latest timestamp it removed, once applied (shipped with it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        removed: Option<Timestamp>,
    },
    /// Removes everything of `site` after `after`: a former primary's
    /// unacknowledged tail, which the new primary never adopted. A trim
    /// in that tail cannot be undone, so then the whole site goes, to be
    /// copied again from the primary.
    Truncate { site: String, after: Timestamp },
}

impl Op {
    /// The site of the operation (`<site>` of its keys).
    pub fn site(&self) -> &str {
        let key = match self {
            Op::Create { key, .. } | Op::Trim { key, .. } => key.as_str(),
            Op::Write { writes, .. } => writes.first().map_or("", |write| write.key.as_str()),
            Op::Truncate { site, .. } => return site,
        };
        key.split_once('\u{0}').map_or(key, |(site, _)| site)
    }

    /// The timestamp it was committed under (zero for a truncation).
    pub fn ts(&self) -> Timestamp {
        match self {
            Op::Create { ts, .. } | Op::Trim { ts, .. } | Op::Write { ts, .. } => *ts,
            Op::Truncate { .. } => Timestamp::ZERO,
        }
    }
}

/// What a truncation removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Truncated {
    /// Everything after the point; the rest is kept.
    Tail,
    /// The whole site (a trim was in the tail).
    Site,
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
    site_ops: Table<'txn, (&'static str, u64), &'static [u8]>,
    idempotency: Table<'txn, &'static str, u64>,
    idempotency_by_ts: Table<'txn, (&'static str, u64), &'static str>,
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
            site_ops: txn.open_table(SITE_OPS).map_err(db_error)?,
            idempotency: txn.open_table(IDEMPOTENCY).map_err(db_error)?,
            idempotency_by_ts: txn.open_table(IDEMPOTENCY_BY_TS).map_err(db_error)?,
        })
    }

    /// The timestamp of the write that used idempotency key `key`
    /// (`<site>\0<key>`), if one did.
    pub fn idempotent(&self, key: &str) -> Result<Option<Timestamp>, LogError> {
        Ok(self
            .idempotency
            .get(key)
            .map_err(db_error)?
            .map(|ts| Timestamp::from_u64(ts.value())))
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
            Op::Create { key, serialized, ts } => {
                self.paths.insert(key.as_str(), *serialized).map_err(db_error)?;
                self.record_site_op(op, *ts)?;
            }
            Op::Write {
                ts,
                writes,
                idempotency_key,
            } => {
                if let Some(idempotency_key) = idempotency_key {
                    self.idempotency
                        .insert(idempotency_key.as_str(), ts.as_u64())
                        .map_err(db_error)?;
                    self.idempotency_by_ts
                        .insert((op.site(), ts.as_u64()), idempotency_key.as_str())
                        .map_err(db_error)?;
                    self.expire_idempotency_keys(op.site(), *ts)?;
                }
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
            Op::Trim {
                key,
                before,
                ts,
                removed,
            } => {
                let mut gone = Vec::new();
                for item in self
                    .entries
                    .range((key.as_str(), 0)..(key.as_str(), before.as_u64()))
                    .map_err(db_error)?
                {
                    gone.push(item.map_err(db_error)?.0.value().1);
                }
                for ts in &gone {
                    self.entries.remove((key.as_str(), *ts)).map_err(db_error)?;
                }
                // What the trim removed where it was first applied: a copy
                // that never held those entries knows their history is gone.
                let bound = gone.last().copied().max(removed.map(Timestamp::as_u64));
                if let Some(bound) = bound {
                    let earlier = self
                        .trimmed
                        .get(key.as_str())
                        .map_err(db_error)?
                        .map_or(0, |ts| ts.value());
                    self.trimmed
                        .insert(key.as_str(), earlier.max(bound))
                        .map_err(db_error)?;
                }
                let applied = Op::Trim {
                    key: key.clone(),
                    before: *before,
                    ts: *ts,
                    removed: bound.map(Timestamp::from_u64),
                };
                self.record_site_op(&applied, *ts)?;
            }
            Op::Truncate { site, after } => {
                self.truncate(site, *after)?;
            }
        }
        Ok(())
    }

    /// Forgets a few of the site's idempotency keys older than
    /// [`IDEMPOTENCY_KEPT_MS`] before `now`, so the keys kept stay about an
    /// hour's worth however many writes carry one (the proxy gives every
    /// write it may retry a key). Driven by the write's own timestamp, so a
    /// replay forgets the same keys.
    fn expire_idempotency_keys(&mut self, site: &str, now: Timestamp) -> Result<(), LogError> {
        let horizon = Timestamp::at_ms(now.physical_ms().saturating_sub(IDEMPOTENCY_KEPT_MS)).as_u64();
        let mut expired = Vec::new();
        for item in self
            .idempotency_by_ts
            .range((site, 0)..(site, horizon))
            .map_err(db_error)?
            .take(4)
        {
            let (stored, key) = item.map_err(db_error)?;
            expired.push((stored.value().1, key.value().to_owned()));
        }
        for (ts, key) in expired {
            self.idempotency_by_ts.remove((site, ts)).map_err(db_error)?;
            self.idempotency.remove(key.as_str()).map_err(db_error)?;
        }
        Ok(())
    }

    fn record_site_op(&mut self, op: &Op, ts: Timestamp) -> Result<(), LogError> {
        if ts > Timestamp::ZERO {
            let line = serde_json::to_vec(op).expect("operations serialize");
            self.site_ops
                .insert((op.site(), ts.as_u64()), line.as_slice())
                .map_err(db_error)?;
        }
        Ok(())
    }

    /// See [`Op::Truncate`].
    pub fn truncate(&mut self, site: &str, after: Timestamp) -> Result<Truncated, LogError> {
        let start = after.as_u64().saturating_add(1);
        let mut tail_ops = Vec::new();
        for item in self
            .site_ops
            .range((site, start)..=(site, u64::MAX))
            .map_err(db_error)?
        {
            let (stored, line) = item.map_err(db_error)?;
            let op: Op = serde_json::from_slice(line.value())
                .map_err(|error| LogError::Database(format!("a site operation is corrupt: {error}")))?;
            tail_ops.push((stored.value().1, op));
        }
        if tail_ops.iter().any(|(_, op)| matches!(op, Op::Trim { .. })) {
            self.remove_site(site)?;
            return Ok(Truncated::Site);
        }
        for (ts, op) in tail_ops {
            if let Op::Create { key, .. } = op {
                self.paths.remove(key.as_str()).map_err(db_error)?;
            }
            self.site_ops.remove((site, ts)).map_err(db_error)?;
        }
        let mut tail = Vec::new();
        for item in self.changes.range((site, start)..=(site, u64::MAX)).map_err(db_error)? {
            let (stored, paths) = item.map_err(db_error)?;
            let paths: Vec<String> = serde_json::from_slice(paths.value())
                .map_err(|error| LogError::Database(format!("a change record is corrupt: {error}")))?;
            tail.push((stored.value().1, paths));
        }
        let mut touched = std::collections::BTreeSet::new();
        for (ts, paths) in tail {
            for path in paths {
                let key = format!("{site}\u{0}{path}");
                self.entries.remove((key.as_str(), ts)).map_err(db_error)?;
                touched.insert(key);
            }
            self.changes.remove((site, ts)).map_err(db_error)?;
            if let Some(idempotency_key) = self.idempotency_by_ts.remove((site, ts)).map_err(db_error)? {
                self.idempotency.remove(idempotency_key.value()).map_err(db_error)?;
            }
        }
        for key in touched {
            let previous = self
                .entries
                .range((key.as_str(), 0)..=(key.as_str(), u64::MAX))
                .map_err(db_error)?
                .next_back()
                .transpose()
                .map_err(db_error)?
                .map(|(stored, _)| stored.value().1);
            match previous {
                Some(ts) => self.latest.insert(key.as_str(), ts).map_err(db_error)?,
                None => self.latest.remove(key.as_str()).map_err(db_error)?,
            };
        }
        Ok(Truncated::Tail)
    }

    /// Removes every row of `site` from every table but the journal.
    fn remove_site(&mut self, site: &str) -> Result<(), LogError> {
        let low = format!("{site}\u{0}");
        let high = format!("{site}\u{1}");
        let keyed: Vec<String> = self
            .latest
            .range(low.as_str()..high.as_str())
            .map_err(db_error)?
            .map(|item| item.map(|(key, _)| key.value().to_owned()).map_err(db_error))
            .collect::<Result<_, _>>()?;
        for key in &keyed {
            self.entries
                .retain_in((key.as_str(), 0)..=(key.as_str(), u64::MAX), |_, _| false)
                .map_err(db_error)?;
        }
        self.latest
            .retain_in(low.as_str()..high.as_str(), |_, _| false)
            .map_err(db_error)?;
        self.paths
            .retain_in(low.as_str()..high.as_str(), |_, _| false)
            .map_err(db_error)?;
        self.trimmed
            .retain_in(low.as_str()..high.as_str(), |_, _| false)
            .map_err(db_error)?;
        self.idempotency
            .retain_in(low.as_str()..high.as_str(), |_, _| false)
            .map_err(db_error)?;
        self.changes
            .retain_in((site, 0)..=(site, u64::MAX), |_, _| false)
            .map_err(db_error)?;
        self.site_ops
            .retain_in((site, 0)..=(site, u64::MAX), |_, _| false)
            .map_err(db_error)?;
        self.idempotency_by_ts
            .retain_in((site, 0)..=(site, u64::MAX), |_, _| false)
            .map_err(db_error)?;
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
