//! Configuration: one TOML file, overridden by environment variables, which
//! are overridden by flags. Secrets (S3 keys) come only from the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use grove_node::NodeLimits;
use grove_objects::store::{LocalStore, ObjectStore, S3Store, S3StoreConfig};
use serde::Deserialize;

use crate::tls::TlsConfig;

/// Every key of the config file, with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the public HTTP listener.
    pub listen: String,
    /// Address of the admin listener (Prometheus metrics); empty disables it.
    pub admin_listen: String,
    /// Sites are served at `<site>.<base_domain>`.
    pub base_domain: String,
    /// Where state lives: the local store (`store/`), the disk cache
    /// (`cache/`), the pid file and the upgrade socket.
    pub state_dir: PathBuf,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    /// Upper bound on how stale a site's current version may be, in ms.
    pub root_refresh_ms: u64,
    pub http: HttpConfig,
    /// Per-site settings, keyed by site name.
    pub sites: BTreeMap<String, SiteConfig>,
    /// An HTTPS listener; none when absent.
    pub tls: Option<TlsConfig>,
    /// How sites are reached from outside, with `{host}` standing for a
    /// site's host name; default `http://{host}:<listen port>/`. Publish
    /// replies build live and preview URLs from it.
    pub public_url: Option<String>,
    pub publish: PublishConfig,
    /// The CDN in front of this host, purged on every publish; none when
    /// absent.
    pub cdn: CdnConfig,
    /// The storage node that answers `/_grove/api/`.
    pub node: NodeConfig,
    /// Install the service worker on every site (HTML pages get its
    /// register script); `[sites.<name>] service_worker` overrides it. Off
    /// also orders workers installed earlier to unregister.
    pub service_worker: bool,
}

/// The storage node: the one this proxy embeds, and the nodes elsewhere
/// that some sites live on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Run a node in this process; sites not in `directory` use it.
    pub embedded: bool,
    /// The embedded node's name: its log segments live under
    /// `nodes/<name>/` in the store, and a replacement with an empty
    /// `data_dir` rebuilds from them. Unique per node sharing a store.
    pub name: String,
    /// Loopback address the embedded node listens on; port 0 picks one.
    pub listen: String,
    /// Where the embedded node keeps its log; default `<state_dir>/node`.
    pub data_dir: Option<PathBuf>,
    /// Milliseconds committed writes gather before they are shipped to the
    /// store: the most history a lost disk can take with it.
    pub seal_interval_ms: u64,
    /// Seconds to connect to a node.
    pub connect_timeout_secs: u64,
    /// Seconds a node may stay silent mid-reply (watches send a keep-alive
    /// every 15 s, so this must be longer).
    pub read_timeout_secs: u64,
    /// Seconds to wait for the previous process to hand the embedded node's
    /// log over during a graceful upgrade.
    pub handover_timeout_secs: u64,
    pub limits: NodeLimits,
    /// Sites whose node runs elsewhere: site name -> `host:port`.
    pub directory: BTreeMap<String, String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            embedded: true,
            name: "main".to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            data_dir: None,
            seal_interval_ms: 1000,
            connect_timeout_secs: 2,
            read_timeout_secs: 60,
            handover_timeout_secs: 30,
            limits: NodeLimits::default(),
            directory: BTreeMap::new(),
        }
    }
}

/// Which CDN to purge. At most one may be set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdnConfig {
    pub cloudflare: Option<CloudflareConfig>,
    pub webhook: Option<WebhookConfig>,
}

/// Cloudflare's purge-by-tag API.
#[derive(Debug, Clone, Deserialize)]
pub struct CloudflareConfig {
    pub zone_id: String,
    /// The environment variable holding the API token (never the token).
    #[serde(default = "default_cloudflare_token_env")]
    pub api_token_env: String,
    #[serde(default = "default_cloudflare_api_base")]
    pub api_base: String,
    #[serde(flatten)]
    pub queue: PurgeQueueConfig,
    /// Keys nobody asked for, refused by [`Config::parse`] (serde cannot
    /// deny unknown keys of a flattened table itself).
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// A generic purger for other CDNs: `POST url` with `{"tags": [...]}` or
/// `{"hosts": [...]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookConfig {
    pub url: String,
    /// The environment variable holding a bearer token, if the hook wants one.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(flatten)]
    pub queue: PurgeQueueConfig,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// How purges are batched, throttled and retried. Defaults fit Cloudflare's
/// Free plan.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PurgeQueueConfig {
    /// Names the queue, shared by every zone and host of one CDN account
    /// (the account's rate limit is shared too); default: the zone id or
    /// the webhook URL.
    pub account: Option<String>,
    pub requests_per_minute: u32,
    pub burst: u32,
    pub max_tags_per_request: usize,
    /// A version changing more tags than this purges its host names instead.
    pub host_purge_threshold: usize,
    /// Failed attempts before a version's purge is dead-lettered.
    pub max_attempts: u32,
    pub request_timeout_secs: u64,
    /// One proxy sends for the account at a time; it holds a lease in the
    /// store for this long and renews it. At least twice
    /// `request_timeout_secs`, so a lease cannot run out mid-request.
    pub lease_secs: u64,
    /// How often the queue is re-read for purges other proxies queued.
    pub poll_secs: u64,
}

