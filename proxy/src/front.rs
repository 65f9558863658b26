//! The HTTP/1 connection loop in front of Pingora's proxy.
//!
//! Pingora's `ProxyHttp` costs every request its whole proxy state: a boxed
//! session, a cache context, and a per-request future of many kilobytes that
//! is moved into the heap each time. Measured with callgrind on a 5 KB page,
//! that is 43k instructions a request against 27k for Pingora's plain
//! `HttpServerApp` answering the same bytes, and Pingora's HTTP/1 session
//! is most of those 27k. Most requests an edge sees are plain reads that
//! need none of it, so [`Front`] reads each request's head itself, and
//! answers a plain read with [`crate::http1`] on the raw connection.
//! Everything else (the APIs, sign-in, live streams, node calls, anything
//! [`crate::http1`] is not sure of, and every request of a static edge,
//! which may forward any of them) goes to the proxy as before.
//!
//! The bytes read to decide are handed to the proxy as its session's
//! pipelined prefix, so nothing is read twice or lost. Once a connection
//! has gone to the proxy, its later requests stay there: the proxy keeps
//! any bytes it read past its request in a form only a new session can
//! take.
//!
//! HTTP/2 connections (by ALPN, or h2c from the admission gate) go to
//! [`Streams`]: their streams arrive with the header already read, so it
//! makes the same choice per stream without reading anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::v1::server::HttpSession as Http1Session;
use pingora::protocols::http::v2::server::{self as h2_server, H2Accept, HttpSession as H2Session};
use pingora::protocols::{ALPN, Digest, Stream};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::HttpConfig;
use crate::http1::{self, Taken};
use crate::reply::Reply;
use crate::sendfile::Sendfile;
use crate::server::GroveProxy;

/// The first read of a request's bytes, as Pingora's own.
const READ_BYTES: usize = 4 * 1024;

/// Dispatches each HTTP/1 request to the lean read path or to the proxy,
/// and HTTP/2 connections to [`Streams`].
pub struct Front {
    streams: Arc<Streams>,
    /// Whether plaintext replies send cached files with sendfile(2).
    sendfile: bool,
}

/// The `[http]` bounds on a client's connection, read from the config once
/// for both protocols.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// How long a new connection may take to send its first request (for
    /// HTTP/2, to open the connection).
    first_request: Duration,
    /// How long an idle connection waits for its next request (for HTTP/2,
    /// with no stream open).
    keepalive: Duration,
    /// How long the rest of a request's head may take once it has begun.
    read: Duration,
    /// How long each write of a reply may take.
    write: Duration,
}

impl Timeouts {
    fn of(http: &HttpConfig) -> Self {
        let seconds = |secs: u64| Duration::from_secs(secs.max(1));
        Self {
            first_request: seconds(http.first_request_timeout_secs),
            keepalive: seconds(http.keepalive_secs),
            read: seconds(http.read_timeout_secs),
            write: seconds(http.write_timeout_secs),
        }
    }
}

impl Front {
    pub fn new(streams: Arc<Streams>) -> Self {
        let sendfile = streams.reads.grove.config().http.sendfile;
        Self { streams, sendfile }
    }

