//! The publish API (`/_grove/api/publish/v1/...`): HTTP, JSON and bearer
//! tokens around the storage core's [`PublishHost`]. The protocol itself is
//! documented in [`grove_core::publish_api`].

use std::sync::Arc;

use bytes::Bytes;
use grove_core::api_error::ApiFailure;
use grove_core::keys::token_path;
use grove_core::publish_api::{
    CommitRequest, GrantReply, GrantRequest, Offer, Published, PurgeState, RevokeRequest, RollbackRequest,
    VersionsReply,
};
use grove_core::token::{Handle, Right};
use grove_core::tree::Trees;
use grove_core::{ContentHash, SiteName};
use grove_objects::api_failure::store_failed;
use grove_objects::content::ContentStore;
use grove_objects::journal::JournalEntry;
use grove_objects::publish::{Committed, Limit, PublishError, PublishHost, PublishLimits};
use grove_objects::store::ObjectStore;
use grove_objects::token::Tokens;
use http::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::edges::push::Push;
use crate::hosts::preview_host;
use crate::pages::{self, LoadError};
use crate::purge::{self, Outbox, PurgeSetup, QueueError};
use crate::reply::{Body, Reply};
use crate::request::Request;
use crate::roots::Roots;

/// Versions listed per page unless the client asks for fewer.
const VERSIONS_PAGE: usize = 100;

/// The publish API of one host: a [`PublishHost`] and the token store, behind
/// HTTP routes.
pub struct PublishApi {
    host: PublishHost,
    /// For the pages check: a version's templates are read before it commits.
    trees: Trees,
    blobs: ContentStore,
    /// For purge statuses, which live beside the site's versions.
    store: Arc<dyn ObjectStore>,
    tokens: Tokens,
    roots: Arc<Roots>,
    /// Tells the other edges of each commit.
    push: Arc<Push>,
    config: Config,
    /// Queues each new version's CDN purge; none when no CDN is configured.
    outbox: Option<Outbox>,
}

/// A finished call: a reply, or a new version to report.
pub enum Finished {
    Reply(Reply),
    Published(Published),
}

/// One route, parsed.
enum PublishRoute {
    Offer(SiteName),
    Probe(SiteName),
    StoreNodes(SiteName),
    ReadNode(SiteName, ContentHash),
    UploadBlob(SiteName, ContentHash),
    Commit(SiteName),
    Rollback(SiteName),
    Versions(SiteName),
    Purge(SiteName, u64),
    Grant,
    Revoke,
}

impl PublishRoute {
    /// The site and right a site route needs; token routes are authorized
    /// by the token store itself, against the path in their body.
    fn requires(&self) -> Option<(&SiteName, Right)> {
        match self {
            Self::Offer(site)
            | Self::Probe(site)
            | Self::StoreNodes(site)
            | Self::UploadBlob(site, _)
            | Self::Commit(site)
            | Self::Rollback(site) => Some((site, Right::Write)),
            Self::ReadNode(site, _) | Self::Versions(site) | Self::Purge(site, _) => Some((site, Right::Read)),
            Self::Grant | Self::Revoke => None,
        }
    }
}

/// A request that was routed and authorized from its header alone, before
/// any of its body was read.
pub struct Call {
    route: PublishRoute,
    handle: Handle,
}

