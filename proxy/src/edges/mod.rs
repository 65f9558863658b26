//! Many edges on one bucket: how a publish committed on one edge reaches
//! every other quickly, at a store cost that does not grow with the number
//! of sites.
//!
//! - Push ([`push`]): the committing edge tells its `[edges] peers` at
//!   once, with the shared secret, and they take the new root.
//! - Pull ([`follower`]): every edge reads the bucket's journal (one entry
//!   per commit, `journal/<seq>`) every `journal_poll_ms`, so a lost push
//!   costs at most that long. A push also wakes the reader, so entries a
//!   peer missed are caught up at once.
//! - Safety net ([`crate::roots`]): a site's root is read again when it is
//!   older than `root_refresh_ms`, within a budget of reads a second, for a
//!   committer that died between moving the root and journaling it.
//!
//! An edge never moves a site backwards ([`Roots::learn`]).

pub mod follower;
pub mod push;

use std::sync::Arc;

use grove_objects::journal::JournalEntry;
use tokio::sync::Notify;

use crate::roots::{Roots, Served};

/// What a journal entry or a push says is live.
fn served(entry: &JournalEntry) -> Served {
    Served {
        version: entry.version,
        tree: entry.tree,
    }
}

/// Takes a root change learned from a peer or the journal.
fn learn(roots: &Roots, entry: &JournalEntry) {
    if roots.learn(&entry.site, served(entry)) {
        tracing::debug!(site = %entry.site, version = entry.version, "learned a new root");
    }
}

/// Wakes the journal reader early: a peer said there is a new entry.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn now(&self) {
        self.0.notify_one();
    }

    async fn wait(&self) {
        self.0.notified().await;
    }
}
