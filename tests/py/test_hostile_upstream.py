"""Adversarial suite, upstream side (issue 18): the real gateway in front of the mock provider's
hostile mode (`mock/src/control.rs`, `action`: size, endless, trickle, garbage,
json_for_sse, no_done, echo_key, huge_header).

Each test asserts the behaviour the issue asks for and names the item it covers. After every
hostile exchange the gateway must still serve a normal request and its open file descriptors
must come back to their baseline. Every client call has a timeout; everything is on 127.0.0.1.
"""

import json
import math
import signal
import socket
import time

import openai
import pytest
import requests

from conftest import Gateway, Mock, provider_config
from hostile import (
    RawResponse,
    RssWatch,
    build_request,
    fd_count,
    inflight,
    is_error_event,
    openai_stream_text,
    raw_exchange,
    sse_data,
    wait_until,
)

KiB = 1024
MiB = 1024 * 1024

# Distinctive secrets, so a leak is found by a plain substring search.
OPENAI_KEY = "sk-gw-openai-SECRET-7f3a9c51"
GEMINI_KEY = "AIzaGwGeminiSECRET-4b8d21e0"
CLIENT_KEY = "sk-client-SECRET-e5c7d9a2"
CLIENT_GKEY = "AIzaClientSECRET-93ab10f4"

# Open descriptors a gateway may hold above its baseline (pooled upstream connections, a
# health check in progress).
FD_SLACK = 4

NO_GZIP = {"Accept-Encoding": "identity"}


