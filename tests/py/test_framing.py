"""Raw-socket framing cases against the real gateway (issue 18, items 5 and 13).

Every exchange is bounded: reads have deadlines, dribbles have a fixed number of steps.
Item 5: a framing error (bad chunk, smuggling shapes) answers 400 with `Connection: close` and
closes; bytes after it are never answered as a request; pipelining works or is refused cleanly.
Item 13: header blocks are bounded (`server.max_header_bytes`), header reads are bounded in time
(`server.header_timeout`), idle keep-alive connections are closed (`server.idle_timeout`).
"""

import json
import re
import socket
import threading
import time

import pytest

from conftest import provider_config

HIDDEN = b"GET /health/providers HTTP/1.1\r\nHost: gw\r\nx-request-id: hidden-request\r\n\r\n"
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "framing"}]}).encode()
HEADER_TIMEOUT_MS = 2000
IDLE_TIMEOUT_MS = 1500


class Garbled(AssertionError):
    pass


def parse_responses(data, eof=False):
    """The complete HTTP/1.1 responses at the start of `data`: [(status, headers, body)], rest.

    `headers` maps lower-case names to lists of values. A body delimited by the close is only
    complete at `eof`. Anything that is not a response raises `Garbled`.
    """
    out, pos = [], 0
    while pos < len(data):
        i = data.find(b"\r\n\r\n", pos)
        if i < 0:
            if not data[pos:pos + 5] == b"HTTP/"[:len(data) - pos]:
                raise Garbled(f"not a response: {data[pos:pos + 80]!r}")
            break
        lines = data[pos:i].decode("latin-1").split("\r\n")
        m = re.fullmatch(r"HTTP/1\.[01] (\d{3})( .*)?", lines[0])
        if not m:
            raise Garbled(f"bad status line {lines[0][:80]!r}")
        status = int(m.group(1))
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise Garbled(f"bad header line {line[:80]!r}")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        start = i + 4
        te = ",".join(headers.get("transfer-encoding", [])).lower()
        if status in (204, 304) or 100 <= status < 200:
            end, body = start, b""
        elif "chunked" in te:
            body, p = b"", start
            while True:
                j = data.find(b"\r\n", p)
                if j < 0:
                    return out, data[pos:]
                size = int(data[p:j].split(b";")[0], 16)
                if len(data) < j + 2 + size + 2:
                    return out, data[pos:]
                body += data[j + 2:j + 2 + size]
                p = j + 2 + size + 2
                if size == 0:
                    t = data.find(b"\r\n", p - 2)
                    end = p if data[p - 2:p] == b"\r\n" else t + 2
                    break
        elif "content-length" in headers:
            n = int(headers["content-length"][0])
            if len(data) < start + n:
                break
            end, body = start + n, data[start:start + n]
        elif eof:
            end, body = len(data), data[start:]
        else:
            break
        out.append((status, headers, body))
        pos = end
    return out, data[pos:]


def read(sock, seconds, stop=None):
    """Reads until EOF, a reset, `seconds` or `stop(data)`; returns (data, how it ended)."""
    data = b""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk
        if stop is not None and stop(data):
            return data, "stopped"


