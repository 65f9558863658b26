//! The proxy's side of the service worker: its scripts, the register tag in
//! HTML (with its own ETag, compression and ranges), the root document the
//! worker polls, and the kill switch.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use grove_testkit::proxy::{Proxy, publish, site_dir};

const TAG: &str = "<script src=\"/_grove/register.js\" defer></script>";
/// Long enough to be compressed (the proxy leaves bodies under 256 bytes).
const PAGE: &str = "<html><head><title>t</title></head><body>hello hello hello hello hello hello hello hello \
    hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello \
    hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello</body></html>";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |value| value.to_str().unwrap())
}

async fn site(extra: &str) -> (Proxy, reqwest::Client) {
    let proxy = Proxy::start(extra);
    let dir = site_dir(&[
        ("index.html", PAGE),
        ("plain.html", "<p>no head element</p>"),
        ("app.js", "console.log('</head>')"),
    ]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    publish(proxy.local_store(), "other", dir.path()).await;
    let client = proxy.client(&["demo.localhost", "other.localhost"]);
    (proxy, client)
}

#[tokio::test]
async fn the_worker_scripts_are_served_for_every_site() {
    let (proxy, client) = site("").await;
    let worker = client
        .get(proxy.url("demo.localhost", "/_grove/sw.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(worker.status(), StatusCode::OK);
    let headers = worker.headers().clone();
    assert_eq!(header(&headers, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    assert_eq!(header(&headers, "service-worker-allowed"), "/");
    let body = worker.bytes().await.unwrap();
    assert_eq!(&body[..], include_bytes!("../../sw/dist/grove-sw.js"));
    let revalidated = client
        .get(proxy.url("other.localhost", "/_grove/sw.js"))
        .header("if-none-match", header(&headers, "etag"))
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    let register = client
        .get(proxy.url("demo.localhost", "/_grove/register.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), StatusCode::OK);
    assert_eq!(header(register.headers(), "service-worker-allowed"), "");
    assert_eq!(
        &register.bytes().await.unwrap()[..],
        include_bytes!("../../sw/dist/grove-register.js")
    );
}

#[tokio::test]
async fn html_gets_the_register_tag_with_its_own_etag_ranges_and_compression() {
    let (proxy, client) = site("").await;
    let page = client.get(proxy.url("demo.localhost", "/")).send().await.unwrap();
    let headers = page.headers().clone();
    let expected = PAGE.replacen("</head>", &format!("{TAG}</head>"), 1);
    assert_eq!(header(&headers, "content-length"), expected.len().to_string());
    assert_eq!(page.text().await.unwrap(), expected);
    assert_eq!(header(&headers, "x-grove-version"), "1");
    assert_eq!(header(&headers, "x-grove-root").len(), 64);
    let etag = header(&headers, "etag").to_owned();
    let stored_hash = grove_core::ContentHash::of(PAGE.as_bytes()).to_hex();
    assert!(
        !etag.contains(&stored_hash),
        "the injected page has its own ETag, not the file's"
    );

    let revalidated = client
        .get(proxy.url("demo.localhost", "/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    let ranged = client
        .get(proxy.url("demo.localhost", "/"))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(ranged.headers(), "content-range"),
        format!("bytes 0-9/{}", expected.len())
    );
    let gzip = reqwest::Client::builder()
        .resolve("demo.localhost", proxy.addr)
        .build()
        .unwrap()
        .get(proxy.url("demo.localhost", "/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let gzip_etag = header(gzip.headers(), "etag").to_owned();
    assert_ne!(gzip_etag, etag, "each coding has its own ETag");
    assert_eq!(
        gzip.text().await.unwrap(),
        expected,
        "the compressed copy is of the injected page"
    );

    // Not HTML, or no </head>: untouched.
    let script = client.get(proxy.url("demo.localhost", "/app.js")).send().await.unwrap();
    assert_eq!(script.text().await.unwrap(), "console.log('</head>')");
    let plain = client.get(proxy.url("demo.localhost", "/plain")).send().await.unwrap();
    assert_eq!(plain.text().await.unwrap(), "<p>no head element</p>");

    let root: Value = client
        .get(proxy.url("demo.localhost", "/_grove/root"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["trailing_slash"], "auto");
    assert_eq!(root["root"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn a_site_without_the_worker_gets_no_tag_and_orders_installed_workers_away() {
    let (proxy, client) = site("[sites.other]\nservice_worker = false\ntrailing_slash = \"always\"\n").await;
    let page = client.get(proxy.url("other.localhost", "/")).send().await.unwrap();
    assert_eq!(header(page.headers(), "x-grove-sw"), "unregister");
    assert_eq!(page.text().await.unwrap(), PAGE);
    let root = client
        .get(proxy.url("other.localhost", "/_grove/root"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(root.headers(), "x-grove-sw"), "unregister");
    assert_eq!(root.json::<Value>().await.unwrap()["trailing_slash"], "always");
    // The other site is unaffected.
    let page = client.get(proxy.url("demo.localhost", "/")).send().await.unwrap();
    assert_eq!(header(page.headers(), "x-grove-sw"), "");
    assert!(page.text().await.unwrap().contains(TAG));

    // And the top-level switch turns it off everywhere.
    let (proxy, client) = site("service_worker = false\n").await;
    let page = client.get(proxy.url("demo.localhost", "/")).send().await.unwrap();
    assert_eq!(header(page.headers(), "x-grove-sw"), "unregister");
    assert_eq!(page.text().await.unwrap(), PAGE);
}

#[tokio::test]
async fn content_addressed_objects_are_compressed_when_that_helps() {
    let (proxy, client) = site("").await;
    let hash = grove_core::ContentHash::of(PAGE.as_bytes()).to_hex();
    let url = proxy.url("demo.localhost", &format!("/_grove/blob/{hash}"));
    let plain = client.get(&url).send().await.unwrap();
    assert_eq!(header(plain.headers(), "vary"), "Accept-Encoding");
    assert_eq!(header(plain.headers(), "content-encoding"), "");
    let plain_etag = header(plain.headers(), "etag").to_owned();
    assert_eq!(
        plain.text().await.unwrap(),
        PAGE,
        "the stored bytes, without the register tag"
    );
    // A client that decodes gzip gets the same bytes, compressed on the wire.
    let decoding = reqwest::Client::builder()
        .resolve("demo.localhost", proxy.addr)
        .build()
        .unwrap();
    let gzip = decoding
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_ne!(header(gzip.headers(), "etag"), plain_etag);
    assert_eq!(gzip.text().await.unwrap(), PAGE);
    let raw = client.get(&url).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(header(raw.headers(), "content-encoding"), "gzip");
    assert!(raw.bytes().await.unwrap().len() < PAGE.len());
}
