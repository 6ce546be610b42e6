# Shared set-up for scripts/demo and scripts/test: a virtual environment with ptdispatch installed.
# Sourced, not run. Safe to repeat: it only does what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "ptdispatch needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.ptdispatch-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "== installing ptdispatch and its test tools into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi

# The real peers the interop tests talk to (Debian packages). Installed when missing and we may.
PEERS=(obfs4proxy:obfs4proxy ss-server:shadowsocks-libev tor:tor turnserver:coturn socat:socat
       microsocks:microsocks tinyproxy:tinyproxy danted:dante-server stun:stun-client unshare:util-linux
       ip:iproute2)
PEERS+=(systemd-analyze:systemd groff:groff-base)  # checks of contrib/ptdispatch-server.service and the man page
PEERS+=(valgrind:valgrind)  # bench/instructions.py (instruction counts per connection) and its test
install_peers() {
    local missing=()
    for pair in "${PEERS[@]}"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "== peers not installed (${missing[*]}): their tests will be skipped; install them as root with apt-get" >&2
        return 0
    fi
    echo "== installing peers: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
    # Debian starts some of these as services where it can; the tests start their own on loopback.
}
