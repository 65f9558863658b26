#!/usr/bin/env bash
# What grove's generated sitemap costs, on a 60,000-page site:
#  1. the first /sitemap.xml of a version no host has indexed yet (every
#     page's head read from the store, the sitemap index and its parts
#     built), then the same request cached;
#  2. `grove publish` of a one-page change: the commit builds the new
#     version's page index from the previous one and the tree diff, so it
#     reads one head; the publish and the first sitemap fetch after it;
#  3. serving: grove's /robots.txt and /sitemap.xml (the index) against
#     nginx serving the same bytes from files, wrk -t2 -c64, medians.
# Usage: bench/sitemap.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools
command -v nginx >/dev/null && command -v wrk >/dev/null || apt_install nginx wrk

SECONDS_PER_RUN="${1:-10}"
PAGES="${PAGES:-60000}"
WORK="$(mktemp -d /tmp/grove-bench-sitemap.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$WORK/nginx" -c nginx.conf -s stop 2>/dev/null; rm -rf "$WORK"' EXIT

log "building (release)"
cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench
BIN="$CARGO_TARGET_DIR/release"

log "generating $PAGES pages"
mkdir -p "$WORK/site" "$WORK/nginx/logs" "$WORK/nginx/root"
python3 - "$WORK/site" "$PAGES" <<'PY'
import os, sys
root, pages = sys.argv[1], int(sys.argv[2])
for n in range(pages):
    directory = os.path.join(root, 'posts', f'{n // 1000:03}')
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f'{n:05}.html'), 'w') as page:
        page.write(f'<!doctype html><html><head><title>post {n}</title></head><body><h1>post {n}</h1></body></html>')
open(os.path.join(root, 'index.html'), 'w').write('<h1>home</h1>')
PY
"$BIN/seed" "$WORK/grove/store" bench "$WORK/site" >/dev/null

TOKEN="grove_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
GROVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN/grove-proxy" --state-dir "$WORK/grove" \
    --listen 127.0.0.1:18181 --admin-listen 127.0.0.1:18182 --base-domain localhost &
until curl -s -o /dev/null http://127.0.0.1:18182/health; do sleep 0.1; done

fetch() { curl -s -o "$2" -w '%{time_total}' -H 'Host: bench.localhost' "http://127.0.0.1:18181$1"; }
cold="$(fetch /sitemap.xml "$WORK/nginx/root/sitemap.xml")"
cached="$(fetch /sitemap.xml /dev/null)"
urls=0
for part in $(grep -o 'sitemap-[0-9]*\.xml' "$WORK/nginx/root/sitemap.xml"); do
    fetch "/$part" "$WORK/nginx/root/$part" >/dev/null
    urls=$((urls + $(grep -o '<url>' "$WORK/nginx/root/$part" | wc -l)))
done
fetch /robots.txt "$WORK/nginx/root/robots.txt" >/dev/null

log "publishing a one-page change with grove publish"
echo '<h1>post 0, edited</h1>' >"$WORK/site/posts/000/00000.html"
export GROVE_HOST=http://127.0.0.1:18181 GROVE_TOKEN="$TOKEN" XDG_CONFIG_HOME="$WORK/xdg"
start="$(date +%s.%N)"
"$BIN/grove" publish "$WORK/site" --site bench --json >"$WORK/published.json"
publish_secs="$(python3 -c "import time; print(f'{time.time() - $start:.3f}')")"
after_publish="$(fetch /sitemap.xml /dev/null)"

chmod -R a+rX "$WORK"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    gzip off;
    types { application/xml xml; text/plain txt; }
    server { listen 127.0.0.1:18180; root $WORK/nginx/root; }
}
CONF
nginx -p "$WORK/nginx" -c nginx.conf
until curl -s -o /dev/null http://127.0.0.1:18180/robots.txt; do sleep 0.1; done

run() { # name port path
    local out
    out="$(wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency -H 'Host: bench.localhost' "http://127.0.0.1:$2$3")"
    echo "$1 $3 $(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out")"
}
ROUNDS="${ROUNDS:-3}"
log "load: wrk -t2 -c64 -d${SECONDS_PER_RUN}s, $ROUNDS alternating rounds, medians reported"
for round in $(seq "$ROUNDS"); do
    for path in /robots.txt /sitemap.xml; do
        run nginx 18180 "$path" >>"$WORK/results"
        run grove 18181 "$path" >>"$WORK/results"
    done
done

python3 - "$WORK/results" "$PAGES" "$urls" "$cold" "$cached" "$publish_secs" "$after_publish" "$WORK/published.json" <<'PY'
import json, statistics, sys
results, pages, urls, cold, cached, publish_secs, after, published = sys.argv[1:]
print(f"{pages} pages: the sitemap lists {urls} URLs; {json.load(open(published)).get('sitemap')}")
print(f"first /sitemap.xml of an unindexed version: {float(cold):.3f} s; cached: {float(cached) * 1000:.2f} ms")
print(f"grove publish of a one-page change: {float(publish_secs):.2f} s; first /sitemap.xml after it: {float(after) * 1000:.2f} ms")
def ms(value):
    if value.endswith('us'): return float(value[:-2]) / 1000
    if value.endswith('ms'): return float(value[:-2])
    return float(value[:-1]) * 1000
runs = {}
for line in open(results):
    name, path, rps, p99 = line.split()
    runs.setdefault((name, path), []).append((float(rps), ms(p99)))
for path in ["/robots.txt", "/sitemap.xml"]:
    med = {name: [statistics.median(r[i] for r in runs[(name, path)]) for i in range(2)] for name in ["nginx", "grove"]}
    for name, (rps, p99) in med.items():
        print(f"{name:<6} {path:<14} {rps:>10.0f} req/s  p99 {p99:.2f} ms")
    print(f"ratio grove/nginx {path}: throughput {med['grove'][0] / med['nginx'][0]:.2f}, p99 {med['grove'][1] / med['nginx'][1]:.2f}")
PY
