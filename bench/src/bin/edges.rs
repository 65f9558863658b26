//! Many edges on one bucket, two designs side by side on the same moto
//! server and data: today's on-demand polling (each busy site's root read
//! again every second) against the journal with pushes (bench/edges.sh).
//! Reports store requests per edge per second against the number of busy
//! sites, and publish -> first new response on every edge.

use std::time::Duration;

use grove_testkit::edges::{self, Fleet, Via};
use grove_testkit::moto::MotoServer;

const EDGES: usize = 8;
const SITES: usize = 1000;
const PUBLISHES: usize = 200;

struct Design {
    name: &'static str,
    /// The edges' config, given the TOML list of their peers.
    config: fn(&str) -> String,
}

const DESIGNS: [Design; 2] = [
    Design {
        name: "on-demand polling (root_refresh 1 s, no journal, no push)",
        config: |_| {
            "root_refresh_ms = 1000\n[node]\nembedded = false\n[edges]\njournal_poll_ms = 3600000\nsafety_net_reads_per_sec = 1000000\n".to_owned()
        },
    },
    Design {
        name: "journal + push (defaults)",
        config: |peers| format!("[node]\nembedded = false\n[edges]\npeers = {peers}\n"),
    },
];

#[tokio::main]
async fn main() {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for design in DESIGNS {
        let moto = MotoServer::start();
        moto.create_bucket("grove").await;
        let store = moto.store("grove");
        let trees = edges::seed(&store, SITES).await;
        let fleet = Fleet::start(&moto, EDGES, design.config);
        tokio::time::sleep(Duration::from_secs(3)).await;
        println!("{}:", design.name);
        for sites in [10, 100, 1000] {
            let rates = edges::store_rate(&client, &fleet.edges, sites, Duration::from_secs(10)).await;
            let mean = rates.iter().sum::<f64>() / rates.len() as f64;
            let max = rates.iter().copied().fold(0.0, f64::max);
            println!("  {sites:>5} busy sites: {mean:8.2} store requests per edge per second (max {max:.2})");
        }
        let idle_before = store_requests_of_all(&fleet).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle = (store_requests_of_all(&fleet).await - idle_before) / 10.0 / EDGES as f64;
        println!("  no visitors: {idle:.2} store requests per edge per second");
        let mut versions = vec![1_u64; SITES];
        versions[0] = 2;
        // Through the edges' API in both designs: the committing edge
        // pushes to the others only in the second.
        let waits = edges::time_publishes(&fleet, &client, &Via::Api, trees, &mut versions, PUBLISHES, 100).await;
        println!(
            "  publish -> first new response on each edge ({} pairs): p50 {:?}, p99 {:?}, max {:?}",
            waits.len(),
            edges::percentile(&waits, 0.5),
            edges::percentile(&waits, 0.99),
            waits.last().unwrap()
        );
    }
}

async fn store_requests_of_all(fleet: &Fleet) -> f64 {
    let mut total = 0.0;
    for edge in &fleet.edges {
        total += edges::store_requests(edge).await;
    }
    total
}
