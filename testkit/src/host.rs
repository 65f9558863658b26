//! A grove host under test: a `grove-proxy` process with the operator
//! token, the `grove` CLI pointed at it, and direct access to its store.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use grove_core::ContentHash;
use grove_core::SiteName;
use grove_core::publish_api::{self, PREFIX};
use grove_objects::store::{ObjectKey, ObjectStore};
use reqwest::StatusCode;
use serde_json::Value;

use crate::moto::MotoServer;
use crate::proxy::Proxy;

/// A grove host under test, with the operator token and direct store access.
pub struct Host {
    pub proxy: Proxy,
    pub store: Arc<dyn ObjectStore>,
    pub token: String,
    pub config_home: tempfile::TempDir,
    _moto: Option<MotoServer>,
}

pub fn random_token() -> String {
    format!("grove_{}", hex_of(&rand::random::<[u8; 32]>()))
}

pub fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The `grove` binary of this checkout.
pub fn grove_bin() -> PathBuf {
    crate::binaries::grove()
}

impl Host {
    pub fn local(extra: &str) -> Self {
        Self::local_with(extra, &[])
    }

    /// A host on the local store with `extra` config and environment.
    pub fn local_with(extra: &str, env: &[(&str, &str)]) -> Self {
        let token = random_token();
        let mut env = env.to_vec();
        env.push(("GROVE_ADMIN_TOKEN", &token));
        let proxy = Proxy::start_with(extra, &env);
        let store = proxy.local_store();
        Self {
            proxy,
            store,
            token,
            config_home: tempfile::tempdir().unwrap(),
            _moto: None,
        }
    }

    pub async fn s3(extra: &str) -> Self {
        let moto = MotoServer::start();
        moto.create_bucket("grove").await;
        let token = random_token();
        let config = format!("{}{extra}", moto.store_section("grove"));
        let [key, secret] = crate::moto::ENV;
        let proxy = Proxy::start_with(&config, &[key, secret, ("GROVE_ADMIN_TOKEN", &token)]);
        let store = moto.store("grove");
        Self {
            proxy,
            store,
            token,
            config_home: tempfile::tempdir().unwrap(),
            _moto: Some(moto),
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.proxy.addr)
    }

    /// `grove` with this host and `token`.
    pub fn grove_as(&self, token: &str, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(grove_bin());
        command
            .args(args)
            .env("GROVE_HOST", self.base())
            .env("GROVE_TOKEN", token)
            .env("XDG_CONFIG_HOME", self.config_home.path())
            .kill_on_drop(true);
        command
    }

    pub async fn grove(&self, args: &[&str]) -> Output {
        self.grove_with(&self.token, args).await
    }

    pub async fn grove_with(&self, token: &str, args: &[&str]) -> Output {
        self.grove_as(token, args).output().await.unwrap()
    }

    /// A token for `path` with read and write, valid for `until`.
    pub async fn grant(&self, path: &str, until: &str) -> String {
        let output = self
            .grove(&[
                "token",
                "grant",
                "--path",
                path,
                "--rights",
                "read,write",
                "--until",
                until,
            ])
            .await;
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// `grove publish DIR --site SITE --json`, which must succeed.
    pub async fn publish(&self, dir: &Path, site: &str) -> Value {
        let output = self
            .grove(&["publish", dir.to_str().unwrap(), "--site", site, "--json"])
            .await;
        assert!(output.status.success(), "publish failed: {}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    pub async fn blob_count(&self) -> usize {
        let mut count = 0;
        let mut after: Option<ObjectKey> = None;
        loop {
            let page = self.store.list("blobs/", after.as_ref(), 1000).await.unwrap();
            count += page.keys.len();
            match page.next {
                Some(next) => after = Some(next),
                None => return count,
            }
        }
    }

    /// A page of `site` as served, fetched as a visitor.
    pub async fn page(&self, site: &str, path: &str) -> (StatusCode, String) {
        let host = format!("{site}.localhost");
        let response = self
            .proxy
            .client(&[&host])
            .get(self.proxy.url(&host, path))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// The live version number, from the API (0: never published).
    pub async fn live(&self, site: &str) -> u64 {
        let (status, reply) = self
            .call(reqwest::Method::GET, &format!("sites/{site}/versions"), "")
            .await;
        match status {
            StatusCode::OK => reply["live"].as_u64().unwrap(),
            StatusCode::NOT_FOUND if reply["error"] == "not_found" => 0,
            other => panic!("reading versions: {other} {reply}"),
        }
    }

    /// Sends `body` to the publish API `route` (below the prefix) with the
    /// operator token; the status and the JSON reply (`null` if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        route: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = reqwest::Client::new()
            .request(method, format!("{}{PREFIX}/{route}", self.base()))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Offers a node batch made of `nodes` to `route` (probe or nodes).
    pub async fn send_nodes(&self, route: &str, nodes: &[&[u8]]) -> (StatusCode, Value) {
        let batch = publish_api::encode_tree_node_batch(nodes.iter().copied());
        self.call(reqwest::Method::POST, &format!("sites/demo/{route}"), batch)
            .await
    }

    /// Commits `root` as the first version of `demo`.
    pub async fn commit_first(&self, root: ContentHash) -> (StatusCode, Value) {
        let body = serde_json::json!({ "root": root, "parent": 0 }).to_string();
        self.call(reqwest::Method::POST, "sites/demo/commit", body).await
    }

    /// Uploads `body` through the host as blob `hash` of `demo`.
    pub async fn upload(&self, hash: &ContentHash, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let path = publish_api::host_upload_path(&SiteName::parse("demo").unwrap(), hash);
        let route = path.strip_prefix(&format!("{PREFIX}/")).unwrap().to_owned();
        self.call(reqwest::Method::PUT, &route, body).await
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
