#!/usr/bin/env bash
# What a signed-in session costs grove-proxy, on this machine:
#  1. requests/s and p99 of one 5 KB page anonymous, against the same page
#     with a session cookie (the session lookup, its cache, and the private
#     reply), wrk -t2 -c64, alternating rounds, medians;
#  2. idle /_grove/live streams of 1,000 and of 10,000 signed-in sessions
#     (each signed in at the provider), with the proxy's resident memory
#     before and while it holds them.
# The session comes from a real sign-in at the test OpenID provider.
# Usage: bench/session.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools
ensure_node
command -v wrk >/dev/null || apt_install wrk
(cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)

SECONDS_PER_RUN="${1:-10}"
WORK="$(mktemp -d /tmp/grove-bench-session.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log "building (release)"
cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench
BIN="$CARGO_TARGET_DIR/release"

PROXY_PORT=18091
PROVIDER_PORT=18093
HOST="demo.localhost:$PROXY_PORT"
mkdir -p "$WORK/site" "$WORK/grove"
python3 -c "import random; random.seed(7); open('$WORK/site/page.html','w').write('<html><body>' + ''.join(random.choice('abcdefgh ') for _ in range(5 * 1024 - 26)) + '</body></html>')"
"$BIN/seed" "$WORK/grove/store" demo "$WORK/site"
cat >"$WORK/grove.toml" <<CONF
listen = "127.0.0.1:$PROXY_PORT"
admin_listen = "127.0.0.1:18092"
state_dir = "$WORK/grove"
[http]
max_connections_per_client = 20000
max_connections = 30000
[sites.demo.auth]
issuer = "http://127.0.0.1:$PROVIDER_PORT"
client_id = "grove-demo"
client_secret_env = "DEMO_OIDC_SECRET"
read = ["comments/*"]
CONF
node tests/oidc/provider.mjs "{\"port\":$PROVIDER_PORT,\"clients\":[{\"client_id\":\"grove-demo\",\"client_secret\":\"bench\",\"redirect_uris\":[\"http://$HOST/_grove/auth/callback\"]}]}" >/dev/null &
DEMO_OIDC_SECRET=bench RUST_LOG=warn "$BIN/grove-proxy" --config "$WORK/grove.toml" &
PROXY_PID=$!
until curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/" && curl -s -o /dev/null "http://127.0.0.1:$PROVIDER_PORT/.well-known/openid-configuration"; do sleep 0.1; done

log "signing in at the provider"
resolve=(--resolve "$HOST:127.0.0.1")
# A response header's value ("" when absent).
header() { { grep -i "^$1:" "$2" || true; } | head -1 | sed 's/^[^:]*: //' | tr -d '\r'; }
curl -s "${resolve[@]}" -D "$WORK/start" -o /dev/null "http://$HOST/_grove/auth/login?return=/"
login_cookie="$(grep -i '^set-cookie: __Host-grove_login_' "$WORK/start" | sed 's/^[^:]*: //; s/;.*//')"
next="$(header location "$WORK/start")"
jar="$WORK/provider-cookies"
# Through the provider's redirects to its login form, then post it, then on
# to our callback (which needs the state cookie the provider never sees).
while :; do
    curl -s -c "$jar" -b "$jar" -D "$WORK/h" -o "$WORK/body" "$next"
    location="$(header location "$WORK/h")"
    if [ -z "$location" ]; then
        action="$(grep -o 'action="[^"]*"' "$WORK/body" | head -1 | cut -d'"' -f2)"
        case "$action" in http*) ;; *) action="http://127.0.0.1:$PROVIDER_PORT$action" ;; esac
        curl -s -c "$jar" -b "$jar" -D "$WORK/h" -o /dev/null --data 'prompt=login&login=alice&password=any' "$action"
        location="$(header location "$WORK/h")"
    fi
    case "$location" in
        http://$HOST/*) next="$location"; break ;;
        /*) next="http://127.0.0.1:$PROVIDER_PORT$location" ;;
        *) next="$location" ;;
    esac
done
curl -s "${resolve[@]}" -H "Cookie: $login_cookie" -D "$WORK/done" -o /dev/null "$next"
session="$(grep -i '^set-cookie: __Host-grove_session=' "$WORK/done" | sed 's/^[^:]*: //; s/;.*//')"
[ -n "$session" ] || { echo "the sign-in did not set a session cookie" >&2; cat "$WORK/done" >&2; exit 1; }
me="$(curl -s "${resolve[@]}" -H "Cookie: $session" "http://$HOST/_grove/auth/me")"
echo "signed in: $me" | cut -c1-120
curl -s "${resolve[@]}" -H "Cookie: $session" -D - -o /dev/null "http://$HOST/page.html" | grep -i '^cache-control\|^x-grove-live'

