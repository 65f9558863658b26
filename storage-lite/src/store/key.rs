//! Object keys, validated once so no backend has to trust them.

use std::fmt;

use super::StoreError;

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

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<Self, StoreError> {
        let key = key.into();
        let refuse = |reason| StoreError::InvalidKey {
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
