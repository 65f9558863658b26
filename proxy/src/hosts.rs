//! Host name -> site (and an optional pinned version, for preview hosts).

use std::borrow::Cow;
use std::collections::HashMap;

use grove_core::SiteName;
use grove_core::names::{PREVIEW_SEPARATOR, split_preview};

/// Which site a request is for, and the version its host pins, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub site: SiteName,
    /// From a preview host `<n>--<site>.<base domain>`.
    pub pinned: Option<u64>,
    /// What search engines should make of the host.
    pub role: HostRole,
}

/// A host's part in search: one host per site is indexed, and every other
/// way to reach the site says so and points there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostRole {
    /// The site's canonical host: the one that is indexed.
    Canonical,
    /// Another host of the site (`<site>.<base>` or a custom domain): it
    /// points at the canonical one and is not indexed.
    Alias,
    /// A preview host: served as it is, never indexed.
    Preview,
}

impl HostRole {
    /// Whether every response on this host carries `X-Robots-Tag: noindex`.
    pub fn noindex(self) -> bool {
        self != Self::Canonical
    }
}

/// Maps hosts to sites: `<site>.<base>`, `<n>--<site>.<base>` and custom domains.
#[derive(Debug, Clone)]
pub struct Router {
    base_suffix: String,
    custom: HashMap<String, SiteName>,
    /// Canonical hosts of the sites that have one other than `<site>.<base>`.
    canonical: HashMap<SiteName, String>,
}

impl Router {
    /// `canonical` names each site's canonical host where it is not
    /// `<site>.<base_domain>`.
    pub fn new(
        base_domain: &str,
        custom: impl IntoIterator<Item = (String, SiteName)>,
        canonical: impl IntoIterator<Item = (SiteName, String)>,
    ) -> Self {
        Self {
            base_suffix: format!(".{}", normalize(base_domain)),
            custom: custom
                .into_iter()
                .map(|(domain, site)| (normalize(&domain).into_owned(), site))
                .collect(),
            canonical: canonical
                .into_iter()
                .map(|(site, host)| (site, normalize(&host).into_owned()))
                .collect(),
        }
    }

    fn role(&self, site: &SiteName, host: &str) -> HostRole {
        let canonical = match self.canonical.get(site) {
            Some(canonical) => canonical == host,
            None => host.strip_suffix(&self.base_suffix) == Some(site.as_str()),
        };
        if canonical {
            HostRole::Canonical
        } else {
            HostRole::Alias
        }
    }

    /// The target of a `Host` header or `:authority` value; `None` for a host
    /// this server does not serve.
    pub fn route(&self, host: &str) -> Option<Target> {
        let host = normalize(strip_port(host));
        if let Some(site) = self.custom.get(&*host) {
            return Some(Target {
                role: self.role(site, &host),
                site: site.clone(),
                pinned: None,
            });
        }
        let label = host.strip_suffix(&self.base_suffix)?;
        if label.contains('.') {
            return None;
        }
        match split_preview(label) {
            Some((version, site)) => Some(Target {
                site: SiteName::parse(site).ok()?,
                pinned: Some(version.parse().ok().filter(|n| *n > 0)?),
                role: HostRole::Preview,
            }),
            None => {
                let site = SiteName::parse(label).ok()?;
                Some(Target {
                    role: self.role(&site, &host),
                    site,
                    pinned: None,
                })
            }
        }
    }
}

/// The preview host of version `n` of the site served at `site_host`
/// (`<site>.<base domain>`): the form [`Router::route`] reads back.
pub fn preview_host(n: u64, site_host: &str) -> String {
    format!("{n}{PREVIEW_SEPARATOR}{site_host}")
}

/// The host lowercased without its trailing dots; borrowed when it already
/// is (as nearly every request's is), so routing allocates nothing for it.
fn normalize(host: &str) -> Cow<'_, str> {
    let host = host.trim_end_matches('.');
    if host.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:8080` -> `[::1]`. A host
/// whose part after the name is not a port is returned whole, and routes
/// nowhere.
pub fn strip_port(host: &str) -> &str {
    // Byte searches: a host is a few dozen bytes, too short for
    // `str::find`'s vectorised search to pay for its setup.
    let bytes = host.as_bytes();
    let name_end = if host.starts_with('[') {
        bytes
            .iter()
            .position(|&byte| byte == b']')
            .map_or(host.len(), |end| end + 1)
    } else {
        bytes.iter().rposition(|&byte| byte == b':').unwrap_or(host.len())
    };
    let (name, rest) = host.split_at(name_end);
    let port = rest.strip_prefix(':');
    if rest.is_empty() || port.is_some_and(|port| port.bytes().all(|byte| byte.is_ascii_digit())) {
        name
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_stripped_from_names_and_addresses_alike() {
        assert_eq!(strip_port("demo.localhost:8080"), "demo.localhost");
        assert_eq!(strip_port("demo.localhost"), "demo.localhost");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        // Not a port: the host as it is, which no site is named.
        assert_eq!(strip_port("demo.localhost:http"), "demo.localhost:http");
        assert_eq!(strip_port("[::1]x"), "[::1]x");
    }

    #[test]
    fn a_normalized_host_is_borrowed_and_any_other_lowered() {
        assert!(matches!(normalize("blog.localhost"), Cow::Borrowed("blog.localhost")));
        assert!(matches!(normalize("blog.localhost.."), Cow::Borrowed("blog.localhost")));
        assert_eq!(normalize("WWW.Example.com."), "www.example.com");
        assert_eq!(
            router().route("WWW.Example.com.:443"),
            target("blog", None, HostRole::Canonical)
        );
    }

    fn router() -> Router {
        let blog = SiteName::parse("blog").unwrap();
        Router::new(
            "localhost",
            [
                ("www.example.com".to_owned(), blog.clone()),
                ("blog.example.org".to_owned(), blog.clone()),
            ],
            [(blog, "WWW.example.com".to_owned())],
        )
    }

    fn target(site: &str, pinned: Option<u64>, role: HostRole) -> Option<Target> {
        Some(Target {
            site: SiteName::parse(site).unwrap(),
            pinned,
            role,
        })
    }

    #[test]
    fn routes_site_preview_and_custom_hosts() {
        use HostRole::*;
        let router = router();
        assert_eq!(router.route("demo.localhost"), target("demo", None, Canonical));
        assert_eq!(router.route("Demo.LOCALHOST:8080"), target("demo", None, Canonical));
        assert_eq!(router.route("demo.localhost."), target("demo", None, Canonical));
        assert_eq!(
            router.route("12--demo.localhost:8080"),
            target("demo", Some(12), Preview)
        );
        assert_eq!(
            router.route(&preview_host(7, "demo.localhost")),
            target("demo", Some(7), Preview)
        );
        assert_eq!(router.route("WWW.example.com"), target("blog", None, Canonical));
        assert_eq!(router.route("blog.example.org"), target("blog", None, Alias));
        assert_eq!(router.route("blog.localhost"), target("blog", None, Alias));
        assert_eq!(router.route("3--blog.localhost"), target("blog", Some(3), Preview));
    }

    #[test]
    fn unknown_and_malformed_hosts_route_nowhere() {
        let router = router();
        for host in [
            "localhost",
            "example.com",
            "a.b.localhost",
            "0--demo.localhost",
            "x--demo.localhost",
            "-bad.localhost",
            "[::1]:8080",
            "demo.localhost:http",
            "",
        ] {
            assert_eq!(router.route(host), None, "{host}");
        }
    }
}
