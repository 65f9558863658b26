//! Storage node high availability: each site has a primary that orders its
//! writes and a backup in another region that holds a durable copy. etcd
//! (through [`grove_directory`]) holds who is which, the node leases and
//! the site epoch; this module is what a node does with them.
//!
//! - A write is acknowledged once the in-sync backup made it durable
//!   (`primary.rs`); readers of the primary see only that much, so no
//!   failover can take back something seen.
//! - The backup pulls the primary's committed history (`backup.rs`); each
//!   pull acknowledges what the previous ones brought.
//! - When a primary's lease lapses, its in-sync backup takes the site over
//!   by compare-and-swap on the epoch (`failover.rs`). The old primary
//!   learns it at its next step that touches etcd or the backup, and cuts
//!   the tail nobody acknowledged before it follows the new primary.
//!
//! Safety rests on etcd's compare-and-swap and on acknowledgements, never
//! on clocks agreeing; only how soon a failover happens depends on time.

mod backup;
mod failover;
mod primary;
mod wire;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use grove_core::timestamp::Timestamp;
use grove_directory::{Etcd, EtcdSettings, Lease, Mirror, NodeInfo, Placed, SiteEpoch, rules};

use crate::api::NodeFailure;
use crate::log::Log;
use primary::Primaries;
pub(crate) use wire::PULL_ROUTE;
use wire::{PullReply, PullRequest};

/// How a node takes part in failover.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    pub etcd: EtcdSettings,
    /// `host:port` other nodes and proxies reach this node's API at.
    pub advertise: String,
    pub region: String,
    /// Shared by the nodes: replication calls carry it.
    pub peer_secret: String,
    /// How long a write waits for the backup before the primary drops it
    /// from the in-sync set and acknowledges alone.
    pub ack_timeout: Duration,
    /// A backup answers reads only if it heard from the primary this
    /// recently; otherwise it redirects them to the primary.
    pub freshness: Duration,
    /// How long a read with `after` waits on a backup for that write to
    /// arrive before it is redirected to the primary.
    pub read_wait: Duration,
}

impl ReplicaSettings {
    pub fn new(etcd: EtcdSettings, advertise: String, region: String, peer_secret: String) -> Self {
        Self {
            etcd,
            advertise,
            region,
            peer_secret,
            ack_timeout: Duration::from_secs(1),
            freshness: Duration::from_secs(2),
            read_wait: Duration::from_secs(2),
        }
    }
}

/// Counters for the node's metrics.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    pub failovers: AtomicU64,
    pub backups_dropped: AtomicU64,
    pub backups_joined: AtomicU64,
}

