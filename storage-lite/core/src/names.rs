//! Validated site names and file paths.
//!
//! Everything that becomes part of an object key, a host name or a URL passes
//! through these types first, so the rest of grove never sees a path that could
//! escape a site or a name that would not route.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted file path, in bytes (what common file systems and URL limits allow comfortably).
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest accepted path segment, in bytes (the usual file-name limit).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a site name or path was refused; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("site name {name:?} is invalid: {reason}")]
    Site { name: String, reason: &'static str },
    #[error("path {path:?} is invalid: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("content type {content_type:?} is invalid: {reason}")]
    ContentType { content_type: String, reason: &'static str },
}

/// Between the version and the site in a preview host's first label:
/// `<version>--<site>`.
pub const PREVIEW_SEPARATOR: &str = "--";

/// A preview label's version and site parts, split at the first
/// [`PREVIEW_SEPARATOR`]; `None` if the label has none. A byte search:
/// `str::split_once` with a string pattern sets up a substring searcher,
/// which costs more than a label is long, and every request's host is
/// split here.
pub fn split_preview(label: &str) -> Option<(&str, &str)> {
    let at = label
        .as_bytes()
        .windows(PREVIEW_SEPARATOR.len())
        .position(|window| window == PREVIEW_SEPARATOR.as_bytes())?;
    Some((&label[..at], &label[at + PREVIEW_SEPARATOR.len()..]))
}

/// A site name: one lowercase DNS label, so `<site>.<base domain>` is always a valid host.
///
/// `--` is refused because preview hosts are spelled `<version>--<site>`, and a
/// name containing it would make that host ambiguous.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteName(String);

impl SiteName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let refuse = |reason| {
            Err(NameError::Site {
                name: name.chars().take(80).collect(),
                reason,
            })
        };
        if name.is_empty() {
            return refuse("it is empty");
        }
        if name.len() > 63 {
            return refuse("a DNS label has at most 63 characters");
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return refuse("use lowercase letters");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return refuse("only a-z, 0-9 and '-' are allowed");
        }
        if name.starts_with('-') || name.ends_with('-') {
            return refuse("it may not start or end with '-'");
        }
        if split_preview(name).is_some() {
            return refuse("'--' is reserved for preview hosts (<version>--<site>)");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A file path inside a site: relative, normalized, `/`-separated UTF-8.
///
/// Refused: absolute paths, empty, `.` or `..` segments, NUL and other control
/// characters, backslashes (browsers treat them as `/`), and overlong paths.
/// Paths order by their bytes, which is the order of tree entries.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SitePath(String);

impl SitePath {
    pub fn parse(path: &str) -> Result<Self, NameError> {
        let refuse = |reason| {
            Err(NameError::Path {
                path: path.chars().take(120).collect(),
                reason,
            })
        };
        if path.is_empty() {
            return refuse("it is empty");
        }
        if path.len() > MAX_PATH_BYTES {
            return refuse("it is longer than 1024 bytes");
        }
        if path.starts_with('/') {
            return refuse("it must be relative (no leading '/')");
        }
        if path.contains('\0') {
            return refuse("it contains a NUL byte");
        }
        if path.chars().any(char::is_control) {
            return refuse("it contains a control character");
        }
        if path.contains('\\') {
            return refuse("it contains a backslash");
        }
        for segment in path.split('/') {
            match segment {
                "" => return refuse("it has an empty segment ('//' or a trailing '/')"),
                "." => return refuse("it has a '.' segment"),
                ".." => return refuse("it has a '..' segment"),
                s if s.len() > MAX_SEGMENT_BYTES => {
                    return refuse("a segment is longer than 255 bytes");
                }
                _ => {}
            }
        }
        Ok(Self(path.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A media type as served in `Content-Type`, e.g. `text/html; charset=utf-8`:
/// 1 to 255 bytes of printable ASCII, so it can go into a header as is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentType(String);

impl ContentType {
    pub fn parse(content_type: &str) -> Result<Self, NameError> {
        let refuse = |reason| {
            Err(NameError::ContentType {
                content_type: content_type.chars().take(80).collect(),
                reason,
            })
        };
        if content_type.is_empty() || content_type.len() > 255 {
            return refuse("it must have 1 to 255 bytes");
        }
        if !content_type.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return refuse("only printable ASCII is allowed");
        }
        if !content_type.contains('/') {
            return refuse("it must look like type/subtype");
        }
        Ok(Self(content_type.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype_impls!(SiteName);
string_newtype_impls!(SitePath);
string_newtype_impls!(ContentType);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_label_splits_at_its_first_separator() {
        assert_eq!(split_preview("12--demo"), Some(("12", "demo")));
        assert_eq!(split_preview("12---demo"), Some(("12", "-demo")));
        assert_eq!(split_preview("--"), Some(("", "")));
        assert_eq!(split_preview("my-site"), None);
        assert_eq!(split_preview("-"), None);
    }

    #[test]
    fn accepts_dns_labels() {
        for name in ["demo", "a", "my-site", "site2", &"a".repeat(63)] {
            SiteName::parse(name).unwrap();
        }
    }

    #[test]
    fn refuses_each_invalid_site_name_class_with_its_reason() {
        let cases = [
            ("", "empty"),
            (&"a".repeat(64) as &str, "63"),
            ("Demo", "lowercase"),
            ("de_mo", "only a-z"),
            ("dé", "only a-z"),
            ("a.b", "only a-z"),
            ("-demo", "start or end"),
            ("demo-", "start or end"),
            ("3--demo", "preview"),
            ("../x", "only a-z"),
        ];
        for (name, reason) in cases {
            let err = SiteName::parse(name).unwrap_err().to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
        }
    }

    #[test]
    fn accepts_normal_relative_paths() {
        for path in [
            "index.html",
            "a/b/c.css",
            "café/ü.html",
            "_astro/x.1a2b.js",
            ".well-known/x",
        ] {
            SitePath::parse(path).unwrap();
        }
    }

    #[test]
    fn refuses_each_invalid_path_class_with_its_reason() {
        let long = "a/".repeat(600);
        let long_segment = "b".repeat(256);
        let cases = [
            ("", "empty"),
            ("/etc/passwd", "relative"),
            ("a/../b", "'..'"),
            ("..", "'..'"),
            ("./a", "'.'"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("a\0b", "NUL"),
            ("a\nb", "control"),
            ("a\\..\\b", "backslash"),
            (long.as_str(), "1024"),
            (long_segment.as_str(), "255"),
        ];
        for (path, reason) in cases {
            let err = SitePath::parse(path).unwrap_err().to_string();
            assert!(err.contains(reason), "{path:?}: {err}");
        }
    }

    #[test]
    fn content_types_must_be_header_safe() {
        ContentType::parse("text/html; charset=utf-8").unwrap();
        for bad in ["", "html", "text/html\r\nx: y", "text/é"] {
            assert!(ContentType::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<SitePath>(r#""../x""#).is_err());
        assert!(serde_json::from_str::<SiteName>(r#""Bad""#).is_err());
        assert_eq!(serde_json::from_str::<SitePath>(r#""a/b""#).unwrap().as_str(), "a/b");
    }
}
