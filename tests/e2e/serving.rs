//! grove-proxy as a process on loopback, serving sites published into its store.

use grove_core::ContentHash;
use grove_testkit::proxy::{Proxy, publish, raw_status, site_dir};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

const HOSTS: &[&str] = &["demo.localhost", "app.localhost", "www.example.test", "nope.localhost"];

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |value| value.to_str().unwrap())
}

/// GET `path` on the demo site.
async fn get(client: &reqwest::Client, proxy: &Proxy, path: &str) -> reqwest::Response {
    client.get(proxy.url("demo.localhost", path)).send().await.unwrap()
}

fn demo_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("index.html", "<h1>home</h1>"),
        ("about/index.html", "<h1>about</h1>"),
        ("blog/post.html", "<h1>post</h1>"),
        ("404.html", "<h1>custom 404</h1>"),
        ("assets/app.3f9a1c2e.js", "console.log('app')"),
        ("big.txt", &*Box::leak("0123456789".repeat(1000).into_boxed_str())),
        (
            "_redirects",
            "/old /blog/post 301\n/go/*  /blog/:splat 302\n/u/:id /blog/:id.html 200\n/hidden /404.html 404\n/index.html /about/ 302!\n/search /find?q=1 302\n",
        ),
        ("_headers", "/blog/*\n  X-Section: blog\n/*\n  X-Frame-Options: DENY\n"),
    ]
}

async fn demo_proxy(extra: &str) -> (Proxy, reqwest::Client) {
    let proxy = Proxy::start(extra);
    let dir = site_dir(&demo_files());
    publish(proxy.local_store(), "demo", dir.path()).await;
    let client = proxy.client(HOSTS);
    (proxy, client)
}

#[tokio::test]
async fn routes_by_host_over_http1_and_http2() {
    // Served on both hosts; the custom domain is canonical, so the other
    // names it.
    let config = "[sites.demo]\ndomains = [\"www.example.test\"]\ncanonical = \"header\"";
    let (proxy, client) = demo_proxy(config).await;
    for client in [client, proxy.h2_client(HOSTS)] {
        let response = get(&client, &proxy, "/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(response.headers(), "link"),
            format!("<http://www.example.test:{}/>; rel=\"canonical\"", proxy.addr.port())
        );
        assert_eq!(header(response.headers(), "x-robots-tag"), "noindex");
        assert_eq!(response.text().await.unwrap(), "<h1>home</h1>");
        let custom = client.get(proxy.url("www.example.test", "/")).send().await.unwrap();
        assert_eq!(custom.text().await.unwrap(), "<h1>home</h1>");
        let unknown = client.get(proxy.url("nope.localhost", "/")).send().await.unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(unknown.text().await.unwrap(), "not found\n");
    }
    let version = proxy
        .h2_client(HOSTS)
        .get(proxy.url("demo.localhost", "/"))
        .send()
        .await
        .unwrap()
        .version();
    assert_eq!(version, reqwest::Version::HTTP_2);
    // On one HTTP/2 connection, reads (answered by the front) and other
    // routes (by the proxy) interleave.
    let h2 = proxy.h2_client(HOSTS);
    for _ in 0..3 {
        let (page, health, call) = tokio::join!(
            h2.get(proxy.url("demo.localhost", "/")).send(),
            h2.get(proxy.url("demo.localhost", "/_grove/health")).send(),
            h2.post(proxy.url("demo.localhost", "/_grove/api/v1/write"))
                .body("{}")
                .send(),
        );
        let (page, health, call) = (page.unwrap(), health.unwrap(), call.unwrap());
        assert_eq!(page.version(), reqwest::Version::HTTP_2);
        assert_eq!(page.text().await.unwrap(), "<h1>home</h1>");
        assert_eq!(health.text().await.unwrap(), "ok\n");
        assert_eq!(
            call.status(),
            StatusCode::UNAUTHORIZED,
            "a node call without a bearer handle"
        );
    }
}

