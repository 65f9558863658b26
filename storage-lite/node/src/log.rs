//! The node's log: for each path of each site, an ordered list of entries,
//! kept in redb. Writes go through one writer thread (`writer.rs`) that
//! commits whatever has queued up in a single transaction and acknowledges
//! each only after that commit; readers see only committed transactions, so
//! nothing is readable before it is durable.

use std::path::Path as FsPath;
use std::sync::{Arc, mpsc};

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

use crate::hlc::Clock;
use crate::ops::{
    CHANGES, CLOCK_BOUND, ENTRIES, IDEMPOTENCY_BY_TS, JOURNAL, LATEST, Op, SITE_OPS, Stored, TRIMMED, Tables,
    Truncated, db_error,
};
use crate::types::{Entry, LogError, LogStats, Page, WallClock, check_path, system_ms};
use crate::visibility::Visibility;
use crate::writer::{PendingGuard, PendingWrite, Request, Writer};
use grove_core::names::SiteName;
use grove_core::timestamp::Timestamp;

/// A node's log, open on one redb file.
pub struct Log {
    db: Arc<Database>,
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Request>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<LogStats>,
    /// Counts commits and visibility raises; watchers and the shipper
    /// wait on it.
    commits: tokio::sync::watch::Receiver<u64>,
    committed: Arc<tokio::sync::watch::Sender<u64>>,
    /// How far each site can be read (see [`Visibility`]).
    visibility: Arc<Visibility>,
    /// Set when another incarnation of this node took over its segments.
    fenced: std::sync::Mutex<Option<String>>,
}

impl Drop for Log {
    /// Stops the writer after what it has queued, and waits for it, so the
    /// file is closed when this returns and can be opened again at once.
    fn drop(&mut self) {
        self.writer = None;
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Log {
    /// Opens (or creates) the log at `file`, kept only there.
    pub fn open(file: &FsPath) -> Result<Self, LogError> {
        Self::open_with(file, Arc::new(system_ms), false)
    }

    /// Opens the log with a given wall clock; with `journal`, committed
    /// operations are also kept for shipping (see `segments.rs`).
    pub fn open_with(file: &FsPath, wall: WallClock, journal: bool) -> Result<Self, LogError> {
        let db = Arc::new(Database::create(file).map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => LogError::InUse(file.display().to_string()),
            other => db_error(other),
        })?);
        let bound = {
            let txn = db.begin_write().map_err(db_error)?;
            let bound = Tables::open(&txn)?.meta(CLOCK_BOUND)?.unwrap_or(0);
            txn.commit().map_err(db_error)?;
            bound
        };
        let (writer, requests) = mpsc::channel();
        let stats = Arc::new(LogStats::default());
        let (committed, commits) = tokio::sync::watch::channel(0);
        let committed = Arc::new(committed);
        let mut state = Writer {
            committed: Arc::clone(&committed),
            db: Arc::clone(&db),
            clock: Clock::resume(bound),
            bound,
            wall,
            stats: Arc::clone(&stats),
            journal,
        };
        let writer_thread = std::thread::Builder::new()
            .name("grove-log-writer".to_owned())
            .spawn(move || state.run(&requests))
            .map_err(|error| LogError::Database(format!("starting the writer: {error}")))?;
        Ok(Self {
            db,
            writer: Some(writer),
            writer_thread: Some(writer_thread),
            stats,
            commits,
            committed,
            visibility: Arc::new(Visibility::default()),
            fenced: std::sync::Mutex::new(None),
        })
    }

    /// How far each site can be read.
    pub fn visibility(&self) -> &Visibility {
        &self.visibility
    }

    /// Limits what readers see of `site` to timestamps up to `ts` (see
    /// [`Visibility::limit`]), waking watchers if that shows more.
    pub fn limit_visibility(&self, site: &str, ts: Timestamp) {
        if self.visibility.limit(site, ts) {
            self.committed.send_modify(|commits| *commits += 1);
        }
    }

    /// Raises `site`'s read bound to `ts`, if it has a lower one.
    pub fn raise_visibility(&self, site: &str, ts: Timestamp) {
        if self.visibility.raise(site, ts) {
            self.committed.send_modify(|commits| *commits += 1);
        }
    }

