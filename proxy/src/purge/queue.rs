//! The durable purge queue of one CDN account, kept in the object store so
//! that it survives crashes and restarts and is shared by every proxy and
//! every site on the account.
//!
//! Layout, under `cdn/<account id>/`:
//! - `cursors/<site>`: the newest version of the site whose purge is queued.
//!   It is created before the site's first commit through a purging proxy,
//!   so a crash between a commit and its enqueue is caught up at the next
//!   start (every tracked site whose live version is past its cursor).
//! - `queue/<site>/<n:020>`: version `n` of the site awaits its purge;
//!   create-only, deleted once the purge is done or dead-lettered.
//! - `pages/<site>/<digest>`: a re-rendered database-backed page's cache tag
//!   awaits its purge; create-only, so every render before the purge is
//!   sent coalesces into one mark, and taken off just before it is sent.
//! - `lease`: which proxy sends, until when, and the rate limiter's state.
//!
//! Each version's [`PurgeStatus`] lives with its site, at
//! `sites/<site>/purges/<n:020>`, where `grove versions` reads it.

use std::sync::Arc;

use grove_core::SiteName;
use grove_core::keys::{self, CdnAccountKeys};
use grove_core::publish_api::{PurgeState, PurgeStatus};
use grove_objects::record::{self, RecordError};
use grove_objects::site::{SiteError, Sites};
use grove_objects::store::{ETag, ObjectKey, ObjectStore, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::bucket::{Rate, TokenBucket};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Site(#[from] SiteError),
    #[error("{key} was changed by another proxy meanwhile")]
    Moved { key: String },
}

/// The key of version `n`'s purge status.
pub fn status_key(site: &SiteName, n: u64) -> ObjectKey {
    keys::site_purge(site, n)
}

/// Version `n`'s purge status, if it has one.
pub async fn read_status(store: &dyn ObjectStore, site: &SiteName, n: u64) -> Result<Option<PurgeStatus>, RecordError> {
    Ok(record::read(store, &status_key(site, n))
        .await?
        .map(|(status, _)| status))
}

/// One version awaiting its purge.
#[derive(Debug, Clone)]
pub struct Job {
    pub site: SiteName,
    pub status: PurgeStatus,
    /// The status as read, so an update cannot overwrite another proxy's.
    pub(super) etag: Option<ETag>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    version: u64,
}

/// A rendered page's cache tag awaiting its purge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageMark {
    pub site: String,
    pub tag: String,
    /// Wall-clock milliseconds of the render that marked it.
    pub marked_ms: u64,
}

/// The right to send for the account, held until `expires_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    expires_ms: u64,
    /// Makes every write unique, so a stale compare-and-swap cannot match.
    seq: u64,
    bucket: TokenBucket,
}

/// A lease this proxy holds, with the tag to renew it by.
#[derive(Debug)]
pub struct Lease {
    record: LeaseRecord,
    etag: ETag,
}

impl Lease {
    /// Takes a token from the account's bucket (in memory until the next
    /// [`PurgeQueue::renew`]), or says how long until there is one.
    pub fn take_token(&mut self, rate: Rate, now_ms: u64) -> Result<(), std::time::Duration> {
        self.record.bucket.take(rate, now_ms)
    }

    /// See [`TokenBucket::hold_off`].
    pub fn hold_off(&mut self, now_ms: u64, wait: std::time::Duration) {
        self.record.bucket.hold_off(now_ms, wait);
    }

    /// See [`TokenBucket::settle`].
    pub fn settle(&mut self, now_ms: u64) {
        self.record.bucket.settle(now_ms);
    }
}

/// What asking for the lease gave.
#[derive(Debug)]
pub enum LeaseOutcome {
    Held(Lease),
    /// Another proxy holds it until then (wall-clock milliseconds).
    Busy {
        until_ms: u64,
    },
}

/// The purge queue of one CDN account.
#[derive(Debug, Clone)]
pub struct PurgeQueue {
    store: Arc<dyn ObjectStore>,
    sites: Sites,
    keys: CdnAccountKeys,
}

impl PurgeQueue {
    /// The queue of `account` (any string naming the CDN account).
    pub fn new(store: Arc<dyn ObjectStore>, sites: Sites, account: &str) -> Self {
        Self {
            store,
            sites,
            keys: CdnAccountKeys::new(account),
        }
    }

