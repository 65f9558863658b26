//! Dynamic calls through the proxy: `/_grove/api/v1/...` on a site's host
//! reaches the embedded storage node (or the site's node elsewhere), watch
//! streams arrive unbuffered, failures keep the API's JSON shape, and a
//! graceful upgrade hands the embedded node over with every write kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use grove_node::{NodeLimits, NodeSettings, RunningNode, SegmentOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

use grove_testkit::host::Host;

async fn call(client: &reqwest::Client, url: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = match body {
        Some(body) => client.post(url).json(&body),
        None => client.get(url),
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

/// Reads server-sent events from `response` until `count` entries came.
async fn next_events(response: &mut reqwest::Response, buffer: &mut String, count: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < count {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|line| line.strip_prefix("data: ")) {
                events.push(serde_json::from_str(data).unwrap());
            }
        }
        if events.len() >= count {
            break;
        }
        let chunk = response.chunk().await.unwrap().expect("the watch ended early");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    events
}

#[tokio::test]
async fn site_hosts_reach_the_embedded_node_and_watches_stream_unbuffered() {
    let host = Host::local("");
    let proxy = &host.proxy;
    let client = proxy.client(&["demo.localhost", "blog.localhost", "nowhere.example"]);
    let api = |site: &str, call: &str| proxy.url(&format!("{site}.localhost"), &format!("/_grove/api/v1/{call}"));

    let (status, written) = call(
        &client,
        &api("demo", "write"),
        &host.token,
        Some(json!({ "path": "posts/1/comments", "data": { "text": "hi" } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{written}");
    let (status, page) = call(
        &client,
        &api("demo", "read?path=posts/1/comments&after=0"),
        &host.token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["entries"][0]["ts"], written["ts"]);
    // Sites are separate: the same path on another site's host is empty.
    let (_, other) = call(&client, &api("blog", "read?path=posts/1/comments"), &host.token, None).await;
    assert_eq!(other["entries"], json!([]));

    // A watch through the proxy: an entry written later arrives at once,
    // not when some buffer fills.
    let mut watch = client
        .get(api(
            "demo",
            &format!("watch?path=posts/1/comments&after={}", written["ts"].as_str().unwrap()),
        ))
        .bearer_auth(&host.token)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    assert_eq!(watch.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let started = Instant::now();
    let (_, later) = call(
        &client,
        &api("demo", "write"),
        &host.token,
        Some(json!({ "path": "posts/1/comments", "data": "later" })),
    )
    .await;
    let events = tokio::time::timeout(Duration::from_secs(5), next_events(&mut watch, &mut buffer, 1))
        .await
        .expect("the event was held back");
    assert_eq!(events[0]["ts"], later["ts"]);
    assert_eq!(events[0]["data"], "later");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    // A grant for one site's path works only there.
    let until = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, granted) = call(
        &client,
        &api("demo", "grant"),
        &host.token,
        Some(json!({ "path": "posts", "until": until, "rights": ["read", "write"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{granted}");
    let visitor = granted["handle"].as_str().unwrap();
    let write = |site: &'static str| {
        let client = client.clone();
        let url = api(site, "write");
        async move { call(&client, &url, visitor, Some(json!({ "path": "posts/2", "data": 1 }))).await }
    };
    assert_eq!(write("demo").await.0, StatusCode::OK);
    let (status, refused) = write("blog").await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    // Errors keep the JSON shape: no such call, an unknown host, no token.
    let (status, reply) = call(
        &client,
        &proxy.url("demo.localhost", "/_grove/api/v2/read"),
        &host.token,
        None,
    )
    .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_route"))
    );
    let unknown = client
        .get(proxy.url("nowhere.example", "/_grove/api/v1/read?path=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let response = client.get(api("demo", "read?path=a")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "unauthorized");
}

#[tokio::test]
async fn sites_in_the_directory_go_to_their_own_node() {
    let remote = grove_testkit::ports::reserve();
    let dead = grove_testkit::ports::reserve();
    let (remote_port, dead_port) = (remote.port(), dead.port());
    let host = Host::local(&format!(
        "[node.directory]\nfar = \"127.0.0.1:{remote_port}\"\ngone = \"127.0.0.1:{dead_port}\"\n"
    ));
    // The remote node shares the store, so the operator token works there too.
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", remote_port)).await.unwrap();
    let settings = NodeSettings {
        data_dir: data.path().to_owned(),
        segments: SegmentOptions::named("far-node"),
        limits: NodeLimits::default(),
        open_timeout: Duration::from_secs(1),
        replica: None,
    };
    let remote = RunningNode::start(settings, Arc::clone(&host.store), listener)
        .await
        .unwrap();
    let client = host
        .proxy
        .client(&["far.localhost", "gone.localhost", "demo.localhost"]);
    let url = |site: &str, call: &str| {
        host.proxy
            .url(&format!("{site}.localhost"), &format!("/_grove/api/v1/{call}"))
    };

    let (status, written) = call(
        &client,
        &url("far", "write"),
        &host.token,
        Some(json!({ "path": "chat", "data": "over there" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{written}");
    // It is in the remote node, asked directly.
    let (_, direct) = call(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{remote_port}/v1/sites/far/read?path=chat"),
        &host.token,
        None,
    )
    .await;
    assert_eq!(direct["entries"][0]["ts"], written["ts"]);
    // Unmapped sites still use the embedded node.
    let (status, _) = call(
        &client,
        &url("demo", "write"),
        &host.token,
        Some(json!({ "path": "chat", "data": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, direct) = call(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{remote_port}/v1/sites/demo/read?path=chat"),
        &host.token,
        None,
    )
    .await;
    assert_eq!(direct["entries"], json!([]));

    // A node that is down: a JSON 502, quickly.
    let started = Instant::now();
    let (status, reply) = call(&client, &url("gone", "read?path=chat"), &host.token, None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("node_unreachable"))
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    remote.stop().await;
}

#[tokio::test]
async fn a_graceful_upgrade_hands_the_embedded_node_over() {
    let mut host = Host::local("");
    let addr = host.proxy.addr;
    let token = host.token.clone();
    let url = host.proxy.url("demo.localhost", "/_grove/api/v1/write");
    // A writer on fresh connections throughout the upgrade, so each write
    // meets whichever process holds the listener.
    let writer = tokio::spawn(async move {
        let mut acked: Vec<u64> = Vec::new();
        let mut failures = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(12);
        let mut n = 0;
        while Instant::now() < deadline {
            let client = reqwest::Client::builder()
                .resolve("demo.localhost", addr)
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "path": "counter", "data": n }))
                .send()
                .await;
            match response {
                Ok(response) if response.status() == StatusCode::OK => {
                    let reply: Value = response.json().await.unwrap();
                    acked.push(reply["ts"].as_str().unwrap().parse().unwrap());
                }
                Ok(response) => failures.push(format!("{}: {}", response.status(), response.text().await.unwrap())),
                Err(error) => failures.push(error.to_string()),
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (acked, failures)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut successor = host.proxy.spawn_upgrade();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let status = std::process::Command::new("kill")
        .args(["-QUIT", &host.proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (acked, failures) = writer.await.unwrap();
    assert!(
        host.proxy.wait_exit(Duration::from_secs(30)),
        "the old process did not exit"
    );
    assert!(successor.try_wait().unwrap().is_none(), "the new process runs");
    assert!(failures.is_empty(), "writes failed during the hand-over: {failures:?}");
    assert!(acked.len() > 100, "only {} writes were made", acked.len());
    assert!(
        acked.windows(2).all(|pair| pair[0] < pair[1]),
        "timestamps only increase"
    );

    // The new process holds every write either process acknowledged.
    let client = reqwest::Client::builder()
        .resolve("demo.localhost", addr)
        .build()
        .unwrap();
    let (status, page) = call(
        &client,
        &host
            .proxy
            .url("demo.localhost", "/_grove/api/v1/read?path=counter&limit=1000"),
        &host.token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let stored: Vec<u64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["ts"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(stored, acked);
    successor.kill().unwrap();
    successor.wait().unwrap();
}

#[tokio::test]
async fn a_node_log_held_by_another_process_is_refused_clearly_and_pages_still_serve() {
    let first = Host::local("");
    let data_dir = first.proxy.state.path().join("node");
    // A second proxy pointed at the same log: it waits 1 s for it, then
    // gives up on the node, not on serving.
    let second = Host::local(&format!(
        "[node]\ndata_dir = \"{}\"\nhandover_timeout_secs = 1\n",
        data_dir.display()
    ));
    let dir = grove_testkit::proxy::site_dir(&[("index.html", "still here")]);
    grove_testkit::proxy::publish(Arc::clone(&second.store), "demo", dir.path()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let client = second.proxy.client(&["demo.localhost"]);
    let (status, reply) = call(
        &client,
        &second.proxy.url("demo.localhost", "/_grove/api/v1/read?path=a"),
        &second.token,
        None,
    )
    .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("node_unavailable"))
    );
    let message = reply["message"].as_str().unwrap();
    assert!(message.contains("open in another process"), "{message}");
    let page = client
        .get(second.proxy.url("demo.localhost", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.text().await.unwrap(), "still here");
    // The first proxy's node is untouched.
    let first_client = first.proxy.client(&["demo.localhost"]);
    let (status, _) = call(
        &first_client,
        &first.proxy.url("demo.localhost", "/_grove/api/v1/write"),
        &first.token,
        Some(json!({ "path": "a", "data": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_etcd_directory_writes_through_the_proxy_survive_a_primary_failover() {
    use grove_testkit::storage::StorageCluster;
    let storage = StorageCluster::start(grove_testkit::binaries::binary("grove-node", "grove-storage")).await;
    let endpoints = storage
        .etcd
        .endpoints
        .iter()
        .map(|endpoint| format!("\"{endpoint}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let host = Host::local(&format!(
        "[node]\nembedded = false\n[node.directory]\netcd = [{endpoints}]\n"
    ));
    let (port_a, port_b) = (grove_testkit::ports::reserve(), grove_testkit::ports::reserve());
    let store = host.proxy.store_dir();
    let mut nodes = std::collections::HashMap::from([
        ("a", storage.node("a", "eu", port_a.port(), &store)),
        ("b", storage.node("b", "us", port_b.port(), &store)),
    ]);
    storage.wait_registered(&["a", "b"]).await;
    let client = host.proxy.client(&["chat.localhost"]);
    let url = |call: &str| host.proxy.url("chat.localhost", &format!("/_grove/api/v1/{call}"));

    // The proxy places the site on the node its name ranks first; that node
    // becomes primary, the other its backup.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let (status, written) = call(
            &client,
            &url("write"),
            &host.token,
            Some(json!({ "path": "log", "data": 1 })),
        )
        .await;
        if status == StatusCode::OK {
            break written;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never reached a primary: {status} {written}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let placed = storage
        .wait_for("chat", "the backup in sync", |placed| placed.record.in_sync.len() == 2)
        .await;
    let primary = placed.record.primary.clone();
    nodes.get_mut(primary.as_str()).unwrap().kill();

    // The next write waits for the takeover and lands on the new primary;
    // the proxy sends it there with an idempotency key of its own.
    let started = Instant::now();
    let (status, second) = call(
        &client,
        &url("write"),
        &host.token,
        Some(json!({ "path": "log", "data": 2 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}\n{}", storage.logs());
    assert!(
        started.elapsed() < grove_testkit::storage::LEASE_TTL + Duration::from_secs(5),
        "the write waited {:?}",
        started.elapsed()
    );
    let placed = storage
        .wait_for("chat", "a new primary", |placed| placed.record.primary != primary)
        .await;
    assert_eq!(placed.record.backup.as_deref(), Some(primary.as_str()));

    let (status, page) = call(&client, &format!("{}?path=log", url("read")), &host.token, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let stamps: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["ts"].as_str().unwrap())
        .collect();
    assert_eq!(stamps, [first["ts"].as_str().unwrap(), second["ts"].as_str().unwrap()]);
}
