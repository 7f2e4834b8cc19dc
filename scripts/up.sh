#!/usr/bin/env bash
# Starts kumo on 127.0.0.1:8080 (data in ./data) with the examples of kumo.toml built and
# deployed. Extra arguments go to `kumo up`, e.g. --listen 0.0.0.0:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release -p kumo -- up "$@"
