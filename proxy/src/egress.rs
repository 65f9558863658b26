//! Big files straight from the object store: a file above
//! `[egress] redirect_blobs_above_bytes` is answered with a 302 to its blob
//! in the bucket (a presigned URL, or the public bucket's), so its bytes
//! never cross the edge. It pays where the edge's egress is billed and the
//! store's is not (R2 to the internet is free; fly.io's egress is not), and
//! costs the visitor one more round trip, so it suits large downloads, not
//! page assets.
//!
//! The redirect carries the file's SHA-256 (`Repr-Digest`, RFC 9530) and
//! its grove ETag, so a client can check the bytes it gets from the store.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use grove_core::ContentHash;
use grove_core::keys;
use grove_objects::store::ObjectStore;
use http::{StatusCode, header};

use crate::config::EgressConfig;
use crate::reply::Reply;
use crate::semantics::{self, Encoding};

pub struct Egress {
    store: Arc<dyn ObjectStore>,
    config: EgressConfig,
}

impl Egress {
    pub fn new(store: Arc<dyn ObjectStore>, config: EgressConfig) -> Self {
        Self { store, config }
    }

    /// A redirect to the blob, when one is configured for its size and the
    /// store can give a URL; `None`: the edge serves it.
    pub async fn redirect(&self, hash: &ContentHash, size: u64, content_type: &str, tags: &str) -> Option<Reply> {
        let threshold = self.config.redirect_blobs_above_bytes;
        if threshold == 0 || size <= threshold {
            return None;
        }
        let key = keys::blob(hash);
        let ttl = Duration::from_secs(self.config.redirect_ttl_secs.max(60));
        let location = match &self.config.public_base_url {
            Some(base) => format!("{base}{key}"),
            None => match self.store.presign_get(&key, ttl, content_type).await {
                Ok(Some(url)) => url,
                Ok(None) => return None,
                Err(error) => {
                    tracing::warn!(%hash, %error, "presigning a blob failed; serving it here");
                    return None;
                }
            },
        };
        let digest = base64::engine::general_purpose::STANDARD.encode(hash.as_bytes());
        // Kept for a quarter of the URL's life, so nobody is sent to an
        // expired one; the file's tags let a publish purge it.
        let max_age = ttl.as_secs() / 4;
        Some(
            Reply::redirect(StatusCode::FOUND, &location)
                .with(header::CACHE_CONTROL, format!("public, max-age={max_age}"))
                .with(header::ETAG, semantics::etag(hash, Encoding::Identity))
                .with(
                    header::HeaderName::from_static("repr-digest"),
                    format!("sha-256=:{digest}:"),
                )
                .with(header::HeaderName::from_static("cache-tag"), tags),
        )
    }
}
