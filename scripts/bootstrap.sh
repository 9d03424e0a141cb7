#!/usr/bin/env bash
# Idempotent setup for `make demo` and `make test`: Debian packages (when root) and .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd: systemd-analyze (unit tests) and systemd-sysusers (`edge-agent install`).
# postgresql: the CDP store's server for the tests (testbed/postgres.py starts a private one per
# pytest worker with initdb, under the package's `postgres` user when run as root).
APT_PKGS="mosquitto mosquitto-clients xvfb xauth libgl1 libgl1-mesa-dri libegl1 libmtdev1 openssl systemd nats-server chromium chromium-driver postgresql"
missing=""
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "bootstrap: missing Debian packages; run: sudo apt-get install -y --no-install-recommends$missing" >&2
    exit 1
  fi
fi

PY="${PYTHON:-python3}"
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing the project with dev extras into .venv"
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[dev]"; } >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    echo "bootstrap: pip install failed (log above, also in .venv/pip.log)" >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
