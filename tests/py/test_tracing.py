"""OpenTelemetry traces (SPEC §15, issue 17): a real OTLP/HTTP receiver in the test decodes the
gateway's ExportTraceServiceRequest bodies (opentelemetry-proto) beside the mock provider.

Proven here: one server span per request and one client span per upstream attempt, with the
GenAI attribute names; the trace continued from the client's traceparent and carried on to the
provider (what the mock received); failover as two client spans; cache hits and rate-limit
refusals as events; no key and no prompt in any exported byte; a collector that is down or
slow changes no request's outcome, and its drops are counted in /metrics.
"""

import http.server
import re
import socket
import threading
import time

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conftest import free_port, provider_config

SERVER, CLIENT = 2, 3  # Span.SpanKind values
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
PROMPT = "the-confidential-prompt-text"
ACCESS_KEY = "team-a-access-secret"


class Receiver:
    """An OTLP/HTTP traces endpoint: decodes every export, optionally answering late."""

    def __init__(self, delay=0.0):
        self.requests = []  # (headers, raw body, ExportTraceServiceRequest)
        self.delay = delay
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                with outer.lock:
                    outer.requests.append((dict(self.headers), body, req, self.path))
                if outer.delay:
                    time.sleep(outer.delay)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self):
        out = []
        with self.lock:
            for _, _, req, _ in self.requests:
                for rs in req.resource_spans:
                    resource = attrs(rs.resource.attributes)
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            out.append((resource, s))
        return out

    def raw(self):
        with self.lock:
            return b"".join(body for _, body, _, _ in self.requests)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def mock(start_mock):
    return start_mock()


def traced(mock_url, endpoint, **tracing):
    cfg = provider_config(mock_url)
    cfg["tracing"] = {"otlp_endpoint": endpoint, "service_name": "gw-under-test",
                      "batch_delay_ms": 50, **tracing}
    return cfg


