//! Renders kept in the store, so that a restarted proxy, or another on the
//! same bucket, serves a page's last render at once instead of rendering it
//! cold. A render's bytes are a blob (`blobs/<hash>`, like any published
//! file); per version tree, `sites/<s>/rendered/<tree>` lists each page's
//! blob, its `as_of`, its reads and its templates (by tree, not version
//! number: numbers restart when a site is reset, and a rollback to the same
//! tree finds its renders). The list is written at most once a second per
//! tree (R2 takes about one write a second to one key), with
//! every render since merged in, and merged with what other proxies wrote
//! (the later `as_of` of a page wins).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use grove_core::timestamp::Timestamp;
use grove_core::{ContentHash, SiteName, keys};
use grove_objects::content::ContentStore;
use grove_objects::record::{self, RecordError};
use grove_objects::store::ObjectStore;
use grove_pages::data::Read;
use serde::{Deserialize, Serialize};

/// How often a version's list is written at most.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// Compare-and-swap attempts when other proxies write the same list.
const ATTEMPTS: usize = 5;
/// Renders' bytes written to the store at once: a burst of renders queues
/// rather than opening a connection or a file each.
const WRITERS: usize = 8;
/// Pages of lists kept in memory, over every version.
const LISTED_PAGES: u64 = 100_000;

/// A page's last render, as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptPage {
    pub hash: ContentHash,
    pub size: u64,
    pub as_of: Timestamp,
    pub reads: Vec<Read>,
    pub templates: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct List {
    pages: Pages,
}

/// A site's version, by its tree.
type Version = (SiteName, ContentHash);
/// Kept pages by URL path.
type Pages = BTreeMap<String, KeptPage>;

/// The renders of every site, kept in the store.
pub struct Kept {
    store: Arc<dyn ObjectStore>,
    blobs: ContentStore,
    /// Renders not yet in their version's list, and whether a write of it
    /// is under way (which takes them when it starts).
    pending: Mutex<HashMap<Version, (Pages, bool)>>,
    writers: tokio::sync::Semaphore,
    /// Each version's list as read at its first page request, bounded by
    /// the pages listed.
    lists: moka::future::Cache<Version, Arc<Pages>>,
}

impl Kept {
    pub fn new(store: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            blobs: ContentStore::blobs(Arc::clone(&store)),
            store,
            pending: Mutex::new(HashMap::new()),
            writers: tokio::sync::Semaphore::new(WRITERS),
            lists: moka::future::Cache::builder()
                .max_capacity(LISTED_PAGES)
                .weigher(|_, list: &Arc<Pages>| u32::try_from(list.len() + 1).unwrap_or(u32::MAX))
                .build(),
        })
    }

    /// The last render of `url` in `site`'s version of tree `tree` the
    /// store kept, with its bytes; `None` when there is none or it cannot be
    /// read now (the page is then rendered).
    pub async fn page(&self, site: &SiteName, tree: ContentHash, url: &str) -> Option<(KeptPage, Bytes)> {
        // (A failed read is not kept: the next request reads again.)
        let list = self
            .lists
            .try_get_with((site.clone(), tree), async {
                let list = record::read::<List>(self.store.as_ref(), &keys::site_rendered(site, &tree)).await?;
                Ok::<_, RecordError>(Arc::new(list.map(|(list, _)| list.pages).unwrap_or_default()))
            })
            .await;
        let list = match list {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(%site, %tree, %error, "reading the kept renders failed; rendering instead");
                return None;
            }
        };
        let kept = list.get(url)?.clone();
        match self.blobs.get_sized(&kept.hash, kept.size).await {
            Ok(body) => Some((kept, body)),
            Err(error) => {
                tracing::warn!(%site, %tree, url, %error, "reading a kept render failed; rendering instead");
                None
            }
        }
    }

    /// Keeps a new render of `url`: its blob now, its entry in the list
    /// with the next write.
    pub fn keep(self: &Arc<Self>, site: &SiteName, tree: ContentHash, url: &str, page: KeptPage, body: Bytes) {
        let write = {
            let mut pending = self.pending.lock().expect("not poisoned");
            let (pages, writing) = pending.entry((site.clone(), tree)).or_default();
            pages.insert(url.to_owned(), page);
            !std::mem::replace(writing, true)
        };
        let kept = Arc::clone(self);
        let site = site.clone();
        tokio::spawn(async move {
            let put = match kept.writers.acquire().await {
                Ok(_writing) => kept.blobs.put(body).await,
                Err(_) => return,
            };
            if let Err(error) = put {
                tracing::warn!(%site, %tree, %error, "keeping a render's bytes failed");
            }
            if write {
                kept.write_list((site, tree)).await;
            }
        });
    }

    /// Writes a version's list after [`WRITE_EVERY`], with every render
    /// kept meanwhile, again while more come.
    async fn write_list(&self, version: Version) {
        loop {
            tokio::time::sleep(WRITE_EVERY).await;
            let pages = {
                let mut pending = self.pending.lock().expect("not poisoned");
                let Some((pages, _)) = pending.get_mut(&version) else {
                    return;
                };
                if pages.is_empty() {
                    pending.remove(&version);
                    return;
                }
                std::mem::take(pages)
            };
            let (site, tree) = &version;
            if let Err(error) = self.merge(site, tree, &pages).await {
                tracing::warn!(%site, %tree, %error, "keeping the list of renders failed; a restart renders them again");
            }
        }
    }

    async fn merge(&self, site: &SiteName, tree: &ContentHash, pages: &Pages) -> Result<(), RecordError> {
        let key = keys::site_rendered(site, tree);
        record::update::<List>(self.store.as_ref(), &key, ATTEMPTS, |list| {
            let mut list = list.unwrap_or_default();
            for (url, page) in pages {
                if list.pages.get(url).is_none_or(|kept| kept.as_of < page.as_of) {
                    list.pages.insert(url.clone(), page.clone());
                }
            }
            Some(list)
        })
        .await?;
        Ok(())
    }
}
