//! The admin listener: Prometheus metrics and a health check, kept off the
//! public listener.

use async_trait::async_trait;
use bytes::Bytes;
use http::{StatusCode, header};
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use prometheus::{Encoder, TextEncoder};

use crate::reply::{Body, Reply};
use crate::server::write_reply;

pub struct Admin;

#[async_trait]
impl ProxyHttp for Admin {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, session: &mut Session, _: &mut Self::CTX) -> Result<bool> {
        let reply = match session.req_header().uri.path() {
            "/metrics" => {
                let mut text = Vec::new();
                let encoder = TextEncoder::new();
                match encoder.encode(&prometheus::gather(), &mut text) {
                    Ok(()) => Reply::new(StatusCode::OK, Body::Bytes(Bytes::from(text)))
                        .with(header::CONTENT_TYPE, encoder.format_type())
                        .with(header::CACHE_CONTROL, "no-store"),
                    Err(error) => Reply::text(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
                }
            }
            "/health" => Reply::text(StatusCode::OK, "ok"),
            _ => Reply::text(StatusCode::NOT_FOUND, "try /metrics or /health"),
        };
        let head = session.req_header().method == http::Method::HEAD;
        write_reply(session, reply, head).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _: &mut Session, _: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        Err(Error::explain(
            ErrorType::InternalError,
            "the admin listener has no upstream",
        ))
    }
}
