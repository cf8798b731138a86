"""SPEC §9: the response cache (memory and Redis), rate limits, CORS and compression."""

import gzip
import json
import threading
import time
import zlib

import pytest
import requests

from conftest import provider_config


def cached_config(mock, **cache):
    cfg = provider_config(mock.url)
    cfg["cache"] = {"enabled": True, "ttl": 60, "max_size": 100, **cache}
    return cfg


def chat_body(content="cache me", **extra):
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


def post(g, body, headers=None, raw=None):
    data = raw if raw is not None else json.dumps(body)
    return requests.post(g.url + "/v1/chat/completions", data=data, headers={"content-type": "application/json", **(headers or {})}, timeout=15)


def upstream_calls(mock):
    return len([r for r in mock.requests() if "chat/completions" in r["path"] or "generateContent" in r["path"]])


def test_identical_requests_cost_one_upstream_call(mock, start_gateway):
    g = start_gateway(cached_config(mock))
    first = post(g, chat_body())
    assert first.headers["x-gateway-cache"] == "MISS"
    for _ in range(9):
        r = post(g, chat_body())
        assert r.headers["x-gateway-cache"] == "HIT"
        assert r.content == first.content
        assert r.headers["x-gateway-provider"] == "openai"
    assert upstream_calls(mock) == 1
    # Key order and whitespace do not matter; `user` and `stream_options` do not change the answer.
    reordered = '{"messages":[{"content":"cache me","role":"user"}],   "model":"gpt-4o-mini", "user":"u-1"}'
    assert post(g, None, raw=reordered).headers["x-gateway-cache"] == "HIT"
    assert post(g, chat_body(temperature=0.1)).headers["x-gateway-cache"] == "MISS", "a parameter that changes the answer"
    assert upstream_calls(mock) == 2


def test_tenants_never_share_entries(mock, start_gateway):
    cfg = cached_config(mock)
    cfg["auth"] = {"mode": "gateway", "keys": [{"id": "a", "key": "key-a"}, {"id": "b", "key": "key-b"}]}
    g = start_gateway(cfg)
    assert post(g, chat_body(), {"X-API-Key": "key-a"}).headers["x-gateway-cache"] == "MISS"
    assert post(g, chat_body(), {"X-API-Key": "key-a"}).headers["x-gateway-cache"] == "HIT"
    assert post(g, chat_body(), {"X-API-Key": "key-b"}).headers["x-gateway-cache"] == "MISS"


def sse(resp):
    return [line[6:].decode() for line in resp.iter_lines() if line.startswith(b"data: ")]


