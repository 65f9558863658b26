//! CDN purge on publish, end to end: `grove` and `grove-proxy` processes
//! against a fake Cloudflare API that enforces the documented limits.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use grove_testkit::cloudflare::{FakeCloudflare, Fault, Limits};
use reqwest::StatusCode;
use serde_json::Value;

use grove_testkit::host::{Host, stderr};
use grove_testkit::proxy::{publish, site_dir};

/// A host purging the fake, with `cdn_keys` added to `[cdn.cloudflare]` and
/// `more` (other sections) after it.
pub(crate) fn host_for(fake: &FakeCloudflare, limits: &Limits, cdn_keys: &str, more: &str) -> Host {
    let config = format!(
        "[cdn.cloudflare]\nzone_id = \"{}\"\napi_base = \"{}\"\nrequests_per_minute = {}\nburst = {}\n{cdn_keys}\n{more}",
        limits.zone_id,
        fake.api_base(),
        limits.requests_per_minute,
        limits.burst,
    );
    Host::local_with(&config, &[("CLOUDFLARE_API_TOKEN", &limits.token)])
}

pub(crate) fn tag(path: &str) -> String {
    format!("grove:demo/{path}")
}

const ROOT_TAG: &str = "grove:demo:root";

/// `grove publish DIR --site demo --json` with `extra` flags; the summary.
async fn publish_cli(host: &Host, dir: &std::path::Path, extra: &[&str]) -> (std::process::ExitStatus, Value, String) {
    let mut args = vec!["publish", dir.to_str().unwrap(), "--site", "demo", "--json"];
    args.extend_from_slice(extra);
    let output = host.grove(&args).await;
    let summary = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status, summary, stderr(&output))
}

/// Version `n`'s purge status once it is no longer pending.
pub(crate) async fn settled(host: &Host, n: u64, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, reply) = host
            .call(reqwest::Method::GET, &format!("sites/demo/purges/{n}"), "")
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        if reply["state"] != "pending" {
            return reply;
        }
        assert!(Instant::now() < deadline, "version {n}'s purge still pending: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pages(names: &[&str], body: &str) -> Vec<(String, String)> {
    names
        .iter()
        .map(|name| ((*name).to_owned(), format!("<h1>{name} {body}</h1>")))
        .collect()
}

