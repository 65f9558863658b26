//! What a signed-in user may do on a site: the `allow` list (who counts as
//! a member), the `protect` list (URL paths only members see) and the node
//! paths a session may read and write. Compiled once from the config.

use grove_core::token::Right;

use super::sessions::SessionRecord;
use crate::config::file::AuthConfig;

/// A config pattern that cannot mean what it says.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("protect pattern {0:?} must start with /")]
    ProtectNotAPath(String),
    #[error("node path pattern {0:?}: {1}")]
    NodePath(String, &'static str),
    #[error("allow pattern is empty")]
    EmptyAllow,
}

/// A `*` glob: `*` matches any run of characters, `/` included.
#[derive(Debug, Clone)]
struct Glob(String);

impl Glob {
    fn matches(&self, text: &str) -> bool {
        glob_matches(self.0.as_bytes(), text.as_bytes())
    }
}

fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matching with one backtrack point: linear in practice, and
    // never exponential whatever the pattern.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// One node path rule: `comments/*` covers every path under `comments/`,
/// `posts/1` covers just that path. `{subject}` is the session's subject.
#[derive(Debug, Clone)]
struct NodeRule {
    segments: Vec<String>,
    /// Ends in `/*`: covers every deeper path.
    subtree: bool,
}

const SUBJECT: &str = "{subject}";

