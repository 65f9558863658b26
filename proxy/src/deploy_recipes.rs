//! The deployment recipes (`deploy/fly`, `deploy/ovh`) held to the code
//! they deploy: the signal and time a stop gets, the port and health
//! route the platform checks, and config files the proxy accepts.

use std::path::PathBuf;

use crate::config::{Config, ConfigFile, Overrides, Role};
use crate::route::Route;

fn recipe(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn fly_app(name: &str) -> toml::Table {
    toml::from_str(&recipe(&format!("deploy/fly/{name}"))).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn port_of(listen: &str) -> i64 {
    listen.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// fly's default kill signal is SIGINT, Pingora's fast shutdown.
fn assert_graceful_stop(app: &toml::Table, name: &str) {
    assert_eq!(app["kill_signal"].as_str(), Some("SIGTERM"), "{name}");
    let timeout = app["kill_timeout"].as_integer().unwrap_or(0);
    assert!(
        timeout >= (crate::GRACE_PERIOD_SECS + crate::SHUTDOWN_TIMEOUT_SECS) as i64,
        "{name}: kill_timeout {timeout} s is shorter than the grace period and shutdown timeout"
    );
}

/// No secret in a fly.toml: they belong in `fly secrets`.
fn assert_no_secrets_in_env(app: &toml::Table, name: &str) {
    for key in app
        .get("env")
        .and_then(toml::Value::as_table)
        .into_iter()
        .flatten()
        .map(|(key, _)| key)
    {
        let upper = key.to_ascii_uppercase();
        assert!(
            !["SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY"]
                .iter()
                .any(|word| upper.contains(word)),
            "{name}: [env] {key} looks like a secret"
        );
    }
}

#[test]
fn the_edge_app_stops_gracefully_on_the_proxys_port_and_health_route() {
    let app = fly_app("fly.edge.toml");
    assert_graceful_stop(&app, "fly.edge.toml");
    assert_no_secrets_in_env(&app, "fly.edge.toml");
    assert!(app.get("mounts").is_none(), "the edges are stateless");
    let service = app["http_service"].as_table().unwrap();
    let port = service["internal_port"].as_integer().unwrap();
    assert_eq!(port, port_of(&ConfigFile::default().listen), "the proxy's default port");
    let checks = service["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    for check in checks {
        let path = check["path"].as_str().unwrap();
        assert_eq!(Route::parse(path), Route::Health, "{path} is the health route");
    }

    // The config baked into the image: the same port, and a full edge
    // that follows the storage nodes and tells its peers of publishes.
    let edge: ConfigFile = toml::from_str(&recipe("deploy/fly/edge.toml")).unwrap();
    assert_eq!(port_of(&edge.listen), port);
    assert_eq!(edge.role, Role::Full);
    assert!(!edge.node.embedded && !edge.node.directory.etcd.is_empty());
    assert!(!edge.edges.peers.is_empty());
}

#[test]
fn the_store_app_keeps_a_volume_per_machine_and_deploys_one_at_a_time() {
    let app = fly_app("fly.store.toml");
    assert_graceful_stop(&app, "fly.store.toml");
    assert_no_secrets_in_env(&app, "fly.store.toml");
    assert!(app.get("mounts").is_some(), "each node keeps its log on a volume");
    assert_eq!(app["deploy"]["strategy"].as_str(), Some("rolling"));
    assert!(
        app.get("http_service").is_none() && app.get("services").is_none(),
        "the nodes are reached over the private network only"
    );
    let checks = app["checks"].as_table().unwrap();
    assert!(!checks.is_empty());
    for (_, check) in checks {
        assert_eq!(check["path"].as_str(), Some(grove_core::node_api::HEALTH));
    }
}

#[test]
fn the_static_edges_config_is_one_the_proxy_accepts() {
    let file: ConfigFile = toml::from_str(&recipe("deploy/ovh/static.toml")).unwrap();
    assert_eq!(file.role, Role::Static);
    // Resolved as it would run, but for its TLS files, which only the host has.
    let config = Config::resolve(ConfigFile { tls: None, ..file }, Overrides::default()).unwrap();
    assert!(!config.node.embedded);
    assert!(config.live.is_some());
}
