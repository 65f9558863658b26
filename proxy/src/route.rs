//! The route table: every path under `/_grove/`, the host's own namespace on
//! every site, is spelled here and nowhere else. A request's path is parsed
//! into a [`Route`] once, and the server matches on it, so two handlers can
//! never both believe they own a path (the publish API and the node API share
//! `/_grove/api/`).

use grove_core::ContentHash;
use grove_core::publish_api;

use crate::auth::AuthRoute;

/// The host's own namespace.
pub const GROVE_PREFIX: &str = "/_grove/";
/// Storage node calls: `/_grove/api/v1/<call>` (other than the publish API).
pub const API_PREFIX: &str = "/_grove/api/";
/// The service worker script.
pub const WORKER_SCRIPT: &str = "/_grove/sw.js";
/// The page-side script that registers the worker.
pub const REGISTER_SCRIPT: &str = "/_grove/register.js";
/// The site's root document: the version served now and its tree.
pub const ROOT_DOCUMENT: &str = "/_grove/root";
/// The liveness probe.
pub const HEALTH: &str = "/_grove/health";
/// A tree node by hash: `/_grove/tree/<sha256>`.
pub const TREE_NODE_PREFIX: &str = "/_grove/tree/";
/// A blob by hash: `/_grove/blob/<sha256>`.
pub const BLOB_PREFIX: &str = "/_grove/blob/";
/// Every sign-in route.
pub const AUTH_PREFIX: &str = "/_grove/auth/";
/// Starts a sign-in: `/_grove/auth/login?return=/path`.
pub const AUTH_LOGIN: &str = "/_grove/auth/login";
/// Where the OpenID provider sends the browser back.
pub const AUTH_CALLBACK: &str = "/_grove/auth/callback";
/// Ends the session (POST).
pub const AUTH_LOGOUT: &str = "/_grove/auth/logout";
/// OpenID Connect back-channel logout (POST from the provider).
pub const AUTH_BACKCHANNEL_LOGOUT: &str = "/_grove/auth/backchannel-logout";
/// The signed-in user's claims, or 401.
pub const AUTH_ME: &str = "/_grove/auth/me";
/// A session's event stream.
pub const LIVE: &str = "/_grove/live";
/// Where a peer edge pushes a publish it committed (POST).
pub const EDGE_PUSH: &str = "/_grove/edges/publish";

/// The service worker's two scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Worker,
    Register,
}

