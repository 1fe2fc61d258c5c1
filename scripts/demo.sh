#!/usr/bin/env bash
# Set up, then run the example flow on the embedded default engine (local Spark).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
python examples/quickstart.py "$@"
