#!/usr/bin/env bash
# What kumo needs beyond a Rust toolchain: the wasm32-wasip2 target (guests and examples build
# for it) and the rustfmt/clippy components CI checks with. Safe to run again.
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        rustup component add "$component"
    fi
done
