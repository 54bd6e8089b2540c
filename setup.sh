#!/usr/bin/env bash
# Sets up FedLedger in ./.venv from requirements.lock (the exact versions the tests ran with).
#   ./setup.sh         the library, the `fedledger` command and, where npm is installed, the
#                      Hardhat node that `fedledger demo` starts as its local chain
#   ./setup.sh --dev   also pytest; the Hardhat node is then required (the integration tests start it)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
if [ "${1:-}" = "--dev" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
fi
if command -v npm >/dev/null 2>&1; then
    (cd hardhat && npm ci --no-audit --no-fund --loglevel=error)
elif [ "${1:-}" = "--dev" ]; then
    echo "setup.sh: npm is missing; the tests need the Hardhat node: install Node.js (with npm) and run again" >&2
    exit 1
else
    echo "setup.sh: npm not found, so no Hardhat node: \`fedledger demo\` will need --rpc URL (install Node.js for it)" >&2
fi