impl NodeRule {
    fn parse(pattern: &str) -> Result<Self, PatternError> {
        let refuse = |why| PatternError::NodePath(pattern.to_owned(), why);
        let (body, subtree) = match pattern.strip_suffix("/*") {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        let segments: Vec<String> = body.split('/').map(str::to_owned).collect();
        for segment in &segments {
            let valid = segment == SUBJECT
                || (!segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')));
            if !valid {
                return Err(refuse(
                    "segments are A-Z, a-z, 0-9, '.', '_', '-' or {subject}, and only a final /* is a wildcard",
                ));
            }
        }
        if segments.first().is_some_and(|first| first == "_grove") {
            return Err(refuse("_grove/ holds the host's own records"));
        }
        Ok(Self { segments, subtree })
    }

    fn covers(&self, path: &str, subject: &str) -> bool {
        let mut parts = path.split('/');
        for segment in &self.segments {
            let wanted = if segment == SUBJECT { subject } else { segment };
            if parts.next() != Some(wanted) {
                return false;
            }
        }
        match parts.next() {
            None => !self.subtree,
            Some(_) => self.subtree,
        }
    }
}

/// A site's access rules.
#[derive(Debug, Clone)]
pub struct Access {
    allow: Vec<Glob>,
    protect: Vec<Glob>,
    read: Vec<NodeRule>,
    write: Vec<NodeRule>,
}

impl Access {
    pub fn parse(config: &AuthConfig) -> Result<Self, PatternError> {
        let allow = config
            .allow
            .iter()
            .map(|pattern| {
                if pattern.is_empty() {
                    Err(PatternError::EmptyAllow)
                } else {
                    Ok(Glob(pattern.clone()))
                }
            })
            .collect::<Result<_, _>>()?;
        let protect = config
            .protect
            .iter()
            .map(|pattern| {
                if pattern.starts_with('/') {
                    Ok(Glob(pattern.clone()))
                } else {
                    Err(PatternError::ProtectNotAPath(pattern.clone()))
                }
            })
            .collect::<Result<_, _>>()?;
        let rules = |patterns: &[String]| {
            patterns
                .iter()
                .map(|p| NodeRule::parse(p))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            allow,
            protect,
            read: rules(&config.read)?,
            write: rules(&config.write)?,
        })
    }

    /// Whether a URL path (decoded) is for members only.
    pub fn is_protected(&self, url_path: &str) -> bool {
        self.protect.iter().any(|glob| glob.matches(url_path))
    }

    /// Whether a file of the site is for members only: by any URL that can
    /// serve it (`/a/index.html` is also `/a/`, `/a.html` also `/a`), so a
    /// clean URL, a trailing-slash policy or a rewrite cannot reach it by a
    /// path the patterns do not name.
    pub fn protects_file(&self, file_path: &str) -> bool {
        let url = format!("/{file_path}");
        if self.is_protected(&url) {
            return true;
        }
        if let Some(directory) = url.strip_suffix("index.html")
            && (self.is_protected(directory) || self.is_protected(directory.trim_end_matches('/')))
        {
            return true;
        }
        url.strip_suffix(".html").is_some_and(|clean| self.is_protected(clean))
    }

    /// Whether the session's user is a member: a verified email or the
    /// subject matches an `allow` pattern.
    pub fn allows(&self, session: &SessionRecord) -> bool {
        self.allow.iter().any(|glob| {
            let identity = &session.identity;
            glob.matches(&identity.subject) || identity.verified_email().is_some_and(|email| glob.matches(email))
        })
    }

    /// Whether the session may use `right` on node path `path`. Only
    /// members hold node rights, and only read and write.
    pub fn grants(&self, session: &SessionRecord, path: &str, right: Right) -> bool {
        let rules = match right {
            Right::Read => &self.read,
            Right::Write => &self.write,
            Right::Grant => return false,
        };
        self.allows(session) && rules.iter().any(|rule| rule.covers(path, &session.identity.subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> AuthConfig {
        toml::from_str(&format!("issuer = \"https://id.example\"\nclient_id = \"c\"\n{text}")).unwrap()
    }

    fn session(subject: &str, email: Option<&str>, verified: bool) -> SessionRecord {
        SessionRecord::for_tests(subject, email, verified)
    }

    #[test]
    fn globs_match_whole_texts_case_insensitively() {
        assert!(glob_matches(b"*@example.com", b"Alice@Example.com"));
        assert!(!glob_matches(b"*@example.com", b"alice@example.com.evil"));
        assert!(!glob_matches(b"*@example.com", b"alice@evil.com"));
        assert!(glob_matches(b"/members/*", b"/members/"));
        assert!(glob_matches(b"/members/*", b"/members/a/b.html"));
        assert!(!glob_matches(b"/members/*", b"/membersx"));
        assert!(glob_matches(b"a*b*c", b"axxbyyc"));
        assert!(!glob_matches(b"a*b*c", b"axxbyy"));
    }

    #[test]
    fn members_are_verified_emails_or_subjects_that_match() {
        let access = Access::parse(&config("allow = [\"*@example.com\", \"bob\"]")).unwrap();
        assert!(access.allows(&session("alice", Some("alice@example.com"), true)));
        assert!(
            !access.allows(&session("alice", Some("alice@example.com"), false)),
            "unverified"
        );
        assert!(!access.allows(&session("eve", Some("eve@evil.test"), true)));
        assert!(access.allows(&session("bob", None, false)));
    }

    #[test]
    fn node_rights_follow_the_rules_and_the_subject() {
        let access = Access::parse(&config(
            "read = [\"comments/*\", \"users/{subject}/*\"]\nwrite = [\"users/{subject}/*\", \"posts/1\"]",
        ))
        .unwrap();
        let alice = session("alice", Some("alice@example.com"), true);
        assert!(access.grants(&alice, "comments/demo", Right::Read));
        assert!(
            !access.grants(&alice, "comments", Right::Read),
            "/* needs a deeper path"
        );
        assert!(!access.grants(&alice, "comments/demo", Right::Write));
        assert!(access.grants(&alice, "users/alice/profile", Right::Write));
        assert!(!access.grants(&alice, "users/bob/profile", Right::Write));
        assert!(access.grants(&alice, "posts/1", Right::Write));
        assert!(!access.grants(&alice, "posts/1/x", Right::Write));
        assert!(!access.grants(&alice, "users/alice/x", Right::Grant));
        let outsider = Access::parse(&config("allow = [\"*@example.com\"]\nread = [\"comments/*\"]")).unwrap();
        assert!(!outsider.grants(
            &session("eve", Some("eve@evil.test"), true),
            "comments/demo",
            Right::Read
        ));
    }

    #[test]
    fn a_file_is_protected_by_every_url_that_serves_it() {
        let access = Access::parse(&config("protect = [\"/members/*\", \"/secret\", \"/club\"]")).unwrap();
        assert!(access.protects_file("members/index.html"));
        assert!(access.protects_file("members/a.html"));
        assert!(access.protects_file("secret.html"), "its clean URL is protected");
        assert!(
            access.protects_file("club/index.html"),
            "its slash-less directory URL is protected"
        );
        assert!(!access.protects_file("index.html"));
        assert!(!access.protects_file("secrets.html"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Access::parse(&config("protect = [\"members/*\"]")).is_err());
        assert!(Access::parse(&config("read = [\"comments/*/x\"]")).is_err());
        assert!(Access::parse(&config("read = [\"../x\"]")).is_err());
        assert!(Access::parse(&config("write = [\"_grove/*\"]")).is_err());
        assert!(Access::parse(&config("allow = [\"\"]")).is_err());
    }
}
