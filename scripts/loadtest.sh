#!/usr/bin/env bash
# The load tests on a fresh machine: installs what they need (wrk, valgrind, the build's and the
# tests' packages), builds the release binaries and the stock-Pingora passthrough example, then
# runs `loadtest/run.py` with the arguments given — or `loadtest/instructions.py` (callgrind)
# when the first argument is `--instructions`.
#   bash scripts/loadtest.sh --only responses --duration 3 --rounds 5
#   bash scripts/loadtest.sh --instructions -n 1000
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_WHAT="the load tests" SETUP_RERUN="bash scripts/loadtest.sh"
# shellcheck source=lib/setup.sh
. scripts/lib/setup.sh
setup_check_tests
setup_need wrk wrk
setup_need valgrind valgrind
setup_need taskset util-linux
setup_install
setup_python_venv
cargo build --release --bins --examples
export PATH="$PWD/.venv/bin:$PATH"
if [ "${1:-}" = "--instructions" ]; then
  shift
  exec python3 loadtest/instructions.py "$@"
fi
exec python3 loadtest/run.py --skip-build "$@"
