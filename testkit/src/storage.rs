//! Storage nodes that fail over, as real processes: Debian's etcd as a
//! three-member cluster on loopback, and `grove-storage --etcd` nodes
//! sharing it, a token store and a peer secret.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grove_directory::{Etcd, EtcdSettings, Mirror, Placed};

use crate::ports::{Reserved, reserve};

/// The nodes' lease TTL in these tests: failovers take about this long.
pub const LEASE_TTL: Duration = Duration::from_secs(2);

/// A process killed when dropped (also when a test fails).
pub struct Process {
    child: Option<Child>,
}

impl Process {
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, now.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three etcd members on loopback.
pub struct EtcdCluster {
    _members: Vec<Process>,
    _ports: Vec<Reserved>,
    pub endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports: Vec<(Reserved, Reserved)> = (0..3).map(|_| (reserve(), reserve())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{}", peer.port()))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).expect("a log file");
                let (client, peer) = (client.port(), peer.port());
                let child = Command::new("etcd")
                    .args([
                        format!("--name=m{i}"),
                        format!("--data-dir={}", dir.path().join(format!("m{i}")).display()),
                        format!("--listen-client-urls=http://127.0.0.1:{client}"),
                        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                        format!("--initial-cluster={initial}"),
                        "--initial-cluster-state=new".to_owned(),
                        "--initial-cluster-token=grove-test".to_owned(),
                    ])
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("Debian's etcd (etcd-server), which the README's test command installs");
                Process { child: Some(child) }
            })
            .collect();
        let endpoints: Vec<String> = ports
            .iter()
            .map(|(client, _)| format!("http://127.0.0.1:{}", client.port()))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Etcd::connect(EtcdSettings::new(endpoints.clone())).await.is_err() {
            assert!(Instant::now() < deadline, "etcd did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            _members: members,
            _ports: ports.into_iter().flat_map(|(client, peer)| [client, peer]).collect(),
            endpoints,
            _dir: dir,
        }
    }
}

/// etcd and a peer secret, shared by the nodes started on it.
pub struct StorageCluster {
    pub etcd: EtcdCluster,
    binary: PathBuf,
    secret: PathBuf,
    dir: tempfile::TempDir,
}

impl StorageCluster {
    /// Nodes run from `binary` (`grove-storage`; a test of its own package
    /// passes `CARGO_BIN_EXE_grove-storage`, others
    /// [`crate::binaries::binary`]).
    pub async fn start(binary: PathBuf) -> Self {
        let etcd = EtcdCluster::start().await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let secret = dir.path().join("peer-secret");
        std::fs::write(&secret, "a-peer-secret-for-tests\n").expect("the secret is written");
        Self {
            etcd,
            binary,
            secret,
            dir,
        }
    }

    /// Starts node `name` in `region` on `port` (its data kept across
    /// restarts with the same name), checking tokens against the local
    /// store in `store_dir`; returns once it accepts connections.
    pub fn node(&self, name: &str, region: &str, port: u16, store_dir: &Path) -> Process {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("a log file");
        let child = Command::new(&self.binary)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--name",
                name,
                "--region",
                region,
            ])
            .arg("--data-dir")
            .arg(self.dir.path().join(name))
            .arg("--store-dir")
            .arg(store_dir)
            .arg("--etcd")
            .arg(self.etcd.endpoints.join(","))
            .arg("--peer-secret-file")
            .arg(&self.secret)
            .args([
                "--lease-ttl-secs",
                &LEASE_TTL.as_secs().to_string(),
                "--ack-timeout-ms",
                "500",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("grove-storage starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "grove-storage {name} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Process { child: Some(child) }
    }

    pub async fn directory(&self) -> Etcd {
        Etcd::connect(EtcdSettings::new(self.etcd.endpoints.clone()))
            .await
            .expect("etcd answers")
    }

    /// Waits until every node of `names` is registered.
    pub async fn wait_registered(&self, names: &[&str]) {
        let mirror = Mirror::follow(self.directory().await).await.expect("etcd answers");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !names.iter().all(|name| mirror.snapshot().nodes.contains_key(*name)) {
            assert!(Instant::now() < deadline, "the nodes never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the site's record satisfies `done`.
    pub async fn wait_for(&self, site: &str, what: &str, done: impl Fn(&Placed) -> bool) -> Placed {
        let etcd = self.directory().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(placed) = etcd.site(site).await.expect("etcd answers")
                && done(&placed)
            {
                return placed;
            }
            assert!(
                Instant::now() < deadline,
                "the site record never showed {what}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tail of every node's log, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return text;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|extension| extension == "log")
                && let Ok(log) = std::fs::read_to_string(&path)
            {
                text.push_str(&format!("--- {}\n", path.display()));
                let lines: Vec<&str> = log.lines().collect();
                for line in &lines[lines.len().saturating_sub(40)..] {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }
}
