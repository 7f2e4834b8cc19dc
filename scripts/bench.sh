#!/usr/bin/env bash
# The benchmark (see BENCHMARKS.md): kumo beside `wasmtime serve` (the peer, installed here if
# missing) and a bare hyper server (the limit), in one run, on this machine.
#   scripts/bench.sh [OUT.json] [kumo-bench run flags, e.g. --duration 10s]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WASMTIME_VERSION=48.0.8 # the wasmtime kumo embeds; builds with the machine's toolchain
WASMTIME=.bench/wasmtime/bin/wasmtime
if ! "$WASMTIME" --version 2>/dev/null | grep -q "$WASMTIME_VERSION"; then
  echo "installing wasmtime-cli $WASMTIME_VERSION into .bench/ (once; takes a few minutes)" >&2
  cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked --root .bench/wasmtime
fi
cargo build --release --target wasm32-wasip2 --manifest-path examples/Cargo.toml -p hello
cargo build --release -p kumo -p kumo-bench
out=${1:-bench-results.json}
shift || true
exec target/release/kumo-bench run --out "$out" \
  --hello examples/target/wasm32-wasip2/release/hello.wasm --wasmtime "$WASMTIME" "$@"
