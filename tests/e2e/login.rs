//! Sign-in with a real OpenID provider (oidc-provider on loopback): the
//! code flow end to end, protected pages, parallel logins, replays, bad
//! returns, logout and back-channel logout across two proxies on one store,
//! the live stream, CSRF, and the rule that no cacheable response carries
//! `Set-Cookie`.

use std::time::{Duration, Instant};

use grove_testkit::oidc::{Browser, ClientSpec, OidcProvider};
use grove_testkit::ports::{Reserved, reserve};
use grove_testkit::proxy::{Proxy, publish, site_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "demo-client-secret";
const SESSION: &str = "__Host-grove_session";
const MEMBERS_PAGE: &str = "<html><body>members only</body></html>";

/// A provider and one proxy (with a fixed node port, so a second proxy can
/// share its node) serving `demo` with sign-in.
struct World {
    provider: OidcProvider,
    proxy: Proxy,
    node: Reserved,
}

fn auth_section(issuer: &str, extra: &str) -> String {
    format!(
        r#"
[sites.demo]
domains = ["demo.example.test"]
canonical = "header"
[sites.demo.auth]
issuer = "{issuer}"
client_id = "grove-demo"
client_secret_env = "DEMO_OIDC_SECRET"
allow = ["*@example.com"]
protect = ["/members/*", "/secret"]
read = ["comments/*", "users/{{subject}}/*"]
write = ["comments/*", "users/{{subject}}/*"]
{extra}
"#
    )
}

fn redirect_uris(proxy_port: u16) -> Vec<String> {
    ["demo.localhost", "demo.example.test"]
        .iter()
        .map(|host| format!("http://{host}:{proxy_port}/_grove/auth/callback"))
        .collect()
}

async fn world(extra: &str) -> World {
    // Reserved first: the proxy names the provider as its issuer before
    // the provider (which must know the proxy's port) starts.
    let provider_port = reserve();
    let issuer = format!("http://127.0.0.1:{}", provider_port.port());
    let node = reserve();
    let config = format!("[node]\nlisten = \"{}\"\n{}", node.addr(), auth_section(&issuer, extra));
    let proxy = Proxy::start_with(&config, &[("DEMO_OIDC_SECRET", SECRET)]);
    let provider = OidcProvider::start(
        provider_port,
        &[ClientSpec {
            client_id: "grove-demo".into(),
            client_secret: SECRET.into(),
            redirect_uris: redirect_uris(proxy.addr.port()),
            backchannel_logout_uri: Some(format!(
                "http://demo.localhost:{}/_grove/auth/backchannel-logout",
                proxy.addr.port()
            )),
        }],
        &[("demo.localhost", proxy.addr)],
    );
    let site = site_dir(&[
        ("index.html", "<html><body>home</body></html>"),
        ("members/index.html", MEMBERS_PAGE),
        ("secret.html", "<html><body>secret</body></html>"),
        ("style.css", "body{}"),
    ]);
    publish(proxy.local_store(), "demo", site.path()).await;
    World { provider, proxy, node }
}

impl World {
    fn browser(&self) -> Browser {
        Browser::new(self.proxy.addr, &["demo.localhost", "demo.example.test"])
    }

    fn url(&self, path: &str) -> String {
        self.proxy.url("demo.localhost", path)
    }

    fn callback_prefix(&self, host: &str) -> String {
        self.proxy.url(host, "/_grove/auth/callback")
    }

    /// Signs `browser` in as `login`; returns where the callback sent it.
    async fn sign_in(&self, browser: &Browser, login: &str, back: &str) -> String {
        let login_url = self.url(&format!("/_grove/auth/login?return={back}"));
        let callback = browser
            .authorize(&login_url, &self.callback_prefix("demo.localhost"), login)
            .await;
        finish_sign_in(browser, &callback).await
    }
}

/// Visits a sign-in's callback: it must send the browser back (303), to
/// the place returned.
async fn finish_sign_in(browser: &Browser, callback: &str) -> String {
    let finished = browser.get(callback).await;
    assert_eq!(
        finished.status(),
        StatusCode::SEE_OTHER,
        "{}",
        finished.text().await.unwrap()
    );
    finished.headers()["location"].to_str().unwrap().to_owned()
}

/// The keys of the site's session records in the store.
async fn session_records(world: &World) -> Vec<String> {
    let page = world
        .proxy
        .local_store()
        .list("auth/sessions/demo/", None, 1000)
        .await
        .unwrap();
    page.keys.iter().map(|key| key.as_str().to_owned()).collect()
}

async fn me(browser: &Browser, url: &str) -> (StatusCode, Value) {
    let response = browser.get(url).await;
    let status = response.status();
    assert_eq!(response.headers()["cache-control"], "no-store");
    (status, response.json().await.unwrap())
}

/// Every response with `Set-Cookie` is one no cache keeps.
fn assert_no_cacheable_set_cookie(browser: &Browser) {
    let seen = browser.seen.lock().unwrap();
    let mut with_cookies = 0;
    for response in seen.iter().filter(|seen| seen.headers.contains_key("set-cookie")) {
        with_cookies += 1;
        let cache_control = response
            .headers
            .get("cache-control")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            cache_control.contains("no-store") || cache_control.contains("private"),
            "{} ({}) sets a cookie on a cacheable response: {cache_control:?}",
            response.url,
            response.status
        );
        assert!(!response.headers.contains_key("cdn-cache-control"), "{}", response.url);
        assert!(!response.headers.contains_key("cache-tag"), "{}", response.url);
    }
    assert!(with_cookies > 0, "the flows set cookies");
}

