//! `/_grove/live`: a signed-in session's event stream (Server-Sent Events).
//! It sends `version` when the site publishes, `entry` for each write to
//! the node paths the page subscribed to (`?path=...`, each checked against
//! the session's read rights), and `revoked` followed by the end of the
//! stream when the session ends.
//!
//! Streams share their sources: one version poll per site and one node
//! watch per subscribed path serve every stream on this proxy, so ten
//! thousand idle sessions cost ten thousand small tasks, not ten thousand
//! node connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use grove_core::timestamp::Timestamp;
use grove_core::{ContentHash, SiteName};
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::auth::revocations::EndedSession;
use crate::auth::sessions::Session;
use crate::metrics;
use crate::node_client::{NodeClient, backoff};
use crate::roots::Roots;

/// A comment on an idle stream, so intermediaries and clients keep it open
/// and a client that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Entries a slow stream may fall behind on one path before it is ended
/// (the client reconnects and re-reads).
const PATH_BACKLOG: usize = 256;
/// Paths one stream may subscribe to.
pub const MAX_PATHS: usize = 16;
/// Streams one session may hold open at once (tabs, reconnects overlapping).
pub const MAX_STREAMS_PER_SESSION: usize = 32;

/// A session that already holds [`MAX_STREAMS_PER_SESSION`] streams.
#[derive(Debug, thiserror::Error)]
#[error("this session already holds {MAX_STREAMS_PER_SESSION} live streams")]
pub struct TooManyStreams;

/// One open stream: counted per session and in `grove_live_streams` until
/// the stream is dropped.
struct StreamSlot {
    open: Arc<Mutex<HashMap<ContentHash, usize>>>,
    session: ContentHash,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        metrics::LIVE_STREAMS.dec();
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.session) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.session);
            }
        }
    }
}

/// A shared source: dropped (and its task stopped) with its last stream.
struct Feed<T> {
    sender: T,
    task: tokio::task::AbortHandle,
}

impl<T> Drop for Feed<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type VersionFeed = Feed<watch::Sender<Option<u64>>>;
type PathFeed = Feed<broadcast::Sender<Bytes>>;

pub struct LiveHub {
    node: Arc<NodeClient>,
    roots: Arc<Roots>,
    poll: Duration,
    versions: Mutex<HashMap<SiteName, Weak<VersionFeed>>>,
    paths: Mutex<HashMap<(SiteName, String), Weak<PathFeed>>>,
    /// Open streams per session.
    open: Arc<Mutex<HashMap<ContentHash, usize>>>,
}

impl LiveHub {
    pub fn new(node: Arc<NodeClient>, roots: Arc<Roots>, poll: Duration) -> Self {
        Self {
            node,
            roots,
            poll,
            versions: Mutex::new(HashMap::new()),
            paths: Mutex::new(HashMap::new()),
            open: Arc::default(),
        }
    }

    fn version_feed(&self, site: &SiteName) -> Arc<VersionFeed> {
        let mut versions = self.versions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        versions.retain(|_, feed| feed.strong_count() > 0);
        if let Some(feed) = versions.get(site).and_then(Weak::upgrade) {
            return feed;
        }
        let (sender, _) = watch::channel(None);
        let roots = Arc::clone(&self.roots);
        let (site_name, poll, tx) = (site.clone(), self.poll, sender.clone());
        let task = tokio::spawn(async move {
            loop {
                if let Ok(Some(served)) = roots.current(&site_name).await {
                    tx.send_if_modified(|known| {
                        let changed = *known != Some(served.version);
                        *known = Some(served.version);
                        changed
                    });
                }
                tokio::time::sleep(poll).await;
            }
        })
        .abort_handle();
        let feed = Arc::new(Feed { sender, task });
        versions.insert(site.clone(), Arc::downgrade(&feed));
        feed
    }

    fn path_feed(&self, site: &SiteName, path: &str) -> Arc<PathFeed> {
        let mut paths = self.paths.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        paths.retain(|_, feed| feed.strong_count() > 0);
        let key = (site.clone(), path.to_owned());
        if let Some(feed) = paths.get(&key).and_then(Weak::upgrade) {
            return feed;
        }
        let (sender, _) = broadcast::channel(PATH_BACKLOG);
        let node = Arc::clone(&self.node);
        let (site_name, data_path, tx) = (site.clone(), path.to_owned(), sender.clone());
        let task = tokio::spawn(async move {
            // Entries from now on; a page reads what came before itself.
            let mut after = Timestamp::at_ms(crate::auth::now_ms());
            let mut failures = 0;
            loop {
                if let Ok(stream) = node.watch(&site_name, &data_path, after).await {
                    failures = 0;
                    let mut stream = std::pin::pin!(stream);
                    while let Some(Ok(entry)) = stream.next().await {
                        after = entry.ts;
                        let event = json!({ "path": data_path, "ts": entry.ts, "data": entry.data });
                        let _ = tx.send(sse("entry", Some(&entry.ts.to_string()), &event.to_string()));
                    }
                }
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
            }
        })
        .abort_handle();
        let feed = Arc::new(Feed { sender, task });
        paths.insert(key, Arc::downgrade(&feed));
        feed
    }

