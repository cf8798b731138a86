"""OpenAI routes end to end through the real gateway and the mock provider."""

import hashlib
import json
import threading
import time

import requests

from conftest import provider_config


def sse_events(resp):
    """Yields each SSE `data:` payload as it arrives."""
    for line in resp.iter_lines(chunk_size=1):
        if line.startswith(b"data: "):
            yield line[6:].decode()


def test_non_streaming_chat(gw, mock):
    r = gw.chat(content="hello world")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Mock reply to: hello world"
    assert r.headers["x-gateway-provider"] == "openai"
    assert r.headers["x-gateway-model"] == "gpt-4o-mini"
    seen = mock.requests()[-1]
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == "Bearer gw-openai-key"
    assert seen["body"]["messages"][0]["content"] == "hello world"


def test_streaming_is_relayed_chunk_by_chunk(gw, mock):
    """The client gets the first event while the upstream still holds the rest back."""
    mock.faults({"action": "hold", "path_contains": "/chat/completions"})
    got_first = threading.Event()
    events = []

    def client():
        with requests.post(gw.url + "/v1/chat/completions", stream=True, timeout=30, json={
            "model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "stream me"}],
        }) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for data in sse_events(r):
                events.append(data)
                got_first.set()

    t = threading.Thread(target=client)
    t.start()
    assert got_first.wait(10), "the first SSE event did not reach the client while the upstream held the rest"
    assert len(events) == 1 and events[-1] != "[DONE]"
    mock.release()
    t.join(15)
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1] if json.loads(e)["choices"])
    assert text == "Mock reply to: stream me"


def test_other_v1_paths_pass_through_with_auth(gw, mock):
    for path in ["/v1/responses", "/v1/completions"]:
        r = requests.post(gw.url + path, json={"model": "gpt-4o-mini", "input": "hi"}, timeout=10)
        assert r.status_code == 200, r.text
        if path == "/v1/responses":
            # The mock speaks the Responses API itself: the answer is a real `response`.
            assert r.json()["object"] == "response", r.text
            assert r.json()["output"][0]["content"][0]["text"] == "Mock reply to: hi"
        else:
            assert r.json() == {"object": "mock.echo", "method": "POST", "path": path, "body_bytes": len(json.dumps({"model": "gpt-4o-mini", "input": "hi"}))}
        seen = mock.requests()[-1]
        assert seen["path"] == path
        assert seen["headers"]["authorization"] == "Bearer gw-openai-key"


def test_models_lists_what_the_gateway_serves(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["routing"]["models"] = {"default": ["openai/gpt-4o-mini", "gemini/gemini-2.0-flash"]}
    g = start_gateway(cfg)
    r = requests.get(g.url + "/v1/models", timeout=5)
    assert r.status_code == 200
    ids = [m["id"] for m in r.json()["data"]]
    assert r.json()["object"] == "list"
    for expected in ["gpt-4o-mini", "gemini-2.0-flash", "default"]:
        assert expected in ids


def big_body(size):
    filler = "x" * size
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": filler}]}


def test_a_5_mib_body_reaches_the_upstream_intact(gw, mock):
    body = json.dumps(big_body(5 * 1024 * 1024)).encode()
    r = requests.post(gw.url + "/v1/chat/completions", data=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    seen = mock.requests()[-1]
    assert seen["body_len"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_bodies_across_the_one_write_bound_reach_the_upstream_intact(gw, mock):
    """Up to 16 KiB the header and body go upstream in one write, above it in two: sizes on
    each side of the bound, alternating on the same pooled connections, arrive byte for byte."""
    base = len(json.dumps(big_body(0)).encode())
    with requests.Session() as s:
        for total in (1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 200, 64 * 1024, 16 * 1024):
            body = json.dumps(big_body(max(0, total - base))).encode()
            r = s.post(gw.url + "/v1/chat/completions", data=body, headers={"content-type": "application/json"}, timeout=30)
            assert r.status_code == 200, (total, r.text[:300])
            seen = mock.requests()[-1]
            assert (seen["body_len"], seen["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest()), total


def test_a_5_mib_body_is_resent_intact_on_retry_and_failover(start_mock, start_gateway):
    first, second = start_mock(), start_mock()
    cfg = provider_config(first.url)
    cfg["providers"]["openai"]["endpoints"] = [{"base_url": f"{second.url}/v1", "api_key": "gw-openai-key-2"}]
    cfg["providers"]["openai"]["retry_count"] = 3
    g = start_gateway(cfg)
    first.faults({"status": 500, "count": -1})
    second.faults({"status": 503, "count": 1})
    body = json.dumps(big_body(5 * 1024 * 1024)).encode()
    r = requests.post(g.url + "/v1/chat/completions", data=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    digest = hashlib.sha256(body).hexdigest()
    seen = first.requests() + second.requests()
    assert len(seen) >= 3, "two failures then a success"
    assert all(s["body_sha256"] == digest and s["body_len"] == len(body) for s in seen)
    assert int(r.headers["x-gateway-attempts"]) == len(seen)


def test_chunked_uploads_are_read_whole(gw, mock):
    payload = json.dumps(big_body(300_000)).encode()

    def gen():
        for i in range(0, len(payload), 65536):
            yield payload[i:i + 65536]

    r = requests.post(gw.url + "/v1/chat/completions", data=gen(), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    assert mock.requests()[-1]["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_upstream_connections_are_pooled(gw, mock):
    before = mock.stats()["connections"]
    s = requests.Session()
    for _ in range(200):
        r = s.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}, timeout=10)
        assert r.status_code == 200
    opened = mock.stats()["connections"] - before
    # Health checks open a TCP connection each (every 500 ms here); requests reuse one.
    assert opened <= 10, f"200 sequential requests opened {opened} upstream connections"


def test_streaming_usage_and_many_chunks(gw, mock):
    mock.configure(chunks=20)
    with requests.post(gw.url + "/v1/chat/completions", stream=True, timeout=30, json={
        "model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "count the chunks please"}],
    }) as r:
        events = list(sse_events(r))
    assert events[-1] == "[DONE]"
    usage = [json.loads(e) for e in events[:-1] if json.loads(e).get("usage")]
    assert usage and usage[-1]["usage"]["total_tokens"] > 0
    assert len(events) >= 20
