#!/usr/bin/env bash
# grove-proxy against nginx where size matters, on this machine, in one run:
#   1. docs     a working set far larger than grove's memory cache: Debian's
#               rust-doc (~32k HTML pages, ~450 MB of them) with
#               `[cache] memory_bytes` at 64 MiB, random pages under wrk;
#               nginx serves the same tree from the page cache.
#   2. sites    SITES small sites (default 10,000) on one proxy: memory per
#               site once every site was asked for, and req/s on one of them
#               against a proxy holding that site alone.
#   3. memory   resident memory at idle and under load (a 5 KB page): grove's
#               one process against nginx's master and workers.
#   4. restart  start-up time with CACHE_GB (default 1) of blobs in grove's
#               disk cache: exec to the first 200 after a SIGTERM, against a
#               start with an empty disk cache.
# A results table with ratios is printed at the end.
#
# Usage: bench/proxy-scale.sh
# Environment:
#   SECONDS_PER_RUN  seconds per wrk run (10)
#   ROUNDS           wrk runs per figure, medians reported (3)
#   SITES            sites of row 2 (10000)
#   CACHE_GB         gigabytes put in the disk cache for row 4 (1; 0.1 is quick)
#   SEED_JOBS        seed processes run at once for row 2 (8)
#   ROWS             which rows to run ("docs sites memory restart")
#   NO_BUILD=1       use the binaries already in $CARGO_TARGET_DIR/release
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools
command -v nginx >/dev/null && command -v wrk >/dev/null || apt_install nginx wrk
command -v curl >/dev/null && command -v python3 >/dev/null || apt_install curl python3

SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
ROUNDS="${ROUNDS:-3}"
SITES="${SITES:-10000}"
CACHE_GB="${CACHE_GB:-1}"
SEED_JOBS="${SEED_JOBS:-8}"
ROWS="${ROWS:-docs sites memory restart}"

# Loopback ports the kernel finds free: other benchmarks may be running on
# this machine (bench/proxy.sh takes 18080-18084).
free_ports() { # count
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for sock in socks:
    sock.bind(("127.0.0.1", 0))
print(" ".join(str(sock.getsockname()[1]) for sock in socks))' "$1"
}
# nginx: the 5 KB page (row 3) and rust-doc (row 1); grove's public and
# admin listeners (one grove runs at a time).
read -r NGINX_PLAIN NGINX_DOCS GROVE GROVE_ADMIN < <(free_ports 4)
GROVE_PID=""

WORK="$(mktemp -d /tmp/grove-scale.XXXXXX)"
BIN="$CARGO_TARGET_DIR/release"

