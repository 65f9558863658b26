//! Records a concurrent history of appends and reads against the storage
//! node's log and checks it is linearizable (Wing & Gong's search) against
//! the sequential specification of an append-only log:
//! - an append takes effect at once and gets a timestamp above every entry
//!   before it;
//! - a read returns exactly the entries appended before it, in order.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use grove_core::SiteName;
use grove_core::timestamp::Timestamp;
use grove_node::Log;

#[path = "support/linearizability.rs"]
mod linearizability;
use linearizability::{Call, Op, linearizable};

async fn record(log: Arc<Log>) -> Vec<Call> {
    let site = SiteName::parse("blog").unwrap();
    let history = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let (log, history, site) = (Arc::clone(&log), Arc::clone(&history), site.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..6 {
                let value = format!("\"{writer}/{i}\"");
                let invoked = Instant::now();
                let ts = log
                    .append(&site, "h", value.clone(), "w", Timestamp::ZERO)
                    .await
                    .unwrap();
                let returned = Instant::now();
                let op = Op::Append { value, ts: ts.as_u64() };
                history.lock().unwrap().push(Call { invoked, returned, op });
            }
        }));
    }
    for _reader in 0..2 {
        let (log, history, site) = (Arc::clone(&log), Arc::clone(&history), site.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..8 {
                let invoked = Instant::now();
                let page = log.read(&site, "h", Timestamp::ZERO, 1000).unwrap();
                let returned = Instant::now();
                let entries = page
                    .entries
                    .iter()
                    .map(|entry| (entry.ts.as_u64(), entry.data.get().to_owned()))
                    .collect();
                history.lock().unwrap().push(Call {
                    invoked,
                    returned,
                    op: Op::Read { entries },
                });
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(history).unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_and_reads_are_linearizable() {
    for _round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(&dir.path().join("log.redb")).unwrap());
        let history = record(log).await;
        assert_eq!(history.len(), 40);
        assert!(linearizable(&history), "not linearizable: {history:#?}");
    }
}

#[test]
fn the_checker_refuses_histories_that_are_not_linearizable() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
    let append = |value: &str, ts: u64, from: u64, to: u64| Call {
        invoked: at(from),
        returned: at(to),
        op: Op::Append {
            value: value.to_owned(),
            ts,
        },
    };
    let read = |entries: &[(u64, &str)], from: u64, to: u64| Call {
        invoked: at(from),
        returned: at(to),
        op: Op::Read {
            entries: entries.iter().map(|(ts, value)| (*ts, (*value).to_owned())).collect(),
        },
    };
    // A read that misses an append which had already returned.
    assert!(!linearizable(&[append("a", 1, 0, 1), read(&[], 2, 3)]));
    // A later append with a smaller timestamp.
    assert!(!linearizable(&[append("a", 5, 0, 1), append("b", 4, 2, 3)]));
    // A read seeing b without a, though a returned before b began.
    assert!(!linearizable(&[
        append("a", 1, 0, 1),
        append("b", 2, 2, 3),
        read(&[(2, "b")], 4, 5)
    ]));
    // Overlapping calls may go either way.
    assert!(linearizable(&[
        append("a", 1, 0, 10),
        read(&[], 1, 2),
        read(&[(1, "a")], 3, 4)
    ]));
}
