//! The backup's side: one pull loop per primary this node backs up, each
//! asking for every site it backs up there at once, so the cost is per
//! pair of nodes, not per site. Each pull's `after` is the acknowledgement
//! of what the previous pulls brought: it is sent only once that is
//! durable here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use grove_core::timestamp::Timestamp;
use grove_directory::{Placed, SiteEpoch, rules};

use super::Replica;
use super::wire::{PULL_ROUTE, PullReply, PullRequest, Want};
use crate::ops::Truncated;

/// How long a primary may hold a pull when it has nothing new.
const PULL_WAIT: Duration = Duration::from_millis(500);

/// Starts a pull loop for each primary this node backs up.
pub(super) async fn supervise(replica: Weak<Replica>) {
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let Some(strong) = replica.upgrade() else {
            running.values().for_each(tokio::task::JoinHandle::abort);
            return;
        };
        let mut changes = strong.mirror.changes();
        let snapshot = strong.mirror.snapshot();
        running.retain(|_, task| !task.is_finished());
        for placed in snapshot.sites.values() {
            let primary = &placed.record.primary;
            if placed.record.backup.as_deref() == Some(strong.name.as_str())
                && *primary != strong.name
                && !running.contains_key(primary)
            {
                running.insert(
                    primary.clone(),
                    tokio::spawn(pull_from(replica.clone(), primary.clone())),
                );
            }
        }
        drop(strong);
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Pulls from `primary` until this node backs up none of its sites.
async fn pull_from(replica: Weak<Replica>, primary: String) {
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(PULL_WAIT + Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the replication client");
            return;
        }
    };
    // The epoch each site's tail was last checked in.
    let mut prepared: HashMap<String, SiteEpoch> = HashMap::new();
    let mut failures = 0u32;
    loop {
        let Some(replica) = replica.upgrade() else { return };
        let snapshot = replica.mirror.snapshot();
        let sites: Vec<(&String, &Placed)> = snapshot
            .sites
            .iter()
            .filter(|(_, placed)| {
                placed.record.primary == primary && placed.record.backup.as_deref() == Some(replica.name.as_str())
            })
            .collect();
        if sites.is_empty() {
            return;
        }
        let Some(address) = snapshot.nodes.get(&primary).map(|info| info.address.clone()) else {
            drop(replica);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut wants = BTreeMap::new();
        for (site, placed) in sites {
            if prepared.get(site) != Some(&placed.epoch) {
                if let Err(error) = replica.prepare(site, placed).await {
                    tracing::error!(site, %error, "cannot follow the site's primary");
                    continue;
                }
                prepared.insert(site.clone(), placed.epoch);
            }
            match replica.log.site_latest(site) {
                Ok(after) => {
                    wants.insert(
                        site.clone(),
                        Want {
                            epoch: placed.epoch.0,
                            after,
                        },
                    );
                }
                Err(error) => tracing::error!(site, %error, "cannot read the site's history"),
            }
        }
        let request = PullRequest {
            node: replica.name.clone(),
            sites: wants,
            wait_ms: u64::try_from(PULL_WAIT.as_millis()).unwrap_or(u64::MAX),
        };
        let url = format!("http://{address}{PULL_ROUTE}");
        let secret = replica.settings.peer_secret.clone();
        let replica_weak = Arc::downgrade(&replica);
        drop(replica);
        let reply = async {
            client
                .post(&url)
                .bearer_auth(secret)
                .json(&request)
                .send()
                .await?
                .error_for_status()?
                .json::<PullReply>()
                .await
        }
        .await;
        let Some(replica) = replica_weak.upgrade() else { return };
        match reply {
            Ok(reply) => {
                failures = 0;
                for site in request.sites.keys().filter(|site| !reply.refused.contains_key(*site)) {
                    replica.heard(site);
                }
                for (site, why) in &reply.refused {
                    tracing::debug!(site, primary, why, "the primary refused to ship a site");
                    if why == super::DIVERGED {
                        // Its tail was never cut: mark it, and prepare again.
                        replica.mark_was_primary(site);
                        prepared.remove(site);
                    }
                }
                if let Err(error) = replica.adopt(&request, reply).await {
                    tracing::error!(primary, %error, "applying pulled operations failed");
                    drop(replica);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(50) {
                    tracing::warn!(primary, %error, failures, "pulling from the primary failed");
                }
                drop(replica);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Replica {
    fn heard(&self, site: &str) {
        self.heard_from
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(site.to_owned(), Instant::now());
    }

    /// Readies a site this node now backs up: if this node was its primary
    /// and is not in sync, it cuts the tail nobody acknowledged (past
    /// what the new primary adopted). Then it shows all it holds.
    async fn prepare(&self, site: &str, placed: &Placed) -> Result<(), crate::types::LogError> {
        // It may not have noticed yet that it stepped down.
        if self.primaries.forget(site) {
            self.mark_was_primary(site);
        }
        let in_sync = placed.record.in_sync.contains(&self.name);
        if !in_sync && self.is_marked_was_primary(site) {
            let _adopting = self.adopting.lock().await;
            let cut = rules::rejoin_point(&placed.record);
            if self.log.site_latest(site)? > cut {
                match self.log.truncate(site, cut).await? {
                    Truncated::Tail => {
                        tracing::warn!(site, %cut, "cut this node's unacknowledged tail of the site before following its new primary");
                    }
                    Truncated::Site => {
                        tracing::warn!(
                            site,
                            "the unacknowledged tail held a trim: the site is copied again from its primary"
                        );
                    }
                }
            }
        }
        // Under the lock `reconcile` limits the bound in, so it cannot put
        // back the limit of a tail already cut.
        let mut was_primary = self.was_primary.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        was_primary.remove(site);
        self.log.lift_visibility(site);
        Ok(())
    }

    /// Applies a pull's operations in one commit, for the sites this node
    /// still backs up from where the pull asked (a site taken over or cut
    /// meanwhile is left to the next pull).
    async fn adopt(&self, request: &PullRequest, reply: PullReply) -> Result<(), crate::types::LogError> {
        let _adopting = self.adopting.lock().await;
        let mut ops = Vec::new();
        for (site, site_ops) in reply.ops {
            let Some(want) = request.sites.get(&site) else { continue };
            let still = self.placed(&site).is_some_and(|placed| {
                placed.epoch.0 == want.epoch && placed.record.backup.as_deref() == Some(self.name.as_str())
            });
            if !still || self.log.site_latest(&site)? != want.after {
                continue;
            }
            ops.extend(
                site_ops
                    .into_iter()
                    .filter(|op| op.ts() > want.after || op.ts() == Timestamp::ZERO),
            );
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.log.adopt(ops).await
    }
}
