//! The publish API over HTTP: one method per route, bearer auth, JSON, and
//! retries with jittered backoff for what a retry can fix (connection
//! failures, 429, 5xx). Counts requests and bytes sent, which the publish
//! summary and the benchmarks report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use grove_storage::ContentHash;
use grove_storage::SiteName;
use grove_storage::publish_api::{
    self, ApiError, CommitRequest, GrantReply, GrantRequest, Offer, OfferReply, ProbeReply, Published, RevokeRequest,
    RollbackRequest, UploadTarget, VersionsReply,
};
use reqwest::{Method, StatusCode};
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
    Api { status: StatusCode, body: ApiError },
    #[error("{method} {url}: {source}")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
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

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    base: String,
    token: String,
    traffic: Arc<Traffic>,
}

/// A request body.
enum Payload {
    None,
    Json(Vec<u8>),
    Binary(Bytes),
}

impl Client {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            traffic: Arc::default(),
        })
    }

    pub fn traffic(&self) -> (u64, u64) {
        (
            self.traffic.requests.load(Ordering::Relaxed),
            self.traffic.sent_bytes.load(Ordering::Relaxed),
        )
    }

    fn site_route(site: &SiteName, rest: &str) -> String {
        format!("{}/sites/{site}/{rest}", publish_api::PREFIX)
    }

    pub async fn offer(&self, site: &SiteName, root: ContentHash) -> Result<OfferReply, ClientError> {
        self.json(Method::POST, &Self::site_route(site, "offer"), &Offer { root })
            .await
    }

    pub async fn probe(&self, site: &SiteName, batch: Bytes) -> Result<ProbeReply, ClientError> {
        let body = self
            .send(Method::POST, &Self::site_route(site, "probe"), || {
                Payload::Binary(batch.clone())
            })
            .await?;
        parse(&body)
    }

    pub async fn store_nodes(&self, site: &SiteName, batch: Bytes) -> Result<(), ClientError> {
        self.send(Method::POST, &Self::site_route(site, "nodes"), || {
            Payload::Binary(batch.clone())
        })
        .await
        .map(drop)
    }

    pub async fn node(&self, site: &SiteName, hash: &ContentHash) -> Result<Bytes, ClientError> {
        self.send(Method::GET, &Self::site_route(site, &format!("nodes/{hash}")), || {
            Payload::None
        })
        .await
    }

    pub async fn commit(&self, site: &SiteName, commit: &CommitRequest) -> Result<Published, ClientError> {
        self.json(Method::POST, &Self::site_route(site, "commit"), commit).await
    }

    pub async fn rollback(&self, site: &SiteName, to: Option<u64>) -> Result<Published, ClientError> {
        self.json(
            Method::POST,
            &Self::site_route(site, "rollback"),
            &RollbackRequest { to },
        )
        .await
    }

    pub async fn versions(&self, site: &SiteName, before: Option<u64>) -> Result<VersionsReply, ClientError> {
        let query = before.map_or_else(String::new, |before| format!("?before={before}"));
        let body = self
            .send(
                Method::GET,
                &Self::site_route(site, &format!("versions{query}")),
                || Payload::None,
            )
            .await?;
        parse(&body)
    }

    pub async fn grant(&self, grant: &GrantRequest) -> Result<GrantReply, ClientError> {
        self.json(Method::POST, &format!("{}/tokens/grant", publish_api::PREFIX), grant)
            .await
    }

    pub async fn revoke(&self, handle: &str) -> Result<(), ClientError> {
        let revoke = RevokeRequest {
            handle: handle.to_owned(),
        };
        self.json::<serde_json::Value>(Method::POST, &format!("{}/tokens/revoke", publish_api::PREFIX), &revoke)
            .await
            .map(drop)
    }

    /// Sends one blob to its target: the host (with the bearer token) or a
    /// presigned store URL (with exactly the signed headers).
    pub async fn upload(&self, target: &UploadTarget, bytes: Bytes) -> Result<(), ClientError> {
        if target.via_host() {
            return self
                .send(Method::PUT, &target.url, || Payload::Binary(bytes.clone()))
                .await
                .map(drop);
        }
        let sent = bytes.len() as u64;
        self.retrying(Method::PUT, &target.url, sent, || {
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
    ) -> Result<T, ClientError> {
        let encoded = serde_json::to_vec(body).expect("requests serialize");
        let reply = self.send(method, path, || Payload::Json(encoded.clone())).await?;
        parse(&reply)
    }

    async fn send(&self, method: Method, path: &str, payload: impl Fn() -> Payload) -> Result<Bytes, ClientError> {
        let url = format!("{}{path}", self.base);
        let sent = match payload() {
            Payload::None => 0,
            Payload::Json(bytes) => bytes.len() as u64,
            Payload::Binary(bytes) => bytes.len() as u64,
        };
        self.retrying(method.clone(), &url, sent, || {
            let request = self.http.request(method.clone(), &url).bearer_auth(&self.token);
            match payload() {
                Payload::None => request,
                Payload::Json(bytes) => request.header("content-type", "application/json").body(bytes),
                Payload::Binary(bytes) => request.header("content-type", "application/octet-stream").body(bytes),
            }
        })
        .await
    }

    async fn retrying(
        &self,
        method: Method,
        url: &str,
        sent: u64,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Bytes, ClientError> {
        let shown = redact(url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.traffic.requests.fetch_add(1, Ordering::Relaxed);
            self.traffic.sent_bytes.fetch_add(sent, Ordering::Relaxed);
            let transport = |source| ClientError::Transport {
                method: method.clone(),
                url: shown.clone(),
                source,
            };
            let (error, retry, retry_after) = match build().send().await {
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
                            api_error(&method, &shown, status, &body),
                            retryable(status),
                            retry_after,
                        ),
                        Err(source) => (transport(source), true, None),
                    }
                }
                Err(source) => (transport(source), true, None),
            };
            if !retry || attempt >= ATTEMPTS {
                return Err(error);
            }
            let backoff = FIRST_BACKOFF * 2u32.pow(attempt - 1);
            let jitter = backoff.mul_f64(rand::random::<f64>());
            tokio::time::sleep(retry_after.unwrap_or(backoff + jitter).min(Duration::from_secs(30))).await;
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn api_error(method: &Method, url: &str, status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(body) => ClientError::Api { status, body },
        Err(_) => ClientError::Protocol {
            method: method.clone(),
            url: url.to_owned(),
            status,
            detail: String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_owned(),
        },
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|error| ClientError::Protocol {
        method: Method::GET,
        url: String::new(),
        status: StatusCode::OK,
        detail: error.to_string(),
    })
}

/// A URL without its query, which for a presigned URL holds the signature.
fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}