    /// Shows everything committed of `site` again.
    pub fn lift_visibility(&self, site: &str) {
        if self.visibility.lift(site) {
            self.committed.send_modify(|commits| *commits += 1);
        }
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// Creates `path`: a serialized path accepts a write only if its `after`
    /// covers the path's latest entry (compare-and-append). Creating it
    /// again the same way is a no-op.
    pub async fn create(&self, site: &SiteName, path: &str, serialized: bool) -> Result<(), LogError> {
        let key = key(site, path)?;
        self.ask(|reply| Request::Create {
            key,
            path: path.to_owned(),
            serialized,
            reply,
        })
        .await
    }

    /// Appends `data` (JSON text) to `path`; returns its timestamp once it
    /// is durable.
    pub async fn append(
        &self,
        site: &SiteName,
        path: &str,
        data: String,
        author: &str,
        after: Timestamp,
    ) -> Result<Timestamp, LogError> {
        self.append_once(site, path, data, author, after, None).await
    }

    /// [`Log::append`], at most once per `idempotency_key` of the site: a
    /// retry with the same key (after a failover, say) gets the first
    /// write's timestamp, and writes nothing.
    pub async fn append_once(
        &self,
        site: &SiteName,
        path: &str,
        data: String,
        author: &str,
        after: Timestamp,
        idempotency_key: Option<&str>,
    ) -> Result<Timestamp, LogError> {
        let writes = vec![pending_write(site, path, data)?];
        self.ask(|reply| Request::Write {
            guard: None,
            writes,
            author: author.to_owned(),
            after,
            idempotency_key: idempotency_key.map(|key| format!("{site}\u{0}{key}")),
            reply,
        })
        .await
    }

    /// Appends every `(path, data)` of `writes` atomically under one
    /// timestamp, if `path`'s latest entry is exactly `if_last_ts` (zero:
    /// the path is empty). Paths must be distinct: each gets one entry.
    /// With an `idempotency_key`, at most once (see [`Log::append_once`]).
    pub async fn txn(
        &self,
        site: &SiteName,
        path: &str,
        if_last_ts: Timestamp,
        writes: Vec<(String, String)>,
        author: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Timestamp, LogError> {
        let guard = PendingGuard {
            key: key(site, path)?,
            path: path.to_owned(),
        };
        if writes.is_empty() {
            return Err(LogError::InvalidTxn("it has no writes".to_owned()));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some((twice, _)) = writes.iter().find(|(path, _)| !seen.insert(path.as_str())) {
            return Err(LogError::InvalidTxn(format!("it writes {twice:?} twice")));
        }
        let writes = writes
            .into_iter()
            .map(|(path, data)| pending_write(site, &path, data))
            .collect::<Result<_, _>>()?;
        self.ask(|reply| Request::Write {
            guard: Some(guard),
            writes,
            author: author.to_owned(),
            after: if_last_ts,
            idempotency_key: idempotency_key.map(|key| format!("{site}\u{0}{key}")),
            reply,
        })
        .await
    }

    /// Up to `limit` entries of `path` after `after`, oldest first.
    pub fn read(&self, site: &SiteName, path: &str, after: Timestamp, limit: usize) -> Result<Page, LogError> {
        read_page(
            &self.db,
            &key(site, path)?,
            after,
            limit,
            self.visibility.bound(site.as_str()),
        )
    }

    /// Up to `limit` entries of `path` before `before`, newest first: the
    /// latest of a path as of a timestamp (`before` = that timestamp + 1).
    /// `next` is the `before` of the following (older) page. History a
    /// trim removed is simply absent.
    pub fn read_newest(&self, site: &SiteName, path: &str, before: Timestamp, limit: usize) -> Result<Page, LogError> {
        let key = key(site, path)?;
        let txn = self.db.begin_read().map_err(db_error)?;
        let entries = txn.open_table(ENTRIES).map_err(db_error)?;
        let mut page = Vec::new();
        let mut more = false;
        let end = before
            .as_u64()
            .min(self.visibility.bound(site.as_str()).saturating_add(1));
        for item in entries
            .range((key.as_str(), 0)..(key.as_str(), end))
            .map_err(db_error)?
            .rev()
        {
            if page.len() == limit {
                more = true;
                break;
            }
            let (stored_key, value) = item.map_err(db_error)?;
            page.push(decode_entry(stored_key.value().1, value.value())?);
        }
        let next = if more {
            page.last().map(|entry: &Entry| entry.ts)
        } else {
            None
        };
        Ok(Page { entries: page, next })
    }

    /// The names directly under `prefix` (`""`: the site's top level) that
    /// hold entries at or below them, sorted; at most `limit`.
    pub fn children(&self, site: &SiteName, prefix: &str, limit: usize) -> Result<Vec<String>, LogError> {
        let base = if prefix.is_empty() {
            format!("{site}\u{0}")
        } else {
            format!("{}/", key(site, prefix)?)
        };
        let bound = self.visibility.bound(site.as_str());
        let txn = self.db.begin_read().map_err(db_error)?;
        let latest = txn.open_table(LATEST).map_err(db_error)?;
        let entries = txn.open_table(ENTRIES).map_err(db_error)?;
        // A path whose entries are all past the bound is not there yet.
        let visible = |key: &str, latest_ts: u64| -> Result<bool, LogError> {
            Ok(latest_ts <= bound
                || entries
                    .range((key, 0)..=(key, bound))
                    .map_err(db_error)?
                    .next()
                    .is_some())
        };
        let mut names = std::collections::BTreeSet::new();
        let mut start = base.clone();
        while names.len() < limit {
            let Some(item) = latest.range(start.as_str()..).map_err(db_error)?.next() else {
                break;
            };
            let (stored, latest_ts) = item.map_err(db_error)?;
            let Some(rest) = stored.value().strip_prefix(base.as_str()) else {
                break;
            };
            if !visible(stored.value(), latest_ts.value())? {
                start = format!("{}\u{0}", stored.value());
                continue;
            }
            // Past this key, or past the whole subtree of its name in one
            // seek (path characters sort below U+10FFFF).
            start = match rest.split_once('/') {
                Some((name, _)) => {
                    let next = format!("{base}{name}/\u{10FFFF}");
                    names.insert(name.to_owned());
                    next
                }
                None => {
                    names.insert(rest.to_owned());
                    format!("{base}{rest}\u{0}")
                }
            };
        }
        Ok(names.into_iter().collect())
    }

    /// Every write of `site` after `after`, as `(timestamp, paths)`, in
    /// commit order, waiting for more: what keeps derived pages fresh.
    pub fn changes(&self, site: &SiteName, after: Timestamp) -> Changes {
        Changes {
            db: Arc::clone(&self.db),
            visibility: Arc::clone(&self.visibility),
            site: site.to_string(),
            cursor: after,
            pending: std::collections::VecDeque::new(),
            commits: self.commits.clone(),
        }
    }

    /// Removes the entries of `path` before `before`. Readers and watchers
    /// asking for history that is gone (an `after` below the latest entry
    /// removed) get [`LogError::Trimmed`].
    pub async fn trim(&self, site: &SiteName, path: &str, before: Timestamp) -> Result<(), LogError> {
        let key = key(site, path)?;
        self.ask(|reply| Request::Trim { key, before, reply }).await
    }

    /// Every entry of `path` after `after`, in order, as it is committed:
    /// gap-free (one writer issues timestamps in commit order, so nothing
    /// can appear behind a watcher), and resumable from the last timestamp
    /// seen.
    pub fn watch(&self, site: &SiteName, path: &str, after: Timestamp) -> Result<Watch, LogError> {
        let key = key(site, path)?;
        // Trimmed history is refused now, not at the first read.
        read_page(&self.db, &key, after, 0, u64::MAX)?;
        Ok(Watch {
            db: Arc::clone(&self.db),
            visibility: Arc::clone(&self.visibility),
            site: site.to_string(),
            key,
            cursor: after,
            pending: std::collections::VecDeque::new(),
            commits: self.commits.clone(),
        })
    }

    /// The latest timestamp of `site`'s history (writes, creates and
    /// trims), visible or not: how far a backup has copied its primary.
    pub fn site_latest(&self, site: &str) -> Result<Timestamp, LogError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let mut latest = 0;
        for table in [CHANGES, SITE_OPS] {
            let table = txn.open_table(table).map_err(db_error)?;
            if let Some(item) = table.range((site, 0)..=(site, u64::MAX)).map_err(db_error)?.next_back() {
                latest = latest.max(item.map_err(db_error)?.0.value().1);
            }
        }
        Ok(Timestamp::from_u64(latest))
    }

    /// Up to about `limit` of `site`'s operations after `after`, in
    /// timestamp order, rebuilt from its tables: what a backup adopts.
    /// Entries a trim removed since are left out (the trim follows them).
    pub(super) fn ops_after(&self, site: &str, after: Timestamp, limit: usize) -> Result<Vec<Op>, LogError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let changes = txn.open_table(CHANGES).map_err(db_error)?;
        let site_ops = txn.open_table(SITE_OPS).map_err(db_error)?;
        let entries = txn.open_table(ENTRIES).map_err(db_error)?;
        let idempotency = txn.open_table(IDEMPOTENCY_BY_TS).map_err(db_error)?;
        let start = after.as_u64().saturating_add(1);
        let mut ops = Vec::new();
        // Where the writes stopped, if they did before the end.
        let mut through = u64::MAX;
        for item in changes.range((site, start)..=(site, u64::MAX)).map_err(db_error)? {
            if ops.len() == limit {
                through = ops.last().map_or(u64::MAX, |op: &Op| op.ts().as_u64());
                break;
            }
            let (stored, paths) = item.map_err(db_error)?;
            let ts = stored.value().1;
            let paths: Vec<String> = serde_json::from_slice(paths.value())
                .map_err(|error| LogError::Database(format!("a change record is corrupt: {error}")))?;
            let mut writes = Vec::with_capacity(paths.len());
            for path in paths {
                let key = format!("{site}\u{0}{path}");
                if let Some(value) = entries.get((key.as_str(), ts)).map_err(db_error)? {
                    let stored: Stored = serde_json::from_slice(value.value())
                        .map_err(|error| LogError::Database(format!("a stored entry is corrupt: {error}")))?;
                    writes.push(crate::ops::KeyedWrite {
                        key,
                        data: stored.data,
                        author: stored.author,
                    });
                }
            }
            if writes.is_empty() {
                continue;
            }
            let idempotency_key = idempotency
                .get((site, ts))
                .map_err(db_error)?
                .map(|key| key.value().to_owned());
            ops.push(Op::Write {
                ts: Timestamp::from_u64(ts),
                writes,
                idempotency_key,
            });
        }
        // Creates and trims up to the last write taken (or all, if the
        // writes ran out), merged in by timestamp: a page's last operation
        // is how far the copy then holds. Writes a trim removed entirely
        // are skipped, not counted, so a page is never empty while more
        // follows; the trim may come a page later.
        for item in site_ops.range((site, start)..=(site, through)).map_err(db_error)? {
            let (_, line) = item.map_err(db_error)?;
            let op: Op = serde_json::from_slice(line.value())
                .map_err(|error| LogError::Database(format!("a site operation is corrupt: {error}")))?;
            ops.push(op);
        }
        ops.sort_by_key(Op::ts);
        Ok(ops)
    }

    /// Applies, in order, operations `site`'s primary committed.
    pub(super) async fn adopt(&self, ops: Vec<Op>) -> Result<(), LogError> {
        self.ask(|reply| Request::Adopt { ops, reply }).await
    }

    /// See [`Op::Truncate`].
    pub(super) async fn truncate(&self, site: &str, after: Timestamp) -> Result<Truncated, LogError> {
        let site = site.to_owned();
        self.ask(|reply| Request::Truncate { site, after, reply }).await
    }

    /// Applies operations shipped by an earlier incarnation of this node.
    pub(super) async fn replay(&self, ops: Vec<Op>) -> Result<(), LogError> {
        self.ask(|reply| Request::Replay { ops, reply }).await
    }

    /// Up to `limit` journaled operations not yet shipped, oldest first, as
    /// (sequence number, JSON).
    pub(super) fn journal(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let journal = txn.open_table(JOURNAL).map_err(db_error)?;
        journal
            .iter()
            .map_err(db_error)?
            .take(limit)
            .map(|item| {
                let (seq, op) = item.map_err(db_error)?;
                Ok((seq.value(), op.value().to_vec()))
            })
            .collect()
    }

    /// Drops journaled operations up to `through`: they are shipped.
    pub(super) async fn forget(&self, through: u64) -> Result<(), LogError> {
        self.ask(|reply| Request::Forget { through, reply }).await
    }

    pub(super) fn meta(&self, name: &str) -> Result<Option<u64>, LogError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let meta = txn.open_table(crate::ops::META).map_err(db_error)?;
        Ok(meta.get(name).map_err(db_error)?.map(|value| value.value()))
    }

