//! The journal of root changes: `journal/<seq>`, one create-only entry per
//! commit of any site, numbered from 1 without gaps.
//!
//! Edges sharing a bucket follow it to learn of every publish. Reading the
//! next entry about once a second costs each edge O(1) store requests,
//! where re-reading every site's root costs O(sites). Entries are written
//! after the root moved, so an entry never names a version that is not
//! live yet; a committer that dies between the two leaves no entry, and
//! readers' per-site safety net (a rare conditional read of the root)
//! covers that.
//!
//! Each entry is created with put-if-absent at the first free number, so
//! concurrent committers never overwrite each other and the entries form a
//! prefix `1..end`: a missing number is the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use grove_core::hash::ContentHash;
use grove_core::keys;
use grove_core::names::SiteName;
use serde::{Deserialize, Serialize};

use crate::record::{self, RecordError};
use crate::store::{ObjectStore, StoreError};

/// Attempts of one append before it gives up (each lost attempt means
/// another committer appended).
const MAX_APPEND_ATTEMPTS: usize = 64;
/// Lost attempts between searches for the end.
const SEARCH_EVERY: usize = 4;

/// One root change: `site` went live at `version`, whose tree is `tree`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub site: SiteName,
    pub version: u64,
    pub tree: ContentHash,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("the journal kept growing under other committers for {MAX_APPEND_ATTEMPTS} attempts")]
    Contended,
}

impl From<StoreError> for JournalError {
    fn from(error: StoreError) -> Self {
        Self::Record(error.into())
    }
}

/// The journal in one store, with a hint of where it ends.
#[derive(Debug, Clone)]
pub struct Journal {
    store: Arc<dyn ObjectStore>,
    /// A number at or below the journal's end, so appends and searches
    /// start near it (0: not known yet).
    end_hint: Arc<AtomicU64>,
}

impl Journal {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            end_hint: Arc::default(),
        }
    }

    /// Records a root change and returns its number.
    pub async fn append(&self, entry: &JournalEntry) -> Result<u64, JournalError> {
        let bytes = record::encode(entry);
        let mut seq = self.end().await?;
        for attempt in 1..=MAX_APPEND_ATTEMPTS {
            match self.store.put_if_absent(&keys::journal_entry(seq), bytes.clone()).await {
                Ok(_) => {
                    self.learned_end(seq + 1);
                    return Ok(seq);
                }
                // Taken by a concurrent committer: most often the next number
                // is free, so it is tried at once; every few losses, the end
                // is searched for, in case this one fell far behind. (A
                // retried write whose first attempt landed also reads as
                // taken; that leaves a duplicate entry, which readers ignore.)
                Err(error) if error.is_precondition_failed() => {
                    self.learned_end(seq + 1);
                    seq = if attempt.is_multiple_of(SEARCH_EVERY) {
                        self.end().await?
                    } else {
                        seq + 1
                    };
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(JournalError::Contended)
    }

    /// Entry `seq`, or `None` if it is not written yet.
    pub async fn read(&self, seq: u64) -> Result<Option<JournalEntry>, JournalError> {
        let entry = record::read(self.store.as_ref(), &keys::journal_entry(seq)).await?;
        if entry.is_some() {
            self.learned_end(seq + 1);
        }
        Ok(entry.map(|(entry, _)| entry))
    }

    /// The first number with no entry: where the next append goes, and
    /// where a reader that wants only new changes starts. Found from the
    /// hint by doubling steps, then halving, so it costs O(log gap)
    /// existence checks.
    pub async fn end(&self) -> Result<u64, JournalError> {
        // `present` has an entry (or is 0), `absent` has none.
        let mut present = self.end_hint.load(Ordering::Acquire).saturating_sub(1);
        let mut step = 1;
        let mut absent = loop {
            let probe = present + step;
            if self.exists(probe).await? {
                present = probe;
                step *= 2;
            } else {
                break probe;
            }
        };
        while absent - present > 1 {
            let middle = present + (absent - present) / 2;
            if self.exists(middle).await? {
                present = middle;
            } else {
                absent = middle;
            }
        }
        self.learned_end(absent);
        Ok(absent)
    }

    async fn exists(&self, seq: u64) -> Result<bool, JournalError> {
        match self.store.size(&keys::journal_entry(seq)).await {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    fn learned_end(&self, end: u64) {
        self.end_hint.fetch_max(end, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn entry(site: &str, version: u64) -> JournalEntry {
        JournalEntry {
            site: SiteName::parse(site).unwrap(),
            version,
            tree: ContentHash::of(site.as_bytes()),
        }
    }

    #[tokio::test]
    async fn appends_number_entries_from_one_without_gaps() {
        let journal = Journal::new(Arc::new(MemoryStore::default()));
        assert_eq!(journal.end().await.unwrap(), 1);
        for n in 1..=40 {
            assert_eq!(journal.append(&entry("blog", n)).await.unwrap(), n);
        }
        assert_eq!(journal.read(7).await.unwrap(), Some(entry("blog", 7)));
        assert_eq!(journal.read(41).await.unwrap(), None);
        assert_eq!(journal.end().await.unwrap(), 41);
    }

    #[tokio::test]
    async fn a_stale_writer_finds_the_end_and_a_reader_finds_it_from_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let (first, second) = (Journal::new(Arc::clone(&store)), Journal::new(Arc::clone(&store)));
        first.append(&entry("a", 1)).await.unwrap();
        for n in 0..100 {
            second.append(&entry("b", n)).await.unwrap();
        }
        // `first` still believes the end is 2.
        assert_eq!(first.append(&entry("a", 2)).await.unwrap(), 102);
        let fresh = Journal::new(store);
        assert_eq!(fresh.end().await.unwrap(), 103);
        assert_eq!(fresh.read(102).await.unwrap(), Some(entry("a", 2)));
    }

    #[tokio::test]
    async fn concurrent_appends_get_distinct_numbers() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let appends = (0..16).map(|n| {
            let journal = Journal::new(Arc::clone(&store));
            async move { journal.append(&entry("c", n)).await.unwrap() }
        });
        let mut numbers = futures::future::join_all(appends).await;
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=16).collect::<Vec<_>>());
    }
}
