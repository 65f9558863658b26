#!/usr/bin/env bash
# grove-proxy side by side with the static file servers it would replace, on
# this machine, serving the same files to the same load generators:
#   nginx              Debian's package
#   caddy              Debian's package
#   sws                static-web-server, from crates.io (Rust, hyper)
#   grove              grove-proxy, the files published into a local store
#   floor              Pingora itself answering a prepared reply of the same
#                      size with no work at all (bench/src/bin/pingora_floor.rs):
#                      the most any server built on Pingora could do here
#
# One table per transport:
#   plain   HTTP/1.1 over TCP, wrk
#   tls     HTTP/1.1 over TLS 1.3, wrk against https://
#   h2      HTTP/2 over TLS 1.3, h2load
# with four requests each:
#   page    /page.html, 5 KB
#   asset   /assets/app.3f9a1c2e.js, 200 KB
#   gzip    /docs.html, ~50 KB of HTML, with Accept-Encoding: gzip. nginx, Caddy
#           and static-web-server send docs.html.gz made beforehand (gzip -9);
#           grove compresses the page itself, once, and keeps the result.
#   304     /page.html revalidated with the validator the server itself sent
# The floor sends fixed bytes (no negotiation, no validators): page and asset
# only, and on TLS only when the binary takes a TLS listener.
# Each cell: requests/s, latency, and the server's own CPU time (user and
# system, its threads and child processes, from /proc) per request.
#
# Usage: bench/proxy.sh [seconds per run, default 10]
#   ROUNDS=3            rounds, alternating the servers; medians are reported
#   ONLY=plain|tls|h2   run one transport
#   CLOSE=1             wrk sends `Connection: close`: a new connection per
#                       request (on tls a full handshake), which measures what
#                       each server pays to accept one. h2load ignores it.
#   NO_BUILD=1          use the binaries already in $CARGO_TARGET_DIR/release
#   SKIP_SWS=1          static-web-server missing: leave it out instead of
#                       installing it with cargo
#   PORT_BASE=28100     first of the 13 loopback ports the servers listen on
#   PIN=1               the load generator on CPU 0 and every server on the
#                       others (taskset), each server sized to those: without
#                       it they share every CPU, and how much of it wrk takes
#                       from each server varies from run to run
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

SECONDS_PER_RUN="${1:-10}"
ROUNDS="${ROUNDS:-3}"
# Enough to fill every cache (grove's compressed copy, the page cache) and
# open the connections before anything is measured.
WARMUP_SECONDS=$((SECONDS_PER_RUN < 3 ? SECONDS_PER_RUN : 3))
CPUS="$(nproc)"
SERVER_CPUS=""
LOAD_CPUS=""
SERVER_CPU_COUNT="$CPUS"
if [ -n "${PIN:-}" ]; then
    [ "$CPUS" -ge 2 ] || { echo "PIN=1 needs at least 2 CPUs" >&2 && exit 2; }
    LOAD_CPUS=0
    SERVER_CPUS="1-$((CPUS - 1))"
    SERVER_CPU_COUNT=$((CPUS - 1))
fi
# Runs a load generator on the given CPUs (a taskset list), or anywhere
# when empty.
on_cpus() { # cpus command...
    local cpus=$1
    shift
    if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi
}
case "${ONLY:-}" in
    "") TRANSPORTS=(plain tls h2) ;;
    plain | tls | h2) TRANSPORTS=("$ONLY") ;;
    *) echo "ONLY must be plain, tls or h2" >&2 && exit 2 ;;
esac
REQUESTS=(page asset gzip 304)
HOST=bench.localhost

# Every listener on loopback: PORT_BASE and the 12 ports after it, away from
# the 18080s the other benchmarks listen on.
# The TLS ports serve HTTP/1.1 and HTTP/2 alike, chosen by ALPN (wrk offers
# none and gets HTTP/1.1; h2load asks for h2).
P="${PORT_BASE:-28100}"
declare -A PLAIN_PORT=([nginx]=$P [caddy]=$((P + 1)) [sws]=$((P + 2)) [grove]=$((P + 3)))
declare -A TLS_PORT=([nginx]=$((P + 4)) [caddy]=$((P + 5)) [sws]=$((P + 6)) [grove]=$((P + 7)))
GROVE_ADMIN_PORT=$((P + 8))
# One floor process per reply size.
declare -A FLOOR_PLAIN_PORT=([page]=$((P + 9)) [asset]=$((P + 10)))
declare -A FLOOR_TLS_PORT=([page]=$((P + 11)) [asset]=$((P + 12)))

