//! The publish API (`/_grove/api/publish/v1/...`): HTTP, JSON and bearer
//! tokens around the storage core's [`Deployer`]. The protocol itself is
//! documented in [`grove_storage::publish_api`].

use std::sync::Arc;

use bytes::Bytes;
use grove_storage::deploy::{DeployError, DeployLimits, Deployed, Deployer, Limit};
use grove_storage::publish_api::{
    self, ApiError, CommitRequest, GrantReply, GrantRequest, Offer, Published, PurgeState, RevokeRequest,
    RollbackRequest, VersionsReply,
};
use grove_storage::site::SiteError;
use grove_storage::store::ObjectStore;
use grove_storage::token::{Handle, Right, TokenError, Tokens};
use grove_storage::tree::Trees;
use grove_storage::{ContentHash, SiteName};
use http::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::Request;
use crate::config::Config;
use crate::purge::{self, Outbox, PurgeSetup, QueueError};
use crate::reply::{Body, Reply};
use crate::roots::Roots;
use crate::routing::preview_host;

/// Versions listed per page unless the client asks for fewer.
const VERSIONS_PAGE: usize = 100;

/// The publish API of one host: a [`Deployer`] and the token store, behind
/// HTTP routes.
pub struct PublishApi {
    deployer: Deployer,
    /// For purge statuses, which live beside the site's versions.
    store: Arc<dyn ObjectStore>,
    tokens: Tokens,
    roots: Arc<Roots>,
    config: Config,
    /// Queues each new version's CDN purge; none when no CDN is configured.
    outbox: Option<Outbox>,
}

/// One route, parsed.
enum Route {
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

impl Route {
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
    route: Route,
    handle: Handle,
}

impl PublishApi {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        trees: Trees,
        roots: Arc<Roots>,
        config: Config,
        purge: Option<&PurgeSetup>,
    ) -> Self {
        let limits = DeployLimits {
            max_file_bytes: config.publish.max_file_bytes,
            max_files_per_site: config.publish.max_files_per_site,
        };
        let deployer = Deployer::new(Arc::clone(&store), trees, limits);
        Self {
            outbox: purge.map(|setup| setup.outbox(Arc::clone(&store), deployer.sites().clone())),
            deployer,
            tokens: Tokens::new(Arc::clone(&store)),
            store,
            roots,
            config,
        }
    }

    /// True for requests this API answers.
    pub fn owns(path: &str) -> bool {
        path.starts_with(publish_api::PREFIX) && path[publish_api::PREFIX.len()..].starts_with('/')
    }

    /// Routes the request and checks its token, so that nobody without the
    /// right can make the host read (and hold) a body.
    pub async fn begin(&self, request: &Request<'_>) -> Result<Call, Failure> {
        let route = route(request.method, &request.path[publish_api::PREFIX.len()..])?;
        let handle = bearer(request)?;
        if let Some((site, right)) = route.requires() {
            self.tokens.check(&handle, &format!("sites/{site}"), right).await?;
        }
        Ok(Call { route, handle })
    }

    /// The largest body `call` may carry: a whole file for a blob upload, the
    /// general request limit otherwise. Returns the limit and its
    /// configuration key.
    pub fn body_limit(&self, call: &Call) -> (u64, &'static str) {
        match call.route {
            Route::UploadBlob(..) => (self.config.publish.max_file_bytes, Limit::FileBytes.key()),
            _ => (self.config.http.max_request_body_bytes, "http.max_request_body_bytes"),
        }
    }

    /// Answers an authorized call whose body has been read whole.
    pub async fn finish(&self, call: Call, request: &Request<'_>, body: Bytes) -> Reply {
        match self.dispatch(call, request, body).await {
            Ok(reply) => reply,
            Err(failure) => failure.into_reply(),
        }
    }

