//! What the server answers, independent of the HTTP library that sends it.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use grove_core::api_error::ApiFailure;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::fields::Fields;

/// A response body whose length is known before it is sent, so every
/// response is framed with `Content-Length`.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// Bytes held in memory that are also an open cached file's from
    /// `start`. A plaintext HTTP/1 connection sends them from the file
    /// ([`crate::sendfile`]), which spares the kernel copying them out of
    /// grove's memory; every other writer (TLS, HTTP/2) sends the bytes.
    Mirrored {
        bytes: Bytes,
        file: Arc<std::fs::File>,
        start: u64,
    },
    /// `len` bytes of an open cached file from `start`, sent in pieces.
    File {
        file: Arc<std::fs::File>,
        start: u64,
        len: u64,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Bytes(bytes) | Self::Mirrored { bytes, .. } => bytes.len() as u64,
            Self::File { len, .. } => *len,
        }
    }

    /// The body's bytes, if memory holds them.
    pub fn in_memory(&self) -> Option<&Bytes> {
        match self {
            Self::Bytes(bytes) | Self::Mirrored { bytes, .. } => Some(bytes),
            Self::Empty | Self::File { .. } => None,
        }
    }

    /// The open file holding the body, with the body's offset in it and its
    /// length, if a file holds it.
    pub fn in_file(&self) -> Option<(&std::fs::File, u64, u64)> {
        match self {
            Self::Mirrored { bytes, file, start } => Some((file, *start, bytes.len() as u64)),
            Self::File { file, start, len } => Some((file, *start, *len)),
            Self::Empty | Self::Bytes(_) => None,
        }
    }

    /// `len` bytes of the body from `start`.
    pub fn slice(self, start: u64, len: u64) -> Self {
        let range = start as usize..(start + len) as usize;
        match self {
            Self::Bytes(bytes) => Self::Bytes(bytes.slice(range)),
            Self::Mirrored {
                bytes,
                file,
                start: base,
            } => Self::Mirrored {
                bytes: bytes.slice(range),
                file,
                start: base + start,
            },
            Self::File { file, start: base, .. } => Self::File {
                file,
                start: base + start,
                len,
            },
            Self::Empty => Self::Empty,
        }
    }
}

/// Size of the pieces a cached file is sent in.
const FILE_PIECE_BYTES: u64 = 256 * 1024;

/// A [`Body::File`] as the pieces it is sent in, read one at a time, so a
/// large file never sits in memory whole.
pub struct FilePieces {
    file: Arc<std::fs::File>,
    offset: u64,
    end: u64,
}

impl FilePieces {
    pub fn new(file: Arc<std::fs::File>, start: u64, len: u64) -> Self {
        Self {
            file,
            offset: start,
            end: start + len,
        }
    }

    /// The next piece, read on the blocking pool, or None once all are.
    pub async fn next(&mut self) -> Option<io::Result<Bytes>> {
        if self.is_done() {
            return None;
        }
        let len = (self.end - self.offset).min(FILE_PIECE_BYTES);
        let (file, offset) = (Arc::clone(&self.file), self.offset);
        // Allocated here, not on the blocking pool: see `cache::read_whole`.
        let mut piece = vec![0; len as usize];
        let read = tokio::task::spawn_blocking(move || file.read_exact_at(&mut piece, offset).map(|()| piece)).await;
        let piece = match read {
            Ok(Ok(piece)) => piece,
            Ok(Err(error)) => return Some(Err(error)),
            Err(error) => return Some(Err(io::Error::other(error))),
        };
        self.offset += len;
        Some(Ok(Bytes::from(piece)))
    }

    /// Whether every piece has been read.
    pub fn is_done(&self) -> bool {
        self.offset >= self.end
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    /// One value per name: setting a header replaces it. Shared by the
    /// copies of a kept reply until one changes them.
    pub headers: Fields,
    pub body: Body,
    /// For the access log and metrics: the site and version served, if any.
    pub served: Option<(Arc<str>, u64)>,
}

/// Headers a reply gains as it is sent: `Content-Length`, Pingora's `Date`
/// and `Connection`, and `X-Robots-Tag` on a host that is not indexed.
const HEADERS_ADDED_ON_SEND: usize = 4;

impl Reply {
    /// The reply as a prepared reply is kept, to be copied for every request:
    /// a header map with room for the headers added as a copy is sent over
    /// HTTP/2 (which takes a map of its own) or changed. A copy of a map has
    /// the original's table size, so without the room a page whose header
    /// count sat near the table's limit regrew and rehashed its table on
    /// every such request.
    pub fn with_room_to_send(mut self) -> Self {
        let mut headers = HeaderMap::with_capacity(self.headers.len() + HEADERS_ADDED_ON_SEND);
        headers.extend(std::mem::take(&mut self.headers).into_map());
        self.headers = Fields::new(headers);
        self
    }

