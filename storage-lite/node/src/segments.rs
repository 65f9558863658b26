//! Log segments in the object store: how a node's history outlives its disk.
//!
//! Every committed operation is journaled in the same redb transaction that
//! applies it. The shipper seals what the journal holds into segments,
//! written create-only under `nodes/<name>/segments/<epoch>/<first seq>`,
//! then drops the shipped rows. A crash between the two re-seals from the
//! same first sequence number; the existing segment says how far it got.
//!
//! An epoch is one incarnation of a node's log: `nodes/<name>/epochs/<e>`
//! records the sequence number it starts at. A node started on an empty
//! disk replays every epoch's segments in order, then claims the next
//! epoch. Operations an older incarnation shipped at or after the next
//! epoch's start were never part of the rebuilt history and are ignored,
//! and a running node that sees a newer epoch stops taking writes, so two
//! incarnations never both extend the history.
//!
//! What is committed but not yet shipped (at most about one seal interval)
//! lives only on the node's disk: it survives a crash of the process, not
//! the loss of the disk.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::log::Log;
use crate::ops::{CLOCK_BOUND, EPOCH, JOURNAL_NEXT, Op};
use crate::types::{LogError, WallClock};
use grove_core::keys::{self, ObjectKey};
use grove_core::timestamp::Timestamp;
use grove_objects::store::{ObjectStore, StoreError};

/// How far past a seal interval an unshipped timestamp may lie: a store
/// write that slow is retried, and fails the shipping loudly.
const UNSHIPPED_MARGIN_MS: u64 = 10_000;

/// How a node ships its segments.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// The node's name: its segments live under `nodes/<name>/`. Stable
    /// across restarts and machines, so a replacement node finds them.
    pub name: String,
    /// How long committed operations gather before a segment is sealed:
    /// the most history a lost disk can take with it.
    pub seal_interval: Duration,
    /// Most operations in one segment.
    pub max_ops: usize,
}

impl SegmentOptions {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            seal_interval: Duration::from_secs(1),
            max_ops: 4096,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the object store failed: {0}")]
    Store(#[from] StoreError),
    #[error("invalid node name {0:?}: use letters, digits, '-' and '_'")]
    InvalidName(String),
    #[error("segment {key} is corrupt ({reason}); the node's history cannot be rebuilt past it")]
    Corrupt { key: String, reason: String },
    #[error("the shipped history of node {name} has a gap: operation {expected} is missing (next found: {found})")]
    Gap { name: String, expected: u64, found: u64 },
    #[error(
        "node {name} was rebuilt elsewhere (epoch {newer} supersedes this disk's epoch {ours}); \
         move {file} away to rebuild this node from the store"
    )]
    Superseded {
        name: String,
        ours: u64,
        newer: u64,
        file: String,
    },
    #[error(
        "{file} holds a log that was never shipped, but the store already holds segments of node {name}; \
         give this node another name, or move {file} away to rebuild from the store"
    )]
    Unshipped { name: String, file: String },
    #[error("the store holds no epoch {epoch} of node {name}, which {file} was writing; refusing to go on")]
    EpochMissing { name: String, epoch: u64, file: String },
    #[error("another node claimed epoch {epoch} of node {name} at the same time; start again")]
    EpochTaken { name: String, epoch: u64 },
}

/// What an epoch marker records.
#[derive(Debug, Serialize, Deserialize)]
struct EpochMarker {
    /// The first sequence number this epoch writes.
    first_seq: u64,
}

/// One line of a segment.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    seq: u64,
    #[serde(borrow)]
    op: &'a serde_json::value::RawValue,
}

/// The object keys of one node's segments.
#[derive(Debug, Clone)]
struct Keys {
    name: String,
}

