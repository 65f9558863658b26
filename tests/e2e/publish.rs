//! Publishing end to end: the `grove` CLI process against a `grove-proxy`
//! process, with the local store and with a real S3-protocol server.

use std::time::Duration;

use grove_core::publish_api::{self, PREFIX};
use grove_core::tree::{Entry, TreeNode};
use grove_core::{ContentHash, ContentType, SiteName, SitePath};
use grove_objects::store::{ObjectKey, ObjectStore};
use reqwest::StatusCode;
use serde_json::Value;

use grove_testkit::host::{Host, grove_bin, random_token, stderr};
use grove_testkit::proxy::site_dir;

/// The encoding of a one-file leaf node: `path` with `content`.
fn leaf_of(path: &str, content: &[u8]) -> Vec<u8> {
    TreeNode::Leaf(vec![Entry {
        path: SitePath::parse(path).unwrap(),
        hash: ContentHash::of(content),
        size: content.len() as u64,
        content_type: ContentType::parse("text/html").unwrap(),
    }])
    .encode()
}

/// A site of `count` files of `size` pseudo-random bytes each, plus an index.
fn generated_site(count: usize, size: usize, seed: u8) -> tempfile::TempDir {
    let dir = site_dir(&[("index.html", "<h1>generated</h1>")]);
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    for i in 0..count {
        let mut bytes = vec![0u8; size];
        let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(seed);
        for byte in &mut bytes {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        std::fs::write(dir.path().join(format!("assets/{i:05}.bin")), bytes).unwrap();
    }
    dir
}

async fn first_publish_then_one_change_uploads_one_blob(host: &Host) {
    let dir = site_dir(&[
        ("index.html", "<h1>one</h1>"),
        ("about/index.html", "about"),
        ("assets/app.js", "console.log(1)"),
    ]);
    let first = host.publish(dir.path(), "demo").await;
    assert_eq!(first["version"], 1);
    assert_eq!(first["files"], 3);
    assert_eq!(first["uploaded_files"], 3);
    assert_eq!(first["reused_files"], 0);
    assert_eq!(
        first["url"],
        format!("http://demo.localhost:{}/", host.proxy.addr.port())
    );
    assert_eq!(
        first["preview_url"],
        format!("http://1--demo.localhost:{}/", host.proxy.addr.port())
    );
    // This host moved the root itself, so the new version is served at once.
    assert_eq!(
        host.page("demo", "/").await,
        (StatusCode::OK, "<h1>one</h1>".to_owned())
    );

    std::fs::write(dir.path().join("index.html"), "<h1>two</h1>").unwrap();
    let blobs_before = host.blob_count().await;
    let second = host.publish(dir.path(), "demo").await;
    assert_eq!(host.blob_count().await, blobs_before + 1);
    assert_eq!(second["version"], 2);
    assert_eq!(second["uploaded_files"], 1, "{second}");
    assert_eq!(second["uploaded_bytes"], 12);
    assert_eq!(second["reused_files"], 2);
    assert_eq!(host.page("demo", "/").await.1, "<h1>two</h1>");
    assert_eq!(host.page("1--demo", "/").await.1, "<h1>one</h1>");

    // Publishing the same directory again uploads nothing and still makes a version.
    let third = host.publish(dir.path(), "demo").await;
    assert_eq!(third["uploaded_files"], 0);
    assert_eq!(third["root"], second["root"]);
}

#[tokio::test]
async fn local_first_publish_then_one_change_uploads_one_blob() {
    first_publish_then_one_change_uploads_one_blob(&Host::local("")).await;
}

#[tokio::test]
async fn s3_first_publish_then_one_change_uploads_one_blob() {
    first_publish_then_one_change_uploads_one_blob(&Host::s3("").await).await;
}

async fn an_interrupted_publish_resumes_uploading_only_the_rest(host: &Host, files: usize) {
    let dir = generated_site(files, 16 << 10, 1);
    let mut child = host
        .grove_as(
            &host.token,
            &["publish", dir.path().to_str().unwrap(), "--site", "big", "--json"],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the CLI once some, but not all, blobs have arrived.
    loop {
        let stored = host.blob_count().await;
        if stored >= 50 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the publish ended before it could be interrupted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = host.blob_count().await;
    assert!(stored < files + 1, "the kill came after every upload ({stored})");
    assert_eq!(host.live("big").await, 0, "an interrupted publish must not go live");

    let rerun = host.publish(dir.path(), "big").await;
    assert_eq!(rerun["files"], files + 1);
    assert_eq!(rerun["uploaded_files"], files + 1 - stored, "{rerun}");
    assert_eq!(host.blob_count().await, files + 1);
    let (status, body) = host.page("big", "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "<h1>generated</h1>"));
}

#[tokio::test]
async fn local_an_interrupted_publish_resumes_uploading_only_the_rest() {
    an_interrupted_publish_resumes_uploading_only_the_rest(&Host::local(""), 1500).await;
}

#[tokio::test]
async fn s3_an_interrupted_publish_resumes_uploading_only_the_rest() {
    // Through the S3 server each upload is slower, so fewer files still leave
    // time to interrupt.
    an_interrupted_publish_resumes_uploading_only_the_rest(&Host::s3("").await, 300).await;
}

async fn concurrent_publishes_both_land_in_a_linear_history(host: &Host) {
    let a = generated_site(60, 4096, 2);
    let b = generated_site(60, 4096, 3);
    let (a_dir, b_dir) = (a.path().to_str().unwrap(), b.path().to_str().unwrap());
    let a_args = ["publish", a_dir, "--site", "race", "--json"];
    let b_args = ["publish", b_dir, "--site", "race", "--json"];
    let (first, second) = tokio::join!(host.grove(&a_args), host.grove(&b_args));
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));
    // The two raced: whichever committed second had to rebase, and said so.
    let notices = stderr(&first) + &stderr(&second);
    assert!(notices.contains("rebasing onto it"), "no rebase reported: {notices}");
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    let second: Value = serde_json::from_slice(&second.stdout).unwrap();
    let mut numbers = [first["version"].as_u64().unwrap(), second["version"].as_u64().unwrap()];
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2]);

    let history = host.grove(&["versions", "--site", "race", "--json"]).await;
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history["live"], 2);
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["parent"], 1);
    assert_eq!(versions[1]["parent"], Value::Null);
    let trees: Vec<&Value> = versions.iter().map(|version| &version["tree"]).collect();
    assert!(trees.contains(&&first["root"]) && trees.contains(&&second["root"]));
}