# A port something already listens on would make one server's numbers
# another's.
ensure_ports_free() {
    local port
    for port in $(seq "$P" $((P + 12))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "127.0.0.1:$port is in use: stop what listens there, or set PORT_BASE" >&2 && exit 1
        fi
    done
}

ensure_bench_tools() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    command -v caddy >/dev/null || missing+=(caddy)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# static-web-server is not packaged by Debian: crates.io, into GROVE_TOOLS.
ensure_sws() {
    SWS_BIN="$GROVE_TOOLS/bin/static-web-server"
    [ -x "$SWS_BIN" ] && return
    if [ -n "${SKIP_SWS:-}" ]; then
        log "static-web-server is not installed ($SWS_BIN) and SKIP_SWS=1: it is left out of every table"
        SWS_BIN=""
        return
    fi
    log "cargo install static-web-server into $GROVE_TOOLS"
    cargo install --locked --root "$GROVE_TOOLS" static-web-server
}

ensure_bench_tools
ensure_sws
if [ -z "${NO_BUILD:-}" ]; then
    ensure_build_tools
    log "building (release)"
    # The same package set as the other benchmarks, so their builds are shared.
    cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench
fi
BIN="$CARGO_TARGET_DIR/release"
for binary in grove-proxy seed pingora_floor; do
    [ -x "$BIN/$binary" ] || { echo "$BIN/$binary is missing: run without NO_BUILD=1" >&2 && exit 1; }
done

SERVERS=(nginx caddy)
[ -n "$SWS_BIN" ] && SERVERS+=(sws)
SERVERS+=(grove floor)

WORK="$(mktemp -d /tmp/grove-bench.XXXXXX)"
CERT="$WORK/tls/cert.pem"
KEY="$WORK/tls/key.pem"
PIDS=()
declare -A SERVER_PID # name (as start gives it) -> pid

# Every server is one of PIDS (nginx too: it runs with `daemon off`).
# SIGTERM first, so nginx's master takes its workers down; Pingora's graceful
# stop waits seconds for a grace period, so what is still up after 3 s is
# killed.
cleanup() {
    set +e
    local pid alive
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 30); do
        alive=""
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # name command...: a server in the background, its output in $WORK/name.log
    local name=$1
    shift
    # A simple command, so that $! is the server itself (a function run in
    # the background would be a subshell, and killing it would leave the
    # server running).
    if [ -n "$SERVER_CPUS" ]; then
        taskset -c "$SERVER_CPUS" "$@" >"$WORK/$name.log" 2>&1 &
    else
        "$@" >"$WORK/$name.log" 2>&1 &
    fi
    PIDS+=("$!")
    SERVER_PID[$name]=$!
}

# CPU time a server has used, in clock ticks: its process (every thread)
# and its children (nginx's workers), from /proc.
cpu_ticks() { # pid
    local pid ticks=0 fields
    for pid in "$1" $(pgrep -P "$1" || true); do
        { read -ra fields <"/proc/$pid/stat"; } 2>/dev/null || continue
        # utime and stime: fields 14 and 15, counted after the ")" that
        # ends the command name.
        local rest="${fields[*]}"
        rest="${rest##*) }"
        read -ra fields <<<"$rest"
        ticks=$((ticks + fields[11] + fields[12]))
    done
    echo "$ticks"
}

wait_up() { # name url...: returns when every URL answers; fails with the server's log
    local name=$1 url tries
    shift
    for url in "$@"; do
        tries=0
        until curl -sk -o /dev/null "$url"; do
            tries=$((tries + 1))
            if [ "$tries" -gt 150 ]; then
                echo "$name does not answer $url; its log:" >&2
                tail -n 20 "$WORK/$name.log" >&2
                exit 1
            fi
            sleep 0.1
        done
    done
}

make_site() {
    mkdir -p "$WORK/site/assets"
    python3 bench/site.py "$WORK/site"
}

