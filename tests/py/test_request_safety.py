"""Request safety (issue 18): the secret scanner itself, model names that must never reach an
upstream URL (item 6), rate-limit identity (item 9), a long Retry-After with another peer
(item 10), and the keep-alive connection after a broken stream (item 11)."""

import gzip
import http.client
import json
import os
import secrets
import socket
import threading
import time
import zlib

import pytest
import requests

import secrets_scan
from conftest import SCAN, provider_config
from secrets_scan import (ClientKeyExtractor, ResponseDecoder, Secrets, StreamScanner,
                          secrets_in_config, secrets_in_env)


def assert_openai_error(r, status, param=None):
    assert r.status_code == status, (r.status_code, r.text[:500])
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert err["message"]
    if param is not None:
        assert err["param"] == param, err
    return err


# ---------------------------------------------------------------------------------------------
# The secret scanner, on byte streams
# ---------------------------------------------------------------------------------------------

SECRET = "gw-openai-key"


def scanner(*values):
    s = Secrets()
    for v in values:
        s.add(v, "test")
    found = []
    return s, StreamScanner(s, lambda secret, ctx: found.append((secret, ctx))), found


def test_scanner_finds_a_secret_in_one_piece():
    _, sc, found = scanner(SECRET)
    sc.feed(b'HTTP/1.1 502 Bad Gateway\r\n\r\n{"error":"Bearer gw-openai-key rejected"}')
    assert [f[0] for f in found] == [SECRET]
    assert SECRET not in found[0][1] and "«SECRET»" in found[0][1], "the context never shows the secret"


def test_scanner_finds_a_secret_split_at_every_position():
    stream = b"x" * 100 + SECRET.encode() + b"y" * 100
    for cut in range(1, len(stream)):
        _, sc, found = scanner(SECRET)
        sc.feed(stream[:cut])
        sc.feed(stream[cut:])
        assert len(found) == 1, cut


def test_scanner_finds_a_secret_fed_byte_by_byte_and_in_three_pieces():
    stream = b"abc" + SECRET.encode() + b"def"
    _, sc, found = scanner(SECRET)
    for i in range(len(stream)):
        sc.feed(stream[i:i + 1])
    assert len(found) == 1
    _, sc, found = scanner(SECRET)
    for piece in (b"abc" + SECRET[:3].encode(), SECRET[3:7].encode(), SECRET[7:].encode() + b"def"):
        sc.feed(piece)
    assert len(found) == 1


def test_scanner_reports_each_occurrence_once():
    _, sc, found = scanner(SECRET)
    sc.feed(b"1 " + SECRET.encode() + b" 2 " + SECRET.encode())
    sc.feed(b"more bytes after, the overlap holds the end of the last occurrence")
    sc.feed(SECRET.encode()[:5])
    sc.feed(SECRET.encode()[5:])
    assert len(found) == 3


def test_scanner_memory_is_bounded_by_the_longest_secret():
    s, sc, found = scanner(SECRET, "another-much-longer-secret-value-0123456789")
    piece = os.urandom(65536)
    for _ in range(160):  # 10 MiB
        sc.feed(piece)
        assert len(sc.tail) < s.max_len
    assert sc.scanned == 160 * 65536
    sc.feed(b"..another-much-longer-secret-val")
    sc.feed(b"ue-0123456789..")
    assert len(found) == 1


def test_scanner_ignores_short_values_and_placeholders_but_not_real_keys():
    s = Secrets()
    for v in ["", "short", "sk-test", "not-needed", "unused", "unused-by-gateway-mode", "${OPENAI_API_KEY}"]:
        assert not s.add(v, "test"), v
    for v in ["gw-openai-key", "gw-gemini-key", "good-key", "sk-client-abcdef"]:
        assert s.add(v, "test"), v
    assert len(s) == 4


def test_scanner_finds_json_escaped_and_percent_encoded_forms():
    odd = 'k3y/with+chars"and\\more'
    _, sc, found = scanner(odd)
    sc.feed(json.dumps({"message": f"bad key {odd}"}).encode())
    sc.feed(b"GET /x?key=k3y%2Fwith%2Bchars%22and%5Cmore HTTP/1.1\r\n")
    sc.feed(b"log: key=k3y%2Fwith%2Bchars%22and%5Cmore")
    assert len(found) == 3


def test_a_secret_learned_later_is_found_in_the_bytes_after():
    s, sc, found = scanner(SECRET)
    sc.feed(b"before: a-key-learned-later-1234 is not a secret yet")
    s.add("a-key-learned-later-1234", "client")
    sc.feed(b"after: a-key-learned-later-1234")
    assert [f[0] for f in found] == ["a-key-learned-later-1234"]


