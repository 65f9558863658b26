//! A real `grove-proxy` process on reserved loopback ports, and helpers to
//! publish into the store it serves.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::binaries;
use crate::ports::{Reserved, reserve};
use grove_core::SiteName;
use grove_core::version::Version;
use grove_objects::content::ContentStore;
use grove_objects::publish::publish_dir;
use grove_objects::site::Sites;
use grove_objects::store::{LocalStore, ObjectStore};

pub struct Proxy {
    child: Child,
    config_path: PathBuf,
    env: Vec<(String, String)>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub state: tempfile::TempDir,
    /// Held while the proxy lives, restarts included.
    _ports: [Reserved; 2],
}

impl Proxy {
    /// Starts a proxy with the local store and `extra` TOML appended to its config.
    pub fn start(extra: &str) -> Self {
        Self::start_with(extra, &[])
    }

    /// Like [`Self::start`], with environment variables. Tests see
    /// publishes fast: the journal is read every 50 ms and roots older than
    /// 50 ms are read again, without a budget.
    pub fn start_with(extra: &str, env: &[(&str, &str)]) -> Self {
        Self::start_exactly(
            &format!(
                "root_refresh_ms = 50\nedges.journal_poll_ms = 50\nedges.safety_net_reads_per_sec = 1000000\n{extra}"
            ),
            env,
        )
    }

    /// A proxy whose config is `config` and nothing else but its
    /// listeners and state directory: the production defaults.
    pub fn start_exactly(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on([reserve(), reserve()], config, env)
    }

    /// Like [`Self::start_exactly`], on ports reserved beforehand (public,
    /// admin), so that proxies can name each other in their configs.
    pub fn start_on(ports: [Reserved; 2], config: &str, env: &[(&str, &str)]) -> Self {
        let proxy = Self::spawn_on(ports, config, env);
        proxy.wait_listening();
        proxy
    }

    /// Like [`Self::start_on`], without waiting for it to listen, so many
    /// can start at once; then [`Self::wait_listening`].
    pub fn spawn_on(ports: [Reserved; 2], config: &str, env: &[(&str, &str)]) -> Self {
        let state = tempfile::tempdir().unwrap();
        let (addr, admin) = (ports[0].addr(), ports[1].addr());
        let config = format!(
            "listen = \"{addr}\"\nadmin_listen = \"{admin}\"\nstate_dir = \"{}\"\n{config}\n",
            state.path().display()
        );
        let config_path = state.path().join("grove.toml");
        std::fs::write(&config_path, config).unwrap();
        let child = spawn(&config_path, env, &[]);
        Self {
            child,
            config_path,
            env: env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            addr,
            admin,
            state,
            _ports: ports,
        }
    }

    /// Waits up to 30 s for the proxy to listen.
    pub fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "grove-proxy did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL, as a crash would, and starts it again
    /// with the same configuration, environment and state.
    pub fn crash_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        self.child = spawn(&self.config_path, &env, &[]);
        self.wait_listening();
    }

    /// Waits up to `limit` for the process to exit; true if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a second process with `--upgrade`, to take over this one's
    /// listeners when it is sent SIGQUIT.
    pub fn spawn_upgrade(&self) -> Child {
        spawn(&self.config_path, &[], &["--upgrade"])
    }

    pub fn store_dir(&self) -> PathBuf {
        self.state.path().join("store")
    }

    pub fn local_store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(LocalStore::open(self.store_dir()).unwrap())
    }

    /// An HTTP/1.1 client that resolves every given host to this proxy.
    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        self.client_builder(hosts).build().unwrap()
    }

    /// The same over HTTP/2 without TLS (prior knowledge).
    pub fn h2_client(&self, hosts: &[&str]) -> reqwest::Client {
        self.client_builder(hosts).http2_prior_knowledge().build().unwrap()
    }

    fn client_builder(&self, hosts: &[&str]) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_gzip()
            .no_brotli()
            .timeout(Duration::from_secs(30));
        for host in hosts {
            builder = builder.resolve(host, self.addr);
        }
        builder
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }

    /// Reads one metric sample from the admin listener (0 if absent).
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// The sum of every sample of the metric `name` (all its labels).
    pub async fn metric_total(&self, name: &str) -> f64 {
        let family = format!("{name}{{");
        self.metrics()
            .await
            .lines()
            .filter_map(|line| line.strip_prefix(&family)?.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path, env: &[(&str, &str)], args: &[&str]) -> Child {
    Command::new(binaries::grove_proxy())
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Writes `files` (path, contents) into a fresh directory.
pub fn site_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, body) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

/// Publishes `dir` as the next version of `site` in `store`.
pub async fn publish(store: Arc<dyn ObjectStore>, site: &str, dir: &Path) -> Version {
    let trees = grove_objects::content::trees_in(Arc::clone(&store), 10_000);
    let sites = Sites::new(Arc::clone(&store), trees.clone());
    let blobs = ContentStore::blobs(store);
    publish_dir(&blobs, &trees, &sites, &SiteName::parse(site).unwrap(), dir, "test")
        .await
        .unwrap()
}

/// Sends one raw HTTP/1.1 request and returns the status code, so tests can
/// send paths no URL library would leave alone.
pub fn raw_status(addr: SocketAddr, host: &str, target: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0)
}
