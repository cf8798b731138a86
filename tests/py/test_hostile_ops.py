"""Hostile operations: an operator's mistakes and an unlucky infrastructure, on the real binaries.

- A secret pasted into the wrong config field (or environment variable) never reaches stdout,
  stderr or the logs, on `--check`, at start or on a SIGHUP reload (issue 18, item 8).
- A Redis restart never makes a request wait beyond the Redis bounds (item 15).
- A peer that accepts connections but refuses every request is taken out by the HTTP health
  check (item 17).
"""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import GATEWAY_BIN, provider_config

# Looks like an OpenAI key on purpose: this is what an operator pastes into the wrong field.
SECRET = "sk-proj-hostile0ps5ecretVa1ue9f3e"


def run_gateway(args, config_text, tmp_path, env=None, timeout=30):
    """Runs the binary once with a config file and returns the finished process."""
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text)
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full_env.update(env or {})
    return subprocess.run(
        [str(GATEWAY_BIN), "--config", str(path), *args],
        capture_output=True, text=True, env=full_env, timeout=timeout,
    )


# (file text, environment, the field path its error must name)
MISPLACED = [
    (f'providers:\n  openai:\n    timeout: "{SECRET}"\n', {}, "providers.openai.timeout"),
    (f'auth:\n  mode: "{SECRET}"\n', {}, "auth.mode"),
    (f'providers:\n  openai:\n    base_url: "{SECRET}"\n', {}, "providers.openai.base_url"),
    (f'providers:\n  gemini:\n    base_url: "https://{SECRET}@gemini.example/v1beta"\n', {},
     "providers.gemini.base_url"),
    (f'providers:\n  openai:\n    base_url: "https://api.example:{SECRET}/v1"\n', {},
     "providers.openai.base_url"),
    (f'providers:\n  openai:\n    ca_file: "/nonexistent/{SECRET}.pem"\n', {}, "providers.openai.ca_file"),
    (f'cache:\n  enabled: "{SECRET}"\n', {}, "cache.enabled"),
    (f'logging:\n  level: "{SECRET}"\n', {}, "logging.level"),
    (f'routing:\n  models:\n    fast: ["{SECRET}"]\n', {}, "routing.models.fast[0]"),
    (f'pricing:\n  openai/gpt-4o: {{ input: "{SECRET}" }}\n', {}, "pricing.openai/gpt-4o.input"),
    ("", {"REQUEST_TIMEOUT": SECRET}, "server.request_timeout"),
    ("", {"GATEWAY_PORT": SECRET}, "server.port"),
    ("", {"MAX_CONCURRENT_REQUESTS": SECRET}, "server.max_concurrent_requests"),
    ("", {"HEALTH_CHECK_INTERVAL_MS": SECRET}, "routing.health_check_interval_ms"),
    ("", {"CACHE_ENABLED": SECRET}, "cache.enabled"),
    ("", {"LOG_LEVEL": SECRET}, "logging.level"),
]


@pytest.mark.parametrize("mode", ["--check", "start"])
@pytest.mark.parametrize("text,env,field", MISPLACED, ids=[m[2] + ("(env)" if m[1] else "") for m in MISPLACED])
def test_a_misplaced_secret_is_never_printed(tmp_path, mode, text, env, field):
    args = ["--check"] if mode == "--check" else []
    r = run_gateway(args, text, tmp_path, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 2, f"an invalid config must be refused with exit 2 ({mode}), got {r.returncode}:\n{out}"
    assert SECRET not in out, f"the value of {field} was printed ({mode}):\n{out}"
    # No fragment of it either (a truncated or quoted echo is as bad as the whole).
    assert SECRET[8:24] not in out, f"part of the value of {field} was printed ({mode}):\n{out}"
    assert field in out, f"the error must name the field path {field} ({mode}):\n{out}"


def test_a_reload_with_a_misplaced_secret_logs_no_secret(mock, start_gateway):
    gw = start_gateway(provider_config(mock.url))
    text = gw.config_path.read_text()
    cfg = json.loads(text)
    cfg["providers"]["openai"]["timeout"] = SECRET
    cfg["auth"]["mode"] = SECRET
    gw.config_path.write_text(json.dumps(cfg))
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and "reload rejected" not in gw.logs():
        time.sleep(0.05)
    logs = gw.logs()
    assert "reload rejected" in logs, f"the invalid reload must be logged:\n{logs}"
    assert "providers.openai.timeout" in logs and "auth.mode" in logs, f"the reload errors must name the fields:\n{logs}"
    assert SECRET not in logs, f"a rejected reload logged the misplaced value:\n{logs}"
    assert gw.chat().status_code == 200, "the running config is kept after a rejected reload"
