//! Load generator for the storage node benchmark (`bench/node.sh`): the
//! same client code drives grove's node and etcd, both over HTTP/1.1 with
//! JSON bodies on kept-alive connections (etcd through its built-in
//! gRPC-gateway, `/v3/kv/put` and `/v3/watch`).
//!
//! - `kv token STORE_DIR`: prints an operator token created in a local store.
//! - `kv writes grove|etcd URL TOKEN CLIENTS SECONDS`: each client writes a
//!   256-byte value, waits for the acknowledgement, and writes again.
//!   Prints `writes_per_sec p50_ms p99_ms`.
//! - `kv watch grove|etcd URL TOKEN COUNT`: one watcher, one writer writing
//!   every 10 ms; the delay from sending a write to its event reaching the
//!   watcher. Prints `p50_ms p99_ms`.
//! - `kv first-ack grove|etcd URL,URL... TOKEN`: right after a kill, one
//!   write tried on each URL in turn (grove's redirects to the primary
//!   followed) until one is acknowledged. Prints the milliseconds it took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use grove_objects::store::{LocalStore, ObjectStore};
use grove_objects::token::Tokens;
use serde_json::{Value, json};

const VALUE_BYTES: usize = 256;

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Grove,
    Etcd,
}

/// One kind of server, reached at `url`.
#[derive(Clone)]
struct Server {
    target: Target,
    url: String,
    token: String,
}

impl Server {
    fn write_request(&self, client: &reqwest::Client, key: &str, value: &str) -> reqwest::RequestBuilder {
        match self.target {
            Target::Grove => client
                .post(format!("{}/v1/sites/bench/write", self.url))
                .bearer_auth(&self.token)
                .json(&json!({ "path": key, "data": value })),
            Target::Etcd => client
                .post(format!("{}/v3/kv/put", self.url))
                .json(&json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) })),
        }
    }

    async fn write(&self, client: &reqwest::Client, key: &str, value: &str) {
        let response = self
            .write_request(client, key, value)
            .send()
            .await
            .expect("the write was sent");
        let status = response.status();
        let body = response.bytes().await.expect("the reply was read");
        assert!(
            status.is_success(),
            "write failed: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }

    fn watch_request(&self, client: &reqwest::Client, key: &str) -> reqwest::RequestBuilder {
        match self.target {
            Target::Grove => client
                .get(format!("{}/v1/sites/bench/watch?path={key}&after=0", self.url))
                .bearer_auth(&self.token),
            Target::Etcd => client
                .post(format!("{}/v3/watch", self.url))
                .json(&json!({ "create_request": { "key": BASE64.encode(key) } })),
        }
    }
}

fn value(seed: usize) -> String {
    let mut text = format!("{seed:08}-");
    while text.len() < VALUE_BYTES {
        text.push(char::from(b'a' + u8::try_from(text.len() % 26).expect("small")));
    }
    text
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (fraction * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank].as_secs_f64() * 1000.0
}

async fn writes(server: Server, clients: usize, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|client_id| {
            let server = server.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
                let key = format!("k/{client_id}");
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    server.write(&client, &key, &value(n)).await;
                    latencies.push(started.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "{:.0} {:.2} {:.2}",
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
}

async fn watch(server: Server, count: usize) {
    let client = reqwest::Client::new();
    let key = format!("watched/{}", std::process::id());
    let mut stream = server.watch_request(&client, &key).send().await.unwrap();
    assert!(stream.status().is_success(), "watch refused: {}", stream.status());
    // etcd confirms the watch first; grove's stream is open once answered.
    if server.target == Target::Etcd {
        stream.chunk().await.unwrap();
    }
    let sent_at = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count)));
    let writer = {
        let server = server.clone();
        let sent_at = Arc::clone(&sent_at);
        let key = key.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..count {
                sent_at.lock().unwrap().push(Instant::now());
                server.write(&client, &key, &value(n)).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut delays = Vec::with_capacity(count);
    let mut buffer = Vec::new();
    while delays.len() < count {
        let chunk = stream.chunk().await.unwrap().expect("the watch stream ended");
        buffer.extend_from_slice(&chunk);
        let arrived = Instant::now();
        // Both streams deliver one event per write here: SSE events end in
        // a blank line, the gateway's JSON messages in a newline.
        let separator: &[u8] = if server.target == Target::Grove { b"\n\n" } else { b"\n" };
        while let Some(end) = buffer.windows(separator.len()).position(|window| window == separator) {
            let event: Vec<u8> = buffer.drain(..end + separator.len()).collect();
            let events = count_events(server.target, &event);
            for _ in 0..events {
                let sent = sent_at.lock().unwrap()[delays.len()];
                delays.push(arrived - sent);
            }
        }
    }
    writer.await.unwrap();
    delays.sort();
    println!("{:.2} {:.2}", percentile(&delays, 0.50), percentile(&delays, 0.99));
}

/// Entries one message of the watch stream carries.
fn count_events(target: Target, message: &[u8]) -> usize {
    match target {
        Target::Grove => usize::from(message.starts_with(b"id: ")),
        Target::Etcd => {
            let parsed: Value = serde_json::from_slice(message).unwrap_or(Value::Null);
            parsed["result"]["events"].as_array().map_or(0, Vec::len)
        }
    }
}

/// Milliseconds until one write is acknowledged by any of `urls`.
async fn first_ack(target: Target, urls: &[&str], token: &str) {
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut attempt = 0;
    let mut location: Option<String> = None;
    loop {
        let url = location.take().unwrap_or_else(|| urls[attempt % urls.len()].to_owned());
        attempt += 1;
        let server = Server {
            target,
            url: url.trim_end_matches("/v1/sites/bench/write").to_owned(),
            token: token.to_owned(),
        };
        let request = server
            .write_request(&client, "failover", &value(attempt))
            .header("idempotency-key", "first-ack");
        if let Ok(reply) = request.send().await {
            if reply.status().is_success() {
                println!("{:.0}", started.elapsed().as_secs_f64() * 1000.0);
                return;
            }
            if reply.status() == reqwest::StatusCode::TEMPORARY_REDIRECT {
                location = reply
                    .headers()
                    .get("location")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                continue;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no write was acknowledged in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: kv token STORE_DIR | kv writes grove|etcd URL TOKEN CLIENTS SECONDS | kv watch grove|etcd URL TOKEN COUNT | kv first-ack grove|etcd URL,URL... TOKEN";
    let server = |target: &str, url: &str, token: &str| Server {
        target: match target {
            "grove" => Target::Grove,
            "etcd" => Target::Etcd,
            other => panic!("unknown target {other}; {usage}"),
        },
        url: url.to_owned(),
        token: token.to_owned(),
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["token", store_dir] => {
            let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(store_dir).unwrap());
            let until = time::OffsetDateTime::now_utc() + time::Duration::days(1);
            let handle = Tokens::new(store).issue_root(until).await.unwrap();
            println!("{}", handle.reveal());
        }
        ["writes", target, url, token, clients, seconds] => {
            writes(
                server(target, url, token),
                clients.parse().unwrap(),
                seconds.parse().unwrap(),
            )
            .await;
        }
        ["watch", target, url, token, count] => {
            watch(server(target, url, token), count.parse().unwrap()).await;
        }
        ["first-ack", target, urls, token] => {
            let urls: Vec<&str> = urls.split(',').collect();
            first_ack(server(target, urls[0], token).target, &urls, token).await;
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
