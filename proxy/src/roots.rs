//! Which version of a site to serve: the current root, or a pinned version.
//!
//! A site's root is learned three ways: pushed by the edge that committed
//! it, read from the bucket's journal (both in `edges/`, and both calling
//! [`Roots::learn`]), and, as the safety net for a committer that died
//! before journaling, re-read when it is older than `root_refresh`. The
//! safety net is lazy (a site nobody visits costs nothing), single-flight
//! per site, conditional (an unchanged root is a 304 from S3, no body) and
//! held to a per-edge budget of reads a second, so its cost never grows
//! with the number of sites. A site only moves forward: a read that
//! started before a newer root was learned cannot undo it. If the store is
//! unreachable, the last known root keeps being served: a stale site
//! beats an error page. Versions are immutable, so pinned ones are cached
//! without expiry.

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use grove_core::ContentHash;
use grove_core::SiteName;
use grove_core::version::Root;
use grove_objects::site::{SiteError, Sites};
use grove_objects::store::ETag;

/// Sites whose root state is kept; more are re-read on demand.
const MAX_TRACKED_SITES: usize = 100_000;

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
    /// Safety-net re-reads of roots already known, per second, for all
    /// sites together.
    safety_net: DefaultDirectRateLimiter,
    /// quick_cache, not moka: every request reads its site's slot, and a
    /// hit is a shard read lock and a flag, where moka's also records the
    /// read for its housekeeping.
    slots: quick_cache::sync::Cache<SiteName, Arc<Slot>>,
    versions: quick_cache::sync::Cache<(SiteName, u64), Served>,
}

impl Roots {
    /// `refresh` is how old a known root may get before a request re-reads
    /// it; at most `safety_net_per_sec` such re-reads happen a second.
    pub fn new(sites: Sites, refresh: Duration, safety_net_per_sec: NonZeroU32) -> Self {
        Self {
            sites,
            refresh,
            safety_net: RateLimiter::direct(Quota::per_second(safety_net_per_sec)),
            slots: quick_cache::sync::Cache::new(MAX_TRACKED_SITES),
            versions: quick_cache::sync::Cache::new(MAX_TRACKED_SITES),
        }
    }

    /// Takes `served` as the site's current version, unless a newer one is
    /// known. Only sites someone asked for are tracked; the others read
    /// their root when first asked for.
    pub fn learn(&self, site: &SiteName, served: Served) -> bool {
        let Some(slot) = self.slots.get(site) else {
            return false;
        };
        let mut known = slot.known.lock().expect("never poisoned");
        match known.as_mut() {
            Some(known) if known.served.is_some_and(|current| current.version >= served.version) => false,
            Some(known) => {
                // The tag stays the old root's, so the next safety-net read
                // fetches the new root's tag with it.
                known.served = Some(served);
                true
            }
            // The first read is in flight and may return the old root; it
            // keeps this one instead.
            None => {
                *known = Some(Known {
                    served: Some(served),
                    etag: None,
                    checked: Instant::now(),
                    generation: slot.generation.load(Ordering::Acquire),
                });
                true
            }
        }
    }

