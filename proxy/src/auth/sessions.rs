//! Server-side sessions. The cookie holds a random secret; the store keeps
//! only its hash, at `auth/sessions/<site>/<hash>`, where every proxy on the
//! store finds it. Ending a session deletes the record, so no proxy can
//! accept it again once its cache has let go, and the revocation feed
//! ([`super::revocations`]) tells every proxy to let go at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use grove_core::{ContentHash, SiteName, keys};
use grove_objects::store::{ETag, ObjectStore, StoreError};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::provider::SignedIn;

/// Longest a proxy trusts a cached session without reading the store, even
/// while its revocation feed is connected: bounds the harm of a feed that
/// stalls without closing.
const CACHE_TTL: Duration = Duration::from_secs(30);

/// Sessions one proxy keeps in memory (only sessions that exist: a random
/// cookie is looked up and forgotten, never cached).
const CACHED_SESSIONS: u64 = 100_000;

/// The session cookie's value: 32 random bytes in hex. Its `Debug` shows
/// only the hash.
#[derive(Clone)]
pub struct SessionSecret(SecretString);

impl SessionSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(SecretString::from(hex::encode(bytes)))
    }

    /// A cookie value as a client sent it; anything but 64 lowercase hex
    /// digits is no session.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(SecretString::from(text)))
    }

    pub fn reveal(&self) -> &str {
        self.0.expose_secret()
    }

    /// The record's name: the hash of the secret.
    pub fn id(&self) -> ContentHash {
        ContentHash::of(self.reveal().as_bytes())
    }
}

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionSecret({})", &self.id().to_hex()[..16])
    }
}

/// What the store keeps for a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    pub site: String,
    /// Who signed in.
    #[serde(flatten)]
    pub identity: SignedIn,
    pub created_ms: u64,
    /// How long the session may go unused.
    pub idle_ms: u64,
    /// The session ends when unused past this.
    pub idle_expires_ms: u64,
    /// The session ends at this, used or not.
    pub absolute_expires_ms: u64,
}

impl SessionRecord {
    pub fn expired_at(&self, now_ms: u64) -> bool {
        now_ms >= self.idle_expires_ms || now_ms >= self.absolute_expires_ms
    }

    #[cfg(test)]
    pub fn for_tests(subject: &str, email: Option<&str>, verified: bool) -> Self {
        Self {
            site: "demo".to_owned(),
            identity: SignedIn {
                subject: subject.to_owned(),
                email: email.map(str::to_owned),
                email_verified: verified,
                claims: serde_json::json!({}),
                provider_session: None,
                id_token: String::new(),
            },
            created_ms: 0,
            idle_ms: u64::MAX,
            idle_expires_ms: u64::MAX,
            absolute_expires_ms: u64::MAX,
        }
    }
}

