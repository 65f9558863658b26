//! Rendering database-backed pages and keeping them fresh.
//!
//! Each page (site, version tree, URL) has a slot holding its last good
//! render: its bytes, the timestamp `as_of` it reflects every write up to,
//! and what it read. One task per site follows the node's change feed; a
//! write that touches a page's reads marks it dirty and queues a
//! background re-render on a small pool. A request that has seen write `t`
//! gets a page only once the page reflects every write up to `t`: it waits
//! for the feed to pass `t` and for a render if the page is dirty, at most
//! [`WAIT`], then gets the last good page marked stale. Renders are
//! single-flight per page (a lock per slot, and a re-check under it), so
//! any number of waiting requests cause one render.
//!
//! A render starts from the feed's cursor: every write up to it is
//! committed, and reads happen after, so the page reflects them all.
//!
//! A re-render that changed a page's bytes queues the purge of its cache
//! tag at the CDN (coalesced per page until sent, see
//! [`crate::purge::Outbox::page_rendered`]). A write that touches more than
//! [`MASS_DIRTY`] pages renders none of them in the background: each
//! renders on its next request, and the site's tag is purged once.
//!
//! Every new render is kept in the store ([`super::kept`]); a page asked
//! for with no render here starts from the kept one, if any.
//!
//! A new version carries its predecessor's pages over ([`PageEngine::moved_on`]):
//! a page whose templates are the same is kept as it is, one whose
//! templates changed is re-rendered in the background.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grove_core::publish_api::RenderFailure;
use grove_core::timestamp::Timestamp;
use grove_core::tree::Trees;
use grove_core::{ContentHash, SiteName};
use grove_objects::content::ContentStore;
use grove_objects::store::ObjectStore;
use grove_pages::data::Read;
use grove_pages::render::{PageRequest, RenderLimits, render};
use grove_pages::site::SitePages;
use tokio::sync::{Semaphore, watch};

use crate::node_client::{NodeClient, backoff};
use crate::purge::Outbox;
use crate::{metrics, semantics};

use super::failures::Failures;
use super::kept::{Kept, KeptPage};
use super::node_data::NodeData;
use super::{LoadError, load};

/// How long a request waits for its page to reflect what it has seen.
pub const WAIT: Duration = Duration::from_secs(2);
/// Renders running at once, in the background and for requests.
const RENDERERS: usize = 2;
/// A dirty page waits this long before it re-renders, so a burst of
/// writes costs one render.
const DEBOUNCE: Duration = Duration::from_millis(25);
/// Bytes of rendered pages kept, over every site (each slot weighs its
/// page and its reads, re-weighed after every render).
const SLOT_BYTES: u64 = 256 << 20;
/// A render that failed is not tried again on the same data for this long.
const RETRY_FAILED: Duration = Duration::from_secs(5);
/// A write touching more pages than this leaves them to render on their
/// next request instead of all at once.
pub const MASS_DIRTY: usize = 256;

/// A page as rendered.
#[derive(Debug)]
pub struct RenderedPage {
    pub body: Bytes,
    pub hash: ContentHash,
    /// Every write up to this timestamp is reflected.
    pub as_of: Timestamp,
    /// Every template the render asked for, by path.
    pub templates: Vec<String>,
    reads: Vec<Read>,
}

/// A page asked for: the version's pages, the URL, and the route's
/// template and parameter.
pub struct Wanted {
    pub site: SiteName,
    pub version: u64,
    pub tree: ContentHash,
    pub pages: Arc<SitePages>,
    pub url: String,
    pub template: String,
    pub param: Option<(String, String)>,
    /// The page's own cache tag, purged when a re-render changes it.
    pub tag: String,
}

