//! Capability tokens: `grant(path, until, rights) -> handle`, `revoke(handle)`.
//!
//! A handle is a random 256-bit secret, shown once. The store keeps only its
//! SHA-256 (`auth/tokens/<sha256>`), so a leaked bucket leaks no usable token,
//! and looking a handle up by its hash compares no secrets. A holder can only
//! grant what it holds: a sub-path of its own, rights it has (and `grant`
//! among them), an expiry no later than its own. Every check walks the chain
//! of grantors, so revoking or outliving a token disables everything granted
//! through it, at once.

use std::sync::Arc;

use grove_core::keys::{self, ObjectKey};
use grove_core::token::{ALL_RIGHTS, Handle, MalformedHandle, Right, TokenId, TokenRecord};
use time::OffsetDateTime;

use crate::record::{self, RecordError};
use crate::store::{ObjectStore, StoreError};

/// Grant chains longer than this are refused (and cannot be created).
const MAX_CHAIN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Malformed(#[from] MalformedHandle),
    #[error("token is unknown or revoked")]
    Unknown,
    #[error("token expired at {at}")]
    Expired { at: OffsetDateTime },
    #[error("token was granted by a token that is revoked or expired")]
    GrantorInvalid,
    #[error("token may not {right} {path:?}: it is limited to {allowed:?}")]
    Forbidden {
        right: Right,
        path: String,
        allowed: String,
    },
    #[error("invalid grant: {0}")]
    InvalidGrant(String),
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl TokenError {
    /// The HTTP status and stable `error` code every API answers this with
    /// (the publish API and the node API alike), so the two cannot drift.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            Self::Malformed(_) | Self::Unknown | Self::Expired { .. } | Self::GrantorInvalid => (401, "unauthorized"),
            Self::Forbidden { .. } => (403, "forbidden"),
            Self::InvalidGrant(_) => (422, "invalid_grant"),
            Self::Record(_) => (503, "store_unavailable"),
        }
    }
}

impl From<StoreError> for TokenError {
    fn from(error: StoreError) -> Self {
        Self::Record(error.into())
    }
}

/// Issues, checks and revokes tokens in one store.
#[derive(Debug, Clone)]
pub struct Tokens {
    store: Arc<dyn ObjectStore>,
}

impl Tokens {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Creates an operator token with every right on every path. Only the
    /// host's own bootstrap calls this; it is not reachable over any API.
    pub async fn issue_root(&self, until: OffsetDateTime) -> Result<Handle, TokenError> {
        let handle = Handle::generate();
        self.store_new(&handle, String::new(), ALL_RIGHTS.to_vec(), until, None)
            .await?;
        Ok(handle)
    }

    /// Makes `handle`, chosen by the operator (`GROVE_ADMIN_TOKEN`), an
    /// operator token, unless it already is one. Idempotent, so every host
    /// sharing the store can call it at start-up.
    pub async fn install_root(&self, handle: &Handle, until: OffsetDateTime) -> Result<(), TokenError> {
        if let Some(existing) = self.load(&handle.id()).await? {
            return if existing.granted_by.is_none() && existing.path.is_empty() {
                Ok(())
            } else {
                Err(TokenError::InvalidGrant(
                    "the operator token is already in use as a granted token".to_owned(),
                ))
            };
        }
        match self
            .store_new(handle, String::new(), ALL_RIGHTS.to_vec(), until, None)
            .await
        {
            Err(TokenError::Record(RecordError::Store(error))) if error.is_precondition_failed() => Ok(()),
            other => other,
        }
    }

