//! Capability tokens as formats: the bearer [`Handle`], its public
//! [`TokenId`], the [`Right`]s a token carries and the [`TokenRecord`] stored
//! for it. Issuing, checking and revoking live with the store
//! (`grove_objects::token`); the CLI needs only these.

use std::fmt;

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::hash::ContentHash;

/// A handle that is not `grove_` followed by 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("token is malformed (expected grove_ followed by 64 hex digits)")]
pub struct MalformedHandle;

const HANDLE_PREFIX: &str = "grove_";
/// Every right, as an operator token holds them.
pub const ALL_RIGHTS: [Right; 3] = [Right::Read, Right::Write, Right::Grant];

/// A bearer secret. Its `Debug` never shows the secret, and its memory is
/// wiped when dropped. Handles are equal when their ids are.
#[derive(Clone)]
pub struct Handle(SecretString);

impl PartialEq for Handle {
    fn eq(&self, other: &Self) -> bool {
        // Compares hashes, not the secrets byte by byte.
        self.id() == other.id()
    }
}

impl Eq for Handle {}

impl Handle {
    /// Parses a handle as a client presents it (`grove_` + 64 hex digits).
    pub fn parse(text: &str) -> Result<Self, MalformedHandle> {
        let digits = text.strip_prefix(HANDLE_PREFIX).ok_or(MalformedHandle)?;
        if digits.len() != 64 || !digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(MalformedHandle);
        }
        Ok(Self(SecretString::from(text)))
    }

    /// A fresh random handle.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self(SecretString::from(format!("{HANDLE_PREFIX}{}", hex::encode(secret))))
    }

    /// The secret itself, to show its owner once.
    pub fn reveal(&self) -> &str {
        self.0.expose_secret()
    }

    /// The public identity of this handle: the hash of the secret.
    pub fn id(&self) -> TokenId {
        TokenId(ContentHash::of(self.reveal().as_bytes()))
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", self.id())
    }
}

/// A token's public identity (the SHA-256 of its handle): safe to log and to
/// record as the author of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenId(pub ContentHash);

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell tokens apart in logs.
        write!(f, "tok:{}", &self.0.to_hex()[..16])
    }
}

/// One right a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    Read,
    Write,
    Grant,
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Grant => "grant",
        })
    }
}

/// What a token may do, and where. Stored at `auth/tokens/<sha256(handle)>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    /// Storage path prefix, whole segments (`sites/demo` covers
    /// `sites/demo/...`, not `sites/demo2`); empty covers everything.
    pub path: String,
    pub rights: Vec<Right>,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The token it was granted by; `None` for an operator (root) token.
    pub granted_by: Option<TokenId>,
}

impl TokenRecord {
    /// Whether the token's path covers `path` (whole segments).
    pub fn covers(&self, path: &str) -> bool {
        covers(&self.path, path)
    }

    pub fn has(&self, right: Right) -> bool {
        self.rights.contains(&right)
    }
}

/// Whether token path `prefix` covers `path`: whole segments only, and the
/// empty prefix covers everything.
pub fn covers(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cover_whole_segments_only() {
        assert!(covers("", "anything"));
        assert!(covers("sites/demo", "sites/demo"));
        assert!(covers("sites/demo", "sites/demo/posts"));
        assert!(!covers("sites/demo", "sites/demo2"));
        assert!(!covers("sites/demo", "sites"));
    }

    #[test]
    fn handles_parse_strictly_and_never_print_their_secret() {
        let handle = Handle::generate();
        assert_eq!(Handle::parse(handle.reveal()).unwrap(), handle);
        assert!(!format!("{handle:?}").contains(&handle.reveal()[HANDLE_PREFIX.len()..]));
        for bad in [
            "",
            "grove_",
            "grove_xyz",
            &handle.reveal().to_uppercase(),
            &handle.reveal()[1..],
        ] {
            assert!(Handle::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
