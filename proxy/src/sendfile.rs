//! Zero-copy replies: a cached file's bytes go from the page cache to a
//! plaintext socket with sendfile(2), never through a buffer of grove's.
//!
//! Why: serving a 200 KB asset over plaintext HTTP/1, half the proxy's CPU
//! time was the kernel's `_copy_from_iter`, copying each body out of
//! grove's memory into the socket (perf, pinned, `wrk -c64`). nginx's
//! `sendfile on` skips that copy, and so does this.
//!
//! Pingora hands a connection over as `Box<dyn IO>`, whose only way to wait
//! for the socket to take more is its `AsyncWrite`. Its plaintext type,
//! `l4::stream::Stream`, is public and exposes its descriptor
//! (`AsRawFd`), so a write here goes on that descriptor directly. The first
//! time one would block, a duplicate of the descriptor is registered with
//! tokio's reactor for write readiness ([`AsyncFd`]) and kept for the rest
//! of the connection: epoll tells the two registrations apart by their
//! descriptor numbers, and dropping the [`Sendfile`] deregisters the
//! duplicate before closing it. TLS connections are other types, so they
//! never get here.
//!
//! Pingora buffers its writes, so a caller flushes the stream before
//! writing here; what is written here is then in order with the rest.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use pingora::prelude::fast_timeout::fast_timeout;
use pingora::protocols::Stream;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A connection whose descriptor may be written directly: a plaintext
/// socket, and not one behind TLS.
pub trait PlainSocket {
    /// The socket's descriptor, if writing it directly is safe.
    fn plain_socket(&self) -> Option<BorrowedFd<'_>>;
}

impl PlainSocket for Stream {
    fn plain_socket(&self) -> Option<BorrowedFd<'_>> {
        let socket = self.as_any().downcast_ref::<pingora::protocols::l4::stream::Stream>()?;
        // A virtual stream has no descriptor (-1).
        (socket.as_raw_fd() >= 0).then(|| {
            // SAFETY: the descriptor is open for as long as `socket` is,
            // and the borrow cannot outlive it.
            unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) }
        })
    }
}

#[cfg(test)]
impl PlainSocket for tokio::net::TcpStream {
    fn plain_socket(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.as_fd())
    }
}

#[cfg(test)]
impl PlainSocket for Vec<u8> {
    fn plain_socket(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// One connection's zero-copy writer: holds the readiness registration
/// once a write has had to wait.
#[derive(Default)]
pub struct Sendfile {
    writable: Option<AsyncFd<OwnedFd>>,
}

impl Sendfile {
    /// Writes `head`, then `len` bytes of `file` from `start`, on `socket`.
    /// Each write may wait `timeout` for the socket to take more. An error
    /// leaves the reply cut short: the connection must close.
    pub async fn send(
        &mut self,
        socket: BorrowedFd<'_>,
        head: &[u8],
        file: &File,
        start: u64,
        len: u64,
        timeout: Duration,
    ) -> io::Result<()> {
        let socket = socket.as_raw_fd();
        let mut sent = 0;
        while sent < head.len() {
            // MSG_MORE: the head waits to share a packet with the body.
            sent += self
                .when_writable(socket, timeout, || send_more(socket, &head[sent..]))
                .await?;
        }
        let (mut offset, end) = (start, start + len);
        while offset < end {
            let sent = self
                .when_writable(socket, timeout, || send_file(socket, file, offset, end - offset))
                .await?;
            if sent == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the cached file ended before the reply's length",
                ));
            }
            offset += sent as u64;
        }
        Ok(())
    }

    /// Runs `write` at once, and again each time the socket says it can
    /// take more, until it does not block; waits at most `timeout` in all.
    async fn when_writable(
        &mut self,
        socket: RawFd,
        timeout: Duration,
        mut write: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        match write() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            done => return done,
        }
        let writable = match &mut self.writable {
            Some(writable) => writable,
            empty => empty.insert(register(socket)?),
        };
        let waited = fast_timeout(timeout, async {
            loop {
                let mut ready = writable.writable().await?;
                if let Ok(done) = ready.try_io(|_| write()) {
                    return done;
                }
            }
        });
        waited
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "writing the reply timed out")))
    }
}

