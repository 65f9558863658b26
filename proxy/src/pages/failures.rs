//! Render failures, kept with the site (`sites/<s>/render-failures/<n>`)
//! where `grove versions` shows them: per version, the pages whose last
//! render failed, each with the template, line and message. A page's entry
//! is written when its failure is new (not again for every failed retry)
//! and removed when it renders again.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// Records that `url` failed (`Some`), or rendered (`None`: a page with
/// no failure recorded costs one read).
pub async fn update(
    store: &Arc<dyn ObjectStore>,
    site: &SiteName,
    version: u64,
    url: &str,
    failure: Option<RenderFailure>,
) -> Result<(), RecordError> {
    let key = keys::site_render_failures(site, version);
    record::update::<Record>(store.as_ref(), &key, ATTEMPTS, |record| {
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