    pub(super) async fn set_meta(&self, name: &'static str, value: u64) -> Result<(), LogError> {
        self.ask(|reply| Request::SetMeta { name, value, reply }).await
    }

    /// Wakes on every commit.
    pub(super) fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Refuses every later change: another incarnation of this node owns
    /// its history now. Reads go on.
    pub(super) fn fence(&self, why: String) {
        let mut fenced = self.fenced.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if fenced.is_none() {
            tracing::error!(%why, "storage node fenced: it takes no more writes");
            *fenced = Some(why);
        }
    }

    /// Sends a request to the writer and waits for its answer.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Request,
    ) -> Result<T, LogError> {
        if let Some(why) = self
            .fenced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
        {
            return Err(LogError::Fenced(why));
        }
        let (reply, answer) = oneshot::channel();
        let writer = self.writer.as_ref().ok_or(LogError::WriterGone)?;
        writer.send(request(reply)).map_err(|_| LogError::WriterGone)?;
        answer.await.map_err(|_| LogError::WriterGone)?
    }
}

/// A write of `data` (JSON text) to a checked path.
fn pending_write(site: &SiteName, path: &str, data: String) -> Result<PendingWrite, LogError> {
    Ok(PendingWrite {
        key: key(site, path)?,
        path: path.to_owned(),
        data: serde_json::value::RawValue::from_string(data)
            .map_err(|error| LogError::InvalidData(error.to_string()))?,
    })
}

