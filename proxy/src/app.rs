//! The request -> reply logic of the edge server, independent of Pingora.

use std::sync::Arc;

use quick_cache::Equivalent;

use bytes::Bytes;
use grove_core::publish_api::SitemapSummary;
use grove_core::tree::{Entry, TreeError, Trees};
use grove_core::{ContentHash, ContentType, SiteName, SitePath};
use grove_objects::content::ContentStore;
use grove_objects::pages::Pages;
use grove_objects::site::Sites;
use grove_objects::store::ObjectStore;
use http::{Method, StatusCode, header};

use crate::api::{Call, Finished, PublishApi};
use crate::auth::{Auth, Visitor, cookies};
use crate::cache::{BlobCache, CacheError, CachedBlob, DiskCache};
use crate::compress::Compressor;
use crate::config::{CacheSizes, CanonicalMode, Config, SiteConfig};
use crate::crawlers::sitemap::{self, Document, Sitemap};
use crate::crawlers::{self, robots};
use crate::edges::Wake;
use crate::edges::follower::JournalFollower;
use crate::edges::push::Push;
use crate::egress::Egress;
use crate::hosts::{HostRole, Router, Target};
use crate::live::LiveHub;
use crate::node_client::NodeClient;
use crate::pages::engine::{self, PageEngine};
use crate::pages::seen;
use crate::purge::PurgeSetup;
use crate::reply::{Body, FailureReply, Reply};
use crate::request::Request;
use crate::resolve::{Fallback, Files, RequestPath, Resolution, encode_path, fallback, resolve};
use crate::roots::{Roots, Served};
use crate::route::AUTH_LOGIN;
use crate::route::Route;
use crate::rules::{HeaderRules, Redirects, RuleAction, SiteRules};
use crate::semantics::{self, Encoding, RangeRequest};
use crate::sw;

/// Header a client may send to pin a version (as preview hosts do).
pub const VERSION_HEADER: &str = "x-grove-version";
/// The query parameter that pins a request to a version, like the header.
pub const VERSION_QUERY: &str = "_grove_version";
/// Header naming the tree of the version served.
pub const ROOT_HEADER: &str = "x-grove-root";
/// Marks a reply to a signed-in session: live, never pinned or shared.
pub const LIVE_HEADER: &str = "x-grove-live";

/// Who a request is answered for, as sign-in recognised it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audience {
    /// A live session: the current version, for this client only.
    pub live: bool,
    /// Allowed to see the site's protected files.
    pub member: bool,
    /// Sent a session cookie that names no live session: served as
    /// anonymous, privately, and told to drop the cookie.
    pub stale_cookie: bool,
}

/// Everything the server shares across requests.
pub struct Grove {
    config: Config,
    router: Router,
    roots: Arc<Roots>,
    /// Tells peer edges of publishes, and takes theirs.
    push: Arc<Push>,
    /// Big files sent from the object store.
    egress: Egress,
    /// Wakes this edge's journal reader.
    wake: Wake,
    api: PublishApi,
    trees: Trees,
    tree_nodes: ContentStore,
    tree_node_bytes: moka::future::Cache<ContentHash, Bytes>,
    blobs: BlobCache,
    compressor: Compressor,
    rules: moka::future::Cache<ContentHash, Arc<SiteRules>>,
    prepared: PreparedReplies,
    auth: Auth,
    live: LiveHub,
    node: Arc<NodeClient>,
    /// Per version tree, the blobs it hands out by hash.
    version_blobs: moka::future::Cache<ContentHash, Arc<VersionBlobs>>,
    /// Each version's pages, as its sitemap lists them.
    page_index: Pages,
    /// Database-backed pages.
    pages: Arc<PageEngine>,
    /// Generated sitemaps, per site version.
    sitemaps: moka::future::Cache<(SiteName, u64), Arc<Sitemap>>,
}

