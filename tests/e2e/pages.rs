//! Database-backed pages: a version whose route file or templates do not
//! parse is never committed, whether it comes through the `grove` CLI
//! (which checks before it uploads) or straight to the publish API (which
//! checks before it commits); the error names the file and line.

use grove_core::tree::{Entry, TreeNode};
use grove_core::{ContentHash, ContentType, SitePath};
use reqwest::StatusCode;

use grove_testkit::host::{Host, stderr};
use grove_testkit::proxy::site_dir;

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
