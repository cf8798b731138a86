"""SPEC §4 errors: OpenAI-shaped, right status, and the next request still works."""

import json
import socket

import requests

from conftest import free_port, provider_config


def assert_openai_error(r, status):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["message"]
    return err


def test_each_error_then_a_good_request(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["server"] = {"max_body_bytes": 100_000}
    cfg["auth"] = {"mode": "hybrid", "keys": [{"id": "k", "key": "good-key"}]}
    g = start_gateway(cfg)
    url = g.url + "/v1/chat/completions"
    s = requests.Session()

    def good():
        r = s.post(url, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ok"}]}, timeout=10)
        assert r.status_code == 200, r.text

    assert_openai_error(s.post(url, data=b"{not json", timeout=10), 400)
    good()
    err = assert_openai_error(s.post(url, json={"messages": []}, timeout=10), 400)
    assert err["param"] == "model"
    good()
    assert_openai_error(requests.post(url, data=b"x" * 200_000, timeout=10), 413)
    good()
    err = assert_openai_error(s.post(url, json={"model": "no-such-model", "messages": []}, timeout=10), 404)
    assert err["code"] == "model_not_found"
    good()
    assert_openai_error(s.post(url, headers={"X-API-Key": "bad"}, json={"model": "gpt-4o-mini", "messages": []}, timeout=10), 401)
    good()
    assert_openai_error(s.get(g.url + "/nope", timeout=10), 404)
    good()


def test_upstream_down_is_502_with_the_last_error(start_gateway):
    dead = free_port()
    cfg = provider_config(f"http://127.0.0.1:{dead}")
    g = start_gateway(cfg)
    r = g.chat()
    err = assert_openai_error(r, 502)
    assert "failed" in err["message"]


def test_upstream_error_status_is_returned_for_4xx(gw, mock):
    mock.faults({"status": 400, "body": json.dumps({"error": {"message": "bad thing", "type": "invalid_request_error", "param": None, "code": None}})})
    r = gw.chat()
    err = assert_openai_error(r, 400)
    assert err["message"] == "bad thing"
    assert gw.chat().status_code == 200


def test_all_attempts_failing_is_502_carrying_the_upstream_message(gw, mock):
    mock.faults({"status": 500, "count": -1})
    err = assert_openai_error(gw.chat(), 502)
    assert "mock fault 500" in err["message"]
    mock.reset()
    assert gw.chat().status_code == 200


def test_upstream_timeout_is_504(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["providers"]["openai"].update({"timeout": 300, "retry_count": 0})
    g = start_gateway(cfg)
    mock.faults({"delay_ms": 3000})
    err = assert_openai_error(g.chat(), 504)
    assert "timed out" in err["message"].lower()
    assert g.chat().status_code == 200


def test_request_ids_are_echoed_or_generated(gw):
    r = gw.chat(headers={"x-request-id": "my-trace-123"})
    assert r.headers["x-request-id"] == "my-trace-123"
    r2 = gw.chat()
    assert len(r2.headers["x-request-id"]) >= 16 and r2.headers["x-request-id"] != "my-trace-123"
    assert r2.headers["x-gateway-provider"] == "openai"
    assert r2.headers["x-gateway-model"] == "gpt-4o-mini"
    # Errors carry the id too.
    r3 = requests.get(gw.url + "/nope", headers={"x-request-id": "err-1"}, timeout=5)
    assert r3.headers["x-request-id"] == "err-1"


def test_the_process_survives_garbage(gw):
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"\x00\x01garbage\r\n\r\n")
        s.settimeout(2)
        try:
            s.recv(100)
        except OSError:
            pass
    assert gw.chat().status_code == 200