/// This node's part in failover.
pub struct Replica {
    name: String,
    settings: ReplicaSettings,
    log: Arc<Log>,
    etcd: Etcd,
    mirror: Mirror,
    lease: Lease,
    primaries: Primaries,
    /// Held while pulled operations are applied, and while a site is
    /// taken over, so nothing is adopted for a site after its takeover.
    adopting: tokio::sync::Mutex<()>,
    /// Held across every change of a site's in-sync set this node makes
    /// as primary (a backup joining, a backup dropped) and the read bound
    /// that goes with it, so two of them never interleave.
    transitions: tokio::sync::Mutex<()>,
    /// When each site's primary last shipped it to this node.
    heard_from: Mutex<std::collections::HashMap<String, Instant>>,
    started: Instant,
    /// Sites this process was primary of: their tail past what the new
    /// primary adopted is cut before this node follows it.
    was_primary: Mutex<HashSet<String>>,
    stats: ReplicaStats,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Replica {
    /// Joins the directory as `name`: registers on a lease, follows the
    /// directory, and starts pulling for the sites this node backs up and
    /// watching for primaries to take over from.
    pub async fn start(
        name: String,
        settings: ReplicaSettings,
        log: Arc<Log>,
    ) -> Result<Arc<Self>, grove_directory::DirectoryError> {
        let etcd = Etcd::connect(settings.etcd.clone()).await?;
        let mirror = Mirror::follow(etcd.clone()).await?;
        let info = NodeInfo {
            address: settings.advertise.clone(),
            region: settings.region.clone(),
        };
        let lease = Lease::register(etcd.clone(), name.clone(), info).await?;
        let replica = Arc::new(Self {
            name,
            settings,
            log,
            etcd,
            mirror,
            lease,
            primaries: Primaries::default(),
            adopting: tokio::sync::Mutex::new(()),
            transitions: tokio::sync::Mutex::new(()),
            heard_from: Mutex::default(),
            started: Instant::now(),
            was_primary: Mutex::default(),
            stats: ReplicaStats::default(),
            tasks: Mutex::default(),
        });
        // Sites the directory says are someone else's: this node may have
        // been their primary before a crash. Sites it is primary of with a
        // backup in sync: what the backup holds is not known yet, so
        // readers see nothing new until it says.
        let snapshot = replica.mirror.snapshot();
        for (site, placed) in &snapshot.sites {
            if placed.record.primary != replica.name && !placed.record.in_sync.contains(&replica.name) {
                replica.mark_was_primary(site);
            }
            if placed.record.primary == replica.name && rules::needs_backup(&placed.record) {
                replica.log.limit_visibility(site, Timestamp::ZERO);
            }
        }
        replica.reconcile().await;
        let tasks = vec![
            tokio::spawn(failover::watch(Arc::downgrade(&replica))),
            tokio::spawn(backup::supervise(Arc::downgrade(&replica))),
        ];
        replica
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(tasks);
        Ok(replica)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> &ReplicaStats {
        &self.stats
    }

    /// The site's record as this node knows it.
    pub fn placed(&self, site: &str) -> Option<Placed> {
        self.mirror.snapshot().sites.get(site).cloned()
    }

    fn address_of(&self, node: &str) -> Option<String> {
        self.mirror.snapshot().nodes.get(node).map(|info| info.address.clone())
    }

    fn mark_was_primary(&self, site: &str) {
        self.was_primary
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(site.to_owned());
    }

    /// Before a write: the site's record, created with this node as
    /// primary if the site has none; a redirect if another node is primary.
    pub(crate) async fn gate_write(&self, site: &str, path_and_query: &str) -> Result<Placed, NodeFailure> {
        let placed = match self.placed(site) {
            Some(placed) => placed,
            None => self.place(site).await?,
        };
        if placed.record.primary != self.name {
            return Err(self.redirect(&placed, path_and_query));
        }
        Ok(placed)
    }

    /// Creates the site's record with this node as primary and a backup
    /// in another region (or takes the one another node created first).
    async fn place(&self, site: &str) -> Result<Placed, NodeFailure> {
        let live = self.etcd.nodes().await.map_err(directory_down)?;
        let live = live.iter().map(|(name, info)| (name.as_str(), info.region.as_str()));
        let backup = rules::choose_backup(site, &self.name, &self.settings.region, live);
        let record = rules::first_record(&self.name, backup.as_deref());
        let placed = match self.etcd.create_site(site, &record).await.map_err(directory_down)? {
            Ok(placed) => {
                tracing::info!(site, primary = %self.name, backup = ?backup, epoch = %placed.epoch, "site placed");
                placed
            }
            Err(existing) => existing,
        };
        self.mirror.observe(site, placed.clone());
        Ok(placed)
    }

    /// A reply sending the call to the site's primary.
    fn redirect(&self, placed: &Placed, path_and_query: &str) -> NodeFailure {
        let primary = &placed.record.primary;
        let Some(address) = self.address_of(primary) else {
            return NodeFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_primary",
                format!(
                    "the site's primary {primary} is not reachable now (epoch {}); retry shortly",
                    placed.epoch
                ),
            );
        };
        let location = format!("http://{address}{path_and_query}");
        let mut failure = NodeFailure::new(
            StatusCode::TEMPORARY_REDIRECT,
            "not_primary",
            format!("{primary} is the site's primary (epoch {}): {location}", placed.epoch),
        );
        failure.0.body.location = Some(location);
        failure.0.body.epoch = Some(placed.epoch.0);
        failure
    }

    /// After a write committed here at `ts`: returns once it may be
    /// acknowledged (the in-sync backup holds it, or the backup was
    /// dropped from the in-sync set), or an error if this node lost the
    /// site meanwhile. The write then stays unseen and is cut when this
    /// node follows the new primary; the client retries there with the
    /// same idempotency key.
    pub(crate) async fn acknowledge(&self, site: &str, ts: Timestamp, path_and_query: &str) -> Result<(), NodeFailure> {
        let mut progress = self.primaries.progress(site);
        let mut directory = self.mirror.changes();
        let mut deadline = tokio::time::Instant::now() + self.settings.ack_timeout;
        loop {
            let Some(placed) = self.placed(site) else {
                return Err(lost(site));
            };
            if placed.record.primary != self.name {
                return Err(self.redirect(&placed, path_and_query));
            }
            let current = *progress.borrow_and_update();
            if primary::acknowledged(&placed, &current, ts) {
                return Ok(());
            }
            tokio::select! {
                _ = progress.changed() => {}
                _ = directory.changed() => {}
                () = tokio::time::sleep_until(deadline) => {
                    self.give_up_on_backup(site).await?;
                    deadline = tokio::time::Instant::now() + self.settings.ack_timeout;
                }
            }
        }
    }

    /// The backup did not acknowledge in time: stop waiting for it, in
    /// etcd first if it is in the in-sync set.
    async fn give_up_on_backup(&self, site: &str) -> Result<(), NodeFailure> {
        let _transition = self.transitions.lock().await;
        let Some(placed) = self.placed(site).filter(|placed| placed.record.primary == self.name) else {
            return Ok(());
        };
        if rules::needs_backup(&placed.record) {
            let record = rules::without_backup(&placed.record);
            match self
                .etcd
                .swap_site(site, placed.epoch, &record)
                .await
                .map_err(unacknowledged)?
            {
                Ok(next) => {
                    tracing::warn!(site, backup = ?placed.record.backup, epoch = %next.epoch, "backup dropped from the in-sync set: it did not acknowledge in time");
                    self.stats.backups_dropped.fetch_add(1, Ordering::Relaxed);
                    self.mirror.observe(site, next);
                }
                Err(now) => {
                    self.mirror.observe(site, now);
                    return Ok(());
                }
            }
        }
        self.primaries
            .update(site, |progress| progress.joining_from.take().is_some());
        self.log.lift_visibility(site);
        Ok(())
    }

    /// Raises what readers of a site this node is primary of may see to
    /// what its backup acknowledged, or shows everything when no backup
    /// is waited for. Never lowers a bound: only a joining backup (in
    /// `take_ack`) and stepping down do, under `transitions`.
    fn refresh_visibility(&self, site: &str) {
        let Some(placed) = self.placed(site).filter(|placed| placed.record.primary == self.name) else {
            return;
        };
        let Ok(_transition) = self.transitions.try_lock() else {
            // A transition is under way; it sets the bound itself.
            return;
        };
        let progress = self.primaries.current(site);
        if progress.joining_from.is_some() || rules::needs_backup(&placed.record) {
            self.log.raise_visibility(site, progress.acked);
        } else {
            self.log.lift_visibility(site);
        }
    }

    /// Before a read: a backup answers if it heard from the primary
    /// recently and holds `after`; a primary answers while its lease is
    /// certainly held. Otherwise the read is redirected.
    pub(crate) async fn gate_read(
        &self,
        site: &str,
        after: Timestamp,
        path_and_query: &str,
    ) -> Result<(), NodeFailure> {
        let Some(placed) = self.placed(site) else {
            return Ok(());
        };
        if placed.record.primary == self.name {
            if self.lease.held() {
                return Ok(());
            }
            return Err(NodeFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "lease_lost",
                "this node's lease lapsed; it answers again once it has renewed it",
            ));
        }
        let heard = self
            .heard_from
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(site)
            .copied();
        let stale = placed.record.backup.as_deref() != Some(self.name.as_str())
            || heard.is_none_or(|at| at.elapsed() > self.settings.freshness)
            || self.log.site_latest(site)? < placed.record.adopted;
        if stale {
            return Err(self.redirect(&placed, path_and_query));
        }
        let deadline = tokio::time::Instant::now() + self.settings.read_wait;
        let mut commits = self.log.commits();
        while self.log.site_latest(site)? < after {
            if tokio::time::timeout_at(deadline, commits.changed()).await.is_err() {
                return Err(self.redirect(&placed, path_and_query));
            }
        }
        Ok(())
    }