def test_streaming_requests_share_entries_with_plain_ones(mock, start_gateway):
    g = start_gateway(cached_config(mock))
    plain = post(g, chat_body("shared entry")).json()
    with requests.post(g.url + "/v1/chat/completions", json=chat_body("shared entry", stream=True, stream_options={"include_usage": True}), stream=True, timeout=10) as r:
        assert r.headers["x-gateway-cache"] == "HIT"
        events = sse(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["total_tokens"] == plain["usage"]["total_tokens"]
    # A streamed miss is assembled and stored: the plain request then hits.
    with requests.post(g.url + "/v1/chat/completions", json=chat_body("streamed first", stream=True), stream=True, timeout=10) as r:
        assert r.headers["x-gateway-cache"] == "MISS"
        streamed = sse(r)
    assert streamed[-1] == "[DONE]"
    hit = post(g, chat_body("streamed first"))
    assert hit.headers["x-gateway-cache"] == "HIT"
    assert hit.json()["choices"][0]["message"]["content"] == "Mock reply to: streamed first"
    assert upstream_calls(mock) == 2


def test_a_broken_stream_is_never_stored(mock, start_gateway):
    g = start_gateway(cached_config(mock))
    mock.faults({"action": "break_stream"})
    with requests.post(g.url + "/v1/chat/completions", json=chat_body("broken", stream=True), stream=True, timeout=10) as r:
        sse(r)
    assert post(g, chat_body("broken")).headers["x-gateway-cache"] == "MISS"


def test_concurrent_identical_requests_are_coalesced(mock, start_gateway):
    g = start_gateway(cached_config(mock))
    mock.configure(latency_ms=400)
    results = []
    barrier = threading.Barrier(20)

    def one():
        barrier.wait()
        results.append(post(g, chat_body("together")))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * 20
    assert upstream_calls(mock) == 1
    assert len({r.content for r in results}) == 1


def test_cache_controls(mock, start_gateway):
    g = start_gateway(cached_config(mock))
    assert post(g, chat_body("ctl"), {"Cache-Control": "no-store"}).headers["x-gateway-cache"] == "BYPASS"
    assert post(g, chat_body("ctl")).headers["x-gateway-cache"] == "MISS", "no-store wrote nothing"
    assert post(g, chat_body("ctl"), {"Cache-Control": "no-cache"}).headers["x-gateway-cache"] == "MISS", "no-cache does not read"
    assert upstream_calls(mock) == 3
    assert post(g, chat_body("ttl"), {"x-gateway-cache-ttl": "1"}).headers["x-gateway-cache"] == "MISS"
    assert post(g, chat_body("ttl")).headers["x-gateway-cache"] == "HIT"
    time.sleep(1.3)
    assert post(g, chat_body("ttl")).headers["x-gateway-cache"] == "MISS", "the TTL override expired the entry"


def test_cache_enabled_false_switches_it_off(mock, start_gateway):
    g = start_gateway(cached_config(mock), env={"CACHE_ENABLED": "false"})
    assert post(g, chat_body()).headers["x-gateway-cache"] == "BYPASS"
    assert post(g, chat_body()).headers["x-gateway-cache"] == "BYPASS"
    assert upstream_calls(mock) == 2


def test_a_failover_answer_is_stored_under_the_provider_that_answered(start_mock, start_gateway):
    openai_mock, gemini_mock = start_mock(), start_mock()
    cfg = cached_config(openai_mock)
    cfg["providers"]["gemini"]["base_url"] = f"{gemini_mock.url}/v1beta"
    cfg["routing"]["models"] = {"any": ["openai/gpt-4o-mini", "gemini/gemini-2.0-flash"]}
    g = start_gateway(cfg)
    openai_mock.faults({"status": 503, "count": 2})
    r = post(g, {"model": "any", "messages": [{"role": "user", "content": "fo"}]})
    assert r.headers["x-gateway-provider"] == "gemini"
    r = post(g, {"model": "any", "messages": [{"role": "user", "content": "fo"}]})
    assert r.headers["x-gateway-cache"] == "MISS" and r.headers["x-gateway-provider"] == "openai", \
        "the primary is asked again, not served the fallback's answer"


def test_two_gateways_share_a_redis_cache_and_survive_its_outage(mock, start_gateway, start_redis):
    redis = start_redis()
    cfg = cached_config(mock)
    g1 = start_gateway(cfg, env={"REDIS_URL": redis.url})
    g2 = start_gateway(cfg, env={"REDIS_URL": redis.url})
    assert post(g1, chat_body("shared")).headers["x-gateway-cache"] == "MISS"
    assert post(g2, chat_body("shared")).headers["x-gateway-cache"] == "HIT"
    assert upstream_calls(mock) == 1
    keys = redis.cli("--scan", "--pattern", "llmgw:c:*").split()
    assert len(keys) == 1 and len(keys[0]) == len("llmgw:c:") + 64, "hashed keys, no raw request"
    ttl = int(redis.cli("TTL", keys[0]))
    assert 0 < ttl <= 60, "Redis enforces the TTL"
    # Redis goes away: requests still succeed as misses, a warning and a metric say so.
    port = redis.port
    redis.stop()
    for i in range(3):
        r = post(g2, chat_body(f"during outage {i}"))
        assert r.status_code == 200 and r.headers["x-gateway-cache"] == "MISS"
    metrics = requests.get(g2.url + "/metrics", timeout=5).text
    errors = [l for l in metrics.splitlines() if l.startswith('gateway_redis_errors_total{use="cache"}')]
    assert errors and float(errors[0].split()[-1]) >= 1
    warnings = [l for l in g2.log_lines() if '"gateway:cache"' in l and '"warn"' in l]
    assert len(warnings) == 1, "one warning per outage"
    # It comes back: sharing resumes.
    start_redis(port)
    time.sleep(1.0)
    post(g1, chat_body("after outage"))
    deadline = time.time() + 10
    while time.time() < deadline and post(g2, chat_body("after outage")).headers["x-gateway-cache"] != "HIT":
        post(g1, chat_body("after outage"))
        time.sleep(0.3)
    assert post(g2, chat_body("after outage")).headers["x-gateway-cache"] == "HIT"


def limited_config(mock, rpm, **security):
    cfg = provider_config(mock.url)
    cfg["security"] = {"rate_limit_rpm": rpm, **security}
    return cfg


def test_rate_limit_per_caller(mock, start_gateway):
    g = start_gateway(limited_config(mock, 3))
    codes = []
    for _ in range(5):
        r = post(g, chat_body())
        codes.append(r.status_code)
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert "x-ratelimit-remaining-requests" in r.headers and "x-ratelimit-reset-requests" in r.headers
    assert codes == [200, 200, 200, 429, 429]
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["retry-after"]) >= 1
    assert upstream_calls(mock) == 3, "a limited request never reaches the upstream"


def test_per_key_overrides(mock, start_gateway):
    cfg = limited_config(mock, 100)
    cfg["auth"] = {"mode": "gateway", "keys": [{"id": "small", "key": "small-key", "rate_limit_rpm": 1}]}
    g = start_gateway(cfg)
    assert post(g, chat_body(), {"X-API-Key": "small-key"}).status_code == 200
    assert post(g, chat_body(), {"X-API-Key": "small-key"}).status_code == 429
    assert post(g, chat_body()).status_code == 200, "another caller has its own budget"


