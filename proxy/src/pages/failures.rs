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
use grove_objects::store::{ObjectStore, StoreError};
use serde::{Deserialize, Serialize};

/// Pages recorded per version: enough to see what is wrong, bounded
/// whatever fails.
const MAX_PAGES: usize = 50;
/// Compare-and-swap attempts when other proxies write the same record.
const ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum FailuresError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("the record kept changing under other proxies' writes")]
    Contended,
}

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

/// Records that `failure.url` failed (`Some`), or rendered again (`None`).
pub async fn update(
    store: &Arc<dyn ObjectStore>,
    site: &SiteName,
    version: u64,
    url: &str,
    failure: Option<RenderFailure>,
) -> Result<(), FailuresError> {
    let key = keys::site_render_failures(site, version);
    for _ in 0..ATTEMPTS {
        let current = record::read::<Record>(store.as_ref(), &key).await?;
        let (mut record, etag) = match current {
            Some((record, etag)) => (record, Some(etag)),
            None => (Record::default(), None),
        };
        match &failure {
            Some(failure) if record.pages.len() < MAX_PAGES || record.pages.contains_key(url) => {
                record.pages.insert(url.to_owned(), failure.clone());
            }
            Some(_) => return Ok(()),
            None if record.pages.remove(url).is_some() => {}
            None => return Ok(()),
        }
        let bytes = record::encode(&record);
        let written = match &etag {
            Some(etag) => store.put_if_match(&key, bytes, etag).await,
            None => store.put_if_absent(&key, bytes).await,
        };
        match written {
            Ok(_) => return Ok(()),
            Err(error) if error.is_precondition_failed() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(FailuresError::Contended)
}
