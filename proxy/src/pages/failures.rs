//! Render failures, kept with the site (`sites/<s>/render-failures/<n>`)
//! where `grove versions` shows them: per version, the pages whose last
//! render failed, each with the template, line and message. A page's entry
//! is written when its failure is new (not again for every failed retry)
//! and removed when it renders again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use grove_core::SiteName;
use grove_core::keys;
use grove_core::publish_api::RenderFailure;
use grove_objects::record::{self, RecordError};
use grove_objects::store::ObjectStore;
use serde::{Deserialize, Serialize};

/// Pages recorded per version: enough to see what is wrong, bounded
/// whatever fails.
const MAX_PAGES: usize = 50;
/// Compare-and-swap attempts when other proxies write the same record.
const ATTEMPTS: usize = 5;
/// Versions whose failed URLs are kept in memory.
const KNOWN_VERSIONS: u64 = 10_000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// By URL path.
    pages: BTreeMap<String, RenderFailure>,
}

/// Version `n`'s failed pages.
pub async fn read(store: &dyn ObjectStore, site: &SiteName, n: u64) -> Result<Vec<RenderFailure>, RecordError> {
    let found = record::read::<Record>(store, &keys::site_render_failures(site, n)).await?;
    Ok(found
        .map(|(record, _)| record.pages.into_values().collect())
        .unwrap_or_default())
}

/// The failures of every version as this proxy knows them, read once per
/// version: a page's render asks the store nothing unless a failure is
/// recorded for it.
pub struct Failures {
    store: Arc<dyn ObjectStore>,
    /// Per version, the URLs with a failure recorded.
    known: moka::future::Cache<(SiteName, u64), Arc<Mutex<BTreeSet<String>>>>,
}

impl Failures {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            known: moka::future::Cache::new(KNOWN_VERSIONS),
        }
    }

    async fn known(&self, site: &SiteName, version: u64) -> Result<Arc<Mutex<BTreeSet<String>>>, Arc<RecordError>> {
        self.known
            .try_get_with((site.clone(), version), async {
                let failed = read(self.store.as_ref(), site, version).await?;
                Ok(Arc::new(Mutex::new(
                    failed.into_iter().map(|failure| failure.url).collect(),
                )))
            })
            .await
    }

    /// Records that a page of `site` failed to render.
    pub async fn failed(&self, site: &SiteName, failure: RenderFailure) -> Result<(), Arc<RecordError>> {
        let known = self.known(site, failure.version).await?;
        let url = failure.url.clone();
        update(self.store.as_ref(), site, failure.version, &url, Some(failure)).await?;
        known.lock().expect("not poisoned").insert(url);
        Ok(())
    }

    /// Records that `url` rendered: a failure recorded for it goes.
    pub async fn rendered(&self, site: &SiteName, version: u64, url: &str) -> Result<(), Arc<RecordError>> {
        let known = self.known(site, version).await?;
        if !known.lock().expect("not poisoned").contains(url) {
            return Ok(());
        }
        update(self.store.as_ref(), site, version, url, None).await?;
        known.lock().expect("not poisoned").remove(url);
        Ok(())
    }
}

/// Records that `url` failed (`Some`), or rendered (`None`).
async fn update(
    store: &dyn ObjectStore,
    site: &SiteName,
    version: u64,
    url: &str,
    failure: Option<RenderFailure>,
) -> Result<(), RecordError> {
    let key = keys::site_render_failures(site, version);
    record::update::<Record>(store, &key, ATTEMPTS, |record| {
        let mut record = record.unwrap_or_default();
        match &failure {
            Some(failure) if record.pages.len() < MAX_PAGES || record.pages.contains_key(url) => {
                record.pages.insert(url.to_owned(), failure.clone());
            }
            Some(_) => return None,
            None => {
                record.pages.remove(url)?;
            }
        }
        Some(record)
    })
    .await?;
    Ok(())
}
