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

    python3 loadtest/run.py                 # full run (~6 min + soak), writes loadtest/RESULTS.md
    python3 loadtest/run.py --quick         # shorter runs, for a smoke check

Everything targets 127.0.0.1 and stops by itself.
"""

import argparse
import json
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
    return {"rps": rps, "p50": lat["50"], "p90": lat["90"], "p99": lat["99"], "cpu_us": cpu_us,
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


def ttfb_samples(port, body, n):
    """Time to the first SSE event, sequential requests on one kept-alive connection (ms)."""
    data = json.dumps(body).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)) + data
    out = []
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(n):
        t0 = time.perf_counter()
        s.sendall(req)
        buf, first = b"", None
        while b"data: [DONE]" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("stream closed early")
            if first is None and b"data: " in buf + chunk:
                first = time.perf_counter()
            buf += chunk
        # Consume the terminating zero-size chunk of the chunked encoding.
        while not buf.endswith(b"0\r\n\r\n"):
            buf += s.recv(65536)
        out.append((first - t0) * 1000)
    s.close()
    return out


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


def gateway_config(mock_port, cache, log_level="warn"):
    return f"""
server: {{ host: 127.0.0.1, max_concurrent_requests: 4096 }}
auth: {{ mode: gateway }}
providers:
  openai: {{ api_key: load-test-key, base_url: "http://127.0.0.1:{mock_port}/v1", timeout: 30000 }}
  gemini: {{ api_key: load-test-key, base_url: "http://127.0.0.1:{mock_port}/v1beta", timeout: 30000 }}
routing: {{ strategy: round_robin }}
cache: {{ enabled: {str(cache).lower()}, max_size: 1000, ttl: 3600 }}
security: {{ rate_limiting_enabled: false }}
logging: {{ level: {log_level}, format: json }}
"""


def start_gateway(mock_port, cache, tmp, log_level="warn"):
    port = free_port()
    cfg = Path(tmp) / f"gw-{cache}-{log_level}.yaml"
    cfg.write_text(gateway_config(mock_port, cache, log_level))
    g = Proc([str(RELEASE / "llm-gateway"), "--config", str(cfg), "--port", str(port)], PROXY_CPU)
    wait_port(port)
    time.sleep(0.5)
    return g, port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk scenario")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--soak", type=int, default=600, help="seconds of soak (RSS at start, middle, end)")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the throughput scenarios (medians reported)")
    ap.add_argument("--quick", action="store_true", help="3 s scenarios, 1 round, 30 s soak, 200 streams")
    ap.add_argument("--skip-build", action="store_true")
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

    tmp = tempfile.mkdtemp(prefix="loadtest-")
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the load test."}]}
    gem = {**chat, "model": "gemini-2.0-flash"}
    stream20 = {**chat, "stream": True}
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
    idle_rss = rss_kb(gw.p.pid)
    d, c = args.duration, args.connections
    try:
        url = lambda port: f"http://127.0.0.1:{port}/v1/chat/completions"
        scenarios = [
            ("direct call to the mock", mock_port, chat, mock.p.pid),
            ("plain Pingora passthrough", pt_port, chat, passthrough.p.pid),
            ("plain Pingora passthrough, gateway's allocator and runtime", ptm_port, chat, passthrough_mi.p.pid),
            ("gateway, OpenAI route", gw_port, chat, gw.p.pid),
            ("gateway, Gemini-translated route", gw_port, gem, gw.p.pid),
        ]
        runs = {name: [] for name, *_ in scenarios}
        for _name, port, body, _pid in scenarios:  # warm-up: pools, allocator arenas
            wrk(url(port), body, 1, c)
        for _ in range(args.rounds):
            for name, port, body, pid in scenarios:
                runs[name].append(wrk(url(port), body, d, c, pid=pid))
        results = {name: median_run(rs) for name, rs in runs.items()}
        rows.extend(results.items())
        direct, pt, ptm = results["direct call to the mock"], results["plain Pingora passthrough"], results["plain Pingora passthrough, gateway's allocator and runtime"]
        oa, gm = results["gateway, OpenAI route"], results["gateway, Gemini-translated route"]
        gw_rss_peak = rss_kb(gw.p.pid, "VmHWM")

        # Latency at equal load: every connection paced so the offered load is about half
        # the stock passthrough's maximum, below every proxy's saturation, so p99 shows what
        # each hop adds rather than how long its queue is.
        pace_ms = max(1, round(c * 1000 / (0.5 * pt["rps"])))
        paced_runs = {name: [] for name, *_ in scenarios}
        for _ in range(args.rounds):
            for name, port, body, pid in scenarios:
                paced_runs[name].append(wrk(url(port), body, d, c, pid=pid, pace_ms=pace_ms))
        paced = {name: median_run(rs) for name, rs in paced_runs.items()}

        # Streaming: 20-chunk answers, time to first event, sequential (no queueing).
        subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{mock_port}/_mock/config", "-d", '{"chunks":20}'], capture_output=True)
        ttfb_direct = ttfb_samples(mock_port, stream20, 300)
        ttfb_gw = ttfb_samples(gw_port, stream20, 300)
        ttfb_pt = ttfb_samples(pt_port, stream20, 300)

        # Concurrent open streams on one core: each stream lasts ~1 s.
        subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{mock_port}/_mock/config", "-d", '{"chunks":20,"chunk_delay_ms":50}'], capture_output=True)
        ok_streams = concurrent_streams(gw_port, args.streams, stream20)
        stream_rss = rss_kb(gw.p.pid, "VmHWM")
        subprocess.run(["curl", "-s", "-X", "POST", f"http://127.0.0.1:{mock_port}/_mock/reset"], capture_output=True)
    finally:
        gw.stop()

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
    lines.append(f"| RSS peak, 256 conns, 1,000-entry cache | {rss_256 / 1024:.1f} MB | target ≤ 64 MB |")
    lines.append(f"| soak {args.soak} s, 64 conns of cache hits (RSS at the start and after each sixth) | {' / '.join(f'{x / 1024:.1f}' for x in soak)} MB; second half {(soak[-1] - soak[3]) / 1024:+.1f} MB | flat |")
    text = "\n".join(lines) + "\n"
    print(text)
    # A quick smoke run never replaces the published full-run results.
    out = ROOT / "loadtest" / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    # A hand-written analysis below this marker survives the next run.
    marker = "\n## Analysis\n"
    previous = out.read_text() if out.exists() else ""
    if marker in previous:
        text += marker + previous.split(marker, 1)[1]
    out.write_text(text)


if __name__ == "__main__":
    main()
