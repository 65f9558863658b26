//! The standalone `grove-storage` binary as a real process on a loopback
//! port: it serves the API with tokens from a shared local store, and keeps
//! its log across a SIGKILL and restart.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove_core::token::Handle;
use grove_objects::store::{LocalStore, ObjectStore};
use grove_objects::token::Tokens;
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node process, killed when dropped (also when a test fails).
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(port: u16, data: &std::path::Path, store: &std::path::Path) -> Node {
    let child = Command::new(env!("CARGO_BIN_EXE_grove-storage"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--seal-interval-ms", "100"])
        .arg("--data-dir")
        .arg(data)
        .arg("--store-dir")
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Serving means answering HTTP, not only accepting: a connection taken
    // while the process starts up (or by whatever else held the port) is
    // not proof that the node is there.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answers_http(port) {
        assert!(Instant::now() < deadline, "grove-storage did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Node(child)
}

/// Whether something on `port` answers an HTTP request.
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ")
}

/// A local store (the one the publish API's host would share) holding an
/// operator token.
async fn store_with_operator() -> (tempfile::TempDir, Handle) {
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(store_dir.path()).unwrap());
    let root = Tokens::new(store)
        .issue_root(time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .await
        .unwrap();
    (store_dir, root)
}

#[tokio::test]
async fn the_node_binary_serves_shared_tokens_and_survives_a_kill() {
    let data = tempfile::tempdir().unwrap();
    let (store_dir, root) = store_with_operator().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/v1/sites/blog");
    // No pooled connections: the node is killed and restarted on the same port.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let write = |value: i64| {
        client
            .post(format!("{base}/write"))
            .bearer_auth(root.reveal())
            .json(&json!({ "path": "counter", "data": value }))
            .send()
    };

    let node = spawn(port, data.path(), store_dir.path());
    let mut acked = Vec::new();
    for value in 0..3 {
        let reply: Value = write(value).await.unwrap().json().await.unwrap();
        acked.push(reply["ts"].as_str().unwrap().to_owned());
    }
    drop(node); // SIGKILL

    let _node = spawn(port, data.path(), store_dir.path());
    let stored: Vec<String> = entries(&client, &base, root.reveal(), "counter")
        .await
        .into_iter()
        .map(|(ts, _)| ts)
        .collect();
    assert_eq!(stored, acked);
    let reply: Value = write(3).await.unwrap().json().await.unwrap();
    let next: u64 = reply["ts"].as_str().unwrap().parse().unwrap();
    assert!(next > acked.last().unwrap().parse::<u64>().unwrap());
}

async fn entries(client: &reqwest::Client, base: &str, token: &str, path: &str) -> Vec<(String, Value)> {
    let page: Value = client
        .get(format!("{base}/read?path={path}&limit=1000"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["ts"].as_str().unwrap().to_owned(), entry["data"].clone()))
        .collect()
}

#[tokio::test]
async fn a_node_on_an_empty_disk_rebuilds_from_the_store() {
    let (store_dir, root) = store_with_operator().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/v1/sites/blog");
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let post = |op: &'static str, body: Value| {
        client
            .post(format!("{base}/{op}"))
            .bearer_auth(root.reveal())
            .json(&body)
            .send()
    };

    let first_disk = tempfile::tempdir().unwrap();
    let node = spawn(port, first_disk.path(), store_dir.path());
    assert!(
        post("create", json!({ "path": "doc", "serialized": true }))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    for i in 0..50 {
        let status = post("write", json!({ "path": "chat", "data": { "i": i } }))
            .await
            .unwrap()
            .status();
        assert!(status.is_success());
    }
    let txn: Value = post(
        "txn",
        json!({ "path": "doc", "if_last_ts": "0", "writes": [{ "data": "v1" }] }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let before = entries(&client, &base, root.reveal(), "chat").await;
    // A graceful stop ships what is left.
    let status = Command::new("kill")
        .args(["-TERM", &node.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut node = node;
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "grove-storage did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(first_disk);

    // A new machine: an empty data directory, the same store and name.
    let second_disk = tempfile::tempdir().unwrap();
    let _node = spawn(port, second_disk.path(), store_dir.path());
    assert_eq!(entries(&client, &base, root.reveal(), "chat").await, before);
    let doc = entries(&client, &base, root.reveal(), "doc").await;
    assert_eq!(doc, vec![(txn["ts"].as_str().unwrap().to_owned(), json!("v1"))]);
    // The path is still serialized, and time goes on above the old history.
    let stale = post("write", json!({ "path": "doc", "data": "v2" })).await.unwrap();
    assert_eq!(stale.status(), reqwest::StatusCode::CONFLICT);
    let next: Value = post("write", json!({ "path": "chat", "data": "new" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newest: u64 = before.last().unwrap().0.parse().unwrap();
    assert!(next["ts"].as_str().unwrap().parse::<u64>().unwrap() > newest);
}
