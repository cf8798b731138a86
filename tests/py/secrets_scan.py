"""Suite-wide secret scanner: no configured or client secret in any byte the gateway produced.

What is a secret (`Secrets.add` filters out values shorter than `MIN_LEN` and the placeholders
in `PLACEHOLDERS`, which the SDK tests send as keys a gateway-mode gateway ignores):

- every secret value of a config a test starts a gateway with (`secrets_in_config`): provider
  `api_key`s and endpoint `api_key`s, `auth.keys[*].key`, any field named like a secret, token
  or password, and the password of any URL (`cache.redis_url`), after `${VAR}` expansion with
  the gateway's environment; the config file is read again when it changes (SIGHUP reloads);
- every environment value the gateway was started with whose name contains KEY, TOKEN, SECRET
  or PASSWORD, and the password of any URL in its environment (`REDIS_URL`);
- every client key a test sends to a gateway (`ClientKeyExtractor`, from the outgoing bytes):
  `Authorization: Bearer …`, `x-goog-api-key`, `x-openai-api-key`, `x-api-key`, the
  configured `security.api_key_header`, and `?key=` in a request line.

Where it looks:

- every byte received from a gateway's port in this process (`install` patches
  `socket.socket.recv`/`recv_into` and `ssl.SSLSocket.read` at class level; a connection is
  scanned when its peer is a registered gateway port, so the mock provider's control API, which
  records keys on purpose, is never scanned): the raw stream, and the decoded body of every
  `Content-Encoding: gzip|deflate` (and `br`/`zstd` where the Python modules exist) answer.
  A gateway's answers are scanned for the secrets that gateway was ever given (its config's,
  its environment's, the client keys sent to it): a process cannot emit a secret it never
  received, and a few needles per stream keep the scan fast over hundreds of MB of answers;
- every byte of every log file a gateway writes (its stdout/stderr file and `logging.file`),
  scanned for every secret of the session at each test's end and when the gateway stops,
  following renamed (rotated) files.

Scanning is incremental (`StreamScanner`: each piece is searched together with the last
`max secret length - 1` bytes of the one before), so memory stays bounded whatever the size of
a stream and a secret split across reads is still found. Findings are kept per test (the one
running when the bytes arrived or the log was scanned); conftest fails that test's teardown
with them, and the session for any found outside a test. Secrets are never printed: a finding
names the secret's origin and a masked form.

Out of reach: bytes read by subprocess clients (Node, Chromium, curl: their gateway's logs are
still scanned), HTTP/2 and asyncio-TLS streams (only the raw, undecoded bytes are seen).
"""

import hashlib
import json
import os
import re
import socket
import ssl
import threading
import urllib.parse
import weakref
import zlib

try:  # optional decoders: without them br/zstd bodies are only scanned raw (and counted)
    import brotli  # type: ignore
except ImportError:  # pragma: no cover
    brotli = None
try:
    import zstandard  # type: ignore
except ImportError:  # pragma: no cover
    zstandard = None

MIN_LEN = 8
# Exact values the tests send as keys that are meant to be ignored or are obviously fake.
PLACEHOLDERS = {
    "sk-test", "not-needed", "unused", "unused-by-gateway-mode", "placeholder", "changeme",
    "dummy", "none", "null", "test", "xxxxxxxx",
}
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.I)
# Outgoing request headers that carry a key; more names come from `security.api_key_header`.
KEY_HEADERS = {"x-goog-api-key", "x-openai-api-key", "x-api-key", "api-key"}
MAX_HEAD = 1 << 20  # a response head larger than this stops the decoder (raw scan goes on)
DECODE_STEP = 1 << 20  # decompressed output is produced and scanned in pieces of at most this


def mask(secret):
    """A printable stand-in for a secret: its first 3 characters, length and hash prefix."""
    digest = hashlib.sha256(secret.encode()).hexdigest()[:10]
    return f"{secret[:3]}…({len(secret)} chars, sha256 {digest})"


def is_candidate(value):
    return isinstance(value, str) and len(value) >= MIN_LEN and value.lower() not in PLACEHOLDERS \
        and not value.startswith("${")


