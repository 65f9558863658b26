//! The generated `sitemap.xml` of a site version, for sites that bring none.
//!
//! It lists the version's HTML pages at the URL path resolution serves them
//! by, with the `lastmod` of the version that last changed each one. Left
//! out: `404.html`, `_*` paths, members-only pages, pages a forced
//! `_redirects` rule shadows, and pages whose head says `noindex` or names
//! another canonical URL (read at publish time, [`grove_objects::pages`]).
//! Database-backed pages with one URL are listed too.
//! Past the protocol's limits (50,000 URLs or 50 MB a file) `sitemap.xml`
//! becomes a sitemap index of `sitemap-<n>.xml` files, which live at the
//! root because a sitemap may only list URLs under its own directory.

use std::collections::HashMap;
use std::fmt::Write;

use bytes::Bytes;
use grove_core::tree::{Entry, TreeError};
use grove_core::{ContentHash, SitePath};
use grove_objects::pages::PageIndex;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::access::Access;
use crate::config::TrailingSlash;
use crate::resolve::{Files, RequestPath, Resolution, encode_path, resolve};
use crate::rules::Redirects;

/// How large one sitemap file may grow.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub urls: usize,
    pub bytes: usize,
}

/// The sitemaps protocol's limits.
pub const PROTOCOL_LIMITS: Limits = Limits {
    urls: 50_000,
    bytes: 50 * 1024 * 1024,
};

/// The generated sitemap's file name, and the site's own file names that
/// stand in for it.
pub const SITEMAP: &str = "sitemap.xml";
const OWN_INDEX: &str = "sitemap-index.xml";

/// What a site version's sitemap is.
#[derive(Debug)]
pub enum Sitemap {
    /// The site brings its own (top-level `sitemap*.xml`): served as it is.
    Own(String),
    Generated(Generated),
}

/// A generated sitemap: one file, or an index and its parts.
#[derive(Debug)]
pub struct Generated {
    /// URLs listed in all.
    pub urls: usize,
    /// `sitemap.xml` first, then `sitemap-1.xml`... when it is an index.
    documents: Vec<Document>,
}

/// One generated file and its identity (for its ETag), hashed once.
#[derive(Debug, Clone)]
pub struct Document {
    pub body: Bytes,
    pub hash: ContentHash,
}

impl Document {
    pub fn new(body: impl Into<Bytes>) -> Self {
        let body = body.into();
        Self {
            hash: ContentHash::of(&body),
            body,
        }
    }
}

impl Generated {
    /// The generated file a top-level name asks for.
    pub fn document(&self, name: &str) -> Option<&Document> {
        if name == SITEMAP {
            return self.documents.first();
        }
        let n: usize = name.strip_prefix("sitemap-")?.strip_suffix(".xml")?.parse().ok()?;
        self.documents.get(n).filter(|_| n > 0)
    }

    /// Files in all: 1, or the index and its parts.
    pub fn files(&self) -> usize {
        self.documents.len()
    }

    /// Bytes held, for the cache's weigher.
    pub fn bytes(&self) -> usize {
        self.documents.iter().map(|document| document.body.len()).sum()
    }
}

/// What a sitemap is built from.
pub struct Input<'a> {
    /// Every file of the version.
    pub entries: &'a [Entry],
    pub pages: &'a PageIndex,
    pub redirects: &'a Redirects,
    pub trailing_slash: TrailingSlash,
    pub access: Option<&'a Access>,
    /// Database-backed pages with one URL (a route without a `source`):
    /// the URL path and when its template last changed.
    pub rendered: &'a [(String, OffsetDateTime)],
    /// The canonical host's origin: `https://example.com`.
    pub origin: &'a str,
    pub limits: Limits,
}

/// The site's own sitemap among its top-level files, if it brings one.
pub fn own_sitemap(entries: &[Entry]) -> Option<String> {
    let mut own: Vec<&str> = entries
        .iter()
        .map(|entry| entry.path.as_str())
        .filter(|path| !path.contains('/') && path.starts_with("sitemap") && path.ends_with(".xml"))
        .collect();
    own.sort_by_key(|name| (*name != SITEMAP, *name != OWN_INDEX, *name));
    own.first().map(|name| (*name).to_owned())
}