    /// The events of one stream, already framed as Server-Sent Events. The
    /// caller has checked that `session` may read every path of `paths`.
    pub fn stream(
        &self,
        site: &SiteName,
        session: Session,
        paths: &[String],
        ended: broadcast::Receiver<EndedSession>,
    ) -> Result<impl Stream<Item = Bytes> + Send + 'static, TooManyStreams> {
        let slot = {
            let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = open.entry(session.id).or_insert(0);
            if *count >= MAX_STREAMS_PER_SESSION {
                return Err(TooManyStreams);
            }
            *count += 1;
            metrics::LIVE_STREAMS.inc();
            StreamSlot {
                open: Arc::clone(&self.open),
                session: session.id,
            }
        };
        let version_feed = self.version_feed(site);
        let path_feeds: Vec<Arc<PathFeed>> = paths.iter().map(|path| self.path_feed(site, path)).collect();
        let entries = futures::stream::select_all(
            path_feeds
                .iter()
                .map(|feed| Box::pin(broadcast_stream(feed.sender.subscribe()))),
        );
        // A stream with no paths still lives (for `version` and `revoked`).
        let entries = futures::stream::select(entries, futures::stream::pending());
        let versions = version_feed.sender.subscribe();
        let state = StreamState {
            site: site.clone(),
            session,
            versions,
            entries: Box::pin(entries),
            ended,
            _feeds: (version_feed, path_feeds),
            _slot: slot,
            greeted: false,
            over: false,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            if state.over {
                return None;
            }
            if !state.greeted {
                state.greeted = true;
                // A new feed has not read the root yet: wait for its first
                // read, but no longer than a keep-alive (a site that never
                // published, or a store that is down, greets with null).
                if state.versions.borrow().is_none()
                    && let Ok(Err(_)) = tokio::time::timeout(KEEP_ALIVE, state.versions.changed()).await
                {
                    return None;
                }
                let version = *state.versions.borrow_and_update();
                return Some((sse("version", None, &json!({ "version": version }).to_string()), state));
            }
            let event = tokio::select! {
                changed = state.versions.changed() => match changed {
                    Ok(()) => {
                        let version = *state.versions.borrow_and_update();
                        sse("version", None, &json!({ "version": version }).to_string())
                    }
                    Err(_) => return None,
                },
                entry = state.entries.next() => match entry {
                    Some(Some(event)) => event,
                    // Fell too far behind: end, and let the client resume.
                    Some(None) | None => return None,
                },
                ended = state.ended.recv() => match ended {
                    Ok(ended) if ended.site == state.site && ended.id == state.session.id => state.revoke(),
                    Ok(_) => return Some((Bytes::new(), state)),
                    // Missed some ends, perhaps this one: end the stream (not
                    // `revoked`, which may be untrue); the client reconnects,
                    // and its session is checked again.
                    Err(broadcast::error::RecvError::Lagged(_)) => return None,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    // The absolute end only: the idle expiry moves with the
                    // user's other requests, which this copy does not see.
                    if crate::auth::now_ms() >= state.session.record.absolute_expires_ms {
                        state.revoke()
                    } else {
                        Bytes::from_static(b": keep-alive\n\n")
                    }
                }
            };
            Some((event, state))
        })
        .filter(|event| std::future::ready(!event.is_empty())))
    }
}

struct StreamState {
    site: SiteName,
    session: Session,
    versions: watch::Receiver<Option<u64>>,
    entries: std::pin::Pin<Box<dyn Stream<Item = Option<Bytes>> + Send>>,
    ended: broadcast::Receiver<EndedSession>,
    /// Held so the shared sources live as long as the stream.
    _feeds: (Arc<VersionFeed>, Vec<Arc<PathFeed>>),
    _slot: StreamSlot,
    greeted: bool,
    over: bool,
}

impl StreamState {
    fn revoke(&mut self) -> Bytes {
        self.over = true;
        sse("revoked", None, "{}")
    }
}

/// A broadcast receiver as a stream; `None` items mark a receiver that fell
/// behind.
fn broadcast_stream(receiver: broadcast::Receiver<Bytes>) -> impl Stream<Item = Option<Bytes>> + Send {
    futures::stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        match receiver.recv().await {
            Ok(event) => Some((Some(event), Some(receiver))),
            Err(broadcast::error::RecvError::Lagged(_)) => Some((None, None)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}

/// One Server-Sent Event.
pub fn sse(event: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut text = format!("event: {event}\n");
    if let Some(id) = id {
        text.push_str(&format!("id: {id}\n"));
    }
    for line in data.lines() {
        text.push_str(&format!("data: {line}\n"));
    }
    text.push('\n');
    Bytes::from(text)
}