impl PublishApi {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        trees: Trees,
        roots: Arc<Roots>,
        push: Arc<Push>,
        config: Config,
        purge: Option<&PurgeSetup>,
    ) -> Self {
        let limits = PublishLimits {
            max_file_bytes: config.publish.max_file_bytes,
            max_files_per_site: config.publish.max_files_per_site,
        };
        let host = PublishHost::new(Arc::clone(&store), trees.clone(), limits);
        Self {
            trees,
            blobs: ContentStore::blobs(Arc::clone(&store)),
            outbox: purge.map(|setup| setup.outbox(Arc::clone(&store), host.sites().clone())),
            host,
            tokens: Tokens::new(Arc::clone(&store)),
            store,
            roots,
            push,
            config,
        }
    }

    /// Routes the request and checks its token, so that nobody without the
    /// right can make the host read (and hold) a body.
    /// `rest` is the path after the API's prefix (see [`crate::route`]).
    pub async fn begin(&self, request: &Request<'_>, rest: &str) -> Result<Call, ApiFailure> {
        let route = publish_route(request.method, rest)?;
        let handle = bearer(request)?;
        if let Some((site, right)) = route.requires() {
            self.tokens.check(&handle, &token_path::site(site), right).await?;
        }
        Ok(Call { route, handle })
    }

    /// The largest body `call` may carry: a whole file for a blob upload, the
    /// general request limit otherwise. Returns the limit and its
    /// configuration key.
    pub fn body_limit(&self, call: &Call) -> (u64, &'static str) {
        match call.route {
            PublishRoute::UploadBlob(..) => (self.config.publish.max_file_bytes, Limit::FileBytes.key()),
            _ => (self.config.http.max_request_body_bytes, "http.max_request_body_bytes"),
        }
    }

    /// Answers an authorized call whose body has been read whole. A new
    /// version comes back as [`Finished::Published`], for the server to add
    /// what only it knows (the sitemap it serves) before replying.
    pub async fn finish(&self, call: Call, request: &Request<'_>, body: Bytes) -> Result<Finished, ApiFailure> {
        let Call { route, handle } = call;
        match route {
            PublishRoute::Offer(site) => {
                let offer: Offer = json_body(&body)?;
                let mut reply = self.host.offer(&site, &offer).await?;
                reply.max_request_bytes = Some(self.config.http.max_request_body_bytes);
                json(StatusCode::OK, &reply)
            }
            PublishRoute::Probe(site) => json(StatusCode::OK, &self.host.probe(&site, &body).await?),
            PublishRoute::StoreNodes(_) => {
                let stored = self.host.store_tree_nodes(&body).await?;
                json(StatusCode::OK, &serde_json::json!({ "stored": stored }))
            }
            PublishRoute::ReadNode(_, hash) => {
                let node = self.host.tree_node_bytes(&hash).await?;
                Ok(Finished::Reply(
                    Reply::new(StatusCode::OK, Body::Bytes(node))
                        .with(header::CONTENT_TYPE, "application/octet-stream")
                        .with(header::CACHE_CONTROL, "no-store"),
                ))
            }
            PublishRoute::UploadBlob(_, hash) => {
                self.host.upload_blob(&hash, body).await?;
                json(StatusCode::CREATED, &serde_json::json!({ "hash": hash }))
            }
            PublishRoute::Commit(site) => {
                let commit: CommitRequest = json_body(&body)?;
                self.check_pages(&commit.root).await?;
                self.before_commit(&site).await?;
                let committed = self.host.commit(&site, commit).await;
                self.roots.expire(&site);
                let committed = committed?;
                self.announce(&site, &committed);
                Ok(Finished::Published(self.published(&site, committed).await))
            }
            PublishRoute::Rollback(site) => {
                let rollback: RollbackRequest = json_body(&body)?;
                self.before_commit(&site).await?;
                let committed = self.host.rollback(&site, rollback.to).await;
                self.roots.expire(&site);
                let committed = committed?;
                self.announce(&site, &committed);
                Ok(Finished::Published(self.published(&site, committed).await))
            }
            PublishRoute::Versions(site) => {
                let (before, limit) = page_query(request.query)?;
                let page = self.host.sites().versions(&site, before, limit).await?;
                let store = &self.store;
                let statuses = futures::future::try_join_all(
                    page.versions
                        .iter()
                        .map(|version| purge::read_status(store.as_ref(), &site, version.n)),
                )
                .await
                .map_err(|error| store_failed(&error))?;
                let render_failures = futures::future::try_join_all(
                    page.versions
                        .iter()
                        .map(|version| pages::failures::read(store.as_ref(), &site, version.n)),
                )
                .await
                .map_err(|error| store_failed(&error))?;
                json(
                    StatusCode::OK,
                    &VersionsReply {
                        live: page.live,
                        versions: page.versions,
                        next_before: page.next_before,
                        purges: statuses.into_iter().flatten().collect(),
                        render_failures: render_failures.into_iter().flatten().collect(),
                    },
                )
            }
            PublishRoute::Purge(site, n) => {
                let status = purge::read_status(self.store.as_ref(), &site, n)
                    .await
                    .map_err(|error| store_failed(&error))?;
                match status {
                    Some(status) => json(StatusCode::OK, &status),
                    None => Err(ApiFailure::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("no CDN purge is recorded for version {n} of {site}"),
                    )),
                }
            }
            PublishRoute::Grant => {
                let grant: GrantRequest = json_body(&body)?;
                let granted = self
                    .tokens
                    .grant(&handle, &grant.path, &grant.rights, grant.until)
                    .await?;
                json(
                    StatusCode::CREATED,
                    &GrantReply {
                        handle: granted.reveal().to_owned(),
                        until: grant.until,
                    },
                )
            }
            PublishRoute::Revoke => {
                let revoke: RevokeRequest = json_body(&body)?;
                let target = Handle::parse(revoke.handle.trim())?;
                self.tokens.revoke(&handle, &target).await?;
                json(StatusCode::OK, &serde_json::json!({ "revoked": true }))
            }
        }
    }

    /// Refuses a version whose route file or templates do not parse, with
    /// the file and line at fault: its pages could never render.
    async fn check_pages(&self, root: &ContentHash) -> Result<(), ApiFailure> {
        match pages::load(&self.trees, &self.blobs, root).await {
            Ok(_) => Ok(()),
            Err(error @ (LoadError::Invalid(_) | LoadError::NotText { .. })) => Err(ApiFailure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_pages",
                error.to_string(),
            )),
            Err(LoadError::Tree(error)) => Err(PublishError::from(error).into()),
            Err(error @ LoadError::Blob { .. }) => Err(ApiFailure::store_unavailable(&error)),
        }
    }

    /// Makes sure the new version's purge cannot be lost; refusing the
    /// commit is better than a CDN silently serving it stale.
    async fn before_commit(&self, site: &SiteName) -> Result<(), ApiFailure> {
        match &self.outbox {
            Some(outbox) => outbox.before_commit(site).await.map_err(ApiFailure::from),
            None => Ok(()),
        }
    }

    /// Tells the other edges at once; they would otherwise learn of it at
    /// their next journal read.
    fn announce(&self, site: &SiteName, committed: &Committed) {
        self.push.announce(JournalEntry {
            site: site.clone(),
            version: committed.version.n,
            tree: committed.version.tree,
        });
    }

    async fn published(&self, site: &SiteName, committed: Committed) -> Published {
        let Committed { version, files } = committed;
        let purge = match &self.outbox {
            Some(outbox) => {
                outbox.after_commit(site, version.n).await;
                Some(if version.n == 1 {
                    PurgeState::Done
                } else {
                    PurgeState::Pending
                })
            }
            None => None,
        };
        let host = format!("{site}.{}", self.config.base_domain);
        Published {
            purge,
            site: site.to_string(),
            version: version.n,
            root: version.tree,
            files,
            url: self.config.site_url(&host),
            preview_url: self.config.site_url(&preview_host(version.n, &host)),
            sitemap: None,
        }
    }
}

