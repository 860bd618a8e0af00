#!/usr/bin/env bash
# The one command that runs every test: setup, formatting, lints, the whole
# suite. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# One cold build: incremental caches only cost disk here.
export CARGO_INCREMENTAL=0
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