to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0; else printf "%.3f", v * 1000 }'; }
run() { # name, extra header
    local out
    out="$(wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency -H "Host: $HOST" ${2:+-H "$2"} "http://127.0.0.1:$PROXY_PORT/page.html")"
    echo "$1 $(awk '/Requests\/sec/ {print $2}' <<<"$out") $(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
}
ROUNDS="${ROUNDS:-3}"
log "load: wrk -t2 -c64 -d${SECONDS_PER_RUN}s on /page.html, $ROUNDS alternating rounds"
run anonymous "" >/dev/null
run signed-in "Cookie: $session" >/dev/null
for round in $(seq "$ROUNDS"); do
    run anonymous "" >>"$WORK/results"
    run signed-in "Cookie: $session" >>"$WORK/results"
done
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
for name, rps, p99 in (line.split() for line in open(sys.argv[1])):
    rows.setdefault(name, []).append((float(rps), float(p99)))
med = {name: [statistics.median(r[i] for r in runs) for i in range(2)] for name, runs in rows.items()}
for name, (rps, p99) in med.items():
    print(f"{name:<10} {rps:>10.0f} req/s  p99 {p99:.2f} ms")
a, s = med["anonymous"], med["signed-in"]
print(f"ratio signed-in/anonymous: throughput {s[0] / a[0]:.2f}  p99 {s[1] / a[1]:.2f}")
PY

rss() { awk '/^VmRSS/ {print $2}' "/proc/$PROXY_PID/status"; }
log "idle /_grove/live streams"
cat >"$WORK/streams.mjs" <<'JS'
// Signs in `count` users (user0, user1, ...) at the provider, opens one
// /_grove/live stream for each session, holds them all, and prints how many
// are open.
import http from 'node:http';
const [proxyPort, host, count] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4])];
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
function request(method, url, headers = {}, body) {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const sent = http.request({ host: target.hostname, port: target.port, path: target.pathname + target.search, method, agent,
      headers: { ...headers, ...(body ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } : {}) } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, text }));
      });
    sent.on('error', reject);
    sent.end(body);
  });
}
const proxy = (path) => `http://127.0.0.1:${proxyPort}${path}`;
async function signIn(n) {
  let r = await request('GET', proxy('/_grove/auth/login?return=/'), { host });
  const state = r.headers['set-cookie'][0].split(';')[0];
  const jar = new Map();
  let [method, url, body] = ['GET', r.headers.location, undefined];
  for (;;) {
    r = await request(method, url, { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') }, body);
    for (const line of r.headers['set-cookie'] ?? []) {
      const [pair] = line.split(';');
      const at = pair.indexOf('=');
      jar.set(pair.slice(0, at), pair.slice(at + 1));
    }
    if (r.status >= 300 && r.status < 400) {
      const next = new URL(r.headers.location, url);
      if (next.host === host) { url = next; break; }
      [method, url, body] = ['GET', next.href, undefined];
      continue;
    }
    const action = /action="([^"]+)"/.exec(r.text)[1];
    const prompt = /name="prompt" value="([^"]+)"/.exec(r.text)?.[1] ?? 'login';
    [method, url, body] = ['POST', new URL(action, url).href, prompt === 'login' ? `prompt=login&login=user${n}&password=any` : `prompt=${prompt}`];
  }
  r = await request('GET', proxy(url.pathname + url.search), { host, cookie: state });
  return r.headers['set-cookie'].find((line) => line.startsWith('__Host-grove_session=')).split(';')[0];
}
let [open, failed, next] = [0, 0, 0];
const held = [];
const started = Date.now();
async function worker() {
  while (next < count) {
    const n = next++;
    try {
      const cookie = await signIn(n);
      await new Promise((resolve) => {
        const stream = http.get({ host: '127.0.0.1', port: proxyPort, path: '/_grove/live?path=comments/demo', agent: false, headers: { host, cookie } },
          (response) => { if (response.statusCode === 200) open++; else failed++; held.push(response); response.once('data', resolve); });
        stream.on('error', () => { failed++; resolve(); });
      });
    } catch (error) {
      failed++;
      if (failed < 5) console.error(String(error));
    }
  }
}
await Promise.all(Array.from({ length: 32 }, worker));
console.log(`${open} ${failed} ${((Date.now() - started) / 1000).toFixed(1)}`);
setInterval(() => {}, 1 << 30);
JS
base="$(rss)"
for count in 1000 10000; do
    node "$WORK/streams.mjs" "$PROXY_PORT" "$HOST" "$count" >"$WORK/streams.out" &
    holder=$!
    until [ -s "$WORK/streams.out" ]; do sleep 0.2; done
    sleep 2
    read -r open failed took <"$WORK/streams.out"
    held="$(rss)"
    echo "sessions signed in and streaming: $open of $count ($failed failed; sign-ins took ${took}s); proxy RSS $((base / 1024)) MiB idle -> $((held / 1024)) MiB ($(( (held - base) * 1024 / (open > 0 ? open : 1) )) bytes a stream)"
    kill "$holder"; wait "$holder" 2>/dev/null || true
    rm -f "$WORK/streams.out"
    sleep 2
done
