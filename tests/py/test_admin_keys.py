"""SPEC §13: keys managed at run time through /admin, and USD budgets.

Real gateway processes, the mock provider, real redis-server instances for the shared store.
"""

import concurrent.futures
import hashlib
import json
import time
from pathlib import Path

import pytest
import requests

from conftest import Gateway, provider_config

ADMIN = "admin-secret-for-tests-0123456789"
# USD per 1M tokens: large, so a few mock requests add up to cents.
PRICE = {"input": 1000.0, "output": 2000.0}


def config(mock, tmp_path=None, redis=None, **auth):
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": "gateway", "admin_key": "${GW_ADMIN_KEY}", **auth}
    if tmp_path is not None and redis is None:
        cfg["auth"]["state_file"] = str(tmp_path / "state.json")
    if redis is not None:
        cfg["cache"]["redis_url"] = redis.url
    cfg["pricing"] = {"openai/gpt-4o-mini": PRICE}
    return cfg


def start(start_gateway, cfg):
    return start_gateway(cfg, env={"GW_ADMIN_KEY": ADMIN})


def admin(g, method, path, body=None, key=ADMIN):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, f"{g.url}{path}", json=body, headers=headers, timeout=10)


def chat(g, key, model="gpt-4o-mini", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}
    return requests.post(f"{g.url}/v1/chat/completions", json=body, headers={"X-API-Key": key}, timeout=10)


def cost(usage):
    return (usage["prompt_tokens"] * PRICE["input"] + usage["completion_tokens"] * PRICE["output"]) / 1e6


