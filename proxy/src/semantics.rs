//! HTTP semantics of serving a file: validators, ranges, content coding and
//! caching headers. Pure functions, so each rule is tested on its own.

use grove_core::{ContentHash, SiteName};

/// A content coding this server can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    pub fn token(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }
}

/// Picks the coding for an `Accept-Encoding` header: the acceptable coding
/// with the highest q-value, preferring br over gzip on ties.
pub fn negotiate(accept_encoding: Option<&str>) -> Encoding {
    let Some(header) = accept_encoding else {
        return Encoding::Identity;
    };
    let mut best = (Encoding::Identity, 0.0f32);
    for item in header.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|param| param.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let encoding = match name.as_str() {
            "br" => Encoding::Brotli,
            "gzip" | "x-gzip" => Encoding::Gzip,
            _ => continue,
        };
        let better = q > best.1 || (q == best.1 && encoding == Encoding::Brotli);
        if q > 0.0 && better {
            best = (encoding, q);
        }
    }
    best.0
}

/// Types worth compressing: text, and the structured formats that are text.
pub fn is_compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript"
                | "application/json"
                | "application/manifest+json"
                | "application/xml"
                | "application/rss+xml"
                | "application/atom+xml"
                | "image/svg+xml"
                | "application/wasm"
        )
}

/// The strong ETag of a representation: the content hash, plus the coding.
pub fn etag(hash: &ContentHash, encoding: Encoding) -> String {
    let coding = encoding.token().map_or(String::new(), |token| format!("-{token}"));
    format!("\"{hash}{coding}\"")
}

/// Whether `If-None-Match` matches `etag` (weak comparison, as RFC 9110 says
/// for this header).
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    // Header values are visible ASCII, spaces and tabs (`to_str`), so ASCII
    // trimming is whole; nothing here allocates, as every revalidation of a
    // prepared page runs it.
    fn bare(tag: &str) -> &str {
        let tag = tag.trim_ascii();
        tag.strip_prefix("W/").unwrap_or(tag)
    }
    let etag = bare(etag);
    if_none_match.split(',').any(|candidate| {
        let candidate = candidate.trim_ascii();
        candidate == "*" || bare(candidate) == etag
    })
}

/// What a `Range` header asks of a representation of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything (also for multiple ranges, which we
    /// may ignore per RFC 9110).
    Full,
    /// Bytes `start..=end`.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

pub fn range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|header| header.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let parse = |text: &str| text.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return RangeRequest::Full,
        (true, false) => match parse(last) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(suffix) => (size.saturating_sub(suffix), size.saturating_sub(1)),
            None => return RangeRequest::Full,
        },
        (false, open_end) => match (parse(first), if open_end { Some(u64::MAX) } else { parse(last) }) {
            (Some(start), Some(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
            _ => return RangeRequest::Full,
        },
    };
    if size == 0 || start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial { start, end }
}

