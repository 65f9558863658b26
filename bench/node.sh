#!/usr/bin/env bash
# The storage node against etcd on this machine: both fsync every commit
# (etcd's default; the node's redb commits are durable before any ack), both
# on the same disk, both driven by one load generator (bench/src/bin/kv.rs)
# over HTTP/1.1 + JSON on kept-alive connections (etcd via its built-in
# gRPC-gateway). 256-byte values; 1 and 64 concurrent writers; then the delay
# from sending a write to a watcher receiving it.
# Usage: bench/node.sh [seconds per run, default 10] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools
command -v etcd >/dev/null || apt_install etcd-server

SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-3}"
WORK="$(mktemp -d /var/tmp/grove-node-bench.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

log "building (release)"
# The same package set as the other benchmarks, so their builds are shared.
cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench -p grove-node
BIN="$CARGO_TARGET_DIR/release"

ETCD_URL=http://127.0.0.1:12379
NODE_URL=http://127.0.0.1:18090
etcd --data-dir "$WORK/etcd" --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
    --initial-cluster default=http://127.0.0.1:12380 --quota-backend-bytes 8589934592 \
    --log-level error > "$WORK/etcd.log" 2>&1 &
mkdir -p "$WORK/store"
TOKEN="$("$BIN/kv" token "$WORK/store")"
"$BIN/grove-storage" --listen 127.0.0.1:18090 --data-dir "$WORK/node" --store-dir "$WORK/store" \
    --requests-per-second 100000000 > "$WORK/node.log" 2>&1 &
for url in "$ETCD_URL/health" "$NODE_URL/"; do
    for _ in $(seq 100); do curl -s -o /dev/null "$url" && break; sleep 0.1; done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A RESULTS
for clients in 1 64; do
    for round in $(seq "$ROUNDS"); do
        for target in etcd grove; do
            url=$([ "$target" = etcd ] && echo "$ETCD_URL" || echo "$NODE_URL")
            line="$("$BIN/kv" writes "$target" "$url" "$TOKEN" "$clients" "$SECONDS_PER_RUN")"
            log "writes, $clients clients, round $round, $target: $line (writes/s p50_ms p99_ms)"
            RESULTS[$target,$clients]+="$line"$'\n'
        done
    done
done
for round in $(seq "$ROUNDS"); do
    for target in etcd grove; do
        url=$([ "$target" = etcd ] && echo "$ETCD_URL" || echo "$NODE_URL")
        line="$("$BIN/kv" watch "$target" "$url" "$TOKEN" 300)"
        log "watch, round $round, $target: $line (p50_ms p99_ms)"
        RESULTS[$target,watch]+="$line"$'\n'
    done
done

column() { printf '%s' "${RESULTS[$1]}" | awk "{ print \$$2 }" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "| load | etcd writes/s | node writes/s | node/etcd | etcd p50 ms | node p50 ms | etcd p99 ms | node p99 ms | p99 node/etcd |"
echo "|---|---|---|---|---|---|---|---|---|"
for clients in 1 64; do
    e_t=$(column "etcd,$clients" 1); g_t=$(column "grove,$clients" 1)
    e_50=$(column "etcd,$clients" 2); g_50=$(column "grove,$clients" 2)
    e_99=$(column "etcd,$clients" 3); g_99=$(column "grove,$clients" 3)
    echo "| $clients clients | $e_t | $g_t | $(ratio "$g_t" "$e_t") | $e_50 | $g_50 | $e_99 | $g_99 | $(ratio "$g_99" "$e_99") |"
done
e_50=$(column etcd,watch 1); g_50=$(column grove,watch 1)
e_99=$(column etcd,watch 2); g_99=$(column grove,watch 2)
echo
echo "| watch delivery (write sent -> event received) | etcd p50 ms | node p50 ms | etcd p99 ms | node p99 ms | p99 node/etcd |"
echo "|---|---|---|---|---|---|"
echo "| 1 writer, 1 watcher, 300 writes 10 ms apart | $e_50 | $g_50 | $e_99 | $g_99 | $(ratio "$g_99" "$e_99") |"
echo "(medians of $ROUNDS rounds of ${SECONDS_PER_RUN} s, runs alternating; data in $WORK on $(df --output=source "$WORK" | tail -1))"
