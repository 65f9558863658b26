#!/usr/bin/env bash
# Many edges on one bucket: 8 release grove-proxy processes on one moto S3
# server, 1000 sites, in two designs on the same machine and data: today's
# on-demand polling (every busy site's root re-read each second) and the
# journal with pushes. Prints store requests per edge per second against
# the number of busy sites, idle, and publish -> first new response on
# every edge (p50, p99). Usage: bench/edges.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools
ensure_moto

log "building (release)"
cargo build --release --locked -p grove-proxy -p grove-bench --bin grove-proxy --bin edges
GROVE_PROXY_BIN="$CARGO_TARGET_DIR/release/grove-proxy" "$CARGO_TARGET_DIR/release/edges"