def url_password(value):
    """The password in a URL's userinfo (`redis://:pw@host`), if any."""
    if not isinstance(value, str) or "://" not in value or "@" not in value:
        return None
    try:
        return urllib.parse.unquote(urllib.parse.urlsplit(value).password or "") or None
    except ValueError:
        return None


class Secrets:
    """The set of secret values, with the encodings they may take in a stream (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._origin = {}  # secret -> where it came from (first one)
        self._needles = {}  # bytes to look for -> secret
        self.max_len = 0
        self.needles = ()  # immutable snapshot, (bytes, secret) pairs

    def add(self, value, origin):
        if not is_candidate(value):
            return False
        with self._lock:
            if value in self._origin:
                return False
            self._origin[value] = origin
            forms = {value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""),
                     urllib.parse.quote_plus(value, safe="")}
            for form in forms:
                b = form.encode()
                self._needles.setdefault(b, value)
                self.max_len = max(self.max_len, len(b))
            self.needles = tuple(self._needles.items())
        return True

    def origin(self, secret):
        return self._origin.get(secret, "?")

    def __contains__(self, value):
        return value in self._origin

    def __len__(self):
        return len(self._origin)

    def values(self):
        return list(self._origin)


class StreamScanner:
    """Scans a byte stream fed in pieces; `on_find(secret, context)` once per occurrence."""

    def __init__(self, secrets, on_find):
        self.secrets = secrets
        self.on_find = on_find
        self.tail = b""
        self.scanned = 0

    def feed(self, data):
        if not data:
            return
        data = bytes(data)
        self.scanned += len(data)
        buf = self.tail + data if self.tail else data
        old = len(self.tail)
        for needle, secret in self.secrets.needles:
            # Only occurrences that end in the new bytes: the tail's were reported already.
            start = max(0, old - len(needle) + 1)
            pos = buf.find(needle, start)
            while pos >= 0:
                self.on_find(secret, self._context(buf, pos, len(needle)))
                pos = buf.find(needle, pos + 1)
        keep = max(self.secrets.max_len - 1, 0)
        self.tail = buf[-keep:] if keep and len(buf) > keep else (buf if keep else b"")

    def _context(self, buf, pos, n):
        before = buf[max(0, pos - 60):pos]
        after = buf[pos + n:pos + n + 60]
        text = repr(before)[2:-1] + "«SECRET»" + repr(after)[2:-1]
        for needle, secret in self.secrets.needles:
            text = text.replace(repr(needle)[2:-1], "«SECRET»")
        return text


def _decompressor(coding):
    """An object with `feed(bytes) -> iterable of bytes`, or None when the coding is unknown."""
    coding = coding.strip().lower()
    if coding in ("gzip", "x-gzip", "deflate"):
        return _Zlib(16 + zlib.MAX_WBITS if coding != "deflate" else zlib.MAX_WBITS)
    if coding == "br" and brotli is not None:
        return _Whole(brotli.Decompressor().process)
    if coding == "zstd" and zstandard is not None:
        return _Whole(zstandard.ZstdDecompressor().decompressobj().decompress)
    return None


class _Zlib:
    def __init__(self, wbits):
        self.wbits = wbits
        self.d = zlib.decompressobj(wbits)
        self.first = True

    def feed(self, data):
        while data:
            try:
                out = self.d.decompress(data, DECODE_STEP)
            except zlib.error:
                if self.first and self.wbits == zlib.MAX_WBITS:  # raw deflate, no zlib header
                    self.wbits = -zlib.MAX_WBITS
                    self.d = zlib.decompressobj(self.wbits)
                    continue
                raise
            self.first = False
            if out:
                yield out
            if self.d.unconsumed_tail:
                data = self.d.unconsumed_tail
            elif self.d.eof and self.d.unused_data:  # another gzip member
                data = self.d.unused_data
                self.d = zlib.decompressobj(self.wbits)
            else:
                data = b""


class _Whole:
    def __init__(self, fn):
        self.fn = fn

    def feed(self, data):
        out = self.fn(data)
        if out:
            yield out


class ResponseDecoder:
    """Follows HTTP/1.x response framing on a stream and hands decoded bodies to `sink`.

    Only content-encoded bodies need it (the raw stream is scanned anyway). Best effort: any
    framing it cannot follow (a HEAD answer, HTTP/2, garbage) stops it for that connection.
    """

    def __init__(self, sink):
        self.sink = sink
        self.buf = bytearray()
        self.state = "head"
        self.remaining = 0
        self.decoder = None
        self.dead = False
        self.undecodable = 0  # bodies in a coding we have no decoder for

    def feed(self, data):
        if self.dead:
            return
        self.buf += data
        try:
            self._run()
        except Exception:  # not HTTP/1.x as we know it: leave it to the raw scan
            self.dead = True
            self.buf = bytearray()

    def close(self):
        if not self.dead and self.state == "close":
            self._end_body()

    def _body(self, data):
        if self.decoder is not None and data:
            for out in self.decoder.feed(bytes(data)):
                self.sink(out)

    def _end_body(self):
        self.decoder = None
        self.state = "head"

    def _run(self):
        buf = self.buf
        while buf:
            if self.state == "head":
                if not bytes(buf[:7]) == b"HTTP/1."[:len(buf)]:
                    raise ValueError("not an HTTP/1.x response")
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    if len(buf) > MAX_HEAD:
                        raise ValueError("head too large")
                    return
                head = bytes(buf[:i]).decode("latin-1")
                del buf[:i + 4]
                self._start(head)
            elif self.state in ("length", "chunk-data"):
                n = min(self.remaining, len(buf))
                self._body(buf[:n])
                del buf[:n]
                self.remaining -= n
                if self.remaining == 0:
                    if self.state == "length":
                        self._end_body()
                    else:
                        self.state = "chunk-crlf"
            elif self.state == "chunk-crlf":
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise ValueError("bad chunk end")
                del buf[:2]
                self.state = "chunk-size"
            elif self.state == "chunk-size":
                i = buf.find(b"\r\n")
                if i < 0:
                    if len(buf) > 4096:
                        raise ValueError("bad chunk size")
                    return
                size = int(bytes(buf[:i]).split(b";")[0].strip(), 16)
                del buf[:i + 2]
                if size == 0:
                    self.state = "trailers"
                else:
                    self.remaining = size
                    self.state = "chunk-data"
            elif self.state == "trailers":
                if buf[:2] == b"\r\n":
                    del buf[:2]
                    self._end_body()
                    continue
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    return
                del buf[:i + 4]
                self._end_body()
            elif self.state == "close":
                self._body(buf)
                del buf[:]

    def _start(self, head):
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if not parts[0].startswith("HTTP/1.") or len(parts) < 2:
            raise ValueError("not an HTTP/1.x response")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        if 100 <= status < 200:
            if status == 101:
                raise ValueError("protocol switch")
            return
        codings = [c for v in headers.get("content-encoding", []) for c in v.split(",") if c.strip()]
        self.decoder = None
        if codings:
            if len(codings) == 1 and codings[0].strip().lower() != "identity":
                self.decoder = _decompressor(codings[0])
            if self.decoder is None and codings[0].strip().lower() != "identity":
                self.undecodable += 1
        te = ",".join(headers.get("transfer-encoding", [])).lower()
        if status in (204, 304):
            self._end_body()
        elif "chunked" in te:
            self.state = "chunk-size"
        elif "content-length" in headers:
            self.remaining = int(headers["content-length"][0])
            self.state = "length" if self.remaining else "head"
            if not self.remaining:
                self._end_body()
        else:
            self.state = "close"


class ClientKeyExtractor:
    """Learns the client keys a test sends, from the bytes of its requests."""

    HEADER = re.compile(rb"^([A-Za-z0-9_-]+)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?\n", re.M)
    QUERY_KEY = re.compile(rb"^[A-Z]+ [^ \r\n]*?[?&]key=([^&# \r\n]+)(?=[&# \r\n])", re.M)
    KEEP = 8192

    def __init__(self, on_key, header_names):
        self.on_key = on_key
        self.header_names = header_names  # a set, shared and growing
        self.tail = b""

    def feed(self, data):
        buf = self.tail + bytes(data)
        for m in self.HEADER.finditer(buf):
            name = m.group(1).decode("latin-1").lower()
            value = m.group(2).decode("latin-1")
            if name == "authorization":
                scheme, _, cred = value.partition(" ")
                if scheme.lower() == "bearer" and cred.strip():
                    self.on_key(cred.strip(), "client Authorization: Bearer")
            elif name in KEY_HEADERS or name in self.header_names:
                self.on_key(value, f"client {name} header")
        for m in self.QUERY_KEY.finditer(buf):
            self.on_key(urllib.parse.unquote(m.group(1).decode("latin-1")), "client ?key=")
        # Keep the last lines (from a line start): a line split across sends matches once whole.
        tail = buf[-self.KEEP:]
        nl = tail.find(b"\n")
        self.tail = tail if len(buf) <= self.KEEP else (tail[nl + 1:] if nl >= 0 else b"")


def _expand(text, env):
    def sub(m):
        name, default = m.group(1), m.group(3)
        v = env.get(name)
        return v if v else (default if default is not None else "")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", sub, text)


def secrets_in_config(config, env=None):
    """(value, field path) for every secret in a config (a dict, or JSON/YAML text)."""
    env = env or {}
    if isinstance(config, (str, bytes)):
        import yaml
        text = config.decode() if isinstance(config, bytes) else config
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError:
            return []
    out = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + [str(k)])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [f"[{i}]"])
        elif isinstance(node, str):
            value = _expand(node, env)
            name = path[-1] if path else ""
            dotted = ".".join(path).replace(".[", "[")
            in_keys = len(path) >= 2 and path[-3:-2] == ["keys"]
            if (name == "api_key" or (name == "key" and in_keys)
                    or (re.search(r"secret|token|password|passwd", name, re.I))):
                out.append((value, dotted))
            pw = url_password(value)
            if pw:
                out.append((pw, dotted + " (URL password)"))

    walk(config, [])
    return out


def secrets_in_env(env):
    out = []
    for name, value in (env or {}).items():
        if SECRET_NAME.search(name):
            out.append((value, f"env {name}"))
        pw = url_password(value)
        if pw:
            out.append((pw, f"env {name} (URL password)"))
    return out


class _Conn:
    """Scanning state of one connection to a gateway."""

    def __init__(self, scan, port, watched):
        self.port = port
        where = f"response from gateway :{port}"
        self.raw = StreamScanner(watched.secrets, lambda s, c: scan.found(s, where, c))
        self.decoded = StreamScanner(watched.secrets, lambda s, c: scan.found(s, where + " (decoded body)", c))
        self.decoder = ResponseDecoder(self._decoded)
        self.keys = ClientKeyExtractor(lambda v, o: scan.add_secret(v, f"{o} to gateway :{port}", watched),
                                       scan.key_headers)
        self.scan = scan

    def _decoded(self, data):
        self.scan.stats["decoded_bytes"] += len(data)
        self.decoded.feed(data)

    def received(self, data):
        self.scan.stats["response_bytes"] += len(data)
        self.raw.feed(data)
        before = self.decoder.undecodable
        self.decoder.feed(data)
        self.scan.stats["undecodable_bodies"] += self.decoder.undecodable - before

    def sent(self, data):
        self.keys.feed(data)


class _LogFile:
    """A log file scanned from where the last scan stopped, following a rename (rotation)."""

    def __init__(self, scan, path, label):
        self.scan = scan
        self.path = str(path)
        self.label = label
        self.f = None
        self.scanner = None

    def _open(self):
        try:
            self.f = open(self.path, "rb")
        except OSError:
            self.f = None
            return
        self.scanner = StreamScanner(self.scan.secrets, lambda s, c: self.scan.found(s, self.label, c))

    def poll(self):
        if self.f is None:
            self._open()
            if self.f is None:
                return
        self._drain()
        try:  # rotated: the old file is drained above, go on with the new one from its start
            if os.stat(self.path).st_ino != os.fstat(self.f.fileno()).st_ino:
                self.f.close()
                self._open()
                if self.f is not None:
                    self._drain()
        except OSError:
            pass

    def _drain(self):
        while True:
            data = self.f.read(1 << 20)
            if not data:
                return
            self.scan.stats["log_bytes"] += len(data)
            self.scanner.feed(data)

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


class _Watched:
    """A gateway the scanner knows: its ports, config file, environment and log files."""

    def __init__(self, scan, gw):
        self.scan = scan
        self.gw = gw
        self.config_mtime = None
        self.logs = {}
        # What this gateway could ever emit: its config's and environment's secrets and the
        # client keys sent to it. Its answers are scanned for these (fast: a few needles); its
        # logs for every secret of the session.
        self.secrets = Secrets()

    def refresh(self):
        gw = self.gw
        try:
            st = os.stat(gw.config_path)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return
        if stamp == self.config_mtime:
            return
        self.config_mtime = stamp
        try:
            text = open(gw.config_path).read()
        except OSError:
            return
        for value, field in secrets_in_config(text, gw.env):
            self.scan.add_secret(value, f"{field} of gateway :{gw.port}", self)
        try:
            import yaml
            cfg = yaml.safe_load(text) or {}
            header = _expand(str(((cfg.get("security") or {}).get("api_key_header")) or ""), gw.env)
            if header:
                self.scan.key_headers.add(header.lower())
            log = cfg.get("logging") or {}
            if log.get("file"):
                self.add_log(_expand(str(log["file"]), gw.env))
        except Exception:
            pass

    def add_log(self, path):
        path = str(path)
        if path not in self.logs:
            self.logs[path] = _LogFile(self.scan, path, f"log {os.path.basename(path)} of gateway :{self.gw.port}")

    def poll_logs(self):
        for log in list(self.logs.values()):
            log.poll()


class Scan:
    """The suite's scanner: secrets, watched gateways and the findings per test."""

    def __init__(self):
        self.secrets = Secrets()
        self.key_headers = set()
        self.ports = {}  # port -> _Watched
        self.watched = {}  # id(gateway) -> _Watched
        self.current_test = None
        self.findings = []  # (test, where, secret, context)
        self._lock = threading.RLock()
        self._conns = weakref.WeakKeyDictionary()
        self.stats = {"connections": 0, "response_bytes": 0, "decoded_bytes": 0, "log_bytes": 0,
                      "undecodable_bodies": 0, "gateways": 0, "internal_errors": 0}

    # -- secrets and gateways ------------------------------------------------------------------

    def add_secret(self, value, origin, watched=None):
        """A secret of the session, and of one watched gateway (of every one when None)."""
        self.secrets.add(value, origin)
        with self._lock:
            targets = [watched] if watched is not None else list(self.watched.values())
        for w in targets:
            w.secrets.add(value, origin)

    def gateway_started(self, gw, ports, log_path):
        """Called by conftest's Gateway when its process starts (also on a restart)."""
        with self._lock:
            w = self.watched.get(id(gw))
            if w is None:
                w = self.watched[id(gw)] = _Watched(self, gw)
                self.stats["gateways"] += 1
                for value, origin in secrets_in_env(gw.env):
                    self.add_secret(value, f"{origin} of gateway :{gw.port}", w)
            w.add_log(log_path)
            w.refresh()
            for p in ports:
                self.ports[int(p)] = w

    def gateway_stopped(self, gw):
        """Called when a gateway's process has exited: its logs are scanned to the end."""
        with self._lock:
            w = self.watched.get(id(gw))
            if w is None:
                return
            w.refresh()
            w.poll_logs()
            for p, ww in list(self.ports.items()):
                if ww is w:
                    del self.ports[p]

    def poll(self):
        """Scans what every known gateway logged since the last poll."""
        with self._lock:
            for w in list(self.watched.values()):
                w.refresh()
                w.poll_logs()

    def close(self):
        self.poll()
        with self._lock:
            for w in self.watched.values():
                for log in w.logs.values():
                    log.close()

    # -- findings -----------------------------------------------------------------------------

    def found(self, secret, where, context):
        with self._lock:
            self.findings.append((self.current_test, where, secret, context))

    def take(self, test=None, everything=False):
        """Removes and returns the findings of one test (or all of them)."""
        with self._lock:
            mine = [f for f in self.findings if everything or f[0] == test]
            self.findings = [f for f in self.findings if not (everything or f[0] == test)]
            return mine

    def describe(self, findings):
        lines = []
        for test, where, secret, context in findings[:20]:
            lines.append(f"secret {mask(secret)} from {self.secrets.origin(secret)} found in "
                         f"{where} (during {test or 'no test'}): {context}")
        if len(findings) > 20:
            lines.append(f"… and {len(findings) - 20} more")
        return "\n".join(lines)

    def summary(self):
        s = self.stats
        return (f"secret scanner: {len(self.secrets)} secrets, {s['gateways']} gateways, "
                f"{s['connections']} gateway connections, {s['response_bytes'] / 1e3:.0f} kB of responses "
                f"({s['decoded_bytes'] / 1e3:.0f} kB decoded, {s['undecodable_bodies']} bodies in a coding "
                f"without a decoder here), {s['log_bytes'] / 1e3:.0f} kB of logs, "
                f"{s['internal_errors']} scanner errors")

    # -- the socket tee -----------------------------------------------------------------------

    def conn(self, sock):
        try:
            return self._conns[sock]
        except KeyError:
            pass
        except TypeError:
            return None
        c = None
        try:
            peer = sock.getpeername()
            if isinstance(peer, tuple) and peer[0] in ("127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"):
                w = self.ports.get(peer[1])
                if w is not None:
                    w.refresh()
                    c = _Conn(self, peer[1], w)
                    self.stats["connections"] += 1
        except OSError:
            return None  # not connected (yet): decide on the next call
        try:
            self._conns[sock] = c
        except TypeError:
            pass
        return c

    def tee_in(self, sock, data, n=None):
        """`data` received on `sock` (its first `n` bytes when `n` is given)."""
        try:
            c = self.conn(sock)
            if c is not None:
                c.received(bytes(data) if n is None else memoryview(data).cast("B")[:n].tobytes())
        except Exception:
            self.stats["internal_errors"] += 1

    def tee_out(self, sock, data, n=None):
        try:
            c = self.conn(sock)
            if c is not None:
                c.sent(bytes(data) if n is None else memoryview(data).cast("B")[:n].tobytes())
        except Exception:
            self.stats["internal_errors"] += 1