def hostile_config(mock, **extra):
    """The usual test config with distinctive provider keys and a 1 s drain grace."""
    cfg = provider_config(mock.url, openai_key=OPENAI_KEY, gemini_key=GEMINI_KEY)
    cfg["server"] = {"grace_period_seconds": 1}
    for section, values in extra.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def chat_body(model, content="hello hostile upstream", stream=False, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    if stream:
        body["stream"] = True
    return body


def gemini_body(text="hello hostile upstream"):
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


class Baseline:
    """A warmed-up gateway's descriptor count, and the check that it recovered."""

    def __init__(self, g):
        self.g = g
        self.pid = g.proc.pid
        r = g.chat(content="warm up")
        assert r.status_code == 200, r.text
        time.sleep(0.3)
        self.fds = fd_count(self.pid)

    def check_recovered(self, mock):
        """The next normal request is served 200 and the fds come back to the baseline."""
        mock.reset()
        assert self.g.proc.poll() is None, "the gateway died:\n" + self.g.logs()[-3000:]
        r = requests.post(self.g.url + "/v1/chat/completions", json=chat_body("gpt-4o-mini", "after the storm"), timeout=10)
        assert r.status_code == 200, f"the next normal request after a hostile one: {r.status_code} {r.text[:300]}"
        assert r.json()["choices"][0]["message"]["content"] == "Mock reply to: after the storm"
        settled = wait_until(lambda: fd_count(self.pid) <= self.fds + FD_SLACK, 5)
        assert settled, f"open fds did not come back: {fd_count(self.pid)} now, {self.fds} at the start"


@pytest.fixture
def hg(mock, start_gateway):
    """A gateway with distinctive keys in front of `mock`, and its baseline."""
    g = start_gateway(hostile_config(mock))
    return g, Baseline(g)


def stream_text_of_mock(sent, gemini):
    """The content a streamed mock answer carried (from `/_mock/last_body`)."""
    datas = sse_data(sent)
    if not gemini:
        return openai_stream_text(datas)
    text = []
    for d in datas:
        for c in json.loads(d).get("candidates") or []:
            text.extend(p.get("text", "") for p in c["content"]["parts"])
    return "".join(text)


def last_body(mock):
    r = requests.get(mock.url + "/_mock/last_body", timeout=30)
    assert r.status_code == 200, "the mock sent no hostile answer"
    return r.content


# ---------------------------------------------------------------------------------------------
# The mock's hostile mode itself (so a failure below is the gateway's, not the mock's)
# ---------------------------------------------------------------------------------------------


def test_the_mock_hostile_mode_does_what_it_says(mock):
    port = mock.port
    chat = chat_body("gpt-4o-mini", "hi")

    def ask(fault, path="/v1/chat/completions", body=chat, headers=None, **kw):
        mock.faults(fault)
        raw, how = raw_exchange(port, build_request("POST", path, body, headers), **kw)
        return RawResponse(raw), how

    for size in (1000, 65_537, MiB):
        for extra in ({}, {"chunked": True, "chunk_bytes": 999}):
            for path, body in (("/v1/chat/completions", chat),
                               ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]}),
                               ("/v1beta/models/gemini-2.0-flash:generateContent", gemini_body()),
                               ("/v1beta/models/text-embedding-004:embedContent", {"content": {"parts": [{"text": "x"}]}})):
                resp, _ = ask({"action": "size", "size_bytes": size, **extra}, path, body)
                assert resp.status == 200 and resp.complete and len(resp.body) == size, (path, size, extra)
                assert resp.chunked == bool(extra)
                resp.json()
                assert resp.body == last_body(mock)
    resp, _ = ask({"action": "size", "size_bytes": 5000, "events": 50}, body=chat_body("gpt-4o-mini", stream=True))
    datas = sse_data(resp.body)
    assert len(datas) == 53 and datas[-1] == "[DONE]" and len(openai_stream_text(datas)) == 5000
    for framing in ("close", "chunked"):
        resp, how = ask({"action": "no_done", "framing": framing}, body=chat_body("gpt-4o-mini", stream=True))
        assert resp.chunked == (framing == "chunked") and how in ("complete", "closed")
        datas = sse_data(resp.body)
        assert "[DONE]" not in datas and json.loads(datas[-1])["choices"][0]["finish_reason"] == "stop"
    resp, _ = ask({"action": "no_done"}, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", gemini_body())
    assert resp.complete and "finishReason" not in resp.body.decode() and sse_data(resp.body)
    resp, _ = ask({"action": "json_for_sse"}, body=chat_body("gpt-4o-mini", stream=True))
    assert resp.header("content-type") == "application/json" and resp.json()["object"] == "chat.completion"
    resp, _ = ask({"action": "echo_key"}, headers={"Authorization": "Bearer sk-echo-me"})
    assert resp.status == 401 and b"sk-echo-me" in resp.body and "sk-echo-me" in resp.header("www-authenticate")
    resp, _ = ask({"action": "echo_key", "status": 500}, "/v1beta/models/gemini-2.0-flash:generateContent?key=k-q",
                  gemini_body())
    assert resp.status == 500 and b"k-q" in resp.body and resp.header("www-authenticate") is None
    resp, _ = ask({"action": "garbage", "body": "<html>x</html>"})
    assert (resp.status, resp.header("content-type"), resp.body) == (200, "text/html", b"<html>x</html>")
    resp, _ = ask({"action": "huge_header", "header_bytes": 100_000})
    assert len(resp.header("x-mock-huge")) == 100_000 and resp.json()["object"] == "chat.completion"
    start = time.monotonic()
    resp, _ = ask({"action": "trickle", "trickle_bytes": 100, "delay_ms": 20})
    assert resp.json()["object"] == "chat.completion" and time.monotonic() - start >= 0.02 * (len(resp.body) // 100)
    mock.faults({"action": "endless"})
    raw, how = raw_exchange(port, build_request("POST", "/v1/chat/completions", chat), timeout=10, max_bytes=4 * MiB)
    assert how == "limit" and raw.count(b"a") > 3 * MiB and b"\n" not in raw[raw.find(b"\r\n\r\n") + 4:].replace(b"\r\n", b"")
    assert wait_until(lambda: mock.stats()["endless_active"] == 0, 5), "the mock stops when the peer closes"
    assert mock.stats()["endless_bytes"] >= 3 * MiB


# ---------------------------------------------------------------------------------------------
# Item 1: answers of every size, every framing, every route
# ---------------------------------------------------------------------------------------------

SIZES = [
    1 * KiB, 16 * KiB, 63 * KiB, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 65 * KiB, 70_000, 128 * KiB,
    182_000, 512 * KiB, MiB - 1, MiB, MiB + 1, 4 * MiB, 16 * MiB,
]

# name: (client path, client body, mock path filter, how to compare)
SWEEP_ROUTES = {
    "openai-embeddings": ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "size me"},
                          "/v1/embeddings", "bytes"),
    "openai-chat": ("/v1/chat/completions", chat_body("gpt-4o-mini", "size me"), "/v1/chat/completions", "bytes"),
    "gemini-embeddings": ("/v1/embeddings", {"model": "text-embedding-004", "input": "size me"},
                          "text-embedding-004:", "embeddings"),
    "gemini-chat": ("/v1/chat/completions", chat_body("gemini-2.0-flash", "size me"),
                    "gemini-2.0-flash:generateContent", "content"),
    "gemini-native": ("/v1beta/models/gemini-2.0-flash:generateContent", gemini_body("size me"),
                      "gemini-2.0-flash:generateContent", "bytes"),
}


def size_id(n):
    for unit, name in ((MiB, "MiB"), (KiB, "KiB")):
        q, r = divmod(n, unit)
        if q and r == 0:
            return f"{q}{name}"
        if q and r == 1:
            return f"{q}{name}+1"
        if r == unit - 1:
            return f"{q + 1}{name}-1"
    return str(n)


