#!/usr/bin/env bash
# Run the whole test suite: unit tests, real local Spark, a standalone cluster and a
# Spark Connect server, the Jupyter server, headless Chromium and the example notebooks.
# FAST=1 runs only the tests that need neither Spark nor a browser (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
if [ "${FAST:-0}" = "1" ]; then
  exec python -m pytest -q -m "not spark and not slow and not browser and not cluster" "$@"
fi
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
ruff check jupyter_dataflow tests bench
mypy
python -m pytest -q -p no:cacheprovider "$@" tests
if [ -d examples/notebooks ] && ls examples/notebooks/*.ipynb >/dev/null 2>&1; then
  python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-sanitize-with examples/notebooks/sanitize.cfg \
    --nbval-kernel-name python3 examples/notebooks
fi
