//! `grove-storage`: a standalone storage node. It serves the node API on
//! its own, with its log in a local redb file and its tokens in the same
//! object store as the publish API (so publish tokens work here too).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use grove_storage::node::{Log, NodeApi, NodeLimits};
use grove_storage::store::{LocalStore, ObjectStore, S3Store, S3StoreConfig};
use grove_storage::token::Tokens;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.data_dir).with_context(|| format!("creating {}", cli.data_dir.display()))?;
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
    let file = cli.data_dir.join("node.redb");
    let log = Log::open(&file).with_context(|| format!("opening the log {}", file.display()))?;
    let limits = NodeLimits {
        max_value_bytes: cli.max_value_bytes,
        max_read_entries: cli.max_read_entries,
        max_watchers_per_handle: cli.max_watchers_per_handle,
        requests_per_second: cli.requests_per_second,
    };
    let api = Arc::new(NodeApi::new(Arc::new(log), Tokens::new(store), limits));
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    eprintln!("grove-storage listening on http://{}", listener.local_addr()?);
    api.serve(listener).await.context("serving")
}