#[tokio::test]
async fn sign_in_opens_protected_pages_live_and_me_shows_the_claims() {
    let world = world("").await;
    let browser = world.browser();

    // Anonymous: a page under protect sends to sign-in, anything else 401.
    let page = browser
        .send(browser.http.get(world.url("/members/")).header("accept", "text/html"))
        .await;
    assert_eq!(page.status(), StatusCode::FOUND);
    assert_eq!(page.headers()["location"], "/_grove/auth/login?return=%2Fmembers%2F");
    let fetched = browser.get(&world.url("/members/")).await;
    assert_eq!(fetched.status(), StatusCode::UNAUTHORIZED);
    let public = browser.get(&world.url("/")).await;
    assert_eq!(public.status(), StatusCode::OK);
    assert!(
        public.headers().contains_key("cache-tag"),
        "anonymous pages stay cacheable"
    );
    let (status, _) = me(&browser, &world.url("/_grove/auth/me")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A members-only file is refused by every URL that serves it (the
    // pattern names /secret; the file is secret.html).
    for path in ["/secret", "/secret.html", "/members/index.html", "/members"] {
        let response = browser.get(&world.url(path)).await;
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::PERMANENT_REDIRECT].contains(&response.status()),
            "{path}: {}",
            response.status()
        );
        assert!(!response.text().await.unwrap().contains("secret</body>"), "{path}");
    }
    // Its blob is not handed out by hash, on its site or any other.
    let root: Value = browser.get(&world.url("/_grove/root")).await.json().await.unwrap();
    assert_eq!(root["protect"], json!(["/members/*", "/secret"]));
    let members_blob = format!("/_grove/blob/{}", grove_core::ContentHash::of(MEMBERS_PAGE.as_bytes()));
    let public_blob = format!("/_grove/blob/{}", grove_core::ContentHash::of(b"body{}"));
    publish(
        world.proxy.local_store(),
        "other",
        site_dir(&[("index.html", "other")]).path(),
    )
    .await;
    let other = Browser::new(world.proxy.addr, &["other.localhost"]);
    assert_eq!(
        browser.get(&world.url(&members_blob)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(browser.get(&world.url(&public_blob)).await.status(), StatusCode::OK);
    let elsewhere = other.get(&world.proxy.url("other.localhost", &members_blob)).await;
    assert_eq!(
        elsewhere.status(),
        StatusCode::NOT_FOUND,
        "another site hands out only its own files"
    );

    let back = world.sign_in(&browser, "alice", "/members/").await;
    assert_eq!(back, "/members/");
    let session_cookie = browser
        .seen
        .lock()
        .unwrap()
        .iter()
        .flat_map(|seen| {
            seen.headers
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .find(|cookie| cookie.starts_with(SESSION))
        .expect("the callback sets the session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    assert!(!session_cookie.contains("Domain"), "{session_cookie}");
    let secret = browser.cookie("demo.localhost", SESSION).unwrap();
    assert!(
        browser.cookie("demo.example.test", SESSION).is_none(),
        "a host cookie stays on its host"
    );
    let stored: Vec<String> = session_records(&world).await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&secret), "only the hash is stored");

    let members = browser.get(&world.url("/members/")).await;
    assert_eq!(members.status(), StatusCode::OK);
    assert_eq!(members.headers()["cache-control"], "private, no-store");
    assert_eq!(members.headers()["x-grove-live"], "1");
    assert!(!members.headers().contains_key("cdn-cache-control"));
    assert!(!members.headers().contains_key("cache-tag"));
    assert!(members.text().await.unwrap().contains("members only"));
    let blob = browser.get(&world.url(&members_blob)).await;
    assert_eq!(blob.status(), StatusCode::OK, "a member gets the blob");
    assert_eq!(blob.headers()["cache-control"], "private, no-store");
    // Live: even the public pages are private, and a pin is ignored.
    let home = browser.get(&world.url("/?_grove_version=1")).await;
    assert_eq!(home.headers()["cache-control"], "private, no-store");
    let (status, claims) = me(&browser, &world.url("/_grove/auth/me")).await;
    assert_eq!(status, StatusCode::OK, "{claims}");
    assert_eq!(claims["subject"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["member"], true);
    assert_eq!(claims["claims"]["iss"], world.provider.issuer.as_str());

    // Signed in but outside `allow`: 403.
    let outsider = world.browser();
    world.sign_in(&outsider, "eve@evil.test", "/").await;
    assert_eq!(
        outsider.get(&world.url("/members/")).await.status(),
        StatusCode::FORBIDDEN
    );
    let (_, eve) = me(&outsider, &world.url("/_grove/auth/me")).await;
    assert_eq!(eve["member"], false);

    // A forged or malformed cookie is no session: served as anonymous, on
    // a private reply that clears it.
    for forged in [hex::encode(rand::random::<[u8; 32]>()), "not-a-session".to_owned()] {
        let stranger = world.browser();
        stranger.set_cookie("demo.localhost", SESSION, &forged);
        let (status, _) = me(&stranger, &world.url("/_grove/auth/me")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let home = stranger.get(&world.url("/")).await;
        assert_eq!(home.status(), StatusCode::OK);
        assert_eq!(home.headers()["cache-control"], "private, no-store");
        assert!(home.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
        assert!(stranger.cookie("demo.localhost", SESSION).is_none());
        assert_no_cacheable_set_cookie(&stranger);
    }
    assert_no_cacheable_set_cookie(&browser);
    assert_no_cacheable_set_cookie(&outsider);
}

#[tokio::test]
async fn parallel_logins_both_finish_and_replays_foreign_hosts_and_bad_returns_are_refused() {
    let world = world("").await;
    let browser = world.browser();
    let prefix = world.callback_prefix("demo.localhost");
    // Two tabs start a sign-in each before either finishes.
    let first = browser
        .authorize(&world.url("/_grove/auth/login?return=/first"), &prefix, "alice")
        .await;
    let second = browser
        .authorize(&world.url("/_grove/auth/login?return=/second"), &prefix, "alice")
        .await;
    let logins = browser
        .cookies("demo.localhost")
        .keys()
        .filter(|name| name.starts_with("__Host-grove_login_"))
        .count();
    assert_eq!(logins, 2, "each sign-in keeps its own state");
    assert_eq!(finish_sign_in(&browser, &second).await, "/second");
    assert_eq!(finish_sign_in(&browser, &first).await, "/first");

    // A replayed code is refused (its state cookie is gone, and even with
    // the cookie put back, the provider refuses the code's second use).
    let sessions_before = session_records(&world).await.len();
    let replay = browser.get(&first).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let third = browser
        .authorize(&world.url("/_grove/auth/login?return=/third"), &prefix, "alice")
        .await;
    let state = reqwest::Url::parse(&third)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == "state")
        .unwrap()
        .1
        .into_owned();
    let state_cookie = format!("__Host-grove_login_{state}");
    let saved = browser.cookie("demo.localhost", &state_cookie).unwrap();
    assert_eq!(browser.get(&third).await.status(), StatusCode::SEE_OTHER);
    browser.set_cookie("demo.localhost", &state_cookie, &saved);
    let replayed = browser.get(&third).await;
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    assert!(replayed.text().await.unwrap().contains("sign-in failed"));
    let sessions_after = session_records(&world).await.len();
    assert_eq!(
        sessions_after,
        sessions_before + 1,
        "only the one real sign-in made a session"
    );

    // A code issued for one host, presented at another: no state there, and
    // with the state cookie carried over, the host it was bound to differs.
    let fourth = browser
        .authorize(&world.url("/_grove/auth/login?return=/"), &prefix, "alice")
        .await;
    let foreign = fourth.replace("demo.localhost", "demo.example.test");
    let refused = browser.get(&foreign).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    for (name, value) in browser.cookies("demo.localhost") {
        if name.starts_with("__Host-grove_login_") {
            browser.set_cookie("demo.example.test", &name, &value);
        }
    }
    let refused = browser.get(&foreign).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("another host"));
    assert!(browser.cookie("demo.example.test", SESSION).is_none());

    for bad in ["//evil.example/", "https://evil.example/", "/\\evil.example", "evil"] {
        let encoded: String = url_encode(bad);
        let refused = browser
            .get(&world.url(&format!("/_grove/auth/login?return={encoded}")))
            .await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(!refused.headers().contains_key("set-cookie"));
    }
    assert_no_cacheable_set_cookie(&browser);
}

fn url_encode(text: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("v", text)])
        .unwrap()
        .query()
        .unwrap()
        .strip_prefix("v=")
        .unwrap()
        .to_owned()
}

/// A second proxy on the first one's store and node.
fn second_proxy(world: &World) -> Proxy {
    let config = format!(
        "[store]\nkind = \"local\"\npath = \"{}\"\n[node]\nembedded = false\n[node.directory]\ndemo = \"{}\"\n{}",
        world.proxy.store_dir().display(),
        world.node.addr(),
        auth_section(&world.provider.issuer, "")
    );
    Proxy::start_with(&config, &[("DEMO_OIDC_SECRET", SECRET)])
}

async fn wait_refused(browser: &Browser, url: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _) = me(browser, url).await;
        if status == StatusCode::UNAUTHORIZED {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "the session still works after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn logout_and_back_channel_logout_end_the_session_on_every_proxy() {
    let world = world("").await;
    let other = second_proxy(&world);
    let browser = world.browser();
    world.sign_in(&browser, "alice", "/").await;
    let secret = browser.cookie("demo.localhost", SESSION).unwrap();
    // The same cookie on the second proxy (as a load balancer would send it).
    let elsewhere = Browser::new(other.addr, &["demo.localhost"]);
    elsewhere.set_cookie("demo.localhost", SESSION, &secret);
    let other_me = other.url("demo.localhost", "/_grove/auth/me");
    assert_eq!(
        me(&elsewhere, &other_me).await.0,
        StatusCode::OK,
        "every proxy sees the session"
    );

    // Logout needs a same-origin request.
    let cross = browser.send(browser.http.post(world.url("/_grove/auth/logout"))).await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(me(&browser, &world.url("/_grove/auth/me")).await.0, StatusCode::OK);
    let out = browser
        .send(
            browser
                .http
                .post(world.url("/_grove/auth/logout"))
                .header("origin", format!("http://demo.localhost:{}", world.proxy.addr.port())),
        )
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let end_session = out.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        end_session.starts_with(&world.provider.issuer),
        "sent on to the provider: {end_session}"
    );
    assert!(
        browser.cookie("demo.localhost", SESSION).is_none(),
        "the cookie is cleared"
    );
    // The old cookie is refused everywhere.
    let stale = world.browser();
    stale.set_cookie("demo.localhost", SESSION, &secret);
    assert_eq!(
        me(&stale, &world.url("/_grove/auth/me")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let waited = wait_refused(&elsewhere, &other_me, Duration::from_secs(1)).await;
    eprintln!("logout reached the second proxy in {waited:?}");
    let page = stale
        .send(stale.http.get(world.url("/members/")).header("accept", "text/html"))
        .await;
    assert_eq!(page.status(), StatusCode::FOUND);

    // Back-channel: the user signs out at the provider, which tells the
    // first proxy; the second refuses the session within 1 s.
    world.sign_in(&browser, "alice", "/").await;
    let secret = browser.cookie("demo.localhost", SESSION).unwrap();
    let elsewhere = Browser::new(other.addr, &["demo.localhost"]);
    elsewhere.set_cookie("demo.localhost", SESSION, &secret);
    assert_eq!(me(&elsewhere, &other_me).await.0, StatusCode::OK);
    assert_eq!(
        me(&elsewhere, &other_me).await.0,
        StatusCode::OK,
        "now cached on the second proxy"
    );
    let confirm = browser
        .get(&format!("{}/session/end?client_id=grove-demo", world.provider.issuer))
        .await;
    let form = confirm.text().await.unwrap();
    let xsrf = form
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the provider's logout form: {form}"))
        .to_owned();
    let started = Instant::now();
    let ended = browser
        .send(
            browser
                .http
                .post(format!("{}/session/end/confirm", world.provider.issuer))
                .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")]),
        )
        .await;
    assert!(
        ended.status().is_redirection() || ended.status().is_success(),
        "{}",
        ended.status()
    );
    let waited = wait_refused(&elsewhere, &other_me, Duration::from_secs(1)).await;
    eprintln!(
        "back-channel logout reached the second proxy {waited:?} after the check began ({:?} after the provider's logout)",
        started.elapsed()
    );
    assert_eq!(
        me(&browser, &world.url("/_grove/auth/me")).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A forged logout token changes nothing.
    world.sign_in(&browser, "alice", "/").await;
    let forged = browser
        .send(
            browser
                .http
                .post(world.url("/_grove/auth/backchannel-logout"))
                .form(&[("logout_token", "eyJhbGciOiJub25lIn0.eyJzaWQiOiJ4In0.")]),
        )
        .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert_eq!(me(&browser, &world.url("/_grove/auth/me")).await.0, StatusCode::OK);
}

/// Reads events (`(event, data)`) from a stream until `until` matches one.
async fn events_until(
    response: &mut reqwest::Response,
    buffer: &mut String,
    until: impl Fn(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let kind = block.lines().find_map(|line| line.strip_prefix("event: "));
            let data = block.lines().find_map(|line| line.strip_prefix("data: "));
            if let (Some(kind), Some(data)) = (kind, data) {
                let value: Value = serde_json::from_str(data).unwrap();
                let done = until(kind, &value);
                events.push((kind.to_owned(), value));
                if done {
                    return events;
                }
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap();
        match chunk {
            Some(chunk) => buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
            None => return events,
        }
    }
}

#[tokio::test]
async fn the_live_stream_delivers_a_publish_and_a_comment_then_revoked_and_csrf_is_refused() {
    let world = world("").await;
    let browser = world.browser();
    world.sign_in(&browser, "alice", "/").await;
    let origin = format!("http://demo.localhost:{}", world.proxy.addr.port());

    // Anonymous streams and paths outside the session's rights are refused.
    let anonymous = world.browser().get(&world.url("/_grove/live")).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let secret_path = browser.get(&world.url("/_grove/live?path=users/bob/inbox")).await;
    assert_eq!(secret_path.status(), StatusCode::FORBIDDEN);

    let mut stream = browser
        .get(&world.url("/_grove/live?path=comments/demo&path=users/alice/inbox"))
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    assert_eq!(stream.headers()["cache-control"], "no-store");
    let mut buffer = String::new();
    let hello = events_until(&mut stream, &mut buffer, |kind, _| kind == "version").await;
    assert_eq!(hello.last().unwrap().1["version"], 1);

    publish(
        world.proxy.local_store(),
        "demo",
        site_dir(&[("index.html", "v2")]).path(),
    )
    .await;
    let published = events_until(&mut stream, &mut buffer, |kind, _| kind == "version").await;
    assert_eq!(published.last().unwrap().1["version"], 2);

    // A comment through the session: CSRF-checked, rights-checked.
    let write = |origin: Option<&str>, path: &str| {
        let mut request = browser
            .http
            .post(world.url("/_grove/api/v1/write"))
            .json(&json!({ "path": path, "data": { "text": "hello from alice" } }));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        browser.send(request)
    };
    assert_eq!(write(None, "comments/demo").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        write(Some("http://evil.localhost"), "comments/demo").await.status(),
        StatusCode::FORBIDDEN
    );
    let cross_site = browser
        .send(
            browser
                .http
                .post(world.url("/_grove/api/v1/write"))
                .header("sec-fetch-site", "cross-site")
                .header("origin", &origin)
                .json(&json!({ "path": "comments/demo", "data": {} })),
        )
        .await;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let outside = write(Some(&origin), "users/bob/inbox").await;
    assert_eq!(outside.status(), StatusCode::FORBIDDEN);
    let grant = browser
        .send(
            browser
                .http
                .post(world.url("/_grove/api/v1/grant"))
                .header("origin", &origin)
                .json(&json!({ "path": "comments", "rights": ["read"], "until": "2099-01-01T00:00:00Z" })),
        )
        .await;
    assert_eq!(grant.status(), StatusCode::FORBIDDEN, "sessions never grant");
    let written = write(Some(&origin), "comments/demo").await;
    assert_eq!(written.status(), StatusCode::OK);
    let ts = written.json::<Value>().await.unwrap()["ts"]
        .as_str()
        .unwrap()
        .to_owned();
    let comment = events_until(&mut stream, &mut buffer, |kind, _| kind == "entry").await;
    let (_, entry) = comment.last().unwrap();
    assert_eq!(entry["path"], "comments/demo");
    assert_eq!(entry["ts"], ts.as_str());
    assert_eq!(entry["data"]["text"], "hello from alice");
    // Reading through the session works too.
    let read = browser.get(&world.url("/_grove/api/v1/read?path=comments/demo")).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["cache-control"], "no-store");

    // One session holds at most 32 streams (this one and 31 more).
    let mut held = Vec::new();
    for _ in 0..31 {
        let extra = browser.get(&world.url("/_grove/live")).await;
        assert_eq!(extra.status(), StatusCode::OK);
        held.push(extra);
    }
    let refused = browser.get(&world.url("/_grove/live")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(world.proxy.metric("grove_live_streams").await, 32.0);
    drop(held);
    assert!(world.proxy.metric("grove_sign_ins_total{result=\"ok\"}").await >= 1.0);

    // The session ends: the stream says so and closes.
    let out = browser
        .send(
            browser
                .http
                .post(world.url("/_grove/auth/logout"))
                .header("origin", &origin),
        )
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let last = events_until(&mut stream, &mut buffer, |kind, _| kind == "revoked").await;
    assert_eq!(last.last().unwrap().0, "revoked");
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap();
    assert!(
        rest.is_none_or(|chunk| chunk.is_empty()),
        "the stream ends after revoked"
    );
    assert_no_cacheable_set_cookie(&browser);
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let world = world("absolute_timeout_secs = 2").await;
    let browser = world.browser();
    world.sign_in(&browser, "alice", "/").await;
    assert_eq!(me(&browser, &world.url("/_grove/auth/me")).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        me(&browser, &world.url("/_grove/auth/me")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let page = browser.get(&world.url("/members/")).await;
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
}
