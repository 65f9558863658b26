//! The storage node's HTTP API on a loopback port: every call, and every
//! kind of bad input.

use std::sync::Arc;
use std::time::Duration;

use grove_core::token::Handle;
use grove_node::{NodeLimits, NodeSettings, RunningNode, SegmentOptions};
use grove_objects::store::{MemoryStore, ObjectStore};
use grove_objects::token::Tokens;
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Node {
    base: String,
    root: Handle,
    _dir: tempfile::TempDir,
    _node: RunningNode,
}

async fn start(limits: NodeLimits) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let root = Tokens::new(Arc::clone(&store))
        .issue_root(time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1/sites/blog", listener.local_addr().unwrap());
    let settings = NodeSettings {
        data_dir: dir.path().to_owned(),
        segments: SegmentOptions::named("api-test"),
        limits,
        open_timeout: Duration::from_secs(1),
        replica: None,
    };
    let node = RunningNode::start(settings, store, listener).await.unwrap();
    Node {
        base,
        root,
        _dir: dir,
        _node: node,
    }
}

impl Node {
    async fn post(&self, token: &str, op: &str, body: Value) -> (StatusCode, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/{op}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, token: &str, op_and_query: &str) -> (StatusCode, Value) {
        let response = reqwest::Client::new()
            .get(format!("{}/{op_and_query}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn root(&self) -> &str {
        self.root.reveal()
    }

    async fn grant(&self, path: &str, rights: &[&str], until: time::OffsetDateTime) -> String {
        let until = until.format(&time::format_description::well_known::Rfc3339).unwrap();
        let (status, reply) = self
            .post(
                self.root(),
                "grant",
                json!({ "path": path, "until": until, "rights": rights }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        reply["handle"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn write_read_create_and_trim() {
    let node = start(NodeLimits::default()).await;
    let mut issued = Vec::new();
    for i in 0..5 {
        let (status, reply) = node
            .post(
                node.root(),
                "write",
                json!({ "path": "posts/42/comments", "data": { "n": i } }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let ts = reply["ts"].as_str().expect("timestamps are decimal strings").to_owned();
        issued.push(ts);
    }
    let (status, page) = node
        .get(node.root(), "read?path=posts/42/comments&after=0&limit=2")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["entries"][0], json!({ "ts": issued[0], "data": { "n": 0 } }));
    assert_eq!(page["next"], json!(issued[1]));
    let (_, rest) = node
        .get(node.root(), &format!("read?path=posts/42/comments&after={}", issued[1]))
        .await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 3);
    assert_eq!(rest["next"], Value::Null);

    // Serialized paths: compare-and-append.
    let (status, _) = node
        .post(node.root(), "create", json!({ "path": "doc", "serialized": true }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, first) = node
        .post(node.root(), "write", json!({ "path": "doc", "data": "v1" }))
        .await;
    let (status, conflict) = node
        .post(node.root(), "write", json!({ "path": "doc", "data": "v2" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(conflict["error"], "conflict");
    assert_eq!(conflict["latest"], first["ts"]);
    let (status, _) = node
        .post(
            node.root(),
            "write",
            json!({ "path": "doc", "data": "v2", "after": first["ts"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Trim, then trimmed history is refused with the first available ts.
    let (status, _) = node
        .post(
            node.root(),
            "trim",
            json!({ "path": "posts/42/comments", "before": issued[3] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, trimmed) = node.get(node.root(), "read?path=posts/42/comments&after=0").await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(trimmed["error"], "trimmed");
    assert_eq!(trimmed["first_available"], json!(issued[3]));
}

#[tokio::test]
async fn handles_are_checked_and_bad_input_changes_nothing() {
    let node = start(NodeLimits {
        max_value_bytes: 1024,
        ..NodeLimits::default()
    })
    .await;
    let now = time::OffsetDateTime::now_utc();
    let comments = node
        .grant("posts/42", &["read", "write"], now + time::Duration::hours(1))
        .await;
    let (status, _) = node
        .post(&comments, "write", json!({ "path": "posts/42/comments", "data": 1 }))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Outside the granted path.
    let (status, reply) = node
        .post(&comments, "write", json!({ "path": "posts/43/comments", "data": 1 }))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    // No handle, a forged one, a malformed one.
    let response = reqwest::Client::new()
        .post(format!("{}/write", node.base))
        .json(&json!({ "path": "a", "data": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let forged = format!("grove_{}", "0".repeat(64));
    assert_eq!(
        node.post(&forged, "write", json!({ "path": "a", "data": 1 })).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        node.post("nonsense", "write", json!({ "path": "a", "data": 1 }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Revoked, and expired.
    let short = node
        .grant("posts/42", &["write"], now + time::Duration::seconds(1))
        .await;
    let (status, _) = node.post(node.root(), "revoke", json!({ "handle": comments })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        node.post(&comments, "write", json!({ "path": "posts/42/comments", "data": 2 }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        node.post(&short, "write", json!({ "path": "posts/42/comments", "data": 2 }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Oversized value, malformed after, a future ts, a bad path, bad JSON.
    let big = "x".repeat(2000);
    let (status, reply) = node
        .post(node.root(), "write", json!({ "path": "a", "data": big }))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    let (status, _) = node
        .post(node.root(), "write", json!({ "path": "a", "data": 1, "after": 12 }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = node.get(node.root(), "read?path=a&after=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let future = ((u64::try_from((now + time::Duration::hours(1)).unix_timestamp()).unwrap() * 1000) << 16).to_string();
    let (status, reply) = node
        .post(node.root(), "write", json!({ "path": "a", "data": 1, "after": future }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (status, _) = node
        .post(node.root(), "write", json!({ "path": "../etc", "data": 1 }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = reqwest::Client::new()
        .post(format!("{}/write", node.base))
        .bearer_auth(node.root())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Nothing of that was written.
    let (_, page) = node.get(node.root(), "read?path=posts/42/comments").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let (_, page) = node.get(node.root(), "read?path=a").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn transactions_commit_together_or_not_at_all() {
    let node = start(NodeLimits {
        max_txn_writes: 3,
        ..NodeLimits::default()
    })
    .await;
    let txn = |if_last: Value, writes: Value| json!({ "path": "cart", "if_last_ts": if_last, "writes": writes });
    let (status, first) = node
        .post(
            node.root(),
            "txn",
            txn(
                json!("0"),
                json!([{ "data": { "items": 1 } }, { "path": "cart/total", "data": 10 }]),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let ts = first["ts"].as_str().unwrap();
    for path in ["cart", "cart/total"] {
        let (_, page) = node.get(node.root(), &format!("read?path={path}")).await;
        assert_eq!(page["entries"][0]["ts"], ts, "one timestamp for both writes");
    }
    let (status, conflict) = node
        .post(node.root(), "txn", txn(json!("0"), json!([{ "data": 2 }])))
        .await;
    assert_eq!(
        (status, conflict["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    assert_eq!(conflict["latest"], ts);

    // A handle must be able to write every path it touches: nothing is
    // written when one is outside its grant.
    let now = time::OffsetDateTime::now_utc();
    let cart_only = node
        .grant("cart", &["read", "write"], now + time::Duration::hours(1))
        .await;
    let (status, _) = node
        .post(
            &cart_only,
            "txn",
            txn(json!(ts), json!([{ "data": 3 }, { "path": "orders", "data": 1 }])),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Too many writes, the same path twice, a malformed if_last_ts.
    let (status, _) = node
        .post(
            node.root(),
            "txn",
            txn(json!(ts), json!([{ "data": 1 }, { "path": "a", "data": 1 }, { "path": "b", "data": 1 }, { "path": "c", "data": 1 }])),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, reply) = node
        .post(
            node.root(),
            "txn",
            txn(json!(ts), json!([{ "data": 1 }, { "path": "cart", "data": 2 }])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (status, _) = node
        .post(node.root(), "txn", txn(json!(12), json!([{ "data": 1 }])))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for path in ["cart", "orders", "a"] {
        let (_, page) = node.get(node.root(), &format!("read?path={path}")).await;
        let expected = usize::from(path == "cart");
        assert_eq!(page["entries"].as_array().unwrap().len(), expected, "{path}");
    }
    let (status, _) = node
        .post(node.root(), "txn", txn(json!(ts), json!([{ "data": { "items": 2 } }])))
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Reads SSE events (id, data) from a streaming response until `count`.
async fn events(response: &mut reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let mut id = String::new();
            let mut data = Value::Null;
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("id: ") {
                    id = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(value).unwrap();
                }
            }
            events.push((id, data));
        }
    }
    events
}

#[tokio::test]
async fn watches_stream_every_entry_and_resume_with_last_event_id() {
    let node = start(NodeLimits {
        max_watchers_per_handle: 1,
        ..NodeLimits::default()
    })
    .await;
    let watch = |last: Option<String>| {
        let mut request = reqwest::Client::new()
            .get(format!("{}/watch?path=chat&after=0", node.base))
            .bearer_auth(node.root());
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        request.send()
    };
    let mut stream = watch(None).await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    // One watch per handle here: a second is refused while the first is open.
    assert_eq!(watch(None).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);

    let mut written = Vec::new();
    for i in 0..3 {
        let (_, reply) = node
            .post(node.root(), "write", json!({ "path": "chat", "data": i }))
            .await;
        written.push(reply["ts"].as_str().unwrap().to_owned());
    }
    let seen = events(&mut stream, 3).await;
    assert_eq!(seen.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), written);
    assert_eq!(seen[2].1, json!({ "ts": written[2], "data": 2 }));
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Resuming after the second event gives the third, then what follows.
    let mut resumed = watch(Some(written[1].clone())).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let (_, reply) = node
        .post(node.root(), "write", json!({ "path": "chat", "data": 3 }))
        .await;
    let seen = events(&mut resumed, 2).await;
    assert_eq!(seen[0].0, written[2]);
    assert_eq!(seen[1].0, reply["ts"].as_str().unwrap());
}

#[tokio::test]
async fn requests_over_the_rate_limit_are_refused_with_a_retry_hint() {
    let node = start(NodeLimits {
        requests_per_second: 5,
        ..NodeLimits::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(node.get(node.root(), "read?path=a").await.0);
    }
    assert_eq!(statuses.iter().filter(|status| **status == StatusCode::OK).count(), 5);
    assert_eq!(statuses[7], StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(node.get(node.root(), "read?path=a").await.0, StatusCode::OK);
}

#[tokio::test]
async fn random_credentials_leave_no_rate_limiter_state() {
    let node = start(NodeLimits::default()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/read?path=a", node.base);
    // 100,000 well-formed handles that were never issued, 16 at a time.
    let refused: Vec<usize> = futures::future::join_all((0..16).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut refused = 0;
            for _ in 0..100_000 / 16 {
                let forged = format!("grove_{}", hex::encode(rand::random::<[u8; 32]>()));
                let status = client.get(&url).bearer_auth(forged).send().await.unwrap().status();
                refused += usize::from(status == StatusCode::UNAUTHORIZED);
            }
            refused
        }
    }))
    .await;
    assert_eq!(
        refused.iter().sum::<usize>(),
        100_000 / 16 * 16,
        "every forged handle is refused"
    );
    assert_eq!(
        node._node.api().rate_limited_tokens(),
        0,
        "no state for unauthenticated callers"
    );
    // A real token is counted once it passed its check.
    assert_eq!(node.get(node.root(), "read?path=a").await.0, StatusCode::OK);
    assert_eq!(node._node.api().rate_limited_tokens(), 1);
}

#[tokio::test]
async fn after_takes_a_list_of_timestamps_each_checked() {
    let node = start(NodeLimits::default()).await;
    let write = |after: Value| node.post(node.root(), "write", json!({ "path": "a", "data": 1, "after": after }));
    let (status, first) = write(json!([])).await;
    assert_eq!(status, StatusCode::OK, "an empty list: after nothing");
    let (_, second) = write(first["ts"].clone()).await;
    let ts = |reply: &Value| reply["ts"].as_str().unwrap().parse::<u64>().unwrap();
    let (status, third) = write(json!([first["ts"], second["ts"]])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ts(&third) > ts(&second) && ts(&second) > ts(&first));
    // One element never issued refuses the write, and nothing is written.
    let never = (ts(&third) + 1).to_string();
    let (status, refused) = write(json!([first["ts"], never])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let far = format!("{}", (u64::MAX >> 1));
    assert_eq!(write(json!([far])).await.0, StatusCode::BAD_REQUEST);
    let (_, page) = node.get(node.root(), "read?path=a").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
}
