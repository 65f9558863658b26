//! Publishes a directory into a local store as a site, so benchmarks serve
//! the same files through grove that the reference serves from disk.
//!
//! Usage: `seed STORE_DIR SITE DIR`

use std::path::PathBuf;
use std::sync::Arc;

use grove_core::SiteName;
use grove_objects::content::ContentStore;
use grove_objects::publish::publish_dir;
use grove_objects::site::Sites;
use grove_objects::store::{LocalStore, ObjectStore};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store_dir, site, dir] = args.as_slice() else {
        eprintln!("usage: seed STORE_DIR SITE DIR");
        std::process::exit(2);
    };
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(PathBuf::from(store_dir)).expect("opening the store"));
    let trees = grove_objects::content::trees_in(Arc::clone(&store), 100_000);
    let sites = Sites::new(Arc::clone(&store), trees.clone());
    let blobs = ContentStore::blobs(store);
    let site = SiteName::parse(site).expect("a valid site name");
    let version = publish_dir(&blobs, &trees, &sites, &site, dir.as_ref(), "benchmark data")
        .await
        .expect("publishing");
    println!("published {site} version {}", version.n);
}
