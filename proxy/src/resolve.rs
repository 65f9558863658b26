//! Request path -> file of the site version: normalization (once), then
//! exact files, directory indexes, clean URLs and the trailing-slash policy.

use std::future::Future;

use grove_core::tree::{Entry, TreeError};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::config::TrailingSlash;

/// Why a request path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path is too long")]
    TooLong,
    #[error("the path contains an encoded slash or backslash")]
    EncodedSeparator,
    #[error("the path is not valid percent-encoded UTF-8")]
    BadEncoding,
    #[error("the path contains a control character")]
    Control,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains a '.' or '..' segment")]
    DotSegment,
}

/// A decoded, normalized request path: no `.`/`..`, no empty segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// Segments joined by `/`, without leading or trailing slash ("" for `/`).
    pub path: String,
    pub trailing_slash: bool,
}

impl RequestPath {
    /// Decodes and checks the path part of a request URI. This is the only
    /// place a request path is decoded, so nothing downstream can be fooled
    /// by a second round of decoding.
    pub fn parse(raw: &str, max_bytes: usize) -> Result<Self, PathError> {
        if !raw.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        if raw.len() > max_bytes {
            return Err(PathError::TooLong);
        }
        let lower = raw.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Err(PathError::EncodedSeparator);
        }
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| PathError::BadEncoding)?;
        if decoded.chars().any(char::is_control) {
            return Err(PathError::Control);
        }
        if decoded.contains('\\') {
            return Err(PathError::Backslash);
        }
        let mut segments = Vec::new();
        for segment in decoded.split('/').filter(|segment| !segment.is_empty()) {
            if segment == "." || segment == ".." {
                return Err(PathError::DotSegment);
            }
            segments.push(segment);
        }
        Ok(Self {
            trailing_slash: decoded.len() > 1 && decoded.ends_with('/'),
            path: segments.join("/"),
        })
    }

    /// The path as a URL path, with its leading slash (for rule matching).
    pub fn url_path(&self) -> String {
        let slash = if self.trailing_slash { "/" } else { "" };
        if self.path.is_empty() {
            "/".to_owned()
        } else {
            format!("/{}{slash}", self.path)
        }
    }

    /// True if the last segment has an extension, i.e. it names an asset,
    /// not a page.
    pub fn has_extension(&self) -> bool {
        self.path.rsplit('/').next().is_some_and(|name| name.contains('.'))
    }
}

/// Characters escaped when a decoded path goes back into a header.
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'%');

/// Percent-encodes a decoded path for a `Location` header.
pub fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH_ESCAPES).to_string()
}

/// Finds files in a site version.
pub trait Files {
    fn file(&self, path: &str) -> impl Future<Output = Result<Option<Entry>, TreeError>> + Send;
}

/// What a request path resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    File(Entry),
    /// The canonical form of the path differs: redirect (308) there.
    Canonical(String),
    NotFound,
}

/// What answers a request that no file answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// `spa = true`: the site's `index.html`, with status 200. Only for a
    /// path whose last segment has no extension: a missing asset is never
    /// answered with HTML.
    SpaIndex(Entry),
    /// The site's `404.html`, with status 404.
    NotFoundPage(Entry),
    /// A plain 404.
    Nothing,
}

/// The fallback for `request`, which resolved to nothing.
pub async fn fallback(files: &impl Files, request: &RequestPath, spa: bool) -> Result<Fallback, TreeError> {
    if spa
        && !request.has_extension()
        && let Some(index) = files.file("index.html").await?
    {
        return Ok(Fallback::SpaIndex(index));
    }
    Ok(match files.file("404.html").await? {
        Some(page) => Fallback::NotFoundPage(page),
        None => Fallback::Nothing,
    })
}

/// Resolves `request` against the files of one version, under `policy`.
pub async fn resolve(
    files: &impl Files,
    request: &RequestPath,
    policy: TrailingSlash,
) -> Result<Resolution, TreeError> {
    let path = request.path.as_str();
    if path.is_empty() {
        return found(files.file("index.html").await?);
    }
    let slashed = format!("/{path}/");
    let bare = format!("/{path}");
    if request.trailing_slash {
        if let Some(index) = files.file(&format!("{path}/index.html")).await? {
            return Ok(match policy {
                TrailingSlash::Never => Resolution::Canonical(bare),
                _ => Resolution::File(index),
            });
        }
        if let Some(page) = files.file(&format!("{path}.html")).await? {
            return Ok(match policy {
                TrailingSlash::Always => Resolution::File(page),
                _ => Resolution::Canonical(bare),
            });
        }
        if files.file(path).await?.is_some() {
            return Ok(Resolution::Canonical(bare));
        }
        return Ok(Resolution::NotFound);
    }
    if let Some(file) = files.file(path).await? {
        return Ok(Resolution::File(file));
    }
    if let Some(page) = files.file(&format!("{path}.html")).await? {
        return Ok(match policy {
            TrailingSlash::Always => Resolution::Canonical(slashed),
            _ => Resolution::File(page),
        });
    }
    if let Some(index) = files.file(&format!("{path}/index.html")).await? {
        return Ok(match policy {
            TrailingSlash::Never => Resolution::File(index),
            _ => Resolution::Canonical(slashed),
        });
    }
    Ok(Resolution::NotFound)
}

