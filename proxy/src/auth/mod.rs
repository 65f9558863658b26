//! Sign-in with OpenID Connect and the sessions it starts. A site with an
//! `[sites.<name>.auth]` section gets `/_grove/auth/login`, `callback`,
//! `logout`, `backchannel-logout` and `me`; a request carrying a live
//! session is served live (see `app.rs`), and may call the storage node
//! with the rights its site's config gives it (see `session_api.rs`).

pub mod access;
pub mod cookies;
pub mod login_state;
pub mod provider;
pub mod revocations;
pub mod sessions;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use grove_core::SiteName;
use grove_objects::store::ObjectStore;
use http::{StatusCode, header};
use secrecy::SecretString;

use self::access::Access;
use self::login_state::{LOGIN_TTL_SECS, LoginState, LoginStates};
use self::provider::{LogoutTarget, Provider};
use self::revocations::Revocations;
use self::sessions::{BY_PROVIDER_SESSION, BY_SUBJECT, Session, SessionRecord, SessionSecret, Sessions};
use crate::config::Config;
use crate::hosts::{Target, strip_port};
use crate::metrics;
use crate::node_client::NodeClient;
use crate::reply::Reply;
use crate::request::Request;
use crate::route::AUTH_CALLBACK;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// Longest `return` path a sign-in takes.
const MAX_RETURN_BYTES: usize = 2048;

/// The sign-in routes under `/_grove/auth/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRoute {
    Login,
    Callback,
    Logout,
    BackchannelLogout,
    Me,
}

/// One site's sign-in.
pub struct SiteAuth {
    pub access: Access,
    provider: Provider,
    idle_ms: u64,
    absolute_ms: u64,
}

/// Who a request comes from, by its session cookie.
pub enum Visitor {
    /// No session cookie (or a site without sign-in).
    Anonymous,
    SignedIn(Session),
    /// A session cookie for a session that ended, expired or never was:
    /// served as anonymous, privately, with the cookie cleared.
    StaleCookie,
}

pub struct Auth {
    sites: HashMap<SiteName, SiteAuth>,
    sessions: Arc<Sessions>,
    login_states: LoginStates,
    revocations: Arc<Revocations>,
    config: Config,
}

impl Auth {
    /// Every site's sign-in, checked: an issuer that is no URL, a pattern
    /// that cannot match or a secret variable that is unset stops start-up.
    pub fn new(config: &Config, store: Arc<dyn ObjectStore>, node: Arc<NodeClient>) -> anyhow::Result<Self> {
        let mut sites = HashMap::new();
        for (name, site) in &config.sites {
            let Some(auth) = &site.auth else { continue };
            let site_name = SiteName::parse(name)?;
            let context = || format!("[sites.{name}.auth]");
            let access = Access::parse(auth).with_context(context)?;
            url::Url::parse(&auth.issuer)
                .with_context(|| format!("issuer {:?} is not a URL", auth.issuer))
                .with_context(context)?;
            let secret = match &auth.client_secret_env {
                Some(variable) => Some(SecretString::from(
                    std::env::var(variable)
                        .with_context(|| format!("client_secret_env names {variable}, which is not set"))
                        .with_context(context)?,
                )),
                None => None,
            };
            anyhow::ensure!(
                auth.idle_timeout_secs > 0 && auth.absolute_timeout_secs > 0,
                "[sites.{name}.auth] idle_timeout_secs and absolute_timeout_secs must be positive"
            );
            sites.insert(
                site_name,
                SiteAuth {
                    access,
                    provider: Provider::new(&auth.issuer, &auth.client_id, secret, &auth.scopes),
                    idle_ms: auth.idle_timeout_secs.saturating_mul(1000),
                    absolute_ms: auth.absolute_timeout_secs.saturating_mul(1000),
                },
            );
        }
        let sessions = Arc::new(Sessions::new(Arc::clone(&store)));
        Ok(Self {
            revocations: Revocations::new(node, Arc::clone(&sessions)),
            sites,
            sessions,
            login_states: LoginStates::new(store),
            config: config.clone(),
        })
    }

