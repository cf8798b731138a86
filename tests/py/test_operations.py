"""Operations (SPEC §2, §8): metrics, logs, SIGHUP reload, SIGTERM drain, TLS listener."""

import json
import re
import signal
import ssl
import subprocess
import threading
import time

import pytest
import requests

from conftest import provider_config


def metric(text, name, **labels):
    """The value of one sample in Prometheus text, 0 when absent."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        m = re.match(r"^([a-z_:]+)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def test_metrics_names_and_movement(gw, mock):
    text = requests.get(gw.url + "/metrics", timeout=5).text
    for name in ["gateway_requests_total", "gateway_request_duration_seconds", "gateway_provider_requests_total",
                 "gateway_cache_hits_total", "gateway_errors_total"]:
        assert f"# TYPE {name} " in text, name
    before = requests.get(gw.url + "/metrics", timeout=5).text
    assert gw.chat().status_code == 200
    assert gw.chat(model="gemini-2.0-flash").status_code == 200
    assert gw.chat(model="nope").status_code == 404
    with requests.post(gw.url + "/v1/chat/completions", stream=True, timeout=10, json={
        "model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "count my tokens"}]}) as r:
        events = [line for line in r.iter_lines() if line.startswith(b"data: ")]
    assert all(b'"usage"' not in e for e in events), "the usage chunk the gateway asked for is not shown to the client"
    after = requests.get(gw.url + "/metrics", timeout=5).text
    d = lambda name, **l: metric(after, name, **l) - metric(before, name, **l)
    assert d("gateway_requests_total", route="chat_completions", status="200") == 3
    assert d("gateway_requests_total", route="chat_completions", status="404") == 1
    assert d("gateway_errors_total", route="chat_completions", kind="model_not_found") == 1
    assert d("gateway_provider_requests_total", provider="openai", model="gpt-4o-mini", status="200") == 2
    assert d("gateway_provider_requests_total", provider="gemini", model="gemini-2.0-flash", status="200") == 1
    assert d("gateway_tokens_total", provider="openai", model="gpt-4o-mini", kind="completion") > 0
    assert d("gateway_tokens_total", provider="gemini", model="gemini-2.0-flash", kind="prompt") > 0
    assert d("gateway_request_duration_seconds_count", route="chat_completions") == 4
    assert d("gateway_upstream_latency_seconds_count", provider="openai") == 2
    assert d("gateway_overhead_seconds_count", route="chat_completions") == 4
    assert d("gateway_time_to_first_token_seconds_count", provider="openai") == 2
    assert metric(after, "gateway_peer_healthy", provider="openai") == 1
    assert "gateway_inflight_requests 0" in after


def test_unconfigured_model_names_do_not_become_labels(gw):
    for i in range(5):
        gw.chat(model=f"openai/custom-{i}")
    text = requests.get(gw.url + "/metrics", timeout=5).text
    assert "custom-" not in text


def test_server_timing_reports_gateway_time(gw):
    r = gw.chat()
    m = re.match(r"gateway;dur=([\d.]+), upstream;dur=([\d.]+)", r.headers["server-timing"])
    assert m and float(m.group(1)) >= 0 and float(m.group(2)) > 0


def test_auth_failures_are_logged_and_counted(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": "gateway", "require_auth_header": True, "keys": [{"id": "ops", "key": "ops-access-key-1"}]}
    g = start_gateway(cfg)
    assert g.chat(headers={"X-API-Key": "wrong-key-zz"}).status_code == 401
    assert g.chat().status_code == 401
    text = requests.get(g.url + "/metrics", headers={"X-API-Key": "ops-access-key-1"}, timeout=5).text
    assert metric(text, "gateway_auth_failures_total", reason="invalid") == 1
    assert metric(text, "gateway_auth_failures_total", reason="missing") == 1
    warn = [json.loads(l) for l in g.log_lines() if '"gateway:auth"' in l]
    assert any("sha256 prefix" in w["message"] and "127.0.0.1" in w["message"] and w["level"] == "warn" for w in warn)
    assert "wrong-key-zz" not in g.logs()


def test_node_env_development_gives_debug_text_logs(mock, start_gateway):
    g = start_gateway(provider_config(mock.url), env={"NODE_ENV": "development"})
    g.chat()
    lines = g.log_lines()
    assert any(" DEBUG " in l for l in lines), "debug level"
    assert not any(l.startswith("{") for l in lines), "text format"


def test_debug_targets_enable_one_component(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": "hybrid", "keys": [{"id": "dbg", "key": "dbg-key"}]}
    g = start_gateway(cfg, env={"DEBUG": "gateway:auth"})
    g.chat(headers={"X-API-Key": "dbg-key"})
    debug = [json.loads(l) for l in g.log_lines() if '"level":"debug"' in l]
    assert debug and all(d["target"] == "gateway:auth" for d in debug)
    g2 = start_gateway(provider_config(mock.url), env={"DEBUG": "gateway:cache"})
    g2.chat()
    assert not [l for l in g2.log_lines() if '"level":"debug"' in l and "gateway:auth" in l]


def test_file_output_and_reopen_on_sigusr1(mock, start_gateway, tmp_path):
    log_file = tmp_path / "access.log"
    cfg = provider_config(mock.url)
    cfg["logging"] = {"output": "file", "file": str(log_file), "format": "json"}
    g = start_gateway(cfg)
    g.chat(headers={"x-request-id": "before-rotate"})
    rotated = tmp_path / "access.log.1"
    log_file.rename(rotated)
    g.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    g.chat(headers={"x-request-id": "after-rotate"})
    time.sleep(0.2)
    assert "before-rotate" in rotated.read_text()
    assert "after-rotate" in log_file.read_text()


def test_sighup_reloads_keys_and_rejects_a_bad_file(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": "gateway", "require_auth_header": True, "keys": [{"id": "old", "key": "old-key"}]}
    g = start_gateway(cfg)
    assert g.chat(headers={"X-API-Key": "old-key"}).status_code == 200
    # Hold a slow request open across the reload: it must complete.
    mock.faults({"delay_ms": 1500})
    slow = {}
    t = threading.Thread(target=lambda: slow.setdefault("r", g.chat(headers={"X-API-Key": "old-key"})))
    t.start()
    time.sleep(0.3)
    cfg["auth"]["keys"] = [{"id": "old", "key": "old-key"}, {"id": "new", "key": "new-key"}]
    cfg["providers"]["openai"]["api_key"] = "rotated-provider-key"
    g.config_path.write_text(json.dumps(cfg))
    g.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and g.chat(headers={"X-API-Key": "new-key"}).status_code != 200:
        time.sleep(0.1)
    assert g.chat(headers={"X-API-Key": "new-key"}).status_code == 200
    assert mock.requests()[-1]["headers"]["authorization"] == "Bearer rotated-provider-key"
    t.join(10)
    assert slow["r"].status_code == 200, "an in-flight request survives the reload"
    # A broken file is rejected and the running config stays.
    g.config_path.write_text("auth:\n  mode: sso\n")
    g.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert g.proc.poll() is None
    assert g.chat(headers={"X-API-Key": "new-key"}).status_code == 200
    assert any("reload rejected" in l and "auth.mode" in l for l in g.log_lines())
    text = requests.get(g.url + "/metrics", headers={"X-API-Key": "new-key"}, timeout=5).text
    assert metric(text, "gateway_config_reloads_total", result="rejected") == 1
    assert metric(text, "gateway_config_reloads_total", result="ok") == 1


def test_sigterm_drains_a_stream_in_flight(mock, start_gateway):
    mock.configure(chunk_delay_ms=150, chunks=10)
    g = start_gateway(provider_config(mock.url))
    events = []
    started = threading.Event()

    def client():
        with requests.post(g.url + "/v1/chat/completions", stream=True, timeout=30, json={
            "model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "a slow stream to drain"}]}) as r:
            for line in r.iter_lines():
                if line.startswith(b"data: "):
                    events.append(line[6:])
                    started.set()

    t = threading.Thread(target=client)
    t.start()
    assert started.wait(10)
    g.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert events[-1] == b"[DONE]", "the stream was received whole"
    assert g.proc.wait(30) == 0
    # No new connections after the signal.
    with pytest.raises(requests.ConnectionError):
        requests.get(g.url + "/health", timeout=2)


def test_tls_listener_with_a_verified_certificate(mock, start_gateway, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    cfg = provider_config(mock.url)
    cfg["server"] = {"tls": {"cert": str(cert), "key": str(key)}}
    g = start_gateway(cfg, wait=None)
    url = f"https://localhost:{g.port}"
    deadline = time.time() + 15
    while True:
        try:
            r = requests.get(url + "/health", verify=str(cert), timeout=2)
            break
        except requests.RequestException:
            assert time.time() < deadline, g.logs()
            time.sleep(0.1)
    assert r.status_code == 200
    r = requests.post(url + "/v1/chat/completions", verify=str(cert), timeout=10,
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "over tls"}]})
    assert r.json()["choices"][0]["message"]["content"] == "Mock reply to: over tls"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/health", timeout=2)  # an unverified certificate is refused by a verifying client
    # HTTP/2 for clients that negotiate it.
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    import socket
    with socket.create_connection(("127.0.0.1", g.port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == "h2"


@pytest.mark.parametrize("work_stealing", [False, True])
def test_two_worker_threads_in_either_runtime_answer_each_request_its_own(mock, start_gateway, work_stealing):
    """`server.threads: 2` with per-thread runtimes (the default) or work stealing: concurrent
    requests, plain and streamed, OpenAI and Gemini-translated, each get their own answer."""
    mock.configure(chunk_delay_ms=5, chunks=5)
    cfg = provider_config(mock.url, server={"threads": 2, "work_stealing": work_stealing})
    g = start_gateway(cfg)
    results = {}

    def one(i):
        model = "gemini-2.0-flash" if i % 2 else "gpt-4o-mini"
        body = {"model": model, "stream": i % 3 == 0, "messages": [{"role": "user", "content": f"request {i}"}]}
        r = requests.post(g.url + "/v1/chat/completions", json=body, timeout=30)
        if body["stream"]:
            text = "".join(
                json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                for line in r.text.splitlines()
                if line.startswith("data: {") and json.loads(line[6:])["choices"]
            )
        else:
            text = r.json()["choices"][0]["message"]["content"]
        results[i] = (r.status_code, text)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert len(results) == 40
    for i, (status, text) in results.items():
        assert status == 200, (i, status, text)
        assert re.search(rf"request {i}\b", text), (i, text)
    m = requests.get(g.url + "/metrics", timeout=5).text
    assert metric(m, "gateway_requests_total", route="chat_completions", status="200") == 40
