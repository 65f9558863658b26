//! The node's HTTP API. These shapes are the contract (extend, don't break):
//!
//! - `POST /v1/sites/<site>/create {path, serialized}`
//! - `POST /v1/sites/<site>/grant {path, until, rights}` -> `{handle}`
//! - `POST /v1/sites/<site>/revoke {handle}`
//! - `POST /v1/sites/<site>/write {path, data, after}` -> `{ts}`
//! - `GET /v1/sites/<site>/read?path&after&limit` -> `{entries: [{ts, data}], next}`
//! - `GET /v1/sites/<site>/watch?path&after`: Server-Sent Events, one per
//!   entry, `id` = its timestamp; `Last-Event-ID` resumes
//! - `POST /v1/sites/<site>/trim {path, before}`
//! - `POST /v1/sites/<site>/txn {path, if_last_ts, writes: [{path?, data}]}`
//!   -> `{ts}`: every write under one timestamp, if `path`'s latest entry is
//!   `if_last_ts` (`"0"`: none); a write without `path` goes to the txn's
//!   own path. Paths must be distinct.
//!
//! Timestamps are decimal strings. Every call takes `Authorization: Bearer`
//! with a handle from the token store the publish API uses; a data path
//! `p` of site `s` is the token path `sites/s/p`. Errors are JSON
//! `{error, message}`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::hlc::{ClockError, Timestamp};
use super::log::{Log, LogError, Watch};
use crate::names::SiteName;
use crate::token::{Handle, Right, TokenError, TokenId, Tokens};

