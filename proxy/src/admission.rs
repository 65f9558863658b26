//! Admission of new plaintext connections, before Pingora's HTTP code sees
//! them.
//!
//! Pingora tells an HTTP/2 prior-knowledge (h2c) connection from an HTTP/1
//! one by reading the 24-byte h2 preface with no timeout. A client that
//! never sends a byte, or sends a request shorter than the preface
//! (`GET / HTTP/1.1` with no `Host`, an HTTP/0.9 `GET /`), is then held
//! forever, and enough of them exhaust the process's file descriptors. So
//! [`Admission`] decides the protocol itself: it waits, for at most the
//! first-request timeout, until the first bytes arrive, peeks at them
//! without consuming anything, and hands the connection to an HTTP/1 or an
//! h2c app accordingly. It also caps connections per client address and in
//! all, shedding the oldest connection still waiting for its first request
//! when the total cap is reached.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::metrics;

/// What every HTTP/2 prior-knowledge connection starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The admission limits (`[http]` in the config).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a new connection may take to send its first bytes.
    pub first_request_timeout: Duration,
    /// Open connections from one client address.
    pub per_client: usize,
    /// Open connections in all.
    pub total: usize,
}

/// Routes each admitted connection to the HTTP/1 or the h2c app.
pub struct Admission<H, C> {
    http1: Arc<H>,
    h2c: Arc<C>,
    limits: Limits,
    open: Arc<Mutex<Open>>,
}

/// The connections admitted and not yet closed.
#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    /// Connections still waiting for their first bytes, oldest first: the
    /// ones shed when the total cap is reached.
    waiting: BTreeMap<u64, Arc<Notify>>,
    next_id: u64,
}

/// One admitted connection; counted until dropped.
struct Slot {
    open: Arc<Mutex<Open>>,
    id: u64,
    client: Option<IpAddr>,
    shed: Arc<Notify>,
}

impl Slot {
    /// The connection sent its first bytes: it is no longer idle.
    fn started(&self) {
        lock(&self.open).waiting.remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        open.total -= 1;
        open.waiting.remove(&self.id);
        if let Some(client) = self.client
            && let Some(count) = open.per_client.get_mut(&client)
        {
            *count -= 1;
            if *count == 0 {
                open.per_client.remove(&client);
            }
        }
        metrics::OPEN_CONNECTIONS.set(i64::try_from(open.total).unwrap_or(i64::MAX));
    }
}

fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<H, C> Admission<H, C> {
    /// `h2c` gets the connections whose first bytes are the whole h2
    /// preface, `http1` the rest; it may share `h2c` for ALPN h2.
    pub fn new(http1: H, h2c: Arc<C>, limits: Limits) -> Self {
        Self {
            http1: Arc::new(http1),
            h2c,
            limits,
            open: Arc::default(),
        }
    }

    /// Counts a new connection from `client`, or refuses it.
    fn admit(&self, client: Option<IpAddr>) -> Option<Slot> {
        let mut open = lock(&self.open);
        if let Some(client) = client
            && open.per_client.get(&client).copied().unwrap_or(0) >= self.limits.per_client
        {
            metrics::REFUSED_CONNECTIONS.with_label_values(&["per_client"]).inc();
            return None;
        }
        if open.total >= self.limits.total {
            // Make room by closing the longest-idle new connection.
            let Some((_, oldest)) = open.waiting.pop_first() else {
                metrics::REFUSED_CONNECTIONS.with_label_values(&["total"]).inc();
                return None;
            };
            oldest.notify_one();
            metrics::REFUSED_CONNECTIONS.with_label_values(&["shed_idle"]).inc();
        }
        open.total += 1;
        if let Some(client) = client {
            *open.per_client.entry(client).or_insert(0) += 1;
        }
        let id = open.next_id;
        open.next_id += 1;
        let shed = Arc::new(Notify::new());
        open.waiting.insert(id, Arc::clone(&shed));
        metrics::OPEN_CONNECTIONS.set(i64::try_from(open.total).unwrap_or(i64::MAX));
        Some(Slot {
            open: Arc::clone(&self.open),
            id,
            client,
            shed,
        })
    }
}

/// What a connection's first bytes say it is.
#[derive(Debug, PartialEq, Eq)]
enum FirstBytes {
    Http1,
    H2c,
    /// A complete first line with no HTTP version (`GET /`, HTTP/0.9),
    /// which Pingora would wait on for more: refused at once.
    NoVersion,
    /// Closed, or failed, before sending anything that decides.
    Gone,
}

