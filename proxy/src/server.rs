//! Pingora glue: turns each request into a [`Request`], asks [`Grove`] for a
//! [`Reply`] and writes it, always framed with `Content-Length`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::app::Grove;
use crate::auth::Visitor;
use crate::config::HttpConfig;
use crate::crawlers;
use crate::hosts::Target;
use crate::http1::{self, ReadRequest};
use crate::live;
use crate::metrics;
use crate::node::{NodeCall, NodeDirectory};
use crate::reply::{Body, FailureReply, FilePieces, Reply};
use crate::request::Request;
use crate::route::Route;
use crate::sendfile::Sendfile;
use crate::session_api;
use crate::static_edge::{self, Handoff, LiveCall};
use futures::StreamExt;
use grove_core::api_error::ApiFailure;
use grove_core::token::Right;

/// Largest body a sign-in route takes (a back-channel logout token).
const AUTH_BODY_LIMIT: u64 = 16 * 1024;

pub struct GroveProxy {
    pub grove: Arc<Grove>,
    /// Where `/_grove/api/` calls go.
    pub nodes: NodeDirectory,
}

/// Where a proxied request goes.
enum Upstream {
    /// A storage node call.
    Node(NodeCall),
    /// A static edge's API call or live stream, to the full edges.
    Live(LiveCall),
}

/// What the access log records about a request.
pub struct RequestLog {
    started: Instant,
    status: u16,
    bytes: u64,
    served: Option<(Arc<str>, u64)>,
    /// Set when the request is proxied upstream.
    upstream: Option<Upstream>,
    /// The host is not the site's canonical one (a preview, an alias):
    /// every response says `X-Robots-Tag: noindex`.
    noindex: bool,
}

impl RequestLog {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            status: 0,
            bytes: 0,
            served: None,
            upstream: None,
            noindex: false,
        }
    }
}

#[async_trait]
impl ProxyHttp for GroveProxy {
    type CTX = RequestLog;

    fn new_ctx(&self) -> Self::CTX {
        RequestLog::new()
    }

