//! Configuration: one TOML file ([`file`]), overridden by environment
//! variables and flags ([`Overrides`]), then checked once and resolved into
//! the model the server runs on ([`Config`]). Secrets come only from the
//! environment, named by the file.

pub mod file;
pub mod help;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use grove_core::SiteName;
use grove_objects::store::{LocalStore, ObjectStore, S3Store, S3StoreConfig};

pub use file::{
    CanonicalMode, CdnConfig, ConfigFile, EgressConfig, HttpConfig, LiveApi, LiveConfig, NodeConfig, PublishConfig,
    PurgeQueueConfig, Role, SiteConfig, StoreConfig, TrailingSlash,
};
use secrecy::SecretString;

use crate::tls::TlsConfig;

/// What flags and their `GROVE_*` variables override in the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub base_domain: Option<String>,
    pub state_dir: Option<PathBuf>,
}

/// Memory and disk the caches may use, every size resolved.
#[derive(Debug, Clone)]
pub struct CacheSizes {
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub max_memory_object_bytes: u64,
    pub tree_node_entries: u64,
    pub tree_node_bytes: u64,
    pub rule_sets: u64,
    pub compressed_bytes: u64,
    pub prepared_bytes: u64,
}

/// The checked configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    /// The admin listener, if any.
    pub admin_listen: Option<String>,
    pub base_domain: String,
    pub state_dir: PathBuf,
    pub store: StoreConfig,
    pub cache: CacheSizes,
    /// Age at which a known root is read again (the per-site safety net).
    pub root_refresh: Duration,
    pub role: Role,
    /// Set exactly when `role` is static.
    pub live: Option<LiveConfig>,
    pub edges: Edges,
    pub egress: EgressConfig,
    pub http: HttpConfig,
    /// Keyed by valid site names.
    pub sites: BTreeMap<String, SiteConfig>,
    pub tls: Option<TlsConfig>,
    pub public_url: Option<String>,
    pub publish: PublishConfig,
    pub cdn: Option<CdnConfig>,
    pub node: NodeConfig,
    /// Where the embedded node keeps its log.
    pub node_data_dir: PathBuf,
    pub service_worker: bool,
}

/// How publishes reach this edge and the others, resolved.
#[derive(Debug, Clone)]
pub struct Edges {
    pub peers: Vec<String>,
    /// What pushes carry; `None`: none are sent or taken.
    pub secret: Option<SecretString>,
    pub journal_poll: Duration,
    pub safety_net_reads_per_sec: std::num::NonZeroU32,
}

/// Shortest secret a push may carry.
const MIN_EDGE_SECRET_CHARS: usize = 16;

/// A site with no `[sites.<name>]` section.
static DEFAULT_SITE: std::sync::LazyLock<SiteConfig> = std::sync::LazyLock::new(SiteConfig::default);

