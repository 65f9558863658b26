//! Grove's own HTTP/1.1 for plain reads: taking a request head from the
//! connection's bytes, and writing a [`Reply`] on the raw connection.
//!
//! Pingora's HTTP/1 session cost a 5 KB page more instructions than
//! everything grove does to answer it: a request header built with a case
//! map and validated again, then a response header map that gains `Date`
//! and `Connection` by allocation and is serialized afresh. So the front
//! answers the requests an edge sees most here, and only those whose
//! framing leaves no room for doubt:
//! - `GET` or `HEAD`, HTTP/1.1, an origin-form target on a read route;
//! - exactly one `Host`;
//! - no `Content-Length`, `Transfer-Encoding`, `Expect` or `Upgrade`, and a
//!   `Connection` that says at most `keep-alive` and `close`.
//!
//! Such a request has no body (RFC 9112 §6.3), so the next request starts
//! right after its head: there is nothing to smuggle past this path. Every
//! other request, and every head that httparse (Pingora's own parser)
//! refuses, is left in the buffer unread and handed to Pingora, which
//! answers it as before.

use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::FutureExt;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode};
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::protocols::http::date::get_cached_date;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::reply::{Body, FilePieces, Reply};
use crate::request::Request;
use crate::sendfile::{PlainSocket, Sendfile};

/// Most header fields a plain read may carry; a request with more goes to
/// the proxy.
const MAX_FIELDS: usize = 64;

/// What the front does with the request at the start of its buffer.
pub enum Taken {
    /// Not a plain read this path answers: the proxy reads it, from the
    /// buffer as it is.
    Proxy,
    /// A plain read, its head taken from the buffer.
    Read(ReadRequest),
    /// A plain read whose target or a header field the `http` types refuse:
    /// answered 400, and the connection closed, as Pingora would.
    Malformed {
        why: &'static str,
        /// The refused request was a `HEAD`: the 400 goes without its body.
        head_only: bool,
    },
}

/// A plain read's head, parsed without copying: the header values and the
/// target share the bytes read from the connection.
pub struct ReadRequest {
    method: Method,
    target: PathAndQuery,
    headers: HeaderMap,
    /// The client asked for the connection to close after this reply.
    pub close: bool,
}

impl ReadRequest {
    /// The request as grove's handlers read it.
    pub fn request(&self) -> Request<'_> {
        Request::new(
            &self.method,
            None,
            self.target.path(),
            self.target.query(),
            &self.headers,
        )
    }

    /// A `HEAD`: the reply goes without its body.
    pub fn head_only(&self) -> bool {
        self.method == Method::HEAD
    }
}

/// Takes the request at the start of `buffer`, or None until its head has
/// arrived whole. A head longer than `max_header_bytes` goes to the proxy,
/// which refuses it; `is_read` says which paths are plain reads.
pub fn take(buffer: &mut BytesMut, max_header_bytes: usize, is_read: impl Fn(&str) -> bool) -> Option<Taken> {
    if buffer.is_empty() {
        return None;
    }
    let mut fields = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buffer, &mut fields) {
        Ok(httparse::Status::Complete(len)) if len <= max_header_bytes => len,
        Ok(httparse::Status::Partial) if buffer.len() <= max_header_bytes => return None,
        _ => return Some(Taken::Proxy),
    };
    let method = match parsed.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Some(Taken::Proxy),
    };
    let target = parsed.path.unwrap_or_default();
    let routed = target.split(['?', '#']).next().unwrap_or_default();
    if parsed.version != Some(1) || !target.starts_with('/') || !is_read(routed) {
        return Some(Taken::Proxy);
    }
    let mut spans = [const { (0..0, 0..0) }; MAX_FIELDS];
    let mut hosts = 0;
    let mut close = false;
    for (field, span) in parsed.headers.iter().zip(spans.iter_mut()) {
        let name = field.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if ["content-length", "transfer-encoding", "expect", "upgrade"]
            .iter()
            .any(|framing| name.eq_ignore_ascii_case(framing))
        {
            return Some(Taken::Proxy);
        } else if name.eq_ignore_ascii_case("connection") {
            match connection_close(field.value) {
                Some(asked) => close |= asked,
                None => return Some(Taken::Proxy),
            }
        }
        *span = (span_of(buffer, name.as_bytes()), span_of(buffer, field.value));
    }
    if hosts != 1 {
        return Some(Taken::Proxy);
    }
    let target = span_of(buffer, target.as_bytes());
    let count = parsed.headers.len();
    let head_only = method == Method::HEAD;
    let head = buffer.split_to(len).freeze();
    Some(
        match request_from_spans(&head, method, target, &spans[..count], close) {
            Ok(request) => Taken::Read(request),
            Err(why) => Taken::Malformed { why, head_only },
        },
    )
}