#[tokio::test]
async fn path_rules_indexes_clean_urls_slashes_and_404_page() {
    let (proxy, client) = demo_proxy("").await;
    let get = |path: &str| client.get(proxy.url("demo.localhost", path)).send();

    let about = get("/about/").await.unwrap();
    assert_eq!(about.text().await.unwrap(), "<h1>about</h1>");
    let redirect = get("/about?x=1").await.unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(redirect.headers(), "location"), "/about/?x=1");
    assert_eq!(get("/blog/post").await.unwrap().text().await.unwrap(), "<h1>post</h1>");
    let slash = get("/blog/post/").await.unwrap();
    assert_eq!(
        (slash.status(), header(slash.headers(), "location")),
        (StatusCode::PERMANENT_REDIRECT, "/blog/post")
    );
    let missing = get("/missing").await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(missing.headers(), "x-frame-options"), "DENY");
    assert_eq!(
        header(missing.headers(), "cdn-cache-control"),
        "",
        "a 404 page must not be kept by the CDN"
    );
    // An error page carries no validator, so no conditional request can be
    // left unanswered: If-None-Match gets the 404 page whole.
    assert_eq!(header(missing.headers(), "etag"), "", "a 404 page has no ETag");
    assert_eq!(missing.text().await.unwrap(), "<h1>custom 404</h1>");
    let page_tag = format!("\"{}\"", ContentHash::of(b"<h1>custom 404</h1>"));
    for tag in [page_tag.as_str(), "*"] {
        let conditional = client
            .get(proxy.url("demo.localhost", "/missing"))
            .header(header::IF_NONE_MATCH, tag)
            .send()
            .await
            .unwrap();
        assert_eq!(conditional.status(), StatusCode::NOT_FOUND, "{tag}");
        assert_eq!(conditional.text().await.unwrap(), "<h1>custom 404</h1>");
    }
}

#[tokio::test]
async fn redirects_and_headers_files() {
    let (proxy, client) = demo_proxy("").await;
    let get = |path: &str| client.get(proxy.url("demo.localhost", path)).send();

    let old = get("/old").await.unwrap();
    assert_eq!(
        (old.status().as_u16(), header(old.headers(), "location")),
        (301, "/blog/post")
    );
    let splat = get("/go/post").await.unwrap();
    assert_eq!(
        (splat.status().as_u16(), header(splat.headers(), "location")),
        (302, "/blog/post")
    );
    let query = get("/search").await.unwrap();
    assert_eq!(
        header(query.headers(), "location"),
        "/find?q=1",
        "the author's query is kept as written"
    );
    let unicode = get("/go/caf%C3%A9").await.unwrap();
    assert_eq!(
        header(unicode.headers(), "location"),
        "/blog/caf%C3%A9",
        "captures are escaped once"
    );
    let rewrite = get("/u/post").await.unwrap();
    assert_eq!(rewrite.status(), StatusCode::OK);
    assert_eq!(
        header(rewrite.headers(), "x-section"),
        "",
        "headers follow the request URL"
    );
    assert_eq!(rewrite.text().await.unwrap(), "<h1>post</h1>");
    let hidden = get("/hidden").await.unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    assert_eq!(hidden.text().await.unwrap(), "<h1>custom 404</h1>");
    // A forced rule wins over an existing file; an unforced one would not.
    let forced = get("/index.html").await.unwrap();
    assert_eq!(
        (forced.status().as_u16(), header(forced.headers(), "location")),
        (302, "/about/")
    );

    let post = get("/blog/post").await.unwrap();
    assert_eq!(header(post.headers(), "x-section"), "blog");
    assert_eq!(header(post.headers(), "x-frame-options"), "DENY");
}