    async fn dispatch(&self, call: Call, request: &Request<'_>, body: Bytes) -> Result<Reply, Failure> {
        let Call { route, handle } = call;
        match route {
            Route::Offer(site) => {
                let offer: Offer = json_body(&body)?;
                let mut reply = self.deployer.offer(&site, &offer).await?;
                reply.max_request_bytes = Some(self.config.http.max_request_body_bytes);
                json(StatusCode::OK, &reply)
            }
            Route::Probe(site) => json(StatusCode::OK, &self.deployer.probe(&site, &body).await?),
            Route::StoreNodes(_) => {
                let stored = self.deployer.store_nodes(&body).await?;
                json(StatusCode::OK, &serde_json::json!({ "stored": stored }))
            }
            Route::ReadNode(_, hash) => {
                let node = self.deployer.node_bytes(&hash).await?;
                Ok(Reply::new(StatusCode::OK, Body::Bytes(node))
                    .with(header::CONTENT_TYPE, "application/octet-stream")
                    .with(header::CACHE_CONTROL, "no-store"))
            }
            Route::UploadBlob(_, hash) => {
                self.deployer.upload_blob(&hash, body).await?;
                json(StatusCode::CREATED, &serde_json::json!({ "hash": hash }))
            }
            Route::Commit(site) => {
                let commit: CommitRequest = json_body(&body)?;
                self.before_commit(&site).await?;
                let deployed = self.deployer.commit(&site, commit).await;
                self.roots.expire(&site);
                json(StatusCode::OK, &self.published(&site, deployed?).await)
            }
            Route::Rollback(site) => {
                let rollback: RollbackRequest = json_body(&body)?;
                self.before_commit(&site).await?;
                let deployed = self.deployer.rollback(&site, rollback.to).await;
                self.roots.expire(&site);
                json(StatusCode::OK, &self.published(&site, deployed?).await)
            }
            Route::Versions(site) => {
                let (before, limit) = page_query(request.query)?;
                let page = self.deployer.sites().versions(&site, before, limit).await?;
                let store = &self.store;
                let statuses = futures::future::try_join_all(
                    page.versions
                        .iter()
                        .map(|version| purge::read_status(store.as_ref(), &site, version.n)),
                )
                .await
                .map_err(|error| Failure::unavailable(&error))?;
                json(
                    StatusCode::OK,
                    &VersionsReply {
                        live: page.live,
                        versions: page.versions,
                        next_before: page.next_before,
                        purges: statuses.into_iter().flatten().collect(),
                    },
                )
            }
            Route::Purge(site, n) => {
                let status = purge::read_status(self.store.as_ref(), &site, n)
                    .await
                    .map_err(|error| Failure::unavailable(&error))?;
                match status {
                    Some(status) => json(StatusCode::OK, &status),
                    None => Err(Failure::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("no CDN purge is recorded for version {n} of {site}"),
                    )),
                }
            }
            Route::Grant => {
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
            Route::Revoke => {
                let revoke: RevokeRequest = json_body(&body)?;
                let target = Handle::parse(revoke.handle.trim())?;
                self.tokens.revoke(&handle, &target).await?;
                json(StatusCode::OK, &serde_json::json!({ "revoked": true }))
            }
        }
    }

    /// Makes sure the new version's purge cannot be lost; refusing the
    /// commit is better than a CDN silently serving it stale.
    async fn before_commit(&self, site: &SiteName) -> Result<(), Failure> {
        match &self.outbox {
            Some(outbox) => outbox.before_commit(site).await.map_err(Failure::from),
            None => Ok(()),
        }
    }

    async fn published(&self, site: &SiteName, deployed: Deployed) -> Published {
        let Deployed { version, files } = deployed;
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
        }
    }
}

fn route(method: &Method, path: &str) -> Result<Route, Failure> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let site = |name: &str| SiteName::parse(name).map_err(|error| Failure::bad_request(error.to_string()));
    let hash = |text: &str| {
        text.parse::<ContentHash>()
            .map_err(|error| Failure::bad_request(error.to_string()))
    };
    let route = match (method, segments.as_slice()) {
        (&Method::POST, ["sites", name, "offer"]) => Route::Offer(site(name)?),
        (&Method::POST, ["sites", name, "probe"]) => Route::Probe(site(name)?),
        (&Method::POST, ["sites", name, "nodes"]) => Route::StoreNodes(site(name)?),
        (&Method::GET, ["sites", name, "nodes", node]) => Route::ReadNode(site(name)?, hash(node)?),
        (&Method::PUT, ["sites", name, "blobs", blob]) => Route::UploadBlob(site(name)?, hash(blob)?),
        (&Method::POST, ["sites", name, "commit"]) => Route::Commit(site(name)?),
        (&Method::POST, ["sites", name, "rollback"]) => Route::Rollback(site(name)?),
        (&Method::GET, ["sites", name, "versions"]) => Route::Versions(site(name)?),
        (&Method::GET, ["sites", name, "purges", n]) => Route::Purge(
            site(name)?,
            n.parse()
                .map_err(|_| Failure::bad_request(format!("{n} is not a version number")))?,
        ),
        (&Method::POST, ["tokens", "grant"]) => Route::Grant,
        (&Method::POST, ["tokens", "revoke"]) => Route::Revoke,
        _ => {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("no publish API route {method} {path}"),
            ));
        }
    };
    Ok(route)
}

fn bearer(request: &Request<'_>) -> Result<Handle, Failure> {
    let value = request
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is required"))?;
    let token = value.strip_prefix("Bearer ").ok_or_else(|| {
        Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "use Authorization: Bearer <token>",
        )
    })?;
    Ok(Handle::parse(token.trim())?)
}