    /// Called before a commit: from now on, every version of `site` is
    /// purged. Versions live before tracking began are not.
    pub async fn track(&self, site: &SiteName) -> Result<(), QueueError> {
        if record::read::<Cursor>(self.store.as_ref(), &self.keys.cursor(site))
            .await?
            .is_some()
        {
            return Ok(());
        }
        let live = self.sites.root(site).await?.map_or(0, |(root, _)| root.version);
        match self
            .store
            .put_if_absent(&self.keys.cursor(site), record::encode(&Cursor { version: live }))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.is_precondition_failed() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Queues the purge of every version of `site` after its cursor, up to
    /// `live`. Idempotent, and safe to run from several proxies at once.
    pub async fn enqueue_through(&self, site: &SiteName, live: u64) -> Result<(), QueueError> {
        loop {
            let current = record::read::<Cursor>(self.store.as_ref(), &self.keys.cursor(site)).await?;
            let from = current
                .as_ref()
                .map_or(live.saturating_sub(1), |(cursor, _)| cursor.version);
            if from >= live {
                return Ok(());
            }
            for n in from + 1..=live {
                self.create_job(site, n).await?;
            }
            let cursor = record::encode(&Cursor { version: live });
            let written = match &current {
                Some((_, etag)) => self.store.put_if_match(&self.keys.cursor(site), cursor, etag).await,
                None => self.store.put_if_absent(&self.keys.cursor(site), cursor).await,
            };
            match written {
                Ok(_) => return Ok(()),
                // Another proxy moved the cursor: look again.
                Err(error) if error.is_precondition_failed() => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The status first, then the queue entry: an entry always has a status.
    /// The first version replaces nothing, so it needs no purge.
    async fn create_job(&self, site: &SiteName, n: u64) -> Result<(), QueueError> {
        let now = OffsetDateTime::now_utc();
        let first = n == 1;
        let status = PurgeStatus {
            version: n,
            state: if first { PurgeState::Done } else { PurgeState::Pending },
            queued_at: now,
            plan: None,
            sent: 0,
            requests: 0,
            attempts: 0,
            error: None,
            finished_at: first.then_some(now),
        };
        ignore_existing(
            self.store
                .put_if_absent(&status_key(site, n), record::encode(&status))
                .await,
        )?;
        if !first {
            let entry = serde_json::json!({ "site": site.as_str(), "version": n });
            ignore_existing(
                self.store
                    .put_if_absent(&self.keys.queued(site, n), record::encode(&entry))
                    .await,
            )?;
        }
        Ok(())
    }

    /// Catches up every tracked site whose live version is past its cursor:
    /// what a crash between a commit and its enqueue left behind.
    pub async fn catch_up(&self) -> Result<usize, QueueError> {
        let mut caught_up = 0;
        for key in self.list(&self.keys.cursors()).await? {
            let Some(site) = key
                .as_str()
                .rsplit('/')
                .next()
                .and_then(|name| SiteName::parse(name).ok())
            else {
                continue;
            };
            let Some((root, _)) = self.sites.root(&site).await? else {
                continue;
            };
            let cursor = record::read::<Cursor>(self.store.as_ref(), &key).await?;
            if cursor.is_some_and(|(cursor, _)| cursor.version < root.version) {
                self.enqueue_through(&site, root.version).await?;
                caught_up += 1;
            }
        }
        Ok(caught_up)
    }

    /// Marks a re-rendered page's `tag` for purging; a mark already there
    /// (not yet sent) stands for this render too.
    pub async fn mark_page(&self, site: &SiteName, tag: &str, now_ms: u64) -> Result<(), QueueError> {
        let mark = PageMark {
            site: site.to_string(),
            tag: tag.to_owned(),
            marked_ms: now_ms,
        };
        ignore_existing(
            self.store
                .put_if_absent(&self.keys.page_mark(site, tag), record::encode(&mark))
                .await,
        )?;
        Ok(())
    }

    /// The keys of every page mark (listed, not read).
    pub async fn page_marks(&self) -> Result<Vec<ObjectKey>, QueueError> {
        self.list(&self.keys.page_marks()).await
    }

    /// The mark at `key`; `None` if it is gone (taken by a sender) or
    /// unreadable (then it is dropped, so it cannot stall the queue).
    pub async fn page_mark(&self, key: &ObjectKey) -> Result<Option<PageMark>, QueueError> {
        match record::read::<PageMark>(self.store.as_ref(), key).await {
            Ok(mark) => Ok(mark.map(|(mark, _)| mark)),
            Err(RecordError::Corrupt { .. }) => {
                tracing::warn!(%key, "dropping a corrupt page purge mark");
                self.store.delete(key).await?;
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Takes a mark off before its purge is sent, so a render from now on
    /// marks the page again (its purge may leave before that render ends).
    pub async fn unmark_page(&self, key: &ObjectKey) -> Result<(), QueueError> {
        self.store.delete(key).await?;
        Ok(())
    }

    /// Puts back a mark taken off for a request that is to be retried
    /// (unless a render has marked the page again meanwhile).
    pub async fn restore_page(&self, key: &ObjectKey, mark: &PageMark) -> Result<(), QueueError> {
        ignore_existing(self.store.put_if_absent(key, record::encode(mark)).await)?;
        Ok(())
    }

    /// Every version awaiting its purge, oldest first. Entries left behind
    /// by a crash after their purge finished are removed here.
    pub async fn pending(&self) -> Result<Vec<Job>, QueueError> {
        let mut jobs = Vec::new();
        for key in self.list(&self.keys.queue()).await? {
            let mut parts = key.as_str().rsplit('/');
            let n = parts.next().and_then(|n| n.parse::<u64>().ok());
            let site = parts.next().and_then(|name| SiteName::parse(name).ok());
            let (Some(n), Some(site)) = (n, site) else {
                tracing::warn!(%key, "ignoring a malformed purge queue entry");
                continue;
            };
            match record::read::<PurgeStatus>(self.store.as_ref(), &status_key(&site, n)).await? {
                Some((status, etag)) if status.state == PurgeState::Pending => jobs.push(Job {
                    site,
                    status,
                    etag: Some(etag),
                }),
                _ => self.store.delete(&key).await?,
            }
        }
        jobs.sort_by_key(|job| (job.status.queued_at, job.status.version));
        Ok(jobs)
    }

    /// Records progress on a job, unless its status changed since it was
    /// read ([`QueueError::Moved`]).
    pub async fn save(&self, job: &mut Job) -> Result<(), QueueError> {
        let key = status_key(&job.site, job.status.version);
        let bytes = record::encode(&job.status);
        let written = match &job.etag {
            Some(etag) => self.store.put_if_match(&key, bytes, etag).await,
            None => self.store.put(&key, bytes).await,
        };
        match written {
            Ok(etag) => {
                job.etag = Some(etag);
                Ok(())
            }
            Err(error) if error.is_precondition_failed() => Err(QueueError::Moved { key: key.to_string() }),
            Err(error) => Err(error.into()),
        }
    }

    /// Records a finished job (done or dead-lettered) and takes it off the
    /// queue.
    pub async fn finish(&self, job: &mut Job) -> Result<(), QueueError> {
        self.save(job).await?;
        self.store
            .delete(&self.keys.queued(&job.site, job.status.version))
            .await?;
        Ok(())
    }

    /// Takes or renews the account's sending lease for `ttl_ms`, unless
    /// another proxy holds it. A new lease starts with a full bucket.
    pub async fn lease(&self, holder: &str, ttl_ms: u64, rate: Rate, now_ms: u64) -> Result<LeaseOutcome, QueueError> {
        let key = self.keys.lease();
        let current = record::read::<LeaseRecord>(self.store.as_ref(), &key).await?;
        let (record, written) = match current {
            None => {
                let record = LeaseRecord {
                    holder: holder.to_owned(),
                    expires_ms: now_ms + ttl_ms,
                    seq: 1,
                    bucket: TokenBucket::full(rate, now_ms),
                };
                let written = self.store.put_if_absent(&key, record::encode(&record)).await;
                (record, written)
            }
            Some((record, etag)) if record.holder == holder || record.expires_ms <= now_ms => {
                let record = LeaseRecord {
                    holder: holder.to_owned(),
                    expires_ms: now_ms + ttl_ms,
                    seq: record.seq + 1,
                    bucket: record.bucket,
                };
                let written = self.store.put_if_match(&key, record::encode(&record), &etag).await;
                (record, written)
            }
            Some((record, _)) => {
                return Ok(LeaseOutcome::Busy {
                    until_ms: record.expires_ms,
                });
            }
        };
        match written {
            Ok(etag) => Ok(LeaseOutcome::Held(Lease { record, etag })),
            Err(error) if error.is_precondition_failed() => Ok(LeaseOutcome::Busy { until_ms: now_ms }),
            Err(error) => Err(error.into()),
        }
    }

    /// Extends a held lease and stores its bucket; false if it was lost to
    /// another proxy in the meantime.
    pub async fn renew(&self, lease: &mut Lease, ttl_ms: u64, now_ms: u64) -> Result<bool, QueueError> {
        let mut record = lease.record.clone();
        record.expires_ms = now_ms + ttl_ms;
        record.seq += 1;
        match self
            .store
            .put_if_match(&self.keys.lease(), record::encode(&record), &lease.etag)
            .await
        {
            Ok(etag) => {
                *lease = Lease { record, etag };
                Ok(true)
            }
            Err(error) if error.is_precondition_failed() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, QueueError> {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list(prefix, after.as_ref(), 1000).await?;
            keys.extend(page.keys);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(keys),
            }
        }
    }
}

fn ignore_existing(written: Result<ETag, StoreError>) -> Result<(), StoreError> {
    match written {
        Err(error) if !error.is_precondition_failed() => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use grove_core::tree::{Entry, Trees};
    use grove_core::{ContentHash, ContentType, SitePath};
    use grove_objects::site::Commit;
    use grove_objects::store::MemoryStore;

    use super::*;

    fn rate() -> Rate {
        Rate {
            per_minute: 5,
            burst: 25,
        }
    }

    fn setup() -> (PurgeQueue, Sites, Trees, SiteName) {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let trees = grove_objects::content::trees_in(Arc::clone(&store), 1000);
        let sites = Sites::new(Arc::clone(&store), trees.clone());
        let queue = PurgeQueue::new(store, sites.clone(), "cloudflare:zone");
        (queue, sites, trees, SiteName::parse("blog").unwrap())
    }

    async fn commit(sites: &Sites, trees: &Trees, site: &SiteName, body: &str) -> u64 {
        let entry = Entry {
            path: SitePath::parse("index.html").unwrap(),
            hash: ContentHash::of(body.as_bytes()),
            size: body.len() as u64,
            content_type: ContentType::parse("text/html").unwrap(),
        };
        let tree = trees.build([entry]).await.unwrap();
        let commit = Commit {
            tree,
            message: String::new(),
            expected_parent: None,
        };
        sites.commit(site, commit).await.unwrap().n
    }

    #[tokio::test]
    async fn versions_are_queued_once_and_a_lost_enqueue_is_caught_up() {
        let (queue, sites, trees, site) = setup();
        queue.track(&site).await.unwrap();
        let first = commit(&sites, &trees, &site, "one").await;
        queue.enqueue_through(&site, first).await.unwrap();
        assert!(
            queue.pending().await.unwrap().is_empty(),
            "a first version needs no purge"
        );
        let second = commit(&sites, &trees, &site, "two").await;
        queue.enqueue_through(&site, second).await.unwrap();
        queue.enqueue_through(&site, second).await.unwrap();
        let pending = queue.pending().await.unwrap();
        assert_eq!(pending.iter().map(|job| job.status.version).collect::<Vec<_>>(), [2]);

        // Two commits whose enqueue never happened.
        commit(&sites, &trees, &site, "three").await;
        commit(&sites, &trees, &site, "four").await;
        assert_eq!(queue.catch_up().await.unwrap(), 1);
        let pending = queue.pending().await.unwrap();
        assert_eq!(
            pending.iter().map(|job| job.status.version).collect::<Vec<_>>(),
            [2, 3, 4]
        );

        // A finished job leaves the queue, and a late duplicate enqueue of it
        // does not bring it back as work.
        let mut done = pending[0].clone();
        done.status.state = PurgeState::Done;
        queue.finish(&mut done).await.unwrap();
        // A stale copy cannot overwrite what was recorded.
        let mut stale = pending[0].clone();
        assert!(matches!(queue.save(&mut stale).await, Err(QueueError::Moved { .. })));
        queue.create_job(&site, 2).await.unwrap();
        let pending = queue.pending().await.unwrap();
        assert_eq!(pending.iter().map(|job| job.status.version).collect::<Vec<_>>(), [3, 4]);
    }

    #[tokio::test]
    async fn one_proxy_holds_the_lease_until_it_expires() {
        let (queue, ..) = setup();
        let LeaseOutcome::Held(mut first) = queue.lease("a", 1000, rate(), 10_000).await.unwrap() else {
            panic!("the first proxy gets the lease");
        };
        assert!(matches!(
            queue.lease("b", 1000, rate(), 10_500).await.unwrap(),
            LeaseOutcome::Busy { until_ms: 11_000 }
        ));
        first.take_token(rate(), 10_500).unwrap();
        assert!(queue.renew(&mut first, 1000, 10_600).await.unwrap());
        // Expired: another proxy takes over, with the bucket as it was left.
        let LeaseOutcome::Held(mut second) = queue.lease("b", 1000, rate(), 12_000).await.unwrap() else {
            panic!("an expired lease is taken over");
        };
        assert!(
            !queue.renew(&mut first, 1000, 12_001).await.unwrap(),
            "the old holder lost it"
        );
        for _ in 0..24 {
            second.take_token(rate(), 12_000).unwrap();
        }
        assert!(
            second.take_token(rate(), 12_000).is_err(),
            "the burst was not handed out again"
        );
    }
}