/// A duplicate of `socket`, registered for write readiness.
fn register(socket: RawFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `socket` is open: the caller holds the connection.
    let duplicate = unsafe { BorrowedFd::borrow_raw(socket) }.try_clone_to_owned()?;
    // SAFETY: an `OwnedFd` keeps its descriptor open and unchanged until it
    // is dropped, with the `AsyncFd`.
    unsafe { AsyncFd::register_with_interest(duplicate, Interest::WRITABLE) }.map_err(io::Error::from)
}

/// One non-blocking send of `bytes`, telling the kernel more follows.
fn send_more(socket: RawFd, bytes: &[u8]) -> io::Result<usize> {
    retry_interrupted(|| {
        // SAFETY: `bytes` is valid for its length; `socket` is open.
        unsafe {
            libc::send(
                socket,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_MORE | libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        }
    })
}

/// One non-blocking sendfile of up to `len` bytes of `file` from `offset`.
fn send_file(socket: RawFd, file: &File, offset: u64, len: u64) -> io::Result<usize> {
    // Linux sends at most this much in one call.
    const MOST: u64 = 0x7fff_f000;
    let mut offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    retry_interrupted(|| {
        // SAFETY: both descriptors are open; `offset` is a valid off_t the
        // call may advance.
        unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut offset, len.min(MOST) as usize) }
    })
}

fn retry_interrupted(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        match usize::try_from(call()) {
            Ok(done) => return Ok(done),
            Err(_) => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    /// 8 MiB is far more than a loopback socket buffers, so the writer must
    /// wait for the reader many times over.
    #[tokio::test]
    async fn a_body_larger_than_the_socket_buffer_arrives_whole_after_its_head() {
        let body: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let file = file_of(&body);
        let (server, mut client) = socket_pair().await;
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.unwrap();
            received
        });
        let mut sendfile = Sendfile::default();
        let socket = server.plain_socket().unwrap();
        sendfile
            .send(socket, b"head|", &file, 1000, 4 << 20, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(sendfile.writable.is_some(), "the writer had to wait");
        drop(sendfile);
        drop(server);
        let received = reader.await.unwrap();
        assert_eq!(&received[..5], b"head|");
        assert!(
            received[5..] == body[1000..1000 + (4 << 20)],
            "the body's bytes, from the offset"
        );
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_times_the_write_out() {
        let file = file_of(&vec![7; 16 << 20]);
        let (server, _client) = socket_pair().await;
        let socket = server.plain_socket().unwrap();
        let sent = Sendfile::default()
            .send(socket, b"", &file, 0, 16 << 20, Duration::from_millis(300))
            .await;
        assert_eq!(sent.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_file_shorter_than_the_reply_is_an_error() {
        let file = file_of(b"short");
        let (server, _client) = socket_pair().await;
        let socket = server.plain_socket().unwrap();
        let sent = Sendfile::default()
            .send(socket, b"", &file, 0, 100, Duration::from_secs(1))
            .await;
        assert_eq!(sent.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    /// The reader's close is reported as such at once, not after the
    /// write timeout.
    #[tokio::test]
    async fn a_reader_that_closed_is_an_error_not_a_signal() {
        let file = file_of(&vec![7; 16 << 20]);
        let (server, client) = socket_pair().await;
        drop(client);
        let socket = server.plain_socket().unwrap();
        let sent = Sendfile::default()
            .send(socket, b"head", &file, 0, 16 << 20, Duration::from_secs(5))
            .await;
        let kind = sent.unwrap_err().kind();
        assert!(
            matches!(kind, io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset),
            "{kind:?}"
        );
    }
}
