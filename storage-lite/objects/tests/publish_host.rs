//! The host side of publishing, against an in-memory store.

use std::sync::Arc;

use bytes::Bytes;
use grove_core::publish_api::{CommitRequest, Offer};
use grove_core::scan::content_type_of;
use grove_core::tree::{Entry, Trees};
use grove_core::{ContentHash, SiteName, SitePath};
use grove_objects::content::ContentStore;
use grove_objects::publish::{Limit, PublishError, PublishHost, PublishLimits};
use grove_objects::store::{MemoryStore, ObjectStore};

struct Host {
    store: Arc<MemoryStore>,
    blobs: ContentStore,
    trees: Trees,
    publisher: PublishHost,
    site: SiteName,
}

impl Host {
    fn new(max_files_per_site: u64) -> Self {
        let store = Arc::new(MemoryStore::new());
        let shared: Arc<dyn ObjectStore> = store.clone();
        let trees = grove_objects::content::trees_in(Arc::clone(&shared), 10_000);
        let limits = PublishLimits {
            max_file_bytes: 1 << 20,
            max_files_per_site,
        };
        Self {
            blobs: ContentStore::blobs(Arc::clone(&shared)),
            publisher: PublishHost::new(shared, trees.clone(), limits),
            trees,
            store,
            site: SiteName::parse("demo").unwrap(),
        }
    }

    /// Uploads `files` and stores their tree, as a client would; the root.
    async fn upload(&self, files: &[(&str, &str)]) -> ContentHash {
        let mut entries = Vec::new();
        for (path, body) in files {
            let hash = self.blobs.put(Bytes::copy_from_slice(body.as_bytes())).await.unwrap();
            let path = SitePath::parse(path).unwrap();
            entries.push(Entry {
                content_type: content_type_of(&path),
                path,
                hash,
                size: body.len() as u64,
            });
        }
        self.trees.build(entries).await.unwrap()
    }

    async fn commit(&self, root: ContentHash, parent: u64) -> Result<u64, PublishError> {
        let request = CommitRequest {
            root,
            message: String::new(),
            parent,
        };
        Ok(self.publisher.commit(&self.site, request).await?.version.n)
    }

    /// Overwrites the blob of `body` with other bytes, behind the host's back.
    async fn corrupt(&self, body: &str) -> ContentHash {
        let hash = ContentHash::of(body.as_bytes());
        self.store
            .put(&self.blobs.key(&hash), Bytes::from_static(b"rotten"))
            .await
            .unwrap();
        hash
    }
}

#[tokio::test]
async fn a_commit_verifies_what_is_new_since_the_live_version() {
    let host = Host::new(100);
    let first = host.upload(&[("index.html", "one"), ("old.css", "kept")]).await;
    assert_eq!(host.commit(first, 0).await.unwrap(), 1);

    // A blob only the live version uses went bad: the next commit reads only
    // its own changes, so it neither pays for nor trips over the old file.
    let second = host.upload(&[("index.html", "two"), ("old.css", "kept")]).await;
    host.corrupt("kept").await;
    assert_eq!(host.commit(second, 1).await.unwrap(), 2);

    // A changed file whose blob is bad is reported, with where to send it,
    // and nothing is committed.
    let third = host.upload(&[("index.html", "three"), ("old.css", "kept")]).await;
    let bad = host.corrupt("three").await;
    match host.commit(third, 2).await {
        Err(PublishError::MissingContent(targets)) => {
            assert_eq!(targets.len(), 1);
            assert_eq!(targets[0].hash, bad);
        }
        other => panic!("expected missing content, got {other:?}"),
    }
    assert_eq!(
        host.publisher
            .sites()
            .root(&host.site)
            .await
            .unwrap()
            .unwrap()
            .0
            .version,
        2
    );

    // A verified upload replaces the corrupt object; then the commit goes through.
    host.publisher
        .upload_blob(&bad, Bytes::from_static(b"three"))
        .await
        .unwrap();
    assert_eq!(host.commit(third, 2).await.unwrap(), 3);
}

#[tokio::test]
async fn a_stale_parent_is_a_conflict() {
    let host = Host::new(100);
    let root = host.upload(&[("index.html", "x")]).await;
    host.commit(root, 0).await.unwrap();
    let error = host.commit(root, 0).await.unwrap_err();
    assert!(error.to_string().contains("current version is 1"), "{error}");
}

#[tokio::test]
async fn the_file_limit_is_enforced_at_offer_and_at_commit() {
    let host = Host::new(2);
    let root = host.upload(&[("a.html", "a"), ("b.html", "b"), ("c.html", "c")]).await;
    let offer = Offer { root, files: Some(3) };
    let limit = |error: PublishError| match error {
        PublishError::Limit { limit, .. } => limit,
        other => panic!("expected a limit, got {other:?}"),
    };
    assert_eq!(
        limit(host.publisher.offer(&host.site, &offer).await.unwrap_err()),
        Limit::FilesPerSite
    );
    // A client that understates its count is still refused at commit.
    let offer = Offer { root, files: Some(1) };
    host.publisher.offer(&host.site, &offer).await.unwrap();
    assert_eq!(limit(host.commit(root, 0).await.unwrap_err()), Limit::FilesPerSite);
}

#[tokio::test]
async fn rollback_defaults_to_the_previous_version_and_needs_one() {
    let host = Host::new(100);
    let first = host.upload(&[("index.html", "one")]).await;
    host.commit(first, 0).await.unwrap();
    assert!(matches!(
        host.publisher.rollback(&host.site, None).await,
        Err(PublishError::Invalid(_))
    ));
    let second = host.upload(&[("index.html", "two")]).await;
    host.commit(second, 1).await.unwrap();
    let rolled = host.publisher.rollback(&host.site, None).await.unwrap();
    assert_eq!((rolled.version.n, rolled.version.tree, rolled.files), (3, first, 1));
    assert!(host.publisher.rollback(&host.site, Some(9)).await.is_err());
}
