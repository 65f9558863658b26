//! Manifest benchmark: the prolly tree against a flat manifest (the sorted
//! path -> hash list a Netlify-style digest deploy rewrites and compares in
//! full), on the same 100k entries in memory.
//!
//! Run: `cargo run --release -p grove-bench --bin tree [entries]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove_core::tree::{Change, Entry, MemoryTreeNodes, Trees};
use grove_core::{ContentHash, ContentType, SitePath};

const ROUNDS: u32 = 200;

fn entry(i: usize, version: u32) -> Entry {
    let path = format!("section-{}/sub-{}/page-{i}.html", i % 101, i % 7);
    Entry {
        hash: ContentHash::of(format!("{path}@{version}").as_bytes()),
        path: SitePath::parse(&path).unwrap(),
        size: 5_000 + i as u64 % 1000,
        content_type: ContentType::parse("text/html; charset=utf-8").unwrap(),
    }
}

fn flat_manifest(entries: &BTreeMap<SitePath, Entry>) -> Vec<u8> {
    let listing: Vec<_> = entries
        .values()
        .map(|e| (e.path.as_str(), e.hash.to_hex(), e.size, e.content_type.as_str()))
        .collect();
    serde_json::to_vec(&listing).unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(name: &str, tree: Duration, flat: Duration, extra: &str) {
    println!(
        "{name:<28} tree {:>10.3} ms   flat {:>10.3} ms   tree/flat {:>7.4}   {extra}",
        tree.as_secs_f64() * 1e3,
        flat.as_secs_f64() * 1e3,
        tree.as_secs_f64() / flat.as_secs_f64()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |arg| arg.parse().expect("entry count"));
    let entries: Vec<Entry> = (0..n).map(|i| entry(i, 0)).collect();
    let site: BTreeMap<SitePath, Entry> = entries.iter().map(|e| (e.path.clone(), e.clone())).collect();
    println!("{n} entries, medians of {ROUNDS} rounds for edits and diffs");

    // Build from scratch.
    let trees = Trees::new(Arc::new(MemoryTreeNodes::new()), 1 << 22);
    let started = Instant::now();
    let root = trees.build(entries.clone()).await.unwrap();
    let build = started.elapsed();
    let built = trees.stats().nodes_written;
    let started = Instant::now();
    let flat = flat_manifest(&site);
    let flat_build = started.elapsed();
    report(
        "build",
        build,
        flat_build,
        &format!("nodes written {built}, flat manifest {} KiB", flat.len() / 1024),
    );

    // One-entry change. Each side runs its own loop, so one's allocation
    // pattern does not bill the other (freeing a 13 MiB manifest makes the
    // allocator consolidate on the next small allocation).
    let changes: Vec<Entry> = (0..ROUNDS)
        .map(|round| entry((round as usize * 7919) % n, round + 1))
        .collect();
    let (mut tree_times, mut max_written, mut max_read) = (Vec::new(), 0, 0);
    for changed in &changes {
        let before = trees.stats();
        let started = Instant::now();
        trees.apply(&root, [Change::Upsert(changed.clone())]).await.unwrap();
        tree_times.push(started.elapsed());
        let after = trees.stats();
        max_written = max_written.max(after.nodes_written - before.nodes_written);
        max_read = max_read.max(after.nodes_read - before.nodes_read);
    }
    let mut flat_times = Vec::new();
    for changed in &changes {
        let mut edited = site.clone();
        let started = Instant::now();
        edited.insert(changed.path.clone(), changed.clone());
        std::hint::black_box(flat_manifest(&edited));
        flat_times.push(started.elapsed());
    }
    report(
        "apply 1 change",
        median(tree_times),
        median(flat_times),
        &format!("nodes written (max) {max_written}, nodes read (max) {max_read}"),
    );

    // Diff of two trees differing in 10 entries, read cold from the store.
    let changed_sets: Vec<Vec<Entry>> = (0..ROUNDS)
        .map(|round| {
            (0..10)
                .map(|k| entry((round as usize * 7919 + k * 9973) % n, round + 1))
                .collect()
        })
        .collect();
    let mut others = Vec::new();
    for changed in &changed_sets {
        others.push(
            trees
                .apply(&root, changed.iter().cloned().map(Change::Upsert))
                .await
                .unwrap(),
        );
    }
    let (mut tree_times, mut max_read) = (Vec::new(), 0);
    for other in &others {
        trees.clear_cache();
        let before = trees.stats().nodes_read;
        let started = Instant::now();
        let differences = trees.diff(&root, other).await.unwrap();
        tree_times.push(started.elapsed());
        max_read = max_read.max(trees.stats().nodes_read - before);
        assert_eq!(differences.len(), 10);
    }
    let mut flat_times = Vec::new();
    for changed in &changed_sets {
        let mut edited = site.clone();
        edited.extend(changed.iter().map(|e| (e.path.clone(), e.clone())));
        let started = Instant::now();
        let differing = site.iter().zip(edited.iter()).filter(|((_, a), (_, b))| a != b).count();
        flat_times.push(started.elapsed());
        assert_eq!(differing, 10);
    }
    report(
        "diff, 10 changes (cold)",
        median(tree_times),
        median(flat_times),
        &format!("nodes read (max) {max_read}"),
    );
}
