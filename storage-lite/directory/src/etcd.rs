//! The directory's etcd calls: records read and swapped by revision, and
//! the node's lease, kept alive and taken again if it lapses.

use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;

use crate::record::{NodeInfo, Placed, SiteEpoch, SiteRecord};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("etcd ({endpoints}) did not answer: {source}")]
    Unreachable {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd failed: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the directory entry {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
}

/// Where etcd is and how the node uses it.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// `http://host:port` of each member.
    pub endpoints: Vec<String>,
    /// Key prefix of grove's directory, e.g. `/grove/`.
    pub prefix: String,
    /// The node lease's time to live: how long a stopped node stays
    /// primary before its backup takes over.
    pub lease_ttl: Duration,
    /// Bound on each etcd call.
    pub timeout: Duration,
}

impl EtcdSettings {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: "/grove/".to_owned(),
            lease_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
        }
    }
}

/// A connection to the directory.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    settings: EtcdSettings,
}

impl Etcd {
    /// Connects to the cluster (any member will do; the client fails over
    /// between them).
    pub async fn connect(settings: EtcdSettings) -> Result<Self, DirectoryError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(settings.timeout)
            .with_timeout(settings.timeout)
            // Pings find a dead member; a short timeout would also drop
            // live connections (and their watches) on a loaded machine.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        let client = Client::connect(&settings.endpoints, Some(options))
            .await
            .map_err(|source| DirectoryError::Unreachable {
                endpoints: settings.endpoints.join(", "),
                source,
            })?;
        let etcd = Self { client, settings };
        // A lazy channel connects at the first call: make that now, so a
        // wrong endpoint is an error at start-up.
        etcd.client
            .kv_client()
            .get(etcd.settings.prefix.as_str(), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|source| DirectoryError::Unreachable {
                endpoints: etcd.settings.endpoints.join(", "),
                source,
            })?;
        Ok(etcd)
    }

    pub fn settings(&self) -> &EtcdSettings {
        &self.settings
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) fn site_key(&self, site: &str) -> String {
        format!("{}sites/{site}", self.settings.prefix)
    }

    pub(crate) fn node_key(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.settings.prefix)
    }

    /// The live nodes, read linearizably: where a new site's backup is
    /// chosen from (a mirror may lag behind a node that just started).
    pub async fn nodes(&self) -> Result<Vec<(String, NodeInfo)>, DirectoryError> {
        let prefix = self.node_key("");
        let reply = self
            .client
            .kv_client()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut nodes = Vec::new();
        for kv in reply.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let name = key.strip_prefix(prefix.as_str()).unwrap_or_default().to_owned();
            match serde_json::from_slice(kv.value()) {
                Ok(info) => nodes.push((name, info)),
                Err(error) => tracing::error!(key, %error, "ignoring a corrupt node entry"),
            }
        }
        Ok(nodes)
    }

    /// The site's record, read linearizably.
    pub async fn site(&self, site: &str) -> Result<Option<Placed>, DirectoryError> {
        let key = self.site_key(site);
        let reply = self.client.kv_client().get(key.as_str(), None).await?;
        match reply.kvs().first() {
            Some(kv) => Ok(Some(placed(&key, kv.value(), kv.mod_revision())?)),
            None => Ok(None),
        }
    }

    /// Creates the site's record if it has none: `Ok` with the new epoch,
    /// or `Err` with the record another node created first.
    pub async fn create_site(&self, site: &str, record: &SiteRecord) -> Result<Result<Placed, Placed>, DirectoryError> {
        let key = self.site_key(site);
        let when = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
        self.swap(&key, when, record).await
    }

    /// Replaces the site's record if its epoch is still `epoch`: `Ok` with
    /// the new epoch, or `Err` with what the record is now.
    pub async fn swap_site(
        &self,
        site: &str,
        epoch: SiteEpoch,
        record: &SiteRecord,
    ) -> Result<Result<Placed, Placed>, DirectoryError> {
        let key = self.site_key(site);
        let when = Compare::mod_revision(key.as_str(), CompareOp::Equal, epoch.0);
        self.swap(&key, when, record).await
    }

    async fn swap(
        &self,
        key: &str,
        when: Compare,
        record: &SiteRecord,
    ) -> Result<Result<Placed, Placed>, DirectoryError> {
        let value = serde_json::to_vec(record).expect("records serialize");
        let txn = Txn::new()
            .when([when])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let reply = self.client.kv_client().txn(txn).await?;
        let revision = reply.header().map_or(0, |header| header.revision());
        if reply.succeeded() {
            return Ok(Ok(Placed {
                record: record.clone(),
                epoch: SiteEpoch(revision),
            }));
        }
        for response in reply.op_responses() {
            if let TxnOpResponse::Get(get) = response
                && let Some(kv) = get.kvs().first()
            {
                return Ok(Err(placed(key, kv.value(), kv.mod_revision())?));
            }
        }
        Err(DirectoryError::Corrupt {
            key: key.to_owned(),
            reason: "the record vanished during a compare-and-swap".to_owned(),
        })
    }
}

