//! Small JSON records in the store (site roots, versions, tokens, purge
//! jobs): one reader and one encoding for every part that keeps state there.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{ETag, ObjectKey, ObjectStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("record {key} is corrupt: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("record {key} kept changing under other writers")]
    Contended { key: String },
}

/// Reads and parses the record at `key`; `None` if there is none.
pub async fn read<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &ObjectKey,
) -> Result<Option<(T, ETag)>, RecordError> {
    let object = match store.get(key).await {
        Ok(object) => object,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    parse(key, object).map(Some)
}

/// Like [`read`], but `Ok(None)` if the record still has tag `known`, and
/// `Ok(Some(None))` if it is gone.
pub async fn read_if_changed<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    known: &ETag,
) -> Result<Option<Option<(T, ETag)>>, RecordError> {
    let object = match store.get_if_changed(key, known).await {
        Ok(Some(object)) => object,
        Ok(None) => return Ok(None),
        Err(error) if error.is_not_found() => return Ok(Some(None)),
        Err(error) => return Err(error.into()),
    };
    parse(key, object).map(|parsed| Some(Some(parsed)))
}

fn parse<T: DeserializeOwned>(key: &ObjectKey, object: crate::store::Object) -> Result<(T, ETag), RecordError> {
    let value = serde_json::from_slice(&object.bytes).map_err(|source| RecordError::Corrupt {
        key: key.to_string(),
        source,
    })?;
    Ok((value, object.etag))
}

/// Read-modify-write of the record at `key` by compare-and-swap, tried
/// again (at most `attempts` times) while other writers move it. `change`
/// gets the record as it is (`None`: there is none) and returns it as it is
/// to be, or `None` to leave it. True if it wrote.
pub async fn update<T: Serialize + DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    attempts: usize,
    mut change: impl FnMut(Option<T>) -> Option<T>,
) -> Result<bool, RecordError> {
    for _ in 0..attempts {
        let (current, etag) = match read::<T>(store, key).await? {
            Some((value, etag)) => (Some(value), Some(etag)),
            None => (None, None),
        };
        let Some(next) = change(current) else {
            return Ok(false);
        };
        let written = match &etag {
            Some(etag) => store.put_if_match(key, encode(&next), etag).await,
            None => store.put_if_absent(key, encode(&next)).await,
        };
        match written {
            Ok(_) => return Ok(true),
            Err(error) if error.is_precondition_failed() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(RecordError::Contended { key: key.to_string() })
}

pub fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).expect("records serialize infallibly"))
}