_installed = None


def install():
    """Patches the socket classes once per process; returns the process's `Scan`."""
    global _installed
    if _installed is not None:
        return _installed
    scan = Scan()
    orig_recv = socket.socket.recv
    orig_recv_into = socket.socket.recv_into
    orig_send = socket.socket.send
    orig_sendall = socket.socket.sendall
    orig_ssl_read = ssl.SSLSocket.read
    orig_ssl_send = ssl.SSLSocket.send

    def recv(self, *a, **kw):
        data = orig_recv(self, *a, **kw)
        if data:
            scan.tee_in(self, data)
        return data

    def recv_into(self, buffer, *a, **kw):
        n = orig_recv_into(self, buffer, *a, **kw)
        if n:
            scan.tee_in(self, buffer, n)
        return n

    def send(self, data, *a, **kw):
        n = orig_send(self, data, *a, **kw)
        if n:
            scan.tee_out(self, data, n)
        return n

    def sendall(self, data, *a, **kw):
        scan.tee_out(self, data)
        return orig_sendall(self, data, *a, **kw)

    def ssl_read(self, len=1024, buffer=None):
        out = orig_ssl_read(self, len, buffer)
        if out:
            if buffer is None:
                scan.tee_in(self, out)
            else:
                scan.tee_in(self, buffer, out)
        return out

    def ssl_send(self, data, flags=0):
        n = orig_ssl_send(self, data, flags)
        if n:
            scan.tee_out(self, data, n)
        return n

    socket.socket.recv = recv
    socket.socket.recv_into = recv_into
    socket.socket.send = send
    socket.socket.sendall = sendall
    ssl.SSLSocket.read = ssl_read
    ssl.SSLSocket.send = ssl_send
    _installed = scan
    return scan
