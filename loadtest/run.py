#!/usr/bin/env python3
"""Side-by-side load test, no k6 needed: in ONE run it starts the bundled mock provider, the
gateway and a plain Pingora passthrough proxy (examples/passthrough.rs, same Pingora version;
also built with the gateway's allocator and run with its runtime flavour,
examples/passthrough_mimalloc.rs), pins them to CPUs (proxies on CPU 0, mock and load generator
on CPU 1), and measures each scenario against a direct call to the mock and against the
passthroughs, in alternating rounds (medians), both at saturation and at an equal paced load
below it. Cache hits are compared with Pingora answering the same body and doing nothing else
(examples/pingora_fixed.rs) and with nginx's `return 200` when nginx is installed. Load comes
from wrk (Debian's `wrk` package); streaming latency and concurrent streams from small Python
clients. CPU time per request is read from /proc for each serving process.

The OpenAI Responses API on a Gemini model (`POST /v1/responses`, translated to
`generateContent`) is compared with the stock passthrough carrying a Gemini request of the same
byte size to the mock's own `generateContent`, and its streaming time to the first event with a
direct `streamGenerateContent?alt=sse` call to the mock.

    python3 loadtest/run.py                 # full run (~6 min + soak), writes loadtest/RESULTS.md
    python3 loadtest/run.py --quick         # shorter runs, for a smoke check
    python3 loadtest/run.py --duration 5 --rounds 5 --results FILE   # more rounds, written elsewhere
    python3 loadtest/run.py --only responses --rounds 7               # the Responses-on-Gemini rows only
    python3 loadtest/run.py --only genai --rounds 7                   # google-genai on gpt-4o-mini only
    python3 loadtest/run.py --only tracing --rounds 5                 # tracing on (sampler 1.0) vs off
    python3 loadtest/run.py --only redis --rounds 5                   # Redis cache hits: rediss:// + encryption vs redis://

With `--only redis` two gateways serve every hit from Redis (`max_size: 0`), one over plain
`redis://`, one over `rediss://` (a test CA made with openssl) with `cache.encryption_key`, each
against a redis-server of its own started here on the load generator's CPU; two more serve hits
from memory, without Redis and with the same `rediss://` + encryption settings (SPEC §14, issue
16: the encrypted TLS hit costs at most 1.3× the CPU of the plain one, memory hits unchanged).

With `--only tracing` the traced gateway exports every span (OTLP/HTTP) to a sink in this
script that reads each export and answers 200, on the load generator's CPU; the gateway's own
batch thread shares the gateway's CPU, as it would in production.

Everything targets 127.0.0.1 and stops by itself.
"""

import argparse
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "target" / "release"
PROXY_CPU, LOAD_CPU = "0", "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu, cmd):
    return (["taskset", "-c", cpu] if shutil.which("taskset") and os.cpu_count() > 1 else []) + cmd


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def rss_kb(pid, field="VmRSS"):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Proc:
    def __init__(self, cmd, cpu, env=None):
        self.p = subprocess.Popen(pinned(cpu, cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(3)  # Pingora's graceful shutdown would wait much longer
            except subprocess.TimeoutExpired:
                self.p.kill()


def cpu_ticks(pid):
    """utime + stime of a process (all threads), in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def wrk(url, body, duration, connections, headers=(), pid=None, pace_ms=0):
    """One wrk run; `pace_ms` makes each connection wait about that long between requests, for
    latency at a load below saturation (wrk times each request from its send)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    hdrs = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers)
    # Random waits (mean pace_ms) keep the connections from firing in lockstep bursts.
    pace = f"function delay() return math.random(0, {2 * pace_ms}) end\n" if pace_ms else ""
    script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\nwrk.headers["Content-Type"] = "application/json"\n{hdrs}{pace}')
    script.close()
    before = cpu_ticks(pid) if pid else 0
    out = subprocess.run(pinned(LOAD_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name, url]),
                         capture_output=True, text=True).stdout
    ticks = cpu_ticks(pid) - before if pid else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        lat[pct] = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    cpu_us = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / total if pid and total else float("nan")
    return {"rps": rps, "p50": lat["50"], "p90": lat["90"], "p99": lat["99"], "cpu_us": cpu_us, "total": total,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "errors": errors.group(0) if errors else ""}


def median_run(runs):
    """The median of each figure over repeated rounds (rounds alternate between scenarios, so
    a slow spell of the VM does not land on one scenario only)."""
    keys = ("rps", "p50", "p90", "p99", "cpu_us")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["non2xx"] = sum(r["non2xx"] for r in runs)
    out["errors"] = "; ".join(r["errors"] for r in runs if r["errors"])
    return out


def start_nginx(body, tmp):
    """nginx answering every request with `body` from memory (`return 200`), one worker."""
    if not shutil.which("nginx") or "$" in body:
        return None, None
    port = free_port()
    root = Path(tmp) / "nginx"
    root.mkdir(exist_ok=True)
    quoted = body.replace("\\", "\\\\").replace("'", "\\'")
    (root / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{quoted}'; }}
  }}
}}
""")
    p = Proc(["nginx", "-p", str(root), "-c", str(root / "nginx.conf")], PROXY_CPU)
    try:
        wait_port(port, 5)
    except SystemExit:
        p.stop()
        return None, None
    return p, port


def read_response(s, on_body=None):
    """Reads one HTTP/1.1 response from socket `s` (Content-Length or chunked); calls
    `on_body(body_so_far)` after each piece of body received. Returns (status, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed before the response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    headers = head.lower()
    body = b""

    def more():
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("stream closed early")
        return chunk

    if b"transfer-encoding: chunked" in headers:
        while True:
            while b"\r\n" not in rest:
                rest += more()
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                if on_body and size and len(rest) > 0:
                    on_body(body + rest[:size])
                rest += more()
            if size == 0:
                # Trailers are not used here: the zero chunk is followed by the blank line.
                return status, body
            body += rest[:size]
            rest = rest[size + 2:]
            if on_body:
                on_body(body)
    m = re.search(rb"content-length:\s*(\d+)", headers)
    length = int(m.group(1)) if m else 0
    body = rest
    while len(body) < length:
        if on_body:
            on_body(body)
        body += more()
    if on_body:
        on_body(body)
    return status, body


def ttfb_samples(port, body, n, path="/v1/chat/completions"):
    """Time to the first SSE event (the first body bytes holding a `data: ` line), sequential
    requests on one kept-alive connection (ms). Every answer must be a 200 and read to its end."""
    data = json.dumps(body).encode()
    req = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(data))) + data
    out = []
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(n):
        first = []

        def seen(b):
            if not first and b"data: " in b:
                first.append(time.perf_counter())

        t0 = time.perf_counter()
        s.sendall(req)
        status, got = read_response(s, seen)
        if status != 200 or not first:
            raise SystemExit(f"streaming {path} on port {port}: status {status}, body {got[:300]!r}")
        out.append((first[0] - t0) * 1000)
    s.close()
    return out


