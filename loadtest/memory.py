#!/usr/bin/env python3
"""Memory under hostile load (issue 18 items 2, 13, 14): RSS of the gateway process while
clients hoard header bytes, hold idle keep-alive connections, hold open streams, and while
an upstream sends an endless body to a streaming request. Prints one table; no assertions
(the bounds are asserted by tests/py/test_memory_limits.py and test_hostile_upstream.py).

Responses conversation state (issue 13 item 3, `--only responses`): 10,000 stored Responses
conversations on a Gemini model (one ~1 KB turn each, 16 concurrent clients), RSS before and
after against what the store counts (payload + ENTRY_OVERHEAD each) and its bounds
(`responses.max_stored`, `responses.max_stored_bytes`); then 20,000 more, to show eviction
keeps it there; then 20,000 on a gateway whose byte bound is the one that binds.

    python3 loadtest/memory.py                      # the debug build the tests use
    LLM_GATEWAY_BIN=target/release/llm-gateway python3 loadtest/memory.py
    LLM_GATEWAY_BIN_DIR=target/release python3 loadtest/memory.py --only responses   # gateway and mock

Everything targets 127.0.0.1 and stops by itself.
"""
import argparse
import json
import resource
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "py"))
from conftest import GATEWAY_BIN, MOCK_BIN, Gateway, Mock, provider_config  # noqa: E402

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


# src/conversations/memory.rs: 2 * size_of::<(Key, Slot)>() + 4 * size_of::<(Key, u64)>() + 128
# = 2 * 192 + 4 * 48 + 128 on x86_64 (the layouts rebuilt with rustc: Key 32 bytes, aligned 16;
# Slot 160; the pair 192; (Key, u64) 48).
ENTRY_OVERHEAD = 576
DEFAULT_MAX_STORED = 10_000
DEFAULT_MAX_STORED_BYTES = 128 * 1024 * 1024

# A realistic small user turn: ~1 KB of prose, made distinct per conversation.
TURN = ("We are planning the quarterly maintenance window for the payments cluster. The "
        "database team needs two hours on Saturday night, the network team wants to replace "
        "the top-of-rack switches in rows C and D, and the application team has a schema "
        "migration that must run before Monday's release. Please propose an order for these "
        "tasks that keeps the checkout service available for as long as possible, list the "
        "risks of each step, say which steps can run in parallel, and suggest what we should "
        "verify after each one before moving on. Keep the answer short: a numbered list with "
        "one line per step, then three lines of risks, then a rollback note for the schema "
        "migration. Assume the read replicas can take traffic during the switch replacement "
        "and that the cache can be warmed in about ten minutes afterwards. Mention anything "
        "the on-call engineer should watch on the dashboards during the window, too. ")


def create_conversations(url, n, first=0, conc=16, deadline_s=300.0):
    """POSTs n stored Responses requests (one turn each) with `conc` clients; returns
    (ids in creation order, seconds, failures). Stops at the deadline."""
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()
    stop = time.time() + deadline_s

    def one(i):
        if time.time() > stop:
            return i, None
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
        body = {"model": "gemini-2.0-flash", "input": f"Conversation {i}. " + TURN, "store": True}
        try:
            r = s.post(f"{url}/v1/responses", json=body, timeout=30)
            if r.status_code == 200:
                return i, r.json()["id"]
        except (requests.RequestException, ValueError, KeyError):
            pass
        return i, None

    t0 = time.time()
    with ThreadPoolExecutor(conc) as ex:
        got = sorted(ex.map(one, range(first, first + n)))
    ids = [rid for _, rid in got if rid]
    return ids, time.time() - t0, n - len(ids)


def payload_estimate(url, rid):
    """The bytes the store counts for one conversation, rebuilt from what the gateway returns:
    id + the response as returned + its input items + the context (input items and output)."""
    resp = requests.get(f"{url}/v1/responses/{rid}", timeout=10)
    items = requests.get(f"{url}/v1/responses/{rid}/input_items", timeout=10).json().get("data", [])
    compact = lambda v: len(json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode())
    output = resp.json().get("output", [])
    return {"id": len(rid), "response": len(resp.content), "input_items": compact(items), "context": compact(items + output)}


def found(url, rid):
    return requests.get(f"{url}/v1/responses/{rid}", timeout=10).status_code == 200


