#!/usr/bin/env bash
# grove-proxy against nginx on this machine, same files, same load generator
# (wrk, keep-alive, 64 connections), no compression on either side. A third
# row, "floor", is Pingora itself answering a prepared reply of the same size
# with no work at all (bench/src/bin/pingora_floor.rs): the most any server
# built on Pingora could do here.
# Usage: bench/proxy.sh [seconds per run, default 10]
# CLOSE=1 sends `Connection: close`: a new connection per request, which
# measures what each server pays to accept one (grove's admission gate).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools
command -v nginx >/dev/null && command -v wrk >/dev/null || apt_install nginx wrk

SECONDS_PER_RUN="${1:-10}"
WORK="$(mktemp -d /tmp/grove-bench.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$WORK/nginx" -c nginx.conf -s stop 2>/dev/null; rm -rf "$WORK"' EXIT

log "building (release)"
# The same package set as the other benchmarks, so their builds are shared.
cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench
BIN="$CARGO_TARGET_DIR/release"

log "generating data"
mkdir -p "$WORK/site/assets" "$WORK/nginx/logs"
python3 - "$WORK/site" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(7)
words = [''.join(random.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(random.randint(2, 9))) for _ in range(2000)]
def text(size):
    out = []
    while sum(len(w) + 1 for w in out) < size:
        out.append(random.choice(words))
    return ' '.join(out)[:size]
open(os.path.join(root, 'page.html'), 'w').write(text(5 * 1024))
open(os.path.join(root, 'assets', 'app.3f9a1c2e.js'), 'w').write(text(200 * 1024))
PY
chmod -R a+rX "$WORK"  # nginx workers run unprivileged
"$BIN/seed" "$WORK/grove/store" bench "$WORK/site"

cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    gzip off;
    types { text/html html; text/javascript js; }
    server {
        listen 127.0.0.1:18080;
        root $WORK/site;
    }
}
CONF
nginx -p "$WORK/nginx" -c nginx.conf

RUST_LOG=warn "$BIN/grove-proxy" --state-dir "$WORK/grove" --listen 127.0.0.1:18081 --admin-listen 127.0.0.1:18082 --base-domain localhost &
PAGE_BYTES="$(stat -c %s "$WORK/site/page.html")"
ASSET_BYTES="$(stat -c %s "$WORK/site/assets/app.3f9a1c2e.js")"
"$BIN/pingora_floor" proxy 127.0.0.1:18083 "$PAGE_BYTES" >/dev/null 2>&1 &
"$BIN/pingora_floor" proxy 127.0.0.1:18084 "$ASSET_BYTES" >/dev/null 2>&1 &
for port in 18080 18081 18083 18084; do
    until curl -s -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.1; done
done

# Cold miss: the first request for a blob only the store has.
cold="$(curl -s -o /dev/null -w '%{time_total}' -H 'Host: bench.localhost' http://127.0.0.1:18081/assets/app.3f9a1c2e.js)"
warm="$(curl -s -o /dev/null -w '%{time_total}' -H 'Host: bench.localhost' http://127.0.0.1:18081/assets/app.3f9a1c2e.js)"

run() { # server-name port path
    local out
    local close=()
    [ -n "${CLOSE:-}" ] && close=(-H 'Connection: close')
    out="$(wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency -H 'Host: bench.localhost' "${close[@]}" "http://127.0.0.1:$2$3")"
    local rps p50 p99
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    echo "$1 $3 $rps $p50 $p99"
}

to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0; else printf "%.3f", v * 1000 }'; }

# Both must serve the same bytes, or the comparison means nothing.
for path in /page.html /assets/app.3f9a1c2e.js; do
    sizes="$(for port in 18080 18081; do curl -s -o /dev/null -w '%{http_code}:%{size_download} ' -H 'Host: bench.localhost' "http://127.0.0.1:$port$path"; done)"
    echo "$path nginx, grove: $sizes"
    read -r a b <<<"$sizes"
    [ "$a" = "$b" ] || { echo "the servers answer $path differently" >&2; exit 1; }
done

servers() { # path: the servers to load for it
    if [ "$1" = /page.html ]; then echo nginx:18080 grove:18081 floor:18083; else echo nginx:18080 grove:18081 floor:18084; fi
}
ROUNDS="${ROUNDS:-3}"
log "load: wrk -t2 -c64 -d${SECONDS_PER_RUN}s, $ROUNDS alternating rounds, medians reported"
for path in /page.html /assets/app.3f9a1c2e.js; do
    for server in $(servers "$path"); do
        run "${server%%:*}" "${server##*:}" "$path" >/dev/null # warm-up
    done
done
for round in $(seq "$ROUNDS"); do
    for path in /page.html /assets/app.3f9a1c2e.js; do
        for server in $(servers "$path"); do
            read -r name p rps p50 p99 < <(run "${server%%:*}" "${server##*:}" "$path")
            echo "$name $p $rps $(to_ms "$p50") $(to_ms "$p99")" >>"$WORK/results"
        done
    done
done
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = {}
for name, path, rps, p50, p99 in rows:
    med.setdefault((name, path), []).append((float(rps), float(p50), float(p99)))
print(f"{'server':<8} {'path':<26} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}   (median of {len(rows) // 6} runs)")
for path in ["/page.html", "/assets/app.3f9a1c2e.js"]:
    values = {}
    for name in ["nginx", "grove", "floor"]:
        runs = med[(name, path)]
        values[name] = [statistics.median(r[i] for r in runs) for i in range(3)]
        rps, p50, p99 = values[name]
        print(f"{name:<8} {path:<26} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f}")
    g, n, f = values["grove"], values["nginx"], values["floor"]
    print(f"ratio grove/nginx {path:<26} throughput {g[0] / n[0]:.2f}   p99 {g[2] / n[2]:.2f}")
    print(f"ratio floor/nginx {path:<26} throughput {f[0] / n[0]:.2f}   p99 {f[2] / n[2]:.2f}")
    print(f"ratio grove/floor {path:<26} throughput {g[0] / f[0]:.2f}")
PY
echo "cold miss (blob only in the local store): ${cold}s; the same request warm: ${warm}s"
