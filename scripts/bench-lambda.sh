#!/usr/bin/env bash
# The Lambda benchmark (see BENCHMARKS.md, "Lambda functions"): cold starts of a Rust
# (lambda_runtime) and a Python (awslambdaric) function in kumo's sandboxes, and the warm
# overhead over the same binary outside any sandbox. Needs root (sandboxes).
#   scripts/bench-lambda.sh [kumo-bench lambda flags, e.g. --cold 100 --warm 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/lambda-runtimes.sh target/lambda-runtimes
cargo build --release --manifest-path crates/test-programs/lambda/rust/Cargo.toml \
  --target-dir target/lambda-rust
cargo build --release -p kumo-bench
exec target/release/kumo-bench lambda --bootstrap target/lambda-rust/release/bootstrap \
  --runtimes target/lambda-runtimes "$@"
