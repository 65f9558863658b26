//! S3-compatible backend (Cloudflare R2 in production) via `aws-sdk-s3`.
//!
//! R2 compatibility needs path-style addressing, region `auto`, and checksums
//! calculated only when an operation requires them (R2 rejects some of the
//! SDK's default checksum headers). Conditional writes use `If-None-Match: *`
//! and `If-Match: <etag>`; a 412 or a 409 (a concurrent conditional write in
//! flight) both mean the caller lost the race.

use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use bytes::Bytes;

use super::{ETag, ListPage, Object, ObjectKey, ObjectMeta, ObjectStore, PresignedPut, StoreError, StoreOp};
use grove_core::hash::ContentHash;

/// Where the S3 backend gets its credentials.
#[derive(Clone, Default)]
pub enum S3Credentials {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, then the shared AWS
    /// config files (`AWS_PROFILE`). Never the instance metadata service.
    #[default]
    Environment,
    /// Explicit keys, e.g. read from a secrets file.
    Static {
        access_key_id: String,
        secret_access_key: String,
    },
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("Environment"),
            Self::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .finish(),
        }
    }
}

/// Settings for one bucket.
#[derive(Debug, Clone)]
pub struct S3StoreConfig {
    /// e.g. `https://<account>.r2.cloudflarestorage.com`; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// `auto` for R2.
    pub region: String,
    pub credentials: S3Credentials,
    /// Bound on connecting; an unreachable store must fail fast, not hang.
    pub connect_timeout: Duration,
    /// Bound on each attempt of each call.
    pub attempt_timeout: Duration,
}

impl S3StoreConfig {
    /// Defaults for R2: region `auto`, credentials from the environment.
    pub fn new(endpoint: Option<String>, bucket: impl Into<String>) -> Self {
        Self {
            endpoint,
            bucket: bucket.into(),
            region: "auto".to_owned(),
            credentials: S3Credentials::Environment,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(60),
        }
    }
}

/// An object store in an S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    pub fn new(config: S3StoreConfig) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .operation_attempt_timeout(config.attempt_timeout)
            .build();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region))
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(timeouts);
        builder = match config.credentials {
            S3Credentials::Environment => builder.credentials_provider(
                CredentialsProviderChain::first_try("environment", EnvironmentVariableCredentialsProvider::new())
                    .or_else("profile", ProfileFileCredentialsProvider::builder().build()),
            ),
            S3Credentials::Static {
                access_key_id,
                secret_access_key,
            } => builder.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "grove-config",
            )),
        };
        if let Some(endpoint) = config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket,
        }
    }

    async fn put_with(
        &self,
        op: StoreOp,
        key: &ObjectKey,
        bytes: Bytes,
        condition: impl FnOnce(
            aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
        ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    ) -> Result<ETag, StoreError> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .body(ByteStream::from(bytes));
        let output = condition(request)
            .send()
            .await
            .map_err(|error| classify(op, key, error))?;
        output
            .e_tag()
            .map(ETag::new)
            .ok_or_else(|| StoreError::backend(op, key, "response carried no ETag"))
    }
}