impl Keys {
    fn new(name: &str) -> Result<Self, SegmentError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'));
        if !valid {
            return Err(SegmentError::InvalidName(name.to_owned()));
        }
        Ok(Self { name: name.to_owned() })
    }

    fn epochs(&self) -> String {
        keys::node_epochs(&self.name)
    }

    fn epoch(&self, epoch: u64) -> ObjectKey {
        keys::node_epoch(&self.name, epoch)
    }

    fn segments(&self, epoch: u64) -> String {
        keys::node_segments(&self.name, epoch)
    }

    fn segment(&self, epoch: u64, first_seq: u64) -> ObjectKey {
        keys::node_segment(&self.name, epoch, first_seq)
    }
}

/// Opens the node's log at `file` with shipping on. On an empty disk it is
/// rebuilt from the store's segments first; either way this incarnation's
/// epoch is checked (or claimed) against the store.
pub async fn open(
    file: &FsPath,
    store: Arc<dyn ObjectStore>,
    options: SegmentOptions,
    wall: WallClock,
) -> Result<(Arc<Log>, Shipper), SegmentError> {
    let keys = Keys::new(&options.name)?;
    let fresh = !file.exists();
    let epochs = list_epochs(store.as_ref(), &keys).await?;
    let log = Log::open_with(file, Arc::clone(&wall), true)?;
    let epoch = match claim_epoch(&log, store.as_ref(), &keys, &epochs, &options, file, fresh).await {
        Ok(epoch) => epoch,
        Err(error) => {
            drop(log);
            if fresh {
                // A failed rebuild leaves nothing behind: the next start
                // begins again from the store.
                let _ = std::fs::remove_file(file);
            }
            return Err(error);
        }
    };
    let log = if fresh && !epochs.is_empty() {
        // Rebuilt: reopened so the writer's clock starts above the bound
        // the rebuild persisted.
        drop(log);
        Arc::new(Log::open_with(file, wall, true)?)
    } else {
        Arc::new(log)
    };
    let shipper = Shipper {
        log: Arc::clone(&log),
        store,
        keys,
        epoch,
        options,
    };
    Ok((log, shipper))
}

/// Checks this disk's epoch against the store, or (on a disk that never
/// shipped) rebuilds from the store and claims the next epoch.
async fn claim_epoch(
    log: &Log,
    store: &dyn ObjectStore,
    keys: &Keys,
    epochs: &[(u64, EpochMarker)],
    options: &SegmentOptions,
    file: &FsPath,
    fresh: bool,
) -> Result<u64, SegmentError> {
    let shown = file.display().to_string();
    match log.meta(EPOCH)? {
        Some(ours) => {
            if let Some(&(newer, _)) = epochs.iter().find(|(epoch, _)| *epoch > ours) {
                return Err(SegmentError::Superseded {
                    name: keys.name.clone(),
                    ours,
                    newer,
                    file: shown,
                });
            }
            if !epochs.iter().any(|(epoch, _)| *epoch == ours) {
                return Err(SegmentError::EpochMissing {
                    name: keys.name.clone(),
                    epoch: ours,
                    file: shown,
                });
            }
            Ok(ours)
        }
        None => {
            if !fresh && !epochs.is_empty() {
                return Err(SegmentError::Unshipped {
                    name: keys.name.clone(),
                    file: shown,
                });
            }
            let next_seq = if epochs.is_empty() {
                log.meta(JOURNAL_NEXT)?.unwrap_or(1)
            } else {
                let (next_seq, last_ts) = replay(log, store, keys, epochs).await?;
                // Operations committed but never shipped may have been
                // acknowledged with timestamps up to a seal interval (and a
                // slow store write) later: start above all of them.
                let margin = u64::try_from(options.seal_interval.as_millis()).unwrap_or(u64::MAX) + UNSHIPPED_MARGIN_MS;
                let bound = last_ts.physical_ms().saturating_add(margin);
                log.set_meta(CLOCK_BOUND, bound.max(log.meta(CLOCK_BOUND)?.unwrap_or(0)))
                    .await?;
                next_seq
            };
            let epoch = epochs.last().map_or(1, |(epoch, _)| epoch + 1);
            let marker = serde_json::to_vec(&EpochMarker { first_seq: next_seq }).expect("markers serialize");
            match store.put_if_absent(&keys.epoch(epoch), Bytes::from(marker)).await {
                Ok(_) => {}
                Err(error) if error.is_precondition_failed() => {
                    return Err(SegmentError::EpochTaken {
                        name: keys.name.clone(),
                        epoch,
                    });
                }
                Err(error) => return Err(error.into()),
            }
            log.set_meta(JOURNAL_NEXT, next_seq).await?;
            log.set_meta(EPOCH, epoch).await?;
            tracing::info!(node = %keys.name, epoch, first_seq = next_seq, rebuilt = !epochs.is_empty(), "storage node epoch claimed");
            Ok(epoch)
        }
    }
}

