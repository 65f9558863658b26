//! The storage node's log under SIGKILL: a writer process acknowledges
//! writes and is killed at random points; after each restart every
//! acknowledged write is present, and timestamps keep increasing across
//! restarts. The test binary re-runs itself as the writer
//! (`GROVE_TEST_CHILD`), so the writer shares nothing with the checker.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_core::SiteName;
use grove_core::timestamp::Timestamp;
use grove_node::Log;
use libtest_mimic::{Arguments, Failed, Trial};
use rand::Rng;

const CHILD_ROLE: &str = "GROVE_TEST_CHILD";
/// Concurrent writers in the child, so kills land inside group commits.
const WRITERS: usize = 8;

fn main() {
    if std::env::var(CHILD_ROLE).is_ok() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        runtime().block_on(write_forever(Path::new(&args[0]), &args[1]));
        return;
    }
    let tests = vec![Trial::test(
        "writers_killed_at_random_points_lose_no_acknowledged_write",
        crash_test,
    )];
    libtest_mimic::run(&Arguments::from_args(), tests).exit();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn site() -> SiteName {
    SiteName::parse("blog").unwrap()
}

/// The child: appends from several tasks until killed, printing
/// `ack <ts> <data>` once each append returned.
async fn write_forever(file: &Path, label: &str) {
    let log = Arc::new(Log::open(file).unwrap());
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|task| {
            let (log, stdout, label) = (Arc::clone(&log), Arc::clone(&stdout), label.to_owned());
            tokio::spawn(async move {
                for i in 0.. {
                    let data = format!("\"{label}/{task}/{i}\"");
                    let ts = log
                        .append(&site(), "events", data.clone(), "crash", Timestamp::ZERO)
                        .await
                        .unwrap();
                    let mut out = stdout.lock().unwrap();
                    writeln!(out, "ack {} {data}", ts.as_u64()).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition { Ok(()) } else { Err(message().into()) }
}

fn crash_test() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("node.redb");
    let mut rng = rand::rng();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut kills = 0;
    for round in 0..12 {
        let mut child = Command::new(std::env::current_exe()?)
            .env(CHILD_ROLE, "writer")
            .arg(&file)
            .arg(format!("round{round}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(rng.random_range(100..500)));
        if child.try_wait()?.is_none() {
            child.kill()?; // SIGKILL
            kills += 1;
        }
        child.wait()?;
        let newest_before = acked.keys().next_back().copied().unwrap_or(0);
        let mut round_acks = 0;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line?;
            let mut parts = line.splitn(3, ' ');
            let (Some("ack"), Some(ts), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
                continue; // the kill may cut the last line short
            };
            let Ok(ts) = ts.parse::<u64>() else { continue };
            ensure(ts > newest_before, || {
                format!("round {round} acked {ts}, not above {newest_before} from before the restart")
            })?;
            ensure(acked.insert(ts, data.to_owned()).is_none(), || {
                format!("timestamp {ts} acked twice")
            })?;
            round_acks += 1;
        }
        ensure(round_acks > 0, || format!("round {round} acknowledged nothing"))?;

        // Every acknowledged write is there, with its data, in order.
        let log = Log::open(&file)?;
        let mut stored = BTreeMap::new();
        let mut after = Timestamp::ZERO;
        loop {
            let page = log.read(&site(), "events", after, 1000)?;
            for entry in &page.entries {
                stored.insert(entry.ts.as_u64(), entry.data.get().to_owned());
            }
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
        for (ts, data) in &acked {
            ensure(stored.get(ts) == Some(data), || {
                format!("acknowledged write {ts} {data} is missing after the restart")
            })?;
        }
    }
    ensure(kills >= 8, || format!("only {kills} of 12 writers were killed mid-run"))?;
    // And the clock resumes above everything ever acknowledged.
    let log = Log::open(&file)?;
    let next = runtime().block_on(log.append(&site(), "events", "\"last\"".to_owned(), "crash", Timestamp::ZERO))?;
    let newest = acked.keys().next_back().copied().unwrap_or(0);
    ensure(next.as_u64() > newest, || format!("{next} is not above {newest}"))
}
