//! The shared test vectors, `spec/vectors/*.json` (see the README there), run
//! against the proxy's own functions. `sw/tests/vectors.test.mjs` runs the
//! same files against the service worker's ports of them, so a case changed
//! for one side fails the other. A case of unknown shape fails, and so does a
//! vector file that no test here reads.

use std::collections::{BTreeMap, BTreeSet};

use grove_core::tree::{Entry, TreeError};
use grove_core::{ContentHash, ContentType, SitePath};
use serde_json::{Map, Value, json};

use crate::config::{HttpConfig, TrailingSlash};
use crate::resolve::{Fallback, Files, PathError, RequestPath, Resolution, encode_path, fallback, resolve};
use crate::rules::{HeaderRules, Redirects, RuleAction};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors");

/// Every vector file, each read by the test of the same name below.
const FILES: &[&str] = &[
    "headers.json",
    "inject.json",
    "pages.json",
    "paths.json",
    "protect.json",
    "redirects.json",
    "resolve.json",
];

type Case = Map<String, Value>;

/// A vector file: its top-level object (`about`, `cases` and the `shared`
/// inputs, nothing else) and its cases, each with a unique `name`.
fn load(file: &str, shared: &[&str]) -> (Map<String, Value>, Vec<(String, Case)>) {
    let path = format!("{DIR}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let top = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(top)) => top,
        Ok(_) => panic!("{file}: not a JSON object"),
        Err(error) => panic!("{file}: {error}"),
    };
    for key in ["about", "cases"].iter().chain(shared) {
        assert!(top.contains_key(*key), "{file}: no {key:?}");
    }
    for key in top.keys() {
        let known = key == "about" || key == "cases" || shared.contains(&key.as_str());
        assert!(known, "{file}: unknown top-level key {key:?}");
    }
    let about = top["about"].as_str().unwrap_or_default();
    assert!(!about.is_empty(), "{file}: \"about\" must be a text");
    let Some(list) = top["cases"].as_array().filter(|list| !list.is_empty()) else {
        panic!("{file}: \"cases\" must be an array of cases");
    };
    let mut names = BTreeSet::new();
    let mut cases = Vec::new();
    for (index, case) in list.iter().enumerate() {
        let Some(case) = case.as_object() else {
            panic!("{file}: case #{index} is not an object");
        };
        let Some(name) = case.get("name").and_then(Value::as_str).filter(|name| !name.is_empty()) else {
            panic!("{file}: case #{index} has no name");
        };
        assert!(names.insert(name.to_owned()), "{file}: two cases are named {name:?}");
        cases.push((name.to_owned(), case.clone()));
    }
    (top, cases)
}

/// The outcome of every case of one file; `finish` fails the test with each
/// failing case's file and name.
struct Outcomes {
    file: &'static str,
    total: usize,
    failures: Vec<String>,
}

impl Outcomes {
    fn new(file: &'static str, total: usize) -> Self {
        Self {
            file,
            total,
            failures: Vec::new(),
        }
    }

    fn record(&mut self, name: &str, outcome: Result<(), String>) {
        if let Err(error) = outcome {
            self.failures.push(format!("{}: {name}: {error}", self.file));
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of the {} cases of {} failed:\n{}",
            self.failures.len(),
            self.total,
            self.file,
            self.failures.join("\n")
        );
    }
}

/// Fails unless the case has every key of `required` and no key but `name`,
/// those and `optional`.
fn shape(case: &Case, required: &[&str], optional: &[&str]) -> Result<(), String> {
    if let Some(missing) = required.iter().find(|key| !case.contains_key(**key)) {
        return Err(format!("missing {missing:?}"));
    }
    match case
        .keys()
        .find(|key| *key != "name" && !required.contains(&key.as_str()) && !optional.contains(&key.as_str()))
    {
        Some(unknown) => Err(format!("unknown key {unknown:?}")),
        None => Ok(()),
    }
}

fn field<'a>(case: &'a Case, key: &str) -> Result<&'a Value, String> {
    case.get(key).ok_or_else(|| format!("missing {key:?}"))
}

fn string<'a>(case: &'a Case, key: &str) -> Result<&'a str, String> {
    field(case, key)?
        .as_str()
        .ok_or_else(|| format!("{key:?} must be a string"))
}

/// The bytes of a text: a string (its UTF-8), or an array of pieces, each a
/// string, `{"hex": "..."}` or `{"repeat": <text>, "times": n}`.
fn bytes(value: &Value) -> Result<Vec<u8>, String> {
    match value {
        Value::String(text) => Ok(text.as_bytes().to_vec()),
        Value::Array(pieces) => {
            let mut out = Vec::new();
            for piece in pieces {
                out.extend(piece_bytes(piece)?);
            }
            Ok(out)
        }
        other => Err(format!("expected a text (a string or an array of pieces), got {other}")),
    }
}