# One self-signed ECDSA P-256 certificate for every server. It names
# 127.0.0.1 as well: wrk sends its URL's host (127.0.0.1) as SNI, and Caddy
# picks its certificate by SNI.
make_certificate() {
    mkdir -p "$WORK/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
        -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST,IP:127.0.0.1" \
        -keyout "$KEY" -out "$CERT" 2>/dev/null
}

nginx_conf() {
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes $SERVER_CPU_COUNT;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    # No compression on the fly: the .gz made beforehand, as Caddy and
    # static-web-server are given.
    gzip off;
    gzip_static on;
    types { text/html html; text/javascript js; }
    root $WORK/site;
    server {
        listen 127.0.0.1:${PLAIN_PORT[nginx]};
    }
    server {
        listen 127.0.0.1:${TLS_PORT[nginx]} ssl http2;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.3;
        ssl_session_cache shared:SSL:10m;
    }
}
CONF
}

# `admin off`: no admin endpoint on :2019. No `log` directive: no access log.
# h1 and h2 only (no HTTP/3 listener on UDP). `auto_https off`: no ACME, no
# redirect server; the TLS site still serves the given certificate.
caddyfile() {
    mkdir -p "$WORK/caddy"
    cat >"$WORK/caddy/Caddyfile" <<CONF
{
	admin off
	auto_https off
	servers {
		protocols h1 h2
	}
}
(files) {
	bind 127.0.0.1
	root * $WORK/site
	file_server {
		precompressed gzip
	}
}
http://:${PLAIN_PORT[caddy]} {
	import files
}
https://:${TLS_PORT[caddy]} {
	import files
	tls $CERT $KEY {
		protocols tls1.3
	}
}
CONF
}

grove_conf() {
    cat >"$WORK/grove.toml" <<CONF
listen = "127.0.0.1:${PLAIN_PORT[grove]}"
admin_listen = "127.0.0.1:$GROVE_ADMIN_PORT"
base_domain = "localhost"
state_dir = "$WORK/grove"
# The others send the files as they are; grove would add its service
# worker's register tag to a page with a </head> (docs.html).
service_worker = false

[tls]
listen = "127.0.0.1:${TLS_PORT[grove]}"

[[tls.certificates]]
domains = ["$HOST"]
cert = "$CERT"
key = "$KEY"
CONF
}

start_nginx() {
    nginx_conf
    start nginx nginx -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c nginx.conf
    wait_up nginx "http://127.0.0.1:${PLAIN_PORT[nginx]}/" "https://127.0.0.1:${TLS_PORT[nginx]}/"
}

start_caddy() {
    caddyfile
    # HOME and XDG dirs in the temp dir: Caddy writes its autosave and
    # storage there, nothing elsewhere. GOMAXPROCS at its default.
    start caddy env -u GOMAXPROCS HOME="$WORK/caddy" XDG_DATA_HOME="$WORK/caddy/data" \
        XDG_CONFIG_HOME="$WORK/caddy/config" \
        caddy run --config "$WORK/caddy/Caddyfile" --adapter caddyfile
    wait_up caddy "http://127.0.0.1:${PLAIN_PORT[caddy]}/" "https://127.0.0.1:${TLS_PORT[caddy]}/"
}

# static-web-server 2.x serves plaintext or TLS, not both: two processes. It
# reads ./config.toml when there is one, so it runs in an empty directory.
# Worker threads at the default (one per core); no compression on the fly,
# the .gz files only (as nginx); no security headers, which it adds over TLS
# by default, so its replies are the same over both transports.
start_sws() {
    local common=(--host 127.0.0.1 --root "$WORK/site" --log-level error
        --compression false --compression-static true --security-headers false)
    mkdir -p "$WORK/sws"
    start sws-plain env -C "$WORK/sws" "$SWS_BIN" "${common[@]}" --port "${PLAIN_PORT[sws]}"
    start sws-tls env -C "$WORK/sws" "$SWS_BIN" "${common[@]}" --port "${TLS_PORT[sws]}" \
        --http2 true --http2-tls-cert "$CERT" --http2-tls-key "$KEY"
    wait_up sws-plain "http://127.0.0.1:${PLAIN_PORT[sws]}/"
    wait_up sws-tls "https://127.0.0.1:${TLS_PORT[sws]}/"
}

