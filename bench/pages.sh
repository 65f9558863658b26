#!/usr/bin/env bash
# Database-backed pages on a 10,000-page site, on this machine:
#  1. render throughput: every page requested once, cold (each renders from
#     node data), 8 clients; and the proxy's resident memory before and
#     after, which holds the pages and their dependency records;
#  2. write -> page visible: a comment written through the API, then the
#     page requested with x-grove-seen: the time from the write to the
#     page holding it, p50/p99 over 200 writes to random posts;
#  3. a restarted proxy serving every page again from the renders kept in
#     the store (pages/s, and how many it rendered: none should be needed);
#  4. the SSG path users have today: the same 10,000 posts as a Hugo site
#     (Debian hugo), one post edited, `hugo` rebuilt and `grove publish`ed,
#     until the proxy serves the new version; the median of 3.
# Usage: bench/pages.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools
command -v hugo >/dev/null || apt_install hugo

POSTS="${POSTS:-10000}"
WORK="$(mktemp -d /tmp/grove-bench-pages.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

log "building (release)"
cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench
BIN="$CARGO_TARGET_DIR/release"

TOKEN="grove_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
# The node's per-handle rate limit (200/s by default) would meter the
# seeding writes and the renders' reads, not grove.
cat >"$WORK/grove.toml" <<CONF
listen = "127.0.0.1:18281"
admin_listen = "127.0.0.1:18282"
state_dir = "$WORK/grove"
[node.limits]
requests_per_second = 1000000
CONF
GROVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN/grove-proxy" --config "$WORK/grove.toml" &
PROXY_PID=$!
until curl -s -o /dev/null http://127.0.0.1:18282/health; do sleep 0.1; done
export GROVE_HOST=http://127.0.0.1:18281 GROVE_TOKEN="$TOKEN" XDG_CONFIG_HOME="$WORK/xdg"

mkdir -p "$WORK/site/_grove" "$WORK/site/_templates"
cat >"$WORK/site/_grove/pages.toml" <<'TOML'
[[route]]
path = "/posts/{id}/"
template = "_templates/post.html"
source = "posts"
TOML
cat >"$WORK/site/_templates/post.html" <<'HTML'
<!doctype html><html><head><title>{{ data.last("posts/" ~ id).data.title }}</title></head><body>
<h1>{{ data.last("posts/" ~ id).data.title }}</h1><p>{{ data.last("posts/" ~ id).data.body }}</p>
{% for comment in data.entries("posts/" ~ id ~ "/comments", limit=20) %}<p class="comment">{{ comment.data.text }}</p>{% endfor %}
</body></html>
HTML
"$BIN/grove" publish "$WORK/site" --site bench --json >/dev/null

