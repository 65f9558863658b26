//! Netlify-style path patterns: literal segments, `:name` placeholders
//! (one segment) and a final `*` splat (the rest, possibly empty).

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Splat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
}

/// Values captured by a match; the splat is named `splat`.
pub type Captures = Vec<(String, String)>;

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let path = text
            .strip_prefix('/')
            .ok_or_else(|| format!("pattern {text:?} must start with '/'"))?;
        let parts: Vec<&str> = segments_of(path).collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let segment = match *part {
                "*" if index + 1 == parts.len() => Segment::Splat,
                "*" => return Err(format!("pattern {text:?}: '*' is only allowed at the end")),
                part if part.starts_with(':') && part.len() > 1 => Segment::Param(part[1..].to_owned()),
                part => Segment::Literal(part.to_owned()),
            };
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// Matches a decoded request path (with its leading `/`); a trailing
    /// slash does not matter.
    pub fn matches(&self, path: &str) -> Option<Captures> {
        let mut parts = segments_of(path.strip_prefix('/').unwrap_or(path));
        let mut captures = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Splat => {
                    let rest: Vec<&str> = parts.by_ref().collect();
                    captures.push(("splat".to_owned(), rest.join("/")));
                    return Some(captures);
                }
                Segment::Literal(literal) => {
                    if parts.next()? != literal {
                        return None;
                    }
                }
                Segment::Param(name) => captures.push((name.clone(), parts.next()?.to_owned())),
            }
        }
        parts.next().is_none().then_some(captures)
    }
}

fn segments_of(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|segment| !segment.is_empty())
}

/// Replaces `:name` (and `:splat`) in `template` with captured values, in
/// one pass: a captured value is never itself searched for placeholders.
/// `escape` is applied to captured values only; the template is used as the
/// site author wrote it.
pub fn substitute(template: &str, captures: &Captures, escape: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(colon) = rest.find(':') {
        out.push_str(&rest[..colon]);
        let after = &rest[colon + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        match captures.iter().find(|(captured, _)| captured == name) {
            Some((_, value)) if !name.is_empty() => out.push_str(&escape(value)),
            _ => out.push_str(&rest[colon..colon + 1 + name_len]),
        }
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_params_and_splats() {
        let pattern = Pattern::parse("/blog/:year/*").unwrap();
        let captures = pattern.matches("/blog/2024/a/b.html").unwrap();
        assert_eq!(
            substitute("/news/:year/:splat", &captures, str::to_owned),
            "/news/2024/a/b.html"
        );
        // Values are not searched again, and unknown placeholders stay as written.
        let tricky = vec![("id".to_owned(), ":splat".to_owned())];
        assert_eq!(
            substitute("/u/:id?x=:other", &tricky, str::to_owned),
            "/u/:splat?x=:other"
        );
        let spaced = vec![("id".to_owned(), "a b".to_owned())];
        assert_eq!(substitute("/u/:id", &spaced, |v| v.replace(' ', "%20")), "/u/a%20b");
        assert_eq!(
            pattern.matches("/blog/2024").unwrap()[1],
            ("splat".to_owned(), String::new())
        );
        assert!(pattern.matches("/blog").is_none());
        assert!(Pattern::parse("/about").unwrap().matches("/about/").is_some());
        assert!(Pattern::parse("/about").unwrap().matches("/about/x").is_none());
        assert!(Pattern::parse("/").unwrap().matches("/").is_some());
    }

    #[test]
    fn refuses_malformed_patterns() {
        assert!(Pattern::parse("no-slash").is_err());
        assert!(Pattern::parse("/*/x").is_err());
    }
}
