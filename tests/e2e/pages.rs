//! Database-backed pages: a version whose route file or templates do not
//! parse is never committed, whether it comes through the `grove` CLI
//! (which checks before it uploads) or straight to the publish API (which
//! checks before it commits); the error names the file and line.

use grove_core::tree::{Entry, TreeNode};
use grove_core::{ContentHash, ContentType, SitePath};
use reqwest::StatusCode;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use grove_testkit::cloudflare::{FakeCloudflare, Limits};
use grove_testkit::host::{Host, stderr};
use grove_testkit::proxy::site_dir;

use crate::purge::{host_for, settled, tag};

const ROUTES: &str = "[[route]]\npath = \"/posts/{id}/\"\ntemplate = \"_templates/post.html\"\nsource = \"posts\"\n";
const GOOD_POST: &str = "{% set post = data.last(\"posts/\" ~ id) %}\n<h1>{{ post.data.title }}</h1>\n";
const BAD_POST: &str = "<h1>post</h1>\n{% for comment in %}\n{% endfor %}\n";

#[tokio::test]
async fn the_cli_refuses_pages_that_do_not_parse_and_names_the_line() {
    let host = Host::local("");
    let bad_template = site_dir(&[
        ("index.html", "<h1>home</h1>"),
        ("_grove/pages.toml", ROUTES),
        ("_templates/post.html", BAD_POST),
    ]);
    let output = host
        .grove(&["publish", bad_template.path().to_str().unwrap(), "--site", "demo"])
        .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("_templates/post.html:2:"),
        "{}",
        stderr(&output)
    );

    let bad_routes = site_dir(&[
        ("_grove/pages.toml", &format!("{ROUTES}colour = \"red\"\n")),
        ("_templates/post.html", GOOD_POST),
    ]);
    let output = host
        .grove(&["publish", bad_routes.path().to_str().unwrap(), "--site", "demo"])
        .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("_grove/pages.toml:5:"), "{}", stderr(&output));
    assert_eq!(host.live("demo").await, 0, "nothing was committed");

    let good = site_dir(&[
        ("index.html", "<h1>home</h1>"),
        ("_grove/pages.toml", ROUTES),
        ("_templates/post.html", GOOD_POST),
    ]);
    let published = host.publish(good.path(), "demo").await;
    assert_eq!(published["version"], 1);
}

#[tokio::test]
async fn the_publish_api_refuses_them_too() {
    let host = Host::local("");
    let files = [("_grove/pages.toml", ROUTES), ("_templates/post.html", BAD_POST)];
    let mut entries = Vec::new();
    for (path, body) in files {
        let hash = ContentHash::of(body.as_bytes());
        let (status, reply) = host.upload(&hash, body.to_owned()).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        entries.push(Entry {
            path: SitePath::parse(path).unwrap(),
            hash,
            size: body.len() as u64,
            content_type: ContentType::parse("text/plain").unwrap(),
        });
    }
    let leaf = TreeNode::Leaf(entries).encode();
    assert_eq!(host.send_nodes("nodes", &[&leaf]).await.0, StatusCode::OK);
    let (status, error) = host.commit_first(ContentHash::of(&leaf)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"], "invalid_pages");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("_templates/post.html:2: "),
        "{error}"
    );
    assert_eq!(host.live("demo").await, 0);
}

const PAGES: &str = r#"[[route]]
path = "/posts/{id}/"
template = "_templates/post.html"
source = "posts"

[[route]]
path = "/"
template = "_templates/home.html"
"#;
const POST: &str = r#"{% extends "_templates/base.html" %}{% block body %}{% set post = data.last("posts/" ~ id) %}<h1>{{ post.data.title }}</h1>
{% for comment in data.entries("posts/" ~ id ~ "/comments", limit=20) %}<p>{{ comment.data.text }}</p>
{% endfor %}{% endblock %}"#;
const HOME: &str = r#"{% extends "_templates/base.html" %}{% block body %}{% for id in data.paths("posts") %}<a href="/posts/{{ id }}/">{{ id }}</a>{% endfor %}{% endblock %}"#;
const BASE: &str =
    "<!doctype html><html><head><title>posts</title></head><body>{% block body %}{% endblock %}</body></html>";

