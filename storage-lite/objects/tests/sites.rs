//! Site versions, roots and tokens over the in-memory store, including races
//! and injected store faults.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use grove_core::token::{Handle, MalformedHandle, Right};
use grove_core::tree::{Entry, Trees};
use grove_core::version::VersionKind;
use grove_core::{ContentHash, ContentType, SiteName, SitePath};
use grove_objects::site::{Commit, SiteError, Sites};
use grove_objects::store::{Fault, FaultKind, FaultyStore, MemoryStore, ObjectStore, StoreOp};
use grove_objects::token::{TokenError, Tokens};
use time::OffsetDateTime;

fn site(name: &str) -> SiteName {
    SiteName::parse(name).unwrap()
}

async fn tree_with(trees: &Trees, label: &str) -> ContentHash {
    trees
        .build([Entry {
            path: SitePath::parse("index.html").unwrap(),
            hash: ContentHash::of(label.as_bytes()),
            size: label.len() as u64,
            content_type: ContentType::parse("text/html").unwrap(),
        }])
        .await
        .unwrap()
}

fn setup<S: ObjectStore + 'static>(store: Arc<S>) -> (Trees, Sites) {
    let trees = grove_objects::content::trees_in(store.clone(), 10_000);
    let sites = Sites::new(store, trees.clone());
    (trees, sites)
}

fn commit(tree: ContentHash, message: &str) -> Commit {
    Commit {
        tree,
        message: message.to_owned(),
        expected_parent: None,
    }
}

#[tokio::test]
async fn history_is_linear_and_rollback_is_a_new_version() {
    let (trees, sites) = setup(Arc::new(MemoryStore::new()));
    let demo = site("demo");
    assert!(sites.root(&demo).await.unwrap().is_none());
    let first = tree_with(&trees, "one").await;
    let second = tree_with(&trees, "two").await;

    let v1 = sites.commit(&demo, commit(first, "first")).await.unwrap();
    let v2 = sites.commit(&demo, commit(second, "second")).await.unwrap();
    assert_eq!((v1.n, v1.parent, v2.n, v2.parent), (1, None, 2, Some(1)));

    let v3 = sites.rollback(&demo, 1, Some(2)).await.unwrap();
    assert_eq!(
        (v3.n, v3.tree, v3.kind, v3.restores),
        (3, first, VersionKind::Rollback, Some(1))
    );
    let (root, _) = sites.root(&demo).await.unwrap().unwrap();
    assert_eq!((root.version, root.tree), (3, first));

    let page = sites.versions(&demo, None, 2).await.unwrap();
    assert_eq!(page.versions.iter().map(|v| v.n).collect::<Vec<_>>(), [3, 2]);
    let rest = sites.versions(&demo, page.next_before, 2).await.unwrap();
    assert_eq!(rest.versions.iter().map(|v| v.n).collect::<Vec<_>>(), [1]);
    assert_eq!(rest.next_before, None);

    // Other sites are independent.
    assert!(matches!(
        sites.versions(&site("other"), None, 10).await,
        Err(SiteError::NoVersions { .. })
    ));
}

