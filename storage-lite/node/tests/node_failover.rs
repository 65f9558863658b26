//! Failover of real `grove-storage` processes on loopback, with Debian's
//! etcd as a three-member cluster holding the directory: a primary killed
//! or paused mid-writes, a backup lost and back, and retried writes.
//! Writers log every acknowledgement; the checks are on those logs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove_core::token::Handle;
use grove_testkit::ports::{Reserved, reserve};
use grove_testkit::storage::{LEASE_TTL, Process, StorageCluster};

#[path = "support/linearizability.rs"]
mod linearizability;
use grove_directory::Placed;
use grove_objects::store::{LocalStore, ObjectStore};
use grove_objects::token::Tokens;
use linearizability::{Call, Op, linearizable};
use serde_json::{Value, json};

/// One cluster at a time: three etcd members and two nodes per test are
/// already a load for a 2-core machine, and lease timing is what these
/// tests measure.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The shared store with an operator token, and the storage cluster.
struct Cluster {
    storage: StorageCluster,
    root: Handle,
    _store: tempfile::TempDir,
    _ports: Vec<Reserved>,
    /// Last, so the next test starts once this one's processes are gone.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    async fn new() -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let store = tempfile::tempdir().unwrap();
        let tokens: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(store.path()).unwrap());
        let root = Tokens::new(tokens)
            .issue_root(time::OffsetDateTime::now_utc() + time::Duration::days(1))
            .await
            .unwrap();
        Self {
            storage: StorageCluster::start(env!("CARGO_BIN_EXE_grove-storage").into()).await,
            root,
            _store: store,
            _ports: Vec::new(),
            _turn: turn,
        }
    }

    fn port(&mut self) -> u16 {
        let reserved = reserve();
        let port = reserved.port();
        self._ports.push(reserved);
        port
    }

    fn node(&self, name: &str, region: &str, port: u16) -> Process {
        self.storage.node(name, region, port, self._store.path())
    }

    async fn wait_for(&self, site: &str, what: &str, done: impl Fn(&Placed) -> bool) -> Placed {
        self.storage.wait_for(site, what, done).await
    }

    fn logs(&self) -> String {
        self.storage.logs()
    }
}

/// One acknowledged write: its value, its timestamp, which node answered
/// and when.
#[derive(Debug, Clone)]
struct Ack {
    value: String,
    ts: u64,
    by: u16,
    /// When the acknowledged attempt was sent: a request sent after a node
    /// was killed and reaped cannot have reached it, where one answered
    /// just before may still be read after.
    sent: Instant,
    at: Instant,
}