def exchange(port, payload, seconds=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        data, end = read(s, seconds)
    responses, rest = parse_responses(data, eof=end in ("eof", "reset"))
    return responses, rest, end, data


def header(resp, name):
    return ",".join(resp[1].get(name, [])).lower()


def assert_openai_error(resp, statuses):
    status, _, body = resp
    assert status in statuses, (status, body[:300])
    err = json.loads(body)["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    return err


@pytest.fixture
def gw_limits(mock, start_gateway):
    """A gateway with the header/idle bounds of item 13 set low enough to test."""
    cfg = provider_config(mock.url)
    cfg["server"] = {"header_timeout": HEADER_TIMEOUT_MS, "idle_timeout": IDLE_TIMEOUT_MS, "max_header_bytes": 65536}
    return start_gateway(cfg)


def chat_head(extra=b"", length=None):
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    if length is not None:
        head += b"Content-Length: %d\r\n" % length
    return head + extra


def assert_closed_after_one_error(responses, rest, end, data, statuses=(400,)):
    assert responses, f"no answer at all ({end}): {data[:300]!r}"
    assert len(responses) == 1 and not rest, f"a second answer or extra bytes after the error: {data[:600]!r}"
    assert b'"providers"' not in data and b"hidden-request" not in data, "the hidden request was answered"
    assert_openai_error(responses[0], statuses)
    assert "close" in header(responses[0], "connection"), \
        f"the error must say Connection: close, it said {header(responses[0], 'connection')!r}"
    assert end in ("eof", "reset"), f"the connection stayed open after the framing error ({end})"


# ---------------------------------------------------------------------------------------------
# Item 5: request desync
# ---------------------------------------------------------------------------------------------

BAD_CHUNKS = {
    "zz": b"zz\r\n" + CHAT + b"\r\n0\r\n\r\n",
    "-1": b"-1\r\n" + CHAT + b"\r\n0\r\n\r\n",
    "huge": b"FFFFFFFFFFFFFFFFFF\r\n" + CHAT + b"\r\n0\r\n\r\n",
    "missing CRLF after data": b"%x\r\n" % len(CHAT) + CHAT + b"0\r\n\r\n",
    "size with junk": b"%x zz\r\n" % len(CHAT) + CHAT + b"\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(BAD_CHUNKS))
def test_a_malformed_chunked_body_is_400_and_close_and_the_rest_is_never_a_request(gw, case):
    payload = chat_head(b"Transfer-Encoding: chunked\r\n") + b"\r\n" + BAD_CHUNKS[case] + HIDDEN
    assert_closed_after_one_error(*exchange(gw.port, payload))
    assert gw.chat().status_code == 200


def test_a_good_chunked_body_still_works_and_keeps_the_connection(gw):
    body = b"%x\r\n" % 10 + CHAT[:10] + b"\r\n" + b"%x\r\n" % (len(CHAT) - 10) + CHAT[10:] + b"\r\n0\r\n\r\n"
    payload = chat_head(b"Transfer-Encoding: chunked\r\n") + b"\r\n" + body
    payload += b"GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    responses, rest, end, data = exchange(gw.port, payload)
    assert [r[0] for r in responses] == [200, 200], data[:500]
    assert json.loads(responses[0][2])["choices"][0]["message"]["content"] == "Mock reply to: framing"


def smuggle_cases():
    both_body = b"0\r\n\r\n" + HIDDEN
    cut = CHAT[:20]
    return {
        # TE says the body is empty (then HIDDEN is a request), CL says HIDDEN is body.
        "CL and TE": chat_head(b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(both_body)) + b"\r\n" + both_body,
        "TE and CL": chat_head(b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(both_body)) + b"\r\n" + both_body,
        "two different CLs": chat_head(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(CHAT), len(CHAT) + len(HIDDEN)))
        + b"\r\n" + CHAT + HIDDEN,
        "TE chunked, identity": chat_head(b"Content-Length: %d\r\nTransfer-Encoding: chunked, identity\r\n" % len(both_body))
        + b"\r\n" + both_body,
        "TE identity, chunked twice": chat_head(b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(both_body))
        + b"\r\n" + both_body,
        "TE with a space before the colon": chat_head(b"Transfer-Encoding : chunked\r\nContent-Length: %d\r\n" % len(both_body))
        + b"\r\n" + both_body,
        "TE with a tab in the value": chat_head(b"Transfer-Encoding:\tchunked\x0b\r\nContent-Length: %d\r\n" % len(both_body))
        + b"\r\n" + both_body,
        "TE xchunked": chat_head(b"Transfer-Encoding: xchunked\r\nContent-Length: %d\r\n" % len(both_body)) + b"\r\n" + both_body,
        # CL covers a cut JSON; the rest of the JSON and a request follow.
        "CL shorter than the body": chat_head(length=len(cut)) + b"\r\n" + cut + CHAT[20:] + b"\r\n\r\n" + HIDDEN,
    }


@pytest.mark.parametrize("case", list(smuggle_cases()))
def test_smuggling_shapes_never_answer_the_hidden_request(gw, case):
    payload = smuggle_cases()[case]
    responses, rest, end, data = exchange(gw.port, payload)
    print(f"{case}: {[r[0] for r in responses]} connection={[header(r, 'connection') for r in responses]} end={end}")
    assert responses, f"no answer ({end}): {data[:300]!r}"
    assert b'"providers"' not in data and b"hidden-request" not in data, f"the hidden request was answered: {data[:800]!r}"
    assert not any(r[0] == 200 for r in responses[1:]), data[:800]
    assert responses[0][0] >= 400, "ambiguous or cut framing is refused"
    for r in responses:
        if r[0] >= 400 and r[2]:  # Pingora refuses a bad request head itself, with no body
            assert_openai_error(r, (400, 413, 501))
    if case != "CL shorter than the body":
        # Ambiguous framing: the connection cannot be trusted any more.
        assert end in ("eof", "reset"), f"the connection stayed open after ambiguous framing ({end})"
        assert "close" in header(responses[-1], "connection"), header(responses[-1], "connection")
    assert gw.chat().status_code == 200


def test_four_pipelined_gets_are_all_answered_in_order_or_refused_cleanly(gw):
    payload = b"".join(b"GET /health HTTP/1.1\r\nHost: gw\r\nx-request-id: pipe-%d\r\n\r\n" % i for i in range(4))
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(payload)
        data, end = read(s, 5, stop=lambda d: len(parse_responses(d)[0]) >= 4)
    responses, rest = parse_responses(data, eof=end in ("eof", "reset"))
    ids = [header(r, "x-request-id") for r in responses]
    print(f"pipelined: {len(responses)} answers {ids}, then {end}")
    assert responses, f"no answer ({end})"
    assert not rest, f"a garbled or partial answer: {rest[:200]!r}"
    assert all(r[0] == 200 and json.loads(r[2])["status"] == "ok" for r in responses), data[:600]
    assert ids == [f"pipe-{i}" for i in range(len(responses))], ids
    if len(responses) < 4:
        assert "close" in header(responses[-1], "connection"), "a refused pipeline says Connection: close"
        assert end in ("eof", "reset"), f"after the last answer the connection must close ({end})"


def test_requests_across_the_read_ahead_bound_on_one_connection_reach_the_mock_whole(gw, mock):
    """Between requests the guard reads ahead into a 4 KiB buffer it keeps for the connection:
    a long request (over the buffer, then just under it) followed by a short one must not
    hand the short one any byte of the earlier ones."""
    sizes = [6000, 4000, 10, 4096, 3, 1]
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        for i, n in enumerate(sizes):
            text = chr(ord("a") + i) * n
            body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}).encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            data, end = read(s, 5, stop=lambda d: len(parse_responses(d)[0]) >= 1)
            responses, rest = parse_responses(data)
            assert len(responses) == 1 and not rest, (n, end, data[:300])
            assert responses[0][0] == 200, (n, responses[0][2][:300])
            assert json.loads(responses[0][2])["choices"][0]["message"]["content"].startswith(f"Mock reply to: {text[:20]}")
            seen = mock.requests()[-1]["body"]["messages"][0]["content"]
            assert seen == text, f"request {i} ({n} characters) reached the mock as {len(seen)} characters"