start_grove() {
    grove_conf
    # Worker threads at grove's default (one per core).
    start grove env RUST_LOG=warn "$BIN/grove-proxy" --config "$WORK/grove.toml"
    wait_up grove "http://127.0.0.1:${PLAIN_PORT[grove]}/" "https://127.0.0.1:${TLS_PORT[grove]}/"
}

# A floor binary built before it took a TLS listener says so in its usage.
floor_has_tls() {
    { "$BIN/pingora_floor" 2>&1 || true; } | grep -q TLS_LISTEN
}

start_floor() {
    local request bytes tls=()
    FLOOR_TLS=""
    if floor_has_tls; then
        FLOOR_TLS=1
    else
        log "this pingora_floor takes no TLS listener (built before it did): no floor on tls and h2"
    fi
    for request in page asset; do
        bytes="$(stat -c %s "$WORK/site/$(path_of "$request")")"
        if [ -n "$FLOOR_TLS" ]; then
            tls=("127.0.0.1:${FLOOR_TLS_PORT[$request]}" "$CERT" "$KEY")
        fi
        start "floor-$request" "$BIN/pingora_floor" proxy "127.0.0.1:${FLOOR_PLAIN_PORT[$request]}" "$bytes" "${tls[@]}"
        wait_up "floor-$request" "http://127.0.0.1:${FLOOR_PLAIN_PORT[$request]}/"
        if [ -n "$FLOOR_TLS" ]; then
            wait_up "floor-$request" "https://127.0.0.1:${FLOOR_TLS_PORT[$request]}/"
        fi
    done
}

path_of() { # request
    case $1 in
        page | 304) echo /page.html ;;
        asset) echo /assets/app.3f9a1c2e.js ;;
        gzip) echo /docs.html ;;
    esac
}

request_headers() { # server request: the request's own headers, one a line
    case $2 in
        gzip) echo 'Accept-Encoding: gzip' ;;
        304) echo "${VALIDATOR[$1]}" ;;
    esac
}

port_of() { # transport server request: the port, or nothing when the server has no such row
    local transport=$1 server=$2 request=$3
    if [ "$server" = floor ]; then
        case $request in page | asset) ;; *) return 0 ;; esac
        if [ "$transport" = plain ]; then
            echo "${FLOOR_PLAIN_PORT[$request]}"
        elif [ -n "$FLOOR_TLS" ]; then
            echo "${FLOOR_TLS_PORT[$request]}"
        fi
    elif [ "$transport" = plain ]; then
        echo "${PLAIN_PORT[$server]}"
    else
        echo "${TLS_PORT[$server]}"
    fi
}

# The validator each server sent for /page.html, as the header that
# revalidates it: If-None-Match with its ETag, or, from a server that sends
# none (static-web-server 2.x), If-Modified-Since with its Last-Modified.
declare -A VALIDATOR
find_validators() {
    local server headers etag modified
    for server in "${SERVERS[@]}"; do
        [ "$server" = floor ] && continue
        headers="$(curl -s -D - -o /dev/null -H "Host: $HOST" "http://127.0.0.1:${PLAIN_PORT[$server]}/page.html" | tr -d '\r')"
        etag="$(awk 'tolower($1) == "etag:" { sub(/^[^:]*: */, ""); print }' <<<"$headers")"
        modified="$(awk 'tolower($1) == "last-modified:" { sub(/^[^:]*: */, ""); print }' <<<"$headers")"
        if [ -n "$etag" ]; then
            VALIDATOR[$server]="If-None-Match: $etag"
        elif [ -n "$modified" ]; then
            VALIDATOR[$server]="If-Modified-Since: $modified"
        else
            echo "$server sends neither ETag nor Last-Modified for /page.html" >&2 && exit 1
        fi
        echo "304 validator $server: ${VALIDATOR[$server]}"
    done
}