    /// Creates the store's first operator token, once per store: the first
    /// host to start on an empty store gets `Some(handle)` to show the
    /// operator; every later call, from any host, gets `None`. Only the
    /// token's hash is kept.
    pub async fn bootstrap(&self, until: OffsetDateTime) -> Result<Option<Handle>, TokenError> {
        let marker = keys::bootstrap();
        if self.store.size(&marker).await.is_ok() {
            return Ok(None);
        }
        let handle = self.issue_root(until).await?;
        match self.store.put_if_absent(&marker, record::encode(&handle.id())).await {
            Ok(_) => Ok(Some(handle)),
            Err(error) => {
                // Another host bootstrapped first (or the marker write failed):
                // this token must not outlive the attempt.
                self.store.delete(&keys::token_record(&handle.id())).await?;
                if error.is_precondition_failed() {
                    Ok(None)
                } else {
                    Err(error.into())
                }
            }
        }
    }

    /// Grants `rights` on `path` until `until`, on the authority of `issuer`.
    pub async fn grant(
        &self,
        issuer: &Handle,
        path: &str,
        rights: &[Right],
        until: OffsetDateTime,
    ) -> Result<Handle, TokenError> {
        let now = OffsetDateTime::now_utc();
        if !path.is_empty() {
            ObjectKey::new(path).map_err(|error| TokenError::InvalidGrant(error.to_string()))?;
        }
        if rights.is_empty() {
            return Err(TokenError::InvalidGrant("no rights given".to_owned()));
        }
        if until <= now {
            return Err(TokenError::InvalidGrant(format!("expiry {until} is in the past")));
        }
        let (grantor, chain) = self.authorize(issuer, path, Right::Grant, now).await?;
        if chain >= MAX_CHAIN {
            return Err(TokenError::InvalidGrant(format!(
                "grant chains are limited to {MAX_CHAIN} tokens"
            )));
        }
        if let Some(missing) = rights.iter().find(|right| !grantor.has(**right)) {
            return Err(TokenError::Forbidden {
                right: *missing,
                path: path.to_owned(),
                allowed: format!("rights {:?}", grantor.rights),
            });
        }
        if until > grantor.until {
            return Err(TokenError::InvalidGrant(format!(
                "expiry {until} is later than the granting token's ({})",
                grantor.until
            )));
        }
        let mut rights = rights.to_vec();
        rights.sort_unstable();
        rights.dedup();
        let handle = Handle::generate();
        self.store_new(&handle, path.to_owned(), rights, until, Some(grantor.id))
            .await?;
        Ok(handle)
    }

    async fn store_new(
        &self,
        handle: &Handle,
        path: String,
        rights: Vec<Right>,
        until: OffsetDateTime,
        granted_by: Option<TokenId>,
    ) -> Result<(), TokenError> {
        let record = TokenRecord {
            id: handle.id(),
            path,
            rights,
            until,
            created_at: OffsetDateTime::now_utc(),
            granted_by,
        };
        self.store
            .put_if_absent(&keys::token_record(&record.id), record::encode(&record))
            .await?;
        tracing::info!(token = %record.id, path = %record.path, rights = ?record.rights, "token granted");
        Ok(())
    }

    /// Revokes `target`. A token may revoke itself and anything granted
    /// through it (directly or down the chain); an operator token may revoke
    /// anything. Holding `grant` on the same path is not enough, so a
    /// delegate cannot revoke the token that delegated to it. Takes effect for
    /// the very next check.
    pub async fn revoke(&self, issuer: &Handle, target: &Handle) -> Result<(), TokenError> {
        let now = OffsetDateTime::now_utc();
        let target_record = self.load(&target.id()).await?.ok_or(TokenError::Unknown)?;
        if issuer != target {
            let (issuer_record, _) = self.authorize(issuer, &target_record.path, Right::Grant, now).await?;
            let is_operator = issuer_record.granted_by.is_none() && issuer_record.path.is_empty();
            if !is_operator && !self.granted_through(&target_record, issuer_record.id).await? {
                return Err(TokenError::Forbidden {
                    right: Right::Grant,
                    path: target_record.path.clone(),
                    allowed: "tokens granted through this one".to_owned(),
                });
            }
        }
        self.store.delete(&keys::token_record(&target_record.id)).await?;
        tracing::info!(token = %target_record.id, "token revoked");
        Ok(())
    }