fn dir_of(files: &[(String, String)]) -> tempfile::TempDir {
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, body)| (path.as_str(), body.as_str()))
        .collect();
    site_dir(&borrowed)
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_pages_purge_exactly_their_tags_and_the_root_document() {
    let limits = Limits::default();
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let host = host_for(&fake, &limits, "", "");
    let mut files = pages(&["index.html", "a.html", "b.html", "c.html", "about/index.html"], "v1");
    files.push(("assets/logo.png".to_owned(), "png v1".to_owned()));
    files.push(("_astro/app.1a2b3c4d5e.js".to_owned(), "js v1".to_owned()));
    let (status, first, _) = publish_cli(&host, dir_of(&files).path(), &["--wait-purge"]).await;
    assert!(status.success());
    assert_eq!(first["purge"], "done", "a first version replaces nothing: {first}");
    assert!(fake.purges().is_empty());

    for (path, body) in &mut files {
        if [
            "a.html",
            "b.html",
            "about/index.html",
            "assets/logo.png",
            "_astro/app.1a2b3c4d5e.js",
        ]
        .contains(&path.as_str())
        {
            body.push_str(" v2");
        }
    }
    let (status, second, stderr) = publish_cli(&host, dir_of(&files).path(), &["--wait-purge"]).await;
    assert!(status.success(), "{stderr}");
    assert_eq!(second["purge"], "done", "{second}");
    let purged: BTreeSet<String> = fake.purged_tags().into_iter().collect();
    let expected: BTreeSet<String> = [
        tag("a.html"),
        tag("b.html"),
        tag("about/index.html"),
        ROOT_TAG.to_owned(),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        purged, expected,
        "fingerprinted assets and unchanged pages are never purged"
    );
    assert_eq!(fake.purges().len(), 1);
    assert!(fake.refusals().is_empty(), "{:?}", fake.refusals());

    // The tags purged are the ones the responses carry, under every URL form.
    let client = host.proxy.client(&["demo.localhost"]);
    let cache_tag = |path: &'static str, pin: Option<&'static str>| {
        let client = client.clone();
        let url = host.proxy.url("demo.localhost", path);
        async move {
            let mut request = client.get(url);
            if let Some(version) = pin {
                request = request.header("x-grove-version", version);
            }
            let response = request.send().await.unwrap();
            assert!(response.status().is_success() || response.status().is_redirection());
            response
                .headers()
                .get("cache-tag")
                .map(|value| value.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        cache_tag("/about/", None).await.unwrap(),
        format!("grove:demo,{}", tag("about/index.html"))
    );
    assert_eq!(
        cache_tag("/a", None).await.unwrap(),
        format!("grove:demo,{}", tag("a.html"))
    );
    assert_eq!(cache_tag("/assets/logo.png", None).await.unwrap(), "grove:demo");
    assert_eq!(
        cache_tag("/_grove/root", None).await.unwrap(),
        format!("grove:demo,{ROOT_TAG}")
    );
    assert_eq!(
        cache_tag("/_grove/root", Some("1")).await,
        None,
        "a pinned reply is never shared"
    );
    assert_eq!(cache_tag("/a", Some("1")).await, None);

    let output = host.grove(&["versions", "--site", "demo", "--json"]).await;
    let versions: Value = serde_json::from_slice(&output.stdout).unwrap();
    let states: Vec<(u64, String)> = versions["purges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|purge| {
            (
                purge["version"].as_u64().unwrap(),
                purge["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(states, [(2, "done".to_owned()), (1, "done".to_owned())]);
    assert_eq!(
        host.proxy.metric("grove_purge_requests_total{result=\"ok\"}").await,
        1.0
    );
    assert_eq!(host.proxy.metric("grove_purge_tags_total").await, 4.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_over_the_threshold_is_one_host_purge() {
    let limits = Limits::default();
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let host = host_for(&fake, &limits, "", "[sites.demo]\ndomains = [\"www.demo.test\"]");
    let names: Vec<String> = (0..2000).map(|i| format!("p/{i:04}.html")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (status, ..) = publish_cli(&host, dir_of(&pages(&names, "v1")).path(), &[]).await;
    assert!(status.success());
    let (status, summary, stderr) = publish_cli(&host, dir_of(&pages(&names, "v2")).path(), &["--wait-purge"]).await;
    assert!(status.success(), "{stderr}");
    assert_eq!(summary["purge"], "done");
    let purges = fake.purges();
    assert_eq!(purges.len(), 1, "one request for 2,000 changed paths");
    assert_eq!(purges[0].hosts, ["demo.localhost", "www.demo.test"]);
    assert!(purges[0].tags.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_publishes_stay_within_the_rate_limit_and_purge_every_tag() {
    // Two requests a second after a burst of 2, at most 2 tags a request:
    // 30 publishes need far more requests than the burst allows at once.
    let limits = Limits {
        requests_per_minute: 120,
        burst: 2,
        max_items: 2,
        ..Limits::default()
    };
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let host = host_for(&fake, &limits, "max_tags_per_request = 2", "");
    let names: Vec<String> = (0..30).map(|i| format!("page{i:02}.html")).collect();
    let mut files: Vec<(String, String)> = names.iter().map(|name| (name.clone(), "v0".to_owned())).collect();
    let (status, ..) = publish_cli(&host, dir_of(&files).path(), &[]).await;
    assert!(status.success());
    for i in 0..30 {
        files[i].1 = format!("v{}", i + 1);
        let (status, summary, stderr) = publish_cli(&host, dir_of(&files).path(), &[]).await;
        assert!(status.success(), "{stderr}");
        assert_eq!(summary["purge"], "pending");
    }
    for n in 2..=31 {
        assert_eq!(settled(&host, n, Duration::from_secs(90)).await["state"], "done");
    }
    assert!(
        fake.refusals().is_empty(),
        "the rate limit was exceeded: {:?}",
        fake.refusals()
    );
    let purged: BTreeSet<String> = fake.purged_tags().into_iter().collect();
    for name in &names {
        assert!(purged.contains(&tag(name)), "{name} was never purged");
    }
    let purges = fake.purges();
    assert!(purges.iter().all(|purge| purge.tags.len() <= 2));
    // The limiter did the pacing: 30 pages and the root tags take at least
    // 16 requests, which 2 a second after a burst of 2 spread over 7 s.
    assert!(purges.len() >= 16, "{} requests", purges.len());
    let spread = purges.last().unwrap().at - purges[0].at;
    let floor = Duration::from_millis((purges.len() as u64 - 2) * 500 * 9 / 10);
    assert!(spread >= floor, "{} requests in {spread:?}", purges.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_purges_survive_a_crash_and_are_sent_once() {
    let limits = Limits::default();
    // The CDN is down while the site is published.
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let addr = fake.addr;
    let mut host = host_for(&fake, &limits, "request_timeout_secs = 2", "");
    drop(fake);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut files = pages(&["a.html", "b.html", "c.html", "d.html"], "v1");
    let (status, ..) = publish_cli(&host, dir_of(&files).path(), &[]).await;
    assert!(status.success());
    for i in 0..3 {
        files[i].1.push_str(" v2");
        let (status, summary, _) = publish_cli(&host, dir_of(&files).path(), &[]).await;
        assert!(status.success());
        assert_eq!(summary["purge"], "pending");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, status) = host.call(reqwest::Method::GET, "sites/demo/purges/2", "").await;
    assert_eq!(status["state"], "pending");
    assert!(status["attempts"].as_u64().unwrap() >= 1, "{status}");

    // A version committed without its purge queued, as when a proxy dies
    // between the commit and the enqueue.
    files[3].1.push_str(" v2");
    let version = publish(host.store.clone(), "demo", dir_of(&files).path()).await;
    assert_eq!(version.n, 5);

    host.proxy.crash_and_restart();
    let fake = FakeCloudflare::start_on(addr, limits.clone()).await.unwrap();
    for n in 2..=5 {
        assert_eq!(settled(&host, n, Duration::from_secs(60)).await["state"], "done");
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for purged in fake.purged_tags() {
        *counts.entry(purged).or_default() += 1;
    }
    for page in ["a.html", "b.html", "c.html", "d.html"] {
        assert_eq!(counts.get(&tag(page)), Some(&1), "{page}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_and_timeouts_are_retried() {
    let limits = Limits::default();
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let host = host_for(&fake, &limits, "request_timeout_secs = 1", "");
    let mut files = pages(&["index.html", "a.html"], "v1");
    assert!(publish_cli(&host, dir_of(&files).path(), &[]).await.0.success());
    fake.inject(&[
        Fault::Status(500),
        Fault::Throttle(2),
        Fault::Stall(Duration::from_secs(3)),
    ]);
    files[1].1.push_str(" v2");
    let started = Instant::now();
    let (status, summary, stderr) = publish_cli(&host, dir_of(&files).path(), &["--wait-purge"]).await;
    assert!(status.success(), "{stderr}");
    assert_eq!(summary["purge"], "done");
    assert_eq!(fake.requests(), 4, "three failures, then the purge");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "Retry-After (2 s) and the timeout (1 s) were waited out"
    );
    assert_eq!(fake.purged_tags(), [tag("a.html"), ROOT_TAG.to_owned()]);
    let status = settled(&host, 2, Duration::from_secs(1)).await;
    assert_eq!(status["attempts"], 2, "a 429 costs no attempt: {status}");
    assert!(
        status["error"].as_str().unwrap().contains("timed out")
            || status["error"].as_str().unwrap().contains("sending")
    );
    assert_eq!(host.proxy.metric("grove_purge_retries_total").await, 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_that_keeps_failing_is_dead_lettered_visibly_and_blocks_nothing() {
    let limits = Limits::default();
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let host = host_for(&fake, &limits, "max_attempts = 2", "");
    let mut files = pages(&["a.html", "b.html"], "v1");
    assert!(publish_cli(&host, dir_of(&files).path(), &[]).await.0.success());
    fake.inject(&[Fault::Status(500), Fault::Status(502)]);
    files[0].1.push_str(" v2");
    let (status, summary, stderr) = publish_cli(&host, dir_of(&files).path(), &["--wait-purge"]).await;
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert_eq!(summary["purge"], "failed");
    assert!(
        stderr.contains("CDN purge") && stderr.contains("injected failure"),
        "{stderr}"
    );

    let output = host.grove(&["versions", "--site", "demo"]).await;
    let listing = String::from_utf8(output.stdout).unwrap();
    assert!(listing.contains("PURGE FAILED") && listing.contains("502"), "{listing}");
    assert_eq!(host.proxy.metric("grove_purge_dead_letters_total").await, 1.0);

    // The queue goes on.
    files[1].1.push_str(" v3");
    let (status, summary, _) = publish_cli(&host, dir_of(&files).path(), &["--wait-purge"]).await;
    assert!(status.success());
    assert_eq!(summary["purge"], "done");
    assert!(fake.purged_tags().contains(&tag("b.html")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.proxy.metric("grove_purge_queue_depth").await != 0.0 {
        assert!(Instant::now() < deadline, "the queue never emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_retried_a_wrong_zone_refused_and_a_missing_token_stops_start_up() {
    let limits = Limits::default();
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let mut files = pages(&["a.html"], "v1");

    // A bad token may be mid-rotation: retried, then dead-lettered.
    let wrong_token = Limits {
        token: "not-the-token".to_owned(),
        ..limits.clone()
    };
    let host = host_for(&fake, &wrong_token, "max_attempts = 2", "");
    assert!(publish_cli(&host, dir_of(&files).path(), &[]).await.0.success());
    files[0].1.push_str(" v2");
    let (status, ..) = publish_cli(&host, dir_of(&files).path(), &["--wait-purge"]).await;
    assert_eq!(status.code(), Some(4));
    let status = settled(&host, 2, Duration::from_secs(1)).await;
    assert_eq!(status["attempts"], 2, "{status}");
    assert!(
        status["error"].as_str().unwrap().contains("Authentication error"),
        "{status}"
    );

    // A zone the API does not know is refused for good, at once.
    let wrong_zone = Limits {
        zone_id: "ffffffffffffffffffffffffffffffff".to_owned(),
        ..limits.clone()
    };
    let host = host_for(&fake, &wrong_zone, "", "");
    assert!(publish_cli(&host, dir_of(&files).path(), &[]).await.0.success());
    files[0].1.push_str(" v3");
    let (status, ..) = publish_cli(&host, dir_of(&files).path(), &["--wait-purge"]).await;
    assert_eq!(status.code(), Some(4));
    let status = settled(&host, 2, Duration::from_secs(1)).await;
    assert_eq!(status["attempts"], 1, "a refusal is not retried: {status}");
    assert!(
        status["error"].as_str().unwrap().contains("Could not route"),
        "{status}"
    );
    assert!(fake.purges().is_empty());

    // No token in the environment: a clear error, and no server.
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("grove.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"\"\nstate_dir = \"{}\"\n[cdn.cloudflare]\nzone_id = \"z\"\napi_token_env = \"GROVE_TEST_UNSET_TOKEN\"\n",
            state.path().display()
        ),
    )
    .unwrap();
    let output = tokio::process::Command::new(grove_testkit::binaries::grove_proxy())
        .arg("--config")
        .arg(&config)
        .env("GROVE_ADMIN_TOKEN", grove_testkit::host::random_token())
        .env_remove("GROVE_TEST_UNSET_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("GROVE_TEST_UNSET_TOKEN") && message.contains("cdn.cloudflare.api_token_env"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_purger_sends_the_same_tags_with_its_token() {
    let limits = Limits::default();
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let config = format!(
        "[cdn.webhook]\nurl = \"{}/zones/{}/purge_cache\"\ntoken_env = \"GROVE_TEST_HOOK_TOKEN\"\n",
        fake.api_base(),
        limits.zone_id
    );
    let host = Host::local_with(&config, &[("GROVE_TEST_HOOK_TOKEN", &limits.token)]);
    let mut files = pages(&["a.html", "b.html"], "v1");
    assert!(publish_cli(&host, dir_of(&files).path(), &[]).await.0.success());
    files[1].1.push_str(" v2");
    let (status, summary, stderr) = publish_cli(&host, dir_of(&files).path(), &["--wait-purge"]).await;
    assert!(status.success(), "{stderr}");
    assert_eq!(summary["purge"], "done");
    assert_eq!(fake.purged_tags(), [tag("b.html"), ROOT_TAG.to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_proxies_on_one_store_share_one_queue_and_one_rate_limit() {
    // One tag a request, 2 a second after a burst of 2: two senders with a
    // bucket each would be refused, and two senders at once would send some
    // tags twice; one lease and one stored bucket do neither.
    let limits = Limits {
        requests_per_minute: 120,
        burst: 2,
        max_items: 1,
        ..Limits::default()
    };
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let shared = tempfile::tempdir().unwrap();
    let store = format!("[store]\nkind = \"local\"\npath = \"{}\"\n", shared.path().display());
    let host = host_for(&fake, &limits, "max_tags_per_request = 1", &store);
    let config = format!(
        "[cdn.cloudflare]\nzone_id = \"{}\"\napi_base = \"{}\"\nrequests_per_minute = 120\nburst = 2\nmax_tags_per_request = 1\n{store}",
        limits.zone_id,
        fake.api_base()
    );
    let other = grove_testkit::proxy::Proxy::start_with(
        &config,
        &[
            ("CLOUDFLARE_API_TOKEN", &limits.token),
            ("GROVE_ADMIN_TOKEN", &host.token),
        ],
    );

    let names: Vec<String> = (0..8).map(|i| format!("page{i}.html")).collect();
    let mut files: Vec<(String, String)> = names.iter().map(|name| (name.clone(), "v0".to_owned())).collect();
    assert!(publish_cli(&host, dir_of(&files).path(), &[]).await.0.success());
    for i in 0..names.len() {
        files[i].1 = format!("v{}", i + 1);
        let dir = dir_of(&files);
        let base = if i % 2 == 0 {
            host.base()
        } else {
            format!("http://{}", other.addr)
        };
        let output = tokio::process::Command::new(grove_testkit::host::grove_bin())
            .args(["publish", dir.path().to_str().unwrap(), "--site", "demo", "--json"])
            .env("GROVE_HOST", base)
            .env("GROVE_TOKEN", &host.token)
            .env("XDG_CONFIG_HOME", host.config_home.path())
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    for n in 2..=9 {
        assert_eq!(settled(&host, n, Duration::from_secs(60)).await["state"], "done");
    }
    assert!(
        fake.refusals().is_empty(),
        "the shared rate limit was exceeded: {:?}",
        fake.refusals()
    );
    // One sender at a time: nothing was sent twice.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for purged in fake.purged_tags() {
        *counts.entry(purged).or_default() += 1;
    }
    for name in &names {
        assert_eq!(counts.get(&tag(name)), Some(&1), "{name}: {counts:?}");
    }
}
