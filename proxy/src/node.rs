//! Dynamic calls. `/_grove/api/v1/<call>` on a site's host goes to the
//! site's storage node as `/v1/sites/<site>/<call>`, proxied by Pingora
//! (streamed both ways, so watches arrive as they happen): to the node this
//! process embeds, unless `[node.directory]` names one elsewhere.
//!
//! With `[node.directory] etcd`, sites live on `grove-storage --etcd`
//! nodes, and each call goes to the site's primary as the directory in
//! etcd names it (followed by a watch); writes are retried there after a
//! failover (see `node_client.rs`).
//!
//! The embedded node listens on a loopback port bound before the server
//! starts, so its address is fixed for the process's life. During a graceful
//! upgrade the new process binds its own port, and its node waits for the
//! old process to close the log (which it does when told to shut down);
//! calls that arrive meanwhile wait in the listener's backlog, not fail.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use grove_core::SiteName;
use grove_directory::{Etcd, EtcdSettings, Mirror, Snapshot, rules};
use grove_node::{NodeLimits, NodeSettings, RunningNode, SegmentOptions};
use http::StatusCode;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;

use crate::config::Config;
use crate::route::API_PREFIX;
use grove_core::api_error::ApiFailure;

/// A call on its way to a node.
pub struct NodeCall {
    address: String,
    /// The node's own path: `/v1/sites/<site>/<call>` and the query.
    pub path_and_query: String,
    /// The largest request body the call takes.
    pub body_limit: usize,
}

impl NodeCall {
    /// The node's `host:port`, which is also the `Host` it is sent.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// Which node serves each site.
#[derive(Clone)]
pub struct NodeDirectory {
    embedded: Option<SocketAddr>,
    remote: HashMap<SiteName, String>,
    /// The directory of `grove-storage --etcd` nodes, as last read.
    followed: Option<Arc<Followed>>,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// Why the embedded node is not serving, once it failed to start.
    embedded_failure: Arc<OnceLock<String>>,
    /// The nodes' limits, which the proxy enforces on bodies before they travel.
    limits: NodeLimits,
}

impl NodeDirectory {
    /// The node call for `rest` (what follows [`API_PREFIX`]) on `site`.
    pub fn route(&self, site: &SiteName, rest: &str, query: Option<&str>) -> Result<NodeCall, ApiFailure> {
        let Some(call) = rest
            .strip_prefix("v1/")
            .filter(|call| !call.is_empty() && !call.contains('/'))
        else {
            return Err(ApiFailure::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("no API route {API_PREFIX}{rest}; calls are {API_PREFIX}v1/<call>"),
            ));
        };
        let address = self.address_of(site)?;
        let path_and_query = match query {
            Some(query) => format!("/v1/sites/{site}/{call}?{query}"),
            None => format!("/v1/sites/{site}/{call}"),
        };
        Ok(NodeCall {
            address,
            path_and_query,
            body_limit: self.limits.body_limit(call),
        })
    }

    /// The `host:port` of site `site`'s node.
    pub fn address_of(&self, site: &SiteName) -> Result<String, ApiFailure> {
        if let (None, Some(followed)) = (self.remote.get(site), &self.followed) {
            return followed.address_of(site);
        }
        match (self.remote.get(site), self.embedded) {
            (Some(remote), _) => Ok(remote.clone()),
            (None, Some(embedded)) => match self.embedded_failure.get() {
                Some(why) => Err(unavailable(format!("the storage node is not running: {why}"))),
                None => Ok(embedded.to_string()),
            },
            (None, None) => Err(unavailable(format!(
                "site {site} has no storage node: this proxy embeds none and [node.directory] names none for it"
            ))),
        }
    }

    /// Whether sites move between nodes (a followed directory): calls that
    /// find no primary are retried while the directory catches up.
    pub fn follows_etcd(&self) -> bool {
        self.followed.is_some()
    }

    /// Bound on connecting to a node.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Bound on a node's silence mid-reply.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// The upstream for a call, with every timeout set (Pingora's defaults
    /// are none).
    pub fn peer(&self, call: &NodeCall) -> Box<HttpPeer> {
        let mut peer = HttpPeer::new(call.address.as_str(), false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Box::new(peer)
    }
}

fn unavailable(message: String) -> ApiFailure {
    ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "node_unavailable", message)
}

/// The embedded node, run as a Pingora background service: started with
/// the server, stopped (its log shipped and closed) at shutdown.
pub struct EmbeddedNode {
    listener: Mutex<Option<std::net::TcpListener>>,
    settings: NodeSettings,
    config: Config,
    failure: Arc<OnceLock<String>>,
}

/// The directory of `grove-storage --etcd` nodes, kept current by
/// [`DirectoryFollower`].
pub struct Followed {
    snapshot: RwLock<Option<Arc<Snapshot>>>,
}

