//! The service worker's side of the proxy: the two scripts (built from
//! `sw/` and embedded at compile time), the register tag added to HTML, and
//! the kill switch. The worker adds the same tag to pages it serves from
//! its cache, byte for byte (`sw/src/html.ts`), so a page is the same
//! whichever of the two answered it.

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use grove_core::ContentHash;
use http::{HeaderName, StatusCode, header};

use crate::reply::{Body, Reply};
use crate::route::{REGISTER_SCRIPT, Script};

/// The worker, `sw/dist/grove-sw.js` (checked against its sources by the
/// test command).
const WORKER: &[u8] = include_bytes!("../../sw/dist/grove-sw.js");
/// The page-side script that registers the worker and polls the root.
const REGISTER: &[u8] = include_bytes!("../../sw/dist/grove-register.js");

/// What HTML pages get, just before their first `</head>`.
pub static REGISTER_TAG: LazyLock<String> =
    LazyLock::new(|| format!("<script src=\"{REGISTER_SCRIPT}\" defer></script>"));

/// On `/_grove/root` replies and site responses of a site whose worker is
/// off: installed workers unregister and delete what they stored.
pub const KILL_SWITCH: (HeaderName, &str) = (HeaderName::from_static("x-grove-sw"), "unregister");

/// Names the injected variant of a page in ETags and the compressor's cache:
/// bump it when the tag changes, so no cache mixes the two.
const VARIANT: &[u8] = b"grove-register-tag-1";

/// The reply for one of the worker's scripts. The worker may control the
/// whole site (`Service-Worker-Allowed: /`) though it lives under
/// `/_grove/`. `no-cache`: browsers revalidate, so a new proxy release
/// reaches them at once; the ETag makes that cheap.
pub fn script(script: Script) -> Reply {
    // Browsers revalidate the worker on every navigation: its ETag is
    // hashed once per process, not per request.
    static SCRIPTS: LazyLock<(Reply, Reply)> =
        LazyLock::new(|| (script_reply(WORKER, true), script_reply(REGISTER, false)));
    match script {
        Script::Worker => SCRIPTS.0.clone(),
        Script::Register => SCRIPTS.1.clone(),
    }
}

fn script_reply(bytes: &'static [u8], worker: bool) -> Reply {
    let etag = format!("\"{}\"", ContentHash::of(bytes).to_hex());
    let mut reply = Reply::new(StatusCode::OK, Body::Bytes(Bytes::from_static(bytes)))
        .with(header::CONTENT_TYPE, "text/javascript; charset=utf-8")
        .with(header::CACHE_CONTROL, "no-cache")
        .with(header::ETAG, &etag);
    if worker {
        reply.set(HeaderName::from_static("service-worker-allowed"), "/");
    }
    reply
}

/// Whether a file of this content type gets the register tag: a page.
pub use grove_core::page_meta::is_html;

/// `html` with the register tag before its first `</head>` (ASCII case
/// ignored), or `None` for a page without one, which is served unchanged.
pub fn inject(html: &[u8]) -> Option<Bytes> {
    const CLOSE: &[u8] = b"</head>";
    let at = html
        .windows(CLOSE.len())
        .position(|window| window.eq_ignore_ascii_case(CLOSE))?;
    let mut out = BytesMut::with_capacity(html.len() + REGISTER_TAG.len());
    out.extend_from_slice(&html[..at]);
    out.extend_from_slice(REGISTER_TAG.as_bytes());
    out.extend_from_slice(&html[at..]);
    Some(out.freeze())
}

/// The identity of a page's injected variant: its ETag and compressed
/// copies must differ from the stored file's.
pub fn variant_of(hash: &ContentHash) -> ContentHash {
    let mut identity = hash.to_hex().into_bytes();
    identity.extend_from_slice(VARIANT);
    ContentHash::of(&identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_goes_before_the_first_head_end_in_any_case() {
        let page = b"<html><HEAD><title>x</title></Head><body></head></body>";
        let injected = inject(page).unwrap();
        let expected = [
            &b"<html><HEAD><title>x</title>"[..],
            REGISTER_TAG.as_bytes(),
            &b"</Head><body></head></body>"[..],
        ]
        .concat();
        assert_eq!(&injected[..], &expected[..]);
        assert_eq!(inject(b"<p>no head</p>"), None);
        assert!(is_html("text/html; charset=utf-8"));
        assert!(is_html("Text/HTML"));
        assert!(!is_html("text/htmlx"));
        assert!(!is_html("application/xhtml+xml"));
    }

    #[test]
    fn the_scripts_are_the_committed_bundles() {
        let worker = script(Script::Worker);
        assert_eq!(worker.headers["service-worker-allowed"], "/");
        assert_eq!(worker.headers["cache-control"], "no-cache");
        assert!(matches!(worker.body, Body::Bytes(ref bytes) if bytes.len() == WORKER.len() && !bytes.is_empty()));
        assert!(script(Script::Register).headers.get("service-worker-allowed").is_none());
        let hash = ContentHash::of(b"page");
        assert_ne!(variant_of(&hash), hash);
    }
}
