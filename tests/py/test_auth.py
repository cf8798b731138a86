"""SPEC §5: which key reaches the upstream in each mode, and gateway access keys."""

import hashlib

import requests

from conftest import provider_config


def last_auth(mock):
    return mock.requests()[-1]["headers"].get("authorization")


def gateway_with(mock, start_gateway, mode, **auth):
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": mode, **auth}
    return start_gateway(cfg)


def test_gateway_mode_ignores_client_keys(mock, start_gateway):
    g = gateway_with(mock, start_gateway, "gateway")
    assert g.chat(headers={"Authorization": "Bearer sk-client"}).status_code == 200
    assert last_auth(mock) == "Bearer gw-openai-key"


def test_client_mode_uses_only_the_client_key(mock, start_gateway):
    g = gateway_with(mock, start_gateway, "client")
    assert g.chat(headers={"Authorization": "Bearer sk-client"}).status_code == 200
    assert last_auth(mock) == "Bearer sk-client"
    assert g.chat(headers={"x-openai-api-key": "sk-header"}).status_code == 200
    assert last_auth(mock) == "Bearer sk-header"
    n = len(mock.requests())
    r = g.chat()
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    assert len(mock.requests()) == n, "no upstream call without a key"


def test_hybrid_mode_prefers_the_client_key(mock, start_gateway):
    g = gateway_with(mock, start_gateway, "hybrid")
    assert g.chat(headers={"Authorization": "Bearer sk-client"}).status_code == 200
    assert last_auth(mock) == "Bearer sk-client"
    assert g.chat().status_code == 200
    assert last_auth(mock) == "Bearer gw-openai-key"


def test_gemini_key_header_in_client_mode(mock, start_gateway):
    g = gateway_with(mock, start_gateway, "client")
    r = g.chat(model="gemini-2.0-flash", headers={"x-goog-api-key": "g-client"})
    assert r.status_code == 200, r.text
    assert mock.requests()[-1]["headers"]["x-goog-api-key"] == "g-client"


def test_access_keys_plain_and_sha256(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": "gateway", "require_auth_header": True, "keys": [
        {"id": "team-a", "key": "team-a-access-key"},
        {"id": "team-b", "sha256": hashlib.sha256(b"team-b-access-key").hexdigest()},
    ]}
    g = start_gateway(cfg)
    for key in ["team-a-access-key", "team-b-access-key"]:
        r = g.chat(headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
    for headers in [{}, {"X-API-Key": "wrong"}, {"X-API-Key": "team-a-access-key-and-more"}]:
        r = g.chat(headers=headers)
        assert r.status_code == 401
        err = r.json()["error"]
        assert err["type"] == "authentication_error" and err["code"] == "invalid_api_key"
    assert requests.get(g.url + "/config", timeout=5).status_code == 401
    assert requests.get(g.url + "/config", headers={"X-API-Key": "team-a-access-key"}, timeout=5).status_code == 200
    keys = [r.get("key_id") for r in g.access_logs() if r["status"] == 200 and r["route"] == "chat_completions"]
    assert keys == ["team-a", "team-b"]


def test_no_header_can_redirect_the_upstream(mock, start_mock, start_gateway):
    evil = start_mock()
    g = gateway_with(mock, start_gateway, "hybrid")
    headers = {"Host": f"127.0.0.1:{evil.port}", "X-Forwarded-Host": f"127.0.0.1:{evil.port}",
               "x-gateway-upstream": evil.url, "x-openai-base-url": evil.url}
    assert g.chat(headers=headers).status_code == 200
    assert evil.requests() == []
    assert mock.requests()[-1]["headers"]["host"] == f"127.0.0.1:{mock.port}"