def pct(xs, q):
    """The q-quantile (0..1) of xs, nearest rank."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def sized(make, size):
    """make(text) is a request body; pads its text with dots until the JSON (as wrk and the
    samplers send it: json.dumps) is exactly `size` bytes, so that bodies of different APIs
    compare at the same request size."""
    text = "Say hello to the load test."
    while len(json.dumps(make(text)).encode()) < size:
        text += "."
    if len(json.dumps(make(text)).encode()) != size:
        raise SystemExit(f"cannot size the body to {size} bytes")
    return make(text)


def check_answer(port, path, body, want):
    """One request before the runs: a 200 whose body holds `want` (else the figures would
    measure an error path)."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            got = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        got, status = e.read(), e.code
    if status != 200 or want not in got:
        raise SystemExit(f"POST {path} on port {port}: status {status}, body {got[:300]!r}")


def concurrent_streams(port, n, body):
    """Opens n streaming requests at once and counts those that end with [DONE]."""
    import asyncio

    data = json.dumps(body).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(data)) + data

    async def one():
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(req)
            await w.drain()
            buf = b""
            while True:
                chunk = await asyncio.wait_for(r.read(65536), 30)
                if not chunk:
                    break
                buf += chunk
            w.close()
            return b"data: [DONE]" in buf
        except Exception:
            return False

    async def main():
        return await asyncio.gather(*[one() for _ in range(n)])

    return sum(asyncio.run(main()))


GEM_GENERATE = "/v1beta/models/gemini-2.0-flash:generateContent"
GEM_STREAM = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
# A google-genai client on an OpenAI model (issue 14): the same Gemini body on the native route.
GENAI_ON_OPENAI = "/v1beta/models/gpt-4o-mini:generateContent"


class ResponsesBodies:
    """The Responses API on a Gemini model and the Gemini request the stock passthrough carries
    to the mock instead: every non-stream body is the chat request's size."""

    def __init__(self, chat):
        self.size = len(json.dumps(chat).encode())
        self.resp = sized(lambda t: {"model": "gemini-2.0-flash", "input": t, "store": False}, self.size)
        self.resp_stored = sized(lambda t: {"model": "gemini-2.0-flash", "input": t, "store": True}, self.size)
        self.gem_native = sized(lambda t: {"contents": [{"role": "user", "parts": [{"text": t}]}]}, self.size)
        # The streaming bodies are longer ("stream": true): their own common size.
        self.stream_size = len(json.dumps({"model": "gemini-2.0-flash", "input": "Say hello to the load test.", "store": False, "stream": True}).encode())
        self.resp_stream = sized(lambda t: {"model": "gemini-2.0-flash", "input": t, "store": False, "stream": True}, self.stream_size)
        self.resp_stream_stored = sized(lambda t: {"model": "gemini-2.0-flash", "input": t, "stream": True}, self.stream_size)
        self.gem_native_stream = sized(lambda t: {"contents": [{"role": "user", "parts": [{"text": t}]}]}, self.stream_size)


def ttfe_batches(mock_port, pt_port, gw_port, gw_st_port, b, batches=6, n=100):
    """The Responses stream on a Gemini model against the mock's own Gemini stream, in
    alternating batches so that a slow spell of the VM is shared."""
    ttfe = {"direct": [], "passthrough": [], "gateway": [], "gateway, store true": []}
    for _ in range(batches):
        ttfe["direct"] += ttfb_samples(mock_port, b.gem_native_stream, n, GEM_STREAM)
        ttfe["passthrough"] += ttfb_samples(pt_port, b.gem_native_stream, n, GEM_STREAM)
        ttfe["gateway"] += ttfb_samples(gw_port, b.resp_stream, n, "/v1/responses")
        ttfe["gateway, store true"] += ttfb_samples(gw_st_port, b.resp_stream_stored, n, "/v1/responses")
    return ttfe


def responses_lines(results, ttfe, b):
    """The summary lines of issue 13's Responses targets."""
    p50 = statistics.median
    pt_gem = results["plain Pingora passthrough, Gemini `generateContent`"]
    rs_off, rs_on = results["gateway, Responses route (Gemini), store false"], results["gateway, Responses route (Gemini), store true"]
    bad = "; **non-2xx answers in the run: not a valid figure**" if rs_off["non2xx"] or rs_on["non2xx"] or pt_gem["non2xx"] else ""
    td, tp, tg, tgs = ttfe["direct"], ttfe["passthrough"], ttfe["gateway"], ttfe["gateway, store true"]
    m = results.get(MATCHED_GEM)
    matched = [
        f"| Responses route (Gemini) throughput against the matched passthrough (mimalloc, one runtime per thread, as the gateway) | store false {rs_off['rps'] / m['rps']:.0%}, store true {rs_on['rps'] / m['rps']:.0%} ({m['rps']:.0f} req/s, CPU {m['cpu_us']:.1f} µs/req) | the stricter floor; target ≥ 85% of the stock one |",
    ] if m else []
    stock = [
        f"| Responses route (Gemini) throughput | {rs_off['rps'] / pt_gem['rps']:.0%} of passthrough (store false, {rs_off['rps']:.0f} vs {pt_gem['rps']:.0f} req/s, CPU {rs_off['cpu_us']:.1f} vs {pt_gem['cpu_us']:.1f} µs/req: the stock passthrough carrying a {b.size}-byte Gemini `generateContent` request, the Responses body {b.size} bytes too; store true: {rs_on['rps'] / pt_gem['rps']:.0%}, {rs_on['cpu_us']:.1f} µs/req){bad} | target ≥ 85% |",
        f"| Responses route (Gemini) streaming TTFE, p50 / p99 ({len(tg)} sequential requests each, {b.stream_size}-byte bodies) | direct `streamGenerateContent?alt=sse` {p50(td):.3f} / {pct(td, 0.99):.3f} ms, passthrough {p50(tp):.3f} / {pct(tp, 0.99):.3f} ms, gateway `/v1/responses` stream {p50(tg):.3f} / {pct(tg, 0.99):.3f} ms (store true: {p50(tgs):.3f} / {pct(tgs, 0.99):.3f} ms): added p50 {p50(tg) - p50(td):.3f} ms (store true {p50(tgs) - p50(td):.3f} ms) | target ≤ 0.3 ms |",
    ]
    return stock[:1] + matched + stock[1:]


