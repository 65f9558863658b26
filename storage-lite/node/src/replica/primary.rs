//! The primary's side of a site: acknowledging a write only once the
//! in-sync backup has it, dropping an unreachable backup from the in-sync
//! set (in etcd, by compare-and-swap) before acknowledging alone, and
//! taking a caught-up backup back in.

use std::collections::HashMap;
use std::sync::Mutex;

use grove_core::timestamp::Timestamp;
use grove_directory::{Placed, rules};
use tokio::sync::watch;

/// What the primary knows of its backup's progress on one site.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Progress {
    /// When the backup last pulled.
    pub heard: Option<std::time::Instant>,
    /// The backup holds the site's history up to here, durably.
    pub acked: Timestamp,
    /// While the backup is joining: the site's latest write when it
    /// caught up. Writes after it wait for the backup, and once it holds
    /// this much it goes into the in-sync set.
    pub joining_from: Option<Timestamp>,
}

/// Every site this node is primary of, and its backup's progress.
#[derive(Default)]
pub(super) struct Primaries {
    sites: Mutex<HashMap<String, watch::Sender<Progress>>>,
}

impl Primaries {
    pub fn progress(&self, site: &str) -> watch::Receiver<Progress> {
        self.sender(site, |sender| sender.subscribe())
    }

    /// Applies `change` to the site's progress, waking whoever waits.
    pub fn update(&self, site: &str, change: impl FnOnce(&mut Progress) -> bool) {
        self.sender(site, |sender| {
            sender.send_if_modified(change);
        });
    }

    pub fn current(&self, site: &str) -> Progress {
        self.sender(site, |sender| *sender.borrow())
    }

    /// Forgets the site (this node is no longer its primary); true if
    /// it was known.
    pub fn forget(&self, site: &str) -> bool {
        self.sites
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(site)
            .is_some()
    }

    fn sender<T>(&self, site: &str, with: impl FnOnce(&watch::Sender<Progress>) -> T) -> T {
        let mut sites = self.sites.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sender = sites
            .entry(site.to_owned())
            .or_insert_with(|| watch::channel(Progress::default()).0);
        with(sender)
    }
}

/// Whether a write at `ts` may be acknowledged now.
pub(super) fn acknowledged(placed: &Placed, progress: &Progress, ts: Timestamp) -> bool {
    rules::may_acknowledge(&placed.record, progress.joining_from.is_some(), progress.acked >= ts)
}