/// Every epoch marker of the node, in order.
async fn list_epochs(store: &dyn ObjectStore, keys: &Keys) -> Result<Vec<(u64, EpochMarker)>, SegmentError> {
    let mut epochs = Vec::new();
    for key in list_all(store, &keys.epochs()).await? {
        let corrupt = |reason: String| SegmentError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let epoch = key
            .as_str()
            .rsplit('/')
            .next()
            .and_then(|last| last.parse::<u64>().ok())
            .ok_or_else(|| corrupt("the key is not an epoch number".to_owned()))?;
        let marker =
            serde_json::from_slice(&store.get(&key).await?.bytes).map_err(|error| corrupt(error.to_string()))?;
        epochs.push((epoch, marker));
    }
    epochs.sort_by_key(|(epoch, _)| *epoch);
    Ok(epochs)
}

async fn list_all(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<ObjectKey>, StoreError> {
    let mut keys = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(prefix, after.as_ref(), 1000).await?;
        keys.extend(page.keys);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(keys),
        }
    }
}

/// Replays every epoch's segments into `log`; returns the next sequence
/// number and the latest timestamp replayed.
async fn replay(
    log: &Log,
    store: &dyn ObjectStore,
    keys: &Keys,
    epochs: &[(u64, EpochMarker)],
) -> Result<(u64, Timestamp), SegmentError> {
    let mut next_seq = epochs.first().map_or(1, |(_, marker)| marker.first_seq);
    let mut last_ts = Timestamp::ZERO;
    for (index, (epoch, _)) in epochs.iter().enumerate() {
        // What an older incarnation shipped after the next one started is
        // not part of the history.
        let end = epochs.get(index + 1).map(|(_, marker)| marker.first_seq);
        'segments: for key in list_all(store, &keys.segments(*epoch)).await? {
            let bytes = store.get(&key).await?.bytes;
            let corrupt = |reason: String| SegmentError::Corrupt {
                key: key.to_string(),
                reason,
            };
            let mut ops = Vec::new();
            for text in bytes.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()) {
                let line: Line<'_> = serde_json::from_slice(text).map_err(|error| corrupt(error.to_string()))?;
                if end.is_some_and(|end| line.seq >= end) {
                    log.replay(ops).await?;
                    break 'segments;
                }
                if line.seq < next_seq {
                    // Shipped twice (a crash between shipping and forgetting).
                    continue;
                }
                if line.seq > next_seq {
                    return Err(SegmentError::Gap {
                        name: keys.name.clone(),
                        expected: next_seq,
                        found: line.seq,
                    });
                }
                let op: Op = serde_json::from_str(line.op.get()).map_err(|error| corrupt(error.to_string()))?;
                if let Op::Write { ts, .. } = &op {
                    last_ts = last_ts.max(*ts);
                }
                ops.push(op);
                next_seq += 1;
            }
            log.replay(ops).await?;
        }
        if let Some(end) = end.filter(|end| *end > next_seq) {
            return Err(SegmentError::Gap {
                name: keys.name.clone(),
                expected: next_seq,
                found: end,
            });
        }
    }
    Ok((next_seq, last_ts))
}