/// Limits of the API; all configurable (the proxy reads them from its
/// config file's `[node.limits]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeLimits {
    /// Largest `data` value, in bytes of JSON.
    pub max_value_bytes: usize,
    /// Most entries one read returns.
    pub max_read_entries: usize,
    /// Open watches per handle.
    pub max_watchers_per_handle: usize,
    /// Requests per second per handle.
    pub requests_per_second: u32,
    /// Most writes one transaction takes.
    pub max_txn_writes: usize,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            max_value_bytes: 64 * 1024,
            max_read_entries: 1000,
            max_watchers_per_handle: 16,
            requests_per_second: 200,
            max_txn_writes: 64,
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// The API over one log and one token store.
pub struct NodeApi {
    log: Arc<Log>,
    tokens: Tokens,
    limits: NodeLimits,
    watchers: Arc<Mutex<HashMap<TokenId, usize>>>,
    /// Requests in the current one-second window, per handle.
    rates: Mutex<HashMap<TokenId, (Instant, u32)>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    path: String,
    #[serde(default)]
    serialized: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteRequest {
    path: String,
    data: Box<serde_json::value::RawValue>,
    #[serde(default)]
    after: Option<Timestamp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnRequest {
    path: String,
    if_last_ts: Timestamp,
    writes: Vec<TxnWrite>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnWrite {
    #[serde(default)]
    path: Option<String>,
    data: Box<serde_json::value::RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrimRequest {
    path: String,
    before: Timestamp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    path: String,
    #[serde(with = "time::serde::rfc3339")]
    until: OffsetDateTime,
    rights: Vec<Right>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    handle: String,
}

#[derive(Serialize)]
struct WireEntry<'a> {
    ts: Timestamp,
    data: &'a serde_json::value::RawValue,
}

impl NodeApi {
    pub fn new(log: Arc<Log>, tokens: Tokens, limits: NodeLimits) -> Self {
        Self {
            log,
            tokens,
            limits,
            watchers: Arc::default(),
            rates: Mutex::default(),
        }
    }

    /// Serves HTTP/1.1 on `listener` until `stop` resolves. Then requests
    /// in flight get a moment to finish, and every connection (open watches
    /// included) is closed, so nothing holds the log when this returns.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let api = Arc::clone(&self);
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |request| {
                                let api = Arc::clone(&api);
                                async move { Ok::<_, Infallible>(api.handle(request).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Err(error) => {
                        // Out of descriptors, say: not a reason to stop serving.
                        tracing::warn!(%error, "storage node accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let drained = tokio::time::timeout(Duration::from_millis(500), async {
            while connections.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        self.route(request).await.unwrap_or_else(Failure::into_response)
    }

    async fn route(&self, request: Request<Incoming>) -> Result<Response<Body>, Failure> {
        let path = request.uri().path().to_owned();
        let Some((site, op)) = path.strip_prefix("/v1/sites/").and_then(|rest| rest.split_once('/')) else {
            return Err(Failure::new(StatusCode::NOT_FOUND, "no_route", "no such route"));
        };
        let site = SiteName::parse(site).map_err(|error| Failure::bad_request(error.to_string()))?;
        let handle = bearer(&request)?;
        self.admit(&handle)?;
        let query = Query::parse(request.uri().query());
        match (request.method(), op) {
            (&Method::POST, "create") => {
                let create: CreateRequest = json_body(request, 4096).await?;
                self.check(&handle, &site, &create.path, Right::Write).await?;
                self.log.create(&site, &create.path, create.serialized).await?;
                json(StatusCode::OK, &serde_json::json!({}))
            }
            (&Method::POST, "write") => {
                let write: WriteRequest = json_body(request, self.limits.max_value_bytes + 4096).await?;
                self.check_size(&write.data)?;
                let record = self.check(&handle, &site, &write.path, Right::Write).await?;
                let ts = self
                    .log
                    .append(
                        &site,
                        &write.path,
                        write.data.get().to_owned(),
                        &record.id.0.to_hex(),
                        write.after.unwrap_or(Timestamp::ZERO),
                    )
                    .await?;
                json(StatusCode::OK, &serde_json::json!({ "ts": ts }))
            }
            (&Method::POST, "txn") => {
                let limit = self.limits.max_txn_writes * (self.limits.max_value_bytes + 1024) + 4096;
                let txn: TxnRequest = json_body(request, limit).await?;
                if txn.writes.len() > self.limits.max_txn_writes {
                    return Err(Failure::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("a transaction takes at most {} writes", self.limits.max_txn_writes),
                    ));
                }
                let mut writes = Vec::with_capacity(txn.writes.len());
                for write in txn.writes {
                    self.check_size(&write.data)?;
                    let path = write.path.unwrap_or_else(|| txn.path.clone());
                    writes.push((path, write.data.get().to_owned()));
                }
                let mut checks = vec![(txn.path.as_str(), Right::Read)];
                checks.extend(writes.iter().map(|(path, _)| (path.as_str(), Right::Write)));
                let record = self.check_all(&handle, &site, &checks).await?;
                let ts = self
                    .log
                    .txn(&site, &txn.path, txn.if_last_ts, writes, &record.id.0.to_hex())
                    .await?;
                json(StatusCode::OK, &serde_json::json!({ "ts": ts }))
            }
            (&Method::GET, "read") => {
                let data_path = query.required("path")?;
                self.check(&handle, &site, data_path, Right::Read).await?;
                let after = query.timestamp("after")?.unwrap_or(Timestamp::ZERO);
                let limit = match query.get("limit") {
                    Some(limit) => limit
                        .parse::<usize>()
                        .map_err(|_| Failure::bad_request("limit must be a number"))?,
                    None => self.limits.max_read_entries,
                }
                .clamp(1, self.limits.max_read_entries);
                let page = self.log.read(&site, data_path, after, limit)?;
                let entries: Vec<WireEntry<'_>> = page
                    .entries
                    .iter()
                    .map(|entry| WireEntry {
                        ts: entry.ts,
                        data: &entry.data,
                    })
                    .collect();
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "entries": entries, "next": page.next }),
                )
            }
            (&Method::GET, "watch") => {
                let data_path = query.required("path")?.to_owned();
                let record = self.check(&handle, &site, &data_path, Right::Read).await?;
                let resume = request
                    .headers()
                    .get("last-event-id")
                    .map(|value| {
                        value
                            .to_str()
                            .ok()
                            .and_then(|text| text.parse::<Timestamp>().ok())
                            .ok_or_else(|| Failure::bad_request("Last-Event-ID must be a timestamp"))
                    })
                    .transpose()?;
                let after = match resume {
                    Some(resume) => resume,
                    None => query.timestamp("after")?.unwrap_or(Timestamp::ZERO),
                };
                let slot = WatcherSlot::take(&self.watchers, record.id, self.limits.max_watchers_per_handle)?;
                let watch = self.log.watch(&site, &data_path, after)?;
                Ok(sse(watch, slot))
            }
            (&Method::POST, "trim") => {
                let trim: TrimRequest = json_body(request, 4096).await?;
                self.check(&handle, &site, &trim.path, Right::Write).await?;
                self.log.trim(&site, &trim.path, trim.before).await?;
                json(StatusCode::OK, &serde_json::json!({}))
            }
            (&Method::POST, "grant") => {
                let grant: GrantRequest = json_body(request, 4096).await?;
                let granted = self
                    .tokens
                    .grant(
                        &handle,
                        &format!("sites/{site}/{}", grant.path),
                        &grant.rights,
                        grant.until,
                    )
                    .await?;
                json(StatusCode::CREATED, &serde_json::json!({ "handle": granted.reveal() }))
            }
            (&Method::POST, "revoke") => {
                let revoke: RevokeRequest = json_body(request, 4096).await?;
                let target = Handle::parse(revoke.handle.trim())?;
                self.tokens.revoke(&handle, &target).await?;
                json(StatusCode::OK, &serde_json::json!({ "revoked": true }))
            }
            _ => Err(Failure::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("no route {op}"),
            )),
        }
    }

    fn check_size(&self, data: &serde_json::value::RawValue) -> Result<(), Failure> {
        if data.get().len() > self.limits.max_value_bytes {
            return Err(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("data is larger than the limit of {} bytes", self.limits.max_value_bytes),
            ));
        }
        Ok(())
    }

    /// The per-handle request rate, in one-second windows.
    fn admit(&self, handle: &Handle) -> Result<(), Failure> {
        let mut rates = self.rates.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let window = rates.entry(handle.id()).or_insert((now, 0));
        if now.duration_since(window.0) >= Duration::from_secs(1) {
            *window = (now, 0);
        }
        window.1 += 1;
        if window.1 > self.limits.requests_per_second {
            return Err(Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {} requests a second", self.limits.requests_per_second),
            ));
        }
        Ok(())
    }