    /// Answers a backup's pull (see `wire.rs`).
    pub(crate) async fn serve_pull(&self, request: PullRequest) -> Result<PullReply, NodeFailure> {
        const MOST_OPS: usize = 1024;
        let mut commits = self.log.commits();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(request.wait_ms.min(5_000));
        let mut reply = PullReply::default();
        for (site, want) in &request.sites {
            let Some(placed) = self.placed(site) else {
                reply.refused.insert(site.clone(), "no record".to_owned());
                continue;
            };
            let follows = placed.record.primary == self.name
                && placed.record.backup.as_deref() == Some(request.node.as_str())
                && placed.epoch == SiteEpoch(want.epoch);
            if !follows {
                reply.refused.insert(
                    site.clone(),
                    format!("epoch {} has primary {}", placed.epoch, placed.record.primary),
                );
                continue;
            }
            if want.after > self.log.site_latest(site)? {
                // Its history is not a prefix of this one's: a tail of its
                // own it has not cut. Its `after` acknowledges nothing.
                reply.refused.insert(site.clone(), DIVERGED.to_owned());
                continue;
            }
            self.take_ack(site, &placed, want.after).await?;
        }
        loop {
            commits.borrow_and_update();
            for (site, want) in &request.sites {
                if reply.refused.contains_key(site) {
                    continue;
                }
                let ops = self.log.ops_after(site, want.after, MOST_OPS)?;
                if !ops.is_empty() {
                    reply.ops.insert(site.clone(), ops);
                }
            }
            if !reply.ops.is_empty() || tokio::time::timeout_at(deadline, commits.changed()).await.is_err() {
                return Ok(reply);
            }
        }
    }