    pub fn site(&self, site: &SiteName) -> Option<&SiteAuth> {
        self.sites.get(site)
    }

    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Who sends a request for `site`. A store failure is a 503: a
    /// signed-in user must not be served as anonymous (or refused) because
    /// the store blinked.
    pub async fn visitor(&self, site: &SiteName, request: &Request<'_>) -> Result<Visitor, Reply> {
        if !self.sites.contains_key(site) {
            return Ok(Visitor::Anonymous);
        }
        let Some(cookie) = cookies::value(request.headers, cookies::SESSION) else {
            return Ok(Visitor::Anonymous);
        };
        let Some(secret) = SessionSecret::parse(cookie) else {
            return Ok(Visitor::StaleCookie);
        };
        let trusted = self.revocations.trusted(site);
        match self.sessions.load(site, &secret, now_ms(), trusted).await {
            Ok(Some(session)) => Ok(Visitor::SignedIn(session)),
            Ok(None) => Ok(Visitor::StaleCookie),
            Err(error) => {
                tracing::error!(%site, %error, "reading a session failed");
                Err(Reply::unavailable())
            }
        }
    }

    /// Answers a `/_grove/auth/` route; `body` is the request body (only
    /// the back-channel logout has one).
    pub async fn handle(&self, route: AuthRoute, request: &Request<'_>, target: &Target, body: Bytes) -> Reply {
        let Some(site) = self.sites.get(&target.site) else {
            return Reply::text(StatusCode::NOT_FOUND, "sign-in is not configured for this site");
        };
        let method = request.method;
        let reply = match (route, method) {
            (AuthRoute::Login, &http::Method::GET) => self.login(site, request).await,
            (AuthRoute::Callback, &http::Method::GET) => self.callback(site, request, target).await,
            (AuthRoute::Logout, &http::Method::POST) => self.logout(site, request, target).await,
            (AuthRoute::BackchannelLogout, &http::Method::POST) => self.backchannel_logout(site, target, &body).await,
            (AuthRoute::Me, &http::Method::GET | &http::Method::HEAD) => self.me(request, target).await,
            (AuthRoute::Logout | AuthRoute::BackchannelLogout, _) => {
                Reply::text(StatusCode::METHOD_NOT_ALLOWED, "use POST").with(header::ALLOW, "POST")
            }
            _ => Reply::text(StatusCode::METHOD_NOT_ALLOWED, "use GET").with(header::ALLOW, "GET"),
        };
        // Nothing of sign-in is ever kept by a cache.
        reply.with(header::CACHE_CONTROL, "no-store")
    }

    fn redirect_uri(&self, request: &Request<'_>) -> String {
        let host = strip_port(request.host.unwrap_or_default()).to_ascii_lowercase();
        format!(
            "{}{}",
            self.config.site_url(&host),
            AUTH_CALLBACK.trim_start_matches('/')
        )
    }

    async fn login(&self, site: &SiteAuth, request: &Request<'_>) -> Reply {
        let return_to = match query_value(request.query, "return") {
            None => "/".to_owned(),
            Some(path) => match safe_return(&path) {
                Some(path) => path,
                None => {
                    return Reply::text(
                        StatusCode::BAD_REQUEST,
                        "return must be a path on this site (starting with one /)",
                    );
                }
            },
        };
        let authorization = match site.provider.authorize(&self.redirect_uri(request)).await {
            Ok(authorization) => authorization,
            Err(error) => return provider_unavailable(&error),
        };
        let login = LoginState {
            pkce_verifier: authorization.pkce_verifier,
            nonce: authorization.nonce,
            return_to,
            host: strip_port(request.host.unwrap_or_default()).to_ascii_lowercase(),
            expires_ms: now_ms() + LOGIN_TTL_SECS * 1000,
        };
        let sealed = match self.login_states.seal(&authorization.state, &login).await {
            Ok(sealed) => sealed,
            Err(error) => {
                tracing::error!(%error, "sealing a sign-in failed");
                return Reply::unavailable();
            }
        };
        let cookie_name = format!("{}{}", cookies::LOGIN_PREFIX, authorization.state);
        Reply::redirect(StatusCode::FOUND, &authorization.url)
            .with(header::SET_COOKIE, cookies::set(&cookie_name, &sealed, LOGIN_TTL_SECS))
    }

