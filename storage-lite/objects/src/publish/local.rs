//! Publishing a directory straight into a store, without the network
//! protocol: how the proxy seeds its demo site, and how tests and benchmarks
//! create sites. The remote publisher reaches the same end state through the
//! publish API.

use std::path::Path;

use futures::{StreamExt, TryStreamExt};

use grove_core::names::SiteName;
use grove_core::scan::{ScanError, ScannedFile, scan_dir};
use grove_core::tree::{TreeError, Trees};
use grove_core::version::Version;

use crate::content::{ContentError, ContentStore};
use crate::site::{Commit, SiteError, Sites};

/// Blob uploads in flight at once.
const UPLOAD_CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LocalPublishError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} changed while it was being published; publish again")]
    ChangedDuringPublish { path: String },
    #[error("storing a file: {0}")]
    Blob(#[from] ContentError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Site(#[from] SiteError),
}

/// Uploads every file of `dir` that `blobs` lacks, builds the tree and commits
/// it as the next version of `site`.
pub async fn publish_dir(
    blobs: &ContentStore,
    trees: &Trees,
    sites: &Sites,
    site: &SiteName,
    dir: &Path,
    message: &str,
) -> Result<Version, LocalPublishError> {
    let dir = dir.to_owned();
    let scan = tokio::task::spawn_blocking(move || scan_dir(&dir))
        .await
        .expect("scanning does not panic")?;
    for link in &scan.skipped {
        tracing::warn!(%link, "skipped a symlink while publishing");
    }
    let scanned = scan.files;
    futures::stream::iter(&scanned)
        .map(|file| upload(blobs, file))
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    let tree = trees.build(scanned.into_iter().map(|file| file.entry)).await?;
    let commit = Commit {
        tree,
        message: message.to_owned(),
        expected_parent: None,
    };
    Ok(sites.commit(site, commit).await?)
}

async fn upload(blobs: &ContentStore, file: &ScannedFile) -> Result<(), LocalPublishError> {
    if blobs.contains(&file.entry.hash).await.map_err(ContentError::from)? {
        return Ok(());
    }
    let bytes = tokio::fs::read(&file.source)
        .await
        .map_err(|source| LocalPublishError::Read {
            path: file.source.display().to_string(),
            source,
        })?;
    let stored = blobs.put(bytes.into()).await?;
    if stored != file.entry.hash {
        return Err(LocalPublishError::ChangedDuringPublish {
            path: file.entry.path.to_string(),
        });
    }
    Ok(())
}
