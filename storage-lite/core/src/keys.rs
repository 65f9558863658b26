//! The bucket layout: every object key grove writes is built here, and
//! nowhere else, so the layout in `docs/DESIGN.md` has one source of truth.
//! Keys are validated once, so no backend has to trust them.
//!
//! ```text
//! blobs/<sha256>                       file contents
//! trees/<sha256>                       manifest tree nodes
//! sites/<site>/root                    the live version pointer
//! sites/<site>/versions/<n:020>        version n, create-only
//! sites/<site>/purges/<n:020>          the CDN purge of version n
//! sites/<site>/pages/<n:020>           version n's pages: lastmod and robots meta
//! cdn/<account>/...                    a CDN account's purge queue, cursors and lease
//! nodes/<name>/epochs/<e:010>          a storage node's incarnations
//! nodes/<name>/segments/<e:010>/<seq>  its shipped log segments, create-only
//! auth/tokens/<sha256(handle)>         token records
//! auth/bootstrap                       marks a store whose first operator token exists
//! ```

use std::fmt;

use crate::hash::ContentHash;
use crate::names::SiteName;
use crate::token::TokenId;

/// Longest key accepted; S3 allows 1024 bytes.
const MAX_KEY_BYTES: usize = 1024;

/// A key in the object store: `/`-separated segments of `[A-Za-z0-9._-]`,
/// with no empty, `.` or `..` segment.
///
/// The local backend maps keys to file paths, so this is what keeps a key from
/// naming a file outside the store directory. Keys are built by grove itself
/// (`blobs/<hash>`, `sites/<site>/root`), never taken from a request as is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// A key that [`ObjectKey::new`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {key:?}: {reason}")]
pub struct InvalidKey {
    /// The key's first 120 characters.
    pub key: String,
    pub reason: &'static str,
}

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidKey> {
        let key = key.into();
        let refuse = |reason| InvalidKey {
            key: key.chars().take(120).collect(),
            reason,
        };
        if key.is_empty() {
            return Err(refuse("it is empty"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(refuse("it is longer than 1024 bytes"));
        }
        for segment in key.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(refuse("it has an empty, '.' or '..' segment"));
            }
            let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
            if !segment.bytes().all(allowed) {
                return Err(refuse("only A-Z, a-z, 0-9, '.', '_', '-' and '/' are allowed"));
            }
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Names are validated to the key alphabet, so joining them cannot fail.
fn built(key: String) -> ObjectKey {
    ObjectKey::new(key).expect("keys built from validated names are valid")
}

/// `blobs/<hash>`: file contents.
pub fn blob(hash: &ContentHash) -> ObjectKey {
    built(format!("{BLOBS}{hash}"))
}

/// `trees/<hash>`: a manifest tree node.
pub fn tree_node(hash: &ContentHash) -> ObjectKey {
    built(format!("{TREE_NODES}{hash}"))
}

/// Prefix of every blob key.
pub const BLOBS: &str = "blobs/";
/// Prefix of every tree node key.
pub const TREE_NODES: &str = "trees/";

/// `sites/<site>/root`: the live version pointer, swapped by compare-and-swap.
pub fn site_root(site: &SiteName) -> ObjectKey {
    built(format!("sites/{site}/root"))
}

/// `sites/<site>/versions/<n:020>`: version `n`, created once.
pub fn site_version(site: &SiteName, n: u64) -> ObjectKey {
    built(format!("sites/{site}/versions/{n:020}"))
}

/// `sites/<site>/purges/<n:020>`: the CDN purge status of version `n`.
pub fn site_purge(site: &SiteName, n: u64) -> ObjectKey {
    built(format!("sites/{site}/purges/{n:020}"))
}

/// `sites/<site>/rendered/<tree>`: the last render of each
/// database-backed page of the version with that tree (its blob, `as_of`,
/// reads and templates).
pub fn site_rendered(site: &SiteName, tree: &ContentHash) -> ObjectKey {
    built(format!("sites/{site}/rendered/{}", tree.to_hex()))
}

/// `sites/<site>/render-failures/<n:020>`: version `n`'s database-backed
/// pages whose last render failed.
pub fn site_render_failures(site: &SiteName, n: u64) -> ObjectKey {
    built(format!("sites/{site}/render-failures/{n:020}"))
}

/// `sites/<site>/pages/<n:020>`: version `n`'s pages, when each last
/// changed and what its head says to search engines (derived, rebuilt
/// when missing).
pub fn site_pages(site: &SiteName, n: u64) -> ObjectKey {
    built(format!("sites/{site}/pages/{n:020}"))
}

/// `journal/<seq:020>`: the `seq`th root change of any site, created once,
/// so edges sharing the bucket follow every publish at a cost that does
/// not grow with the number of sites.
pub fn journal_entry(seq: u64) -> ObjectKey {
    built(format!("{JOURNAL}{seq:020}"))
}

/// Prefix of every journal entry.
pub const JOURNAL: &str = "journal/";

/// The keys of one CDN account's purge queue, under `cdn/<account>/`:
/// `cursors/<site>`, `queue/<site>/<n:020>` and `lease`.
#[derive(Debug, Clone)]
pub struct CdnAccountKeys {
    prefix: String,
}

impl CdnAccountKeys {
    /// The account is named by the SHA-256 of its identity (a zone id, a
    /// webhook URL), so any identity gives valid keys.
    pub fn new(identity: &str) -> Self {
        let digest = ContentHash::of(identity.as_bytes()).to_hex();
        Self {
            prefix: format!("cdn/{}/", &digest[..32]),
        }
    }

    /// `cursors/<site>`: the newest version of the site whose purge is queued.
    pub fn cursor(&self, site: &SiteName) -> ObjectKey {
        built(format!("{}{site}", self.cursors()))
    }

    /// Prefix of every cursor.
    pub fn cursors(&self) -> String {
        format!("{}cursors/", self.prefix)
    }

    /// `queue/<site>/<n:020>`: version `n` of the site awaits its purge.
    pub fn queued(&self, site: &SiteName, n: u64) -> ObjectKey {
        built(format!("{}{site}/{n:020}", self.queue()))
    }

    /// Prefix of every queued purge.
    pub fn queue(&self) -> String {
        format!("{}queue/", self.prefix)
    }

    /// `pages/<site>/<digest>`: a re-rendered page's cache tag awaits its
    /// purge. One key per tag (its digest), so renders of the page before
    /// the purge is sent add nothing.
    pub fn page_mark(&self, site: &SiteName, tag: &str) -> ObjectKey {
        let digest = ContentHash::of(tag.as_bytes()).to_hex();
        built(format!("{}{site}/{}", self.page_marks(), &digest[..32]))
    }

    /// Prefix of every page mark.
    pub fn page_marks(&self) -> String {
        format!("{}pages/", self.prefix)
    }

    /// `lease`: which proxy sends for the account, until when.
    pub fn lease(&self) -> ObjectKey {
        built(format!("{}lease", self.prefix))
    }
}

/// `nodes/<name>/epochs/`: the prefix of a storage node's incarnations.
pub fn node_epochs(node: &str) -> String {
    format!("nodes/{node}/epochs/")
}

/// `nodes/<name>/epochs/<epoch:010>`: the marker of one incarnation.
/// `node` is a validated storage node name (the key alphabet).
pub fn node_epoch(node: &str, epoch: u64) -> ObjectKey {
    built(format!("{}{epoch:010}", node_epochs(node)))
}

/// `nodes/<name>/segments/<epoch:010>/`: the prefix of the log segments one
/// incarnation of a storage node shipped.
pub fn node_segments(node: &str, epoch: u64) -> String {
    format!("nodes/{node}/segments/{epoch:010}/")
}

/// `nodes/<name>/segments/<epoch:010>/<first seq:020>`: one shipped segment.
pub fn node_segment(node: &str, epoch: u64, first_seq: u64) -> ObjectKey {
    built(format!("{}{first_seq:020}", node_segments(node, epoch)))
}

/// `auth/tokens/<id>`: a token's record, keyed by the hash of its handle.
pub fn token_record(id: &TokenId) -> ObjectKey {
    built(format!("{TOKEN_RECORDS}{}", id.0))
}

/// Prefix of every token record.
pub const TOKEN_RECORDS: &str = "auth/tokens/";

/// Marks a store whose first operator token was created.
pub fn bootstrap() -> ObjectKey {
    built("auth/bootstrap".to_owned())
}

/// `auth/sessions/<site>/<id>`: a sign-in session's record, keyed by the
/// hash of its cookie (never the cookie itself).
pub fn session_record(site: &SiteName, id: &ContentHash) -> ObjectKey {
    built(format!("auth/sessions/{site}/{id}"))
}

/// `auth/session-index/<site>/<kind>/<hash of value>/`: the sessions that
/// share an identity provider's session id (`sid`) or subject (`sub`), so
/// a back-channel logout finds every one of them.
pub fn session_index(site: &SiteName, kind: &str, value: &str) -> String {
    format!(
        "auth/session-index/{site}/{kind}/{}/",
        ContentHash::of(value.as_bytes())
    )
}

/// One entry of a [`session_index`]: the session with record hash `id`.
pub fn session_index_entry(prefix: &str, id: &ContentHash) -> ObjectKey {
    built(format!("{prefix}{id}"))
}

/// `auth/keys/login-state`: the key that signs sign-in state cookies, made
/// once per store (create-only) and shared by every proxy on it.
pub fn login_state_key() -> ObjectKey {
    built("auth/keys/login-state".to_owned())
}

/// Token paths: what a token's `path` covers. They mirror the key layout, so
/// a grant on `sites/<site>` covers that site's data.
pub mod token_path {
    use crate::names::SiteName;

    /// `sites/<site>`: everything of one site.
    pub fn site(site: &SiteName) -> String {
        format!("sites/{site}")
    }

    /// `sites/<site>/<path>`: one storage-node data path of a site.
    pub fn site_data(site: &SiteName, path: &str) -> String {
        format!("sites/{site}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_grove_keys() {
        for key in [
            "blobs/ab12",
            "sites/demo/versions/00000000000000000001",
            "auth/tokens/x_y-z.json",
        ] {
            ObjectKey::new(key).unwrap();
        }
    }

    #[test]
    fn refuses_keys_that_could_escape_or_confuse_a_directory() {
        for key in ["", "/abs", "a//b", "a/", "../x", "a/./b", "a b", "a\\b", "a\0b", "é"] {
            assert!(ObjectKey::new(key).is_err(), "{key:?} accepted");
        }
    }
}
