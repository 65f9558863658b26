//! Prometheus metrics, served on the admin listener.

use std::sync::LazyLock;

use prometheus::{
    Histogram, IntCounter, IntCounterVec, IntGaugeVec, register_histogram, register_int_counter,
    register_int_counter_vec, register_int_gauge_vec,
};

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grove_requests_total",
        "Requests answered, by status class",
        &["status"]
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

pub static SITE_VERSION: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "grove_site_version_served",
        "The version last served for a site",
        &["site"]
    )
    .expect("metric registers once")
});
