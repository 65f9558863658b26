//! What search engines get: one canonical host per site, `noindex` on every
//! other way to reach it (previews, aliases), and a `robots.txt` and
//! `sitemap.xml` for sites that bring none.

pub mod robots;
pub mod sitemap;

use grove_core::SiteName;

use crate::config::Config;

/// The header that keeps a response out of search indexes.
pub const ROBOTS_TAG: &str = "x-robots-tag";
/// Its value on previews and non-canonical hosts.
pub const NOINDEX: &str = "noindex";

/// The origin of a site's canonical host, `https://example.com`: its scheme
/// (and port) follow `public_url`.
pub fn canonical_origin(config: &Config, site: &SiteName) -> String {
    config
        .site_url(&config.canonical_host(site.as_str()))
        .trim_end_matches('/')
        .to_owned()
}

/// The same path and query on the canonical host.
pub fn canonical_location(origin: &str, path: &str, query: Option<&str>) -> String {
    crate::app::with_query(&format!("{origin}{path}"), query)
}

/// A `Link` header naming the canonical URL.
pub fn canonical_link(location: &str) -> String {
    format!("<{location}>; rel=\"canonical\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_url_keeps_the_path_and_query() {
        let config =
            Config::parse("public_url = \"https://{host}/\"\n[sites.blog]\ndomains = [\"blog.example.com\"]").unwrap();
        let blog = SiteName::parse("blog").unwrap();
        let origin = canonical_origin(&config, &blog);
        assert_eq!(origin, "https://blog.example.com");
        let location = canonical_location(&origin, "/a%20b/", Some("x=1&y"));
        assert_eq!(location, "https://blog.example.com/a%20b/?x=1&y");
        assert_eq!(
            canonical_link(&location),
            "<https://blog.example.com/a%20b/?x=1&y>; rel=\"canonical\""
        );
        let local = Config::parse("listen = \"127.0.0.1:8080\"").unwrap();
        assert_eq!(
            canonical_origin(&local, &SiteName::parse("demo").unwrap()),
            "http://demo.localhost:8080"
        );
    }
}
