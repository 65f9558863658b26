//! Turning a site build directory into tree entries.
//!
//! The publisher runs this on the user's `./dist`; the proxy runs it to seed
//! its demo site. Everything that would not survive as a URL path is refused
//! up front, all offenders listed at once, so a publish either takes the whole
//! directory or changes nothing.
//!
//! Symlinks are followed, to files and directories, wherever they point (as
//! `cp -L` and `aws s3 sync` do): a file is published under the link's own
//! path. A link that dangles, or a directory link that loops back on itself,
//! is skipped and reported in [`Scan::skipped`], never an error: site
//! generators copy such links in (e.g. rustdoc's links into
//! `/usr/share/javascript`).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::hash::Hasher;
use crate::names::{ContentType, NameError, SitePath};
use crate::tree::Entry;

/// The per-directory ignore file, in gitignore syntax.
pub const IGNORE_FILE: &str = ".groveignore";
/// Never published, whatever the ignore files say.
const ALWAYS_IGNORED: &[&str] = &[".git", ".DS_Store", IGNORE_FILE];

/// One file found in the directory, hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    pub entry: Entry,
    /// Where its bytes are on disk.
    pub source: PathBuf,
}

/// A symlink the scan did not follow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedLink {
    /// The link, relative to the directory.
    pub path: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SkipReason {
    /// Its target does not exist.
    Dangling { target: String },
    /// It leads back to a directory that contains it.
    Cycle { ancestor: String },
}

impl std::fmt::Display for SkippedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            SkipReason::Dangling { target } => write!(f, "{} -> {target} (dangling)", self.path),
            SkipReason::Cycle { ancestor } => write!(f, "{} (loops back to {ancestor})", self.path),
        }
    }
}

/// What a scan found: the files, hashed, in path order, and the links it
/// skipped.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub files: Vec<ScannedFile>,
    pub skipped: Vec<SkippedLink>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The walk's own error names its path.
    #[error("walking the directory: {0}")]
    Walk(ignore::Error),
    #[error("{} file name(s) cannot be published:\n{}", .0.len(), list(.0))]
    InvalidNames(Vec<String>),
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("  {item}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Hears how a scan goes, to show progress. Called from several threads.
pub trait ScanProgress: Sync {
    /// The walk is done and found `files` files; hashing starts.
    fn walked(&self, files: u64) {
        let _ = files;
    }

    /// One more file, of `bytes` bytes, is hashed.
    fn hashed(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// No progress to show.
impl ScanProgress for () {}

/// Scans `dir`, honouring `.groveignore` files, and hashes every file using
/// all cores.
pub fn scan_dir(dir: &Path) -> Result<Scan, ScanError> {
    scan_dir_observed(dir, &())
}

/// [`scan_dir`], telling `progress` how it goes.
pub fn scan_dir_observed(dir: &Path, progress: &dyn ScanProgress) -> Result<Scan, ScanError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ScanError::Io { path, source }
    };
    let root = dir.canonicalize().map_err(io_error(dir))?;
    if !root.is_dir() {
        return Err(ScanError::NotADirectory(dir.to_owned()));
    }
    let walker = ignore::WalkBuilder::new(&root)
        .standard_filters(false)
        .follow_links(true)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|entry| !ALWAYS_IGNORED.iter().any(|name| entry.file_name() == *name))
        .build();
    let mut found = Vec::new();
    let mut invalid = Vec::new();
    let mut skipped = Vec::new();
    let shown = |path: &Path| path.strip_prefix(&root).unwrap_or(path).to_string_lossy().into_owned();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => match skipped_link(&error) {
                Some((link, reason)) => {
                    skipped.push(SkippedLink {
                        path: shown(&link),
                        reason,
                    });
                    continue;
                }
                None => return Err(ScanError::Walk(error)),
            },
        };
        let path = entry.path();
        if entry.path_is_symlink()
            && let Err(error) = std::fs::metadata(path)
            && error.kind() == io::ErrorKind::NotFound
        {
            let target =
                std::fs::read_link(path).map_or_else(|_| "?".to_owned(), |target| target.display().to_string());
            skipped.push(SkippedLink {
                path: shown(path),
                reason: SkipReason::Dangling { target },
            });
            continue;
        }
        if !entry.file_type().is_some_and(|kind| kind.is_file()) {
            continue;
        }
        let relative = path.strip_prefix(&root).expect("walk stays under its root");
        match site_path(relative) {
            Ok(site_path) => found.push((site_path, path.to_owned())),
            Err(reason) => invalid.push(format!("{}: {reason}", shown(path))),
        }
    }
    if !invalid.is_empty() {
        invalid.sort();
        return Err(ScanError::InvalidNames(invalid));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    progress.walked(found.len() as u64);
    Ok(Scan {
        files: hash_all(found, progress)?,
        skipped,
    })
}

