//! Following the directory: taking a site over when its primary's lease
//! lapsed (only as its in-sync backup), and stepping down when another
//! node took over a site this node was primary of.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use grove_directory::{Placed, rules};

use super::Replica;

/// Reconciles this node with the directory at every change, and every
/// 200 ms besides (a lease held again, a backup caught up).
pub(super) async fn watch(replica: Weak<Replica>) {
    let Some(mut changes) = replica.upgrade().map(|replica| replica.mirror.changes()) else {
        return;
    };
    loop {
        match replica.upgrade() {
            Some(replica) => replica.reconcile().await,
            None => return,
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

impl Replica {
    pub(super) async fn reconcile(&self) {
        let snapshot = self.mirror.snapshot();
        for (site, placed) in &snapshot.sites {
            if placed.record.primary == self.name {
                self.find_backup(site, placed, &snapshot).await;
                self.check_backup_heard(site, placed).await;
                self.refresh_visibility(site);
                continue;
            }
            if self.primaries.forget(site) {
                tracing::warn!(site, primary = %placed.record.primary, epoch = %placed.epoch, "another node took this site over; stepping down");
                self.mark_was_primary(site);
            }
            {
                // Until the tail is cut, show only what the new primary
                // adopted (under the lock `prepare` lifts the bound in).
                let was_primary = self.was_primary.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if was_primary.contains(site) {
                    self.log.limit_visibility(site, rules::rejoin_point(&placed.record));
                }
            }
            let primary_alive = snapshot.nodes.contains_key(&placed.record.primary);
            if rules::may_promote(&placed.record, &self.name, primary_alive) && self.lease.held() {
                self.promote(site, placed).await;
            }
        }
    }

    /// Takes `site` over from its lapsed primary, holding everything this
    /// node adopted of it.
    async fn promote(&self, site: &str, placed: &Placed) {
        let _adopting = self.adopting.lock().await;
        if self.placed(site).as_ref() != Some(placed) {
            return;
        }
        let adopted = match self.log.site_latest(site) {
            Ok(adopted) => adopted,
            Err(error) => {
                tracing::error!(site, %error, "cannot take the site over: its history is unreadable");
                return;
            }
        };
        let record = rules::promoted(&placed.record, adopted);
        match self.etcd.swap_site(site, placed.epoch, &record).await {
            Ok(Ok(next)) => {
                tracing::warn!(site, former = %placed.record.primary, epoch = %next.epoch, %adopted, "took the site over: its primary's lease lapsed");
                self.stats.failovers.fetch_add(1, Ordering::Relaxed);
                self.mirror.observe(site, next);
                self.log.lift_visibility(site);
            }
            Ok(Err(now)) => self.mirror.observe(site, now),
            Err(error) => tracing::warn!(site, %error, "taking the site over failed; trying again"),
        }
    }

    pub(super) fn is_marked_was_primary(&self, site: &str) -> bool {
        self.was_primary
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(site)
    }
}
