//! Who may call: the bearer handle, its token checks, and the per-caller
//! limits. Limits are kept per authenticated token only, so requests with
//! random credentials, however many, leave no state behind.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, header};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use grove_core::keys::token_path;
use grove_core::names::SiteName;
use grove_core::token::{Handle, Right, TokenId, TokenRecord};
use grove_objects::token::Tokens;

use super::failure::NodeFailure;
use crate::types::check_path;

/// Admissions between two prunes of the rate limiter's idle callers.
const PRUNE_EVERY: u64 = 4096;

/// The bearer handle of a request.
pub fn bearer(headers: &HeaderMap) -> Result<Handle, NodeFailure> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| {
            NodeFailure::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "use Authorization: Bearer <handle>",
            )
        })?;
    Handle::parse(token.trim()).map_err(|error| NodeFailure(error.into()))
}

/// Checks tokens, then rate-limits the token that passed.
pub struct Authorizer {
    tokens: Tokens,
    limiter: DefaultKeyedRateLimiter<TokenId>,
    requests_per_second: u32,
    admitted: AtomicU64,
}

impl Authorizer {
    pub fn new(tokens: Tokens, requests_per_second: u32) -> Self {
        let rate = NonZeroU32::new(requests_per_second).unwrap_or(NonZeroU32::MIN);
        Self {
            tokens,
            limiter: RateLimiter::keyed(Quota::per_second(rate)),
            requests_per_second,
            admitted: AtomicU64::new(0),
        }
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Checks every `(data path, right)` of `site` with one load of the
    /// token and its grant chain, then counts the request against the
    /// token's rate. An empty `checks` only authenticates.
    pub async fn authorize(
        &self,
        handle: &Handle,
        site: &SiteName,
        checks: &[(&str, Right)],
    ) -> Result<TokenRecord, NodeFailure> {
        for (path, _) in checks {
            check_path(path)?;
        }
        let token_paths: Vec<String> = checks
            .iter()
            .map(|(path, _)| token_path::site_data(site, path))
            .collect();
        let token_checks: Vec<(&str, Right)> = token_paths
            .iter()
            .zip(checks)
            .map(|(path, (_, right))| (path.as_str(), *right))
            .collect();
        let record = self.tokens.check_all(handle, &token_checks).await?;
        self.admit(&record.id)?;
        Ok(record)
    }

    /// Checks that `handle` holds `right` on the whole site (every path).
    pub async fn authorize_site(
        &self,
        handle: &Handle,
        site: &SiteName,
        right: Right,
    ) -> Result<TokenRecord, NodeFailure> {
        let path = token_path::site(site);
        let record = self.tokens.check_all(handle, &[(path.as_str(), right)]).await?;
        self.admit(&record.id)?;
        Ok(record)
    }

    fn admit(&self, id: &TokenId) -> Result<(), NodeFailure> {
        if self.admitted.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(id).map_err(|_| {
            NodeFailure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {} requests a second", self.requests_per_second),
            )
        })
    }

    /// How many callers the rate limiter holds state for.
    pub fn tracked_callers(&self) -> usize {
        self.limiter.len()
    }
}

/// Open watches per token.
#[derive(Debug, Default, Clone)]
pub struct Watchers(Arc<Mutex<HashMap<TokenId, usize>>>);

impl Watchers {
    /// Takes one of `id`'s `max` watch slots, held until the slot drops.
    pub fn take(&self, id: TokenId, max: usize) -> Result<WatcherSlot, NodeFailure> {
        let mut open = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(id).or_insert(0);
        if *count >= max {
            return Err(NodeFailure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_watchers",
                format!("this handle already has {max} open watches"),
            ));
        }
        *count += 1;
        Ok(WatcherSlot {
            watchers: self.clone(),
            id,
        })
    }
}

/// One of a token's watch slots.
pub struct WatcherSlot {
    watchers: Watchers,
    id: TokenId,
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut open = self.watchers.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.id);
            }
        }
    }
}