impl Followed {
    /// The site's primary, or for a site without a record the live node
    /// the site's name ranks first (which then places it there).
    fn address_of(&self, site: &SiteName) -> Result<String, ApiFailure> {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .ok_or_else(|| unavailable("the storage nodes' directory (etcd) has not been read yet".to_owned()))?;
        let node = match snapshot.sites.get(site.as_str()) {
            Some(placed) => placed.record.primary.clone(),
            None => snapshot
                .nodes
                .keys()
                .min_by_key(|node| rules::rendezvous(site.as_str(), node))
                .cloned()
                .ok_or_else(|| unavailable("no storage node is registered in the directory".to_owned()))?,
        };
        match snapshot.nodes.get(&node) {
            Some(info) => Ok(info.address.clone()),
            None => Err(unavailable(format!(
                "site {site}'s primary {node} is not reachable now; retry shortly"
            ))),
        }
    }
}

/// Follows the directory in etcd for the proxy's lifetime, as a Pingora
/// background service (its runtime is the one the etcd client lives in).
pub struct DirectoryFollower {
    settings: EtcdSettings,
    followed: Arc<Followed>,
}

#[async_trait]
impl BackgroundService for DirectoryFollower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let follow = async {
            loop {
                let mirror = match Etcd::connect(self.settings.clone()).await {
                    Ok(etcd) => Mirror::follow(etcd).await,
                    Err(error) => Err(error),
                };
                let mirror = match mirror {
                    Ok(mirror) => mirror,
                    Err(error) => {
                        tracing::warn!(%error, "reading the storage nodes' directory failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let mut changes = mirror.changes();
                loop {
                    let snapshot = Arc::clone(&changes.borrow_and_update());
                    *self
                        .followed
                        .snapshot
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(snapshot);
                    if changes.changed().await.is_err() {
                        break;
                    }
                }
            }
        };
        tokio::select! {
            () = follow => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The directory of nodes, the embedded node to run if the config wants
/// one (its loopback port is bound here, before the server starts), and
/// the follower of the etcd directory if the config names one.
pub fn setup(config: &Config) -> anyhow::Result<(NodeDirectory, Option<EmbeddedNode>, Option<DirectoryFollower>)> {
    let node = &config.node;
    let mut remote = HashMap::new();
    for (site, address) in &node.directory.sites {
        remote.insert(SiteName::parse(site)?, address.clone());
    }
    let follower = (!node.directory.etcd.is_empty()).then(|| DirectoryFollower {
        settings: EtcdSettings {
            prefix: node.directory.etcd_prefix.clone(),
            ..EtcdSettings::new(node.directory.etcd.clone())
        },
        followed: Arc::new(Followed {
            snapshot: RwLock::new(None),
        }),
    });
    let failure = Arc::new(OnceLock::new());
    let (embedded, service) = if node.embedded {
        let listener = std::net::TcpListener::bind(&node.listen)
            .with_context(|| format!("binding the storage node's address {} ([node] listen)", node.listen))?;
        let address = listener.local_addr()?;
        let settings = NodeSettings {
            data_dir: config.node_data_dir.clone(),
            segments: SegmentOptions {
                seal_interval: Duration::from_millis(node.seal_interval_ms),
                ..SegmentOptions::named(node.name.clone())
            },
            limits: node.limits.clone(),
            open_timeout: Duration::from_secs(node.handover_timeout_secs),
            replica: None,
        };
        let service = EmbeddedNode {
            listener: Mutex::new(Some(listener)),
            settings,
            config: config.clone(),
            failure: Arc::clone(&failure),
        };
        (Some(address), Some(service))
    } else {
        (None, None)
    };
    let directory = NodeDirectory {
        embedded,
        remote,
        followed: follower.as_ref().map(|follower| Arc::clone(&follower.followed)),
        connect_timeout: Duration::from_secs(node.connect_timeout_secs),
        read_timeout: Duration::from_secs(node.read_timeout_secs),
        embedded_failure: failure,
        limits: node.limits.clone(),
    };
    Ok((directory, service, follower))
}

#[async_trait]
impl BackgroundService for EmbeddedNode {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            return;
        };
        let node = async {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            // This runtime's own store: an S3 client belongs to its runtime.
            let store = self.config.open_store()?;
            let node = RunningNode::start(self.settings.clone(), store, listener)
                .await
                .with_context(|| {
                    format!(
                        "storage node {:?} in {}",
                        self.settings.segments.name,
                        self.settings.data_dir.display()
                    )
                })?;
            anyhow::Ok(node)
        };
        match node.await {
            Ok(node) => {
                tracing::info!(node = %self.settings.segments.name, "storage node serving");
                let _ = shutdown.changed().await;
                node.stop().await;
                tracing::info!(node = %self.settings.segments.name, "storage node stopped; its log is closed");
            }
            Err(error) => {
                // The listener is gone with the error, so calls are refused
                // at once, and answered with this reason.
                tracing::error!("the embedded storage node did not start: {error:#}");
                let _ = self.failure.set(format!("{error:#}"));
            }
        }
    }
}