    /// None: grove compresses its replies itself, and Pingora's default
    /// (a disabled compression module) would only cost every request a
    /// module context and its filter calls.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// Every request is answered here, except storage node calls and a
    /// static edge's forwards, which go upstream. On HTTP/1, [`crate::front`]
    /// answers plain reads itself and sends only the rest here.
    async fn request_filter(&self, session: &mut Session, log: &mut Self::CTX) -> Result<bool> {
        let http = &self.grove.config().http;
        if let Some(refusal) = prepare(session, http) {
            answer(session, refusal, false, log).await?;
            return Ok(true);
        }
        if self.answers_as_read(session.req_header().uri.path()) {
            self.read_route(session, log).await
        } else {
            // Boxed: the rarer routes' futures are large, and keeping them
            // out of this one saves moving them for every page request.
            Box::pin(self.other_request(session, log)).await
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, log: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        match &log.upstream {
            Some(Upstream::Node(call)) => Ok(self.nodes.peer(call)),
            Some(Upstream::Live(call)) => Ok(call.peer()),
            None => Err(Error::explain(
                ErrorType::InternalError,
                "grove-proxy has no upstream for this request",
            )),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        log: &mut Self::CTX,
    ) -> Result<()> {
        let authority = match &log.upstream {
            Some(Upstream::Node(call)) => call.address(),
            Some(Upstream::Live(call)) => {
                if let Some(host) = session.req_header().headers.get(http::header::HOST).cloned() {
                    upstream.insert_header("x-forwarded-host", host)?;
                }
                call.authority()
            }
            None => return Ok(()),
        };
        upstream.insert_header(http::header::HOST, authority)?;
        if let Some(client) = session.client_addr().and_then(|addr| addr.as_inet()) {
            upstream.insert_header("x-forwarded-for", client.ip().to_string())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        log: &mut Self::CTX,
    ) -> Result<()> {
        log.status = upstream.status.as_u16();
        if log.noindex {
            upstream.insert_header(crawlers::ROBOTS_TAG, crawlers::NOINDEX)?;
        }
        Ok(())
    }

    /// A node that cannot be reached (or times out) gets the API's JSON
    /// error shape, not Pingora's bare status page.
    async fn fail_to_proxy(&self, session: &mut Session, error: &pingora::Error, log: &mut Self::CTX) -> FailToProxy {
        let timed_out = matches!(
            error.etype(),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
        );
        let live = matches!(log.upstream, Some(Upstream::Live(_)));
        let (status, code) = match (timed_out, live) {
            (true, false) => (http::StatusCode::GATEWAY_TIMEOUT, "node_timeout"),
            (false, false) => (http::StatusCode::BAD_GATEWAY, "node_unreachable"),
            (true, true) => (http::StatusCode::GATEWAY_TIMEOUT, "live_timeout"),
            (false, true) => (http::StatusCode::BAD_GATEWAY, "live_unreachable"),
        };
        let upstream = if live { "the live host" } else { "the storage node" };
        let downstream_gone = error.esource() == &ErrorSource::Downstream;
        if !downstream_gone && session.response_written().is_none() {
            // The connection is not reused after this (below): say so, or a
            // client may send its next request on it as it closes.
            session.set_keepalive(None);
            let reply = ApiFailure::new(status, code, format!("{upstream} failed: {error}")).into_reply();
            if answer(session, reply, false, log).await.is_err() {
                log.status = 0;
            }
        }
        FailToProxy {
            error_code: if downstream_gone { 0 } else { status.as_u16() },
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&pingora::Error>, log: &mut Self::CTX) {
        if log.upstream.is_some() {
            // Proxied: Pingora wrote the body, not `write_reply`.
            log.bytes = session.body_bytes_sent() as u64;
        }
        log_access(&request_of(session.req_header()), log, error);
    }
}

/// Counts a finished request and writes its access log line.
fn log_access(request: &Request<'_>, log: &RequestLog, error: Option<&pingora::Error>) {
    metrics::count_request(log.status);
    metrics::RESPONSE_BYTES.inc_by(log.bytes);
    if let Some((site, version)) = &log.served {
        metrics::SITE_VERSION
            .with_label_values(&[&**site])
            .set(i64::try_from(*version).unwrap_or(i64::MAX));
    }
    tracing::info!(
        target: "grove::access",
        method = %request.method,
        host = request.host.unwrap_or("-"),
        path = %request.path,
        status = log.status,
        bytes = log.bytes,
        ms = log.started.elapsed().as_secs_f64() * 1000.0,
        site = log.served.as_ref().map_or("-", |(site, _)| &**site),
        version = log.served.as_ref().map_or(0, |(_, version)| *version),
        error = error.map(|e| e.to_string()),
    );
}

impl GroveProxy {
    /// Whether a request for `path` is a plain read: a read route, on a
    /// full edge (a static edge may hand any request off to the live
    /// edges).
    pub fn answers_as_read(&self, path: &str) -> bool {
        self.grove.config().live.is_none() && Route::parse(path).is_read()
    }

    /// An HTTP/2 stream [`crate::front`] found on a read route, answered
    /// on the stream itself instead of through Pingora's proxy: this skips
    /// the proxy's per-request state (the largest single cost of a small
    /// page).
    pub async fn serve_read(&self, mut session: ServerSession) {
        let mut log = RequestLog::new();
        let http = &self.grove.config().http;
        let result = match prepare(&mut session, http) {
            Some(refusal) => answer(&mut session, refusal, false, &mut log).await,
            None => self.read_route(&mut session, &mut log).await.map(|_| ()),
        };
        log_access(
            &request_of(session.req_header()),
            &log,
            result.as_ref().err().map(|error| &**error),
        );
        if result.is_ok() {
            let _ = session.finish().await;
        }
    }

    /// A plain read that [`crate::front`] took from an HTTP/1 connection
    /// itself, answered on the raw connection by [`http1`], with
    /// `sendfile` when it may send files. Returns whether the reply went out
    /// whole, so the connection may serve another request if `keep_alive`.
    pub async fn serve_http1_read(
        &self,
        stream: &mut Stream,
        read: &ReadRequest,
        keep_alive: bool,
        write_timeout: Duration,
        sendfile: Option<&mut Sendfile>,
    ) -> bool {
        let mut log = RequestLog::new();
        let request = read.request();
        let target = self.grove.target(&request);
        let reply = self.read_reply(&request, target, &mut log).await;
        let reply = finish(reply, &mut log);
        let error = match http1::write_reply(stream, reply, read.head_only(), keep_alive, write_timeout, sendfile).await
        {
            Ok(bytes) => {
                log.bytes = bytes;
                None
            }
            Err(error) => Some(Error::because(ErrorType::WriteError, "writing the reply", error)),
        };
        log_access(&request, &log, error.as_deref());
        error.is_none()
    }

    /// A request on a read route: answered as a read, or refused when it
    /// declares a body larger than any route takes.
    async fn read_route(&self, session: &mut ServerSession, log: &mut RequestLog) -> Result<bool> {
        let target = self.grove.target(&request_of(session.req_header()));
        let max_body = self.grove.config().http.max_request_body_bytes;
        if within_body_limit(session.req_header(), max_body) {
            return self.read_request(session, log, target).await;
        }
        log.noindex = target.as_ref().is_some_and(|target| target.role.noindex());
        answer(session, body_too_large(), false, log).await?;
        Ok(true)
    }

    /// [`Self::read_reply`], written on the session.
    async fn read_request(
        &self,
        session: &mut ServerSession,
        log: &mut RequestLog,
        target: Option<Target>,
    ) -> Result<bool> {
        let request = request_of(session.req_header());
        let head = *request.method == http::Method::HEAD;
        let reply = self.read_reply(&request, target, log).await;
        answer(session, reply, head, log).await?;
        Ok(true)
    }

    /// A site file or a read of the host's own namespace, for whoever the
    /// session cookie (if any) says the visitor is. `target` is
    /// [`Grove::target`] of the request, routed once by the caller.
    async fn read_reply(&self, request: &Request<'_>, target: Option<Target>, log: &mut RequestLog) -> Reply {
        log.noindex = target.as_ref().is_some_and(|target| target.role.noindex());
        let mut reply = match self.grove.audience(target.as_ref(), request).await {
            Ok(audience) => {
                self.grove
                    .handle(request, target.as_ref(), Route::parse(request.path), audience)
                    .await
            }
            Err(refusal) => refusal,
        };
        log.served = reply.served.take();
        reply
    }

    /// Every request that is not a plain read: health checks, peer pushes,
    /// a static edge's handoffs, sign-in, live streams, the publish and node
    /// APIs, and bodies too large to take.
    async fn other_request(&self, session: &mut Session, log: &mut RequestLog) -> Result<bool> {
        // Neither names a site: a load balancer's health check sends any
        // Host, and a peer edge pushes to an address.
        match Route::parse(session.req_header().uri.path()) {
            Route::EdgePush => {
                let reply = self.edge_push(session).await;
                answer(session, reply, false, log).await?;
                return Ok(true);
            }
            Route::Health => {
                let head = session.req_header().method == http::Method::HEAD;
                answer(session, Reply::text(http::StatusCode::OK, "ok"), head, log).await?;
                return Ok(true);
            }
            _ => {}
        }
        // Routed once for every step below.
        let target = self.grove.target(&request_of(session.req_header()));
        if let Some(live) = &self.grove.config().live {
            let header = session.req_header();
            let request = request_of(header);
            let handoff = static_edge::handoff(
                &self.grove,
                live,
                Route::parse(header.uri.path()),
                &request,
                target.as_ref(),
                session_cookie(header),
            )
            .await;
            match handoff {
                Some(Handoff::Reply(reply)) => {
                    let head = session.req_header().method == http::Method::HEAD;
                    answer(session, reply, head, log).await?;
                    return Ok(true);
                }
                Some(Handoff::Forward(call)) => {
                    log.upstream = Some(Upstream::Live(call));
                    return Ok(false);
                }
                None => {}
            }
        }
        let http = &self.grove.config().http;
        let header = session.req_header();
        let route = Route::parse(header.uri.path());
        if route.is_read() && within_body_limit(header, http.max_request_body_bytes) {
            return self.read_request(session, log, target).await;
        }
        log.noindex = target.as_ref().is_some_and(|target| target.role.noindex());
        let reply = match route {
            Route::NodeCall { rest } if session_cookie(header) => {
                let rest = rest.to_owned();
                match self.session_node_call(session, &rest).await {
                    Some(reply) => reply,
                    None => return self.node_call(session, &rest, log).await,
                }
            }
            Route::NodeCall { rest } => {
                let rest = rest.to_owned();
                return self.node_call(session, &rest, log).await;
            }
            Route::Auth(auth_route) => {
                let body = if session.req_header().method == http::Method::POST {
                    match read_body(session, AUTH_BODY_LIMIT).await {
                        Ok(body) => Ok(body),
                        Err(BodyError::TooLarge) => Err(Reply::text(
                            http::StatusCode::PAYLOAD_TOO_LARGE,
                            "request body too large",
                        )),
                        Err(BodyError::Broken(reply)) => Err(reply),
                    }
                } else {
                    Ok(Bytes::new())
                };
                let request = request_of(session.req_header());
                match (body, target) {
                    (Err(refusal), _) => refusal,
                    (Ok(body), Some(target)) => self.grove.auth().handle(auth_route, &request, &target, body).await,
                    (Ok(_), None) => Reply::unknown(),
                }
            }
            Route::Live => match self.live(session, log.noindex).await? {
                Some(reply) => reply,
                None => {
                    log.status = 200;
                    return Ok(true);
                }
            },
            Route::PublishCall { rest } => {
                let rest = rest.to_owned();
                self.publish_api(session, &rest).await
            }
            // A read whose declared body is over the limit.
            _ => body_too_large(),
        };
        let head = session.req_header().method == http::Method::HEAD;
        answer(session, reply, head, log).await?;
        Ok(true)
    }

    /// A node call with a bearer handle: checked for size here, then
    /// proxied to the site's node, streamed both ways.
    async fn node_call(&self, session: &mut Session, rest: &str, log: &mut RequestLog) -> Result<bool> {
        let header = session.req_header();
        let reply = {
            let request = request_of(header);
            let routed = match self.grove.target(&request) {
                Some(target) => self
                    .nodes
                    .route(&target.site, rest, request.query)
                    .map(|call| (call, target.site.clone()))
                    .map_err(ApiFailure::into_reply),
                None => Err(Reply::unknown()),
            };
            let followed_write = self.nodes.follows_etcd() && header.method == http::Method::POST;
            match routed {
                Ok((call, _)) if declared_length(header).is_some_and(|length| length > call.body_limit as u64) => {
                    // Refused before a byte of the body travels; a client
                    // waiting on `Expect: 100-continue` sends none.
                    session.set_keepalive(None);
                    let reply = ApiFailure::new(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the request body is larger than {} bytes", call.body_limit),
                    )
                    .into_reply();
                    answer(session, reply, false, log).await?;
                    return Ok(true);
                }
                Ok((call, site)) if followed_write => {
                    // Buffered (bodies are small), so it can be sent again
                    // to the new primary after a failover.
                    let reply = match read_body(session, call.body_limit as u64).await {
                        Ok(body) => self.relay(session, &site, rest, body).await,
                        Err(BodyError::TooLarge) => ApiFailure::new(
                            http::StatusCode::PAYLOAD_TOO_LARGE,
                            "too_large",
                            format!("the request body is larger than {} bytes", call.body_limit),
                        )
                        .into_reply(),
                        Err(BodyError::Broken(reply)) => reply,
                    };
                    answer(session, reply, false, log).await?;
                    return Ok(true);
                }
                Ok((call, _)) => {
                    if expects_continue(header) {
                        // Answered here: the node need not speak 1xx, and
                        // the body then streams through.
                        session.write_continue_response().await?;
                        session.req_header_mut().remove_header(&http::header::EXPECT);
                    }
                    let uri = http::Uri::try_from(call.path_and_query.as_str())
                        .map_err(|error| Error::because(ErrorType::InvalidHTTPHeader, "node call path", error))?;
                    session.req_header_mut().set_uri(uri);
                    log.upstream = Some(Upstream::Node(call));
                    return Ok(false);
                }
                Err(reply) => reply,
            }
        };
        answer(session, reply, false, log).await?;
        Ok(true)
    }

    /// A node call sent with the caller's own bearer handle and retried on
    /// the site's new primary after a failover (see `NodeClient::relay`).
    async fn relay(&self, session: &Session, site: &grove_core::SiteName, rest: &str, body: Bytes) -> Reply {
        let header = session.req_header();
        let Some(bearer) = header
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return ApiFailure::unauthorized("use Authorization: Bearer <handle>").into_reply();
        };
        let idempotency_key = header
            .headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok());
        let call = rest.strip_prefix("v1/").unwrap_or(rest);
        let query = header.uri.query();
        match self
            .grove
            .node()
            .relay(bearer, idempotency_key, header.method.clone(), site, call, query, body)
            .await
        {
            Ok(reply) => reply.into_reply(),
            Err(failure) => failure.into_reply(),
        }
    }

    /// Reads the request body, bounded by the route's limit, and hands the
    /// request to the publish API. A body that is too large or cut short is
    /// refused before the API sees any of it, so nothing is stored.
    /// A peer edge's push of a publish it committed.
    async fn edge_push(&self, session: &mut Session) -> Reply {
        if session.req_header().method != http::Method::POST {
            return Reply::text(http::StatusCode::METHOD_NOT_ALLOWED, "use POST").with(http::header::ALLOW, "POST");
        }
        let body = match read_body(session, crate::edges::push::PUSH_BODY_LIMIT).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return ApiFailure::too_large("push_body_bytes", crate::edges::push::PUSH_BODY_LIMIT).into_reply();
            }
            Err(BodyError::Broken(reply)) => return reply,
        };
        let authorization = session.req_header().headers.get(http::header::AUTHORIZATION);
        self.grove
            .push()
            .take(authorization.map(|value| value.as_bytes()), &body)
    }

