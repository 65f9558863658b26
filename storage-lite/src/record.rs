//! Small JSON records in the store (site roots, versions, tokens).

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
}

/// Reads and parses the record at `key`; `None` if there is none.
pub(crate) async fn read<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &ObjectKey,
) -> Result<Option<(T, ETag)>, RecordError> {
    let object = match store.get(key).await {
        Ok(object) => object,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let value = serde_json::from_slice(&object.bytes).map_err(|source| RecordError::Corrupt {
        key: key.to_string(),
        source,
    })?;
    Ok(Some((value, object.etag)))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).expect("records serialize infallibly"))
}