def split_bytes(size):
    """Write size for the split framings: many small writes (16 to ~1000 of them)."""
    return max(512, min(16 * KiB, size // 16))


@pytest.fixture(scope="module")
def sweep():
    """One mock and one gateway for the whole sweep."""
    m = Mock()
    cfg = hostile_config(m)
    for provider in cfg["providers"].values():
        # One attempt (a retry would hide a failed read behind a normal answer), and time for
        # the debug-built mock to build a 16 MiB answer.
        provider.update({"retry_count": 0, "timeout": 30_000})
    g = Gateway(cfg)
    try:
        yield m, g
    finally:
        g.stop()
        m.stop()


def floats_equal(a, b):
    if a == b:
        return True
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(a, b))


@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("framing", ["length", "length-split", "chunked-split"])
@pytest.mark.parametrize("route", list(SWEEP_ROUTES))
def test_item1_size_sweep(sweep, route, framing, size):
    """Item 1: a 200 of any size arrives 200 and whole (70 KB-1 MiB answers were 502)."""
    mock, g = sweep
    path, body, needle, compare = SWEEP_ROUTES[route]
    mock.reset()
    fault = {"action": "size", "size_bytes": size, "path_contains": needle}
    if framing != "length":
        fault["chunk_bytes"] = split_bytes(size)
    if framing == "chunked-split":
        fault["chunked"] = True
    mock.faults(fault)
    r = requests.post(g.url + path, json=body, headers=NO_GZIP, timeout=120)
    sent = last_body(mock)
    assert len(sent) == size, f"the mock's answer is {len(sent)} bytes, not {size}"
    assert r.status_code == 200, f"{route} {framing} {size} B: {r.status_code} {r.text[:300]}"
    if compare == "bytes":
        same = r.content == sent
        assert same, f"the client got {len(r.content)} bytes, the mock sent {len(sent)} (different bytes)"
        return
    got, want = r.json(), json.loads(sent)
    if compare == "content":
        text = want["candidates"][0]["content"]["parts"][0]["text"]
        same = got["choices"][0]["message"]["content"] == text
        assert same, f"translated content differs ({len(got['choices'][0]['message']['content'])} vs {len(text)} chars)"
    else:
        vectors = [e["values"] for e in want["embeddings"]] if "embeddings" in want else [want["embedding"]["values"]]
        assert [d["index"] for d in got["data"]] == list(range(len(vectors)))
        same = all(floats_equal(d["embedding"], v) for d, v in zip(got["data"], vectors))
        assert same, "translated embedding values differ"


# name: (content characters, content events, write size)
STREAM_SHAPES = {
    "one-1MiB-event": (MiB, 1, None),
    "one-1MiB-event-in-1000-byte-writes": (MiB, 1, 1000),
    "4000-small-events": (200_000, 4000, None),
    "4000-small-events-in-7-byte-writes": (20_000, 400, 7),
}


@pytest.mark.parametrize("shape", list(STREAM_SHAPES))
@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-2.0-flash"])
def test_item1_streamed_sizes(sweep, model, shape):
    """Item 1, streams: one huge SSE event, or thousands of small ones, split across writes."""
    mock, g = sweep
    chars, events, write = STREAM_SHAPES[shape]
    gemini = model.startswith("gemini")
    mock.reset()
    fault = {"action": "size", "size_bytes": chars, "events": events,
             "path_contains": "streamGenerateContent" if gemini else "/v1/chat/completions"}
    if write:
        fault["chunk_bytes"] = write
    mock.faults(fault)
    with requests.post(g.url + "/v1/chat/completions", json=chat_body(model, "stream sizes", stream=True),
                       headers=NO_GZIP, stream=True, timeout=60) as r:
        assert r.status_code == 200, r.text[:300]
        body = b"".join(r.iter_content(64 * KiB))
    want = stream_text_of_mock(last_body(mock), gemini)
    assert len(want) == chars
    datas = sse_data(body)
    assert datas and datas[-1] == "[DONE]", f"the stream did not end with [DONE]: {datas[-1][:300] if datas else body[:300]!r}"
    assert not any(is_error_event(d) for d in datas), [d for d in datas if is_error_event(d)][:1]
    got = openai_stream_text(datas)
    same = got == want
    assert same, f"assembled content differs: {len(got)} chars received, {len(want)} sent"


# ---------------------------------------------------------------------------------------------
# Item 2: an endless body keeps the gateway's memory bounded and ends in an error
# ---------------------------------------------------------------------------------------------

# name: (client path, body, mock path filter, streamed?)
ENDLESS_CASES = {
    "openai-stream": ("/v1/chat/completions", chat_body("gpt-4o-mini", stream=True), "/v1/chat/completions", True),
    "gemini-stream": ("/v1/chat/completions", chat_body("gemini-2.0-flash", stream=True), ":streamGenerateContent", True),
    "native-gemini-stream": ("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", gemini_body(),
                             ":streamGenerateContent", True),
    "openai": ("/v1/chat/completions", chat_body("gpt-4o-mini"), "/v1/chat/completions", False),
    "gemini": ("/v1/chat/completions", chat_body("gemini-2.0-flash"), ":generateContent", False),
    "native-gemini": ("/v1beta/models/gemini-2.0-flash:generateContent", gemini_body(), ":generateContent", False),
}

# RSS growth allowed while an endless body is read: a stream holds at most one SSE event
# (8 MiB); a whole answer is read up to 64 MiB before the gateway gives up.
STREAM_RSS_BOUND_MB = 100
WHOLE_RSS_BOUND_MB = 200


@pytest.mark.parametrize("case", list(ENDLESS_CASES))
def test_item2_endless_body_is_bounded_and_ends_in_an_error(mock, hg, case):
    """Item 2: an endless non-SSE body (12 MB -> 1.7 GB in 2 s before the fix)."""
    g, base = hg
    path, body, needle, streamed = ENDLESS_CASES[case]
    mock.faults({"action": "endless", "path_contains": needle, "count": -1})
    with RssWatch(g.proc.pid) as watch:
        raw, how = raw_exchange(g.port, build_request("POST", path, body), timeout=20, max_bytes=96 * MiB)
        closed = wait_until(lambda: mock.stats()["endless_active"] == 0, 5)
        settled = time.monotonic()
        time.sleep(1.0)
    bound = STREAM_RSS_BOUND_MB if streamed else WHOLE_RSS_BOUND_MB
    assert not watch.killed, watch.describe()
    assert watch.growth_mb < bound, watch.describe()
    assert how != "limit", f"the gateway relayed {len(raw) // MiB} MiB of an endless body to the client without ending it"
    assert how in ("complete", "closed", "reset"), f"the client got no end within 20 s ({len(raw)} bytes, {how}): it hangs"
    assert closed, "the gateway still reads the endless upstream after answering"
    assert watch.growth_since(settled) < 10, "RSS keeps growing after the answer ended: " + watch.describe()
    assert raw, "the connection closed without any answer"
    resp = RawResponse(raw)
    if resp.status != 200:
        assert resp.status in (502, 504), resp.status_line
        assert "error" in resp.json(), resp.body[:300]
    elif streamed:
        datas = sse_data(resp.body)
        glued = b'data: {"error"' in resp.body[-4096:] and not (datas and is_error_event(datas[-1]))
        assert not glued, ("the error event was appended to the unterminated upstream line, so no SSE parser "
                           f"sees it as an event: ...{resp.body[-200:]!r}")
        assert datas and is_error_event(datas[-1]), f"a 200 stream without an error event: {resp.body[-300:]!r}"
        assert "[DONE]" not in datas
        assert resp.complete, "the stream did not end cleanly after its error event"
    else:
        # A 200 whose head was already sent can only end by being cut.
        assert not resp.complete, f"a complete 200 for an endless upstream body ({len(resp.body)} bytes)"
    base.check_recovered(mock)


def test_item2_a_responses_stream_too_long_to_hold_ends_failed_and_bounded(mock, start_gateway):
    """Every event well-formed, but 32 MiB of text: the Responses stream keeps the answer for
    its final `response` object, so past what a stream may hold (16 MiB) it ends with
    `response.failed` instead of holding more (96 MiB grew RSS by 265 MB before). The mock
    writes that body up front, hence the long upstream timeout."""
    cfg = hostile_config(mock)
    cfg["providers"]["gemini"]["timeout"] = 90_000
    g = start_gateway(cfg)
    base = Baseline(g)
    mock.faults({"action": "size", "size_bytes": 32 * MiB, "events": 512, "path_contains": "streamGenerateContent"})
    body = {"model": "gemini-2.0-flash", "input": "a very long answer", "stream": True}
    with RssWatch(g.proc.pid) as watch:
        with requests.post(g.url + "/v1/responses", json=body, headers=NO_GZIP, stream=True, timeout=120) as r:
            assert r.status_code == 200, r.text[:300]
            raw = b"".join(r.iter_content(MiB))
    assert not watch.killed, watch.describe()
    assert watch.growth_mb < STREAM_RSS_BOUND_MB, watch.describe()
    events = [json.loads(d) for d in sse_data(raw)]
    kinds = [e.get("type") for e in events]
    assert kinds[-1] == "response.failed", kinds[-3:]
    assert "response.completed" not in kinds
    assert "larger than" in json.dumps(events[-1]["response"]["error"]), events[-1]["response"]["error"]
    seq = [e["sequence_number"] for e in events]
    assert seq == list(range(len(seq)))
    relayed = sum(len(e.get("delta", "")) for e in events if e.get("type") == "response.output_text.delta")
    assert 15 * MiB < relayed < 17 * MiB, relayed
    base.check_recovered(mock)


@pytest.mark.parametrize("case", ["openai-stream", "gemini-stream", "native-gemini-stream", "openai", "gemini"])
def test_item2_client_hang_up_stops_the_endless_upstream_read(mock, hg, case):
    """Item 2: after the client hangs up, the upstream connection is closed and RSS stops."""
    g, base = hg
    path, body, needle, streamed = ENDLESS_CASES[case]
    mock.faults({"action": "endless", "path_contains": needle, "count": -1})
    with RssWatch(g.proc.pid) as watch:
        s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        s.sendall(build_request("POST", path, body))
        started = wait_until(lambda: mock.stats()["endless_bytes"] > 0, 5)
        time.sleep(0.3)
        s.close()
        stopped = wait_until(lambda: mock.stats()["endless_active"] == 0, 3)
        time.sleep(0.3)
        settled = time.monotonic()
        time.sleep(1.0)
    assert started, "the upstream never started its endless body"
    assert not watch.killed, watch.describe()
    assert stopped, f"the upstream is still being read 3 s after the client hung up ({watch.describe()})"
    assert watch.growth_since(settled) < 10, "RSS keeps growing after the hang-up: " + watch.describe()
    assert watch.growth_mb < (STREAM_RSS_BOUND_MB if streamed else WHOLE_RSS_BOUND_MB), watch.describe()
    base.check_recovered(mock)


# ---------------------------------------------------------------------------------------------
# Item 3: a stream answered with JSON, streams that end without their end marker
# ---------------------------------------------------------------------------------------------

STREAM_MODELS = {"openai": ("gpt-4o-mini", "/v1/chat/completions"),
                 "gemini": ("gemini-2.0-flash", ":streamGenerateContent")}


@pytest.mark.parametrize("provider", list(STREAM_MODELS))
def test_item3_json_where_sse_was_asked_is_replayed_or_an_error(mock, hg, provider):
    """Item 3: `200 application/json` to a stream request was a 200 with an empty body.
    Acceptable: the answer replayed as SSE ending with [DONE], or an error (event or 5xx)."""
    g, base = hg
    model, needle = STREAM_MODELS[provider]
    mock.faults({"action": "json_for_sse", "path_contains": needle})
    raw, how = raw_exchange(g.port, build_request("POST", "/v1/chat/completions",
                                                  chat_body(model, "json instead of sse", stream=True)), timeout=15)
    assert how in ("complete", "closed", "reset"), how
    resp = RawResponse(raw)
    if resp.status != 200:
        assert resp.status >= 500 and "error" in resp.json(), resp.raw[:500]
    else:
        datas = sse_data(resp.body)
        assert datas, f"200 with an empty body (content-type {resp.header('content-type')})"
        assert resp.header("content-type", "").startswith("text/event-stream")
        assert resp.complete, "the stream did not end cleanly"
        if not is_error_event(datas[-1]):
            assert datas[-1] == "[DONE]", datas[-1][:300]
            assert openai_stream_text(datas) == "Mock reply to: json instead of sse"
    base.check_recovered(mock)


@pytest.mark.parametrize("framing", ["close", "chunked"])
@pytest.mark.parametrize("provider", list(STREAM_MODELS))
def test_item3_stream_without_its_end_ends_with_an_error_event(mock, hg, provider, framing):
    """Item 3: a stream that ends cleanly without [DONE] (OpenAI) or before a finishReason
    (Gemini) was relayed as if complete; the client must see an error event and no [DONE]."""
    g, base = hg
    model, needle = STREAM_MODELS[provider]
    mock.faults({"action": "no_done", "framing": framing, "path_contains": needle})
    raw, how = raw_exchange(g.port, build_request("POST", "/v1/chat/completions",
                                                  chat_body(model, "a stream cut short", stream=True)), timeout=15)
    resp = RawResponse(raw)
    assert resp.status == 200, resp.raw[:500]
    datas = sse_data(resp.body)
    assert "[DONE]" not in datas, "a fake [DONE] for a stream that never finished"
    assert datas and is_error_event(datas[-1]), f"no error event at the end: {datas[-2:]}"
    assert resp.complete, "the stream did not end cleanly after its error event"
    base.check_recovered(mock)


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_item3_openai_sdk_raises_on_a_stream_without_done(mock, hg, framing):
    """Item 3: the official SDK raises on the gateway's error event (`data: {"error": ...}`)
    instead of ending a truncated stream silently."""
    g, base = hg
    mock.faults({"action": "no_done", "framing": framing, "path_contains": "/v1/chat/completions"})
    client = openai.OpenAI(base_url=g.url + "/v1", api_key="unused", max_retries=0, timeout=15)
    with pytest.raises(openai.APIError):
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "sdk on a cut stream"}]))
        pytest.fail(f"the SDK ended the stream silently after {len(chunks)} chunks")
    base.check_recovered(mock)