fn piece_bytes(piece: &Value) -> Result<Vec<u8>, String> {
    let unknown = || format!("unknown text piece {piece}");
    match piece {
        Value::String(text) => Ok(text.as_bytes().to_vec()),
        Value::Object(fields) if fields.len() == 1 && fields.contains_key("hex") => {
            let hex = fields["hex"].as_str().ok_or_else(unknown)?;
            if !hex.len().is_multiple_of(2) || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(unknown());
            }
            (0..hex.len())
                .step_by(2)
                .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).map_err(|_| unknown()))
                .collect()
        }
        Value::Object(fields) if fields.len() == 2 && fields.contains_key("repeat") && fields.contains_key("times") => {
            let times = fields["times"].as_u64().ok_or_else(unknown)?;
            let times = usize::try_from(times).map_err(|_| unknown())?;
            Ok(bytes(&fields["repeat"])?.repeat(times))
        }
        _ => Err(unknown()),
    }
}

fn text(value: &Value) -> Result<String, String> {
    String::from_utf8(bytes(value)?).map_err(|_| "a text must be UTF-8".to_owned())
}

/// The texts of a file's top-level object `key`, by name.
fn named_texts(top: &Map<String, Value>, key: &str) -> Result<BTreeMap<String, String>, String> {
    let texts = top[key]
        .as_object()
        .ok_or_else(|| format!("{key:?} must be an object"))?;
    texts
        .iter()
        .map(|(name, value)| {
            text(value)
                .map(|text| (name.clone(), text))
                .map_err(|error| format!("{key} {name:?}: {error}"))
        })
        .collect()
}

fn named<'a, T>(map: &'a BTreeMap<String, T>, case: &Case, key: &str) -> Result<&'a T, String> {
    let name = string(case, key)?;
    map.get(name).ok_or_else(|| format!("no {key} {name:?}"))
}

fn same(actual: &Value, expected: &Value) -> Result<(), String> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!("expected {expected}, got {actual}"))
    }
}

fn max_path_bytes() -> usize {
    HttpConfig::default().max_path_bytes
}

#[test]
fn every_vector_file_is_run() {
    let mut found: Vec<String> = std::fs::read_dir(DIR)
        .unwrap_or_else(|error| panic!("{DIR}: {error}"))
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".json"))
        .collect();
    found.sort();
    let found: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(
        found, FILES,
        "a vector file without a test here, or a test without its file"
    );
}

// paths.json

fn path_error(error: PathError) -> &'static str {
    match error {
        PathError::NotAbsolute => "not_absolute",
        PathError::TooLong => "too_long",
        PathError::EncodedSeparator => "encoded_separator",
        PathError::BadEncoding => "bad_encoding",
        PathError::Control => "control",
        PathError::Backslash => "backslash",
        PathError::DotSegment => "dot_segment",
    }
}

fn path_case(case: &Case) -> Result<(), String> {
    if case.contains_key("raw") {
        shape(case, &["raw", "expected"], &[])?;
        let actual = match RequestPath::parse(&text(field(case, "raw")?)?, max_path_bytes()) {
            Ok(path) => {
                let url_path = path.url_path();
                json!({"path": path.path, "trailing_slash": path.trailing_slash, "url_path": url_path})
            }
            Err(error) => json!({"error": path_error(error)}),
        };
        same(&actual, field(case, "expected")?)
    } else if case.contains_key("encode") {
        shape(case, &["encode", "expected"], &[])?;
        let actual = Value::String(encode_path(&text(field(case, "encode")?)?));
        same(&actual, field(case, "expected")?)
    } else {
        Err("unknown case shape: expected \"raw\" or \"encode\"".to_owned())
    }
}

#[test]
fn paths() {
    let (_, cases) = load("paths.json", &[]);
    let mut outcomes = Outcomes::new("paths.json", cases.len());
    for (name, case) in &cases {
        outcomes.record(name, path_case(case));
    }
    outcomes.finish();
}

// resolve.json

/// The files of one site, as the proxy's `VersionFiles` finds them.
struct Site(BTreeMap<String, Entry>);

impl Files for Site {
    async fn file(&self, path: &str) -> Result<Option<Entry>, TreeError> {
        Ok(self.0.get(path).cloned())
    }
}

