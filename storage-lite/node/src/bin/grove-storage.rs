//! `grove-storage`: a standalone storage node. It serves the node API on
//! its own, with its log in a local redb file shipped as segments to the
//! same object store that holds its tokens (the publish API's, so publish
//! tokens work here too). On an empty data directory it rebuilds its log
//! from the segments its name owns in the store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use grove_node::{NodeLimits, NodeSettings, RunningNode, SegmentOptions};
use grove_objects::store::{LocalStore, ObjectStore, S3Store, S3StoreConfig};

/// Run a grove storage node: per-site logs with monotonic timestamps and
/// watches, over HTTP.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "GROVE_NODE_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// Directory for the node's log (`node.redb`).
    #[arg(long, env = "GROVE_NODE_DATA", default_value = ".grove/node")]
    data_dir: PathBuf,
    /// The node's name: its log segments live under `nodes/<name>/` in the
    /// store. A replacement node with the same name and an empty data
    /// directory rebuilds from them.
    #[arg(long, env = "GROVE_NODE_NAME", default_value = "node")]
    name: String,
    /// Milliseconds committed writes gather before they are shipped to the
    /// store as a segment: the most history a lost disk can take with it.
    #[arg(long, default_value_t = 1000)]
    seal_interval_ms: u64,
    /// The local object store holding tokens (the proxy's `<state_dir>/store`).
    #[arg(long, env = "GROVE_NODE_STORE_DIR", conflicts_with = "s3_bucket")]
    store_dir: Option<PathBuf>,
    /// An S3-compatible bucket holding tokens instead (keys from AWS_* variables).
    #[arg(long, env = "GROVE_NODE_S3_BUCKET")]
    s3_bucket: Option<String>,
    #[arg(long, env = "GROVE_NODE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Largest `data` value, in bytes.
    #[arg(long, default_value_t = NodeLimits::default().max_value_bytes)]
    max_value_bytes: usize,
    /// Most entries one read returns.
    #[arg(long, default_value_t = NodeLimits::default().max_read_entries)]
    max_read_entries: usize,
    /// Open watches per handle.
    #[arg(long, default_value_t = NodeLimits::default().max_watchers_per_handle)]
    max_watchers_per_handle: usize,
    /// Requests per second per handle.
    #[arg(long, default_value_t = NodeLimits::default().requests_per_second)]
    requests_per_second: u32,
    /// Most writes one transaction takes.
    #[arg(long, default_value_t = NodeLimits::default().max_txn_writes)]
    max_txn_writes: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    grove_node::logging::init();
    let store: Arc<dyn ObjectStore> = match (&cli.store_dir, &cli.s3_bucket) {
        (_, Some(bucket)) => Arc::new(S3Store::new(S3StoreConfig::new(
            cli.s3_endpoint.clone(),
            bucket.clone(),
        ))),
        (Some(dir), None) => {
            Arc::new(LocalStore::open(dir).with_context(|| format!("opening the store {}", dir.display()))?)
        }
        (None, None) => anyhow::bail!("name the token store: --store-dir DIR or --s3-bucket NAME"),
    };
    let limits = NodeLimits {
        max_value_bytes: cli.max_value_bytes,
        max_read_entries: cli.max_read_entries,
        max_watchers_per_handle: cli.max_watchers_per_handle,
        requests_per_second: cli.requests_per_second,
        max_txn_writes: cli.max_txn_writes,
    };
    let segments = SegmentOptions {
        seal_interval: std::time::Duration::from_millis(cli.seal_interval_ms),
        ..SegmentOptions::named(cli.name.clone())
    };
    let settings = NodeSettings {
        data_dir: cli.data_dir.clone(),
        segments,
        limits,
        open_timeout: std::time::Duration::from_secs(30),
    };
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    let address = listener.local_addr()?;
    let node = RunningNode::start(settings, store, listener)
        .await
        .with_context(|| format!("starting storage node {:?} in {}", cli.name, cli.data_dir.display()))?;
    eprintln!("grove-storage listening on http://{address}");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    node.stop().await;
    Ok(())
}
