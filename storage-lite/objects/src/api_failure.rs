//! How every API answers the errors of this crate: one status and stable
//! code per error, in the shared [`ApiFailure`] shape, so the publish API and
//! the storage node's API cannot drift apart.

use grove_core::api_error::ApiFailure;

use crate::publish::{Limit, PublishError};
use crate::site::SiteError;
use crate::token::TokenError;

/// Logs a store failure behind an API call and answers it as retryable.
pub fn store_failed(error: &dyn std::error::Error) -> ApiFailure {
    tracing::error!(%error, "API call: the store failed");
    ApiFailure::store_unavailable(error)
}

/// Every API answers a token error with the same status and code.
impl From<TokenError> for ApiFailure {
    fn from(error: TokenError) -> Self {
        if let TokenError::Record(error) = &error {
            return store_failed(error);
        }
        let (status, code) = error.status_and_code();
        let status = http::StatusCode::from_u16(status).expect("token error statuses are valid");
        ApiFailure::new(status, code, error.to_string())
    }
}

/// The publish API answers a site error with this status and code.
impl From<SiteError> for ApiFailure {
    fn from(error: SiteError) -> Self {
        let message = error.to_string();
        match error {
            SiteError::Conflict { current, .. } => {
                let mut failure = ApiFailure::new(http::StatusCode::CONFLICT, "conflict", message);
                failure.body.current = Some(current);
                failure
            }
            SiteError::UnknownVersion { .. } | SiteError::NoVersions { .. } => {
                ApiFailure::new(http::StatusCode::NOT_FOUND, "not_found", message)
            }
            SiteError::MessageTooLong => ApiFailure::new(http::StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
            SiteError::MissingTree { .. } => {
                ApiFailure::new(http::StatusCode::UNPROCESSABLE_ENTITY, "incomplete_tree", message)
            }
            // Recorded, but not yet live: a retry would record another version.
            SiteError::RootNotAdvanced { .. } => {
                ApiFailure::new(http::StatusCode::INTERNAL_SERVER_ERROR, "root_not_advanced", message)
            }
            SiteError::Record(_) | SiteError::Contention { .. } => store_failed(&error),
        }
    }
}

/// The publish API answers a publish error with this status and code.
impl From<PublishError> for ApiFailure {
    fn from(error: PublishError) -> Self {
        let message = error.to_string();
        match error {
            PublishError::Limit { limit, .. } => {
                let status = match limit {
                    Limit::FileBytes => http::StatusCode::PAYLOAD_TOO_LARGE,
                    Limit::FilesPerSite => http::StatusCode::UNPROCESSABLE_ENTITY,
                };
                let mut failure = ApiFailure::new(status, "limit", message);
                failure.body.limit = Some(limit.key().to_owned());
                failure
            }
            PublishError::Batch(_) => ApiFailure::bad_request(message),
            PublishError::BadNode { .. } => {
                ApiFailure::new(http::StatusCode::UNPROCESSABLE_ENTITY, "bad_node", message)
            }
            PublishError::MalformedTree(_) => {
                ApiFailure::new(http::StatusCode::UNPROCESSABLE_ENTITY, "bad_tree", message)
            }
            PublishError::HashMismatch { .. } => {
                ApiFailure::new(http::StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch", message)
            }
            PublishError::IncompleteTree(_) | PublishError::ChildMissing { .. } => {
                ApiFailure::new(http::StatusCode::UNPROCESSABLE_ENTITY, "incomplete_tree", message)
            }
            PublishError::MissingContent(targets) => {
                let mut failure = ApiFailure::new(http::StatusCode::UNPROCESSABLE_ENTITY, "missing_content", message);
                failure.body.missing_blobs = targets;
                failure
            }
            PublishError::Invalid(_) => ApiFailure::new(http::StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
            PublishError::NotFound(_) => ApiFailure::new(http::StatusCode::NOT_FOUND, "not_found", message),
            PublishError::Site(error) => ApiFailure::from(*error),
            PublishError::Tree(error) => store_failed(&error),
            PublishError::Store(error) => store_failed(&error),
            PublishError::Content(error) => store_failed(&error),
        }
    }
}
