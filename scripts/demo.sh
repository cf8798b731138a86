#!/usr/bin/env bash
# Offline demo: the bundled mock provider on 127.0.0.1:9000 plays OpenAI and Gemini, and the
# gateway listens on 127.0.0.1:8080 with conf/demo.yaml. Ctrl-C stops both.
# First it checks what the build needs (cmake, make, a C compiler; scripts/lib/setup.sh) and
# installs it with apt-get when it can (root, or passwordless sudo); otherwise it stops at once
# with the command to run. `bash scripts/demo.sh --preflight` stops after those checks.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_WHAT="the demo" SETUP_RERUN="bash scripts/demo.sh"
# shellcheck source=lib/setup.sh
. scripts/lib/setup.sh
setup_check_build
setup_install
if [ "${1:-}" = "--preflight" ]; then echo "preflight ok: the build's tools are installed"; exit 0; fi

if [ ! -x target/release/llm-gateway ] || [ ! -x target/release/mock-provider ]; then
  echo "== cargo build --release: the first build compiles Pingora and takes a few minutes (later ones, seconds)"
fi
cargo build --release --bins
./target/release/mock-provider --port 9000 >/dev/null &
mock=$!
trap 'kill $mock 2>/dev/null' EXIT
echo "mock provider on http://127.0.0.1:9000 — gateway on http://127.0.0.1:8080 (Ctrl-C to stop)"
./target/release/llm-gateway --config conf/demo.yaml
