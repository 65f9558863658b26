#!/usr/bin/env bash
# `grove publish` against rsync (daemon on loopback), same machine, same site:
# 20,000 files (15,000 pages of 5 KB, 5,000 assets of 50 KB).
#  1. first publish;
#  2. republish after changing 10 pages (time, requests, bytes sent);
#  3. dry run of the unchanged site.
# rsync runs with --checksum where grove hashes, so both read every byte.
# grove's bytes sent count request lines, headers and bodies.
# Usage: bench/publish.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools
command -v rsync >/dev/null || apt_install rsync

WORK="$(mktemp -d /tmp/grove-publish-bench.XXXXXX)"
stop() {
    kill $(jobs -p) 2>/dev/null || true
    [ -f "$WORK/rsync/rsyncd.pid" ] && kill "$(cat "$WORK/rsync/rsyncd.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap stop EXIT

log "building (release)"
# The same package set as the other benchmarks, so their builds are shared.
cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench
BIN="$CARGO_TARGET_DIR/release"

log "generating a 20,000-file site"
python3 - "$WORK/site" <<'PY'
import os, random, sys
root = sys.argv[1]
random.seed(11)
words = [''.join(random.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(random.randint(2, 9))) for _ in range(3000)]
def text(size):
    out, length = [], 0
    while length < size:
        word = random.choice(words)
        out.append(word)
        length += len(word) + 1
    return ' '.join(out)[:size]
for i in range(15000):
    path = os.path.join(root, 'posts', f'{i // 500:02d}', f'post-{i:05d}', 'index.html')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'w').write(f'<!doctype html><title>post {i}</title><p>' + text(5 * 1024 - 40))
os.makedirs(os.path.join(root, 'assets'), exist_ok=True)
for i in range(5000):
    open(os.path.join(root, 'assets', f'chunk-{i:05d}.{random.getrandbits(32):08x}.js'), 'wb').write(random.randbytes(50 * 1024))
PY
SITE_BYTES="$(du -sb "$WORK/site" | cut -f1)"

TOKEN="grove_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
GROVE_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn "$BIN/grove-proxy" --state-dir "$WORK/grove" \
    --listen 127.0.0.1:18091 --admin-listen "" >/dev/null &
mkdir -p "$WORK/rsync/dest"
cat >"$WORK/rsync/rsyncd.conf" <<CONF
pid file = $WORK/rsync/rsyncd.pid
port = 18873
address = 127.0.0.1
use chroot = no
uid = 0
gid = 0
[site]
    path = $WORK/rsync/dest
    read only = no
CONF
rsync --daemon --config "$WORK/rsync/rsyncd.conf"
until curl -s -o /dev/null http://127.0.0.1:18091/; do sleep 0.1; done
until rsync rsync://127.0.0.1:18873/ >/dev/null 2>&1; do sleep 0.1; done

export GROVE_HOST=http://127.0.0.1:18091 GROVE_TOKEN="$TOKEN" XDG_CONFIG_HOME="$WORK/config"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
grove_publish() { "$BIN/grove" publish "$WORK/site" --site bench --json; }
rsync_push() { rsync -a --stats "$@" "$WORK/site/" rsync://127.0.0.1:18873/site/; }
sent() { awk '/Total bytes sent/ { gsub(",", "", $4); print $4 }'; }

log "1. first publish"
start="$(now)"; first="$(grove_publish)"; grove_first="$(elapsed "$start" "$(now)")"
start="$(now)"; rsync_first_sent="$(rsync_push | sent)"; rsync_first="$(elapsed "$start" "$(now)")"

log "2. republish after changing 10 pages"
sync
for i in 0 1500 3000 4500 6000 7500 9000 10500 12000 13500; do
    echo "<p>edited</p>" >>"$WORK/site/posts/$(printf %02d $((i / 500)))/post-$(printf %05d "$i")/index.html"
done
start="$(now)"; second="$(grove_publish)"; grove_second="$(elapsed "$start" "$(now)")"
start="$(now)"; rsync_second_sent="$(rsync_push --checksum | sent)"; rsync_second="$(elapsed "$start" "$(now)")"

log "3. dry run, nothing changed"
start="$(now)"; "$BIN/grove" publish "$WORK/site" --site bench --dry-run --json >"$WORK/dry.json"
grove_dry="$(elapsed "$start" "$(now)")"
start="$(now)"; rsync_push --checksum --dry-run >/dev/null; rsync_dry="$(elapsed "$start" "$(now)")"

python3 - "$SITE_BYTES" "$first" "$second" "$WORK/dry.json" <<PY
import json, sys
site_bytes = int(sys.argv[1])
first, second = json.loads(sys.argv[2]), json.loads(sys.argv[3])
dry = json.load(open(sys.argv[4]))
g1, r1, g2, r2, gd, rd = $grove_first, $rsync_first, $grove_second, $rsync_second, $grove_dry, $rsync_dry
mb = site_bytes / 1e6
print(f"site: {first['files']} files, {mb:.0f} MB")
print(f"{'step':<34} {'grove':>10} {'rsync':>10} {'grove/rsync':>12}")
print(f"{'first publish (s)':<34} {g1:>10.2f} {r1:>10.2f} {g1 / r1:>12.2f}")
print(f"{'first publish (MB/s)':<34} {mb / g1:>10.1f} {mb / r1:>10.1f}")
print(f"{'first publish: bytes sent':<34} {first['sent_bytes']:>10} {$rsync_first_sent:>10} {first['sent_bytes'] / $rsync_first_sent:>12.2f}")
print(f"{'republish, 10 changed (s)':<34} {g2:>10.2f} {r2:>10.2f} {g2 / r2:>12.2f}")
print(f"{'republish: bytes sent':<34} {second['sent_bytes']:>10} {$rsync_second_sent:>10} {second['sent_bytes'] / $rsync_second_sent:>12.2f}")
print(f"{'republish: requests':<34} {second['requests']:>10}")
print(f"{'republish: files uploaded':<34} {second['uploaded_files']:>10}")
print(f"{'dry run, unchanged (s)':<34} {gd:>10.2f} {rd:>10.2f} {gd / rd:>12.2f}")
changes = len(dry['added']) + len(dry['changed']) + len(dry['removed'])
print(f"dry run reported {changes} changes (expected 0)")
PY
