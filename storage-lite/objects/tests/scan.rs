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

    let scanned = scan_dir(dir.path()).unwrap();
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
fn symlinks_inside_are_followed_and_escaping_ones_refused() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "passwd", "root:x:0:0");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "real/page.html", "page");
    std::os::unix::fs::symlink(dir.path().join("real/page.html"), dir.path().join("alias.html")).unwrap();
    let scanned = scan_dir(dir.path()).unwrap();
    assert_eq!(scanned.len(), 2);

    std::os::unix::fs::symlink(outside.path().join("passwd"), dir.path().join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("leakdir")).unwrap();
    match scan_dir(dir.path()) {
        Err(ScanError::EscapingSymlinks(links)) => {
            assert_eq!(links.len(), 2, "{links:?}");
            assert!(links.iter().any(|link| link.starts_with("leak.txt")), "{links:?}");
        }
        other => panic!("expected escaping symlinks, got {other:?}"),
    }
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