/// Maps an SDK error to ours by HTTP status, which is what every
/// S3-compatible server agrees on (error codes differ between them).
fn classify<E, R>(op: StoreOp, key: &ObjectKey, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + HttpStatus,
{
    match error.raw_response().map(HttpStatus::status) {
        Some(404) => StoreError::NotFound { key: key.to_string() },
        Some(409 | 412) => StoreError::PreconditionFailed { key: key.to_string() },
        _ => StoreError::backend(op, key, DisplayErrorContext(&error).to_string()),
    }
}

/// The HTTP status of a raw SDK response.
trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Collects a GET response into an object.
async fn object_of(
    key: &ObjectKey,
    output: aws_sdk_s3::operation::get_object::GetObjectOutput,
) -> Result<Object, StoreError> {
    let etag = output
        .e_tag()
        .map(ETag::new)
        .ok_or_else(|| StoreError::backend(StoreOp::Get, key, "response carried no ETag"))?;
    let bytes = output
        .body
        .collect()
        .await
        .map_err(|error| StoreError::backend(StoreOp::Get, key, error))?
        .into_bytes();
    Ok(Object { bytes, etag })
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        let request = self.client.get_object().bucket(&self.bucket).key(key.as_str());
        let output = request
            .send()
            .await
            .map_err(|error| classify(StoreOp::Get, key, error))?;
        object_of(key, output).await
    }

    async fn get_if_changed(&self, key: &ObjectKey, known: &ETag) -> Result<Option<Object>, StoreError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .if_none_match(known.as_str());
        match request.send().await {
            Ok(output) => object_of(key, output).await.map(Some),
            Err(error) if error.raw_response().map(HttpStatus::status) == Some(304) => Ok(None),
            Err(error) => Err(classify(StoreOp::Get, key, error)),
        }
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        let unsatisfiable = |size| StoreError::RangeNotSatisfiable {
            key: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        };
        if range.start >= range.end {
            let size = self.head(key).await?.size;
            return Err(unsatisfiable(size));
        }
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error) if error.raw_response().map(HttpStatus::status) == Some(416) => {
                let size = self.head(key).await?.size;
                return Err(unsatisfiable(size));
            }
            Err(error) => return Err(classify(StoreOp::GetRange, key, error)),
        };
        output
            .body
            .collect()
            .await
            .map(|body| body.into_bytes())
            .map_err(|error| StoreError::backend(StoreOp::GetRange, key, error))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|error| classify(StoreOp::Head, key, error))?;
        let etag = output
            .e_tag()
            .map(ETag::new)
            .ok_or_else(|| StoreError::backend(StoreOp::Head, key, "response carried no ETag"))?;
        let size = output
            .content_length()
            .and_then(|len| u64::try_from(len).ok())
            .unwrap_or(0);
        Ok(ObjectMeta { size, etag })
    }

    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.put_with(StoreOp::Put, key, bytes, |request| request).await
    }

    async fn put_if_absent(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.put_with(StoreOp::PutIfAbsent, key, bytes, |request| request.if_none_match("*"))
            .await
    }

    async fn put_if_match(&self, key: &ObjectKey, bytes: Bytes, expected: &ETag) -> Result<ETag, StoreError> {
        // S3 answers If-Match on a missing object with 404; to callers that is
        // a lost race like any other.
        match self
            .put_with(StoreOp::PutIfMatch, key, bytes, |request| {
                request.if_match(expected.as_str())
            })
            .await
        {
            Err(StoreError::NotFound { key }) => Err(StoreError::PreconditionFailed { key }),
            other => other,
        }
    }

    async fn list(&self, prefix: &str, start_after: Option<&ObjectKey>, limit: usize) -> Result<ListPage, StoreError> {
        let output = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(ObjectKey::to_string))
            .max_keys(i32::try_from(limit.clamp(1, 1000)).expect("at most 1000"))
            .send()
            .await
            .map_err(|error| StoreError::backend(StoreOp::List, prefix, DisplayErrorContext(&error).to_string()))?;
        let keys = output
            .contents()
            .iter()
            .filter_map(|object| object.key())
            .map(ObjectKey::new)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match output.is_truncated() {
            Some(true) => keys.last().cloned(),
            _ => None,
        };
        Ok(ListPage { keys, next })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => match classify(StoreOp::Delete, key, error) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn presign_put(
        &self,
        key: &ObjectKey,
        sha256: &ContentHash,
        expires_in: Duration,
    ) -> Result<Option<PresignedPut>, StoreError> {
        let presigning = PresigningConfig::expires_in(expires_in)
            .map_err(|error| StoreError::backend(StoreOp::PresignPut, key, error))?;
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha256.as_bytes());
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .checksum_sha256(checksum)
            .presigned(presigning)
            .await
            .map_err(|error| StoreError::backend(StoreOp::PresignPut, key, DisplayErrorContext(&error).to_string()))?;
        Ok(Some(PresignedPut {
            url: request.uri().to_owned(),
            headers: request
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            expires_at: SystemTime::now() + expires_in,
        }))
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        content_type: &str,
    ) -> Result<Option<String>, StoreError> {
        let presigning = PresigningConfig::expires_in(expires_in)
            .map_err(|error| StoreError::backend(StoreOp::PresignGet, key, error))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .response_content_type(content_type)
            .presigned(presigning)
            .await
            .map_err(|error| StoreError::backend(StoreOp::PresignGet, key, DisplayErrorContext(&error).to_string()))?;
        Ok(Some(request.uri().to_owned()))
    }
}
