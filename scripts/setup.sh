#!/usr/bin/env bash
# Set up a development environment: Java 17, a virtual environment with the package
# and its test tools, and the prebuilt JupyterLab extension.
set -euo pipefail
cd "$(dirname "$0")/.."

need_java() {
  if ! command -v java >/dev/null 2>&1; then return 0; fi
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  [ -z "$v" ] || [ "$v" -lt 17 ]
}

if need_java; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Java 17 (openjdk-17-jre-headless) for Spark..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "error: Spark needs Java 17 or newer. Install it, e.g.: sudo apt-get install openjdk-17-jre-headless" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[test]"
if [ -f package.json ] && [ -x scripts/build-labextension.sh ]; then
  scripts/build-labextension.sh
fi
echo "setup done: $(python --version), $(java -version 2>&1 | head -n1)"
