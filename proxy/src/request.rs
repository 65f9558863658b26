//! The parts of an HTTP request grove's handlers read, borrowed from
//! Pingora's request header so that handling allocates nothing for them.

use http::{HeaderMap, Method};

/// The parts of a request the server looks at.
pub struct Request<'a> {
    pub method: &'a Method,
    pub host: Option<&'a str>,
    /// Path of the URI, still percent-encoded.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl<'a> Request<'a> {
    /// `authority` is the request target's, when the target is in absolute
    /// form: it stands for the host over any `Host` field (RFC 9112 §3.2.2).
    pub fn new(
        method: &'a Method,
        authority: Option<&'a str>,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
    ) -> Self {
        let host = authority.or_else(|| headers.get(http::header::HOST).and_then(|host| host.to_str().ok()));
        Self {
            method,
            host,
            path,
            query,
            headers,
        }
    }

    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The first value of the query parameter `name`, as it is written.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query?
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }
}