def chunked(body, size):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def decoded_stream(*responses, piece=7):
    s = Secrets()
    s.add(SECRET, "test")
    found = []
    sc = StreamScanner(s, lambda secret, ctx: found.append(secret))
    dec = ResponseDecoder(sc.feed)
    stream = b"".join(responses)
    for i in range(0, len(stream), piece):
        dec.feed(stream[i:i + piece])
    dec.close()
    return dec, found


def test_decoder_finds_a_secret_in_gzip_bodies_of_every_framing():
    body = gzip.compress(b'{"error":{"message":"Incorrect API key gw-openai-key"}}' * 3)
    assert SECRET.encode() not in body
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    cl = b"HTTP/1.1 401 Unauthorized\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    ch = b"HTTP/1.1 502 Bad Gateway\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(body, 10)
    cont = b"HTTP/1.1 100 Continue\r\n\r\n"
    close = b"HTTP/1.1 500 Oops\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n" + body
    for piece in (1, 7, 4096):
        dec, found = decoded_stream(plain, cont, cl, b"HTTP/1.1 204 No Content\r\n\r\n", ch, close, piece=piece)
        assert not dec.dead
        assert found == [SECRET] * 9, (piece, found)


def test_decoder_handles_deflate_and_gzip_sse_flushed_per_event():
    comp = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    events = b""
    for i in range(5):
        events += comp.compress(b"data: {\"delta\": \"part %d gw-openai-key\"}\n\n" % i) + comp.flush(zlib.Z_SYNC_FLUSH)
    events += comp.flush()
    sse = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(events, 33)
    deflated = zlib.compress(b"deflate gw-openai-key")
    dfl = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(deflated) + deflated
    _, found = decoded_stream(sse, dfl, piece=5)
    assert found == [SECRET] * 6


def test_decoder_gives_up_on_what_is_not_http_and_never_raises():
    dec, found = decoded_stream(b"\x00\x01 garbage " * 1000, piece=100)
    assert dec.dead and found == []
    dec, _ = decoded_stream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert dec.dead


def test_client_keys_are_learned_from_requests_even_split_across_sends():
    learned = []
    ex = ClientKeyExtractor(lambda v, origin: learned.append(v), {"x-team-key"})
    req = (b"POST /v1beta/models/g:generateContent?alt=sse&key=q%2Bkey-123456 HTTP/1.1\r\n"
           b"Host: x\r\nAuthorization: Bearer sk-client-SPLIT-9876\r\n"
           b"x-goog-api-key:  goog-client-key-1 \r\nX-OpenAI-Api-Key: oa-client-key-2\r\n"
           b"X-API-Key: access-key-3\r\nx-team-key: team-key-4\r\nContent-Length: 2\r\n\r\n{}")
    for i in range(0, len(req), 5):
        ex.feed(req[i:i + 5])
    assert set(learned) == {"q+key-123456", "sk-client-SPLIT-9876", "goog-client-key-1", "oa-client-key-2",
                            "access-key-3", "team-key-4"}, learned
    partial = []
    ex = ClientKeyExtractor(lambda v, origin: partial.append(v), set())
    ex.feed(b"GET / HTTP/1.1\r\nAuthorization: Bearer sk-part")
    assert partial == [], "a value is learned only once its line is complete"


def test_secrets_are_read_from_configs_and_environments():
    cfg = provider_config("http://127.0.0.1:1", openai_key="file-openai-key-1", gemini_key="${GEMINI_API_KEY}")
    cfg["providers"]["openai"]["endpoints"] = [{"base_url": "http://127.0.0.1:2/v1", "api_key": "endpoint-key-2"}]
    cfg["auth"] = {"mode": "hybrid", "keys": [{"id": "team-id", "key": "access-key-3"}, {"id": "h", "sha256": "ab" * 32}]}
    cfg["cache"] = {"redis_url": "${REDIS_URL:-redis://:redis-pass-4@127.0.0.1:6379}"}
    cfg["server"] = {"tls": {"cert": "/tmp/cert.pem", "key": "/tmp/key.pem"}}
    cfg["security"] = {"api_key_header": "X-Team-Key"}
    env = {"GEMINI_API_KEY": "env-gemini-key-5"}
    values = {v for v, _ in secrets_in_config(cfg, env)}
    assert {"file-openai-key-1", "endpoint-key-2", "access-key-3", "env-gemini-key-5", "redis-pass-4"} <= values
    assert not values & {"/tmp/key.pem", "X-Team-Key", "team-id", "ab" * 32}
    yaml_text = "providers:\n  openai:\n    api_key: yaml-key-6\nauth:\n  keys:\n    - {id: a, key: yaml-access-7}\n"
    assert {v for v, _ in secrets_in_config(yaml_text)} == {"yaml-key-6", "yaml-access-7"}
    env_values = {v for v, _ in secrets_in_env({"OPENAI_API_KEY": "sk-env-1", "SOME_TOKEN": "tok-2", "DB_PASSWORD": "pw-3",
                                                "REDIS_URL": "redis://:url-pass-4@h:1", "PATH": "/usr/bin", "HOME": "/root"})}
    assert env_values == {"sk-env-1", "tok-2", "pw-3", "url-pass-4"}


