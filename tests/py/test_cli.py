"""The binary's command line: --check, config errors with exact text, --list-env, startup."""

import json
import os
import subprocess
from pathlib import Path

import requests

from conftest import GATEWAY_BIN, ROOT, Gateway, free_port


def run(args, env=None, config_text=None, tmp_path=None):
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full_env.update(env or {})
    if config_text is not None:
        path = tmp_path / "c.yaml"
        path.write_text(config_text)
        args = ["--config", str(path), *args]
    return subprocess.run([str(GATEWAY_BIN), *args], capture_output=True, text=True, env=full_env, timeout=30)


def test_check_prints_the_redacted_effective_config(tmp_path):
    r = run(["--check"], env={"OPENAI_API_KEY": "sk-check-secret-123"}, config_text=(ROOT / "conf/gateway.yaml").read_text(), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["providers"]["openai"]["api_key"] == "[REDACTED]"
    assert shown["routing"]["strategy"] == "cost_optimized"
    assert "sk-check-secret-123" not in r.stdout + r.stderr


def test_an_invalid_file_exits_2_with_one_line_per_problem(tmp_path):
    text = """
auth:
  mode: sso
  modee: x
cache:
  enabled: maybe
providers:
  openai:
    timeout: abc
"""
    r = run(["--check"], config_text=text, tmp_path=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "auth.modee: unknown field (expected one of: mode, allow_client_keys, require_auth_header, keys, jwt, admin_key, state_file)",
        "auth.mode: expected one of gateway, client, hybrid",
        "providers.openai.timeout: expected a number of milliseconds, got a string",
        "cache.enabled: expected true or false, got a string",
    ], r.stderr


def test_a_bad_environment_variable_is_named(tmp_path):
    r = run(["--check"], env={"GATEWAY_PORT": "eighty"}, config_text="", tmp_path=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "GATEWAY_PORT (overrides server.port): expected a port number from 0 to 65535"


def test_a_missing_file_is_a_clear_error(tmp_path):
    r = run(["--check", "--config", str(tmp_path / "nope.yaml")])
    assert r.returncode == 2
    assert "nope.yaml: cannot read the config file" in r.stderr


def test_every_shipped_config_is_valid():
    for path in sorted((ROOT / "conf").glob("*.yaml")):
        r = run(["--check", "--config", str(path)])
        assert r.returncode == 0, f"{path}: {r.stderr}"


def test_flags_override_environment_and_file(tmp_path):
    r = run(["--check", "--port", "8083"], env={"GATEWAY_PORT": "8082"}, config_text="server: {port: 8081}\n", tmp_path=tmp_path)
    assert json.loads(r.stdout)["server"]["port"] == 8083
    r = run(["--check"], env={"GATEWAY_PORT": "8082"}, config_text="server: {port: 8081}\n", tmp_path=tmp_path)
    assert json.loads(r.stdout)["server"]["port"] == 8082
    r = run(["--check"], config_text="server: {port: 8081}\n", tmp_path=tmp_path)
    assert json.loads(r.stdout)["server"]["port"] == 8081


def test_config_from_gateway_config_variable(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("server: {port: 9123}\n")
    r = run(["--check"], env={"GATEWAY_CONFIG": str(path)})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["server"]["port"] == 9123


def test_list_env_names_every_variable_of_the_spec():
    r = run(["--list-env"])
    names = set(r.stdout.split())
    for name in ["GATEWAY_PORT", "NODE_ENV", "OPENAI_API_KEY", "GEMINI_API_KEY", "CACHE_ENABLED",
                 "RATE_LIMITING_ENABLED", "CORS_ENABLED", "MAX_CONCURRENT_REQUESTS", "REQUEST_TIMEOUT",
                 "HEALTH_CHECK_INTERVAL_MS", "REDIS_URL", "DEBUG"]:
        assert name in names


def test_the_shipped_production_config_starts_and_serves_health():
    """`llm-gateway --config conf/gateway.yaml` starts even with no network and no keys."""
    g = Gateway((ROOT / "conf/gateway.yaml").read_text())
    try:
        assert requests.get(g.url + "/health", timeout=5).json()["status"] == "ok"
        assert requests.get(g.url + "/health/live", timeout=5).status_code == 200
    finally:
        g.stop()


def test_health_probe_flag():
    g = Gateway("")
    try:
        ok = subprocess.run([str(GATEWAY_BIN), "--health-probe", g.url + "/health/live"], timeout=10)
        assert ok.returncode == 0
    finally:
        g.stop()
    bad = subprocess.run([str(GATEWAY_BIN), "--health-probe", f"http://127.0.0.1:{free_port()}/health/live"], timeout=10)
    assert bad.returncode == 1
