//! The node's HTTP API on axum: the routes of [`grove_core::node_api`], with
//! every error in the shared [`ApiFailure`](grove_core::api_error::ApiFailure)
//! shape.

mod auth;
mod failure;
mod routes;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};

use crate::log::Log;
use crate::replica::Replica;
use auth::{Authorizer, Watchers};
use axum::http::Uri;
pub use failure::NodeFailure;
use grove_core::names::SiteName;
use grove_core::timestamp::Timestamp;

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |path| path.as_str())
}
use grove_objects::token::Tokens;

/// Limits of the API; all configurable (the proxy reads them from its
/// config file's `[node.limits]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeLimits {
    /// Largest `data` value, in bytes of JSON.
    pub max_value_bytes: usize,
    /// Most entries one read returns.
    pub max_read_entries: usize,
    /// Open watches per handle.
    pub max_watchers_per_handle: usize,
    /// Requests per second per token (counted once the token is checked).
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

impl NodeLimits {
    /// The largest request body node call `call` reads. The proxy refuses
    /// a larger declared body before proxying it, by the same rule.
    pub fn body_limit(&self, call: &str) -> usize {
        match call {
            "write" => self.max_value_bytes + 4096,
            "txn" => self.max_txn_writes * (self.max_value_bytes + 1024) + 4096,
            _ => 4096,
        }
    }
}

/// The API over one log and one token store.
pub struct NodeApi {
    log: Arc<Log>,
    auth: Authorizer,
    limits: NodeLimits,
    watchers: Watchers,
    /// This node's part in failover, when it runs with a directory.
    replica: Option<Arc<Replica>>,
}

impl NodeApi {
    pub fn new(log: Arc<Log>, tokens: Tokens, limits: NodeLimits, replica: Option<Arc<Replica>>) -> Self {
        Self {
            log,
            auth: Authorizer::new(tokens, limits.requests_per_second),
            limits,
            watchers: Watchers::default(),
            replica,
        }
    }

    /// Sends a write elsewhere unless this node is the site's primary.
    async fn before_write(&self, site: &SiteName, uri: &Uri) -> Result<(), NodeFailure> {
        if let Some(replica) = &self.replica {
            replica.gate_write(site.as_str(), path_and_query(uri)).await?;
        }
        Ok(())
    }

    /// Waits until a committed write may be acknowledged (`ts`; `None`:
    /// everything the site holds now, for creates and trims).
    async fn after_write(&self, site: &SiteName, ts: Option<Timestamp>, uri: &Uri) -> Result<(), NodeFailure> {
        if let Some(replica) = &self.replica {
            let ts = match ts {
                Some(ts) => ts,
                None => self.log.site_latest(site.as_str())?,
            };
            replica.acknowledge(site.as_str(), ts, path_and_query(uri)).await?;
        }
        Ok(())
    }

    /// Sends a read elsewhere if this node cannot answer it fresh enough.
    async fn before_read(&self, site: &SiteName, after: Timestamp, uri: &Uri) -> Result<(), NodeFailure> {
        if let Some(replica) = &self.replica {
            replica.gate_read(site.as_str(), after, path_and_query(uri)).await?;
        }
        Ok(())
    }

    /// How many tokens the rate limiter holds state for: only tokens that
    /// passed a check are ever counted.
    pub fn rate_limited_tokens(&self) -> usize {
        self.auth.tracked_callers()
    }

    /// The routes, over this API.
    pub fn router(self: &Arc<Self>) -> Router {
        let site = |call: &str| format!("{}{{site}}/{call}", grove_core::node_api::PREFIX);
        Router::new()
            .route(&site("create"), post(routes::create))
            .route(&site("grant"), post(routes::grant))
            .route(&site("revoke"), post(routes::revoke))
            .route(&site("write"), post(routes::write))
            .route(&site("txn"), post(routes::txn))
            .route(&site("trim"), post(routes::trim))
            .route(&site("read"), get(routes::read))
            .route(&site("watch"), get(routes::watch))
            .route(&site("children"), get(routes::children))
            .route(&site("changes"), get(routes::changes))
            .route(crate::replica::PULL_ROUTE, post(routes::pull))
            .route("/metrics", get(routes::metrics))
            .route(grove_core::node_api::HEALTH, get(routes::health))
            .fallback(routes::no_route)
            .method_not_allowed_fallback(routes::no_route)
            .with_state(Arc::clone(self))
    }

    /// Serves HTTP/1.1 on `listener` until `stop` resolves. Then requests
    /// in flight get a moment to finish, and every connection (open watches
    /// included) is closed, so nothing holds the log when this returns.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let service = TowerToHyperService::new(self.router());
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let service = service.clone();
                        connections.spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
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
}
