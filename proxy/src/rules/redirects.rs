//! `_redirects` files in Netlify syntax:
//!
//! ```text
//! # comment
//! /old            /new              301
//! /blog/*         /news/:splat      302
//! /users/:id      /profile/:id      200     (a rewrite)
//! /private/*      /404.html         404!    (`!` forces, even over an existing file)
//! ```
//!
//! The default status is 301. Rules are tried in order; the first match wins.
//! Unforced rules apply only when no file answers the path (shadowing).

use super::pattern::{Pattern, substitute};
use crate::resolve::encode_path;

/// Rules beyond this many are ignored, so one file cannot make every request slow.
pub const MAX_RULES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRule {
    from: Pattern,
    to: String,
    pub status: u16,
    pub force: bool,
}

/// What a matching rule says to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Answer with a redirect to this location, ready for the header
    /// (status 301/302/303/307/308).
    Redirect { status: u16, location: String },
    /// Serve this site path (URL form, percent-encoded) instead, with this
    /// status (200 or 404).
    Rewrite { status: u16, path: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirects {
    rules: Vec<RedirectRule>,
}

impl Redirects {
    /// Parses a file, returning the rules and a message for each line that
    /// is not one.
    pub fn parse(text: &str) -> (Self, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split_once('#').map_or(line, |(rule, _)| rule).trim();
            if line.is_empty() {
                continue;
            }
            if rules.len() == MAX_RULES {
                errors.push(format!("more than {MAX_RULES} rules; the rest are ignored"));
                break;
            }
            match parse_rule(line) {
                Ok(rule) => rules.push(rule),
                Err(error) => errors.push(format!("line {}: {error}", number + 1)),
            }
        }
        (Self { rules }, errors)
    }

    /// The action of the first rule matching `path` whose `force` is `forced`
    /// (unforced rules only run after no file matched).
    pub fn find(&self, path: &str, forced: bool) -> Option<RuleAction> {
        self.rules.iter().filter(|rule| rule.force == forced).find_map(|rule| {
            let captures = rule.from.matches(path)?;
            // Captures come from the decoded request path; they go back into
            // a URL, so they are escaped (the template already is one).
            let target = substitute(&rule.to, &captures, encode_path);
            Some(match rule.status {
                200 | 404 => RuleAction::Rewrite {
                    status: rule.status,
                    path: target,
                },
                status => RuleAction::Redirect {
                    status,
                    location: target,
                },
            })
        })
    }
}

fn parse_rule(line: &str) -> Result<RedirectRule, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (from, to, status) = match fields.as_slice() {
        [from, to] => (*from, *to, "301"),
        [from, to, status] => (*from, *to, *status),
        _ => return Err(format!("expected 'from to [status]', got {} fields", fields.len())),
    };
    let (status, force) = match status.strip_suffix('!') {
        Some(status) => (status, true),
        None => (status, false),
    };
    let status: u16 = status
        .parse()
        .map_err(|_| format!("status {status:?} is not a number"))?;
    if !matches!(status, 200 | 301 | 302 | 303 | 307 | 308 | 404) {
        return Err(format!(
            "status {status} is not one of 200, 301, 302, 303, 307, 308, 404"
        ));
    }
    let is_url = to.starts_with("https://") || to.starts_with("http://");
    if !to.starts_with('/') && !is_url {
        return Err(format!("target {to:?} must be a path or an http(s) URL"));
    }
    if is_url && matches!(status, 200 | 404) {
        return Err("a rewrite (200/404) must target a path on this site".to_owned());
    }
    if to.bytes().any(|b| b.is_ascii_control()) {
        return Err("target contains a control character".to_owned());
    }
    Ok(RedirectRule {
        from: Pattern::parse(from)?,
        to: to.to_owned(),
        status,
        force,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
        # comments and blank lines are skipped

        /old          /new
        /blog/*       /news/:splat       302
        /u/:id        /users/:id.html    200
        /gone         /404.html          404
        /ext          https://example.com/x 308
        /shadow/*     /elsewhere         301!
        /bad          /x                 999
        /worse
        /url-rewrite  https://x.test/    200
    ";

    #[test]
    fn parses_rules_and_reports_bad_lines() {
        let (redirects, errors) = Redirects::parse(FILE);
        assert_eq!(redirects.rules.len(), 6);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("line 10: status 999"), "{errors:?}");
    }

    #[test]
    fn matches_in_order_with_placeholders() {
        let (redirects, _) = Redirects::parse(FILE);
        let redirect = |status, location: &str| {
            Some(RuleAction::Redirect {
                status,
                location: location.to_owned(),
            })
        };
        assert_eq!(redirects.find("/old", false), redirect(301, "/new"));
        assert_eq!(
            redirects.find("/blog/2024/post", false),
            redirect(302, "/news/2024/post")
        );
        assert_eq!(
            redirects.find("/u/42", false),
            Some(RuleAction::Rewrite {
                status: 200,
                path: "/users/42.html".to_owned()
            })
        );
        assert_eq!(redirects.find("/ext", false), redirect(308, "https://example.com/x"));
        assert_eq!(redirects.find("/shadow/a", false), None);
        assert_eq!(redirects.find("/shadow/a", true), redirect(301, "/elsewhere"));
        assert_eq!(redirects.find("/nothing", false), None);
    }
}