def gateway_config(mock_port, cache, log_level="warn", extra="", cache_opts="", max_size=1000):
    return extra + f"""
server: {{ host: 127.0.0.1, max_concurrent_requests: 4096 }}
auth: {{ mode: gateway }}
providers:
  openai: {{ api_key: load-test-key, base_url: "http://127.0.0.1:{mock_port}/v1", timeout: 30000 }}
  gemini: {{ api_key: load-test-key, base_url: "http://127.0.0.1:{mock_port}/v1beta", timeout: 30000 }}
routing: {{ strategy: round_robin }}
cache: {{ enabled: {str(cache).lower()}, max_size: {max_size}, ttl: 3600{cache_opts} }}
security: {{ rate_limiting_enabled: false }}
logging: {{ level: {log_level}, format: json }}
"""


def start_gateway(mock_port, cache, tmp, log_level="warn", extra="", name="", cache_opts="", max_size=1000):
    port = free_port()
    cfg = Path(tmp) / f"gw-{cache}-{log_level}{name}.yaml"
    cfg.write_text(gateway_config(mock_port, cache, log_level, extra, cache_opts, max_size))
    g = Proc([str(RELEASE / "llm-gateway"), "--config", str(cfg), "--port", str(port)], PROXY_CPU)
    wait_port(port)
    time.sleep(0.5)
    return g, port


MATCHED_GEM = "passthrough with the gateway's allocator and runtime, Gemini `generateContent`"


def responses_scenarios(mock_port, mock_pid, pt_port, pt_pid, gw_port, gw_pid, gw_st_port, gw_st_pid, b, matched=None):
    """`matched`: (port, pid) of `passthrough_mimalloc`, a second floor that spends what the
    gateway's allocator and runtime spend (the stock one's glibc malloc costs more on some VMs)."""
    return [
        ("direct call to the mock, Gemini `generateContent`", mock_port, GEM_GENERATE, b.gem_native, mock_pid),
        ("plain Pingora passthrough, Gemini `generateContent`", pt_port, GEM_GENERATE, b.gem_native, pt_pid),
        *([(MATCHED_GEM, matched[0], GEM_GENERATE, b.gem_native, matched[1])] if matched else []),
        ("gateway, Responses route (Gemini), store false", gw_port, "/v1/responses", b.resp, gw_pid),
        ("gateway, Responses route (Gemini), store true", gw_st_port, "/v1/responses", b.resp_stored, gw_st_pid),
    ]


def genai_scenarios(mock_port, mock_pid, pt_port, pt_pid, gw_port, gw_pid, b):
    """The Gemini-native route on `gpt-4o-mini` (translated to Chat Completions and back)
    against the stock passthrough carrying the very same request to the mock's Gemini route."""
    return [
        ("direct call to the mock, Gemini `generateContent`", mock_port, GEM_GENERATE, b.gem_native, mock_pid),
        ("plain Pingora passthrough, Gemini `generateContent`", pt_port, GEM_GENERATE, b.gem_native, pt_pid),
        ("gateway, Gemini-native route on gpt-4o-mini (OpenAI)", gw_port, GENAI_ON_OPENAI, b.gem_native, gw_pid),
    ]


def genai_lines(results, b):
    """The summary line of issue 14's throughput target."""
    pt_gem = results["plain Pingora passthrough, Gemini `generateContent`"]
    g = results["gateway, Gemini-native route on gpt-4o-mini (OpenAI)"]
    bad = "; **non-2xx answers in the run: not a valid figure**" if g["non2xx"] or pt_gem["non2xx"] else ""
    return [
        f"| Gemini-native route on an OpenAI model, throughput | {g['rps'] / pt_gem['rps']:.0%} of passthrough ({g['rps']:.0f} vs {pt_gem['rps']:.0f} req/s, CPU {g['cpu_us']:.1f} vs {pt_gem['cpu_us']:.1f} µs/req; both carry the same {b.size}-byte `generateContent` body){bad} | target ≥ 85% |",
    ]


