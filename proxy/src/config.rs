//! Configuration: one TOML file, overridden by environment variables, which
//! are overridden by flags. Secrets (S3 keys) come only from the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
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
        let behind_cdn: Config = toml::from_str("public_url = \"https://{host}/\"").unwrap();
        assert_eq!(
            behind_cdn.site_url("3--blog.example.net"),
            "https://3--blog.example.net/"
        );
    }
}
