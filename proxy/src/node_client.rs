//! The proxy as a client of storage nodes, for what it does on behalf of
//! signed-in users: calls their sessions may make, the revocation feed and
//! the live streams' watches. It authenticates with operator handles of its
//! own, made in the token store the first time each is needed (only their
//! hashes are stored); browsers never see them. Users' calls and the
//! proxy's own (revocations, watches) use different handles, so the node's
//! per-handle rate limit that busy users reach never delays a revocation.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use grove_core::SiteName;
use grove_core::api_error::ApiFailure;
use grove_core::node_api::{ChangeEvent, ChildrenReply, TsReply};
use grove_core::timestamp::Timestamp;
use grove_core::token::Handle;
use grove_objects::store::ObjectStore;
use grove_objects::token::Tokens;
use http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::OnceCell;

use crate::node::NodeDirectory;
use crate::reply::{Body, Reply};

/// How long the proxy's own handle is valid; a new one is made at each start.
const HANDLE_DAYS: i64 = 365;

/// One entry a watch delivered.
#[derive(Debug, Clone, Deserialize)]
pub struct WatchedEntry {
    pub ts: Timestamp,
    pub data: Box<RawValue>,
}

/// On whose behalf a call is made, which picks the handle it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Signed-in users' calls, through their sessions.
    Users,
    /// The proxy's own: the revocation feed and the live streams' watches.
    Proxy,
    /// Database-backed pages' reads, metered apart (the node limits each
    /// handle's requests a second), so a burst of renders never holds up
    /// the revocation feed.
    Pages,
}

/// A node's reply to a forwarded call, whole.
pub struct ForwardedReply {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl ForwardedReply {
    /// The node's answer as the proxy's reply: its status, body and type,
    /// never cached.
    pub fn into_reply(self) -> Reply {
        let mut reply = Reply::new(self.status, Body::Bytes(self.body)).with(http::header::CACHE_CONTROL, "no-store");
        if let Some(content_type) = self.content_type {
            reply.set(http::header::CONTENT_TYPE, content_type);
        }
        reply
    }
}

pub struct NodeClient {
    directory: NodeDirectory,
    http: reqwest::Client,
    tokens: Tokens,
    users_handle: OnceCell<Handle>,
    proxy_handle: OnceCell<Handle>,
    pages_handle: OnceCell<Handle>,
}

impl NodeClient {
    pub fn new(directory: NodeDirectory, store: Arc<dyn ObjectStore>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(directory.connect_timeout())
            .read_timeout(directory.read_timeout())
            .build()
            .expect("a reqwest client builds");
        Self {
            directory,
            http,
            tokens: Tokens::new(store),
            users_handle: OnceCell::new(),
            proxy_handle: OnceCell::new(),
            pages_handle: OnceCell::new(),
        }
    }

    async fn handle(&self, caller: Caller) -> Result<&Handle, ApiFailure> {
        let cell = match caller {
            Caller::Users => &self.users_handle,
            Caller::Proxy => &self.proxy_handle,
            Caller::Pages => &self.pages_handle,
        };
        cell.get_or_try_init(|| async {
            let until = time::OffsetDateTime::now_utc() + time::Duration::days(HANDLE_DAYS);
            self.tokens.issue_root(until).await
        })
        .await
        .map_err(|error| unavailable(format!("the proxy's node handle could not be made: {error}")))
    }

    fn url(&self, site: &SiteName, call: &str, query: Option<&str>) -> Result<String, ApiFailure> {
        let address = self.directory.address_of(site)?;
        Ok(match query {
            Some(query) => format!("http://{address}/v1/sites/{site}/{call}?{query}"),
            None => format!("http://{address}/v1/sites/{site}/{call}"),
        })
    }

    /// Sends a call for `caller` and returns the node's answer as it is.
    pub async fn forward(
        &self,
        caller: Caller,
        method: http::Method,
        site: &SiteName,
        call: &str,
        query: Option<&str>,
        body: Bytes,
    ) -> Result<ForwardedReply, ApiFailure> {
        let bearer = self.handle(caller).await?.reveal().to_owned();
        self.relay(&bearer, None, method, site, call, query, body).await
    }

