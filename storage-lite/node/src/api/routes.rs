//! One handler per node call. Each authorizes its caller before it reads
//! anything of the log, and bad input changes nothing.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use grove_core::keys::token_path;
use grove_core::names::SiteName;
use grove_core::node_api::{
    ChildrenReply, CreateRequest, GrantReply, GrantRequest, ReadReply, RevokeRequest, TrimRequest, TsReply, TxnRequest,
    WireEntry, WriteRequest,
};
use grove_core::timestamp::Timestamp;
use grove_core::token::{Handle, Right};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::NodeApi;
use super::auth::bearer;
use super::failure::NodeFailure;
use super::watch;

type Reply = Result<Response, NodeFailure>;

/// The site of a route, and its caller's handle.
fn caller(site: &str, headers: &HeaderMap) -> Result<(SiteName, Handle), NodeFailure> {
    let site = SiteName::parse(site).map_err(|error| NodeFailure::bad_request(error.to_string()))?;
    Ok((site, bearer(headers)?))
}

/// A JSON body of at most `limit` bytes; any content type is taken.
async fn json_body<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, NodeFailure> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| NodeFailure::too_large(format!("the request body is larger than {limit} bytes")))?;
    serde_json::from_slice(&bytes).map_err(|error| NodeFailure::bad_request(format!("invalid JSON body: {error}")))
}

fn no_store<T: serde::Serialize>(status: StatusCode, value: &T) -> Reply {
    let headers = [(axum::http::header::CACHE_CONTROL, "no-store")];
    Ok((status, headers, Json(value)).into_response())
}

fn empty() -> Reply {
    no_store(StatusCode::OK, &serde_json::json!({}))
}

impl NodeApi {
    fn check_size(&self, data: &RawValue) -> Result<(), NodeFailure> {
        if data.get().len() > self.limits.max_value_bytes {
            return Err(NodeFailure::too_large(format!(
                "data is larger than the limit of {} bytes",
                self.limits.max_value_bytes
            )));
        }
        Ok(())
    }
}

pub async fn create(
    State(api): State<Arc<NodeApi>>,
    Path(site): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let create: CreateRequest = json_body(body, api.limits.body_limit("create")).await?;
    api.auth
        .authorize(&handle, &site, &[(&create.path, Right::Write)])
        .await?;
    api.before_write(&site, &uri).await?;
    api.log.create(&site, &create.path, create.serialized).await?;
    api.after_write(&site, None, &uri).await?;
    empty()
}

pub async fn write(
    State(api): State<Arc<NodeApi>>,
    Path(site): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let write: WriteRequest = json_body(body, api.limits.body_limit("write")).await?;
    api.check_size(&write.data)?;
    let record = api
        .auth
        .authorize(&handle, &site, &[(&write.path, Right::Write)])
        .await?;
    api.before_write(&site, &uri).await?;
    let ts = api
        .log
        .append_once(
            &site,
            &write.path,
            write.data.get().to_owned(),
            &record.id.0.to_hex(),
            write.after.latest(),
            idempotency_key(&headers)?,
        )
        .await?;
    api.after_write(&site, Some(ts), &uri).await?;
    no_store(StatusCode::OK, &TsReply { ts })
}

pub async fn txn(
    State(api): State<Arc<NodeApi>>,
    Path(site): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let max_writes = api.limits.max_txn_writes;
    let txn: TxnRequest = json_body(body, api.limits.body_limit("txn")).await?;
    if txn.writes.len() > max_writes {
        return Err(NodeFailure::too_large(format!(
            "a transaction takes at most {max_writes} writes"
        )));
    }
    let mut writes = Vec::with_capacity(txn.writes.len());
    for write in txn.writes {
        api.check_size(&write.data)?;
        let path = write.path.unwrap_or_else(|| txn.path.clone());
        writes.push((path, write.data.get().to_owned()));
    }
    let mut checks = vec![(txn.path.as_str(), Right::Read)];
    checks.extend(writes.iter().map(|(path, _)| (path.as_str(), Right::Write)));
    let record = api.auth.authorize(&handle, &site, &checks).await?;
    api.before_write(&site, &uri).await?;
    let ts = api
        .log
        .txn(
            &site,
            &txn.path,
            txn.if_last_ts,
            writes,
            &record.id.0.to_hex(),
            idempotency_key(&headers)?,
        )
        .await?;
    api.after_write(&site, Some(ts), &uri).await?;
    no_store(StatusCode::OK, &TsReply { ts })
}