#[tokio::test]
async fn local_concurrent_publishes_both_land_in_a_linear_history() {
    concurrent_publishes_both_land_in_a_linear_history(&Host::local("")).await;
}

#[tokio::test]
async fn s3_concurrent_publishes_both_land_in_a_linear_history() {
    concurrent_publishes_both_land_in_a_linear_history(&Host::s3("").await).await;
}

#[tokio::test]
async fn rollback_and_roll_forward_make_new_versions() {
    let host = Host::local("");
    let dir = site_dir(&[("index.html", "first")]);
    host.publish(dir.path(), "demo").await;
    std::fs::write(dir.path().join("index.html"), "second").unwrap();
    host.publish(dir.path(), "demo").await;

    let back = host.grove(&["rollback", "--site", "demo", "--json"]).await;
    assert!(back.status.success(), "{}", stderr(&back));
    let back: Value = serde_json::from_slice(&back.stdout).unwrap();
    assert_eq!(back["version"], 3);
    assert_eq!(host.page("demo", "/").await.1, "first");

    let forward = host.grove(&["rollback", "--site", "demo", "--to", "2"]).await;
    assert!(forward.status.success(), "{}", stderr(&forward));
    assert_eq!(host.page("demo", "/").await.1, "second");
    let listing = String::from_utf8(host.grove(&["versions", "--site", "demo"]).await.stdout).unwrap();
    assert!(
        listing.contains("rollback to 2") && listing.contains("rollback to 1"),
        "{listing}"
    );
    assert!(listing.lines().next().unwrap().starts_with("*     4"), "{listing}");

    let unknown = host.grove(&["rollback", "--site", "demo", "--to", "9"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("has no version 9"), "{}", stderr(&unknown));
    assert_eq!(host.live("demo").await, 4);
}

#[tokio::test]
async fn dry_run_and_diff_report_changes_and_change_nothing() {
    let host = Host::local("");
    let dir = site_dir(&[("index.html", "one"), ("old.html", "old"), ("keep.css", "body{}")]);
    host.publish(dir.path(), "demo").await;
    std::fs::write(dir.path().join("index.html"), "two").unwrap();
    std::fs::remove_file(dir.path().join("old.html")).unwrap();
    std::fs::write(dir.path().join("new.html"), "new").unwrap();
    let blobs = host.blob_count().await;

    let dry = host
        .grove(&[
            "publish",
            dir.path().to_str().unwrap(),
            "--site",
            "demo",
            "--dry-run",
            "--json",
        ])
        .await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["added"], serde_json::json!(["new.html"]));
    assert_eq!(report["changed"], serde_json::json!(["index.html"]));
    assert_eq!(report["removed"], serde_json::json!(["old.html"]));

    let diff = host
        .grove(&["diff", "--site", "demo", dir.path().to_str().unwrap()])
        .await;
    assert_eq!(
        String::from_utf8(diff.stdout).unwrap(),
        "+ new.html\n~ index.html\n- old.html\n"
    );
    assert_eq!(host.blob_count().await, blobs, "a dry run uploaded content");
    assert_eq!(host.live("demo").await, 1);
    assert_eq!(host.page("demo", "/").await.1, "one");
}