    async fn check(
        &self,
        handle: &Handle,
        site: &SiteName,
        path: &str,
        right: Right,
    ) -> Result<crate::token::TokenRecord, Failure> {
        self.check_all(handle, site, &[(path, right)]).await
    }

    /// Checks every `(data path, right)` with one load of the token and its
    /// grant chain.
    async fn check_all(
        &self,
        handle: &Handle,
        site: &SiteName,
        checks: &[(&str, Right)],
    ) -> Result<crate::token::TokenRecord, Failure> {
        for (path, _) in checks {
            super::log::check_path(path)?;
        }
        let token_paths: Vec<String> = checks.iter().map(|(path, _)| format!("sites/{site}/{path}")).collect();
        let token_checks: Vec<(&str, Right)> = token_paths
            .iter()
            .zip(checks)
            .map(|(path, (_, right))| (path.as_str(), *right))
            .collect();
        Ok(self.tokens.check_all(handle, &token_checks).await?)
    }
}

/// Holds one of a handle's watcher slots until dropped.
struct WatcherSlot {
    watchers: Arc<Mutex<HashMap<TokenId, usize>>>,
    id: TokenId,
}

impl WatcherSlot {
    fn take(watchers: &Arc<Mutex<HashMap<TokenId, usize>>>, id: TokenId, max: usize) -> Result<Self, Failure> {
        let mut open = watchers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(id).or_insert(0);
        if *count >= max {
            return Err(Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_watchers",
                format!("this handle already has {max} open watches"),
            ));
        }
        *count += 1;
        Ok(Self {
            watchers: Arc::clone(watchers),
            id,
        })
    }
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut open = self.watchers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.id) {
            *count = count.saturating_sub(1);
        }
    }
}

