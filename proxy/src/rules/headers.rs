//! `_headers` files in Netlify syntax: a path pattern on its own line, then
//! indented `Name: value` lines that apply to every path it matches.
//!
//! ```text
//! /assets/*
//!   Cache-Control: public, max-age=31536000, immutable
//! /*
//!   X-Frame-Options: DENY
//! ```

use http::{HeaderName, HeaderValue};

use super::pattern::Pattern;
use super::redirects::MAX_RULES;

#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    blocks: Vec<(Pattern, Vec<(HeaderName, HeaderValue)>)>,
}

impl HeaderRules {
    /// Parses a file, returning the rules and a message for each bad line.
    pub fn parse(text: &str) -> (Self, Vec<String>) {
        let mut blocks: Vec<(Pattern, Vec<(HeaderName, HeaderValue)>)> = Vec::new();
        let mut errors = Vec::new();
        let mut in_valid_block = false;
        for (number, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = number + 1;
            if !raw.starts_with([' ', '\t']) {
                if blocks.len() == MAX_RULES {
                    errors.push(format!("more than {MAX_RULES} path blocks; the rest are ignored"));
                    break;
                }
                match Pattern::parse(line) {
                    Ok(pattern) => {
                        blocks.push((pattern, Vec::new()));
                        in_valid_block = true;
                    }
                    Err(error) => {
                        errors.push(format!("line {number}: {error}"));
                        in_valid_block = false;
                    }
                }
                continue;
            }
            if !in_valid_block {
                errors.push(format!("line {number}: header outside a valid path block"));
                continue;
            }
            match parse_header(line) {
                Ok(header) => blocks.last_mut().expect("in a block").1.push(header),
                Err(error) => errors.push(format!("line {number}: {error}")),
            }
        }
        (Self { blocks }, errors)
    }

    /// Every header of every block matching `path`, in file order.
    pub fn for_path<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a (HeaderName, HeaderValue)> + 'a {
        self.blocks
            .iter()
            .filter(move |(pattern, _)| pattern.matches(path).is_some())
            .flat_map(|(_, headers)| headers)
    }
}

/// Headers the server owns: framing, connection management, and the
/// validators and codings it computes. A site may not set them.
const RESERVED: &[&str] = &[
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "date",
    "etag",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-grove-root",
    "x-grove-version",
];

fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {line:?}"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|_| format!("invalid header name {name:?}"))?;
    if RESERVED.contains(&name.as_str()) {
        return Err(format!("{name} is set by the server and cannot be overridden"));
    }
    let value = HeaderValue::try_from(value.trim()).map_err(|_| format!("invalid value for {name}"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_apply_to_matching_paths_in_order() {
        let (rules, errors) = HeaderRules::parse(
            "/assets/*\n  Cache-Control: immutable\n/*\n  X-Frame-Options: DENY\n  Bad Header: x\n\tX-Test: 1\n  Transfer-Encoding: chunked\n  ETag: \"x\"\nnot-a-path\n  X-Lost: 1\n",
        );
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(
            errors[1].contains("transfer-encoding is set by the server"),
            "{errors:?}"
        );
        let names = |path| {
            rules
                .for_path(path)
                .map(|(name, value)| format!("{name}={}", value.to_str().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("/assets/a.css"),
            ["cache-control=immutable", "x-frame-options=DENY", "x-test=1"]
        );
        assert_eq!(names("/index.html"), ["x-frame-options=DENY", "x-test=1"]);
    }
}