    pub fn new(status: StatusCode, body: Body) -> Self {
        Self {
            status,
            headers: Fields::default(),
            body,
            served: None,
        }
    }

    /// An API's JSON answer, which no cache keeps.
    pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(value).expect("API replies serialize");
        Self::new(status, Body::Bytes(Bytes::from(body)))
            .with(header::CONTENT_TYPE, "application/json")
            .with(header::CACHE_CONTROL, "no-store")
    }

    /// A short plain-text answer that no cache should keep.
    pub fn text(status: StatusCode, message: &str) -> Self {
        Self::new(status, Body::Bytes(Bytes::from(format!("{message}\n"))))
            .with(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .with(header::CACHE_CONTROL, "no-store")
    }

    /// The 404 for hosts and sites this server does not know: it reveals
    /// nothing about what exists.
    pub fn unknown() -> Self {
        Self::text(StatusCode::NOT_FOUND, "not found")
    }

    /// 503 with a retry hint: the store could not be reached.
    pub fn unavailable() -> Self {
        Self::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily unavailable; retry shortly",
        )
        .with(header::RETRY_AFTER, "5")
    }

    pub fn redirect(status: StatusCode, location: &str) -> Self {
        let mut reply = Self::text(status, &format!("redirecting to {location}"));
        match HeaderValue::try_from(location) {
            Ok(value) => reply.insert(header::LOCATION, value),
            Err(_) => return Self::text(StatusCode::INTERNAL_SERVER_ERROR, "invalid redirect target"),
        }
        reply
    }

    /// Adds a header; values are built from trusted strings, so an invalid
    /// one is a bug, logged and skipped rather than sent.
    pub fn with(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        self.set(name, value);
        self
    }

    /// Sets a header, replacing any earlier value.
    pub fn set(&mut self, name: HeaderName, value: impl AsRef<str>) {
        match HeaderValue::try_from(value.as_ref()) {
            Ok(value) => self.insert(name, value),
            Err(_) => tracing::error!(%name, "skipping an invalid header value"),
        }
    }

    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        self.headers.insert(name, value);
    }
}

/// An API error as the proxy writes it: the JSON body, `no-store`,
/// `Retry-After: 5` on 503 and `WWW-Authenticate: Bearer` on 401.
pub trait FailureReply {
    fn into_reply(self) -> Reply;
}

impl FailureReply for ApiFailure {
    fn into_reply(self) -> Reply {
        let mut reply = Reply::json(self.status, &self.body);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            reply.set(header::RETRY_AFTER, "5");
        }
        if self.status == StatusCode::UNAUTHORIZED {
            reply.set(header::WWW_AUTHENTICATE, "Bearer");
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a copy of `headers` regrows its table to take the headers
    /// added on sending.
    fn regrows_when_sent(headers: &HeaderMap) -> bool {
        let mut copy = headers.clone();
        let capacity = copy.capacity();
        for name in [header::CONTENT_LENGTH, header::DATE, header::CONNECTION] {
            copy.insert(name, HeaderValue::from_static("1"));
        }
        copy.insert("x-robots-tag", HeaderValue::from_static("noindex"));
        copy.capacity() != capacity
    }

    #[test]
    fn a_kept_reply_takes_the_headers_added_on_sending_without_regrowing() {
        let mut reply = Reply::new(StatusCode::OK, Body::Empty);
        // Eleven names fill the table a map grows to as they are set.
        for n in 0..11 {
            reply.set(HeaderName::try_from(format!("x-header-{n}")).unwrap(), n.to_string());
        }
        reply
            .headers
            .append(HeaderName::from_static("x-header-0"), HeaderValue::from_static("again"));
        assert!(regrows_when_sent(&reply.headers));

        let kept = reply.clone().with_room_to_send();
        assert_eq!(*kept.headers, *reply.headers);
        assert!(!regrows_when_sent(&kept.headers));
    }
}