/// A comment line sent on an idle watch, so proxies and clients with read
/// timeouts keep the stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The watch as an event stream: one `id`/`data` event per entry; an
/// `error` event ends it (e.g. history trimmed under a slow watcher).
fn sse(watch: Watch, slot: WatcherSlot) -> Response<Body> {
    let events = futures::stream::unfold(Some((watch, slot)), |state| async move {
        let (mut watch, slot) = state?;
        // `Watch::next` is cancel-safe: an idle period loses nothing.
        let Ok(next) = tokio::time::timeout(KEEP_ALIVE, watch.next()).await else {
            let comment = Frame::data(Bytes::from_static(b": keep-alive\n\n"));
            return Some((Ok::<_, Infallible>(comment), Some((watch, slot))));
        };
        let (event, next) = match next {
            Ok(entry) => {
                let data = serde_json::to_string(&WireEntry {
                    ts: entry.ts,
                    data: &entry.data,
                })
                .expect("entries serialize");
                (format!("id: {}\ndata: {data}\n\n", entry.ts), Some((watch, slot)))
            }
            Err(error) => {
                let failure = Failure::from(error);
                let data = serde_json::to_string(&failure.body()).expect("errors serialize");
                (format!("event: error\ndata: {data}\n\n"), None)
            }
        };
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), next))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .body(StreamBody::new(events).boxed())
        .expect("a valid response")
}

/// Query parameters, percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |text: &str| {
                    percent_encoding::percent_decode_str(&text.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (decode(key), decode(value))
            })
            .collect();
        Self(pairs)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    fn required(&self, key: &str) -> Result<&str, Failure> {
        self.get(key)
            .ok_or_else(|| Failure::bad_request(format!("the query needs {key}")))
    }

    fn timestamp(&self, key: &str) -> Result<Option<Timestamp>, Failure> {
        self.get(key)
            .map(|text| {
                text.parse()
                    .map_err(|error: super::hlc::MalformedTimestamp| Failure::bad_request(error.to_string()))
            })
            .transpose()
    }
}

fn bearer(request: &Request<Incoming>) -> Result<Handle, Failure> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Failure::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "use Authorization: Bearer <handle>",
            )
        })?;
    Ok(Handle::parse(token.trim())?)
}

async fn json_body<T: serde::de::DeserializeOwned>(request: Request<Incoming>, limit: usize) -> Result<T, Failure> {
    let body = Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {limit} bytes"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|error| Failure::bad_request(format!("invalid JSON body: {error}")))
}

fn json(status: StatusCode, value: &impl Serialize) -> Result<Response<Body>, Failure> {
    let body = serde_json::to_vec(value).expect("replies serialize");
    Ok(Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("a valid response"))
}

/// An error reply: a status and `{error, message}`, plus the details some
/// codes carry (`latest`, `first_available`).
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: Option<(&'static str, Timestamp)>,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.code, "message": self.message });
        if let Some((key, ts)) = self.detail {
            body[key] = serde_json::json!(ts);
        }
        body
    }

    fn into_response(self) -> Response<Body> {
        let mut response = json(self.status, &self.body()).expect("errors serialize");
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<TokenError> for Failure {
    fn from(error: TokenError) -> Self {
        let (status, code) = error.status_and_code();
        let status = StatusCode::from_u16(status).expect("token error statuses are valid");
        Self::new(status, code, error.to_string())
    }
}

impl From<LogError> for Failure {
    fn from(error: LogError) -> Self {
        let message = error.to_string();
        match error {
            LogError::Conflict { latest, .. } => Self {
                detail: Some(("latest", latest)),
                ..Self::new(StatusCode::CONFLICT, "conflict", message)
            },
            LogError::CreatedOtherwise { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            LogError::Trimmed { first_available } => Self {
                detail: Some(("first_available", first_available)),
                ..Self::new(StatusCode::GONE, "trimmed", message)
            },
            LogError::Clock(ClockError::NeverIssued { .. } | ClockError::TooFarAhead { .. })
            | LogError::InvalidPath { .. }
            | LogError::InvalidTxn(_)
            | LogError::InvalidData(_) => Self::bad_request(message),
            LogError::Fenced(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "fenced", message),
            LogError::Database(_) | LogError::InUse(_) | LogError::WriterGone => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}
