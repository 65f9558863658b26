//! TLS: per-domain certificates chosen by SNI, HTTP/2 by ALPN, and reloading
//! of changed certificate files without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the HTTPS listener.
    pub listen: String,
    /// How often certificate files are checked for changes, in seconds.
    #[serde(default = "default_reload_secs")]
    pub reload_secs: u64,
    pub certificates: Vec<CertificateConfig>,
}

fn default_reload_secs() -> u64 {
    30
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// Names this certificate answers for; `*.example.com` covers one label.
    pub domains: Vec<String>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The loaded certificates, swapped whole when files change.
#[derive(Debug)]
pub struct Certificates {
    configs: Vec<CertificateConfig>,
    loaded: RwLock<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// For clients that send no SNI: the first certificate.
    fallback: Option<Arc<CertifiedKey>>,
    modified: Vec<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Certificates {
    /// Loads every configured certificate; any failure is fatal at start-up.
    pub fn load(configs: Vec<CertificateConfig>) -> anyhow::Result<Arc<Self>> {
        if configs.is_empty() {
            bail!("[tls] needs at least one [[tls.certificates]] entry");
        }
        install_crypto_provider();
        warm_up_random()?;
        let loaded = load_all(&configs)?;
        Ok(Arc::new(Self {
            configs,
            loaded: RwLock::new(loaded),
        }))
    }

    /// Reloads all certificates if any file changed. A broken new file is
    /// logged and the certificates in use are kept.
    pub fn reload_if_changed(&self) {
        let stamps = modified_times(&self.configs);
        if self.loaded.read().expect("never poisoned").modified == stamps {
            return;
        }
        match load_all(&self.configs) {
            Ok(loaded) => {
                *self.loaded.write().expect("never poisoned") = loaded;
                tracing::info!("TLS certificates reloaded");
            }
            Err(error) => tracing::error!(%error, "TLS certificates changed but do not load; keeping the old ones"),
        }
    }
}

/// Makes aws-lc-rs the process's TLS crypto provider, before Pingora would
/// install ring (it installs its own only when none is set).
///
/// Serving large bodies over TLS is mostly AES-GCM sealing. aws-lc seals
/// with 512-bit VAES (AVX-512) where the CPU has it, where ring's widest is
/// 256-bit VAES (AVX2): on a 200 KB asset that is a fifth less user CPU a
/// request (`bench/proxy.sh`'s TLS asset row). aws-lc-rs is in the build
/// already, for the S3 client.
pub fn install_crypto_provider() {
    // An error means a provider is installed already: the first one stays.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Seeds the provider's random generator now, at start-up. aws-lc seeds it
/// from CPU jitter on first use, which took the first TLS handshake 50 ms
/// (3 ms after it); here it is no visitor's wait.
fn warm_up_random() -> anyhow::Result<()> {
    let provider = CryptoProvider::get_default().context("no TLS crypto provider installed")?;
    provider
        .secure_random
        .fill(&mut [0; 1])
        .map_err(|_| anyhow::anyhow!("the TLS crypto provider has no randomness"))
}

/// Checks the certificate files for changes, as a Pingora background
/// service: it starts after `--daemon` forks (a thread started before would
/// not survive the fork) and stops with the server.
pub struct CertificateReload {
    pub certificates: Arc<Certificates>,
    pub every: Duration,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for CertificateReload {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.every) => {
                    let certificates = Arc::clone(&self.certificates);
                    // File reads and key parsing: off the runtime's threads.
                    let _ = tokio::task::spawn_blocking(move || certificates.reload_if_changed()).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.loaded.read().expect("never poisoned");
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return loaded.fallback.clone();
        };
        if let Some(key) = loaded.by_name.get(&name) {
            return Some(Arc::clone(key));
        }
        let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"))?;
        loaded.by_name.get(&wildcard).cloned()
    }
}

fn modified_times(configs: &[CertificateConfig]) -> Vec<(Option<SystemTime>, Option<SystemTime>)> {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    configs
        .iter()
        .map(|config| (modified(&config.cert), modified(&config.key)))
        .collect()
}

fn load_all(configs: &[CertificateConfig]) -> anyhow::Result<Loaded> {
    let provider = CryptoProvider::get_default().context("no TLS crypto provider installed")?;
    let mut loaded = Loaded {
        modified: modified_times(configs),
        ..Loaded::default()
    };
    for config in configs {
        let (cert, key) = (config.cert.display().to_string(), config.key.display().to_string());
        let (chain, private_key) = pingora::tls::load_certs_and_key_files(&cert, &key)
            .map_err(|error| anyhow::anyhow!("{error}"))
            .and_then(|pair| pair.context("no certificate or no private key found"))
            .with_context(|| format!("loading TLS certificate {cert} with key {key}"))?;
        let signing_key = provider
            .key_provider
            .load_private_key(private_key)
            .with_context(|| format!("TLS key {key} is not usable"))?;
        let certified = Arc::new(CertifiedKey::new(chain, signing_key));
        loaded.fallback.get_or_insert_with(|| Arc::clone(&certified));
        for domain in &config.domains {
            loaded
                .by_name
                .insert(domain.to_ascii_lowercase(), Arc::clone(&certified));
        }
    }
    Ok(loaded)
}
