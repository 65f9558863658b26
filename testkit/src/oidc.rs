//! A real OpenID provider on loopback (panva's oidc-provider, run by
//! `tests/oidc/provider.mjs` with Node.js), and a scripted browser that
//! signs in through its development login form.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};

use crate::ports::Reserved;

/// One client the provider knows.
pub struct ClientSpec {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
}

pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    _port: Reserved,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc/provider.mjs")
}

impl OidcProvider {
    /// Starts the provider on `port` with `clients`; `resolve` maps the
    /// host names it calls back to loopback addresses.
    pub fn start(port: Reserved, clients: &[ClientSpec], resolve: &[(&str, SocketAddr)]) -> Self {
        let settings = json!({
            "port": port.port(),
            "clients": clients.iter().map(|client| {
                let mut spec = json!({
                    "client_id": client.client_id,
                    "client_secret": client.client_secret,
                    "redirect_uris": client.redirect_uris,
                });
                if let Some(uri) = &client.backchannel_logout_uri {
                    spec["backchannel_logout_uri"] = json!(uri);
                }
                spec
            }).collect::<Vec<_>>(),
            "resolve": resolve.iter().map(|(host, addr)| ((*host).to_owned(), json!(addr.to_string()))).collect::<serde_json::Map<_, _>>(),
        });
        let mut child = Command::new("node")
            .arg(provider_script())
            .arg(settings.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs tests/oidc/provider.mjs (scripts/test installs its packages)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("the provider did not start: {line:?}"));
        Self {
            child,
            issuer: ready["issuer"].as_str().unwrap().to_owned(),
            _port: port,
        }
    }
}

/// Every response a browser saw: what `Set-Cookie` rules are checked on.
#[derive(Debug, Clone)]
pub struct Seen {
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// A scripted browser: one cookie jar per host (cookies are sent back to
/// the host that set them only, as `__Host-` cookies are), no automatic
/// redirects, and a log of every response.
#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    jar: Arc<Mutex<HashMap<String, HashMap<String, String>>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Browser {
    /// A browser that reaches `hosts` at `proxy`.
    pub fn new(proxy: SocketAddr, hosts: &[&str]) -> Self {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        for host in hosts {
            builder = builder.resolve(host, proxy);
        }
        Self {
            http: builder.build().unwrap(),
            jar: Arc::default(),
            seen: Arc::default(),
        }
    }

    fn host_of(url: &str) -> String {
        reqwest::Url::parse(url).unwrap().host_str().unwrap().to_owned()
    }

    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(host)?.get(name).cloned()
    }

    pub fn set_cookie(&self, host: &str, name: &str, value: &str) {
        self.jar
            .lock()
            .unwrap()
            .entry(host.to_owned())
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    pub fn cookies(&self, host: &str) -> HashMap<String, String> {
        self.jar.lock().unwrap().get(host).cloned().unwrap_or_default()
    }

    /// Sends `request` with the cookies of its host, and keeps those the
    /// response sets.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let mut request = request.build().unwrap();
        let host = Self::host_of(request.url().as_str());
        let cookies = self.cookies(&host);
        if !cookies.is_empty() {
            let line = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request
                .headers_mut()
                .insert(reqwest::header::COOKIE, line.parse().unwrap());
        }
        let url = request.url().to_string();
        let response = self.http.execute(request).await.unwrap();
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let cleared = text.contains("Max-Age=0");
            let mut jar = self.jar.lock().unwrap();
            let host_jar = jar.entry(host.clone()).or_default();
            if cleared {
                host_jar.remove(name);
            } else {
                host_jar.insert(name.to_owned(), value.to_owned());
            }
        }
        self.seen.lock().unwrap().push(Seen {
            url,
            status: response.status(),
            headers: response.headers().clone(),
        });
        response
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.send(self.http.get(url)).await
    }

    /// Follows redirects from `response`, signing in as `login` at the
    /// provider's form, until one leads to `stop_at` (a URL prefix), which
    /// it returns unvisited.
    pub async fn follow_until(&self, mut response: reqwest::Response, stop_at: &str, login: &str) -> String {
        loop {
            let url = response.url().clone();
            let status = response.status();
            if status.is_redirection() {
                let location = response.headers()["location"].to_str().unwrap().to_owned();
                let next = url.join(&location).unwrap().to_string();
                if next.starts_with(stop_at) {
                    return next;
                }
                response = self.get(&next).await;
                continue;
            }
            let body = response.text().await.unwrap();
            // The development login form: any name, any password.
            let action = body
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("expected the provider's login form at {url} ({status}): {body}"));
            let action = url.join(action).unwrap().to_string();
            // The form says which prompt it answers: the login, or (when the
            // provider asks) the consent, which takes no fields.
            let prompt = body
                .split("name=\"prompt\" value=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("login")
                .to_owned();
            let form: Vec<(&str, &str)> = if prompt == "login" {
                vec![("prompt", "login"), ("login", login), ("password", "any")]
            } else {
                vec![("prompt", prompt.as_str())]
            };
            response = self.send(self.http.post(&action).form(&form)).await;
        }
    }

    /// Starts a sign-in at `login_url` (a site's `/_grove/auth/login`) and
    /// returns the callback URL the provider sends the browser to, unvisited.
    pub async fn authorize(&self, login_url: &str, callback_prefix: &str, login: &str) -> String {
        let started = self.get(login_url).await;
        assert_eq!(started.status(), StatusCode::FOUND, "login starts with a redirect");
        self.follow_until(started, callback_prefix, login).await
    }
}