/// True for paths whose content never changes under the same URL: build
/// tools' asset folders and file names carrying a content hash
/// (`app.3f9a1c2e.js`, `index-BxK2z9aQ.js`).
pub fn is_fingerprinted(path: &str) -> bool {
    if path.starts_with("_astro/") || path.starts_with("assets/") || path.starts_with("_next/static/") {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    stem.split(['.', '-', '_']).skip(1).any(|part| {
        part.len() >= 8
            && part.bytes().all(|b| b.is_ascii_alphanumeric())
            && part.bytes().any(|b| b.is_ascii_digit())
            && part.bytes().any(|b| b.is_ascii_alphabetic())
    })
}

/// One year: what immutable and CDN-purged responses may be cached for.
const ONE_YEAR: u64 = 31_536_000;

/// `CDN-Cache-Control` of stable URLs: the CDN keeps them until a publish
/// purges their tags.
pub const CDN_KEEP: &str = "public, s-maxage=31536000";

/// `Cache-Control` and `CDN-Cache-Control` for a site file.
pub fn cache_control(path: &str) -> (String, Option<String>) {
    if is_fingerprinted(path) {
        (format!("public, max-age={ONE_YEAR}, immutable"), None)
    } else {
        // Browsers revalidate every time (cheap: 304 by ETag); the CDN keeps
        // it until a publish purges its tag.
        (
            "public, max-age=0, must-revalidate".to_owned(),
            Some(CDN_KEEP.to_owned()),
        )
    }
}

/// Longest tag Cloudflare accepts.
const MAX_TAG_CHARS: usize = 1024;

/// The tag covering every response of a site.
pub fn site_tag(site: &SiteName) -> String {
    format!("grove:{site}")
}

/// The tag of a site's root document (`/_grove/root`), which every new
/// version changes. Path tags start `grove:<site>/`, so it cannot collide.
pub fn root_document_tag(site: &SiteName) -> String {
    format!("grove:{site}:root")
}

/// The tags of a response every new version may change (the root
/// document, generated files): the site's, and the root document's, which
/// every version purges.
pub fn version_tags(site: &SiteName) -> String {
    format!("{},{}", site_tag(site), root_document_tag(site))
}

/// The tag of one file of a site, under every URL that serves it (`/about`,
/// `/about/`, `/about/index.html` all carry the tag of `about/index.html`).
/// Printable ASCII without spaces or commas; over-long tags become a hash.
pub fn path_tag(site: &SiteName, path: &str) -> String {
    let mut tag = format!("grove:{site}/");
    for byte in path.bytes() {
        if byte.is_ascii_graphic() && byte != b',' && byte != b'%' {
            tag.push(byte as char);
        } else {
            tag.push_str(&format!("%{byte:02X}"));
        }
    }
    if tag.len() > MAX_TAG_CHARS {
        return format!("grove:{site}/#{}", ContentHash::of(path.as_bytes()));
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_honours_q_values_and_prefers_br() {
        assert_eq!(negotiate(None), Encoding::Identity);
        assert_eq!(negotiate(Some("gzip, deflate, br")), Encoding::Brotli);
        assert_eq!(negotiate(Some("gzip")), Encoding::Gzip);
        assert_eq!(negotiate(Some("br;q=0.5, gzip;q=0.8")), Encoding::Gzip);
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0")), Encoding::Identity);
        assert_eq!(negotiate(Some("identity, zstd")), Encoding::Identity);
    }

    #[test]
    fn ranges() {
        assert_eq!(range(None, 100), RangeRequest::Full);
        assert_eq!(
            range(Some("bytes=0-9"), 100),
            RangeRequest::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            range(Some("bytes=90-"), 100),
            RangeRequest::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            range(Some("bytes=-10"), 100),
            RangeRequest::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            range(Some("bytes=-500"), 100),
            RangeRequest::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            range(Some("bytes=50-500"), 100),
            RangeRequest::Partial { start: 50, end: 99 }
        );
        assert_eq!(range(Some("bytes=100-"), 100), RangeRequest::Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 100), RangeRequest::Unsatisfiable);
        assert_eq!(range(Some("bytes=0-1,5-6"), 100), RangeRequest::Full);
        assert_eq!(range(Some("bytes=9-1"), 100), RangeRequest::Full);
        assert_eq!(range(Some("items=0-1"), 100), RangeRequest::Full);
        assert_eq!(range(Some("bytes=0-0"), 0), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn validators() {
        let hash = ContentHash::of(b"x");
        let tag = etag(&hash, Encoding::Brotli);
        assert!(tag.ends_with("-br\""));
        assert!(none_match(&tag, &tag));
        assert!(none_match(&format!("\"other\", W/{tag}"), &tag));
        assert!(none_match("*", &tag));
        assert!(!none_match(&etag(&hash, Encoding::Identity), &tag));
    }

    #[test]
    fn fingerprints_and_cache_headers() {
        for path in [
            "_astro/index.BxK2z9aQ.css",
            "assets/logo.svg",
            "js/app.3f9a1c2e.js",
            "index-BxK2z9aQ.js",
        ] {
            assert!(is_fingerprinted(path), "{path}");
            assert!(cache_control(path).0.contains("immutable"));
        }
        for path in [
            "index.html",
            "about/index.html",
            "js/app.js",
            "blog/my-favourite-post.html",
            "v2024.css",
        ] {
            assert!(!is_fingerprinted(path), "{path}");
            assert_eq!(cache_control(path).1.as_deref(), Some("public, s-maxage=31536000"));
        }
    }

    #[test]
    fn tags_are_header_safe_and_bounded() {
        let site = SiteName::parse("demo").unwrap();
        assert_eq!(path_tag(&site, "a b,c/é.html"), "grove:demo/a%20b%2Cc/%C3%A9.html");
        let long = path_tag(&site, &"x/".repeat(600));
        assert!(long.len() <= 1024 && long.starts_with("grove:demo/#"));
    }
}
