//! The sender: drains the account's queue in batches, within the rate limit,
//! retrying with backoff and dead-lettering what keeps failing. It runs as a
//! Pingora background service, one per proxy; the store lease makes one
//! proxy per account send at a time.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use grove_core::publish_api::{PurgePlan, PurgeState};
use grove_core::tree::Trees;
use grove_objects::site::Sites;
use grove_objects::store::ObjectKey;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use time::OffsetDateTime;

use super::bucket::Rate;
use super::plan::plan;
use super::purger::{PurgeError, PurgeRequest, Purger};
use super::queue::{Job, Lease, LeaseOutcome, PageMark, PurgeQueue, QueueError};
use super::{PurgeSetup, Signals};
use crate::auth::now_ms;
use crate::config::{Config, PurgeQueueConfig};
use crate::metrics;

/// Pause after the store failed, before trying again.
const STORE_RETRY: Duration = Duration::from_secs(2);
/// First retry delay after a failed request; doubled per attempt.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long to hold off after a 429 without `Retry-After`.
const THROTTLE_DEFAULT: Duration = Duration::from_secs(60);
/// How often the queue is checked for versions whose enqueue was lost (a
/// proxy that died between a commit and its enqueue and never restarted).
/// Each check reads every tracked site's root and cursor, so it is rare.
const CATCH_UP_EVERY: Duration = Duration::from_secs(3600);
/// Beyond the root refresh bound, how long a version's purge waits for every
/// proxy (and requests in flight) to have moved to it.
const ROOT_SETTLE_MARGIN: Duration = Duration::from_secs(1);
/// How long a re-rendered page's purge waits, so that every proxy
/// following the node's change feed has re-rendered it too (a purge sent
/// before could let the CDN fetch another proxy's old render and keep it,
/// for the short time rendered pages are kept there).
const PAGE_SETTLE: Duration = Duration::from_secs(1);

/// The purge sender of one proxy.
pub struct PurgeWorker {
    pub(super) setup: PurgeSetup,
    pub(super) config: Config,
    pub(super) holder: String,
}

#[async_trait]
impl BackgroundService for PurgeWorker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let sender = match self.sender() {
            Ok(sender) => sender,
            Err(error) => {
                tracing::error!("CDN purging is off: {error:#}");
                return;
            }
        };
        tokio::select! {
            _ = shutdown.changed() => {}
            () = sender.run() => {}
        }
    }
}

impl PurgeWorker {
    /// Opens the store and the HTTP client on this service's own runtime.
    fn sender(&self) -> anyhow::Result<Sender> {
        let store = self.config.open_store()?;
        let trees = grove_objects::content::trees_in(Arc::clone(&store), 100_000);
        let sites = Sites::new(Arc::clone(&store), trees.clone());
        Ok(Sender {
            queue: PurgeQueue::new(store, sites.clone(), &self.setup.account),
            purger: self.setup.purger()?,
            settings: self.setup.settings.clone(),
            signals: Arc::clone(&self.setup.signals),
            holder: self.holder.clone(),
            config: self.config.clone(),
            sites,
            trees,
        })
    }
}

struct Sender {
    queue: PurgeQueue,
    purger: Box<dyn Purger>,
    settings: PurgeQueueConfig,
    signals: Arc<Signals>,
    holder: String,
    config: Config,
    sites: Sites,
    trees: Trees,
}

/// What one step of the loop found.
enum Step {
    /// Sent a request, or lost the lease: go on at once.
    Again,
    /// Nothing to do before this long (or a wake-up).
    Idle(Duration),
}

/// One purge request and the part of each job it carries.
struct Batch {
    request: PurgeRequest,
    /// Index into the jobs, and how many of the job's remaining tags.
    parts: Vec<(usize, usize)>,
}

/// What the sender carries from one step to the next.
struct Progress {
    lease: Option<Lease>,
    /// Backoff after a failure: nothing is sent before.
    not_before: Instant,
    /// After a batch of several jobs was refused, jobs go one at a time, so
    /// one bad job cannot take others down with it.
    solo: bool,
    /// Page purges that failed in a row, for their backoff.
    page_failures: u32,
}

