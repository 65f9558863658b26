//! The publish API over HTTP: one method per route, bearer auth, JSON, and
//! retries with jittered backoff for what a retry can fix (connection
//! failures, 429, 5xx). Counts requests and bytes sent, which the publish
//! summary and the benchmarks report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use grove_core::ContentHash;
use grove_core::SiteName;
use grove_core::api_error::ApiError;
use grove_core::publish_api::{
    self, CommitRequest, GrantReply, GrantRequest, Offer, OfferReply, ProbeReply, Published, PurgeStatus,
    RevokeRequest, RollbackRequest, UploadTarget, VersionsReply,
};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Attempts per request before giving up on a retryable failure.
const ATTEMPTS: u32 = 6;
/// First backoff; doubled per attempt, with up to 100% jitter added.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host answered with an API error.
    #[error("{}: {}", .status, .body.message)]
    Api { status: StatusCode, body: Box<ApiError> },
    #[error("{method} {url}: {source}")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the reply to {what} is not what the protocol says: {detail}")]
    Reply { what: String, detail: String },
    #[error("{method} {url}: the host answered {status} with an unexpected body: {detail}")]
    Protocol {
        method: Method,
        url: String,
        status: StatusCode,
        detail: String,
    },
}

impl ClientError {
    /// The API error code (`conflict`, `missing_content`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { body, .. } => Some(&body.error),
            _ => None,
        }
    }

    /// True if an object store refused an upload because its bytes do not
    /// match the signed SHA-256 checksum.
    pub fn is_checksum_refusal(&self) -> bool {
        matches!(self, Self::Protocol { status, detail, .. }
            if *status == StatusCode::BAD_REQUEST && (detail.contains("BadDigest") || detail.contains("Checksum")))
    }
}

/// Requests made and request bytes sent, over the client's lifetime.
#[derive(Debug, Default)]
pub struct Traffic {
    pub requests: AtomicU64,
    pub sent_bytes: AtomicU64,
}

/// A client of one host's publish API, with one token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    base: String,
    token: SecretString,
    traffic: Arc<Traffic>,
}

/// Whether a request may be sent again after it may have reached the host.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Repeating it changes nothing more than doing it once.
    Idempotent,
    /// Retried only if it never reached the host (the connection failed).
    /// A commit or rollback that reached the host may have made a version
    /// even though its reply was lost.
    IfUnsent,
}

/// A request body.
enum Payload {
    None,
    Json(Vec<u8>),
    Binary(Bytes),
}

