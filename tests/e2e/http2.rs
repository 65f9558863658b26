//! HTTP/2 connections to a real proxy, driven frame by frame with the h2
//! crate over h2c: reads (served inside the connection's own task) and
//! proxied calls side by side on one connection under tight flow control,
//! the budget of malformed streams, the close of idle connections, and
//! GOAWAY on shutdown with the streams in flight finished.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use grove_testkit::proxy::{Proxy, publish, site_dir};
use h2::client::{self, SendRequest};
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A body large enough to need many windows of [`SMALL_WINDOW`], with every
/// position telling which it is, so a misplaced piece shows.
fn large_body() -> String {
    (0..40_000).map(|line| format!("{line:07}\n")).collect()
}

/// A flow-control window far smaller than the large body: the server must
/// wait for WINDOW_UPDATEs mid-reply, with other streams going on.
const SMALL_WINDOW: u32 = 16 * 1024;

async fn demo_proxy(config: &str) -> (Proxy, String) {
    let proxy = Proxy::start(config);
    let large = large_body();
    let dir = site_dir(&[("index.html", "<h1>home</h1>"), ("large.txt", &large)]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    (proxy, large)
}

/// An h2c connection (prior knowledge) with `window` as each stream's
/// receive window, and the task that drives it.
async fn connect(proxy: &Proxy, window: u32) -> (SendRequest<Bytes>, JoinHandle<Result<(), h2::Error>>) {
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (send, connection) = client::Builder::new()
        .initial_window_size(window)
        .handshake(tcp)
        .await
        .unwrap();
    (send, tokio::spawn(connection))
}

fn request(path: &str) -> Request<()> {
    Request::get(format!("http://demo.localhost{path}")).body(()).unwrap()
}

/// Sends `request` on the connection and reads the whole reply, giving
/// its window back as it goes.
async fn fetch(send: &SendRequest<Bytes>, request: Request<()>) -> Result<(StatusCode, Vec<u8>), h2::Error> {
    let mut send = send.clone().ready().await?;
    let (response, _) = send.send_request(request, true)?;
    let (head, mut body) = response.await?.into_parts();
    let mut bytes = Vec::new();
    while let Some(piece) = body.data().await {
        let piece = piece?;
        let _ = body.flow_control().release_capacity(piece.len());
        bytes.extend_from_slice(&piece);
    }
    Ok((head.status, bytes))
}

#[tokio::test]
async fn one_connection_serves_reads_and_proxied_calls_side_by_side_under_flow_control() {
    let (proxy, large) = demo_proxy("").await;
    let (send, _driver) = connect(&proxy, SMALL_WINDOW).await;
    let paths = ["/large.txt", "/", "/_grove/health"];
    let requests = (0..60).map(|n| paths[n % paths.len()]).map(|path| {
        let send = send.clone();
        async move { (path, fetch(&send, request(path)).await.unwrap()) }
    });
    let replies = tokio::time::timeout(Duration::from_secs(60), join_all(requests))
        .await
        .expect("the streams stalled");
    for (path, (status, body)) in replies {
        assert_eq!(status, StatusCode::OK, "{path}");
        let expected: &[u8] = match path {
            "/large.txt" => large.as_bytes(),
            "/" => b"<h1>home</h1>",
            _ => b"ok\n",
        };
        assert!(body == expected, "{path}: {} bytes, wrong", body.len());
    }
}

#[tokio::test]
async fn a_connection_that_keeps_sending_malformed_streams_is_closed() {
    let (proxy, _) = demo_proxy("").await;
    let (send, driver) = connect(&proxy, SMALL_WINDOW).await;
    // A Host that contradicts :authority is malformed (RFC 9113 8.3.1).
    let malformed = || {
        Request::get("http://demo.localhost/")
            .header("host", "other.localhost")
            .body(())
            .unwrap()
    };
    for _ in 1..32 {
        let (status, _) = fetch(&send, malformed()).await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, body) = fetch(&send, request("/")).await.unwrap();
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"<h1>home</h1>"[..]),
        "31 are tolerated"
    );
    // The 32nd closes the connection.
    let _ = fetch(&send, malformed()).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    assert!(ended.is_ok(), "the connection was not closed");
    assert!(
        fetch(&send, request("/")).await.is_err(),
        "the closed connection served a request"
    );
    // Nothing else changed: a new connection is served.
    let (send, _driver) = connect(&proxy, SMALL_WINDOW).await;
    let (status, _) = fetch(&send, request("/")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_sends_goaway_and_finishes_the_streams_in_flight() {
    let (mut proxy, large) = demo_proxy("").await;
    let (send, driver) = connect(&proxy, SMALL_WINDOW).await;
    // A reply held by flow control: its first window is read, the rest
    // waits on the server until the client gives more.
    let mut ready = send.clone().ready().await.unwrap();
    let (response, _) = ready.send_request(request("/large.txt"), true).unwrap();
    let (head, mut body) = response.await.unwrap().into_parts();
    assert_eq!(head.status, StatusCode::OK);
    let first = body.data().await.unwrap().unwrap();
    assert!(first.len() < large.len());

    let stop = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Shutdown begins at once (Pingora then waits out its 5 s grace period
    // before stopping the runtimes): GOAWAY refuses new streams.
    let deadline = stop + Duration::from_secs(4);
    loop {
        assert!(Instant::now() < deadline, "no GOAWAY after SIGTERM");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = match send.clone().ready().await {
            Err(_) => true,
            Ok(mut ready) => match ready.send_request(request("/"), true) {
                Err(_) => true,
                Ok((response, _)) => response.await.is_err(),
            },
        };
        if refused {
            break;
        }
    }
    // The stream in flight still finishes whole.
    let mut bytes = first.to_vec();
    let _ = body.flow_control().release_capacity(first.len());
    while let Some(piece) = body.data().await {
        let piece = piece.expect("the stream in flight was cut off");
        let _ = body.flow_control().release_capacity(piece.len());
        bytes.extend_from_slice(&piece);
    }
    assert!(bytes == large.as_bytes(), "the stream in flight arrived damaged");
    // Then the connection closes, and the process exits after the grace
    // period, long before the shutdown timeout (10 s more) would force it.
    let closed = tokio::time::timeout(Duration::from_secs(3), driver).await;
    assert!(closed.is_ok(), "the drained connection stayed open");
    let limit = (stop + Duration::from_secs(8)).saturating_duration_since(Instant::now());
    assert!(
        proxy.wait_exit(limit),
        "the process did not exit once its connection drained"
    );
}

#[tokio::test]
async fn a_connection_with_no_stream_open_is_closed_after_the_keepalive_time() {
    let (proxy, large) = demo_proxy("[http]\nkeepalive_secs = 1\n").await;
    let (send, driver) = connect(&proxy, SMALL_WINDOW).await;
    // A stream held open by flow control keeps the connection, however
    // long it waits.
    let mut ready = send.clone().ready().await.unwrap();
    let (response, _) = ready.send_request(request("/large.txt"), true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let mut bytes = body.data().await.unwrap().unwrap().to_vec();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = body.flow_control().release_capacity(bytes.len());
    while let Some(piece) = body.data().await {
        let piece = piece.expect("a connection with a stream open was closed");
        let _ = body.flow_control().release_capacity(piece.len());
        bytes.extend_from_slice(&piece);
    }
    assert!(bytes == large.as_bytes());
    // So does a client that keeps asking.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, _) = fetch(&send, request("/")).await.expect("a busy connection was closed");
        assert_eq!(status, StatusCode::OK);
    }
    // Idle, it is closed within two periods.
    let idle = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), driver).await;
    assert!(closed.is_ok(), "an idle connection stayed open");
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "closed after {:?}",
        idle.elapsed()
    );

    // A client that sends the preface and then nothing is closed as well.
    let mut silent = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    silent.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a silent HTTP/2 connection stayed open");
}