    async fn publish_api(&self, session: &mut Session, rest: &str) -> Reply {
        let api = self.grove.api();
        let call = match api.begin(&request_of(session.req_header()), rest).await {
            Ok(call) => call,
            Err(failure) => {
                // The body was never read, so the connection cannot be reused.
                session.set_keepalive(None);
                return failure.into_reply();
            }
        };
        let (limit, limit_key) = api.body_limit(&call);
        let body = match read_body(session, limit).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return ApiFailure::too_large(limit_key, limit).into_reply(),
            Err(BodyError::Broken(reply)) => return reply,
        };
        self.grove.publish(call, &request_of(session.req_header()), body).await
    }

    /// A node call made with a session cookie rather than a bearer handle;
    /// `None` when the request is not one (it then goes to the node as it
    /// is, and a request with neither is refused there).
    async fn session_node_call(&self, session: &mut Session, rest: &str) -> Option<Reply> {
        let header = session.req_header();
        if header.headers.contains_key(http::header::AUTHORIZATION) {
            return None;
        }
        let request = request_of(header);
        let target = self.grove.target(&request)?;
        let access = self.grove.auth().site(&target.site)?.access.clone();
        let signed_in = match self.grove.auth().visitor(&target.site, &request).await {
            Ok(Visitor::SignedIn(signed_in)) => signed_in,
            Ok(_) => return None,
            Err(reply) => return Some(reply),
        };
        let call = match self.nodes.route(&target.site, rest, request.query) {
            Ok(call) => call,
            Err(failure) => return Some(failure.into_reply()),
        };
        let call_name = rest.strip_prefix("v1/").unwrap_or(rest).to_owned();
        let body = match read_body(session, call.body_limit as u64).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Some(
                    ApiFailure::new(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the request body is larger than {} bytes", call.body_limit),
                    )
                    .into_reply(),
                );
            }
            Err(BodyError::Broken(reply)) => return Some(reply),
        };
        let request = request_of(session.req_header());
        Some(
            session_api::call(
                self.grove.node(),
                &access,
                &target.site,
                &signed_in,
                &call_name,
                &request,
                body,
            )
            .await,
        )
    }

    /// `/_grove/live`: streams a session's events until it ends or the
    /// client goes away. Answers with a plain reply when refused.
    async fn live(&self, session: &mut Session, noindex: bool) -> Result<Option<Reply>> {
        let header = session.req_header();
        let request = request_of(header);
        if *request.method != http::Method::GET {
            return Ok(Some(
                Reply::text(http::StatusCode::METHOD_NOT_ALLOWED, "use GET").with(http::header::ALLOW, "GET"),
            ));
        }
        let Some(target) = self.grove.target(&request) else {
            return Ok(Some(Reply::unknown()));
        };
        let auth = self.grove.auth();
        let Some(site_auth) = auth.site(&target.site) else {
            return Ok(Some(Reply::text(
                http::StatusCode::NOT_FOUND,
                "sign-in is not configured for this site",
            )));
        };
        let signed_in = match auth.visitor(&target.site, &request).await {
            Ok(Visitor::SignedIn(signed_in)) => signed_in,
            Ok(_) => {
                return Ok(Some(Reply::json(
                    http::StatusCode::UNAUTHORIZED,
                    &serde_json::json!({ "error": "unauthorized", "message": "sign in first" }),
                )));
            }
            Err(reply) => return Ok(Some(reply)),
        };
        let paths: Vec<String> = url::form_urlencoded::parse(request.query.unwrap_or_default().as_bytes())
            .filter(|(key, _)| key == "path")
            .map(|(_, value)| value.into_owned())
            .collect();
        if paths.len() > live::MAX_PATHS {
            return Ok(Some(Reply::text(
                http::StatusCode::BAD_REQUEST,
                &format!("a stream subscribes to at most {} paths", live::MAX_PATHS),
            )));
        }
        if let Some(path) = paths
            .iter()
            .find(|path| !site_auth.access.grants(&signed_in.record, path, Right::Read))
        {
            return Ok(Some(Reply::json(
                http::StatusCode::FORBIDDEN,
                &serde_json::json!({ "error": "forbidden", "message": format!("this session may not read {path}") }),
            )));
        }
        let http1 = header.version != http::Version::HTTP_2;
        let events = match self
            .grove
            .live()
            .stream(&target.site, signed_in, &paths, auth.revocations().subscribe())
        {
            Ok(events) => events,
            Err(too_many) => {
                return Ok(Some(Reply::json(
                    http::StatusCode::TOO_MANY_REQUESTS,
                    &serde_json::json!({ "error": "too_many_streams", "message": too_many.to_string() }),
                )));
            }
        };
        let mut response = ResponseHeader::build(http::StatusCode::OK, Some(4))?;
        response.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
        response.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        response.insert_header("x-accel-buffering", "no")?;
        if noindex {
            response.insert_header(crawlers::ROBOTS_TAG, crawlers::NOINDEX)?;
        }
        if http1 {
            response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        session.set_keepalive(None);
        session.write_response_header(Box::new(response), false).await?;
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Err(error) = session.write_response_body(Some(event), false).await {
                // The client went away: the usual end of a stream.
                tracing::debug!(%error, "a live stream's client left");
                return Ok(None);
            }
        }
        // Ended by `revoked` (or a lagging feed): close it cleanly.
        let _ = session.write_response_body(Some(Bytes::new()), true).await;
        Ok(None)
    }
}

