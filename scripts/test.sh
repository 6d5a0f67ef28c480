#!/usr/bin/env bash
# Install everything the tests need and run them: the README's test command, and exactly what CI runs.
# The tests start their own Redis, workers and Flower on free ports; the browser test needs Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser test" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "the browser test needs Chromium: install it (e.g. sudo apt-get install -y chromium) and rerun" >&2
    exit 1
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0 -e '.[worker,test]'
exec .venv/bin/python -m pytest "$@"
