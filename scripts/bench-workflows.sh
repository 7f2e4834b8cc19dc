#!/usr/bin/env bash
# The workflow benchmark (see BENCHMARKS.md, "Workflows"): the latency a 3-task workflow adds
# over calling its function three times, and durable state transitions per second, on one
# node (SQLite).
#   scripts/bench-workflows.sh [OUT.json] [kumo-bench workflow flags, e.g. --duration 20s]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p hello
cargo build --release -p kumo -p kumo-bench
out=${1:-bench-workflows.json}
shift || true
target/release/kumo-bench workflow --out "$out" --kumo target/release/kumo \
  --hello examples/target/wasm32-wasip2/release/hello.wasm "$@"