fn publish_route(method: &Method, path: &str) -> Result<PublishRoute, ApiFailure> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let site = |name: &str| SiteName::parse(name).map_err(|error| ApiFailure::bad_request(error.to_string()));
    let hash = |text: &str| {
        text.parse::<ContentHash>()
            .map_err(|error| ApiFailure::bad_request(error.to_string()))
    };
    let route = match (method, segments.as_slice()) {
        (&Method::POST, ["sites", name, "offer"]) => PublishRoute::Offer(site(name)?),
        (&Method::POST, ["sites", name, "probe"]) => PublishRoute::Probe(site(name)?),
        (&Method::POST, ["sites", name, "nodes"]) => PublishRoute::StoreNodes(site(name)?),
        (&Method::GET, ["sites", name, "nodes", node]) => PublishRoute::ReadNode(site(name)?, hash(node)?),
        (&Method::PUT, ["sites", name, "blobs", blob]) => PublishRoute::UploadBlob(site(name)?, hash(blob)?),
        (&Method::POST, ["sites", name, "commit"]) => PublishRoute::Commit(site(name)?),
        (&Method::POST, ["sites", name, "rollback"]) => PublishRoute::Rollback(site(name)?),
        (&Method::GET, ["sites", name, "versions"]) => PublishRoute::Versions(site(name)?),
        (&Method::GET, ["sites", name, "purges", n]) => PublishRoute::Purge(
            site(name)?,
            n.parse()
                .map_err(|_| ApiFailure::bad_request(format!("{n} is not a version number")))?,
        ),
        (&Method::POST, ["tokens", "grant"]) => PublishRoute::Grant,
        (&Method::POST, ["tokens", "revoke"]) => PublishRoute::Revoke,
        _ => {
            return Err(ApiFailure::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("no publish API route {method} {path}"),
            ));
        }
    };
    Ok(route)
}

fn bearer(request: &Request<'_>) -> Result<Handle, ApiFailure> {
    let value = request
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| ApiFailure::new(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is required"))?;
    let token = value.strip_prefix("Bearer ").ok_or_else(|| {
        ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "use Authorization: Bearer <token>",
        )
    })?;
    Ok(Handle::parse(token.trim())?)
}

fn page_query(query: Option<&str>) -> Result<(Option<u64>, usize), ApiFailure> {
    let mut before = None;
    let mut limit = VERSIONS_PAGE;
    for pair in query.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| ApiFailure::bad_request(format!("{key} must be a number")))
        };
        match key {
            "before" => before = Some(number()?),
            "limit" => limit = usize::try_from(number()?).unwrap_or(usize::MAX).clamp(1, VERSIONS_PAGE),
            _ => return Err(ApiFailure::bad_request(format!("unknown query parameter {key}"))),
        }
    }
    Ok((before, limit))
}

fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiFailure> {
    serde_json::from_slice(body).map_err(|error| ApiFailure::bad_request(format!("invalid JSON body: {error}")))
}

fn json(status: StatusCode, value: &impl Serialize) -> Result<Finished, ApiFailure> {
    Ok(Finished::Reply(Reply::json(status, value)))
}

impl From<QueueError> for ApiFailure {
    fn from(error: QueueError) -> Self {
        tracing::error!(%error, "publish API: the purge queue's store failed");
        ApiFailure::store_unavailable(&error)
    }
}