impl Grove {
    pub fn new(
        config: Config,
        store: Arc<dyn ObjectStore>,
        purge: Option<&PurgeSetup>,
        node: Arc<NodeClient>,
    ) -> anyhow::Result<Self> {
        let mut custom = Vec::new();
        let mut canonical = Vec::new();
        for (name, site) in &config.sites {
            let site_name = SiteName::parse(name)?;
            custom.extend(site.domains.iter().map(|domain| (domain.clone(), site_name.clone())));
            canonical.push((site_name, config.canonical_host(name)));
        }
        let trees = grove_objects::content::trees_in(Arc::clone(&store), config.cache.tree_node_entries);
        let disk = DiskCache::open(&config.cache_dir(), config.cache.disk_bytes)?;
        let roots = Arc::new(Roots::new(
            Sites::new(Arc::clone(&store), trees.clone()),
            config.root_refresh,
            config.edges.safety_net_reads_per_sec,
        ));
        let wake = Wake::default();
        let push = Arc::new(Push::new(&config.edges, Arc::clone(&roots), wake.clone())?);
        let auth = Auth::new(&config, Arc::clone(&store), Arc::clone(&node))?;
        // Reads what this edge knows (the journal and pushes keep it current).
        let live = LiveHub::new(Arc::clone(&node), Arc::clone(&roots), config.edges.journal_poll);
        let page_purges =
            purge.map(|setup| setup.outbox(Arc::clone(&store), Sites::new(Arc::clone(&store), trees.clone())));
        Ok(Self {
            router: Router::new(&config.base_domain, custom, canonical),
            api: PublishApi::new(
                Arc::clone(&store),
                trees.clone(),
                Arc::clone(&roots),
                Arc::clone(&push),
                config.clone(),
                purge,
            ),
            roots,
            push,
            wake,
            egress: Egress::new(Arc::clone(&store), config.egress.clone()),
            tree_nodes: ContentStore::trees(Arc::clone(&store)),
            tree_node_bytes: moka::future::Cache::builder()
                .max_capacity(config.cache.tree_node_bytes)
                .weigher(|_, bytes: &Bytes| u32::try_from(bytes.len()).unwrap_or(u32::MAX))
                .build(),
            blobs: BlobCache::new(
                Arc::clone(&store),
                config.cache.memory_bytes,
                disk,
                config.cache.max_memory_object_bytes,
                config.http.sendfile.then_some(config.http.sendfile_min_bytes),
            ),
            compressor: Compressor::new(config.cache.compressed_bytes),
            rules: moka::future::Cache::new(config.cache.rule_sets),
            prepared: prepared_replies(&config.cache),
            auth,
            live,
            pages: PageEngine::new(
                Arc::clone(&node),
                Arc::clone(&store),
                trees.clone(),
                ContentStore::blobs(Arc::clone(&store)),
                page_purges,
            ),
            node,
            version_blobs: moka::future::Cache::builder()
                .max_capacity(VERSION_BLOB_ENTRIES)
                .weigher(|_, blobs: &Arc<VersionBlobs>| {
                    u32::try_from(blobs.public.len() + blobs.members_only.len() + 1).unwrap_or(u32::MAX)
                })
                .build(),
            page_index: Pages::new(Arc::clone(&store), trees.clone()),
            sitemaps: moka::future::Cache::builder()
                .max_capacity(config.cache.prepared_bytes)
                .weigher(|_, sitemap: &Arc<Sitemap>| {
                    let bytes = match sitemap.as_ref() {
                        Sitemap::Generated(generated) => generated.bytes(),
                        Sitemap::Own(_) => 0,
                    };
                    u32::try_from(bytes + 1024).unwrap_or(u32::MAX)
                })
                .build(),
            trees,
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn api(&self) -> &PublishApi {
        &self.api
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn live(&self) -> &LiveHub {
        &self.live
    }

    pub fn push(&self) -> &Push {
        &self.push
    }

    /// The reader of `store`'s root journal that keeps this edge's roots
    /// current.
    pub fn journal_follower(&self, store: Arc<dyn ObjectStore>) -> JournalFollower {
        JournalFollower::new(
            grove_objects::journal::Journal::new(store),
            Arc::clone(&self.roots),
            self.config.edges.journal_poll,
            self.wake.clone(),
        )
    }

    /// The site (and pinned version) a request's host names, if it is served here.
    pub fn target(&self, request: &Request<'_>) -> Option<Target> {
        request.host.and_then(|host| self.router.route(host))
    }

    /// Answers a request for a site file or for the host's own namespace
    /// (`route` is neither a publish nor a node call, which the server hands
    /// on before this).
    /// `target` is [`Self::target`] of the request, found once by the caller.
    pub async fn handle(
        &self,
        request: &Request<'_>,
        target: Option<&Target>,
        route: Route<'_>,
        audience: Audience,
    ) -> Reply {
        let reply = self.handle_for(request, target, route, audience).await;
        for_audience(audience, reply)
    }

    /// Who a request is for, by its session cookie. Members-only files are
    /// refused where they are served ([`Self::serve_file`]), whatever URL
    /// reached them; a store failure reading the session is the refusal here.
    pub async fn audience(&self, target: Option<&Target>, request: &Request<'_>) -> Result<Audience, Reply> {
        let Some(target) = target else {
            return Ok(Audience::default());
        };
        let Some(site) = self.auth.site(&target.site) else {
            return Ok(Audience::default());
        };
        Ok(match Box::pin(self.auth.visitor(&target.site, request)).await? {
            Visitor::SignedIn(session) => Audience {
                live: true,
                member: site.access.allows(&session.record),
                stale_cookie: false,
            },
            Visitor::StaleCookie => Audience {
                stale_cookie: true,
                ..Audience::default()
            },
            Visitor::Anonymous => Audience::default(),
        })
    }

    pub fn node(&self) -> &NodeClient {
        &self.node
    }

    /// Finishes a publish API call; a new version's reply says what its
    /// sitemap holds, as this host serves it.
    pub async fn publish(&self, call: Call, request: &Request<'_>, body: Bytes) -> Reply {
        match self.api.finish(call, request, body).await {
            Ok(Finished::Reply(reply)) => reply,
            Ok(Finished::Published(mut published)) => {
                published.sitemap = self
                    .sitemap_summary(&published.site, published.version, published.root)
                    .await;
                Reply::json(StatusCode::OK, &published)
            }
            Err(failure) => failure.into_reply(),
        }
    }

    async fn sitemap_summary(&self, site: &str, version: u64, tree: ContentHash) -> Option<SitemapSummary> {
        let site = SiteName::parse(site).ok()?;
        let sitemap = self.sitemap(&site, Served { version, tree }).await.ok()?;
        Some(match sitemap.as_ref() {
            Sitemap::Own(name) => SitemapSummary::Own(name.clone()),
            Sitemap::Generated(generated) => SitemapSummary::Generated {
                urls: generated.urls as u64,
                files: generated.files() as u64,
            },
        })
    }

    /// A version's sitemap: built once, from its page index.
    async fn sitemap(&self, site: &SiteName, served: Served) -> Result<Arc<Sitemap>, Reply> {
        self.sitemaps
            .try_get_with((site.clone(), served.version), async {
                let entries = self
                    .trees
                    .entries(&served.tree)
                    .await
                    .map_err(|error| self.tree_failure(error))?;
                let pages = self.page_index.index(site, served.version).await.map_err(|error| {
                    tracing::error!(%site, version = served.version, %error, "indexing the site's pages failed");
                    Reply::unavailable()
                })?;
                let rules = self.rules(served.tree).await?;
                let origin = crawlers::canonical_origin(&self.config, site);
                let rendered: Vec<(String, time::OffsetDateTime)> = match self.pages.site_pages(served.tree).await {
                    Ok(Some(site_pages)) => site_pages
                        .routes
                        .routes
                        .iter()
                        .filter(|route| route.source.is_none())
                        .filter_map(|route| {
                            let lastmod = pages.pages.get(&route.template)?.lastmod;
                            Some((route.pattern.url(None), lastmod))
                        })
                        .collect(),
                    Ok(None) => Vec::new(),
                    Err(error) => {
                        tracing::error!(%site, %error, "loading the site's pages for its sitemap failed");
                        return Err(Reply::unavailable());
                    }
                };
                let input = sitemap::Input {
                    entries: &entries,
                    pages: &pages,
                    redirects: &rules.redirects,
                    trailing_slash: self.config.site(site.as_str()).trailing_slash,
                    access: self.auth.site(site).map(|site| &site.access),
                    rendered: &rendered,
                    origin: &origin,
                    limits: sitemap::PROTOCOL_LIMITS,
                };
                let built = sitemap::build(&input).await.map_err(|error| self.tree_failure(error))?;
                Ok::<_, Reply>(Arc::new(built))
            })
            .await
            .map_err(|reply| (*reply).clone())
    }

    async fn handle_for(
        &self,
        request: &Request<'_>,
        target: Option<&Target>,
        route: Route<'_>,
        audience: Audience,
    ) -> Reply {
        if !matches!(*request.method, Method::GET | Method::HEAD) {
            return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served here")
                .with(header::ALLOW, "GET, HEAD");
        }
        let Some(target) = target else {
            return Reply::unknown();
        };
        if route != Route::SiteFile {
            return Box::pin(self.grove_namespace(target, route, request, audience)).await;
        }
        if target.role == HostRole::Alias {
            let origin = crawlers::canonical_origin(&self.config, &target.site);
            let location = crawlers::canonical_location(&origin, request.path, request.query);
            return match self.config.site(target.site.as_str()).canonical {
                CanonicalMode::Redirect => Reply::redirect(StatusCode::PERMANENT_REDIRECT, &location)
                    .with(header::CACHE_CONTROL, "public, max-age=3600")
                    .with(
                        header::HeaderName::from_static("cache-tag"),
                        semantics::site_tag(&target.site),
                    ),
                CanonicalMode::Header => self
                    .site_file(target, request, audience)
                    .await
                    .with(header::LINK, crawlers::canonical_link(&location)),
            };
        }
        self.site_file(target, request, audience).await
    }

    /// A path of the site itself, in the version the request is for.
    async fn site_file(&self, target: &Target, request: &Request<'_>, audience: Audience) -> Reply {
        let served = match self.version(target, request, audience).await {
            Ok(served) => served,
            Err(reply) => return reply,
        };
        // A full GET of one path of one version in one coding always gets the
        // same reply, so it is prepared once; conditional GETs reuse it too.
        // Only paths no page route can render are prepared (see below), so a
        // prepared reply is looked up before the pages are.
        let prepared_key = (!request.headers.contains_key(header::RANGE)).then(|| PreparedKey {
            site: &target.site,
            version: served.version,
            path: request.path,
            encoding: semantics::negotiate(request.header(header::ACCEPT_ENCODING)),
            role: target.role,
        });
        let pinned_by_request = !audience.live && pinned_by_request(target, request);
        if let Some(prepared) = prepared_key.as_ref().and_then(|key| self.prepared.get(key)) {
            return private_if(pinned_by_request, prepared.answer(request));
        }
        // Boxed, like every slower step below: a prepared reply's future
        // stays small, and is moved for every request.
        let permanent = match Box::pin(self.rendered_page(target, served, request, audience)).await {
            // Rendered pages change without a new version: never prepared.
            PageAnswer::Page(reply) => return private_if(pinned_by_request, self.versioned(target, served, reply)),
            PageAnswer::NotAPage => true,
            PageAnswer::NoDataYet => false,
        };
        // A reply that could be prepared is made whole, whatever the
        // request's If-None-Match, and revalidated after: a client that
        // holds every page (a CDN revalidating, a returning visitor) would
        // otherwise never get one prepared, and pay the whole path each time.
        let unconditional_headers;
        let unconditional;
        let serving = if prepared_key.is_some() && request.headers.contains_key(header::IF_NONE_MATCH) {
            unconditional_headers = without(request.headers, &header::IF_NONE_MATCH);
            unconditional = Request {
                headers: &unconditional_headers,
                ..*request
            };
            &unconditional
        } else {
            request
        };
        let reply = Box::pin(self.serve_site(target, served, serving, audience)).await;
        let reply = self.versioned(target, served, reply);
        // A live audience's replies may hold members-only files: never
        // prepared for anyone else.
        if let Some(key) = prepared_key
            && permanent
            && !audience.live
            && reply.status == StatusCode::OK
            && reply.body.in_memory().is_some()
        {
            let prepared = Arc::new(Prepared::new(reply));
            self.prepared.insert(key.to_owned(), Arc::clone(&prepared));
            return private_if(pinned_by_request, prepared.answer(request));
        }
        private_if(pinned_by_request, revalidate(reply, request))
    }

    /// A reply as every answer of a version carries it: which version and
    /// tree, the worker's kill switch, and what the access log records.
    fn versioned(&self, target: &Target, served: Served, mut reply: Reply) -> Reply {
        reply.set(
            header::HeaderName::from_static(VERSION_HEADER),
            served.version.to_string(),
        );
        reply.set(header::HeaderName::from_static(ROOT_HEADER), served.tree.to_hex());
        reply = self.kill_switch_if_off(&target.site, reply);
        reply.served = Some((Arc::from(target.site.as_str()), served.version));
        reply
    }

    /// The page of a route of the version's `_grove/pages.toml`, rendered
    /// from node data, or why the static files answer the path instead.
    async fn rendered_page(
        &self,
        target: &Target,
        served: Served,
        request: &Request<'_>,
        audience: Audience,
    ) -> PageAnswer {
        let site_pages = match self.pages.site_pages(served.tree).await {
            Ok(Some(site_pages)) => site_pages,
            Ok(None) => return PageAnswer::NotAPage,
            Err(error) => {
                tracing::error!(site = %target.site, %error, "loading the site's pages failed");
                return PageAnswer::Page(Reply::unavailable());
            }
        };
        let Ok(path) = RequestPath::parse(request.path, self.config.http.max_path_bytes) else {
            return PageAnswer::NotAPage;
        };
        if path.path == grove_pages::ROUTE_FILE || site_pages.is_template(&path.path) {
            // The sources of pages, not pages.
            return PageAnswer::Page(Reply::text(StatusCode::NOT_FOUND, "not found"));
        }
        let url_path = path.url_path();
        let Some(matched) = site_pages.routes.find(&url_path) else {
            return PageAnswer::NotAPage;
        };
        let Ok(file) = SitePath::parse(&page_file(&path)) else {
            return PageAnswer::NotAPage;
        };
        let template = matched.route.template.clone();
        let param = matched.param.clone();
        if let (Some(source), Some((_, id))) = (&matched.route.source, &param) {
            // One page per node path under the source that holds data;
            // others are not pages.
            match self.node.holds_data(&target.site, &format!("{source}/{id}")).await {
                Ok(true) => {}
                Ok(false) => return PageAnswer::NoDataYet,
                Err(failure) => return PageAnswer::Page(failure.into_reply()),
            }
        }
        let seen = match seen::of(request) {
            Ok(seen) => seen,
            Err(message) => return PageAnswer::Page(Reply::text(StatusCode::BAD_REQUEST, &message)),
        };
        let wanted = engine::Wanted {
            site: target.site.clone(),
            version: served.version,
            tree: served.tree,
            pages: Arc::clone(&site_pages),
            url: url_path.clone(),
            template,
            param,
            tag: semantics::path_tag(&target.site, file.as_str()),
        };
        let answer = self.pages.page(wanted, seen).await;
        let (page, stale) = match answer {
            engine::Served::Fresh(page) => (page, false),
            engine::Served::Stale(page) => (page, true),
            engine::Served::Failed(message) => {
                return PageAnswer::Page(Reply::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("this page failed to render: {message}"),
                ));
            }
        };
        self.blobs.insert(page.hash, page.body.clone()).await;
        let entry = Entry {
            path: file,
            hash: page.hash,
            size: page.body.len() as u64,
            content_type: ContentType::parse("text/html; charset=utf-8").expect("a valid content type"),
        };
        let rules = match self.rules(served.tree).await {
            Ok(rules) => rules,
            Err(reply) => return PageAnswer::Page(reply),
        };
        let context = self.context(&target.site, audience, request, &rules, &url_path, served.tree);
        let mut reply = self.serve_file(&context, &entry, StatusCode::OK, Answer::Exact).await;
        reply.set(
            header::HeaderName::from_static(seen::AS_OF_HEADER),
            page.as_of.to_string(),
        );
        // Kept briefly at the CDN, purge or not: its staleness there is bounded.
        reply.set(header::HeaderName::from_static("cdn-cache-control"), RENDERED_CDN);
        // A publish changing one of its templates or the route file purges
        // those files' tags, and with them the page.
        if let Some(tags) = reply.headers.get("cache-tag").and_then(|tags| tags.to_str().ok()) {
            let sources = page
                .templates
                .iter()
                .map(String::as_str)
                .chain([grove_pages::ROUTE_FILE]);
            let tags = std::iter::once(tags.to_owned())
                .chain(sources.map(|source| semantics::path_tag(&target.site, source)))
                .collect::<Vec<_>>()
                .join(",");
            reply.set(header::HeaderName::from_static("cache-tag"), tags);
        }
        if stale {
            reply.set(header::HeaderName::from_static(seen::STALE_HEADER), "1");
            reply.set(header::CACHE_CONTROL, "no-store");
            reply.headers.remove("cdn-cache-control");
            reply.headers.remove("cache-tag");
        }
        // A request that has seen a write must not be answered by a cache.
        PageAnswer::Page(private_if(seen.is_some(), reply))
    }

    fn context<'a>(
        &'a self,
        site: &'a SiteName,
        audience: Audience,
        request: &'a Request<'a>,
        rules: &'a SiteRules,
        url_path: &'a str,
        tree: ContentHash,
    ) -> Context<'a> {
        Context {
            site,
            audience,
            service_worker: self.config.service_worker(site.as_str()),
            request,
            rules,
            url_path,
            files: VersionFiles {
                trees: &self.trees,
                root: tree,
            },
        }
    }

    /// Orders installed service workers away from a site that has none.
    fn kill_switch_if_off(&self, site: &SiteName, mut reply: Reply) -> Reply {
        if !self.config.service_worker(site.as_str()) {
            let (name, value) = sw::KILL_SWITCH;
            reply.set(name, value);
        }
        reply
    }

    /// The version to serve: pinned by the host, the version header or the
    /// version query parameter, else current.
    /// A live audience always gets the current version (or the preview
    /// host's), whatever the request pins.
    async fn version(&self, target: &Target, request: &Request<'_>, audience: Audience) -> Result<Served, Reply> {
        let request_pin = if audience.live { None } else { pin_of(request) };
        let pinned = match (target.pinned, request_pin) {
            (Some(n), _) => Some(n),
            (None, Some(text)) => match text.trim().parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(Reply::text(
                        StatusCode::BAD_REQUEST,
                        &format!("{VERSION_HEADER} and {VERSION_QUERY} must be a version number"),
                    ));
                }
            },
            (None, None) => None,
        };
        let result = match pinned {
            // A version above the live one was recorded but never went live.
            Some(n) => match self.roots.current(&target.site).await {
                Ok(Some(current)) if n <= current.version => self.roots.pinned(&target.site, n).await,
                Ok(_) => Ok(None),
                Err(error) => Err(error),
            },
            None => self.roots.current(&target.site).await,
        };
        match result {
            Ok(Some(served)) => Ok(served),
            Ok(None) => match pinned {
                Some(n) => Err(Reply::text(
                    StatusCode::NOT_FOUND,
                    &format!("version {n} does not exist"),
                )),
                None => Err(Reply::unknown()),
            },
            Err(error) => {
                tracing::error!(site = %target.site, %error, "reading the site's version failed");
                Err(Reply::unavailable())
            }
        }
    }

    async fn serve_site(&self, target: &Target, served: Served, request: &Request<'_>, audience: Audience) -> Reply {
        let site = &target.site;
        let path = match RequestPath::parse(request.path, self.config.http.max_path_bytes) {
            Ok(path) => path,
            Err(error) => return Reply::text(StatusCode::BAD_REQUEST, &error.to_string()),
        };
        let rules = match self.rules(served.tree).await {
            Ok(rules) => rules,
            Err(reply) => return reply,
        };
        let site_config = self.config.site(site.as_str());
        let url_path = path.url_path();
        let context = self.context(site, audience, request, &rules, &url_path, served.tree);
        if path.path == robots::FILE && target.role.noindex() {
            return self
                .generated(&context, robots::FILE, &Document::new(robots::generated(None)))
                .await;
        }
        if let Some(action) = rules.redirects.find(&url_path, true) {
            return self.apply_rule(&context, action).await;
        }
        let files = &context.files;
        match resolve(files, &path, site_config.trailing_slash).await {
            Ok(Resolution::File(entry)) => self.serve_file(&context, &entry, StatusCode::OK, Answer::Exact).await,
            Ok(Resolution::Canonical(location)) => {
                let location = with_query(&encode_path(&location), request.query);
                Reply::redirect(StatusCode::PERMANENT_REDIRECT, &location)
            }
            Ok(Resolution::NotFound) => {
                if target.role == HostRole::Canonical
                    && !path.trailing_slash
                    && let Some(reply) = self.crawler_file(&context, &path.path, served).await
                {
                    return reply;
                }
                if let Some(action) = rules.redirects.find(&url_path, false) {
                    return self.apply_rule(&context, action).await;
                }
                self.not_found(&context, &path, site_config).await
            }
            Err(error) => self.tree_failure(error),
        }
    }

    /// A `robots.txt` or sitemap file the site does not bring itself, on
    /// its canonical host; `None` for any other path.
    async fn crawler_file(&self, context: &Context<'_>, path: &str, served: Served) -> Option<Reply> {
        if path != robots::FILE && !path.starts_with("sitemap") {
            return None;
        }
        let sitemap = match self.sitemap(context.site, served).await {
            Ok(sitemap) => sitemap,
            Err(reply) => return Some(reply),
        };
        let origin = crawlers::canonical_origin(&self.config, context.site);
        if path == robots::FILE {
            let name = match sitemap.as_ref() {
                Sitemap::Own(name) => name.as_str(),
                Sitemap::Generated(_) => sitemap::SITEMAP,
            };
            let text = robots::generated(Some(&format!("{origin}/{name}")));
            return Some(self.generated(context, robots::FILE, &Document::new(text)).await);
        }
        let Sitemap::Generated(generated) = sitemap.as_ref() else {
            return None;
        };
        let document = generated.document(path)?;
        Some(self.generated(context, path, document).await)
    }

    /// A file grove generates for a version (`robots.txt`, a sitemap):
    /// served like a page of it, by content hash.
    async fn generated(&self, context: &Context<'_>, name: &str, document: &Document) -> Reply {
        let hash = document.hash;
        let body = document.body.clone();
        let content_type = if name.ends_with(".xml") {
            "application/xml; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        let wanted = semantics::negotiate(context.request.header(header::ACCEPT_ENCODING));
        let (encoding, body) = match self.compressor.encode(hash, wanted, body.clone()).await {
            Some(encoded) => (wanted, encoded),
            None => (Encoding::Identity, body),
        };
        let mut reply = Reply::new(StatusCode::OK, Body::Bytes(body))
            .with(header::CONTENT_TYPE, content_type)
            .with(header::ETAG, semantics::etag(&hash, encoding))
            .with(header::CACHE_CONTROL, "public, max-age=0, must-revalidate")
            .with(header::VARY, "Accept-Encoding")
            .with(
                header::HeaderName::from_static("cdn-cache-control"),
                semantics::CDN_KEEP,
            )
            .with(
                header::HeaderName::from_static("cache-tag"),
                semantics::version_tags(context.site),
            );
        if let Some(token) = encoding.token() {
            reply.set(header::CONTENT_ENCODING, token);
        }
        revalidate(reply, context.request)
    }

    async fn not_found(&self, context: &Context<'_>, path: &RequestPath, site_config: &SiteConfig) -> Reply {
        match fallback(&context.files, path, site_config.spa).await {
            Ok(Fallback::SpaIndex(index)) => self.serve_file(context, &index, StatusCode::OK, Answer::Fallback).await,
            Ok(Fallback::NotFoundPage(page)) => {
                self.serve_file(context, &page, StatusCode::NOT_FOUND, Answer::Fallback)
                    .await
            }
            Ok(Fallback::Nothing) => Reply::text(StatusCode::NOT_FOUND, "not found"),
            Err(error) => self.tree_failure(error),
        }
    }

    async fn apply_rule(&self, context: &Context<'_>, action: RuleAction) -> Reply {
        match action {
            RuleAction::Redirect { status, location } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
                Reply::redirect(status, &location)
            }
            RuleAction::Rewrite { status, path } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                let files = &context.files;
                let target = match RequestPath::parse(&path, self.config.http.max_path_bytes) {
                    Ok(target) => target,
                    Err(_) => return Reply::text(StatusCode::NOT_FOUND, "not found"),
                };
                match resolve(files, &target, crate::config::TrailingSlash::Auto).await {
                    Ok(Resolution::File(entry)) => self.serve_file(context, &entry, status, Answer::Fallback).await,
                    Ok(_) => Reply::text(StatusCode::NOT_FOUND, "not found"),
                    Err(error) => self.tree_failure(error),
                }
            }
        }
    }

    fn tree_failure(&self, error: TreeError) -> Reply {
        tracing::error!(%error, "reading the site's tree failed");
        Reply::unavailable()
    }

    /// Serves one file with every HTTP rule that applies to it.
    async fn serve_file(&self, context: &Context<'_>, entry: &Entry, status: StatusCode, answer: Answer) -> Reply {
        let request = context.request;
        let protected = self
            .auth
            .site(context.site)
            .is_some_and(|site| site.access.protects_file(entry.path.as_str()));
        if protected && !context.audience.member {
            return members_only(context.audience, request);
        }
        let content_type = entry.content_type.as_str();
        let compressible = semantics::is_compressible(content_type);
        let (cache_control, cdn_cache_control) = match answer {
            Answer::Exact => semantics::cache_control(entry.path.as_str()),
            // Served for another URL: a later publish of a file at that URL
            // purges no tag of this reply, so the CDN must not keep it.
            Answer::Fallback => ("public, max-age=0, must-revalidate".to_owned(), None),
        };
        let mut tags = vec![semantics::site_tag(context.site)];
        if cdn_cache_control.is_some() {
            tags.push(semantics::path_tag(context.site, entry.path.as_str()));
        }
        let tags = tags.join(",");
        // Pages get the register script, and members-only files must not
        // leave through a URL anyone holding it can use.
        if status == StatusCode::OK
            && answer == Answer::Exact
            && !protected
            && !sw::is_html(content_type)
            && let Some(redirect) = self.egress.redirect(&entry.hash, entry.size, content_type, &tags).await
        {
            return redirect;
        }
        let blob = match self.blobs.get(&entry.hash, entry.size).await {
            Ok(blob) => blob,
            Err(error) => return blob_failure(&entry.hash, &error),
        };

        let mut encoding = Encoding::Identity;
        let mut body = blob.body();
        // Pages get the register tag (those too large for the memory cache
        // are served as they are; the worker keeps no file that large).
        let mut identity = entry.hash;
        let mut bytes = blob.in_memory().cloned();
        if context.service_worker
            && sw::is_html(content_type)
            && let Some(injected) = bytes.as_deref().and_then(sw::inject)
        {
            identity = sw::variant_of(&entry.hash);
            body = Body::Bytes(injected.clone());
            bytes = Some(injected);
        }
        let ranged = request.headers.contains_key(header::RANGE);
        if let (Some(bytes), true, false) = (&bytes, compressible, ranged) {
            let wanted = semantics::negotiate(request.header(header::ACCEPT_ENCODING));
            if let Some(encoded) = self.compressor.encode(identity, wanted, bytes.clone()).await {
                encoding = wanted;
                body = Body::Bytes(encoded);
            }
        }
        let etag = semantics::etag(&identity, encoding);

        let mut reply = Reply::new(status, Body::Empty)
            .with(header::CONTENT_TYPE, content_type)
            .with(header::CACHE_CONTROL, &cache_control)
            .with(header::HeaderName::from_static("cache-tag"), &tags)
            .with(header::ACCEPT_RANGES, "bytes");
        if let Some(cdn) = &cdn_cache_control {
            reply.set(header::HeaderName::from_static("cdn-cache-control"), cdn);
        }
        if compressible {
            reply.set(header::VARY, "Accept-Encoding");
        }
        if let Some(token) = encoding.token() {
            reply.set(header::CONTENT_ENCODING, token);
        }
        for (name, value) in context.rules.headers.for_path(context.url_path) {
            reply.insert(name.clone(), value.clone());
        }

        // Only a 200 is a representation a validator can name: an error page
        // (404.html, a rewrite's other status) carries none, since a
        // conditional request could not be answered 304 for it.
        if status == StatusCode::OK {
            reply.set(header::ETAG, &etag);
            if etag_matches(request, &etag) {
                return not_modified(reply);
            }
            let if_range_fails = request.header(header::IF_RANGE).is_some_and(|tag| tag.trim() != etag);
            if encoding == Encoding::Identity && !if_range_fails {
                let size = body.len();
                match semantics::range(request.header(header::RANGE), size) {
                    RangeRequest::Full => {}
                    RangeRequest::Partial { start, end } => {
                        reply.status = StatusCode::PARTIAL_CONTENT;
                        reply.set(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
                        body = body.slice(start, end - start + 1);
                    }
                    RangeRequest::Unsatisfiable => {
                        let mut refused = Reply::text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                        refused.set(header::CONTENT_RANGE, format!("bytes */{size}"));
                        return refused;
                    }
                }
            }
        }
        reply.body = body;
        reply
    }

    /// The parsed `_redirects` and `_headers` of a version, read once per tree.
    async fn rules(&self, tree: ContentHash) -> Result<Arc<SiteRules>, Reply> {
        self.rules
            .try_get_with(tree, async {
                let redirects = self.rule_file(tree, "_redirects").await?;
                let headers = self.rule_file(tree, "_headers").await?;
                let rules = SiteRules {
                    redirects: redirects
                        .map(|text| log_errors("_redirects", Redirects::parse(&text)))
                        .unwrap_or_default(),
                    headers: headers
                        .map(|text| log_errors("_headers", HeaderRules::parse(&text)))
                        .unwrap_or_default(),
                };
                Ok::<_, Reply>(Arc::new(rules))
            })
            .await
            .map_err(|reply| (*reply).clone())
    }

    async fn rule_file(&self, tree: ContentHash, name: &str) -> Result<Option<String>, Reply> {
        let files = VersionFiles {
            trees: &self.trees,
            root: tree,
        };
        let entry = match files.file(name).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(None),
            Err(error) => return Err(self.tree_failure(error)),
        };
        match self.blobs.bytes(&entry.hash, entry.size).await {
            Ok(Some(bytes)) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Ok(None) => {
                tracing::warn!(file = name, "rule file too large; ignored");
                Ok(None)
            }
            Err(error) => Err(blob_failure(&entry.hash, &error)),
        }
    }

    /// `/_grove/...`: the host's own namespace on every site.
    async fn grove_namespace(
        &self,
        target: &Target,
        route: Route<'_>,
        request: &Request<'_>,
        audience: Audience,
    ) -> Reply {
        match route {
            Route::Script(script) => revalidate(sw::script(script), request),
            Route::RootDocument => match self.version(target, request, audience).await {
                Ok(served) => {
                    // Database-backed pages: the worker leaves them to the
                    // network. (Unreadable now: left out, so the worker
                    // keeps what it knew and the site's updates go on.)
                    let pages = match self.pages.site_pages(served.tree).await {
                        Ok(pages) => Some(pages.map_or_else(Vec::new, |pages| {
                            pages
                                .routes
                                .routes
                                .iter()
                                .map(|route| route.pattern.to_string())
                                .collect()
                        })),
                        Err(error) => {
                            tracing::error!(site = %target.site, %error, "loading the site's pages failed");
                            None
                        }
                    };
                    let body = serde_json::json!({
                        "site": target.site.as_str(),
                        "version": served.version,
                        "root": served.tree.to_hex(),
                        // The service worker resolves URLs as the proxy does.
                        "trailing_slash": self.config.site(target.site.as_str()).trailing_slash,
                        // Members-only paths: the worker leaves them to the network.
                        "protect": self.config.site(target.site.as_str()).auth.as_ref().map(|auth| &auth.protect),
                        "pages": pages,
                    });
                    // Browsers always ask again; a CDN keeps it until the
                    // next version's purge, like every other stable URL.
                    let reply = Reply::new(StatusCode::OK, Body::Bytes(Bytes::from(body.to_string())))
                        .with(header::CONTENT_TYPE, "application/json")
                        .with(header::CACHE_CONTROL, "no-store")
                        .with(
                            header::HeaderName::from_static("cdn-cache-control"),
                            semantics::CDN_KEEP,
                        )
                        .with(
                            header::HeaderName::from_static("cache-tag"),
                            semantics::version_tags(&target.site),
                        );
                    private_if(
                        pinned_by_request(target, request),
                        self.kill_switch_if_off(&target.site, reply),
                    )
                }
                Err(reply) => reply,
            },
            Route::TreeNode(hash) => self.tree_node(&hash, request).await,
            Route::Blob(hash) => {
                if !self.hands_out(target, &hash, request, audience).await {
                    return Reply::text(StatusCode::NOT_FOUND, "no such blob");
                }
                self.raw_blob(&hash, request).await
            }
            Route::MalformedHash(expected) => Reply::text(StatusCode::BAD_REQUEST, expected),
            Route::UnknownGrovePath
            | Route::SiteFile
            | Route::PublishCall { .. }
            | Route::NodeCall { .. }
            | Route::Auth(_)
            | Route::Live
            | Route::Health
            | Route::EdgePush => Reply::text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Whether a site hands out blob `hash` by its hash: only a file of the
    /// version it serves this request (the current one, or the one pinned),
    /// and a members-only file only to a member. So no site, version or
    /// anonymous visitor reads another's content by a hash it saw in a
    /// (public) tree; a worker asking for an older version's blob is told
    /// 404 and fetches the page from the network instead.
    async fn hands_out(&self, target: &Target, hash: &ContentHash, request: &Request<'_>, audience: Audience) -> bool {
        let Ok(served) = self.version(target, request, audience).await else {
            return false;
        };
        let access = self.auth.site(&target.site).map(|site| &site.access);
        let blobs = self
            .version_blobs
            .try_get_with(served.tree, async {
                let entries = self.trees.entries(&served.tree).await?;
                let mut blobs = VersionBlobs::default();
                for entry in &entries {
                    if access.is_some_and(|access| access.protects_file(entry.path.as_str())) {
                        blobs.members_only.insert(entry.hash);
                    } else {
                        blobs.public.insert(entry.hash);
                    }
                }
                Ok::<_, TreeError>(Arc::new(blobs))
            })
            .await;
        match blobs {
            Ok(blobs) => blobs.public.contains(hash) || (audience.member && blobs.members_only.contains(hash)),
            Err(error) => {
                tracing::error!(%error, "listing a version's files failed");
                false
            }
        }
    }

    async fn tree_node(&self, hash: &ContentHash, request: &Request<'_>) -> Reply {
        let loaded = self
            .tree_node_bytes
            .try_get_with(*hash, async { self.tree_nodes.get(hash).await })
            .await;
        match loaded {
            Ok(bytes) => self.immutable_negotiated(hash, Body::Bytes(bytes), request).await,
            Err(error) if error.is_not_found() => Reply::text(StatusCode::NOT_FOUND, "no such tree node"),
            Err(error) => {
                tracing::error!(%hash, %error, "reading a tree node failed");
                Reply::unavailable()
            }
        }
    }

    /// A content-addressed object (tree node, blob), compressed once per
    /// coding when that makes it smaller: the service worker fetches every
    /// file it caches this way, so it must travel as small as a page would.
    async fn immutable_negotiated(&self, hash: &ContentHash, identity: Body, request: &Request<'_>) -> Reply {
        let wanted = semantics::negotiate(request.header(header::ACCEPT_ENCODING));
        let encoded = match identity.in_memory() {
            Some(bytes) => self.compressor.encode(*hash, wanted, bytes.clone()).await,
            None => None,
        };
        let (encoding, body) = match encoded {
            Some(encoded) => (wanted, Body::Bytes(encoded)),
            None => (Encoding::Identity, identity),
        };
        let mut reply = immutable(hash, encoding, body, request);
        reply.set(header::VARY, "Accept-Encoding");
        reply
    }

    async fn raw_blob(&self, hash: &ContentHash, request: &Request<'_>) -> Reply {
        match self.blobs.get_unsized(hash).await {
            Ok(blob @ CachedBlob::Memory { .. }) => self.immutable_negotiated(hash, blob.body(), request).await,
            Ok(blob @ CachedBlob::Disk { .. }) => immutable(hash, Encoding::Identity, blob.body(), request),
            Err(error) if matches!(*error, CacheError::Missing(_)) => {
                Reply::text(StatusCode::NOT_FOUND, "no such blob")
            }
            Err(error) => blob_failure(hash, &error),
        }
    }
}

/// `CDN-Cache-Control` of rendered pages: a short life, refreshed in the
/// background, so the edge is at most this stale when purges are throttled.
const RENDERED_CDN: &str = "public, s-maxage=10, stale-while-revalidate=30";

/// The file path a rendered page is served as (its cache tag): `/` is
/// `index.html`, `/posts/42/` is `posts/42/index.html`, `/about` is
/// `about.html`.
fn page_file(path: &RequestPath) -> String {
    match (path.path.as_str(), path.trailing_slash) {
        ("", _) => "index.html".to_owned(),
        (page, true) => format!("{page}/index.html"),
        (page, false) => format!("{page}.html"),
    }
}

/// Blob hashes kept for [`Grove::hands_out`], over every version cached
/// (about 50 bytes each).
const VERSION_BLOB_ENTRIES: u64 = 1_000_000;

/// The blobs of one version, by who may have them.
#[derive(Default)]
struct VersionBlobs {
    public: std::collections::HashSet<ContentHash>,
    members_only: std::collections::HashSet<ContentHash>,
}

/// Whether a file answers its own URL or stands in for another one (404
/// page, SPA index, rewrite target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Exact,
    Fallback,
}

