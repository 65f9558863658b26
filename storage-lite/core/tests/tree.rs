//! Properties of the prolly-tree manifest: history independence, lookups,
//! diffs against a naive set difference, and O(log n) edits.

use std::collections::BTreeMap;
use std::sync::Arc;

use grove_core::tree::{Change, Difference, Entry, MemoryTreeNodes, Trees};
use grove_core::{ContentHash, ContentType, SitePath};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn trees() -> Trees {
    Trees::new(Arc::new(MemoryTreeNodes::new()), 1 << 20)
}

fn entry(path: &str, version: u32) -> Entry {
    let content_type = if path.ends_with(".html") {
        "text/html"
    } else {
        "application/octet-stream"
    };
    Entry {
        path: SitePath::parse(path).unwrap(),
        hash: ContentHash::of(format!("{path}@{version}").as_bytes()),
        size: u64::from(version) + path.len() as u64,
        content_type: ContentType::parse(content_type).unwrap(),
    }
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// Paths with shared prefixes, so nodes split inside directories.
fn path_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec("[a-d]{1,3}", 1..4),
        prop::sample::select(vec![".html", ".css", ".js", ""]),
    )
        .prop_map(|(segments, extension)| format!("{}{extension}", segments.join("/")))
}

fn site_strategy(max: usize) -> impl Strategy<Value = BTreeMap<String, u32>> {
    prop::collection::btree_map(path_strategy(), 0u32..4, 0..max)
}

fn entries_of(site: &BTreeMap<String, u32>) -> Vec<Entry> {
    site.iter().map(|(path, version)| entry(path, *version)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn same_entries_give_same_root_whatever_the_order_and_batches(
        site in site_strategy(400),
        seed in any::<u64>(),
    ) {
        block_on(async {
            let trees = trees();
            let sorted = trees.build(entries_of(&site)).await.unwrap();

            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut shuffled = entries_of(&site);
            shuffled.shuffle(&mut rng);
            prop_assert_eq!(trees.build(shuffled.clone()).await.unwrap(), sorted);

            // The same set reached by batches of edits from an empty tree,
            // with stray removals and stale versions overwritten on the way.
            let mut root = trees.build(Vec::new()).await.unwrap();
            let mut remaining = shuffled.as_slice();
            while !remaining.is_empty() {
                let take = rng.random_range(1..=remaining.len().min(50));
                let (batch, rest) = remaining.split_at(take);
                let mut changes: Vec<Change> = batch
                    .iter()
                    .map(|e| Change::Upsert(entry(e.path.as_str(), 99)))
                    .collect();
                changes.push(Change::Remove(SitePath::parse("zz/absent").unwrap()));
                changes.extend(batch.iter().cloned().map(Change::Upsert));
                root = trees.apply(&root, changes).await.unwrap();
                remaining = rest;
            }
            prop_assert_eq!(root, sorted);
            Ok(())
        })?;
    }

    #[test]
    fn lookup_finds_every_entry_and_nothing_else(site in site_strategy(400), probe in path_strategy()) {
        block_on(async {
            let trees = trees();
            let root = trees.build(entries_of(&site)).await.unwrap();
            for expected in entries_of(&site) {
                prop_assert_eq!(trees.lookup(&root, &expected.path).await.unwrap(), Some(expected));
            }
            let probe_path = SitePath::parse(&probe).unwrap();
            let found = trees.lookup(&root, &probe_path).await.unwrap();
            prop_assert_eq!(found.is_some(), site.contains_key(&probe));
            prop_assert_eq!(trees.entries(&root).await.unwrap(), entries_of(&site));
            Ok(())
        })?;
    }

    #[test]
    fn diff_equals_the_naive_set_difference(old in site_strategy(400), new in site_strategy(400)) {
        block_on(async {
            let trees = trees();
            let old_root = trees.build(entries_of(&old)).await.unwrap();
            let new_root = trees.build(entries_of(&new)).await.unwrap();
            let mut naive = Vec::new();
            for (path, version) in &old {
                match new.get(path) {
                    None => naive.push(Difference::Removed(entry(path, *version))),
                    Some(v) if v != version => naive.push(Difference::Changed {
                        old: entry(path, *version),
                        new: entry(path, *v),
                    }),
                    Some(_) => {}
                }
            }
            for (path, version) in &new {
                if !old.contains_key(path) {
                    naive.push(Difference::Added(entry(path, *version)));
                }
            }
            naive.sort_by(|a, b| a.path().cmp(b.path()));
            prop_assert_eq!(trees.diff(&old_root, &new_root).await.unwrap(), naive);
            Ok(())
        })?;
    }
}

fn big_site(n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| entry(&format!("section-{}/page-{i}.html", i % 97), 0))
        .collect()
}

/// 3·log64(n) + 2 nodes: each level rewrites the node holding the change plus
/// at most two neighbours absorbed when a boundary key moves.
fn node_bound(n: usize) -> u64 {
    (3.0 * (n as f64).log(64.0)).ceil() as u64 + 2
}

#[tokio::test]
async fn one_change_in_100k_entries_rewrites_a_handful_of_nodes() {
    let trees = trees();
    let site = big_site(100_000);
    let root = trees.build(site.clone()).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..50 {
        let before = trees.stats();
        let change = match round % 3 {
            0 => Change::Upsert(entry(site[rng.random_range(0..site.len())].path.as_str(), round + 1)),
            1 => Change::Remove(site[rng.random_range(0..site.len())].path.clone()),
            _ => Change::Upsert(entry(&format!("new/{round}.html"), 0)),
        };
        let new_root = trees.apply(&root, [change.clone()]).await.unwrap();
        let written = trees.stats().nodes_written - before.nodes_written;
        assert!(
            written <= node_bound(site.len()),
            "{change:?} rewrote {written} nodes, bound {}",
            node_bound(site.len())
        );
        assert_eq!(trees.diff(&root, &new_root).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn edits_of_a_deep_tree_match_a_build_from_scratch() {
    // 20k entries make three levels, so runs cross parent boundaries.
    let trees = trees();
    let mut site: BTreeMap<SitePath, Entry> = big_site(20_000).into_iter().map(|e| (e.path.clone(), e)).collect();
    let mut root = trees.build(site.values().cloned()).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let paths: Vec<SitePath> = site.keys().cloned().collect();
    for round in 0..20 {
        let mut changes = Vec::new();
        for _ in 0..rng.random_range(1..300) {
            let path = paths[rng.random_range(0..paths.len())].clone();
            if rng.random_bool(0.5) {
                site.remove(&path);
                changes.push(Change::Remove(path));
            } else {
                let updated = entry(path.as_str(), round + 1);
                site.insert(path, updated.clone());
                changes.push(Change::Upsert(updated));
            }
        }
        root = trees.apply(&root, changes).await.unwrap();
        assert_eq!(
            root,
            trees.build(site.values().cloned()).await.unwrap(),
            "round {round}"
        );
    }
    // Removing everything leaves the empty tree.
    let removals = site.keys().cloned().map(Change::Remove);
    let emptied = trees.apply(&root, removals).await.unwrap();
    assert_eq!(emptied, trees.build(Vec::new()).await.unwrap());
    assert!(trees.entries(&emptied).await.unwrap().is_empty());
}

#[tokio::test]
async fn duplicate_paths_are_refused() {
    let error = trees()
        .build([entry("a.html", 1), entry("a.html", 2)])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("a.html"), "{error}");
}
