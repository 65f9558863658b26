//! `grove-proxy`: serves published sites by host name.
//!
//! `fn main` stays synchronous: Pingora owns the runtimes. Start-up work that
//! needs async (opening the store, seeding the demo) runs on a short-lived
//! runtime of its own first.

mod admin;
mod admission;
mod api;
mod app;
mod auth;
mod cache;
mod cached_read;
mod compress;
mod config;
mod crawlers;
mod demo;
#[cfg(test)]
mod deploy_recipes;
mod edges;
mod egress;
mod fields;
mod front;
mod hosts;
mod http1;
mod live;
mod metrics;
mod node;
mod node_client;
mod pages;
mod purge;
mod reply;
mod request;
mod resolve;
mod roots;
mod route;
mod rules;
mod semantics;
mod sendfile;
mod server;
mod session_api;
mod static_edge;
mod sw;
mod tls;
#[cfg(test)]
mod vectors;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use grove_core::token::Handle;
use grove_objects::store::{CountingStore, ObjectStore};
use grove_objects::token::Tokens;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::config::{Config, Overrides};

/// Lifetime of the operator token the host creates or installs.
const OPERATOR_TOKEN_DAYS: i64 = 100 * 365;

/// Serve published grove sites from a local cache in front of the object store.
#[derive(Debug, Parser)]
#[command(version, after_help = config::help::CONFIG_HELP)]
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

/// Seconds a graceful stop (SIGTERM) keeps accepting before it closes
/// the listeners (Pingora's grace period).
const GRACE_PERIOD_SECS: u64 = 5;
/// Seconds it then waits for requests in flight. Deployments give the
/// process at least both before they kill it (deploy/fly, deploy/ovh).
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    grove_node::logging::init();
    tls::install_crypto_provider();
    admission::raise_open_files_limit();
    let overrides = Overrides {
        listen: cli.listen,
        admin_listen: cli.admin_listen,
        base_domain: cli.base_domain,
        state_dir: cli.state_dir,
    };
    let config = Config::load(cli.config.as_deref(), overrides)?;
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
    let (nodes, embedded_node, directory_follower) = node::setup(&config)?;
    let store: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(
        config.open_store()?,
        Arc::new(|op| metrics::STORE_REQUESTS.with_label_values(&[&op.to_string()]).inc()),
    ));
    let node_client = Arc::new(node_client::NodeClient::new(nodes.clone(), Arc::clone(&store)));
    let grove = Arc::new(app::Grove::new(
        config.clone(),
        Arc::clone(&store),
        purge.as_ref(),
        node_client,
    )?);
    let mut server_conf = ServerConf {
        pid_file: config.state_dir.join("grove-proxy.pid").display().to_string(),
        upgrade_sock: config.state_dir.join("grove-proxy-upgrade.sock").display().to_string(),
        grace_period_seconds: Some(GRACE_PERIOD_SECS),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECS),
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

    // Admission hands each plaintext connection to the app its first bytes
    // call for (see admission.rs): HTTP/1 to the front, which answers plain
    // reads itself and passes the rest to the proxy (see front.rs); h2c to
    // the same choice per stream.
    let proxy = || server::GroveProxy {
        grove: Arc::clone(&grove),
        nodes: nodes.clone(),
    };
    // One HTTP/2 server for ALPN h2 (through the front) and h2c (from the
    // admission gate).
    let streams = Arc::new(front::Streams::new(
        proxy(),
        pingora::proxy::http_proxy(&server.configuration, proxy()),
    ));
    let limits = admission::Limits {
        first_request_timeout: streams.first_request_timeout(),
        per_client: config.http.max_connections_per_client.max(1),
        total: config.http.max_connections.max(1),
    };
    let mut public = Service::new(
        "grove".to_owned(),
        admission::Admission::new(front::Front::new(Arc::clone(&streams)), streams, limits),
    );
    // A write buffer large enough for a page and its header makes most
    // responses one send(); Pingora's default (1460 bytes) sends the header
    // and the body separately.
    let buffers = L4BufferSettings::default().write(config.http.write_buffer_bytes);
    public.add_listener(ListenerConfig::tcp(&config.listen).l4_buffer(buffers));
    let mut certificate_reload = None;
    if let Some(tls) = &config.tls {
        let certificates = tls::Certificates::load(tls.certificates.clone())?;
        certificate_reload = Some(tls::CertificateReload {
            certificates: Arc::clone(&certificates),
            every: std::time::Duration::from_secs(tls.reload_secs.max(1)),
        });
        let mut settings = pingora::listeners::tls::TlsSettings::intermediate("", "")?;
        settings.set_cert_resolver(certificates);
        settings.enable_h2();
        public.add_listener(ListenerConfig::tcp(&tls.listen).tls(settings).l4_buffer(buffers));
    }
    server.add_service(public);
    if let Some(reload) = certificate_reload {
        server.add_service(background_service("tls certificate reload", reload));
    }
    if let Some(admin_listen) = &config.admin_listen {
        let mut admin = pingora::proxy::http_proxy_service(&server.configuration, admin::Admin);
        admin.add_tcp(admin_listen);
        server.add_service(admin);
    }
    server.add_service(background_service("root journal", grove.journal_follower(store)));
    if let Some(follower) = directory_follower {
        server.add_service(background_service("storage node directory", follower));
    }
    if let Some(embedded_node) = embedded_node {
        server.add_service(background_service("storage node", embedded_node));
    }
    if let Some(purge) = &purge {
        let holder = purge::proxy_id(&config.state_dir)?;
        server.add_service(background_service("cdn purge", purge.worker(config.clone(), holder)));
    }
    tracing::info!(role = ?config.role, listen = %config.listen, admin = config.admin_listen.as_deref().unwrap_or("-"), base_domain = %config.base_domain, "grove-proxy starting");
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
