"""SPEC §14 (issue 16): production Redis. TLS with a test CA and ACL credentials, encryption at
rest, Redis Cluster, Sentinel and reload, against real redis-server processes on loopback
(redis_env.py) and two real gateway instances."""

import base64
import os
import signal
import subprocess
import threading
import time

import pytest
import requests

import redis_env
from conftest import GATEWAY_BIN, provider_config

K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(100, 132))).decode()
K3 = base64.b64encode(bytes(range(200, 232))).decode()


def cache_config(mock, **cache):
    cfg = provider_config(mock.url)
    cfg["cache"] = {"enabled": True, "ttl": 60, "max_size": 100, **cache}
    return cfg


def chat(g, content):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    return requests.post(g.url + "/v1/chat/completions", json=body, timeout=15)


def upstream_calls(mock):
    return len([r for r in mock.requests() if "chat/completions" in r["path"]])


def metric(g, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in requests.get(g.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") and want in line:
            total += float(line.split()[-1])
    return total


@pytest.fixture
def owned():
    """Redis deployments started by the test, stopped at its end."""
    started = []
    yield started.append
    for r in started:
        r.stop()


def test_two_gateways_share_a_cache_over_tls_with_acl_credentials(mock, start_gateway, owned):
    r = redis_env.TlsRedis()
    owned(r)
    cfg = cache_config(mock, redis_url=r.url, redis_ca_file=str(r.ca))
    g1 = start_gateway(cfg)
    # The second instance has no memory tier: a HIT there can only come from Redis.
    g2 = start_gateway(cache_config(mock, max_size=0, redis_url=r.url, redis_ca_file=str(r.ca)))
    first = chat(g1, "tls shared prompt")
    assert first.status_code == 200 and first.headers["x-gateway-cache"] == "MISS"
    # A cold instance's first read may give up (100 ms) while its TLS connect completes on
    # a loaded host; the connect goes on and the next read uses it.
    misses = 0
    for _ in range(5):
        second = chat(g2, "tls shared prompt")
        if second.headers["x-gateway-cache"] == "HIT":
            break
        misses += 1
        time.sleep(0.3)
    assert second.headers["x-gateway-cache"] == "HIT", "the second instance read it over rediss://"
    assert misses <= 1
    assert second.json()["choices"] == first.json()["choices"]
    assert upstream_calls(mock) == 1 + misses
    assert len(r.cli("--scan", "--pattern", "llmgw:c:*").split()) == 1, "written through TLS as the ACL user"
    assert metric(g1, "gateway_redis_errors_total", use="cache") == 0
    # The credentials appear in no output: /config, --check, logs (the secret scanner also checks).
    shown = requests.get(g1.url + "/config", timeout=5).text
    assert redis_env.ACL_PASSWORD not in shown and "[REDACTED]@127.0.0.1" in shown
    check = subprocess.run([str(GATEWAY_BIN), "--check", "--config", str(g1.config_path)],
                           capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stdout + check.stderr
    assert redis_env.ACL_PASSWORD not in check.stdout + check.stderr
    for g in (g1, g2):
        assert redis_env.ACL_PASSWORD not in g.logs()
    # The health probe reaches the node over TLS as the ACL user; /health names it without them.
    h = wait_health(g1, lambda h: h["checked_ms_ago"] is not None and h["nodes"][0]["healthy"])
    assert h["nodes"] == [{"node": f"rediss://127.0.0.1:{r.port}", "role": "server", "healthy": True}]
    shown = requests.get(g1.url + "/health/providers", timeout=5).text + requests.get(g1.url + "/metrics", timeout=5).text
    assert redis_env.ACL_PASSWORD not in shown and redis_env.ACL_USER not in shown


def test_a_wrong_ca_is_misses_and_counted_errors_never_plaintext(mock, start_gateway, owned):
    r = redis_env.TlsRedis()
    owned(r)
    # Redis only (no memory tier), so every request asks Redis.
    cfg = cache_config(mock, max_size=0, redis_url=r.url, redis_ca_file=str(r.wrong_ca))
    g = start_gateway(cfg)
    for _ in range(3):
        resp = chat(g, "wrong ca prompt")
        assert resp.status_code == 200 and resp.headers["x-gateway-cache"] == "MISS"
        time.sleep(0.6)  # past the breaker's cooldown: each request tries Redis again
    assert upstream_calls(mock) == 3
    assert metric(g, "gateway_redis_errors_total", use="cache") >= 3
    assert r.cli("DBSIZE").strip() == "0", "nothing reached Redis"
    assert redis_env.ACL_PASSWORD not in g.logs()
    # The probe's TLS handshake fails the same way: the node shows unreachable.
    h = wait_health(g, lambda h: h["checked_ms_ago"] is not None)
    assert h["nodes"][0]["healthy"] is False and h["healthy"] is False
    # The same server with the right CA works: the failure was the certificate, nothing else.
    good = start_gateway(cache_config(mock, max_size=0, redis_url=r.url, redis_ca_file=str(r.ca)))
    chat(good, "wrong ca prompt")
    assert chat(good, "wrong ca prompt").headers["x-gateway-cache"] == "HIT"


def raw_get(server, key):
    out = subprocess.run([*server.cli_args(), "--raw", "GET", key], capture_output=True, timeout=5).stdout
    return out[:-1] if out.endswith(b"\n") else out


def raw_set(server, key, value):
    subprocess.run([*server.cli_args(), "-x", "SET", key], input=value, capture_output=True, timeout=5, check=True)


def test_values_are_sealed_at_rest_and_rotate(mock, start_gateway, owned):
    redis = redis_env.Server()
    owned(redis)
    cfg = lambda key, old=(): cache_config(mock, redis_url=redis.url, encryption_key=key,  # noqa: E731
                                           **({"encryption_old_keys": list(old)} if old else {}))
    g1 = start_gateway(cfg(K1))
    prompt = "sealed prompt about aardvarks"
    first = chat(g1, prompt)
    answer = first.json()["choices"][0]["message"]["content"]
    assert answer
    keys = redis.cli("--scan", "--pattern", "llmgw:c:*").split()
    assert len(keys) == 1
    raw = raw_get(redis, keys[0])
    assert raw.startswith(b"gwe1") and len(raw) > 40
    assert b"aardvark" not in raw and answer.encode() not in raw, "neither prompt nor answer in clear"
    assert b"gpt-4o-mini" not in raw
    # Same key: hit. Another key: miss. New key with the old one listed: hit.
    assert chat(start_gateway(cfg(K1)), prompt).headers["x-gateway-cache"] == "HIT"
    other = start_gateway(cfg(K2))
    assert chat(other, prompt).headers["x-gateway-cache"] == "MISS"
    assert metric(other, "gateway_redis_errors_total", use="cache") >= 1, "a value that does not open is counted"
    # (the miss above re-sealed the entry with K2; put K1's value back)
    raw_set(redis, keys[0], raw)
    rotated = start_gateway(cfg(K3, old=[K1]))
    assert chat(rotated, prompt).headers["x-gateway-cache"] == "HIT"
    # Tampered: one flipped bit in the ciphertext is a miss and a counted error, never served.
    tampered = bytearray(raw)
    tampered[len(tampered) // 2] ^= 0x01
    raw_set(redis, keys[0], bytes(tampered))
    fresh = start_gateway(cfg(K1))
    resp = chat(fresh, prompt)
    assert resp.status_code == 200 and resp.headers["x-gateway-cache"] == "MISS"
    assert metric(fresh, "gateway_redis_errors_total", use="cache") >= 1
    assert any("did not open" in line for line in fresh.log_lines())


def test_a_bad_encryption_key_is_a_config_error_naming_the_field(start_mock):
    mock = start_mock()
    cfg = cache_config(mock, redis_url="redis://127.0.0.1:1", encryption_key="c2hvcnQ=")
    import json
    import tempfile
    path = os.path.join(tempfile.mkdtemp(), "gw.yaml")
    with open(path, "w") as f:
        json.dump(cfg, f)
    check = subprocess.run([str(GATEWAY_BIN), "--check", "--config", path], capture_output=True, text=True, timeout=20)
    assert check.returncode != 0
    out = check.stdout + check.stderr
    assert "cache.encryption_key: expected the base64 of 32 bytes" in out
    assert "c2hvcnQ=" not in out


NO_LIMITS = {"RATE_LIMITING_ENABLED": "false"}


class Load:
    """Requests with fresh prompts from a thread until stopped; every status is kept."""

    def __init__(self, g, tag):
        self.g, self.tag, self.codes, self.stop_flag = g, tag, [], False
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        s = requests.Session()
        i = 0
        while not self.stop_flag:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{self.tag} {i}"}]}
            try:
                self.codes.append(s.post(self.g.url + "/v1/chat/completions", json=body, timeout=15).status_code)
            except requests.RequestException as e:
                self.codes.append(repr(e))
            i += 1

    def stop(self):
        self.stop_flag = True
        self.thread.join()
        return self.codes


def away_from_a_minute_boundary():
    """Rate-limit windows are epoch minutes: don't let a short test straddle one."""
    left = 60 - time.time() % 60
    if left < 8:
        time.sleep(left + 0.2)


def test_cluster_one_rate_limit_across_two_instances(mock, start_gateway, owned):
    c = redis_env.Cluster()
    owned(c)
    cfg = provider_config(mock.url, security={"rate_limit_rpm": 10})
    cfg["cache"] = {"enabled": False, "redis_cluster": c.urls}
    g1, g2 = start_gateway(cfg), start_gateway(cfg)
    away_from_a_minute_boundary()
    codes = [chat(g, f"limit {i}").status_code for i in range(12) for g in (g1, g2)]
    assert codes.count(200) == 10 and codes.count(429) == 14, codes
    keys = c.keys("llmgw:rl:*")
    assert keys and all("{" in k and "}" in k for k in keys), f"hash-tagged keys: {keys}"
    for g in (g1, g2):
        assert metric(g, "gateway_redis_errors_total", use="ratelimit") == 0


def test_cluster_shares_the_cache_through_a_resharding(mock, start_gateway, owned):
    c = redis_env.Cluster()
    owned(c)
    cfg = cache_config(mock, redis_cluster=c.urls)
    g1, g2 = start_gateway(cfg, env=NO_LIMITS), start_gateway(cfg, env=NO_LIMITS)
    for i in range(6):
        assert chat(g1, f"cluster {i}").headers["x-gateway-cache"] == "MISS"
    for i in range(6):
        assert chat(g2, f"cluster {i}").headers["x-gateway-cache"] == "HIT", i
    assert len(c.keys("llmgw:c:*")) == 6
    # Move a third of the slots while both instances take load: no request fails.
    ids = [line.split()[0] for line in c.cli("CLUSTER", "NODES").splitlines() if "master" in line]
    loads = [Load(g1, "reshard a"), Load(g2, "reshard b")]
    subprocess.run(["redis-cli", "--cluster", "reshard", f"127.0.0.1:{c.nodes[0].port}",
                    "--cluster-from", ids[0], "--cluster-to", ids[1], "--cluster-slots", "600",
                    "--cluster-yes"], check=True, capture_output=True, timeout=60)
    codes = [code for load in loads for code in load.stop()]
    assert codes and all(code == 200 for code in codes), {c: codes.count(c) for c in set(codes)}
    # Counts settle: every entry written before is still served from the cluster.
    for i in range(6):
        assert chat(g2, f"cluster {i}").headers["x-gateway-cache"] == "HIT", i
    fresh = start_gateway(cfg, env=NO_LIMITS)
    assert all(chat(fresh, f"cluster {i}").headers["x-gateway-cache"] == "HIT" for i in range(6))


def rate_counts(c, alive):
    """The sum of every request counter the limiter keeps in the cluster (all windows)."""
    total = 0
    for k in c.keys("llmgw:rl:req:*"):
        out = subprocess.run(["redis-cli", "-c", "-p", str(alive.port), "GET", k],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        total += int(out or 0)
    return total


def test_cluster_survives_a_killed_master(mock, start_gateway, owned):
    c = redis_env.Cluster(replicas=1)
    owned(c)
    cfg = cache_config(mock, max_size=0, redis_cluster=c.urls)
    cfg["security"] = {"rate_limit_rpm": 100000}  # counted in the cluster, never reached
    g = start_gateway(cfg)
    chat(g, "before the kill")
    masters = [s for s in c.nodes if "role:master" in s.cli("INFO", "replication")]
    victim = masters[0]
    heir = c.replica_of(victim)
    assert heir is not None
    load = Load(g, "kill")
    victim.stop()
    deadline = time.time() + 20
    while time.time() < deadline:
        if "role:master" in heir.cli("INFO", "replication") and "cluster_state:ok" in heir.cli("CLUSTER", "INFO"):
            break
        time.sleep(0.1)
    assert "role:master" in heir.cli("INFO", "replication"), "the replica was promoted"
    promoted = time.time()
    # Within a few seconds of the promotion the cache works on every slot again (six fresh
    # prompts land on all three masters' slots), still under load.
    recovered = None
    while time.time() < promoted + 5:
        probe = [f"after kill {i} {time.time()}" for i in range(6)]
        for p in probe:
            chat(g, p)
        if all(chat(g, p).headers["x-gateway-cache"] == "HIT" for p in probe):
            recovered = time.time() - promoted
            break
        time.sleep(0.1)
    codes = load.stop()
    assert codes and all(code == 200 for code in codes), "fail-open: misses, never an error"
    assert recovered is not None, "cache hits on every slot within 5 s of the promotion"
    # The rate limit is counted in the cluster again: three requests, three counts, no errors.
    errors = metric(g, "gateway_redis_errors_total", use="ratelimit")
    before = rate_counts(c, heir)
    for i in range(3):
        assert chat(g, f"counted {i}").status_code == 200
    assert rate_counts(c, heir) == before + 3
    assert metric(g, "gateway_redis_errors_total", use="ratelimit") == errors


def test_cluster_follows_ask_and_moved_for_a_migrating_slot(mock, start_gateway, owned):
    """A slot caught mid-migration (`ASK`) and then moved (`MOVED`): every entry is still a hit
    from Redis, with no failed call (the driver follows both redirections)."""
    c = redis_env.Cluster()
    owned(c)
    cfg = cache_config(mock, max_size=0, redis_cluster=c.urls)
    g = start_gateway(cfg, env=NO_LIMITS)
    prompts = [f"migrating {i}" for i in range(6)]
    for p in prompts:
        chat(g, p)
    assert all(chat(g, p).headers["x-gateway-cache"] == "HIT" for p in prompts)
    key = c.keys("llmgw:c:*")[0]
    slot = c.cli("CLUSTER", "KEYSLOT", key).strip()
    ids = {line.split()[1].split("@")[0].rsplit(":", 1)[1]: line.split()[0]
           for line in c.cli("CLUSTER", "NODES").splitlines() if "master" in line}
    source = next(s for s in c.nodes if key in s.cli("--scan", "--pattern", key).split())
    target = next(s for s in c.nodes if s is not source)
    assert target.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[str(source.port)]).strip() == "OK"
    assert source.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[str(target.port)]).strip() == "OK"
    assert source.cli("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", key).strip() == "OK"
    errors = metric(g, "gateway_redis_errors_total", use="cache")
    # Mid-migration: the source answers ASK for the moved key.
    assert all(chat(g, p).headers["x-gateway-cache"] == "HIT" for p in prompts)
    for s in c.nodes:
        s.cli("CLUSTER", "SETSLOT", slot, "NODE", ids[str(target.port)])
    # Done: the gateway's slot map is stale, the source answers MOVED.
    assert all(chat(g, p).headers["x-gateway-cache"] == "HIT" for p in prompts)
    assert metric(g, "gateway_redis_errors_total", use="cache") == errors, "no call failed open"
    assert key in target.cli("--scan", "--pattern", key).split()


def test_cluster_holds_managed_keys_and_budgets(mock, start_gateway, owned):
    """§13 on a Cluster: the key set and its version counter share a hash tag (the put script
    and the delete transaction touch both), budgets one per caller."""
    import test_admin_keys as ak
    c = redis_env.Cluster()
    owned(c)
    cfg = ak.config(mock)
    cfg["cache"]["redis_cluster"] = c.urls
    a, b = ak.start(start_gateway, cfg), ak.start(start_gateway, cfg)
    r = ak.admin(a, "POST", "/admin/keys", {"id": "on-cluster", "budget": {"usd": 100, "period": "total"}})
    assert r.status_code == 201, r.text
    secret = r.json()["key"]
    t0 = time.time()
    while ak.chat(b, secret).status_code != 200:
        assert time.time() - t0 < 2.0, "instance B honours a key created on A within 2 s"
        time.sleep(0.05)
    assert ak.chat(a, secret).status_code == 200
    spent = ak.admin(b, "GET", "/admin/keys/on-cluster").json()["spend_total_usd"]
    assert spent > 0, "spend counted in the cluster, seen by the other instance"
    assert "llmgw:{keys}" in c.keys("llmgw:*") and any(k.startswith("llmgw:budget:{") for k in c.keys("llmgw:*"))
    assert ak.admin(a, "DELETE", "/admin/keys/on-cluster").status_code == 204
    t0 = time.time()
    while ak.chat(b, secret).status_code != 401:
        assert time.time() - t0 < 2.0, "instance B honours the deletion within 2 s"
        time.sleep(0.05)
    for g in (a, b):
        assert metric(g, "gateway_redis_errors_total", use="identity") == 0


def test_sentinel_failover_under_load(mock, start_gateway, owned):
    s = redis_env.Sentinels()
    owned(s)
    cfg = cache_config(mock, max_size=0, redis_sentinel={"master": s.MASTER, "nodes": s.urls})
    g = start_gateway(cfg, env=NO_LIMITS)
    chat(g, "before failover")
    assert chat(g, "before failover").headers["x-gateway-cache"] == "HIT"
    load = Load(g, "failover")
    s.failover()
    time.sleep(1.5)
    codes = load.stop()
    assert codes and all(code == 200 for code in codes), {c: codes.count(c) for c in set(codes)}
    # The gateway follows the new master: new entries are written there and served.
    deadline = time.time() + 10
    while time.time() < deadline:
        p = f"after failover {time.time()}"
        chat(g, p)
        if chat(g, p).headers["x-gateway-cache"] == "HIT":
            break
        time.sleep(0.3)
    else:
        raise AssertionError("no cache hit after the failover")
    assert "role:master" in s.replica.cli("INFO", "replication")
    assert chat(g, "before failover").headers["x-gateway-cache"] == "HIT", "replicated entries survive"
    # /health names the current master (the promoted replica) and the sentinels.
    new_master = f"redis://127.0.0.1:{s.replica.port}"
    h = wait_health(g, lambda h: h["nodes"][0]["node"] == new_master)
    assert h["kind"] == "sentinel"
    assert h["nodes"][0] == {"node": new_master, "role": "master", "healthy": True}, h
    assert sorted(n["node"] for n in h["nodes"][1:]) == sorted(s.urls)
    assert all(n["role"] == "sentinel" and n["healthy"] for n in h["nodes"][1:])


def chat_as(g, caller, content):
    """A request whose rate-limit caller is the hash of its own provider key (`hybrid`)."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    return requests.post(g.url + "/v1/chat/completions", json=body, timeout=15,
                         headers={"Authorization": f"Bearer sk-{caller}-0123456789abcdef"})


def test_sentinel_failover_keeps_the_rate_limit_window(mock, start_gateway, owned):
    """Counts made on the old master survive a (sentinel-driven) failover: once the gateway
    follows the new master the caller's window goes on from where it was, it does not start
    again (the bound: only calls made while Redis was skipped are counted locally)."""
    s = redis_env.Sentinels()
    owned(s)
    cfg = provider_config(mock.url, security={"rate_limit_rpm": 20})
    cfg["cache"] = {"enabled": False, "redis_sentinel": {"master": s.MASTER, "nodes": s.urls}}
    g = start_gateway(cfg)

    def on_redis(what):
        """Another caller's requests until one costs no Redis error: the limiter is on Redis."""
        deadline = time.time() + 10
        while time.time() < deadline:
            errors = metric(g, "gateway_redis_errors_total", use="ratelimit")
            assert chat_as(g, "b", "probe").status_code == 200
            if metric(g, "gateway_redis_errors_total", use="ratelimit") == errors:
                return
            time.sleep(0.3)
        raise AssertionError(f"the limiter is not on Redis {what}")

    left = 60 - time.time() % 60
    if left < 30:  # the whole test inside one minute window
        time.sleep(left + 0.2)
    on_redis("at the start")
    assert [chat_as(g, "a", f"before {i}").status_code for i in range(10)] == [200] * 10
    s.failover()
    on_redis("after the failover")
    codes = [chat_as(g, "a", f"after {i}").status_code for i in range(15)]
    assert codes.count(200) == 10 and codes.count(429) == 5, codes
    assert "role:master" in s.replica.cli("INFO", "replication")


def wait_log(g, text, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(text in line for line in g.log_lines()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no log line with {text!r}:\n{g.logs()}")


def test_sighup_moves_new_writes_to_a_new_redis_without_failed_requests(mock, start_gateway, start_redis):
    import json
    a, b = start_redis(), start_redis()
    cfg = cache_config(mock, redis_url=a.url)
    g = start_gateway(cfg, env=NO_LIMITS)
    chat(g, "reload one")
    assert len(a.cli("--scan", "--pattern", "llmgw:c:*").split()) == 1
    load = Load(g, "during reload")
    cfg["cache"]["redis_url"] = b.url
    g.config_path.write_text(json.dumps(cfg))
    g.proc.send_signal(signal.SIGHUP)
    wait_log(g, "Redis for cache is now")
    time.sleep(0.3)
    codes = load.stop()
    assert codes and all(code == 200 for code in codes), {c: codes.count(c) for c in set(codes)}
    before = len(b.cli("--scan", "--pattern", "llmgw:c:*").split())
    chat(g, "reload two")
    assert len(b.cli("--scan", "--pattern", "llmgw:c:*").split()) == before + 1, "new writes go to the new Redis"
    in_a = len(a.cli("--scan", "--pattern", "llmgw:c:*").split())
    # An invalid new setting keeps the old one.
    cfg["cache"]["redis_ca_file"] = "/nonexistent/ca.pem"
    cfg["cache"]["redis_url"] = a.url
    g.config_path.write_text(json.dumps(cfg))
    g.proc.send_signal(signal.SIGHUP)
    wait_log(g, "reload rejected")
    chat(g, "reload three")
    assert len(b.cli("--scan", "--pattern", "llmgw:c:*").split()) == before + 2
    assert len(a.cli("--scan", "--pattern", "llmgw:c:*").split()) == in_a


def test_sighup_adding_redis_says_it_takes_a_restart(mock, start_gateway, start_redis):
    import json
    r = start_redis()
    cfg = cache_config(mock)
    g = start_gateway(cfg, env=NO_LIMITS)
    chat(g, "memory only")
    cfg["cache"]["redis_url"] = r.url
    g.config_path.write_text(json.dumps(cfg))
    g.proc.send_signal(signal.SIGHUP)
    wait_log(g, "reload: adding Redis for cache takes a restart; cache stays in memory until then")
    assert chat(g, "memory only").headers["x-gateway-cache"] == "HIT"
    chat(g, "still memory only")
    assert r.cli("DBSIZE").strip() == "0", "nothing moved to Redis without a restart"


def health(g, use="cache"):
    return requests.get(g.url + "/health/providers", timeout=5).json()["redis"][use]


def wait_health(g, pred, use="cache", timeout=8):
    """The health section once `pred` holds for it (the probe looks every 2 s)."""
    deadline = time.time() + timeout
    while True:
        h = health(g, use)
        if pred(h) or time.time() > deadline:
            return h
        time.sleep(0.2)


def node_metric(g, name, use, node):
    return metric(g, name, node=node, use=use)  # Prometheus orders labels by name


def test_health_shows_redis_per_use_and_node(mock, start_gateway, start_redis):
    r = start_redis()
    g = start_gateway(cache_config(mock, max_size=0, redis_url=r.url, encryption_key=K1), env=NO_LIMITS)
    chat(g, "health")
    h = wait_health(g, lambda h: h["checked_ms_ago"] is not None)
    assert h["healthy"] is True and h["encrypted"] is True and h["kind"] == "single"
    assert h["nodes"] == [{"node": r.url, "role": "server", "healthy": True}]
    assert health(g, "ratelimit")["kind"] == "single"
    assert node_metric(g, "gateway_redis_node_up", "cache", r.url) == 1
    assert node_metric(g, "gateway_redis_node_errors_total", "cache", r.url) == 0
    # The server goes away: the failed call marks it down at once and is counted against it.
    r.stop()
    assert chat(g, "health after").status_code == 200
    h = health(g)
    assert h["healthy"] is False and h["nodes"][0]["healthy"] is False
    assert node_metric(g, "gateway_redis_node_errors_total", "cache", r.url) >= 1
    assert node_metric(g, "gateway_redis_node_up", "cache", r.url) == 0


def test_cluster_health_shows_each_master_as_last_seen(mock, start_gateway, owned):
    c = redis_env.Cluster()
    owned(c)
    g = start_gateway(cache_config(mock, max_size=0, redis_cluster=c.urls), env=NO_LIMITS)
    chat(g, "cluster health")
    urls = sorted(c.urls)
    h = wait_health(g, lambda h: [n["role"] for n in h["nodes"]] == ["master"] * 3)
    assert h["kind"] == "cluster"
    assert sorted(n["node"] for n in h["nodes"]) == urls
    assert all(n["healthy"] for n in h["nodes"]) and sum(n["slots"] for n in h["nodes"]) == 16384
    assert all(node_metric(g, "gateway_redis_node_up", "cache", u) == 1 for u in urls)
    # One master dies (no replica): within a probe it shows down, the others up, in /health
    # and in the gauge.
    victim = c.nodes[1]
    victim.stop()
    dead = f"redis://127.0.0.1:{victim.port}"
    h = wait_health(g, lambda h: any(n["node"] == dead and not n["healthy"] for n in h["nodes"]))
    state = {n["node"]: n["healthy"] for n in h["nodes"]}
    assert state.pop(dead) is False and all(state.values()), h
    assert node_metric(g, "gateway_redis_node_up", "cache", dead) == 0
    assert all(node_metric(g, "gateway_redis_node_up", "cache", u) == 1 for u in state)
