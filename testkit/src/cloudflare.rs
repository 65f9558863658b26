//! A fake of Cloudflare's purge API (`POST /client/v4/zones/{zone}/purge_cache`)
//! on 127.0.0.1 that enforces what the documentation promises:
//! - bearer-token authentication, and only the configured zone;
//! - the JSON shape: an object with exactly one of `tags`, `hosts`,
//!   `prefixes`, `files` (non-empty arrays of strings) or `purge_everything`;
//! - at most `max_items` tags (or hosts, prefixes, files) per request, and
//!   tags of at most 1024 characters, printable ASCII without spaces;
//! - a token-bucket rate limit answered with 429 and `Retry-After`;
//! - and, on demand, 5xx answers and stalls, as a real API has.
//!
//! Replies use Cloudflare's envelope: `{"success", "errors", "messages", "result"}`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// Longest tag Cloudflare accepts.
pub const MAX_TAG_CHARS: usize = 1024;

/// What the fake enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub zone_id: String,
    pub token: String,
    pub requests_per_minute: u32,
    pub burst: u32,
    /// Most tags, hosts, prefixes or files in one request.
    pub max_items: usize,
}

impl Default for Limits {
    /// Cloudflare's Free plan.
    fn default() -> Self {
        Self {
            zone_id: "0123456789abcdef0123456789abcdef".to_owned(),
            token: "cf-test-token".to_owned(),
            requests_per_minute: 5,
            burst: 25,
            max_items: 100,
        }
    }
}

/// One purge the fake accepted.
#[derive(Debug, Clone)]
pub struct Purge {
    pub at: Instant,
    pub tags: Vec<String>,
    pub hosts: Vec<String>,
}

/// A fault to answer the next request with.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer with this 5xx status.
    Status(u16),
    /// Answer 429 with `Retry-After` of this many seconds.
    Throttle(u64),
    /// Wait this long, then answer 504 without purging: longer than the
    /// client's timeout, it is a timeout.
    Stall(Duration),
}

#[derive(Debug)]
struct State {
    limits: Limits,
    tokens: f64,
    refilled: Instant,
    faults: VecDeque<Fault>,
    purges: Vec<Purge>,
    /// Every refusal: status and message.
    refusals: Vec<(u16, String)>,
    requests: usize,
}

impl State {
    /// Takes a token, or says how many seconds until there is one.
    fn take_token(&mut self, now: Instant) -> Result<(), u64> {
        let per_sec = f64::from(self.limits.requests_per_minute) / 60.0;
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(self.limits.burst));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / per_sec).ceil() as u64)
        }
    }
}

/// A running fake, serving until dropped.
pub struct FakeCloudflare {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCloudflare {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeCloudflare {
    /// Starts on a free loopback port, on the current tokio runtime.
    pub async fn start(limits: Limits) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("a socket address"), limits).await
    }

    pub async fn start_on(addr: SocketAddr, limits: Limits) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            tokens: f64::from(limits.burst),
            refilled: Instant::now(),
            limits,
            faults: VecDeque::new(),
            purges: Vec::new(),
            refusals: Vec::new(),
            requests: 0,
        }));
        let shared = Arc::clone(&state);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(Arc::clone(&state), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, server })
    }

    /// The `api_base` to configure: `http://127.0.0.1:<port>/client/v4`.
    pub fn api_base(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers the next requests with these faults, in order.
    pub fn inject(&self, faults: &[Fault]) {
        self.state().faults.extend(faults.iter().copied());
    }

    /// Every purge accepted, in order.
    pub fn purges(&self) -> Vec<Purge> {
        self.state().purges.clone()
    }

    /// Every tag purged, in order, repeats included.
    pub fn purged_tags(&self) -> Vec<String> {
        self.state()
            .purges
            .iter()
            .flat_map(|purge| purge.tags.clone())
            .collect()
    }

    /// Every refusal (status and message), injected faults excluded.
    pub fn refusals(&self) -> Vec<(u16, String)> {
        self.state().refusals.clone()
    }

    /// Requests received, whatever their answer.
    pub fn requests(&self) -> usize {
        self.state().requests
    }
}