def wait_spans(receiver, n, trace_id=None, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        spans = [s for _, s in receiver.spans() if trace_id is None or s.trace_id.hex() == trace_id]
        if len(spans) >= n:
            return spans
        time.sleep(0.05)
    raise AssertionError(f"expected {n} spans, got {len(spans)}: {[s.name for s in spans]}")


def chats(mock):
    """What the mock received on the chat route (health checks left out)."""
    return [r for r in mock.requests() if r["path"].endswith("/chat/completions")]


def metric(g, name, labels):
    text = requests.get(g.url + "/metrics", timeout=5).text
    m = re.search(re.escape(name) + r"\{" + re.escape(labels) + r"\} (\S+)", text)
    return float(m.group(1)) if m else None


def test_spans_continue_the_client_trace_to_the_provider(mock, receiver, start_gateway):
    cfg = traced(mock.url, receiver.url)
    cfg["auth"] = {"mode": "hybrid", "keys": [{"id": "team-a", "key": ACCESS_KEY}]}
    g = start_gateway(cfg)
    r = g.chat(content=PROMPT, max_tokens=7, headers={
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
        "tracestate": "vendor=abc",
        "X-API-Key": ACCESS_KEY,
    })
    assert r.status_code == 200, r.text
    answer = r.json()
    spans = wait_spans(receiver, 2, TRACE_ID)
    assert len(spans) == 2, f"one server and one client span: {[s.name for s in spans]}"
    server = next(s for s in spans if s.kind == SERVER)
    client = next(s for s in spans if s.kind == CLIENT)

    # Parent/child links: client traceparent -> server span -> client span -> provider.
    assert server.parent_span_id.hex() == PARENT_ID, "the server span continues the client's span"
    assert client.parent_span_id == server.span_id, "the attempt is a child of the server span"
    seen = chats(mock)[-1]["headers"]
    assert seen["traceparent"] == f"00-{TRACE_ID}-{client.span_id.hex()}-01", \
        "the provider gets the trace id and the attempt's span id"
    assert seen["tracestate"] == "vendor=abc", "tracestate is carried on"

    assert server.name == "chat gpt-4o-mini" and client.name == "chat gpt-4o-mini", \
        "GenAI span names: {operation} {model}"
    sa, ca = attrs(server.attributes), attrs(client.attributes)
    usage = answer["usage"]
    for a in (sa, ca):
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == "gpt-4o-mini"
        assert a["gen_ai.response.model"] == answer["model"]
        assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
        assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
        assert a["gen_ai.response.finish_reasons"] == [answer["choices"][0]["finish_reason"]]
        assert a["http.response.status_code"] == 200
        assert a["gateway.time_to_first_token"] > 0
    assert sa["gen_ai.request.max_tokens"] == 7
    assert sa["gateway.key_id"] == "team-a"
    assert sa["gateway.attempts"] == 1 and sa["gateway.cache"] == "BYPASS"
    assert sa["gateway.request_id"] == r.headers["x-request-id"]
    assert ca["gateway.attempt"] == 1
    assert ca["gateway.peer"] == f"127.0.0.1:{mock.port}"
    assert ca["server.address"] == "127.0.0.1" and ca["server.port"] == mock.port
    resource = receiver.spans()[0][0]
    assert resource["service.name"] == "gw-under-test"

    raw = receiver.raw()
    for secret in (PROMPT, ACCESS_KEY, "gw-openai-key"):
        assert secret.encode() not in raw, f"{secret!r} must not reach the collector"


def test_a_new_trace_starts_without_a_client_traceparent(mock, receiver, start_gateway):
    g = start_gateway(traced(mock.url, receiver.url))
    assert g.chat().status_code == 200
    spans = wait_spans(receiver, 2)
    server = next(s for s in spans if s.kind == SERVER)
    assert server.parent_span_id == b"", "a root span"
    seen = chats(mock)[-1]["headers"]["traceparent"]
    assert seen.split("-")[1] == server.trace_id.hex()


def test_failover_shows_one_client_span_per_attempt(start_mock, receiver, start_gateway):
    a, b = start_mock(), start_mock()
    cfg = traced(a.url, receiver.url)
    cfg["providers"]["openai"]["endpoints"] = [{"base_url": f"{b.url}/v1"}]
    g = start_gateway(cfg)
    a.faults({"status": 503, "count": -1, "path_contains": "/chat/completions"})
    r = None
    for i in range(4):
        r = g.chat(headers={"traceparent": f"00-{TRACE_ID[:-2]}{i:02x}-{PARENT_ID}-01"})
        assert r.status_code == 200, r.text
        if r.headers["x-gateway-attempts"] == "2":
            trace_id = f"{TRACE_ID[:-2]}{i:02x}"
            break
    else:
        pytest.fail("round robin sent no request to the failing peer first")
    spans = wait_spans(receiver, 3, trace_id)
    server = next(s for s in spans if s.kind == SERVER)
    clients = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: attrs(s.attributes)["gateway.attempt"])
    assert len(clients) == 2, "the failed attempt and the one that answered"
    first, second = (attrs(c.attributes) for c in clients)
    assert all(c.parent_span_id == server.span_id for c in clients)
    assert first["gateway.peer"] == f"127.0.0.1:{a.port}" and second["gateway.peer"] == f"127.0.0.1:{b.port}"
    assert first["http.response.status_code"] == 503 and first["error.type"] == "503"
    assert clients[0].status.code == 2, "the failed attempt's status is ERROR"
    assert second["http.response.status_code"] == 200 and "error.type" not in second
    assert attrs(server.attributes)["gateway.attempts"] == 2
    # Each provider saw the span of its own attempt.
    assert chats(a)[-1]["headers"]["traceparent"] == f"00-{trace_id}-{clients[0].span_id.hex()}-01"
    assert chats(b)[-1]["headers"]["traceparent"] == f"00-{trace_id}-{clients[1].span_id.hex()}-01"