#[tokio::test]
async fn spa_fallback_never_answers_a_missing_asset_with_html() {
    let proxy = Proxy::start("[sites.app]\nspa = true");
    let dir = site_dir(&[("index.html", "<div id=app></div>"), ("main.js", "boot()")]);
    publish(proxy.local_store(), "app", dir.path()).await;
    let client = proxy.client(HOSTS);
    let route = client
        .get(proxy.url("app.localhost", "/settings/profile"))
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), StatusCode::OK);
    assert_eq!(route.text().await.unwrap(), "<div id=app></div>");
    let asset = client
        .get(proxy.url("app.localhost", "/chunk-404.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(asset.status(), StatusCode::NOT_FOUND);
    assert!(!header(asset.headers(), "content-type").starts_with("text/html"));
}

/// A client that revalidates everything it fetches (a CDN, a returning
/// visitor) may send its first request for a page with the ETag already:
/// the page is then made whole, kept, and answered 304, with the same
/// fields as the full reply but the ones that describe a body.
#[tokio::test]
async fn a_first_request_that_holds_the_etag_gets_the_304_of_the_full_reply() {
    let (proxy, client) = demo_proxy("").await;
    let url = proxy.url("demo.localhost", "/big.txt");
    let etag = format!("\"{}\"", ContentHash::of("0123456789".repeat(1000).as_bytes()));
    let conditional = |tag: &str| client.get(&url).header(header::IF_NONE_MATCH, tag).send();

    let first = conditional(&etag).await.unwrap();
    assert_eq!(first.status(), StatusCode::NOT_MODIFIED);
    let not_modified = first.headers().clone();
    assert!(first.bytes().await.unwrap().is_empty());
    let again = conditional(&format!("\"other\", W/{etag}")).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let stale = conditional("\"other\"").await.unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    let full = stale.headers().clone();
    assert_eq!(stale.text().await.unwrap(), "0123456789".repeat(1000));
    for (name, value) in &full {
        match name.as_str() {
            "content-type" | "content-length" => assert!(!not_modified.contains_key(name), "{name}"),
            "date" => {}
            _ => assert_eq!(not_modified.get(name), Some(value), "{name}"),
        }
    }
    assert_eq!(not_modified.len(), full.len() - 2, "{not_modified:?}");
}

#[tokio::test]
async fn validators_head_ranges_and_caching_headers() {
    let (proxy, client) = demo_proxy("").await;
    let url = proxy.url("demo.localhost", "/big.txt");
    let full = client.get(&url).send().await.unwrap();
    let etag = header(full.headers(), "etag").to_owned();
    let body = full.bytes().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", ContentHash::of(&body)));

    let not_modified = client
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(not_modified.headers(), "etag"), etag);
    assert!(not_modified.bytes().await.unwrap().is_empty());

    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(head.headers(), "content-length"), "10000");
    assert!(head.bytes().await.unwrap().is_empty());

    let partial = client
        .get(&url)
        .header(header::RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(partial.headers(), "content-range"), "bytes 10-19/10000");
    assert_eq!(partial.text().await.unwrap(), "0123456789");
    let suffix = client.get(&url).header(header::RANGE, "bytes=-5").send().await.unwrap();
    assert_eq!(suffix.text().await.unwrap(), "56789");
    let stale_if_range = client
        .get(&url)
        .header(header::RANGE, "bytes=0-0")
        .header(header::IF_RANGE, "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale_if_range.status(), StatusCode::OK);
    let refused = client
        .get(&url)
        .header(header::RANGE, "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(refused.headers(), "content-range"), "bytes */10000");

    // Compression: br preferred, gzip on request, each with its own ETag.
    for (accept, coding) in [("gzip, br", "br"), ("gzip", "gzip"), ("identity", "")] {
        let response = client
            .get(&url)
            .header(header::ACCEPT_ENCODING, accept)
            .send()
            .await
            .unwrap();
        assert_eq!(header(response.headers(), "content-encoding"), coding, "{accept}");
        assert_eq!(header(response.headers(), "vary"), "Accept-Encoding");
        let tag = header(response.headers(), "etag");
        assert_eq!(tag == etag, coding.is_empty(), "{accept}: {tag}");
        let compressed = response.bytes().await.unwrap();
        if !coding.is_empty() {
            assert!(
                compressed.len() < body.len() / 10,
                "{coding} gave {} bytes",
                compressed.len()
            );
        }
    }
    let decoded = reqwest::Client::builder()
        .resolve("demo.localhost", proxy.addr)
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(decoded, body, "a decompressing client gets the original bytes");

    // Caching: pages revalidate and carry purge tags; fingerprinted assets are immutable.
    let page = get(&client, &proxy, "/about/").await;
    assert_eq!(
        header(page.headers(), "cache-control"),
        "public, max-age=0, must-revalidate"
    );
    assert_eq!(header(page.headers(), "cdn-cache-control"), "public, s-maxage=31536000");
    assert_eq!(
        header(page.headers(), "cache-tag"),
        "grove:demo,grove:demo/about/index.html"
    );
    assert_eq!(header(page.headers(), "content-type"), "text/html; charset=utf-8");
    let asset = get(&client, &proxy, "/assets/app.3f9a1c2e.js").await;
    assert_eq!(
        header(asset.headers(), "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(asset.headers(), "cache-tag"), "grove:demo");
    assert_eq!(
        header(asset.headers(), "content-type"),
        "text/javascript; charset=utf-8"
    );
}

#[tokio::test]
async fn versions_can_be_pinned_by_header_query_and_preview_host() {
    let proxy = Proxy::start("");
    let store = proxy.local_store();
    for version in 1..=3 {
        let dir = site_dir(&[("index.html", &format!("v{version}"))]);
        publish(store.clone(), "demo", dir.path()).await;
    }
    let client = proxy.client(&["demo.localhost", "2--demo.localhost", "9--demo.localhost"]);
    let current = get(&client, &proxy, "/").await;
    assert_eq!(header(current.headers(), "x-grove-version"), "3");
    assert_eq!(header(current.headers(), "x-grove-root").len(), 64);
    assert_eq!(current.text().await.unwrap(), "v3");
    let pinned = client
        .get(proxy.url("demo.localhost", "/"))
        .header("x-grove-version", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(header(pinned.headers(), "cache-control"), "private, no-store");
    assert_eq!(
        header(pinned.headers(), "cache-tag"),
        "",
        "a shared cache must not keep a header-pinned reply"
    );
    assert_eq!(pinned.text().await.unwrap(), "v1");
    // The query parameter pins too (a CDN keys by URL, so it sees the pin).
    let by_query = get(&client, &proxy, "/?_grove_version=2").await;
    assert_eq!(header(by_query.headers(), "cache-control"), "private, no-store");
    assert_eq!(header(by_query.headers(), "x-grove-version"), "2");
    assert_eq!(by_query.text().await.unwrap(), "v2");
    assert_eq!(
        get(&client, &proxy, "/?a=1&_grove_version=x").await.status(),
        StatusCode::BAD_REQUEST
    );
    let preview = client.get(proxy.url("2--demo.localhost", "/")).send().await.unwrap();
    assert_eq!(header(preview.headers(), "x-grove-version"), "2");
    assert_eq!(preview.text().await.unwrap(), "v2");
    let unknown = client.get(proxy.url("9--demo.localhost", "/")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // A version recorded above the live root (its committer died before the
    // swap) is not live yet, so it cannot be pinned either.
    let demo = grove_core::SiteName::parse("demo").unwrap();
    let trees = grove_objects::content::trees_in(store.clone(), 100);
    let sites = grove_objects::site::Sites::new(store.clone(), trees);
    let mut orphan = sites.version(&demo, 3).await.unwrap();
    orphan.n = 4;
    orphan.parent = Some(3);
    let key = grove_core::keys::site_version(&demo, 4);
    store
        .put_if_absent(&key, serde_json::to_vec(&orphan).unwrap().into())
        .await
        .unwrap();
    let not_live = client
        .get(proxy.url("demo.localhost", "/"))
        .header("x-grove-version", "4")
        .send()
        .await
        .unwrap();
    assert_eq!(not_live.status(), StatusCode::NOT_FOUND);
    let malformed = client
        .get(proxy.url("demo.localhost", "/"))
        .header("x-grove-version", "latest")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    let root: serde_json::Value = client
        .get(proxy.url("2--demo.localhost", "/_grove/root"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["version"], 2);
}

#[tokio::test]
async fn a_reader_never_sees_a_mixed_version_across_50_publishes() {
    let proxy = Proxy::start("");
    let store = proxy.local_store();
    let first = site_dir(&[("index.html", "v1")]);
    publish(store.clone(), "demo", first.path()).await;
    let client = proxy.client(HOSTS);
    let url = proxy.url("demo.localhost", "/");
    let reader = tokio::spawn(async move {
        let mut checked = 0;
        let mut versions = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let response = client.get(&url).send().await.unwrap();
            let version = header(response.headers(), "x-grove-version").to_owned();
            let etag = header(response.headers(), "etag").to_owned();
            let body = response.bytes().await.unwrap();
            assert_eq!(
                body,
                format!("v{version}").as_bytes(),
                "body and version header disagree"
            );
            assert_eq!(
                etag,
                format!("\"{}\"", ContentHash::of(&body)),
                "body and ETag disagree"
            );
            versions.insert(version.parse::<u64>().unwrap());
            checked += 1;
            if versions.contains(&51) {
                break;
            }
        }
        (checked, versions)
    });
    for version in 2..=51 {
        let dir = site_dir(&[("index.html", &format!("v{version}"))]);
        publish(store.clone(), "demo", dir.path()).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (checked, versions) = reader.await.unwrap();
    assert!(versions.contains(&51), "the reader never saw the last version");
    assert!(
        versions.len() > 5,
        "the reader saw only {} versions in {checked} reads",
        versions.len()
    );
    let ordered: Vec<u64> = versions.iter().copied().collect();
    assert!(ordered.windows(2).all(|pair| pair[0] < pair[1]));
}

#[tokio::test]
async fn a_corrupt_blob_in_the_store_is_never_served() {
    let proxy = Proxy::start("");
    let dir = site_dir(&[("index.html", "good"), ("other.html", "fine")]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    let hash = ContentHash::of(b"good");
    std::fs::write(proxy.store_dir().join(format!("objects/blobs/{hash}")), "evil").unwrap();
    let client = proxy.client(HOSTS);
    let response = get(&client, &proxy, "/").await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(response.headers().contains_key("retry-after"));
    assert!(!response.text().await.unwrap().contains("evil"));
    let fine = get(&client, &proxy, "/other.html").await;
    assert_eq!(fine.text().await.unwrap(), "fine");
}

#[tokio::test]
async fn escaping_and_malformed_paths_are_refused() {
    let (proxy, client) = demo_proxy("").await;
    for target in [
        "/..%2fetc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/a%00b",
        "/a%5c..%5cb",
        "/%ff",
        "/a\\b",
    ] {
        assert_eq!(raw_status(proxy.addr, "demo.localhost", target), 400, "{target}");
    }
    let overlong = format!("/{}", "a".repeat(3000));
    assert_eq!(raw_status(proxy.addr, "demo.localhost", &overlong), 400);
    assert_eq!(raw_status(proxy.addr, "demo.localhost", "/../index.html"), 400);
    let post = client
        .post(proxy.url("demo.localhost", "/"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(post.headers(), "allow"), "GET, HEAD");
}

#[tokio::test]
async fn concurrent_cold_requests_make_one_store_fetch() {
    let (proxy, client) = demo_proxy("").await;
    let before = proxy.metric("grove_blob_lookups_total{tier=\"store\"}").await;
    let url = proxy.url("demo.localhost", "/assets/app.3f9a1c2e.js");
    let requests: Vec<_> = (0..32).map(|_| client.get(&url).send()).collect();
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.unwrap().text().await.unwrap(), "console.log('app')");
    }
    // The rule files and the blob: the rule files were read by the first
    // request only; the blob once for all 32.
    let after = proxy.metric("grove_blob_lookups_total{tier=\"store\"}").await;
    assert_eq!(after - before, 3.0, "store fetches for 32 concurrent cold requests");
    let again = client.get(&url).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(proxy.metric("grove_blob_lookups_total{tier=\"store\"}").await, after);
}

#[tokio::test]
async fn the_host_namespace_serves_roots_nodes_and_blobs() {
    let (proxy, client) = demo_proxy("").await;
    let root: serde_json::Value = get(&client, &proxy, "/_grove/root").await.json().await.unwrap();
    let tree = root["root"].as_str().unwrap().to_owned();
    let node = get(&client, &proxy, &format!("/_grove/tree/{tree}")).await;
    assert_eq!(
        header(node.headers(), "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(ContentHash::of(&node.bytes().await.unwrap()).to_hex(), tree);
    let hash = ContentHash::of(b"<h1>home</h1>");
    let blob = get(&client, &proxy, &format!("/_grove/blob/{hash}")).await;
    assert_eq!(blob.text().await.unwrap(), "<h1>home</h1>");
    let absent = ContentHash::of(b"absent");
    let missing = get(&client, &proxy, &format!("/_grove/blob/{absent}")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let bad = get(&client, &proxy, "/_grove/blob/xyz").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let health = get(&client, &proxy, "/_grove/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = reqwest::get(format!("http://{}/metrics", proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("grove_requests_total"), "{metrics}");
}

#[tokio::test]
async fn a_store_outage_serves_what_is_cached_and_refuses_the_rest_clearly() {
    use grove_testkit::moto::{self, MotoServer};

    let moto = MotoServer::start();
    moto.create_bucket("grove").await;
    let proxy = Proxy::start_with(&moto.store_section("grove"), &moto::ENV);
    let dir = site_dir(&[("a.html", "cached"), ("b.html", "never fetched")]);
    publish(moto.store("grove"), "demo", dir.path()).await;
    let client = proxy.client(HOSTS);
    let cached = get(&client, &proxy, "/a.html").await;
    assert_eq!(cached.text().await.unwrap(), "cached");

    drop(moto);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let still = get(&client, &proxy, "/a.html").await;
    assert_eq!(still.status(), StatusCode::OK);
    assert_eq!(still.text().await.unwrap(), "cached");
    let uncached = get(&client, &proxy, "/b.html").await;
    assert_eq!(uncached.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(uncached.headers(), "retry-after"), "5");
    assert!(!uncached.text().await.unwrap().contains("never fetched"));
}

#[tokio::test]
async fn large_blobs_stream_from_the_disk_cache_with_ranges() {
    let proxy = Proxy::start("[cache]\nmax_memory_object_bytes = 4096");
    let large: String = (0..50_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let dir = site_dir(&[("video.bin", &large)]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    let client = proxy.client(HOSTS);
    let url = proxy.url("demo.localhost", "/video.bin");
    let full = client.get(&url).send().await.unwrap();
    assert_eq!(header(full.headers(), "content-length"), "50000");
    assert_eq!(full.text().await.unwrap(), large);
    let cached = std::fs::read_dir(proxy.state.path().join("cache"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name() != "tmp")
        .count();
    assert_eq!(cached, 1, "the blob is in the disk cache");
    let partial = client
        .get(&url)
        .header(header::RANGE, "bytes=26-51")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(partial.text().await.unwrap(), large[26..52]);
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order() {
    use std::io::{Read, Write};
    let proxy = Proxy::start("");
    let dir = site_dir(&[("a.html", "first"), ("b.html", "second"), ("c.html", "third")]);
    publish(proxy.local_store(), "demo", dir.path()).await;

    let mut stream = std::net::TcpStream::connect(proxy.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let paths = ["/a.html", "/b.html", "/c.html", "/missing.html", "/a.html"];
    let mut requests = String::new();
    for (index, path) in paths.iter().enumerate() {
        let close = if index + 1 == paths.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        requests.push_str(&format!("GET {path} HTTP/1.1\r\nHost: demo.localhost\r\n{close}\r\n"));
    }
    // One write: every request is on the wire before the first answer.
    stream.write_all(requests.as_bytes()).unwrap();
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    let statuses: Vec<&str> = replies
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &replies[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "200", "404", "200"], "{replies}");
    let first = replies.find("first").unwrap();
    let second = replies.find("second").unwrap();
    let third = replies.find("third").unwrap();
    assert!(first < second && second < third, "answered out of order: {replies}");
}

/// Sends `requests` on one connection in one write and reads every reply
/// until the server closes it.
fn exchange_on_one_connection(addr: std::net::SocketAddr, requests: &[&str]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(requests.concat().as_bytes()).unwrap();
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    replies
}

fn statuses(replies: &str) -> Vec<&str> {
    replies
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &replies[at + 9..at + 12])
        .collect()
}

#[tokio::test]
async fn reads_and_other_routes_share_a_connection_in_order() {
    // Reads are answered by the front, the rest by the proxy behind it:
    // a connection that mixes them gets every answer, in order, and the
    // body of a refused call is not taken for a request.
    let proxy = Proxy::start("");
    let dir = site_dir(&[("a.html", "first"), ("b.html", "second")]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    let replies = exchange_on_one_connection(
        proxy.addr,
        &[
            "GET /a.html HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
            "GET /_grove/health HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
            "POST /_grove/api/v1/write HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: 22\r\n\r\nGET /b.html HTTP/1.1\r\n",
            "GET /b.html HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
            "GET /a.html HTTP/1.1\r\nHost: demo.localhost\r\nConnection: close\r\n\r\n",
        ],
    );
    assert_eq!(statuses(&replies), ["200", "200", "401", "200", "200"], "{replies}");
    let first = replies.find("first").unwrap();
    let ok = replies.find("\r\n\r\nok").unwrap();
    let second = replies.find("second").unwrap();
    let again = replies.rfind("first").unwrap();
    assert!(
        first < ok && ok < second && second < again,
        "answered out of order: {replies}"
    );
}

#[tokio::test]
async fn a_request_line_that_arrives_in_pieces_is_answered() {
    use std::io::{Read, Write};
    let proxy = Proxy::start("");
    let dir = site_dir(&[("a.html", "first")]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    for (head, tail) in [
        // The line cut before its end: the front waits for the rest.
        (
            "GET /a.ht",
            "ml HTTP/1.1\r\nHost: demo.localhost\r\nConnection: close\r\n\r\n",
        ),
        // The line whole, the header cut: Pingora reads the rest.
        (
            "GET /a.html HTTP/1.1\r\nHo",
            "st: demo.localhost\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let mut stream = std::net::TcpStream::connect(proxy.addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        stream.write_all(tail.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert_eq!(statuses(&reply), ["200"], "{head:?}: {reply}");
        assert!(reply.ends_with("first"), "{head:?}: {reply}");
    }
}

#[tokio::test]
async fn a_read_that_declares_a_body_does_not_smuggle_a_request_past_the_front() {
    // A GET whose body is itself a request: the front leaves it to the
    // proxy, which answers it without reading a body no read route takes,
    // and closes the connection rather than read on from inside that body.
    // The request inside is never answered, nor the one after it.
    let proxy = Proxy::start("");
    let dir = site_dir(&[("a.html", "first"), ("b.html", "second")]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    let hidden = "GET /b.html HTTP/1.1\r\nHost: demo.localhost\r\n\r\n";
    let with_length = format!(
        "GET /a.html HTTP/1.1\r\nHost: demo.localhost\r\nContent-Length: {}\r\n\r\n{hidden}",
        hidden.len()
    );
    let chunked = format!(
        "GET /a.html HTTP/1.1\r\nHost: demo.localhost\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
        hidden.len()
    );
    for smuggling in [with_length, chunked] {
        let replies = exchange_on_one_connection(
            proxy.addr,
            &[
                &smuggling,
                "GET /a.html HTTP/1.1\r\nHost: demo.localhost\r\nConnection: close\r\n\r\n",
            ],
        );
        assert_eq!(statuses(&replies), ["200"], "{smuggling:?}: {replies}");
        assert!(
            replies.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
            "{smuggling:?}: {replies}"
        );
        assert!(
            !replies.contains("second"),
            "the body was answered as a request: {replies}"
        );
    }
}

#[tokio::test]
async fn a_read_the_front_answers_is_framed_like_the_proxys_answers() {
    let proxy = Proxy::start("");
    let dir = site_dir(&[("a.html", "first")]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    let replies = exchange_on_one_connection(
        proxy.addr,
        &[
            "HEAD /a.html HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
            "GET /a.html HTTP/1.1\r\nHost: demo.localhost\r\nConnection: keep-alive, close\r\n\r\n",
        ],
    );
    let (head, get) = replies.split_at(replies.rfind("HTTP/1.1 ").unwrap());
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-length: 5\r\n") && head.contains("\r\ndate: "),
        "{head}"
    );
    assert!(
        head.contains("\r\nconnection: keep-alive\r\n") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    assert!(get.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{get}");
    assert!(get.ends_with("\r\n\r\nfirst"), "{get}");
}

#[tokio::test]
async fn a_target_the_uri_rules_refuse_gets_400_and_the_connection_closes() {
    let proxy = Proxy::start("");
    let dir = site_dir(&[("a.html", "first")]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    let replies = exchange_on_one_connection(
        proxy.addr,
        &[
            "GET /a<b>.html HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
            "GET /a.html HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
        ],
    );
    assert_eq!(statuses(&replies), ["400"], "{replies}");
    assert!(
        replies.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
        "{replies}"
    );
}

/// Splits the replies read from one connection into (head, body) by their
/// `content-length` (a HEAD's reply and a 304 carry none).
fn replies_by_length(mut replies: &str, bodiless: &[usize]) -> Vec<(String, String)> {
    let mut split = Vec::new();
    while !replies.is_empty() {
        let (head, rest) = replies.split_once("\r\n\r\n").expect("a whole head");
        let length = if bodiless.contains(&split.len()) {
            0
        } else {
            let field = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .expect("framed by its length");
            field.parse().unwrap()
        };
        split.push((head.to_owned(), rest[..length].to_owned()));
        replies = &rest[length..];
    }
    split
}

/// A file large enough to be sent with sendfile goes out framed and in
/// order with the rest of a pipelined keep-alive connection, whole, as a
/// HEAD, and as a range, byte for byte as with sendfile off; and only with
/// it on does the proxy hold the cached file open.
#[tokio::test]
async fn a_large_asset_is_sent_from_its_file_framed_as_when_copied() {
    let asset: String = (0..300_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let requests = [
        "GET /app.bin HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
        "HEAD /app.bin HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
        "GET /app.bin HTTP/1.1\r\nHost: demo.localhost\r\nRange: bytes=100000-100099\r\n\r\n",
        "GET /page.html HTTP/1.1\r\nHost: demo.localhost\r\n\r\n",
        "GET /app.bin HTTP/1.1\r\nHost: demo.localhost\r\nConnection: close\r\n\r\n",
    ];
    let mut heads_by_setting = Vec::new();
    for sendfile in [true, false] {
        let proxy = Proxy::start(&format!("service_worker = false\n[http]\nsendfile = {sendfile}\n"));
        let dir = site_dir(&[("app.bin", asset.as_str()), ("page.html", "<p>small</p>")]);
        publish(proxy.local_store(), "demo", dir.path()).await;
        let replies = exchange_on_one_connection(proxy.addr, &requests);
        let replies = replies_by_length(&replies, &[1]);
        let bodies: Vec<&str> = replies.iter().map(|(_, body)| body.as_str()).collect();
        assert_eq!(bodies.len(), 5, "sendfile {sendfile}: {replies:?}");
        assert!(
            bodies[0] == asset && bodies[4] == asset,
            "sendfile {sendfile}: a whole body differs"
        );
        assert_eq!(
            bodies[1..4],
            ["", &asset[100_000..100_100], "<p>small</p>"],
            "sendfile {sendfile}"
        );
        let heads: Vec<String> = replies
            .iter()
            .map(|(head, _)| {
                head.lines()
                    .filter(|line| !line.starts_with("date: "))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        assert!(
            heads[0].starts_with("HTTP/1.1 200") && heads[2].starts_with("HTTP/1.1 206"),
            "{heads:?}"
        );
        assert!(heads[4].ends_with("connection: close"), "{heads:?}");
        heads_by_setting.push(heads);

        let cache = std::fs::canonicalize(proxy.state.path().join("cache")).unwrap();
        let holds_a_cached_file = std::fs::read_dir(format!("/proc/{}/fd", proxy.pid()))
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.unwrap().path()).ok())
            .any(|target| target.starts_with(&cache));
        assert_eq!(
            holds_a_cached_file, sendfile,
            "sendfile {sendfile}: holds the cached file open"
        );
    }
    assert_eq!(
        heads_by_setting[0], heads_by_setting[1],
        "the heads differ with sendfile"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    use std::io::{Read, Write};
    let proxy = Proxy::start("[http]\nwrite_timeout_secs = 1\n");
    let big = "x".repeat(2 << 20);
    // The page is copied out of memory (it gains the worker's register
    // tag); the binary file goes out with sendfile.
    let dir = site_dir(&[("big.html", big.as_str()), ("big.bin", big.as_str())]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    let streams: Vec<std::net::TcpStream> = ["/big.html", "/big.bin"]
        .into_iter()
        .map(|path| {
            let mut stream = std::net::TcpStream::connect(proxy.addr).unwrap();
            // Far more than the socket buffers hold, asked for and never read.
            let request = format!("GET {path} HTTP/1.1\r\nHost: demo.localhost\r\n\r\n").repeat(64);
            stream.write_all(request.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(4));
    for mut stream in streams {
        // The server gave up and closed: reading drains what it sent, then ends.
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut sink = vec![0u8; 1 << 20];
        let mut received = 0usize;
        loop {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(read) => received += read,
            }
        }
        assert!(received < 64 * big.len(), "every reply was sent: {received} bytes");
    }
    // And the server still serves everyone else.
    assert_eq!(raw_status(proxy.addr, "demo.localhost", "/big.html"), 200);
    assert_eq!(raw_status(proxy.addr, "demo.localhost", "/big.bin"), 200);
}
