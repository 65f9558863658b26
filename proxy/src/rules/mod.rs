//! A site version's own serving rules: `_redirects` and `_headers`.

pub mod headers;
pub mod pattern;
pub mod redirects;

pub use headers::HeaderRules;
pub use redirects::{Redirects, RuleAction};

/// The parsed rule files of one site version (empty where a file is absent).
#[derive(Debug, Default)]
pub struct SiteRules {
    pub redirects: Redirects,
    pub headers: HeaderRules,
}
