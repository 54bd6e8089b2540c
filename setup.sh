#!/usr/bin/env bash
# Sets up FedLedger in ./.venv from requirements.lock (the exact versions the tests ran with).
#   ./setup.sh         the library and the `fedledger` command
#   ./setup.sh --dev   also pytest and the Hardhat node (npm) that the integration tests start
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
    (cd hardhat && npm ci --no-audit --no-fund --loglevel=error)
fi