    /// Whether `ancestor` is in the chain of grantors of `record`.
    async fn granted_through(&self, record: &TokenRecord, ancestor: TokenId) -> Result<bool, TokenError> {
        let mut grantor = record.granted_by;
        for _ in 0..=MAX_CHAIN {
            match grantor {
                Some(id) if id == ancestor => return Ok(true),
                Some(id) => grantor = self.load(&id).await?.and_then(|parent| parent.granted_by),
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Checks that `handle` may exercise `right` on `path` now.
    pub async fn check(&self, handle: &Handle, path: &str, right: Right) -> Result<TokenRecord, TokenError> {
        self.check_at(handle, path, right, OffsetDateTime::now_utc()).await
    }

    /// [`Self::check`] at a given instant.
    pub async fn check_at(
        &self,
        handle: &Handle,
        path: &str,
        right: Right,
        now: OffsetDateTime,
    ) -> Result<TokenRecord, TokenError> {
        self.authorize(handle, path, right, now).await.map(|(record, _)| record)
    }

    /// [`Self::check`] for several paths at once, loading the token and its
    /// grant chain once: a storage transaction touches many paths.
    pub async fn check_all(&self, handle: &Handle, checks: &[(&str, Right)]) -> Result<TokenRecord, TokenError> {
        self.authorize_all(handle, checks, OffsetDateTime::now_utc())
            .await
            .map(|(record, _)| record)
    }

    /// The handle's record if it may exercise `right` on `path` at `now`,
    /// with the length of its grant chain.
    async fn authorize(
        &self,
        handle: &Handle,
        path: &str,
        right: Right,
        now: OffsetDateTime,
    ) -> Result<(TokenRecord, usize), TokenError> {
        self.authorize_all(handle, &[(path, right)], now).await
    }

    /// The handle's record if it may exercise every `(path, right)` of
    /// `checks` at `now`, with the length of its grant chain.
    async fn authorize_all(
        &self,
        handle: &Handle,
        checks: &[(&str, Right)],
        now: OffsetDateTime,
    ) -> Result<(TokenRecord, usize), TokenError> {
        // Paths are compared by prefix, so one that is not a valid key (a
        // `..` segment, say) could appear to lie inside a prefix it escapes.
        if let Some(&(path, right)) = checks
            .iter()
            .find(|(path, _)| !path.is_empty() && ObjectKey::new(*path).is_err())
        {
            return Err(TokenError::Forbidden {
                right,
                path: path.to_owned(),
                allowed: "valid storage paths".to_owned(),
            });
        }
        let record = self.load(&handle.id()).await?.ok_or(TokenError::Unknown)?;
        if now >= record.until {
            return Err(TokenError::Expired { at: record.until });
        }
        if let Some(&(path, right)) = checks
            .iter()
            .find(|(path, right)| !record.covers(path) || !record.has(*right))
        {
            return Err(TokenError::Forbidden {
                right,
                path: path.to_owned(),
                allowed: format!("{:?} with rights {:?}", record.path, record.rights),
            });
        }
        let mut chain = 1;
        let mut grantor = record.granted_by;
        while let Some(id) = grantor {
            if chain > MAX_CHAIN {
                return Err(TokenError::GrantorInvalid);
            }
            let parent = self.load(&id).await?.ok_or(TokenError::GrantorInvalid)?;
            if now >= parent.until {
                return Err(TokenError::GrantorInvalid);
            }
            grantor = parent.granted_by;
            chain += 1;
        }
        Ok((record, chain))
    }

    async fn load(&self, id: &TokenId) -> Result<Option<TokenRecord>, TokenError> {
        Ok(record::read(self.store.as_ref(), &keys::token_record(id))
            .await?
            .map(|(record, _)| record))
    }
}
