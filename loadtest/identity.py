#!/usr/bin/env python3
"""Issue 15 figures, in ONE run: gateway CPU per request for the same chat request sent with
(a) a config-file access key, (b) a JWT (RS256, the same token each time: the verified-token
cache), (c) the same config-file key with a USD budget (reserve + settle per request, state
file: budget accounting alone, the auth path being the same as (a)), (d) a managed key with a
USD budget.

Targets (issue 15): (b) - (a) <= 10 us of CPU; (c) / (a) - 1 <= 5 %.

`--callgrind N` counts instructions per request instead (valgrind, N sequential requests per
scenario, as loadtest/instructions.py does): independent of how busy the machine is, and the
top functions of each scenario are written beside the callgrind files, for finding a cost.

Three gateways on one mock provider, measured in alternating rounds (medians); CPU per request
is read from /proc (utime + stime of the gateway process) over keep-alive Python clients.
No wrk needed. Uses target/release when built, else target/debug (then the gateway's own
code is unoptimised and the absolute figures are inflated; the differences still show).

    python3 loadtest/identity.py --requests 20000 --rounds 3
    python3 loadtest/identity.py --callgrind 2000
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "loadtest"))
from run import cpu_ticks, free_port, wait_port  # noqa: E402

import jwt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

BIN = ROOT / "target" / ("release" if (ROOT / "target/release/llm-gateway").exists() else "debug")
BODY = json.dumps({"model": "gpt-4o-mini", "max_tokens": 16,
                   "messages": [{"role": "user", "content": "hello there"}]})
ADMIN = "load-admin-key-0123456789abcdef"


def start(cfg, tmp, name, env=None):
    port = free_port()
    path = Path(tmp) / f"{name}.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.Popen([str(BIN / "llm-gateway"), "--config", str(path), "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    wait_port(port)
    time.sleep(0.5)
    return p, port


def load(port, headers, n, threads=4):
    def worker(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(k):
            c.request("POST", "/v1/chat/completions", BODY, {"content-type": "application/json", **headers})
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
        c.close()

    ts = [threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return n // threads * threads


def callgrind(scenarios, tmp, n):
    """Each scenario's gateway again, under callgrind: instructions per request."""
    import instructions

    rows = {}
    for name, (p, _, headers) in scenarios.items():
        cmd = Path(f"/proc/{p.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        cmd = [c.decode() for c in cmd]
        port = free_port()
        cmd[cmd.index("--port") + 1] = str(port)
        ir, secs, report = instructions.measure(name, cmd, port, "/v1/chat/completions", json.loads(BODY),
                                                n, tmp, 30, headers=headers)
        rows[name] = ir
        print(f"{name}: {ir / 1000:.1f}k instructions/request ({n} requests, {secs:.0f} s); {report}", flush=True)
    base = rows["access key"]
    print("| scenario | instructions / request | vs access key |")
    print("|---|---:|---:|")
    for name, ir in rows.items():
        print(f"| {name} | {ir / 1000:.1f}k | {(ir - base) / 1000:+.1f}k ({(ir / base - 1) * 100:+.1f} %) |")


def main():
    ap = argparse.ArgumentParser()
    # /proc CPU is counted in 10 ms ticks: 20,000 requests of ~50 us are ~100 ticks per round.
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="instructions per request over N requests per scenario, under valgrind")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lt-identity-")
    mock = subprocess.Popen([str(BIN / "mock-provider"), "--port", "0"], stdout=subprocess.PIPE, text=True)
    mock_port = int(mock.stdout.readline().strip().rsplit(":", 1)[1])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    token = jwt.encode({"sub": "load", "iss": "lt", "aud": "gw", "exp": int(time.time()) + 3600}, key, algorithm="RS256")

    def cfg(auth):
        return {"server": {"host": "127.0.0.1"}, "auth": {"mode": "gateway", **auth},
                "providers": {"openai": {"api_key": "load-test-key", "base_url": f"http://127.0.0.1:{mock_port}/v1"}},
                "cache": {"enabled": False}, "security": {"rate_limiting_enabled": False},
                "logging": {"level": "warn"}}

    procs = []
    try:
        pk, port_key = start(cfg({"keys": [{"id": "k", "key": "config-access-key-1"}]}), tmp, "key")
        pj, port_jwt = start(cfg({"jwt": {"keys": [pem], "issuer": "lt", "audiences": ["gw"]}}), tmp, "jwt")
        pc, port_cfgb = start(cfg({"keys": [{"id": "k", "key": "config-access-key-1",
                                             "budget": {"usd": 1e9, "period": "monthly"}}],
                                   "state_file": f"{tmp}/state-cfg.json"}), tmp, "key-budget")
        pb, port_bud = start(cfg({"admin_key": ADMIN, "state_file": f"{tmp}/state.json"}), tmp, "budget")
        procs = [pk, pj, pc, pb]
        c = http.client.HTTPConnection("127.0.0.1", port_bud)
        c.request("POST", "/admin/keys", json.dumps({"id": "lt", "budget": {"usd": 1e9, "period": "monthly"}}),
                  {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"})
        managed = json.loads(c.getresponse().read())["key"]
        scenarios = {
            "access key": (pk, port_key, {"x-api-key": "config-access-key-1"}),
            "JWT (RS256, cached)": (pj, port_jwt, {"authorization": f"Bearer {token}"}),
            "access key + budget": (pc, port_cfgb, {"x-api-key": "config-access-key-1"}),
            "managed key + budget": (pb, port_bud, {"x-api-key": managed}),
        }
        if args.callgrind:
            return callgrind(scenarios, tmp, args.callgrind)
        for _, (p, port, h) in scenarios.items():
            load(port, h, 200)  # warm-up (first JWT verification, connections)
        results = {name: [] for name in scenarios}
        for _ in range(args.rounds):
            for name, (p, port, h) in scenarios.items():
                before = cpu_ticks(p.pid)
                t0 = time.time()
                n = load(port, h, args.requests)
                wall = time.time() - t0
                us = (cpu_ticks(p.pid) - before) / os.sysconf("SC_CLK_TCK") * 1e6 / n
                results[name].append((us, n / wall))
        base = statistics.median(u for u, _ in results["access key"])
        print(f"binary: {BIN}; {args.rounds} rounds x {args.requests} requests per scenario (medians)")
        print("| scenario | gateway CPU / request | vs access key | requests/s |")
        print("|---|---|---|---|")
        for name, runs in results.items():
            us = statistics.median(u for u, _ in runs)
            rps = statistics.median(r for _, r in runs)
            print(f"| {name} | {us:.1f} µs | {us - base:+.1f} µs ({(us / base - 1) * 100:+.1f} %) | {rps:.0f} |")
        med = {name: statistics.median(u for u, _ in runs) for name, runs in results.items()}
        jwt_extra = med["JWT (RS256, cached)"] - base
        budget_extra = (med["access key + budget"] / base - 1) * 100
        print(f"JWT over access key: {jwt_extra:+.1f} µs (target <= 10 µs: {'met' if jwt_extra <= 10 else 'MISSED'})")
        print(f"budget accounting: {budget_extra:+.1f} % (target <= 5 %: {'met' if budget_extra <= 5 else 'MISSED'})")
        print("per round (µs/request):", {name: [round(u, 1) for u, _ in runs] for name, runs in results.items()})
    finally:
        for p in procs:
            p.terminate()
        mock.terminate()


if __name__ == "__main__":
    main()