impl Default for PurgeQueueConfig {
    fn default() -> Self {
        Self {
            account: None,
            requests_per_minute: 5,
            burst: 25,
            max_tags_per_request: 100,
            host_purge_threshold: 500,
            max_attempts: 8,
            request_timeout_secs: 30,
            lease_secs: 60,
            poll_secs: 30,
        }
    }
}

fn default_cloudflare_token_env() -> String {
    "CLOUDFLARE_API_TOKEN".to_owned()
}

fn default_cloudflare_api_base() -> String {
    "https://api.cloudflare.com/client/v4".to_owned()
}

/// Limits on publishing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Largest file a site may contain, in bytes.
    pub max_file_bytes: u64,
    /// Most files one site version may contain.
    pub max_files_per_site: u64,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 100 << 20,
            max_files_per_site: 100_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum StoreConfig {
    /// A directory; default `<state_dir>/store`.
    Local { path: Option<PathBuf> },
    /// An S3-compatible bucket (R2: endpoint `https://<account>.r2.cloudflarestorage.com`,
    /// region `auto`). Keys come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
    S3 {
        endpoint: Option<String>,
        bucket: String,
        #[serde(default = "default_region")]
        region: String,
    },
}

fn default_region() -> String {
    "auto".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes of blobs kept in memory.
    pub memory_bytes: u64,
    /// Bytes of blobs kept on disk under `<state_dir>/cache`.
    pub disk_bytes: u64,
    /// Blobs larger than this are served from the disk cache in pieces
    /// instead of being held in memory whole.
    pub max_memory_object_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Idle keep-alive connections are closed after this many seconds.
    pub keepalive_secs: u64,
    /// Bound on reading a request (headers and body) from a client, in seconds.
    pub read_timeout_secs: u64,
    /// Bound on each write to a client, in seconds.
    pub write_timeout_secs: u64,
    /// Largest request body accepted, in bytes (static sites take none).
    pub max_request_body_bytes: u64,
    /// Longest request path accepted, in bytes.
    pub max_path_bytes: usize,
    /// Per-connection write buffer, in bytes: a response whose header and
    /// body fit goes out in one send(). Allocated per open connection.
    pub write_buffer_bytes: usize,
}

/// How a site's URLs end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrailingSlash {
    /// As the files imply: `dir/index.html` is `/dir/`, `page.html` is `/page`.
    #[default]
    Auto,
    /// Pages always end in `/`.
    Always,
    /// Pages never end in `/`.
    Never,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// Custom domains served as this site.
    pub domains: Vec<String>,
    pub trailing_slash: TrailingSlash,
    /// Answer unknown extension-less paths with `/index.html` (single-page
    /// apps). Paths with an extension still get a 404: a missing asset is
    /// never answered with HTML.
    pub spa: bool,
    /// The service worker for this site; default: the top-level
    /// `service_worker`. Off also orders workers installed earlier away.
    pub service_worker: Option<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            admin_listen: "127.0.0.1:9180".to_owned(),
            base_domain: "localhost".to_owned(),
            state_dir: PathBuf::from(".grove"),
            store: StoreConfig::Local { path: None },
            cache: CacheConfig::default(),
            root_refresh_ms: 1000,
            http: HttpConfig::default(),
            sites: BTreeMap::new(),
            tls: None,
            public_url: None,
            publish: PublishConfig::default(),
            cdn: CdnConfig::default(),
            node: NodeConfig::default(),
            service_worker: true,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            disk_bytes: 4 << 30,
            max_memory_object_bytes: 8 << 20,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            keepalive_secs: 60,
            read_timeout_secs: 30,
            write_timeout_secs: 30,
            max_request_body_bytes: 1 << 20,
            max_path_bytes: 2048,
            write_buffer_bytes: 32 * 1024,
        }
    }
}

