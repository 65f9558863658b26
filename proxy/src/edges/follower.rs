//! The pull path: every edge reads the journal's next entry every
//! `journal_poll_ms` (one store request when nothing changed) and takes
//! each entry it finds, so it learns of every commit by any edge within
//! that bound, pushes or not.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use grove_objects::journal::Journal;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{Wake, learn};
use crate::metrics;
use crate::roots::Roots;

pub struct JournalFollower {
    journal: Journal,
    roots: Arc<Roots>,
    poll: Duration,
    wake: Wake,
}

impl JournalFollower {
    pub fn new(journal: Journal, roots: Arc<Roots>, poll: Duration, wake: Wake) -> Self {
        Self {
            journal,
            roots,
            poll,
            wake,
        }
    }

    /// Follows from the journal's end as it is now: roots changed before
    /// are read when their sites are first asked for.
    async fn follow(&self) {
        let mut next = loop {
            match self.journal.end().await {
                Ok(end) => break end,
                Err(error) => {
                    tracing::warn!(%error, "finding the end of the root journal failed; retrying");
                    self.pause().await;
                }
            }
        };
        tracing::info!(next, "following the root journal");
        let mut failing = false;
        loop {
            match self.journal.read(next).await {
                Ok(Some(entry)) => {
                    learn(&self.roots, &entry);
                    metrics::JOURNAL_ENTRIES.inc();
                    next += 1;
                    failing = false;
                    continue;
                }
                Ok(None) => failing = false,
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, next, "reading the root journal failed; serving the roots known");
                    }
                    failing = true;
                }
            }
            self.pause().await;
        }
    }

    async fn pause(&self) {
        tokio::select! {
            () = tokio::time::sleep(self.poll) => {}
            () = self.wake.wait() => {}
        }
    }
}

#[async_trait]
impl BackgroundService for JournalFollower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            () = self.follow() => {}
            _ = shutdown.changed() => {}
        }
    }
}
