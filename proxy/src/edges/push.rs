//! The push path: the edge that committed a publish tells its peers at
//! once (`POST /_grove/edges/publish`, the shared secret as a bearer
//! token), so they serve it without waiting for their next journal read.
//! Pushes are best effort: one that fails is covered by the journal.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use grove_core::api_error::ApiFailure;
use grove_objects::journal::JournalEntry;
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::{Wake, learn};
use crate::config::Edges;
use crate::metrics;
use crate::reply::{FailureReply, Reply};
use crate::roots::Roots;
use crate::route::EDGE_PUSH;

/// Largest push body taken: one journal entry.
pub const PUSH_BODY_LIMIT: u64 = 1024;
/// How long one peer may take to take a push.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Push {
    peers: Vec<String>,
    secret: Option<SecretString>,
    /// SHA-256 of the secret: a pushed token is hashed and compared with
    /// it, so the comparison's time says nothing about the secret.
    secret_digest: Option<[u8; 32]>,
    client: reqwest::Client,
    roots: Arc<Roots>,
    wake: Wake,
}

impl Push {
    pub fn new(edges: &Edges, roots: Arc<Roots>, wake: Wake) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(PUSH_TIMEOUT).no_proxy().build()?;
        Ok(Self {
            peers: edges.peers.clone(),
            secret_digest: edges
                .secret
                .as_ref()
                .map(|secret| Sha256::digest(secret.expose_secret().as_bytes()).into()),
            secret: edges.secret.clone(),
            client,
            roots,
            wake,
        })
    }

    /// Tells every peer that `entry` is live, in the background.
    pub fn announce(&self, entry: JournalEntry) {
        let Some(secret) = &self.secret else { return };
        if self.peers.is_empty() {
            return;
        }
        let (peers, client) = (self.peers.clone(), self.client.clone());
        let authorization = format!("Bearer {}", secret.expose_secret());
        let body = serde_json::to_vec(&entry).expect("an entry serializes");
        tokio::spawn(async move {
            let mut sends = FuturesUnordered::new();
            for peer in &peers {
                match tokio::net::lookup_host(peer).await {
                    Ok(addresses) => {
                        for address in addresses {
                            let request = client
                                .post(format!("http://{address}{EDGE_PUSH}"))
                                .header(http::header::AUTHORIZATION, &authorization)
                                .header(http::header::CONTENT_TYPE, "application/json")
                                .body(body.clone());
                            sends.push(async move { (address, request.send().await) });
                        }
                    }
                    Err(error) => {
                        metrics::EDGE_PUSHES.with_label_values(&["send_failed"]).inc();
                        tracing::warn!(%peer, %error, "resolving an edge peer failed; it learns from the journal");
                    }
                }
            }
            while let Some((address, sent)) = sends.next().await {
                match sent.map(|response| response.status()) {
                    Ok(status) if status.is_success() => metrics::EDGE_PUSHES.with_label_values(&["sent"]).inc(),
                    outcome => {
                        metrics::EDGE_PUSHES.with_label_values(&["send_failed"]).inc();
                        let outcome = outcome.map_or_else(|error| error.to_string(), |status| status.to_string());
                        tracing::debug!(%address, %outcome, "a push to an edge peer failed; it learns from the journal");
                    }
                }
            }
        });
    }

    /// A peer's push: the request's `Authorization` value and its body.
    pub fn take(&self, authorization: Option<&[u8]>, body: &[u8]) -> Reply {
        let Some(expected) = &self.secret_digest else {
            return ApiFailure::new(
                StatusCode::NOT_FOUND,
                "no_pushes",
                "this edge takes no pushes: its [edges] secret_env is not set",
            )
            .into_reply();
        };
        let presented = authorization.and_then(|value| value.strip_prefix(b"Bearer "));
        if presented.map(|token| <[u8; 32]>::from(Sha256::digest(token))) != Some(*expected) {
            metrics::EDGE_PUSHES.with_label_values(&["refused"]).inc();
            return ApiFailure::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a push carries the edges' shared secret as a bearer token",
            )
            .into_reply();
        }
        let entry: JournalEntry = match serde_json::from_slice(body) {
            Ok(entry) => entry,
            Err(error) => {
                metrics::EDGE_PUSHES.with_label_values(&["refused"]).inc();
                return ApiFailure::new(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("expected {{site, version, tree}}: {error}"),
                )
                .into_reply();
            }
        };
        metrics::EDGE_PUSHES.with_label_values(&["taken"]).inc();
        learn(&self.roots, &entry);
        // Entries this edge may have missed are read at once.
        self.wake.now();
        Reply::new(StatusCode::NO_CONTENT, crate::reply::Body::Empty)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use grove_core::{ContentHash, SiteName};
    use grove_objects::site::Sites;
    use grove_objects::store::{MemoryStore, ObjectStore};

    use super::*;
    use crate::roots::Served;

    const SECRET: &str = "a-shared-secret-of-the-edges";

    fn push(secret: Option<&str>) -> (Push, Arc<Roots>) {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let trees = grove_objects::content::trees_in(Arc::clone(&store), 100);
        let roots = Arc::new(Roots::new(
            Sites::new(store, trees),
            Duration::from_secs(3600),
            NonZeroU32::MIN,
        ));
        let edges = Edges {
            peers: Vec::new(),
            secret: secret.map(SecretString::from),
            journal_poll: Duration::from_secs(1),
            safety_net_reads_per_sec: NonZeroU32::MIN,
        };
        (Push::new(&edges, Arc::clone(&roots), Wake::default()).unwrap(), roots)
    }

    fn body(version: u64) -> Vec<u8> {
        serde_json::to_vec(&JournalEntry {
            site: SiteName::parse("blog").unwrap(),
            version,
            tree: ContentHash::of(b"tree"),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_push_with_the_secret_is_taken_and_anything_else_changes_nothing() {
        let (push, roots) = push(Some(SECRET));
        let blog = SiteName::parse("blog").unwrap();
        // Tracked (someone asked for it): no root yet.
        assert_eq!(roots.current(&blog).await.unwrap(), None);
        let good = format!("Bearer {SECRET}");

        for (authorization, status) in [
            (None, StatusCode::UNAUTHORIZED),
            (
                Some("Bearer wrong-secret-of-the-edges".to_owned()),
                StatusCode::UNAUTHORIZED,
            ),
            (Some(SECRET.to_owned()), StatusCode::UNAUTHORIZED),
        ] {
            let reply = push.take(authorization.as_deref().map(str::as_bytes), &body(7));
            assert_eq!(reply.status, status);
        }
        assert_eq!(
            push.take(Some(good.as_bytes()), b"{\"site\":\"../x\"}").status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            roots.current(&blog).await.unwrap(),
            None,
            "nothing refused changed anything"
        );

        assert_eq!(
            push.take(Some(good.as_bytes()), &body(7)).status,
            StatusCode::NO_CONTENT
        );
        let learned = Served {
            version: 7,
            tree: ContentHash::of(b"tree"),
        };
        assert_eq!(roots.current(&blog).await.unwrap(), Some(learned));
        // An older push (out of order) does not move it back.
        assert_eq!(
            push.take(Some(good.as_bytes()), &body(6)).status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(roots.current(&blog).await.unwrap(), Some(learned));
    }

    #[test]
    fn an_edge_without_a_secret_takes_no_pushes() {
        let (push, _) = push(None);
        let authorization = format!("Bearer {SECRET}");
        assert_eq!(
            push.take(Some(authorization.as_bytes()), &body(1)).status,
            StatusCode::NOT_FOUND
        );
    }
}
