//! Database-backed pages on the host: a version's route file and templates
//! loaded from its tree ([`load`]), checked before a version is committed;
//! pages rendered from node data and kept fresh ([`engine`]) and kept in
//! the store ([`kept`]), with
//! read-your-writes ([`seen`]); render failures recorded for `grove
//! versions` ([`failures`]).

pub mod engine;
pub mod failures;
mod kept;
mod node_data;
pub mod seen;

use std::collections::BTreeMap;

use grove_core::tree::{Entry, TreeError, Trees};
use grove_core::{ContentHash, SitePath};
use grove_objects::content::{ContentError, ContentStore};
use grove_pages::ROUTE_FILE;
use grove_pages::site::{PagesError, SitePages, template_paths};

/// Largest template or route file read, in bytes.
const MAX_SOURCE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("reading {path}: {source}")]
    Blob {
        path: String,
        #[source]
        source: ContentError,
    },
    /// The site's own fault: the text names the file and line.
    #[error(transparent)]
    Invalid(#[from] PagesError),
    #[error("{path} is not UTF-8 text of at most {MAX_SOURCE_BYTES} bytes")]
    NotText { path: String },
}

/// The route file and templates of the version whose tree is `root`;
/// `None` for a version without `_grove/pages.toml`.
pub async fn load(trees: &Trees, blobs: &ContentStore, root: &ContentHash) -> Result<Option<SitePages>, LoadError> {
    let route_path = SitePath::parse(ROUTE_FILE).expect("the route file's path is valid");
    let Some(route_entry) = trees.lookup(root, &route_path).await? else {
        return Ok(None);
    };
    let route_text = text(blobs, &route_entry).await?;
    let routes = grove_pages::routes::RouteFile::parse(&route_text).map_err(PagesError::from)?;
    let entries = trees.entries(root).await?;
    let wanted = template_paths(&routes, entries.iter().map(|entry| entry.path.as_str()));
    let mut sources = BTreeMap::new();
    for entry in entries
        .iter()
        .filter(|entry| wanted.iter().any(|path| path == entry.path.as_str()))
    {
        sources.insert(entry.path.to_string(), text(blobs, entry).await?);
    }
    Ok(Some(SitePages::check(&route_text, sources)?))
}

async fn text(blobs: &ContentStore, entry: &Entry) -> Result<String, LoadError> {
    let not_text = || LoadError::NotText {
        path: entry.path.to_string(),
    };
    if entry.size > MAX_SOURCE_BYTES {
        return Err(not_text());
    }
    let bytes = blobs
        .get_sized(&entry.hash, entry.size)
        .await
        .map_err(|source| LoadError::Blob {
            path: entry.path.to_string(),
            source,
        })?;
    String::from_utf8(bytes.to_vec()).map_err(|_| not_text())
}
