#!/usr/bin/env bash
# Every test: lints, Rust unit tests, benchmark compilation, and the Python tests that run the
# real binaries (gateway + mock provider) on real sockets with real clients.
# First the set-up (scripts/lib/setup.sh): the apt packages the build and the tests need
# (installed when root or with passwordless sudo, else it stops at once naming them), rustfmt and
# clippy, the Python packages in the project-local .venv and tests/node's Node packages, each
# skipped while current. `bash scripts/test.sh --preflight` stops after the set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_WHAT="the tests" SETUP_RERUN="bash scripts/test.sh"
# shellcheck source=lib/setup.sh
. scripts/lib/setup.sh
setup_check_tests
setup_install
setup_rust_components
setup_python_venv
setup_node_modules
if [ "${1:-}" = "--preflight" ]; then echo "preflight ok: everything the tests need is installed"; exit 0; fi
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" # tools pip installs (hadolint) too
[ -d target/debug ] || echo "(the first build compiles Pingora: a few minutes before the first lint result)"

echo "== cargo fmt --check";                        cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings";   cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo build --bins";                       cargo build --bins --quiet
echo "== cargo test";                               cargo test --quiet
# Benchmarks are compiled (type-checked) by clippy --all-targets above; `cargo bench` runs them.
echo "== pytest tests/py";                          .venv/bin/python -m pytest tests/py -q -p no:cacheprovider
