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

impl Request<'_> {
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
