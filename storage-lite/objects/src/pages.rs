//! The pages of a site version, as a sitemap needs them: when each page's
//! content last changed, and what its head says to search engines.
//!
//! A version's index (`sites/<site>/pages/<n>`) is derived from the one
//! before it and the tree diff between the two, so only pages a version
//! added or changed are read, and a page's `lastmod` is the time of the
//! version that last changed its hash (a rollback that brings old content
//! back changes it too). The host writes it when it commits a version; a
//! missing index (a version committed by an older host, or straight into
//! the store) is rebuilt from the nearest stored one, or from the first
//! version. Every input is immutable, so two builders write the same bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use grove_core::hash::ContentHash;
use grove_core::keys;
use grove_core::names::SiteName;
use grove_core::page_meta::{self, PageMeta};
use grove_core::tree::{Difference, Entry, TreeError, Trees};
use grove_core::version::Version;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::record::{self, RecordError};
use crate::site::{SiteError, Sites};
use crate::store::{ObjectStore, StoreError};

/// Pages whose heads are read at once.
const READ_CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Site(#[from] SiteError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("reading page {path} for the sitemap: {source}")]
    Page {
        path: String,
        #[source]
        source: StoreError,
    },
}

/// One version's pages (HTML files), by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageIndex {
    pub version: u64,
    pub pages: BTreeMap<String, Page>,
}

/// One page of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// When the version that last changed this page's content was made.
    #[serde(with = "time::serde::rfc3339")]
    pub lastmod: OffsetDateTime,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noindex: bool,
    /// The page's `<link rel="canonical">`, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical: Option<String>,
}

/// Builds and keeps page indexes.
#[derive(Debug, Clone)]
pub struct Pages {
    store: Arc<dyn ObjectStore>,
    trees: Trees,
    sites: Sites,
}

impl Pages {
    pub fn new(store: Arc<dyn ObjectStore>, trees: Trees) -> Self {
        Self {
            sites: Sites::new(Arc::clone(&store), trees.clone()),
            store,
            trees,
        }
    }

    /// Version `n`'s index: the stored one, or built (and stored) from the
    /// nearest older stored index and the versions since.
    pub async fn index(&self, site: &SiteName, n: u64) -> Result<PageIndex, PagesError> {
        let key = keys::site_pages(site, n);
        if let Some((index, _)) = record::read::<PageIndex>(self.store.as_ref(), &key).await? {
            return Ok(index);
        }
        let newest = self.sites.version(site, n).await?;
        let mut base = None;
        for older in (1..n).rev() {
            let key = keys::site_pages(site, older);
            if let Some((index, _)) = record::read::<PageIndex>(self.store.as_ref(), &key).await? {
                let tree = self.sites.version(site, older).await?.tree;
                base = Some((index, tree));
                break;
            }
        }
        let first = base.as_ref().map_or(1, |(index, _)| index.version + 1);
        let (mut index, mut tree) = match base {
            Some((index, tree)) => (index, Some(tree)),
            None => (PageIndex::default(), None),
        };
        for step in first..=n {
            let version = if step == n {
                newest.clone()
            } else {
                self.sites.version(site, step).await?
            };
            index = self.advance(index, tree.as_ref(), &version).await?;
            tree = Some(version.tree);
        }
        // Derived and rebuilt when missing: a failed write costs only time.
        if let Err(error) = self.store.put(&key, record::encode(&index)).await {
            tracing::warn!(%site, version = n, %error, "storing the page index failed");
        }
        Ok(index)
    }

    /// The index of `version`, from the index of the version before it
    /// (whose tree is `previous`; none for a first version).
    async fn advance(
        &self,
        mut index: PageIndex,
        previous: Option<&ContentHash>,
        version: &Version,
    ) -> Result<PageIndex, PagesError> {
        let changed: Vec<Entry> = match previous {
            Some(previous) => {
                let mut changed = Vec::new();
                for difference in self.trees.diff(previous, &version.tree).await? {
                    match difference {
                        Difference::Removed(old) => {
                            index.pages.remove(old.path.as_str());
                        }
                        // Same content, other type: a page only if it is
                        // one now, changed only if it was not one before.
                        Difference::Changed { old, new } if old.hash == new.hash => {
                            if !page_meta::is_html(new.content_type.as_str()) {
                                index.pages.remove(new.path.as_str());
                            } else if !index.pages.contains_key(new.path.as_str()) {
                                changed.push(new);
                            }
                        }
                        Difference::Added(new) | Difference::Changed { new, .. } => {
                            index.pages.remove(new.path.as_str());
                            changed.push(new);
                        }
                    }
                }
                changed
            }
            None => self.trees.entries(&version.tree).await?,
        };
        let pages: Vec<Entry> = changed
            .into_iter()
            .filter(|entry| page_meta::is_html(entry.content_type.as_str()))
            .collect();
        let mut distinct: HashMap<ContentHash, Entry> = HashMap::new();
        for entry in &pages {
            distinct.entry(entry.hash).or_insert_with(|| entry.clone());
        }
        // Owned entries: a future borrowing one would not be `Send` for
        // every lifetime, which the server's handlers need.
        let metas: HashMap<ContentHash, PageMeta> = futures::stream::iter(distinct.into_values())
            .map(|entry| async move { Ok::<_, PagesError>((entry.hash, self.read_meta(&entry).await?)) })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        for entry in pages {
            let meta = metas.get(&entry.hash).cloned().unwrap_or_default();
            index.pages.insert(
                entry.path.as_str().to_owned(),
                Page {
                    lastmod: version.created_at,
                    noindex: meta.noindex,
                    canonical: meta.canonical,
                },
            );
        }
        index.version = version.n;
        Ok(index)
    }

