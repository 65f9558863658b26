//! One render of one page: its template, its route parameter, and the node
//! data as of one timestamp, which stands in for the clock (templates have
//! no `now()`), so the same inputs always give the same bytes. Bounded by
//! minijinja's fuel, an output size and the data it may read.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use minijinja::value::Value;

use crate::data::{Data, DataSource, Read, ReadLimits};
use crate::templates::{TemplateError, TemplateSet};

/// What one render may spend.
#[derive(Debug, Clone, Copy)]
pub struct RenderLimits {
    /// minijinja fuel: roughly, instructions run.
    pub fuel: u64,
    pub output_bytes: usize,
    pub read: ReadLimits,
}

impl Default for RenderLimits {
    fn default() -> Self {
        Self {
            fuel: 5_000_000,
            output_bytes: 2 << 20,
            read: ReadLimits {
                entries: 2_000,
                bytes: 4 << 20,
            },
        }
    }
}

/// The page to render.
#[derive(Debug, Clone)]
pub struct PageRequest<'a> {
    pub template: &'a str,
    /// The route's `{name}` and its value.
    pub param: Option<(&'a str, &'a str)>,
    /// The data snapshot's timestamp, the template's `as_of`.
    pub as_of: &'a str,
}

/// A finished render.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub html: String,
    /// What it read, each once.
    pub reads: Vec<Read>,
    /// Every template it asked for (its own, bases, includes), by path.
    pub templates: Vec<String>,
}

/// Renders `page`; an error names the template and line at fault.
pub fn render(
    templates: &TemplateSet,
    page: &PageRequest<'_>,
    source: Arc<dyn DataSource>,
    limits: RenderLimits,
) -> Result<Rendered, TemplateError> {
    let used = Arc::new(Mutex::new(BTreeSet::new()));
    let mut env = templates.recording_environment(Arc::clone(&used));
    env.set_fuel(Some(limits.fuel));
    let template = env
        .get_template(page.template)
        .map_err(|error| TemplateError::of(&error, page.template))?;
    let data = Data::new(source, limits.read);
    let mut context: BTreeMap<&str, Value> = BTreeMap::new();
    context.insert("data", Value::from_dyn_object(Arc::clone(&data)));
    context.insert("as_of", Value::from(page.as_of));
    if let Some((name, value)) = page.param {
        context.insert(name, Value::from(value));
    }
    let mut output = Bounded {
        bytes: Vec::new(),
        limit: limits.output_bytes,
    };
    template
        .render_captured_to(context, &mut output)
        .map_err(|error| TemplateError::of(&error, page.template))?;
    let html = String::from_utf8(output.bytes).map_err(|_| TemplateError {
        file: page.template.to_owned(),
        line: 0,
        message: "the output is not UTF-8".to_owned(),
    })?;
    Ok(Rendered {
        html,
        reads: data.reads(),
        templates: used.lock().expect("not poisoned").iter().cloned().collect(),
    })
}