def genai_only(args):
    """`--only genai`: the google-genai-on-OpenAI rows in alternating rounds."""
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the load test."}]}
    b = ResponsesBodies(chat)
    tmp = tempfile.mkdtemp(prefix="loadtest-")
    mock_port, pt_port = free_port(), free_port()
    mock = Proc([str(RELEASE / "mock-provider"), "--port", str(mock_port)], LOAD_CPU)
    wait_port(mock_port)
    passthrough = Proc([str(RELEASE / "examples" / "passthrough"), f"127.0.0.1:{pt_port}", f"127.0.0.1:{mock_port}"], PROXY_CPU)
    wait_port(pt_port)
    gw, gw_port = start_gateway(mock_port, cache=False, tmp=tmp)
    d, c = args.duration, args.connections
    try:
        scenarios = genai_scenarios(mock_port, mock.p.pid, pt_port, passthrough.p.pid, gw_port, gw.p.pid, b)
        check_answer(pt_port, GEM_GENERATE, b.gem_native, b'"candidates"')
        check_answer(gw_port, GENAI_ON_OPENAI, b.gem_native, b'"candidates"')
        runs = {name: [] for name, *_ in scenarios}
        for _name, port, path, body, _pid in scenarios:
            wrk(f"http://127.0.0.1:{port}{path}", body, 1, c)
        for _ in range(args.rounds):
            for name, port, path, body, pid in scenarios:
                runs[name].append(wrk(f"http://127.0.0.1:{port}{path}", body, d, c, pid=pid))
        results = {name: median_run(rs) for name, rs in runs.items()}
    finally:
        gw.stop()
        passthrough.stop()
        mock.stop()
    pt = results["plain Pingora passthrough, Gemini `generateContent`"]
    lines = ["# Load test results: google-genai clients on an OpenAI model\n"]
    lines.append(f"Command: `python3 loadtest/run.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}; {os.cpu_count()} vCPU, wrk -t1 -c{c} -d{d}s, medians of {args.rounds} alternating round(s), proxies pinned to CPU {PROXY_CPU}, mock and wrk to CPU {LOAD_CPU}, release build; every request body {b.size} bytes.\n")
    lines.append("| scenario | req/s | p50 ms | p90 ms | p99 ms | CPU µs/req | vs passthrough (Gemini) | non-2xx | req/s of each round |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        each = " / ".join(f"{x['rps']:.0f}" for x in runs[name])
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {r['cpu_us']:.1f} | {r['rps'] / pt['rps']:.0%} | {r['non2xx']} | {each} |")
    lines.append("")
    lines.append("| measure | value | compared with |")
    lines.append("|---|---|---|")
    lines.extend(genai_lines(results, b))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        Path(args.results).write_text(text)


def responses_only(args):
    """`--only responses`: the four Responses-on-Gemini rows in alternating rounds and the
    streaming TTFE, for iterating on that path (the full run has them too)."""
    tmp = tempfile.mkdtemp(prefix="loadtest-")
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the load test."}]}
    b = ResponsesBodies(chat)
    mock_port, pt_port = free_port(), free_port()
    mock = Proc([str(RELEASE / "mock-provider"), "--port", str(mock_port)], LOAD_CPU)
    wait_port(mock_port)
    passthrough = Proc([str(RELEASE / "examples" / "passthrough"), f"127.0.0.1:{pt_port}", f"127.0.0.1:{mock_port}"], PROXY_CPU)
    ptm_port = free_port()
    passthrough_mi = Proc([str(RELEASE / "examples" / "passthrough_mimalloc"), f"127.0.0.1:{ptm_port}", f"127.0.0.1:{mock_port}"], PROXY_CPU, {"NO_WORK_STEALING": "1"})
    wait_port(pt_port)
    wait_port(ptm_port)
    gw, gw_port = start_gateway(mock_port, cache=False, tmp=tmp)
    gw_st, gw_st_port = start_gateway(mock_port, cache=False, tmp=tmp)
    d, c = args.duration, args.connections
    try:
        scenarios = responses_scenarios(mock_port, mock.p.pid, pt_port, passthrough.p.pid, gw_port, gw.p.pid, gw_st_port, gw_st.p.pid, b, (ptm_port, passthrough_mi.p.pid))
        check_answer(pt_port, GEM_GENERATE, b.gem_native, b'"candidates"')
        check_answer(gw_port, "/v1/responses", b.resp, b'"object":"response"')
        check_answer(gw_st_port, "/v1/responses", b.resp_stored, b'"object":"response"')
        runs = {name: [] for name, *_ in scenarios}
        for _name, port, path, body, _pid in scenarios:
            wrk(f"http://127.0.0.1:{port}{path}", body, 1, c)
        for _ in range(args.rounds):
            for name, port, path, body, pid in scenarios:
                runs[name].append(wrk(f"http://127.0.0.1:{port}{path}", body, d, c, pid=pid))
        results = {name: median_run(rs) for name, rs in runs.items()}
        subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{mock_port}/_mock/config", "-d", '{"chunks":20}'], capture_output=True)
        ttfe = ttfe_batches(mock_port, pt_port, gw_port, gw_st_port, b)
        stored_rss = rss_kb(gw_st.p.pid)
    finally:
        gw.stop()
        gw_st.stop()
        passthrough.stop()
        passthrough_mi.stop()
        mock.stop()
    pt = results["plain Pingora passthrough, Gemini `generateContent`"]
    lines = ["# Load test results: Responses API on a Gemini model\n"]
    lines.append(f"Command: `python3 loadtest/run.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}; {os.cpu_count()} vCPU, wrk -t1 -c{c} -d{d}s, medians of {args.rounds} alternating round(s), proxies pinned to CPU {PROXY_CPU}, mock and wrk to CPU {LOAD_CPU}, release build; every request body {b.size} bytes.\n")
    lines.append("| scenario | req/s | p50 ms | p90 ms | p99 ms | CPU µs/req | vs passthrough (Gemini) | non-2xx | req/s of each round |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        each = " / ".join(f"{x['rps']:.0f}" for x in runs[name])
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {r['cpu_us']:.1f} | {r['rps'] / pt['rps']:.0%} | {r['non2xx']} | {each} |")
    lines.append("")
    lines.append("| measure | value | compared with |")
    lines.append("|---|---|---|")
    lines.extend(responses_lines(results, ttfe, b))
    lines.append(f"| RSS of the store-true instance afterwards (`max_stored` 10,000 kept) | {stored_rss / 1024:.1f} MB | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        Path(args.results).write_text(text)


class OtlpSink:
    """Takes OTLP/HTTP exports as a collector would (reads the body, answers 200) and counts
    their bytes; decoding is the collector's cost, not the gateway's."""

    def __init__(self):
        import http.server
        import threading
        self.bytes = 0
        self.exports = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = len(self.rfile.read(int(self.headers.get("content-length", 0))))
                sink.bytes += n
                sink.exports += 1
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def span_counts(port):
    out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True).stdout
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'gateway_trace_spans_total\{result="(\w+)"\} (\S+)', out)}