/// Builds the request from spans of `head`, sharing its bytes.
fn request_from_spans(
    head: &Bytes,
    method: Method,
    target: Range<usize>,
    fields: &[(Range<usize>, Range<usize>)],
    close: bool,
) -> Result<ReadRequest, &'static str> {
    let target = PathAndQuery::from_maybe_shared(head.slice(target)).map_err(|_| "malformed request target")?;
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        let name = HeaderName::from_bytes(&head[name.clone()]).map_err(|_| "malformed header field name")?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value.clone())).map_err(|_| "malformed header field value")?;
        headers.append(name, value);
    }
    Ok(ReadRequest {
        method,
        target,
        headers,
        close,
    })
}

/// Where `part`, a slice of `whole`, lies in it.
fn span_of(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

/// Whether a `Connection` field asks to close, or None when it names
/// anything but `close` and `keep-alive` (an upgrade, hop-by-hop fields),
/// which the proxy handles.
fn connection_close(value: &[u8]) -> Option<bool> {
    let mut close = false;
    for option in value.split(|&byte| byte == b',') {
        let option = option.trim_ascii();
        if option.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !option.eq_ignore_ascii_case(b"keep-alive") && !option.is_empty() {
            return None;
        }
    }
    Some(close)
}

/// The bytes that start a response, as Pingora wrote them: the status
/// line, the reply's own fields, `Content-Length` (except on a 304),
/// `Date` and `Connection`. The reply's fields never include the framing
/// ones: sites cannot set them (`rules::headers`).
fn response_head(reply: &Reply, keep_alive: bool) -> BytesMut {
    let fields = reply.headers.http1_lines();
    let mut head = BytesMut::with_capacity(fields.len() + 128);
    head.put_slice(b"HTTP/1.1 ");
    head.put_slice(reply.status.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(reply.status.canonical_reason().unwrap_or("").as_bytes());
    head.put_slice(b"\r\n");
    head.put_slice(fields);
    if reply.status != StatusCode::NOT_MODIFIED {
        head.put_slice(b"content-length: ");
        head.put_slice(itoa::Buffer::new().format(reply.body.len()).as_bytes());
        head.put_slice(b"\r\n");
    }
    head.put_slice(b"date: ");
    head.put_slice(get_cached_date().as_bytes());
    head.put_slice(if keep_alive {
        b"\r\nconnection: keep-alive\r\n\r\n"
    } else {
        b"\r\nconnection: close\r\n\r\n"
    });
    head
}

/// Writes `reply` on the connection, its body unless `head_only` or a 304;
/// returns the body bytes sent. Each write may take `timeout`. With
/// `sendfile`, a body a file holds goes from the file if the connection is
/// a plaintext socket.
pub async fn write_reply<S: AsyncWrite + PlainSocket + Unpin>(
    stream: &mut S,
    reply: Reply,
    head_only: bool,
    keep_alive: bool,
    timeout: Duration,
    sendfile: Option<&mut Sendfile>,
) -> io::Result<u64> {
    let mut head = response_head(&reply, keep_alive);
    let length = reply.body.len();
    let bodiless = head_only || reply.status == StatusCode::NOT_MODIFIED || length == 0;
    if !bodiless
        && let (Some(sendfile), Some((file, start, len))) = (sendfile, reply.body.in_file())
        && stream.plain_socket().is_some()
    {
        // Whatever the stream still buffers goes first.
        within(timeout, stream.flush()).await?;
        let socket = stream.plain_socket().expect("checked above");
        sendfile.send(socket, &head, file, start, len, timeout).await?;
        return Ok(length);
    }
    match reply.body {
        // One vectored write for the head and the body.
        Body::Bytes(body) | Body::Mirrored { bytes: body, .. } if !bodiless => {
            write_all(stream, &mut head.chain(body), timeout).await?
        }
        Body::File { file, start, len } if !bodiless => {
            write_all(stream, &mut head, timeout).await?;
            let mut pieces = FilePieces::new(file, start, len);
            while let Some(piece) = pieces.next().await {
                write_all(stream, &mut piece?, timeout).await?;
            }
        }
        _ => write_all(stream, &mut head, timeout).await?,
    }
    within(timeout, stream.flush()).await?;
    Ok(if bodiless { 0 } else { length })
}

/// Writes all of `buffer`.
async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, buffer: &mut impl Buf, timeout: Duration) -> io::Result<()> {
    within(timeout, stream.write_all_buf(buffer)).await
}

/// Runs a write for at most `timeout`. The socket almost always takes a
/// reply at once, so the write is polled once first, and the timer armed
/// only when it did not finish.
async fn within(timeout: Duration, write: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    let mut write = std::pin::pin!(write);
    if let Some(done) = write.as_mut().now_or_never() {
        return done;
    }
    fast_timeout(timeout, write)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "writing the reply timed out")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_HEADER_BYTES: usize = 1024;

    /// Takes from `bytes` as the front does, with every path a read but
    /// those under `/api/`.
    fn take_from(buffer: &mut BytesMut) -> Option<Taken> {
        take(buffer, MAX_HEADER_BYTES, |path| !path.starts_with("/api/"))
    }

    fn read_of(bytes: &str) -> (ReadRequest, BytesMut) {
        let mut buffer = BytesMut::from(bytes);
        match take_from(&mut buffer) {
            Some(Taken::Read(read)) => (read, buffer),
            _ => panic!("not taken as a read: {bytes:?}"),
        }
    }

    fn goes_to_proxy(bytes: &[u8]) -> bool {
        let mut buffer = BytesMut::from(bytes);
        let proxied = matches!(take_from(&mut buffer), Some(Taken::Proxy));
        assert_eq!(&buffer[..], bytes, "the proxy gets every byte");
        proxied
    }

    #[test]
    fn a_plain_read_is_taken_and_the_next_request_left_in_the_buffer() {
        let (read, rest) = read_of(
            "GET /docs/a%20b.html?v=2 HTTP/1.1\r\nHost: Demo.localhost\r\nAccept-Encoding: gzip\r\n\r\nGET /b HTTP/1.1\r\n",
        );
        let request = read.request();
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.host, Some("Demo.localhost"));
        assert_eq!(request.path, "/docs/a%20b.html");
        assert_eq!(request.query, Some("v=2"));
        assert_eq!(request.header("accept-encoding"), Some("gzip"));
        assert!(!read.head_only() && !read.close);
        assert_eq!(&rest[..], b"GET /b HTTP/1.1\r\n");

        let (read, rest) = read_of("HEAD / HTTP/1.1\nhost: x\nConnection: keep-alive, close\n\n");
        assert!(read.head_only() && read.close);
        assert_eq!(read.request().query, None);
        assert!(rest.is_empty());
    }

    #[test]
    fn a_head_is_waited_for_until_it_has_arrived_whole() {
        for bytes in [
            "",
            "GET /a.ht",
            "GET /a.html HTTP/1.1\r\nHo",
            "GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            let mut buffer = BytesMut::from(bytes);
            assert!(take_from(&mut buffer).is_none(), "{bytes:?}");
            assert_eq!(&buffer[..], bytes.as_bytes());
        }
    }

    #[test]
    fn anything_but_a_plain_read_goes_to_the_proxy_unread() {
        for bytes in [
            "POST /a HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /api/v1/x HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /a HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /a HTTP/1.1\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /",
            "GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close, x-secret\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\x01\r\n\r\n",
            "GET  /a HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(goes_to_proxy(bytes.as_bytes()), "{bytes:?}");
        }
        let crowded = format!("GET /a HTTP/1.1\r\nHost: x\r\n{}\r\n", "X: y\r\n".repeat(MAX_FIELDS));
        assert!(goes_to_proxy(crowded.as_bytes()));
    }

    #[test]
    fn a_head_larger_than_the_limit_goes_to_the_proxy_whole_or_not() {
        let big = "x".repeat(MAX_HEADER_BYTES);
        let whole = format!("GET /a HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
        assert!(goes_to_proxy(whole.as_bytes()));
        let cut = format!("GET /a HTTP/1.1\r\nHost: x\r\nX-Big: {big}");
        assert!(goes_to_proxy(cut.as_bytes()));
    }

    #[test]
    fn a_target_the_uri_type_refuses_is_malformed() {
        let mut buffer = BytesMut::from("GET /a<b> HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(
            take_from(&mut buffer),
            Some(Taken::Malformed {
                why: "malformed request target",
                head_only: false
            })
        ));
        let mut buffer = BytesMut::from("HEAD /a<b> HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(
            take_from(&mut buffer),
            Some(Taken::Malformed { head_only: true, .. })
        ));
    }

    #[test]
    fn header_values_share_the_bytes_read() {
        let mut buffer = BytesMut::from("GET /a HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\n\r\n");
        let range = buffer.as_ptr_range();
        let Some(Taken::Read(read)) = take_from(&mut buffer) else {
            panic!("not a read");
        };
        let cookie = read.request().headers[http::header::COOKIE].as_bytes().as_ptr();
        assert!(range.contains(&cookie), "the value was copied");
    }

    /// What `write_reply` sends, with the `Date` field's value cut out.
    async fn sent(reply: Reply, head_only: bool, keep_alive: bool) -> (String, u64) {
        let mut out = Vec::new();
        let bytes = write_reply(&mut out, reply, head_only, keep_alive, Duration::from_secs(1), None)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let date = text.find("date: ").expect("a Date field") + 6;
        let date_end = date + text[date..].find("\r\n").unwrap();
        (format!("{}<date>{}", &text[..date], &text[date_end..]), bytes)
    }

    fn page() -> Reply {
        Reply::new(StatusCode::OK, Body::Bytes(Bytes::from_static(b"hello")))
            .with(http::header::CONTENT_TYPE, "text/html")
            .with(http::header::ETAG, "\"1\"")
    }

    #[tokio::test]
    async fn a_reply_is_framed_by_its_length_and_says_whether_the_connection_stays() {
        let (text, bytes) = sent(page(), false, true).await;
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\netag: \"1\"\r\ncontent-length: 5\r\n\
             date: <date>\r\nconnection: keep-alive\r\n\r\nhello"
        );
        assert_eq!(bytes, 5);

        let (text, bytes) = sent(page(), true, false).await;
        assert!(
            text.ends_with("content-length: 5\r\ndate: <date>\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
        assert_eq!(bytes, 0, "a HEAD sends no body");

        let mut unchanged = page();
        unchanged.status = StatusCode::NOT_MODIFIED;
        let (text, bytes) = sent(unchanged, false, true).await;
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{text}");
        assert!(!text.contains("content-length") && text.ends_with("\r\n\r\n"), "{text}");
        assert_eq!(bytes, 0);
    }

    #[tokio::test]
    async fn a_file_body_is_sent_from_its_start_for_its_length() {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, b"0123456789").unwrap();
        let body = Body::File {
            file: std::sync::Arc::new(file),
            start: 2,
            len: 5,
        };
        let (text, bytes) = sent(Reply::new(StatusCode::PARTIAL_CONTENT, body), false, true).await;
        assert!(text.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n23456"), "{text}");
        assert_eq!(bytes, 5);
    }

    /// The file and the bytes of this mirrored body differ, which no cache
    /// would make, so the test sees which one each writer sent.
    fn mirrored(start: u64) -> Body {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, b"from the file").unwrap();
        Body::Mirrored {
            bytes: Bytes::from_static(b"from memory"),
            file: std::sync::Arc::new(file),
            start,
        }
    }

    /// Writes each reply on a loopback socket with sendfile, then closes it;
    /// returns what the other end read.
    async fn sent_on_a_socket(replies: Vec<(Reply, bool)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut sendfile = Sendfile::default();
        for (reply, head_only) in replies {
            write_reply(
                &mut server,
                reply,
                head_only,
                true,
                Duration::from_secs(1),
                Some(&mut sendfile),
            )
            .await
            .unwrap();
        }
        drop((sendfile, server));
        let mut received = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut client, &mut received)
            .await
            .unwrap();
        received
    }

    #[tokio::test]
    async fn a_body_a_file_holds_goes_from_the_file_on_a_plain_socket_in_order_with_the_rest() {
        let received = sent_on_a_socket(vec![
            (Reply::new(StatusCode::OK, mirrored(0)), false),
            (page(), false),
            (Reply::new(StatusCode::PARTIAL_CONTENT, mirrored(5).slice(0, 3)), false),
            (Reply::new(StatusCode::OK, mirrored(0)), true),
        ])
        .await;
        let bodies: Vec<&str> = received
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|reply| reply.split_once("\r\n\r\n").unwrap().1)
            .collect();
        // The mirrored bodies came from the file, at their offsets, and the
        // HEAD sent none.
        assert_eq!(bodies, ["from the fi", "hello", "the", ""], "{received}");
    }

    #[tokio::test]
    async fn without_sendfile_or_a_plain_socket_a_mirrored_body_goes_from_memory() {
        let (text, bytes) = sent(Reply::new(StatusCode::OK, mirrored(0)), false, true).await;
        assert!(text.ends_with("\r\n\r\nfrom memory"), "{text}");
        assert_eq!(bytes, 11);
    }
}
