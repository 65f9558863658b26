//! Pingora's own floor for one prepared reply, to compare grove-proxy and
//! nginx against: how fast can Pingora 0.9 answer a fixed response when the
//! answer costs nothing?
//!
//! Modes:
//! - `proxy`: a `ProxyHttp` service answering in `request_filter`, as
//!   grove-proxy does;
//! - `app`: an `HttpServerApp`, Pingora's leanest HTTP server interface.
//!
//! - `proxy-timeouts`: `proxy` plus grove-proxy's per-request read and
//!   write timeouts and pipelining.
//!
//! With `TLS_LISTEN CERT KEY`, the same service also listens there with
//! TLS (rustls on aws-lc-rs, HTTP/2 and HTTP/1.1 by ALPN), as grove-proxy's
//! `[tls]`: the same crypto, so the floor measures Pingora, not a provider.
//!
//! Usage: `pingora_floor proxy|proxy-timeouts|app LISTEN BODY_BYTES [TLS_LISTEN CERT KEY]`

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::listeners::ListenerConfig;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;

/// The reply every request gets: a header built once, cloned per request.
struct Prepared {
    header: ResponseHeader,
    body: Bytes,
}

impl Prepared {
    fn new(size: usize) -> Self {
        let body = Bytes::from(vec![b'x'; size]);
        let mut header = ResponseHeader::build(200, Some(8)).expect("a status");
        for (name, value) in [
            ("content-type", "text/html; charset=utf-8"),
            (
                "etag",
                "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
            ),
            ("cache-control", "public, max-age=0, must-revalidate"),
            ("cache-tag", "grove:bench,grove:bench/index.html"),
            ("accept-ranges", "bytes"),
            ("x-grove-version", "1"),
        ] {
            header.append_header(name, value).expect("a valid header");
        }
        header
            .insert_header("content-length", body.len().to_string())
            .expect("a valid header");
        Self { header, body }
    }
}

/// `proxy` mode, optionally with grove-proxy's per-request settings (read
/// and write timeouts, pipelining) to measure what they cost.
struct ProxyFloor(Arc<Prepared>, bool);

#[async_trait]
impl ProxyHttp for ProxyFloor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        session.set_keepalive(Some(60));
        if self.1 {
            session.set_pipelining_enabled(true);
            session.set_read_timeout(Some(std::time::Duration::from_secs(30)));
            session.set_write_timeout(Some(std::time::Duration::from_secs(30)));
        }
        session
            .write_response_header(Box::new(self.0.header.clone()), false)
            .await?;
        session.write_response_body(Some(self.0.body.clone()), true).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Err(Error::explain(ErrorType::InternalError, "no upstream"))
    }
}

struct AppFloor(Arc<Prepared>);

#[async_trait]
impl HttpServerApp for AppFloor {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !http.read_request().await.ok()? {
            return None;
        }
        http.set_keepalive(Some(60));
        http.write_response_header(Box::new(self.0.header.clone())).await.ok()?;
        http.write_response_body(self.0.body.clone(), true).await.ok()?;
        let settings = HttpPersistentSettings::for_session(&http);
        http.finish()
            .await
            .ok()?
            .map(|stream| ReusedHttpStream::from_reusable_stream(stream, settings))
    }
}

const USAGE: &str = "usage: pingora_floor proxy|proxy-timeouts|app LISTEN BODY_BYTES [TLS_LISTEN CERT KEY]";

fn main() {
    // As grove-proxy, first thing: rustls on aws-lc-rs (Pingora installs
    // ring only when no provider is).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, listen, size, tls) = match args.as_slice() {
        [mode, listen, size] => (mode, listen, size, None),
        [mode, listen, size, tls_listen, cert, key] => (mode, listen, size, Some((tls_listen, cert, key))),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let prepared = Arc::new(Prepared::new(size.parse().expect("a body size")));
    // As grove-proxy: one worker thread per core.
    let conf = pingora::server::configuration::ServerConf {
        threads: std::thread::available_parallelism().map_or(1, usize::from),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    // As grove-proxy: a write buffer that takes a page and its header in
    // one send(), on both listeners.
    let buffers = || L4BufferSettings::default().write(32 * 1024);
    let mut listeners = vec![ListenerConfig::tcp(listen).l4_buffer(buffers())];
    if let Some((tls_listen, cert, key)) = tls {
        // As grove-proxy: rustls, HTTP/2 offered by ALPN.
        let mut settings = TlsSettings::intermediate(cert, key).expect("TLS settings");
        settings.enable_h2();
        listeners.push(ListenerConfig::tcp(tls_listen).tls(settings).l4_buffer(buffers()));
    }
    match mode.as_str() {
        "proxy" | "proxy-timeouts" => {
            let timeouts = mode == "proxy-timeouts";
            let mut service = pingora::proxy::http_proxy_service(&server.configuration, ProxyFloor(prepared, timeouts));
            for listener in listeners {
                service.add_listener(listener);
            }
            server.add_service(service);
        }
        "app" => {
            let mut service = Service::new("floor".to_owned(), AppFloor(prepared));
            for listener in listeners {
                service.add_listener(listener);
            }
            server.add_service(service);
        }
        other => panic!("unknown mode {other}"),
    }
    server.run_forever();
}
