"""Horizontal scaling as the Kubernetes manifests deploy it, on one machine: three gateway
processes sharing one real redis-server, traffic spread across them."""

import itertools

import requests

from conftest import provider_config


def test_three_gateways_share_cache_and_one_rate_limit(mock, start_gateway, start_redis):
    redis = start_redis()
    cfg = provider_config(mock.url)
    cfg["cache"] = {"enabled": True, "ttl": 60, "max_size": 100}
    cfg["security"] = {"rate_limit_rpm": 30}
    gateways = [start_gateway(cfg, env={"REDIS_URL": redis.url}) for _ in range(3)]
    spread = itertools.cycle(gateways)

    # Shared cache: the first instance misses, every other instance hits.
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "scale out"}]}
    caches = [requests.post(next(spread).url + "/v1/chat/completions", json=body, timeout=10).headers["x-gateway-cache"] for _ in range(6)]
    assert caches == ["MISS"] + ["HIT"] * 5
    assert len([r for r in mock.requests() if r["path"] == "/v1/chat/completions"]) == 1

    # One shared limit: 30 per minute in total, whichever instance answers (6 already used).
    codes = [requests.post(next(spread).url + "/v1/chat/completions", json=body, timeout=10).status_code for _ in range(40)]
    assert codes.count(200) == 24 and codes.count(429) == 16, {c: codes.count(c) for c in set(codes)}
    remaining = {g.url: requests.post(g.url + "/v1/chat/completions", json=body, timeout=10).headers["x-ratelimit-remaining-requests"] for g in gateways}
    assert set(remaining.values()) == {"0"}
