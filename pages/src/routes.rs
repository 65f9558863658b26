//! `_grove/pages.toml`: which URLs are rendered from which template.
//!
//! ```toml
//! [[route]]
//! path = "/posts/{id}/"              # one page per node path under `source`:
//! template = "_templates/post.html"  # posts/42 gives /posts/42/, and id = "42"
//! source = "posts"
//! [[route]]
//! path = "/"                         # replaces the static index.html
//! template = "_templates/home.html"
//! ```
//!
//! Every error names the line it is about, so `grove publish` can point at it.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::ROUTE_FILE;

/// Why a route file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}", file = ROUTE_FILE)]
pub struct RouteFileError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// A parsed, checked route file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFile {
    pub routes: Vec<Route>,
}

/// One `[[route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub pattern: Pattern,
    /// A path of the site's tree, under a top-level `_` directory.
    pub template: String,
    /// The node path whose direct children each get a page.
    pub source: Option<String>,
    /// The line of the route's `path`, for later errors about it.
    pub line: usize,
}

/// A route's URL path: literal segments and at most one `{name}` segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
    trailing_slash: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// What a URL path matched: the route's parameter, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a> {
    pub route: &'a Route,
    /// `(name, value)` of the route's `{name}` segment.
    pub param: Option<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    #[serde(default)]
    route: Vec<RouteText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteText {
    path: Spanned<String>,
    template: Spanned<String>,
    #[serde(default)]
    source: Option<Spanned<String>>,
}

impl RouteFile {
    pub fn parse(text: &str) -> Result<Self, RouteFileError> {
        let line_of = |span: Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;
        let file: FileText = toml::from_str(text).map_err(|error| RouteFileError {
            line: error.span().map_or(1, line_of),
            message: error.message().trim().to_owned(),
        })?;
        let mut routes: Vec<Route> = Vec::new();
        for route in file.route {
            let line = line_of(route.path.span());
            let refuse = |span: Range<usize>, message: String| RouteFileError {
                line: line_of(span),
                message,
            };
            let pattern = Pattern::parse(route.path.get_ref()).map_err(|message| refuse(route.path.span(), message))?;
            let template = route.template.get_ref();
            check_template_path(template).map_err(|message| refuse(route.template.span(), message))?;
            let source = match &route.source {
                Some(source) => {
                    check_data_path(source.get_ref()).map_err(|message| refuse(source.span(), message))?;
                    if pattern.param().is_none() {
                        return Err(refuse(
                            route.path.span(),
                            "a route with a `source` needs a `{name}` segment in its path for each page".to_owned(),
                        ));
                    }
                    Some(source.get_ref().clone())
                }
                None if pattern.param().is_some() => {
                    return Err(refuse(
                        route.path.span(),
                        "a `{name}` segment needs a `source`: the node path whose children are the pages".to_owned(),
                    ));
                }
                None => None,
            };
            if let Some(earlier) = routes.iter().find(|earlier| earlier.pattern == pattern) {
                return Err(refuse(
                    route.path.span(),
                    format!("this path is already routed on line {}", earlier.line),
                ));
            }
            routes.push(Route {
                pattern,
                template: template.clone(),
                source,
                line,
            });
        }
        Ok(Self { routes })
    }

    /// The route a decoded URL path (`/posts/42/`) is rendered by, if any.
    pub fn find(&self, url_path: &str) -> Option<Matched<'_>> {
        self.routes.iter().find_map(|route| {
            let param = route.pattern.matches(url_path)?;
            Some(Matched { route, param })
        })
    }
}

/// The pattern as a route file spells it, e.g. `/posts/{id}/`: what the
/// service worker is told (`pages` in `/_grove/root`) and matches by the
/// same rule (spec/vectors/pages.json).
impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => write!(f, "/{literal}")?,
                Segment::Param(name) => write!(f, "/{{{name}}}")?,
            }
        }
        if self.segments.is_empty() || self.trailing_slash {
            f.write_str("/")?;
        }
        Ok(())
    }
}

