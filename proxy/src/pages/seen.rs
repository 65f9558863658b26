//! Read-your-writes: the newest write a client has seen, which a page it
//! asks for must reflect. A write through a session sets a short-lived
//! cookie with its timestamp; any client may send the header instead (the
//! service worker sends the header and the query parameter).

use grove_core::timestamp::Timestamp;

use crate::auth::cookies;
use crate::request::Request;

/// The header a client names the newest write it has seen in.
pub const SEEN_HEADER: &str = "x-grove-seen";
/// The cookie a session's write sets.
pub const SEEN_COOKIE: &str = "__Host-grove_seen";
/// How long the cookie lives: past it, a page is at most this stale anyway.
pub const SEEN_COOKIE_SECS: u64 = 60;
/// The header saying which timestamp a rendered page reflects.
pub const AS_OF_HEADER: &str = "x-grove-as-of";
/// The header marking the last good page served after the wait ran out.
pub const STALE_HEADER: &str = "x-grove-stale";

/// The query parameter the service worker names it in too: a CDN keys
/// its cache by URL, so a request carrying only the header could be
/// answered from its copy.
pub const SEEN_QUERY: &str = "_grove_seen";

/// The seen timestamp of a request: the newest of the header, the query
/// parameter and the cookie; `Err` names what is malformed.
pub fn of(request: &Request<'_>) -> Result<Option<Timestamp>, String> {
    let named = [
        request.header(SEEN_HEADER),
        request.query_param(SEEN_QUERY),
        cookies::value(request.headers, SEEN_COOKIE),
    ];
    let mut newest = None;
    for text in named.into_iter().flatten() {
        let seen = text
            .trim()
            .parse::<Timestamp>()
            .map_err(|_| format!("{SEEN_HEADER} must be a node timestamp (the ts a write returned)"))?;
        newest = newest.max(Some(seen));
    }
    Ok(newest)
}
