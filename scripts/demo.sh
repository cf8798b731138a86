#!/usr/bin/env bash
# Offline demo: the bundled mock provider on 127.0.0.1:9000 plays OpenAI and Gemini, and the
# gateway listens on 127.0.0.1:8080 with conf/demo.yaml. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins --quiet
./target/release/mock-provider --port 9000 >/dev/null &
mock=$!
trap 'kill $mock 2>/dev/null' EXIT
echo "mock provider on http://127.0.0.1:9000 — gateway on http://127.0.0.1:8080 (Ctrl-C to stop)"
./target/release/llm-gateway --config conf/demo.yaml
