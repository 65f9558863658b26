//! The node API's error replies: the shared [`ApiFailure`] shape, with the
//! node's own status mapping for log errors and its response headers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use grove_core::api_error::ApiFailure;
use grove_objects::token::TokenError;

use crate::hlc::ClockError;
use crate::types::LogError;

/// An error reply of the node API.
#[derive(Debug)]
pub struct NodeFailure(pub ApiFailure);

impl NodeFailure {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self(ApiFailure::new(status, code, message))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self(ApiFailure::bad_request(message))
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
}

/// `Retry-After: 1` on 429 and 503 (the node sheds load in one-second
/// steps), `WWW-Authenticate: Bearer` on 401, `Location` on a redirect to
/// the site's primary.
impl IntoResponse for NodeFailure {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let mut response = (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            self.0.json(),
        )
            .into_response();
        let headers = response.headers_mut();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(location) = self
            .0
            .body
            .location
            .as_deref()
            .and_then(|url| HeaderValue::from_str(url).ok())
        {
            headers.insert(header::LOCATION, location);
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<TokenError> for NodeFailure {
    fn from(error: TokenError) -> Self {
        Self(ApiFailure::from(error))
    }
}

impl From<LogError> for NodeFailure {
    fn from(error: LogError) -> Self {
        let message = error.to_string();
        let failure = match error {
            LogError::Conflict { latest, .. } => {
                let mut failure = ApiFailure::new(StatusCode::CONFLICT, "conflict", message);
                failure.body.latest = Some(latest);
                failure
            }
            LogError::CreatedOtherwise { .. } => ApiFailure::new(StatusCode::CONFLICT, "conflict", message),
            LogError::Trimmed { first_available } => {
                let mut failure = ApiFailure::new(StatusCode::GONE, "trimmed", message);
                failure.body.first_available = Some(first_available);
                failure
            }
            LogError::Clock(ClockError::NeverIssued { .. } | ClockError::TooFarAhead { .. })
            | LogError::InvalidPath { .. }
            | LogError::InvalidTxn(_)
            | LogError::InvalidData(_) => ApiFailure::bad_request(message),
            LogError::Fenced(_) => ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "fenced", message),
            LogError::Database(_) | LogError::InUse(_) | LogError::WriterGone => {
                ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        };
        Self(failure)
    }
}