def test_admin_routes_and_errors(mock, start_gateway, tmp_path):
    cfg = config(mock, tmp_path, keys=[{"id": "cfg-team", "key": "config-file-key-1234"}])
    g = start(start_gateway, cfg)
    # Never opened by a caller key, a wrong key or no key.
    for key in [None, "config-file-key-1234", "wrong-admin-key-000000000"]:
        r = admin(g, "GET", "/admin/keys", key=key)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_admin_key"
    r = admin(g, "POST", "/admin/keys", {"id": "team-a", "models": ["gpt-4o-mini"],
                                          "rate_limit_rpm": 100, "budget": {"usd": 5, "period": "daily"}})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["key"]
    assert secret.startswith("llmgw-") and len(secret) > 40
    assert created["models"] == ["gpt-4o-mini"] and created["budget"] == {"usd": 5.0, "period": "daily"}
    assert admin(g, "POST", "/admin/keys", {"id": "team-a"}).status_code == 409
    listing = admin(g, "GET", "/admin/keys").json()
    assert [k["id"] for k in listing["data"]] == ["team-a"]
    assert secret not in json.dumps(listing) and "sha256" not in json.dumps(listing), "no secrets listed"
    got = admin(g, "GET", "/admin/keys/team-a").json()
    assert got["spend_usd"] == 0 and got["budget_remaining_usd"] == 5
    assert admin(g, "GET", "/admin/keys/nope").status_code == 404
    # The key works beside the config-file key; its model list is enforced.
    assert chat(g, secret).status_code == 200
    assert chat(g, "config-file-key-1234").status_code == 200
    n = len(mock.requests())
    r = chat(g, secret, model="gemini-2.0-flash")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed", r.text
    assert len(mock.requests()) == n, "no upstream call for a refused model"
    # Bad input: clear 400s, nothing stored.
    for body, param in [({"id": "team-b", "colour": "red"}, None), ({"id": "team-b", "budget": {"usd": -1}}, "budget.usd"),
                        ({"id": "bad id!"}, "id"), ({"id": "team-b", "budget": {"usd": 1, "period": "hourly"}}, "budget.period")]:
        r = admin(g, "POST", "/admin/keys", body)
        assert r.status_code == 400, (body, r.text)
        if param:
            assert r.json()["error"]["param"] == param
    assert admin(g, "GET", "/admin/keys/team-b").status_code == 404, "nothing stored"
    assert admin(g, "PATCH", "/admin/keys/team-a", {"colour": 1}).status_code == 400
    assert admin(g, "PATCH", "/admin/keys/team-a", {"budget": {"usd": -3}}).status_code == 400
    r = admin(g, "PATCH", "/admin/keys/team-a", {"models": None, "expires_at": "2099-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["models"] is None and r.json()["expires_at"] == 4070908800
    assert chat(g, secret, model="gemini-2.0-flash").status_code == 200, "the patch is honoured"
    assert admin(g, "PATCH", "/admin/keys/team-a", {"expires_at": int(time.time()) - 1}).status_code == 200
    r = chat(g, secret)
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    assert admin(g, "DELETE", "/admin/keys/team-a").status_code == 204
    assert admin(g, "DELETE", "/admin/keys/team-a").status_code == 404
    assert chat(g, secret).status_code == 401, "revoked"
    assert admin(g, "PUT", "/admin/keys").status_code == 405
    text = g.logs()
    assert "admin_key_invalid" in text, "admin refusals are logged"
    assert ADMIN not in text and secret not in text
    assert secret not in requests.get(f"{g.url}/config", timeout=5).text
    assert ADMIN not in requests.get(f"{g.url}/config", timeout=5).text


def test_no_admin_key_means_404_and_bad_attempts_are_rate_limited(mock, start_gateway, tmp_path):
    cfg = provider_config(mock.url)
    g = start_gateway(cfg)
    assert requests.get(f"{g.url}/admin/keys", timeout=5).status_code == 404
    g2 = start(start_gateway, config(mock, tmp_path))
    codes = [admin(g2, "GET", "/admin/keys", key=f"guess-{i}-000000000000").status_code for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[-1] == 429, codes


def test_rotate_with_grace(mock, start_gateway, tmp_path):
    g = start(start_gateway, config(mock, tmp_path))
    old = admin(g, "POST", "/admin/keys", {"id": "svc"}).json()["key"]
    r = admin(g, "POST", "/admin/keys/svc/rotate", {"grace_seconds": 2})
    assert r.status_code == 200, r.text
    new = r.json()["key"]
    assert new != old
    assert chat(g, old).status_code == 200, "the old secret is valid during the grace period"
    assert chat(g, new).status_code == 200
    time.sleep(2.2)
    r = chat(g, old)
    assert r.status_code == 401 and "rotated" in r.json()["error"]["message"], r.text
    assert chat(g, new).status_code == 200
    assert admin(g, "POST", "/admin/keys/svc/rotate", {"grace": 1}).status_code == 400


def test_keys_and_spend_survive_a_restart_and_a_corrupt_file_stops_the_start(mock, start_gateway, tmp_path):
    cfg = config(mock, tmp_path)
    g = start(start_gateway, cfg)
    secret = admin(g, "POST", "/admin/keys", {"id": "keep"}).json()["key"]
    usage = chat(g, secret).json()["usage"]
    time.sleep(0.6)  # spend is flushed every 250 ms
    g.stop()
    state = Path(cfg["auth"]["state_file"])
    assert secret not in state.read_text(), "stored hashed"
    assert hashlib.sha256(secret.encode()).hexdigest() in state.read_text()
    g2 = start(start_gateway, cfg)
    assert chat(g2, secret).status_code == 200, "a created key survives a restart"
    spent = admin(g2, "GET", "/admin/keys/keep").json()["spend_usd"]
    assert spent >= cost(usage) - 1e-9, "spend survives a restart"
    g2.stop()
    state.write_text("{ not json")
    bad = Gateway(cfg, env={"GW_ADMIN_KEY": ADMIN}, wait=None)
    try:
        assert bad.proc.wait(20) != 0
        assert "auth.state_file" in bad.logs() and "corrupt" in bad.logs(), bad.logs()
    finally:
        bad.stop()


def test_budget_refused_after_about_three_requests_and_spend_matches(mock, start_gateway, tmp_path):
    g = start(start_gateway, config(mock, tmp_path))
    secret = admin(g, "POST", "/admin/keys", {"id": "small"}).json()["key"]
    first = chat(g, secret, max_tokens=16).json()["usage"]
    per = cost(first)
    # A budget for about 2.5 requests: the 4th is refused (0, 1, 2 spent below 2.5; 3 is not).
    assert admin(g, "PATCH", "/admin/keys/small", {"budget": {"usd": per * 3.5, "period": "total"}}).status_code == 200
    usages = [first]
    for _ in range(2):
        r = chat(g, secret, max_tokens=16)
        assert r.status_code == 200, r.text
        usages.append(r.json()["usage"])
    r = chat(g, secret, max_tokens=16, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200, r.text
    stream_usage = [json.loads(line[6:])["usage"] for line in r.text.splitlines()
                    if line.startswith("data: {") and '"usage":{' in line]
    usages.append(stream_usage[-1])
    n = len(mock.requests())
    r = chat(g, secret, max_tokens=16)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "budget_exceeded"
    assert "retry-after" not in {k.lower() for k in r.headers}, "not a rate limit"
    assert len(mock.requests()) == n, "no upstream call over budget"
    got = admin(g, "GET", "/admin/keys/small").json()
    expected = sum(cost(u) for u in usages)
    assert abs(got["spend_usd"] - expected) < 1e-5, (got, expected)
    assert got["budget_remaining_usd"] == 0
    metrics = requests.get(f"{g.url}/metrics", timeout=5).text
    assert 'gateway_budget_refusals_total{period="total"} 1' in metrics
    assert 'gateway_spend_usd_total{key_id="small"}' in metrics


def concurrent_overspend(gateways, secret, budget_usd, estimate):
    def one(i):
        return chat(gateways[i % len(gateways)], secret, max_tokens=16).status_code

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(one, range(20)))
    return codes


def test_concurrent_requests_overspend_by_at_most_one_estimate(mock, start_gateway, tmp_path):
    g = start(start_gateway, config(mock, tmp_path))
    secret = admin(g, "POST", "/admin/keys", {"id": "burst"}).json()["key"]
    per = cost(chat(g, secret, max_tokens=16).json()["usage"])
    spent0 = admin(g, "GET", "/admin/keys/burst").json()["spend_total_usd"]
    budget = spent0 + per * 4.5
    admin(g, "PATCH", "/admin/keys/burst", {"budget": {"usd": budget, "period": "total"}})
    mock.configure(latency_ms=200)
    codes = concurrent_overspend([g], secret, budget, per)
    assert codes.count(200) >= 2 and codes.count(429) >= 10, codes
    got = admin(g, "GET", "/admin/keys/burst").json()
    # The estimate: prompt estimate + max_tokens at the price (bounded above by 2x the real cost here).
    estimate = (20 * PRICE["input"] + 16 * PRICE["output"]) / 1e6
    assert got["spend_usd"] <= budget + estimate, (got, budget, estimate)


def test_two_instances_share_keys_and_budget_through_redis(mock, start_gateway, start_redis):
    redis = start_redis()
    a = start(start_gateway, config(mock, redis=redis))
    b = start(start_gateway, config(mock, redis=redis))
    secret = admin(a, "POST", "/admin/keys", {"id": "shared"}).json()["key"]
    t0 = time.time()
    while chat(b, secret).status_code != 200:
        assert time.time() - t0 < 1.0, "instance B honours a new key within 1 s"
        time.sleep(0.05)
    per = cost(chat(a, secret, max_tokens=16).json()["usage"])
    spent0 = admin(a, "GET", "/admin/keys/shared").json()["spend_total_usd"]
    budget = spent0 + per * 4.5
    admin(a, "PATCH", "/admin/keys/shared", {"budget": {"usd": budget, "period": "total"}})
    time.sleep(0.6)
    mock.configure(latency_ms=200)
    codes = concurrent_overspend([a, b], secret, budget, per)
    mock.configure(latency_ms=0)
    assert codes.count(200) >= 2 and codes.count(429) >= 10, codes
    estimate = (20 * PRICE["input"] + 16 * PRICE["output"]) / 1e6
    for g in (a, b):
        got = admin(g, "GET", "/admin/keys/shared").json()
        assert got["spend_usd"] <= budget + estimate, (got, budget, estimate)
    # Revoke on A: B refuses within 1 s.
    admin(a, "PATCH", "/admin/keys/shared", {"budget": None})
    time.sleep(0.6)
    assert chat(b, secret).status_code == 200
    assert admin(a, "DELETE", "/admin/keys/shared").status_code == 204
    t0 = time.time()
    while chat(b, secret).status_code != 401:
        assert time.time() - t0 < 1.0, "instance B honours a revocation within 1 s"
        time.sleep(0.05)
    # Redis goes down: the revoked key stays out.
    redis.stop()
    time.sleep(0.6)
    assert chat(b, secret).status_code == 401


@pytest.mark.parametrize("store", ["state_file", "redis"])
def test_config_key_budget_refused_after_about_three_requests_and_survives_a_restart(
        mock, start_gateway, start_redis, tmp_path, store):
    # What one request costs, measured through a config key without a budget.
    probe = provider_config(mock.url)
    probe["auth"] = {"mode": "gateway", "keys": [{"id": "probe", "key": "probe-key-0123456789"}]}
    probe["pricing"] = {"openai/gpt-4o-mini": PRICE}
    p = start_gateway(probe)
    per = cost(chat(p, "probe-key-0123456789", max_tokens=16).json()["usage"])
    p.stop()
    cfg = provider_config(mock.url)
    cfg["pricing"] = {"openai/gpt-4o-mini": PRICE}
    # A budget for about 2.5 requests: the 4th is refused (0, 1, 2 spent below 2.5; 3 is not).
    cfg["auth"] = {"mode": "gateway", "keys": [
        {"id": "cfg-budget", "key": "cfg-budget-key-0123456789", "budget": {"usd": per * 2.5, "period": "daily"}},
        {"id": "cfg-free", "key": "cfg-free-key-0123456789"}]}
    if store == "redis":
        cfg["cache"]["redis_url"] = start_redis().url
    else:
        cfg["auth"]["state_file"] = str(tmp_path / "state.json")
    g = start_gateway(cfg)
    for _ in range(3):
        r = chat(g, "cfg-budget-key-0123456789", max_tokens=16)
        assert r.status_code == 200, r.text
    n = len(mock.requests())
    r = chat(g, "cfg-budget-key-0123456789", max_tokens=16)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "budget_exceeded" and "daily" in r.json()["error"]["message"]
    assert "retry-after" not in {k.lower() for k in r.headers}, "not a rate limit"
    assert len(mock.requests()) == n, "no upstream call over budget"
    assert chat(g, "cfg-free-key-0123456789", max_tokens=16).status_code == 200, "other keys unaffected"
    metrics = requests.get(f"{g.url}/metrics", timeout=5).text
    assert 'gateway_budget_refusals_total{period="daily"} 1' in metrics
    assert 'gateway_spend_usd_total{key_id="cfg-budget"}' in metrics
    assert 'gateway_spend_usd_total{key_id="cfg-free"}' not in metrics, "a key without a budget is not charged"
    time.sleep(0.6)  # the state file is flushed every 250 ms
    g.stop()
    g2 = start_gateway(cfg)
    n = len(mock.requests())
    r = chat(g2, "cfg-budget-key-0123456789", max_tokens=16)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded", \
        f"spend survives a restart ({store}): {r.text}"
    assert len(mock.requests()) == n


def test_config_key_budget_needs_a_store_and_a_valid_amount(mock, tmp_path):
    for budget, field in [({"usd": -1}, "auth.keys[0].budget.usd"), ({"usd": 1, "period": "hourly"}, "auth.keys[0].budget.period"),
                          ({"usd": 1}, "auth.keys[0].budget")]:
        cfg = provider_config(mock.url)
        cfg["auth"] = {"keys": [{"id": "k", "key": "k-0123456789", "budget": budget}]}
        if field != "auth.keys[0].budget":
            cfg["auth"]["state_file"] = str(tmp_path / "state.json")
        bad = Gateway(cfg, wait=None)
        try:
            assert bad.proc.wait(20) != 0
            assert f"{field}:" in bad.logs(), bad.logs()
        finally:
            bad.stop()


def test_an_aborted_stream_is_charged_its_reservation(mock, start_gateway, tmp_path):
    g = start(start_gateway, config(mock, tmp_path))
    secret = admin(g, "POST", "/admin/keys", {"id": "aborter", "budget": {"usd": 1000, "period": "total"}}).json()["key"]
    mock.configure(chunk_delay_ms=300, chunks=20)
    body = {"model": "gpt-4o-mini", "max_tokens": 16, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hello there"}]}
    with requests.post(f"{g.url}/v1/chat/completions", json=body, headers={"X-API-Key": secret},
                       stream=True, timeout=10) as r:
        assert r.status_code == 200
        first = next(r.iter_lines())
        assert first.startswith(b"data: ")
    # Closed after the first event, long before the usage chunk.
    deadline = time.time() + 10
    spent = 0
    while time.time() < deadline:
        spent = admin(g, "GET", "/admin/keys/aborter").json()["spend_usd"]
        if spent > 0:
            break
        time.sleep(0.2)
    # The reservation: the prompt estimate and max_tokens at the price (never refunded to 0).
    assert spent >= 16 * PRICE["output"] / 1e6, spent
    assert spent <= (100 * PRICE["input"] + 16 * PRICE["output"]) / 1e6, spent
    mock.configure(chunk_delay_ms=0)


def test_admin_writes_during_a_redis_outage_are_503_and_change_nothing(mock, start_gateway, start_redis):
    redis = start_redis()
    g = start(start_gateway, config(mock, redis=redis))
    secret = admin(g, "POST", "/admin/keys", {"id": "before"}).json()["key"]
    redis.stop()
    writes = [("POST", "/admin/keys", {"id": "during"}), ("PATCH", "/admin/keys/before", {"tpm": 5}),
              ("POST", "/admin/keys/before/rotate", {"grace_seconds": 5}), ("DELETE", "/admin/keys/before", None)]
    for method, path, body in writes:
        r = admin(g, method, path, body)
        assert r.status_code == 503, (method, path, r.status_code, r.text)
        err = r.json()["error"]
        assert err["code"] == "store_unavailable" and "nothing was changed" in err["message"], err
        assert r.headers.get("retry-after") == "1", "retryable"
    assert admin(g, "GET", "/admin/keys/during").status_code == 404, "nothing stored"
    got = admin(g, "GET", "/admin/keys/before").json()
    assert got["tpm"] is None and got["previous_key_valid_until"] is None, got
    assert chat(g, secret).status_code == 200, "the key was neither rotated nor revoked"