/// A segment's bytes: one `{"seq", "op"}` line per journaled operation.
fn segment_body(journal: &[(u64, Vec<u8>)]) -> Result<Vec<u8>, LogError> {
    let mut body = Vec::new();
    for (seq, op) in journal {
        let op = std::str::from_utf8(op)
            .ok()
            .and_then(|op| serde_json::from_str::<&serde_json::value::RawValue>(op).ok())
            .ok_or_else(|| LogError::Database(format!("journaled operation {seq} is corrupt")))?;
        serde_json::to_writer(&mut body, &Line { seq: *seq, op }).expect("lines serialize");
        body.push(b'\n');
    }
    Ok(body)
}

/// Seals journaled operations into segments and ships them.
pub struct Shipper {
    log: Arc<Log>,
    store: Arc<dyn ObjectStore>,
    keys: Keys,
    epoch: u64,
    options: SegmentOptions,
}

impl Shipper {
    /// Ships after every commit, a seal interval later, until `stop`
    /// resolves; then ships what is left once more.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let mut commits = self.log.commits();
        tokio::pin!(stop);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                () = &mut stop => break,
                changed = commits.changed() => if changed.is_err() { break },
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(self.options.seal_interval) => {}
            }
            match self.ship().await {
                Ok(_) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(node = %self.keys.name, %error, "shipping log segments failed; retrying");
                    let backoff = Duration::from_millis(500 << failures.min(6));
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    // Retry even without a new commit.
                    commits.mark_changed();
                }
            }
        }
        if let Err(error) = self.ship().await {
            tracing::error!(node = %self.keys.name, %error, "shipping the last log segments failed; they stay in the journal");
        }
    }

    /// Ships everything journaled; returns the operations shipped.
    pub async fn ship(&self) -> Result<usize, SegmentError> {
        self.check_not_superseded().await?;
        let mut shipped = 0;
        loop {
            let journal = self.log.journal(self.options.max_ops)?;
            let (Some(&(first, _)), Some(&(last, _))) = (journal.first(), journal.last()) else {
                return Ok(shipped);
            };
            let body = segment_body(&journal)?;
            let key = self.keys.segment(self.epoch, first);
            let through = match self.store.put_if_absent(&key, Bytes::from(body)).await {
                Ok(_) => last,
                // Shipped before a crash, perhaps with fewer operations.
                Err(error) if error.is_precondition_failed() => self.last_seq_of(&key).await?,
                Err(error) => return Err(error.into()),
            };
            self.log.forget(through).await?;
            shipped += usize::try_from(through - first + 1).unwrap_or(usize::MAX);
        }
    }

    async fn last_seq_of(&self, key: &ObjectKey) -> Result<u64, SegmentError> {
        let bytes = self.store.get(key).await?.bytes;
        let last = bytes
            .split(|byte| *byte == b'\n')
            .rfind(|line| !line.is_empty())
            .and_then(|line| serde_json::from_slice::<Line<'_>>(line).ok())
            .ok_or_else(|| SegmentError::Corrupt {
                key: key.to_string(),
                reason: "no readable last line".to_owned(),
            })?;
        Ok(last.seq)
    }

    /// Fences the log if a newer incarnation claimed the node.
    async fn check_not_superseded(&self) -> Result<(), SegmentError> {
        match self.store.size(&self.keys.epoch(self.epoch + 1)).await {
            Ok(_) => {
                let why = format!(
                    "epoch {} of node {} was claimed by a rebuilt node",
                    self.epoch + 1,
                    self.keys.name
                );
                self.log.fence(why.clone());
                Err(LogError::Fenced(why).into())
            }
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grove_core::names::SiteName;
    use grove_objects::store::MemoryStore;

    fn site() -> SiteName {
        SiteName::parse("blog").unwrap()
    }

    async fn open_in(dir: &FsPath, store: &Arc<dyn ObjectStore>) -> Result<(Arc<Log>, Shipper), SegmentError> {
        open(
            &dir.join("node.redb"),
            Arc::clone(store),
            SegmentOptions::named("n1"),
            Arc::new(crate::types::system_ms),
        )
        .await
    }

    /// Every entry still there.
    async fn all(log: &Log, path: &str) -> Vec<(Timestamp, String)> {
        let page = match log.read(&site(), path, Timestamp::ZERO, 10_000) {
            Err(LogError::Trimmed { first_available }) => {
                log.read(&site(), path, Timestamp::from_u64(first_available.as_u64() - 1), 10_000)
            }
            other => other,
        };
        page.unwrap()
            .entries
            .into_iter()
            .map(|entry| (entry.ts, entry.data.get().to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn a_node_rebuilt_on_an_empty_disk_holds_everything_shipped() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let first = tempfile::tempdir().unwrap();
        let (log, shipper) = open_in(first.path(), &store).await.unwrap();
        log.create(&site(), "doc", true).await.unwrap();
        let mut doc_latest = Timestamp::ZERO;
        for i in 0..3 {
            doc_latest = log
                .append(&site(), "doc", i.to_string(), "h", doc_latest)
                .await
                .unwrap();
        }
        for i in 0..10 {
            log.append(&site(), "chat", format!("{{\"i\":{i}}}"), "h", Timestamp::ZERO)
                .await
                .unwrap();
        }
        let chat = all(&log, "chat").await;
        log.trim(&site(), "chat", chat[4].0).await.unwrap();
        let txn_ts = log
            .txn(
                &site(),
                "doc",
                doc_latest,
                vec![
                    ("doc".to_owned(), "\"t\"".to_owned()),
                    ("index".to_owned(), "1".to_owned()),
                ],
                "h",
                None,
            )
            .await
            .unwrap();
        // Shipped in two segments.
        assert!(shipper.ship().await.unwrap() > 0);
        log.append(&site(), "chat", "\"late\"".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        shipper.ship().await.unwrap();
        assert!(
            log.journal(10).unwrap().is_empty(),
            "shipped operations leave the journal"
        );
        let before: Vec<_> = futures::future::join_all(["doc", "chat", "index"].map(|path| all(&log, path))).await;
        let newest = before.iter().flatten().map(|(ts, _)| *ts).max().unwrap();
        drop(shipper);
        drop(log);

        let second = tempfile::tempdir().unwrap();
        let (rebuilt, _shipper) = open_in(second.path(), &store).await.unwrap();
        let after: Vec<_> = futures::future::join_all(["doc", "chat", "index"].map(|path| all(&rebuilt, path))).await;
        assert_eq!(after, before, "every entry, with its timestamp");
        assert_eq!(after[2], vec![(txn_ts, "1".to_owned())]);
        assert!(matches!(
            rebuilt.read(&site(), "chat", Timestamp::ZERO, 10),
            Err(LogError::Trimmed { .. })
        ));
        assert!(
            matches!(
                rebuilt.append(&site(), "doc", "9".to_owned(), "h", doc_latest).await,
                Err(LogError::Conflict { latest, .. }) if latest == txn_ts
            ),
            "the path is still serialized"
        );
        let next = rebuilt
            .append(&site(), "chat", "\"new\"".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        assert!(next > newest, "time goes on above the rebuilt history");
        assert!(store.size(&Keys::new("n1").unwrap().epoch(2)).await.is_ok());
    }

    #[tokio::test]
    async fn a_superseded_node_is_fenced_and_its_late_segments_are_ignored() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let old_dir = tempfile::tempdir().unwrap();
        let (old, old_shipper) = open_in(old_dir.path(), &store).await.unwrap();
        let kept = old
            .append(&site(), "chat", "1".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        old_shipper.ship().await.unwrap();

        // A replacement rebuilds while the old node still runs.
        let new_dir = tempfile::tempdir().unwrap();
        let (new, new_shipper) = open_in(new_dir.path(), &store).await.unwrap();
        // The old node's next write lands before it learns, and is shipped
        // into its own epoch, after the new epoch began.
        old.append(&site(), "chat", "\"zombie\"".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        let keys = Keys::new("n1").unwrap();
        let journal = old.journal(10).unwrap();
        store
            .put_if_absent(
                &keys.segment(1, journal[0].0),
                Bytes::from(segment_body(&journal).unwrap()),
            )
            .await
            .unwrap();
        // Its shipper finds the newer epoch and fences it.
        assert!(matches!(
            old_shipper.ship().await,
            Err(SegmentError::Log(LogError::Fenced(_)))
        ));
        assert!(matches!(
            old.append(&site(), "chat", "2".to_owned(), "h", Timestamp::ZERO).await,
            Err(LogError::Fenced(_))
        ));
        drop(old_shipper);
        drop(old);
        assert!(matches!(
            open_in(old_dir.path(), &store).await,
            Err(SegmentError::Superseded { ours: 1, newer: 2, .. })
        ));

        new.append(&site(), "chat", "\"new\"".to_owned(), "h", Timestamp::ZERO)
            .await
            .unwrap();
        new_shipper.ship().await.unwrap();
        drop(new_shipper);
        drop(new);
        let third = tempfile::tempdir().unwrap();
        let (rebuilt, _shipper) = open_in(third.path(), &store).await.unwrap();
        let data: Vec<String> = all(&rebuilt, "chat").await.into_iter().map(|(_, data)| data).collect();
        assert_eq!(data, ["1", "\"new\""], "the zombie's write is not history");
        assert_eq!(all(&rebuilt, "chat").await[0].0, kept);
    }

    #[tokio::test]
    async fn a_crash_between_shipping_and_forgetting_ships_nothing_twice() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().unwrap();
        let (log, shipper) = open_in(dir.path(), &store).await.unwrap();
        for i in 0..3 {
            log.append(&site(), "chat", i.to_string(), "h", Timestamp::ZERO)
                .await
                .unwrap();
        }
        // The segment of the first two operations went out, then the
        // process died before the journal forgot them.
        let journal = log.journal(2).unwrap();
        let key = Keys::new("n1").unwrap().segment(1, journal[0].0);
        store
            .put_if_absent(&key, Bytes::from(segment_body(&journal).unwrap()))
            .await
            .unwrap();
        assert_eq!(shipper.ship().await.unwrap(), 3);
        let before = all(&log, "chat").await;
        drop(shipper);
        drop(log);
        let fresh = tempfile::tempdir().unwrap();
        let (rebuilt, _shipper) = open_in(fresh.path(), &store).await.unwrap();
        assert_eq!(all(&rebuilt, "chat").await, before);
    }

    #[tokio::test]
    async fn a_missing_segment_stops_the_rebuild_and_leaves_nothing_behind() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let dir = tempfile::tempdir().unwrap();
        let (log, shipper) = open_in(dir.path(), &store).await.unwrap();
        for i in 0..3 {
            log.append(&site(), "chat", i.to_string(), "h", Timestamp::ZERO)
                .await
                .unwrap();
            shipper.ship().await.unwrap();
        }
        drop(shipper);
        drop(log);
        let keys = Keys::new("n1").unwrap();
        store.delete(&keys.segment(1, 2)).await.unwrap();
        let fresh = tempfile::tempdir().unwrap();
        assert!(matches!(
            open_in(fresh.path(), &store).await,
            Err(SegmentError::Gap {
                expected: 2,
                found: 3,
                ..
            })
        ));
        assert!(!fresh.path().join("node.redb").exists());
        assert!(store.size(&keys.epoch(2)).await.is_err(), "no epoch was claimed");
    }
}