/// What a page request gets.
pub enum Served {
    /// The page reflects what the request has seen.
    Fresh(Arc<RenderedPage>),
    /// The wait ran out: the last good page.
    Stale(Arc<RenderedPage>),
    /// No render has succeeded yet; the text says why.
    Failed(String),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SlotKey {
    site: SiteName,
    tree: ContentHash,
    url: String,
}

/// How to render one page.
struct Inputs {
    /// The version the page is of, for its failures' record.
    version: u64,
    pages: Arc<SitePages>,
    template: String,
    param: Option<(String, String)>,
    tag: String,
}

impl Slot {
    /// Roughly the memory the slot holds: its page and what it read.
    fn weight(&self) -> u32 {
        let state = self.state.lock().expect("not poisoned");
        let page = state.page.as_ref().map_or(0, |page| {
            page.body.len() + page.reads.iter().map(|read| 64 + read_path(read).len()).sum::<usize>()
        });
        u32::try_from(page + 1024).unwrap_or(u32::MAX)
    }
}

fn read_path(read: &Read) -> &str {
    match read {
        Read::Path(path) | Read::Children(path) => path,
    }
}

struct Slot {
    inputs: Inputs,
    /// Held while rendering: one render of a page at a time.
    rendering: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    page: Option<Arc<RenderedPage>>,
    /// The first write after the page's `as_of` that touched its reads.
    dirty_at: Option<Timestamp>,
    /// A background render is queued.
    queued: bool,
    /// Dirty, and left to render on the next request (by a write that
    /// touched too many pages to render them all in the background).
    lazy: bool,
    /// The site's tag was purged since the page's render (by a write that
    /// touched too many pages), so its next render needs no purge of its own.
    purged: bool,
    /// The last render failed, so: it is recorded for `grove versions`.
    failed: Option<Failed>,
    /// A render is running: the first write since it began that touched
    /// the page's reads, which the new page may not reflect.
    rendering: Option<Option<Timestamp>>,
}

/// A failed render: why, and the data it was of.
struct Failed {
    message: String,
    cursor: Timestamp,
    at: std::time::Instant,
}

impl SlotState {
    /// The page, if it reflects every write up to `seen` (the feed being at
    /// `cursor`).
    fn fresh_for(&self, seen: Timestamp, cursor: Timestamp) -> Option<Arc<RenderedPage>> {
        let page = self.page.as_ref()?;
        let reflected = seen <= page.as_of || (seen <= cursor && self.dirty_at.is_none_or(|dirty| dirty > seen));
        reflected.then(|| Arc::clone(page))
    }
}

/// Renders and keeps every site's database-backed pages.
pub struct PageEngine {
    node: Arc<NodeClient>,
    /// Where render failures are recorded.
    failures: Arc<Failures>,
    kept: Arc<Kept>,
    trees: Trees,
    blobs: ContentStore,
    site_pages: moka::future::Cache<ContentHash, Option<Arc<SitePages>>>,
    slots: moka::sync::Cache<SlotKey, Arc<Slot>>,
    /// Per site, the newest write its change feed has delivered.
    feeds: Mutex<HashMap<SiteName, watch::Receiver<Timestamp>>>,
    /// Per site, the newest version (and its tree) pages were asked of.
    newest: Mutex<HashMap<SiteName, (u64, ContentHash)>>,
    renderers: Semaphore,
    limits: RenderLimits,
    /// Where re-rendered pages' purges go, with a CDN configured.
    outbox: Option<Outbox>,
}

impl PageEngine {
    pub fn new(
        node: Arc<NodeClient>,
        store: Arc<dyn ObjectStore>,
        trees: Trees,
        blobs: ContentStore,
        outbox: Option<Outbox>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node,
            kept: Kept::new(Arc::clone(&store)),
            failures: Arc::new(Failures::new(store)),
            trees,
            blobs,
            site_pages: moka::future::Cache::new(1_000),
            slots: moka::sync::Cache::builder()
                .max_capacity(SLOT_BYTES)
                .weigher(|_, slot: &Arc<Slot>| slot.weight())
                .build(),
            feeds: Mutex::new(HashMap::new()),
            newest: Mutex::new(HashMap::new()),
            renderers: Semaphore::new(RENDERERS),
            limits: RenderLimits::default(),
            outbox,
        })
    }

    /// The route file and templates of a version, if it has any; `Err` for
    /// a version whose pages cannot be read now.
    pub async fn site_pages(&self, tree: ContentHash) -> Result<Option<Arc<SitePages>>, Arc<LoadError>> {
        self.site_pages
            .try_get_with(tree, async {
                Ok(load(&self.trees, &self.blobs, &tree).await?.map(Arc::new))
            })
            .await
    }

    /// The page `wanted`, reflecting every write up to `seen`.
    pub async fn page(self: &Arc<Self>, wanted: Wanted, seen: Option<Timestamp>) -> Served {
        let Wanted {
            site,
            version,
            tree,
            pages,
            url,
            template,
            param,
            tag,
        } = wanted;
        self.moved_on(&site, version, tree, &pages);
        let key = SlotKey {
            site: site.clone(),
            tree,
            url,
        };
        let slot = self.slots.get_with(key.clone(), || {
            Arc::new(Slot {
                inputs: Inputs {
                    version,
                    pages,
                    template,
                    param,
                    tag,
                },
                rendering: tokio::sync::Mutex::new(()),
                state: Mutex::new(SlotState::default()),
            })
        });
        let mut cursor = self.feed(&site);
        self.seed(&key, &slot).await;
        let (current, lazy) = {
            let state = slot.state.lock().expect("not poisoned");
            (state.page.clone(), state.lazy)
        };
        let seen = match seen {
            Some(seen) => seen,
            // Left to render now: as fresh as the feed.
            None if lazy => *cursor.borrow(),
            // Nothing seen: the latest render at once, like a static file.
            None => {
                if let Some(page) = current {
                    return Served::Fresh(page);
                }
                return match self.render(&key, &slot, Timestamp::ZERO).await {
                    Ok(page) => Served::Fresh(page),
                    Err(message) => Served::Failed(message),
                };
            }
        };
        let fresh = tokio::time::timeout(WAIT, async {
            let _ = cursor.wait_for(|at| *at >= seen).await;
            self.render(&key, &slot, seen).await
        })
        .await;
        match (fresh, current) {
            (Ok(Ok(page)), _) => Served::Fresh(page),
            (_, Some(page)) => Served::Stale(page),
            (Ok(Err(message)), None) => Served::Failed(message),
            (Err(_), None) => Served::Failed("the page was not rendered in time".to_owned()),
        }
    }

    /// The page reflecting `seen`: the one there, or a new render. The
    /// render runs in a task of its own, so a caller that stops waiting
    /// never leaves it half done.
    async fn render(
        self: &Arc<Self>,
        key: &SlotKey,
        slot: &Arc<Slot>,
        seen: Timestamp,
    ) -> Result<Arc<RenderedPage>, String> {
        let (engine, key, slot) = (Arc::clone(self), key.clone(), Arc::clone(slot));
        tokio::spawn(async move { engine.render_now(&key, &slot, seen).await })
            .await
            .map_err(|error| format!("the render stopped: {error}"))?
    }

    /// Under the slot's lock, so concurrent callers share one render.
    async fn render_now(
        self: &Arc<Self>,
        key: &SlotKey,
        slot: &Arc<Slot>,
        seen: Timestamp,
    ) -> Result<Arc<RenderedPage>, String> {
        let _rendering = slot.rendering.lock().await;
        let cursor = *self.feed(&key.site).borrow();
        {
            let state = slot.state.lock().expect("not poisoned");
            if let Some(page) = state.fresh_for(seen, cursor) {
                return Ok(page);
            }
            // Renders are deterministic: the same data fails the same way.
            // (Not for long, in case what failed was reading the node.)
            if let Some(failed) = &state.failed
                && failed.cursor == cursor
                && failed.at.elapsed() < RETRY_FAILED
            {
                return Err(failed.message.clone());
            }
        }
        let _permit = self.renderers.acquire().await.map_err(|_| "shutting down".to_owned())?;
        slot.state.lock().expect("not poisoned").rendering = Some(None);
        let source = Arc::new(NodeData {
            node: Arc::clone(&self.node),
            site: key.site.clone(),
            runtime: tokio::runtime::Handle::current(),
        });
        let as_of = cursor.to_string();
        let templates = slot.inputs.pages.templates.clone();
        let template = slot.inputs.template.clone();
        let param = slot.inputs.param.clone();
        let limits = self.limits;
        let rendered = tokio::task::spawn_blocking(move || {
            let request = PageRequest {
                template: &template,
                param: param.as_ref().map(|(name, value)| (name.as_str(), value.as_str())),
                as_of: &as_of,
            };
            render(&templates, &request, source, limits)
        })
        .await
        .map_err(|error| format!("the render stopped: {error}"))?;
        match rendered {
            Ok(rendered) => {
                metrics::PAGE_RENDERS.with_label_values(&["ok"]).inc();
                let body = Bytes::from(rendered.html);
                let page = Arc::new(RenderedPage {
                    hash: ContentHash::of(&body),
                    body,
                    as_of: cursor,
                    templates: rendered.templates,
                    reads: rendered.reads,
                });
                let mut state = slot.state.lock().expect("not poisoned");
                // Writes up to the cursor are reflected; one touching the
                // page since the render began may not be.
                state.dirty_at = state.rendering.take().flatten();
                state.lazy = false;
                let purged = std::mem::take(&mut state.purged);
                let before = state.page.replace(Arc::clone(&page));
                // A failure recorded by an earlier process, or another
                // proxy, is cleared at a page's first render here too.
                let recovered = state.failed.take().is_some() || before.is_none();
                let still_dirty = state.dirty_at.is_some();
                drop(state);
                if recovered {
                    self.record_failure(key, slot, None);
                }
                if !purged && before.as_ref().is_some_and(|before| before.hash != page.hash) {
                    self.purge(&key.site, &slot.inputs.tag);
                }
                if still_dirty {
                    // Touched during the render: again, with what it missed.
                    self.queue_render(key.clone(), Arc::clone(slot));
                }
                if before.is_none_or(|before| before.hash != page.hash || before.as_of != page.as_of) {
                    let kept = KeptPage {
                        hash: page.hash,
                        size: page.body.len() as u64,
                        as_of: page.as_of,
                        reads: page.reads.clone(),
                        templates: page.templates.clone(),
                    };
                    self.kept.keep(&key.site, key.tree, &key.url, kept, page.body.clone());
                }
                // Re-inserted, so the cache weighs the page it now holds.
                self.slots.insert(key.clone(), Arc::clone(slot));
                Ok(page)
            }
            Err(error) => {
                metrics::PAGE_RENDERS.with_label_values(&["failed"]).inc();
                tracing::warn!(site = %key.site, url = %key.url, template = %error.file, line = error.line, %error, "a page failed to render; its last good output stays");
                let mut state = slot.state.lock().expect("not poisoned");
                state.rendering = None;
                // Dirty and failed: the next request tries again (and gets
                // the last good page, uncached, if it fails), so the old
                // page is never taken for a fresh one.
                if state.dirty_at.is_some() {
                    state.lazy = true;
                }
                let message = error.to_string();
                let new = state.failed.as_ref().is_none_or(|failed| failed.message != message);
                state.failed = Some(Failed {
                    message: message.clone(),
                    cursor,
                    at: std::time::Instant::now(),
                });
                drop(state);
                if new {
                    let failure = RenderFailure {
                        version: slot.inputs.version,
                        url: key.url.clone(),
                        template: error.file,
                        line: error.line,
                        message: error.message,
                        at: time::OffsetDateTime::now_utc(),
                    };
                    self.record_failure(key, slot, Some(failure));
                }
                Err(message)
            }
        }
    }

    /// The cursor of `site`'s change feed, starting the feed's task the
    /// first time.
    fn feed(self: &Arc<Self>, site: &SiteName) -> watch::Receiver<Timestamp> {
        let mut feeds = self.feeds.lock().expect("not poisoned");
        if let Some(cursor) = feeds.get(site) {
            return cursor.clone();
        }
        let (sender, receiver) = watch::channel(Timestamp::ZERO);
        feeds.insert(site.clone(), receiver.clone());
        let engine = Arc::downgrade(self);
        let site = site.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                let Some(engine) = engine.upgrade() else { return };
                let after = *sender.borrow();
                match engine.node.changes(&site, after).await {
                    Ok(stream) => {
                        let mut stream = std::pin::pin!(stream);
                        while let Some(change) = stream.next().await {
                            let Ok(change) = change else { break };
                            failures = 0;
                            engine.touched(&site, change.ts, &change.paths);
                            sender.send_replace(change.ts);
                        }
                    }
                    Err(error) => tracing::warn!(%site, %error, "following the node's changes failed; retrying"),
                }
                drop(engine);
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
            }
        });
        receiver
    }

    /// The first time a page of `site`'s version `version` (tree `tree`)
    /// is asked for, carries the pages of the version asked of before over
    /// to it: a page whose route, parameter and templates (every one it
    /// loaded) are the same keeps its render, the others re-render in the
    /// background, unless there are over [`MASS_DIRTY`] of them (each then
    /// renders when asked for).
    fn moved_on(self: &Arc<Self>, site: &SiteName, version: u64, tree: ContentHash, pages: &Arc<SitePages>) {
        let before = {
            let mut newest = self.newest.lock().expect("not poisoned");
            if newest.get(site).is_some_and(|(newest, _)| *newest >= version) {
                return;
            }
            newest.insert(site.clone(), (version, tree))
        };
        let Some((_, before)) = before.filter(|(_, before)| *before != tree) else {
            return;
        };
        let mut changed = Vec::new();
        for (key, slot) in self.slots.iter() {
            if key.site != *site || key.tree != before {
                continue;
            }
            let (page, dirty_at, lazy) = {
                let state = slot.state.lock().expect("not poisoned");
                (state.page.clone(), state.dirty_at, state.lazy)
            };
            let (Some(page), Some(matched)) = (page, pages.routes.find(&key.url)) else {
                continue;
            };
            let inputs = Inputs {
                version,
                pages: Arc::clone(pages),
                template: matched.route.template.clone(),
                param: matched.param.clone(),
                tag: slot.inputs.tag.clone(),
            };
            let old = &slot.inputs;
            let same = inputs.template == old.template
                && inputs.param == old.param
                && page
                    .templates
                    .iter()
                    .all(|name| old.pages.templates.source(name) == pages.templates.source(name));
            let state = if same {
                SlotState {
                    page: Some(page),
                    dirty_at,
                    lazy,
                    ..SlotState::default()
                }
            } else {
                SlotState::default()
            };
            let carried = Arc::new(Slot {
                inputs,
                rendering: tokio::sync::Mutex::new(()),
                state: Mutex::new(state),
            });
            let key = SlotKey {
                site: site.clone(),
                tree,
                url: key.url.clone(),
            };
            let carried = self.slots.get_with(key.clone(), || carried);
            // A write the old slot took meanwhile is the new one's too.
            let since = slot.state.lock().expect("not poisoned").dirty_at;
            if let (true, Some(since)) = (same, since) {
                carried
                    .state
                    .lock()
                    .expect("not poisoned")
                    .dirty_at
                    .get_or_insert(since);
            }
            if !same || since.is_some() {
                changed.push((key, carried));
            }
        }
        if changed.len() > MASS_DIRTY {
            for (_, slot) in &changed {
                slot.state.lock().expect("not poisoned").lazy = true;
            }
            return;
        }
        for (key, slot) in changed {
            self.queue_render(key, slot);
        }
    }

    /// Gives a slot with no page yet the render the store kept, if any.
    /// Writes between that render and the feed's cursor went by before the
    /// slot was here to be marked, so such a page is taken as dirty since
    /// its render: served at once to a request that has seen nothing, and
    /// re-rendered in the background.
    async fn seed(self: &Arc<Self>, key: &SlotKey, slot: &Arc<Slot>) {
        if slot.state.lock().expect("not poisoned").page.is_some() {
            return;
        }
        let Some((kept, body)) = self.kept.page(&key.site, key.tree, &key.url).await else {
            return;
        };
        let cursor = *self.feed(&key.site).borrow();
        let dirty = {
            let mut state = slot.state.lock().expect("not poisoned");
            if state.page.is_some() {
                return;
            }
            state.page = Some(Arc::new(RenderedPage {
                body,
                hash: kept.hash,
                as_of: kept.as_of,
                templates: kept.templates,
                reads: kept.reads,
            }));
            let dirty = kept.as_of < cursor;
            if dirty {
                state.dirty_at = Some(Timestamp::from_u64(kept.as_of.as_u64() + 1));
            }
            dirty
        };
        // Re-inserted, so the cache weighs the page it now holds.
        self.slots.insert(key.clone(), Arc::clone(slot));
        if dirty {
            self.queue_render(key.clone(), Arc::clone(slot));
        }
    }

    /// Records a page's failure (or its recovery) for `grove versions`,
    /// without holding up the caller.
    fn record_failure(&self, key: &SlotKey, slot: &Slot, failure: Option<RenderFailure>) {
        let (failures, site, url, version) = (
            Arc::clone(&self.failures),
            key.site.clone(),
            key.url.clone(),
            slot.inputs.version,
        );
        tokio::spawn(async move {
            let recorded = match failure {
                Some(failure) => failures.failed(&site, failure).await,
                None => failures.rendered(&site, version, &url).await,
            };
            if let Err(error) = recorded {
                tracing::warn!(%site, version, url, %error, "recording a page's render failure failed");
            }
        });
    }

    /// Queues the CDN purge of `tag`, without holding up the caller.
    fn purge(&self, site: &SiteName, tag: &str) {
        if let Some(outbox) = self.outbox.clone() {
            let (site, tag) = (site.clone(), tag.to_owned());
            tokio::spawn(async move { outbox.page_rendered(&site, &tag).await });
        }
    }

    /// Marks the pages of `site` a write at `ts` to `paths` touched, and
    /// queues their re-render (or, past [`MASS_DIRTY`] of them, leaves
    /// each to its next request and purges the site's tag once).
    fn touched(self: &Arc<Self>, site: &SiteName, ts: Timestamp, paths: &[String]) {
        let newest = self
            .newest
            .lock()
            .expect("not poisoned")
            .get(site)
            .map(|(_, tree)| *tree);
        let mut touched = Vec::new();
        for (key, slot) in self.slots.iter() {
            if key.site != *site {
                continue;
            }
            let mut state = slot.state.lock().expect("not poisoned");
            let Some(page) = &state.page else {
                // A first render under way has no reads to check yet: any
                // write may be one it missed.
                if let Some(first) = &mut state.rendering {
                    first.get_or_insert(ts);
                }
                continue;
            };
            let touches = ts > page.as_of
                && page
                    .reads
                    .iter()
                    .any(|read| paths.iter().any(|path| read.touched_by(path)));
            if !touches {
                continue;
            }
            state.dirty_at.get_or_insert(ts);
            if let Some(first) = &mut state.rendering {
                first.get_or_insert(ts);
            }
            // An older version's page (for tabs pinned to it) renders
            // only when asked for.
            if newest.is_some_and(|newest| newest != key.tree) {
                state.lazy = true;
                continue;
            }
            drop(state);
            touched.push((key, slot));
        }
        if touched.len() > MASS_DIRTY {
            for (_, slot) in &touched {
                let mut state = slot.state.lock().expect("not poisoned");
                state.lazy = true;
                state.purged = true;
            }
            tracing::info!(%site, pages = touched.len(), "a write touched many pages: each renders on its next request");
            self.purge(site, &semantics::site_tag(site));
            return;
        }
        for (key, slot) in touched {
            self.queue_render((*key).clone(), slot);
        }
    }

    /// Re-renders `slot` in the background after [`DEBOUNCE`], unless that
    /// is queued already.
    fn queue_render(self: &Arc<Self>, key: SlotKey, slot: Arc<Slot>) {
        if std::mem::replace(&mut slot.state.lock().expect("not poisoned").queued, true) {
            return;
        }
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(DEBOUNCE).await;
            slot.state.lock().expect("not poisoned").queued = false;
            // Rendered for what the feed has delivered by now.
            let cursor = *engine.feed(&key.site).borrow();
            let _ = engine.render(&key, &slot, cursor).await;
        });
    }
}
