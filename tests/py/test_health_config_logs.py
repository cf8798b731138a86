"""Health endpoints, /config redaction, and the access log (SPEC §8)."""

import json
import subprocess

import requests

from conftest import GATEWAY_BIN, free_port, provider_config

SECRETS = {
    "OPENAI_API_KEY": "sk-env-openai-SECRET-6b1f",
    "GEMINI_API_KEY": "env-gemini-SECRET-77aa",
    "REDIS_URL": "redis://:redis-SECRET-pw@127.0.0.1:6399",
}
FILE_SECRETS = ["file-openai-SECRET-e3d2", "team-access-SECRET-19c0", "endpoint-SECRET-5d5d"]
PROMPT = "my private PROMPT 0x51ab"


def secret_config(mock):
    cfg = provider_config(mock.url, openai_key=FILE_SECRETS[0], gemini_key=None)
    cfg["providers"]["openai"]["endpoints"] = [{"base_url": f"{mock.url}/v1", "api_key": FILE_SECRETS[2]}]
    cfg["auth"] = {"mode": "hybrid", "keys": [{"id": "team", "key": FILE_SECRETS[1]}]}
    cfg["cache"] = {"enabled": True}
    return cfg


def assert_no_secret(text):
    for s in list(SECRETS.values()) + FILE_SECRETS + ["redis-SECRET-pw", PROMPT, "client-SECRET-key"]:
        assert s not in text, f"{s!r} leaked"


def test_health_endpoints(gw):
    assert requests.get(gw.url + "/health", timeout=5).json() == {"status": "ok", "version": "0.1.0"}
    assert requests.get(gw.url + "/health/live", timeout=5).status_code == 200
    assert requests.get(gw.url + "/health/ready", timeout=5).status_code == 200
    prov = requests.get(gw.url + "/health/providers", timeout=5).json()["providers"]
    assert prov["openai"]["healthy"] is True
    peer = prov["openai"]["peers"][0]
    assert peer["healthy"] is True and peer["base_url"].endswith("/v1")


def test_ready_is_503_when_no_provider_has_a_healthy_peer(start_gateway):
    g = start_gateway(provider_config(f"http://127.0.0.1:{free_port()}"), wait="live")
    r = requests.get(g.url + "/health/ready", timeout=5)
    assert r.status_code == 503
    assert requests.get(g.url + "/health/live", timeout=5).status_code == 200


def test_config_check_and_logs_never_show_a_secret(mock, start_gateway, tmp_path):
    g = start_gateway(secret_config(mock), env=SECRETS)
    r = requests.get(g.url + "/config", timeout=5)
    assert r.status_code == 200
    shown = r.json()
    assert shown["providers"]["openai"]["api_key"] == "[REDACTED]"
    assert shown["cache"]["redis_url"] == "redis://[REDACTED]@127.0.0.1:6399"
    assert_no_secret(r.text)
    # A full scenario: a good request with a prompt, a client key, a bad access key, an upstream error.
    assert g.chat(content=PROMPT, headers={"Authorization": "Bearer client-SECRET-key"}).status_code == 200
    hit = g.chat(content=PROMPT, headers={"Authorization": "Bearer client-SECRET-key"})
    assert hit.headers["x-gateway-cache"] == "HIT"
    assert g.chat(content=PROMPT, headers={"X-API-Key": "client-SECRET-key"}).status_code == 401
    mock.faults({"status": 500, "count": -1})
    assert g.chat(content=PROMPT + " uncached").status_code == 502
    g.stop()
    assert_no_secret(g.logs())
    check = subprocess.run([str(GATEWAY_BIN), "--check", "--config", str(g.config_path)], env={**g.env}, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert_no_secret(check.stdout + check.stderr)


def test_one_access_log_line_per_request(gw, mock):
    gw.chat(content=PROMPT, headers={"x-request-id": "log-test-1", "Authorization": "Bearer client-SECRET-key"})
    requests.get(gw.url + "/health", headers={"x-request-id": "log-test-2"}, timeout=5)
    gw.stop()
    lines = gw.access_logs()
    chat = [r for r in lines if r.get("request_id") == "log-test-1"]
    assert len(chat) == 1
    rec = chat[0]
    for field in ["time", "level", "request_id", "method", "route", "status", "duration_ms", "provider", "model", "peer", "attempts", "cache", "prompt_tokens", "completion_tokens", "key_id"]:
        assert field in rec, field
    assert (rec["method"], rec["route"], rec["status"], rec["provider"], rec["model"], rec["attempts"]) == ("POST", "chat_completions", 200, "openai", "gpt-4o-mini", 1)
    # A plain OpenAI answer relayed as it is still has its tokens counted.
    assert rec["prompt_tokens"] > 0 and rec["completion_tokens"] > 0, rec
    assert len([r for r in lines if r.get("request_id") == "log-test-2"]) == 1
    assert_no_secret(gw.logs())
    for line in gw.log_lines():
        json.loads(line)  # every line is JSON by default