    async fn callback(&self, site: &SiteAuth, request: &Request<'_>, target: &Target) -> Reply {
        if let Some(error) = query_value(request.query, "error") {
            let description = query_value(request.query, "error_description").unwrap_or_default();
            return Reply::text(
                StatusCode::BAD_REQUEST,
                &format!("the provider ended the sign-in: {error} {description}"),
            );
        }
        let (Some(code), Some(state)) = (query_value(request.query, "code"), query_value(request.query, "state"))
        else {
            return Reply::text(StatusCode::BAD_REQUEST, "the callback needs code and state");
        };
        // The state names a cookie: only what `authorize` makes is taken.
        if state.is_empty()
            || state.len() > 128
            || !state
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'))
        {
            return Reply::text(StatusCode::BAD_REQUEST, "the callback's state is malformed");
        }
        let cookie_name = format!("{}{}", cookies::LOGIN_PREFIX, state);
        let clear_login = cookies::clear(&cookie_name);
        let refuse = |message: &str| {
            metrics::SIGN_INS.with_label_values(&["refused"]).inc();
            Reply::text(StatusCode::BAD_REQUEST, message).with(header::SET_COOKIE, clear_login.clone())
        };
        let Some(sealed) = cookies::value(request.headers, &cookie_name) else {
            return refuse("no sign-in was started from this browser on this host; start again at /_grove/auth/login");
        };
        let login = match self.login_states.open(&state, sealed, now_ms()).await {
            Ok(login) => login,
            Err(error) => return refuse(&error.to_string()),
        };
        let host = strip_port(request.host.unwrap_or_default()).to_ascii_lowercase();
        if login.host != host {
            return refuse("this sign-in was started on another host");
        }
        let signed_in = match site
            .provider
            .finish(&self.redirect_uri(request), &code, &login.pkce_verifier, &login.nonce)
            .await
        {
            Ok(signed_in) => signed_in,
            Err(error) => {
                tracing::warn!(site = %target.site, %error, "a sign-in failed");
                return refuse(&format!("the sign-in failed: {error}"));
            }
        };
        let now = now_ms();
        let record = SessionRecord {
            site: target.site.to_string(),
            identity: signed_in,
            created_ms: now,
            idle_ms: site.idle_ms,
            idle_expires_ms: now.saturating_add(site.idle_ms),
            absolute_expires_ms: now.saturating_add(site.absolute_ms),
        };
        let secret = match self.sessions.create(&target.site, record).await {
            Ok(secret) => secret,
            Err(error) => {
                tracing::error!(site = %target.site, %error, "storing a session failed");
                return Reply::unavailable();
            }
        };
        metrics::SIGN_INS.with_label_values(&["ok"]).inc();
        let mut reply = Reply::redirect(StatusCode::SEE_OTHER, &login.return_to);
        reply.headers.append(
            header::SET_COOKIE,
            header::HeaderValue::try_from(cookies::set(cookies::SESSION, secret.reveal(), site.absolute_ms / 1000))
                .expect("cookie values are header-safe"),
        );
        reply.headers.append(
            header::SET_COOKIE,
            header::HeaderValue::try_from(clear_login).expect("cookie values are header-safe"),
        );
        reply
    }

    async fn logout(&self, site: &SiteAuth, request: &Request<'_>, target: &Target) -> Reply {
        if !same_origin(request) {
            return cross_site_refused();
        }
        let mut location = "/".to_owned();
        let visitor = match self.visitor(&target.site, request).await {
            Ok(visitor) => visitor,
            // The session may live on: say so rather than pretend it ended.
            Err(reply) => return reply,
        };
        if let Visitor::SignedIn(session) = visitor {
            if let Err(error) = self.sessions.end(&target.site, &session.id).await {
                tracing::error!(site = %target.site, %error, "ending a session failed");
                return Reply::unavailable();
            }
            metrics::SESSIONS_ENDED.with_label_values(&["logout"]).inc();
            self.revocations.announce(&target.site, &[session.id]).await;
            if let Some(url) = site.provider.end_session_url(&session.record.identity.id_token).await {
                location = url;
            }
        }
        Reply::redirect(StatusCode::SEE_OTHER, &location).with(header::SET_COOKIE, cookies::clear(cookies::SESSION))
    }