impl Sender {
    async fn run(&self) {
        let mut progress = Progress {
            lease: None,
            not_before: Instant::now(),
            solo: false,
            page_failures: 0,
        };
        let mut last_catch_up: Option<Instant> = None;
        loop {
            let due = last_catch_up.is_none_or(|at| at.elapsed() >= CATCH_UP_EVERY);
            if due || self.signals.catch_up.swap(false, Ordering::AcqRel) {
                match self.queue.catch_up().await {
                    Ok(sites) => {
                        if sites > 0 {
                            tracing::warn!(sites, "queued CDN purges that a crash or a store failure had left out");
                        }
                        last_catch_up = Some(Instant::now());
                    }
                    Err(error) => {
                        tracing::warn!(%error, "catching up the CDN purge queue failed; retrying");
                        last_catch_up = None;
                    }
                }
            }
            let wait = match self.step(&mut progress).await {
                Ok(Step::Again) => continue,
                Ok(Step::Idle(wait)) => wait,
                Err(error) => {
                    tracing::warn!(%error, "the CDN purge queue could not be read or updated; retrying");
                    progress.lease = None;
                    STORE_RETRY
                }
            };
            tokio::select! {
                () = self.signals.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn rate(&self) -> Rate {
        Rate {
            per_minute: self.settings.requests_per_minute,
            burst: self.settings.burst,
        }
    }

    fn lease_ttl_ms(&self) -> u64 {
        self.settings.lease_secs.max(1) * 1000
    }

    /// The account's lease: the one held, else taken from the store. A held
    /// lease is renewed (by compare-and-swap) before each request anyway, so
    /// one lost meanwhile shows there. `Err` is how long another proxy
    /// holds it.
    async fn hold(&self, lease: &mut Option<Lease>) -> Result<Result<(), Duration>, QueueError> {
        if lease.is_some() {
            return Ok(Ok(()));
        }
        let now = now_ms();
        match self
            .queue
            .lease(&self.holder, self.lease_ttl_ms(), self.rate(), now)
            .await?
        {
            LeaseOutcome::Held(held) => {
                *lease = Some(held);
                Ok(Ok(()))
            }
            LeaseOutcome::Busy { until_ms } => Ok(Err(Duration::from_millis(until_ms.saturating_sub(now)))),
        }
    }

    async fn step(&self, progress: &mut Progress) -> Result<Step, QueueError> {
        let poll = Duration::from_secs(self.settings.poll_secs.max(1));
        let mut jobs = self.queue.pending().await?;
        let marks = self.queue.page_marks().await?;
        metrics::PURGE_QUEUE_DEPTH.set((jobs.len() + marks.len()) as i64);
        if jobs.is_empty() && marks.is_empty() {
            return Ok(Step::Idle(poll));
        }
        if let Err(busy) = self.hold(&mut progress.lease).await? {
            return Ok(Step::Idle(busy.clamp(Duration::from_millis(100), poll)));
        }

        for job in jobs.iter_mut().filter(|job| job.status.plan.is_none()) {
            match self.plan(job).await {
                Ok(planned) => {
                    job.status.plan = Some(planned);
                    self.queue.save(job).await?;
                }
                Err(error) => {
                    self.failed(job, &format!("working out what to purge failed: {error}"))
                        .await?;
                    progress.not_before = Instant::now() + backoff(job.status.attempts);
                }
            }
        }
        // Other proxies may serve a version's predecessor until they next
        // read the root: a purge sent before then could let the CDN fetch
        // the old page again and keep it.
        let settle = self.config.root_refresh + ROOT_SETTLE_MARGIN;
        let now = OffsetDateTime::now_utc();
        let mut ready = Vec::new();
        let mut settling: Option<Duration> = None;
        for mut job in jobs {
            let left = (job.status.queued_at + settle - now)
                .try_into()
                .unwrap_or(Duration::ZERO);
            match (&job.status.state, remaining(&job)) {
                (PurgeState::Pending, Some(0)) => self.done(&mut job).await?,
                (PurgeState::Pending, Some(_)) if left > Duration::ZERO => {
                    settling = Some(settling.map_or(left, |soonest| soonest.min(left)));
                }
                (PurgeState::Pending, Some(_)) => ready.push(job),
                _ => {}
            }
        }
        let max_jobs = if progress.solo { 1 } else { usize::MAX };
        // Versions go first; re-rendered pages when no version is ready.
        let Some(batch) = next_batch(&ready, self.settings.max_tags_per_request.max(1), max_jobs) else {
            return self.send_pages(progress, marks, settling.unwrap_or(poll)).await;
        };
        if let Some(step) = self.clear_to_send(progress).await? {
            return Ok(step);
        }
        let result = self.purger.purge(&batch.request).await;
        // Record the outcome only while still the sender: if the lease ran
        // out meanwhile, the new holder owns the queue (and resends).
        if !self.sent(progress, &result).await? {
            return Ok(Step::Again);
        }
        let several = batch.parts.len() > 1;
        let batch_indexes: Vec<usize> = batch.parts.iter().map(|(index, _)| *index).collect();
        match result {
            Ok(()) => {
                progress.solo = false;
                metrics::PURGE_REQUESTS.with_label_values(&["ok"]).inc();
                metrics::PURGE_TAGS.inc_by(batch.request.len() as u64);
                for (index, taken) in batch.parts {
                    let job = &mut ready[index];
                    job.status.sent += taken;
                    job.status.requests += 1;
                    if remaining(job) == Some(0) {
                        self.done(job).await?;
                    } else {
                        self.queue.save(job).await?;
                    }
                }
            }
            Err(PurgeError::Retry {
                message,
                retry_after,
                throttled,
            }) => {
                metrics::PURGE_REQUESTS.with_label_values(&["retried"]).inc();
                metrics::PURGE_RETRIES.inc();
                let mut delay = retry_after.unwrap_or(if throttled { THROTTLE_DEFAULT } else { Duration::ZERO });
                for (index, _) in batch.parts {
                    let job = &mut ready[index];
                    job.status.requests += 1;
                    if throttled {
                        // The limit's doing, not the request's: no attempt
                        // used. The bucket now waits out `Retry-After`.
                        job.status.error = Some(message.clone());
                        self.queue.save(job).await?;
                    } else {
                        self.failed(job, &message).await?;
                        delay = delay.max(backoff(job.status.attempts));
                    }
                }
                if batch_still_pending(&ready, &batch_indexes) {
                    tracing::warn!(error = %message, retry_in = ?delay, "a CDN purge failed; retrying");
                }
                progress.not_before = Instant::now() + delay;
            }
            Err(PurgeError::Rejected(message)) if several => {
                // One of them may be at fault: try each on its own.
                metrics::PURGE_REQUESTS.with_label_values(&["rejected"]).inc();
                tracing::warn!(error = %message, "the CDN refused a batch; sending its versions one at a time");
                progress.solo = true;
            }
            Err(PurgeError::Rejected(message)) => {
                metrics::PURGE_REQUESTS.with_label_values(&["rejected"]).inc();
                for (index, _) in batch.parts {
                    let job = &mut ready[index];
                    job.status.requests += 1;
                    job.status.attempts += 1;
                    self.dead_letter(job, &message).await?;
                }
            }
        }
        Ok(Step::Again)
    }

    /// Before a request: past the backoff, a token from the account's
    /// bucket and the lease renewed; else the step to take instead.
    async fn clear_to_send(&self, progress: &mut Progress) -> Result<Option<Step>, QueueError> {
        let now = Instant::now();
        if now < progress.not_before {
            return Ok(Some(Step::Idle(progress.not_before - now)));
        }
        let Some(held) = progress.lease.as_mut() else {
            return Ok(Some(Step::Again));
        };
        if let Err(wait) = held.take_token(self.rate(), now_ms()) {
            return Ok(Some(Step::Idle(wait)));
        }
        if !self.queue.renew(held, self.lease_ttl_ms(), now_ms()).await? {
            progress.lease = None;
            return Ok(Some(Step::Again));
        }
        Ok(None)
    }

    /// After a request: the bucket settled (and held off after a 429 with
    /// `Retry-After`), and whether the lease is still held.
    async fn sent(&self, progress: &mut Progress, result: &Result<(), PurgeError>) -> Result<bool, QueueError> {
        let Some(held) = progress.lease.as_mut() else {
            return Ok(false);
        };
        held.settle(now_ms());
        if let Err(PurgeError::Retry {
            retry_after: Some(wait),
            throttled: true,
            ..
        }) = result
        {
            held.hold_off(now_ms(), *wait);
        }
        if !self.queue.renew(held, self.lease_ttl_ms(), now_ms()).await? {
            progress.lease = None;
            return Ok(false);
        }
        Ok(true)
    }

    /// Purges the tags of re-rendered pages marked at least
    /// [`PAGE_SETTLE`] ago, as many as one request takes. The marks are
    /// taken off before the request leaves, so a render meanwhile marks
    /// its page again, and put back if it is to be retried.
    async fn send_pages(
        &self,
        progress: &mut Progress,
        marks: Vec<ObjectKey>,
        idle: Duration,
    ) -> Result<Step, QueueError> {
        let now = now_ms();
        let settle_ms = u64::try_from(PAGE_SETTLE.as_millis()).unwrap_or(u64::MAX);
        let mut soonest = idle;
        // One request's worth is read, not the whole queue.
        let mut ready = Vec::new();
        for key in marks.into_iter().take(self.settings.max_tags_per_request.max(1)) {
            let Some(mark) = self.queue.page_mark(&key).await? else {
                continue;
            };
            let due = mark.marked_ms.saturating_add(settle_ms);
            if due <= now {
                ready.push((key, mark));
            } else {
                soonest = soonest.min(Duration::from_millis(due - now));
            }
        }
        if ready.is_empty() {
            return Ok(Step::Idle(soonest));
        }
        if let Some(step) = self.clear_to_send(progress).await? {
            return Ok(step);
        }
        let mut taken = Vec::new();
        for (key, mark) in ready {
            if let Err(error) = self.queue.unmark_page(&key).await {
                self.restore_pages(&taken).await;
                return Err(error);
            }
            taken.push((key, mark));
        }
        let request = PurgeRequest::Tags(taken.iter().map(|(_, mark)| mark.tag.clone()).collect());
        let result = self.purger.purge(&request).await;
        if matches!(result, Err(PurgeError::Retry { .. })) {
            self.restore_pages(&taken).await;
        }
        // (Sent either way: a lost lease only means another proxy sends next.)
        self.sent(progress, &result).await?;
        match result {
            Ok(()) => {
                progress.page_failures = 0;
                metrics::PURGE_REQUESTS.with_label_values(&["ok"]).inc();
                metrics::PURGE_TAGS.inc_by(request.len() as u64);
            }
            Err(PurgeError::Retry {
                message,
                retry_after,
                throttled,
            }) => {
                metrics::PURGE_REQUESTS.with_label_values(&["retried"]).inc();
                metrics::PURGE_RETRIES.inc();
                progress.page_failures += u32::from(!throttled);
                let delay = retry_after.unwrap_or(if throttled {
                    THROTTLE_DEFAULT
                } else {
                    backoff(progress.page_failures)
                });
                tracing::warn!(error = %message, retry_in = ?delay, "purging re-rendered pages failed; retrying");
                progress.not_before = Instant::now() + delay;
            }
            Err(PurgeError::Rejected(message)) => {
                // Kept at the CDN for a short time only, they go stale
                // there for at most that long.
                metrics::PURGE_REQUESTS.with_label_values(&["rejected"]).inc();
                metrics::PURGE_DEAD_LETTERS.inc();
                tracing::error!(error = %message, tags = request.len(), "the CDN refused the purge of re-rendered pages");
            }
        }
        Ok(Step::Again)
    }

    /// Puts back marks taken off for a request that did not go through;
    /// one that cannot be put back is lost (its page is kept at the CDN
    /// for a short time only).
    async fn restore_pages(&self, taken: &[(ObjectKey, PageMark)]) {
        for (key, mark) in taken {
            if let Err(error) = self.queue.restore_page(key, mark).await {
                tracing::warn!(%key, %error, "putting back a page purge mark failed");
            }
        }
    }

    /// The purge of `job`'s version: what changed since the version before.
    async fn plan(&self, job: &Job) -> anyhow::Result<PurgePlan> {
        let n = job.status.version;
        let new = self.sites.version(&job.site, n).await?;
        let old = self.sites.version(&job.site, n - 1).await?;
        let changes = self.trees.diff(&old.tree, &new.tree).await?;
        Ok(plan(
            &job.site,
            &changes,
            self.config.site_hosts(job.site.as_str()),
            self.settings.host_purge_threshold,
        ))
    }

    async fn done(&self, job: &mut Job) -> Result<(), QueueError> {
        job.status.state = PurgeState::Done;
        job.status.finished_at = Some(OffsetDateTime::now_utc());
        self.queue.finish(job).await
    }

    /// Counts a failed attempt; the last allowed one dead-letters the job.
    async fn failed(&self, job: &mut Job, message: &str) -> Result<(), QueueError> {
        job.status.attempts += 1;
        job.status.error = Some(message.to_owned());
        if job.status.attempts < self.settings.max_attempts.max(1) {
            return self.queue.save(job).await;
        }
        self.dead_letter(job, message).await
    }

    /// Gives up on `job`, visibly: its status says failed and why.
    async fn dead_letter(&self, job: &mut Job, message: &str) -> Result<(), QueueError> {
        job.status.error = Some(message.to_owned());
        job.status.state = PurgeState::Failed;
        job.status.finished_at = Some(OffsetDateTime::now_utc());
        metrics::PURGE_DEAD_LETTERS.inc();
        tracing::error!(
            site = %job.site,
            version = job.status.version,
            attempts = job.status.attempts,
            error = message,
            "CDN purge dead-lettered: the CDN may serve this version's changed URLs stale until purged by hand"
        );
        self.queue.finish(job).await
    }
}

/// True if any job of the batch is still to be retried (not dead-lettered).
fn batch_still_pending(jobs: &[Job], indexes: &[usize]) -> bool {
    indexes
        .iter()
        .any(|&index| jobs[index].status.state == PurgeState::Pending)
}

/// Tags (or, for a host purge, hosts) of the job not yet purged; `None`
/// before its plan is known.
fn remaining(job: &Job) -> Option<usize> {
    match job.status.plan.as_ref()? {
        PurgePlan::Tags(tags) => Some(tags.len().saturating_sub(job.status.sent)),
        PurgePlan::Hosts(hosts) => Some(hosts.len().saturating_sub(job.status.sent)),
    }
}

/// The next request: the oldest job's kind (tags or hosts), filled with as
/// many of the following jobs' remaining items as fit, duplicates sharing
/// one slot. A job may end part-way; the rest goes in the next request.
fn next_batch(jobs: &[Job], max: usize, max_jobs: usize) -> Option<Batch> {
    let hosts_first = matches!(jobs.first()?.status.plan, Some(PurgePlan::Hosts(_)));
    let mut items: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut parts = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        if parts.len() == max_jobs {
            break;
        }
        let pending = match (&job.status.plan, hosts_first) {
            (Some(PurgePlan::Hosts(list)), true) | (Some(PurgePlan::Tags(list)), false) => {
                list.get(job.status.sent..).unwrap_or_default()
            }
            _ => continue,
        };
        let mut taken = 0;
        for item in pending {
            if !seen.contains(item) {
                if items.len() == max {
                    break;
                }
                seen.insert(item.clone());
                items.push(item.clone());
            }
            taken += 1;
        }
        if taken > 0 {
            parts.push((index, taken));
        }
        if items.len() == max {
            break;
        }
    }
    let request = if hosts_first {
        PurgeRequest::Hosts(items)
    } else {
        PurgeRequest::Tags(items)
    };
    Some(Batch { request, parts })
}

fn backoff(attempts: u32) -> Duration {
    let doubled = BACKOFF_BASE.saturating_mul(1 << attempts.saturating_sub(1).min(16));
    let jitter = rand::random_range(0.8..1.2);
    doubled.min(BACKOFF_MAX).mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use grove_core::SiteName;
    use grove_core::publish_api::PurgeStatus;

    use super::*;

    fn job(version: u64, plan: PurgePlan, sent: usize) -> Job {
        Job {
            site: SiteName::parse("blog").unwrap(),
            status: PurgeStatus {
                version,
                state: PurgeState::Pending,
                queued_at: OffsetDateTime::UNIX_EPOCH,
                plan: Some(plan),
                sent,
                requests: 0,
                attempts: 0,
                error: None,
                finished_at: None,
            },
            etag: None,
        }
    }

    fn tags(names: &[&str]) -> PurgePlan {
        PurgePlan::Tags(names.iter().map(|name| (*name).to_owned()).collect())
    }

    #[test]
    fn batches_fill_from_the_oldest_job_share_duplicates_and_split_jobs() {
        let jobs = [
            job(2, tags(&["a", "b", "root"]), 1),
            job(3, PurgePlan::Hosts(vec!["blog.example".to_owned()]), 0),
            job(4, tags(&["c", "root", "d", "e"]), 0),
        ];
        let batch = next_batch(&jobs, 4, usize::MAX).unwrap();
        assert_eq!(
            batch.request,
            PurgeRequest::Tags(vec!["b".into(), "root".into(), "c".into(), "d".into()])
        );
        // Job 2 finishes; job 4 is carried up to "d" ("root" shared a slot).
        assert_eq!(batch.parts, [(0, 2), (2, 3)]);

        let hosts_first = [jobs[1].clone(), jobs[0].clone()];
        let batch = next_batch(&hosts_first, 4, usize::MAX).unwrap();
        assert_eq!(batch.request, PurgeRequest::Hosts(vec!["blog.example".into()]));
        assert_eq!(batch.parts, [(0, 1)]);
        assert!(next_batch(&[], 4, usize::MAX).is_none());
        // One at a time after a refused batch.
        let batch = next_batch(&jobs, 4, 1).unwrap();
        assert_eq!(batch.request, PurgeRequest::Tags(vec!["b".into(), "root".into()]));
        assert_eq!(batch.parts, [(0, 2)]);
    }
}