/// A host serving a database-backed `demo`, and a client for it.
async fn pages_host() -> (Host, reqwest::Client) {
    let host = Host::local("");
    let client = publish_pages(&host, &[]).await;
    (host, client)
}

/// Publishes the posts site to `demo`, each of `changed` (path, text) in
/// place of the file it names; a client.
async fn publish_pages(host: &Host, changed: &[(&str, &str)]) -> reqwest::Client {
    let forever = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
    let mut files = vec![
        ("index.html", "<h1>static home</h1>"),
        ("_grove/pages.toml", PAGES),
        ("_templates/base.html", BASE),
        ("_templates/post.html", POST),
        ("_templates/home.html", HOME),
        ("_templates/forever.html", forever),
    ];
    for (path, text) in changed {
        let file = files
            .iter_mut()
            .find(|(file, _)| file == path)
            .expect("a file of the site");
        file.1 = text;
    }
    let dir = site_dir(&files);
    host.publish(dir.path(), "demo").await;
    host.proxy.client(&["demo.localhost"])
}

async fn write(host: &Host, client: &reqwest::Client, path: &str, data: serde_json::Value) -> String {
    let response = client
        .post(host.proxy.url("demo.localhost", "/_grove/api/v1/write"))
        .bearer_auth(&host.token)
        .json(&serde_json::json!({ "path": path, "data": data }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reply: serde_json::Value = response.json().await.unwrap();
    reply["ts"].as_str().unwrap().to_owned()
}

/// Writes a post titled with its id for each of `ids`.
async fn write_posts(host: &Host, client: &reqwest::Client, ids: &[&str]) {
    for id in ids {
        write(host, client, &format!("posts/{id}"), serde_json::json!({ "title": id })).await;
    }
}

async fn get(host: &Host, client: &reqwest::Client, path: &str, seen: Option<&str>) -> reqwest::Response {
    let mut request = client.get(host.proxy.url("demo.localhost", path));
    if let Some(seen) = seen {
        request = request.header("x-grove-seen", seen);
    }
    request.send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|value| value.to_str().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_has_seen_a_write_gets_a_page_that_reflects_it() {
    let (host, client) = pages_host().await;
    write(&host, &client, "posts/42", serde_json::json!({ "title": "Hello" })).await;
    let first = write(
        &host,
        &client,
        "posts/42/comments",
        serde_json::json!({ "text": "first!" }),
    )
    .await;
    let page = get(&host, &client, "/posts/42/", Some(&first)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let as_of: u64 = header(&page, "x-grove-as-of").unwrap().parse().unwrap();
    assert!(as_of >= first.parse::<u64>().unwrap(), "as of {as_of}, seen {first}");
    assert_eq!(header(&page, "cache-control"), Some("private, no-store"));
    let text = page.text().await.unwrap();
    assert!(
        text.contains("<h1>Hello</h1>") && text.contains("<p>first!</p>"),
        "{text}"
    );

    // Each new write is in the next page of whoever has seen it.
    for n in 0..5 {
        let ts = write(
            &host,
            &client,
            "posts/42/comments",
            serde_json::json!({ "text": format!("reply {n}") }),
        )
        .await;
        let page = get(&host, &client, "/posts/42/", Some(&ts)).await;
        let text = page.text().await.unwrap();
        assert!(text.contains(&format!("<p>reply {n}</p>")), "{text}");
    }
    // Without a seen timestamp: the latest render at once, like a file.
    let anonymous = get(&host, &client, "/posts/42/", None).await;
    assert_eq!(anonymous.status(), StatusCode::OK);
    assert!(header(&anonymous, "etag").is_some());
    assert!(
        header(&anonymous, "cdn-cache-control")
            .unwrap()
            .contains("stale-while-revalidate")
    );
    // The home page lists the posts; a post that does not exist is no page.
    let home = get(&host, &client, "/", Some(&first)).await.text().await.unwrap();
    assert!(home.contains("<a href=\"/posts/42/\">42</a>"), "{home}");
    assert_eq!(
        get(&host, &client, "/posts/7/", None).await.status(),
        StatusCode::NOT_FOUND
    );
    for source in ["/_templates/post.html", "/_grove/pages.toml"] {
        assert_eq!(
            get(&host, &client, source, None).await.status(),
            StatusCode::NOT_FOUND,
            "{source}"
        );
    }
    let malformed = get(&host, &client, "/posts/42/", Some("yesterday")).await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_requests_for_a_dirty_page_cause_one_render() {
    let (host, client) = pages_host().await;
    write(&host, &client, "posts/1", serde_json::json!({ "title": "One" })).await;
    let ts = write(&host, &client, "posts/1/comments", serde_json::json!({ "text": "a" })).await;
    assert_eq!(
        get(&host, &client, "/posts/1/", Some(&ts)).await.status(),
        StatusCode::OK
    );
    let before = host.proxy.metric("grove_page_renders_total{result=\"ok\"}").await;
    let ts = write(&host, &client, "posts/1/comments", serde_json::json!({ "text": "b" })).await;
    let requests = (0..200).map(|_| {
        let (host, client, ts) = (&host, &client, ts.clone());
        async move { get(host, client, "/posts/1/", Some(&ts)).await.text().await.unwrap() }
    });
    let pages = futures::future::join_all(requests).await;
    assert!(pages.iter().all(|page| page.contains("<p>b</p>")));
    let renders = host.proxy.metric("grove_page_renders_total{result=\"ok\"}").await - before;
    assert_eq!(renders, 1.0, "one render for 200 requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_that_never_ends_is_stopped_and_the_last_good_page_stays() {
    let host = Host::local("");
    let spin = r#"{% set ns = namespace(count=0) %}{% for i in range(data.last("work").data.rounds) %}{% for j in range(10000) %}{% set ns.count = ns.count + 1 %}{% endfor %}{% endfor %}<p>counted {{ ns.count }}</p>"#;
    let dir = site_dir(&[
        (
            "_grove/pages.toml",
            "[[route]]\npath = \"/spin/\"\ntemplate = \"_templates/spin.html\"\n",
        ),
        ("_templates/spin.html", spin),
    ]);
    host.publish(dir.path(), "demo").await;
    let client = host.proxy.client(&["demo.localhost"]);
    let light = write(&host, &client, "work", serde_json::json!({ "rounds": 1 })).await;
    let good = get(&host, &client, "/spin/", Some(&light)).await;
    assert_eq!(good.status(), StatusCode::OK);
    assert_eq!(good.text().await.unwrap(), "<p>counted 10000</p>");
    let heavy = write(&host, &client, "work", serde_json::json!({ "rounds": 10000 })).await;
    let page = get(&host, &client, "/spin/", Some(&heavy)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, "x-grove-stale"), Some("1"));
    assert!(header(&page, "cache-control").unwrap().contains("no-store"));
    assert_eq!(page.text().await.unwrap(), "<p>counted 10000</p>", "the last good page");
    // The render runs out of fuel (in a debug build it may outlast the
    // request's wait), is counted, and the last good page stays.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while host.proxy.metric("grove_page_renders_total{result=\"failed\"}").await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the render never failed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = get(&host, &client, "/spin/", None).await.text().await.unwrap();
    assert_eq!(after, "<p>counted 10000</p>");
    // `grove versions` shows the failure, with its template and line.
    let versions = || async {
        let output = host.grove(&["versions", "--site", "demo"]).await;
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = versions().await;
        if listed.contains("RENDER FAILED /spin/: _templates/spin.html:1: ") && listed.contains("fuel") {
            break;
        }
        assert!(Instant::now() < deadline, "{listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once it renders again (after any failing render still running: in
    // a debug build one takes seconds), the failure is gone.
    write(&host, &client, "work", serde_json::json!({ "rounds": 2 })).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&host, &client, "/spin/", None).await.text().await.unwrap() != "<p>counted 20000</p>" {
        assert!(Instant::now() < deadline, "the page never rendered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while versions().await.contains("RENDER FAILED") {
        assert!(Instant::now() < deadline, "the failure stayed listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_guestbook_shows_an_entry_once_it_is_written() {
    let host = Host::local("");
    let demo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proxy/demo-site");
    host.publish(&demo, "demo").await;
    let client = host.proxy.client(&["demo.localhost"]);
    let empty = get(&host, &client, "/guestbook/", None).await.text().await.unwrap();
    assert!(empty.contains("No entries yet"), "{empty}");
    let ts = write(
        &host,
        &client,
        "guestbook",
        serde_json::json!({ "name": "Ada", "message": "hello <grove>" }),
    )
    .await;
    let page = get(&host, &client, "/guestbook/", Some(&ts))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<strong>Ada</strong>: hello &lt;grove&gt;"),
        "escaped, and there: {page}"
    );
    // Soon everyone sees it, seen or not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = get(&host, &client, "/guestbook/", None).await.text().await.unwrap();
        if page.contains("<strong>Ada</strong>") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the background render never came");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Polls `path` (nothing seen) until its page contains `text`.
async fn until_rendered(host: &Host, client: &reqwest::Client, path: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = get(host, client, path, None).await.text().await.unwrap();
        if page.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never showed {text:?}: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cdn_purges_exactly_the_re_rendered_pages_once_each() {
    let limits = Limits::default();
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    let host = host_for(&fake, &limits, "", "");
    let client = publish_pages(&host, &[]).await;
    write_posts(&host, &client, &["1", "2"]).await;
    let ts = write(&host, &client, "posts/2/comments", serde_json::json!({ "text": "x" })).await;
    for path in ["/posts/1/", "/posts/2/", "/"] {
        let page = get(&host, &client, path, Some(&ts)).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
    }
    // Its templates and the route file tag a page too, so a publish that
    // changes them purges it. (A seen request is private: no tags.)
    let page = get(&host, &client, "/posts/1/", None).await;
    let tags: BTreeSet<&str> = header(&page, "cache-tag").unwrap().split(',').collect();
    for file in [
        "posts/1/index.html",
        "_templates/post.html",
        "_templates/base.html",
        "_grove/pages.toml",
    ] {
        assert!(tags.contains(tag(file).as_str()), "{file}: {tags:?}");
    }
    let before = fake.purged_tags().len();

    // A burst of writes to one post re-renders it, maybe more than once:
    // its tag is purged once, and nothing else is.
    for n in 0..5 {
        write(
            &host,
            &client,
            "posts/1/comments",
            serde_json::json!({ "text": format!("c{n}") }),
        )
        .await;
    }
    until_rendered(&host, &client, "/posts/1/", "<p>c4</p>").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.purged_tags().len() == before {
        assert!(Instant::now() < deadline, "no purge came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the settle time of any later mark.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fake.purged_tags()[before..], [tag("posts/1/index.html")]);

    // A publish changing the base template purges its tag, which every
    // page rendered from it carries.
    let base = BASE.replace("<title>posts</title>", "<title>all posts</title>");
    publish_pages(&host, &[("_templates/base.html", &base)]).await;
    let purge = settled(&host, 2, Duration::from_secs(20)).await;
    assert_eq!(purge["state"], "done", "{purge}");
    assert!(
        fake.purged_tags().contains(&tag("_templates/base.html")),
        "{:?}",
        fake.purged_tags()
    );
    assert!(fake.refusals().is_empty(), "{:?}", fake.refusals());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_re_renders_only_the_pages_whose_templates_changed() {
    let (host, client) = pages_host().await;
    write(&host, &client, "posts/1", serde_json::json!({ "title": "One" })).await;
    let ts = write(&host, &client, "posts/1/comments", serde_json::json!({ "text": "a" })).await;
    let post = get(&host, &client, "/posts/1/", Some(&ts)).await;
    let post_as_of = header(&post, "x-grove-as-of").unwrap().to_owned();
    let post_text = post.text().await.unwrap();
    assert!(
        get(&host, &client, "/", Some(&ts))
            .await
            .text()
            .await
            .unwrap()
            .contains("/posts/1/")
    );
    let renders = || host.proxy.metric("grove_page_renders_total{result=\"ok\"}");
    let before = renders().await;

    let home = HOME.replace("{% block body %}", "{% block body %}<h2>every post</h2>");
    publish_pages(&host, &[("_templates/home.html", &home)]).await;
    // The post's templates are the same: its page is carried over as it
    // was, with no render.
    let carried = get(&host, &client, "/posts/1/", None).await;
    assert_eq!(header(&carried, "x-grove-version"), Some("2"));
    assert_eq!(header(&carried, "x-grove-as-of"), Some(post_as_of.as_str()));
    assert_eq!(carried.text().await.unwrap(), post_text);
    // The home page's changed: it re-renders (in the background, or for
    // this request: once either way).
    until_rendered(&host, &client, "/", "<h2>every post</h2>").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(renders().await - before, 1.0, "only the home page re-rendered");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_proxy_serves_the_kept_render_at_once_and_keeps_it_fresh() {
    let (mut host, client) = pages_host().await;
    write_posts(&host, &client, &["1", "2"]).await;
    let ts = write(&host, &client, "posts/1/comments", serde_json::json!({ "text": "a" })).await;
    let page = get(&host, &client, "/posts/1/", Some(&ts)).await;
    let as_of = header(&page, "x-grove-as-of").unwrap().to_owned();
    let text = page.text().await.unwrap();
    assert_eq!(
        get(&host, &client, "/posts/2/", Some(&ts)).await.status(),
        StatusCode::OK
    );
    // The list of renders is written within a second of a render.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    host.proxy.crash_and_restart();
    let client = host.proxy.client(&["demo.localhost"]);
    let kept = get(&host, &client, "/posts/1/", None).await;
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(header(&kept, "x-grove-as-of"), Some(as_of.as_str()));
    assert_eq!(kept.text().await.unwrap(), text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let renders = host.proxy.metric("grove_page_renders_total{result=\"ok\"}").await;
    assert_eq!(renders, 0.0, "the kept render was served, not a new one");

    // Still kept fresh: a write after the restart is in the next page of
    // whoever has seen it.
    let ts = write(&host, &client, "posts/1/comments", serde_json::json!({ "text": "b" })).await;
    let page = get(&host, &client, "/posts/1/", Some(&ts)).await.text().await.unwrap();
    assert!(page.contains("<p>b</p>") && page.contains("<p>a</p>"), "{page}");

    // A write to a page no request has asked for since the restart goes by
    // before its slot exists: the kept render is served at once, taken as
    // dirty, and re-rendered.
    let late = write(
        &host,
        &client,
        "posts/2/comments",
        serde_json::json!({ "text": "late" }),
    )
    .await;
    get(&host, &client, "/posts/1/", Some(&late)).await; // the feed is past it
    let kept = get(&host, &client, "/posts/2/", None).await.text().await.unwrap();
    assert!(kept.contains("<h1>2</h1>"), "{kept}");
    until_rendered(&host, &client, "/posts/2/", "<p>late</p>").await;
    let seen = get(&host, &client, "/posts/2/", Some(&late))
        .await
        .text()
        .await
        .unwrap();
    assert!(seen.contains("<p>late</p>"), "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_touching_too_many_pages_leaves_them_to_their_next_request_and_purges_the_site_once() {
    let limits = Limits::default();
    let fake = FakeCloudflare::start(limits.clone()).await.unwrap();
    // The node meters each handle (200 requests a second by default): 300
    // renders at once would be metered.
    let host = host_for(&fake, &limits, "", "[node.limits]\nrequests_per_second = 100000\n");
    // Every post shows the site's motto: one write to it touches them all.
    let post = POST.replace(
        "{% block body %}",
        "{% block body %}<em>{{ data.last(\"motto\").data.text }}</em>",
    );
    let client = publish_pages(&host, &[("_templates/post.html", &post)]).await;
    write(&host, &client, "motto", serde_json::json!({ "text": "old motto" })).await;
    let posts = 300;
    let mut ts = String::new();
    for id in 0..posts {
        ts = write(
            &host,
            &client,
            &format!("posts/{id}"),
            serde_json::json!({ "title": id }),
        )
        .await;
    }
    for id in 0..posts {
        let page = get(&host, &client, &format!("/posts/{id}/"), Some(&ts)).await;
        assert!(page.text().await.unwrap().contains("old motto"));
    }
    let renders = || host.proxy.metric("grove_page_renders_total{result=\"ok\"}");
    let before = renders().await;
    let purged = fake.purged_tags().len();

    write(&host, &client, "motto", serde_json::json!({ "text": "new motto" })).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake.purged_tags()[purged..].contains(&"grove:demo".to_owned()) {
        assert!(Instant::now() < deadline, "the site tag was not purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(renders().await, before, "nothing re-rendered in the background");
    // A request that has seen nothing still gets the page as of the write.
    let page = get(&host, &client, "/posts/7/", None).await.text().await.unwrap();
    assert!(page.contains("new motto"), "{page}");
    assert_eq!(renders().await, before + 1.0);
    // Past the settle time of any page purge: none came, the site's was enough.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fake.purged_tags()[purged..], ["grove:demo".to_owned()], "purged once");
}