    /// Sends a call with the caller's own `bearer` handle. With a followed
    /// directory, a call that finds no primary (the node is gone, or
    /// redirects, or has none yet) is sent again as the directory catches
    /// up with a failover, for up to [`FAILOVER_PATIENCE`]; a write then
    /// carries an `Idempotency-Key` (the caller's, or one made here), so
    /// the node stores it once however often it is sent.
    #[allow(clippy::too_many_arguments)]
    pub async fn relay(
        &self,
        bearer: &str,
        idempotency_key: Option<&str>,
        method: http::Method,
        site: &SiteName,
        call: &str,
        query: Option<&str>,
        body: Bytes,
    ) -> Result<ForwardedReply, ApiFailure> {
        let retries = self.directory.follows_etcd();
        let made_key;
        let idempotency_key = match idempotency_key {
            None if retries && matches!(call, "write" | "txn") => {
                made_key = format!("grove-proxy-{:032x}", rand::random::<u128>());
                Some(made_key.as_str())
            }
            other => other,
        };
        let deadline = tokio::time::Instant::now() + FAILOVER_PATIENCE;
        let mut failures = 0;
        loop {
            let sent = async {
                let url = self.url(site, call, query).map_err(|failure| (false, failure))?;
                let mut request = self
                    .http
                    .request(method.clone(), url)
                    .bearer_auth(bearer)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                if let Some(key) = idempotency_key {
                    request = request.header("idempotency-key", key);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|error| (error.is_connect(), node_failed(error)))?;
                let status = response.status();
                let content_type = response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let body = response.bytes().await.map_err(|error| (false, node_failed(error)))?;
                Ok(ForwardedReply {
                    status,
                    content_type,
                    body,
                })
            };
            let result: Result<ForwardedReply, (bool, ApiFailure)> = sent.await;
            let again = retries
                && match &result {
                    Ok(reply) => finds_no_primary(reply),
                    // Not sent at all, or a write whose key makes it safe.
                    Err((connect, failure)) => {
                        *connect
                            || failure.body.error == "node_unavailable"
                            || (idempotency_key.is_some() && matches!(call, "write" | "txn"))
                    }
                };
            let pause = backoff(failures).min(Duration::from_millis(500));
            if !again || tokio::time::Instant::now() + pause > deadline {
                return match result {
                    Ok(reply) if reply.status == StatusCode::TEMPORARY_REDIRECT => Err(unavailable(format!(
                        "site {site}'s primary moved and the directory has not caught up; retry shortly"
                    ))),
                    Ok(reply) => Ok(reply),
                    Err((_, failure)) => Err(failure),
                };
            }
            failures += 1;
            tokio::time::sleep(pause).await;
        }
    }

    /// Appends `data` to `path` as the proxy.
    pub async fn write(&self, site: &SiteName, path: &str, data: &serde_json::Value) -> Result<Timestamp, ApiFailure> {
        let body = serde_json::json!({ "path": path, "data": data });
        let reply = self
            .forward(
                Caller::Proxy,
                http::Method::POST,
                site,
                "write",
                None,
                Bytes::from(body.to_string()),
            )
            .await?;
        if reply.status != StatusCode::OK {
            return Err(refused("write", reply.status, &reply.body));
        }
        let ts: TsReply = serde_json::from_slice(&reply.body)
            .map_err(|error| ApiFailure::new(StatusCode::BAD_GATEWAY, "node_reply", error.to_string()))?;
        Ok(ts.ts)
    }

    /// The entries of `path` after `after`, as they are written. The stream
    /// ends (with an error) when the node closes it or goes quiet.
    pub async fn watch(
        &self,
        site: &SiteName,
        path: &str,
        after: Timestamp,
    ) -> Result<impl Stream<Item = Result<WatchedEntry, ApiFailure>> + Send + 'static + use<>, ApiFailure> {
        let query = format!("path={}&after={after}", encoded(path));
        self.events(site, "watch", &query).await
    }

    /// Every write of `site` after `after`: its timestamp and paths.
    pub async fn changes(
        &self,
        site: &SiteName,
        after: Timestamp,
    ) -> Result<impl Stream<Item = Result<ChangeEvent, ApiFailure>> + Send + 'static + use<>, ApiFailure> {
        self.events(site, "changes", &format!("after={after}")).await
    }

    /// Up to `limit` entries of `path` written before `before`, newest first.
    pub async fn read_newest(
        &self,
        site: &SiteName,
        path: &str,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<WatchedEntry>, ApiFailure> {
        let query = format!("path={}&order=newest&before={before}&limit={limit}", encoded(path));
        let reply: ReadPage = self.get_json(site, "read", &query).await?;
        Ok(reply.entries)
    }

    /// The names directly under `path` that hold data.
    pub async fn children(&self, site: &SiteName, path: &str) -> Result<Vec<String>, ApiFailure> {
        let reply: ChildrenReply = self
            .get_json(site, "children", &format!("path={}", encoded(path)))
            .await?;
        Ok(reply.names)
    }

    /// Whether `path`, or some path below it, holds an entry.
    pub async fn holds_data(&self, site: &SiteName, path: &str) -> Result<bool, ApiFailure> {
        if !self
            .read_newest(site, path, Timestamp::from_u64(u64::MAX), 1)
            .await?
            .is_empty()
        {
            return Ok(true);
        }
        Ok(!self.children(site, path).await?.is_empty())
    }

    /// A GET for database-backed pages, its JSON reply parsed.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        site: &SiteName,
        call: &str,
        query: &str,
    ) -> Result<T, ApiFailure> {
        let reply = self
            .forward(Caller::Pages, http::Method::GET, site, call, Some(query), Bytes::new())
            .await?;
        if reply.status != StatusCode::OK {
            return Err(refused(call, reply.status, &reply.body));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|error| ApiFailure::new(StatusCode::BAD_GATEWAY, "node_reply", error.to_string()))
    }

    /// An event stream of the node as the proxy, parsed into `T`s.
    async fn events<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        site: &SiteName,
        call: &str,
        query: &str,
    ) -> Result<impl Stream<Item = Result<T, ApiFailure>> + Send + 'static + use<T>, ApiFailure> {
        let url = self.url(site, call, Some(query))?;
        let response = self
            .http
            .get(url)
            .bearer_auth(self.handle(Caller::Proxy).await?.reveal())
            .send()
            .await
            .map_err(node_failed)?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            return Err(refused(call, status, &body));
        }
        Ok(server_sent_events(response.bytes_stream()))
    }
}