    /// What the head of one page says; only its start is read.
    async fn read_meta(&self, entry: &Entry) -> Result<PageMeta, PagesError> {
        if entry.size == 0 {
            return Ok(PageMeta::default());
        }
        let end = entry.size.min(page_meta::SCAN_BYTES as u64);
        let head = self
            .store
            .get_range(&keys::blob(&entry.hash), 0..end)
            .await
            .map_err(|source| PagesError::Page {
                path: entry.path.to_string(),
                source,
            })?;
        Ok(page_meta::read(&head))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use grove_core::{ContentType, SitePath};

    use super::*;
    use crate::content::{ContentStore, trees_in};
    use crate::site::Commit;
    use crate::store::MemoryStore;

    struct World {
        store: Arc<MemoryStore>,
        trees: Trees,
        sites: Sites,
        pages: Pages,
        site: SiteName,
    }

    fn world() -> World {
        let store = Arc::new(MemoryStore::new());
        let trees = trees_in(store.clone(), 1000);
        World {
            sites: Sites::new(store.clone(), trees.clone()),
            pages: Pages::new(store.clone(), trees.clone()),
            trees,
            store,
            site: SiteName::parse("demo").unwrap(),
        }
    }

    impl World {
        async fn publish(&self, files: &[(&str, &str)]) -> Version {
            let blobs = ContentStore::blobs(self.store.clone());
            let mut entries = Vec::new();
            for (path, body) in files {
                let hash = blobs.put(Bytes::from(body.to_string())).await.unwrap();
                let content_type = if path.ends_with(".html") {
                    "text/html"
                } else {
                    "text/css"
                };
                entries.push(Entry {
                    path: SitePath::parse(path).unwrap(),
                    hash,
                    size: body.len() as u64,
                    content_type: ContentType::parse(content_type).unwrap(),
                });
            }
            let tree = self.trees.build(entries).await.unwrap();
            let commit = Commit {
                tree,
                message: String::new(),
                expected_parent: None,
            };
            self.sites.commit(&self.site, commit).await.unwrap()
        }

        async fn drop_index(&self, n: u64) {
            self.store.delete(&keys::site_pages(&self.site, n)).await.unwrap();
        }
    }

    #[test]
    fn building_an_index_can_move_between_threads() {
        fn is_send<T: Send>(_: T) {}
        let world = world();
        is_send(world.pages.index(&world.site, 1));
    }

    #[tokio::test]
    async fn lastmod_is_the_version_that_last_changed_the_content() {
        let world = world();
        let v1 = world
            .publish(&[("index.html", "home"), ("a.html", "a"), ("style.css", "x")])
            .await;
        let one = world.pages.index(&world.site, v1.n).await.unwrap();
        assert_eq!(one.pages.keys().collect::<Vec<_>>(), ["a.html", "index.html"]);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let v2 = world
            .publish(&[
                ("index.html", "home, again"),
                ("a.html", "a"),
                ("b.html", r#"<meta name="robots" content="noindex">"#),
            ])
            .await;
        let two = world.pages.index(&world.site, v2.n).await.unwrap();
        assert_eq!(two.pages["a.html"].lastmod, v1.created_at, "unchanged since v1");
        assert_eq!(two.pages["index.html"].lastmod, v2.created_at);
        assert!(two.pages["b.html"].noindex);
        assert!(!two.pages["index.html"].noindex);

        // Rebuilt the same from scratch when no index is stored.
        world.drop_index(1).await;
        world.drop_index(2).await;
        assert_eq!(world.pages.index(&world.site, v2.n).await.unwrap(), two);
        // And from the nearest stored one.
        let v3 = world.publish(&[("a.html", "<link rel=canonical href=/b.html>")]).await;
        world.drop_index(3).await;
        let three = world.pages.index(&world.site, v3.n).await.unwrap();
        assert_eq!(three.pages.keys().collect::<Vec<_>>(), ["a.html"]);
        assert_eq!(three.pages["a.html"].canonical.as_deref(), Some("/b.html"));
        assert_eq!(three.pages["a.html"].lastmod, v3.created_at);
        assert!(
            record::read::<PageIndex>(world.store.as_ref(), &keys::site_pages(&world.site, 3))
                .await
                .unwrap()
                .is_some(),
            "a built index is stored"
        );
    }
}
