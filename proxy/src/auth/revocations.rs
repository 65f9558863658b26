//! The revocation feed: when a session ends on one proxy, every proxy
//! serving the site drops it from its cache at once. Ends are written to the
//! site's storage node at [`FEED_PATH`] and every proxy watches that path
//! (proxies serving one site reach the same node for it, as its data
//! requires anyway). While a proxy's watch is down it trusts no cached
//! session of the site and reads the store on every request, and on
//! reconnecting it replays what it missed, so a revocation is never lost,
//! only slower.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use grove_core::timestamp::Timestamp;
use grove_core::{ContentHash, SiteName};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::sessions::Sessions;
use crate::node_client::{NodeClient, backoff};

/// The node path ends are announced on.
pub const FEED_PATH: &str = "_grove/sessions/ended";

/// How far back a new watch starts: covers clock differences between this
/// proxy and the node (replaying an old end is harmless).
const START_BACK_MS: u64 = 60_000;

/// Ends announced at once on this proxy, before the node echoes them.
const LOCAL_CHANNEL: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Ended {
    session: ContentHash,
}

/// One ended session, as live streams hear of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    pub site: SiteName,
    pub id: ContentHash,
}

pub struct Revocations {
    node: Arc<NodeClient>,
    sessions: Arc<Sessions>,
    /// Per site: whether its watch is connected (so cached sessions can be
    /// trusted). A site is added on its first session lookup.
    feeds: Mutex<HashMap<SiteName, Arc<AtomicBool>>>,
    ended: broadcast::Sender<EndedSession>,
}

impl Revocations {
    pub fn new(node: Arc<NodeClient>, sessions: Arc<Sessions>) -> Arc<Self> {
        Arc::new(Self {
            node,
            sessions,
            feeds: Mutex::new(HashMap::new()),
            ended: broadcast::channel(LOCAL_CHANNEL).0,
        })
    }

    /// Whether this proxy would have heard of every end on `site` by now.
    /// The first call for a site starts its watch.
    pub fn trusted(self: &Arc<Self>, site: &SiteName) -> bool {
        let mut feeds = self.feeds.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(connected) = feeds.get(site) {
            return connected.load(Ordering::Acquire);
        }
        let connected = Arc::new(AtomicBool::new(false));
        feeds.insert(site.clone(), Arc::clone(&connected));
        tokio::spawn(Arc::clone(self).follow(site.clone(), connected));
        false
    }

    /// Ended sessions, as this proxy hears of them.
    pub fn subscribe(&self) -> broadcast::Receiver<EndedSession> {
        self.ended.subscribe()
    }

    /// Tells every proxy that sessions `ids` of `site` ended (their records
    /// are already gone from the store).
    pub async fn announce(&self, site: &SiteName, ids: &[ContentHash]) {
        for id in ids {
            let _ = self.ended.send(EndedSession {
                site: site.clone(),
                id: *id,
            });
            let ended = serde_json::to_value(Ended { session: *id }).expect("serializes");
            if let Err(failure) = self.node.write(site, FEED_PATH, &ended).await {
                // The record is gone, so other proxies refuse the session
                // once their cache lets go of it (30 s at most).
                tracing::warn!(%site, error = %failure.body.message, "announcing an ended session failed");
            }
        }
    }

    async fn follow(self: Arc<Self>, site: SiteName, connected: Arc<AtomicBool>) {
        let mut after = Timestamp::at_ms(super::now_ms().saturating_sub(START_BACK_MS));
        let mut failures = 0;
        loop {
            match self.node.watch(&site, FEED_PATH, after).await {
                Ok(stream) => {
                    connected.store(true, Ordering::Release);
                    failures = 0;
                    let mut stream = std::pin::pin!(stream);
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(entry) => {
                                after = entry.ts;
                                if let Ok(ended) = serde_json::from_str::<Ended>(entry.data.get()) {
                                    self.sessions.forget(&site, &ended.session).await;
                                    let _ = self.ended.send(EndedSession {
                                        site: site.clone(),
                                        id: ended.session,
                                    });
                                }
                            }
                            Err(failure) => {
                                tracing::warn!(%site, error = %failure.body.message, "the revocation feed broke");
                                break;
                            }
                        }
                    }
                }
                Err(failure) => {
                    tracing::warn!(%site, error = %failure.body.message, "the revocation feed cannot connect");
                }
            }
            connected.store(false, Ordering::Release);
            failures += 1;
            tokio::time::sleep(backoff(failures)).await;
        }
    }
}
