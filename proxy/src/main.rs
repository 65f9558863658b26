//! `grove-proxy`: serves published sites by host name.
//!
//! `fn main` stays synchronous: Pingora owns the runtimes. Start-up work that
//! needs async (opening the store, seeding the demo) runs on a short-lived
//! runtime of its own first.

mod admin;
mod api;
mod app;
mod cache;
mod compress;
mod config;
mod demo;
mod hosts;
mod metrics;
mod node;
mod purge;
mod reply;
mod request;
mod resolve;
mod roots;
mod route;
mod rules;
mod semantics;
mod server;
mod sw;
mod tls;
#[cfg(test)]
mod vectors;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use grove_core::token::Handle;
use grove_objects::store::ObjectStore;
use grove_objects::token::Tokens;
use pingora::apps::HttpServerOptions;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;

use crate::config::Config;

/// Every request allocates and frees a few small objects (header maps,
/// boxed futures, buffers) across worker threads; mimalloc's thread-local
/// free lists make that markedly cheaper than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lifetime of the operator token the host creates or installs.
const OPERATOR_TOKEN_DAYS: i64 = 100 * 365;

const CONFIG_HELP: &str = "\
Configuration file keys (TOML; every key optional):
  listen = \"127.0.0.1:8080\"          public HTTP listener (HTTP/1.1 and h2c)
  admin_listen = \"127.0.0.1:9180\"    Prometheus /metrics and /health; \"\" disables
  base_domain = \"localhost\"          sites are <site>.<base_domain>; previews <n>--<site>.<base_domain>
  state_dir = \".grove\"               local store, disk cache, pid file, upgrade socket
  root_refresh_ms = 1000             bound on how stale a site's current version may be
  [store]  kind = \"local\"  path = \"<state_dir>/store\"
           kind = \"s3\"     endpoint = \"https://<account>.r2.cloudflarestorage.com\"  bucket = \"...\"  region = \"auto\"
           (S3 keys only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS config files)
  [cache]  memory_bytes = 268435456  disk_bytes = 4294967296  max_memory_object_bytes = 8388608
  [http]   keepalive_secs = 60  read_timeout_secs = 30  write_timeout_secs = 30
           max_request_body_bytes = 1048576  max_path_bytes = 2048  write_buffer_bytes = 32768
  [tls]    listen = \"0.0.0.0:8443\"  reload_secs = 30     HTTPS with HTTP/2 (ALPN); certificates chosen by SNI
  [[tls.certificates]]  domains = [\"example.com\", \"*.example.com\"]  cert = \"fullchain.pem\"  key = \"key.pem\"
  [sites.<name>]  domains = [\"www.example.com\"]  trailing_slash = \"auto\"|\"always\"|\"never\"  spa = false
                  service_worker = true|false   (default: the top-level key below)
  service_worker = true              HTML gets the worker's register script; false also unregisters installed workers
  public_url = \"https://{host}/\"    live and preview URLs in publish replies; default http://{host}:<listen port>/
  [publish]  max_file_bytes = 104857600  max_files_per_site = 100000
  [cdn.cloudflare]  zone_id = \"...\"  api_token_env = \"CLOUDFLARE_API_TOKEN\"  api_base = \"https://api.cloudflare.com/client/v4\"
  [cdn.webhook]     url = \"https://...\"  token_env = \"PURGE_TOKEN\" (optional)     purged on every publish; at most one
     both take:    requests_per_minute = 5  burst = 25  max_tags_per_request = 100  host_purge_threshold = 500
                   max_attempts = 8  request_timeout_secs = 30  lease_secs = 60  poll_secs = 30
                   account = \"<zone id or url>\"  (names the queue and rate limit shared by one CDN account)
  [node]   embedded = true  name = \"main\"  listen = \"127.0.0.1:0\"  data_dir = \"<state_dir>/node\"
           seal_interval_ms = 1000  connect_timeout_secs = 2  read_timeout_secs = 60  handover_timeout_secs = 30
           the storage node behind /_grove/api/v1/<call>; its log is shipped to the store under nodes/<name>/
  [node.limits]     max_value_bytes = 65536  max_read_entries = 1000  max_watchers_per_handle = 16
                    requests_per_second = 200  max_txn_writes = 64
  [node.directory]  <site> = \"host:port\"   sites whose node runs elsewhere (a grove-storage process)

The flags above override their GROVE_* environment variables, which override the file.
The operator token: GROVE_ADMIN_TOKEN (grove_ + 64 hex digits), or one created and printed once on first start.
Logs: RUST_LOG (default info); GROVE_LOG_FORMAT=json for JSON lines.";

/// Serve published grove sites from a local cache in front of the object store.
#[derive(Debug, Parser)]
#[command(version, after_help = CONFIG_HELP)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "GROVE_CONFIG")]
    config: Option<PathBuf>,
    /// Public listener address (overrides `listen`).
    #[arg(long, env = "GROVE_LISTEN")]
    listen: Option<String>,
    /// Admin listener address (overrides `admin_listen`).
    #[arg(long, env = "GROVE_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Base domain (overrides `base_domain`).
    #[arg(long, env = "GROVE_BASE_DOMAIN")]
    base_domain: Option<String>,
    /// State directory (overrides `state_dir`).
    #[arg(long, env = "GROVE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Publish the bundled demo site as `demo` if the store lacks it.
    #[arg(long)]
    demo: bool,
    /// Take over the listeners of a running instance (zero-downtime upgrade).
    #[arg(short, long)]
    upgrade: bool,
    /// Run in the background.
    #[arg(short, long)]
    daemon: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    grove_node::logging::init();
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(admin) = cli.admin_listen {
        config.admin_listen = admin;
    }
    if let Some(base) = cli.base_domain {
        config.base_domain = base;
    }
    if let Some(state) = cli.state_dir {
        config.state_dir = state;
    }
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state directory {}", config.state_dir.display()))?;

    let startup = tokio::runtime::Runtime::new()?;
    // Serving does not need the token store, so an unreachable store must
    // not keep the cache from serving: warn, and bootstrap at the next start.
    let admin_token = match std::env::var("GROVE_ADMIN_TOKEN") {
        Ok(text) => Some(Handle::parse(text.trim()).context("GROVE_ADMIN_TOKEN")?),
        Err(_) => None,
    };
    // One store for the start-up work; the server opens its own, because an
    // S3 client's connections belong to the runtime that made them.
    let startup_store = config.open_store()?;
    if let Err(error) = startup.block_on(bootstrap_operator(Arc::clone(&startup_store), admin_token)) {
        tracing::warn!("operator token not set up ({error:#}); publishing needs it, serving does not");
    }
    if cli.demo {
        let version = startup.block_on(demo::seed(startup_store))?;
        let url = config.site_url(&format!("demo.{}", config.base_domain));
        println!("demo site (version {version}) at {url}");
    }
    drop(startup);

    let purge = purge::PurgeSetup::from_config(&config)?;
    let grove = Arc::new(app::Grove::new(config.clone(), config.open_store()?, purge.as_ref())?);
    let mut server_conf = ServerConf {
        pid_file: config.state_dir.join("grove-proxy.pid").display().to_string(),
        upgrade_sock: config.state_dir.join("grove-proxy-upgrade.sock").display().to_string(),
        grace_period_seconds: Some(5),
        graceful_shutdown_timeout_seconds: Some(10),
        ..ServerConf::default()
    };
    server_conf.threads = std::thread::available_parallelism().map_or(1, usize::from);
    let opt = Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();

    let (nodes, embedded_node) = node::setup(&config)?;
    let mut public = pingora::proxy::http_proxy_service(&server.configuration, server::GroveProxy { grove, nodes });
    if let Some(logic) = public.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        logic.server_options = Some(options);
    }
    // A write buffer large enough for a page and its header makes most
    // responses one send(); Pingora's default (1460 bytes) sends the header
    // and the body separately.
    let buffers = L4BufferSettings::default().write(config.http.write_buffer_bytes);
    public.add_listener(ListenerConfig::tcp(&config.listen).l4_buffer(buffers));
    if let Some(tls) = &config.tls {
        let certificates = tls::Certificates::load(tls.certificates.clone())?;
        certificates.watch(std::time::Duration::from_secs(tls.reload_secs.max(1)));
        let mut settings = pingora::listeners::tls::TlsSettings::intermediate("", "")?;
        settings.set_cert_resolver(certificates);
        settings.enable_h2();
        public.add_listener(ListenerConfig::tcp(&tls.listen).tls(settings).l4_buffer(buffers));
    }
    server.add_service(public);
    if !config.admin_listen.is_empty() {
        let mut admin = pingora::proxy::http_proxy_service(&server.configuration, admin::Admin);
        admin.add_tcp(&config.admin_listen);
        server.add_service(admin);
    }
    if let Some(embedded_node) = embedded_node {
        server.add_service(background_service("storage node", embedded_node));
    }
    if let Some(purge) = &purge {
        let holder = purge::proxy_id(&config.state_dir)?;
        server.add_service(background_service("cdn purge", purge.worker(config.clone(), holder)));
    }
    tracing::info!(listen = %config.listen, admin = %config.admin_listen, base_domain = %config.base_domain, "grove-proxy starting");
    server.run_forever();
}

/// Makes sure an operator can publish: `GROVE_ADMIN_TOKEN` becomes an
/// operator token; without it, the first start on an empty store creates one
/// and prints it, once. Only the token's hash is stored.
async fn bootstrap_operator(store: Arc<dyn ObjectStore>, admin_token: Option<Handle>) -> anyhow::Result<()> {
    let tokens = Tokens::new(store);
    let until = time::OffsetDateTime::now_utc() + time::Duration::days(OPERATOR_TOKEN_DAYS);
    match admin_token {
        Some(handle) => tokens
            .install_root(&handle, until)
            .await
            .context("installing GROVE_ADMIN_TOKEN")?,
        None => {
            if let Some(handle) = tokens.bootstrap(until).await.context("creating the operator token")? {
                println!(
                    "operator token (shown only this once; keep it, e.g. `grove login --token ...`):\n{}",
                    handle.reveal()
                );
            }
        }
    }
    Ok(())
}