impl Client {
    /// `base` is the host's URL (`http://host:port`); `token` a bearer handle.
    pub fn new(base: &str, token: &SecretString) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.clone(),
            traffic: Arc::default(),
        })
    }

    /// Requests made and bytes sent so far, retries included.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.traffic.requests.load(Ordering::Relaxed),
            self.traffic.sent_bytes.load(Ordering::Relaxed),
        )
    }

    fn site_route(site: &SiteName, rest: &str) -> String {
        format!("{}/sites/{site}/{rest}", publish_api::PREFIX)
    }

    /// Step 1 of a publish: the live version and whether the host lacks `root`.
    pub async fn offer(&self, site: &SiteName, root: ContentHash, files: u64) -> Result<OfferReply, ClientError> {
        let route = Self::site_route(site, "offer");
        let offer = Offer {
            root,
            files: Some(files),
        };
        self.json(Method::POST, &route, &offer, Retry::Idempotent).await
    }

    /// Step 2: what the host lacks under the nodes of `batch`.
    pub async fn probe(&self, site: &SiteName, batch: Bytes) -> Result<ProbeReply, ClientError> {
        let route = Self::site_route(site, "probe");
        let reply = self
            .send(
                Method::POST,
                &route,
                || Payload::Binary(batch.clone()),
                Retry::Idempotent,
            )
            .await?;
        parse(&reply, "probe")
    }

    /// Step 3b: stores a batch of nodes whose children are all stored.
    pub async fn store_tree_nodes(&self, site: &SiteName, batch: Bytes) -> Result<(), ClientError> {
        let route = Self::site_route(site, "nodes");
        self.send(
            Method::POST,
            &route,
            || Payload::Binary(batch.clone()),
            Retry::Idempotent,
        )
        .await
        .map(drop)
    }

    /// One of the host's tree nodes, for diffs against the live version.
    pub async fn node(&self, site: &SiteName, hash: &ContentHash) -> Result<Bytes, ClientError> {
        let route = Self::site_route(site, &format!("nodes/{hash}"));
        self.send(Method::GET, &route, || Payload::None, Retry::Idempotent)
            .await
    }

    /// Step 4: makes the offered tree the next version.
    pub async fn commit(&self, site: &SiteName, commit: &CommitRequest) -> Result<Published, ClientError> {
        let route = Self::site_route(site, "commit");
        self.json(Method::POST, &route, commit, Retry::IfUnsent).await
    }

    /// A new version with the tree of version `to` (default: the previous).
    pub async fn rollback(&self, site: &SiteName, to: Option<u64>) -> Result<Published, ClientError> {
        let route = Self::site_route(site, "rollback");
        self.json(Method::POST, &route, &RollbackRequest { to }, Retry::IfUnsent)
            .await
    }

    /// A page of at most `limit` versions (the host's page size if `None`),
    /// newest first, from `before` down.
    pub async fn versions(
        &self,
        site: &SiteName,
        before: Option<u64>,
        limit: Option<usize>,
    ) -> Result<VersionsReply, ClientError> {
        let query: Vec<String> = [
            before.map(|before| format!("before={before}")),
            limit.map(|limit| format!("limit={limit}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let route = Self::site_route(site, &format!("versions{query}"));
        let reply = self
            .send(Method::GET, &route, || Payload::None, Retry::Idempotent)
            .await?;
        parse(&reply, "versions")
    }

    /// Where version `n`'s CDN purge stands.
    pub async fn purge(&self, site: &SiteName, n: u64) -> Result<PurgeStatus, ClientError> {
        let route = Self::site_route(site, &format!("purges/{n}"));
        let reply = self
            .send(Method::GET, &route, || Payload::None, Retry::Idempotent)
            .await?;
        parse(&reply, "purge status")
    }

    /// A new token, granted on the authority of this client's.
    pub async fn grant(&self, grant: &GrantRequest) -> Result<GrantReply, ClientError> {
        let route = format!("{}/tokens/grant", publish_api::PREFIX);
        self.json(Method::POST, &route, grant, Retry::IfUnsent).await
    }

    /// Revokes `handle` and every token granted through it.
    pub async fn revoke(&self, handle: &str) -> Result<(), ClientError> {
        let revoke = RevokeRequest {
            handle: handle.to_owned(),
        };
        let route = format!("{}/tokens/revoke", publish_api::PREFIX);
        self.json::<serde_json::Value>(Method::POST, &route, &revoke, Retry::IfUnsent)
            .await
            .map(drop)
    }

    /// Sends one blob to its target: the host (with the bearer token) or a
    /// presigned store URL (with exactly the signed headers). Uploads are
    /// idempotent: the bytes are named by their hash.
    pub async fn upload(&self, target: &UploadTarget, bytes: Bytes) -> Result<(), ClientError> {
        if target.via_host() {
            return self
                .send(
                    Method::PUT,
                    &target.url,
                    || Payload::Binary(bytes.clone()),
                    Retry::Idempotent,
                )
                .await
                .map(drop);
        }
        self.retrying(&Method::PUT, &target.url, Retry::Idempotent, || {
            let mut request = self.http.put(&target.url).body(bytes.clone());
            for (name, value) in &target.headers {
                request = request.header(name, value);
            }
            request
        })
        .await
        .map(drop)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
        retry: Retry,
    ) -> Result<T, ClientError> {
        let encoded = serde_json::to_vec(body).expect("requests serialize");
        let reply = self
            .send(method, path, || Payload::Json(encoded.clone()), retry)
            .await?;
        parse(&reply, path)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        payload: impl Fn() -> Payload,
        retry: Retry,
    ) -> Result<Bytes, ClientError> {
        let url = format!("{}{path}", self.base);
        self.retrying(&method, &url, retry, || {
            let request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.token.expose_secret());
            match payload() {
                Payload::None => request,
                Payload::Json(bytes) => request.header("content-type", "application/json").body(bytes),
                Payload::Binary(bytes) => request.header("content-type", "application/octet-stream").body(bytes),
            }
        })
        .await
    }

    /// Sends the request `build` makes, retrying with jittered exponential
    /// backoff (or the host's `Retry-After`) while that can help.
    async fn retrying(
        &self,
        method: &Method,
        url: &str,
        retry: Retry,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Bytes, ClientError> {
        let shown = redact(url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let transport = |source: reqwest::Error| ClientError::Transport {
                method: method.clone(),
                url: shown.clone(),
                source: source.without_url(),
            };
            let request = build().build().map_err(transport)?;
            self.count(&request);
            let (error, retryable, retry_after) = match self.http.execute(request).await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match response.bytes().await {
                        Ok(body) if status.is_success() => return Ok(body),
                        Ok(body) => (
                            api_error(method, &shown, status, &body),
                            retry == Retry::Idempotent && transient(status),
                            retry_after,
                        ),
                        Err(source) => (transport(source), retry == Retry::Idempotent, None),
                    }
                }
                Err(source) => {
                    let unsent = source.is_connect();
                    (transport(source), unsent || retry == Retry::Idempotent, None)
                }
            };
            if !retryable || attempt >= ATTEMPTS {
                return Err(error);
            }
            let backoff = FIRST_BACKOFF * 2u32.pow(attempt - 1);
            let jitter = backoff.mul_f64(rand::random::<f64>());
            tokio::time::sleep(retry_after.unwrap_or(backoff + jitter).min(Duration::from_secs(30))).await;
        }
    }

    /// Counts a request and its size on the wire: request line, headers and
    /// body (HTTP/1.1 framing).
    fn count(&self, request: &reqwest::Request) {
        let line = request.method().as_str().len() + request.url().as_str().len() + 12;
        let headers: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        let body = request.body().and_then(|body| body.as_bytes()).map_or(0, <[u8]>::len);
        self.traffic.requests.fetch_add(1, Ordering::Relaxed);
        self.traffic
            .sent_bytes
            .fetch_add((line + headers + body + 2) as u64, Ordering::Relaxed);
    }
}

/// Statuses that say "try again later".
fn transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn api_error(method: &Method, url: &str, status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<Box<ApiError>>(body) {
        Ok(body) => ClientError::Api { status, body },
        Err(_) => ClientError::Protocol {
            method: method.clone(),
            url: url.to_owned(),
            status,
            detail: String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_owned(),
        },
    }
}

/// Parses a successful reply to `what`.
fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|error| ClientError::Reply {
        what: what.to_owned(),
        detail: error.to_string(),
    })
}

/// A URL without its query, which for a presigned URL holds the signature.
fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}
