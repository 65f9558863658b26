//! The config file as written: every key, its default, and nothing
//! derived. [`super::Config::resolve`] checks it and turns it into the
//! model the server runs on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use grove_node::NodeLimits;
use serde::{Deserialize, Serialize};

use crate::tls::TlsConfig;

/// Every key of the config file, with its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
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
    /// The per-site safety net, in ms: a known root older than this is
    /// read again when its site is asked for (within
    /// `[edges] safety_net_reads_per_sec`). Publishes normally arrive
    /// sooner, by push or through the journal.
    pub root_refresh_ms: u64,
    /// `full` serves everything; `static` serves the published snapshot
    /// only, embeds no storage node and sends sign-in, API calls and live
    /// streams to `[live] url`.
    pub role: Role,
    /// Where a static edge sends what it does not serve; required for
    /// `role = "static"`.
    pub live: Option<LiveConfig>,
    pub edges: EdgesConfig,
    pub egress: EgressConfig,
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
    /// The CDN in front of this host, purged on every publish: one of
    /// `[cdn.cloudflare]` and `[cdn.webhook]`; none when absent.
    pub cdn: Option<CdnConfig>,
    /// The storage node that answers `/_grove/api/`.
    pub node: NodeConfig,
    /// Install the service worker on every site (HTML pages get its
    /// register script); `[sites.<name>] service_worker` overrides it. Off
    /// also orders workers installed earlier to unregister.
    pub service_worker: bool,
}

/// What an edge serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Snapshots, sign-in, live sessions, the APIs and publishing.
    #[default]
    Full,
    /// The published snapshot only (pages, assets, `/_grove/root`, tree,
    /// blob, the worker): a cheap host for visitors and bots.
    Static,
}

/// The full edges a static edge hands signed-in visitors and API calls to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// Their origin for a request, with `{host}` (the request's host) and
    /// `{site}` (the site's name) filled in, e.g.
    /// `https://{site}.live.example.com/`.
    pub url: String,
    /// How `/_grove/api/*` and `/_grove/live` reach it: `proxy` (this edge
    /// forwards them) or `redirect` (a 307 there). Sign-in, and signed-in
    /// visitors' page loads, always go there by redirect.
    #[serde(default)]
    pub api: LiveApi,
}

/// How a static edge forwards API calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveApi {
    #[default]
    Proxy,
    Redirect,
}

/// Edges sharing one bucket: how publishes reach all of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgesConfig {
    /// Edges told at once of each publish this one commits, as
    /// `host:port`; a name is resolved at each push to every address it
    /// has (on fly.io, `<app>.internal` names every Machine).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// The environment variable holding the secret pushes carry (at least
    /// 16 characters). Without it this edge neither sends nor takes pushes.
    pub secret_env: String,
    /// Milliseconds between reads of the bucket's journal: how long a
    /// publish takes to reach this edge when no push arrives.
    pub journal_poll_ms: u64,
    /// Safety-net root reads a second, all sites together, so their cost
    /// does not grow with the number of sites.
    pub safety_net_reads_per_sec: u32,
}

impl Default for EdgesConfig {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            secret_env: "GROVE_EDGE_SECRET".to_owned(),
            journal_poll_ms: 1000,
            safety_net_reads_per_sec: 1,
        }
    }
}

/// Sending big files' bytes from the object store instead of this edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// A file larger than this many bytes is answered with a 302 to the
    /// object store (R2 egress is free; an edge's may not be); 0: never.
    pub redirect_blobs_above_bytes: u64,
    /// Seconds a presigned URL stays valid.
    pub redirect_ttl_secs: u64,
    /// A public bucket's URL (e.g. `https://pub-<id>.r2.dev/`): links go
    /// there unsigned instead of to presigned URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_base_url: Option<String>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            redirect_blobs_above_bytes: 0,
            redirect_ttl_secs: 3600,
            public_base_url: None,
        }
    }
}