/// Output that refuses to grow past its limit.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(std::io::Error::other(format!(
                "the page is larger than its limit of {} bytes",
                self.limit
            )));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::data::DataEntry;

    /// Node data in memory: path -> entries, oldest first.
    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<String, Vec<DataEntry>>>);

    impl Memory {
        fn write(&self, path: &str, ts: u64, data: serde_json::Value) {
            let mut paths = self.0.lock().unwrap();
            paths.entry(path.to_owned()).or_default().push(DataEntry {
                ts: ts.to_string(),
                data,
            });
        }
    }

    impl DataSource for Memory {
        fn entries(&self, path: &str, limit: usize) -> Result<Vec<DataEntry>, String> {
            let paths = self.0.lock().unwrap();
            Ok(paths
                .get(path)
                .map(|entries| entries.iter().rev().take(limit).cloned().collect())
                .unwrap_or_default())
        }

        fn paths(&self, prefix: &str) -> Result<Vec<String>, String> {
            let paths = self.0.lock().unwrap();
            let mut names: Vec<String> = paths
                .keys()
                .filter_map(|path| path.strip_prefix(prefix)?.strip_prefix('/'))
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
                .collect();
            names.dedup();
            Ok(names)
        }
    }

    fn templates(files: &[(&str, &str)]) -> TemplateSet {
        TemplateSet::new(
            files
                .iter()
                .map(|(path, source)| ((*path).to_owned(), (*source).to_owned()))
                .collect(),
        )
    }

    const POST: &str = r#"{% extends "_templates/base.html" %}{% block body %}{% set post = data.last("posts/" ~ id) %}<h1>{{ post.data.title }}</h1>
{% for comment in data.entries("posts/" ~ id ~ "/comments", limit=2) %}<p>{{ comment.data.text }} ({{ comment.ts }})</p>
{% endfor %}{% endblock %}"#;

    fn site() -> TemplateSet {
        templates(&[
            (
                "_templates/base.html",
                "<main>{% block body %}{% endblock %}</main><footer>as of {{ as_of }}</footer>",
            ),
            ("_templates/post.html", POST),
            (
                "_templates/home.html",
                "{% for id in data.paths(\"posts\") %}<a href=\"/posts/{{ id }}/\">{{ id }}</a>{% endfor %}",
            ),
            (
                "_templates/forever.html",
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            ),
            (
                "_templates/huge.html",
                "{% for i in range(3000) %}{{ \"x\" * 1000 }}{% endfor %}",
            ),
            ("_templates/elsewhere.html", "{{ data.last(\"../blog/posts\") }}"),
        ])
    }

    fn post(id: &str) -> PageRequest<'_> {
        PageRequest {
            template: "_templates/post.html",
            param: Some(("id", id)),
            as_of: "17",
        }
    }

    #[test]
    fn renders_node_data_and_records_what_it_read() {
        let memory = Arc::new(Memory::default());
        memory.write("posts/42", 1, serde_json::json!({ "title": "Hello" }));
        for (ts, text) in [(2, "first"), (3, "second"), (4, "third")] {
            memory.write("posts/42/comments", ts, serde_json::json!({ "text": text }));
        }
        let rendered = render(&site(), &post("42"), memory.clone(), RenderLimits::default()).unwrap();
        assert_eq!(
            rendered.html,
            "<main><h1>Hello</h1>\n<p>third (4)</p>\n<p>second (3)</p>\n</main><footer>as of 17</footer>"
        );
        assert_eq!(
            rendered.reads,
            [Read::Path("posts/42".into()), Read::Path("posts/42/comments".into())]
        );
        assert_eq!(
            rendered.templates,
            ["_templates/base.html", "_templates/post.html"],
            "the page depends on its template and the one it extends"
        );
        let again = render(&site(), &post("42"), memory.clone(), RenderLimits::default()).unwrap();
        assert_eq!(again.html, rendered.html, "the same inputs give the same bytes");
        let home = PageRequest {
            template: "_templates/home.html",
            param: None,
            as_of: "17",
        };
        let home = render(&site(), &home, memory, RenderLimits::default()).unwrap();
        assert_eq!(home.html, "<a href=\"/posts/42/\">42</a>");
        assert_eq!(home.reads, [Read::Children("posts".into())]);
    }

    #[test]
    fn a_render_is_bounded() {
        let memory: Arc<dyn DataSource> = Arc::new(Memory::default());
        let page = |template| PageRequest {
            template,
            param: None,
            as_of: "1",
        };
        let forever = render(
            &site(),
            &page("_templates/forever.html"),
            memory.clone(),
            RenderLimits::default(),
        )
        .unwrap_err();
        assert_eq!(forever.file, "_templates/forever.html");
        assert!(forever.message.contains("fuel"), "{forever}");
        let huge = render(
            &site(),
            &page("_templates/huge.html"),
            memory.clone(),
            RenderLimits::default(),
        )
        .unwrap_err();
        assert!(huge.message.contains("larger than its limit"), "{huge}");
        let elsewhere = render(
            &site(),
            &page("_templates/elsewhere.html"),
            memory.clone(),
            RenderLimits::default(),
        )
        .unwrap_err();
        assert!(elsewhere.message.contains("not a data path"), "{elsewhere}");
        assert_eq!(elsewhere.line, 1);
        let memory_with_data = Arc::new(Memory::default());
        for ts in 0..50 {
            memory_with_data.write("posts/1/comments", ts, serde_json::json!({ "text": "x".repeat(100) }));
        }
        memory_with_data.write("posts/1", 99, serde_json::json!({ "title": "t" }));
        let tight = RenderLimits {
            read: ReadLimits { entries: 2, bytes: 150 },
            ..RenderLimits::default()
        };
        let over = render(&site(), &post("1"), memory_with_data, tight).unwrap_err();
        assert!(over.message.contains("more than its limit"), "{over}");
    }
}
