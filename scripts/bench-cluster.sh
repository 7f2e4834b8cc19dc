#!/usr/bin/env bash
# The cluster benchmark (see BENCHMARKS.md, "A cluster on PostgreSQL"): kumo on SQLite beside
# kumo on PostgreSQL (one node, three nodes), in one run, against a private PostgreSQL started
# here (as scripts/test.sh does) and stopped at the end.
#   scripts/bench-cluster.sh [OUT.json] [kumo-bench cluster flags, e.g. --duration 10s]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p hello
cargo build --release -p kumo -p kumo-bench
pg_dir=$(mktemp -d /tmp/kumo-postgres.XXXXXX)
trap 'bash scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
url=$(KUMO_PG_DURABLE=1 bash scripts/postgres.sh start "$pg_dir")
out=${1:-bench-cluster.json}
shift || true
target/release/kumo-bench cluster --out "$out" --kumo target/release/kumo \
  --hello examples/target/wasm32-wasip2/release/hello.wasm --postgres "$url" "$@"
