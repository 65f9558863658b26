//! A watch as Server-Sent Events: one `id`/`data` event per entry, a comment
//! on an idle stream so proxies and clients with read timeouts keep it open,
//! and an `error` event that ends it (e.g. history trimmed under a slow
//! watcher).

use std::convert::Infallible;
use std::time::Duration;

use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use grove_core::node_api::WireEntry;

use super::auth::WatcherSlot;
use super::failure::NodeFailure;
use crate::log::Watch;

/// How long a watch may be idle before a keep-alive comment is sent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The watch's events; the stream holds `slot` until it ends.
pub fn events(watch: Watch, slot: WatcherSlot) -> Response {
    let events = futures::stream::unfold(Some((watch, slot)), |state| async move {
        let (mut watch, slot) = state?;
        // `Watch::next` is cancel-safe, so the keep-alive timer loses nothing.
        let (event, next) = match watch.next().await {
            Ok(entry) => {
                let data = serde_json::to_string(&WireEntry {
                    ts: entry.ts,
                    data: &entry.data,
                })
                .expect("entries serialize");
                let event = Event::default().id(entry.ts.to_string()).data(data);
                (event, Some((watch, slot)))
            }
            Err(error) => {
                let failure = NodeFailure::from(error);
                (Event::default().event("error").data(failure.0.json()), None)
            }
        };
        Some((Ok::<_, Infallible>(event), next))
    });
    let stream = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"));
    ([(header::CACHE_CONTROL, "no-store")], stream).into_response()
}