def test_cache_hits_and_rate_limits_are_events(mock, receiver, start_gateway):
    cfg = traced(mock.url, receiver.url)
    cfg["cache"] = {"enabled": True}
    cfg["security"] = {"rate_limit_rpm": 3}
    g = start_gateway(cfg)
    codes = []
    for i in range(4):
        r = g.chat(content="same question", headers={"traceparent": f"00-{TRACE_ID[:-2]}{i:02x}-{PARENT_ID}-01"})
        codes.append(r.status_code)
    assert codes == [200, 200, 200, 429]
    assert len(chats(mock)) == 1, "two answers from the cache, one refusal"
    hit = wait_spans(receiver, 1, f"{TRACE_ID[:-2]}01")
    assert [s.kind for s in hit] == [SERVER], "a cache hit makes no upstream attempt"
    assert [e.name for e in hit[0].events] == ["gateway.cache.hit"]
    assert attrs(hit[0].attributes)["gateway.cache"] == "HIT"
    refused = wait_spans(receiver, 1, f"{TRACE_ID[:-2]}03")
    assert [s.kind for s in refused] == [SERVER]
    event = refused[0].events[0]
    assert event.name == "gateway.rate_limited" and attrs(event.attributes)["gateway.rate_limit"] == "requests"
    sa = attrs(refused[0].attributes)
    assert sa["http.response.status_code"] == 429 and sa["gateway.attempts"] == 0


def test_prompt_capture_is_a_documented_switch(mock, receiver, start_gateway):
    g = start_gateway(traced(mock.url, receiver.url, capture_content=True))
    assert g.chat(content=PROMPT).status_code == 200
    server = next(s for s in wait_spans(receiver, 2) if s.kind == SERVER)
    assert PROMPT in attrs(server.attributes)["gen_ai.input.messages"]


def test_a_collector_that_is_down_changes_no_answer(mock, start_gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed again at once: connections are refused
    g = start_gateway(traced(mock.url, f"http://127.0.0.1:{dead}"))
    for _ in range(10):
        r = g.chat()
        assert r.status_code == 200 and r.json()["choices"], r.text
    deadline = time.time() + 15
    while time.time() < deadline and not metric(g, "gateway_trace_spans_total", 'result="dropped_export_failed"'):
        time.sleep(0.2)
    assert metric(g, "gateway_trace_spans_total", 'result="dropped_export_failed"') >= 1, \
        "spans the collector never took are counted"
    assert len(chats(mock)) == 10


def test_a_slow_collector_fills_the_queue_and_drops_are_counted(mock, start_gateway):
    slow = Receiver(delay=2.0)
    try:
        g = start_gateway(traced(mock.url, slow.url, max_queue_size=4, max_export_batch_size=2))
        for _ in range(20):
            r = g.chat()
            assert r.status_code == 200 and r.json()["choices"], r.text
        dropped = metric(g, "gateway_trace_spans_total", 'result="dropped_queue_full"')
        assert dropped and dropped >= 10, f"40 spans, at most 4 queued and 2 in export at a time: {dropped} dropped"
    finally:
        slow.stop()


def test_tracing_is_off_by_default(mock, start_gateway):
    g = start_gateway(provider_config(mock.url))
    r = g.chat(headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert r.status_code == 200
    assert "traceparent" not in chats(mock)[-1]["headers"], "no tracing: nothing is propagated"
    assert "gateway_trace_spans_total" not in requests.get(g.url + "/metrics", timeout=5).text


def test_otel_variables_configure_it(mock, receiver, start_gateway):
    g = start_gateway(provider_config(mock.url), env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-token=tok%20en",
        "OTEL_SERVICE_NAME": "from-env",
        "OTEL_TRACES_SAMPLER": "always_on",
    })
    assert g.chat().status_code == 200
    wait_spans(receiver, 2)
    headers, _, _, path = receiver.requests[0]
    headers = {k.lower(): v for k, v in headers.items()}
    assert path == "/v1/traces"
    assert headers["x-collector-token"] == "tok en", "percent-decoded as the OTLP spec says"
    assert headers["content-type"] == "application/x-protobuf"
    assert receiver.spans()[0][0]["service.name"] == "from-env"
    shown = requests.get(g.url + "/config", timeout=5).json()["tracing"]
    assert shown["headers"] == {"x-collector-token": "[REDACTED]"}
    assert shown["otlp_endpoint"] == receiver.url + "/v1/traces"


def test_sampler_off_still_propagates_an_unsampled_trace(mock, receiver, start_gateway):
    g = start_gateway(traced(mock.url, receiver.url, sampler="parentbased_always_off"))
    assert g.chat(headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}).status_code == 200
    seen = chats(mock)[-1]["headers"]["traceparent"]
    assert seen.startswith(f"00-{TRACE_ID}-") and seen.endswith("-00"), seen
    time.sleep(0.3)
    assert receiver.spans() == [], "nothing sampled, nothing exported"