/// The symlink a walk error is about, if it is a link the scan skips: one
/// whose target is missing, or a directory link that loops.
fn skipped_link(error: &ignore::Error) -> Option<(PathBuf, SkipReason)> {
    let mut error = error;
    let mut path = None;
    loop {
        match error {
            ignore::Error::WithPath { path: at, err } => {
                path = Some(at.clone());
                error = err;
            }
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => error = err,
            ignore::Error::Loop { ancestor, child } => {
                let reason = SkipReason::Cycle {
                    ancestor: ancestor.display().to_string(),
                };
                return Some((child.clone(), reason));
            }
            ignore::Error::Io(io) if io.kind() == io::ErrorKind::NotFound => {
                let link = path?;
                let is_link = std::fs::symlink_metadata(&link).is_ok_and(|meta| meta.file_type().is_symlink());
                let target = std::fs::read_link(&link).ok()?;
                return is_link.then(|| {
                    let target = target.display().to_string();
                    (link, SkipReason::Dangling { target })
                });
            }
            _ => return None,
        }
    }
}

/// The URL path of a file, or why it cannot have one.
fn site_path(relative: &Path) -> Result<SitePath, String> {
    let mut segments = Vec::new();
    for component in relative.components() {
        let segment = component.as_os_str().to_str().ok_or("the name is not valid UTF-8")?;
        segments.push(segment);
    }
    SitePath::parse(&segments.join("/")).map_err(|error: NameError| error.to_string())
}

/// Hashes files on every core, keeping their order.
fn hash_all(files: Vec<(SitePath, PathBuf)>, progress: &dyn ScanProgress) -> Result<Vec<ScannedFile>, ScanError> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(path, source)| {
                            let file = hash_file(path, source)?;
                            progress.hashed(file.entry.size);
                            Ok::<_, ScanError>(file)
                        })
                        .collect()
                })
            })
            .collect();
        let mut scanned = Vec::with_capacity(files.len());
        for worker in workers {
            let chunk: Result<Vec<_>, _> = worker.join().expect("hashing does not panic");
            scanned.extend(chunk?);
        }
        Ok(scanned)
    })
}

fn hash_file(path: &SitePath, source: &Path) -> Result<ScannedFile, ScanError> {
    let failed = |error| ScanError::Io {
        path: source.to_owned(),
        source: error,
    };
    let mut file = File::open(source).map_err(failed)?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(failed)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok(ScannedFile {
        entry: Entry {
            path: path.clone(),
            hash: hasher.finish(),
            size,
            content_type: content_type_of(path),
        },
        source: source.to_owned(),
    })
}

/// The media type served for `path`, from its extension; text types are
/// declared UTF-8, which is what site generators write.
pub fn content_type_of(path: &SitePath) -> ContentType {
    let guess = mime_guess::from_path(path.as_str()).first_or_octet_stream();
    let textual = guess.type_() == mime_guess::mime::TEXT
        || matches!(
            guess.essence_str(),
            "application/javascript" | "application/json" | "application/manifest+json"
        );
    let text = if textual {
        format!("{}; charset=utf-8", guess.essence_str())
    } else {
        guess.essence_str().to_owned()
    };
    ContentType::parse(&text).unwrap_or_else(|_| ContentType::parse("application/octet-stream").expect("valid"))
}