/// What a prepared full reply depends on, borrowed from the request so a
/// lookup allocates nothing; [`PreparedKey::to_owned`] makes the stored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PreparedKey<'a> {
    site: &'a SiteName,
    version: u64,
    /// The raw request path (the query never changes a file reply).
    path: &'a str,
    encoding: Encoding,
    /// `robots.txt` differs by host.
    role: HostRole,
}

/// [`PreparedKey`] as the cache keeps it. Its fields, in the same order,
/// hash as the borrowed key's do, which [`Equivalent`] relies on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OwnedPreparedKey {
    site: SiteName,
    version: u64,
    path: String,
    encoding: Encoding,
    role: HostRole,
}

type PreparedReplies = quick_cache::sync::Cache<OwnedPreparedKey, Arc<Prepared>, PreparedWeight>;

/// A full reply kept for every request of its [`PreparedKey`], and its 304
/// made once beside it: a request that holds the ETag gets a copy of the
/// 304 as it is, where making it from the full reply would give that copy
/// header fields of its own, written out again on every request.
struct Prepared {
    full: Reply,
    not_modified: Reply,
}

impl Prepared {
    fn new(full: Reply) -> Self {
        let full = full.with_room_to_send();
        let not_modified = not_modified(full.clone());
        Self { full, not_modified }
    }

