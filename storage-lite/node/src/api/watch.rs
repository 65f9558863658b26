//! A watch or a site's change feed as Server-Sent Events: one `id`/`data`
//! event per entry or write, a comment
//! on an idle stream so proxies and clients with read timeouts keep it open,
//! and an `error` event that ends it (e.g. history trimmed under a slow
//! watcher).

use std::convert::Infallible;
use std::time::Duration;

use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use grove_core::node_api::{ChangeEvent, WireEntry};
use grove_core::timestamp::Timestamp;

use super::auth::WatcherSlot;
use super::failure::NodeFailure;
use crate::log::{Changes, Watch};
use crate::types::LogError;

/// How long a watch may be idle before a keep-alive comment is sent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A source of events: a path's entries, or a site's changes.
pub trait Feed: Send + 'static {
    /// The next event's id (its timestamp) and JSON data, waiting for it;
    /// cancel-safe.
    fn next_event(&mut self) -> impl Future<Output = Result<(Timestamp, String), LogError>> + Send;
}

impl Feed for Watch {
    async fn next_event(&mut self) -> Result<(Timestamp, String), LogError> {
        let entry = self.next().await?;
        let data = serde_json::to_string(&WireEntry {
            ts: entry.ts,
            data: &entry.data,
        })
        .expect("entries serialize");
        Ok((entry.ts, data))
    }
}

impl Feed for Changes {
    async fn next_event(&mut self) -> Result<(Timestamp, String), LogError> {
        let (ts, paths) = self.next().await?;
        let data = serde_json::to_string(&ChangeEvent { ts, paths }).expect("changes serialize");
        Ok((ts, data))
    }
}

/// The feed's events; the stream holds `slot` until it ends.
pub fn events(feed: impl Feed, slot: WatcherSlot) -> Response {
    let events = futures::stream::unfold(Some((feed, slot)), |state| async move {
        let (mut feed, slot) = state?;
        // `next_event` is cancel-safe, so the keep-alive timer loses nothing.
        let (event, next) = match feed.next_event().await {
            Ok((id, data)) => (Event::default().id(id.to_string()).data(data), Some((feed, slot))),
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