def tracing_only(args):
    """`--only tracing`: the OpenAI chat route with tracing off and on (sampler 1.0: every
    request exports a server and a client span), in alternating rounds (SPEC §15)."""
    tmp = tempfile.mkdtemp(prefix="loadtest-")
    chat = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello to the load test."}]}
    mock_port = free_port()
    mock = Proc([str(RELEASE / "mock-provider"), "--port", str(mock_port)], LOAD_CPU)
    wait_port(mock_port)
    sink = OtlpSink()
    traced = f"tracing: {{ otlp_endpoint: 'http://127.0.0.1:{sink.port}', sampler: always_on }}\n"
    off, off_port = start_gateway(mock_port, cache=False, tmp=tmp)
    on, on_port = start_gateway(mock_port, cache=False, tmp=tmp, extra=traced, name="-traced")
    d, c = args.duration, args.connections
    path = "/v1/chat/completions"
    scenarios = [("gateway, tracing off", off_port, off.p.pid), ("gateway, tracing on (sampler 1.0)", on_port, on.p.pid)]
    try:
        for _name, port, _pid in scenarios:
            check_answer(port, path, chat, b'"choices"')
            wrk(f"http://127.0.0.1:{port}{path}", chat, 1, c)
        runs = {name: [] for name, *_ in scenarios}
        for _ in range(args.rounds):
            for name, port, pid in scenarios:
                runs[name].append(wrk(f"http://127.0.0.1:{port}{path}", chat, d, c, pid=pid))
        time.sleep(2)  # the last batches leave
        spans = span_counts(on_port)
    finally:
        on.stop()
        off.stop()
        mock.stop()
        sink.stop()
    results = {name: median_run(rs) for name, rs in runs.items()}
    base = results["gateway, tracing off"]
    lines = ["# Load test results: tracing on vs off\n"]
    lines.append(f"Command: `python3 loadtest/run.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}; {os.cpu_count()} vCPU, wrk -t1 -c{c} -d{d}s, medians of {args.rounds} alternating round(s), gateways pinned to CPU {PROXY_CPU}, mock, wrk and the OTLP sink to CPU {LOAD_CPU}, release build.\n")
    lines.append("| scenario | req/s | p50 ms | p99 ms | CPU µs/req | vs tracing off | non-2xx | req/s of each round |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        each = " / ".join(f"{x['rps']:.0f}" for x in runs[name])
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_us']:.1f} | {r['rps'] / base['rps']:.2f}× | {r['non2xx']} | {each} |")
    on_r = results["gateway, tracing on (sampler 1.0)"]
    ratio = on_r["rps"] / base["rps"]
    lines.append("")
    lines.append(f"Spans: {spans.get('exported', 0):.0f} exported, {spans.get('dropped_queue_full', 0):.0f} dropped (queue full), {spans.get('dropped_export_failed', 0):.0f} dropped (export failed); the sink took {sink.exports} exports, {sink.bytes / 1e6:.1f} MB.")
    lines.append(f"Target (SPEC §15): tracing on at sampler 1.0 ≥ 0.9× tracing off: **{ratio:.2f}×, {'met' if ratio >= 0.9 else 'NOT met'}**.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        Path(args.results).write_text(text)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def tls_files(tmp):
    """A test CA and a 127.0.0.1 server certificate signed by it (as tests/py/redis_env.py)."""
    d = Path(tmp)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=loadtest CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(d / "server.key"),
            "-out", str(d / "server.csr"))
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", str(d / "server.ext"), "-out", str(d / "server.crt"))
    return d / "server.key", d / "server.crt", d / "ca.crt"


def start_redis(tls=None):
    """A redis-server on the load generator's CPU (nothing saved); `tls=(key, crt, ca)`: TLS only."""
    port = free_port()
    args = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if tls:
        key, crt, ca = tls
        args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(crt), "--tls-key-file", str(key),
                 "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    else:
        args += ["--port", str(port)]
    p = Proc(args, LOAD_CPU)
    wait_port(port)
    return p, port


def metric_sum(port, name):
    out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True).stdout
    return sum(float(l.split()[-1]) for l in out.splitlines() if l.startswith(name + "{") or l.startswith(name + " "))