/// Entries of one path as they are committed; see [`Log::watch`].
pub struct Watch {
    db: Arc<Database>,
    visibility: Arc<Visibility>,
    site: String,
    key: String,
    cursor: Timestamp,
    pending: std::collections::VecDeque<Entry>,
    commits: tokio::sync::watch::Receiver<u64>,
}

impl Watch {
    /// Entries read at a time.
    const PAGE: usize = 256;

    /// The next entry, waiting for one to be committed.
    pub async fn next(&mut self) -> Result<Entry, LogError> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                self.cursor = entry.ts;
                return Ok(entry);
            }
            // Marked seen before reading: a commit after the read wakes us.
            self.commits.borrow_and_update();
            let bound = self.visibility.bound(&self.site);
            let page = read_page(&self.db, &self.key, self.cursor, Self::PAGE, bound)?;
            if page.entries.is_empty() {
                self.commits.changed().await.map_err(|_| LogError::WriterGone)?;
            } else {
                self.pending.extend(page.entries);
            }
        }
    }
}

/// A site's change feed: see [`Log::changes`].
pub struct Changes {
    db: Arc<Database>,
    visibility: Arc<Visibility>,
    site: String,
    cursor: Timestamp,
    pending: std::collections::VecDeque<(Timestamp, Vec<String>)>,
    commits: tokio::sync::watch::Receiver<u64>,
}

impl Changes {
    const PAGE: usize = 256;

    /// The next write's timestamp and paths, waiting for one.
    pub async fn next(&mut self) -> Result<(Timestamp, Vec<String>), LogError> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                self.cursor = change.0;
                return Ok(change);
            }
            self.commits.borrow_and_update();
            let txn = self.db.begin_read().map_err(db_error)?;
            let changes = txn.open_table(CHANGES).map_err(db_error)?;
            let start = self.cursor.as_u64().saturating_add(1);
            let bound = self.visibility.bound(&self.site);
            for item in changes
                .range((self.site.as_str(), start)..=(self.site.as_str(), bound))
                .map_err(db_error)?
                .take(Self::PAGE)
            {
                let (stored, paths) = item.map_err(db_error)?;
                let paths: Vec<String> = serde_json::from_slice(paths.value())
                    .map_err(|error| LogError::Database(format!("a change record is corrupt: {error}")))?;
                self.pending.push_back((Timestamp::from_u64(stored.value().1), paths));
            }
            drop(changes);
            drop(txn);
            if self.pending.is_empty() {
                self.commits.changed().await.map_err(|_| LogError::WriterGone)?;
            }
        }
    }
}

fn decode_entry(ts: u64, value: &[u8]) -> Result<Entry, LogError> {
    let stored: Stored = serde_json::from_slice(value)
        .map_err(|error| LogError::Database(format!("a stored entry is corrupt: {error}")))?;
    Ok(Entry {
        ts: Timestamp::from_u64(ts),
        data: stored.data,
        author: stored.author,
    })
}

