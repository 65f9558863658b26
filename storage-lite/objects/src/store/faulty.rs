//! A wrapper that injects failures and latency, for testing what callers do
//! when the store misbehaves (outages, slow links, a write lost mid-commit).

use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ETag, ListPage, Object, ObjectKey, ObjectMeta, ObjectStore, PresignedPut, StoreError, StoreOp};
use grove_core::hash::ContentHash;

/// One scheduled failure: after `skip` matching calls succeed, the next
/// `times` matching calls fail with a backend error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The call to fail; `None` fails any call.
    pub op: Option<StoreOp>,
    /// Only calls whose key starts with this fail (empty: any key).
    pub key_prefix: String,
    pub skip: u32,
    pub times: u32,
    /// What the failure looks like.
    pub kind: FaultKind,
}

/// How an injected fault shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultKind {
    /// The call fails and has no effect.
    #[default]
    Fail,
    /// A conditional write takes effect, but its reply is lost and the
    /// client's retry is told the precondition failed (what an SDK retry
    /// after a timeout sees).
    AppliedThenLost,
}

impl Fault {
    /// Fails the next `times` calls of `op`.
    pub fn next(op: StoreOp, times: u32) -> Self {
        Self {
            op: Some(op),
            key_prefix: String::new(),
            skip: 0,
            times,
            kind: FaultKind::Fail,
        }
    }
}

/// Injected failure, reported as the backend's error source.
#[derive(Debug, thiserror::Error)]
#[error("injected fault")]
pub struct InjectedFault;

#[derive(Debug, Default)]
struct State {
    faults: Vec<Fault>,
    unreachable: bool,
    latency: Duration,
}

/// Wraps any store; by default it passes every call through unchanged.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    state: Mutex<State>,
}

impl<S: ObjectStore> FaultyStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: Mutex::default(),
        }
    }

    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// While set, every call fails, as if the store's network were down.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.state().unreachable = unreachable;
    }

    /// Delay added before every call.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts the call, waits out the latency, and decides whether it fails.
    async fn enter(&self, op: StoreOp, key: &str) -> Result<(), StoreError> {
        match self.decide(op, key).await {
            Some(FaultKind::Fail) => Err(StoreError::backend(op, key, InjectedFault)),
            Some(FaultKind::AppliedThenLost) | None => Ok(()),
        }
    }

    /// A conditional write under the fault plan.
    async fn conditional_write(
        &self,
        op: StoreOp,
        key: &ObjectKey,
        write: impl Future<Output = Result<ETag, StoreError>>,
    ) -> Result<ETag, StoreError> {
        match self.decide(op, key.as_str()).await {
            Some(FaultKind::Fail) => Err(StoreError::backend(op, key, InjectedFault)),
            Some(FaultKind::AppliedThenLost) => {
                write.await?;
                Err(StoreError::PreconditionFailed { key: key.to_string() })
            }
            None => write.await,
        }
    }

    async fn decide(&self, op: StoreOp, key: &str) -> Option<FaultKind> {
        let (latency, fail) = {
            let mut state = self.state();
            let mut fail = state.unreachable.then_some(FaultKind::Fail);
            if let Some(fault) = state
                .faults
                .iter_mut()
                .find(|fault| fault.op.is_none_or(|o| o == op) && key.starts_with(&fault.key_prefix))
            {
                if fault.skip > 0 {
                    fault.skip -= 1;
                } else {
                    fault.times = fault.times.saturating_sub(1);
                    fail = Some(fault.kind);
                }
            }
            state.faults.retain(|fault| fault.times > 0);
            (state.latency, fail)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        fail
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    async fn get(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        self.enter(StoreOp::Get, key.as_str()).await?;
        self.inner.get(key).await
    }

    async fn get_if_changed(&self, key: &ObjectKey, known: &ETag) -> Result<Option<Object>, StoreError> {
        self.enter(StoreOp::Get, key.as_str()).await?;
        self.inner.get_if_changed(key, known).await
    }

    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.enter(StoreOp::GetRange, key.as_str()).await?;
        self.inner.get_range(key, range).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.enter(StoreOp::Head, key.as_str()).await?;
        self.inner.head(key).await
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64, StoreError> {
        self.enter(StoreOp::Head, key.as_str()).await?;
        self.inner.size(key).await
    }

    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.enter(StoreOp::Put, key.as_str()).await?;
        self.inner.put(key, bytes).await
    }

    async fn put_if_absent(&self, key: &ObjectKey, bytes: Bytes) -> Result<ETag, StoreError> {
        self.conditional_write(StoreOp::PutIfAbsent, key, self.inner.put_if_absent(key, bytes))
            .await
    }

    async fn put_if_match(&self, key: &ObjectKey, bytes: Bytes, expected: &ETag) -> Result<ETag, StoreError> {
        self.conditional_write(StoreOp::PutIfMatch, key, self.inner.put_if_match(key, bytes, expected))
            .await
    }

    async fn list(&self, prefix: &str, start_after: Option<&ObjectKey>, limit: usize) -> Result<ListPage, StoreError> {
        self.enter(StoreOp::List, prefix).await?;
        self.inner.list(prefix, start_after, limit).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.enter(StoreOp::Delete, key.as_str()).await?;
        self.inner.delete(key).await
    }

    async fn presign_put(
        &self,
        key: &ObjectKey,
        sha256: &ContentHash,
        expires_in: Duration,
    ) -> Result<Option<PresignedPut>, StoreError> {
        self.enter(StoreOp::PresignPut, key.as_str()).await?;
        self.inner.presign_put(key, sha256, expires_in).await
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        content_type: &str,
    ) -> Result<Option<String>, StoreError> {
        self.enter(StoreOp::PresignGet, key.as_str()).await?;
        self.inner.presign_get(key, expires_in, content_type).await
    }
}
