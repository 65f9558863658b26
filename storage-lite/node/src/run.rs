//! A running node: its log (rebuilt from the store on an empty disk), the
//! shipper that copies the log to the store, and the HTTP API, started and
//! stopped as one. The standalone `grove-storage` and the node the proxy
//! embeds both run through here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{NodeApi, NodeLimits};
use crate::log::Log;
use crate::replica::{Replica, ReplicaSettings};
use crate::segments::{self, SegmentError, SegmentOptions};
use crate::types::{LogError, system_ms};
use grove_objects::store::ObjectStore;
use grove_objects::token::Tokens;

/// Everything a node needs besides its store and listener.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Holds `node.redb`.
    pub data_dir: PathBuf,
    pub segments: SegmentOptions,
    pub limits: NodeLimits,
    /// How long to wait for another process to release the log (the old
    /// proxy during a graceful upgrade) before giving up.
    pub open_timeout: Duration,
    /// With a directory: this node's part in failover (named as its
    /// segments are).
    pub replica: Option<ReplicaSettings>,
}

/// A node serving on its listener until [`RunningNode::stop`].
pub struct RunningNode {
    log: Arc<Log>,
    api: Arc<NodeApi>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    shipper: JoinHandle<()>,
}

impl RunningNode {
    /// Opens the node's log (waiting while another process holds it),
    /// rebuilding it from `store` if the disk has none, and serves the API on
    /// `listener`. Tokens are checked against `store` too.
    pub async fn start(
        settings: NodeSettings,
        store: Arc<dyn ObjectStore>,
        listener: tokio::net::TcpListener,
    ) -> Result<Self, SegmentError> {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|error| LogError::Database(format!("creating {}: {error}", settings.data_dir.display())))?;
        let file = settings.data_dir.join("node.redb");
        let deadline = Instant::now() + settings.open_timeout;
        let mut waiting_logged = false;
        let (log, shipper) = loop {
            match segments::open(
                &file,
                Arc::clone(&store),
                settings.segments.clone(),
                Arc::new(system_ms),
            )
            .await
            {
                Err(SegmentError::Log(LogError::InUse(_))) if Instant::now() < deadline => {
                    if !waiting_logged {
                        tracing::info!(file = %file.display(), "waiting for the previous process to release the storage node's log");
                        waiting_logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other?,
            }
        };
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let shipper = tokio::spawn(shipper.run(until_stopped(stopped.clone())));
        let replica = match settings.replica {
            Some(replica) => Some(
                Replica::start(settings.segments.name.clone(), replica, Arc::clone(&log))
                    .await
                    .map_err(|error| {
                        SegmentError::Log(LogError::Database(format!("joining the directory: {error}")))
                    })?,
            ),
            None => None,
        };
        let api = Arc::new(NodeApi::new(
            Arc::clone(&log),
            Tokens::new(store),
            settings.limits,
            replica,
        ));
        let server = tokio::spawn(Arc::clone(&api).serve(listener, until_stopped(stopped)));
        Ok(Self {
            log,
            api,
            stop,
            server,
            shipper,
        })
    }

    /// The API this node serves.
    pub fn api(&self) -> &Arc<NodeApi> {
        &self.api
    }

    /// Stops serving, ships what the journal still holds, and closes the
    /// log: when this returns, another process can open it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.shipper.await;
        drop(self.api);
        match Arc::try_unwrap(self.log) {
            Ok(log) => drop(log),
            Err(_) => tracing::warn!("the storage node's log is still in use after stopping"),
        }
    }
}
