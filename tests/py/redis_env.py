"""Real Redis deployments for the production-Redis tests (issue 16), all on loopback and owned by
the test: a TLS redis-server with a test CA made by `openssl` and an ACL user, a three-master
Cluster made with `redis-cli --cluster create`, and a master + replica + three sentinels.

Every helper starts real `redis-server` processes and kills them in `stop()`.
"""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import free_port

ACL_USER = "gwapp"
ACL_PASSWORD = "acl-pw-6f1d93e2b7"


def _run(*args, cwd=None):
    subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(directory, name="ca"):
    """A self-signed test CA and a server certificate for 127.0.0.1/localhost signed by it."""
    d = Path(directory)
    ca_key, ca_crt = d / f"{name}.key", d / f"{name}.crt"
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         f"/CN=llm-gateway test {name}", "-keyout", str(ca_key), "-out", str(ca_crt))
    return ca_key, ca_crt


def make_server_cert(directory, ca_key, ca_crt, name="server"):
    d = Path(directory)
    key, csr, crt, ext = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr))
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return key, crt


def low_free_port():
    """A free port whose Cluster bus port (port + 10000) exists too."""
    while True:
        port = free_port()
        if port < 55000:
            return port


def _wait_ping(cli, what):
    deadline = time.time() + 10
    while time.time() < deadline:
        if cli("PING").strip() == "PONG":
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not start")


class Server:
    """One redis-server; `tls=(key, crt, ca)` serves TLS only (no plaintext port)."""

    def __init__(self, port=None, tls=None, acl=False, extra=()):
        self.port = port or free_port()
        self.tls = tls
        self.acl = acl
        # A directory of its own: a replica writes the RDB its master sends to its `dir`,
        # which is otherwise the test's working directory (the checkout).
        self.dir = tempfile.mkdtemp(prefix="redis-server-")
        args = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir]
        if tls:
            key, crt, ca = tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(crt),
                     "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if acl:
            args += ["--user", "default", "off", "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_ping(self.cli, "redis-server")

    @property
    def url(self):
        scheme = "rediss" if self.tls else "redis"
        auth = f"{ACL_USER}:{ACL_PASSWORD}@" if self.acl else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}"

    def cli_args(self):
        args = ["redis-cli", "-p", str(self.port)]
        if self.tls:
            args += ["--tls", "--cacert", str(self.tls[2])]
        if self.acl:
            args += ["--user", ACL_USER, "--pass", ACL_PASSWORD, "--no-auth-warning"]
        return args

    def cli(self, *args):
        r = subprocess.run([*self.cli_args(), *args], capture_output=True, text=True, timeout=5)
        return r.stdout

    def raw(self, key):
        """The stored bytes of `key` (GET, unformatted)."""
        r = subprocess.run([*self.cli_args(), "--no-raw", "GET", key], capture_output=True, timeout=5)
        return r.stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class TlsRedis(Server):
    """A TLS-only redis-server with an ACL user, its CA and a second, unrelated CA."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="redis-tls-"))
        ca_key, self.ca = make_ca(self.dir, "ca")
        key, crt = make_server_cert(self.dir, ca_key, self.ca)
        _, self.wrong_ca = make_ca(self.dir, "wrong-ca")
        super().__init__(tls=(key, crt, self.ca), acl=True)


class Cluster:
    """Three masters (no replicas unless `replicas=1`, then six nodes) on loopback."""

    def __init__(self, replicas=0):
        n = 3 * (1 + replicas)
        self.dir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        self.nodes = []
        for _ in range(n):
            port = low_free_port()
            d = self.dir / str(port)
            d.mkdir()
            # No diskless-sync delay: a replica is in sync (and so can be promoted) at once,
            # not 5 s after the cluster is made.
            self.nodes.append(Server(port, extra=[
                "--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf"),
                "--cluster-node-timeout", "1000", "--dir", str(d), "--repl-diskless-sync-delay", "0"]))
        addrs = [f"127.0.0.1:{s.port}" for s in self.nodes]
        _run("redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", str(replicas),
             "--cluster-yes")
        deadline = time.time() + 20
        while time.time() < deadline:
            # A replica that never finished its first sync refuses to take over (its data is
            # "too old"), so a failover test needs every replica's link up first.
            if all("cluster_state:ok" in s.cli("CLUSTER", "INFO") for s in self.nodes) and all(
                    "master_link_status:up" in info for info in
                    (s.cli("INFO", "replication") for s in self.nodes) if "role:slave" in info):
                return
            time.sleep(0.1)
        raise AssertionError("cluster did not become ok")

    def replica_of(self, master):
        """The node replicating `master` (Cluster with replicas)."""
        for s in self.nodes:
            info = s.cli("INFO", "replication")
            if "role:slave" in info and f"master_port:{master.port}" in info:
                return s
        return None

    @property
    def urls(self):
        return [f"redis://127.0.0.1:{s.port}" for s in self.nodes]

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-c", "-p", str(self.nodes[0].port), *args],
                           capture_output=True, text=True, timeout=10)
        return r.stdout

    def keys(self, pattern):
        out = []
        for s in self.nodes:
            out += s.cli("--scan", "--pattern", pattern).split()
        return sorted(set(out))

    def stop(self):
        for s in self.nodes:
            s.stop()


class Sentinels:
    """A master, one replica and three sentinels watching it as `mymaster`."""

    MASTER = "mymaster"

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="redis-sentinel-"))
        self.master = Server()
        self.replica = Server(extra=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.sentinels = []
        for i in range(3):
            port = free_port()
            conf = self.dir / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nsentinel monitor {self.MASTER} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
                f"sentinel failover-timeout {self.MASTER} 5000\n")
            proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.sentinels.append((port, proc))
            _wait_ping(lambda *a, p=port: subprocess.run(["redis-cli", "-p", str(p), *a],
                                                           capture_output=True, text=True, timeout=5).stdout,
                       "sentinel")

    @property
    def urls(self):
        return [f"redis://127.0.0.1:{p}" for p, _ in self.sentinels]

    def master_port(self):
        r = subprocess.run(["redis-cli", "-p", str(self.sentinels[0][0]), "SENTINEL",
                            "get-master-addr-by-name", self.MASTER], capture_output=True, text=True, timeout=5)
        parts = r.stdout.split()
        return int(parts[1]) if len(parts) >= 2 else None

    def failover(self, within=20):
        """Asks the sentinels to fail over (retried until one has discovered the replica) and
        waits until they name the replica as the master; asserts that it happened."""
        deadline = time.time() + within
        while time.time() < deadline:
            out = subprocess.run(["redis-cli", "-p", str(self.sentinels[0][0]), "SENTINEL", "failover",
                                  self.MASTER], capture_output=True, text=True, timeout=5).stdout
            if "OK" in out:
                break
            time.sleep(0.3)  # no sentinel has discovered the replica yet
        while time.time() < deadline and self.master_port() != self.replica.port:
            time.sleep(0.1)
        assert self.master_port() == self.replica.port, "the replica was promoted"

    def stop(self):
        for _, proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.master.stop()
        self.replica.stop()