/// The storage node: the one this proxy embeds, and the nodes elsewhere
/// that some sites live on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Run a node in this process; sites the directory does not place
    /// elsewhere use it.
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
    pub directory: DirectoryConfig,
}

/// Where the nodes of sites this proxy does not embed are: named one by
/// one, or followed in etcd, where `grove-storage --etcd` nodes keep each
/// site's primary.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DirectoryConfig {
    /// etcd members (`http://host:port`) holding the nodes' directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub etcd: Vec<String>,
    /// The directory's key prefix in etcd (`grove-storage --etcd-prefix`).
    pub etcd_prefix: String,
    /// Sites whose node runs elsewhere: site name -> `host:port`.
    #[serde(flatten)]
    pub sites: BTreeMap<String, String>,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            etcd: Vec::new(),
            etcd_prefix: "/grove/".to_owned(),
            sites: BTreeMap::new(),
        }
    }
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
            directory: DirectoryConfig::default(),
        }
    }
}

/// Which CDN to purge: exactly one section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum CdnConfig {
    Cloudflare(CloudflareConfig),
    Webhook(WebhookConfig),
}

/// Cloudflare's purge-by-tag API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloudflareConfig {
    pub zone_id: String,
    /// The environment variable holding the API token (never the token).
    #[serde(default = "default_cloudflare_token_env")]
    pub api_token_env: String,
    #[serde(default = "default_cloudflare_api_base")]
    pub api_base: String,
    #[serde(flatten)]
    pub queue: PurgeQueueConfig,
    /// Keys nobody asked for, refused by [`super::Config::resolve`] (serde
    /// cannot deny unknown keys of a flattened table itself).
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, toml::Value>,
}

/// A generic purger for other CDNs: `POST url` with `{"tags": [...]}` or
/// `{"hosts": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookConfig {
    pub url: String,
    /// The environment variable holding a bearer token, if the hook wants one.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(flatten)]
    pub queue: PurgeQueueConfig,
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, toml::Value>,
}

/// How purges are batched, throttled and retried. Defaults fit Cloudflare's
/// Free plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes of blobs kept in memory.
    pub memory_bytes: u64,
    /// Bytes of blobs kept on disk under `<state_dir>/cache`.
    pub disk_bytes: u64,
    /// Blobs larger than this are served from the disk cache in pieces
    /// instead of being held in memory whole.
    pub max_memory_object_bytes: u64,
    /// Entries of decoded manifest tree nodes kept in memory.
    pub tree_node_entries: u64,
    /// Bytes of encoded tree nodes kept for `/_grove/tree/<hash>`.
    pub tree_node_bytes: u64,
    /// Sites' parsed `_redirects` and `_headers` rules kept, counted in rule sets.
    pub rule_sets: u64,
    /// Bytes of compressed copies kept; default a quarter of `memory_bytes`.
    pub compressed_bytes: Option<u64>,
    /// Bytes of prepared replies kept; default a quarter of `memory_bytes`.
    pub prepared_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Idle keep-alive connections are closed after this many seconds
    /// (HTTP/2: with no stream open, after one to two times this).
    pub keepalive_secs: u64,
    /// Bound on reading a request (headers and body) from a client, in seconds.
    pub read_timeout_secs: u64,
    /// Bound on each write to a client, in seconds.
    pub write_timeout_secs: u64,
    /// Largest request body accepted, in bytes (static sites take none).
    pub max_request_body_bytes: u64,
    /// Longest request path accepted, in bytes.
    pub max_path_bytes: usize,
    /// Largest request header (request line and fields) accepted, in
    /// bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// Seconds a new connection may take to send its first bytes (nginx's
    /// `client_header_timeout`).
    pub first_request_timeout_secs: u64,
    /// Open connections from one client address; more are refused.
    pub max_connections_per_client: usize,
    /// Open connections in all; past it the longest-idle new connection is
    /// closed to make room, else the new one is refused.
    pub max_connections: usize,
    /// Per-connection write buffer, in bytes: a response whose header and
    /// body fit goes out in one send(). Allocated per open connection.
    pub write_buffer_bytes: usize,
    /// Plaintext HTTP/1 sends cached files with sendfile(2), from the page
    /// cache, not copied out of grove's memory (nginx's `sendfile on`).
    pub sendfile: bool,
    /// Smallest blob held in memory that keeps its disk-cache file open to
    /// be sent that way: below it one copy costs less than the extra system
    /// call. Bounds the files the memory cache holds open to
    /// `cache.memory_bytes` over it.
    pub sendfile_min_bytes: u64,
}