def responses_state(m, conc=16):
    """Issue 13 item 3. Fresh gateways (release build recommended), access log off."""
    def gateway(extra=None):
        cfg = provider_config(m.url)
        cfg["security"] = {"rate_limiting_enabled": False}
        cfg["logging"] = {"level": "warn", "format": "json"}
        if extra:
            cfg["responses"] = extra
        return Gateway(cfg)

    g = gateway()
    try:
        pid = g.proc.pid
        # Warm-up without state: connection pools, allocator arenas, lazy statics.
        for i in range(200):
            requests.post(f"{g.url}/v1/responses", timeout=30,
                          json={"model": "gemini-2.0-flash", "input": f"warm {i}. " + TURN, "store": False})
        base = settle(pid, 2)
        ids1, secs1, fail1 = create_conversations(g.url, 10_000, 0, conc)
        held1 = rss_mb(pid)
        after1 = settle(pid)
        parts = payload_estimate(g.url, ids1[-1])
        per_conv = sum(parts.values())
        counted = len(ids1) * (per_conv + ENTRY_OVERHEAD) / 2**20
        print(f"[responses] gateway defaults: max_stored {DEFAULT_MAX_STORED}, max_stored_bytes "
              f"{DEFAULT_MAX_STORED_BYTES / 2**20:.0f} MiB, ENTRY_OVERHEAD {ENTRY_OVERHEAD} B")
        print(f"[responses] one conversation: payload ~{per_conv} B ({', '.join(f'{k} {v}' for k, v in parts.items())}; "
              f"request body {len(json.dumps({'model': 'gemini-2.0-flash', 'input': 'Conversation 9999. ' + TURN, 'store': True}))} B), "
              f"counted {per_conv + ENTRY_OVERHEAD} B with ENTRY_OVERHEAD")
        print(f"[responses] pass 1: {len(ids1)} stored conversations in {secs1:.1f} s ({len(ids1) / secs1:.0f}/s, "
              f"{conc} clients, {fail1} failed): RSS base {base:.1f} MB, after {held1:.1f} MB, settled {after1:.1f} MB; "
              f"growth {after1 - base:.1f} MB = {(after1 - base) * 2**20 / max(1, len(ids1)):.0f} B/conversation; "
              f"the store counts {counted:.1f} MiB, bound {DEFAULT_MAX_STORED_BYTES / 2**20:.0f} MiB")
        ids2, secs2, fail2 = create_conversations(g.url, 20_000, 10_000, conc)
        after2 = settle(pid)
        oldest_gone = not found(g.url, ids1[0])
        kept = sum(found(g.url, r) for r in ids2[-10:])
        # Which ids survive: the newest max_stored of all 30,000 (count bound), oldest out first.
        survivors = sum(found(g.url, r) for r in (ids1 + ids2)[-DEFAULT_MAX_STORED - 50:-DEFAULT_MAX_STORED + 50])
        print(f"[responses] pass 2: {len(ids2)} more in {secs2:.1f} s ({fail2} failed): RSS settled {after2:.1f} MB "
              f"({after2 - after1:+.1f} MB vs pass 1; growth over base {after2 - base:.1f} MB); oldest of pass 1 "
              f"{'evicted' if oldest_gone else 'STILL THERE'}, newest 10 of pass 2: {kept}/10 found, "
              f"around the 10,000th newest: {survivors}/100 found (50 expected)")
    finally:
        g.stop()

    # The byte bound binding instead of the count: 16 MiB for ~4,000 of these conversations.
    small = 16 * 2**20
    g = gateway({"max_stored": 1_000_000, "max_stored_bytes": small})
    try:
        pid = g.proc.pid
        for i in range(200):
            requests.post(f"{g.url}/v1/responses", timeout=30,
                          json={"model": "gemini-2.0-flash", "input": f"warm {i}. " + TURN, "store": False})
        base = settle(pid, 2)
        ids, secs, fail = create_conversations(g.url, 20_000, 0, conc)
        after = settle(pid)
        fits = small // (per_conv + ENTRY_OVERHEAD)
        edge = sum(found(g.url, r) for r in ids[-fits - 100:-fits + 100])
        print(f"[responses] byte bound {small / 2**20:.0f} MiB (max_stored 1,000,000): {len(ids)} conversations in {secs:.1f} s "
              f"({fail} failed): RSS base {base:.1f} MB, settled {after:.1f} MB, growth {after - base:.1f} MB "
              f"(bound {small / 2**20:.0f} MiB; ~{fits} conversations fit); around the {fits}th newest: {edge}/200 found (~100 expected)")
    finally:
        g.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("hostile", "responses"), help="one group of scenarios (default: both)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    m = Mock()
    if args.only == "responses":
        try:
            print(f"gateway binary: {GATEWAY_BIN}, mock: {MOCK_BIN}")
            responses_state(m)
        finally:
            m.stop()
        return
    cfg = provider_config(m.url)
    cfg["server"] = {"max_concurrent_requests": 5000}
    cfg["security"] = {"rate_limiting_enabled": False}
    g = Gateway(cfg)
    try:
        print(f"gateway binary: {GATEWAY_BIN}, mock: {MOCK_BIN}")
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
    try:
        if args.only is None:
            m.configure(chunks=4, chunk_delay_ms=0)
            responses_state(m)
    finally:
        m.stop()


if __name__ == "__main__":
    main()
