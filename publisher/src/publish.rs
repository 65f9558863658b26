//! `grove publish`: hash, build the tree, negotiate, upload, store nodes,
//! commit; rebase and retry when another publish got there first.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use grove_core::publish_api::{self, CommitRequest, Published, PurgeState, SitemapSummary, UploadTarget};
use grove_core::scan::{Scan, ScanProgress, ScannedFile, SkippedLink, scan_dir_observed};
use grove_core::tree::{Difference, MemoryTreeNodes, Trees};
use grove_core::{ContentHash, SiteName};
use serde::Serialize;

use crate::client::{Client, ClientError};
use crate::nodes::NodeOverlay;
use crate::progress::{FileBar, Progress};

/// Blob uploads in flight at once.
const UPLOAD_CONCURRENCY: usize = 16;
/// Node batches in flight at once.
const BATCH_CONCURRENCY: usize = 4;
/// Bytes of nodes per probe or store request, at most; less if the host
/// accepts less (it says so in its offer reply).
const BATCH_BYTES: usize = 512 << 10;
/// Room left under the host's body limit.
const BATCH_HEADROOM: usize = 1024;
/// Batches are never cut smaller than this.
const MIN_BATCH_BYTES: usize = 4096;
/// Times a publish rebases onto a newer version before giving up.
const MAX_REBASES: usize = 8;
/// Times a commit re-uploads content the host reports missing.
const MAX_REPAIRS: usize = 3;

/// A publish lost every race it ran: exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("site {site} kept moving while publishing ({MAX_REBASES} rebases); nothing was published, run again")]
pub struct ConflictUnresolved {
    site: SiteName,
}

/// The one JSON object `grove publish --json` prints.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub site: String,
    pub version: u64,
    pub root: ContentHash,
    pub files: u64,
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    pub reused_files: u64,
    pub url: String,
    pub preview_url: String,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Request body bytes sent, retries included.
    pub sent_bytes: u64,
    /// The CDN purge of what changed; absent when the host purges no CDN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge: Option<PurgeState>,
    /// Symlinks left out: dangling, or looping back on a directory.
    pub skipped_links: Vec<SkippedLink>,
    /// What the host's `/sitemap.xml` serves for the version; absent when
    /// the host did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sitemap: Option<SitemapSummary>,
}

/// Checks the build's database-backed pages, if it has any: the route file
/// and every template must parse, or nothing is published. The error
/// names the file and line.
fn check_pages(files: &[ScannedFile]) -> anyhow::Result<()> {
    let Some(route_file) = files
        .iter()
        .find(|file| file.entry.path.as_str() == grove_pages::ROUTE_FILE)
    else {
        return Ok(());
    };
    let read = |file: &ScannedFile| {
        std::fs::read_to_string(&file.source).with_context(|| format!("reading {} as UTF-8 text", file.entry.path))
    };
    let text = read(route_file)?;
    let routes = grove_pages::routes::RouteFile::parse(&text)?;
    let wanted: std::collections::BTreeSet<String> =
        grove_pages::site::template_paths(&routes, files.iter().map(|file| file.entry.path.as_str()))
            .into_iter()
            .collect();
    let mut sources = std::collections::BTreeMap::new();
    for file in files.iter().filter(|file| wanted.contains(file.entry.path.as_str())) {
        sources.insert(file.entry.path.to_string(), read(file)?);
    }
    grove_pages::site::SitePages::check(&text, sources)?;
    Ok(())
}

/// A directory hashed and built into a tree, on the client.
pub struct LocalBuild {
    pub root: ContentHash,
    pub files: Vec<ScannedFile>,
    /// Symlinks the scan did not follow, each already reported.
    pub skipped: Vec<SkippedLink>,
    pub trees: Trees,
    /// Every node of the build.
    nodes: MemoryTreeNodes,
}

impl LocalBuild {
    /// Hashes `dir` on every core and builds its tree in memory; nodes the
    /// host has are read from `client` when a diff needs them.
    pub async fn of(dir: &Path, site: &SiteName, client: &Client, progress: &Progress) -> anyhow::Result<Self> {
        let hashing = HashingProgress(progress.files("hashing", 0, None, ""));
        let walk_dir = dir.to_owned();
        let (files, hashing) = tokio::task::spawn_blocking(move || {
            let files = scan_dir_observed(&walk_dir, &hashing);
            (files, hashing)
        })
        .await
        .expect("scanning does not panic");
        let Scan { files, skipped } = files?;
        for link in &skipped {
            progress.notice(format!("warning: skipped symlink {link}"));
        }
        check_pages(&files)?;
        let (count, bytes, took) = hashing.0.finish();
        progress.say(format!(
            "hashed {count} files ({}) in {took:.1?}",
            crate::progress::human_bytes(bytes)
        ));
        let (trees, nodes) = NodeOverlay::trees(Some((client.clone(), site.clone())));
        let root = trees.build(files.iter().map(|file| file.entry.clone())).await?;
        Ok(Self {
            root,
            files,
            skipped,
            trees,
            nodes,
        })
    }

