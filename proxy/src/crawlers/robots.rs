//! The generated `robots.txt`: crawl everything but the host's own API,
//! sign-in and event-stream routes, and find the sitemap on the canonical
//! host. Previews and other non-canonical hosts get the same rules without
//! a `Sitemap:` line, so crawlers still fetch their pages and see the
//! `noindex` they carry.

use crate::route::{API_PREFIX, AUTH_PREFIX, LIVE};

/// Its path in a site.
pub const FILE: &str = "robots.txt";

/// The generated file; `sitemap` is the sitemap's absolute URL, named only
/// on the canonical host.
pub fn generated(sitemap: Option<&str>) -> String {
    let mut text = String::from("User-agent: *\n");
    for path in [API_PREFIX, AUTH_PREFIX, LIVE] {
        text.push_str(&format!("Disallow: {path}\n"));
    }
    if let Some(sitemap) = sitemap {
        text.push_str(&format!("\nSitemap: {sitemap}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_crawlers_out_of_the_hosts_own_routes_only() {
        assert_eq!(
            generated(Some("https://example.com/sitemap.xml")),
            "User-agent: *\nDisallow: /_grove/api/\nDisallow: /_grove/auth/\nDisallow: /_grove/live\n\
             \nSitemap: https://example.com/sitemap.xml\n"
        );
        assert!(!generated(None).contains("Sitemap"));
    }
}
