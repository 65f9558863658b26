//! Zero-downtime upgrade: a new process takes over the listeners of the old
//! one (Pingora's `--upgrade` + SIGQUIT) while clients keep connecting.

use std::time::{Duration, Instant};

use grove_testkit::proxy::{Proxy, publish, site_dir};

#[tokio::test]
async fn an_upgrade_drops_no_request() {
    let mut proxy = Proxy::start("");
    let dir = site_dir(&[("index.html", "up")]);
    publish(proxy.local_store(), "demo", dir.path()).await;
    let url = proxy.url("demo.localhost", "/");
    let addr = proxy.addr;
    let prober = tokio::spawn(async move {
        let mut answered = 0;
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            // A fresh connection each time, so every request meets whichever
            // process holds the listener at that moment.
            let client = reqwest::Client::builder()
                .resolve("demo.localhost", addr)
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let response = client
                .get(&url)
                .send()
                .await
                .expect("a request failed during the upgrade");
            assert_eq!(response.text().await.unwrap(), "up");
            answered += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answered
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut successor = proxy.spawn_upgrade();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let status = std::process::Command::new("kill")
        .args(["-QUIT", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let answered = prober.await.unwrap();
    assert!(answered > 100, "only {answered} requests were made");
    assert!(
        proxy.wait_exit(Duration::from_secs(20)),
        "the old process did not finish its graceful exit"
    );
    assert!(successor.try_wait().unwrap().is_none(), "the new process is running");
    let after = reqwest::Client::builder()
        .resolve("demo.localhost", proxy.addr)
        .build()
        .unwrap()
        .get(proxy.url("demo.localhost", "/"))
        .send()
        .await
        .expect("the new process serves the old one's listener");
    assert_eq!(after.text().await.unwrap(), "up");
    successor.kill().unwrap();
    successor.wait().unwrap();
}