fn load_sites(top: &Map<String, Value>) -> Result<BTreeMap<String, Site>, String> {
    let sites = top["sites"].as_object().ok_or("\"sites\" must be an object")?;
    let mut out = BTreeMap::new();
    for (name, paths) in sites {
        let paths = paths
            .as_array()
            .ok_or_else(|| format!("site {name:?} must be an array of paths"))?;
        let mut files = BTreeMap::new();
        for path in paths {
            let path = path
                .as_str()
                .ok_or_else(|| format!("site {name:?}: a path is not a string"))?;
            let entry = Entry {
                path: SitePath::parse(path).map_err(|error| format!("site {name:?}: {error}"))?,
                hash: ContentHash::of(path.as_bytes()),
                size: 1,
                content_type: ContentType::parse("text/html").expect("a valid content type"),
            };
            if files.insert(path.to_owned(), entry).is_some() {
                return Err(format!("site {name:?} lists {path:?} twice"));
            }
        }
        out.insert(name.clone(), Site(files));
    }
    Ok(out)
}

/// What the proxy answers where no file does, as `Grove::not_found` serves
/// [`fallback`]'s answer.
async fn not_found(site: &Site, request: &RequestPath, spa: bool) -> Result<Value, String> {
    Ok(
        match fallback(site, request, spa)
            .await
            .map_err(|error| format!("{error:?}"))?
        {
            Fallback::SpaIndex(index) => json!({"fallback": index.path.as_str(), "status": 200}),
            Fallback::NotFoundPage(page) => json!({"fallback": page.path.as_str(), "status": 404}),
            Fallback::Nothing => json!({"status": 404}),
        },
    )
}

async fn resolve_case(sites: &BTreeMap<String, Site>, case: &Case) -> Result<(), String> {
    shape(case, &["site", "path", "trailing_slash", "spa", "expected"], &["query"])?;
    let site = named(sites, case, "site")?;
    let query = match case.get("query") {
        None => None,
        Some(Value::String(query)) => Some(query.as_str()),
        Some(_) => return Err("\"query\" must be a string".to_owned()),
    };
    let policy: TrailingSlash = serde_json::from_value(field(case, "trailing_slash")?.clone())
        .map_err(|error| format!("trailing_slash: {error}"))?;
    let spa = field(case, "spa")?.as_bool().ok_or("\"spa\" must be true or false")?;
    let request = RequestPath::parse(&text(field(case, "path")?)?, max_path_bytes())
        .map_err(|error| format!("the path is refused: {error}"))?;
    let actual = match resolve(site, &request, policy).await {
        Ok(Resolution::File(entry)) => json!({"file": entry.path.as_str()}),
        // As `Grove::serve_site` builds the Location of a 308.
        Ok(Resolution::Canonical(location)) => {
            json!({"redirect": crate::app::with_query(&encode_path(&location), query)})
        }
        Ok(Resolution::NotFound) => not_found(site, &request, spa).await?,
        Err(error) => return Err(format!("{error:?}")),
    };
    same(&actual, field(case, "expected")?)
}

#[tokio::test]
async fn resolve_paths() {
    let (top, cases) = load("resolve.json", &["sites"]);
    let sites = load_sites(&top).unwrap_or_else(|error| panic!("resolve.json: {error}"));
    let mut outcomes = Outcomes::new("resolve.json", cases.len());
    for (name, case) in &cases {
        outcomes.record(name, resolve_case(&sites, case).await);
    }
    outcomes.finish();
}

// redirects.json

/// A rule's action as the vectors spell it (`null` where no rule matches).
fn action(found: Option<RuleAction>) -> Value {
    match found {
        None => Value::Null,
        Some(RuleAction::Redirect { status, location }) => json!({"status": status, "location": location}),
        Some(RuleAction::Rewrite { status, path }) => json!({"status": status, "rewrite": path}),
    }
}

fn redirects_case(files: &BTreeMap<String, Redirects>, case: &Case) -> Result<(), String> {
    shape(case, &["file", "path", "expected"], &[])?;
    let redirects = named(files, case, "file")?;
    let path = text(field(case, "path")?)?;
    let actual = json!({
        "forced": action(redirects.find(&path, true)),
        "unforced": action(redirects.find(&path, false)),
    });
    same(&actual, field(case, "expected")?)
}

#[test]
fn redirects() {
    let (top, cases) = load("redirects.json", &["files"]);
    let files: BTreeMap<String, Redirects> = named_texts(&top, "files")
        .unwrap_or_else(|error| panic!("redirects.json: {error}"))
        .into_iter()
        .map(|(name, text)| (name, Redirects::parse(&text).0))
        .collect();
    let mut outcomes = Outcomes::new("redirects.json", cases.len());
    for (name, case) in &cases {
        outcomes.record(name, redirects_case(&files, case));
    }
    outcomes.finish();
}

// headers.json

