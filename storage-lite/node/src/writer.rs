//! The log's single writer thread. It commits whatever has queued up in one
//! transaction (group commit: one fsync for many writes), issues timestamps
//! in commit order (which is what makes watches gap-free), and answers each
//! request only after its transaction committed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use redb::Database;
use tokio::sync::oneshot;

use crate::hlc::Clock;
use crate::ops::{CLOCK_BOUND, KeyedWrite, Op, Tables, Truncated, db_error};
use crate::types::{LogError, LogStats, WallClock};
use grove_core::timestamp::Timestamp;

/// Most requests one transaction takes.
const MAX_BATCH: usize = 1024;

/// One path a write request appends to.
pub(super) struct PendingWrite {
    pub key: String,
    pub path: String,
    pub data: Box<serde_json::value::RawValue>,
}

pub(super) enum Request {
    /// Appends `writes` under one timestamp above `after`. With a guard
    /// (a transaction), the guarded path's latest entry must be exactly
    /// `after`; serialized paths need `after` to cover their latest entry.
    Write {
        guard: Option<PendingGuard>,
        writes: Vec<PendingWrite>,
        author: String,
        after: Timestamp,
        /// `<site>\0<key>`: a write that already used it is answered
        /// with its timestamp, and nothing is written.
        idempotency_key: Option<String>,
        reply: oneshot::Sender<Result<Timestamp, LogError>>,
    },
    Create {
        key: String,
        path: String,
        serialized: bool,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    Trim {
        key: String,
        before: Timestamp,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Operations another incarnation of this node committed (a rebuild).
    Replay {
        ops: Vec<Op>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Operations a site's primary committed, shipped to this backup in
    /// order; journaled here too, so this node's segments hold them.
    Adopt {
        ops: Vec<Op>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// See [`Op::Truncate`].
    Truncate {
        site: String,
        after: Timestamp,
        reply: oneshot::Sender<Result<Truncated, LogError>>,
    },
    /// Journaled operations up to `through` are shipped.
    Forget {
        through: u64,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    SetMeta {
        name: &'static str,
        value: u64,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
}

/// The path a transaction compares.
pub(super) struct PendingGuard {
    pub key: String,
    pub path: String,
}

/// The writer thread's state.
pub(super) struct Writer {
    /// Bumped after each commit, for watchers and the shipper.
    pub committed: Arc<tokio::sync::watch::Sender<u64>>,
    pub db: Arc<Database>,
    pub clock: Clock,
    /// The clock bound persisted so far.
    pub bound: u64,
    pub wall: WallClock,
    pub stats: Arc<LogStats>,
    /// Whether committed operations go to the journal for shipping.
    pub journal: bool,
}

/// An answer to send once the batch's transaction committed.
enum Answer {
    Written(
        oneshot::Sender<Result<Timestamp, LogError>>,
        Result<Timestamp, LogError>,
    ),
    Done(oneshot::Sender<Result<(), LogError>>, Result<(), LogError>),
    Truncated(oneshot::Sender<Result<Truncated, LogError>>, Truncated),
}

impl Writer {
    pub fn run(&mut self, requests: &mpsc::Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    /// Applies a batch in one transaction; every answer waits for its commit.
    fn commit(&mut self, batch: Vec<Request>) {
        let bound_before = self.bound;
        let mut answers = Vec::with_capacity(batch.len());
        let failure = self.apply(batch, &mut answers).err().map(|error| error.to_string());
        if failure.is_some() {
            // Nothing of the batch is durable: the persisted bound is what it
            // was. Timestamps issued for it are simply never reused.
            self.bound = bound_before;
        } else {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.committed.send_modify(|commits| *commits += 1);
        }
        for answer in answers {
            match answer {
                Answer::Written(reply, result) => {
                    let result = settle(failure.as_ref(), result);
                    if result.is_ok() {
                        self.stats.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = reply.send(result);
                }
                Answer::Done(reply, result) => {
                    let _ = reply.send(settle(failure.as_ref(), result));
                }
                Answer::Truncated(reply, truncated) => {
                    let _ = reply.send(settle(failure.as_ref(), Ok(truncated)));
                }
            }
        }
    }

    fn apply(&mut self, batch: Vec<Request>, answers: &mut Vec<Answer>) -> Result<(), LogError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut tables = Tables::open(&txn)?;
            for request in batch {
                match request {
                    Request::Write {
                        guard,
                        writes,
                        author,
                        after,
                        idempotency_key,
                        reply,
                    } => {
                        let result = self.write(&mut tables, guard, writes, author, after, idempotency_key);
                        answers.push(Answer::Written(reply, result?));
                    }
                    Request::Create {
                        key,
                        path,
                        serialized,
                        reply,
                    } => {
                        let result = match tables.created(&key)? {
                            Some(existing) if existing != serialized => {
                                Err(LogError::CreatedOtherwise { path, existing })
                            }
                            Some(_) => Ok(()),
                            None => {
                                let ts = self.tick(&mut tables)?;
                                self.commit_op(&mut tables, &Op::Create { key, serialized, ts })
                            }
                        };
                        answers.push(Answer::Done(reply, result));
                    }
                    Request::Trim { key, before, reply } => {
                        let ts = self.tick(&mut tables)?;
                        let trim = Op::Trim {
                            key,
                            before,
                            ts,
                            removed: None,
                        };
                        self.commit_op(&mut tables, &trim)?;
                        answers.push(Answer::Done(reply, Ok(())));
                    }
                    Request::Adopt { ops, reply } => {
                        for op in &ops {
                            self.commit_op(&mut tables, op)?;
                            self.witness(&mut tables, op.ts())?;
                        }
                        answers.push(Answer::Done(reply, Ok(())));
                    }
                    Request::Truncate { site, after, reply } => {
                        let truncated = tables.truncate(&site, after)?;
                        if self.journal {
                            tables.journal(&Op::Truncate { site, after })?;
                        }
                        answers.push(Answer::Truncated(reply, truncated));
                    }
                    Request::Replay { ops, reply } => {
                        for op in &ops {
                            tables.apply(op)?;
                            self.witness(&mut tables, op.ts())?;
                        }
                        answers.push(Answer::Done(reply, Ok(())));
                    }
                    Request::Forget { through, reply } => {
                        tables.forget(through)?;
                        answers.push(Answer::Done(reply, Ok(())));
                    }
                    Request::SetMeta { name, value, reply } => {
                        tables.set_meta(name, value)?;
                        answers.push(Answer::Done(reply, Ok(())));
                    }
                }
            }
        }
        txn.commit().map_err(db_error)
    }

    /// Validates and applies one write request. The outer error fails the
    /// whole batch (the database failed); the inner one is this request's.
    fn write(
        &mut self,
        tables: &mut Tables<'_>,
        guard: Option<PendingGuard>,
        writes: Vec<PendingWrite>,
        author: String,
        after: Timestamp,
        idempotency_key: Option<String>,
    ) -> Result<Result<Timestamp, LogError>, LogError> {
        if let Some(key) = &idempotency_key
            && let Some(ts) = tables.idempotent(key)?
        {
            return Ok(Ok(ts));
        }
        if let Some(guard) = guard {
            let latest = tables.latest(&guard.key)?;
            if latest != after {
                return Ok(Err(LogError::Conflict {
                    path: guard.path,
                    latest,
                }));
            }
        }
        for write in &writes {
            let latest = tables.latest(&write.key)?;
            if tables.created(&write.key)? == Some(true) && after < latest {
                return Ok(Err(LogError::Conflict {
                    path: write.path.clone(),
                    latest,
                }));
            }
        }
        let ts = match self.clock.next((self.wall)(), after) {
            Ok(ts) => ts,
            Err(error) => return Ok(Err(error.into())),
        };
        let writes = writes
            .into_iter()
            .map(|write| KeyedWrite {
                key: write.key,
                data: write.data,
                author: author.clone(),
            })
            .collect();
        self.commit_op(
            tables,
            &Op::Write {
                ts,
                writes,
                idempotency_key,
            },
        )?;
        self.persist_bound(tables, ts)?;
        Ok(Ok(ts))
    }

    /// A timestamp for a create or a trim, which order among the site's
    /// writes when they replicate.
    fn tick(&mut self, tables: &mut Tables<'_>) -> Result<Timestamp, LogError> {
        let ts = self.clock.next((self.wall)(), Timestamp::ZERO)?;
        self.persist_bound(tables, ts)?;
        Ok(ts)
    }

    fn commit_op(&self, tables: &mut Tables<'_>, op: &Op) -> Result<(), LogError> {
        tables.apply(op)?;
        if self.journal {
            tables.journal(op)?;
        }
        Ok(())
    }

    /// Keeps the clock above a replayed timestamp.
    fn witness(&mut self, tables: &mut Tables<'_>, ts: Timestamp) -> Result<(), LogError> {
        self.clock.witness(ts);
        self.persist_bound(tables, ts)
    }

    fn persist_bound(&mut self, tables: &mut Tables<'_>, ts: Timestamp) -> Result<(), LogError> {
        if let Some(bound) = Clock::bound_for(ts, self.bound) {
            tables.set_meta(CLOCK_BOUND, bound)?;
            self.bound = bound;
        }
        Ok(())
    }
}

/// A request's own result, unless its batch failed to commit.
fn settle<T>(failure: Option<&String>, result: Result<T, LogError>) -> Result<T, LogError> {
    match failure {
        Some(message) => Err(LogError::Database(message.clone())),
        None => result,
    }
}