# ---------------------------------------------------------------------------------------------
# Item 4: SIGTERM during a stream longer than the drain grace
# ---------------------------------------------------------------------------------------------


def read_until(sock, predicate, timeout):
    """Reads from `sock` until `predicate(data)` or EOF or `timeout`; returns (data, eof)."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate(bytes(data)):
        sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
        try:
            piece = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return bytes(data), True
        if not piece:
            return bytes(data), True
        data += piece
    return bytes(data), False


@pytest.mark.parametrize("upstream", ["flowing", "held"])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-2.0-flash"])
def test_item4_sigterm_ends_a_long_stream_with_an_error_event_and_a_clean_end(mock, start_gateway, model, upstream):
    """Item 4: streams longer than the grace were cut mid chunked body with no error event."""
    g = start_gateway(hostile_config(mock))
    needle = ":streamGenerateContent" if model.startswith("gemini") else "/v1/chat/completions"
    if upstream == "flowing":
        mock.configure(chunk_delay_ms=200, chunks=100)  # ~80 events, 16 s: far past the 1 s grace
    else:
        mock.faults({"action": "hold", "path_contains": needle})
    s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    try:
        s.sendall(build_request("POST", "/v1/chat/completions",
                                chat_body(model, "a very long stream that outlives the drain grace period", stream=True)))
        head, eof = read_until(s, lambda d: b"data: " in d, 10)
        assert b"data: " in head and not eof, f"the stream did not start: {head[:300]!r}"
        g.proc.send_signal(signal.SIGTERM)
        rest, eof = read_until(s, lambda d: False, 15)
    finally:
        s.close()
        mock.release()
    assert eof, "the gateway kept the connection open 15 s after SIGTERM with a 1 s grace"
    resp = RawResponse(head + rest)
    assert resp.status == 200 and resp.chunked, resp.status_line
    assert resp.complete, f"the chunked body was cut without its 0-chunk terminator: ...{(head + rest)[-200:]!r}"
    datas = sse_data(resp.body)
    assert "[DONE]" not in datas
    assert is_error_event(datas[-1]), f"no error event before the cut: {datas[-1][:300]}"
    assert g.proc.wait(15) is not None


# ---------------------------------------------------------------------------------------------
# Item 7: keys echoed by an upstream reach no client, header or log line
# ---------------------------------------------------------------------------------------------

# name: (client path, body, client headers, mock path filter, the key the upstream sees)
KEY_CASES = {
    "openai-client-key": ("/v1/chat/completions", chat_body("gpt-4o-mini"), {"Authorization": f"Bearer {CLIENT_KEY}"},
                          "/v1/chat/completions", CLIENT_KEY),
    "openai-client-key-stream": ("/v1/chat/completions", chat_body("gpt-4o-mini", stream=True),
                                 {"Authorization": f"Bearer {CLIENT_KEY}"}, "/v1/chat/completions", CLIENT_KEY),
    "openai-gateway-key": ("/v1/chat/completions", chat_body("gpt-4o-mini"), {}, "/v1/chat/completions", OPENAI_KEY),
    "openai-embeddings-gateway-key": ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "k"}, {},
                                      "/v1/embeddings", OPENAI_KEY),
    "gemini-client-key": ("/v1/chat/completions", chat_body("gemini-2.0-flash"), {"x-goog-api-key": CLIENT_GKEY},
                          ":generateContent", CLIENT_GKEY),
    "gemini-gateway-key": ("/v1/chat/completions", chat_body("gemini-2.0-flash"), {}, ":generateContent", GEMINI_KEY),
    "native-gemini-gateway-key": ("/v1beta/models/gemini-2.0-flash:generateContent", gemini_body(), {},
                                  ":generateContent", GEMINI_KEY),
    "native-gemini-query-key": (f"/v1beta/models/gemini-2.0-flash:generateContent?key={CLIENT_GKEY}", gemini_body(),
                                {}, ":generateContent", CLIENT_GKEY),
}

ALL_KEYS = (OPENAI_KEY, GEMINI_KEY, CLIENT_KEY, CLIENT_GKEY)


def assert_no_key_anywhere(g, mock, key, raw, needle):
    """The key was really sent upstream, and is in no byte of the answer, log or metrics."""
    seen = [r for r in mock.requests() if needle in r["path"]]
    assert key in json.dumps(seen), "the test is void: the upstream never saw this key"
    for k in ALL_KEYS:
        assert k.encode() not in raw, f"a provider key reached the client: ...{raw[max(0, raw.find(k.encode()) - 120):][:240]!r}"
    logs = g.logs()
    for k in ALL_KEYS:
        assert k not in logs, f"a provider key is in the log: {[l for l in logs.splitlines() if k in l][:2]}"
    metrics = requests.get(g.url + "/metrics", timeout=5).text
    assert not any(k in metrics for k in ALL_KEYS), "a provider key is in /metrics"


@pytest.mark.parametrize("case", list(KEY_CASES))
def test_item7_upstream_401_echoing_the_key(mock, hg, case):
    """Item 7: an upstream 401 quoting the key (body and `WWW-Authenticate`) was passed on."""
    g, base = hg
    path, body, headers, needle, key = KEY_CASES[case]
    mock.faults({"action": "echo_key", "path_contains": needle})
    raw, how = raw_exchange(g.port, build_request("POST", path, body, headers), timeout=15)
    resp = RawResponse(raw)
    assert resp.status >= 400, resp.status_line
    challenges = [v for n, v in resp.headers if n == "www-authenticate"]
    assert not any('realm="x"' in v or "invalid_token" in v for v in challenges), \
        f"the upstream's auth challenge was forwarded: {challenges}"
    assert_no_key_anywhere(g, mock, key, raw, needle)
    base.check_recovered(mock)


@pytest.mark.parametrize("status", [500, 429])
@pytest.mark.parametrize("case", ["openai-client-key", "openai-gateway-key", "gemini-client-key", "gemini-gateway-key"])
def test_item7_retried_errors_echoing_the_key_leave_it_out_of_the_502(mock, hg, case, status):
    """Item 7: an echoed key in a 500/429 body ended up in the 502 ("last error: ... Bearer sk-")
    and in the warn line of each attempt."""
    g, base = hg
    path, body, headers, needle, key = KEY_CASES[case]
    mock.faults({"action": "echo_key", "status": status, "count": -1, "path_contains": needle})
    raw, how = raw_exchange(g.port, build_request("POST", path, body, headers), timeout=30)
    resp = RawResponse(raw)
    assert resp.status in (502, 504), resp.raw[:500]
    assert len([r for r in mock.requests() if needle in r["path"]]) >= 2, "the error was retried"
    assert_no_key_anywhere(g, mock, key, raw, needle)
    base.check_recovered(mock)


# ---------------------------------------------------------------------------------------------
# Item 12: a client hang-up frees the concurrency slot even while the upstream trickles
# ---------------------------------------------------------------------------------------------

TRICKLE_CASES = {
    "gemini": ("/v1/chat/completions", chat_body("gemini-2.0-flash"), ":generateContent"),
    "openai": ("/v1/chat/completions", chat_body("gpt-4o-mini"), "/v1/chat/completions"),
    "gemini-stream": ("/v1/chat/completions", chat_body("gemini-2.0-flash", stream=True), ":streamGenerateContent"),
    "openai-stream": ("/v1/chat/completions", chat_body("gpt-4o-mini", stream=True), "/v1/chat/completions"),
    "gemini-embeddings": ("/v1/embeddings", {"model": "text-embedding-004", "input": "trickle"}, "text-embedding-004:"),
}


@pytest.mark.parametrize("case", list(TRICKLE_CASES))
def test_item12_hang_up_on_a_trickled_answer_frees_the_slot(mock, hg, case):
    """Item 12: `gateway_inflight_requests` stayed at 1 for 12 s or more after the hang-up
    (non-streamed Gemini); it must be back to 0 within 2 s, and the upstream call cancelled."""
    g, base = hg
    path, body, needle = TRICKLE_CASES[case]
    # One byte every 200 ms: a ~300-byte answer takes a minute, with no 5 s silence.
    mock.faults({"action": "trickle", "trickle_bytes": 1, "delay_ms": 200, "path_contains": needle})
    s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    try:
        s.sendall(build_request("POST", path, body))
        assert wait_until(lambda: mock.stats()["trickle_active"] == 1, 5), "the upstream did not start trickling"
        assert wait_until(lambda: inflight(g) == 1, 3), "the request is not counted in flight"
        time.sleep(0.5)
    finally:
        s.close()
    hung_up = time.monotonic()
    freed = wait_until(lambda: inflight(g) == 0, 2.0)
    took = time.monotonic() - hung_up
    assert freed, f"gateway_inflight_requests still {inflight(g)} {took:.1f} s after the client hung up"
    assert wait_until(lambda: mock.stats()["trickle_active"] == 0, 2.0), "the upstream call was not cancelled"
    base.check_recovered(mock)


# ---------------------------------------------------------------------------------------------
# Item 16: non-JSON 200s are not cached; huge upstream headers
# ---------------------------------------------------------------------------------------------

GARBAGE = {
    "html": {"body": "<html><head><title>502</title></head><body>upstream proxy error</body></html>",
             "content_type": "text/html; charset=utf-8"},
    "bytes-labelled-json": {"size_bytes": 2048, "content_type": "application/json"},
    "truncated-json": {"body": '{"id":"chatcmpl-x","object":"chat.completion","choices":[{"index":0,"message":',
                       "content_type": "application/json"},
}
CACHE_ROUTES = {
    "chat": ("/v1/chat/completions", chat_body("gpt-4o-mini", "cache the garbage?"), "/v1/chat/completions"),
    "embeddings": ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "cache the garbage?"},
                   "/v1/embeddings"),
    "gemini-chat": ("/v1/chat/completions", chat_body("gemini-2.0-flash", "cache the garbage?"), ":generateContent"),
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
@pytest.mark.parametrize("route", list(CACHE_ROUTES))
def test_item16_a_non_json_200_is_not_served_again_from_the_cache(mock, start_gateway, route, garbage):
    """Item 16: a 200 that is not the route's JSON was stored and served again as a HIT."""
    g = start_gateway(hostile_config(mock, cache={"enabled": True, "ttl": 60, "max_size": 100}))
    base = Baseline(g)
    path, body, needle = CACHE_ROUTES[route]
    mock.faults({"action": "garbage", "path_contains": needle, **GARBAGE[garbage]})
    first = requests.post(g.url + path, json=body, timeout=15)
    calls = len([r for r in mock.requests() if needle in r["path"]])
    second = requests.post(g.url + path, json=body, timeout=15)

    def valid(r):
        try:
            return r.status_code == 200 and r.json()["object"] in ("chat.completion", "list")
        except ValueError:
            return False

    assert valid(second), (f"the garbage was served again ({second.headers.get('x-gateway-cache')}): "
                           f"{second.status_code} {second.content[:200]!r}")
    if not valid(first):
        # The garbage reached the client once: the same request must go upstream again.
        assert len([r for r in mock.requests() if needle in r["path"]]) == calls + 1, \
            "the second request never reached the upstream"
        assert second.headers.get("x-gateway-cache") != "HIT"
    # (A valid first answer means the gateway refused the garbage and retried: a HIT of that
    # answer is right.)
    third = requests.post(g.url + path, json=body, timeout=15)
    assert third.headers.get("x-gateway-cache") == "HIT", "the good answer is cached (the cache works here)"
    assert third.content == second.content
    base.check_recovered(mock)


