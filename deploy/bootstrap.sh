#!/usr/bin/env bash
# Prepares a fresh machine for spansieve: checks Java and Maven, installs Debian's
# redis-server (and with --browser chromium and chromium-driver, the headless browser of
# tests/browser, and the Node packages of tests/sdk) if missing, and builds the virtual
# environment with the package and its dev extras.
# Idempotent: a second run only re-installs when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need java; then
  echo "error: Java 17+ is needed for Kafka and OpenSearch: apt-get install -y openjdk-17-jre-headless" >&2
  exit 1
fi
if ! need mvn; then
  echo "error: Maven is needed once to fetch the Kafka and OpenSearch jars: apt-get install -y maven" >&2
  exit 1
fi
# Debian packages, quietly; the package lists are refreshed only when the first try fails.
apt_install() {
  local sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
    $sudo_cmd apt-get update -q >/dev/null
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  }
}

if ! need redis-server; then
  echo "installing redis-server (Debian package)"
  apt_install redis-server
fi
# The browser tests drive these paths (tests/browser/conftest.py); only `make test` asks
# for them (--browser), so `make run` does not download a browser.
if [ "${1:-}" = "--browser" ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  echo "installing chromium and chromium-driver (Debian packages, for the browser tests)"
  apt_install chromium chromium-driver
fi

# The real OpenTelemetry JS sampler that tests/integration/test_query_sampling.py drives
# (tests/sdk/, versions pinned by its lockfile); test-only, like the browser.
sdk=tests/sdk
if [ "${1:-}" = "--browser" ]; then
  if ! need npm; then
    echo "warning: npm not found: the SDK sampler test will fail (apt-get install -y nodejs npm)" >&2
  elif [ ! -d "$sdk/node_modules" ] || [ "$sdk/package-lock.json" -nt "$sdk/node_modules/.package-lock.json" ]; then
    echo "installing the Node SDK test packages (npm ci --prefix $sdk)"
    npm ci --prefix "$sdk" --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.spansieve-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
