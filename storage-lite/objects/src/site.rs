//! Site versions and the root pointer that names the live one.
//!
//! `sites/<site>/versions/<n>` is created with put-if-absent, so exactly one
//! committer wins each `n` and history is linear: version `n`'s parent is
//! always `n - 1`. `sites/<site>/root` names the newest version and is moved
//! forward only by compare-and-swap from the version before. A version exists
//! from the moment its record is created; a committer that dies before moving
//! the root leaves a version the next committer finishes ("helping"), so a
//! crash can never wedge a site. Rollback is a new version that points at an
//! old tree.

use std::sync::Arc;

use futures::future::try_join_all;
use grove_core::hash::ContentHash;
use grove_core::keys;
use grove_core::names::SiteName;
use grove_core::tree::{TreeError, Trees};
use grove_core::version::{Root, Version, VersionKind};
use time::OffsetDateTime;

use crate::journal::{Journal, JournalEntry};
use crate::record::{self, RecordError};
use crate::store::{ETag, ObjectStore, StoreError};

/// Longest accepted version message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Attempts before a commit gives up under contention (each attempt that
/// fails does so because another commit made progress).
const MAX_COMMIT_ATTEMPTS: usize = 1000;

/// What to commit.
#[derive(Debug, Clone)]
pub struct Commit {
    pub tree: ContentHash,
    pub message: String,
    /// `Some(n)`: commit only on top of version `n` (0: only as the first
    /// version), else [`SiteError::Conflict`]. `None`: on top of whatever is
    /// current.
    pub expected_parent: Option<u64>,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPage {
    /// The live version when the page was read.
    pub live: u64,
    pub versions: Vec<Version>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next_before: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("site {site} moved on: expected to commit on version {expected}, but the current version is {current}")]
    Conflict {
        site: SiteName,
        expected: u64,
        current: u64,
    },
    #[error("site {site} has no version {n}")]
    UnknownVersion { site: SiteName, n: u64 },
    #[error("site {site} has no versions yet")]
    NoVersions { site: SiteName },
    #[error("cannot commit tree {tree}: {source}")]
    MissingTree {
        tree: ContentHash,
        #[source]
        source: TreeError,
    },
    #[error("version message is longer than {MAX_MESSAGE_BYTES} bytes")]
    MessageTooLong,
    #[error("commit to site {site} gave up after {MAX_COMMIT_ATTEMPTS} attempts under contention")]
    Contention { site: SiteName },
    #[error(
        "version {version} of site {site} is recorded, but moving the root failed ({source}); it goes live with the next commit"
    )]
    RootNotAdvanced {
        site: SiteName,
        version: u64,
        #[source]
        source: Box<SiteError>,
    },
}

impl From<StoreError> for SiteError {
    fn from(error: StoreError) -> Self {
        Self::Record(error.into())
    }
}

/// Versions and roots of every site in one store.
#[derive(Debug, Clone)]
pub struct Sites {
    store: Arc<dyn ObjectStore>,
    trees: Trees,
    journal: Journal,
}

impl Sites {
    pub fn new(store: Arc<dyn ObjectStore>, trees: Trees) -> Self {
        Self {
            journal: Journal::new(Arc::clone(&store)),
            store,
            trees,
        }
    }

    /// The journal every commit appends to.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The live version's pointer and its tag (for conditional polling), or
    /// `None` for a site never published.
    pub async fn root(&self, site: &SiteName) -> Result<Option<(Root, ETag)>, SiteError> {
        Ok(record::read(self.store.as_ref(), &keys::site_root(site)).await?)
    }

    /// The root pointer unless it still has tag `known` (`Ok(None)`): what
    /// a poller calls, so an unchanged root costs no transfer.
    pub async fn root_if_changed(
        &self,
        site: &SiteName,
        known: &ETag,
    ) -> Result<Option<Option<(Root, ETag)>>, SiteError> {
        Ok(record::read_if_changed(self.store.as_ref(), &keys::site_root(site), known).await?)
    }

    pub async fn version(&self, site: &SiteName, n: u64) -> Result<Version, SiteError> {
        record::read(self.store.as_ref(), &keys::site_version(site, n))
            .await?
            .map(|(version, _)| version)
            .ok_or_else(|| SiteError::UnknownVersion { site: site.clone(), n })
    }

    /// Makes `commit.tree` the site's next version and moves the root to it.
    pub async fn commit(&self, site: &SiteName, commit: Commit) -> Result<Version, SiteError> {
        self.commit_version(site, commit, VersionKind::Publish, None).await
    }

