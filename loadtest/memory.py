#!/usr/bin/env python3
"""Memory under hostile load (issue 18 items 2, 13, 14): RSS of the gateway process while
clients hoard header bytes, hold idle keep-alive connections, hold open streams, and while
an upstream sends an endless body to a streaming request. Prints one table; no assertions
(the bounds are asserted by tests/py/test_memory_limits.py and test_hostile_upstream.py).

    python3 loadtest/memory.py                      # the debug build the tests use
    LLM_GATEWAY_BIN=target/release/llm-gateway python3 loadtest/memory.py

Everything targets 127.0.0.1 and stops by itself.
"""
import os
import resource
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "py"))
from conftest import Gateway, Mock, provider_config  # noqa: E402

import requests  # noqa: E402


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def settle(pid, secs=6.0):
    """RSS after the gateway's periodic purge had a chance to run."""
    time.sleep(secs)
    return rss_mb(pid)


def header_hoard(g, conns=200, kib=1000):
    pid = g.proc.pid
    base = rss_mb(pid)
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", g.port))
        s.settimeout(5)
        socks.append(s)
    chunk = b"X-Hoard: " + b"a" * 1024 + b"\r\n"
    start = b"GET /health HTTP/1.1\r\nHost: x\r\n"
    for s in socks:
        try:
            s.sendall(start)
        except OSError:
            pass
    for _ in range(kib):
        for s in socks:
            try:
                s.sendall(chunk)
            except OSError:
                pass
    peak = rss_mb(pid)
    for s in socks:
        s.close()
    after = settle(pid)
    return base, peak, after


def idle_conns(g, n=5000, cycles=2):
    pid = g.proc.pid
    base = rss_mb(pid)
    rows = []
    req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    for c in range(cycles):
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", g.port))
            s.settimeout(10)
            s.sendall(req)
            socks.append(s)
        for s in socks:
            s.recv(4096)
        time.sleep(1)
        held = rss_mb(pid)
        for s in socks:
            s.close()
        after = settle(pid)
        rows.append((c + 1, held, (held - base) * 1024 / n, after))
    return base, rows


def open_streams(g, m, n=1000):
    pid = g.proc.pid
    base = rss_mb(pid)
    m.configure(chunks=4, chunk_delay_ms=8000)
    body = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", g.port))
        s.settimeout(20)
        s.sendall(req)
        socks.append(s)
    for s in socks:
        s.recv(4096)  # the header and the first event
    time.sleep(1)
    held = rss_mb(pid)
    for s in socks:
        s.close()
    m.configure(chunks=4, chunk_delay_ms=0)
    after = settle(pid)
    return base, held, (held - base) * 1024 / n, after


def endless(g, m, secs=3.0):
    pid = g.proc.pid
    base = rss_mb(pid)
    m.faults({"path_contains": "chat/completions", "action": "endless", "count": 1})
    peak = base
    stop = time.time() + secs
    result = {}

    def client():
        try:
            r = requests.post(f"{g.url}/v1/chat/completions", timeout=secs + 10, stream=True,
                              json={"model": "gpt-4o-mini", "stream": True,
                                    "messages": [{"role": "user", "content": "hi"}]})
            result["status"] = r.status_code
            result["tail"] = b"".join(r.iter_content(65536))[-200:]
        except requests.RequestException as e:
            result["error"] = type(e).__name__

    t = threading.Thread(target=client)
    t.start()
    while time.time() < stop:
        peak = max(peak, rss_mb(pid))
        time.sleep(0.1)
    t.join(secs + 10)
    after = settle(pid)
    return base, peak, after, result


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    m = Mock()
    cfg = provider_config(m.url)
    cfg["server"] = {"max_concurrent_requests": 5000}
    cfg["security"] = {"rate_limiting_enabled": False}
    g = Gateway(cfg)
    try:
        print(f"gateway binary: {os.environ.get('LLM_GATEWAY_BIN', 'target/debug/llm-gateway')}")
        print(f"idle RSS: {rss_mb(g.proc.pid):.1f} MB")
        b, p, a = header_hoard(g)
        print(f"[13] 200 conns x 1000 KiB unfinished headers: base {b:.1f} MB, peak {p:.1f} MB, after close {a:.1f} MB")
        b, rows = idle_conns(g)
        for c, held, per, after in rows:
            print(f"[14] cycle {c}: 5000 idle keep-alive conns: base {b:.1f} MB, held {held:.1f} MB ({per:.1f} KB/conn), after close {after:.1f} MB")
        b, held, per, after = open_streams(g, m)
        print(f"[14] 1000 open streams: base {b:.1f} MB, held {held:.1f} MB ({per:.1f} KB/stream), after close {after:.1f} MB")
        b, p, a, res = endless(g, m)
        print(f"[2] endless non-SSE body to a stream request, 3 s: base {b:.1f} MB, peak {p:.1f} MB, after {a:.1f} MB, client {res}")
    finally:
        g.stop()
        m.stop()


if __name__ == "__main__":
    main()
