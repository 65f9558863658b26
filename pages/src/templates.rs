//! The templates of one site version: every file under the top-level `_`
//! directories its routes' templates live in (so includes and base
//! templates beside them load too), parsed once, loaded only by their path
//! in the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use minijinja::{Environment, Error, ErrorKind};

use crate::routes::RouteFile;

/// A template that does not parse, or that names a file it may not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct TemplateError {
    pub file: String,
    /// 1-based; 0 when the error has no line.
    pub line: usize,
    pub message: String,
}

impl TemplateError {
    /// The file and line minijinja blames, else `fallback`'s.
    pub fn of(error: &Error, fallback: &str) -> Self {
        let mut message = error.kind().to_string();
        if let Some(detail) = error.detail() {
            message = format!("{message}: {detail}");
        }
        let mut cause = std::error::Error::source(error);
        while let Some(inner) = cause {
            message = format!("{message}: {inner}");
            cause = inner.source();
        }
        Self {
            file: error.name().unwrap_or(fallback).to_owned(),
            line: error.line().unwrap_or(0),
            message,
        }
    }
}

/// The top-level directories holding `routes`' templates.
pub fn directories(routes: &RouteFile) -> BTreeSet<String> {
    routes
        .routes
        .iter()
        .filter_map(|route| route.template.split_once('/').map(|(top, _)| top.to_owned()))
        .collect()
}

/// Whether the file at `path` is one of the templates of `routes`' site.
pub fn is_template(path: &str, directories: &BTreeSet<String>) -> bool {
    path.split_once('/').is_some_and(|(top, _)| directories.contains(top))
}

/// A version's templates, by path.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    sources: Arc<BTreeMap<String, String>>,
}

impl TemplateSet {
    pub fn new(sources: BTreeMap<String, String>) -> Self {
        Self {
            sources: Arc::new(sources),
        }
    }

    /// The source of the template at `path`, if the set has it.
    pub fn source(&self, path: &str) -> Option<&str> {
        self.sources.get(path).map(String::as_str)
    }

    /// Parses every template, and checks that each route's template is one.
    pub fn check(&self, routes: &RouteFile) -> Result<(), TemplateError> {
        let env = self.environment();
        for (name, source) in self.sources.iter() {
            env.template_from_named_str(name, source)
                .map_err(|error| TemplateError::of(&error, name))?;
        }
        for route in &routes.routes {
            if !self.sources.contains_key(&route.template) {
                return Err(TemplateError {
                    file: crate::ROUTE_FILE.to_owned(),
                    line: route.line,
                    message: format!("the template {} is not in the site", route.template),
                });
            }
        }
        Ok(())
    }

    /// An environment that loads templates from this set only: a name
    /// that leaves the tree (`../x`, `/etc/x`) is an error, one the tree
    /// lacks is "not found".
    pub fn environment(&self) -> Environment<'static> {
        self.recording_environment(Arc::default())
    }

    /// [`Self::environment`], adding the name of every template it asks
    /// for to `used`: what a page depends on beside its data.
    pub fn recording_environment(&self, used: Arc<Mutex<BTreeSet<String>>>) -> Environment<'static> {
        let mut env = Environment::new();
        let sources = Arc::clone(&self.sources);
        env.set_loader(move |name| {
            if name.starts_with('/') || name.split('/').any(|segment| segment == ".." || segment == ".") {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{name:?} is outside the site's tree"),
                ));
            }
            // Asked for, found or not: a later version adding it changes
            // the page (`include ... ignore missing`).
            used.lock().expect("not poisoned").insert(name.to_owned());
            Ok(sources.get(name).cloned())
        });
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, &str)]) -> TemplateSet {
        TemplateSet::new(
            files
                .iter()
                .map(|(path, source)| ((*path).to_owned(), (*source).to_owned()))
                .collect(),
        )
    }

    fn routes(template: &str) -> RouteFile {
        RouteFile::parse(&format!("[[route]]\npath = \"/\"\ntemplate = \"{template}\"\n")).unwrap()
    }

    #[test]
    fn a_bad_template_is_named_with_its_line() {
        let templates = set(&[
            ("_templates/home.html", "<h1>{{ title }}</h1>"),
            ("_templates/broken.html", "line one\n{% for x in %}\n"),
        ]);
        let error = templates.check(&routes("_templates/home.html")).unwrap_err();
        assert_eq!(
            (error.file.as_str(), error.line),
            ("_templates/broken.html", 2),
            "{error}"
        );
        let missing = set(&[("_templates/home.html", "x")])
            .check(&routes("_templates/other.html"))
            .unwrap_err();
        assert_eq!(missing.file, "_grove/pages.toml");
        assert!(missing.message.contains("not in the site"));
    }

    #[test]
    fn templates_load_from_the_tree_only() {
        let templates = set(&[
            ("_templates/home.html", "{% include \"_templates/part.html\" %}"),
            ("_templates/part.html", "part"),
            ("_templates/escape.html", "{% include \"../secret.txt\" %}"),
        ]);
        let env = templates.environment();
        assert_eq!(
            env.get_template("_templates/home.html").unwrap().render(()).unwrap(),
            "part"
        );
        let error = env
            .get_template("_templates/escape.html")
            .unwrap()
            .render(())
            .unwrap_err();
        assert!(format!("{error:#}").contains("outside the site's tree"), "{error:#}");
        assert!(env.get_template("/etc/passwd").is_err());
        let directories = directories(&routes("_templates/home.html"));
        assert!(is_template("_templates/part.html", &directories));
        assert!(!is_template("index.html", &directories) && !is_template("_other/x.html", &directories));
    }
}