/// Writes `value` with `key` until some node acknowledges it, trying
/// `ports` in turn (redirects to the primary are followed).
async fn write_until_acknowledged(
    client: &reqwest::Client,
    ports: &[u16],
    token: &str,
    path: &str,
    value: &str,
    key: &str,
) -> Ack {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0usize;
    let mut redirected = None;
    loop {
        let url = redirected.take().unwrap_or_else(|| {
            attempt += 1;
            format!("http://127.0.0.1:{}/v1/sites/blog/write", ports[attempt % ports.len()])
        });
        let sent_at = Instant::now();
        let sent = client
            .post(&url)
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&json!({ "path": path, "data": value }))
            .send()
            .await;
        // A redirect names the primary; the token is sent there again
        // (HTTP clients drop it on a redirect to another port).
        if let Ok(reply) = &sent
            && reply.status() == 307
        {
            redirected = reply
                .headers()
                .get("location")
                .and_then(|location| location.to_str().ok())
                .map(str::to_owned);
            continue;
        }
        if let Ok(reply) = sent
            && reply.status().is_success()
        {
            let by = reply.url().port().unwrap();
            let body: Value = reply.json().await.unwrap();
            return Ack {
                value: value.to_owned(),
                ts: body["ts"].as_str().unwrap().parse().unwrap(),
                by,
                sent: sent_at,
                at: Instant::now(),
            };
        }
        assert!(Instant::now() < deadline, "{value} was never acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every entry of `path`, as (ts, value), from the first of `ports` that
/// answers, following redirects.
async fn entries(client: &reqwest::Client, ports: &[u16], token: &str, path: &str) -> Vec<(u64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut all = Vec::new();
    let mut after = "0".to_owned();
    let mut attempt = 0;
    loop {
        let port = ports[attempt % ports.len()];
        let mut url = format!("http://127.0.0.1:{port}/v1/sites/blog/read?path={path}&after={after}&limit=1000");
        let mut reply = client.get(&url).bearer_auth(token).send().await;
        if let Ok(redirect) = &reply
            && redirect.status() == 307
            && let Some(location) = redirect.headers().get("location").and_then(|value| value.to_str().ok())
        {
            url = location.to_owned();
            reply = client.get(&url).bearer_auth(token).send().await;
        }
        let Ok(reply) = reply
            .map_err(|_| ())
            .and_then(|reply| reply.error_for_status().map_err(|_| ()))
        else {
            assert!(Instant::now() < deadline, "no node answered the read");
            attempt += 1;
            all.clear();
            after = "0".to_owned();
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let page: Value = reply.json().await.unwrap();
        for entry in page["entries"].as_array().unwrap() {
            all.push((
                entry["ts"].as_str().unwrap().parse().unwrap(),
                entry["data"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return all,
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Runs 8 writers of `per_writer` writes each; `during` runs alongside.
async fn writers(cluster: &Cluster, ports: [u16; 2], per_writer: usize) -> Vec<Vec<Ack>> {
    let token = cluster.root.reveal().to_owned();
    let tasks: Vec<_> = (0..8)
        .map(|writer| {
            let token = token.clone();
            tokio::spawn(async move {
                let client = client();
                let mut acks = Vec::new();
                for i in 0..per_writer {
                    let value = format!("w{writer}-{i}");
                    let key = format!("key-{value}");
                    acks.push(write_until_acknowledged(&client, &ports, &token, "log", &value, &key).await);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                acks
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.unwrap());
    }
    all
}

/// Every acknowledged write is stored exactly once, with the timestamp it
/// was acknowledged with, and each writer's timestamps increase.
fn check_acknowledged(cluster: &Cluster, acks: &[Vec<Ack>], stored: &[(u64, String)]) {
    let by_value: HashMap<&str, Vec<u64>> = stored.iter().fold(HashMap::new(), |mut map, (ts, value)| {
        map.entry(value.as_str()).or_default().push(*ts);
        map
    });
    for writer in acks {
        for pair in writer.windows(2) {
            assert!(pair[0].ts < pair[1].ts, "a writer's timestamps went back: {pair:?}");
        }
        for ack in writer {
            assert_eq!(
                by_value.get(ack.value.as_str()).map(Vec::as_slice),
                Some(&[ack.ts][..]),
                "acknowledged {ack:?} is not stored once with its timestamp\n{}",
                cluster.logs()
            );
        }
    }
    for pair in stored.windows(2) {
        assert!(pair[0].0 < pair[1].0, "the log's timestamps are not increasing");
    }
}

async fn placed_pair(cluster: &mut Cluster) -> (Process, Process, [u16; 2]) {
    let (port_a, port_b) = (cluster.port(), cluster.port());
    let a = cluster.node("a", "eu", port_a);
    let b = cluster.node("b", "us", port_b);
    // Both registered before the first write, so the site gets a backup.
    cluster.storage.wait_registered(&["a", "b"]).await;
    let client = client();
    let token = cluster.root.reveal();
    write_until_acknowledged(&client, &[port_a], token, "log", "first", "first").await;
    let placed = cluster
        .wait_for("blog", "the backup in sync", |placed| placed.record.in_sync.len() == 2)
        .await;
    assert_eq!(placed.record.primary, "a");
    assert_eq!(placed.record.backup.as_deref(), Some("b"));
    (a, b, [port_a, port_b])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_primary_loses_no_acknowledged_write_and_its_backup_takes_over() {
    let mut cluster = Cluster::new().await;
    let (mut a, _b, ports) = placed_pair(&mut cluster).await;
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        a.kill(); // SIGKILL
        Instant::now()
    });
    let acks = writers(&cluster, ports, 60).await;
    let killed_at = killer.await.unwrap();

    let placed = cluster
        .wait_for("blog", "b as primary", |placed| placed.record.primary == "b")
        .await;
    let stored = entries(&client(), &ports[1..], cluster.root.reveal(), "log").await;
    check_acknowledged(&cluster, &acks, &stored);
    let first_after = acks
        .iter()
        .flatten()
        .filter(|ack| ack.sent > killed_at)
        .map(|ack| ack.at)
        .min()
        .expect("writes went on after the kill");
    let failover = first_after - killed_at;
    assert!(
        failover < LEASE_TTL + Duration::from_secs(5),
        "failover took {failover:?}\n{}",
        cluster.logs()
    );
    assert!(
        acks.iter()
            .flatten()
            .filter(|ack| ack.sent > killed_at)
            .all(|ack| ack.by == ports[1]),
        "after the kill only b acknowledges"
    );
    assert_eq!(placed.record.in_sync, ["b"]);
    eprintln!("failover: {failover:?} from the kill to the first acknowledged write");
    let metrics = client()
        .get(format!("http://127.0.0.1:{}/metrics", ports[1]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("grove_node_failovers_total 1"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "grove_node_site_epoch{{role=\"primary\",site=\"blog\"}} {}",
            placed.epoch
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("grove_node_site_in_sync{role=\"primary\",site=\"blog\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_primary_acknowledges_nothing_once_its_backup_took_over_and_then_follows_it() {
    let mut cluster = Cluster::new().await;
    let (a, _b, ports) = placed_pair(&mut cluster).await;
    let pauser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.signal("STOP");
        tokio::time::sleep(LEASE_TTL + Duration::from_secs(2)).await;
        a.signal("CONT");
        a
    });
    let acks = writers(&cluster, ports, 80).await;
    let a = pauser.await.unwrap();
    let placed = cluster
        .wait_for("blog", "b as primary", |placed| placed.record.primary == "b")
        .await;
    // What the new primary adopted is all a ever acknowledged: nothing of
    // a's past the new epoch's start.
    let adopted = placed.record.adopted.as_u64();
    let from_a: Vec<&Ack> = acks.iter().flatten().filter(|ack| ack.by == ports[0]).collect();
    assert!(!from_a.is_empty());
    for ack in &from_a {
        assert!(
            ack.ts <= adopted,
            "a acknowledged {ack:?} after b took over at {adopted}"
        );
    }
    assert!(acks.iter().flatten().any(|ack| ack.by == ports[1]), "b took writes");
    let stored = entries(&client(), &ports[1..], cluster.root.reveal(), "log").await;
    check_acknowledged(&cluster, &acks, &stored);

    // The old primary follows: it rejoins in sync and holds the same log.
    cluster
        .wait_for("blog", "a back in sync", |placed| placed.record.in_sync.len() == 2)
        .await;
    let on_a = entries(&client(), &ports[..1], cluster.root.reveal(), "log").await;
    assert_eq!(
        on_a, stored,
        "the rejoined node cut its tail and copied the new primary's"
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_go_on_without_the_backup_and_it_catches_up_when_back() {
    let mut cluster = Cluster::new().await;
    let (_a, b, ports) = placed_pair(&mut cluster).await;
    drop(b);
    let client = client();
    let token = cluster.root.reveal();
    let started = Instant::now();
    let ack = write_until_acknowledged(&client, &ports[..1], token, "log", "alone", "alone").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the primary dropped its backup in time"
    );
    let placed = cluster
        .wait_for("blog", "a alone in sync", |placed| placed.record.in_sync == ["a"])
        .await;
    assert_eq!(placed.record.backup.as_deref(), Some("b"));
    for i in 0..20 {
        write_until_acknowledged(
            &client,
            &ports[..1],
            token,
            "log",
            &format!("more-{i}"),
            &format!("more-{i}"),
        )
        .await;
    }
    let _b = cluster.node("b", "us", ports[1]);
    cluster
        .wait_for("blog", "b back in sync", |placed| placed.record.in_sync.len() == 2)
        .await;
    let on_a = entries(&client, &ports[..1], token, "log").await;
    let on_b = entries(&client, &ports[1..], token, "log").await;
    assert_eq!(on_b, on_a, "the backup caught up");
    assert!(on_b.iter().any(|(ts, _)| *ts == ack.ts));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_write_gets_its_first_timestamp_and_is_stored_once() {
    let mut cluster = Cluster::new().await;
    let (_a, _b, ports) = placed_pair(&mut cluster).await;
    let client = client();
    let token = cluster.root.reveal();
    let first = write_until_acknowledged(&client, &ports, token, "log", "once", "the-key").await;
    // Sent to the backup: redirected to the primary, which knows the key.
    let again = write_until_acknowledged(&client, &ports[1..], token, "log", "once", "the-key").await;
    assert_eq!(first.ts, again.ts);
    assert_eq!(again.by, ports[0], "the backup redirected the write to the primary");
    let stored = entries(&client, &ports[..1], token, "log").await;
    assert_eq!(stored.iter().filter(|(_, value)| value == "once").count(), 1);
    // A malformed key is refused and changes nothing.
    let refused = client
        .post(format!("http://127.0.0.1:{}/v1/sites/blog/write", ports[0]))
        .bearer_auth(token)
        .header("idempotency-key", "has space")
        .json(&json!({ "path": "log", "data": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    // Replication calls need the peer secret.
    let pull = client
        .post(format!("http://127.0.0.1:{}/v1/replica/pull", ports[0]))
        .bearer_auth("not-the-secret")
        .json(&json!({ "node": "b", "sites": {}, "wait_ms": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(pull.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn appends_and_reads_across_a_failover_are_linearizable() {
    let mut cluster = Cluster::new().await;
    let (mut a, _b, ports) = placed_pair(&mut cluster).await;
    let token = cluster.root.reveal().to_owned();
    let history = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let (token, history) = (token.clone(), Arc::clone(&history));
        tasks.push(tokio::spawn(async move {
            let client = client();
            for i in 0..6 {
                let value = format!("{writer}/{i}");
                let invoked = Instant::now();
                let ack = write_until_acknowledged(&client, &ports, &token, "h", &value, &value).await;
                let op = Op::Append { value, ts: ack.ts };
                let returned = Instant::now();
                history.lock().unwrap().push(Call { invoked, returned, op });
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }));
    }
    for _reader in 0..2 {
        let (token, history) = (token.clone(), Arc::clone(&history));
        tasks.push(tokio::spawn(async move {
            let client = client();
            for _ in 0..8 {
                let invoked = Instant::now();
                let entries = entries(&client, &ports, &token, "h").await;
                let returned = Instant::now();
                history.lock().unwrap().push(Call {
                    invoked,
                    returned,
                    op: Op::Read { entries },
                });
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.kill(); // SIGKILL mid-history
    for task in tasks {
        task.await.unwrap();
    }
    let history = Arc::try_unwrap(history).unwrap().into_inner().unwrap();
    assert_eq!(history.len(), 40);
    let placed = cluster
        .wait_for("blog", "b as primary", |placed| placed.record.primary == "b")
        .await;
    assert_eq!(placed.record.backup.as_deref(), Some("a"));
    assert!(
        linearizable(&history),
        "not linearizable: {history:#?}\n{}",
        cluster.logs()
    );
}

#[test]
fn a_node_refuses_to_start_on_an_unreachable_etcd_or_without_a_peer_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-peer-secret-for-tests").unwrap();
    let dead = reserve();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_grove-storage"))
            .args(["--listen", "127.0.0.1:0", "--name", "a"])
            .arg("--data-dir")
            .arg(dir.path().join("node"))
            .arg("--store-dir")
            .arg(dir.path().join("store"))
            .args(extra)
            .output()
            .unwrap()
    };
    let endpoint = format!("http://127.0.0.1:{}", dead.port());
    let unreachable = run(&["--etcd", &endpoint, "--peer-secret-file", secret.to_str().unwrap()]);
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("did not answer"), "{stderr}");
    let no_secret = run(&["--etcd", &endpoint]);
    assert!(!no_secret.status.success());
    assert!(
        String::from_utf8_lossy(&no_secret.stderr).contains("--peer-secret-file"),
        "{}",
        String::from_utf8_lossy(&no_secret.stderr)
    );
    std::fs::write(&secret, "short").unwrap();
    let short = run(&["--etcd", &endpoint, "--peer-secret-file", secret.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 16"));
}
