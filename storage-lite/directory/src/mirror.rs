//! A live copy of the directory: every site record and live node, read
//! once and then followed by an etcd watch from the revision read, so no
//! change is missed. Nodes and proxies route by it; decisions that must
//! be current are compare-and-swaps, never this copy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::watch;

use crate::etcd::{DirectoryError, Etcd, placed};
use crate::record::{NodeInfo, Placed};

/// The directory as of one etcd revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sites: HashMap<String, Placed>,
    pub nodes: HashMap<String, NodeInfo>,
    /// Whether it follows etcd right now (false after the watch broke,
    /// until the directory is read again).
    pub following: bool,
}

/// The followed directory; cheap to clone.
#[derive(Clone)]
pub struct Mirror {
    current: watch::Receiver<Arc<Snapshot>>,
    publish: Arc<watch::Sender<Arc<Snapshot>>>,
    /// The follower, stopped with the last clone.
    _follower: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Mirror {
    /// Reads the directory and follows it; fails if etcd cannot be read.
    pub async fn follow(etcd: Etcd) -> Result<Self, DirectoryError> {
        let (snapshot, revision) = read(&etcd).await?;
        let (publish, current) = watch::channel(Arc::new(snapshot));
        let publish = Arc::new(publish);
        let task = tokio::spawn(run(etcd, revision, Arc::clone(&publish)));
        Ok(Self {
            current,
            publish,
            _follower: Arc::new(AbortOnDrop(task)),
        })
    }

    /// The directory now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.borrow())
    }

    /// Wakes at every change.
    pub fn changes(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.current.clone()
    }

    /// Takes in a record this process just wrote or read from etcd, if it
    /// is newer than the copy, so its own change shows before the watch
    /// delivers it.
    pub fn observe(&self, site: &str, placed: Placed) {
        self.publish.send_if_modified(|snapshot| {
            let newer = snapshot.sites.get(site).is_none_or(|known| known.epoch < placed.epoch);
            if newer {
                Arc::make_mut(snapshot).sites.insert(site.to_owned(), placed);
            }
            newer
        });
    }
}

async fn read(etcd: &Etcd) -> Result<(Snapshot, i64), DirectoryError> {
    let prefix = etcd.settings().prefix.clone();
    let reply = etcd
        .client()
        .kv_client()
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = reply.header().map_or(0, |header| header.revision());
    let mut snapshot = Snapshot {
        following: true,
        ..Snapshot::default()
    };
    for kv in reply.kvs() {
        apply(&mut snapshot, &prefix, kv.key(), Some((kv.value(), kv.mod_revision())));
    }
    Ok((snapshot, revision))
}

/// Puts (`Some`) or deletes (`None`) one key into the snapshot; keys that
/// are not grove's, or corrupt, are logged and left out.
fn apply(snapshot: &mut Snapshot, prefix: &str, key: &[u8], value: Option<(&[u8], i64)>) {
    let Some(name) = std::str::from_utf8(key).ok().and_then(|key| key.strip_prefix(prefix)) else {
        return;
    };
    if let Some(site) = name.strip_prefix("sites/") {
        match value {
            Some((value, revision)) => match placed(name, value, revision) {
                Ok(placed) => {
                    snapshot.sites.insert(site.to_owned(), placed);
                }
                Err(error) => tracing::error!(%error, "ignoring a directory entry"),
            },
            None => {
                snapshot.sites.remove(site);
            }
        }
    } else if let Some(node) = name.strip_prefix("nodes/") {
        match value.map(|(value, _)| serde_json::from_slice::<NodeInfo>(value)) {
            Some(Ok(info)) => {
                snapshot.nodes.insert(node.to_owned(), info);
            }
            Some(Err(error)) => tracing::error!(node, %error, "ignoring a corrupt node entry"),
            None => {
                snapshot.nodes.remove(node);
            }
        }
    }
}

async fn run(etcd: Etcd, mut revision: i64, publish: Arc<watch::Sender<Arc<Snapshot>>>) {
    let prefix = etcd.settings().prefix.clone();
    loop {
        if let Err(error) = watch_from(&etcd, &prefix, revision, &publish).await {
            tracing::warn!(%error, "following the directory failed; reading it again");
        }
        publish.send_modify(|snapshot| Arc::make_mut(snapshot).following = false);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match read(&etcd).await {
                Ok((mut snapshot, read_at)) => {
                    // Records this process observed newer than the read stay.
                    let current = publish.borrow().clone();
                    for (site, known) in &current.sites {
                        if snapshot.sites.get(site).is_none_or(|read| read.epoch < known.epoch) {
                            snapshot.sites.insert(site.clone(), known.clone());
                        }
                    }
                    revision = read_at;
                    publish.send_replace(Arc::new(snapshot));
                    break;
                }
                Err(error) => tracing::warn!(%error, "reading the directory failed"),
            }
        }
    }
}

async fn watch_from(
    etcd: &Etcd,
    prefix: &str,
    revision: i64,
    publish: &watch::Sender<Arc<Snapshot>>,
) -> Result<(), DirectoryError> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1)
        .with_progress_notify();
    let mut stream = etcd.client().watch_client().watch(prefix, Some(options)).await?;
    while let Some(reply) = stream.message().await? {
        if reply.canceled() {
            return Err(DirectoryError::Corrupt {
                key: prefix.to_owned(),
                reason: format!("etcd cancelled the watch: {}", reply.cancel_reason()),
            });
        }
        if reply.events().is_empty() {
            continue;
        }
        publish.send_modify(|snapshot| {
            let snapshot = Arc::make_mut(snapshot);
            for event in reply.events() {
                let Some(kv) = event.kv() else { continue };
                let value = match event.event_type() {
                    EventType::Put => Some((kv.value(), kv.mod_revision())),
                    EventType::Delete => None,
                };
                // A record this process observed newer stays.
                if value.is_some()
                    && let Some(site) = std::str::from_utf8(kv.key())
                        .ok()
                        .and_then(|key| key.strip_prefix(prefix))
                        .and_then(|name| name.strip_prefix("sites/"))
                    && snapshot
                        .sites
                        .get(site)
                        .is_some_and(|known| known.epoch.0 > kv.mod_revision())
                {
                    continue;
                }
                apply(snapshot, prefix, kv.key(), value);
            }
        });
    }
    Err(DirectoryError::Corrupt {
        key: prefix.to_owned(),
        reason: "the watch stream ended".to_owned(),
    })
}
