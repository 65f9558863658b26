//! Which version of a site to serve: the current root, kept at most
//! `root_refresh` stale, or a pinned version.
//!
//! Refreshes are single-flight per site and lazy (a site nobody visits costs
//! nothing). If the store is unreachable, the last known root keeps being
//! served: a stale site beats an error page. Versions are immutable, so
//! pinned ones are cached without expiry.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove_storage::ContentHash;
use grove_storage::SiteName;
use grove_storage::site::{Root, SiteError, Sites};

/// Sites whose root state is kept; more are re-read on demand.
const MAX_TRACKED_SITES: u64 = 100_000;

/// The version a request is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub version: u64,
    pub tree: ContentHash,
}

#[derive(Default)]
struct Slot {
    /// The last root read, when it was read.
    known: Mutex<Option<(Option<Served>, Instant)>>,
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
        let read = self.sites.root(site).await;
        let mut known = slot.known.lock().expect("never poisoned");
        match read {
            Ok(root) => {
                let served = root.map(|(root, _)| served(&root));
                *known = Some((served, Instant::now()));
                Ok(served)
            }
            Err(error) => match known.as_mut() {
                Some((last, checked)) => {
                    tracing::warn!(%site, %error, "store unreachable; serving the last known version");
                    // Retry after another refresh period, not on every request.
                    *checked = Instant::now();
                    Ok(*last)
                }
                None => Err(error),
            },
        }
    }

    fn fresh(&self, slot: &Slot) -> Option<Option<Served>> {
        let known = slot.known.lock().expect("never poisoned");
        known
            .as_ref()
            .filter(|(_, checked)| checked.elapsed() < self.refresh)
            .map(|(served, _)| *served)
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