    /// The full reply, or its 304 if the request already has its ETag.
    fn answer(&self, request: &Request<'_>) -> Reply {
        if holds_current(&self.full, request) {
            self.not_modified.clone()
        } else {
            self.full.clone()
        }
    }
}

/// The prepared replies, `sizes.prepared_bytes` of them by weight. Bodies
/// are shared with the blob cache; the weight bounds how much memory
/// prepared replies can keep alive after the blob cache let go.
///
/// quick_cache, not moka: every page read looks a reply up here, and a hit
/// is a shard read lock and a flag, where moka's also records the read for
/// its housekeeping. quick_cache splits its budget among shards and admits
/// nothing heavier than a shard's share, so there are only as many shards as
/// still leave each room for two of the largest bodies the memory cache
/// keeps: by default one per CPU would give a 64 MiB cache 8 MiB shards, and
/// an 8 MiB asset would never be prepared.
fn prepared_replies(sizes: &CacheSizes) -> PreparedReplies {
    let largest = PreparedWeight::of_body(sizes.max_memory_object_bytes);
    let fitting = usize::try_from(sizes.prepared_bytes / largest.saturating_mul(2)).unwrap_or(usize::MAX);
    let per_cpu = std::thread::available_parallelism().map_or(1, usize::from) * 4;
    // A power of two, which quick_cache would otherwise round up to.
    let shards = fitting.clamp(1, per_cpu);
    let shards = 1 << shards.ilog2();
    let options = quick_cache::OptionsBuilder::new()
        .shards(shards)
        .estimated_items_capacity(usize::try_from(sizes.prepared_bytes / PreparedWeight::TYPICAL).unwrap_or(usize::MAX))
        .weight_capacity(sizes.prepared_bytes)
        .build()
        .expect("the prepared cache's options are complete");
    quick_cache::sync::Cache::with_options(options, PreparedWeight, Default::default(), Default::default())
}