/// A session as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: ContentHash,
    pub record: Arc<SessionRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the session store failed: {0}")]
    Store(#[from] StoreError),
    #[error("a session record is damaged: {0}")]
    Damaged(#[from] serde_json::Error),
}

/// Which index a session is listed in.
pub const BY_PROVIDER_SESSION: &str = "sid";
pub const BY_SUBJECT: &str = "sub";

/// The session records of every site, with a per-proxy cache.
pub struct Sessions {
    store: Arc<dyn ObjectStore>,
    cache: moka::future::Cache<(SiteName, ContentHash), (Arc<SessionRecord>, ETag)>,
}

impl Sessions {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            cache: moka::future::Cache::builder()
                .max_capacity(CACHED_SESSIONS)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    /// Stores a new session and returns its cookie secret.
    pub async fn create(&self, site: &SiteName, record: SessionRecord) -> Result<SessionSecret, SessionError> {
        let secret = SessionSecret::generate();
        let id = secret.id();
        // Index first: a session the index misses could outlive a
        // back-channel logout; an index entry without a session is harmless.
        if let Some(sid) = &record.identity.provider_session {
            self.index(site, BY_PROVIDER_SESSION, sid, &id).await?;
        }
        self.index(site, BY_SUBJECT, &record.identity.subject, &id).await?;
        let bytes = Bytes::from(serde_json::to_vec(&record)?);
        self.store
            .put_if_absent(&keys::session_record(site, &id), bytes)
            .await?;
        Ok(secret)
    }

    async fn index(&self, site: &SiteName, kind: &str, value: &str, id: &ContentHash) -> Result<(), StoreError> {
        let prefix = keys::session_index(site, kind, value);
        self.store
            .put(&keys::session_index_entry(&prefix, id), Bytes::new())
            .await
            .map(drop)
    }

    /// The live session a cookie names; `None` for an unknown, ended or
    /// expired one. `trust_cache` is false while this proxy may have missed
    /// a revocation (its feed is down): then the store is asked every time.
    pub async fn load(
        &self,
        site: &SiteName,
        secret: &SessionSecret,
        now_ms: u64,
        trust_cache: bool,
    ) -> Result<Option<Session>, SessionError> {
        let id = secret.id();
        let key = (site.clone(), id);
        let cached = if trust_cache { self.cache.get(&key).await } else { None };
        let (record, etag) = match cached {
            Some(found) => found,
            None => match self.store.get(&keys::session_record(site, &id)).await {
                Ok(object) => {
                    let record: SessionRecord = serde_json::from_slice(&object.bytes)?;
                    if record.site != site.as_str() {
                        return Ok(None);
                    }
                    let found = (Arc::new(record), object.etag);
                    self.cache.insert(key.clone(), found.clone()).await;
                    found
                }
                Err(error) if error.is_not_found() => {
                    // Ended while this proxy's feed was down: forget it now.
                    self.cache.invalidate(&key).await;
                    return Ok(None);
                }
                Err(error) => return Err(error.into()),
            },
        };
        if record.expired_at(now_ms) {
            self.cache.invalidate(&key).await;
            return Ok(None);
        }
        let session = Session { id, record };
        self.extend_idle(site, &session, &etag, now_ms).await;
        Ok(Some(session))
    }

    /// Moves the idle expiry forward once a tenth of the idle timeout has
    /// passed since it was last moved (one store write per session per such
    /// period, not per request). The write is conditional on the record
    /// read, so it can never bring back a session that was just ended.
    async fn extend_idle(&self, site: &SiteName, session: &Session, etag: &ETag, now_ms: u64) {
        let record = &session.record;
        let idle_ms = record.idle_ms;
        if record.idle_expires_ms.saturating_sub(now_ms) > idle_ms - idle_ms / 10 {
            return;
        }
        let mut extended = (**record).clone();
        extended.idle_expires_ms = now_ms.saturating_add(idle_ms);
        let key = keys::session_record(site, &session.id);
        let bytes = match serde_json::to_vec(&extended) {
            Ok(bytes) => Bytes::from(bytes),
            Err(_) => return,
        };
        let cache_key = (site.clone(), session.id);
        match self.store.put_if_match(&key, bytes, etag).await {
            Ok(etag) => self.cache.insert(cache_key, (Arc::new(extended), etag)).await,
            // Ended or extended meanwhile: the next request reads it again.
            Err(error) if error.is_precondition_failed() || error.is_not_found() => {
                self.cache.invalidate(&cache_key).await;
            }
            Err(error) => tracing::warn!(%site, %error, "extending a session's idle expiry failed"),
        }
    }

    /// Ends a session: its record goes, and this proxy forgets it at once.
    pub async fn end(&self, site: &SiteName, id: &ContentHash) -> Result<(), SessionError> {
        self.forget(site, id).await;
        match self.store.delete(&keys::session_record(site, id)).await {
            Ok(()) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Ends every session an index lists under `value`; returns their ids.
    pub async fn end_all(&self, site: &SiteName, kind: &str, value: &str) -> Result<Vec<ContentHash>, SessionError> {
        let prefix = keys::session_index(site, kind, value);
        let mut ended = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list(&prefix, after.as_ref(), 1000).await?;
            for key in &page.keys {
                let Some(id) = key.as_str().strip_prefix(&prefix).and_then(|hex| hex.parse().ok()) else {
                    continue;
                };
                self.end(site, &id).await?;
                let _ = self.store.delete(key).await;
                ended.push(id);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(ended)
    }

    /// Drops a session from this proxy's cache (another proxy ended it).
    pub async fn forget(&self, site: &SiteName, id: &ContentHash) {
        self.cache.invalidate(&(site.clone(), *id)).await;
    }
}
