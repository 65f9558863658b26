//! One contract, every backend: memory, local directory, and S3 against a real
//! S3-protocol server (moto) over HTTP.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use grove_core::ContentHash;
use grove_core::tree::Entry;
use grove_core::{ContentType, SiteName, SitePath};
use grove_objects::content::ContentStore;
use grove_objects::site::{Commit, Sites};
use grove_objects::store::{
    ETag, LocalStore, MemoryStore, ObjectKey, ObjectStore, S3Credentials, S3Store, S3StoreConfig, StoreError,
};
use grove_testkit::moto::MotoServer;

fn key(text: &str) -> ObjectKey {
    ObjectKey::new(text).unwrap()
}

async fn contract(store: Arc<dyn ObjectStore>) {
    let a = key("contract/a");

    // Missing objects.
    assert!(store.get(&a).await.unwrap_err().is_not_found());
    assert!(store.head(&a).await.unwrap_err().is_not_found());
    assert!(store.get_range(&a, 0..1).await.unwrap_err().is_not_found());

    // Plain writes and reads; equal bytes give equal tags, as on S3.
    let tag = store.put(&a, Bytes::from_static(b"hello world")).await.unwrap();
    let object = store.get(&a).await.unwrap();
    assert_eq!((object.bytes.as_ref(), &object.etag), (&b"hello world"[..], &tag));
    let meta = store.head(&a).await.unwrap();
    assert_eq!((meta.size, &meta.etag), (11, &tag));
    assert_eq!(store.put(&a, Bytes::from_static(b"hello world")).await.unwrap(), tag);

    // Conditional reads: nothing while the tag holds, the object once it changed.
    assert!(store.get_if_changed(&a, &tag).await.unwrap().is_none());
    let other = ETag::new("\"stale\"");
    assert_eq!(
        store.get_if_changed(&a, &other).await.unwrap().unwrap().bytes.as_ref(),
        b"hello world"
    );

    // Ranges clamp at the end; a start past the end is refused.
    assert_eq!(store.get_range(&a, 6..11).await.unwrap().as_ref(), b"world");
    assert_eq!(store.get_range(&a, 6..100).await.unwrap().as_ref(), b"world");
    match store.get_range(&a, 11..20).await {
        Err(StoreError::RangeNotSatisfiable { size: 11, .. }) => {}
        other => panic!("expected 416, got {other:?}"),
    }

    // put-if-absent: wins once, loses after.
    let b = key("contract/b");
    let b_tag = store.put_if_absent(&b, Bytes::from_static(b"first")).await.unwrap();
    let lost = store
        .put_if_absent(&b, Bytes::from_static(b"second"))
        .await
        .unwrap_err();
    assert!(lost.is_precondition_failed(), "{lost}");
    assert_eq!(store.get(&b).await.unwrap().bytes.as_ref(), b"first");

    // put-if-match: the current tag wins, a stale one loses, a missing object loses.
    let b_tag2 = store
        .put_if_match(&b, Bytes::from_static(b"swapped"), &b_tag)
        .await
        .unwrap();
    let stale = store
        .put_if_match(&b, Bytes::from_static(b"stale"), &b_tag)
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed(), "{stale}");
    assert_eq!(store.get(&b).await.unwrap().etag, b_tag2);
    let missing = store
        .put_if_match(&key("contract/none"), Bytes::from_static(b"x"), &b_tag2)
        .await
        .unwrap_err();
    assert!(missing.is_precondition_failed(), "{missing}");

    // Listing: a string prefix, ascending, paginated.
    for i in 0..5 {
        store
            .put(&key(&format!("list/p/{i}")), Bytes::from_static(b"."))
            .await
            .unwrap();
    }
    store.put(&key("list/q"), Bytes::from_static(b".")).await.unwrap();
    let first = store.list("list/p/", None, 2).await.unwrap();
    assert_eq!(first.keys, [key("list/p/0"), key("list/p/1")]);
    let second = store.list("list/p/", first.next.as_ref(), 10).await.unwrap();
    assert_eq!(second.keys, [key("list/p/2"), key("list/p/3"), key("list/p/4")]);
    assert_eq!(second.next, None);
    assert_eq!(store.list("list/", None, 10).await.unwrap().keys.len(), 6);
    assert!(store.list("nothing/", None, 10).await.unwrap().keys.is_empty());
    assert!(
        store
            .list("../../etc/", None, 10)
            .await
            .map_or(true, |page| page.keys.is_empty())
    );

    // Deleting, twice.
    store.delete(&a).await.unwrap();
    store.delete(&a).await.unwrap();
    assert!(store.get(&a).await.unwrap_err().is_not_found());

    // Races: one of many creators wins; CAS increments are never lost.
    let race = key("contract/race");
    let creators = (0..8).map(|i| {
        let store = Arc::clone(&store);
        let race = race.clone();
        async move {
            store
                .put_if_absent(&race, Bytes::from(format!("creator {i}")))
                .await
                .is_ok()
        }
    });
    assert_eq!(join_all(creators).await.into_iter().filter(|won| *won).count(), 1);

    let counter = key("contract/counter");
    store.put(&counter, Bytes::from_static(b"0")).await.unwrap();
    let incrementers = (0..8).map(|_| {
        let store = Arc::clone(&store);
        let counter = counter.clone();
        async move {
            for _ in 0..5 {
                loop {
                    let current = store.get(&counter).await.unwrap();
                    let value: u64 = std::str::from_utf8(&current.bytes).unwrap().parse().unwrap();
                    let next = Bytes::from((value + 1).to_string());
                    match store.put_if_match(&counter, next, &current.etag).await {
                        Ok(_) => break,
                        Err(error) if error.is_precondition_failed() => continue,
                        Err(error) => panic!("{error}"),
                    }
                }
            }
        }
    });
    join_all(incrementers).await;
    assert_eq!(store.get(&counter).await.unwrap().bytes.as_ref(), b"40");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_store_keeps_the_contract() {
    contract(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(Arc::new(LocalStore::open(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn local_listing_cannot_walk_out_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::fs::write(dir.path().join("outside/secret"), "x").unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    // `objects/../outside` is the directory next to the objects.
    let listed = store.list("../outside/", None, 10).await;
    assert!(matches!(listed, Err(StoreError::InvalidKey { .. })), "{listed:?}");
}

fn s3_store(server: &MotoServer, bucket: &str) -> S3Store {
    S3Store::new(S3StoreConfig {
        credentials: S3Credentials::Static {
            access_key_id: "testing".to_owned(),
            secret_access_key: "testing".to_owned(),
        },
        region: "us-east-1".to_owned(),
        ..S3StoreConfig::new(Some(server.endpoint.clone()), bucket)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_store_keeps_the_contract_against_a_real_s3_server() {
    let server = MotoServer::start();
    server.create_bucket("contract").await;
    contract(Arc::new(s3_store(&server, "contract"))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_trees_and_versions_work_over_s3() {
    let server = MotoServer::start();
    server.create_bucket("grove").await;
    let store: Arc<dyn ObjectStore> = Arc::new(s3_store(&server, "grove"));
    let blobs = ContentStore::blobs(Arc::clone(&store));
    let trees = grove_objects::content::trees_in(Arc::clone(&store), 10_000);
    let sites = Sites::new(Arc::clone(&store), trees.clone());

    let mut entries = Vec::new();
    for i in 0..200 {
        let body = Bytes::from(format!("<h1>page {i}</h1>"));
        let hash = blobs.put(body.clone()).await.unwrap();
        entries.push(Entry {
            path: SitePath::parse(&format!("pages/{i}.html")).unwrap(),
            hash,
            size: body.len() as u64,
            content_type: ContentType::parse("text/html").unwrap(),
        });
    }
    let root = trees.build(entries.clone()).await.unwrap();
    let demo = SiteName::parse("demo").unwrap();
    let commit = |message: &str| Commit {
        tree: root,
        message: message.to_owned(),
        expected_parent: None,
    };
    sites.commit(&demo, commit("v1")).await.unwrap();
    sites.commit(&demo, commit("v2")).await.unwrap();

    // A fresh reader (no cache) sees the same tree and verified blobs.
    let reader = grove_objects::content::trees_in(Arc::clone(&store), 10_000);
    let (live, _) = sites.root(&demo).await.unwrap().unwrap();
    assert_eq!(live.version, 2);
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(reader.entries(&live.tree).await.unwrap() == entries, "entries differ");
    let found = reader
        .lookup(&live.tree, &SitePath::parse("pages/7.html").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blobs.get(&found.hash).await.unwrap().as_ref(), b"<h1>page 7</h1>");

    // A corrupted blob in the bucket is refused, not served.
    store
        .put(&blobs.key(&found.hash), Bytes::from_static(b"<h1>evil</h1>"))
        .await
        .unwrap();
    assert!(blobs.get(&found.hash).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_puts_upload_exactly_the_announced_bytes() {
    let server = MotoServer::start();
    server.create_bucket("uploads").await;
    let store = s3_store(&server, "uploads");
    let body = Bytes::from_static(b"uploaded straight to the bucket");
    let hash = ContentHash::of(&body);
    let target = key(&format!("blobs/{hash}"));
    let presigned = store
        .presign_put(&target, &hash, Duration::from_secs(300))
        .await
        .unwrap()
        .expect("S3 supports presigned PUTs");
    assert!(presigned.url.starts_with(&server.endpoint), "{}", presigned.url);
    assert!(
        presigned
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("x-amz-checksum-sha256")),
        "the checksum must be a signed header: {:?}",
        presigned.headers
    );

    let put = |bytes: Bytes| {
        let mut request = reqwest::Client::new().put(&presigned.url).body(bytes);
        for (name, value) in &presigned.headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let response = put(body.clone()).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(store.get(&target).await.unwrap().bytes, body);

    // The URL is signed, expires, and signs the checksum header, so a store
    // that verifies signatures and checksums (S3, R2) refuses other bytes.
    // moto checks neither, so that refusal is not observable here.
    let query = presigned
        .url
        .split_once('?')
        .map(|(_, query)| query.to_ascii_lowercase())
        .unwrap_or_default();
    assert!(query.contains("x-amz-signature="), "{query}");
    assert!(query.contains("x-amz-expires=300"), "{query}");
    assert!(
        query.contains("x-amz-checksum-sha256"),
        "checksum header not signed: {query}"
    );
}
