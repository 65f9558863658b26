//! HTTPS: certificates chosen by SNI, HTTP/2 by ALPN, reload without restart.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;

use grove_testkit::ports;
use grove_testkit::proxy::{Proxy, publish, site_dir};

fn write_certificate(dir: &Path, name: &str, domain: &str) -> Vec<u8> {
    let generated = rcgen::generate_simple_self_signed(vec![domain.to_owned()]).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), generated.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), generated.signing_key.serialize_pem()).unwrap();
    generated.cert.der().to_vec()
}

/// The certificate the server presented for `host`, and the protocol spoken.
async fn handshake(port: u16, host: &str) -> (Vec<u8>, reqwest::Version, String) {
    // Verification is off so a test can look at exactly which certificate
    // was chosen; SNI still carries `host`.
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .resolve(host, format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let response = client.get(format!("https://{host}:{port}/")).send().await.unwrap();
    let certificate = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .unwrap()
        .to_vec();
    let version = response.version();
    (certificate, version, response.text().await.unwrap())
}

/// Waits for the proxy's TLS listener on `port`.
async fn wait_for_listener(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the TLS listener did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn serves_https_with_sni_certificates_h2_and_reloads() {
    let certs = tempfile::tempdir().unwrap();
    let demo_der = write_certificate(certs.path(), "demo", "demo.localhost");
    let other_der = write_certificate(certs.path(), "other", "*.example.test");
    let reserved = ports::reserve();
    let port = reserved.port();
    let config = format!(
        "[tls]\nlisten = \"127.0.0.1:{port}\"\nreload_secs = 1\n\
         [[tls.certificates]]\ndomains = [\"demo.localhost\"]\ncert = \"{0}/demo.pem\"\nkey = \"{0}/demo.key\"\n\
         [[tls.certificates]]\ndomains = [\"*.example.test\"]\ncert = \"{0}/other.pem\"\nkey = \"{0}/other.key\"\n\
         [sites.demo]\ndomains = [\"www.example.test\"]\ncanonical = \"header\"\n",
        certs.path().display()
    );
    let proxy = Proxy::start(&config);
    let dir = site_dir(&[("index.html", "secure")]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    wait_for_listener(port).await;

    let (certificate, version, body) = handshake(port, "demo.localhost").await;
    assert_eq!(certificate, demo_der, "SNI demo.localhost gets its certificate");
    assert_eq!(version, reqwest::Version::HTTP_2, "ALPN negotiates HTTP/2");
    assert_eq!(body, "secure");
    let (certificate, _, body) = handshake(port, "www.example.test").await;
    assert_eq!(certificate, other_der, "a wildcard certificate covers www.example.test");
    assert_eq!(body, "secure");

    // Replace the demo certificate on disk; new connections get the new one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let renewed = write_certificate(certs.path(), "demo", "demo.localhost");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (certificate, _, _) = handshake(port, "demo.localhost").await;
        if certificate == renewed {
            break;
        }
        assert!(Instant::now() < deadline, "the renewed certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A broken replacement is refused and the working certificate stays.
    std::fs::write(certs.path().join("demo.pem"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (certificate, _, _) = handshake(port, "demo.localhost").await;
    assert_eq!(certificate, renewed);
}

/// A client that completes TLS and picks HTTP/2 by ALPN, then never sends
/// the h2 preface, is cut after `http.first_request_timeout_secs`, as a
/// silent h2c or HTTP/1 client is: it cannot hold a connection slot.
#[tokio::test]
async fn an_h2_client_silent_after_the_tls_handshake_is_cut_after_the_first_request_timeout() {
    let certs = tempfile::tempdir().unwrap();
    let demo_der = write_certificate(certs.path(), "demo", "demo.localhost");
    let reserved = ports::reserve();
    let port = reserved.port();
    let config = format!(
        "[http]\nfirst_request_timeout_secs = 1\n\
         [tls]\nlisten = \"127.0.0.1:{port}\"\n\
         [[tls.certificates]]\ndomains = [\"demo.localhost\"]\ncert = \"{0}/demo.pem\"\nkey = \"{0}/demo.key\"\n",
        certs.path().display()
    );
    let _proxy = Proxy::start(&config);
    wait_for_listener(port).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(demo_der)).unwrap();
    let mut client =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("demo.localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN chose HTTP/2"
    );

    // The server speaks first (its SETTINGS); the client never answers.
    let silent = Instant::now();
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0; 1024];
        while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
    })
    .await;
    assert!(cut.is_ok(), "a client that never sent the h2 preface was not cut");
    assert!(
        silent.elapsed() >= Duration::from_millis(900),
        "cut after {:?}, before the first request timeout",
        silent.elapsed()
    );
}
