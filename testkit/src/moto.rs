//! A real S3-protocol server for tests: `moto_server` on a free loopback port,
//! started per test binary and killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The credentials a proxy on moto runs with (moto checks none).
pub const ENV: [(&str, &str); 2] = [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")];

pub struct MotoServer {
    child: Child,
    _port: crate::ports::Reserved,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts `moto_server` (or `$GROVE_MOTO_SERVER`). The repository's test
    /// command installs it; running without it is an error, not a skip.
    pub fn start() -> Self {
        let program = std::env::var("GROVE_MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned());
        let reserved = crate::ports::reserve();
        let port = reserved.port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {program} ({error}): run the README's test command, which installs it, or set GROVE_MOTO_SERVER")
            });
        let server = Self {
            child,
            _port: reserved,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start listening within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// A client of `bucket` on this server, as the test's own.
    pub fn store(&self, bucket: &str) -> std::sync::Arc<dyn grove_objects::store::ObjectStore> {
        use grove_objects::store::{S3Credentials, S3Store, S3StoreConfig};
        std::sync::Arc::new(S3Store::new(S3StoreConfig {
            credentials: S3Credentials::Static {
                access_key_id: "testing".to_owned(),
                secret_access_key: "testing".to_owned(),
            },
            region: "us-east-1".to_owned(),
            ..S3StoreConfig::new(Some(self.endpoint.clone()), bucket)
        }))
    }

    /// A proxy's `[store]` section for `bucket` on this server; the proxy
    /// needs [`ENV`] too.
    pub fn store_section(&self, bucket: &str) -> String {
        format!(
            "[store]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\n",
            self.endpoint
        )
    }

    /// Creates a bucket (moto accepts unsigned bucket creation).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "creating bucket: {}", response.status());
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
