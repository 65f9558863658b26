# Installs what grove's build and tests need and a fresh Debian machine with
# only the Rust toolchain lacks. Sourced by scripts/test and scripts/demo;
# every step is skipped when its tool is already there.

set -euo pipefail

# One target directory outside the clone, shared by every checkout and by CI.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/grove-target}"
# Tools installed by these scripts (the S3 test server's virtualenv).
export GROVE_TOOLS="${GROVE_TOOLS:-/var/tmp/grove-tools}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        log "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Pingora's build needs cmake; -sys crates need a C compiler.
ensure_build_tools() {
    local missing=()
    command -v cmake >/dev/null || missing+=(cmake)
    command -v cc >/dev/null || missing+=(gcc libc6-dev)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

ensure_rust_components() {
    for component in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
            log "rustup component add $component"
            rustup component add "$component"
        fi
    done
}

# moto_server: a real S3-protocol server for the tests, in its own virtualenv.
ensure_moto() {
    local venv="$GROVE_TOOLS/venv"
    if [ ! -x "$venv/bin/moto_server" ]; then
        if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
            apt_install python3 python3-venv
        fi
        log "installing moto[server] into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv" || { apt_install python3-venv && python3 -m venv "$venv"; }
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
    fi
    # moto checks a conditional write's precondition and then writes, in two
    # steps, while serving requests on many threads: concurrent If-Match
    # writes could both succeed, which S3 and R2 never allow. Serving one
    # request at a time makes its conditional writes atomic.
    cat >"$venv/bin/moto_server_serial" <<PY
#!$venv/bin/python
import threading
import moto.server as server

_one_at_a_time = threading.Lock()

class Serialized(server.DomainDispatcherApplication):
    def __call__(self, environ, start_response):
        with _one_at_a_time:
            return super().__call__(environ, start_response)

server.DomainDispatcherApplication = Serialized
server.main()
PY
    chmod +x "$venv/bin/moto_server_serial"
    export GROVE_MOTO_SERVER="$venv/bin/moto_server_serial"
}

# Node.js and npm build and test the service worker (sw/).
ensure_node() {
    command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
}

# Debian's wget and Python crawl the demo site and parse its robots.txt in
# the search-bot tests.
ensure_crawler_tools() {
    local missing=()
    command -v wget >/dev/null || missing+=(wget)
    command -v python3 >/dev/null || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# Debian's Chromium, driven by playwright-core in the service worker's
# browser tests (never a downloaded browser).
ensure_chromium() {
    [ -x /usr/bin/chromium ] || apt_install chromium
}
