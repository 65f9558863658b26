//! What search bots get, checked with the tools bots and their owners use:
//! Python's `urllib.robotparser` on the generated robots.txt, Debian's
//! `wget --spider` crawling the demo site, and every sitemap URL fetched.
//! Previews and non-canonical hosts say `noindex` on every response.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::io::AsyncWriteExt;

use grove_testkit::host::Host;
use grove_testkit::proxy::{Proxy, publish, site_dir};

fn demo_site() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proxy/demo-site")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The `<loc>`s of a sitemap or sitemap index.
fn locs(xml: &str) -> Vec<String> {
    xml.split("<loc>")
        .skip(1)
        .map(|rest| rest.split("</loc>").next().unwrap().replace("&amp;", "&"))
        .collect()
}

/// `url` fetched with `client`, which resolves the test's host names.
async fn fetch(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

/// What Python's `urllib.robotparser` makes of `robots` for each URL, and
/// the sitemaps it lists.
async fn robotparser(robots: &str, urls: &[String]) -> (Vec<bool>, Vec<String>) {
    let script = r#"
import json, sys, urllib.robotparser
given = json.load(sys.stdin)
parser = urllib.robotparser.RobotFileParser()
parser.parse(given["robots"].splitlines())
print(json.dumps({"allowed": [parser.can_fetch("Googlebot", url) for url in given["urls"]],
                  "sitemaps": parser.site_maps() or []}))
"#;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::json!({ "robots": robots, "urls": urls });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "robotparser failed");
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let allowed = parsed["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    let sitemaps = parsed["sitemaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    (allowed, sitemaps)
}

#[tokio::test]
async fn robots_txt_and_the_sitemap_of_the_demo_site() {
    let proxy = Proxy::start("");
    publish(proxy.local_store(), "demo", &demo_site()).await;
    let client = proxy.client(&["demo.localhost"]);
    let origin = format!("http://demo.localhost:{}", proxy.addr.port());

    let robots = fetch(&client, &format!("{origin}/robots.txt")).await;
    assert_eq!(robots.status(), StatusCode::OK);
    assert_eq!(header(robots.headers(), "x-robots-tag"), None);
    assert!(
        header(robots.headers(), "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let robots = robots.text().await.unwrap();
    let urls: Vec<String> = [
        "/",
        "/about/",
        "/blog/first-post",
        "/_grove/api/v1/read?path=x",
        "/_grove/live",
        "/_grove/auth/login",
    ]
    .iter()
    .map(|path| format!("{origin}{path}"))
    .collect();
    let (allowed, sitemaps) = robotparser(&robots, &urls).await;
    assert_eq!(allowed, [true, true, true, false, false, false], "{robots}");
    assert_eq!(sitemaps, [format!("{origin}/sitemap.xml")]);

    let sitemap = fetch(&client, &format!("{origin}/sitemap.xml")).await;
    assert_eq!(sitemap.status(), StatusCode::OK);
    let etag = header(sitemap.headers(), "etag").unwrap().to_owned();
    let sitemap = sitemap.text().await.unwrap();
    assert!(sitemap.contains("<urlset"), "{sitemap}");
    let listed = locs(&sitemap);
    let paths: BTreeSet<String> = listed
        .iter()
        .map(|loc| loc.strip_prefix(&origin).unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = ["/", "/about/", "/blog/first-post", "/comments/", "/guestbook/"]
        .iter()
        .map(|path| (*path).to_owned())
        .collect();
    assert_eq!(paths, expected, "no 404.html, no redirect, each at its canonical form");
    assert_eq!(sitemap.matches("<lastmod>").count(), listed.len());
    for loc in &listed {
        let page = client.get(loc).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{loc}");
        assert_eq!(header(page.headers(), "x-robots-tag"), None, "{loc}");
        assert_eq!(
            header(page.headers(), "link"),
            None,
            "{loc} names no other canonical URL"
        );
    }
    let again = client
        .get(format!("{origin}/sitemap.xml"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn previews_and_other_hosts_are_never_indexed() {
    let proxy = Proxy::start("[sites.demo]\ndomains = [\"www.demo.test\"]\n");
    let dir = site_dir(&[("index.html", "<h1>one</h1>"), ("about/index.html", "<h1>about</h1>")]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    publish(proxy.local_store(), "demo", dir.path()).await;
    let client = proxy.client(&["demo.localhost", "www.demo.test", "1--demo.localhost"]);
    let port = proxy.addr.port();
    let url = |host: &str, path: &str| format!("http://{host}:{port}{path}");

    // The preview: served, but not indexed; its robots.txt lets crawlers
    // see that, and names no sitemap.
    // A node call is proxied to the storage node; its reply says so too.
    for path in [
        "/",
        "/nowhere",
        "/_grove/root",
        "/robots.txt",
        "/sitemap.xml",
        "/_grove/api/v1/read?path=a",
    ] {
        let response = fetch(&client, &url("1--demo.localhost", path)).await;
        assert_eq!(
            header(response.headers(), "x-robots-tag"),
            Some("noindex"),
            "preview {path}: {}",
            response.status()
        );
    }
    let preview_page = fetch(&client, &url("1--demo.localhost", "/")).await;
    assert_eq!(preview_page.status(), StatusCode::OK);
    let missing = fetch(&client, &url("1--demo.localhost", "/nowhere")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let preview_robots = fetch(&client, &url("1--demo.localhost", "/robots.txt"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!preview_robots.contains("Sitemap"), "{preview_robots}");
    let (allowed, _) = robotparser(&preview_robots, &[url("1--demo.localhost", "/about/")]).await;
    assert_eq!(allowed, [true]);
    let preview_sitemap = fetch(&client, &url("1--demo.localhost", "/sitemap.xml")).await;
    assert_eq!(preview_sitemap.status(), StatusCode::NOT_FOUND);
    let node_call = fetch(&client, &url("1--demo.localhost", "/_grove/api/v1/read?path=a")).await;
    assert_eq!(node_call.status(), StatusCode::UNAUTHORIZED, "answered by the node");

    // The site's other host: a 308 to the canonical one, path and query kept.
    let alias = fetch(&client, &url("demo.localhost", "/about/?utm=x&b=2")).await;
    assert_eq!(alias.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        header(alias.headers(), "location"),
        Some(url("www.demo.test", "/about/?utm=x&b=2").as_str())
    );
    assert_eq!(header(alias.headers(), "x-robots-tag"), Some("noindex"));
    let head = client.head(url("demo.localhost", "/")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::PERMANENT_REDIRECT);
    // ... but the host's own routes answer there, unindexed.
    let root = fetch(&client, &url("demo.localhost", "/_grove/root")).await;
    assert_eq!(root.status(), StatusCode::OK);
    assert_eq!(header(root.headers(), "x-robots-tag"), Some("noindex"));

    // The canonical host: indexed, and its sitemap lists only itself.
    let canonical = fetch(&client, &url("www.demo.test", "/about/")).await;
    assert_eq!(canonical.status(), StatusCode::OK);
    assert_eq!(header(canonical.headers(), "x-robots-tag"), None);
    let sitemap = fetch(&client, &url("www.demo.test", "/sitemap.xml"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        locs(&sitemap),
        [url("www.demo.test", "/"), url("www.demo.test", "/about/")]
    );
    let robots = fetch(&client, &url("www.demo.test", "/robots.txt"))
        .await
        .text()
        .await
        .unwrap();
    assert!(robots.contains(&format!("Sitemap: {}", url("www.demo.test", "/sitemap.xml"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_past_50000_pages_gets_a_sitemap_index() {
    let proxy = Proxy::start("");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("p")).unwrap();
    for n in 0..60_000 {
        std::fs::write(dir.path().join(format!("p/{n:05}.html")), format!("<h1>{n}</h1>")).unwrap();
    }
    publish(proxy.local_store(), "demo", dir.path()).await;
    let client = proxy.client(&["demo.localhost"]);
    let origin = format!("http://demo.localhost:{}", proxy.addr.port());
    let index = fetch(&client, &format!("{origin}/sitemap.xml"))
        .await
        .text()
        .await
        .unwrap();
    assert!(index.contains("<sitemapindex"), "{}", &index[..index.len().min(500)]);
    let parts = locs(&index);
    assert_eq!(
        parts,
        [format!("{origin}/sitemap-1.xml"), format!("{origin}/sitemap-2.xml")]
    );
    let mut urls = BTreeSet::new();
    for (part, expected) in parts.iter().zip([50_000, 10_000]) {
        let text = fetch(&client, part).await.text().await.unwrap();
        let listed = locs(&text);
        assert_eq!(listed.len(), expected, "{part}");
        urls.extend(listed);
    }
    assert_eq!(urls.len(), 60_000, "every page once");
    assert!(urls.contains(&format!("{origin}/p/59999")));
}

#[tokio::test]
async fn a_publish_says_what_the_sitemap_holds() {
    let host = Host::local("");
    let dir = site_dir(&[
        ("index.html", "<h1>home</h1>"),
        ("a.html", "<h1>a</h1>"),
        ("hidden.html", r#"<head><meta name="robots" content="noindex"></head>"#),
        ("copy.html", r#"<head><link rel="canonical" href="/a"></head>"#),
        ("style.css", "body{}"),
    ]);
    let summary = host.publish(dir.path(), "demo").await;
    assert_eq!(
        summary["sitemap"],
        serde_json::json!({ "generated": { "urls": 2, "files": 1 } }),
        "{summary}"
    );
    let own = site_dir(&[
        ("index.html", "<h1>home</h1>"),
        ("sitemap-index.xml", "<sitemapindex/>"),
    ]);
    let output = host
        .grove(&["publish", own.path().to_str().unwrap(), "--site", "demo"])
        .await;
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("sitemap: the site's own /sitemap-index.xml"), "{text}");
    let (status, robots) = host.page("demo", "/robots.txt").await;
    assert_eq!(status, StatusCode::OK);
    assert!(robots.ends_with("/sitemap-index.xml\n"), "{robots}");
}

#[tokio::test]
async fn wget_spiders_the_demo_site_without_a_broken_link_or_a_preview() {
    let proxy = Proxy::start("");
    publish(proxy.local_store(), "demo", &demo_site()).await;
    publish(proxy.local_store(), "demo", &demo_site()).await;
    let port = proxy.addr.port();
    let work = tempfile::tempdir().unwrap();
    // wget resolves no *.localhost name: the proxy setting sends every
    // request to the grove listener, which routes by the URL's host.
    let output = tokio::process::Command::new("wget")
        .current_dir(work.path())
        .args([
            "--spider",
            "-r",
            "-l",
            "5",
            "-e",
            "robots=on",
            "-e",
            "use_proxy=on",
            "-e",
            &format!("http_proxy=http://127.0.0.1:{port}/"),
            "--no-verbose",
            &format!("http://demo.localhost:{port}/"),
        ])
        .output()
        .await
        .expect("wget runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "wget found a problem:\n{log}");
    assert!(log.contains("Found no broken links."), "{log}");
    assert!(!log.contains("--demo.localhost"), "a preview host was reached:\n{log}");
    for path in [
        "/about/",
        "/blog/first-post",
        "/comments/",
        "/guestbook/",
        "/robots.txt",
    ] {
        assert!(
            log.contains(&format!("demo.localhost:{port}{path}")),
            "wget never saw {path}:\n{log}"
        );
    }
}
