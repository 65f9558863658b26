#!/usr/bin/env bash
# Replicated writes: two grove-storage nodes in etcd mode (the primary
# acknowledges once its backup made the write durable) against Debian's
# etcd as a three-member cluster (a write commits on a quorum), all on this
# machine, all fsyncing, driven by one load generator (bench/src/bin/kv.rs)
# over HTTP/1.1 + JSON. 256-byte values, 1 and 64 concurrent writers. Then
# failover: kill -9 of grove's primary, or of etcd's leader, and the time to
# the first acknowledged write after it.
# Usage: bench/failover.sh [seconds per run, default 10] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools
ensure_etcd

SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-3}"
WORK="$(mktemp -d /var/tmp/grove-failover-bench.XXXXXX)"
trap 'kill -CONT $(jobs -p) 2>/dev/null; kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

log "building (release)"
cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench -p grove-node
BIN="$CARGO_TARGET_DIR/release"

CLUSTER=m1=http://127.0.0.1:22380,m2=http://127.0.0.1:23380,m3=http://127.0.0.1:24380
declare -A ETCD_PID
start_etcd() { # member number 1..3, "new" or "existing"
    local i=$1 port=$((21379 + $1 * 1000))
    etcd --name "m$i" --data-dir "$WORK/etcd$i" \
        --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-cluster "$CLUSTER" --initial-cluster-state "$2" --initial-cluster-token grove-bench \
        --quota-backend-bytes 8589934592 --log-level error >> "$WORK/etcd$i.log" 2>&1 &
    ETCD_PID[$i]=$!
}
for i in 1 2 3; do start_etcd "$i" new; done
ETCD_URLS=http://127.0.0.1:22379,http://127.0.0.1:23379,http://127.0.0.1:24379
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:22379/health && break; sleep 0.1; done

mkdir -p "$WORK/store"
TOKEN="$("$BIN/kv" token "$WORK/store")"
head -c 32 /dev/urandom | base64 > "$WORK/peer-secret"
declare -A NODE_PID
start_node() { # name, port, region
    "$BIN/grove-storage" --name "$1" --listen "127.0.0.1:$2" --region "$3" --data-dir "$WORK/node-$1" \
        --store-dir "$WORK/store" --etcd "$ETCD_URLS" --peer-secret-file "$WORK/peer-secret" \
        --lease-ttl-secs 10 --requests-per-second 100000000 >> "$WORK/node-$1.log" 2>&1 &
    NODE_PID[$1]=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$2/metrics" && break; sleep 0.1; done
}
start_node a 18091 eu
start_node b 18092 us
sleep 1
# The site's first write places it on a, with b as its backup; wait for b in sync.
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -d '{"path":"warm","data":1}' \
    http://127.0.0.1:18091/v1/sites/bench/write
record() {
    curl -s -X POST http://127.0.0.1:22379/v3/kv/range -d "{\"key\":\"$(printf /grove/sites/bench | base64)\"}" |
        python3 -c 'import sys, json, base64; kvs = json.load(sys.stdin).get("kvs", []); print(base64.b64decode(kvs[0]["value"]).decode() if kvs else "")'
}
for _ in $(seq 100); do record | grep -q '"in_sync":\["a","b"\]' && break; sleep 0.1; done
record | grep -q '"in_sync":\["a","b"\]' || { echo "the backup never came in sync" >&2; exit 1; }

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A RESULTS
for clients in 1 64; do
    for round in $(seq "$ROUNDS"); do
        for target in etcd grove; do
            url=$([ "$target" = etcd ] && echo http://127.0.0.1:22379 || echo http://127.0.0.1:18091)
            line="$("$BIN/kv" writes "$target" "$url" "$TOKEN" "$clients" "$SECONDS_PER_RUN")"
            log "replicated writes, $clients clients, round $round, $target: $line (writes/s p50_ms p99_ms)"
            RESULTS[$target,$clients]+="$line"$'\n'
        done
    done
done
record | grep -q '"in_sync":\["a","b"\]' || { echo "the backup fell out of sync during the runs" >&2; record >&2; exit 1; }

# Failover, grove: kill -9 of the primary, then one write tried on both nodes.
kill -9 "${NODE_PID[a]}"
GROVE_FAILOVER_MS="$("$BIN/kv" first-ack grove http://127.0.0.1:18091/v1/sites/bench/write,http://127.0.0.1:18092/v1/sites/bench/write "$TOKEN")"
log "grove failover: ${GROVE_FAILOVER_MS} ms from kill -9 of the primary to the first acknowledged write"
# Failover, etcd: kill -9 of the leader, then one put tried on the others.
leader=""
for i in 1 2 3; do
    port=$((21379 + i * 1000))
    status="$(curl -s -X POST "http://127.0.0.1:$port/v3/maintenance/status" -d '{}')"
    if python3 -c 'import sys, json; s = json.loads(sys.argv[1]); sys.exit(0 if s["header"]["member_id"] == s["leader"] else 1)' "$status"; then leader=$i; fi
done
others=""
for i in 1 2 3; do [ "$i" = "$leader" ] || others+="${others:+,}http://127.0.0.1:$((21379 + i * 1000))"; done
kill -9 "${ETCD_PID[$leader]}"
ETCD_FAILOVER_MS="$("$BIN/kv" first-ack etcd "$others" "$TOKEN")"
log "etcd failover: ${ETCD_FAILOVER_MS} ms from kill -9 of the leader (m$leader) to the first acknowledged put"

column() { printf '%s' "${RESULTS[$1]}" | awk "{ print \$$2 }" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "| load | etcd (3 members) writes/s | grove (primary + backup) writes/s | grove/etcd | etcd p50 ms | grove p50 ms | etcd p99 ms | grove p99 ms | p99 grove/etcd |"
echo "|---|---|---|---|---|---|---|---|---|"
for clients in 1 64; do
    e_t=$(column "etcd,$clients" 1); g_t=$(column "grove,$clients" 1)
    e_50=$(column "etcd,$clients" 2); g_50=$(column "grove,$clients" 2)
    e_99=$(column "etcd,$clients" 3); g_99=$(column "grove,$clients" 3)
    echo "| $clients clients | $e_t | $g_t | $(ratio "$g_t" "$e_t") | $e_50 | $g_50 | $e_99 | $g_99 | $(ratio "$g_99" "$e_99") |"
done
echo
echo "| failover (kill -9 -> first acknowledged write) | etcd leader | grove primary (lease TTL 10 s) |"
echo "|---|---|---|"
echo "| one run | ${ETCD_FAILOVER_MS} ms | ${GROVE_FAILOVER_MS} ms |"
echo "(medians of $ROUNDS rounds of ${SECONDS_PER_RUN} s, runs alternating; data in $WORK on $(df --output=source "$WORK" | tail -1))"