impl Config {
    /// Reads `path` (the defaults when there is none), applies `overrides`
    /// and resolves the result.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> anyhow::Result<Self> {
        let file = match path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?
            }
            None => ConfigFile::default(),
        };
        Self::resolve(file, overrides).with_context(|| match path {
            Some(path) => format!("checking config {}", path.display()),
            None => "checking the configuration".to_owned(),
        })
    }

    /// Parses a config file's text with no overrides.
    #[cfg(test)]
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Self::resolve(toml::from_str(text)?, Overrides::default())
    }

    /// Every check of the configuration, in one place: nothing starts on a
    /// configuration that fails one.
    pub fn resolve(mut file: ConfigFile, overrides: Overrides) -> anyhow::Result<Self> {
        file.listen = overrides.listen.unwrap_or(file.listen);
        file.admin_listen = overrides.admin_listen.unwrap_or(file.admin_listen);
        file.base_domain = overrides.base_domain.unwrap_or(file.base_domain);
        file.state_dir = overrides.state_dir.unwrap_or(file.state_dir);

        for name in file.sites.keys() {
            SiteName::parse(name).with_context(|| format!("[sites.{name}]"))?;
        }
        if let Some(cdn) = &file.cdn {
            check_cdn(cdn)?;
        }
        for (name, site) in &file.sites {
            if let Some(canonical) = &site.canonical_host {
                let hosts = site_hosts(name, &file.base_domain, site);
                anyhow::ensure!(
                    hosts.iter().any(|host| host.eq_ignore_ascii_case(canonical)),
                    "[sites.{name}] canonical_host = {canonical:?} is not one of the site's hosts ({})",
                    hosts.join(", ")
                );
            }
        }
        for endpoint in &file.node.directory.etcd {
            let address = endpoint.strip_prefix("http://").unwrap_or_default();
            anyhow::ensure!(
                address
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
                "[node.directory] etcd = [{endpoint:?}]: expected http://host:port"
            );
        }
        anyhow::ensure!(
            file.node.directory.etcd.is_empty() || !file.node.embedded,
            "[node.directory] etcd needs [node] embedded = false: sites live on the grove-storage nodes etcd names"
        );
        for (site, address) in &file.node.directory.sites {
            SiteName::parse(site).context("a site in [node.directory]")?;
            let port = address.rsplit_once(':').and_then(|(host, port)| {
                (!host.is_empty()).then_some(())?;
                port.parse::<u16>().ok()
            });
            if port.is_none() {
                anyhow::bail!("[node.directory] {site} = {address:?}: expected host:port");
            }
        }

        let edges = resolve_edges(&file.edges)?;
        match (file.role, &file.live) {
            (Role::Static, None) => {
                anyhow::bail!("role = \"static\" needs [live] url: where sign-in, API calls and live streams go")
            }
            (Role::Full, Some(_)) => {
                anyhow::bail!("[live] is for role = \"static\" edges; a full edge serves sign-in and the APIs itself")
            }
            (Role::Static, Some(live)) => {
                check_live_url(&live.url)?;
                anyhow::ensure!(
                    file.node.directory.etcd.is_empty() && file.node.directory.sites.is_empty(),
                    "role = \"static\" embeds no storage node and calls none, so [node.directory] must be empty"
                );
                anyhow::ensure!(
                    file.cdn.is_none(),
                    "role = \"static\" commits no publish, so it purges no CDN: set [cdn] on the full edges"
                );
                file.node.embedded = false;
            }
            (Role::Full, None) => {}
        }
        if let Some(base) = &file.egress.public_base_url {
            anyhow::ensure!(
                (base.starts_with("https://") || base.starts_with("http://")) && base.ends_with('/'),
                "[egress] public_base_url = {base:?}: expected an http(s) URL ending in /"
            );
        }

        let cache = &file.cache;
        let cache = CacheSizes {
            memory_bytes: cache.memory_bytes,
            disk_bytes: cache.disk_bytes,
            max_memory_object_bytes: cache.max_memory_object_bytes,
            tree_node_entries: cache.tree_node_entries,
            tree_node_bytes: cache.tree_node_bytes,
            rule_sets: cache.rule_sets,
            compressed_bytes: cache.compressed_bytes.unwrap_or(cache.memory_bytes / 4),
            prepared_bytes: cache.prepared_bytes.unwrap_or(cache.memory_bytes / 4),
        };
        let node_data_dir = file
            .node
            .data_dir
            .clone()
            .unwrap_or_else(|| file.state_dir.join("node"));
        Ok(Self {
            admin_listen: Some(file.admin_listen).filter(|listen| !listen.is_empty()),
            listen: file.listen,
            base_domain: file.base_domain,
            state_dir: file.state_dir,
            store: file.store,
            cache,
            root_refresh: Duration::from_millis(file.root_refresh_ms),
            role: file.role,
            live: file.live,
            edges,
            egress: file.egress,
            http: file.http,
            sites: file.sites,
            tls: file.tls,
            public_url: file.public_url,
            publish: file.publish,
            cdn: file.cdn,
            node: file.node,
            node_data_dir,
            service_worker: file.service_worker,
        })
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
        site_hosts(name, &self.base_domain, self.site(name))
    }

    /// The host site `name` is indexed at: `canonical_host`, else its first
    /// custom domain, else `<site>.<base_domain>`.
    pub fn canonical_host(&self, name: &str) -> String {
        let site = self.site(name);
        site.canonical_host
            .clone()
            .or_else(|| site.domains.first().cloned())
            .unwrap_or_else(|| format!("{name}.{}", self.base_domain))
            .to_ascii_lowercase()
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

    /// Whether site `name` has the service worker.
    pub fn service_worker(&self, name: &str) -> bool {
        self.site(name).service_worker.unwrap_or(self.service_worker)
    }

    /// Site `name`'s settings. Asked on every request, so it lends the
    /// entry rather than copying it.
    pub fn site(&self, name: &str) -> &SiteConfig {
        self.sites.get(name).unwrap_or(&DEFAULT_SITE)
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

/// The hosts of one site, previews aside: `<site>.<base>` and its domains.
fn site_hosts(name: &str, base_domain: &str, site: &SiteConfig) -> Vec<String> {
    let mut hosts = vec![format!("{name}.{base_domain}")];
    hosts.extend(site.domains.iter().cloned());
    hosts
}

/// A CDN section's keys and its queue's limits.
fn check_cdn(cdn: &CdnConfig) -> anyhow::Result<()> {
    let (section, unknown, queue) = match cdn {
        CdnConfig::Cloudflare(cloudflare) => {
            anyhow::ensure!(!cloudflare.zone_id.is_empty(), "cdn.cloudflare.zone_id is empty");
            ("cdn.cloudflare", &cloudflare.unknown, &cloudflare.queue)
        }
        CdnConfig::Webhook(webhook) => ("cdn.webhook", &webhook.unknown, &webhook.queue),
    };
    if let Some(key) = unknown.keys().next() {
        anyhow::bail!("unknown key `{key}` in [{section}]");
    }
    anyhow::ensure!(
        queue.lease_secs >= 2 * queue.request_timeout_secs.max(1),
        "the CDN lease_secs ({}) must be at least twice request_timeout_secs ({}), \
         so a sender cannot lose its lease mid-request",
        queue.lease_secs,
        queue.request_timeout_secs
    );
    anyhow::ensure!(
        queue.requests_per_minute > 0 && queue.burst > 0 && queue.max_tags_per_request > 0,
        "the CDN requests_per_minute, burst and max_tags_per_request must be positive"
    );
    Ok(())
}

fn resolve_edges(file: &file::EdgesConfig) -> anyhow::Result<Edges> {
    for peer in &file.peers {
        anyhow::ensure!(
            peer.rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
            "[edges] peers = [{peer:?}]: expected host:port"
        );
    }
    let secret = match std::env::var(&file.secret_env) {
        Ok(value) if !value.trim().is_empty() => {
            anyhow::ensure!(
                value.trim().chars().count() >= MIN_EDGE_SECRET_CHARS,
                "{} holds a secret shorter than {MIN_EDGE_SECRET_CHARS} characters",
                file.secret_env
            );
            Some(SecretString::from(value.trim()))
        }
        _ => None,
    };
    anyhow::ensure!(
        file.peers.is_empty() || secret.is_some(),
        "[edges] peers are told of publishes with a shared secret: set {} (at least {MIN_EDGE_SECRET_CHARS} characters)",
        file.secret_env
    );
    anyhow::ensure!(file.journal_poll_ms > 0, "[edges] journal_poll_ms must be above 0");
    let safety_net_reads_per_sec = std::num::NonZeroU32::new(file.safety_net_reads_per_sec)
        .context("[edges] safety_net_reads_per_sec must be above 0")?;
    Ok(Edges {
        peers: file.peers.clone(),
        secret,
        journal_poll: Duration::from_millis(file.journal_poll_ms),
        safety_net_reads_per_sec,
    })
}

/// `[live] url` must be an http(s) origin once `{host}` and `{site}` are
/// filled in.
fn check_live_url(template: &str) -> anyhow::Result<()> {
    let example = template.replace("{host}", "example.com").replace("{site}", "example");
    let url = url::Url::parse(&example).with_context(|| format!("[live] url = {template:?}"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some() && url.path() == "/",
        "[live] url = {template:?}: expected an origin such as \"https://{{site}}.live.example.com/\""
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_edge_needs_a_live_host_and_embeds_no_node() {
        let error = Config::parse("role = \"static\"").unwrap_err();
        assert!(format!("{error:#}").contains("[live] url"), "{error:#}");
        let error = Config::parse("[live]\nurl = \"https://{site}.live.example.com/\"").unwrap_err();
        assert!(format!("{error:#}").contains("role = \"static\""), "{error:#}");
        let error = Config::parse("role = \"static\"\n[live]\nurl = \"https://live.example.com/app\"").unwrap_err();
        assert!(format!("{error:#}").contains("expected an origin"), "{error:#}");
        let error = Config::parse(
            "role = \"static\"\n[live]\nurl = \"https://{site}.live.example.com/\"\n[cdn.cloudflare]\nzone_id = \"z\"",
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("purges no CDN"), "{error:#}");

        let edge =
            Config::parse("role = \"static\"\n[live]\nurl = \"https://{site}.live.example.com/\"\napi = \"redirect\"")
                .unwrap();
        assert_eq!(edge.role, Role::Static);
        assert!(!edge.node.embedded);
        assert_eq!(edge.live.unwrap().api, LiveApi::Redirect);
    }

    #[test]
    fn peers_need_the_shared_secret() {
        let error =
            Config::parse("[edges]\nsecret_env = \"GROVE_TEST_UNSET_EDGE_SECRET\"\npeers = [\"10.0.0.2:8080\"]")
                .unwrap_err();
        assert!(
            format!("{error:#}").contains("GROVE_TEST_UNSET_EDGE_SECRET"),
            "{error:#}"
        );
        let error = Config::parse("[edges]\npeers = [\"no-port\"]").unwrap_err();
        assert!(format!("{error:#}").contains("expected host:port"), "{error:#}");
        let error = Config::parse("[edges]\nsafety_net_reads_per_sec = 0").unwrap_err();
        assert!(format!("{error:#}").contains("above 0"), "{error:#}");
        let defaults = Config::parse("").unwrap();
        assert_eq!(defaults.edges.journal_poll, Duration::from_secs(1));
        assert_eq!(defaults.root_refresh, Duration::from_secs(60));
        assert!(defaults.edges.secret.is_none() && defaults.edges.peers.is_empty());
    }

    #[test]
    fn parses_every_section_and_refuses_unknown_keys() {
        let config = Config::parse(
            r#"
            listen = "0.0.0.0:80"
            base_domain = "example.net"
            root_refresh_ms = 250
            admin_listen = ""
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
        assert_eq!(config.admin_listen, None);
        assert_eq!(config.root_refresh, Duration::from_millis(250));
        assert_eq!(config.cache.memory_bytes, 1024);
        assert_eq!(config.cache.compressed_bytes, 256, "a quarter of memory_bytes");
        assert_eq!(config.cache.disk_bytes, file::CacheConfig::default().disk_bytes);
        assert!(matches!(config.store, StoreConfig::S3 { ref region, .. } if region == "auto"));
        assert_eq!(config.site("blog").trailing_slash, TrailingSlash::Always);
        assert_eq!(config.site("other").trailing_slash, TrailingSlash::Auto);
        assert!(Config::parse("lisen = \"typo\"").is_err());
        assert_eq!(config.site_url("blog.example.net"), "http://blog.example.net:80/");
        let behind_cdn = Config::parse("public_url = \"https://{host}/\"").unwrap();
        assert_eq!(
            behind_cdn.site_url("3--blog.example.net"),
            "https://3--blog.example.net/"
        );
    }

    #[test]
    fn one_cdn_section_with_its_own_keys_only() {
        let cdn = Config::parse("[cdn.cloudflare]\nzone_id = \"zone\"\nburst = 3\n").unwrap();
        let Some(CdnConfig::Cloudflare(cloudflare)) = cdn.cdn else {
            panic!("a Cloudflare section")
        };
        assert_eq!(cloudflare.api_token_env, "CLOUDFLARE_API_TOKEN");
        assert_eq!((cloudflare.queue.burst, cloudflare.queue.requests_per_minute), (3, 5));
        let typo = Config::parse("[cdn.cloudflare]\nzone_id = \"z\"\nbrust = 3").unwrap_err();
        assert_eq!(typo.to_string(), "unknown key `brust` in [cdn.cloudflare]");
        assert!(Config::parse("[cdn.webhook]\nurl = \"http://127.0.0.1:1/\"\nzone_id = \"z\"").is_err());
        let both = "[cdn.cloudflare]\nzone_id = \"z\"\n[cdn.webhook]\nurl = \"http://127.0.0.1:1/\"\n";
        assert!(Config::parse(both).is_err(), "two CDNs are refused");
        assert!(Config::parse("[cdn.cloudflare]\nzone_id = \"\"").is_err());
        assert!(Config::parse("[cdn.webhook]\nurl = \"http://127.0.0.1:1/\"\nlease_secs = 10").is_err());
    }

    #[test]
    fn the_canonical_host_is_one_of_the_sites_hosts() {
        let config = Config::parse("[sites.blog]\ndomains = [\"Blog.Example.com\", \"b.example.com\"]").unwrap();
        assert_eq!(config.canonical_host("blog"), "blog.example.com", "the first domain");
        assert_eq!(config.canonical_host("other"), "other.localhost");
        assert_eq!(config.site("blog").canonical, CanonicalMode::Redirect);
        let chosen = Config::parse(
            "[sites.blog]\ndomains = [\"blog.example.com\"]\ncanonical_host = \"blog.localhost\"\ncanonical = \"header\"",
        )
        .unwrap();
        assert_eq!(chosen.canonical_host("blog"), "blog.localhost");
        assert_eq!(chosen.site("blog").canonical, CanonicalMode::Header);
        let elsewhere = Config::parse("[sites.blog]\ncanonical_host = \"example.org\"").unwrap_err();
        assert!(format!("{elsewhere:#}").contains("is not one of the site's hosts (blog.localhost)"));
        assert!(Config::parse("[sites.blog]\ncanonical = \"both\"").is_err());
    }

    #[test]
    fn every_check_runs_after_the_overrides() {
        assert!(Config::parse("[sites.Bad_Name]\nspa = true").is_err());
        assert!(Config::parse("[node.directory]\nblog = \"nowhere\"").is_err());
        assert!(Config::parse("[node]\nembedded = false\n[node.directory]\netcd = [\"127.0.0.1:2379\"]").is_err());
        assert!(Config::parse("[node.directory]\netcd = [\"http://127.0.0.1:2379\"]").is_err());
        let followed = Config::parse(
            "[node]\nembedded = false\n[node.directory]\netcd = [\"http://127.0.0.1:2379\"]\nblog = \"127.0.0.1:9\"",
        )
        .unwrap();
        assert_eq!(followed.node.directory.etcd, ["http://127.0.0.1:2379"]);
        assert_eq!(followed.node.directory.sites["blog"], "127.0.0.1:9");
        let overrides = Overrides {
            listen: Some("127.0.0.1:1".to_owned()),
            state_dir: Some(PathBuf::from("/tmp/state")),
            ..Overrides::default()
        };
        let config = Config::resolve(ConfigFile::default(), overrides).unwrap();
        assert_eq!(config.listen, "127.0.0.1:1");
        assert_eq!(config.node_data_dir, PathBuf::from("/tmp/state/node"));
        assert_eq!(config.store_path(), Some(PathBuf::from("/tmp/state/store")));
    }
}