#[tokio::test]
async fn forged_expired_revoked_and_wrong_site_tokens_are_refused() {
    let host = Host::local("");
    let dir = site_dir(&[("index.html", "mine")]);
    let dir_arg = dir.path().to_str().unwrap();
    let publish_args = ["publish", dir_arg, "--site", "demo"];
    let forged = host.grove_with(&random_token(), &publish_args).await;
    assert_eq!(forged.status.code(), Some(1));
    assert!(stderr(&forged).contains("unknown or revoked"), "{}", stderr(&forged));
    let malformed = host.grove_with("grove_not-a-token", &publish_args).await;
    assert_eq!(malformed.status.code(), Some(1));
    assert!(stderr(&malformed).contains("malformed"), "{}", stderr(&malformed));

    let other_site = host.grant("sites/other", "1h").await;
    let refused = host.grove_with(&other_site, &publish_args).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("403"), "{}", stderr(&refused));

    let short = host.grant("sites/demo", "2s").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expired = host.grove_with(&short, &publish_args).await;
    assert_eq!(expired.status.code(), Some(1));
    assert!(stderr(&expired).contains("expired"), "{}", stderr(&expired));

    let revoked = host.grant("sites/demo", "1h").await;
    let works = host.grove_with(&revoked, &publish_args).await;
    assert!(works.status.success(), "{}", stderr(&works));
    let revoke = host.grove(&["token", "revoke", &revoked]).await;
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    let after = host.grove_with(&revoked, &publish_args).await;
    assert_eq!(after.status.code(), Some(1));
    assert!(stderr(&after).contains("unknown or revoked"), "{}", stderr(&after));

    // A missing header is a 401 that says what to send.
    let bare = reqwest::Client::new()
        .post(format!("{}{PREFIX}/sites/demo/offer", host.base()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(bare.headers()["www-authenticate"], "Bearer");
    // Only the one publish with a valid token went live.
    assert_eq!(host.live("demo").await, 1);
}

#[tokio::test]
async fn wrong_content_is_refused_at_upload_and_at_commit() {
    let host = Host::local("");
    let claimed = ContentHash::of(b"the real bytes");

    // At upload: the host hashes what it receives and keeps nothing else.
    let (status, error) = host.upload(&claimed, "other bytes").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"], "hash_mismatch");
    assert_eq!(host.blob_count().await, 0);

    // At commit: a tree whose blob never arrived is reported, not published.
    let encoded = leaf_of("index.html", b"the real bytes");
    assert_eq!(host.send_nodes("nodes", &[&encoded]).await.0, StatusCode::OK);
    let (status, error) = host.commit_first(ContentHash::of(&encoded)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"], "missing_content");
    assert_eq!(error["missing_blobs"][0]["hash"], claimed.to_hex());
    assert_eq!(host.live("demo").await, 0);

    // Corrupt bytes planted under the hash (a bad presigned upload, say) are
    // found at commit and removed; the CLI uploads the real ones and succeeds.
    host.store
        .put(
            &ObjectKey::new(format!("blobs/{claimed}")).unwrap(),
            "corrupt bytes!".into(),
        )
        .await
        .unwrap();
    let dir = site_dir(&[("index.html", "the real bytes")]);
    let published = host.publish(dir.path(), "demo").await;
    assert_eq!(published["version"], 1);
    assert_eq!(host.page("demo", "/").await.1, "the real bytes");
}

#[tokio::test]
async fn s3_a_corrupt_blob_in_the_bucket_is_replaced_before_anything_goes_live() {
    let host = Host::s3("").await;
    let dir = site_dir(&[("index.html", "honest content"), ("a.css", "a{}")]);
    let hash = ContentHash::of(b"honest content");
    host.store
        .put(
            &ObjectKey::new(format!("blobs/{hash}")).unwrap(),
            "lying content!".into(),
        )
        .await
        .unwrap();
    let published = host.publish(dir.path(), "demo").await;
    assert_eq!(published["version"], 1);
    assert_eq!(host.page("demo", "/").await.1, "honest content");
}

#[tokio::test]
async fn symlinks_are_followed_and_dangling_ones_skipped_with_one_warning() {
    let host = Host::local("");
    let outside = site_dir(&[("shared.css", "body{}")]);
    let dir = site_dir(&[("index.html", "ok")]);
    std::os::unix::fs::symlink(outside.path().join("shared.css"), dir.path().join("style.css")).unwrap();
    std::os::unix::fs::symlink("/usr/share/javascript/jquery/nope.js", dir.path().join("jquery.js")).unwrap();
    let output = host
        .grove(&["publish", dir.path().to_str().unwrap(), "--site", "demo", "--json"])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let warnings: Vec<String> = stderr(&output)
        .lines()
        .filter(|line| line.contains("jquery.js"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        warnings,
        ["warning: skipped symlink jquery.js -> /usr/share/javascript/jquery/nope.js (dangling)"],
        "one line names the dangling link"
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["files"], 2, "{summary}");
    assert_eq!(summary["skipped_links"].as_array().unwrap().len(), 1, "{summary}");
    assert_eq!(summary["skipped_links"][0]["path"], "jquery.js");
    assert_eq!(
        host.page("demo", "/style.css").await,
        (StatusCode::OK, "body{}".to_owned())
    );
}

#[tokio::test]
async fn traversal_names_and_malformed_nodes_are_refused() {
    let host = Host::local("");
    let dir = site_dir(&[("index.html", "ok")]);
    std::fs::write(dir.path().join("..\\..\\etc\\passwd"), "x").unwrap();
    let traversal = host
        .grove(&["publish", dir.path().to_str().unwrap(), "--site", "demo"])
        .await;
    assert_eq!(traversal.status.code(), Some(1));
    assert!(stderr(&traversal).contains("backslash"), "{}", stderr(&traversal));
    assert_eq!(host.blob_count().await, 0);

    // A node naming a path that would escape the site, sent straight to the API.
    let mut encoded = leaf_of("zz/passwd", b"x");
    let at = encoded.windows(2).position(|pair| pair == b"zz").unwrap();
    encoded[at..at + 2].copy_from_slice(b"..");
    for route in ["probe", "nodes"] {
        let (status, error) = host.send_nodes(route, &[&encoded]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{route}");
        assert_eq!(error["error"], "bad_node");
    }
    assert!(host.store.list("trees/", None, 10).await.unwrap().keys.is_empty());
    assert_eq!(host.live("demo").await, 0);
}

#[tokio::test]
async fn limits_are_refused_with_their_names() {
    let host =
        Host::local("[publish]\nmax_file_bytes = 1000\nmax_files_per_site = 3\n[http]\nmax_request_body_bytes = 4096");
    let large = site_dir(&[("index.html", "ok"), ("big.bin", &"x".repeat(2000))]);
    let refused = host
        .grove(&["publish", large.path().to_str().unwrap(), "--site", "demo"])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("413"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("max_file_bytes"), "{}", stderr(&refused));

    let many = site_dir(&[("a.html", "a"), ("b.html", "b"), ("c.html", "c"), ("d.html", "d")]);
    let refused = host
        .grove(&["publish", many.path().to_str().unwrap(), "--site", "demo"])
        .await;
    assert!(stderr(&refused).contains("422"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("max_files_per_site"), "{}", stderr(&refused));
    assert_eq!(host.blob_count().await, 0, "refused before any upload");

    let hash = ContentHash::of(&[b'y'; 2000]);
    let (status, error) = host.upload(&hash, vec![b'y'; 2000]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["limit"], "publish.max_file_bytes");
    let (status, error) = host
        .call(reqwest::Method::POST, "sites/demo/probe", vec![0u8; 5000])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["limit"], "http.max_request_body_bytes");
    assert_eq!(host.live("demo").await, 0);
}

#[tokio::test]
async fn malformed_and_truncated_requests_change_nothing() {
    use std::io::{Read, Write};
    let host = Host::local("");
    let (status, error) = host.call(reqwest::Method::POST, "sites/demo/commit", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "bad_request");
    for (method, route) in [
        (reqwest::Method::GET, "sites/demo/offer"),
        (reqwest::Method::POST, "sites/Bad_Name/offer"),
        (reqwest::Method::POST, "nowhere"),
    ] {
        let (status, _) = host.call(method.clone(), route, "").await;
        assert!(status.is_client_error(), "{method} {route}: {status}");
    }
    let (status, _) = host
        .call(reqwest::Method::POST, "sites/demo/nodes", vec![0, 0, 0, 9, 1, 2])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // An upload whose connection drops before the declared length arrives.
    let content = vec![b'z'; 100_000];
    let hash = ContentHash::of(&content);
    let mut stream = std::net::TcpStream::connect(host.proxy.addr).unwrap();
    write!(
        stream,
        "PUT {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        publish_api::host_upload_path(&SiteName::parse("demo").unwrap(), &hash),
        host.token,
        content.len()
    )
    .unwrap();
    stream.write_all(&content[..40_000]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(!reply.starts_with("HTTP/1.1 201"), "{reply}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(host.blob_count().await, 0);
}

#[tokio::test]
async fn the_operator_token_is_created_once_and_printed_once() {
    use std::process::{Command, Stdio};
    let state = tempfile::tempdir().unwrap();
    let start = || {
        let reserved = grove_testkit::ports::reserve();
        let port = reserved.port();
        let child = Command::new(grove_testkit::binaries::grove_proxy())
            .args(["--state-dir", state.path().to_str().unwrap(), "--admin-listen", ""])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("GROVE_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (child, reserved)
    };
    let read_token = |child: &mut std::process::Child| {
        use std::io::BufRead;
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        assert!(first.starts_with("operator token"), "{first}");
        lines.next().unwrap().unwrap()
    };
    let (mut first, first_port) = start();
    let port = first_port.port();
    let token = read_token(&mut first);
    wait_listening(port);
    // The printed token is an operator token: it can grant.
    let granted = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{PREFIX}/tokens/grant"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "path": "sites/demo", "rights": ["read"], "until": "2099-01-01T00:00:00Z" }))
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), StatusCode::CREATED);
    first.kill().unwrap();
    first.wait().unwrap();
    let store = grove_objects::store::LocalStore::open(state.path().join("store")).unwrap();
    let records = store.list("auth/tokens/", None, 10).await.unwrap().keys;
    assert_eq!(records.len(), 2, "the operator token and the one it granted");
    for record in &records {
        let stored = store.get(record).await.unwrap().bytes;
        assert!(
            !String::from_utf8_lossy(&stored).contains(&token[6..]),
            "the secret itself was stored"
        );
    }

    // Bootstrap runs before the listener opens: once it accepts, the second
    // start has had its chance to print.
    let (mut second, second_port) = start();
    wait_listening(second_port.port());
    second.kill().unwrap();
    second.wait().unwrap();
    let mut printed = String::new();
    use std::io::Read;
    second.stdout.take().unwrap().read_to_string(&mut printed).unwrap();
    assert!(!printed.contains("operator token"), "printed again: {printed}");
    assert_eq!(store.list("auth/tokens/", None, 10).await.unwrap().keys.len(), 2);
}

fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "grove-proxy did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn usage_errors_exit_with_code_2() {
    let host = Host::local("");
    let dir = site_dir(&[("index.html", "x")]);
    let bad_site = host
        .grove(&["publish", dir.path().to_str().unwrap(), "--site", "Not_A_Site"])
        .await;
    assert_eq!(bad_site.status.code(), Some(2), "{}", stderr(&bad_site));
    let no_token = tokio::process::Command::new(grove_bin())
        .args(["versions", "--site", "demo"])
        .env("GROVE_HOST", host.base())
        .env_remove("GROVE_TOKEN")
        .env("XDG_CONFIG_HOME", host.config_home.path())
        .output()
        .await
        .unwrap();
    assert_eq!(no_token.status.code(), Some(2), "{}", stderr(&no_token));
    assert!(stderr(&no_token).contains("grove login"), "{}", stderr(&no_token));
}

#[tokio::test]
async fn a_node_is_stored_only_after_its_children() {
    use grove_core::tree::ChildRef;
    let host = Host::local("");
    let leaf_bytes = leaf_of("a.html", b"a");
    let interior = TreeNode::Interior {
        level: 1,
        children: vec![ChildRef {
            first_key: SitePath::parse("a.html").unwrap(),
            hash: ContentHash::of(&leaf_bytes),
        }],
    }
    .encode();
    let (status, error) = host.send_nodes("nodes", &[&interior]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"], "incomplete_tree");
    assert!(host.store.list("trees/", None, 10).await.unwrap().keys.is_empty());
    // With its child in the same batch, or stored first, it is accepted.
    let (status, _) = host.send_nodes("nodes", &[&interior, &leaf_bytes]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(host.store.list("trees/", None, 10).await.unwrap().keys.len(), 2);
}

#[tokio::test]
async fn s3_other_bytes_sent_to_a_presigned_url_never_go_live() {
    let host = Host::s3("").await;
    let leaf = leaf_of("index.html", b"the real page");
    let (_, probe) = host.send_nodes("probe", &[&leaf]).await;
    let target = &probe["missing_blobs"][0];
    let url = target["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("X-Amz-Signature"),
        "{url}"
    );
    let mut forged = reqwest::Client::new().put(url).body("a forged page");
    for pair in target["headers"].as_array().unwrap() {
        forged = forged.header(pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    }
    // R2 and S3 refuse bytes that miss the signed SHA-256 checksum; the test
    // server does not, so the host's commit check is what must catch them.
    let forged = forged.send().await.unwrap();
    if forged.status().is_success() {
        assert_eq!(host.send_nodes("nodes", &[&leaf]).await.0, StatusCode::OK);
        let (status, error) = host.commit_first(ContentHash::of(&leaf)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error["error"], "missing_content");
    }
    assert_eq!(host.live("demo").await, 0);
}

#[tokio::test]
async fn login_saves_host_and_token_for_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let host = Host::local("");
    let dir = site_dir(&[("index.html", "via login")]);
    let login = tokio::process::Command::new(grove_bin())
        .args(["login", "--host", &host.base(), "--token", &host.token])
        .env_remove("GROVE_HOST")
        .env_remove("GROVE_TOKEN")
        .env("XDG_CONFIG_HOME", host.config_home.path())
        .output()
        .await
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
    let saved = host.config_home.path().join("grove/config.toml");
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let publish = tokio::process::Command::new(grove_bin())
        .args(["publish", dir.path().to_str().unwrap(), "--site", "demo"])
        .env_remove("GROVE_HOST")
        .env_remove("GROVE_TOKEN")
        .env("XDG_CONFIG_HOME", host.config_home.path())
        .output()
        .await
        .unwrap();
    assert!(publish.status.success(), "{}", stderr(&publish));
    assert_eq!(host.page("demo", "/").await.1, "via login");

    // The saved token is for the saved host only.
    let elsewhere = tokio::process::Command::new(grove_bin())
        .args(["versions", "--site", "demo"])
        .env("GROVE_HOST", "http://127.0.0.1:9")
        .env_remove("GROVE_TOKEN")
        .env("XDG_CONFIG_HOME", host.config_home.path())
        .output()
        .await
        .unwrap();
    assert_eq!(elsewhere.status.code(), Some(2), "{}", stderr(&elsewhere));
}
