//! Prometheus metrics, served on the admin listener.

use std::sync::LazyLock;

use prometheus::{
    Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, register_histogram, register_int_counter,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
};

/// `grove_requests_total`, one counter per status class, looked up once:
/// every request is counted, and a label lookup costs a hash and a lock.
static REQUESTS: LazyLock<[IntCounter; 6]> = LazyLock::new(|| {
    let by_class = register_int_counter_vec!(
        "grove_requests_total",
        "Requests answered, by status class",
        &["status"]
    )
    .expect("metric registers once");
    ["error", "1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| by_class.with_label_values(&[class]))
});

/// Counts a request answered with `status` (0: none was sent).
pub fn count_request(status: u16) {
    let class = match status {
        100..=599 => usize::from(status / 100),
        _ => 0,
    };
    REQUESTS[class].inc();
}

pub static PAGE_RENDERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grove_page_renders_total",
        "Renders of database-backed pages, by result: ok, or failed (the last good page stays)",
        &["result"]
    )
    .expect("metric registers once")
});

pub static RESPONSE_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grove_response_body_bytes_total", "Response body bytes sent").expect("metric registers once")
});

pub static CACHE_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grove_blob_lookups_total",
        "Blob lookups by the tier that answered: memory, disk or store (a miss of both caches)",
        &["tier"]
    )
    .expect("metric registers once")
});

pub static STORE_FETCH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "grove_store_fetch_seconds",
        "Latency of blob fetches from the object store"
    )
    .expect("metric registers once")
});

pub static STORE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "grove_store_errors_total",
        "Store reads that failed or returned corrupt data"
    )
    .expect("metric registers once")
});

pub static SIGN_INS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grove_sign_ins_total",
        "Sign-in callbacks, by result: ok or refused (a bad, replayed or foreign code, or an expired state)",
        &["result"]
    )
    .expect("metric registers once")
});

pub static SESSIONS_ENDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grove_sessions_ended_total",
        "Sessions ended here, by how: logout or backchannel",
        &["how"]
    )
    .expect("metric registers once")
});

pub static LIVE_STREAMS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("grove_live_streams", "Open /_grove/live streams").expect("metric registers once")
});

pub static SITE_VERSION: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "grove_site_version_served",
        "The version last served for a site",
        &["site"]
    )
    .expect("metric registers once")
});

pub static PURGE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grove_purge_requests_total",
        "CDN purge requests sent, by result: ok, retried (5xx, 429, timeout) or rejected",
        &["result"]
    )
    .expect("metric registers once")
});

pub static PURGE_TAGS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grove_purge_tags_total", "Cache tags (or host names) purged at the CDN")
        .expect("metric registers once")
});

pub static PURGE_RETRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "grove_purge_retries_total",
        "CDN purge requests that failed and will be retried"
    )
    .expect("metric registers once")
});

pub static PURGE_DEAD_LETTERS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "grove_purge_dead_letters_total",
        "Versions whose CDN purge was given up after its attempts ran out or the CDN refused it"
    )
    .expect("metric registers once")
});

pub static PURGE_QUEUE_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("grove_purge_queue_depth", "Versions awaiting their CDN purge").expect("metric registers once")
});

pub static OPEN_CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "grove_open_connections",
        "Plaintext and TLS client connections open now"
    )
    .expect("metric registers once")
});

pub static REFUSED_CONNECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grove_closed_connections_total",
        "Connections closed before their first request: per_client or total cap, shed_idle (closed to make room), first_request_timeout",
        &["reason"]
    )
    .expect("metric registers once")
});

pub static STORE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grove_store_requests_total",
        "Requests this edge made to the object store, by call (what R2 bills)",
        &["op"]
    )
    .expect("metric registers once")
});

pub static JOURNAL_ENTRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "grove_journal_entries_total",
        "Root changes read from the bucket's journal"
    )
    .expect("metric registers once")
});

pub static EDGE_PUSHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grove_edge_pushes_total",
        "Publish pushes between edges: sent, send_failed, taken, refused",
        &["result"]
    )
    .expect("metric registers once")
});