/// The node answered `call` with an error of its own.
fn refused(call: &str, status: StatusCode, body: &[u8]) -> ApiFailure {
    ApiFailure::new(
        StatusCode::BAD_GATEWAY,
        "node_refused",
        format!(
            "the node answered {call} with {status}: {}",
            String::from_utf8_lossy(body)
        ),
    )
}

/// A page of a read, as the proxy keeps it.
#[derive(Deserialize)]
struct ReadPage {
    entries: Vec<WatchedEntry>,
}

fn encoded(path: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC)
}

/// Parses a node's event stream into `T`s; an `error` event or a broken
/// stream ends it with an error.
fn server_sent_events<T: serde::de::DeserializeOwned + Send + 'static>(
    bytes: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
) -> impl Stream<Item = Result<T, ApiFailure>> + Send + 'static {
    futures::stream::unfold(
        (Box::pin(bytes), BytesMut::new(), false),
        |(mut bytes, mut buffer, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(end) = find_event_end(&buffer) {
                    let event = buffer.split_to(end + 2);
                    let text = String::from_utf8_lossy(&event);
                    let mut kind = "message";
                    let mut data = String::new();
                    for line in text.lines() {
                        if let Some(value) = line.strip_prefix("event:") {
                            kind = if value.trim() == "error" { "error" } else { "message" };
                        } else if let Some(value) = line.strip_prefix("data:") {
                            data.push_str(value.strip_prefix(' ').unwrap_or(value));
                        }
                    }
                    if data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    if kind == "error" {
                        let failure = ApiFailure::new(StatusCode::BAD_GATEWAY, "watch_ended", data);
                        return Some((Err(failure), (bytes, buffer, true)));
                    }
                    let entry = serde_json::from_str::<T>(&data)
                        .map_err(|error| ApiFailure::new(StatusCode::BAD_GATEWAY, "node_reply", error.to_string()));
                    let done = entry.is_err();
                    return Some((entry, (bytes, buffer, done)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(error)) => return Some((Err(node_failed(error)), (bytes, buffer, true))),
                    None => {
                        let failure =
                            ApiFailure::new(StatusCode::BAD_GATEWAY, "watch_ended", "the node closed the watch");
                        return Some((Err(failure), (bytes, buffer, true)));
                    }
                }
            }
        },
    )
}

fn find_event_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|pair| pair == b"\n\n")
}

fn node_failed(error: reqwest::Error) -> ApiFailure {
    let (status, code) = if error.is_timeout() {
        (StatusCode::GATEWAY_TIMEOUT, "node_timeout")
    } else {
        (StatusCode::BAD_GATEWAY, "node_unreachable")
    };
    ApiFailure::new(status, code, format!("the storage node failed: {error}"))
}

/// How long a call waits for a site's primary after a failover: the
/// nodes' default lease TTL (10 s) and then some.
pub const FAILOVER_PATIENCE: Duration = Duration::from_secs(15);

/// A node's reply meaning the call was not carried out there because the
/// site's primary is elsewhere or not yet known: a redirect, or a 503
/// naming that.
fn finds_no_primary(reply: &ForwardedReply) -> bool {
    if reply.status == StatusCode::TEMPORARY_REDIRECT {
        return true;
    }
    reply.status == StatusCode::SERVICE_UNAVAILABLE
        && serde_json::from_slice::<grove_core::api_error::ApiError>(&reply.body).is_ok_and(|error| {
            matches!(
                error.error.as_str(),
                "no_primary" | "lease_lost" | "directory_unavailable"
            )
        })
}

fn unavailable(message: String) -> ApiFailure {
    ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "node_unavailable", message)
}

/// The pause before reconnecting to a node after `failures` failures in a
/// row: 100 ms, doubling, at most 5 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_become_entries_and_an_error_event_ends_the_stream() {
        let chunks: Vec<reqwest::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b": keep-alive\n\nid: 4096\ndata: {\"ts\":\"40")),
            Ok(Bytes::from_static(b"96\",\"data\":{\"a\":1}}\n\n")),
            Ok(Bytes::from_static(b"event: error\ndata: {\"error\":\"trimmed\"}\n\n")),
            Ok(Bytes::from_static(b"data: {\"never\":1}\n\n")),
        ];
        let events: Vec<Result<WatchedEntry, _>> = server_sent_events(futures::stream::iter(chunks)).collect().await;
        assert_eq!(events.len(), 2, "the error ends it");
        let entry = events[0].as_ref().unwrap();
        assert_eq!(entry.data.get(), "{\"a\":1}");
        assert_eq!(entry.ts.to_string(), "4096");
        assert_eq!(events[1].as_ref().unwrap_err().body.error, "watch_ended");
    }
}