    /// Commits a new version whose tree is version `to`'s.
    pub async fn rollback(&self, site: &SiteName, to: u64, expected_parent: Option<u64>) -> Result<Version, SiteError> {
        let target = self.version(site, to).await?;
        let commit = Commit {
            tree: target.tree,
            message: format!("roll back to version {to}"),
            expected_parent,
        };
        self.commit_version(site, commit, VersionKind::Rollback, Some(to)).await
    }

    async fn commit_version(
        &self,
        site: &SiteName,
        commit: Commit,
        kind: VersionKind,
        restores: Option<u64>,
    ) -> Result<Version, SiteError> {
        if commit.message.len() > MAX_MESSAGE_BYTES {
            return Err(SiteError::MessageTooLong);
        }
        self.trees
            .node(&commit.tree)
            .await
            .map_err(|source| SiteError::MissingTree {
                tree: commit.tree,
                source,
            })?;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let current = self.root(site).await?;
            let parent = current.as_ref().map_or(0, |(root, _)| root.version);
            if let Some(expected) = commit.expected_parent
                && expected != parent
            {
                return Err(SiteError::Conflict {
                    site: site.clone(),
                    expected,
                    current: parent,
                });
            }
            let version = Version {
                n: parent + 1,
                tree: commit.tree,
                parent: (parent > 0).then_some(parent),
                created_at: OffsetDateTime::now_utc(),
                message: commit.message.clone(),
                kind,
                restores,
                commit_id: hex::encode(rand::random::<[u8; 16]>()),
            };
            let current_tag = current.map(|(_, etag)| etag);
            let key = keys::site_version(site, version.n);
            let created = match self.store.put_if_absent(&key, record::encode(&version)).await {
                Ok(_) => true,
                // A retried write whose first attempt landed reads as a lost race.
                Err(error) if error.is_precondition_failed() => {
                    self.version(site, version.n).await?.commit_id == version.commit_id
                }
                Err(error) => return Err(error.into()),
            };
            if created {
                self.advance_root(site, &version, current_tag.as_ref())
                    .await
                    .map_err(|source| SiteError::RootNotAdvanced {
                        site: site.clone(),
                        version: version.n,
                        source: Box::new(source),
                    })?;
                tracing::info!(%site, version = version.n, tree = %version.tree, "committed");
                self.journal_commit(site, &version).await;
                return Ok(version);
            }
            // Someone else owns version n; make sure the root reaches it (its
            // committer may have died), then try n + 1.
            let theirs = self.version(site, version.n).await?;
            self.advance_root(site, &theirs, current_tag.as_ref()).await?;
        }
        Err(SiteError::Contention { site: site.clone() })
    }

    /// Tells edges following the journal that `version` is live. The
    /// version is live whether or not this works; edges that miss it learn
    /// of it from their per-site safety net.
    async fn journal_commit(&self, site: &SiteName, version: &Version) {
        let entry = JournalEntry {
            site: site.clone(),
            version: version.n,
            tree: version.tree,
        };
        if let Err(error) = self.journal.append(&entry).await {
            tracing::warn!(%site, version = version.n, %error, "version is live, but not journaled; other edges see it within their safety net");
        }
    }

    /// Swaps the root from `version.n - 1` (tagged `from`) to `version`. Losing
    /// the swap is fine: the root only moves forward, so whoever won has
    /// already moved it to `version` or past it.
    async fn advance_root(&self, site: &SiteName, version: &Version, from: Option<&ETag>) -> Result<(), SiteError> {
        let key = keys::site_root(site);
        let bytes = record::encode(&Root::from(version));
        let swapped = match from {
            Some(etag) => self.store.put_if_match(&key, bytes, etag).await,
            None => self.store.put_if_absent(&key, bytes).await,
        };
        match swapped {
            Ok(_) => Ok(()),
            Err(error) if error.is_precondition_failed() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Up to `limit` versions older than `before` (default: from the
    /// current one), newest first.
    pub async fn versions(&self, site: &SiteName, before: Option<u64>, limit: usize) -> Result<VersionPage, SiteError> {
        let Some((root, _)) = self.root(site).await? else {
            return Err(SiteError::NoVersions { site: site.clone() });
        };
        let newest = before.map_or(root.version, |before| before.saturating_sub(1).min(root.version));
        let oldest = newest.saturating_sub(limit.max(1) as u64 - 1).max(1);
        if newest == 0 {
            return Ok(VersionPage {
                live: root.version,
                versions: Vec::new(),
                next_before: None,
            });
        }
        let reads = (oldest..=newest)
            .rev()
            .map(|n| async move { record::read::<Version>(self.store.as_ref(), &keys::site_version(site, n)).await });
        let versions = try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .map(|(version, _)| version)
            .collect();
        Ok(VersionPage {
            live: root.version,
            versions,
            next_before: (oldest > 1).then_some(oldest),
        })
    }
}