/// Up to `limit` entries under `key` after `after` and up to `bound`,
/// oldest first, or [`LogError::Trimmed`] if some of them are gone.
fn read_page(db: &Database, key: &str, after: Timestamp, limit: usize, bound: u64) -> Result<Page, LogError> {
    let txn = db.begin_read().map_err(db_error)?;
    let entries = txn.open_table(ENTRIES).map_err(db_error)?;
    let trimmed = txn.open_table(TRIMMED).map_err(db_error)?;
    if let Some(removed) = trimmed.get(key).map_err(db_error)? {
        let removed = removed.value();
        if after.as_u64() < removed {
            let first_kept = entries
                .range((key, removed + 1)..=(key, u64::MAX))
                .map_err(db_error)?
                .next()
                .transpose()
                .map_err(db_error)?
                .map_or(removed + 1, |(stored_key, _)| stored_key.value().1);
            return Err(LogError::Trimmed {
                first_available: Timestamp::from_u64(first_kept),
            });
        }
    }
    let start = after.as_u64().saturating_add(1);
    let mut page = Vec::new();
    let mut more = false;
    if start > bound {
        return Ok(Page {
            entries: Vec::new(),
            next: None,
        });
    }
    for item in entries.range((key, start)..=(key, bound)).map_err(db_error)? {
        if page.len() == limit {
            more = true;
            break;
        }
        let (stored_key, value) = item.map_err(db_error)?;
        page.push(decode_entry(stored_key.value().1, value.value())?);
    }
    let next = if more { page.last().map(|entry| entry.ts) } else { None };
    Ok(Page { entries: page, next })
}

