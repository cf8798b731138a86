"""SPEC §16: the README's two commands set up a fresh machine themselves.

Both scripts' preflight (`--preflight`: scripts/lib/setup.sh's checks, then stop) runs here in a
container-like environment: a copy of just the scripts in a fresh directory (a fresh clone: no
.venv, no node_modules), a fresh HOME, a PATH of symlinks to basic shell tools only (no cmake,
make, cc, redis, openssl, Chromium, Node, Python, cargo), as a non-root user without sudo. They
must stop within seconds, non-zero, naming the missing packages and the apt-get command. On this
machine, set up by scripts/test.sh, the same preflight passes in well under a few seconds.
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# What the scripts themselves run (bash and coreutils-level tools); everything else is absent.
BASIC_TOOLS = [
    "bash", "sh", "env", "dirname", "basename", "id", "cat", "cut", "tr", "sha256sum", "mktemp",
    "rm", "mkdir", "ls", "grep", "sed", "head", "tail", "sort", "uname", "apt-get", "sudo",
]
# Every package the checks can name, and what must not leak into the clean PATH.
BUILD_PACKAGES = ["cmake", "make", "gcc", "libc6-dev"]
TEST_PACKAGES = BUILD_PACKAGES + [
    "redis-server", "redis-tools", "openssl", "chromium", "nodejs", "npm", "python3", "python3-venv",
]
ABSENT = ["cmake", "make", "cc", "gcc", "redis-server", "redis-cli", "openssl", "chromium", "node",
          "npm", "python3", "cargo"]


def _drop_privileges() -> tuple[list[str], int] | None:
    """A command prefix that runs as an unprivileged user, and that user's uid; None if we cannot."""
    if os.geteuid() != 0:
        return [], os.geteuid()
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return None
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"], nobody.pw_uid
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "nobody", "--"], nobody.pw_uid
    return None


@pytest.fixture(scope="module")
def clean_machine():
    drop = _drop_privileges()
    if drop is None:
        pytest.skip("running as root with no way to drop to an unprivileged user (no `nobody`, setpriv or runuser)")
    prefix, uid = drop
    if uid != 0 and shutil.which("sudo"):
        probe = subprocess.run(prefix + ["sudo", "-n", "true"], capture_output=True, timeout=10)
        if probe.returncode == 0:
            pytest.skip("the unprivileged user has passwordless sudo: the preflight would install, not stop")
    root = Path(tempfile.mkdtemp(prefix="setup-test-"))
    try:
        clone = root / "clone"  # the scripts and the files they read, as in a fresh clone
        for rel in ["scripts/demo.sh", "scripts/test.sh", "scripts/lib/setup.sh",
                    "tests/node/package-lock.json"] + [
                        str(p.relative_to(REPO)) for p in (REPO / "tests/py").glob("requirements*.txt")]:
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / rel, clone / rel)
        bindir = root / "bin"
        bindir.mkdir()
        for tool in BASIC_TOOLS:
            path = shutil.which(tool)
            if path:
                (bindir / tool).symlink_to(os.path.realpath(path))
        home = root / "home"
        home.mkdir()
        for dirpath, dirnames, filenames in os.walk(root):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                if not os.path.islink(os.path.join(dirpath, f)):
                    os.chmod(os.path.join(dirpath, f), 0o755)
        if os.geteuid() == 0:
            os.chown(home, uid, -1)
        env = {"PATH": str(bindir), "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(home)}
        for tool in ABSENT:
            assert shutil.which(tool, path=env["PATH"]) is None, f"{tool} leaked into the clean PATH"
        yield prefix, clone, env
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _preflight(prefix: list[str], script: Path, env: dict | None, cwd: Path):
    start = time.monotonic()
    proc = subprocess.run(prefix + ["/bin/bash", str(script), "--preflight"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    return proc, time.monotonic() - start


@pytest.mark.parametrize("script,packages", [("demo.sh", BUILD_PACKAGES), ("test.sh", TEST_PACKAGES)])
def test_preflight_on_a_bare_machine_stops_naming_the_packages(clean_machine, script, packages):
    prefix, clone, env = clean_machine
    proc, elapsed = _preflight(prefix, clone / "scripts" / script, env, clone.parent)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{script} --preflight passed on a bare machine:\n{out}"
    assert elapsed < 5, f"{script} took {elapsed:.1f}s to stop"
    assert "==" not in proc.stdout, f"{script} started setting up or building:\n{out}"
    install = next((l for l in out.splitlines() if "apt-get install" in l), None)
    assert install, f"no apt-get install command in:\n{out}"
    named = install.split("--no-install-recommends", 1)[1].split()
    assert sorted(named) == sorted(packages), f"{script} named {named}, expected {packages}:\n{out}"
    assert "sudo apt-get update && sudo apt-get install -y --no-install-recommends" in install, install
    assert "missing packages:" in out and "rustup" in out, out  # cargo is absent too
    assert f"bash scripts/{script}" in out, out  # what to run afterwards
    assert not (clone / ".venv").exists() and not (clone / "tests/node/node_modules").exists()


@pytest.mark.parametrize("script", ["demo.sh", "test.sh"])
def test_preflight_when_set_up_is_quick(script):
    """On this machine (set up by scripts/test.sh), the preflight installs nothing and passes fast."""
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip("not run in the project's .venv: run through `bash scripts/test.sh`, which sets it up")
    if not (REPO / "tests/node/node_modules/.lock.sha256").exists():
        pytest.skip("tests/node/node_modules was not installed by scripts/test.sh")
    env = dict(os.environ)
    runs = []
    for _ in range(2):
        proc, elapsed = _preflight([], REPO / "scripts" / script, env, REPO)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{script} --preflight failed:\n{out}"
        assert "preflight ok" in out and "==" not in out, f"{script} --preflight did some set-up again:\n{out}"
        runs.append(elapsed)
    assert max(runs) < 5, f"{script} --preflight took {runs}"
