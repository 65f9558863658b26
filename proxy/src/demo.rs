//! `--demo`: seeds the bundled example site `demo` into the store, unless the
//! store already has it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use grove_core::SiteName;
use grove_objects::content::ContentStore;
use grove_objects::publish::publish_dir;
use grove_objects::site::Sites;
use grove_objects::store::ObjectStore;
use include_dir::{Dir, include_dir};

static DEMO_SITE: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/demo-site");

/// Publishes the demo site as `demo` if that site has no version yet.
/// Returns the version now live.
pub async fn seed(store: Arc<dyn ObjectStore>) -> anyhow::Result<u64> {
    let trees = grove_objects::content::trees_in(Arc::clone(&store), 10_000);
    let sites = Sites::new(Arc::clone(&store), trees.clone());
    let demo = SiteName::parse("demo").expect("valid name");
    if let Some((root, _)) = sites.root(&demo).await? {
        return Ok(root.version);
    }
    let dir = tempfile::tempdir().context("creating a temporary directory for the demo site")?;
    extract(&DEMO_SITE, dir.path())?;
    let blobs = ContentStore::blobs(store);
    let version = publish_dir(&blobs, &trees, &sites, &demo, dir.path(), "demo site").await?;
    Ok(version.n)
}

fn extract(dir: &Dir<'_>, into: &Path) -> anyhow::Result<()> {
    for file in dir.files() {
        let path = into.join(file.path());
        std::fs::create_dir_all(path.parent().expect("file paths have a parent"))?;
        std::fs::write(&path, file.contents()).with_context(|| format!("writing {}", path.display()))?;
    }
    for sub in dir.dirs() {
        extract(sub, into)?;
    }
    Ok(())
}
