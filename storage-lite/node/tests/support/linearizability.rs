//! Wing & Gong's linearizability search over a recorded history of
//! appends and reads, against the sequential specification of an
//! append-only log: an append takes effect at once with a timestamp above
//! every entry before it, and a read returns exactly the entries appended
//! before it, in order. Shared by the single-node and failover tests.

use std::collections::HashSet;
use std::time::Instant;

#[derive(Debug, Clone)]
pub enum Op {
    Append { value: String, ts: u64 },
    Read { entries: Vec<(u64, String)> },
}

/// One completed operation and when it was in flight.
#[derive(Debug, Clone)]
pub struct Call {
    pub invoked: Instant,
    pub returned: Instant,
    pub op: Op,
}

/// True if some order of `history` that respects real time (a call that
/// returned before another was invoked comes first) satisfies the spec.
pub fn linearizable(history: &[Call]) -> bool {
    assert!(history.len() <= 128, "the search keeps linearized sets in a u128");
    let mut failed = HashSet::new();
    search(history, 0, &mut failed)
}

fn search(history: &[Call], done: u128, failed: &mut HashSet<u128>) -> bool {
    if done.count_ones() as usize == history.len() {
        return true;
    }
    if failed.contains(&done) {
        return false;
    }
    let pending = || (0..history.len()).filter(move |&i| done & (1 << i) == 0);
    // Only a call invoked before every pending call returned can go next.
    let horizon = pending()
        .map(|i| history[i].returned)
        .min()
        .expect("some call is pending");
    for i in pending() {
        if history[i].invoked > horizon {
            continue;
        }
        if applies(history, done, &history[i].op) && search(history, done | (1 << i), failed) {
            return true;
        }
    }
    failed.insert(done);
    false
}

/// Whether `op` is what the spec answers after the appends in `done`.
fn applies(history: &[Call], done: u128, op: &Op) -> bool {
    let mut log: Vec<(u64, String)> = (0..history.len())
        .filter(|&i| done & (1 << i) != 0)
        .filter_map(|i| match &history[i].op {
            Op::Append { value, ts } => Some((*ts, value.clone())),
            Op::Read { .. } => None,
        })
        .collect();
    log.sort();
    match op {
        Op::Append { ts, .. } => log.last().is_none_or(|(last, _)| ts > last),
        Op::Read { entries } => *entries == log,
    }
}
