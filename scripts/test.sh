#!/usr/bin/env bash
# Every test: lints, Rust unit tests, benchmark compilation, and the Python tests that run the
# real binaries (gateway + mock provider) on real sockets with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check";                        cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings";   cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo build --bins";                       cargo build --bins --quiet
echo "== cargo test";                               cargo test --quiet
# Benchmarks are compiled (type-checked) by clippy --all-targets above; `cargo bench` runs them.
echo "== pytest tests/py";                          python3 -m pytest tests/py -q -p no:cacheprovider
