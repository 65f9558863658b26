//! Scanning a build directory and publishing it locally.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use grove_core::scan::{ScanError, scan_dir};
use grove_core::{ContentHash, SiteName, SitePath};
use grove_objects::content::ContentStore;
use grove_objects::publish::publish_dir;
use grove_objects::site::Sites;
use grove_objects::store::{MemoryStore, ObjectStore};

fn write(root: &Path, path: &str, body: &str) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
}

#[test]
fn scans_files_with_hashes_types_and_ignores() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", "<h1>hi</h1>");
    write(dir.path(), "assets/app.3f2a.js", "console.log(1)");
    write(dir.path(), "img/logo.png", "png");
    write(dir.path(), ".well-known/security.txt", "contact");
    write(dir.path(), ".git/HEAD", "ref");
    write(dir.path(), ".DS_Store", "junk");
    write(dir.path(), "drafts/secret.html", "draft");
    write(dir.path(), "notes.tmp", "tmp");
    write(dir.path(), ".groveignore", "drafts/\n*.tmp\n");

    let scanned = scan_dir(dir.path()).unwrap().files;
    let paths: Vec<&str> = scanned.iter().map(|file| file.entry.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".well-known/security.txt",
            "assets/app.3f2a.js",
            "img/logo.png",
            "index.html"
        ]
    );
    let index = scanned
        .iter()
        .find(|file| file.entry.path.as_str() == "index.html")
        .unwrap();
    assert_eq!(index.entry.hash, ContentHash::of(b"<h1>hi</h1>"));
    assert_eq!(index.entry.size, 11);
    assert_eq!(index.entry.content_type.as_str(), "text/html; charset=utf-8");
    let logo = scanned
        .iter()
        .find(|file| file.entry.path.as_str() == "img/logo.png")
        .unwrap();
    assert_eq!(logo.entry.content_type.as_str(), "image/png");
}

#[test]
fn symlinks_are_followed_like_cp_dash_l_and_broken_ones_skipped() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "lib/jquery.js", "jquery");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "real/page.html", "page");
    let link = |target: &Path, name: &str| std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
    link(&dir.path().join("real/page.html"), "alias.html");
    // Outside the directory, to a file and to a directory: followed.
    link(&outside.path().join("lib/jquery.js"), "jquery.js");
    link(&outside.path().join("lib"), "vendor");
    // Dangling, as in a copy of rust-doc's HTML: skipped, each named once.
    link(Path::new("/usr/share/javascript/none/none.js"), "missing.js");
    std::fs::create_dir_all(dir.path().join("deep")).unwrap();
    link(Path::new("../nowhere"), "deep/gone.css");
    // A directory link back to an ancestor: skipped, never walked forever.
    link(dir.path(), "real/loop");

    let scan = scan_dir(dir.path()).unwrap();
    let paths: Vec<&str> = scan.files.iter().map(|file| file.entry.path.as_str()).collect();
    assert_eq!(paths, ["alias.html", "jquery.js", "real/page.html", "vendor/jquery.js"]);
    let jquery = scan
        .files
        .iter()
        .find(|file| file.entry.path.as_str() == "vendor/jquery.js")
        .unwrap();
    assert_eq!(jquery.entry.hash, ContentHash::of(b"jquery"));
    let skipped: Vec<String> = scan.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(scan.skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped.contains(&"deep/gone.css -> ../nowhere (dangling)".to_owned()),
        "{skipped:?}"
    );
    assert!(
        skipped.contains(&"missing.js -> /usr/share/javascript/none/none.js (dangling)".to_owned()),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|link| link.starts_with("real/loop (loops back to")),
        "{skipped:?}"
    );
}

#[test]
fn invalid_names_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ok.html", "ok");
    write(dir.path(), "back\\slash.html", "x");
    write(dir.path(), "new\nline.html", "x");
    let non_utf8 = std::ffi::OsStr::from_bytes(b"caf\xe9.html");
    fs::write(dir.path().join(non_utf8), "x").unwrap();
    match scan_dir(dir.path()) {
        Err(error @ ScanError::InvalidNames(_)) => {
            let message = error.to_string();
            assert!(message.starts_with("3 file name(s)"), "{message}");
            assert!(message.contains("backslash") && message.contains("control") && message.contains("UTF-8"));
        }
        other => panic!("expected invalid names, got {other:?}"),
    }
    assert!(matches!(
        scan_dir(&dir.path().join("ok.html")),
        Err(ScanError::NotADirectory(_))
    ));
}

#[tokio::test]
async fn publishing_a_directory_uploads_only_missing_blobs() {
    let store = Arc::new(MemoryStore::new());
    let blobs = ContentStore::blobs(store.clone());
    let trees = grove_objects::content::trees_in(store.clone(), 10_000);
    let sites = Sites::new(store.clone(), trees.clone());
    let demo = SiteName::parse("demo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", "v1");
    write(dir.path(), "about.html", "about");

    let v1 = publish_dir(&blobs, &trees, &sites, &demo, dir.path(), "first")
        .await
        .unwrap();
    write(dir.path(), "index.html", "v2");
    let v2 = publish_dir(&blobs, &trees, &sites, &demo, dir.path(), "second")
        .await
        .unwrap();
    assert_eq!((v1.n, v2.n), (1, 2));
    assert_eq!(store.list("blobs/", None, 100).await.unwrap().keys.len(), 3);
    let index = trees
        .lookup(&v2.tree, &SitePath::parse("index.html").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blobs.get(&index.hash).await.unwrap().as_ref(), b"v2");
    let differences = trees.diff(&v1.tree, &v2.tree).await.unwrap();
    assert_eq!(differences.len(), 1);
}