async fn answer(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let fault = {
        let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.requests += 1;
        state.faults.pop_front()
    };
    match fault {
        Some(Fault::Status(status)) => {
            return Ok(envelope(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Some((10_000 + u32::from(status), "injected failure")),
                None,
            ));
        }
        Some(Fault::Throttle(seconds)) => {
            let mut response = envelope(StatusCode::TOO_MANY_REQUESTS, Some((10_429, "injected throttle")), None);
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, seconds.into());
            return Ok(response);
        }
        Some(Fault::Stall(duration)) => {
            tokio::time::sleep(duration).await;
            return Ok(envelope(
                StatusCode::GATEWAY_TIMEOUT,
                Some((10_504, "injected stall")),
                None,
            ));
        }
        None => {}
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let reply = purge(&mut state, &parts, &body);
    Ok(match reply {
        Ok(id) => envelope(StatusCode::OK, None, Some(json!({ "id": id }))),
        Err(refusal) => {
            state.refusals.push((refusal.status.as_u16(), refusal.message.clone()));
            let mut response = envelope(refusal.status, Some((refusal.code, &refusal.message)), None);
            if let Some(seconds) = refusal.retry_after {
                response
                    .headers_mut()
                    .insert(hyper::header::RETRY_AFTER, seconds.into());
            }
            response
        }
    })
}

/// A request the API refuses: status, Cloudflare error code and message.
struct Refusal {
    status: StatusCode,
    code: u32,
    message: String,
    retry_after: Option<u64>,
}

fn purge(state: &mut State, parts: &hyper::http::request::Parts, body: &[u8]) -> Result<String, Refusal> {
    let limits = state.limits.clone();
    let refuse = |status, code, message: &str| {
        Err(Refusal {
            status,
            code,
            message: message.to_owned(),
            retry_after: None,
        })
    };
    let expected_path = format!("/client/v4/zones/{}/purge_cache", limits.zone_id);
    if parts.method != Method::POST || !parts.uri.path().starts_with("/client/v4/zones/") {
        return refuse(StatusCode::NOT_FOUND, 7000, "No route for that URI");
    }
    let authorized = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == format!("Bearer {}", limits.token));
    if !authorized {
        return refuse(StatusCode::FORBIDDEN, 10_000, "Authentication error");
    }
    if parts.uri.path() != expected_path {
        return refuse(
            StatusCode::NOT_FOUND,
            7003,
            "Could not route to the zone, perhaps your object identifier is invalid?",
        );
    }
    let json_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !json_type {
        return refuse(
            StatusCode::BAD_REQUEST,
            6003,
            "Invalid request headers: Content-Type must be application/json",
        );
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return refuse(StatusCode::BAD_REQUEST, 6007, "Malformed JSON in request body");
    };
    if fields.len() != 1 {
        return refuse(
            StatusCode::BAD_REQUEST,
            1012,
            "Request must contain exactly one of tags, hosts, prefixes, files or purge_everything",
        );
    }
    let (kind, value) = fields.iter().next().expect("one field");
    let items: Vec<String> = match (kind.as_str(), value) {
        ("purge_everything", Value::Bool(true)) => Vec::new(),
        ("tags" | "hosts" | "prefixes" | "files", Value::Array(items)) if !items.is_empty() => {
            let strings: Option<Vec<String>> = items.iter().map(|item| item.as_str().map(str::to_owned)).collect();
            match strings {
                Some(strings) => strings,
                None => return refuse(StatusCode::BAD_REQUEST, 1012, "Every item must be a string"),
            }
        }
        _ => return refuse(StatusCode::BAD_REQUEST, 1012, "Unknown or empty purge field"),
    };
    if items.len() > limits.max_items {
        return refuse(
            StatusCode::BAD_REQUEST,
            1075,
            &format!("At most {} {kind} may be purged in one request", limits.max_items),
        );
    }
    if kind == "tags" {
        for tag in &items {
            if tag.len() > MAX_TAG_CHARS {
                return refuse(StatusCode::BAD_REQUEST, 1076, "A tag is longer than 1024 characters");
            }
            if tag.is_empty() || !tag.bytes().all(|byte| byte.is_ascii_graphic()) {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    1077,
                    "Tags must be printable ASCII without spaces",
                );
            }
        }
    }
    if let Err(seconds) = state.take_token(Instant::now()) {
        return Err(Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: 10_429,
            message: "Rate limited: too many purge requests".to_owned(),
            retry_after: Some(seconds),
        });
    }
    let mut purge = Purge {
        at: Instant::now(),
        tags: Vec::new(),
        hosts: Vec::new(),
    };
    match kind.as_str() {
        "tags" => purge.tags = items,
        "hosts" => purge.hosts = items,
        _ => {}
    }
    state.purges.push(purge);
    Ok(format!("{:032x}", state.purges.len()))
}

fn envelope(status: StatusCode, error: Option<(u32, &str)>, result: Option<Value>) -> Response<Full<Bytes>> {
    let errors: Vec<Value> = error
        .map(|(code, message)| json!({ "code": code, "message": message }))
        .into_iter()
        .collect();
    let body = json!({
        "success": status.is_success(),
        "errors": errors,
        "messages": [],
        "result": result,
    });
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}
