//! Senders of purge requests: Cloudflare's API and a generic webhook. Both
//! POST `{"tags": [...]}` or `{"hosts": [...]}` with an optional bearer token.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// One purge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeRequest {
    Tags(Vec<String>),
    Hosts(Vec<String>),
}

impl PurgeRequest {
    /// Tags or hosts in the request.
    pub fn len(&self) -> usize {
        match self {
            Self::Tags(items) | Self::Hosts(items) => items.len(),
        }
    }

    fn body(&self) -> serde_json::Value {
        match self {
            Self::Tags(tags) => serde_json::json!({ "tags": tags }),
            Self::Hosts(hosts) => serde_json::json!({ "hosts": hosts }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// Worth retrying: a timeout, a connection failure, a 5xx, or a 429
    /// (`throttled`, which is the limit's doing, not the request's).
    #[error("{message}")]
    Retry {
        message: String,
        retry_after: Option<Duration>,
        throttled: bool,
    },
    /// The CDN refused the request itself (bad credentials, bad zone, bad
    /// tag): retrying cannot help.
    #[error("{0}")]
    Rejected(String),
}

/// Sends purge requests to a CDN.
#[async_trait]
pub trait Purger: Send + Sync + fmt::Debug {
    async fn purge(&self, request: &PurgeRequest) -> Result<(), PurgeError>;
}

/// Reads the secret in variable `name` (named by config key `key`), which
/// must be set and not empty. Secrets come only from the environment.
pub fn secret_from_env(name: &str, key: &str) -> anyhow::Result<SecretString> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(SecretString::from(value.trim())),
        _ => anyhow::bail!("the environment variable {name} (named by {key}) is not set"),
    }
}

/// Which API's replies to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `POST {api_base}/zones/{zone}/purge_cache`; a 200 reply must also say
    /// `"success": true`.
    Cloudflare,
    /// Any 2xx is success.
    Webhook,
}

/// Purges by POSTing JSON to one URL.
#[derive(Debug)]
pub struct HttpPurger {
    client: reqwest::Client,
    url: String,
    token: Option<SecretString>,
    flavor: Flavor,
}

impl HttpPurger {
    /// Must be called on the runtime that will send: the client's
    /// connections belong to it.
    pub fn new(url: String, token: Option<SecretString>, flavor: Flavor, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("grove-proxy/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            url,
            token,
            flavor,
        })
    }

    /// Cloudflare's purge endpoint for `zone_id`.
    pub fn cloudflare_url(api_base: &str, zone_id: &str) -> String {
        format!("{}/zones/{zone_id}/purge_cache", api_base.trim_end_matches('/'))
    }
}

/// The parts of Cloudflare's reply envelope we read.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    /// Absent when the reply was not Cloudflare's envelope.
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

impl Envelope {
    fn describe(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|error| format!("{} ({})", error.message, error.code))
            .collect();
        errors.join("; ")
    }
}

#[async_trait]
impl Purger for HttpPurger {
    async fn purge(&self, request: &PurgeRequest) -> Result<(), PurgeError> {
        let mut call = self.client.post(&self.url).json(&request.body());
        if let Some(token) = &self.token {
            call = call.bearer_auth(token.expose_secret());
        }
        let response = call.send().await.map_err(|error| PurgeError::Retry {
            message: format!("sending the purge failed: {}", with_causes(error.without_url())),
            retry_after: None,
            throttled: false,
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // A reply cut off may still have purged: sending again is harmless.
        let body = response.bytes().await.map_err(|error| PurgeError::Retry {
            message: format!(
                "reading the CDN's answer ({status}) failed: {}",
                with_causes(error.without_url())
            ),
            retry_after,
            throttled: false,
        })?;
        let envelope: Envelope = serde_json::from_slice(&body).unwrap_or_default();
        let detail = match envelope.describe() {
            empty if empty.is_empty() => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            described => described,
        };
        let message = format!("the CDN answered {status}: {detail}");
        // 401 and 403 are retried too (with backoff, counted): a token being
        // rotated must not lose every purge queued meanwhile.
        let retry = status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN;
        if retry {
            return Err(PurgeError::Retry {
                message,
                retry_after,
                throttled: status == StatusCode::TOO_MANY_REQUESTS,
            });
        }
        if !status.is_success() {
            return Err(PurgeError::Rejected(message));
        }
        if self.flavor == Flavor::Cloudflare && envelope.success == Some(false) {
            return Err(PurgeError::Rejected(message));
        }
        Ok(())
    }
}

/// An error and its causes ("error sending request: connection refused"):
/// reqwest's own message leaves out what went wrong.
fn with_causes(error: reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}
