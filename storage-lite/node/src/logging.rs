//! The log subscriber grove's servers (`grove-proxy`, `grove-storage`)
//! install: `RUST_LOG` filters (default `info`), to stderr, as JSON lines
//! with `GROVE_LOG_FORMAT=json`.

/// Installs the subscriber; call once, first thing in `main`.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("GROVE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
