#!/usr/bin/env python3
"""Instructions per request under `valgrind --tool=callgrind`, for where the time goes when a
throughput ratio of `run.py` is missed. Counts do not depend on how busy the machine is, so
they compare across runs where wall-clock figures cannot. Each server runs under callgrind
with instrumentation off; after a warm-up, it is switched on for N sequential keep-alive
requests, and the instructions counted (Ir) are divided by N. The top functions (inclusive
and self) are written next to the raw callgrind files.

    python3 loadtest/instructions.py                 # 2,000 requests per scenario
    python3 loadtest/instructions.py -n 500 --top 40

The release build is used (target/release); function names come from its symbol table (no
debug info: inlined code is charged to its caller). Valgrind runs SHA-256 and other
CPU-feature paths in their software variant, so hashing weighs more here than on the CPU.
"""

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RELEASE, OtlpSink, free_port, gateway_config, read_response, sized, wait_port  # noqa: E402


def client(port, path, body, n, headers=None):
    data = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode()
    req = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n" % (path.encode(), extra, len(data))) + data
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(n):
        s.sendall(req)
        status, got = read_response(s)
        if status != 200:
            raise SystemExit(f"{path}: status {status}: {got[:300]!r}")
    s.close()


def measure(name, cmd, port, path, body, n, out_dir, top, headers=None):
    out = Path(out_dir) / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".callgrind")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *cmd],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 120)
        time.sleep(1)
        client(port, path, body, 200, headers)  # warm-up: pools, lazy statics, allocator
        subprocess.run(["callgrind_control", "--instr=on", str(p.pid)], capture_output=True, check=True)
        t0 = time.time()
        client(port, path, body, n, headers)
        secs = time.time() - t0
        subprocess.run(["callgrind_control", "--instr=off", str(p.pid)], capture_output=True, check=True)
        # Written now: a server that outlives SIGTERM is killed, and a killed one writes nothing.
        subprocess.run(["callgrind_control", "--dump=measured", str(p.pid)], capture_output=True, check=True)
    finally:
        p.terminate()
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    total, files = 0, []
    for f in sorted(Path(out_dir).glob(out.name + "*")):
        if f.suffix == ".txt":
            continue
        counts = [int(x) for x in re.findall(rb"^(?:summary|totals):\s+(\d+)", f.read_bytes(), re.M)]
        if counts and max(counts):
            total += max(counts)
            files.append(f)
    report = Path(str(out) + ".top.txt")
    with open(report, "w") as fh:
        for flag in ("--inclusive=yes", "--inclusive=no"):
            r = subprocess.run(["callgrind_annotate", flag, "--threshold=99", *map(str, files)], capture_output=True, text=True)
            lines = [l for l in r.stdout.splitlines() if re.match(r"^\s*[\d,]+ \(", l)]
            fh.write(f"## {flag}\n" + "\n".join(lines[:top]) + "\n\n")
    return total / n, secs, report


def main():
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind); `bash scripts/loadtest.sh --instructions` installs it")
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000, help="requests counted per scenario")
    ap.add_argument("--top", type=int, default=30, help="functions listed per report")
    ap.add_argument("--out", default=None, help="directory for callgrind files (default: a temp dir)")
    ap.add_argument("--only", action="append", default=[], help="scenarios whose name contains this (repeatable; the first scenario, the baseline, always runs)")
    args = ap.parse_args()
    out_dir = args.out or tempfile.mkdtemp(prefix="callgrind-")
    Path(out_dir).mkdir(parents=True, exist_ok=True)

    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the load test."}]}
    size = len(json.dumps(chat).encode())
    gem_chat = {**chat, "model": "gemini-2.0-flash"}
    gem_native = sized(lambda t: {"contents": [{"role": "user", "parts": [{"text": t}]}]}, size)
    resp = sized(lambda t: {"model": "gemini-2.0-flash", "input": t, "store": False}, size)
    resp_stored = sized(lambda t: {"model": "gemini-2.0-flash", "input": t, "store": True}, size)
    gem_generate = "/v1beta/models/gemini-2.0-flash:generateContent"

    mock_port = free_port()
    mock = subprocess.Popen([str(RELEASE / "mock-provider"), "--port", str(mock_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(mock_port)
    cfg = Path(out_dir) / "gateway.yaml"
    cfg.write_text(gateway_config(mock_port, cache=False))
    # Tracing on at sampler 1.0, exporting to a sink that answers 200 (as `run.py --only
    # tracing`); every thread's instructions count, the SDK's batch thread included.
    sink = OtlpSink()
    traced_cfg = Path(out_dir) / "gateway-traced.yaml"
    traced_cfg.write_text(gateway_config(mock_port, cache=False, extra=f"tracing: {{ otlp_endpoint: 'http://127.0.0.1:{sink.port}', sampler: always_on, batch_delay_ms: 100 }}\n"))
    rows = []
    try:
        def gateway():
            port = free_port()
            return [str(RELEASE / "llm-gateway"), "--config", str(cfg), "--port", str(port)], port

        def traced():
            port = free_port()
            return [str(RELEASE / "llm-gateway"), "--config", str(traced_cfg), "--port", str(port)], port

        def passthrough():
            port = free_port()
            return [str(RELEASE / "examples" / "passthrough"), f"127.0.0.1:{port}", f"127.0.0.1:{mock_port}"], port

        scenarios = [
            ("plain Pingora passthrough, Gemini generateContent", passthrough, gem_generate, gem_native),
            ("gateway, OpenAI chat route (no translation)", gateway, "/v1/chat/completions", chat),
            ("gateway, OpenAI chat route, tracing on (sampler 1.0)", traced, "/v1/chat/completions", chat),
            ("gateway, Gemini-translated chat route", gateway, "/v1/chat/completions", gem_chat),
            ("gateway, Responses route (Gemini), store false", gateway, "/v1/responses", resp),
            ("gateway, Responses route (Gemini), store true", gateway, "/v1/responses", resp_stored),
            ("gateway, Gemini-native route on gpt-4o-mini (OpenAI)", gateway, "/v1beta/models/gpt-4o-mini:generateContent", gem_native),
        ]
        if args.only:
            scenarios = scenarios[:1] + [s for s in scenarios[1:] if any(o.lower() in s[0].lower() for o in args.only)]
        for name, make, path, body in scenarios:
            cmd, port = make()
            ir, secs, report = measure(name, cmd, port, path, body, args.n, out_dir, args.top)
            rows.append((name, ir, report))
            print(f"{name}: {ir / 1000:.1f}k instructions/request ({args.n} requests, {secs:.0f} s under valgrind); {report}", flush=True)
    finally:
        mock.terminate()
        mock.wait(10)
        sink.stop()
    base = rows[0][1]
    print()
    print("| scenario | instructions/request | vs passthrough |")
    print("|---|---:|---:|")
    for name, ir, _ in rows:
        print(f"| {name} | {ir / 1000:.1f}k | {ir / base:.2f}× |")


if __name__ == "__main__":
    main()