    /// The site's current version; `None` if it was never published.
    pub async fn current(&self, site: &SiteName) -> Result<Option<Served>, SiteError> {
        let Ok(slot) = self
            .slots
            .get_or_insert_with(site, || Ok::<_, Infallible>(Arc::new(Slot::default())));
        if let Some(fresh) = self.fresh(&slot, Budget::Spend) {
            return Ok(fresh);
        }
        let _refreshing = slot.refreshing.lock().await;
        // Another request may have read it while this one waited.
        if let Some(fresh) = self.fresh(&slot, Budget::Spent) {
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
                let (mut served, etag) = match root {
                    Some((root, etag)) => (Some(served(&root)), Some(etag)),
                    None => (None, None),
                };
                // Learned while this read was in flight: never go back.
                if let Some(newer) = known
                    .as_ref()
                    .and_then(|known| known.served)
                    .filter(|newer| served.is_none_or(|read| read.version < newer.version))
                {
                    served = Some(newer);
                }
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

    /// What the slot knows, if no read is due: this host moved nothing
    /// since, and the root is younger than `refresh`, or (`Budget::Spend`)
    /// the safety net's reads for this second are spent.
    fn fresh(&self, slot: &Slot, budget: Budget) -> Option<Option<Served>> {
        let known = slot.known.lock().expect("never poisoned");
        let known = known
            .as_ref()
            .filter(|known| known.generation == slot.generation.load(Ordering::Acquire))?;
        let due = known.checked.elapsed() >= self.refresh
            && match budget {
                Budget::Spend => self.safety_net.check().is_ok(),
                Budget::Spent => true,
            };
        (!due).then_some(known.served)
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

/// Whether a freshness check may spend the safety net's budget.
#[derive(Clone, Copy)]
enum Budget {
    Spend,
    /// Already spent by this request's first check.
    Spent,
}

fn served(root: &Root) -> Served {
    Served {
        version: root.version,
        tree: root.tree,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use grove_core::keys;
    use grove_objects::record;
    use grove_objects::store::{CountingStore, MemoryStore, ObjectStore, StoreOp};

    use super::*;

    struct Fixture {
        store: Arc<dyn ObjectStore>,
        gets: Arc<AtomicUsize>,
    }

    impl Fixture {
        fn new() -> Self {
            let gets = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&gets);
            let store: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(
                Arc::new(MemoryStore::default()),
                Arc::new(move |op| {
                    if op == StoreOp::Get {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }),
            ));
            Self { store, gets }
        }

        fn roots(&self, refresh: Duration, per_sec: u32) -> Roots {
            let trees = grove_objects::content::trees_in(Arc::clone(&self.store), 100);
            Roots::new(
                Sites::new(Arc::clone(&self.store), trees),
                refresh,
                NonZeroU32::new(per_sec).unwrap(),
            )
        }

        async fn set_root(&self, site: &SiteName, version: u64) {
            let root = Root {
                version,
                tree: tree(version),
                created_at: time::OffsetDateTime::now_utc(),
            };
            self.store
                .put(&keys::site_root(site), record::encode(&root))
                .await
                .unwrap();
        }

        fn gets(&self) -> usize {
            self.gets.load(Ordering::Relaxed)
        }
    }

    fn tree(version: u64) -> ContentHash {
        ContentHash::of(&version.to_be_bytes())
    }

    fn site(name: &str) -> SiteName {
        SiteName::parse(name).unwrap()
    }

    fn at(version: u64) -> Served {
        Served {
            version,
            tree: tree(version),
        }
    }

    #[tokio::test]
    async fn a_learned_root_is_served_without_a_read_and_never_undone_by_an_older_one() {
        let fixture = Fixture::new();
        let roots = fixture.roots(Duration::from_secs(3600), 1);
        let blog = site("blog");
        fixture.set_root(&blog, 1).await;
        assert_eq!(roots.current(&blog).await.unwrap(), Some(at(1)));
        let reads = fixture.gets();

        assert!(roots.learn(&blog, at(3)));
        assert_eq!(roots.current(&blog).await.unwrap(), Some(at(3)));
        assert_eq!(fixture.gets(), reads, "a learned root costs no read");
        assert!(!roots.learn(&blog, at(2)), "a site never moves back");
        assert_eq!(roots.current(&blog).await.unwrap(), Some(at(3)));

        // This host's own commit forces a read, and the store still says 1
        // (a read that began before the commit): 3 stays.
        roots.expire(&blog);
        assert_eq!(roots.current(&blog).await.unwrap(), Some(at(3)));
        assert_eq!(fixture.gets(), reads + 1);
    }

    #[tokio::test]
    async fn sites_nobody_asked_for_are_not_tracked() {
        let fixture = Fixture::new();
        let roots = fixture.roots(Duration::from_secs(3600), 1);
        assert!(!roots.learn(&site("quiet"), at(5)));
        fixture.set_root(&site("quiet"), 4).await;
        assert_eq!(roots.current(&site("quiet")).await.unwrap(), Some(at(4)));
    }

    #[tokio::test]
    async fn the_safety_net_reads_at_most_its_budget_a_second_whatever_the_number_of_sites() {
        let fixture = Fixture::new();
        let roots = fixture.roots(Duration::ZERO, 2);
        let sites: Vec<SiteName> = (0..20).map(|n| site(&format!("site{n}"))).collect();
        for site in &sites {
            fixture.set_root(site, 1).await;
            roots.current(site).await.unwrap();
        }
        // The first read of each site is never held back.
        assert_eq!(fixture.gets(), 20);
        for site in &sites {
            fixture.set_root(site, 2).await;
        }
        let before = fixture.gets();
        for _ in 0..5 {
            for site in &sites {
                roots.current(site).await.unwrap();
            }
        }
        let reads = fixture.gets() - before;
        assert!(
            (1..=2).contains(&reads),
            "{reads} safety-net reads in well under a second with a budget of 2"
        );
        let moved = {
            let mut moved = 0;
            for site in &sites {
                moved += usize::from(roots.current(site).await.unwrap() == Some(at(2)));
            }
            moved
        };
        assert!(moved <= 2, "only the sites read again moved: {moved}");
    }
}