#[tokio::test]
async fn a_stale_expected_parent_is_a_conflict_that_changes_nothing() {
    let (trees, sites) = setup(Arc::new(MemoryStore::new()));
    let demo = site("demo");
    let tree = tree_with(&trees, "x").await;
    sites.commit(&demo, commit(tree, "v1")).await.unwrap();
    let stale = Commit {
        expected_parent: Some(0),
        ..commit(tree, "stale")
    };
    match sites.commit(&demo, stale).await {
        Err(SiteError::Conflict {
            expected: 0,
            current: 1,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(sites.root(&demo).await.unwrap().unwrap().0.version, 1);
    assert!(matches!(
        sites.version(&demo, 2).await,
        Err(SiteError::UnknownVersion { n: 2, .. })
    ));
}

#[tokio::test]
async fn bad_commits_are_refused_before_anything_is_written() {
    let memory = Arc::new(MemoryStore::new());
    let (_, sites) = setup(memory.clone());
    let demo = site("demo");
    let dangling = ContentHash::of(b"no such tree");
    let error = sites.commit(&demo, commit(dangling, "x")).await.unwrap_err();
    assert!(matches!(error, SiteError::MissingTree { .. }), "{error}");
    assert!(error.to_string().contains(&dangling.to_hex()), "{error}");

    let (trees, _) = setup(memory.clone());
    let tree = tree_with(&trees, "x").await;
    let long = "m".repeat(5000);
    assert!(matches!(
        sites.commit(&demo, commit(tree, &long)).await,
        Err(SiteError::MessageTooLong)
    ));
    assert!(memory.list("sites/", None, 10).await.unwrap().keys.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_committers_make_one_linear_history() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    // Latency widens the race windows between reading and swapping the root.
    store.set_latency(Duration::from_millis(1));
    let (trees, sites) = setup(store.clone());
    let demo = site("demo");
    let tree = tree_with(&trees, "shared").await;
    const COMMITTERS: usize = 16;
    const EACH: usize = 8;
    let tasks: Vec<_> = (0..COMMITTERS)
        .map(|committer| {
            let sites = sites.clone();
            let demo = demo.clone();
            tokio::spawn(async move {
                let mut won = Vec::new();
                for i in 0..EACH {
                    let version = sites
                        .commit(&demo, commit(tree, &format!("{committer}/{i}")))
                        .await
                        .unwrap();
                    won.push(version.n);
                }
                won
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.extend(task.await.unwrap());
    }
    assert_history_is_linear(&sites, &demo, COMMITTERS * EACH, &numbers).await;
}

/// Every committed version exists exactly once with its own message, each
/// version's parent is the one before, and the root names the highest.
async fn assert_history_is_linear(sites: &Sites, site: &SiteName, expected: usize, numbers: &[u64]) {
    let distinct: BTreeSet<u64> = numbers.iter().copied().collect();
    assert_eq!(distinct.len(), expected, "a version number was handed out twice");
    assert_eq!(distinct, (1..=expected as u64).collect());
    let (root, _) = sites.root(site).await.unwrap().unwrap();
    assert_eq!(root.version, expected as u64);
    let mut messages = BTreeSet::new();
    for n in 1..=expected as u64 {
        let version = sites.version(site, n).await.unwrap();
        assert_eq!(version.parent, (n > 1).then_some(n - 1));
        assert!(messages.insert(version.message), "message committed twice");
    }
}

#[tokio::test]
async fn a_commit_that_died_before_the_root_swap_is_finished_by_the_next() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let (trees, sites) = setup(store.clone());
    let demo = site("demo");
    let tree = tree_with(&trees, "a").await;
    sites.commit(&demo, commit(tree, "v1")).await.unwrap();

    // The version record lands, then the root swap fails.
    store.inject(Fault {
        key_prefix: "sites/demo/root".to_owned(),
        ..Fault::next(StoreOp::PutIfMatch, 1)
    });
    let error = sites.commit(&demo, commit(tree, "v2")).await.unwrap_err();
    assert!(
        matches!(error, SiteError::RootNotAdvanced { version: 2, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("injected fault"), "{error}");
    assert_eq!(
        sites.root(&demo).await.unwrap().unwrap().0.version,
        1,
        "nothing went live"
    );

    let v3 = sites.commit(&demo, commit(tree, "v3")).await.unwrap();
    assert_eq!(v3.n, 3);
    assert_eq!(sites.version(&demo, 2).await.unwrap().message, "v2");
    assert_eq!(sites.root(&demo).await.unwrap().unwrap().0.version, 3);
}

#[tokio::test]
async fn a_retried_create_that_had_landed_is_recognised_as_ours() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let (trees, sites) = setup(store.clone());
    let demo = site("demo");
    let tree = tree_with(&trees, "a").await;
    store.inject(Fault {
        key_prefix: "sites/demo/versions/".to_owned(),
        kind: FaultKind::AppliedThenLost,
        ..Fault::next(StoreOp::PutIfAbsent, 1)
    });
    let first = Commit {
        expected_parent: Some(0),
        ..commit(tree, "v1")
    };
    let version = sites.commit(&demo, first).await.unwrap();
    assert_eq!(version.n, 1, "not a conflict, not a duplicate version 2");
    assert_eq!(sites.root(&demo).await.unwrap().unwrap().0.version, 1);
    assert!(sites.version(&demo, 2).await.is_err());
}

#[tokio::test]
async fn an_unreachable_store_fails_clearly_and_changes_nothing() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let (trees, sites) = setup(store.clone());
    let demo = site("demo");
    let tree = tree_with(&trees, "a").await;
    sites.commit(&demo, commit(tree, "v1")).await.unwrap();
    trees.clear_cache();
    store.set_unreachable(true);
    let error = sites.commit(&demo, commit(tree, "v2")).await.unwrap_err();
    assert!(error.to_string().contains("failed"), "{error}");
    store.set_unreachable(false);
    assert_eq!(sites.root(&demo).await.unwrap().unwrap().0.version, 1);
    assert!(sites.version(&demo, 2).await.is_err());
}

fn in_hours(hours: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::hours(hours)
}

#[tokio::test]
async fn tokens_grant_only_what_they_hold_and_revocation_cascades() {
    let memory = Arc::new(MemoryStore::new());
    let tokens = Tokens::new(memory.clone());
    let root = tokens.issue_root(in_hours(24)).await.unwrap();
    let publisher = tokens
        .grant(
            &root,
            "sites/demo",
            &[Right::Read, Right::Write, Right::Grant],
            in_hours(2),
        )
        .await
        .unwrap();
    let reader = tokens
        .grant(&publisher, "sites/demo/posts", &[Right::Read], in_hours(1))
        .await
        .unwrap();

    tokens.check(&publisher, "sites/demo/root", Right::Write).await.unwrap();
    tokens.check(&reader, "sites/demo/posts/1", Right::Read).await.unwrap();
    // Several paths at once: every one must be allowed, and the refusal
    // names the one that is not.
    tokens
        .check_all(
            &reader,
            &[("sites/demo/posts/1", Right::Read), ("sites/demo/posts/2", Right::Read)],
        )
        .await
        .unwrap();
    match tokens
        .check_all(
            &reader,
            &[("sites/demo/posts/1", Right::Read), ("sites/demo/pages", Right::Read)],
        )
        .await
    {
        Err(TokenError::Forbidden { path, .. }) => assert_eq!(path, "sites/demo/pages"),
        other => panic!("expected forbidden, got {other:?}"),
    }

    // Wrong site, a sibling prefix, a right not held.
    for (handle, path, right) in [
        (&publisher, "sites/other/root", Right::Write),
        (&publisher, "sites/demo2", Right::Read),
        (&reader, "sites/demo/posts", Right::Write),
        (&reader, "sites/demo/root", Right::Read),
    ] {
        let error = tokens.check(handle, path, right).await.unwrap_err();
        assert!(matches!(error, TokenError::Forbidden { .. }), "{path}: {error}");
    }

    // Escalation: more rights, a wider path, a later expiry, bad grants.
    let escalations = [
        tokens
            .grant(&reader, "sites/demo/posts", &[Right::Read], in_hours(1))
            .await,
        tokens.grant(&publisher, "sites", &[Right::Read], in_hours(1)).await,
        tokens
            .grant(&publisher, "sites/demo", &[Right::Read], in_hours(48))
            .await,
        tokens.grant(&publisher, "sites/demo", &[], in_hours(1)).await,
        tokens
            .grant(&publisher, "sites/demo/../x", &[Right::Read], in_hours(1))
            .await,
        tokens
            .grant(&publisher, "sites/demo", &[Right::Read], in_hours(-1))
            .await,
    ];
    for result in escalations {
        assert!(result.is_err(), "escalation allowed: {result:?}");
    }

    // A forged handle (well-formed, never issued) and a malformed one.
    let forged = Handle::parse(&format!("grove_{}", "ab".repeat(32))).unwrap();
    assert!(matches!(
        tokens.check(&forged, "sites/demo", Right::Read).await,
        Err(TokenError::Unknown)
    ));
    assert!(matches!(Handle::parse("Bearer hunter2"), Err(MalformedHandle)));

    // The store holds hashes only, never a handle.
    for key in memory.list("auth/", None, 100).await.unwrap().keys {
        let bytes: Bytes = memory.get(&key).await.unwrap().bytes;
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains(&root.reveal()[6..]) && !text.contains(&publisher.reveal()[6..]));
    }

    // A path that escapes its prefix is not inside it.
    let escaping = tokens.check(&publisher, "sites/demo/../other", Right::Read).await;
    assert!(matches!(escaping, Err(TokenError::Forbidden { .. })), "{escaping:?}");

    // A delegate holding grant on the same path cannot revoke its grantor or
    // a sibling; the grantor can revoke what it granted.
    let delegate = tokens
        .grant(&publisher, "sites/demo", &[Right::Write, Right::Grant], in_hours(1))
        .await
        .unwrap();
    assert!(tokens.revoke(&delegate, &publisher).await.is_err());
    assert!(tokens.revoke(&delegate, &reader).await.is_err());
    tokens.revoke(&publisher, &delegate).await.unwrap();
    assert!(matches!(
        tokens.check(&delegate, "sites/demo", Right::Write).await,
        Err(TokenError::Unknown)
    ));

    // A reader cannot revoke its grantor; revoking the publisher disables the
    // reader it granted, immediately.
    assert!(tokens.revoke(&reader, &publisher).await.is_err());
    tokens.revoke(&root, &publisher).await.unwrap();
    assert!(matches!(
        tokens.check(&publisher, "sites/demo", Right::Read).await,
        Err(TokenError::Unknown)
    ));
    assert!(matches!(
        tokens.check(&reader, "sites/demo/posts/1", Right::Read).await,
        Err(TokenError::GrantorInvalid)
    ));
}

#[tokio::test]
async fn expired_tokens_and_their_grants_stop_working() {
    let tokens = Tokens::new(Arc::new(MemoryStore::new()));
    let root = tokens.issue_root(in_hours(24)).await.unwrap();
    let one_hour = in_hours(1);
    let short = tokens
        .grant(&root, "sites/demo", &[Right::Read, Right::Grant], one_hour)
        .await
        .unwrap();
    let shorter = tokens
        .grant(&short, "sites/demo", &[Right::Read], one_hour)
        .await
        .unwrap();
    let later = in_hours(3);
    assert!(matches!(
        tokens.check_at(&short, "sites/demo", Right::Read, later).await,
        Err(TokenError::Expired { .. })
    ));
    assert!(matches!(
        tokens.check_at(&shorter, "sites/demo", Right::Read, later).await,
        Err(TokenError::Expired { .. })
    ));
    tokens.check(&shorter, "sites/demo/x", Right::Read).await.unwrap();
    // A token may revoke itself.
    tokens.revoke(&shorter, &shorter).await.unwrap();
    assert!(matches!(
        tokens.check(&shorter, "sites/demo", Right::Read).await,
        Err(TokenError::Unknown)
    ));
}