/// Sets what every request's connection gets (keep-alive, pipelining,
/// timeouts), and refuses a request no route may act on: one whose header
/// is over the limit, or an HTTP/1.1 request without a Host. A refused
/// connection is not reused.
fn prepare(session: &mut ServerSession, http: &HttpConfig) -> Option<Reply> {
    session.set_keepalive(Some(http.keepalive_secs));
    // HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests that arrive before
    // the previous response is done are answered in order, as nginx does,
    // instead of the connection being closed on them.
    if let ServerSession::H1(http1) = session {
        http1.set_pipelining_enabled(true);
    }
    session.set_read_timeout(Some(Duration::from_secs(http.read_timeout_secs)));
    session.set_write_timeout(Some(Duration::from_secs(http.write_timeout_secs)));
    if header_bytes(session) > http.max_header_bytes {
        // Pingora has read it (up to its own bound); refuse to act on it,
        // and read nothing more from this client.
        session.set_keepalive(None);
        return Some(Reply::text(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("the request header is larger than {} bytes", http.max_header_bytes),
        ));
    }
    let header = session.req_header();
    if header.version == http::Version::HTTP_11
        && header.uri.authority().is_none()
        && !header.headers.contains_key(http::header::HOST)
    {
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400.
        session.set_keepalive(None);
        return Some(Reply::text(
            http::StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs a Host header",
        ));
    }
    None
}