def test_tokens_per_minute_are_reserved_and_settled(mock, start_gateway):
    cfg = limited_config(mock, 100)
    cfg["auth"] = {"mode": "gateway", "keys": [{"id": "t", "key": "tok-key", "tpm": 600}]}
    g = start_gateway(cfg)
    big = chat_body("x " * 400, max_tokens=100)  # ~200 input + 100 output tokens estimated
    assert post(g, big, {"X-API-Key": "tok-key"}).status_code == 200
    codes = [post(g, big, {"X-API-Key": "tok-key"}).status_code for _ in range(4)]
    assert 429 in codes


def test_rate_limiting_enabled_false(mock, start_gateway):
    g = start_gateway(limited_config(mock, 1), env={"RATE_LIMITING_ENABLED": "false"})
    assert [post(g, chat_body()).status_code for _ in range(3)] == [200, 200, 200]


def test_one_limit_across_two_gateways_with_redis(mock, start_gateway, start_redis):
    redis = start_redis()
    cfg = limited_config(mock, 10)
    g1 = start_gateway(cfg, env={"REDIS_URL": redis.url})
    g2 = start_gateway(cfg, env={"REDIS_URL": redis.url})
    codes = []
    lock = threading.Lock()

    def hammer(g):
        s = requests.Session()
        for _ in range(15):
            c = s.post(g.url + "/v1/chat/completions", json=chat_body(), timeout=10).status_code
            with lock:
                codes.append(c)

    threads = [threading.Thread(target=hammer, args=(g,)) for g in (g1, g2, g1, g2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(200) == 10, Counter_repr(codes)
    assert codes.count(429) == 50
    # Redis down: local limits, never a 500.
    redis.stop()
    r = post(g1, chat_body("after"))
    assert r.status_code in (200, 429)


def Counter_repr(codes):
    return {c: codes.count(c) for c in set(codes)}


def test_cors_preflight_and_headers(gw):
    r = requests.options(gw.url + "/v1/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-api-key"}, timeout=5)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    allowed = r.headers["access-control-allow-headers"]
    for h in ["authorization", "x-api-key", "x-goog-api-key", "content-type"]:
        assert h in allowed
    assert "access-control-allow-credentials" not in r.headers, "no credentials with *"
    r = gw.chat(headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    assert "x-request-id" in r.headers["access-control-expose-headers"]


def test_cors_exact_origins_and_switch(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["security"] = {"cors_origins": ["https://good.example"]}
    g = start_gateway(cfg)
    r = g.chat(headers={"Origin": "https://good.example"})
    assert r.headers["access-control-allow-origin"] == "https://good.example"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in g.chat(headers={"Origin": "https://evil.example"}).headers
    off = start_gateway(provider_config(mock.url), env={"CORS_ENABLED": "false"})
    assert "access-control-allow-origin" not in off.chat(headers={"Origin": "https://good.example"}).headers


def test_responses_are_compressed_when_accepted(gw, mock):
    mock.configure(chunks=30)
    r = requests.post(gw.url + "/v1/chat/completions", json=chat_body("compress " * 200), headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert r.headers.get("content-encoding") == "gzip"
    assert r.json()["choices"][0]["message"]["content"].startswith("Mock reply to:")


@pytest.mark.parametrize("accept, coding", [("br", "br"), ("zstd, gzip;q=0.5", "zstd"), ("identity", None), ("deflate", None)])
def test_each_accepted_coding_and_none_for_the_rest(gw, mock, accept, coding):
    r = requests.post(gw.url + "/v1/chat/completions", json=chat_body("compress " * 200), headers={"Accept-Encoding": accept}, timeout=10)
    assert r.status_code == 200
    assert r.headers.get("content-encoding") == coding, r.headers
    if coding is None:
        assert r.json()["choices"][0]["message"]["content"].startswith("Mock reply to:")


def test_compressed_sse_is_flushed_per_event(gw, mock):
    mock.faults({"action": "hold", "path_contains": "/chat/completions"})
    got = threading.Event()
    seen = []

    def client():
        with requests.post(gw.url + "/v1/chat/completions", json=chat_body("gz stream", stream=True),
                           headers={"Accept-Encoding": "gzip"}, stream=True, timeout=20) as r:
            assert r.headers["content-encoding"] == "gzip"
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            for raw in r.raw.stream(1, decode_content=False):
                seen.append(d.decompress(raw))
                if b"data: " in b"".join(seen):
                    got.set()

    t = threading.Thread(target=client)
    t.start()
    assert got.wait(10), "the first compressed event was decodable while the upstream held the rest"
    mock.release()
    t.join(15)
    assert b"[DONE]" in b"".join(seen)


def test_a_gzip_stream_to_an_exact_origin_varies_on_both(mock, start_gateway):
    """Both reasons the answer varies are named: the CORS origin and the encoding."""
    cfg = provider_config(mock.url)
    cfg["security"] = {"cors_origins": ["https://good.example"]}
    g = start_gateway(cfg)
    r = requests.post(g.url + "/v1/chat/completions", json=chat_body("vary", stream=True),
                      headers={"Accept-Encoding": "gzip", "Origin": "https://good.example"}, timeout=10)
    assert r.headers["content-encoding"] == "gzip"
    vary = [v.strip().lower() for v in r.headers["vary"].split(",")]
    assert "origin" in vary and "accept-encoding" in vary, vary