/// How a site's URLs end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// Sign-in with OpenID Connect; none when absent.
    pub auth: Option<AuthConfig>,
    /// The one host search engines index: one of the site's hosts; default
    /// its first custom domain, else `<site>.<base_domain>`. Its other hosts
    /// point there and, like previews, carry `X-Robots-Tag: noindex`.
    pub canonical_host: Option<String>,
    /// How the site's other hosts point at the canonical one.
    pub canonical: CanonicalMode,
}

/// How a site's non-canonical hosts point at its canonical host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CanonicalMode {
    /// GET and HEAD get a 308 to the same path and query there.
    #[default]
    Redirect,
    /// They are served, with `Link: <...>; rel="canonical"`.
    Header,
}

/// `[sites.<name>.auth]`: who signs in, what they may see and which node
/// data their sessions may touch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The OpenID provider; its discovery document is read from
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The environment variable holding the client secret (never the
    /// secret); none for a public client, which PKCE alone protects.
    pub client_secret_env: Option<String>,
    /// Who may see protected paths and use node data: patterns on the
    /// verified email, or on the subject (`*` matches any characters).
    #[serde(default = "everyone")]
    pub allow: Vec<String>,
    /// URL paths only allowed users see (`/members/*`). Anonymous page
    /// requests are sent to sign in; other requests get 401.
    #[serde(default)]
    pub protect: Vec<String>,
    /// Node paths a session may read: `comments/*` is everything under
    /// `comments/`, `{subject}` stands for the user's subject.
    #[serde(default = "own_data")]
    pub read: Vec<String>,
    /// Node paths a session may write, as `read`.
    #[serde(default = "own_data")]
    pub write: Vec<String>,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// A session unused for this long ends, in seconds.
    #[serde(default = "default_idle_secs")]
    pub idle_timeout_secs: u64,
    /// A session ends this long after sign-in whatever its use, in seconds.
    #[serde(default = "default_absolute_secs")]
    pub absolute_timeout_secs: u64,
}

fn everyone() -> Vec<String> {
    vec!["*".to_owned()]
}

fn own_data() -> Vec<String> {
    vec!["users/{subject}/*".to_owned()]
}

fn default_scopes() -> Vec<String> {
    vec!["email".to_owned(), "profile".to_owned()]
}

fn default_idle_secs() -> u64 {
    24 * 3600
}

fn default_absolute_secs() -> u64 {
    14 * 24 * 3600
}

impl Default for ConfigFile {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            admin_listen: "127.0.0.1:9180".to_owned(),
            base_domain: "localhost".to_owned(),
            state_dir: PathBuf::from(".grove"),
            store: StoreConfig::Local { path: None },
            cache: CacheConfig::default(),
            root_refresh_ms: 60_000,
            role: Role::Full,
            live: None,
            edges: EdgesConfig::default(),
            egress: EgressConfig::default(),
            http: HttpConfig::default(),
            sites: BTreeMap::new(),
            tls: None,
            public_url: None,
            publish: PublishConfig::default(),
            cdn: None,
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
            tree_node_entries: 4_000_000,
            tree_node_bytes: 64 << 20,
            rule_sets: 10_000,
            compressed_bytes: None,
            prepared_bytes: None,
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
            max_header_bytes: 64 * 1024,
            first_request_timeout_secs: 60,
            max_connections_per_client: 512,
            max_connections: 16_384,
            write_buffer_bytes: 32 * 1024,
            sendfile: true,
            sendfile_min_bytes: 64 * 1024,
        }
    }
}