fn body_too_large() -> Reply {
    Reply::text(http::StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
}

/// Why a request body was not read.
enum BodyError {
    TooLarge,
    /// Cut short or unreadable; the reply says so.
    Broken(Reply),
}

/// Reads a request body of at most `limit` bytes. A body that is too large
/// or cut short is refused before anything acts on it, and the connection
/// is not reused (the rest of the body was never read).
async fn read_body(session: &mut Session, limit: u64) -> std::result::Result<Bytes, BodyError> {
    if declared_length(session.req_header()).is_some_and(|length| length > limit) {
        session.set_keepalive(None);
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > limit {
                    session.set_keepalive(None);
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(error) => {
                session.set_keepalive(None);
                return Err(BodyError::Broken(
                    ApiFailure::new(
                        http::StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!("the request body could not be read whole: {error}"),
                    )
                    .into_reply(),
                ));
            }
        }
    }
}

/// The size of a request header as sent: HTTP/1's own bytes, or HTTP/2's
/// request line and fields as decoded.
fn header_bytes(session: &ServerSession) -> usize {
    if let Some(http1) = session.as_http1() {
        return http1.get_headers_raw_bytes().len();
    }
    let header = session.req_header();
    let line = header.method.as_str().len() + header.raw_path().len() + 12;
    header
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + line
}

/// Whether a request carries a session cookie at all (cheap: no lookup).
fn session_cookie(header: &RequestHeader) -> bool {
    crate::auth::cookies::value(&header.headers, crate::auth::cookies::SESSION).is_some()
}

fn expects_continue(header: &RequestHeader) -> bool {
    header
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

fn declared_length(header: &RequestHeader) -> Option<u64> {
    header
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
}

/// Whether the request declares no body larger than `limit`.
fn within_body_limit(header: &RequestHeader, limit: u64) -> bool {
    declared_length(header).is_none_or(|length| length <= limit)
}

fn request_of(header: &RequestHeader) -> Request<'_> {
    Request::new(
        &header.method,
        header.uri.authority().map(|authority| authority.as_str()),
        header.uri.path(),
        header.uri.query(),
        &header.headers,
    )
}

/// Writes the reply to a request, with the headers every reply on its host
/// carries, and logs its status and size.
async fn answer(session: &mut ServerSession, reply: Reply, head: bool, log: &mut RequestLog) -> Result<()> {
    let reply = finish(reply, log);
    log.bytes = write_reply(session, reply, head).await?;
    Ok(())
}

/// A reply with the headers every reply on its host carries, its status
/// logged.
fn finish(mut reply: Reply, log: &mut RequestLog) -> Reply {
    if log.noindex {
        reply.set(
            http::header::HeaderName::from_static(crawlers::ROBOTS_TAG),
            crawlers::NOINDEX,
        );
    }
    log.status = reply.status.as_u16();
    reply
}

/// Writes a reply; returns the body bytes sent.
pub async fn write_reply(session: &mut ServerSession, reply: Reply, head: bool) -> Result<u64> {
    let length = reply.body.len();
    let bodiless = head || reply.status == http::StatusCode::NOT_MODIFIED;
    // The reply's header map becomes the response header as it is: no
    // per-header parsing or case bookkeeping (names go out lowercase, which
    // HTTP/1.1 allows and HTTP/2 requires).
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = reply.status;
    parts.headers = reply.headers.into_map();
    if reply.status != http::StatusCode::NOT_MODIFIED {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(length));
    }
    let header = ResponseHeader::from(parts);
    session.write_response_header(Box::new(header)).await?;
    if bodiless || length == 0 {
        return Ok(0);
    }
    match reply.body {
        Body::Empty => unreachable!("empty bodies end with the header"),
        Body::Bytes(bytes) | Body::Mirrored { bytes, .. } => session.write_response_body(bytes, true).await?,
        Body::File { file, start, len } => {
            let mut pieces = FilePieces::new(file, start, len);
            while let Some(piece) = pieces.next().await {
                let piece =
                    piece.map_err(|error| Error::because(ErrorType::ReadError, "reading the disk cache", error))?;
                session.write_response_body(piece, pieces.is_done()).await?;
            }
        }
    }
    Ok(length)
}