fn found(entry: Option<Entry>) -> Result<Resolution, TreeError> {
    Ok(entry.map_or(Resolution::NotFound, Resolution::File))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use grove_core::{ContentHash, ContentType, SitePath};

    use super::*;

    struct Fixture(BTreeMap<String, Entry>);

    impl Files for Fixture {
        async fn file(&self, path: &str) -> Result<Option<Entry>, TreeError> {
            Ok(self.0.get(path).cloned())
        }
    }

    fn fixture() -> Fixture {
        let paths = [
            "index.html",
            "about/index.html",
            "blog.html",
            "style.css",
            "docs/index.html",
            "docs.html",
        ];
        Fixture(
            paths
                .iter()
                .map(|path| {
                    let entry = Entry {
                        path: SitePath::parse(path).unwrap(),
                        hash: ContentHash::of(path.as_bytes()),
                        size: 1,
                        content_type: ContentType::parse("text/html").unwrap(),
                    };
                    (path.to_string(), entry)
                })
                .collect(),
        )
    }

    async fn outcome(raw: &str, policy: TrailingSlash) -> String {
        let request = RequestPath::parse(raw, 2048).unwrap();
        match resolve(&fixture(), &request, policy).await.unwrap() {
            Resolution::File(entry) => format!("file {}", entry.path),
            Resolution::Canonical(location) => format!("redirect {location}"),
            Resolution::NotFound => "404".to_owned(),
        }
    }

    #[tokio::test]
    async fn auto_policy_follows_the_files() {
        let auto = TrailingSlash::Auto;
        assert_eq!(outcome("/", auto).await, "file index.html");
        assert_eq!(outcome("/about/", auto).await, "file about/index.html");
        assert_eq!(outcome("/about", auto).await, "redirect /about/");
        assert_eq!(outcome("/blog", auto).await, "file blog.html");
        assert_eq!(outcome("/blog/", auto).await, "redirect /blog");
        assert_eq!(outcome("/style.css", auto).await, "file style.css");
        assert_eq!(outcome("/style.css/", auto).await, "redirect /style.css");
        assert_eq!(outcome("/about/index.html", auto).await, "file about/index.html");
        assert_eq!(outcome("/missing", auto).await, "404");
        // A directory index wins over a sibling page for the slashed form.
        assert_eq!(outcome("/docs/", auto).await, "file docs/index.html");
        assert_eq!(outcome("/docs", auto).await, "file docs.html");
    }

    #[tokio::test]
    async fn always_and_never_policies() {
        assert_eq!(outcome("/blog", TrailingSlash::Always).await, "redirect /blog/");
        assert_eq!(outcome("/blog/", TrailingSlash::Always).await, "file blog.html");
        assert_eq!(outcome("/about", TrailingSlash::Never).await, "file about/index.html");
        assert_eq!(outcome("/about/", TrailingSlash::Never).await, "redirect /about");
    }

    #[test]
    fn normalizes_once_and_refuses_escapes() {
        let parse = |raw| RequestPath::parse(raw, 64);
        assert_eq!(parse("/a//b/").unwrap().path, "a/b");
        assert_eq!(parse("/caf%C3%A9").unwrap().path, "café");
        assert_eq!(parse("/%2e%2e/etc/passwd"), Err(PathError::DotSegment));
        assert_eq!(parse("/../etc/passwd"), Err(PathError::DotSegment));
        assert_eq!(parse("/..%2fetc"), Err(PathError::EncodedSeparator));
        assert_eq!(parse("/a%5C..%5Cb"), Err(PathError::EncodedSeparator));
        assert_eq!(parse("/a%00b"), Err(PathError::Control));
        assert_eq!(parse("/a\\b"), Err(PathError::Backslash));
        assert_eq!(parse("/%ff"), Err(PathError::BadEncoding));
        let long = format!("/{}", "a".repeat(64));
        assert_eq!(parse(&long), Err(PathError::TooLong));
        assert_eq!(parse("relative"), Err(PathError::NotAbsolute));
        // %2525 decodes once to %25, never twice to %.
        assert_eq!(parse("/100%2525").unwrap().path, "100%25");
    }
}