fn page_query(query: Option<&str>) -> Result<(Option<u64>, usize), Failure> {
    let mut before = None;
    let mut limit = VERSIONS_PAGE;
    for pair in query.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| Failure::bad_request(format!("{key} must be a number")))
        };
        match key {
            "before" => before = Some(number()?),
            "limit" => limit = usize::try_from(number()?).unwrap_or(usize::MAX).clamp(1, VERSIONS_PAGE),
            _ => return Err(Failure::bad_request(format!("unknown query parameter {key}"))),
        }
    }
    Ok((before, limit))
}

fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|error| Failure::bad_request(format!("invalid JSON body: {error}")))
}

fn json(status: StatusCode, value: &impl Serialize) -> Result<Reply, Failure> {
    let body = serde_json::to_vec(value).expect("API replies serialize");
    Ok(Reply::new(status, Body::Bytes(Bytes::from(body)))
        .with(header::CONTENT_TYPE, "application/json")
        .with(header::CACHE_CONTROL, "no-store"))
}

/// An error reply in the API's JSON shape: `{error, message}` plus the
/// details some codes carry.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    body: ApiError,
}

impl Failure {
    /// `code` is the stable, machine-readable `error` field.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ApiError {
                error: code.to_owned(),
                message: message.into(),
                limit: None,
                current: None,
                missing_blobs: Vec::new(),
            },
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A request body over `limit` (named by its configuration key).
    pub fn too_large(limit: &str, value: u64) -> Self {
        let mut failure = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
            format!("the request body is larger than {limit} = {value} bytes"),
        );
        failure.body.limit = Some(limit.to_owned());
        failure
    }

    fn unavailable(error: &dyn std::error::Error) -> Self {
        tracing::error!(%error, "publish API: the store failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the object store failed; retry shortly ({error})"),
        )
    }

    /// The JSON reply, with `Retry-After` on 503 and `WWW-Authenticate` on 401.
    pub fn into_reply(self) -> Reply {
        let retry = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut reply = json(self.status, &self.body).expect("errors serialize");
        if retry {
            reply.set(header::RETRY_AFTER, "5");
        }
        if unauthorized {
            reply.set(header::WWW_AUTHENTICATE, "Bearer");
        }
        reply
    }
}

impl From<TokenError> for Failure {
    fn from(error: TokenError) -> Self {
        if let TokenError::Record(error) = &error {
            return Self::unavailable(error);
        }
        let (status, code) = error.status_and_code();
        let status = StatusCode::from_u16(status).expect("token error statuses are valid");
        Self::new(status, code, error.to_string())
    }
}

impl From<QueueError> for Failure {
    fn from(error: QueueError) -> Self {
        Self::unavailable(&error)
    }
}

impl From<SiteError> for Failure {
    fn from(error: SiteError) -> Self {
        let message = error.to_string();
        match error {
            SiteError::Conflict { current, .. } => {
                let mut failure = Self::new(StatusCode::CONFLICT, "conflict", message);
                failure.body.current = Some(current);
                failure
            }
            SiteError::UnknownVersion { .. } | SiteError::NoVersions { .. } => {
                Self::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            SiteError::MessageTooLong => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
            SiteError::MissingTree { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "incomplete_tree", message),
            // Recorded, but not yet live: a retry would record another version.
            SiteError::RootNotAdvanced { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "root_not_advanced", message)
            }
            SiteError::Record(_) | SiteError::Contention { .. } => Self::unavailable(&error),
        }
    }
}

impl From<DeployError> for Failure {
    fn from(error: DeployError) -> Self {
        let message = error.to_string();
        match error {
            DeployError::Limit { limit, .. } => {
                let status = match limit {
                    Limit::FileBytes => StatusCode::PAYLOAD_TOO_LARGE,
                    Limit::FilesPerSite => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let mut failure = Self::new(status, "limit", message);
                failure.body.limit = Some(limit.key().to_owned());
                failure
            }
            DeployError::Batch(_) => Self::bad_request(message),
            DeployError::BadNode { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_node", message),
            DeployError::MalformedTree(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_tree", message),
            DeployError::HashMismatch { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch", message),
            DeployError::IncompleteTree(_) | DeployError::ChildMissing { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "incomplete_tree", message)
            }
            DeployError::MissingContent(targets) => {
                let mut failure = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "missing_content", message);
                failure.body.missing_blobs = targets;
                failure
            }
            DeployError::Invalid(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
            DeployError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            DeployError::Site(error) => (*error).into(),
            DeployError::Tree(error) => Self::unavailable(&error),
            DeployError::Store(error) => Self::unavailable(&error),
            DeployError::Content(error) => Self::unavailable(&error),
        }
    }
}