    /// Records that the backup holds the site up to `after` (shown to
    /// readers before the writes waiting on it are answered); starts its
    /// joining once it caught up, and takes it into the in-sync set once
    /// it holds everything acknowledged without it.
    async fn take_ack(&self, site: &str, placed: &Placed, after: Timestamp) -> Result<(), NodeFailure> {
        self.log.raise_visibility(site, after);
        self.primaries.update(site, |progress| {
            progress.heard = Some(Instant::now());
            progress.acked = progress.acked.max(after);
            true
        });
        if rules::needs_backup(&placed.record) {
            return Ok(());
        }
        let _transition = self.transitions.lock().await;
        let Some(placed) = self
            .placed(site)
            .filter(|now| now.epoch == placed.epoch && now.record.primary == self.name)
        else {
            return Ok(());
        };
        match self.primaries.current(site).joining_from {
            None if after >= self.log.site_latest(site)? => {
                // Caught up. Writes wait for the backup from before `from`
                // is read, so none after it is acknowledged alone.
                self.primaries.update(site, |progress| {
                    progress.joining_from = Some(Timestamp::from_u64(u64::MAX));
                    true
                });
                let from = self.log.site_latest(site)?;
                self.primaries.update(site, |progress| {
                    progress.joining_from = Some(from);
                    true
                });
                self.log.limit_visibility(site, from.max(after));
            }
            Some(from) if after >= from => {
                let record = rules::with_backup(&placed.record);
                match self
                    .etcd
                    .swap_site(site, placed.epoch, &record)
                    .await
                    .map_err(directory_down)?
                {
                    Ok(next) => {
                        tracing::info!(site, backup = ?record.backup, epoch = %next.epoch, "backup in sync");
                        self.stats.backups_joined.fetch_add(1, Ordering::Relaxed);
                        self.mirror.observe(site, next);
                    }
                    Err(now) => self.mirror.observe(site, now),
                }
                self.primaries
                    .update(site, |progress| progress.joining_from.take().is_some());
            }
            _ => {}
        }
        Ok(())
    }