    /// What publishing this build would change on top of `live`.
    pub async fn diff(&self, live: Option<ContentHash>) -> anyhow::Result<Vec<Difference>> {
        Ok(match live {
            Some(live) => self.trees.diff(&live, &self.root).await?,
            None => self
                .files
                .iter()
                .map(|file| Difference::Added(file.entry.clone()))
                .collect(),
        })
    }

    async fn node(&self, hash: &ContentHash) -> anyhow::Result<Bytes> {
        self.nodes
            .get(hash)
            .with_context(|| format!("the host asked for tree node {hash}, which this build does not have"))
    }

    fn source_of(&self) -> HashMap<ContentHash, (PathBuf, String)> {
        self.files
            .iter()
            .map(|file| (file.entry.hash, (file.source.clone(), file.entry.path.to_string())))
            .collect()
    }
}

/// Shows hashing progress on a file bar.
struct HashingProgress(FileBar);

impl ScanProgress for HashingProgress {
    fn walked(&self, files: u64) {
        self.0.set_files(files);
    }

    fn hashed(&self, bytes: u64) {
        self.0.tick_file(bytes);
    }
}

/// Publishes `build` as the next version of `site`.
pub async fn publish(
    client: &Client,
    site: &SiteName,
    build: &LocalBuild,
    message: &str,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let sources = build.source_of();
    let mut uploaded = Uploaded::default();
    for attempt in 0..=MAX_REBASES {
        let negotiating = progress.spinner("negotiating");
        let offer = client.offer(site, build.root, build.files.len() as u64).await?;
        let batch_bytes = offer.max_request_bytes.map_or(BATCH_BYTES, |max| {
            usize::try_from(max)
                .unwrap_or(usize::MAX)
                .saturating_sub(BATCH_HEADROOM)
                .clamp(MIN_BATCH_BYTES, BATCH_BYTES)
        });
        let batcher = Batcher { build, batch_bytes };
        let (to_store, targets) = negotiate(client, site, &batcher, offer.missing_nodes).await?;
        negotiating.finish_and_clear();
        progress.say(format!(
            "host lacks {} of {} files and {} tree nodes",
            targets.len(),
            sources.len(),
            to_store.iter().map(Vec::len).sum::<usize>()
        ));
        let reused = sources.len() - targets.len();
        upload_all(client, &sources, targets, reused, &mut uploaded, progress).await?;
        store_tree_nodes(client, site, &batcher, to_store).await?;

        let committing = progress.spinner("committing");
        let commit = CommitRequest {
            root: build.root,
            message: message.to_owned(),
            parent: offer.parent,
        };
        let result = commit_repairing(client, site, &commit, &sources, &mut uploaded, progress).await;
        committing.finish_and_clear();
        match result {
            Ok(published) => return Ok(summary(client, published, build, &uploaded)),
            Err(error) if error.code() == Some("conflict") && attempt < MAX_REBASES => {
                let current = match &error {
                    ClientError::Api { body, .. } => body.current.unwrap_or_default(),
                    _ => 0,
                };
                progress.notice(format!(
                    "site {site} moved on to version {current} while publishing; rebasing onto it"
                ));
            }
            Err(error) if error.code() == Some("conflict") => break,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ConflictUnresolved { site: site.clone() }.into())
}

/// Commits; if the host reports content missing (removed as corrupt, or
/// lost), uploads it and commits again.
async fn commit_repairing(
    client: &Client,
    site: &SiteName,
    commit: &CommitRequest,
    sources: &HashMap<ContentHash, (PathBuf, String)>,
    uploaded: &mut Uploaded,
    progress: &Progress,
) -> Result<Published, ClientError> {
    let mut repairs = 0;
    loop {
        match client.commit(site, commit).await {
            Err(ClientError::Api { body, .. }) if body.error == "missing_content" && repairs < MAX_REPAIRS => {
                repairs += 1;
                progress.notice(format!(
                    "the host reports {} files missing or corrupt; uploading them again",
                    body.missing_blobs.len()
                ));
                if let Err(error) = upload_all(client, sources, body.missing_blobs, 0, uploaded, progress).await {
                    progress.notice(format!("re-upload failed: {error:#}"));
                }
            }
            other => return other,
        }
    }
}

/// Walks down from the nodes the host lacks, a tree level per round, and
/// returns those nodes (top level first) and the blobs the host lacks.
async fn negotiate(
    client: &Client,
    site: &SiteName,
    batcher: &Batcher<'_>,
    mut level: Vec<ContentHash>,
) -> anyhow::Result<(Vec<Vec<ContentHash>>, Vec<UploadTarget>)> {
    let mut levels = Vec::new();
    let mut targets: Vec<UploadTarget> = Vec::new();
    let mut seen_blobs = HashSet::new();
    while !level.is_empty() {
        let replies: Vec<_> = futures::stream::iter(batcher.batches(&level).await?)
            .map(|batch| client.probe(site, batch))
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect()
            .await?;
        let mut next = HashSet::new();
        for reply in replies {
            next.extend(reply.missing_nodes);
            targets.extend(
                reply
                    .missing_blobs
                    .into_iter()
                    .filter(|target| seen_blobs.insert(target.hash)),
            );
        }
        levels.push(std::mem::take(&mut level));
        level = next.into_iter().collect();
    }
    Ok((levels, targets))
}

/// Stores the nodes, deepest level first, so the host never holds a node
/// whose subtree is incomplete.
async fn store_tree_nodes(
    client: &Client,
    site: &SiteName,
    batcher: &Batcher<'_>,
    levels: Vec<Vec<ContentHash>>,
) -> anyhow::Result<()> {
    for level in levels.into_iter().rev() {
        futures::stream::iter(batcher.batches(&level).await?)
            .map(|batch| client.store_tree_nodes(site, batch))
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect::<()>()
            .await?;
    }
    Ok(())
}

/// Cuts a build's nodes into request-sized batches.
struct Batcher<'a> {
    build: &'a LocalBuild,
    /// Largest batch body.
    batch_bytes: usize,
}