class FakeGateway:
    """Enough of conftest's Gateway for the scanner: a port, a config file, an env, a log."""

    def __init__(self, tmp_path, port, secret):
        self.port = port
        self.config_path = tmp_path / "gateway.yaml"
        self.config_path.write_text(json.dumps({"providers": {"openai": {"api_key": secret}}}))
        self.log_path = tmp_path / "gateway.log"
        self.log_path.write_text("")
        self.env = {}


def serve_once(listener, chunks):
    conn, _ = listener.accept()
    with conn:
        conn.recv(65536)
        for c in chunks:
            conn.sendall(c)
            time.sleep(0.05)


@pytest.mark.skipif(SCAN is None, reason="secret scanner switched off")
def test_the_installed_socket_patch_and_log_scan_report_to_the_running_test(request, tmp_path):
    """End to end through the real patch: a fake 'gateway' (a Python socket) is registered,
    answers a configured secret split across two writes; requests reads it; the log file is
    scanned and followed through a rename; the findings belong to this test."""
    secret = "fake-gw-secret-" + secrets.token_hex(6)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fake = FakeGateway(tmp_path, port, secret)
    body = b'{"error": "echo ' + secret.encode() + b'"}'
    head = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    cut = len(head) + 20
    t = threading.Thread(target=serve_once, args=(listener, [(head + body)[:cut], (head + body)[cut:]]))
    t.start()
    SCAN.gateway_started(fake, {port}, fake.log_path)
    try:
        assert secret in SCAN.secrets, "the config file's api_key is a secret"
        r = requests.get(f"http://127.0.0.1:{port}/x", headers={"Authorization": "Bearer sk-learned-" + secret[-6:]}, timeout=5)
        assert r.status_code == 401
        t.join(5)
        assert "sk-learned-" + secret[-6:] in SCAN.secrets, "client keys sent to a gateway are secrets"
        mine = SCAN.take(request.node.nodeid)
        assert [(w.startswith("response from gateway"), s) for _, w, s, _ in mine] == [(True, secret)], mine
        with open(fake.log_path, "a") as f:
            f.write(f'{{"msg": "attempt 1 got 401: {secret}"}}\n')
        SCAN.poll()
        os.rename(fake.log_path, tmp_path / "gateway.log.1")
        with open(tmp_path / "gateway.log.1", "a") as f:
            f.write(f"written after the rename, before the reopen: {secret}\n")
        fake.log_path.write_text(f"new file {secret}\n")
        SCAN.poll()
        mine = SCAN.take(request.node.nodeid)
        assert [(w.startswith("log gateway.log"), s) for _, w, s, _ in mine] == [(True, secret)] * 3, mine
    finally:
        SCAN.gateway_stopped(fake)
        listener.close()
    assert SCAN.take(request.node.nodeid) == []


