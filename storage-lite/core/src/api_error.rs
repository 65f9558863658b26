//! The one error shape of every grove API (the publish API, the storage
//! node's API, the proxy's own replies to API calls): a status, a stable
//! machine-readable `error` code, a `message` for people, and the details
//! some codes carry. Clients match on `error`, never on the message.

use serde::{Deserialize, Serialize};

use crate::publish_api::UploadTarget;
use crate::timestamp::Timestamp;
use crate::token::MalformedHandle;

/// The JSON body of every error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
    /// `limit`: the configuration key of the limit exceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Publish `conflict`: the version the site is at now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// `missing_content`: blobs to upload before committing again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_blobs: Vec<UploadTarget>,
    /// Node `conflict`: the latest entry of the serialized path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<Timestamp>,
    /// Node `trimmed`: the first timestamp still readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_available: Option<Timestamp>,
    /// Node `not_primary`: the same call on the site's primary (also the
    /// reply's `Location`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Node `not_primary`: the site epoch the redirect was decided in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// An error reply on its way out: the HTTP status and the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {}", .body.error, .body.message)]
pub struct ApiFailure {
    pub status: http::StatusCode,
    /// Boxed: failures travel in every `Result` of the APIs' hot paths.
    pub body: Box<ApiError>,
}

impl ApiFailure {
    /// `code` is the stable `error` field.
    pub fn new(status: http::StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ApiError {
                error: code.to_owned(),
                message: message.into(),
                limit: None,
                current: None,
                missing_blobs: Vec::new(),
                latest: None,
                first_available: None,
                location: None,
                epoch: None,
            }),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(http::StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A request without a usable bearer handle.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(http::StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A request body over `limit` (named by its configuration key).
    pub fn too_large(limit: &str, value: u64) -> Self {
        let mut failure = Self::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
            format!("the request body is larger than {limit} = {value} bytes"),
        );
        failure.body.limit = Some(limit.to_owned());
        failure
    }

    /// The store behind the API failed: worth retrying shortly.
    pub fn store_unavailable(error: &dyn std::error::Error) -> Self {
        Self::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the object store failed; retry shortly ({error})"),
        )
    }

    /// The body as JSON text.
    pub fn json(&self) -> String {
        serde_json::to_string(&self.body).expect("error bodies serialize")
    }
}

/// A malformed handle is no credential at all.
impl From<MalformedHandle> for ApiFailure {
    fn from(error: MalformedHandle) -> Self {
        Self::unauthorized(error.to_string())
    }
}
