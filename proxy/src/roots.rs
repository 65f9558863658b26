//! Which version of a site to serve: the current root, kept at most
//! `root_refresh` stale, or a pinned version.
//!
//! Refreshes are single-flight per site, lazy (a site nobody visits costs
//! nothing) and conditional (an unchanged root is a 304 from S3, no body). If the store is unreachable, the last known root keeps being
//! served: a stale site beats an error page. Versions are immutable, so
//! pinned ones are cached without expiry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove_core::ContentHash;
use grove_core::SiteName;
use grove_core::version::Root;
use grove_objects::site::{SiteError, Sites};
use grove_objects::store::ETag;

/// Sites whose root state is kept; more are re-read on demand.
const MAX_TRACKED_SITES: u64 = 100_000;

/// The version a request is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub version: u64,
    pub tree: ContentHash,
}

/// What a slot last learned about a site's root.
struct Known {
    served: Option<Served>,
    /// The root object's tag, for conditional reads.
    etag: Option<ETag>,
    checked: Instant,
    /// The slot's generation when the read that produced this began.
    generation: u64,
}

#[derive(Default)]
struct Slot {
    known: Mutex<Option<Known>>,
    /// Bumped when this host moves the root, so that what was read before
    /// (even by a read still in flight) is no longer fresh.
    generation: AtomicU64,
    /// Held while one request refreshes this site.
    refreshing: tokio::sync::Mutex<()>,
}

pub struct Roots {
    sites: Sites,
    refresh: Duration,
    slots: moka::sync::Cache<SiteName, Arc<Slot>>,
    versions: moka::sync::Cache<(SiteName, u64), Served>,
}

impl Roots {
    pub fn new(sites: Sites, refresh: Duration) -> Self {
        Self {
            sites,
            refresh,
            slots: moka::sync::Cache::new(MAX_TRACKED_SITES),
            versions: moka::sync::Cache::new(MAX_TRACKED_SITES),
        }
    }

    /// The site's current version; `None` if it was never published.
    pub async fn current(&self, site: &SiteName) -> Result<Option<Served>, SiteError> {
        let slot = self.slots.get_with_by_ref(site, || Arc::new(Slot::default()));
        if let Some(fresh) = self.fresh(&slot) {
            return Ok(fresh);
        }
        let _refreshing = slot.refreshing.lock().await;
        if let Some(fresh) = self.fresh(&slot) {
            return Ok(fresh);
        }
        let generation = slot.generation.load(Ordering::Acquire);
        let etag = slot
            .known
            .lock()
            .expect("never poisoned")
            .as_ref()
            .and_then(|known| known.etag.clone());
        let read = match &etag {
            Some(etag) => self.sites.root_if_changed(site, etag).await,
            None => self.sites.root(site).await.map(Some),
        };
        let mut known = slot.known.lock().expect("never poisoned");
        match (read, known.as_mut()) {
            (Ok(None), Some(unchanged)) => {
                unchanged.checked = Instant::now();
                unchanged.generation = generation;
                Ok(unchanged.served)
            }
            // Only a conditional read answers "unchanged", and it needs a known root.
            (Ok(None), None) => Ok(None),
            (Ok(Some(root)), _) => {
                let (served, etag) = match root {
                    Some((root, etag)) => (Some(served(&root)), Some(etag)),
                    None => (None, None),
                };
                *known = Some(Known {
                    served,
                    etag,
                    checked: Instant::now(),
                    generation,
                });
                Ok(served)
            }
            (Err(error), Some(last)) => {
                tracing::warn!(%site, %error, "store unreachable; serving the last known version");
                // Retry after another refresh period, not on every request.
                last.checked = Instant::now();
                last.generation = generation;
                Ok(last.served)
            }
            (Err(error), None) => Err(error),
        }
    }

    /// Makes the next request re-read the site's root: this host just moved
    /// it, and its own publishes should be visible at once.
    pub fn expire(&self, site: &SiteName) {
        if let Some(slot) = self.slots.get(site) {
            slot.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn fresh(&self, slot: &Slot) -> Option<Option<Served>> {
        let known = slot.known.lock().expect("never poisoned");
        known
            .as_ref()
            .filter(|known| {
                known.generation == slot.generation.load(Ordering::Acquire) && known.checked.elapsed() < self.refresh
            })
            .map(|known| known.served)
    }

    /// Version `n` of the site; `None` if it does not exist.
    pub async fn pinned(&self, site: &SiteName, n: u64) -> Result<Option<Served>, SiteError> {
        let key = (site.clone(), n);
        if let Some(served) = self.versions.get(&key) {
            return Ok(Some(served));
        }
        match self.sites.version(site, n).await {
            Ok(version) => {
                let served = Served {
                    version: version.n,
                    tree: version.tree,
                };
                self.versions.insert(key, served);
                Ok(Some(served))
            }
            Err(SiteError::UnknownVersion { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

fn served(root: &Root) -> Served {
    Served {
        version: root.version,
        tree: root.tree,
    }
}