impl Batcher<'_> {
    /// The nodes `hashes`, in node batches of at most `batch_bytes` (a node
    /// larger than that goes alone).
    async fn batches(&self, hashes: &[ContentHash]) -> anyhow::Result<Vec<Bytes>> {
        let mut batches = Vec::new();
        let mut current: Vec<Bytes> = Vec::new();
        let mut size = 0;
        for hash in hashes {
            let node = self.build.node(hash).await?;
            if size + node.len() + 4 > self.batch_bytes && !current.is_empty() {
                batches.push(encode(&current));
                current.clear();
                size = 0;
            }
            size += node.len() + 4;
            current.push(node);
        }
        if !current.is_empty() {
            batches.push(encode(&current));
        }
        Ok(batches)
    }
}

fn encode(nodes: &[Bytes]) -> Bytes {
    Bytes::from(publish_api::encode_tree_node_batch(
        nodes.iter().map(|node| node.as_ref()),
    ))
}

#[derive(Debug, Default)]
struct Uploaded {
    hashes: HashSet<ContentHash>,
    bytes: u64,
}

/// Uploads `targets`; `reused` files were already on the host (shown).
async fn upload_all(
    client: &Client,
    sources: &HashMap<ContentHash, (PathBuf, String)>,
    targets: Vec<UploadTarget>,
    reused: usize,
    uploaded: &mut Uploaded,
    progress: &Progress,
) -> anyhow::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let total: u64 = targets.iter().map(|target| target.size).sum();
    let note = if reused > 0 {
        format!(", {reused} already on the host")
    } else {
        String::new()
    };
    let bar = progress.files("uploading", targets.len() as u64, Some(total), &note);
    let done: Vec<(ContentHash, u64)> = futures::stream::iter(targets)
        .map(|target| {
            let bar = bar.clone();
            async move {
                let Some((source, path)) = sources.get(&target.hash) else {
                    bail!(
                        "the host asked for blob {}, which this build does not have",
                        target.hash
                    );
                };
                let bytes = Bytes::from(
                    tokio::fs::read(source)
                        .await
                        .with_context(|| format!("reading {}", source.display()))?,
                );
                // The receiver checks the hash (the host, or the store's
                // SHA-256 checksum), so a file edited since hashing is caught
                // there without a second pass here.
                match client.upload(&target, bytes).await {
                    Ok(()) => {}
                    Err(error) if error.code() == Some("hash_mismatch") || error.is_checksum_refusal() => {
                        bail!("{path} changed while it was being published; publish again")
                    }
                    Err(error) => return Err(anyhow::Error::new(error).context(format!("uploading {path}"))),
                }
                bar.tick_file(target.size);
                Ok((target.hash, target.size))
            }
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect()
        .await?;
    let (files, bytes, took) = bar.finish();
    for (hash, size) in done {
        if uploaded.hashes.insert(hash) {
            uploaded.bytes += size;
        }
    }
    progress.say(format!(
        "uploaded {files} files ({}) in {took:.1?}",
        crate::progress::human_bytes(bytes)
    ));
    Ok(())
}

fn summary(client: &Client, published: Published, build: &LocalBuild, uploaded: &Uploaded) -> Summary {
    let reused = build
        .files
        .iter()
        .filter(|file| !uploaded.hashes.contains(&file.entry.hash))
        .count() as u64;
    let (requests, sent_bytes) = client.traffic();
    Summary {
        site: published.site,
        version: published.version,
        root: published.root,
        files: published.files,
        uploaded_files: uploaded.hashes.len() as u64,
        uploaded_bytes: uploaded.bytes,
        reused_files: reused,
        url: published.url,
        preview_url: published.preview_url,
        requests,
        sent_bytes,
        purge: published.purge,
        skipped_links: build.skipped.clone(),
        sitemap: published.sitemap,
    }
}
