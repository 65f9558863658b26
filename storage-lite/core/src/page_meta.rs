//! What a page's `<head>` tells search engines about it: a robots `noindex`
//! and a canonical link. Read once per page content at publish time (the
//! generated sitemap leaves such pages out), so a lenient scanner that
//! never fails suits: it reads tags, not a DOM, skips comments, scripts
//! and styles, and stops where the head ends.

/// What a page says about its own indexing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageMeta {
    /// `<meta name="robots" content="noindex">` (or `none`).
    pub noindex: bool,
    /// The `href` of `<link rel="canonical">`, as written (entities decoded).
    pub canonical: Option<String>,
}

/// Bytes of a page read at most: a head lies at its start.
pub const SCAN_BYTES: usize = 512 * 1024;
/// Longest canonical link kept.
const MAX_HREF_BYTES: usize = 2048;

/// Whether a file of this content type is a page (HTML).
pub fn is_html(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/html"))
}

/// Reads the head of an HTML page.
pub fn read(html: &[u8]) -> PageMeta {
    let html = String::from_utf8_lossy(&html[..html.len().min(SCAN_BYTES)]);
    let mut meta = PageMeta::default();
    let mut rest: &str = &html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let end = tag_end(rest);
        let tag = &rest[..end];
        rest = &rest[(end + 1).min(rest.len())..];
        let name_end = tag
            .find(|c: char| c.is_ascii_whitespace() || c == '/')
            .unwrap_or(tag.len());
        let name = tag[..name_end].to_ascii_lowercase();
        let attributes = &tag[name_end..];
        match name.as_str() {
            "/head" | "body" => break,
            "script" | "style" | "noscript" | "template" | "title" | "textarea" => {
                let close = format!("</{name}");
                rest = find_ignoring_case(rest, &close).map_or("", |at| &rest[at..]);
            }
            "meta" => {
                let is_robots = attribute(attributes, "name").is_some_and(|name| name.eq_ignore_ascii_case("robots"));
                if is_robots && let Some(content) = attribute(attributes, "content") {
                    meta.noindex |= content
                        .split(',')
                        .any(|token| matches!(token.trim().to_ascii_lowercase().as_str(), "noindex" | "none"));
                }
            }
            "link" if meta.canonical.is_none() => {
                let is_canonical = attribute(attributes, "rel").is_some_and(|rel| {
                    rel.split_ascii_whitespace()
                        .any(|token| token.eq_ignore_ascii_case("canonical"))
                });
                if is_canonical && let Some(href) = attribute(attributes, "href") {
                    let href = decode_entities(href.trim());
                    if !href.is_empty() && href.len() <= MAX_HREF_BYTES {
                        meta.canonical = Some(href);
                    }
                }
            }
            _ => {}
        }
    }
    meta
}

/// Where a tag that starts at `tag` ends: its `>`, outside quotes.
fn tag_end(tag: &str) -> usize {
    let mut quote = None;
    for (at, c) in tag.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '>') => return at,
            _ => {}
        }
    }
    tag.len()
}

fn find_ignoring_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The value of attribute `wanted` in a tag's attribute text.
fn attribute<'a>(mut attributes: &'a str, wanted: &str) -> Option<&'a str> {
    loop {
        attributes = attributes.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if attributes.is_empty() {
            return None;
        }
        let name_end = attributes
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '/')
            .unwrap_or(attributes.len());
        let name = &attributes[..name_end];
        attributes = attributes[name_end..].trim_start();
        let mut value = "";
        if let Some(after) = attributes.strip_prefix('=') {
            let after = after.trim_start();
            let (found, rest) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let inner = &after[1..];
                    let end = inner.find(quote).unwrap_or(inner.len());
                    (&inner[..end], &inner[(end + 1).min(inner.len())..])
                }
                _ => {
                    let end = after.find(|c: char| c.is_ascii_whitespace()).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            value = found;
            attributes = rest;
        }
        if name.eq_ignore_ascii_case(wanted) {
            return Some(value);
        }
    }
}

/// The character references an attribute value commonly holds.
fn decode_entities(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(html: &str) -> PageMeta {
        read(html.as_bytes())
    }

    #[test]
    fn finds_noindex_and_the_canonical_link() {
        let page = meta(
            r#"<!doctype html><html><head><META NAME="Robots" CONTENT="max-snippet:10, NoIndex">
            <link rel="stylesheet" href="/a.css"><link href='https://example.com/a?x=1&amp;y=2' rel="canonical"/>
            </head><body>text</body></html>"#,
        );
        assert!(page.noindex);
        assert_eq!(page.canonical.as_deref(), Some("https://example.com/a?x=1&y=2"));
        assert!(meta(r#"<meta name=robots content=none>"#).noindex);
        assert_eq!(meta("<link rel=canonical href=/b/>").canonical.as_deref(), Some("/b/"));
    }

    #[test]
    fn ignores_what_is_not_a_tag_of_the_head() {
        for html in [
            r#"<head></head><body><meta name="robots" content="noindex"></body>"#,
            r#"<!-- <meta name="robots" content="noindex"> --><p>"#,
            r#"<script>let s = '<meta name="robots" content="noindex">';</script><title>t</title>"#,
            r#"<title><meta name="robots" content="noindex"></title>"#,
            r#"<meta name="googlebot-news" content="noindex"><meta name="robots" content="index, follow">"#,
            r#"<meta data-x='>' name="description" content="noindex">"#,
            r#"<link rel="alternate canonical-ish" href="/x">"#,
        ] {
            assert_eq!(meta(html), PageMeta::default(), "{html}");
        }
    }

    #[test]
    fn never_fails_on_broken_markup() {
        for html in [
            "<",
            "<meta",
            "<meta name=\"robots",
            "<!--",
            "<script>",
            "<link rel=canonical href=",
            "\u{0}<<>>",
        ] {
            let _ = meta(html);
        }
        let _ = read(&[0xff, b'<', 0xfe, b'>']);
    }
}
