//! The local-directory store under real processes: compare-and-swap across
//! sixteen committer processes, and committers killed with SIGKILL at random
//! points. The test binary re-runs itself as the child processes
//! (`GROVE_TEST_CHILD` selects the role), so children share no memory with
//! the parent and each other.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use grove_core::tree::{Entry, Trees};
use grove_core::{ContentHash, ContentType, SiteName, SitePath};
use grove_objects::site::{Commit, Sites};
use grove_objects::store::LocalStore;
use libtest_mimic::{Arguments, Failed, Trial};
use rand::Rng;

const CHILD_ROLE: &str = "GROVE_TEST_CHILD";

fn main() {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        runtime().block_on(run_child(&role, &args));
        return;
    }
    let tests = vec![
        Trial::test("local_store_cas_holds_across_sixteen_processes", cas_across_processes),
        Trial::test("committers_killed_at_random_points_leave_a_readable_store", crash_test),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open(dir: &Path) -> (Trees, Sites) {
    let store = Arc::new(LocalStore::open(dir).unwrap());
    let trees = grove_objects::content::trees_in(store.clone(), 100_000);
    (trees.clone(), Sites::new(store, trees))
}

fn demo() -> SiteName {
    SiteName::parse("demo").unwrap()
}

/// A small site whose content depends on `label`, so every commit writes new
/// nodes (more places for a kill to land).
fn site_entries(label: &str, files: usize) -> Vec<Entry> {
    (0..files)
        .map(|i| Entry {
            path: SitePath::parse(&format!("dir-{}/file-{i}.html", i % 7)).unwrap(),
            hash: ContentHash::of(format!("{label}/{i}").as_bytes()),
            size: i as u64,
            content_type: ContentType::parse("text/html").unwrap(),
        })
        .collect()
}

/// Child roles. Each prints `ack <version> <message>` once a commit returned.
async fn run_child(role: &str, args: &[String]) {
    let (trees, sites) = open(Path::new(&args[0]));
    let mut stdout = std::io::stdout();
    match role {
        "commit" => {
            let (label, count): (&str, usize) = (&args[1], args[2].parse().unwrap());
            let tree = trees.build(site_entries("shared", 10)).await.unwrap();
            for i in 0..count {
                let message = format!("{label}/{i}");
                let version = sites.commit(&demo(), commit(tree, &message)).await.unwrap();
                writeln!(stdout, "ack {} {message}", version.n).unwrap();
            }
        }
        "commit-forever" => {
            let label = &args[1];
            for i in 0.. {
                let message = format!("{label}/{i}");
                let tree = trees.build(site_entries(&message, 300)).await.unwrap();
                let version = sites.commit(&demo(), commit(tree, &message)).await.unwrap();
                writeln!(stdout, "ack {} {message}", version.n).unwrap();
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

fn commit(tree: ContentHash, message: &str) -> Commit {
    Commit {
        tree,
        message: message.to_owned(),
        expected_parent: None,
    }
}

fn spawn_child(role: &str, args: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ROLE, role)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Parses the `ack` lines a child printed into version -> message.
fn acks(output: impl std::io::Read) -> Vec<(u64, String)> {
    BufReader::new(output)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            (parts.next()? == "ack").then_some(())?;
            Some((parts.next()?.parse().ok()?, parts.next()?.to_owned()))
        })
        .collect()
}

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition { Ok(()) } else { Err(message().into()) }
}

/// Checks the store is whole: the root names a version, every version up to
/// it exists with parent n - 1 and a complete tree, and every acknowledged
/// commit is in history under the number it was acknowledged with.
async fn check_store(dir: &Path, acked: &BTreeMap<u64, String>) -> Result<u64, Failed> {
    let (trees, sites) = open(dir);
    let Some((root, _)) = sites.root(&demo()).await? else {
        ensure(acked.is_empty(), || "acknowledged commits but no root".to_owned())?;
        return Ok(0);
    };
    let newest_ack = acked.keys().next_back().copied().unwrap_or(0);
    ensure(root.version >= newest_ack, || {
        format!("root {} is behind ack {newest_ack}", root.version)
    })?;
    for n in 1..=root.version {
        let version = sites.version(&demo(), n).await?;
        ensure(version.parent == (n > 1).then_some(n - 1), || {
            format!("version {n} has parent {:?}", version.parent)
        })?;
        if let Some(message) = acked.get(&n) {
            ensure(&version.message == message, || {
                format!("version {n} is {:?}, acked {message:?}", version.message)
            })?;
        }
    }
    let live = sites.version(&demo(), root.version).await?;
    ensure(live.tree == root.tree, || {
        "root and its version disagree on the tree".to_owned()
    })?;
    trees.entries(&root.tree).await?;
    Ok(root.version)
}

fn cas_across_processes() -> Result<(), Failed> {
    const CHILDREN: usize = 16;
    const EACH: usize = 5;
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_str().unwrap().to_owned();
    let children: Vec<_> = (0..CHILDREN)
        .map(|child| spawn_child("commit", &[&path, &format!("child{child}"), &EACH.to_string()]))
        .collect();
    let mut acked = BTreeMap::new();
    for mut child in children {
        let lines = acks(child.stdout.take().unwrap());
        ensure(child.wait()?.success(), || "a committer process failed".to_owned())?;
        ensure(lines.len() == EACH, || {
            format!("a committer acked {} of {EACH}", lines.len())
        })?;
        for (n, message) in lines {
            ensure(acked.insert(n, message).is_none(), || {
                format!("version {n} acked twice")
            })?;
        }
    }
    let total = (CHILDREN * EACH) as u64;
    ensure(acked.keys().copied().eq(1..=total), || {
        "acked versions are not 1..=80".to_owned()
    })?;
    let root = runtime().block_on(check_store(dir.path(), &acked))?;
    ensure(root == total, || format!("root is {root}, expected {total}"))?;
    let messages: BTreeSet<_> = acked.values().collect();
    ensure(messages.len() == acked.len(), || "a commit landed twice".to_owned())
}

fn crash_test() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_str().unwrap().to_owned();
    let mut rng = rand::rng();
    let mut acked = BTreeMap::new();
    let mut kills = 0;
    for round in 0..15 {
        let mut child = spawn_child("commit-forever", &[&path, &format!("round{round}")]);
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        if child.try_wait()?.is_none() {
            kills += 1;
        }
        child.kill()?;
        child.wait()?;
        acked.extend(acks(child.stdout.take().unwrap()));
        runtime().block_on(check_store(dir.path(), &acked))?;
    }
    ensure(kills == 15, || {
        format!("only {kills} of 15 children were killed mid-run")
    })?;
    ensure(!acked.is_empty(), || "no child got to acknowledge a commit".to_owned())?;
    // After all the crashes the next publish still succeeds on top.
    runtime().block_on(async {
        let (trees, sites) = open(dir.path());
        let before = sites.root(&demo()).await?.map_or(0, |(root, _)| root.version);
        let tree = trees.build(site_entries("after", 5)).await?;
        let version = sites.commit(&demo(), commit(tree, "after the crashes")).await?;
        ensure(version.n > before, || "commit after crashes did not advance".to_owned())
    })
}
