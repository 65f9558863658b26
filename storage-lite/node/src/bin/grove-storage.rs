//! `grove-storage`: a standalone storage node. It serves the node API on
//! its own, with its log in a local redb file shipped as segments to the
//! same object store that holds its tokens (the publish API's, so publish
//! tokens work here too). On an empty data directory it rebuilds its log
//! from the segments its name owns in the store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use std::time::Duration;

use grove_directory::EtcdSettings;
use grove_node::{NodeLimits, NodeSettings, ReplicaSettings, RunningNode, SegmentOptions};
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
    /// etcd members (`http://host:port`, comma-separated) holding the
    /// directory: with them, this node is primary of some sites and backup
    /// of others, and takes a site over when its primary's lease lapses.
    #[arg(long, env = "GROVE_NODE_ETCD", value_delimiter = ',')]
    etcd: Vec<String>,
    /// Key prefix of the directory in etcd.
    #[arg(long, default_value = "/grove/")]
    etcd_prefix: String,
    /// This node's region: a site's backup is placed in another one.
    #[arg(long, env = "GROVE_NODE_REGION", default_value = "default")]
    region: String,
    /// `host:port` where other nodes and proxies reach this node (default:
    /// the listening address).
    #[arg(long, env = "GROVE_NODE_ADVERTISE")]
    advertise: Option<String>,
    /// A file holding the secret the nodes share for replication.
    #[arg(long, env = "GROVE_NODE_PEER_SECRET_FILE")]
    peer_secret_file: Option<PathBuf>,
    /// Seconds a node's lease lives without renewal: how long a stopped
    /// primary keeps its sites before its backups take them over.
    #[arg(long, default_value_t = 10)]
    lease_ttl_secs: u64,
    /// Milliseconds a write waits for the backup before the primary drops
    /// it from the in-sync set and acknowledges alone.
    #[arg(long, default_value_t = 1000)]
    ack_timeout_ms: u64,
    /// Milliseconds since a backup last heard from the primary within
    /// which it still answers reads (bounded staleness).
    #[arg(long, default_value_t = 2000)]
    freshness_ms: u64,
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
        seal_interval: Duration::from_millis(cli.seal_interval_ms),
        ..SegmentOptions::named(cli.name.clone())
    };
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    let address = listener.local_addr()?;
    let replica = if cli.etcd.is_empty() {
        None
    } else {
        let secret_file = cli
            .peer_secret_file
            .as_ref()
            .context("--etcd needs --peer-secret-file: the secret the nodes share for replication")?;
        let peer_secret = std::fs::read_to_string(secret_file)
            .with_context(|| format!("reading the peer secret {}", secret_file.display()))?
            .trim()
            .to_owned();
        anyhow::ensure!(
            peer_secret.len() >= 16,
            "the peer secret in {} must be at least 16 characters",
            secret_file.display()
        );
        let etcd = EtcdSettings {
            prefix: cli.etcd_prefix.clone(),
            lease_ttl: Duration::from_secs(cli.lease_ttl_secs.max(1)),
            ..EtcdSettings::new(cli.etcd.clone())
        };
        let advertise = cli.advertise.clone().unwrap_or_else(|| address.to_string());
        Some(ReplicaSettings {
            ack_timeout: Duration::from_millis(cli.ack_timeout_ms),
            freshness: Duration::from_millis(cli.freshness_ms),
            ..ReplicaSettings::new(etcd, advertise, cli.region.clone(), peer_secret)
        })
    };
    let settings = NodeSettings {
        data_dir: cli.data_dir.clone(),
        segments,
        limits,
        open_timeout: Duration::from_secs(30),
        replica,
    };
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