@pytest.mark.skipif(SCAN is None, reason="secret scanner switched off")
def test_the_scanner_sees_through_the_real_gateway(request, mock, start_gateway):
    """A canary the gateway does not know is secret (a prompt the mock echoes, a request id the
    gateway echoes and logs) shows the scanner reads plain, gzip and streamed answers and logs."""
    g = start_gateway(provider_config(mock.url))
    for v in ("gw-openai-key", "gw-gemini-key"):
        assert v in SCAN.secrets
    canary = "canary-" + secrets.token_hex(8)
    SCAN.add_secret(canary, "canary")  # to every running gateway's set too
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": canary + " " + "pad " * 300}]}
    assert requests.post(g.url + "/v1/chat/completions", json=body, headers={"Accept-Encoding": "identity"}, timeout=10).status_code == 200
    raw = [w for _, w, s, _ in SCAN.take(request.node.nodeid) if s == canary]
    assert raw == ["response from gateway :%d" % g.port], raw
    r = requests.post(g.url + "/v1/chat/completions", json=body, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert r.headers.get("content-encoding") == "gzip" and canary in r.text
    gz = [w for _, w, s, _ in SCAN.take(request.node.nodeid) if s == canary]
    assert gz == ["response from gateway :%d (decoded body)" % g.port], gz
    mock.configure(chunks=1)  # the whole reply in one event, so the canary is not split by the mock
    with requests.post(g.url + "/v1/chat/completions", json={**body, "stream": True}, headers={"Accept-Encoding": "gzip"},
                       stream=True, timeout=10) as r:
        assert canary in b"".join(r.iter_content(None)).decode().replace('"', "")
    assert [w for _, w, s, _ in SCAN.take(request.node.nodeid) if s == canary], "a gzip SSE stream is decoded"
    r = requests.get(g.url + "/health", headers={"x-request-id": canary}, timeout=5)
    assert r.headers["x-request-id"] == canary
    assert SCAN.take(request.node.nodeid), "the echoed header"
    g.stop()
    logged = [w for _, w, s, _ in SCAN.take(request.node.nodeid) if s == canary]
    assert logged and all(w == "log gateway.log of gateway :%d" % g.port for w in logged), logged


# ---------------------------------------------------------------------------------------------
# Item 6: model names never reach an upstream URL unchecked
# ---------------------------------------------------------------------------------------------

BAD_MODELS = [
    "gemini/../../v1beta/cachedContents?",
    "gemini-2.0-flash?key=evil#",
    "gemini-2.0-flash/../../../v1beta/cachedContents",
    "gemini-2.0 flash",
    "gemini-2.0-flash%2F..%2Fx",
    "gemini-2.0-flash\nx-injected: 1",
    "gemini-" + "a" * 300,
    "gpt-4o mini",
    "openai/gpt-4o-mini\r\nx: y",
    "gpt-" + "a" * 300,
]


def upstream_calls(mock):
    """What reached the mock, less health probes (a GET of the model list)."""
    return [r for r in mock.requests() if not (r["method"] == "GET" and r["path"].rstrip("/").endswith("/models"))]


@pytest.mark.parametrize("route", ["chat", "embeddings"])
def test_hostile_model_names_are_400_before_any_upstream_call(mock, start_gateway, route):
    g = start_gateway(provider_config(mock.url))
    failures = []
    for model in BAD_MODELS:
        if route == "chat":
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            url = g.url + "/v1/chat/completions"
        else:
            body = {"model": model, "input": "hi"}
            url = g.url + "/v1/embeddings"
        r = requests.post(url, json=body, timeout=15)
        calls = upstream_calls(mock)
        try:
            assert_openai_error(r, 400, param="model")
            assert "model" in r.json()["error"]["message"].lower()
            assert calls == [], [c["path"] for c in calls]
        except AssertionError as e:
            failures.append(f"{model[:60]!r}: {r.status_code} {r.text[:160]!r} upstream={[c['path'][:80] for c in calls]} ({e})")
        requests.delete(mock.url + "/_mock/requests", timeout=5)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("model, provider", [
    ("openai/ft:gpt-4o-mini:my-org::abc123", "openai"),
    ("gpt-4o-mini-2024-07-18", "openai"),
    ("gemini-2.0-flash-001", "gemini"),
    ("gemini/gemini-2.5-flash-preview-05-20", "gemini"),
    ("gemini-1.5-pro.latest", "gemini"),
])
def test_valid_model_names_with_dots_dashes_and_colons_still_work(mock, start_gateway, model, provider):
    g = start_gateway(provider_config(mock.url))
    r = g.chat(model=model)
    assert r.status_code == 200, r.text
    assert r.headers["x-gateway-provider"] == provider
    name = model.split("/", 1)[1] if model.startswith(("openai/", "gemini/")) else model
    calls = upstream_calls(mock)
    assert len(calls) == 1
    if provider == "gemini":
        path = calls[0]["path"]
        assert path.startswith("/v1beta/models/") and path.endswith(":generateContent"), path
        from urllib.parse import unquote
        assert unquote(path[len("/v1beta/models/"):-len(":generateContent")]) == name, path
    else:
        assert calls[0]["body"]["model"] == name


# ---------------------------------------------------------------------------------------------
# Item 9: the rate-limit identity is the key actually used, never an unused header
# ---------------------------------------------------------------------------------------------

def limited(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["security"] = {"rate_limiting_enabled": True, "rate_limit_rpm": 5}
    return start_gateway(cfg)


@pytest.mark.parametrize("model, unused", [
    ("gpt-4o-mini", "x-goog-api-key"),
    ("gpt-4o-mini", "?key="),
    ("gemini-2.0-flash", "x-openai-api-key"),
])
def test_a_random_unused_key_header_does_not_get_a_fresh_budget(mock, start_gateway, model, unused):
    g = limited(mock, start_gateway)
    codes = []
    for _ in range(20):
        junk = "junk-" + secrets.token_hex(8)
        url = g.url + "/v1/chat/completions"
        headers = {}
        if unused == "?key=":
            url += "?key=" + junk
        else:
            headers[unused] = junk
        r = requests.post(url, json={"model": model, "messages": [{"role": "user", "content": "rl"}]}, headers=headers, timeout=10)
        codes.append(r.status_code)
    assert codes == [200] * 5 + [429] * 15, codes
    sent = upstream_calls(mock)
    assert len(sent) == 5
    for c in sent:  # the junk was never used upstream: the gateway's own key was
        h = c["headers"]
        assert "junk-" not in json.dumps([h, c["path"], c["query"]]), c


def test_keys_actually_used_upstream_keep_their_own_budgets(mock, start_gateway):
    """The other side of item 9: a client key that is used upstream is its caller's identity."""
    g = limited(mock, start_gateway)
    codes = [g.chat(headers={"Authorization": f"Bearer sk-caller-{i:02d}-{secrets.token_hex(4)}"}).status_code for i in range(8)]
    assert codes == [200] * 8, codes
    one = "sk-one-caller-" + secrets.token_hex(4)
    codes = [g.chat(headers={"Authorization": f"Bearer {one}"}).status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2, codes


# ---------------------------------------------------------------------------------------------
# Item 10: a Retry-After above the cap moves on to the other peer at once
# ---------------------------------------------------------------------------------------------

def test_a_long_retry_after_moves_to_the_other_peer_at_once(start_mock, start_gateway):
    first, second = start_mock(), start_mock()
    cfg = provider_config(first.url)
    cfg["providers"]["openai"]["endpoints"] = [{"base_url": f"{second.url}/v1"}]
    g = start_gateway(cfg)
    first.faults({"status": 429, "retry_after": 30, "count": -1, "path_contains": "/chat/completions"})
    results = []
    for i in range(4):
        t0 = time.monotonic()
        r = g.chat(content=f"ra {i}")
        results.append((r.status_code, round(time.monotonic() - t0, 2), r.headers.get("x-gateway-attempts"),
                        r.text[:120] if r.status_code != 200 else ""))
    hit_first = len(upstream_calls(first))
    print("retry-after 30 on one peer:", results, "first peer asked", hit_first, "times")
    assert hit_first >= 1, "the 429 peer was asked at least once (round robin)"
    assert [s for s, *_ in results] == [200] * 4, results
    assert max(t for _, t, *_ in results) < 1.0, results
    assert len(upstream_calls(second)) == 4


# ---------------------------------------------------------------------------------------------
# Item 11: the keep-alive connection after a stream that ended with an error event
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, path", [("gpt-4o-mini", "/chat/completions"), ("gemini-2.0-flash", "streamGenerateContent")])
def test_the_connection_after_a_broken_stream_is_answered_or_closed_with_notice(mock, gw, model, path):
    mock.faults({"action": "break_stream", "path_contains": path})
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "break me"}]})
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    connection = (resp.getheader("connection") or "").lower()
    try:
        data = resp.read()
        clean = True
    except http.client.IncompleteRead as e:
        data, clean = e.partial, False
    events = [l[6:] for l in data.decode(errors="replace").splitlines() if l.startswith("data: ")]
    assert events and "error" in events[-1] and "[DONE]" not in events, events
    sock = conn.sock
    try:
        conn.request("GET", "/health", headers={"x-request-id": "after-broken-stream"})
        second = conn.getresponse()
        answered = second.status == 200 and json.loads(second.read())["status"] == "ok"
        reused = sock is not None and conn.sock is sock
    except (http.client.RemoteDisconnected, ConnectionError) as e:
        answered, reused = False, f"{type(e).__name__}"
    finally:
        conn.close()
    print(f"{model}: Connection={connection!r} clean chunked end={clean} next request answered={answered} reused={reused}")
    assert "close" in connection or (answered and reused), \
        f"the next request on the keep-alive connection got {reused!r} and the stream said Connection: {connection!r}"
    assert answered
