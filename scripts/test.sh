#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the end-to-end tests against the real server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo test --workspace "$@"