fetch() { # transport port path body-file [header...]: prints "status http-version"
    local transport=$1 port=$2 path=$3 body=$4 header
    shift 4
    local args=(-s -o "$body" -D "$body.headers" -w '%{http_code} %{http_version}\n')
    for header in "$@"; do args+=(-H "$header"); done
    case $transport in
        plain) curl "${args[@]}" --http1.1 -H "Host: $HOST" "http://127.0.0.1:$port$path" ;;
        # As wrk: the address in the URL, the name in Host.
        tls) curl "${args[@]}" --http1.1 --cacert "$CERT" -H "Host: $HOST" "https://127.0.0.1:$port$path" ;;
        # As h2load: the name in the URL (SNI and :authority), connected to loopback.
        h2) curl "${args[@]}" --http2 --cacert "$CERT" --resolve "$HOST:$port:127.0.0.1" "https://$HOST:$port$path" ;;
    esac
}

# Before any load: every server answers each request with the same content,
# over the transport being measured, or the comparison means nothing.
check() { # transport request: one line, every server's answer
    local transport=$1 request=$2 server port status version body="$WORK/answer" file line="" headers
    local want_version=1.1
    [ "$transport" = h2 ] && want_version=2
    file="$WORK/site$(path_of "$request")"
    for server in "${SERVERS[@]}"; do
        port="$(port_of "$transport" "$server" "$request")"
        [ -n "$port" ] || continue
        mapfile -t headers < <(request_headers "$server" "$request")
        : >"$body" # curl writes no file for an empty body
        read -r status version < <(fetch "$transport" "$port" "$(path_of "$request")" "$body" "${headers[@]}")
        local answer="$transport $request: $server answers ${status:-nothing} over HTTP/${version:-?}"
        [ "$version" = "$want_version" ] || wrong "$answer: not HTTP/$want_version"
        case $request in
            page | asset)
                [ "$status" = 200 ] || wrong "$answer: not 200"
                if [ "$server" = floor ]; then
                    # Its own bytes, of the same size.
                    [ "$(stat -c %s "$body")" = "$(stat -c %s "$file")" ] || wrong "$answer: $(stat -c %s "$body") bytes"
                else
                    cmp -s "$body" "$file" || wrong "$answer: other bytes than $file"
                fi
                line+="$server $status $(stat -c %s "$body") B, "
                ;;
            gzip)
                [ "$status" = 200 ] || wrong "$answer: not 200"
                grep -qi '^content-encoding: *gzip' "$body.headers" || wrong "$answer: no Content-Encoding: gzip"
                gzip -dc <"$body" | cmp -s - "$file" || wrong "$answer: not $file once decoded"
                line+="$server $status gzip $(stat -c %s "$body") B, "
                ;;
            304)
                [ "$status" = 304 ] || wrong "$answer: not 304 to ${VALIDATOR[$server]}"
                [ "$(stat -c %s "$body")" = 0 ] || wrong "$answer: with a body"
                line+="$server $status, "
                ;;
        esac
    done
    echo "$transport $request: ${line%, }"
}

wrong() { echo "$*" >&2 && exit 1; }

# The TLS every server negotiates with an OpenSSL client (as wrk and h2load):
# TLS 1.3 everywhere, or the tls and h2 rows compare different things.
check_tls() {
    local server port info
    for server in "${SERVERS[@]}"; do
        port="$(port_of tls "$server" page)"
        [ -n "$port" ] || continue
        info="$(openssl s_client -connect "127.0.0.1:$port" -servername "$HOST" -CAfile "$CERT" </dev/null 2>/dev/null |
            awk '/^New, / { sub(/,$/, "", $2); print $2, $NF }')"
        echo "tls $server: $info"
        [ "${info%% *}" = TLSv1.3 ] || { echo "$server does not negotiate TLS 1.3" >&2 && exit 1; }
    done
}

# wrk -t1: on this 2-core machine a load generator with one thread leaves
# the other core to the server; with -t2 wrk and the server would fight
# over both. 64 keep-alive connections.
load_wrk() { # transport port path seconds [header...]: prints "req/s p50-ms p99-ms errors"
    local transport=$1 port=$2 path=$3 seconds=$4 header scheme=http
    shift 4
    local args=(-t1 -c64 -d"${seconds}s" --latency -H "Host: $HOST")
    for header in "$@"; do args+=(-H "$header"); done
    [ -n "${CLOSE:-}" ] && args+=(-H 'Connection: close')
    [ "$transport" = tls ] && scheme=https
    on_cpus "$LOAD_CPUS" wrk "${args[@]}" "$scheme://127.0.0.1:$port$path" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
        /^Requests\/sec/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses/ { errors += $NF }
        /Socket errors/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
        END { printf "%s %.3f %.3f %d\n", rps + 0, p50, p99, errors }'
}