def redis_only(args):
    """`--only redis`: cache hits served from Redis over plain `redis://` and over `rediss://`
    with encryption at rest, and memory hits with and without those settings, in alternating
    rounds; CPU µs per hit of each gateway process and of each redis-server."""
    if not shutil.which("redis-server") or not shutil.which("openssl"):
        raise SystemExit("redis-server and openssl are needed")
    import base64
    import urllib.request
    tmp = tempfile.mkdtemp(prefix="loadtest-")
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the load test."}]}
    key, crt, ca = tls_files(tmp)
    enc = base64.b64encode(os.urandom(32)).decode()
    mock_port = free_port()
    mock = Proc([str(RELEASE / "mock-provider"), "--port", str(mock_port)], LOAD_CPU)
    wait_port(mock_port)
    plain_redis, plain_port = start_redis()
    tls_redis, tls_port = start_redis((key, crt, ca))
    tls_opts = f", redis_url: 'rediss://127.0.0.1:{tls_port}', redis_ca_file: '{ca}', encryption_key: '{enc}'"
    gws = [
        ("Redis hit, redis://", start_gateway(mock_port, True, tmp, name="-plain", max_size=0,
                                               cache_opts=f", redis_url: 'redis://127.0.0.1:{plain_port}'"), plain_redis),
        ("Redis hit, rediss:// + encryption_key", start_gateway(mock_port, True, tmp, name="-tls", max_size=0, cache_opts=tls_opts), tls_redis),
        ("memory hit, no Redis", start_gateway(mock_port, True, tmp, name="-mem"), None),
        ("memory hit, rediss:// + encryption_key configured", start_gateway(mock_port, True, tmp, name="-mem-tls", cache_opts=tls_opts), None),
    ]
    d, c = args.duration, args.connections
    path = "/v1/chat/completions"
    body = json.dumps(chat).encode()
    runs = {name: [] for name, *_ in gws}
    redis_cpu = {name: [] for name, *_ in gws}
    try:
        for name, (_g, port), _r in gws:
            # A cold instance's first Redis read may give up while its (TLS) connect completes.
            for _ in range(10):
                with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers={"content-type": "application/json"})) as r:
                    got = r.headers.get("x-gateway-cache")
                    r.read()
                if got == "HIT":
                    break
                time.sleep(0.6)
            else:
                raise SystemExit(f"{name}: no cache hit")
            wrk(f"http://127.0.0.1:{port}{path}", chat, 1, c)
        hits_before = {name: metric_sum(port, "gateway_cache_hits_total") for name, (_g, port), _r in gws}
        for _ in range(args.rounds):
            for name, (g, port), r in gws:
                before = cpu_ticks(r.p.pid) if r else 0
                res = wrk(f"http://127.0.0.1:{port}{path}", chat, d, c, pid=g.p.pid)
                total = res["total"]
                if r and total:
                    redis_cpu[name].append((cpu_ticks(r.p.pid) - before) / os.sysconf("SC_CLK_TCK") * 1e6 / total)
                runs[name].append(res)
        hits = {name: metric_sum(port, "gateway_cache_hits_total") - hits_before[name] for name, (_g, port), _r in gws}
        errors = {name: metric_sum(port, "gateway_redis_errors_total") for name, (_g, port), _r in gws}
        stored = subprocess.run(["redis-cli", "-p", str(tls_port), "--tls", "--cacert", str(ca), "--scan", "--pattern", "llmgw:c:*"],
                                capture_output=True, text=True).stdout.split()
        raw = subprocess.run(["redis-cli", "-p", str(tls_port), "--tls", "--cacert", str(ca), "--raw", "GET", stored[0]],
                             capture_output=True).stdout if stored else b""
    finally:
        for _name, (g, _port), _r in gws:
            g.stop()
        plain_redis.stop()
        tls_redis.stop()
        mock.stop()
    results = {name: median_run(rs) for name, rs in runs.items()}
    requests = {name: sum(x["total"] for x in runs[name]) for name in runs}
    plain, tls = results["Redis hit, redis://"], results["Redis hit, rediss:// + encryption_key"]
    mem, mem_tls = results["memory hit, no Redis"], results["memory hit, rediss:// + encryption_key configured"]
    ratio = tls["cpu_us"] / plain["cpu_us"]
    mem_ratio = mem_tls["cpu_us"] / mem["cpu_us"]
    lines = ["## Redis cache hits: plain vs TLS + encryption at rest (issue 16)\n"]
    lines.append(f"Command: `python3 loadtest/run.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d %H:%M')} UTC; {os.cpu_count()} vCPU, "
                 f"wrk -t1 -c{c} -d{d}s, medians of {args.rounds} alternating round(s), gateways pinned to CPU {PROXY_CPU}, mock, wrk and both "
                 f"redis-servers ({subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout.split()[2]}) to CPU {LOAD_CPU}, release build. "
                 "The Redis rows have no memory tier (`max_size: 0`): every hit is a `GET`+`PTTL` pipeline to Redis (and, encrypted, an AES-256-GCM open). "
                 "CPU µs/hit is the gateway process's user+system time over the run divided by the requests it answered.\n")
    lines.append("| scenario | req/s | p50 ms | p99 ms | gateway CPU µs/hit | redis-server CPU µs/hit | hits counted / requests | Redis errors | req/s of each round |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        each = " / ".join(f"{x['rps']:.0f}" for x in runs[name])
        rc = f"{statistics.median(redis_cpu[name]):.1f}" if redis_cpu[name] else ""
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_us']:.1f} | {rc} | {hits[name]:.0f} / {requests[name]} | {errors[name]:.0f} | {each} |")
    lines.append("")
    sealed = raw.startswith(b"gwe1") and b"load test" not in raw
    lines.append(f"Stored value on the TLS server: {'sealed (`gwe1…`, no prompt text)' if sealed else 'NOT sealed'}.  ")
    lines.append(f"Target (issue 16): rediss:// + encryption ≤ 1.3× the CPU per hit of plain redis://: **{ratio:.2f}×, {'met' if ratio <= 1.3 else 'NOT met'}**; "
                 f"memory hits with those settings vs without: **{mem_ratio:.2f}×** ({mem_tls['cpu_us']:.1f} vs {mem['cpu_us']:.1f} µs/hit).")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        Path(args.results).write_text(text)


def main():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk); `bash scripts/loadtest.sh` installs it")
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk scenario")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--soak", type=int, default=600, help="seconds of soak (RSS at start, middle, end)")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the throughput scenarios (medians reported)")
    ap.add_argument("--quick", action="store_true", help="3 s scenarios, 1 round, 30 s soak, 200 streams")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--results", help="file to write (default: loadtest/RESULTS.md, or RESULTS-quick.md with --quick)")
    ap.add_argument("--only", choices=("responses", "genai", "tracing", "redis"), help="only the Responses-on-Gemini (or google-genai-on-OpenAI, tracing on vs off, Redis cache hits plain vs TLS + encryption) scenarios and their targets (printed; written with --results)")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds, args.soak, args.streams = 3, 1, 30, 200
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    if not args.skip_build:
        subprocess.run(["cargo", "build", "--release", "--bins", "--example", "passthrough", "--example", "passthrough_mimalloc", "--example", "pingora_fixed"], cwd=ROOT, check=True)
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        pass

    if args.only == "responses":
        return responses_only(args)
    if args.only == "genai":
        return genai_only(args)
    if args.only == "tracing":
        return tracing_only(args)
    if args.only == "redis":
        return redis_only(args)

    tmp = tempfile.mkdtemp(prefix="loadtest-")
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the load test."}]}
    gem = {**chat, "model": "gemini-2.0-flash"}
    stream20 = {**chat, "stream": True}
    b = ResponsesBodies(chat)
    size, resp, resp_stored, gem_native = b.size, b.resp, b.resp_stored, b.gem_native  # noqa: F841
    gem_generate = GEM_GENERATE
    rows, notes = [], []
    mock_port = free_port()
    mock = Proc([str(RELEASE / "mock-provider"), "--port", str(mock_port)], LOAD_CPU)
    wait_port(mock_port)
    pt_port, ptm_port = free_port(), free_port()
    passthrough = Proc([str(RELEASE / "examples" / "passthrough"), f"127.0.0.1:{pt_port}", f"127.0.0.1:{mock_port}"], PROXY_CPU)
    # The gateway's allocator and its default runtime (one single-threaded runtime per thread).
    same_runtime = {"NO_WORK_STEALING": "1"}
    passthrough_mi = Proc([str(RELEASE / "examples" / "passthrough_mimalloc"), f"127.0.0.1:{ptm_port}", f"127.0.0.1:{mock_port}"], PROXY_CPU, same_runtime)
    wait_port(pt_port)
    wait_port(ptm_port)
    gw, gw_port = start_gateway(mock_port, cache=False, tmp=tmp)
    # A second instance takes the stored (store: true) Responses traffic, so the RSS figures of
    # the first are not those of 10,000 kept conversations.
    gw_st, gw_st_port = start_gateway(mock_port, cache=False, tmp=tmp)
    idle_rss = rss_kb(gw.p.pid)
    d, c = args.duration, args.connections
    try:
        url = lambda port, path: f"http://127.0.0.1:{port}{path}"
        chat_path = "/v1/chat/completions"
        scenarios = [
            ("direct call to the mock", mock_port, chat_path, chat, mock.p.pid),
            ("plain Pingora passthrough", pt_port, chat_path, chat, passthrough.p.pid),
            ("plain Pingora passthrough, gateway's allocator and runtime", ptm_port, chat_path, chat, passthrough_mi.p.pid),
            ("gateway, OpenAI route", gw_port, chat_path, chat, gw.p.pid),
            ("gateway, Gemini-translated route", gw_port, chat_path, gem, gw.p.pid),
            *responses_scenarios(mock_port, mock.p.pid, pt_port, passthrough.p.pid, gw_port, gw.p.pid, gw_st_port, gw_st.p.pid, b, (ptm_port, passthrough_mi.p.pid)),
            genai_scenarios(mock_port, mock.p.pid, pt_port, passthrough.p.pid, gw_port, gw.p.pid, b)[-1],
        ]
        check_answer(pt_port, gem_generate, gem_native, b'"candidates"')
        check_answer(gw_port, "/v1/responses", resp, b'"object":"response"')
        check_answer(gw_st_port, "/v1/responses", resp_stored, b'"object":"response"')
        runs = {name: [] for name, *_ in scenarios}
        for _name, port, path, body, _pid in scenarios:  # warm-up: pools, allocator arenas
            wrk(url(port, path), body, 1, c)
        for _ in range(args.rounds):
            for name, port, path, body, pid in scenarios:
                runs[name].append(wrk(url(port, path), body, d, c, pid=pid))
        results = {name: median_run(rs) for name, rs in runs.items()}
        rows.extend(results.items())
        direct, pt, ptm = results["direct call to the mock"], results["plain Pingora passthrough"], results["plain Pingora passthrough, gateway's allocator and runtime"]
        oa, gm = results["gateway, OpenAI route"], results["gateway, Gemini-translated route"]
        gw_rss_peak = rss_kb(gw.p.pid, "VmHWM")
        stored_rss = rss_kb(gw_st.p.pid)

        # Latency at equal load: every connection paced so the offered load is about half
        # the stock passthrough's maximum, below every proxy's saturation, so p99 shows what
        # each hop adds rather than how long its queue is.
        pace_ms = max(1, round(c * 1000 / (0.5 * pt["rps"])))
        paced_runs = {name: [] for name, *_ in scenarios}
        for _ in range(args.rounds):
            for name, port, path, body, pid in scenarios:
                paced_runs[name].append(wrk(url(port, path), body, d, c, pid=pid, pace_ms=pace_ms))
        paced = {name: median_run(rs) for name, rs in paced_runs.items()}

        # Streaming: 20-chunk answers, time to first event, sequential (no queueing).
        subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{mock_port}/_mock/config", "-d", '{"chunks":20}'], capture_output=True)
        ttfb_direct = ttfb_samples(mock_port, stream20, 300)
        ttfb_gw = ttfb_samples(gw_port, stream20, 300)
        ttfb_pt = ttfb_samples(pt_port, stream20, 300)
        ttfe = ttfe_batches(mock_port, pt_port, gw_port, gw_st_port, b)

        # Concurrent open streams on one core: each stream lasts ~1 s.
        subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{mock_port}/_mock/config", "-d", '{"chunks":20,"chunk_delay_ms":50}'], capture_output=True)
        ok_streams = concurrent_streams(gw_port, args.streams, stream20)
        stream_rss = rss_kb(gw.p.pid, "VmHWM")
        subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{mock_port}/_mock/reset"], capture_output=True)
    finally:
        gw.stop()
        gw_st.stop()

    # The same OpenAI route with the access log on (one JSON line per request, to /dev/null).
    lg, lg_port = start_gateway(mock_port, cache=False, tmp=tmp, log_level="info")
    try:
        wrk(f"http://127.0.0.1:{lg_port}/v1/chat/completions", chat, 1, c)
        logged = median_run([wrk(f"http://127.0.0.1:{lg_port}/v1/chat/completions", chat, d, c, pid=lg.p.pid) for _ in range(args.rounds)])
        rows.append(("gateway, OpenAI route, access log on (JSON lines)", logged))
    finally:
        lg.stop()

    cg, cg_port = start_gateway(mock_port, cache=True, tmp=tmp)
    try:
        cache_idle = rss_kb(cg.p.pid)
        import urllib.request
        for i in range(1000):  # fill the cache: 1,000 distinct entries
            body = json.dumps({**chat, "messages": [{"role": "user", "content": f"entry {i} " + "x" * 200}]}).encode()
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{cg_port}/v1/chat/completions", data=body, headers={"content-type": "application/json"})).read()
        cached_body = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{cg_port}/v1/chat/completions", data=json.dumps(chat).encode(), headers={"content-type": "application/json"})).read().decode()
        hit = median_run([wrk(f"http://127.0.0.1:{cg_port}/v1/chat/completions", chat, d, c, pid=cg.p.pid) for _ in range(args.rounds)])
        rows.append(("gateway, cache hit", hit))
        body_file = Path(tmp) / "cached-body.json"
        body_file.write_text(cached_body)
        fx_port = free_port()
        fixed = Proc([str(RELEASE / "examples" / "pingora_fixed"), f"127.0.0.1:{fx_port}", str(body_file)], PROXY_CPU, same_runtime)
        try:
            wait_port(fx_port)
            wrk(f"http://127.0.0.1:{fx_port}/v1/chat/completions", chat, 1, c)
            floor = median_run([wrk(f"http://127.0.0.1:{fx_port}/v1/chat/completions", chat, d, c, pid=fixed.p.pid) for _ in range(args.rounds)])
            rows.append(("Pingora floor: same body from `request_filter`, no work", floor))
        finally:
            fixed.stop()
        ngx, ngx_port = start_nginx(cached_body, tmp)
        nginx_hit = None
        if ngx:
            try:
                wrk(f"http://127.0.0.1:{ngx_port}/v1/chat/completions", chat, 1, c)
                nginx_hit = median_run([wrk(f"http://127.0.0.1:{ngx_port}/v1/chat/completions", chat, d, c) for _ in range(args.rounds)])
                rows.append(("nginx, same body from memory (`return 200`)", nginx_hit))
            finally:
                ngx.stop()
        wrk(f"http://127.0.0.1:{cg_port}/v1/chat/completions", chat, max(2, d // 2), 256)
        rss_256 = rss_kb(cg.p.pid, "VmHWM")
        # Soak: 64 connections of cache hits, RSS sampled at the start and after each sixth.
        soak = []
        sixth = max(1, args.soak // 6)
        for _ in range(6):
            soak.append(rss_kb(cg.p.pid))
            wrk(f"http://127.0.0.1:{cg_port}/v1/chat/completions", chat, sixth, 64)
        soak.append(rss_kb(cg.p.pid))
    finally:
        cg.stop()
        passthrough.stop()
        passthrough_mi.stop()
        mock.stop()

    p50 = lambda xs: statistics.median(xs)
    lines = []
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), platform.processor())
    lines.append("# Load test results\n")
    lines.append(f"Machine: {os.cpu_count()} vCPU ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, Linux {platform.release()}.  ")
    lines.append(f"Command: `python3 loadtest/run.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}; wrk -t1 -c{c} -d{d}s, medians of {args.rounds} alternating round(s), proxies pinned to CPU {PROXY_CPU}, mock and wrk to CPU {LOAD_CPU}, release build. "
                 "CPU µs/req is the serving process's user+system time over the run divided by the requests it answered (the proxies saturate CPU 0, so throughput is its inverse).\n")
    lines.append("Saturation: 32 connections as fast as each server answers (closed loop), so a proxy slower than the mock queues and its p99 includes that queue.\n")
    lines.append(f"Every request body is {size} bytes. The rows naming Gemini `generateContent` send a Gemini request to the mock's own endpoint (directly and through the stock passthrough); the Responses rows send `POST /v1/responses` on `gemini-2.0-flash`, which the gateway translates to `generateContent` and back, and compare with the passthrough's `generateContent` row in the summary (the columns below compare every row with the chat rows).\n")
    lines.append("| scenario | req/s | p50 ms | p90 ms | p99 ms | added p99 vs direct ms | CPU µs/req | vs passthrough | vs passthrough (gateway's allocator, runtime) | non-2xx |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        cpu = "" if r["cpu_us"] != r["cpu_us"] else f"{r['cpu_us']:.1f}"
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {r['p99'] - direct['p99']:.2f} | {cpu} | {r['rps'] / pt['rps']:.0%} | {r['rps'] / ptm['rps']:.0%} | {r['non2xx']} |")
    lines.append("")
    lines.append(f"Equal load: the same 32 connections, each waiting 0–{2 * pace_ms} ms (random, mean {pace_ms} ms) between requests (about half the stock passthrough's maximum; no server here is saturated).\n")
    lines.append("| scenario | req/s | p50 ms | p90 ms | p99 ms | added p50 vs direct ms | added p99 vs direct ms | non-2xx |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    pd = paced["direct call to the mock"]
    for name, r in paced.items():
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {r['p50'] - pd['p50']:.2f} | {r['p99'] - pd['p99']:.2f} | {r['non2xx']} |")
    lines.append("")
    lines.append("| measure | value | compared with |")
    lines.append("|---|---|---|")
    lines.append(f"| OpenAI route throughput | {oa['rps'] / pt['rps']:.0%} of passthrough ({oa['rps'] / ptm['rps']:.0%} with the gateway's allocator and runtime) | target ≥ 85% |")
    po, ppt = paced["gateway, OpenAI route"], paced["plain Pingora passthrough"]
    lines.append(f"| OpenAI route p99 added vs direct, saturated | {oa['p99'] - direct['p99']:.2f} ms (stock passthrough: {pt['p99'] - direct['p99']:.2f} ms) | target ≤ 1 ms |")
    lines.append(f"| OpenAI route p99 added vs direct, equal load ({po['rps']:.0f} req/s) | {po['p99'] - pd['p99']:.2f} ms (stock passthrough: {ppt['p99'] - pd['p99']:.2f} ms) | target ≤ 1 ms |")
    lines.append(f"| Gemini route throughput | {gm['rps'] / pt['rps']:.0%} of passthrough, same request ({gm['rps'] / ptm['rps']:.0%} with the gateway's allocator and runtime) | target ≥ 70% |")
    lines.extend(responses_lines(results, ttfe, b))
    lines.extend(genai_lines(results, b))
    lines.append(f"| cache hit throughput | {hit['rps'] / oa['rps']:.2f}× the OpenAI-route miss | target ≥ 1.5× |")
    if nginx_hit:
        lines.append(f"| cache hit vs nginx | {hit['rps'] / nginx_hit['rps']:.2f}× nginx serving the same body from memory; Pingora itself doing nothing but answering that body: {floor['rps'] / nginx_hit['rps']:.2f}× | target ≥ 0.8× |")
    else:
        lines.append("| cache hit vs nginx | not measured (no `nginx` on PATH) | target ≥ 0.8× |")
    lines.append(f"| streaming TTFB p50 (20 chunks) | direct {p50(ttfb_direct):.3f} ms, passthrough {p50(ttfb_pt):.3f} ms, gateway {p50(ttfb_gw):.3f} ms: added {p50(ttfb_gw) - p50(ttfb_direct):.3f} ms | target ≤ 0.5 ms |")
    lines.append(f"| concurrent streams | {ok_streams}/{args.streams} completed with [DONE] on one core | target 1,000 without errors |")
    lines.append(f"| RSS idle | {idle_rss / 1024:.1f} MB (cache-enabled instance: {cache_idle / 1024:.1f} MB) | target ≤ 20 MB |")
    lines.append(f"| RSS peak, 32 conns | {gw_rss_peak / 1024:.1f} MB | |")
    lines.append(f"| RSS peak, {args.streams} streams | {stream_rss / 1024:.1f} MB | |")
    lines.append(f"| RSS after the store-true Responses rows (the second instance: `max_stored` 10,000 conversations kept, oldest evicted) | {stored_rss / 1024:.1f} MB | `loadtest/memory.py --only responses` |")
    lines.append(f"| RSS peak, 256 conns, 1,000-entry cache | {rss_256 / 1024:.1f} MB | target ≤ 64 MB |")
    lines.append(f"| soak {args.soak} s, 64 conns of cache hits (RSS at the start and after each sixth) | {' / '.join(f'{x / 1024:.1f}' for x in soak)} MB; second half {(soak[-1] - soak[3]) / 1024:+.1f} MB | flat |")
    text = "\n".join(lines) + "\n"
    print(text)
    # A quick smoke run never replaces the published full-run results.
    out = Path(args.results) if args.results else ROOT / "loadtest" / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    # A hand-written analysis below this marker survives the next run.
    marker = "\n## Analysis\n"
    previous = out.read_text() if out.exists() else ""
    if marker in previous:
        text += marker + previous.split(marker, 1)[1]
    out.write_text(text)


if __name__ == "__main__":
    main()