# ---------------------------------------------------------------------------------------------
# Item 13: header size and header-read time
# ---------------------------------------------------------------------------------------------

def send_big(port, payload, seconds=5.0):
    """Sends a large payload from a thread while reading: the server may answer and close early."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()

    def push():
        try:
            s.sendall(payload)
        except OSError:
            pass

    t = threading.Thread(target=push, daemon=True)
    t.start()
    data, end = read(s, seconds)
    took = time.monotonic() - t0
    s.close()
    t.join(5)
    return data, end, took


@pytest.mark.parametrize("shape", ["one 1 MiB header", "one 1000 KiB header", "16k headers of 64 bytes"])
def test_a_1_mib_header_block_is_refused_quickly_and_closed(gw_limits, shape):
    # Pingora alone refuses a block over 1 MiB; 1000 KiB was served 200 before the header guard.
    if shape == "one 1 MiB header":
        headers = b"X-Big: " + b"a" * (1 << 20) + b"\r\n"
    elif shape == "one 1000 KiB header":
        headers = b"X-Big: " + b"a" * (1000 * 1024) + b"\r\n"
    else:
        headers = b"".join(b"X-H-%05d: %s\r\n" % (i, b"b" * 50) for i in range(16384))
    payload = b"GET /health HTTP/1.1\r\nHost: gw\r\n" + headers + b"\r\n"
    data, end, took = send_big(gw_limits.port, payload)
    responses, _ = parse_responses(data, eof=True)
    print(f"{shape}: {[r[0] for r in responses]} {end} after {took:.2f}s")
    assert responses, f"no answer to a 1 MiB header block ({end} after {took:.2f}s): {data[:200]!r}"
    assert responses[0][0] in (431, 400), responses[0][0]
    assert len(responses) == 1
    assert end in ("eof", "reset"), f"the connection stayed open ({end})"
    assert took < 3.0, f"took {took:.2f}s"
    assert gw_limits.chat().status_code == 200


def test_headers_just_under_64_kib_are_served(gw_limits):
    block = b"".join(b"X-Fill-%02d: %s\r\n" % (i, b"c" * 3960) for i in range(16))  # ~63 KiB
    assert 62 * 1024 < len(block) < 64 * 1024 - 1024 + 200
    payload = b"GET /health HTTP/1.1\r\nHost: gw\r\n" + block + b"\r\n"
    with socket.create_connection(("127.0.0.1", gw_limits.port), timeout=5) as s:
        s.sendall(payload)
        data, end = read(s, 5, stop=lambda d: len(parse_responses(d)[0]) >= 1)
    responses, _ = parse_responses(data)
    assert responses and responses[0][0] == 200, (end, data[:300])
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "big headers"}]}).encode()
    payload = chat_head(block, length=len(body)) + b"\r\n" + body
    with socket.create_connection(("127.0.0.1", gw_limits.port), timeout=5) as s:
        s.sendall(payload)
        data, end = read(s, 10, stop=lambda d: len(parse_responses(d)[0]) >= 1)
    responses, _ = parse_responses(data)
    assert responses and responses[0][0] == 200, (end, data[:300])


def dribble(port, first, lines, every, limit):
    """Sends `first`, then one of `lines` every `every` s; returns (how it ended, seconds, data)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    data = b""
    try:
        s.sendall(first)
        for line in lines:
            got, end = read(s, every)
            data += got
            if end != "timeout":
                return end, time.monotonic() - t0, data
            if time.monotonic() - t0 > limit:
                return "still open", time.monotonic() - t0, data
            try:
                s.sendall(line)
            except OSError:
                return "send failed", time.monotonic() - t0, data
        return "still open", time.monotonic() - t0, data
    finally:
        s.close()