# h2load -t1 as wrk, 64 connections with up to 10 streams in flight each.
# h2load prints no percentiles: its "time for request" line has min, max,
# mean, sd and +/- sd over the requests of the run. Kept: req/s (from its
# "finished in ..., N req/s" line), the mean and the max.
load_h2() { # port path seconds [header...]: prints "req/s mean-ms max-ms errors"
    local port=$1 path=$2 seconds=$3 header
    shift 3
    local args=(-t1 -c64 -m10 -D "$seconds" --connect-to="127.0.0.1:$port")
    for header in "$@"; do args+=(-H "$header"); done
    on_cpus "$LOAD_CPUS" h2load "${args[@]}" "https://$HOST:$port$path" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
        /^finished in/ { rps = $4 }
        /^requests:/ { errors += $10 + $12 + $14 }
        /^status codes:/ { errors += $7 + $9 }
        /^time for request:/ { mean = ms($6); max = ms($5) }
        END { printf "%s %.3f %.3f %d\n", rps + 0, mean, max, errors }'
}

pid_of() { # transport server request: the process that serves this row
    case $2 in
        floor) echo "${SERVER_PID[floor-$3]}" ;;
        sws) if [ "$1" = plain ]; then echo "${SERVER_PID[sws-plain]}"; else echo "${SERVER_PID[sws-tls]}"; fi ;;
        *) echo "${SERVER_PID[$2]}" ;;
    esac
}

# Also the server's CPU time (user and system) over the run, per request:
# when the load generator is the limit (a 200 KB body in plaintext), req/s
# tie, and this is what still tells the servers apart.
measure() { # transport request server seconds: prints "req/s latency latency errors cpu-us-per-request"
    local transport=$1 request=$2 server=$3 seconds=$4 port headers pid before load
    port="$(port_of "$transport" "$server" "$request")"
    mapfile -t headers < <(request_headers "$server" "$request")
    pid="$(pid_of "$transport" "$server" "$request")"
    before="$(cpu_ticks "$pid")"
    if [ "$transport" = h2 ]; then
        load="$(load_h2 "$port" "$(path_of "$request")" "$seconds" "${headers[@]}")"
    else
        load="$(load_wrk "$transport" "$port" "$(path_of "$request")" "$seconds" "${headers[@]}")"
    fi
    awk -v load="$load" -v ticks="$(($(cpu_ticks "$pid") - before))" -v hz="$(getconf CLK_TCK)" -v seconds="$seconds" '
        BEGIN { split(load, f, " "); n = f[1] * seconds; printf "%s %.1f\n", load, (n > 0 ? ticks / hz * 1e6 / n : 0) }'
}

log "generating data and a certificate"
make_site
make_certificate
chmod -R a+rX "$WORK" # nginx workers run unprivileged
# grove gets the site as published; the others also get docs.html.gz.
"$BIN/seed" "$WORK/grove/store" bench "$WORK/site"
gzip -k -9 "$WORK/site/docs.html"

log "starting ${SERVERS[*]}"
ensure_ports_free
start_nginx
start_caddy
[ -n "$SWS_BIN" ] && start_sws
start_grove
start_floor

# Cold miss: the first request for a blob only the store has.
cold="$(curl -s -o /dev/null -w '%{time_total}' -H "Host: $HOST" "http://127.0.0.1:${PLAIN_PORT[grove]}/assets/app.3f9a1c2e.js")"
warm="$(curl -s -o /dev/null -w '%{time_total}' -H "Host: $HOST" "http://127.0.0.1:${PLAIN_PORT[grove]}/assets/app.3f9a1c2e.js")"

log "checking every answer"
find_validators
[ "${TRANSPORTS[*]}" = plain ] || check_tls
for transport in "${TRANSPORTS[@]}"; do
    for request in "${REQUESTS[@]}"; do check "$transport" "$request"; done
done

servers_for() { # transport request: the servers that have this row
    local server
    for server in "${SERVERS[@]}"; do
        [ -n "$(port_of "$1" "$server" "$2")" ] && echo "$server"
    done
    return 0
}