HEADER_CASES = {
    "openai": ("/v1/chat/completions", chat_body("gpt-4o-mini", "huge header"), "/v1/chat/completions", "json"),
    "openai-stream": ("/v1/chat/completions", chat_body("gpt-4o-mini", "huge header", stream=True),
                      "/v1/chat/completions", "sse"),
    "gemini": ("/v1/chat/completions", chat_body("gemini-2.0-flash", "huge header"), ":generateContent", "json"),
    "native-gemini": ("/v1beta/models/gemini-2.0-flash:generateContent", gemini_body("huge header"),
                      ":generateContent", "gemini"),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_item16_a_200_kib_upstream_header_is_not_passed_on(mock, hg, case):
    """Item 16: a 200 KiB upstream response header was passed to clients, which then fail.
    Acceptable: a clean 502, or the answer without that header."""
    g, base = hg
    path, body, needle, kind = HEADER_CASES[case]
    mock.faults({"action": "huge_header", "header_bytes": 200 * KiB, "path_contains": needle})
    raw, how = raw_exchange(g.port, build_request("POST", path, body), timeout=15)
    assert how in ("complete", "closed", "reset"), how
    resp = RawResponse(raw)
    head_len = raw.find(b"\r\n\r\n")
    assert head_len < 64 * KiB, f"a {head_len}-byte response head reached the client"
    assert resp.header("x-mock-huge") is None
    if resp.status != 200:
        assert resp.status == 502 and "error" in resp.json(), resp.raw[:300]
    elif kind == "sse":
        assert sse_data(resp.body)[-1] == "[DONE]"
    elif kind == "gemini":
        assert resp.json()["candidates"][0]["content"]["parts"][0]["text"] == "Mock reply to: huge header"
    else:
        assert resp.json()["choices"][0]["message"]["content"] == "Mock reply to: huge header"
    # A client library must be able to read whatever it got.
    mock.faults({"action": "huge_header", "header_bytes": 200 * KiB, "path_contains": needle})
    r = requests.post(g.url + path, json=body, timeout=15)
    assert r.status_code in (200, 502)
    base.check_recovered(mock)