/// What a prepared reply keeps alive: its body, and about a kilobyte of
/// headers and bookkeeping.
#[derive(Debug, Clone, Copy)]
struct PreparedWeight;

impl PreparedWeight {
    /// A small page's weight, to size the cache's table by.
    const TYPICAL: u64 = 8 * 1024;

    /// Never 0: quick_cache never evicts an item that weighs nothing.
    fn of_body(body_bytes: u64) -> u64 {
        body_bytes + 1024
    }
}

impl quick_cache::Weighter<OwnedPreparedKey, Arc<Prepared>> for PreparedWeight {
    fn weight(&self, _: &OwnedPreparedKey, prepared: &Arc<Prepared>) -> u64 {
        let body = prepared.full.body.in_memory().map_or(0, |bytes| bytes.len() as u64);
        Self::of_body(body)
    }
}

impl PreparedKey<'_> {
    fn to_owned(self) -> OwnedPreparedKey {
        OwnedPreparedKey {
            site: self.site.clone(),
            version: self.version,
            path: self.path.to_owned(),
            encoding: self.encoding,
            role: self.role,
        }
    }
}

impl Equivalent<OwnedPreparedKey> for PreparedKey<'_> {
    fn equivalent(&self, key: &OwnedPreparedKey) -> bool {
        *self.site == key.site
            && self.version == key.version
            && self.path == key.path
            && self.encoding == key.encoding
            && self.role == key.role
    }
}

