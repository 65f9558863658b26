#!/usr/bin/env bash
# CDN purge under repeated publishes on Cloudflare Free-plan limits, against
# the fake Cloudflare API (the only faked component; it enforces the limits).
# See bench/src/bin/purge.rs for what is measured.
# Usage: bench/purge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_tools

WORK="$(mktemp -d /tmp/grove-purge-bench.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

log "building (release)"
# One invocation: features unify across the three, so nothing builds twice.
cargo build --release --locked -p grove-proxy -p grove-publisher -p grove-bench
BIN="$CARGO_TARGET_DIR/release"
"$BIN/purge" "$BIN/grove-proxy" "$BIN/grove" "$WORK"
