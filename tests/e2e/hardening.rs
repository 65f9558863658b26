//! What hostile or broken clients send, over raw sockets: a request with no
//! `Host`, an HTTP/0.9 request line, idle connections by the thousand, huge
//! headers, oversized bodies, `Expect: 100-continue`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use grove_testkit::host::Host;

/// Sends `request` and reads until the server closes or `limit` passes;
/// returns what came back and how long its first byte took (the whole
/// limit if none came).
fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    // A server may answer and close before taking a large request whole.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let mut first_byte = None;
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(read) = stream.read(&mut chunk) {
        if read == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| started.elapsed());
        response.extend_from_slice(&chunk[..read]);
        if started.elapsed() > limit {
            break;
        }
    }
    let took = first_byte.unwrap_or_else(|| started.elapsed());
    (String::from_utf8_lossy(&response).into_owned(), took)
}

fn status_of(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn an_oversized_header_gets_431() {
    let host = Host::local("");
    let addr = host.proxy.addr;
    let big = "x".repeat(200 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: demo.localhost\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let (response, _) = exchange(addr, request.as_bytes(), Duration::from_secs(10));
    assert_eq!(
        status_of(&response),
        Some(431),
        "{}",
        &response[..response.len().min(200)]
    );
    // Just under the bound is served.
    let fits = "x".repeat(60 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: demo.localhost\r\nX-Fits: {fits}\r\nConnection: close\r\n\r\n");
    let (response, _) = exchange(addr, request.as_bytes(), Duration::from_secs(10));
    assert_ne!(status_of(&response), Some(431));
    assert!(status_of(&response).is_some());
}

#[test]
fn an_oversized_node_call_gets_413_json_before_its_body_travels() {
    let host = Host::local("");
    let addr = host.proxy.addr;
    let token = &host.token;
    // 10 MB declared; only the header is sent, as a client waiting on
    // `Expect: 100-continue` would.
    let request = format!(
        "POST /_grove/api/v1/write HTTP/1.1\r\nHost: demo.localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 10485760\r\nExpect: 100-continue\r\n\r\n"
    );
    let (response, took) = exchange(addr, request.as_bytes(), Duration::from_secs(10));
    assert_eq!(status_of(&response), Some(413), "{response}");
    assert!(response.contains("\"error\":\"too_large\""), "{response}");
    assert!(!response.contains("100 Continue"), "{response}");
    assert!(took < Duration::from_secs(5), "answered at once, took {took:?}");

    // A body within bounds, behind `Expect: 100-continue`: the proxy says
    // continue, then the write goes through.
    let body = r#"{"path":"a","data":{"text":"hi"}}"#;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST /_grove/api/v1/write HTTP/1.1\r\nHost: demo.localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 64];
    let read = stream.read(&mut interim).unwrap();
    let interim = String::from_utf8_lossy(&interim[..read]).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    stream.write_all(body.as_bytes()).unwrap();
    let mut rest = String::new();
    let _ = stream.read_to_string(&mut rest);
    let full = format!("{interim}{rest}");
    assert!(full.contains("HTTP/1.1 200"), "{full}");
    assert!(full.contains("\"ts\""), "{full}");
}

#[test]
fn short_requests_are_answered_at_once() {
    let host = Host::local("");
    let addr = host.proxy.addr;
    // No Host: RFC 9112 §3.2 asks for a 400.
    let (response, took) = exchange(addr, b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(20));
    assert_eq!(status_of(&response), Some(400), "{response}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // An HTTP/0.9 request line: a 400 or a close, at once.
    let (response, took) = exchange(addr, b"GET /\r\n", Duration::from_secs(20));
    assert!(response.is_empty() || status_of(&response) == Some(400), "{response}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // A short, valid request (under the h2 preface's 24 bytes) is served.
    let (response, took) = exchange(addr, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(3));
    assert_eq!(status_of(&response), Some(404), "{response}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// Opens `count` connections from `source` (another loopback address) that
/// never send a byte.
fn idle_connections(source: [u8; 4], addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
            socket.connect(&addr.into()).unwrap();
            let stream: TcpStream = socket.into();
            stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            stream
        })
        .collect()
}

fn served(addr: SocketAddr) -> bool {
    let (response, _) = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: demo.localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    status_of(&response).is_some()
}

/// Whether the server closed `stream` (its read timeout running out is no close).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(read) => read == 0,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn idle_connections_are_capped_and_closed_while_others_are_served() {
    let host = Host::local(
        "[http]\nfirst_request_timeout_secs = 2\nmax_connections_per_client = 300\nmax_connections = 1000\n",
    );
    let addr = host.proxy.addr;
    let started = Instant::now();
    let mut idle = idle_connections([127, 0, 0, 2], addr, 300);
    // One address over its cap is refused at once; others are still served.
    let mut over = idle_connections([127, 0, 0, 2], addr, 1);
    assert!(
        closed_by_server(&mut over[0]),
        "the 301st connection from one address is refused"
    );
    assert!(
        served(addr),
        "a normal client is served while 300 idle connections are held"
    );
    // The idle ones are closed once the first-request timeout passes.
    for stream in &mut idle {
        assert!(closed_by_server(stream));
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // The soft limit on descriptors was raised to the hard one.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", host.proxy.pid())).unwrap();
    let files = limits.lines().find(|line| line.starts_with("Max open files")).unwrap();
    let numbers: Vec<&str> = files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "{files}");
}

#[test]
fn at_the_total_cap_the_longest_idle_connection_makes_room() {
    let host = Host::local("[http]\nmax_connections = 40\nmax_connections_per_client = 1000\n");
    let addr = host.proxy.addr;
    let mut idle = idle_connections([127, 0, 0, 3], addr, 40);
    // Let the proxy admit them all before the newcomer arrives.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        served(addr),
        "a client past the total cap is served in place of an idle one"
    );
    // Which one is oldest depends on how the proxy's threads took them in.
    let mut shed = 0;
    for stream in &mut idle {
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        shed += usize::from(closed_by_server(stream));
    }
    assert_eq!(shed, 1, "one idle connection made room");
}

#[test]
fn a_kept_alive_connection_is_closed_once_idle_for_the_keepalive_time() {
    let host = Host::local("[http]\nkeepalive_secs = 1\n");
    let mut stream = TcpStream::connect(host.proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: demo.localhost\r\n\r\n")
        .unwrap();
    let mut reply = [0u8; 16 * 1024];
    let read = stream.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..read]);
    assert!(status_of(&reply).is_some(), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("connection: keep-alive"), "{reply}");
    // Whatever is left of the body, then the close, well before the
    // client's own 10 s timeout.
    let started = Instant::now();
    let mut rest = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut rest) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(error) => panic!("not closed after {:?}: {error}", started.elapsed()),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
}