/// What the version's database-backed pages make of a path.
enum PageAnswer {
    /// A rendered page, or the reason it cannot be had.
    Page(Reply),
    /// No route renders the path in this version, whatever the node holds:
    /// the static files answer it for good.
    NotAPage,
    /// A route matches, but the node holds no data for it now: the static
    /// files answer it until a write creates the data.
    NoDataYet,
}

/// True when the request picks its version by header, not by host.
/// The version a request pins itself to: the `x-grove-version` header, or
/// the `_grove_version` query parameter. The service worker uses the query,
/// because a CDN keys its cache by URL and would answer a header-pinned
/// request with the live version's copy.
fn pin_of<'a>(request: &'a Request<'_>) -> Option<&'a str> {
    request
        .header(VERSION_HEADER)
        .or_else(|| request.query_param(VERSION_QUERY))
}

fn pinned_by_request(target: &Target, request: &Request<'_>) -> bool {
    target.pinned.is_none() && pin_of(request).is_some()
}

/// A reply for a version the request pinned is for that client only: a
/// shared cache must never answer the unpinned URL with it, and it carries
/// no purge tags (a later purge could not reach it).
fn private_if(pinned_by_request: bool, mut reply: Reply) -> Reply {
    if pinned_by_request {
        reply.set(header::CACHE_CONTROL, "private, no-store");
        reply.headers.remove("cdn-cache-control");
        reply.headers.remove("cache-tag");
    }
    reply
}

