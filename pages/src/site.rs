//! A site version's pages as a whole: its route file and every template,
//! checked together. The `grove` CLI runs this before it publishes, and the
//! host before it commits, so a version whose pages cannot render is never
//! committed.

use std::collections::BTreeMap;

use crate::routes::{RouteFile, RouteFileError};
use crate::templates::{self, TemplateError, TemplateSet};

/// Why a version's pages were refused; the text names the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagesError {
    #[error(transparent)]
    Routes(#[from] RouteFileError),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// A version's checked route file and templates.
#[derive(Debug, Clone)]
pub struct SitePages {
    pub routes: RouteFile,
    pub templates: TemplateSet,
}

/// Of a version's file paths, those that are templates of `routes`.
pub fn template_paths<'a>(routes: &RouteFile, paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let directories = templates::directories(routes);
    paths
        .into_iter()
        .filter(|path| templates::is_template(path, &directories))
        .map(str::to_owned)
        .collect()
}

impl SitePages {
    /// Whether the file at `path` is one of these templates.
    pub fn is_template(&self, path: &str) -> bool {
        templates::is_template(path, &templates::directories(&self.routes))
    }

    /// Checks the route file's text against the templates' sources (the
    /// files [`template_paths`] named).
    pub fn check(route_file: &str, sources: BTreeMap<String, String>) -> Result<Self, PagesError> {
        let routes = RouteFile::parse(route_file)?;
        let templates = TemplateSet::new(sources);
        templates.check(&routes)?;
        Ok(Self { routes, templates })
    }
}