/// Builds the sitemap of one version.
pub async fn build(input: &Input<'_>) -> Result<Sitemap, TreeError> {
    if let Some(own) = own_sitemap(input.entries) {
        return Ok(Sitemap::Own(own));
    }
    let files = InMemory(
        input
            .entries
            .iter()
            .map(|entry| (entry.path.to_string(), entry.clone()))
            .collect(),
    );
    let mut listed = Vec::new();
    for (path, page) in &input.pages.pages {
        if excluded(path, input.access) || page.noindex {
            continue;
        }
        let Some(entry) = files.0.get(path.as_str()) else {
            continue;
        };
        let url = page_url(&files, entry, input.trailing_slash).await?;
        if input.redirects.find(&url, true).is_some() {
            continue;
        }
        let loc = format!("{}{}", input.origin, encode_path(&url));
        if let Some(canonical) = &page.canonical
            && !names_itself(&loc, canonical)
        {
            continue;
        }
        listed.push((loc, page.lastmod));
    }
    for (url, lastmod) in input.rendered {
        let loc = format!("{}{}", input.origin, encode_path(url));
        // A rendered `/` stands in for the static index.html.
        listed.retain(|(listed, _)| *listed != loc);
        listed.push((loc, *lastmod));
    }
    listed.sort();
    Ok(Sitemap::Generated(assemble(&listed, input.origin, input.limits)))
}

/// Paths no sitemap lists, whatever their content says.
fn excluded(path: &str, access: Option<&Access>) -> bool {
    path.split('/').any(|segment| segment.starts_with('_'))
        || path.rsplit('/').next() == Some("404.html")
        || access.is_some_and(|access| access.protects_file(path))
}

/// The URL path that serves `entry`: its clean form under the site's
/// trailing-slash policy, checked by resolving it back (a sibling file can
/// claim a clean URL), else the file's own path, which always resolves to it.
async fn page_url(files: &InMemory, entry: &Entry, policy: TrailingSlash) -> Result<String, TreeError> {
    let path = entry.path.as_str();
    let exact = format!("/{path}");
    let clean = clean_url(path, policy);
    if let Some(clean) = clean
        && let Ok(request) = RequestPath::parse(&encode_path(&clean), usize::MAX)
        && let Resolution::File(found) = resolve(files, &request, policy).await?
        && found.path == entry.path
    {
        return Ok(clean);
    }
    Ok(exact)
}

/// The clean URL of page `path` under `policy`, if it has one.
fn clean_url(path: &str, policy: TrailingSlash) -> Option<String> {
    if path == "index.html" {
        return Some("/".to_owned());
    }
    if let Some(directory) = path.strip_suffix("/index.html") {
        return Some(match policy {
            TrailingSlash::Never => format!("/{directory}"),
            _ => format!("/{directory}/"),
        });
    }
    let stem = path.strip_suffix(".html")?;
    Some(match policy {
        TrailingSlash::Always => format!("/{stem}/"),
        _ => format!("/{stem}"),
    })
}

/// Whether a page's canonical link, resolved against the page's own URL,
/// names that URL (fragments aside).
fn names_itself(loc: &str, canonical: &str) -> bool {
    let Ok(own) = url::Url::parse(loc) else {
        return false;
    };
    match own.join(canonical) {
        Ok(mut named) => {
            named.set_fragment(None);
            named == own
        }
        Err(_) => false,
    }
}

/// The files of one version, in memory.
struct InMemory(HashMap<String, Entry>);

impl Files for InMemory {
    async fn file(&self, path: &str) -> Result<Option<Entry>, TreeError> {
        Ok(SitePath::parse(path)
            .ok()
            .and_then(|path| self.0.get(path.as_str()).cloned()))
    }
}

const XML_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
const URLSET_OPEN: &str = "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n";
const URLSET_CLOSE: &str = "</urlset>\n";