log "writing $POSTS posts to the node"
python3 - "$POSTS" "$TOKEN" <<'PY'
import http.client, json, sys
posts, token = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", 18281)
for n in range(posts):
    body = json.dumps({"path": f"posts/{n}", "data": {"title": f"Post {n}", "body": "Lorem ipsum " * 20}})
    conn.request("POST", "/_grove/api/v1/write", body, {"Host": "bench.localhost", "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse(); response.read()
    assert response.status == 200, response.status
PY

rss() { awk '/VmRSS/ {print $2}' "/proc/$PROXY_PID/status"; }
rss_before="$(rss)"
cat >"$WORK/every_page.py" <<'PY'
# Requests every page once with 8 clients; prints pages a second.
import http.client, sys, threading, time
posts = int(sys.argv[1])
ids = list(range(posts))
lock = threading.Lock()
def work():
    conn = http.client.HTTPConnection("127.0.0.1", 18281)
    while True:
        with lock:
            if not ids: return
            n = ids.pop()
        conn.request("GET", f"/posts/{n}/", headers={"Host": "bench.localhost"})
        response = conn.getresponse(); body = response.read()
        assert response.status == 200 and f"Post {n}".encode() in body, (n, response.status)
start = time.time()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(f"{posts / (time.time() - start):.0f}")
PY
log "rendering every page once, 8 clients"
python3 "$WORK/every_page.py" "$POSTS" >"$WORK/render.txt"
# What stays: after the renders' store writes and idle I/O threads are done.
sleep 12
rss_after="$(rss)"

log "write -> visible, 200 writes"
python3 - "$POSTS" "$TOKEN" >"$WORK/visible.txt" <<'PY'
import http.client, json, random, statistics, sys, time
posts, token = int(sys.argv[1]), sys.argv[2]
random.seed(7)
conn = http.client.HTTPConnection("127.0.0.1", 18281)
times = []
for i in range(200):
    n = random.randrange(posts)
    text = f"comment {i}"
    start = time.perf_counter()
    conn.request("POST", "/_grove/api/v1/write", json.dumps({"path": f"posts/{n}/comments", "data": {"text": text}}),
                 {"Host": "bench.localhost", "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse(); ts = json.loads(response.read())["ts"]
    conn.request("GET", f"/posts/{n}/", headers={"Host": "bench.localhost", "x-grove-seen": ts})
    response = conn.getresponse(); body = response.read()
    times.append((time.perf_counter() - start) * 1000)
    assert text.encode() in body and response.getheader("x-grove-stale") is None, (i, response.status)
times.sort()
print(f"{statistics.median(times):.2f} {times[int(len(times) * 0.99) - 1]:.2f}")
PY

log "the SSG path: Hugo, $POSTS posts, one edited, rebuilt and published"
hugo new site "$WORK/hugo" --quiet >/dev/null 2>&1 || hugo new site "$WORK/hugo" >/dev/null
mkdir -p "$WORK/hugo/content/posts" "$WORK/hugo/layouts/_default"
cat >"$WORK/hugo/layouts/_default/single.html" <<'HTML'
<!doctype html><html><head><title>{{ .Title }}</title></head><body><h1>{{ .Title }}</h1>{{ .Content }}</body></html>
HTML
cat >"$WORK/hugo/layouts/_default/list.html" <<'HTML'
<!doctype html><html><body>{{ range .Pages }}<a href="{{ .RelPermalink }}">{{ .Title }}</a>{{ end }}</body></html>
HTML
python3 - "$WORK/hugo/content/posts" "$POSTS" <<'PY'
import os, sys
root, posts = sys.argv[1], int(sys.argv[2])
for n in range(posts):
    with open(os.path.join(root, f"{n}.md"), "w") as page:
        page.write(f"---\ntitle: Post {n}\n---\n{'Lorem ipsum ' * 20}\n")
PY
(cd "$WORK/hugo" && hugo --quiet --baseURL http://bench.localhost/ >/dev/null)
"$BIN/grove" publish "$WORK/hugo/public" --site hugo --json >/dev/null
for round in 1 2 3; do
    echo "a comment, round $round" >>"$WORK/hugo/content/posts/42.md"
    start="$(date +%s.%N)"
    (cd "$WORK/hugo" && hugo --quiet --baseURL http://bench.localhost/ >/dev/null)
    version="$("$BIN/grove" publish "$WORK/hugo/public" --site hugo --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')"
    until [ "$(curl -s -o /dev/null -w '%header{x-grove-version}' -H 'Host: hugo.localhost' http://127.0.0.1:18281/posts/42/)" = "$version" ]; do sleep 0.01; done
    python3 -c "import time; print(f'{(time.time() - $start) * 1000:.0f}')" >>"$WORK/ssg.txt"
done

log "a restarted proxy: every page again, from the renders kept in the store"
sleep 2  # the list of renders is written within a second
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
GROVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN/grove-proxy" --config "$WORK/grove.toml" &
PROXY_PID=$!
until curl -s -o /dev/null http://127.0.0.1:18282/health; do sleep 0.1; done
python3 "$WORK/every_page.py" "$POSTS" >"$WORK/kept.txt"
kept_renders="$(curl -s http://127.0.0.1:18282/metrics | awk '/^grove_page_renders_total\{result="ok"\}/ {print $2}')"

read -r p50 p99 <"$WORK/visible.txt"
python3 - "$POSTS" "$(cat "$WORK/render.txt")" "$rss_before" "$rss_after" "$p50" "$p99" "$WORK/ssg.txt" "$(cat "$WORK/kept.txt")" "${kept_renders:-0}" <<'PY'
import statistics, sys
posts, rate, before, after, p50, p99, ssg, kept, kept_renders = sys.argv[1:]
ssg = statistics.median(float(line) for line in open(ssg))
print(f"{posts} pages rendered cold at {rate} pages/s (8 clients)")
print(f"after a restart, from the kept renders: {kept} pages/s, {float(kept_renders):.0f} renders")
print(f"proxy memory: {int(before) / 1024:.0f} MiB before, {int(after) / 1024:.0f} MiB after: "
      f"{(int(after) - int(before)) / int(posts):.1f} KiB per rendered page (page, reads, slot)")
print(f"write -> visible (x-grove-seen): p50 {float(p50):.2f} ms, p99 {float(p99):.2f} ms")
print(f"SSG: hugo rebuild + grove publish of one edit: {ssg:.0f} ms (median of 3)")
print(f"ratio SSG / grove p50: {ssg / float(p50):.0f}x")
PY
