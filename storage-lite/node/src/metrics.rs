//! The node's Prometheus metrics (`GET /metrics` on its listener), read
//! off the log and the replica at each scrape into a registry of its own,
//! so nothing is kept between scrapes.

use std::sync::atomic::Ordering;

use prometheus::{Encoder, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::log::Log;
use crate::replica::Replica;

/// The metrics as Prometheus text.
pub fn render(log: &Log, replica: Option<&Replica>) -> String {
    let registry = Registry::new();
    let counter = |name: &str, help: &str, value: u64| {
        let counter = IntCounter::new(name, help).expect("metric names are valid");
        counter.inc_by(value);
        registry.register(Box::new(counter)).expect("metrics register once");
    };
    counter(
        "grove_node_writes_total",
        "Writes acknowledged by the log",
        log.stats().writes.load(Ordering::Relaxed),
    );
    counter(
        "grove_node_commits_total",
        "Commits of the log (group commit: fewer than writes)",
        log.stats().commits.load(Ordering::Relaxed),
    );
    if let Some(replica) = replica {
        let stats = replica.stats();
        counter(
            "grove_node_failovers_total",
            "Sites this node took over from a primary whose lease lapsed",
            stats.failovers.load(Ordering::Relaxed),
        );
        counter(
            "grove_node_backups_dropped_total",
            "Backups this primary dropped from a site's in-sync set for not acknowledging in time",
            stats.backups_dropped.load(Ordering::Relaxed),
        );
        counter(
            "grove_node_backups_joined_total",
            "Backups this primary took back into a site's in-sync set once caught up",
            stats.backups_joined.load(Ordering::Relaxed),
        );
        let gauge = |name: &str, help: &str| {
            let gauge = IntGaugeVec::new(Opts::new(name, help), &["site", "role"]).expect("metric names are valid");
            registry
                .register(Box::new(gauge.clone()))
                .expect("metrics register once");
            gauge
        };
        let epoch = gauge(
            "grove_node_site_epoch",
            "The site epoch (its directory record's etcd revision)",
        );
        let in_sync = gauge("grove_node_site_in_sync", "Nodes in the site's in-sync set");
        let lag = gauge(
            "grove_node_replication_lag_ms",
            "On a primary: milliseconds of the site's history its backup has not acknowledged",
        );
        for row in replica.sites() {
            let labels = [row.site.as_str(), row.role];
            epoch.with_label_values(&labels).set(row.epoch);
            in_sync
                .with_label_values(&labels)
                .set(i64::try_from(row.in_sync).unwrap_or(i64::MAX));
            lag.with_label_values(&labels)
                .set(i64::try_from(row.lag_ms).unwrap_or(i64::MAX));
        }
        let lease = IntGauge::new(
            "grove_node_lease_held",
            "1 while this node's etcd lease is certainly held",
        )
        .expect("metric names are valid");
        lease.set(i64::from(replica.lease_held()));
        registry.register(Box::new(lease)).expect("metrics register once");
    }
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("metrics encode");
    String::from_utf8(text).expect("metrics are text")
}