#[async_trait]
impl<H, C> ServerApp for Admission<H, C>
where
    H: ServerApp + Send + Sync + 'static,
    C: ServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let client = stream
            .get_socket_digest()
            .and_then(|digest| digest.peer_addr().and_then(|addr| addr.as_inet()).map(|addr| addr.ip()));
        let slot = self.admit(client)?;
        if stream.get_ssl_digest().is_some() {
            // TLS: ALPN picks the protocol; the HTTP/1 app handles both.
            slot.started();
            return self.http1.process_new(stream, shutdown).await;
        }
        // Plaintext streams name their socket by its descriptor.
        let fd: RawFd = stream.id();
        let first = tokio::select! {
            first = first_bytes(fd) => first,
            () = tokio::time::sleep(self.limits.first_request_timeout) => {
                metrics::REFUSED_CONNECTIONS.with_label_values(&["first_request_timeout"]).inc();
                FirstBytes::Gone
            }
            () = slot.shed.notified() => FirstBytes::Gone,
        };
        slot.started();
        match first {
            FirstBytes::Http1 => self.http1.process_new(stream, shutdown).await,
            FirstBytes::H2c => self.h2c.process_new(stream, shutdown).await,
            FirstBytes::NoVersion => {
                let mut stream = stream;
                let refusal = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 33\r\nconnection: close\r\n\r\nthe request line needs HTTP/1.x\r\n";
                let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, refusal).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                None
            }
            FirstBytes::Gone => None,
        }
    }

    async fn cleanup(&self) {
        self.http1.cleanup().await;
        self.h2c.cleanup().await;
    }
}

/// Waits until the socket `fd` has bytes that decide its protocol, peeking
/// (never consuming), so the stream that owns `fd` reads everything
/// afterwards. Most clients send their request with the connection, so the
/// bytes are usually there at once; only then is no waiting set up.
async fn first_bytes(fd: RawFd) -> FirstBytes {
    // SAFETY: the stream that owns `fd` outlives this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if let Some(decided) = decide(borrowed) {
        return decided;
    }
    // Nothing yet: wait for readability on a duplicate of the descriptor
    // (registering the stream's own one twice is not allowed).
    let Ok(owned) = borrowed.try_clone_to_owned() else {
        return FirstBytes::Gone;
    };
    // SAFETY: the `OwnedFd` keeps its descriptor open, and naming the same
    // file, for as long as the `AsyncFd` owns it.
    let Ok(readable) = (unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }) else {
        return FirstBytes::Gone;
    };
    loop {
        let Ok(mut guard) = readable.readable().await else {
            return FirstBytes::Gone;
        };
        match decide(readable.get_ref().as_fd()) {
            Some(decided) => return decided,
            // Nothing new since the last look: wait for the next bytes.
            None => guard.clear_ready(),
        }
    }
}

/// What the bytes waiting on `fd` say, or `None` while they say nothing yet
/// (none, or a strict prefix of the h2 preface). One peek reads enough to
/// see the preface and, for HTTP/1, a whole first line.
fn decide(fd: BorrowedFd<'_>) -> Option<FirstBytes> {
    let mut peeked = [0u8; 1024];
    let read = match peek(fd, &mut peeked) {
        Ok(0) => return Some(FirstBytes::Gone),
        Ok(read) => read,
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return None,
        Err(_) => return Some(FirstBytes::Gone),
    };
    let start = &peeked[..read.min(H2_PREFACE.len())];
    if start == &H2_PREFACE[..start.len()] {
        return (start.len() == H2_PREFACE.len()).then_some(FirstBytes::H2c);
    }
    // A whole first line with no HTTP version is HTTP/0.9, which Pingora
    // would wait on for more.
    let Some(end) = peeked[..read].iter().position(|&byte| byte == b'\n') else {
        return Some(FirstBytes::Http1);
    };
    if peeked[..end].windows(6).any(|window| window == b" HTTP/") {
        Some(FirstBytes::Http1)
    } else {
        Some(FirstBytes::NoVersion)
    }
}

/// `recv(MSG_PEEK)` without blocking.
fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call's duration.
    let read = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(read).map_err(|_| std::io::Error::last_os_error())
}

/// Raises the soft limit on open files to the hard limit: every connection
/// is a descriptor, and distributions default the soft limit to 1024.
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit/setrlimit to fill and read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            let previous = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                tracing::debug!(from = previous, to = limit.rlim_cur, "raised the open files limit");
            }
        }
    }
}
