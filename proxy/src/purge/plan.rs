//! What a new version makes stale at the CDN: the cache tags of the URLs
//! whose answer changed, worked out from the tree diff.

use std::collections::BTreeSet;

use grove_core::SiteName;
use grove_core::publish_api::PurgePlan;
use grove_core::tree::Difference;

use crate::semantics::{is_fingerprinted, path_tag, root_document_tag, site_tag};

/// Files that change how every URL of a site is answered.
const SITE_WIDE_FILES: [&str; 2] = ["_redirects", "_headers"];

/// The purge for a version that made `changes`, a site served at `hosts`.
///
/// - A changed file purges its tag, which every URL serving it carries.
/// - An added or removed page also purges the tags of the files that could
///   answer the same URLs (`about.html` and `about/index.html` both answer
///   `/about`), since which one answers may have changed.
/// - Fingerprinted files are never purged: their URLs never change meaning.
/// - A change to `_redirects` or `_headers` purges the site tag.
/// - The root document (`/_grove/root`) changes with every version.
/// - More than `host_threshold` tags purge the hosts instead, in one request.
pub fn plan(site: &SiteName, changes: &[Difference], hosts: Vec<String>, host_threshold: usize) -> PurgePlan {
    if changes
        .iter()
        .any(|change| SITE_WIDE_FILES.contains(&change.path().as_str()))
    {
        return PurgePlan::Tags(vec![site_tag(site)]);
    }
    let mut tags = BTreeSet::new();
    for change in changes {
        let path = change.path().as_str();
        if is_fingerprinted(path) {
            continue;
        }
        tags.insert(path_tag(site, path));
        if !matches!(change, Difference::Changed { .. }) {
            tags.extend(url_siblings(path).iter().map(|sibling| path_tag(site, sibling)));
        }
    }
    tags.insert(root_document_tag(site));
    if tags.len() > host_threshold {
        return PurgePlan::Hosts(hosts);
    }
    PurgePlan::Tags(tags.into_iter().collect())
}

/// The other files that clean URLs could resolve in place of `path`:
/// `a`, `a.html` and `a/index.html` compete for `/a` and `/a/`.
fn url_siblings(path: &str) -> Vec<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = if path == "index.html" {
        return Vec::new();
    } else if let Some(dir) = path.strip_suffix("/index.html") {
        dir
    } else if let Some(stem) = path.strip_suffix(".html") {
        stem
    } else if !name.contains('.') {
        path
    } else {
        return Vec::new();
    };
    [stem.to_owned(), format!("{stem}.html"), format!("{stem}/index.html")]
        .into_iter()
        .filter(|sibling| sibling != path)
        .collect()
}

#[cfg(test)]
mod tests {
    use grove_core::tree::Entry;
    use grove_core::{ContentHash, ContentType, SitePath};

    use super::*;

    fn entry(path: &str, body: &str) -> Entry {
        Entry {
            path: SitePath::parse(path).unwrap(),
            hash: ContentHash::of(body.as_bytes()),
            size: body.len() as u64,
            content_type: ContentType::parse("text/html").unwrap(),
        }
    }

    fn changed(path: &str) -> Difference {
        Difference::Changed {
            old: entry(path, "old"),
            new: entry(path, "new"),
        }
    }

    fn tags(plan: PurgePlan) -> Vec<String> {
        match plan {
            PurgePlan::Tags(tags) => tags,
            PurgePlan::Hosts(hosts) => panic!("expected tags, got hosts {hosts:?}"),
        }
    }

    #[test]
    fn changed_pages_purge_their_tags_and_the_root_document_only() {
        let site = SiteName::parse("blog").unwrap();
        let changes = [
            changed("index.html"),
            changed("about/index.html"),
            changed("_astro/app.1a2b3c4d5e.js"),
        ];
        assert_eq!(
            tags(plan(&site, &changes, vec![], 500)),
            [
                "grove:blog/about/index.html",
                "grove:blog/index.html",
                "grove:blog:root"
            ]
        );
    }

    #[test]
    fn added_and_removed_pages_also_purge_the_files_competing_for_their_urls() {
        let site = SiteName::parse("blog").unwrap();
        let changes = [
            Difference::Added(entry("about.html", "x")),
            Difference::Removed(entry("docs/index.html", "y")),
            Difference::Added(entry("style.css", "z")),
        ];
        assert_eq!(
            tags(plan(&site, &changes, vec![], 500)),
            [
                "grove:blog/about",
                "grove:blog/about.html",
                "grove:blog/about/index.html",
                "grove:blog/docs",
                "grove:blog/docs.html",
                "grove:blog/docs/index.html",
                "grove:blog/style.css",
                "grove:blog:root",
            ]
        );
    }

    #[test]
    fn rule_files_purge_the_site_and_large_changes_purge_the_hosts() {
        let site = SiteName::parse("blog").unwrap();
        let rules = [changed("a.html"), changed("_redirects")];
        assert_eq!(tags(plan(&site, &rules, vec![], 500)), ["grove:blog"]);
        let many: Vec<Difference> = (0..600).map(|i| changed(&format!("p{i}.html"))).collect();
        let hosts = vec!["blog.example.net".to_owned(), "www.blog.com".to_owned()];
        assert_eq!(plan(&site, &many, hosts.clone(), 500), PurgePlan::Hosts(hosts));
        assert!(matches!(plan(&site, &many[..499], vec![], 500), PurgePlan::Tags(tags) if tags.len() == 500));
    }
}
