"""Helpers for the adversarial tests (tests/py/test_hostile_upstream.py): process gauges read
from /proc, a memory watchdog, raw HTTP/1.1 on a socket with a strict chunked decoder, SSE
parsing and Prometheus samples.

Everything here talks to 127.0.0.1 only and every wait is bounded.
"""

import json
import os
import re
import signal
import socket
import threading
import time

import requests


def rss_mb(pid):
    """Resident set size of a process in MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def fd_count(pid):
    """Open file descriptors of a process."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class RssWatch:
    """Samples a process's RSS every 50 ms in a thread and keeps the peak.

    A gateway with an unbounded buffer grows by about 1 GB/s here: past `kill_mb` the
    watchdog SIGKILLs it (a process this test started) so the machine never runs out of
    memory, and records that it did."""

    def __init__(self, pid, kill_mb=1500):
        self.pid = pid
        self.kill_mb = kill_mb
        self.start_mb = rss_mb(pid)
        self.peak_mb = self.start_mb
        self.samples = []
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            now = rss_mb(self.pid)
            self.samples.append((time.monotonic(), now))
            self.peak_mb = max(self.peak_mb, now)
            if now > self.kill_mb and not self.killed:
                self.killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)

    @property
    def growth_mb(self):
        return self.peak_mb - self.start_mb

    def growth_since(self, t0):
        """RSS now minus the lowest sample taken after monotonic time `t0`."""
        after = [mb for t, mb in self.samples if t >= t0]
        return (after[-1] - min(after)) if after else 0.0

    def describe(self):
        return (f"RSS {self.start_mb:.0f} MB -> peak {self.peak_mb:.0f} MB"
                + (" (killed by the watchdog)" if self.killed else ""))


def wait_until(predicate, timeout, interval=0.05):
    """Polls `predicate` until it is truthy or `timeout` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Raw HTTP/1.1
# ---------------------------------------------------------------------------------------------


def build_request(method, path, body=None, headers=None, host="127.0.0.1"):
    """The bytes of one HTTP/1.1 request (`body` a dict is sent as JSON)."""
    data = b""
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    hdrs = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    hdrs.update(headers or {})
    if data or method == "POST":
        hdrs["Content-Length"] = str(len(data))
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def response_done(data):
    """Whether `data` holds a whole response framed by Content-Length or chunked encoding
    (a close-delimited body is only done when the server closes). Cheap: looks at the head
    and the last bytes only."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = data[:head_end].decode("latin-1").lower().split("\r\n")
    status = int(head[0].split()[1])
    if status in (204, 304) or 100 <= status < 200:
        return True
    headers = dict(line.split(":", 1) for line in head[1:] if ":" in line)
    if "chunked" in headers.get("transfer-encoding", ""):
        return data.endswith(b"0\r\n\r\n") and RawResponse(data).complete
    if "content-length" in headers:
        return len(data) - head_end - 4 >= int(headers["content-length"].strip())
    return False


def raw_exchange(port, request_bytes, timeout=15, max_bytes=64 * 1024 * 1024):
    """Sends one request and reads until the response is complete, the server closes,
    `timeout` passes (total) or `max_bytes` arrived.
    Returns (bytes, how: "complete" | "closed" | "timeout" | "limit" | "reset")."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    out = bytearray()
    how = "closed"
    deadline = time.monotonic() + timeout
    try:
        s.sendall(request_bytes)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                how = "timeout"
                break
            s.settimeout(min(left, 1.0))
            try:
                piece = s.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                how = "reset"
                break
            if not piece:
                break
            out += piece
            if len(out) >= max_bytes:
                how = "limit"
                break
            if response_done(bytes(out)):
                how = "complete"
                break
    finally:
        s.close()
    return bytes(out), how


class RawResponse:
    """A parsed HTTP/1.1 response: status, headers (lowercase names, in order), body and how
    the body ended (`complete`: Content-Length reached or the chunked terminator read)."""

    def __init__(self, raw):
        self.raw = raw
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError(f"no complete response head in {raw[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip().lower(), value.strip()))
        self.chunked = "chunked" in self.header("transfer-encoding", "").lower()
        length = self.header("content-length")
        self.trailing = b""
        if self.chunked:
            self.body, self.complete, self.trailing = decode_chunked(rest)
        elif length is not None:
            n = int(length)
            self.body = rest[:n]
            self.complete = len(rest) >= n
            self.trailing = rest[n:]
        else:
            self.body = rest
            self.complete = True  # close-delimited: complete by definition

    def header(self, name, default=None):
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def json(self):
        return json.loads(self.body)


def decode_chunked(data):
    """Decodes a chunked body strictly: (body, saw the 0-chunk terminator, bytes after it)."""
    body = bytearray()
    i = 0
    while True:
        eol = data.find(b"\r\n", i)
        if eol < 0:
            return bytes(body), False, b""
        size_text = data[i:eol].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return bytes(body), False, data[i:]
        i = eol + 2
        if size == 0:
            # Trailers end with an empty line.
            end = data.find(b"\r\n", i)
            while end > i:
                i = end + 2
                end = data.find(b"\r\n", i)
            if end < 0:
                return bytes(body), False, b""
            return bytes(body), True, data[end + 2:]
        if len(data) < i + size + 2:
            body += data[i:i + size]
            return bytes(body), False, b""
        body += data[i:i + size]
        if data[i + size:i + size + 2] != b"\r\n":
            return bytes(body), False, data[i + size:]
        i += size + 2


# ---------------------------------------------------------------------------------------------
# SSE and JSON
# ---------------------------------------------------------------------------------------------


def sse_data(body):
    """The `data:` payloads of an SSE body, in order (bytes or str)."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    out = []
    for event in re.split(r"\r\n\r\n|\n\n|\r\r", text):
        datas = [line[5:].lstrip(" ") for line in re.split(r"\r\n|\n|\r", event) if line.startswith("data:")]
        if datas:
            out.append("\n".join(datas))
    return out


def openai_stream_text(datas):
    """Assembled `delta.content` of OpenAI chat chunks (ignores `[DONE]` and errors)."""
    text = []
    for d in datas:
        if d == "[DONE]":
            continue
        try:
            obj = json.loads(d)
        except ValueError:
            continue
        for choice in obj.get("choices") or []:
            text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


def is_error_event(data):
    """Whether an SSE payload is an error event (`{"error": {...}}`)."""
    try:
        obj = json.loads(data)
    except ValueError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("error"), dict)


def metric(text, name, **labels):
    """The value of one sample in Prometheus text (summed over matching series), 0 if absent."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def inflight(gateway):
    """`gateway_inflight_requests` on the gateway's /metrics."""
    return metric(requests.get(gateway.url + "/metrics", timeout=5).text, "gateway_inflight_requests")