impl Pattern {
    fn parse(path: &str) -> Result<Self, String> {
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| format!("the path {path:?} must start with '/'"))?;
        let trailing_slash = !rest.is_empty() && rest.ends_with('/');
        let mut segments = Vec::new();
        for segment in rest.split('/').filter(|segment| !segment.is_empty()) {
            if segment == "." || segment == ".." || segment.starts_with('_') {
                return Err(format!(
                    "the path {path:?} has a segment {segment:?}: no '.', '..' or '_' segments"
                ));
            }
            match segment.strip_prefix('{').and_then(|inner| inner.strip_suffix('}')) {
                Some(name) => {
                    let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !valid {
                        return Err(format!("{{{name}}} is not a parameter name (a-z, 0-9 and _)"));
                    }
                    if segments.iter().any(|segment| matches!(segment, Segment::Param(_))) {
                        return Err(format!("the path {path:?} has more than one {{name}} segment"));
                    }
                    segments.push(Segment::Param(name.to_owned()));
                }
                None if segment.contains(['{', '}']) => {
                    return Err(format!("{segment:?}: a parameter is a whole segment, like {{id}}"));
                }
                None => segments.push(Segment::Literal(segment.to_owned())),
            }
        }
        Ok(Self {
            segments,
            trailing_slash,
        })
    }

    /// The name of the `{name}` segment, if there is one.
    pub fn param(&self) -> Option<&str> {
        self.segments.iter().find_map(|segment| match segment {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// `Some(param)` when `url_path` is this pattern (trailing slash
    /// included): `None` for no match.
    fn matches(&self, url_path: &str) -> Option<Option<(String, String)>> {
        let rest = url_path.strip_prefix('/')?;
        if (!rest.is_empty() && rest.ends_with('/')) != self.trailing_slash {
            return None;
        }
        let parts: Vec<&str> = rest.split('/').filter(|part| !part.is_empty()).collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut param = None;
        for (part, segment) in parts.iter().zip(&self.segments) {
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    check_data_segment(part).ok()?;
                    param = Some((name.clone(), (*part).to_owned()));
                }
            }
        }
        Some(param)
    }

    /// The URL path of the page for parameter value `value` (or of the one
    /// page of a route without a parameter).
    pub fn url(&self, value: Option<&str>) -> String {
        let mut url = String::from("/");
        let parts: Vec<&str> = self
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(literal) => literal.as_str(),
                Segment::Param(_) => value.unwrap_or_default(),
            })
            .collect();
        url.push_str(&parts.join("/"));
        if self.trailing_slash {
            url.push('/');
        }
        url
    }
}

/// A template must be a file of the tree under a top-level `_` directory,
/// which the sitemap and the route table leave alone.
pub fn check_template_path(path: &str) -> Result<(), String> {
    let mut segments = path.split('/');
    let top = segments.next().unwrap_or_default();
    if !top.starts_with('_') || top == ROUTE_FILE.split('/').next().unwrap_or_default() || segments.next().is_none() {
        return Err(format!(
            "the template {path:?} must lie under a top-level directory starting with '_' (other than _grove), like _templates/post.html"
        ));
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!("the template {path:?} must be a plain path of the site"));
    }
    Ok(())
}

/// A node data path as templates name it: non-empty segments, no `.` or
/// `..`, no leading or trailing slash.
pub fn check_data_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.split('/').any(|segment| check_data_segment(segment).is_err()) {
        return Err(format!(
            "{path:?} is not a data path of this site (segments of letters, digits, '-', '_', '.', no '..')"
        ));
    }
    Ok(())
}

fn check_data_segment(segment: &str) -> Result<(), ()> {
    let plain = !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.len() <= 255
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+' | b'~'));
    if plain { Ok(()) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[route]]
path = "/posts/{id}/"
template = "_templates/post.html"
source = "posts"

[[route]]
path = "/"
template = "_templates/home.html"
"#;

    #[test]
    fn routes_match_their_urls() {
        let file = RouteFile::parse(FILE).unwrap();
        assert_eq!(file.routes.len(), 2);
        let post = file.find("/posts/42/").unwrap();
        assert_eq!(post.route.template, "_templates/post.html");
        assert_eq!(post.param, Some(("id".to_owned(), "42".to_owned())));
        assert_eq!(post.route.pattern.url(Some("42")), "/posts/42/");
        assert_eq!(file.find("/").unwrap().param, None);
        for miss in [
            "/posts/42",
            "/posts/",
            "/posts/4/2/",
            "/about/",
            "/posts/a%20b/",
            "/posts/../",
        ] {
            assert!(file.find(miss).is_none(), "{miss}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("[[route]]\npath = \"/\"\n", 1, "missing field `template`"),
            (
                "[[route]]\npath = \"/\"\ntemplate = \"post.html\"\n",
                3,
                "top-level directory",
            ),
            (
                "[[route]]\npath = \"/\"\ntemplate = \"_t/../x.html\"\n",
                3,
                "plain path",
            ),
            (
                "[[route]]\npath = \"posts\"\ntemplate = \"_t/p.html\"\n",
                2,
                "must start with '/'",
            ),
            (
                "[[route]]\npath = \"/p/{id}/\"\ntemplate = \"_t/p.html\"\n",
                2,
                "needs a `source`",
            ),
            (
                "[[route]]\npath = \"/p/{id}/\"\ntemplate = \"_t/p.html\"\nsource = \"../other\"\n",
                4,
                "not a data path",
            ),
            (
                "[[route]]\npath = \"/p/\"\ntemplate = \"_t/p.html\"\nsource = \"posts\"\n",
                2,
                "needs a `{name}`",
            ),
            (
                "[[route]]\npath = \"/{a}/{b}/\"\ntemplate = \"_t/p.html\"\nsource = \"x\"\n",
                2,
                "more than one",
            ),
            (
                "[[route]]\npath = \"/\"\ntemplate = \"_t/p.html\"\ncolour = 1\n",
                4,
                "unknown field",
            ),
            (
                "[[route]]\npath = \"/\"\ntemplate = \"_t/a.html\"\n\n[[route]]\npath = \"/\"\ntemplate = \"_t/b.html\"\n",
                6,
                "already routed on line 2",
            ),
            ("[[route]\n", 1, ""),
        ];
        for (text, line, message) in cases {
            let error = RouteFile::parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text}: {error}");
            assert!(error.message.contains(message), "{text}: {error}");
            assert!(error.to_string().starts_with(&format!("_grove/pages.toml:{line}: ")));
        }
    }
}