def test_a_dribbled_header_is_cut_within_the_header_timeout(gw_limits):
    lines = [b"X-Slow-%d: v\r\n" % i for i in range(40)]
    end, took, data = dribble(gw_limits.port, b"GET /health HTTP/1.1\r\nHost: gw\r\n", lines, 0.5, 10)
    responses, _ = parse_responses(data, eof=True)
    print(f"dribbled header: {end} after {took:.2f}s, answers {[r[0] for r in responses]}")
    assert end in ("eof", "reset", "send failed"), f"a header sent one line every 0.5 s was {end} after {took:.1f}s"
    assert took < HEADER_TIMEOUT_MS / 1000 + 1.5, f"cut after {took:.2f}s, header_timeout is {HEADER_TIMEOUT_MS} ms"
    assert all(r[0] in (408, 400) for r in responses), [r[0] for r in responses]


def test_a_header_line_every_2_s_is_cut(gw_limits):
    lines = [b"X-Slow-%d: v\r\n" % i for i in range(5)]
    end, took, data = dribble(gw_limits.port, b"GET /health HTTP/1.1\r\n", lines, 2.0, 8)
    print(f"one line every 2 s: {end} after {took:.2f}s")
    assert end in ("eof", "reset", "send failed"), f"still open after {took:.1f}s"
    assert took < HEADER_TIMEOUT_MS / 1000 + 1.5


def test_a_silent_new_connection_is_closed(gw_limits):
    with socket.create_connection(("127.0.0.1", gw_limits.port), timeout=5) as s:
        t0 = time.monotonic()
        data, end = read(s, 8)
        took = time.monotonic() - t0
    print(f"silent connection: {end} after {took:.2f}s")
    assert end in ("eof", "reset"), f"a connection that sends nothing was still open after {took:.1f}s"
    assert took < max(HEADER_TIMEOUT_MS, IDLE_TIMEOUT_MS) / 1000 + 1.5


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(gw_limits):
    with socket.create_connection(("127.0.0.1", gw_limits.port), timeout=5) as s:
        def one(i):
            s.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\nx-request-id: idle-%d\r\n\r\n" % i)
            data, end = read(s, 5, stop=lambda d: len(parse_responses(d)[0]) >= 1)
            responses, _ = parse_responses(data)
            assert responses and responses[0][0] == 200, (end, data[:200])
            assert "close" not in header(responses[0], "connection")
        one(0)
        time.sleep(IDLE_TIMEOUT_MS / 1000 / 2)
        one(1)  # still open within the idle timeout, and the clock starts again
        t0 = time.monotonic()
        data, end = read(s, 8)
        took = time.monotonic() - t0
    print(f"idle keep-alive: {end} after {took:.2f}s (idle_timeout {IDLE_TIMEOUT_MS} ms)")
    assert data == b"", data[:200]
    assert end in ("eof", "reset"), f"an idle keep-alive connection was still open after {took:.1f}s"
    assert IDLE_TIMEOUT_MS / 1000 * 0.5 <= took < IDLE_TIMEOUT_MS / 1000 + 1.5, took
