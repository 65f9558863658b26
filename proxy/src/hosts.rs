//! Host name -> site (and an optional pinned version, for preview hosts).

use std::collections::HashMap;

use grove_core::SiteName;

/// Which site a request is for, and the version its host pins, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub site: SiteName,
    /// From a preview host `<n>--<site>.<base domain>`.
    pub pinned: Option<u64>,
}

/// Maps hosts to sites: `<site>.<base>`, `<n>--<site>.<base>` and custom domains.
#[derive(Debug, Clone)]
pub struct Router {
    base_suffix: String,
    custom: HashMap<String, SiteName>,
}

impl Router {
    pub fn new(base_domain: &str, custom: impl IntoIterator<Item = (String, SiteName)>) -> Self {
        Self {
            base_suffix: format!(".{}", normalize(base_domain)),
            custom: custom
                .into_iter()
                .map(|(domain, site)| (normalize(&domain), site))
                .collect(),
        }
    }

    /// The target of a `Host` header or `:authority` value; `None` for a host
    /// this server does not serve.
    pub fn route(&self, host: &str) -> Option<Target> {
        let host = normalize(strip_port(host));
        if let Some(site) = self.custom.get(&host) {
            return Some(Target {
                site: site.clone(),
                pinned: None,
            });
        }
        let label = host.strip_suffix(&self.base_suffix)?;
        if label.contains('.') {
            return None;
        }
        match label.split_once(PREVIEW_SEPARATOR) {
            Some((version, site)) => Some(Target {
                site: SiteName::parse(site).ok()?,
                pinned: Some(version.parse().ok().filter(|n| *n > 0)?),
            }),
            None => Some(Target {
                site: SiteName::parse(label).ok()?,
                pinned: None,
            }),
        }
    }
}

/// Separates the version from the site in a preview host's first label.
const PREVIEW_SEPARATOR: &str = "--";

/// The preview host of version `n` of the site served at `site_host`
/// (`<site>.<base domain>`): the form [`Router::route`] reads back.
pub fn preview_host(n: u64, site_host: &str) -> String {
    format!("{n}{PREVIEW_SEPARATOR}{site_host}")
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `example.com:8080` -> `example.com`; `[::1]:8080` -> `[::1]`.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(
            "localhost",
            [("www.example.com".to_owned(), SiteName::parse("blog").unwrap())],
        )
    }

    fn target(site: &str, pinned: Option<u64>) -> Option<Target> {
        Some(Target {
            site: SiteName::parse(site).unwrap(),
            pinned,
        })
    }

    #[test]
    fn routes_site_preview_and_custom_hosts() {
        let router = router();
        assert_eq!(router.route("demo.localhost"), target("demo", None));
        assert_eq!(router.route("Demo.LOCALHOST:8080"), target("demo", None));
        assert_eq!(router.route("demo.localhost."), target("demo", None));
        assert_eq!(router.route("12--demo.localhost:8080"), target("demo", Some(12)));
        assert_eq!(
            router.route(&preview_host(7, "demo.localhost")),
            target("demo", Some(7))
        );
        assert_eq!(router.route("WWW.example.com"), target("blog", None));
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
            "",
        ] {
            assert_eq!(router.route(host), None, "{host}");
        }
    }
}