/// A reply as its audience gets it: a live session's is for that client
/// only (never kept by a CDN or tagged) and says it is live; a stale
/// session cookie is cleared, on a reply no cache keeps.
fn for_audience(audience: Audience, reply: Reply) -> Reply {
    if audience.live {
        let mut reply = private_if(true, reply);
        reply.set(header::HeaderName::from_static(LIVE_HEADER), "1");
        return reply;
    }
    if audience.stale_cookie {
        let mut reply = private_if(true, reply);
        reply.set(header::SET_COOKIE, cookies::clear(cookies::SESSION));
        return reply;
    }
    reply
}

/// The refusal of a members-only file: a signed-in non-member gets 403, an
/// anonymous page load a redirect to sign in, anything else 401.
fn members_only(audience: Audience, request: &Request<'_>) -> Reply {
    if audience.live {
        Reply::text(
            StatusCode::FORBIDDEN,
            "this page is for members, and this account is not one",
        )
    } else if wants_page(request) {
        let back = with_query(request.path, request.query);
        let back: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
        Reply::redirect(StatusCode::FOUND, &format!("{AUTH_LOGIN}?return={back}"))
    } else {
        Reply::text(StatusCode::UNAUTHORIZED, "sign in to see this")
    }
}

/// Whether a request is a browser's page load (which a sign-in redirect
/// suits) rather than a fetch of a resource.
fn wants_page(request: &Request<'_>) -> bool {
    request.header("sec-fetch-dest").map_or_else(
        || {
            request
                .header(header::ACCEPT)
                .is_some_and(|accept| accept.contains("text/html"))
        },
        |dest| dest == "document",
    )
}