    /// Serves the rest of a connection through the proxy, starting with the
    /// request whose first bytes are `prefix`.
    async fn proxy_from(&self, stream: Stream, prefix: BytesMut, shutdown: &ShutdownWatch) -> Option<Stream> {
        let mut http1 = Http1Session::new(stream);
        if !prefix.is_empty() {
            http1.set_pipelined_prefix(prefix);
        }
        let mut session = ServerSession::H1(http1);
        // As Pingora's own loop for a new connection.
        let shutting_down = *shutdown.borrow();
        session.set_keepalive(if shutting_down { None } else { Some(60) });
        let proxy = &self.streams.proxy;
        let mut reused = proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = reused.map(|reused| reused.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            reused = proxy.process_new_http(session, shutdown).await;
        }
        None
    }
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.streams.process_new(stream, shutdown).await;
        }
        let reads = &self.streams.reads;
        if reads.grove.config().live.is_some() {
            // A static edge: any request may be handed off.
            return self.proxy_from(stream, BytesMut::new(), shutdown).await;
        }
        let max_header_bytes = reads.grove.config().http.max_header_bytes;
        let mut stream = stream;
        let mut prefix = BytesMut::new();
        let timeouts = self.streams.timeouts;
        let mut idle = timeouts.first_request;
        // This connection's own receiver: watched only while it idles.
        let stopping_at_start = *shutdown.borrow();
        let mut watch = shutdown.clone();
        let mut sendfile = self.sendfile.then(Sendfile::default);
        loop {
            let taken = loop {
                if let Some(taken) = http1::take(&mut prefix, max_header_bytes, |path| reads.answers_as_read(path)) {
                    break taken;
                }
                // A head ends with a line: until another line has ended, it
                // is not parsed again, so a client that sends it a byte at a
                // time costs one parse a line, not one a byte.
                loop {
                    let wait = if prefix.is_empty() { idle } else { timeouts.read };
                    let before = prefix.len();
                    if !read_more(&mut stream, &mut prefix, wait, &mut watch).await {
                        return None;
                    }
                    if prefix[before..].contains(&b'\n') || prefix.len() > max_header_bytes {
                        break;
                    }
                }
            };
            let read = match taken {
                Taken::Read(read) => read,
                Taken::Proxy => {
                    // Its duplicate descriptor would hold the socket open
                    // past the proxy's close.
                    drop(sendfile);
                    return self.proxy_from(stream, prefix, shutdown).await;
                }
                Taken::Malformed { why, head_only } => {
                    let refusal = Reply::text(http::StatusCode::BAD_REQUEST, why);
                    if http1::write_reply(&mut stream, refusal, head_only, false, timeouts.write, None)
                        .await
                        .is_ok()
                    {
                        let _ = stream.shutdown().await;
                    }
                    return None;
                }
            };
            let keep_alive = !read.close && !stopping_at_start && !shutting_down(&watch);
            let answered = reads
                .serve_http1_read(&mut stream, &read, keep_alive, timeouts.write, sendfile.as_mut())
                .await;
            if !answered {
                return None;
            }
            if !keep_alive {
                let _ = stream.shutdown().await;
                return None;
            }
            idle = timeouts.keepalive;
        }
    }

    async fn cleanup(&self) {
        self.streams.cleanup().await;
    }
}

/// Serves HTTP/2 connections, choosing per stream between the lean read
/// path and the proxy.
///
/// Pingora's own loop spawns a task for every stream. A plain read needs
/// none: it is answered from memory in microseconds, and a task costs it a
/// heap cell, scheduling, and a wake of the connection's task for every
/// frame it queues. So reads run inside the connection's own task, beside
/// the accept loop that drives the connection's I/O; when they have queued
/// their replies, one poll of the connection writes them all. Other streams
/// (API calls, sign-in, live streams, which may last as long as the
/// connection) still get a task each and go to the proxy.
pub struct Streams {
    reads: GroveProxy,
    proxy: Arc<HttpProxy<GroveProxy>>,
    timeouts: Timeouts,
}

/// How many malformed streams (rejected by Pingora as they are accepted)
/// one connection may open before it is closed: Pingora's own budget, which
/// its accept function enforces only within its own loop.
const MAX_MALFORMED_STREAMS: usize = 32;

impl Streams {
    pub fn new(reads: GroveProxy, proxy: HttpProxy<GroveProxy>) -> Self {
        let timeouts = Timeouts::of(&reads.grove.config().http);
        Self {
            reads,
            proxy: Arc::new(proxy),
            timeouts,
        }
    }

    /// `http.first_request_timeout_secs`, as every listener applies it:
    /// the admission gate waits this long for a connection's first bytes.
    pub fn first_request_timeout(&self) -> Duration {
        self.timeouts.first_request
    }