/// `read` and `watch` take their arguments in the query.
#[derive(Debug, Deserialize)]
pub struct PathQuery {
    path: Option<String>,
    after: Option<String>,
    limit: Option<String>,
    /// `newest`: newest first, from `before`.
    order: Option<String>,
    before: Option<String>,
}

impl PathQuery {
    fn of(query: Result<Query<Self>, QueryRejection>) -> Result<Self, NodeFailure> {
        query
            .map(|Query(query)| query)
            .map_err(|rejection| NodeFailure::bad_request(format!("bad query: {rejection}")))
    }

    fn path(&self) -> Result<&str, NodeFailure> {
        self.path
            .as_deref()
            .ok_or_else(|| NodeFailure::bad_request("the query needs path"))
    }

    fn after(&self) -> Result<Timestamp, NodeFailure> {
        parse_timestamp(self.after.as_deref())
    }

    /// Where an event stream starts: after its `Last-Event-ID` when it is
    /// resumed, else after the query's `after`.
    fn resume(&self, headers: &HeaderMap) -> Result<Timestamp, NodeFailure> {
        match headers.get("last-event-id") {
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|text| text.parse::<Timestamp>().ok())
                .ok_or_else(|| NodeFailure::bad_request("Last-Event-ID must be a timestamp")),
            None => self.after(),
        }
    }
}

fn parse_timestamp(text: Option<&str>) -> Result<Timestamp, NodeFailure> {
    text.map_or(Ok(Timestamp::ZERO), |text| {
        text.parse()
            .map_err(|error: grove_core::timestamp::MalformedTimestamp| NodeFailure::bad_request(error.to_string()))
    })
}

pub async fn read(
    State(api): State<Arc<NodeApi>>,
    Path(site): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<PathQuery>, QueryRejection>,
) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let query = PathQuery::of(query)?;
    let data_path = query.path()?;
    api.auth.authorize(&handle, &site, &[(data_path, Right::Read)]).await?;
    api.before_read(&site, query.after()?, &uri).await?;
    let max = api.limits.max_read_entries;
    let limit = match &query.limit {
        Some(limit) => limit
            .parse::<usize>()
            .map_err(|_| NodeFailure::bad_request("limit must be a number"))?,
        None => max,
    }
    .clamp(1, max);
    let page = match query.order.as_deref() {
        None | Some("oldest") => api.log.read(&site, data_path, query.after()?, limit)?,
        Some("newest") => {
            let before = match query.before.as_deref() {
                Some(before) => parse_timestamp(Some(before))?,
                None => Timestamp::from_u64(u64::MAX),
            };
            api.log.read_newest(&site, data_path, before, limit)?
        }
        Some(other) => {
            return Err(NodeFailure::bad_request(format!(
                "order must be oldest or newest, not {other}"
            )));
        }
    };
    let entries = page
        .entries
        .iter()
        .map(|entry| WireEntry {
            ts: entry.ts,
            data: &entry.data,
        })
        .collect();
    no_store(
        StatusCode::OK,
        &ReadReply {
            entries,
            next: page.next,
        },
    )
}

pub async fn children(
    State(api): State<Arc<NodeApi>>,
    Path(site): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<PathQuery>, QueryRejection>,
) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let query = PathQuery::of(query)?;
    let prefix = query.path.as_deref().unwrap_or_default();
    if prefix.is_empty() {
        api.auth.authorize_site(&handle, &site, Right::Read).await?;
    } else {
        api.auth.authorize(&handle, &site, &[(prefix, Right::Read)]).await?;
    }
    api.before_read(&site, Timestamp::ZERO, &uri).await?;
    let names = api.log.children(&site, prefix, api.limits.max_read_entries)?;
    no_store(StatusCode::OK, &ChildrenReply { names })
}

/// The site's change feed: every committed write's timestamp and paths.
pub async fn changes(
    State(api): State<Arc<NodeApi>>,
    Path(site): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<PathQuery>, QueryRejection>,
) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let query = PathQuery::of(query)?;
    let record = api.auth.authorize_site(&handle, &site, Right::Read).await?;
    let after = query.resume(&headers)?;
    api.before_read(&site, after, &uri).await?;
    let slot = api.watchers.take(record.id, api.limits.max_watchers_per_handle)?;
    Ok(watch::events(api.log.changes(&site, after), slot))
}