cells=0
for transport in "${TRANSPORTS[@]}"; do
    for request in "${REQUESTS[@]}"; do cells=$((cells + $(servers_for "$transport" "$request" | wc -l))); done
done
log "load: ${cells} runs of ${SECONDS_PER_RUN}s a round, $ROUNDS alternating rounds (after ${WARMUP_SECONDS}s warm-ups): about $(((cells * (ROUNDS * SECONDS_PER_RUN + WARMUP_SECONDS) + 59) / 60)) min"
for transport in "${TRANSPORTS[@]}"; do
    for request in "${REQUESTS[@]}"; do
        for server in $(servers_for "$transport" "$request"); do
            measure "$transport" "$request" "$server" "$WARMUP_SECONDS" >/dev/null
        done
    done
done
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    for transport in "${TRANSPORTS[@]}"; do
        for request in "${REQUESTS[@]}"; do
            for server in $(servers_for "$transport" "$request"); do
                echo "$transport $request $server $(measure "$transport" "$request" "$server" "$SECONDS_PER_RUN")" >>"$WORK/results"
            done
        done
    done
done

python3 - "$WORK/results" "$SECONDS_PER_RUN" "${CLOSE:-}" "$SERVER_CPUS" <<'PY'
import statistics, sys
results, seconds, close, server_cpus = sys.argv[1:]
runs = {}
for line in open(results):
    transport, request, server, rps, a, b, errors, cpu = line.split()
    runs.setdefault((transport, request, server), []).append((float(rps), float(a), float(b), int(errors), float(cpu)))
close = " -H 'Connection: close'" if close else ""
TITLES = {
    "plain": f"plaintext HTTP/1.1: wrk -t1 -c64 -d{seconds}s{close}",
    "tls": f"HTTP/1.1 over TLS 1.3: wrk -t1 -c64 -d{seconds}s{close}",
    "h2": f"HTTP/2 over TLS 1.3: h2load -t1 -c64 -m10 -D {seconds}",
}
# h2load prints no percentiles: mean and max there, and the ratios compare
# the means.
LATENCY = {"plain": ("p50", "p99"), "tls": ("p50", "p99"), "h2": ("mean", "max")}
RATIO = {"plain": (2, "p99"), "tls": (2, "p99"), "h2": (1, "mean")}
SERVERS = ["nginx", "caddy", "sws", "grove", "floor"]
for transport in ["plain", "tls", "h2"]:
    cells = {k: v for k, v in runs.items() if k[0] == transport}
    if not cells:
        continue
    rounds = max(len(v) for v in cells.values())
    a, b = LATENCY[transport]
    pinned = f", servers on CPU {server_cpus}, load on CPU 0" if server_cpus else ""
    print(f"\n{TITLES[transport]}, median of {rounds} round{'s' if rounds > 1 else ''}{pinned}")
    print(f"{'request':<8} {'server':<7} {'req/s':>9} {a + ' ms':>9} {b + ' ms':>9} {'cpu us/req':>11}")
    for request in ["page", "asset", "gzip", "304"]:
        med = {}
        for server in SERVERS:
            values = cells.get((transport, request, server))
            if not values:
                continue
            med[server] = [statistics.median(v[i] for v in values) for i in (0, 1, 2, 4)]
            errors = sum(v[3] for v in values)
            note = f"   ! {errors} errors or unexpected statuses" if errors else ""
            rps, x, y, cpu = med[server]
            print(f"{request:<8} {server:<7} {rps:>9.0f} {x:>9.2f} {y:>9.2f} {cpu:>11.1f}{note}")
        if "grove" not in med:
            continue
        g = med["grove"]
        peers = [p for p in SERVERS if p in med and p != "grove"]
        print(f"{'':<8} grove/peer req/s: " + "  ".join(f"{p} {g[0] / med[p][0]:.2f}" for p in peers if med[p][0]))
        i, name = RATIO[transport]
        print(f"{'':<8} grove/peer {name}: " + "  ".join(f"{p} {g[i] / med[p][i]:.2f}" for p in peers if med[p][i] and p != "floor"))
        print(f"{'':<8} grove/peer cpu per request: " + "  ".join(f"{p} {g[3] / med[p][3]:.2f}" for p in peers if med[p][3]))
PY
echo
echo "cold miss (blob only in the local store): ${cold}s; the same request warm: ${warm}s"
