"""SPEC §13: JWT bearer tokens as caller identity.

A JWKS served over HTTP by the test, tokens minted with PyJWT (cryptography keys), the
official OpenAI SDK with api_key=<token>; the mock provider must never see a token.
"""

import json
import signal
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import openai
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import free_port, provider_config
from redis_env import make_ca, make_server_cert

ISS = "https://issuer.test"
AUD = "llm-gateway"


class Jwks:
    """A JWKS endpoint the test controls: its keys, whether it is up, and its hit count."""

    def __init__(self, tls=None):
        self.keys = []
        self.up = True
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                if not outer.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            crt, key = tls
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(crt), str(key))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, kid, private, alg):
        pub = private.public_key()
        conv = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[alg]
        jwk = conv.to_jwk(pub, as_dict=True)
        jwk.update({"kid": kid, "use": "sig"})
        self.keys.append(jwk)

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def jwks():
    j = Jwks()
    yield j
    j.stop()


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def mint(private, alg, kid, **claims):
    now = int(time.time())
    body = {"sub": "alice", "iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, private, algorithm=alg, headers={"kid": kid})


def start(mock, start_gateway, jwks, **jwt_extra):
    cfg = provider_config(mock.url)
    cfg["auth"] = {
        "mode": "hybrid",
        "jwt": {"jwks_url": jwks.url, "issuer": ISS, "audiences": [AUD], "leeway_s": 5,
                "jwks_min_refresh_s": 0, **jwt_extra},
    }
    return start_gateway(cfg)


def assert_token_never_upstream(mock, *tokens):
    dump = json.dumps(mock.requests())
    for t in tokens:
        assert t not in dump, "a JWT reached the provider"
        assert t[-20:] not in dump, "part of a JWT reached the provider"


def chat(g, token, model="gpt-4o-mini", header="Authorization"):
    value = f"Bearer {token}" if header == "Authorization" else token
    return requests.post(f"{g.url}/v1/chat/completions", timeout=10, headers={header: value},
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_valid_rs256_es256_and_eddsa_tokens_with_the_openai_sdk(mock, start_gateway, jwks):
    jwks.add("rsa-1", RSA_KEY, "RS256")
    jwks.add("ec-1", EC_KEY, "ES256")
    jwks.add("ed-1", ED_KEY, "EdDSA")
    g = start(mock, start_gateway, jwks)
    assert jwks.hits >= 1, "the JWKS is fetched at start"
    tokens = []
    for key, alg, kid in [(RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1"), (ED_KEY, "EdDSA", "ed-1")]:
        token = mint(key, alg, kid)
        tokens.append(token)
        client = openai.OpenAI(api_key=token, base_url=f"{g.url}/v1", max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content, alg
        assert mock.requests()[-1]["headers"]["authorization"] == "Bearer gw-openai-key", \
            "the gateway's provider key is used, never the token"
    assert_token_never_upstream(mock, *tokens)
    # The caller id from `sub` names the request in the access log.
    deadline = time.time() + 3
    while time.time() < deadline and not any(r.get("key_id") == "jwt:alice" for r in g.access_logs()):
        time.sleep(0.05)
    assert any(r.get("key_id") == "jwt:alice" for r in g.access_logs()), "caller id logged"
    metrics = requests.get(f"{g.url}/metrics", timeout=5).text
    assert 'gateway_auth_decisions_total{reason="jwt",result="ok"} 3' in metrics, metrics[-2000:]


# Times are offsets from when the test runs (parameters are built at collection, which can be
# minutes earlier in a full run).
@pytest.mark.parametrize("claims,needle,reason", [
    ({"exp": -120}, "expired", "jwt_expired"),
    ({"nbf": 120}, "not yet valid", "jwt_not_yet_valid"),
    ({"iss": "https://evil.test"}, "issuer", "jwt_wrong_issuer"),
    ({"aud": "someone-else"}, "audience", "jwt_wrong_audience"),
    ({"exp": None}, "`exp` is missing", "jwt_missing_claim"),
])
def test_each_failed_check_is_a_401_naming_it(mock, start_gateway, jwks, claims, needle, reason):
    jwks.add("rsa-1", RSA_KEY, "RS256")
    g = start(mock, start_gateway, jwks)
    now = int(time.time())
    claims = {k: now + v if k in ("exp", "nbf") and v is not None else v for k, v in claims.items()}
    token = mint(RSA_KEY, "RS256", "rsa-1", **claims)
    r = chat(g, token)
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert needle in err["message"], err
    assert err["type"] == "authentication_error"
    assert mock.requests() == [], "no upstream call for a refused token"
    assert f'reason="{reason}",result="refused"' in requests.get(f"{g.url}/metrics", timeout=5).text
    assert any("refused" in line and reason in line for line in g.log_lines()), "refusal logged"


def test_bad_signature_alg_none_malformed_and_huge_tokens(mock, start_gateway, jwks):
    jwks.add("rsa-1", RSA_KEY, "RS256")
    g = start(mock, start_gateway, jwks)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = mint(other, "RS256", "rsa-1")
    r = chat(g, forged)
    assert r.status_code == 401 and "signature" in r.json()["error"]["message"], r.text
    unsigned = jwt.encode({"sub": "alice", "iss": ISS, "aud": AUD, "exp": int(time.time()) + 60},
                          None, algorithm="none")
    r = chat(g, unsigned)
    assert r.status_code == 401 and "alg none" in r.json()["error"]["message"], r.text
    # HS256 with the RSA public key as the secret (the classic confusion) is refused.
    r = chat(g, "eyJhbGciOiJIUzI1NiIsImtpZCI6InJzYS0xIn0.eyJzdWIiOiJhIn0.c2ln")
    assert r.status_code == 401, r.text
    r = chat(g, "eyJ" + "a" * 20000 + ".b.c")
    assert r.status_code == 401 and "too large" in r.json()["error"]["message"], r.text
    r = chat(g, "eyJnot-json.eyJx.sig")
    assert r.status_code == 401 and "malformed" in r.json()["error"]["message"], r.text
    assert mock.requests() == []


def test_rotation_picked_up_on_unknown_kid_and_jwks_down_keeps_cached_keys(mock, start_gateway, jwks):
    jwks.add("rsa-1", RSA_KEY, "RS256")
    g = start(mock, start_gateway, jwks)
    assert chat(g, mint(RSA_KEY, "RS256", "rsa-1")).status_code == 200
    # The issuer rotates: a new key appears at the JWKS.
    jwks.add("ec-2", EC_KEY, "ES256")
    hits = jwks.hits
    r = chat(g, mint(EC_KEY, "ES256", "ec-2"))
    assert r.status_code == 200, r.text
    assert jwks.hits == hits + 1, "one fetch for the unknown kid"
    # A kid nobody knows: refused, naming the unknown key.
    r = chat(g, mint(EC_KEY, "ES256", "nope"))
    assert r.status_code == 401 and "unknown key" in r.json()["error"]["message"], r.text
    # The JWKS goes down: keys fetched before keep verifying new tokens.
    jwks.up = False
    for key, alg, kid in [(RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-2")]:
        r = chat(g, mint(key, alg, kid, sub="bob"))
        assert r.status_code == 200, r.text
    assert len(mock.requests()) == 4


def test_models_and_rpm_claims_and_header_tokens(mock, start_gateway, jwks):
    jwks.add("rsa-1", RSA_KEY, "RS256")
    cfg_extra = {}
    g = start(mock, start_gateway, jwks, **cfg_extra)
    token = mint(RSA_KEY, "RS256", "rsa-1", sub="carol", models=["gpt-4o-mini"], rpm=2)
    r = chat(g, token, model="gemini-2.0-flash")
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "model_not_allowed"
    assert mock.requests() == []
    # The token in the access-key header works the same way.
    assert chat(g, token, header="X-API-Key").status_code == 200
    assert chat(g, token).status_code == 200
    r = chat(g, token)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded", \
        "the rpm claim limits the caller"
    assert_token_never_upstream(mock, token)


def test_jwks_over_https_signed_by_a_private_ca(mock, start_gateway, tmp_path):
    ca_key, ca_crt = make_ca(tmp_path, "idp-ca")
    key, crt = make_server_cert(tmp_path, ca_key, ca_crt, "idp")
    j = Jwks(tls=(crt, key))
    try:
        j.add("rsa-1", RSA_KEY, "RS256")
        token = mint(RSA_KEY, "RS256", "rsa-1")
        # Without the CA the IdP's certificate is not trusted: no keys, so tokens are refused.
        plain = start(mock, start_gateway, j)
        r = chat(plain, token)
        assert r.status_code == 401 and "unknown key" in r.json()["error"]["message"], r.text
        assert any("JWKS fetch failed" in line for line in plain.log_lines())
        plain.stop()
        g = start(mock, start_gateway, j, jwks_ca_file=str(ca_crt))
        r = chat(g, token)
        assert r.status_code == 200, r.text
        assert j.hits >= 1
    finally:
        j.stop()


ADMIN_1 = "reload-admin-key-one-0123456789"
ADMIN_2 = "reload-admin-key-two-0123456789"


def test_sighup_applies_jwt_and_admin_key_and_keeps_them_when_the_new_ones_are_invalid(mock, start_gateway, tmp_path):
    from cryptography.hazmat.primitives import serialization

    a, b = Jwks(), Jwks()
    try:
        a.add("rsa-1", RSA_KEY, "RS256")
        b.add("ec-2", EC_KEY, "ES256")
        cfg = provider_config(mock.url)
        cfg["auth"] = {"mode": "hybrid", "admin_key": ADMIN_1, "state_file": str(tmp_path / "state.json"),
                       "jwt": {"jwks_url": a.url, "issuer": ISS, "audiences": [AUD], "jwks_min_refresh_s": 0}}
        g = start_gateway(cfg)

        def admin_status(key):
            return requests.get(f"{g.url}/admin/keys", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code

        def reload():
            done = sum("configuration reloaded" in line or "reload rejected" in line for line in g.log_lines())
            g.config_path.write_text(json.dumps(cfg))
            g.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while time.time() < deadline:
                if sum("configuration reloaded" in line or "reload rejected" in line for line in g.log_lines()) > done:
                    return
                time.sleep(0.05)
            raise AssertionError("no reload:\n" + g.logs())

        old = mint(RSA_KEY, "RS256", "rsa-1")
        assert chat(g, old).status_code == 200
        assert admin_status(ADMIN_1) == 200

        # Issuer, audience, JWKS URL and admin key all change.
        cfg["auth"]["admin_key"] = ADMIN_2
        cfg["auth"]["jwt"].update(jwks_url=b.url, issuer="https://issuer2.test", audiences=["gw2"])
        reload()
        assert any("auth.jwt applied" in line for line in g.log_lines()), g.logs()
        r = chat(g, old)
        assert r.status_code == 401, "a token verified before the reload is verified again: " + r.text
        r = chat(g, mint(EC_KEY, "ES256", "ec-2"))
        assert r.status_code == 401 and "issuer" in r.json()["error"]["message"], r.text
        new = mint(EC_KEY, "ES256", "ec-2", iss="https://issuer2.test", aud="gw2")
        r = chat(g, new)
        assert r.status_code == 200, r.text
        assert admin_status(ADMIN_1) == 401 and admin_status(ADMIN_2) == 200

        # Static keys instead of the JWKS.
        pem = ED_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        del cfg["auth"]["jwt"]["jwks_url"]
        cfg["auth"]["jwt"]["keys"] = [pem]
        reload()
        ed = mint(ED_KEY, "EdDSA", "any", iss="https://issuer2.test", aud="gw2")
        assert chat(g, ed).status_code == 200
        assert chat(g, mint(EC_KEY, "ES256", "ec-2", iss="https://issuer2.test", aud="gw2", sub="x")).status_code == 401

        # A JWKS that does not answer: the verifier in force stays, and the log says why.
        del cfg["auth"]["jwt"]["keys"]
        cfg["auth"]["jwt"]["jwks_url"] = f"http://127.0.0.1:{free_port()}/jwks.json"
        reload()
        assert any("auth.jwt kept as it was" in line for line in g.log_lines()), g.logs()
        assert chat(g, mint(ED_KEY, "EdDSA", "any", iss="https://issuer2.test", aud="gw2", sub="y")).status_code == 200

        # An admin key that is not valid: the reload is refused, the running key stays.
        cfg["auth"]["jwt"]["jwks_url"] = b.url
        cfg["auth"]["admin_key"] = "short"
        reload()
        assert any("reload rejected" in line and "auth.admin_key" in line for line in g.log_lines()), g.logs()
        assert admin_status(ADMIN_2) == 200
        text = g.logs()
        for secret in (ADMIN_1, ADMIN_2, old, new, ed):
            assert secret not in text
    finally:
        a.stop()
        b.stop()
