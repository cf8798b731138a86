"""Deployment files for production Redis (issue 16): the compose file with a TLS-only Redis and
the Kubernetes overlay that takes a `rediss://` URL from a Secret. Rendered and checked with the
real tools (`kubectl kustomize`, the Kubernetes schema, `llm-gateway --check`)."""

import base64
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import GATEWAY_BIN

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAY = DEPLOY / "k8s-managed-redis"


def test_compose_redis_is_tls_only_with_an_acl_user():
    compose = yaml.safe_load((DEPLOY / "docker-compose.redis-tls.yml").read_text())
    gw, redis = compose["services"]["llm-gateway"], compose["services"]["redis"]
    env = dict(e.split("=", 1) for e in gw["environment"])
    assert env["REDIS_URL"].startswith("rediss://gateway:${REDIS_PASSWORD")
    assert "REDIS_ENCRYPTION_KEY" in env
    cmd = redis["command"]
    assert cmd[cmd.index("--port") + 1] == "0", "no plaintext port"
    assert cmd[cmd.index("--tls-port") + 1] == "6379"
    assert cmd[cmd.index("--user") + 1 : cmd.index("--user") + 3] == ["default", "off"]
    assert "ports" not in redis, "Redis is reached over the compose network only"
    assert gw["depends_on"] == {"redis": {"condition": "service_healthy"}}
    mounts = {v.split(":")[1] for v in gw["volumes"]}
    assert {"/app/config/gateway.yaml", "/app/redis-ca.crt"} <= mounts


def test_compose_tls_config_passes_check():
    cfg = yaml.safe_load((DEPLOY / "redis-tls" / "gateway.yaml").read_text())
    assert cfg["cache"]["redis_ca_file"] == "/app/redis-ca.crt"
    assert cfg["cache"]["encryption_key"] == "${REDIS_ENCRYPTION_KEY}"
    d = Path(tempfile.mkdtemp())
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt")], check=True, capture_output=True)
    cfg["cache"]["redis_ca_file"] = str(d / "ca.crt")
    (d / "gw.yaml").write_text(yaml.safe_dump(cfg))
    env = {"REDIS_URL": "rediss://gateway:pw-deploy-77@redis:6379",
           "REDIS_ENCRYPTION_KEY": base64.b64encode(b"k" * 32).decode(), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([str(GATEWAY_BIN), "--check", "--config", str(d / "gw.yaml")], env=env,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pw-deploy-77" not in r.stdout + r.stderr


@pytest.fixture(scope="module")
def rendered():
    r = subprocess.run(["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "not found" in r.stderr:
        pytest.skip("kubectl is not installed")
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def test_k8s_overlay_takes_a_rediss_url_from_a_secret(rendered):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert ("Deployment", "redis") not in kinds and ("Service", "redis") not in kinds, "no in-cluster Redis"
    secret = next(d for d in rendered if d["kind"] == "Secret" and d["metadata"]["name"] == "redis-url")
    assert secret["stringData"]["url"].startswith("rediss://")
    dep = next(d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == "llm-gateway")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "value" not in env["REDIS_URL"]
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "redis-url", "key": "url"}
    assert env["REDIS_ENCRYPTION_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "redis-url", "key": "encryption-key"}


def test_k8s_overlay_is_schema_valid(rendered):
    from kubernetes_validate import utils

    for doc in rendered:
        utils.validate(doc, utils.latest_version(), strict=True)