/// The table key of a site's path; paths are checked here, once.
fn key(site: &SiteName, path: &str) -> Result<String, LogError> {
    check_path(path)?;
    Ok(format!("{site}\u{0}{path}"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::hlc::ClockError;
    use crate::ops;

    fn site() -> SiteName {
        SiteName::parse("blog").unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_writes_get_increasing_timestamps_and_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(&dir.path().join("log.redb")).unwrap());
        let writers = (0..16).map(|writer| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..25 {
                    let data = format!("{{\"writer\":{writer},\"i\":{i}}}");
                    let ts = log
                        .append(&site(), "posts/1/comments", data, "h1", Timestamp::ZERO)
                        .await
                        .unwrap();
                    mine.push(ts);
                }
                mine
            })
        });
        let mut all = Vec::new();
        for writer in writers {
            let mine = writer.await.unwrap();
            assert!(
                mine.windows(2).all(|pair| pair[0] < pair[1]),
                "one writer's acks are in order"
            );
            all.extend(mine);
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 400, "every timestamp is unique");
        assert_eq!(log.stats().writes.load(Ordering::Relaxed), 400);

        let page = log.read(&site(), "posts/1/comments", Timestamp::ZERO, 1000).unwrap();
        let read: Vec<Timestamp> = page.entries.iter().map(|entry| entry.ts).collect();
        assert_eq!(read, all, "every acknowledged write is there, in timestamp order");
        assert_eq!(page.next, None);
        let first = log.read(&site(), "posts/1/comments", Timestamp::ZERO, 10).unwrap();
        assert_eq!(first.entries.len(), 10);
        let rest = log
            .read(&site(), "posts/1/comments", first.next.unwrap(), 1000)
            .unwrap();
        assert_eq!(rest.entries.len(), 390);
        assert_eq!(rest.entries[0].ts, all[10]);

        // Writes that arrive together share one commit (one fsync).
        let commits_before = log.stats().commits.load(Ordering::Relaxed);
        let blog = site();
        let burst = (0..200).map(|i| log.append(&blog, "burst", i.to_string(), "h1", Timestamp::ZERO));
        for result in futures::future::join_all(burst).await {
            result.unwrap();
        }
        let commits = log.stats().commits.load(Ordering::Relaxed) - commits_before;
        assert!(commits < 100, "200 writes sent at once took {commits} commits");
    }

    #[tokio::test]
    async fn a_reopened_log_keeps_every_write_and_never_reuses_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log.redb");
        let now = Arc::new(AtomicU64::new(50_000));
        let wall = {
            let now = Arc::clone(&now);
            Arc::new(move || now.load(Ordering::Relaxed)) as WallClock
        };
        let before = {
            let log = Log::open_with(&file, Arc::clone(&wall), false).unwrap();
            let mut issued = Vec::new();
            for i in 0..5 {
                issued.push(
                    log.append(&site(), "counter", i.to_string(), "h1", Timestamp::ZERO)
                        .await
                        .unwrap(),
                );
            }
            issued
        };
        // The machine's clock went back an hour across the restart.
        now.store(50_000 - 3_600_000 / 100, Ordering::Relaxed);
        let log = Log::open_with(&file, wall, false).unwrap();
        let after = log
            .append(&site(), "counter", "5".to_owned(), "h1", Timestamp::ZERO)
            .await
            .unwrap();
        assert!(after > *before.last().unwrap());
        let page = log.read(&site(), "counter", Timestamp::ZERO, 100).unwrap();
        assert_eq!(page.entries.len(), 6);
        assert_eq!(page.entries[2].data.get(), "2");
        assert_eq!(page.entries[2].author, "h1");
    }

    #[tokio::test]
    async fn serialized_paths_append_only_on_top_of_their_latest_entry() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&dir.path().join("log.redb")).unwrap();
        log.create(&site(), "doc", true).await.unwrap();
        log.create(&site(), "doc", true).await.unwrap();
        assert!(matches!(
            log.create(&site(), "doc", false).await,
            Err(LogError::CreatedOtherwise { existing: true, .. })
        ));
        let first = log
            .append(&site(), "doc", "1".to_owned(), "h1", Timestamp::ZERO)
            .await
            .unwrap();
        match log.append(&site(), "doc", "2".to_owned(), "h2", Timestamp::ZERO).await {
            Err(LogError::Conflict { latest, .. }) => assert_eq!(latest, first),
            other => panic!("expected a conflict, got {other:?}"),
        }
        let second = log.append(&site(), "doc", "2".to_owned(), "h2", first).await.unwrap();
        assert!(second > first);
        // A plain path takes concurrent appends whatever their `after`.
        log.append(&site(), "chat", "1".to_owned(), "h1", Timestamp::ZERO)
            .await
            .unwrap();
        log.append(&site(), "chat", "2".to_owned(), "h1", Timestamp::ZERO)
            .await
            .unwrap();
        assert_eq!(log.read(&site(), "doc", Timestamp::ZERO, 10).unwrap().entries.len(), 2);
    }

    #[tokio::test]
    async fn bad_input_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&dir.path().join("log.redb")).unwrap();
        let issued = log
            .append(&site(), "a", "1".to_owned(), "h1", Timestamp::ZERO)
            .await
            .unwrap();
        for path in [
            "",
            "/a",
            "a/",
            "a//b",
            "a\u{0}b",
            "a b",
            "../a",
            "a/./b",
            &"x".repeat(513),
        ] {
            assert!(matches!(
                log.append(&site(), path, "1".to_owned(), "h1", Timestamp::ZERO).await,
                Err(LogError::InvalidPath { .. })
            ));
        }
        assert!(matches!(
            log.append(&site(), "a", "{not json".to_owned(), "h1", Timestamp::ZERO)
                .await,
            Err(LogError::InvalidData(_))
        ));
        let unissued = Timestamp::from_u64(issued.as_u64() + 1);
        assert!(matches!(
            log.append(&site(), "a", "2".to_owned(), "h1", unissued).await,
            Err(LogError::Clock(ClockError::NeverIssued { .. }))
        ));
        let far = Timestamp::at_ms(system_ms() + 3_600_000);
        assert!(matches!(
            log.append(&site(), "a", "2".to_owned(), "h1", far).await,
            Err(LogError::Clock(ClockError::TooFarAhead { .. }))
        ));
        let page = log.read(&site(), "a", Timestamp::ZERO, 10).unwrap();
        assert_eq!(page.entries.len(), 1, "nothing was written by the refused calls");
        assert_eq!(log.stats().writes.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn newest_first_reads_children_and_the_site_change_feed() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&dir.path().join("log.redb")).unwrap();
        let other = SiteName::parse("other").unwrap();
        let mut feed = log.changes(&site(), Timestamp::ZERO);
        let mut stamps = Vec::new();
        for (path, data) in [
            ("posts/1", "1"),
            ("posts/1/comments", "2"),
            ("posts/1/comments", "3"),
            ("posts/2", "4"),
            ("posts-archive/9", "5"),
            ("posts", "6"),
        ] {
            stamps.push(
                log.append(&site(), path, data.to_owned(), "h", Timestamp::ZERO)
                    .await
                    .unwrap(),
            );
        }
        log.append(&other, "posts/3", "7".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();

        let newest = log
            .read_newest(&site(), "posts/1/comments", Timestamp::from_u64(u64::MAX), 1)
            .unwrap();
        assert_eq!(newest.entries.iter().map(|e| e.data.get()).collect::<Vec<_>>(), ["3"]);
        assert_eq!(newest.next, Some(stamps[2]));
        let older = log.read_newest(&site(), "posts/1/comments", stamps[2], 10).unwrap();
        assert_eq!(older.entries.iter().map(|e| e.data.get()).collect::<Vec<_>>(), ["2"]);
        assert_eq!(older.next, None);
        let as_of = log.read_newest(&site(), "posts/1/comments", stamps[1], 10).unwrap();
        assert!(as_of.entries.is_empty(), "nothing before the first comment");

        assert_eq!(log.children(&site(), "posts", 100).unwrap(), ["1", "2"]);
        assert_eq!(log.children(&site(), "", 100).unwrap(), ["posts", "posts-archive"]);
        assert_eq!(log.children(&site(), "posts", 1).unwrap(), ["1"]);
        assert!(log.children(&site(), "nothing", 100).unwrap().is_empty());
        assert_eq!(log.children(&other, "", 100).unwrap(), ["posts"]);

        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(feed.next().await.unwrap());
        }
        assert_eq!(seen.iter().map(|(ts, _)| *ts).collect::<Vec<_>>(), stamps);
        assert_eq!(seen[1].1, ["posts/1/comments"]);
        let mut resumed = log.changes(&site(), stamps[4]);
        assert_eq!(resumed.next().await.unwrap(), (stamps[5], vec!["posts".to_owned()]));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(100), resumed.next()).await;
        assert!(waiting.is_err(), "another site's write is not in this feed");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn watchers_see_every_acknowledged_write_once_in_order_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(&dir.path().join("log.redb")).unwrap());
        let mut watcher = log.watch(&site(), "chat", Timestamp::ZERO).unwrap();
        let mut late = log.watch(&site(), "chat", Timestamp::ZERO).unwrap();
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for i in 0..20 {
                        let data = format!("{{\"w\":{writer},\"i\":{i}}}");
                        acked.push(log.append(&site(), "chat", data, "h", Timestamp::ZERO).await.unwrap());
                    }
                    acked
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 160 {
            seen.push(watcher.next().await.unwrap().ts);
        }
        let mut acked = Vec::new();
        for writer in writers {
            acked.extend(writer.await.unwrap());
        }
        acked.sort();
        assert_eq!(seen, acked, "every acknowledged write, once, in timestamp order");

        // A watcher that stops and resumes from the last timestamp it saw
        // misses nothing and repeats nothing.
        let mut first_half = Vec::new();
        for _ in 0..80 {
            first_half.push(late.next().await.unwrap().ts);
        }
        drop(late);
        let mut resumed = log.watch(&site(), "chat", *first_half.last().unwrap()).unwrap();
        let mut second_half = Vec::new();
        for _ in 0..80 {
            second_half.push(resumed.next().await.unwrap().ts);
        }
        first_half.extend(second_half);
        assert_eq!(first_half, acked);

        // And it waits for what comes next.
        let next = tokio::spawn(async move { resumed.next().await.unwrap().ts });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!next.is_finished());
        let ts = log
            .append(&site(), "chat", "\"later\"".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        assert_eq!(next.await.unwrap(), ts);
    }

    #[tokio::test]
    async fn trimmed_history_is_refused_with_the_first_available_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&dir.path().join("log.redb")).unwrap();
        let mut issued = Vec::new();
        for i in 0..5 {
            issued.push(
                log.append(&site(), "feed", i.to_string(), "h", Timestamp::ZERO)
                    .await
                    .unwrap(),
            );
        }
        log.trim(&site(), "feed", issued[3]).await.unwrap();
        for after in [Timestamp::ZERO, issued[1]] {
            match log.read(&site(), "feed", after, 10) {
                Err(LogError::Trimmed { first_available }) => assert_eq!(first_available, issued[3]),
                other => panic!("expected trimmed, got {other:?}"),
            }
            assert!(matches!(
                log.watch(&site(), "feed", after),
                Err(LogError::Trimmed { .. })
            ));
        }
        let kept = log.read(&site(), "feed", issued[2], 10).unwrap();
        assert_eq!(
            kept.entries.iter().map(|entry| entry.ts).collect::<Vec<_>>(),
            &issued[3..]
        );
        // Trimming less than before keeps the larger bound.
        log.trim(&site(), "feed", issued[1]).await.unwrap();
        assert!(matches!(
            log.read(&site(), "feed", issued[1], 10),
            Err(LogError::Trimmed { .. })
        ));
    }

    #[tokio::test]
    async fn a_transaction_writes_every_path_under_one_timestamp_only_if_its_path_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&dir.path().join("log.redb")).unwrap();
        let writes = |count: &str| {
            vec![
                ("cart".to_owned(), "{\"items\":1}".to_owned()),
                ("cart/count".to_owned(), count.to_owned()),
            ]
        };
        let first = log
            .txn(&site(), "cart", Timestamp::ZERO, writes("1"), "h", None)
            .await
            .unwrap();
        for path in ["cart", "cart/count"] {
            let page = log.read(&site(), path, Timestamp::ZERO, 10).unwrap();
            assert_eq!(page.entries.len(), 1);
            assert_eq!(page.entries[0].ts, first, "one timestamp for every write");
        }
        // A stale `if_last_ts` is a conflict naming the latest, and writes
        // nothing anywhere.
        match log.txn(&site(), "cart", Timestamp::ZERO, writes("2"), "h", None).await {
            Err(LogError::Conflict { path, latest }) => assert_eq!((path.as_str(), latest), ("cart", first)),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            log.read(&site(), "cart/count", Timestamp::ZERO, 10)
                .unwrap()
                .entries
                .len(),
            1
        );
        let second = log.txn(&site(), "cart", first, writes("2"), "h", None).await.unwrap();
        assert!(second > first);

        // A serialized path among the writes must be covered too.
        log.create(&site(), "ledger", true).await.unwrap();
        let entry = log
            .append(&site(), "ledger", "1".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        let blog = site();
        let both = |if_last| {
            log.txn(
                &blog,
                "cart",
                if_last,
                vec![
                    ("cart".to_owned(), "3".to_owned()),
                    ("ledger".to_owned(), "2".to_owned()),
                ],
                "h",
                None,
            )
        };
        assert!(entry > second);
        assert!(matches!(both(second).await, Err(LogError::Conflict { path, .. }) if path == "ledger"));

        for (path, writes) in [
            ("cart", vec![]),
            (
                "cart",
                vec![("a".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())],
            ),
        ] {
            assert!(matches!(
                log.txn(&site(), path, second, writes, "h", None).await,
                Err(LogError::InvalidTxn(_))
            ));
        }
        assert!(matches!(
            log.txn(
                &site(),
                "cart",
                second,
                vec![("../x".to_owned(), "1".to_owned())],
                "h",
                None
            )
            .await,
            Err(LogError::InvalidPath { .. })
        ));
        assert!(matches!(
            log.txn(
                &site(),
                "cart",
                second,
                vec![("x".to_owned(), "{".to_owned())],
                "h",
                None
            )
            .await,
            Err(LogError::InvalidData(_))
        ));
        assert_eq!(log.read(&site(), "cart", Timestamp::ZERO, 10).unwrap().entries.len(), 2);
    }

    #[tokio::test]
    async fn a_keyed_write_is_stored_once_and_its_key_expires_after_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(10_000_000));
        let wall = {
            let now = Arc::clone(&now);
            Arc::new(move || now.load(Ordering::Relaxed)) as WallClock
        };
        let log = Log::open_with(&dir.path().join("log.redb"), wall, false).unwrap();
        let blog = site();
        let write = |key: &'static str, data: &'static str| {
            log.append_once(&blog, "a", data.to_owned(), "h", Timestamp::ZERO, Some(key))
        };
        let first = write("k1", "1").await.unwrap();
        assert_eq!(
            write("k1", "1").await.unwrap(),
            first,
            "a retry gets the first timestamp"
        );
        let other = write("k2", "2").await.unwrap();
        assert!(other > first);
        assert_eq!(log.read(&site(), "a", Timestamp::ZERO, 10).unwrap().entries.len(), 2);
        // Keys are the site's own.
        let elsewhere = SiteName::parse("other").unwrap();
        let theirs = log
            .append_once(&elsewhere, "a", "1".to_owned(), "h", Timestamp::ZERO, Some("k1"))
            .await
            .unwrap();
        assert_ne!(theirs, first);
        // An hour on, later keyed writes forget the old keys.
        now.fetch_add(ops::IDEMPOTENCY_KEPT_MS + 1, Ordering::Relaxed);
        write("k3", "3").await.unwrap();
        let again = write("k1", "1").await.unwrap();
        assert!(again > first, "an expired key writes again");
    }

    #[tokio::test]
    async fn a_truncation_removes_exactly_the_tail_and_a_trim_in_it_removes_the_site() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&dir.path().join("log.redb")).unwrap();
        let kept = log
            .append_once(&site(), "a", "1".to_owned(), "h", Timestamp::ZERO, Some("k1"))
            .await
            .unwrap();
        log.append(&site(), "b", "1".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        let cut = log.site_latest(site().as_str()).unwrap();
        log.append_once(&site(), "a", "2".to_owned(), "h", Timestamp::ZERO, Some("k2"))
            .await
            .unwrap();
        log.create(&site(), "c", true).await.unwrap();
        log.append(&site(), "c", "1".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        assert_eq!(log.truncate(site().as_str(), cut).await.unwrap(), Truncated::Tail);
        assert_eq!(log.site_latest(site().as_str()).unwrap(), cut);
        let a = log.read(&site(), "a", Timestamp::ZERO, 10).unwrap();
        assert_eq!(a.entries.iter().map(|e| e.data.get()).collect::<Vec<_>>(), ["1"]);
        assert!(log.read(&site(), "c", Timestamp::ZERO, 10).unwrap().entries.is_empty());
        assert_eq!(log.children(&site(), "", 10).unwrap(), ["a", "b"]);
        // The cut key writes again; the kept one does not.
        let rewritten = log
            .append_once(&site(), "a", "2".to_owned(), "h", Timestamp::ZERO, Some("k2"))
            .await
            .unwrap();
        assert!(rewritten > cut);
        let retried = log
            .append_once(&site(), "a", "1".to_owned(), "h", Timestamp::ZERO, Some("k1"))
            .await
            .unwrap();
        assert_eq!(retried, kept);
        // A plain path again after its create was cut.
        log.append(&site(), "c", "\"x\"".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();

        let before_trim = log.site_latest(site().as_str()).unwrap();
        log.trim(&site(), "a", rewritten).await.unwrap();
        assert_eq!(
            log.truncate(site().as_str(), before_trim).await.unwrap(),
            Truncated::Site
        );
        assert_eq!(log.site_latest(site().as_str()).unwrap(), Timestamp::ZERO);
        assert!(log.children(&site(), "", 10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_sites_operations_rebuilt_from_the_tables_recreate_it_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let source = Log::open(&dir.path().join("source.redb")).unwrap();
        let copy = Log::open(&dir.path().join("copy.redb")).unwrap();
        source.create(&site(), "doc", true).await.unwrap();
        let doc = source
            .append(&site(), "doc", "1".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        source
            .txn(
                &site(),
                "doc",
                doc,
                vec![("doc".to_owned(), "2".to_owned()), ("index".to_owned(), "9".to_owned())],
                "h",
                Some("txn-key"),
            )
            .await
            .unwrap();
        for i in 0..5 {
            source
                .append(&site(), "chat", i.to_string(), "h", Timestamp::ZERO)
                .await
                .unwrap();
        }
        let chat = source.read(&site(), "chat", Timestamp::ZERO, 10).unwrap();
        source.trim(&site(), "chat", chat.entries[2].ts).await.unwrap();
        // Shipped in small pages, as a backup pulls them.
        let mut after = Timestamp::ZERO;
        loop {
            let ops = source.ops_after(site().as_str(), after, 2).unwrap();
            let Some(last) = ops.last().map(Op::ts) else { break };
            copy.adopt(ops).await.unwrap();
            after = last;
        }
        assert_eq!(
            copy.site_latest(site().as_str()).unwrap(),
            source.site_latest(site().as_str()).unwrap()
        );
        for path in ["doc", "index", "chat"] {
            let from = |log: &Log| {
                log.read(&site(), path, Timestamp::from_u64(chat.entries[1].ts.as_u64()), 10)
                    .map(|page| {
                        page.entries
                            .iter()
                            .map(|e| (e.ts, e.data.get().to_owned()))
                            .collect::<Vec<_>>()
                    })
                    .ok()
            };
            assert_eq!(from(&copy), from(&source), "{path}");
        }
        assert!(matches!(
            copy.read(&site(), "chat", Timestamp::ZERO, 10),
            Err(LogError::Trimmed { .. })
        ));
        // The copy is serialized the same way, knows the key, and issues
        // timestamps above everything it adopted.
        assert!(matches!(
            copy.append(&site(), "doc", "3".to_owned(), "h", Timestamp::ZERO).await,
            Err(LogError::Conflict { .. })
        ));
        let latest = copy.site_latest(site().as_str()).unwrap();
        let retried = copy
            .txn(
                &site(),
                "doc",
                doc,
                vec![("doc".to_owned(), "2".to_owned())],
                "h",
                Some("txn-key"),
            )
            .await
            .unwrap();
        assert!(retried <= latest, "the retried transaction got its first timestamp");
        let fresh = copy
            .append(&site(), "chat", "\"new\"".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        assert!(fresh > latest);
    }
}