/// A full 200 reply, or a 304 if the request already has its ETag.
fn revalidate(reply: Reply, request: &Request<'_>) -> Reply {
    if holds_current(&reply, request) {
        not_modified(reply)
    } else {
        reply
    }
}

/// A copy of `headers` without `name`.
fn without(headers: &http::HeaderMap, name: &header::HeaderName) -> http::HeaderMap {
    let mut copy = headers.clone();
    copy.remove(name);
    copy
}

/// Whether the request's `If-None-Match` names the reply's ETag.
fn holds_current(reply: &Reply, request: &Request<'_>) -> bool {
    let etag = reply.headers.get(header::ETAG).and_then(|value| value.to_str().ok());
    etag.is_some_and(|etag| etag_matches(request, etag))
}

/// True if the request's `If-None-Match` names `etag`.
fn etag_matches(request: &Request<'_>, etag: &str) -> bool {
    request
        .header(header::IF_NONE_MATCH)
        .is_some_and(|tags| semantics::none_match(tags, etag))
}

/// Turns a full reply into its 304: same validators and caching headers, no
/// body or body-describing headers.
fn not_modified(mut reply: Reply) -> Reply {
    reply.status = StatusCode::NOT_MODIFIED;
    reply.body = Body::Empty;
    reply.headers.remove(header::CONTENT_TYPE);
    reply.headers.remove(header::CONTENT_ENCODING);
    reply
}

/// Per-request facts the file-serving steps share.
struct Context<'a> {
    site: &'a SiteName,
    /// Members-only files are refused to anyone else, whatever URL reached them.
    audience: Audience,
    /// HTML gets the service worker's register tag.
    service_worker: bool,
    request: &'a Request<'a>,
    rules: &'a SiteRules,
    url_path: &'a str,
    /// The files of the version served.
    files: VersionFiles<'a>,
}

struct VersionFiles<'a> {
    trees: &'a Trees,
    root: ContentHash,
}

impl Files for VersionFiles<'_> {
    async fn file(&self, path: &str) -> Result<Option<Entry>, TreeError> {
        match SitePath::parse(path) {
            Ok(path) => self.trees.lookup(&self.root, &path).await,
            Err(_) => Ok(None),
        }
    }
}

/// A content-addressed response: cacheable forever, revalidated by hash.
fn immutable(hash: &ContentHash, encoding: Encoding, body: Body, request: &Request<'_>) -> Reply {
    let mut reply = Reply::new(StatusCode::OK, body)
        .with(header::CONTENT_TYPE, "application/octet-stream")
        .with(header::ETAG, semantics::etag(hash, encoding))
        .with(header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    if let Some(token) = encoding.token() {
        reply.set(header::CONTENT_ENCODING, token);
    }
    revalidate(reply, request)
}

fn blob_failure(hash: &ContentHash, error: &CacheError) -> Reply {
    tracing::error!(%hash, %error, "serving a blob failed");
    match error {
        CacheError::Store(_) | CacheError::Disk(_) => Reply::unavailable(),
        CacheError::Missing(_) | CacheError::Corrupt { .. } => {
            Reply::text(StatusCode::BAD_GATEWAY, "the stored content is damaged; retry later")
                .with(header::RETRY_AFTER, "30")
        }
    }
}

pub(crate) fn with_query(location: &str, query: Option<&str>) -> String {
    match query {
        Some(query) if !query.is_empty() => format!("{location}?{query}"),
        _ => location.to_owned(),
    }
}

fn log_errors<T>(file: &str, (parsed, errors): (T, Vec<String>)) -> T {
    for error in errors {
        tracing::warn!(file, %error, "ignoring a bad rule");
    }
    parsed
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    /// The prepared cache finds a stored key from a borrowed one only if
    /// both hash alike and compare equal.
    #[test]
    fn a_borrowed_prepared_key_finds_its_owned_key() {
        let site = SiteName::parse("blog").unwrap();
        let other = SiteName::parse("shop").unwrap();
        let key = PreparedKey {
            site: &site,
            version: 7,
            path: "/docs/index.html",
            encoding: Encoding::Gzip,
            role: HostRole::Canonical,
        };
        let owned = key.to_owned();
        let hasher = std::collections::hash_map::RandomState::new();
        assert_eq!(hasher.hash_one(key), hasher.hash_one(&owned));
        assert!(key.equivalent(&owned));
        for different in [
            PreparedKey { site: &other, ..key },
            PreparedKey { version: 8, ..key },
            PreparedKey { path: "/docs/", ..key },
            PreparedKey {
                encoding: Encoding::Identity,
                ..key
            },
            PreparedKey {
                role: HostRole::Preview,
                ..key
            },
        ] {
            assert!(!different.equivalent(&owned), "{different:?}");
        }

        let cache = quick_cache::sync::Cache::new(16);
        cache.insert(owned, 1);
        assert_eq!(cache.get(&key), Some(1));
        assert_eq!(cache.get(&PreparedKey { version: 8, ..key }), None);
    }

    /// The largest body the memory cache keeps can be prepared, though
    /// quick_cache with a shard per CPU would refuse it.
    #[test]
    fn the_largest_memory_cached_body_fits_the_prepared_cache() {
        let sizes = CacheSizes {
            memory_bytes: 16 << 20,
            disk_bytes: 64 << 20,
            max_memory_object_bytes: 1 << 20,
            tree_node_entries: 1000,
            tree_node_bytes: 1 << 20,
            rule_sets: 10,
            compressed_bytes: 4 << 20,
            prepared_bytes: 4 << 20,
        };
        let site = SiteName::parse("blog").unwrap();
        let key = PreparedKey {
            site: &site,
            version: 1,
            path: "/assets/app.js",
            encoding: Encoding::Identity,
            role: HostRole::Canonical,
        };
        let largest = Body::Bytes(Bytes::from(vec![b'x'; 1 << 20]));
        let reply = Arc::new(Prepared::new(Reply::new(StatusCode::OK, largest)));

        let per_cpu_shards = quick_cache::sync::Cache::with_weighter(512, sizes.prepared_bytes, PreparedWeight);
        per_cpu_shards.insert(key.to_owned(), Arc::clone(&reply));
        assert!(per_cpu_shards.get(&key).is_none());

        let prepared = prepared_replies(&sizes);
        prepared.insert(key.to_owned(), reply);
        assert!(prepared.get(&key).is_some());
    }
}