    async fn backchannel_logout(&self, site: &SiteAuth, target: &Target, body: &[u8]) -> Reply {
        let refuse = |status: StatusCode, description: String| {
            Reply::json(
                status,
                &serde_json::json!({ "error": "invalid_request", "error_description": description }),
            )
        };
        let token = url::form_urlencoded::parse(body)
            .find(|(key, _)| key == "logout_token")
            .map(|(_, value)| value.into_owned());
        let Some(token) = token else {
            return refuse(StatusCode::BAD_REQUEST, "the body needs logout_token".to_owned());
        };
        let now_secs = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
        let target_sessions = match site.provider.verify_logout_token(&token, now_secs).await {
            Ok(found) => found,
            Err(error) => return refuse(StatusCode::BAD_REQUEST, error.to_string()),
        };
        let ended = match &target_sessions {
            LogoutTarget::ProviderSession(sid) => self.sessions.end_all(&target.site, BY_PROVIDER_SESSION, sid).await,
            LogoutTarget::Subject(sub) => self.sessions.end_all(&target.site, BY_SUBJECT, sub).await,
        };
        match ended {
            Ok(ids) => {
                tracing::info!(site = %target.site, sessions = ids.len(), "back-channel logout");
                metrics::SESSIONS_ENDED
                    .with_label_values(&["backchannel"])
                    .inc_by(ids.len() as u64);
                self.revocations.announce(&target.site, &ids).await;
                Reply::json(StatusCode::OK, &serde_json::json!({ "ended": ids.len() }))
            }
            Err(error) => {
                tracing::error!(site = %target.site, %error, "a back-channel logout failed");
                Reply::unavailable()
            }
        }
    }

    async fn me(&self, request: &Request<'_>, target: &Target) -> Reply {
        match self.visitor(&target.site, request).await {
            Ok(Visitor::SignedIn(session)) => {
                let record = &session.record;
                let identity = &record.identity;
                let member = self
                    .sites
                    .get(&target.site)
                    .is_some_and(|site| site.access.allows(record));
                Reply::json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "subject": identity.subject,
                        "email": identity.email,
                        "email_verified": identity.email_verified,
                        "member": member,
                        "claims": identity.claims,
                        "expires_ms": record.idle_expires_ms.min(record.absolute_expires_ms),
                    }),
                )
            }
            Ok(_) => Reply::json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({ "error": "unauthorized", "message": "not signed in" }),
            ),
            Err(reply) => reply,
        }
    }
}

fn provider_unavailable(error: &provider::ProviderError) -> Reply {
    tracing::error!(%error, "the OpenID provider is unavailable");
    Reply::text(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("sign-in is unavailable: {error}"),
    )
    .with(header::RETRY_AFTER, "5")
}

/// The refusal of a cookie-authenticated request from another site.
pub fn cross_site_refused() -> Reply {
    Reply::json(
        StatusCode::FORBIDDEN,
        &serde_json::json!({
            "error": "cross_site",
            "message": "a signed-in request that changes something must come from this site (Origin or Sec-Fetch-Site)",
        }),
    )
}

/// Whether a request comes from a page of its own host: `Sec-Fetch-Site:
/// same-origin`, or an `Origin` naming the request's host. A request with
/// neither is refused, as browsers send one of them on every POST.
pub fn same_origin(request: &Request<'_>) -> bool {
    if let Some(site) = request.header("sec-fetch-site") {
        return site == "same-origin";
    }
    let (Some(origin), Some(host)) = (request.header(header::ORIGIN), request.host) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or_default();
    !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// A `return` path that stays on this site: one leading `/`, no `//` or
/// `/\` (which browsers read as another host), printable ASCII only (a
/// `Location` must be; other characters come percent-encoded).
fn safe_return(path: &str) -> Option<String> {
    let stays = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= MAX_RETURN_BYTES
        && path.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'\\');
    stays.then(|| path.to_owned())
}

/// The first value of `key` in a query string, decoded.
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_the_site() {
        assert_eq!(safe_return("/members/?a=1").as_deref(), Some("/members/?a=1"));
        for bad in [
            "//evil.example",
            "/caf\u{e9}",
            "/a b",
            "/\\evil.example",
            "https://evil.example/",
            "evil",
            "/a\nb",
            "/a\\b",
            "",
        ] {
            assert_eq!(safe_return(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn same_origin_needs_the_fetch_metadata_or_a_matching_origin() {
        let method = http::Method::POST;
        let check = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = http::HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            same_origin(&Request {
                method: &method,
                host: Some("demo.localhost:8080"),
                path: "/",
                query: None,
                headers: &headers,
            })
        };
        assert!(check(&[("sec-fetch-site", "same-origin")]));
        assert!(!check(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://demo.localhost:8080")
        ]));
        assert!(check(&[("origin", "http://demo.localhost:8080")]));
        assert!(!check(&[("origin", "http://evil.localhost:8080")]));
        assert!(!check(&[("origin", "null")]));
        assert!(!check(&[]));
    }
}