cleanup() {
    # SIGINT is Pingora's fast shutdown; SIGTERM would keep grove up for its
    # grace period, and the rm below would race with it.
    local pids=()
    mapfile -t pids < <(jobs -pr)
    [ ${#pids[@]} -gt 0 ] && kill -INT "${pids[@]}" 2>/dev/null
    for _ in $(seq 50); do
        [ -z "$(jobs -pr)" ] && break
        sleep 0.1
    done
    mapfile -t pids < <(jobs -pr)
    [ ${#pids[@]} -gt 0 ] && kill -KILL "${pids[@]}" 2>/dev/null
    [ -f "$WORK/nginx/nginx.pid" ] && nginx -p "$WORK/nginx" -c nginx.conf -s stop 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
# A signal ends the script through `exit`, so the EXIT trap runs.
trap 'exit 130' INT TERM HUP

want() { [[ " $ROWS " == *" $1 "* ]]; }

# Results, as "key value" lines, read by the table at the end; wrk runs, as
# "label req/s p50_ms p99_ms bad" lines, reported as medians.
result() { echo "$1 $2" >>"$WORK/results"; }

# ---------------------------------------------------------------- helpers

to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0; else printf "%.3f", v * 1000 }'; }

# One wrk run: -t1 -c64 on port with Host: host, then any extra wrk
# arguments (a Lua script). Prints "req/s p50_ms p99_ms bad", where bad
# counts non-2xx/3xx answers and socket errors: a fast server that answers
# errors must not look good.
wrk_run() { # port host path [wrk args...]
    local port="$1" host="$2" path="$3"
    shift 3
    local rps p50 p99 bad
    read -r rps p50 p99 bad < <(
        wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" --latency -H "Host: $host" "$@" "http://127.0.0.1:$port$path" |
            awk '/Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
                 /Non-2xx/ { bad += $NF }
                 /Socket errors/ { gsub(",", ""); bad += $4 + $6 + $8 + $10 }
                 END { print rps, p50, p99, bad + 0 }'
    )
    echo "$rps $(to_ms "$p50") $(to_ms "$p99") $bad"
}

# wrk_run, recorded under label for the medians of the table.
wrk_record() { # label port host path [wrk args...]
    local label="$1"
    shift
    echo "$label $(wrk_run "$@")" | tee -a "$WORK/runs" >&2
}

# Resident and proportional set sizes in KiB, summed over pids. RSS counts
# pages shared between nginx's master and workers once per process; PSS
# splits them, so it is the fairer sum for several processes.
mem_kb() { # VmRSS|Pss pid...
    local field="$1"
    shift
    local files=()
    for pid in "$@"; do
        if [ "$field" = Pss ]; then files+=("/proc/$pid/smaps_rollup"); else files+=("/proc/$pid/status"); fi
    done
    awk -v f="$field:" '$1 == f { s += $2 } END { print s + 0 }' "${files[@]}" 2>/dev/null || true
}
# A server's processes, one a line: nginx's master and its workers, or grove.
server_pids() { # nginx|grove
    if [ "$1" = grove ]; then
        echo "$GROVE_PID"
    else
        local master
        master="$(cat "$WORK/nginx/nginx.pid")"
        echo "$master"
        ps -o pid= --ppid "$master" | tr -d ' '
    fi
}

# Grove's counter family summed by label value, as "label=value ..."
# (e.g. grove_blob_lookups_total by tier).
metric_by_label() { # name
    curl -s "http://127.0.0.1:$GROVE_ADMIN/metrics" |
        awk -v name="$1" 'index($0, name "{") == 1 { match($0, /"[^"]*"/); key = substr($0, RSTART + 1, RLENGTH - 2); s[key] += $NF }
                          END { for (k in s) printf "%s=%d ", k, s[k] }'
}

# The config of one grove: its memory cache, and no service-worker tag in
# HTML, so grove's pages are byte for byte nginx's.
grove_config() { # file memory_bytes disk_bytes
    cat >"$1" <<TOML
service_worker = false
[cache]
memory_bytes = $2
disk_bytes = $3
TOML
}

# Starts grove in this shell (so the trap and stop_grove find it) and
# waits for its listener. Any HTTP answer will do: the probe names no site.
start_grove() { # state_dir config
    RUST_LOG=warn "$BIN/grove-proxy" --config "$2" --state-dir "$1" --listen "127.0.0.1:$GROVE" \
        --admin-listen "127.0.0.1:$GROVE_ADMIN" --base-domain localhost >>"$WORK/grove.log" 2>&1 &
    GROVE_PID=$!
    wait_for_grove "" /
}

# Polls every 10 ms until grove answers path on host with want (default
# any answer at all); fails if grove exits first.
wait_for_grove() { # host path [want]
    local host="$1" path="$2" want="${3:-}" code
    local headers=()
    [ -n "$host" ] && headers=(-H "Host: $host")
    while true; do
        code="$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "${headers[@]}" "http://127.0.0.1:$GROVE$path" || true)"
        if [ -n "$want" ] && [ "$code" = "$want" ]; then return; fi
        if [ -z "$want" ] && [ "$code" != 000 ]; then return; fi
        if ! kill -0 "$GROVE_PID" 2>/dev/null; then
            echo "grove-proxy exited; its log:" >&2
            tail -20 "$WORK/grove.log" >&2
            exit 1
        fi
        sleep 0.01
    done
}

stop_grove() { # [signal, default INT: Pingora's fast shutdown]
    kill -"${1:-INT}" "$GROVE_PID"
    wait "$GROVE_PID" || true
    GROVE_PID=""
}

# Requests each "host path" line of stdin once, on keep-alive connections,
# and prints "ok bad seconds"; the first few failures go to stderr.
touch_all() { # port threads
    python3 "$WORK/touch.py" "$1" "$2"
}

# ---------------------------------------------------------------- setup

if [ -z "${NO_BUILD:-}" ]; then
    log "building (release)"
    # The same package set as the other benchmarks, so their builds are shared.
    cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench
fi
for binary in grove-proxy seed; do
    [ -x "$BIN/$binary" ] || { echo "$BIN/$binary is missing: build it, or drop NO_BUILD" >&2; exit 1; }
done

# touch_all's client (a file: its stdin is the list).
cat >"$WORK/touch.py" <<'PY'
import http.client, sys, threading, time
port, threads = int(sys.argv[1]), int(sys.argv[2])
jobs = [line.split() for line in sys.stdin if line.strip()]
bad, lock = [], threading.Lock()

def fetch(conn, host, path):
    conn.request("GET", path, headers={"Host": host})
    response = conn.getresponse()
    response.read()
    return response.status

def work(part):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for host, path in part:
        try:
            status = fetch(conn, host, path)
        except (http.client.HTTPException, OSError):
            # The server closed an idle keep-alive connection: once more on a new one.
            conn.close()
            try:
                status = fetch(conn, host, path)
            except (http.client.HTTPException, OSError) as error:
                status = repr(error)
        if status != 200:
            with lock:
                bad.append(f"{status} {host}{path}")

started = time.monotonic()
workers = [threading.Thread(target=work, args=(jobs[i::threads],)) for i in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(len(jobs) - len(bad), len(bad), f"{time.monotonic() - started:.2f}")
for line in bad[:5]:
    print("  not 200:", line, file=sys.stderr)
PY

# A random page per request from $PATHS_FILE (one URL path a line).
cat >"$WORK/random.lua" <<'LUA'
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE")) do
    paths[#paths + 1] = line
end
math.randomseed(os.time())
request = function()
    return wrk.format(nil, paths[math.random(#paths)])
end
LUA

# Rust's standard library docs: Debian 12's rust-doc installs them in
# /usr/share/doc/rust-doc/html; rust/html is looked at first. Prints
# nothing, and still succeeds, when neither is there (set -e would end the
# script at the assignment otherwise, before rust-doc is installed).
docs_dir() {
    local dir
    for dir in /usr/share/doc/rust/html /usr/share/doc/rust-doc/html; do
        [ -d "$dir" ] && { echo "$dir"; return 0; }
    done
    return 0
}
DOCS=""
if want docs; then
    DOCS="$(docs_dir)"
    if [ -z "$DOCS" ]; then
        apt_install rust-doc
        DOCS="$(docs_dir)"
    fi
    [ -n "$DOCS" ] || { echo "rust-doc installed no HTML tree" >&2; exit 1; }
fi

log "generating data"
mkdir -p "$WORK/plain/assets" "$WORK/nginx/logs"
# The 5 KB page and 200 KB asset of bench/proxy.sh, byte for byte.
python3 bench/site.py "$WORK/plain"
chmod -R a+rX "$WORK" # nginx workers run unprivileged

# One nginx for the whole run: the plain site and the docs, each on its port.
cat >"$WORK/nginx/nginx.conf" <<CONF
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
    types { text/html html; text/javascript js; text/css css; }
    server {
        listen 127.0.0.1:$NGINX_PLAIN;
        root $WORK/plain;
    }
    server {
        listen 127.0.0.1:$NGINX_DOCS;
        root ${DOCS:-$WORK/plain};
    }
}
CONF
nginx -p "$WORK/nginx" -c nginx.conf
until curl -s -o /dev/null "http://127.0.0.1:$NGINX_PLAIN/"; do sleep 0.1; done

# ---------------------------------------------------------------- row 3: memory

row_memory() {
    log "row 3: resident memory, idle and under load (5 KB page)"
    "$BIN/seed" "$WORK/grove-plain/store" bench "$WORK/plain" >/dev/null
    grove_config "$WORK/plain.toml" $((256 << 20)) $((4 << 30))
    start_grove "$WORK/grove-plain" "$WORK/plain.toml"
    wait_for_grove bench.localhost /page.html 200
    sleep 1 # let both settle after their first answer
    local server pids=()
    for server in nginx grove; do
        mapfile -t pids < <(server_pids "$server")
        result "mem.$server.idle.rss" "$(mem_kb VmRSS "${pids[@]}")"
        result "mem.$server.idle.pss" "$(mem_kb Pss "${pids[@]}")"
    done
    load_and_sample nginx "$NGINX_PLAIN"
    load_and_sample grove "$GROVE"
    stop_grove
}

# wrk on the 5 KB page while the server's memory is sampled every 0.2 s;
# the peak is kept (the pids are read again each time: nginx's workers are
# its children).
load_and_sample() { # server port
    local server="$1" port="$2" rss=0 pss=0 now pids=()
    wrk_record "memory.$server" "$port" bench.localhost /page.html >/dev/null 2>"$WORK/wrk.out" &
    local load=$!
    while kill -0 "$load" 2>/dev/null; do
        mapfile -t pids < <(server_pids "$server")
        now="$(mem_kb VmRSS "${pids[@]}")"
        ((now > rss)) && rss="$now"
        now="$(mem_kb Pss "${pids[@]}")"
        ((now > pss)) && pss="$now"
        sleep 0.2
    done
    wait "$load"
    cat "$WORK/wrk.out" >&2
    result "mem.$server.load.rss" "$rss"
    result "mem.$server.load.pss" "$pss"
}

# ---------------------------------------------------------------- row 1: docs

row_docs() {
    log "row 1: $DOCS, working set larger than grove's 64 MiB memory cache"
    # Every HTML page that is a file (grove publishes no symlinks), as a URL
    # path both servers decode to the same file name ('!' in macro pages).
    (cd "$DOCS" && find . -type f -name '*.html' -printf '%P\n') |
        python3 -c 'import sys, urllib.parse; [print("/" + urllib.parse.quote(line.rstrip("\n"))) for line in sys.stdin]' \
            >"$WORK/docs.paths"
    local pages bytes
    pages="$(wc -l <"$WORK/docs.paths")"
    bytes="$(cd "$DOCS" && find . -type f -name '*.html' -printf '%s\n' | awk '{ s += $1 } END { print s }')"
    result docs.pages "$pages"
    result docs.bytes "$bytes"

    local started=$EPOCHREALTIME
    "$BIN/seed" "$WORK/grove-docs/store" docs "$DOCS" >/dev/null
    result docs.seed_s "$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
    grove_config "$WORK/docs.toml" 67108864 $((4 << 30))
    start_grove "$WORK/grove-docs" "$WORK/docs.toml"

    # Both must serve the same bytes, or the comparison means nothing.
    local path a b
    for path in $(shuf -n 20 "$WORK/docs.paths"); do
        a="$(curl -s -o /dev/null -w '%{http_code}:%{size_download}' "http://127.0.0.1:$NGINX_DOCS$path")"
        b="$(curl -s -o /dev/null -w '%{http_code}:%{size_download}' -H 'Host: docs.localhost' "http://127.0.0.1:$GROVE$path")"
        if [ "$a" != "$b" ] || [ "${a%%:*}" != 200 ]; then
            echo "$path: nginx $a, grove $b" >&2
            exit 1
        fi
    done
    log "20 random pages: 200 and the same sizes from both"

    # Warm-up: every page once through each server, so nginx reads from the
    # page cache and grove from its disk cache (or memory), not the store.
    local ok bad seconds
    for server in nginx:$NGINX_DOCS grove:$GROVE; do
        read -r ok bad seconds < <(sed 's/^/docs.localhost /' "$WORK/docs.paths" | touch_all "${server#*:}" 4)
        log "warm-up ${server%%:*}: $ok pages in ${seconds}s, $bad not 200"
        [ "$bad" = 0 ] || exit 1
    done

    local before after
    before="$(metric_by_label grove_blob_lookups_total)"
    for _ in $(seq "$ROUNDS"); do
        PATHS_FILE="$WORK/docs.paths" wrk_record docs.nginx "$NGINX_DOCS" docs.localhost / -s "$WORK/random.lua"
        PATHS_FILE="$WORK/docs.paths" wrk_record docs.grove "$GROVE" docs.localhost / -s "$WORK/random.lua"
    done
    after="$(metric_by_label grove_blob_lookups_total)"
    # Which tier answered grove's blob lookups under load.
    local tier
    for tier in memory disk store; do
        result "docs.lookups.$tier" $(($(tier_count "$after" "$tier") - $(tier_count "$before" "$tier")))
    done
    result docs.cache_dir_bytes "$(du -sb "$WORK/grove-docs/cache" | cut -f1)"
    stop_grove
    rm -rf "$WORK/grove-docs"
}

tier_count() { # "label=value ..." tier
    local pair
    for pair in $1; do
        [ "${pair%%=*}" = "$2" ] && { echo "${pair#*=}"; return; }
    done
    echo 0
}

# ---------------------------------------------------------------- row 2: sites

row_sites() {
    log "row 2: $SITES sites on one proxy"
    # Sites s0..s<N-1>, each an index.html of ~2 KB naming its site and one
    # stylesheet: no two sites share a blob, as on a real host.
    python3 - "$WORK/sites" "$SITES" <<'PY'
import os, random, sys
root, sites = sys.argv[1], int(sys.argv[2])
random.seed(11)
words = [''.join(random.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(random.randint(2, 9))) for _ in range(2000)]
for i in range(sites):
    site = os.path.join(root, f"s{i}")
    os.makedirs(os.path.join(site, "assets"))
    body = ' '.join(random.choice(words) for _ in range(330))[:1900]
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write(f'<!doctype html><html><head><title>s{i}</title>'
                f'<link rel="stylesheet" href="/assets/site.css"></head><body><p>{body}</p></body></html>\n')
    with open(os.path.join(site, "assets", "site.css"), "w") as f:
        f.write(f"/* s{i} */ body {{ font: 16px/1.5 serif; color: #{i % 4096:03x}; max-width: 40em; }}\n" * 8)
PY
    local one="$WORK/sites/s0"

    # The reference: the same page, on a proxy that holds only its site.
    "$BIN/seed" "$WORK/grove-one/store" s0 "$one" >/dev/null
    grove_config "$WORK/sites.toml" $((256 << 20)) $((4 << 30))
    start_grove "$WORK/grove-one" "$WORK/sites.toml"
    wait_for_grove s0.localhost / 200
    wrk_run "$GROVE" s0.localhost / >/dev/null # warm-up
    for _ in $(seq "$ROUNDS"); do
        wrk_record sites.one "$GROVE" s0.localhost /
    done
    stop_grove

    seed_sites "$WORK/grove-many/store"
    start_grove "$WORK/grove-many" "$WORK/sites.toml"
    # The first page served costs memory once (pools, buffers, lazily built
    # state), whatever the number of sites: s0 pays it before the count.
    wait_for_grove s0.localhost / 200
    sleep 1
    local before after ok bad seconds
    before="$(mem_kb VmRSS "$GROVE_PID")"
    read -r ok bad seconds < <(for i in $(seq 1 $((SITES - 1))); do echo "s$i.localhost /"; done | touch_all "$GROVE" 4)
    log "first request to every other site: $ok in ${seconds}s, $bad not 200"
    [ "$bad" = 0 ] || exit 1
    sleep 1
    after="$(mem_kb VmRSS "$GROVE_PID")"
    result sites.rss_before "$before"
    result sites.rss_after "$after"
    result sites.first_pass_s "$seconds"
    wrk_run "$GROVE" s0.localhost / >/dev/null # warm-up
    for _ in $(seq "$ROUNDS"); do
        wrk_record sites.many "$GROVE" s0.localhost /
    done
    result sites.rss_loaded "$(mem_kb VmRSS "$GROVE_PID")"
    stop_grove
    rm -rf "$WORK/grove-one" "$WORK/grove-many" "$WORK/sites"
}

# Publishes every site under $WORK/sites into store, one seed process per
# site, SEED_JOBS at a time: the local store fsyncs every object, so the
# time goes to waiting on the disk, which several writers share well
# (measured: ~13 ms a site one at a time, ~7 ms with 8 at once).
seed_sites() { # store
    local store="$1" started=$EPOCHREALTIME seconds
    (cd "$WORK/sites" && ls) |
        xargs -P "$SEED_JOBS" -I{} "$BIN/seed" "$store" {} "$WORK/sites/{}" >/dev/null
    seconds="$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
    result sites.seed_s "$seconds"
    log "seeded $SITES sites in ${seconds}s"
}

# ---------------------------------------------------------------- row 4: restart

row_restart() {
    local files
    files="$(awk -v g="$CACHE_GB" 'BEGIN { printf "%d", g * 1024 }')"
    log "row 4: start-up with $files MiB in the disk cache"
    # Files of 1 MiB of random bytes (nothing to deduplicate or compress),
    # and a small page to poll.
    mkdir -p "$WORK/big"
    python3 - "$WORK/big" "$files" <<'PY'
import os, sys
root, files = sys.argv[1], int(sys.argv[2])
for i in range(files):
    with open(os.path.join(root, f"f{i}.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
with open(os.path.join(root, "index.html"), "w") as f:
    f.write("<!doctype html><title>big</title>\n")
PY
    "$BIN/seed" "$WORK/grove-big/store" big "$WORK/big" >/dev/null
    rm -rf "$WORK/big"
    # The disk cache must hold them all: twice their size, at least 4 GiB.
    local disk=$((files * 2 << 20))
    ((disk < 4 << 30)) && disk=$((4 << 30))
    grove_config "$WORK/big.toml" $((256 << 20)) "$disk"

    # A first start creates the state (the operator token, the node's log),
    # which later starts only read: the empty-cache figure is a second start.
    start_grove "$WORK/grove-big" "$WORK/big.toml"
    stop_grove
    timed_start "$WORK/grove-big" "$WORK/big.toml"
    result restart.cold_ms "$STARTUP_MS"
    local ok bad seconds
    read -r ok bad seconds < <(for i in $(seq 0 $((files - 1))); do echo "big.localhost /f$i.bin"; done | touch_all "$GROVE" 2)
    log "each file once through grove: $ok in ${seconds}s, $bad not 200"
    [ "$bad" = 0 ] || exit 1
    result restart.cache_bytes "$(du -sb "$WORK/grove-big/cache" | cut -f1)"
    result restart.cache_files "$(find "$WORK/grove-big/cache" -type f | wc -l)"

    # A graceful stop, as a deployment does it; Pingora keeps accepting for
    # its grace period first.
    local stopping=$EPOCHREALTIME
    stop_grove TERM
    result restart.stop_s "$(awk -v a="$stopping" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"

    timed_start "$WORK/grove-big" "$WORK/big.toml"
    result restart.warm_ms "$STARTUP_MS"
    # The cache survived: files come from the disk tier, not the store.
    local before after
    before="$(metric_by_label grove_blob_lookups_total)"
    for i in 1 2 3; do curl -s -o /dev/null -H 'Host: big.localhost' "http://127.0.0.1:$GROVE/f$i.bin"; done
    after="$(metric_by_label grove_blob_lookups_total)"
    result restart.disk_hits $(($(tier_count "$after" disk) - $(tier_count "$before" disk)))
    stop_grove
    rm -rf "$WORK/grove-big"
}

# Starts grove and sets STARTUP_MS: exec to the first 200 for the small
# page, polled every 10 ms (a curl costs a few ms of that resolution).
timed_start() { # state_dir config
    local started=$EPOCHREALTIME
    RUST_LOG=warn "$BIN/grove-proxy" --config "$2" --state-dir "$1" --listen "127.0.0.1:$GROVE" \
        --admin-listen "127.0.0.1:$GROVE_ADMIN" --base-domain localhost >>"$WORK/grove.log" 2>&1 &
    GROVE_PID=$!
    wait_for_grove big.localhost / 200
    STARTUP_MS="$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')"
    log "exec to first 200: ${STARTUP_MS} ms"
}

# ---------------------------------------------------------------- run

: >"$WORK/results"
: >"$WORK/runs"
# Memory first: nginx's idle figure is taken before it served anything else.
want memory && row_memory
want docs && row_docs
want sites && row_sites
want restart && row_restart

echo
python3 - "$WORK/results" "$WORK/runs" "$SITES" "$CACHE_GB" "$SEED_JOBS" "$ROUNDS" <<'PY'
import statistics, sys
results = dict(line.split() for line in open(sys.argv[1]) if line.strip())
sites, cache_gb, seed_jobs, rounds = int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
runs = {}
for line in open(sys.argv[2]):
    label, *values = line.split()
    runs.setdefault(label, []).append([float(v) for v in values])

def med(label):
    rows = runs[label]
    return [statistics.median(r[i] for r in rows) for i in range(3)] + [sum(r[3] for r in rows)]

def r(key):
    return float(results[key])

def mib(kb):
    return kb / 1024

def wrk_line(name, values):
    rps, p50, p99, bad = values
    print(f"  {name:<26} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {bad:>7.0f}")

def wrk_header():
    print(f"  {'':<26} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")

print(f"results (wrk -t1 -c64; req/s and latencies are medians of {rounds} runs, alternating in row 1)")
if "docs.pages" in results:
    print(f"\n1. working set > memory cache: rust-doc, {r('docs.pages'):.0f} pages, "
          f"{mib(r('docs.bytes') / 1024):.0f} MiB of HTML; grove memory_bytes = 64 MiB; random pages")
    wrk_header()
    n, g = med("docs.nginx"), med("docs.grove")
    wrk_line("nginx (page cache)", n)
    wrk_line("grove", g)
    print(f"  grove/nginx: throughput {g[0] / n[0]:.2f}, p50 {g[1] / n[1]:.2f}, p99 {g[2] / n[2]:.2f}")
    tiers = {t: r(f"docs.lookups.{t}") for t in ("memory", "disk", "store")}
    total = sum(tiers.values()) or 1
    print("  grove's blob lookups under load: " + ", ".join(f"{t} {100 * v / total:.0f}%" for t, v in tiers.items())
          + f"; disk cache {mib(r('docs.cache_dir_bytes') / 1024):.0f} MiB; seeding took {results['docs.seed_s']} s")
if "sites.rss_before" in results:
    print(f"\n2. {sites} sites on one proxy (index.html ~2 KB + one stylesheet each)")
    others = sites - 1
    per_site = (r("sites.rss_after") - r("sites.rss_before")) / max(others, 1)
    print(f"  seeding: {results['sites.seed_s']} s ({seed_jobs} at a time); first request to the {others} other sites: "
          f"{results['sites.first_pass_s']} s ({others / max(float(results['sites.first_pass_s']), 0.01):.0f}/s)")
    print(f"  grove RSS: {mib(r('sites.rss_before')):.1f} MiB with s0 served, {mib(r('sites.rss_after')):.1f} MiB once "
          f"every site was: {per_site:.1f} KiB per site (its page in the memory cache included); "
          f"{mib(r('sites.rss_loaded')):.1f} MiB after the load")
    wrk_header()
    one, many = med("sites.one"), med("sites.many")
    wrk_line("grove, 1 site", one)
    wrk_line(f"grove, 1 of {sites} sites", many)
    print(f"  {sites} sites / 1 site: throughput {many[0] / one[0]:.2f}, p99 {many[2] / one[2]:.2f}")
if "mem.grove.idle.rss" in results:
    print("\n3. resident memory (MiB); nginx: master + 2 workers, grove: one process")
    print(f"  {'':<26} {'idle RSS':>10} {'load RSS':>10} {'idle PSS':>10} {'load PSS':>10} {'req/s':>10}")
    for name in ("nginx", "grove"):
        print(f"  {name:<26} {mib(r(f'mem.{name}.idle.rss')):>10.1f} {mib(r(f'mem.{name}.load.rss')):>10.1f} "
              f"{mib(r(f'mem.{name}.idle.pss')):>10.1f} {mib(r(f'mem.{name}.load.pss')):>10.1f} {med(f'memory.{name}')[0]:>10.0f}")
    ratio = lambda key: r(f"mem.grove.{key}") / r(f"mem.nginx.{key}")
    print(f"  {'grove/nginx':<26} {ratio('idle.rss'):>10.2f} {ratio('load.rss'):>10.2f} "
          f"{ratio('idle.pss'):>10.2f} {ratio('load.pss'):>10.2f}")
if "restart.warm_ms" in results:
    print(f"\n4. start-up with {cache_gb} GB in the disk cache: {mib(r('restart.cache_bytes') / 1024):.0f} MiB "
          f"in {r('restart.cache_files'):.0f} files")
    print(f"  exec -> first 200, empty disk cache:   {r('restart.cold_ms'):>6.0f} ms")
    print(f"  exec -> first 200, filled disk cache:  {r('restart.warm_ms'):>6.0f} ms"
          f"   ({r('restart.warm_ms') / r('restart.cold_ms'):.2f}x)")
    print(f"  SIGTERM -> exit: {results['restart.stop_s']} s (Pingora's grace period); "
          f"after the restart {r('restart.disk_hits'):.0f} of 3 files came from the disk cache")
PY