pub(crate) fn placed(key: &str, value: &[u8], revision: i64) -> Result<Placed, DirectoryError> {
    let record = serde_json::from_slice(value).map_err(|error| DirectoryError::Corrupt {
        key: key.to_owned(),
        reason: error.to_string(),
    })?;
    Ok(Placed {
        record,
        epoch: SiteEpoch(revision),
    })
}

/// The node's registration: its entry under `nodes/`, on a lease kept
/// alive in the background and taken again if it lapsed (after a pause,
/// say). Dropping it revokes nothing: a stopped node's entry expires.
pub struct Lease {
    state: watch::Receiver<LeaseState>,
    task: tokio::task::JoinHandle<()>,
}

/// What the node knows of its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// Until when etcd holds the lease for sure: the send time of the
    /// last renewal etcd confirmed, plus the time to live. Measured on
    /// this machine's monotonic clock; no clocks are compared.
    pub held_until: Option<Instant>,
    /// Counts the leases granted so far (a new one after each lapse).
    pub generation: u64,
}

impl Lease {
    /// Registers `node` with `info` and keeps it registered.
    pub async fn register(etcd: Etcd, node: String, info: NodeInfo) -> Result<Self, DirectoryError> {
        let ttl = etcd.settings.lease_ttl;
        let first = grant(&etcd, &node, &info).await?;
        let (publish, state) = watch::channel(LeaseState {
            held_until: Some(first.1 + ttl),
            generation: 1,
        });
        let task = tokio::spawn(keep(etcd, node, info, first, publish));
        Ok(Self { state, task })
    }

    /// Whether this node's lease is certainly held now.
    pub fn held(&self) -> bool {
        self.state
            .borrow()
            .held_until
            .is_some_and(|until| Instant::now() < until)
    }

    pub fn state(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Grants a lease and puts the node's entry on it; the lease id and when
/// the grant was asked for.
async fn grant(etcd: &Etcd, node: &str, info: &NodeInfo) -> Result<(i64, Instant), DirectoryError> {
    let asked = Instant::now();
    let ttl = i64::try_from(etcd.settings.lease_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let lease = etcd.client.lease_client().grant(ttl, None).await?.id();
    let value = serde_json::to_vec(info).expect("node entries serialize");
    etcd.client
        .kv_client()
        .put(etcd.node_key(node), value, Some(PutOptions::new().with_lease(lease)))
        .await?;
    Ok((lease, asked))
}

async fn keep(etcd: Etcd, node: String, info: NodeInfo, first: (i64, Instant), publish: watch::Sender<LeaseState>) {
    let ttl = etcd.settings.lease_ttl;
    let every = ttl / 4;
    let mut lease = first.0;
    loop {
        match renew_until_lost(&etcd, lease, every, &publish).await {
            Ok(()) => tracing::warn!(node, "the node's lease lapsed; taking a new one"),
            Err(error) => tracing::warn!(node, %error, "renewing the node's lease failed"),
        }
        loop {
            match grant(&etcd, &node, &info).await {
                Ok((granted, asked)) => {
                    lease = granted;
                    publish.send_modify(|state| {
                        state.held_until = Some(asked + ttl);
                        state.generation += 1;
                    });
                    break;
                }
                Err(error) => {
                    tracing::warn!(node, %error, "taking a new lease failed");
                    tokio::time::sleep(every).await;
                }
            }
        }
    }
}

/// Renews `lease` every `every` until etcd says it is gone (`Ok`) or a
/// call fails (`Err`).
async fn renew_until_lost(
    etcd: &Etcd,
    lease: i64,
    every: Duration,
    publish: &watch::Sender<LeaseState>,
) -> Result<(), DirectoryError> {
    let ttl = etcd.settings.lease_ttl;
    let (mut keeper, mut replies) = etcd.client.lease_client().keep_alive(lease).await?;
    loop {
        let sent = Instant::now();
        keeper.keep_alive().await?;
        let reply = tokio::time::timeout(etcd.settings.timeout, replies.message())
            .await
            .map_err(|_| {
                DirectoryError::Etcd(etcd_client::Error::InvalidArgs(
                    "no answer to a lease renewal".to_owned(),
                ))
            })??;
        match reply {
            Some(reply) if reply.ttl() > 0 => {
                publish.send_modify(|state| state.held_until = Some(sent + ttl));
            }
            _ => {
                publish.send_modify(|state| state.held_until = None);
                return Ok(());
            }
        }
        tokio::time::sleep(every).await;
    }
}