/// The sitemap files for `listed` (sorted `(loc, lastmod)`).
fn assemble(listed: &[(String, OffsetDateTime)], origin: &str, limits: Limits) -> Generated {
    let overhead = XML_HEAD.len() + URLSET_OPEN.len() + URLSET_CLOSE.len();
    let mut parts: Vec<(String, OffsetDateTime)> = Vec::new();
    let mut part = String::new();
    let mut in_part = 0;
    let mut newest = OffsetDateTime::UNIX_EPOCH;
    for (loc, lastmod) in listed {
        let item = format!(
            "<url><loc>{}</loc><lastmod>{}</lastmod></url>\n",
            xml_escape(loc),
            w3c_time(*lastmod)
        );
        if in_part > 0 && (in_part == limits.urls || overhead + part.len() + item.len() > limits.bytes) {
            parts.push((std::mem::take(&mut part), newest));
            in_part = 0;
            newest = OffsetDateTime::UNIX_EPOCH;
        }
        part.push_str(&item);
        in_part += 1;
        newest = newest.max(*lastmod);
    }
    parts.push((part, newest));
    let urlset = |items: &str| Document::new(format!("{XML_HEAD}{URLSET_OPEN}{items}{URLSET_CLOSE}"));
    let documents = if parts.len() == 1 {
        vec![urlset(&parts[0].0)]
    } else {
        let mut index = format!("{XML_HEAD}<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
        for (n, (_, newest)) in parts.iter().enumerate() {
            let _ = writeln!(
                index,
                "<sitemap><loc>{}/sitemap-{}.xml</loc><lastmod>{}</lastmod></sitemap>",
                xml_escape(origin),
                n + 1,
                w3c_time(*newest)
            );
        }
        index.push_str("</sitemapindex>\n");
        std::iter::once(Document::new(index))
            .chain(parts.iter().map(|(items, _)| urlset(items)))
            .collect()
    };
    Generated {
        urls: listed.len(),
        documents,
    }
}

/// W3C Datetime in UTC, to the second.
fn w3c_time(time: OffsetDateTime) -> String {
    time.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(time)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use grove_core::ContentType;
    use grove_objects::pages::Page;

    use super::*;
    use crate::config::file::AuthConfig;

    fn entry(path: &str) -> Entry {
        let content_type = if path.ends_with(".html") {
            "text/html"
        } else {
            "application/xml"
        };
        Entry {
            path: SitePath::parse(path).unwrap(),
            hash: ContentHash::of(path.as_bytes()),
            size: 1,
            content_type: ContentType::parse(content_type).unwrap(),
        }
    }

    fn index(entries: &[Entry]) -> PageIndex {
        PageIndex {
            version: 1,
            pages: entries
                .iter()
                .filter(|entry| entry.path.as_str().ends_with(".html"))
                .map(|entry| {
                    let page = Page {
                        lastmod: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
                        noindex: false,
                        canonical: None,
                    };
                    (entry.path.to_string(), page)
                })
                .collect(),
        }
    }

    async fn generate(entries: &[Entry], pages: &PageIndex, redirects: &str, policy: TrailingSlash) -> Generated {
        let auth: AuthConfig =
            toml::from_str("issuer = \"https://id.example\"\nclient_id = \"c\"\nprotect = [\"/members/*\"]").unwrap();
        let access = Access::parse(&auth).unwrap();
        let input = Input {
            entries,
            pages,
            redirects: &Redirects::parse(redirects).0,
            trailing_slash: policy,
            access: Some(&access),
            rendered: &[("/guestbook/".to_owned(), OffsetDateTime::UNIX_EPOCH)],
            origin: "https://example.com",
            limits: PROTOCOL_LIMITS,
        };
        match build(&input).await.unwrap() {
            Sitemap::Generated(generated) => generated,
            Sitemap::Own(name) => panic!("generated, not the site's {name}"),
        }
    }

    fn locs(generated: &Generated) -> Vec<String> {
        let text = std::str::from_utf8(&generated.documents[0].body).unwrap().to_owned();
        text.split("<loc>")
            .skip(1)
            .map(|rest| rest.split("</loc>").next().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn lists_pages_at_their_canonical_urls_and_leaves_the_rest_out() {
        let entries: Vec<Entry> = [
            "index.html",
            "about/index.html",
            "blog.html",
            "docs/index.html",
            "docs.html",
            "a b/é.html",
            "404.html",
            "_templates/post.html",
            "members/club.html",
            "old.html",
            "quiet.html",
            "elsewhere.html",
            "self.html",
            "feed.xml",
        ]
        .iter()
        .map(|path| entry(path))
        .collect();
        let mut pages = index(&entries);
        pages.pages.get_mut("quiet.html").unwrap().noindex = true;
        pages.pages.get_mut("elsewhere.html").unwrap().canonical = Some("https://example.com/blog".into());
        pages.pages.get_mut("self.html").unwrap().canonical = Some("/self#top".into());
        let generated = generate(&entries, &pages, "/old /blog 301!", TrailingSlash::Auto).await;
        assert_eq!(
            locs(&generated),
            [
                "https://example.com/",
                "https://example.com/a%20b/%C3%A9",
                "https://example.com/about/",
                "https://example.com/blog",
                "https://example.com/docs",
                "https://example.com/docs/",
                "https://example.com/guestbook/",
                "https://example.com/self",
            ]
        );
        assert_eq!(generated.urls, 8);
        let text = std::str::from_utf8(&generated.documents[0].body).unwrap();
        assert!(text.contains("<lastmod>2023-11-14T22:13:20Z</lastmod>"), "{text}");

        // Under `never`, docs/index.html has no clean URL of its own.
        let never = generate(&entries, &pages, "", TrailingSlash::Never).await;
        let never = locs(&never);
        assert!(never.contains(&"https://example.com/about".to_owned()));
        assert!(
            never.contains(&"https://example.com/docs/index.html".to_owned()),
            "{never:?}"
        );
        let always = locs(&generate(&entries, &pages, "", TrailingSlash::Always).await);
        assert!(always.contains(&"https://example.com/blog/".to_owned()), "{always:?}");
    }

    #[tokio::test]
    async fn a_site_with_its_own_sitemap_gets_none_generated() {
        for (files, own) in [
            (vec!["index.html", "sitemap.xml", "sitemap-index.xml"], "sitemap.xml"),
            (
                vec!["index.html", "sitemap-0.xml", "sitemap-index.xml"],
                "sitemap-index.xml",
            ),
        ] {
            let entries: Vec<Entry> = files.iter().map(|path| entry(path)).collect();
            assert_eq!(own_sitemap(&entries).as_deref(), Some(own));
        }
        assert_eq!(own_sitemap(&[entry("docs/sitemap.xml")]), None);
    }

    #[test]
    fn past_the_limits_it_becomes_an_index() {
        let time = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let listed: Vec<(String, OffsetDateTime)> = (0..7)
            .map(|n| (format!("https://example.com/p{n}"), time + time::Duration::days(n)))
            .collect();
        let by_count = assemble(
            &listed,
            "https://example.com",
            Limits {
                urls: 3,
                bytes: 1 << 20,
            },
        );
        assert_eq!((by_count.urls, by_count.files()), (7, 4));
        let index = std::str::from_utf8(&by_count.document(SITEMAP).unwrap().body).unwrap();
        assert!(index.contains("<sitemapindex"));
        assert!(index.contains("<loc>https://example.com/sitemap-3.xml</loc><lastmod>2023-11-20T22:13:20Z</lastmod>"));
        let last = std::str::from_utf8(&by_count.document("sitemap-3.xml").unwrap().body).unwrap();
        assert_eq!(last.matches("<url>").count(), 1);
        assert!(by_count.document("sitemap-4.xml").is_none() && by_count.document("sitemap-0.xml").is_none());
        let by_bytes = assemble(&listed, "https://example.com", Limits { urls: 100, bytes: 300 });
        assert!(by_bytes.files() > 2);
        for n in 1..by_bytes.files() {
            assert!(by_bytes.document(&format!("sitemap-{n}.xml")).unwrap().body.len() <= 300);
        }
        let single = assemble(&listed, "https://example.com", PROTOCOL_LIMITS);
        assert_eq!(single.files(), 1);
    }
}