fn headers_case(files: &BTreeMap<String, HeaderRules>, case: &Case) -> Result<(), String> {
    shape(case, &["file", "path", "expected"], &[])?;
    let rules = named(files, case, "file")?;
    let path = text(field(case, "path")?)?;
    let actual: Vec<Value> = rules
        .for_path(&path)
        .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect();
    same(&Value::Array(actual), field(case, "expected")?)
}

#[test]
fn headers() {
    let (top, cases) = load("headers.json", &["files"]);
    let files: BTreeMap<String, HeaderRules> = named_texts(&top, "files")
        .unwrap_or_else(|error| panic!("headers.json: {error}"))
        .into_iter()
        .map(|(name, text)| (name, HeaderRules::parse(&text).0))
        .collect();
    let mut outcomes = Outcomes::new("headers.json", cases.len());
    for (name, case) in &cases {
        outcomes.record(name, headers_case(&files, case));
    }
    outcomes.finish();
}

// inject.json

fn inject_case(case: &Case) -> Result<(), String> {
    if case.contains_key("html") {
        shape(case, &["html", "expected"], &[])?;
        let page = bytes(field(case, "html")?)?;
        let expected = match field(case, "expected")? {
            Value::Null => None,
            expected => Some(bytes(expected)?),
        };
        let actual = crate::sw::inject(&page).map(|injected| injected.to_vec());
        if actual == expected {
            return Ok(());
        }
        let show = |page: &Option<Vec<u8>>| match page {
            None => "null".to_owned(),
            Some(page) => format!("{:?}", String::from_utf8_lossy(&page[..page.len().min(300)])),
        };
        Err(format!("expected {}, got {}", show(&expected), show(&actual)))
    } else if case.contains_key("content_type") {
        shape(case, &["content_type", "expected"], &[])?;
        let actual = Value::Bool(crate::sw::is_html(string(case, "content_type")?));
        same(&actual, field(case, "expected")?)
    } else {
        Err("unknown case shape: expected \"html\" or \"content_type\"".to_owned())
    }
}

#[test]
fn inject() {
    let (_, cases) = load("inject.json", &[]);
    let mut outcomes = Outcomes::new("inject.json", cases.len());
    for (name, case) in &cases {
        outcomes.record(name, inject_case(case));
    }
    outcomes.finish();
}

// pages.json

fn pages_case(case: &Case) -> Result<(), String> {
    shape(case, &["patterns", "path", "expected"], &[])?;
    let patterns = field(case, "patterns")?
        .as_array()
        .ok_or("patterns must be an array")?
        .iter()
        .map(|pattern| pattern.as_str().ok_or("a pattern must be a string"))
        .collect::<Result<Vec<_>, _>>()?;
    let file: String = patterns
        .iter()
        .map(|pattern| {
            let source = if pattern.contains('{') {
                "source = \"items\"\n"
            } else {
                ""
            };
            format!("[[route]]\npath = {pattern:?}\ntemplate = \"_templates/page.html\"\n{source}")
        })
        .collect();
    let routes = grove_pages::routes::RouteFile::parse(&file).map_err(|error| error.to_string())?;
    // Listed as the root document spells them, which parse back the same.
    for (route, pattern) in routes.routes.iter().zip(&patterns) {
        if route.pattern.to_string() != *pattern {
            return Err(format!("{pattern} is listed as {}", route.pattern));
        }
    }
    same(
        &Value::Bool(routes.find(&text(field(case, "path")?)?).is_some()),
        field(case, "expected")?,
    )
}

#[test]
fn pages() {
    let (_, cases) = load("pages.json", &[]);
    let mut outcomes = Outcomes::new("pages.json", cases.len());
    for (name, case) in &cases {
        outcomes.record(name, pages_case(case));
    }
    outcomes.finish();
}

// protect.json

fn protect_case(case: &Case) -> Result<(), String> {
    shape(case, &["patterns", "path", "expected"], &[])?;
    let patterns = field(case, "patterns")?;
    let config: crate::config::file::AuthConfig = serde_json::from_value(json!({
        "issuer": "https://id.example",
        "client_id": "c",
        "protect": patterns,
    }))
    .map_err(|error| format!("patterns: {error}"))?;
    let access = crate::auth::access::Access::parse(&config).map_err(|error| error.to_string())?;
    same(
        &Value::Bool(access.is_protected(&text(field(case, "path")?)?)),
        field(case, "expected")?,
    )
}

#[test]
fn protect() {
    let (_, cases) = load("protect.json", &[]);
    let mut outcomes = Outcomes::new("protect.json", cases.len());
    for (name, case) in &cases {
        outcomes.record(name, protect_case(case));
    }
    outcomes.finish();
}
