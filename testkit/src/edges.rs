//! A fleet of edges on one bucket, measured from outside: which version
//! each serves, how long a publish takes to reach all of them, and what
//! they cost the store. The end-to-end tests and `bench/edges.sh` share it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use grove_core::{ContentHash, SiteName};
use grove_objects::site::{Commit, Sites};
use grove_objects::store::ObjectStore;
use reqwest::StatusCode;
use reqwest::header;

use crate::host::random_token;
use crate::moto::MotoServer;
use crate::ports::{Reserved, reserve};
use crate::proxy::{Proxy, publish, site_dir};

/// The name of the `n`th site of a fleet's test data.
pub fn site(n: usize) -> String {
    format!("site{n}")
}

/// The version `proxy` serves for `site`'s front page.
pub async fn served_version(client: &reqwest::Client, proxy: &Proxy, site: &str) -> u64 {
    let response = client
        .get(format!("http://{}/", proxy.addr))
        .header(header::HOST, format!("{site}.localhost"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{site} on {}", proxy.addr);
    response.headers()["x-grove-version"].to_str().unwrap().parse().unwrap()
}

/// Requests to the store this edge made so far, every call together.
pub async fn store_requests(proxy: &Proxy) -> f64 {
    proxy.metric_total("grove_store_requests_total").await
}

/// Waits until every edge serves `version` of `site`; how long each took.
pub async fn propagation(client: &reqwest::Client, edges: &[Proxy], site: &str, version: u64) -> Vec<Duration> {
    let started = Instant::now();
    let waits = edges.iter().map(|edge| async move {
        loop {
            if served_version(client, edge, site).await >= version {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{site} v{version} never reached {}",
                edge.addr
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    futures::future::join_all(waits).await
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Visits each of the first `sites` sites once on every edge.
pub async fn visit(client: &reqwest::Client, edges: &[Proxy], sites: usize) {
    let sweeps = edges.iter().map(|edge| {
        futures::stream::iter(0..sites).for_each_concurrent(8, move |n| async move {
            served_version(client, edge, &site(n)).await;
        })
    });
    futures::future::join_all(sweeps).await;
}

/// Store requests per edge per second over `window`, while every one of
/// the first `sites` sites is visited on every edge again and again
/// (after one visit each, so their first reads are not counted).
pub async fn store_rate(client: &reqwest::Client, edges: &[Proxy], sites: usize, window: Duration) -> Vec<f64> {
    visit(client, edges, sites).await;
    let before = futures::future::join_all(edges.iter().map(store_requests)).await;
    let started = Instant::now();
    while started.elapsed() < window {
        visit(client, edges, sites).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = futures::future::join_all(edges.iter().map(store_requests)).await;
    before
        .iter()
        .zip(&after)
        .map(|(before, after)| (after - before) / seconds)
        .collect()
}

/// Edges on one bucket of a moto server, each told of the others'
/// publishes, all with the operator token.
pub struct Fleet {
    pub edges: Vec<Proxy>,
    pub token: String,
}

/// The secret a fleet's edges push with.
pub const EDGE_SECRET: &str = "the-edges-shared-secret";

impl Fleet {
    /// `count` edges; `config(peers)` is each one's config, where `peers`
    /// is the TOML list of the others' addresses.
    pub fn start(moto: &MotoServer, count: usize, config: impl Fn(&str) -> String) -> Self {
        let token = random_token();
        let ports: Vec<[Reserved; 2]> = (0..count).map(|_| [reserve(), reserve()]).collect();
        let addresses: Vec<String> = ports.iter().map(|[public, _]| public.addr().to_string()).collect();
        let [key, secret] = crate::moto::ENV;
        let env = [
            key,
            secret,
            ("GROVE_ADMIN_TOKEN", &token),
            ("GROVE_EDGE_SECRET", EDGE_SECRET),
        ];
        let edges: Vec<Proxy> = ports
            .into_iter()
            .enumerate()
            .map(|(index, ports)| {
                let peers: Vec<String> = addresses
                    .iter()
                    .enumerate()
                    .filter(|(other, _)| *other != index)
                    .map(|(_, address)| format!("{address:?}"))
                    .collect();
                // The caller's top-level keys first, before any table.
                let config = format!(
                    "{}\n{}",
                    config(&format!("[{}]", peers.join(", "))),
                    moto.store_section("grove")
                );
                Proxy::spawn_on(ports, &config, &env)
            })
            .collect();
        for edge in &edges {
            edge.wait_listening();
        }
        Self { edges, token }
    }

    /// Commits `root` on top of version `parent` of `site` through edge
    /// `edge`'s publish API.
    pub async fn commit(&self, client: &reqwest::Client, edge: usize, site: &str, root: ContentHash, parent: u64) {
        let body = serde_json::json!({ "root": root, "parent": parent }).to_string();
        let response = client
            .post(format!(
                "http://{}/_grove/api/publish/v1/sites/{site}/commit",
                self.edges[edge].addr
            ))
            .header(header::HOST, "localhost")
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    }
}

/// Sites `site(0)..site(count)` in `store`, each at version 1 of the first
/// of two trees (`index.html` "A", then "B"), except `site(0)`, at version
/// 2 on the second. Returns the two trees.
pub async fn seed(store: &Arc<dyn ObjectStore>, count: usize) -> [ContentHash; 2] {
    let trees = grove_objects::content::trees_in(Arc::clone(store), 10_000);
    let sites = Sites::new(Arc::clone(store), trees);
    let first = publish(Arc::clone(store), &site(0), site_dir(&[("index.html", "A")]).path()).await;
    let second = publish(Arc::clone(store), &site(0), site_dir(&[("index.html", "B")]).path()).await;
    // One at a time: concurrent commits contend for the journal's next
    // number, and each lost attempt costs more requests than a wait.
    for n in 1..count {
        let commit = Commit {
            tree: first.tree,
            message: "seed".to_owned(),
            expected_parent: Some(0),
        };
        sites.commit(&SiteName::parse(&site(n)).unwrap(), commit).await.unwrap();
    }
    [first.tree, second.tree]
}

/// How the publishes being timed are made.
pub enum Via<'a> {
    /// Through the edges' publish API, spread over them: the committing
    /// edge pushes to the others.
    Api,
    /// Straight into the bucket: no edge pushes, only the journal tells.
    Store(&'a Sites),
}

/// Makes `publishes` publishes of the first `sites` sites, four at a
/// time, alternating each site between `trees`; `versions` holds each
/// site's version and is kept current. Returns, sorted, how long each
/// (publish, edge) pair took from the publish's reply to the edge's first
/// response with the new version (the committing edge left out).
pub async fn time_publishes(
    fleet: &Fleet,
    client: &reqwest::Client,
    via: &Via<'_>,
    trees: [ContentHash; 2],
    versions: &mut [u64],
    publishes: usize,
    sites: usize,
) -> Vec<Duration> {
    let tree = |version: u64| trees[usize::from(version.is_multiple_of(2))];
    let mut waits = Vec::new();
    for batch in (0..publishes).collect::<Vec<_>>().chunks(4) {
        let rounds = batch.iter().map(|&k| {
            let (site_index, edge) = (k % sites, k % fleet.edges.len());
            let parent = versions[site_index];
            async move {
                let name = site(site_index);
                match via {
                    Via::Api => fleet.commit(client, edge, &name, tree(parent + 1), parent).await,
                    Via::Store(sites) => {
                        let commit = Commit {
                            tree: tree(parent + 1),
                            message: "straight into the bucket".to_owned(),
                            expected_parent: Some(parent),
                        };
                        sites.commit(&SiteName::parse(&name).unwrap(), commit).await.unwrap();
                    }
                }
                let mut waits = propagation(client, &fleet.edges, &name, parent + 1).await;
                if matches!(via, Via::Api) {
                    waits.remove(edge);
                }
                waits
            }
        });
        for round in futures::future::join_all(rounds).await {
            waits.extend(round);
        }
        for &k in batch {
            versions[k % sites] += 1;
        }
    }
    waits.sort_unstable();
    waits
}
