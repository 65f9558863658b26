//! CDN purge under repeated publishes, on Cloudflare Free-plan limits (5
//! requests a minute, burst 25, 100 tags a request), against the fake
//! Cloudflare API that enforces them.
//!
//! A 10,000-page site is published, then, for 1, 50 and 5,000 changed pages
//! in turn, 10 publishes run back to back and the queue drains. Reported per
//! phase: purge API requests, tags and hosts sent, 429s, and the time from
//! each commit to the end of its purge (median and worst), from the host's
//! own records (`grove versions --json`).
//!
//! Usage: `purge GROVE_PROXY_BIN GROVE_BIN WORK_DIR`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grove_testkit::cloudflare::{FakeCloudflare, Limits};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const PAGES: usize = 10_000;
const ROUNDS: usize = 10;
const PHASES: [usize; 3] = [1, 50, 5_000];

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [proxy_bin, grove_bin, work] = args.as_slice() else {
        eprintln!("usage: purge GROVE_PROXY_BIN GROVE_BIN WORK_DIR");
        std::process::exit(2);
    };
    let limits = Limits::default();
    let fake = FakeCloudflare::start(limits.clone())
        .await
        .expect("starting the fake Cloudflare API");

    let site = work.join("site");
    for page in 0..PAGES {
        write_page(&site, page, 0);
    }
    let listen = "127.0.0.1:18093";
    let token = format!("grove_{}", "ab".repeat(32));
    let config = work.join("grove.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\nadmin_listen = \"\"\nstate_dir = \"{}\"\n[cdn.cloudflare]\nzone_id = \"{}\"\napi_base = \"{}\"\n",
            work.join("state").display(),
            limits.zone_id,
            fake.api_base()
        ),
    )
    .expect("writing the config");
    let _proxy = Proxy(
        Command::new(proxy_bin)
            .arg("--config")
            .arg(&config)
            .env("GROVE_ADMIN_TOKEN", &token)
            .env("CLOUDFLARE_API_TOKEN", &limits.token)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("starting grove-proxy"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < deadline, "grove-proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let grove = |args: &[&str]| -> Value {
        let output = Command::new(grove_bin)
            .args(args)
            .env("GROVE_HOST", format!("http://{listen}"))
            .env("GROVE_TOKEN", &token)
            .env("XDG_CONFIG_HOME", work.join("cli"))
            .output()
            .expect("running grove");
        assert!(
            output.status.success(),
            "grove {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("grove --json output")
    };
    let site_arg = site.to_str().expect("a UTF-8 path");
    grove(&["publish", site_arg, "--site", "bench", "--json"]);

    println!(
        "{PAGES}-page site, Cloudflare Free limits: 5 requests/min, burst 25, 100 tags/request, host purge above 500 tags"
    );
    println!("{ROUNDS} publishes back to back per phase, then the queue drains\n");
    println!(
        "changed pages | API requests | tags sent | hosts sent | 429s | commit->purged median | worst | last commit->queue empty"
    );
    for changed in PHASES {
        let requests_before = fake.requests();
        let purges_before = fake.purges().len();
        let mut versions = Vec::new();
        let mut last_commit = Instant::now();
        for round in 1..=ROUNDS {
            for page in 0..changed {
                write_page(&site, page * (PAGES / changed), round + changed);
            }
            let summary = grove(&["publish", site_arg, "--site", "bench", "--json"]);
            versions.push(summary["version"].as_u64().expect("a version"));
            last_commit = Instant::now();
        }
        let latencies = loop {
            let listing = grove(&["versions", "--site", "bench", "--json"]);
            if let Some(latencies) = settled(&listing, &versions) {
                break latencies;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let drained = last_commit.elapsed();
        let purges = &fake.purges()[purges_before..];
        let tags: usize = purges.iter().map(|purge| purge.tags.len()).sum();
        let hosts: usize = purges.iter().map(|purge| purge.hosts.len()).sum();
        let mut sorted = latencies.clone();
        sorted.sort();
        println!(
            "{changed:>13} | {:>12} | {tags:>9} | {hosts:>10} | {:>4} | {:>21.2?} | {:>5.2?} | {drained:.2?}",
            fake.requests() - requests_before,
            fake.refusals().len(),
            sorted[sorted.len() / 2],
            sorted[sorted.len() - 1],
        );
    }
}

/// Page `page` of the site, in its `edition`: about 5 KB of HTML.
fn write_page(site: &Path, page: usize, edition: usize) {
    let path = site.join(format!("posts/{:02}/post-{page:05}/index.html", page / 500));
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating a page directory");
    let filler = "lorem ipsum dolor sit amet ".repeat(190);
    std::fs::write(
        path,
        format!("<!doctype html><title>post {page}</title><p>edition {edition}</p><p>{filler}"),
    )
    .expect("writing a page");
}

/// Commit-to-purged time of each of `versions`, once every one is done.
fn settled(listing: &Value, versions: &[u64]) -> Option<Vec<Duration>> {
    let created = |n: u64| {
        listing["versions"]
            .as_array()?
            .iter()
            .find(|version| version["n"] == n)
            .and_then(|version| OffsetDateTime::parse(version["created_at"].as_str()?, &Rfc3339).ok())
    };
    versions
        .iter()
        .map(|&n| {
            let purge = listing["purges"]
                .as_array()?
                .iter()
                .find(|purge| purge["version"] == n)?;
            assert_ne!(purge["state"], "failed", "version {n}'s purge failed: {purge}");
            let finished = OffsetDateTime::parse(purge["finished_at"].as_str()?, &Rfc3339).ok()?;
            Some((finished - created(n)?).try_into().unwrap_or_default())
        })
        .collect()
}