pub async fn watch(
    State(api): State<Arc<NodeApi>>,
    Path(site): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<PathQuery>, QueryRejection>,
) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let query = PathQuery::of(query)?;
    let data_path = query.path()?;
    let record = api.auth.authorize(&handle, &site, &[(data_path, Right::Read)]).await?;
    let after = query.resume(&headers)?;
    api.before_read(&site, after, &uri).await?;
    let slot = api.watchers.take(record.id, api.limits.max_watchers_per_handle)?;
    let watch = api.log.watch(&site, data_path, after)?;
    Ok(watch::events(watch, slot))
}

pub async fn trim(
    State(api): State<Arc<NodeApi>>,
    Path(site): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let trim: TrimRequest = json_body(body, api.limits.body_limit("trim")).await?;
    api.auth
        .authorize(&handle, &site, &[(&trim.path, Right::Write)])
        .await?;
    api.before_write(&site, &uri).await?;
    api.log.trim(&site, &trim.path, trim.before).await?;
    api.after_write(&site, None, &uri).await?;
    empty()
}

pub async fn grant(State(api): State<Arc<NodeApi>>, Path(site): Path<String>, headers: HeaderMap, body: Body) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let grant: GrantRequest = json_body(body, api.limits.body_limit("grant")).await?;
    // The token store checks what the grant may cover.
    api.auth.authorize(&handle, &site, &[]).await?;
    let granted = api
        .auth
        .tokens()
        .grant(
            &handle,
            &token_path::site_data(&site, &grant.path),
            &grant.rights,
            grant.until,
        )
        .await?;
    no_store(
        StatusCode::CREATED,
        &GrantReply {
            handle: granted.reveal().to_owned(),
        },
    )
}

pub async fn revoke(
    State(api): State<Arc<NodeApi>>,
    Path(site): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let (site, handle) = caller(&site, &headers)?;
    let revoke: RevokeRequest = json_body(body, api.limits.body_limit("revoke")).await?;
    api.auth.authorize(&handle, &site, &[]).await?;
    let target = Handle::parse(revoke.handle.trim()).map_err(|error| NodeFailure(error.into()))?;
    api.auth.tokens().revoke(&handle, &target).await?;
    no_store(StatusCode::OK, &serde_json::json!({ "revoked": true }))
}

/// The caller's `Idempotency-Key`: a write retried with the same key (after
/// a failover, say) is written once and answered with its first timestamp.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, NodeFailure> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|key| (1..=128).contains(&key.len()) && key.bytes().all(|byte| byte.is_ascii_graphic()))
        .map(Some)
        .ok_or_else(|| NodeFailure::bad_request("Idempotency-Key must be 1 to 128 visible ASCII characters"))
}

/// A backup's pull from this node (see `replica`).
pub async fn pull(State(api): State<Arc<NodeApi>>, headers: HeaderMap, body: Body) -> Reply {
    let Some(replica) = &api.replica else {
        return Err(NodeFailure::new(
            StatusCode::NOT_FOUND,
            "no_route",
            "this node runs without a directory",
        ));
    };
    let secret = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !replica.is_peer(secret) {
        return Err(NodeFailure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "replication calls need the nodes' shared secret",
        ));
    }
    let request = json_body(body, 1 << 20).await?;
    let reply = replica.serve_pull(request).await?;
    no_store(StatusCode::OK, &reply)
}

/// Prometheus metrics: the log's counters and, with a directory, each
/// site's epoch, in-sync size and replication lag, and failovers.
pub async fn metrics(State(api): State<Arc<NodeApi>>) -> Response {
    let text = crate::metrics::render(&api.log, api.replica.as_deref());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The liveness probe deployments check (fly.io's machine checks,
/// systemd watchdogs): the node answers HTTP.
pub async fn health() -> &'static str {
    "ok"
}

/// Any other path or method.
pub async fn no_route(uri: axum::http::Uri) -> NodeFailure {
    NodeFailure::new(StatusCode::NOT_FOUND, "no_route", format!("no route {}", uri.path()))
}