impl Config {
    /// Reads `path`, or the defaults when there is no file.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing config {}", path.display()))
    }

    /// Parses a config file's text, refusing unknown keys everywhere.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        let sections = [
            (
                "cdn.cloudflare",
                config.cdn.cloudflare.as_ref().map(|section| &section.unknown),
            ),
            (
                "cdn.webhook",
                config.cdn.webhook.as_ref().map(|section| &section.unknown),
            ),
        ];
        for (section, unknown) in sections {
            if let Some(key) = unknown.and_then(|unknown| unknown.keys().next()) {
                anyhow::bail!("unknown key `{key}` in [{section}]");
            }
        }
        for (site, address) in &config.node.directory {
            grove_core::SiteName::parse(site).context("a site in [node.directory]")?;
            let port = address.rsplit_once(':').and_then(|(host, port)| {
                (!host.is_empty()).then_some(())?;
                port.parse::<u16>().ok()
            });
            if port.is_none() {
                anyhow::bail!("[node.directory] {site} = {address:?}: expected host:port");
            }
        }
        Ok(config)
    }

    pub fn root_refresh(&self) -> Duration {
        Duration::from_millis(self.root_refresh_ms)
    }

    pub fn store_path(&self) -> Option<PathBuf> {
        match &self.store {
            StoreConfig::Local { path } => Some(path.clone().unwrap_or_else(|| self.state_dir.join("store"))),
            StoreConfig::S3 { .. } => None,
        }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.state_dir.join("cache")
    }

    /// Every host name site `name` is served at, previews aside.
    pub fn site_hosts(&self, name: &str) -> Vec<String> {
        let mut hosts = vec![format!("{name}.{}", self.base_domain)];
        hosts.extend(self.site(name).domains);
        hosts
    }

    /// Opens the configured store. Each runtime opens its own: an S3
    /// client's connections belong to the runtime that made them.
    pub fn open_store(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        Ok(match &self.store {
            StoreConfig::Local { .. } => {
                let path = self.store_path().expect("local stores have a path");
                Arc::new(
                    LocalStore::open(&path).with_context(|| format!("opening the local store {}", path.display()))?,
                )
            }
            StoreConfig::S3 {
                endpoint,
                bucket,
                region,
            } => {
                let mut s3 = S3StoreConfig::new(endpoint.clone(), bucket.clone());
                s3.region = region.clone();
                Arc::new(S3Store::new(s3))
            }
        })
    }

    /// Whether site `name` has the service worker. Asked on every request,
    /// so it reads the site's entry without copying it.
    pub fn service_worker(&self, name: &str) -> bool {
        self.sites
            .get(name)
            .and_then(|site| site.service_worker)
            .unwrap_or(self.service_worker)
    }

    pub fn site(&self, name: &str) -> SiteConfig {
        self.sites.get(name).cloned().unwrap_or_default()
    }

    /// The public URL of the site reached as `host` (`<site>.<base domain>`
    /// or a preview host).
    pub fn site_url(&self, host: &str) -> String {
        match &self.public_url {
            Some(template) => template.replace("{host}", host),
            None => {
                let port = self.listen.rsplit_once(':').map_or("8080", |(_, port)| port);
                format!("http://{host}:{port}/")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_section_and_refuses_unknown_keys() {
        let config: Config = toml::from_str(
            r#"
            listen = "0.0.0.0:80"
            base_domain = "example.net"
            root_refresh_ms = 250
            [store]
            kind = "s3"
            endpoint = "http://127.0.0.1:9000"
            bucket = "grove"
            [cache]
            memory_bytes = 1024
            [sites.blog]
            domains = ["blog.example.com"]
            trailing_slash = "always"
            spa = true
            "#,
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:80");
        assert_eq!(config.cache.memory_bytes, 1024);
        assert_eq!(config.cache.disk_bytes, CacheConfig::default().disk_bytes);
        assert!(matches!(config.store, StoreConfig::S3 { ref region, .. } if region == "auto"));
        assert_eq!(config.site("blog").trailing_slash, TrailingSlash::Always);
        assert!(toml::from_str::<Config>("lisen = \"typo\"").is_err());
        assert_eq!(config.site_url("blog.example.net"), "http://blog.example.net:80/");
        let cdn: Config = toml::from_str(
            r#"
            [cdn.cloudflare]
            zone_id = "zone"
            burst = 3
            "#,
        )
        .unwrap();
        let cloudflare = cdn.cdn.cloudflare.unwrap();
        assert_eq!(cloudflare.api_token_env, "CLOUDFLARE_API_TOKEN");
        assert_eq!((cloudflare.queue.burst, cloudflare.queue.requests_per_minute), (3, 5));
        let typo = Config::parse("[cdn.cloudflare]\nzone_id = \"z\"\nbrust = 3").unwrap_err();
        assert_eq!(typo.to_string(), "unknown key `brust` in [cdn.cloudflare]");
        assert!(Config::parse("[cdn.webhook]\nurl = \"http://127.0.0.1:1/\"\nzone_id = \"z\"").is_err());
        let behind_cdn: Config = toml::from_str("public_url = \"https://{host}/\"").unwrap();
        assert_eq!(
            behind_cdn.site_url("3--blog.example.net"),
            "https://3--blog.example.net/"
        );
    }
}
