"""Test harness: real binaries on real sockets.

`mock_provider()` starts the bundled mock provider (port 0, port read from its first line);
`gateway(config)` writes a config file and starts the real `llm-gateway` binary on a free
port, waiting until it serves. Both are stopped at the end of the test.

Every test runs under the secret scanner (`secrets_scan.py`): any configured secret or client
key in a byte received from a gateway, or in a gateway's logs, fails the test that was running
(`LLM_GATEWAY_SECRET_SCAN=0` switches it off).
"""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

import secrets_scan

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("LLM_GATEWAY_BIN_DIR", ROOT / "target" / "debug"))
GATEWAY_BIN = Path(os.environ.get("LLM_GATEWAY_BIN", BIN_DIR / "llm-gateway"))
MOCK_BIN = BIN_DIR / "mock-provider"
SCAN = secrets_scan.install() if os.environ.get("LLM_GATEWAY_SECRET_SCAN", "1") != "0" else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mock:
    """A running mock provider and its control API."""

    def __init__(self, *args, port=0):
        assert MOCK_BIN.exists(), f"{MOCK_BIN} is missing: build it first (cargo build)"
        self.args = list(args)
        self.proc = subprocess.Popen(
            [str(MOCK_BIN), "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert "listening on" in line, f"mock provider did not start: {line!r}"
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path):
        return requests.get(self.url + path, timeout=10).json()

    def post(self, path, body=None):
        return requests.post(self.url + path, json=body or {}, timeout=10)

    def requests(self):
        return self.get("/_mock/requests")["requests"]

    def stats(self):
        return self.get("/_mock/stats")

    def faults(self, *faults):
        r = self.post("/_mock/faults", {"faults": list(faults)})
        assert r.status_code == 200, r.text

    def configure(self, **kw):
        r = self.post("/_mock/config", kw)
        assert r.status_code == 200, r.text

    def release(self):
        self.post("/_mock/release")

    def reset(self):
        self.post("/_mock/reset")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Gateway:
    """A running llm-gateway process with a config written for the test."""

    def __init__(self, config, env=None, args=(), wait="live", port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="gw-")
        self.config_path = Path(self.dir) / "gateway.yaml"
        self.log_path = Path(self.dir) / "gateway.log"
        text = config if isinstance(config, str) else json.dumps(config)
        self.config_path.write_text(text)
        self.env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
        self.env.update(env or {})
        self.env.setdefault("GATEWAY_PORT", str(self.port))
        self.env["GATEWAY_HOST"] = "127.0.0.1"
        self.args = list(args)
        self.url = f"http://127.0.0.1:{self.port}"
        self.start(wait)

    def ports(self):
        """Every port this gateway may listen on (the test's, an env or flag override)."""
        ports = {self.port}
        if str(self.env.get("GATEWAY_PORT", "")).isdigit():
            ports.add(int(self.env["GATEWAY_PORT"]))
        for flag, value in zip(self.args, self.args[1:]):
            if flag == "--port" and str(value).isdigit():
                ports.add(int(value))
        return ports

    def start(self, wait="live"):
        if SCAN is not None:
            SCAN.gateway_started(self, self.ports(), self.log_path)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(GATEWAY_BIN), "--config", str(self.config_path), *self.args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        if wait:
            self.wait(wait)

    def wait(self, what="live", timeout=20):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                r = requests.get(f"{self.url}/health/{what}", timeout=1)
                if r.status_code == 200:
                    return
                last = r.status_code
            except requests.RequestException as e:
                last = e
            time.sleep(0.05)
        raise AssertionError(f"gateway not {what} after {timeout}s ({last}):\n{self.logs()}")

    def logs(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self):
        return [line for line in self.logs().splitlines() if line.strip()]

    def access_logs(self):
        out = []
        for line in self.log_lines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("target") == "gateway:access":
                out.append(rec)
        return out

    def chat(self, model="gpt-4o-mini", content="hello", headers=None, **extra):
        body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        return requests.post(f"{self.url}/v1/chat/completions", json=body, headers=headers or {}, timeout=30)

    def stop(self, sig=signal.SIGTERM, timeout=40):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if SCAN is not None:
            SCAN.gateway_stopped(self)


ENV_NAMES = {
    "GATEWAY_CONFIG", "GATEWAY_HOST", "GATEWAY_PORT", "NODE_ENV", "GATEWAY_ENV", "OPENAI_API_KEY",
    "GEMINI_API_KEY", "CACHE_ENABLED", "RATE_LIMITING_ENABLED", "CORS_ENABLED",
    "MAX_CONCURRENT_REQUESTS", "REQUEST_TIMEOUT", "HEALTH_CHECK_INTERVAL_MS", "REDIS_URL", "DEBUG",
    "LOG_LEVEL", "LOG_FORMAT",
    # Tracing (SPEC §15): a developer's own collector settings must not reach a test gateway.
    "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
}


def provider_config(mock_url, openai_key="gw-openai-key", gemini_key="gw-gemini-key", **extra):
    """A config whose providers are the given mock, as a dict to tweak and pass to Gateway."""
    cfg = {
        "auth": {"mode": "hybrid"},
        "providers": {
            "openai": {"base_url": f"{mock_url}/v1", "timeout": 5000, "retry_count": 1},
            "gemini": {"base_url": f"{mock_url}/v1beta", "timeout": 5000, "retry_count": 1},
        },
        "routing": {"strategy": "round_robin", "health_check_interval_ms": 500},
        "logging": {"level": "info", "format": "json"},
        # Off unless a test is about the cache: identical test requests would hit it.
        "cache": {"enabled": False},
    }
    if openai_key:
        cfg["providers"]["openai"]["api_key"] = openai_key
    if gemini_key:
        cfg["providers"]["gemini"]["api_key"] = gemini_key
    for section, values in extra.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Bytes and log lines are charged to the test running when the scanner sees them."""
    if SCAN is not None:
        SCAN.current_test = item.nodeid
    yield
    if SCAN is not None:
        SCAN.current_test = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """After a test's teardown: scan the logs of the gateways still running, fail on a leak."""
    outcome = yield
    if SCAN is None or call.when != "teardown":
        return
    rep = outcome.get_result()
    SCAN.poll()
    leaks = SCAN.take(item.nodeid)
    if leaks:
        text = "a configured secret or client key left the gateway:\n" + SCAN.describe(leaks)
        rep.outcome = "failed"
        if rep.longrepr:
            rep.sections.append(("secret scanner", text))
        else:
            rep.longrepr = text


def pytest_sessionfinish(session, exitstatus):
    """Whatever was found outside a test's report (or after it) fails the session, named."""
    if SCAN is None:
        return
    SCAN.close()
    leaks = SCAN.take(everything=True)
    if leaks:
        session.config._secret_scan_leaks = SCAN.describe(leaks)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if SCAN is None:
        return
    leaks = getattr(config, "_secret_scan_leaks", None)
    if leaks:
        terminalreporter.section("secret scanner: leaks found outside a test report", red=True)
        terminalreporter.line(leaks)
    terminalreporter.line(SCAN.summary())


@pytest.fixture
def mock():
    m = Mock()
    yield m
    m.stop()


@pytest.fixture
def start_mock():
    started = []

    def start(*args, **kw):
        m = Mock(*args, **kw)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


@pytest.fixture
def start_gateway():
    started = []

    def start(config, **kw):
        g = Gateway(config, **kw)
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@pytest.fixture
def gw(mock, start_gateway):
    """A gateway in hybrid mode in front of one mock provider."""
    return start_gateway(provider_config(mock.url))


@pytest.fixture
def gw_gateway_mode(mock, start_gateway):
    """A gateway in `gateway` auth mode: SDK clients' placeholder keys are ignored."""
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": "gateway"}
    return start_gateway(cfg)


class RedisServer:
    """A real redis-server on a free port, owned by the test."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}"
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.cli("PING").strip() == "PONG":
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=5)
        return r.stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_redis():
    started = []

    def start(port=None):
        r = RedisServer(port)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()
