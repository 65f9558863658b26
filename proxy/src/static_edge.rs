//! What a `role = "static"` edge hands to the full edges at `[live] url`:
//! sign-in (always by redirect: it is a navigation, and its cookies belong
//! to the live host), the node and publish APIs and live streams (proxied
//! or redirected, as `[live] api` says), and signed-in visitors' and
//! members-only pages (redirected, so they get the live site). Everything
//! else is the published snapshot, which it serves itself.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode, header};
use pingora::upstreams::peer::HttpPeer;

use crate::app::Grove;
use crate::config::{LiveApi, LiveConfig};
use crate::hosts::{Target, strip_port};
use crate::reply::{FailureReply, Reply};
use crate::request::Request;
use crate::route::Route;

/// Seconds to connect to, and then hear from, the live host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Live streams send a keep-alive every 15 s, so this must be longer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What a static edge does with a request it does not serve.
pub enum Handoff {
    /// A redirect (or a refusal) written as it is.
    Reply(Reply),
    /// Proxied to the live host.
    Forward(LiveCall),
}

/// A request on its way to the live host.
pub struct LiveCall {
    address: SocketAddr,
    tls: bool,
    /// The live host's `host[:port]`, sent as `Host`.
    authority: String,
    /// The name TLS verifies.
    server_name: String,
}

impl LiveCall {
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn peer(&self) -> Box<HttpPeer> {
        let mut peer = HttpPeer::new(self.address, self.tls, self.server_name.clone());
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.total_connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.read_timeout = Some(READ_TIMEOUT);
        peer.options.write_timeout = Some(READ_TIMEOUT);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Box::new(peer)
    }
}

/// `None`: the static edge serves it. `signed_in`: the request carries a
/// session cookie.
pub async fn handoff(
    grove: &Grove,
    live: &LiveConfig,
    route: Route<'_>,
    request: &Request<'_>,
    target: Option<&Target>,
    signed_in: bool,
) -> Option<Handoff> {
    let target = target?;
    let api = match route {
        Route::Auth(_) => false,
        Route::NodeCall { .. } | Route::PublishCall { .. } | Route::Live => true,
        Route::SiteFile if matches!(*request.method, Method::GET | Method::HEAD) => {
            let members_only = grove
                .auth()
                .site(&target.site)
                .is_some_and(|site| site.access.is_protected(request.path));
            if !signed_in && !members_only {
                return None;
            }
            false
        }
        _ => return None,
    };
    let origin = live_origin(live, request.host.unwrap_or_default(), target);
    if api && live.api == LiveApi::Proxy {
        return Some(match forward(&origin).await {
            Ok(call) => Handoff::Forward(call),
            Err(message) => Handoff::Reply(
                grove_core::api_error::ApiFailure::new(StatusCode::BAD_GATEWAY, "live_unreachable", message)
                    .into_reply(),
            ),
        });
    }
    let location = match request.query {
        Some(query) => format!("{origin}{}?{query}", request.path),
        None => format!("{origin}{}", request.path),
    };
    // 307 keeps the method and body (a sign-out is a POST). Each visitor's
    // own: never kept by a CDN.
    Some(Handoff::Reply(
        Reply::redirect(StatusCode::TEMPORARY_REDIRECT, &location).with(header::CACHE_CONTROL, "private, no-store"),
    ))
}

/// The live host's origin for this request, without the final `/`.
fn live_origin(live: &LiveConfig, host: &str, target: &Target) -> String {
    let host = strip_port(host);
    live.url
        .replace("{host}", host)
        .replace("{site}", target.site.as_str())
        .trim_end_matches('/')
        .to_owned()
}

/// Resolves the live host (without blocking the runtime).
async fn forward(origin: &str) -> Result<LiveCall, String> {
    let url = url::Url::parse(origin).map_err(|error| format!("[live] url gives {origin:?}: {error}"))?;
    let tls = url.scheme() == "https";
    let server_name = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    let authority = match url.port() {
        Some(port) => format!("{server_name}:{port}"),
        None => server_name.clone(),
    };
    // RFC 6761: `localhost` and names under it are loopback, whatever DNS
    // says (as browsers resolve them; the demo's hosts are such names).
    let address = if server_name == "localhost" || server_name.ends_with(".localhost") {
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))
    } else {
        tokio::net::lookup_host((server_name.trim_matches(['[', ']']), port))
            .await
            .map_err(|error| format!("resolving the live host {server_name}: {error}"))?
            .next()
            .ok_or_else(|| format!("the live host {server_name} has no address"))?
    };
    Ok(LiveCall {
        address,
        tls,
        authority,
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_origin_fills_in_host_and_site() {
        let target = Target {
            site: grove_core::SiteName::parse("blog").unwrap(),
            pinned: None,
            role: crate::hosts::HostRole::Canonical,
        };
        let live = LiveConfig {
            url: "https://{site}.live.example.com/".to_owned(),
            api: LiveApi::Proxy,
        };
        assert_eq!(
            live_origin(&live, "blog.example.com:80", &target),
            "https://blog.live.example.com"
        );
        let same_host = LiveConfig {
            url: "http://{host}:8081/".to_owned(),
            api: LiveApi::Redirect,
        };
        assert_eq!(
            live_origin(&same_host, "blog.localhost:8080", &target),
            "http://blog.localhost:8081"
        );
    }
}