    /// Serves one HTTP/2 connection (by ALPN, or h2c whose preface the
    /// admission gate has seen) until it closes. On shutdown it sends
    /// GOAWAY and finishes the streams already open, as Pingora's loop does.
    /// A client gets `http.first_request_timeout_secs` to open the
    /// connection (its preface and settings), and a connection with no
    /// stream open for `http.keepalive_secs` (to twice that: the idle timer
    /// is checked once a period, not re-armed per stream) is closed with
    /// GOAWAY, as an idle HTTP/1 connection is; Pingora's loop bounds
    /// neither by default.
    async fn serve_connection(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) {
        let digest = Arc::new(Digest {
            ssl_digest: stream.get_ssl_digest(),
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        let Timeouts {
            first_request,
            keepalive,
            write,
            ..
        } = self.timeouts;
        let handshake = fast_timeout(first_request, h2_server::handshake(stream, self.proxy.h2_options()));
        let mut connection = match handshake.await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                tracing::debug!(%error, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("HTTP/2 handshake timed out");
                return;
            }
        };
        let mut reads = FuturesUnordered::new();
        // Held by each proxied stream's task; set when one finishes.
        let proxied = Arc::new(AtomicBool::new(false));
        let mut idle = Box::pin(tokio::time::sleep(keepalive));
        // Whether a stream began or a read ended since the idle timer was set.
        let mut active = false;
        let mut watch = shutdown.clone();
        let mut going_away = false;
        let mut malformed = 0;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = watch.changed(), if !going_away => {
                    connection.graceful_shutdown();
                    going_away = true;
                    continue;
                }
                // Accepting is what drives the connection: it reads frames,
                // and writes what the streams have queued whenever the
                // socket has nothing more to read. Every stream that has
                // arrived is taken first...
                accepted = H2Session::from_h2_conn(&mut connection, Arc::clone(&digest)) => accepted,
                // ...then every read that can finish does, so the next
                // accept writes all their replies at once, not one write
                // each. (A read still pending is polled again, with this
                // task's waker, by the next turn of the loop.)
                Some(()) = reads.next(), if !reads.is_empty() => {
                    while let Some(Some(())) = reads.next().now_or_never() {}
                    active = true;
                    continue;
                }
                () = &mut idle => {
                    let open = !reads.is_empty() || Arc::strong_count(&proxied) > 1;
                    if active || open || proxied.swap(false, Ordering::Relaxed) {
                        active = false;
                        idle.as_mut().reset(tokio::time::Instant::now() + keepalive);
                        continue;
                    }
                    close_idle(&mut connection, write).await;
                    return;
                }
            };
            let session = match accepted {
                Ok(Some(H2Accept::Session(session))) => ServerSession::new_http2(session),
                Ok(Some(H2Accept::Rejected)) => {
                    malformed += 1;
                    if malformed >= MAX_MALFORMED_STREAMS {
                        tracing::debug!("closing an HTTP/2 connection that sent {malformed} malformed streams");
                        return;
                    }
                    continue;
                }
                // Closed by the client (or, after GOAWAY, drained).
                Ok(None) => return,
                Err(error) => {
                    tracing::debug!(%error, "HTTP/2 connection ended");
                    return;
                }
            };
            active = true;
            if self.reads.answers_as_read(session.req_header().uri.path()) {
                reads.push(self.reads.serve_read(session));
            } else {
                let streams = Arc::clone(self);
                let shutdown = shutdown.clone();
                let proxied = Arc::clone(&proxied);
                tokio::spawn(async move {
                    streams.proxy.process_new_http(session, &shutdown).await;
                    proxied.store(true, Ordering::Relaxed);
                });
            }
        }
    }
}

/// Closes an idle HTTP/2 connection: GOAWAY (no error, naming the last
/// stream it served, so a request the client sent meanwhile is known to be
/// safe to retry), written within `write_timeout`, then the close.
async fn close_idle(connection: &mut h2::server::Connection<Stream, Bytes>, write_timeout: Duration) {
    connection.abrupt_shutdown(h2::Reason::NO_ERROR);
    let closed = std::future::poll_fn(|context| connection.poll_closed(context));
    let _ = fast_timeout(write_timeout, closed).await;
}

#[async_trait]
impl ServerApp for Streams {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        self.serve_connection(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

/// Reads more of the connection into `buffer`; false when the client closed
/// it, it failed, it stayed idle for `wait`, or the server began shutting
/// down (seen by `shutdown`, this connection's own receiver) while it waited
/// between requests.
async fn read_more(stream: &mut Stream, buffer: &mut BytesMut, wait: Duration, shutdown: &mut ShutdownWatch) -> bool {
    buffer.reserve(READ_BYTES);
    // Under load the next request is often here already: read it without
    // arming a timer or watching for shutdown, which costs shared state.
    if let Some(read) = stream.read_buf(buffer).now_or_never() {
        return matches!(read, Ok(read) if read > 0);
    }
    let between_requests = buffer.is_empty();
    if between_requests && shutting_down(shutdown) {
        return false;
    }
    tokio::select! {
        biased;
        read = fast_timeout(wait, stream.read_buf(buffer)) => matches!(read, Ok(Ok(read)) if read > 0),
        _ = shutdown.changed(), if between_requests => false,
    }
}

/// Whether the server has begun shutting down since `shutdown` was made
/// (an atomic load: no lock, unlike reading the value).
fn shutting_down(shutdown: &ShutdownWatch) -> bool {
    shutdown.has_changed().unwrap_or(true)
}