/// What a request's path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A path of the site itself.
    SiteFile,
    /// `/_grove/root`.
    RootDocument,
    /// `/_grove/tree/<hash>`.
    TreeNode(ContentHash),
    /// `/_grove/blob/<hash>`.
    Blob(ContentHash),
    /// `/_grove/sw.js` or `/_grove/register.js`.
    Script(Script),
    /// `/_grove/health`.
    Health,
    /// `/_grove/auth/...`.
    Auth(AuthRoute),
    /// `/_grove/live`.
    Live,
    /// `/_grove/edges/publish`.
    EdgePush,
    /// The publish API; `rest` follows [`publish_api::PREFIX`] (starts with `/`).
    PublishCall { rest: &'a str },
    /// A storage node call; `rest` follows [`API_PREFIX`].
    NodeCall { rest: &'a str },
    /// A `/_grove/tree/` or `/_grove/blob/` path whose hash does not parse;
    /// the text says what was expected.
    MalformedHash(&'static str),
    /// Any other path under `/_grove/`: never a site file.
    UnknownGrovePath,
}

impl<'a> Route<'a> {
    /// Parses a request path (still percent-encoded).
    pub fn parse(path: &'a str) -> Self {
        if let Some(rest) = path.strip_prefix(publish_api::PREFIX)
            && rest.starts_with('/')
        {
            return Self::PublishCall { rest };
        }
        if let Some(rest) = path.strip_prefix(API_PREFIX) {
            return Self::NodeCall { rest };
        }
        if !path.starts_with(GROVE_PREFIX) {
            return Self::SiteFile;
        }
        if let Some(hex) = path.strip_prefix(TREE_NODE_PREFIX) {
            return hex.parse().map_or(
                Self::MalformedHash("expected /_grove/tree/<sha256 hex>"),
                Self::TreeNode,
            );
        }
        if let Some(hex) = path.strip_prefix(BLOB_PREFIX) {
            return hex
                .parse()
                .map_or(Self::MalformedHash("expected /_grove/blob/<sha256 hex>"), Self::Blob);
        }
        match path {
            ROOT_DOCUMENT => Self::RootDocument,
            HEALTH => Self::Health,
            AUTH_LOGIN => Self::Auth(AuthRoute::Login),
            AUTH_CALLBACK => Self::Auth(AuthRoute::Callback),
            AUTH_LOGOUT => Self::Auth(AuthRoute::Logout),
            AUTH_BACKCHANNEL_LOGOUT => Self::Auth(AuthRoute::BackchannelLogout),
            AUTH_ME => Self::Auth(AuthRoute::Me),
            LIVE => Self::Live,
            EDGE_PUSH => Self::EdgePush,
            WORKER_SCRIPT => Self::Script(Script::Worker),
            REGISTER_SCRIPT => Self::Script(Script::Register),
            _ => Self::UnknownGrovePath,
        }
    }

    /// Whether [`crate::app::Grove::handle`] answers it from the site's
    /// files and the host's read-only namespace, with no request body,
    /// session call or upstream: the path every page and asset takes.
    pub fn is_read(&self) -> bool {
        match self {
            Self::SiteFile
            | Self::RootDocument
            | Self::TreeNode(_)
            | Self::Blob(_)
            | Self::Script(_)
            | Self::MalformedHash(_)
            | Self::UnknownGrovePath => true,
            Self::Health
            | Self::Auth(_)
            | Self::Live
            | Self::EdgePush
            | Self::PublishCall { .. }
            | Self::NodeCall { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grove_path_has_one_route() {
        let hash = ContentHash::of(b"x");
        let cases: Vec<(String, Route<'_>)> = vec![
            ("/".into(), Route::SiteFile),
            ("/blog/post/".into(), Route::SiteFile),
            ("/_grovey".into(), Route::SiteFile),
            ("/_grove/root".into(), Route::RootDocument),
            ("/_grove/edges/publish".into(), Route::EdgePush),
            ("/_grove/health".into(), Route::Health),
            ("/_grove/sw.js".into(), Route::Script(Script::Worker)),
            ("/_grove/register.js".into(), Route::Script(Script::Register)),
            (format!("/_grove/tree/{hash}"), Route::TreeNode(hash)),
            (format!("/_grove/blob/{hash}"), Route::Blob(hash)),
            (
                "/_grove/tree/xyz".into(),
                Route::MalformedHash("expected /_grove/tree/<sha256 hex>"),
            ),
            (
                "/_grove/blob/".into(),
                Route::MalformedHash("expected /_grove/blob/<sha256 hex>"),
            ),
            ("/_grove/nothing".into(), Route::UnknownGrovePath),
            ("/_grove/auth/login".into(), Route::Auth(AuthRoute::Login)),
            ("/_grove/auth/callback".into(), Route::Auth(AuthRoute::Callback)),
            ("/_grove/auth/logout".into(), Route::Auth(AuthRoute::Logout)),
            (
                "/_grove/auth/backchannel-logout".into(),
                Route::Auth(AuthRoute::BackchannelLogout),
            ),
            ("/_grove/auth/me".into(), Route::Auth(AuthRoute::Me)),
            ("/_grove/auth/".into(), Route::UnknownGrovePath),
            ("/_grove/live".into(), Route::Live),
            ("/_grove/root/".into(), Route::UnknownGrovePath),
            ("/_grove/api/v1/write".into(), Route::NodeCall { rest: "v1/write" }),
            (
                "/_grove/api/publish/v1/sites/demo/offer".into(),
                Route::PublishCall {
                    rest: "/sites/demo/offer",
                },
            ),
            // Not the publish API's prefix followed by a slash: a node route
            // (which answers 404 no_route), as before the route table.
            (
                "/_grove/api/publish/v1x".into(),
                Route::NodeCall { rest: "publish/v1x" },
            ),
        ];
        for (path, expected) in &cases {
            assert_eq!(Route::parse(path), *expected, "{path}");
        }
    }
}
