//! CDN purge on publish.
//!
//! Every stable-URL response carries cache tags (see [`crate::semantics`]).
//! When a version is committed, the publish API queues its purge in the
//! store ([`queue`]); a background sender ([`worker`]) works out the tags
//! from the tree diff ([`plan`]), batches them, keeps within the CDN's rate
//! limit ([`bucket`]) and sends them ([`purger`]), retrying what fails and
//! dead-lettering, visibly, what keeps failing.

mod bucket;
mod plan;
mod purger;
mod queue;
mod worker;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use grove_core::SiteName;
use grove_objects::site::Sites;
use grove_objects::store::ObjectStore;
use tokio::sync::Notify;

pub use queue::{QueueError, read_status};
pub use worker::PurgeWorker;

use crate::config::{CdnConfig, Config, PurgeQueueConfig};
use purger::{Flavor, HttpPurger, Purger, secret_from_env};
use queue::PurgeQueue;
use secrecy::SecretString;

/// How the publish API reaches the sender of the same process.
#[derive(Debug, Default)]
struct Signals {
    /// A purge was queued.
    wake: Notify,
    /// Queueing failed after a commit: the sender must catch up from the
    /// cursors.
    catch_up: AtomicBool,
}

/// The CDN purging configured for this host, checked at start-up.
#[derive(Debug, Clone)]
pub struct PurgeSetup {
    /// Names the queue (and its rate limit) shared by the account.
    account: String,
    url: String,
    token: Option<SecretString>,
    flavor: Flavor,
    settings: PurgeQueueConfig,
    signals: Arc<Signals>,
}

impl PurgeSetup {
    /// `None` when no CDN is configured. Fails when the token's
    /// environment variable is missing.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let (account, url, token, flavor, settings) = match &config.cdn {
            None => return Ok(None),
            Some(CdnConfig::Cloudflare(cloudflare)) => (
                format!("cloudflare:{}", cloudflare.zone_id),
                HttpPurger::cloudflare_url(&cloudflare.api_base, &cloudflare.zone_id),
                Some(secret_from_env(
                    &cloudflare.api_token_env,
                    "cdn.cloudflare.api_token_env",
                )?),
                Flavor::Cloudflare,
                cloudflare.queue.clone(),
            ),
            Some(CdnConfig::Webhook(webhook)) => (
                format!("webhook:{}", webhook.url),
                webhook.url.clone(),
                webhook
                    .token_env
                    .as_deref()
                    .map(|name| secret_from_env(name, "cdn.webhook.token_env"))
                    .transpose()?,
                Flavor::Webhook,
                webhook.queue.clone(),
            ),
        };
        Ok(Some(Self {
            account: settings.account.clone().unwrap_or(account),
            url,
            token,
            flavor,
            settings,
            signals: Arc::default(),
        }))
    }

    /// The publish API's side, on the serving runtime's store.
    pub fn outbox(&self, store: Arc<dyn ObjectStore>, sites: Sites) -> Outbox {
        Outbox {
            queue: PurgeQueue::new(store, sites, &self.account),
            signals: Arc::clone(&self.signals),
        }
    }

    /// The sender, to run as a background service. `holder` names this
    /// proxy in the account's sending lease.
    pub fn worker(&self, config: Config, holder: String) -> PurgeWorker {
        PurgeWorker {
            setup: self.clone(),
            config,
            holder,
        }
    }

    fn purger(&self) -> anyhow::Result<Box<dyn Purger>> {
        let timeout = Duration::from_secs(self.settings.request_timeout_secs.max(1));
        Ok(Box::new(HttpPurger::new(
            self.url.clone(),
            self.token.clone(),
            self.flavor,
            timeout,
        )?))
    }
}

/// Queues purges: for commits made through the publish API, and for
/// database-backed pages re-rendered here.
#[derive(Debug, Clone)]
pub struct Outbox {
    queue: PurgeQueue,
    signals: Arc<Signals>,
}

impl Outbox {
    /// Before a commit: makes sure the site is tracked, so that a crash right
    /// after the commit is caught up at the next start.
    pub async fn before_commit(&self, site: &SiteName) -> Result<(), QueueError> {
        self.queue.track(site).await
    }

    /// After version `n` went live: queues its purge and wakes the sender.
    /// A failure here is caught up by the sender, so the commit stands.
    pub async fn after_commit(&self, site: &SiteName, n: u64) {
        if let Err(error) = self.queue.enqueue_through(site, n).await {
            tracing::warn!(%site, version = n, %error, "queueing the CDN purge failed; the sender will catch up");
            self.signals.catch_up.store(true, Ordering::Release);
        }
        self.signals.wake.notify_one();
    }
}

impl Outbox {
    /// A database-backed page was re-rendered with new bytes: its cache
    /// `tag` is purged, once for every render until the purge is sent.
    pub async fn page_rendered(&self, site: &SiteName, tag: &str) {
        match self.queue.mark_page(site, tag, crate::auth::now_ms()).await {
            Ok(()) => self.signals.wake.notify_one(),
            // Kept at the CDN for a short time only, the page is stale
            // there for at most that long.
            Err(error) => tracing::warn!(%site, tag, %error, "queueing the CDN purge of a re-rendered page failed"),
        }
    }
}

/// This proxy's stable name as a purge lease holder: kept in the state
/// directory, so a restarted proxy takes its own lease back at once.
pub fn proxy_id(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("proxy-id");
    // Its name before storage nodes existed.
    let former = state_dir.join("node-id");
    if !path.exists() && former.exists() {
        std::fs::rename(&former, &path)
            .with_context(|| format!("renaming {} to {}", former.display(), path.display()))?;
    }
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_owned());
    }
    let id = grove_core::ContentHash::of(&rand::random::<[u8; 32]>()).to_hex()[..24].to_owned();
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}