    /// A site placed while no other node was live gets a backup once one
    /// is (not in sync: it joins once caught up).
    async fn find_backup(&self, site: &str, placed: &Placed, snapshot: &grove_directory::Snapshot) {
        if placed.record.backup.is_some() {
            return;
        }
        let live = snapshot
            .nodes
            .iter()
            .map(|(name, info)| (name.as_str(), info.region.as_str()));
        let Some(backup) = rules::choose_backup(site, &self.name, &self.settings.region, live) else {
            return;
        };
        let _transition = self.transitions.lock().await;
        let record = rules::with_backup_candidate(&placed.record, &backup);
        match self.etcd.swap_site(site, placed.epoch, &record).await {
            Ok(Ok(next)) => {
                tracing::info!(site, backup, epoch = %next.epoch, "site given a backup");
                self.mirror.observe(site, next);
            }
            Ok(Err(now)) => self.mirror.observe(site, now),
            Err(error) => tracing::warn!(site, %error, "giving the site a backup failed; trying again"),
        }
    }

    /// A site whose in-sync backup has not pulled for twice the
    /// acknowledgement timeout (no write waiting noticed it) is dropped
    /// from the in-sync set, so its readers are not held at the last
    /// acknowledgement for as long as the backup is away.
    async fn check_backup_heard(&self, site: &str, placed: &Placed) {
        if !rules::needs_backup(&placed.record) {
            return;
        }
        let heard = self.primaries.current(site).heard.unwrap_or(self.started);
        if heard.elapsed() > self.settings.ack_timeout * 2
            && let Err(failure) = self.give_up_on_backup(site).await
        {
            tracing::warn!(site, error = %failure.0, "dropping a silent backup failed");
        }
    }

    /// Checks a replication call's shared secret.
    pub(crate) fn is_peer(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|secret| {
            let expected = self.settings.peer_secret.as_bytes();
            secret.len() == expected.len()
                && secret
                    .bytes()
                    .zip(expected)
                    .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                    == 0
        })
    }

    /// Whether this node's lease is certainly held now.
    pub fn lease_held(&self) -> bool {
        self.lease.held()
    }

    /// The sites this node is primary or backup of, for metrics.
    pub fn sites(&self) -> Vec<SiteRole> {
        let snapshot = self.mirror.snapshot();
        let mut rows = Vec::new();
        for (site, placed) in &snapshot.sites {
            let primary = placed.record.primary == self.name;
            if !primary && placed.record.backup.as_deref() != Some(self.name.as_str()) {
                continue;
            }
            let lag_ms = if primary && placed.record.backup.is_some() {
                let latest = self.log.site_latest(site).unwrap_or_default();
                let acked = self.primaries.current(site).acked;
                latest.physical_ms().saturating_sub(acked.physical_ms())
            } else {
                0
            };
            rows.push(SiteRole {
                site: site.clone(),
                epoch: placed.epoch.0,
                role: if primary { "primary" } else { "backup" },
                in_sync: placed.record.in_sync.len(),
                lag_ms,
            });
        }
        rows.sort_by(|a, b| a.site.cmp(&b.site));
        rows
    }
}

/// A site this node serves, as metrics show it.
#[derive(Debug, Clone)]
pub struct SiteRole {
    pub site: String,
    pub epoch: i64,
    pub role: &'static str,
    pub in_sync: usize,
    /// On a primary with a backup: how far the backup's acknowledgement
    /// is behind the site's latest write, in milliseconds.
    pub lag_ms: u64,
}

/// Why a primary refuses a backup's pull of a site whose history runs past
/// its own.
pub(crate) const DIVERGED: &str = "diverged: the history runs past the primary's";

/// The directory failed after a write committed here: it is not
/// acknowledged (and stays unseen unless this node keeps the site).
fn unacknowledged(error: grove_directory::DirectoryError) -> NodeFailure {
    NodeFailure::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "directory_unavailable",
        format!(
            "the directory (etcd) is unreachable: {error}; the write is not acknowledged; retry it with the same Idempotency-Key"
        ),
    )
}

fn directory_down(error: grove_directory::DirectoryError) -> NodeFailure {
    NodeFailure::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "directory_unavailable",
        format!("the directory (etcd) is unreachable: {error}; nothing was changed"),
    )
}

fn lost(site: &str) -> NodeFailure {
    NodeFailure::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_primary",
        format!("site {site} has no record in the directory; retry shortly"),
    )
}
