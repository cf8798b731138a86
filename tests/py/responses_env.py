"""Shared set-up of the Responses API client tests (test_responses_sdk.py, test_agents_sdk.py,
test_vercel_ai_sdk.py): one mock provider per provider, so a test can tell what reached which,
and a gateway in hybrid mode in front of both with virtual models on each side and across."""

import json
import secrets

from conftest import Gateway, Mock, provider_config

GEMINI = "gemini-2.5-flash"
GEMINI3 = "gemini-3-flash-preview"
OPENAI = "gpt-4o-mini"
SMART = "smart"  # virtual: gemini/gemini-2.5-flash
FAST = "fast"  # virtual: openai/gpt-4o-mini
MIXED = "mixed"  # virtual across both providers

# The model as the client names it -> (the provider that must serve it, the model it must see).
ROUTES = {
    GEMINI: ("gemini", GEMINI),
    GEMINI3: ("gemini", GEMINI3),
    OPENAI: ("openai", OPENAI),
    SMART: ("gemini", GEMINI),
    FAST: ("openai", OPENAI),
}
MAX_BODY = 1_000_000


def client_key():
    """A client key the secret scanner knows to look for."""
    return "sk-client-" + secrets.token_hex(12)


class Env:
    """Two mocks (`openai`, `gemini`) and a gateway in front of them."""

    def __init__(self, **cfg_extra):
        self.mocks = {"openai": Mock("--name", "openai-mock"), "gemini": Mock("--name", "gemini-mock")}
        cfg = provider_config(self.mocks["openai"].url)
        cfg["providers"]["gemini"]["base_url"] = f"{self.mocks['gemini'].url}/v1beta"
        cfg["routing"]["models"] = {
            SMART: ["gemini/gemini-2.5-flash"],
            FAST: ["openai/gpt-4o-mini"],
            MIXED: ["gemini/gemini-2.5-flash", "openai/gpt-4o-mini"],
        }
        cfg["server"] = {"max_body_bytes": MAX_BODY}
        for section, values in cfg_extra.items():
            cfg.setdefault(section, {}).update(values)
        self.cfg = cfg
        self.gw = Gateway(cfg)

    @property
    def oa(self):
        return self.mocks["openai"]

    @property
    def gm(self):
        return self.mocks["gemini"]

    def reset(self):
        for m in self.mocks.values():
            m.reset()

    def stop(self):
        self.gw.stop()
        for m in self.mocks.values():
            m.stop()


def is_health(r):
    return r["method"] == "GET" and r["path"].rstrip("/").endswith("/models")


def calls(mock):
    """What a mock received, health checks left out."""
    return [r for r in mock.requests() if not is_health(r)]


def parts(content):
    return (content or {}).get("parts") or []


def texts(content):
    return [p["text"] for p in parts(content) if "text" in p and not p.get("thought")]


def turns(gemini_req):
    """A Gemini request's contents as (role, [texts]) pairs."""
    return [(c.get("role"), texts(c)) for c in gemini_req["body"]["contents"]]


def system_text(gemini_req):
    si = gemini_req["body"].get("systemInstruction")
    return " ".join(texts(si)) if si else None


def function_call_parts(content):
    return [p["functionCall"] for p in parts(content) if "functionCall" in p]


def function_response_parts(content):
    return [p["functionResponse"] for p in parts(content) if "functionResponse" in p]


def assert_only_gemini(env, model, key):
    """Every request of a Gemini model went to its Gemini route with `key` as x-goog-api-key,
    never with a bearer, and nothing reached the OpenAI mock. Returns the Gemini requests."""
    stray = calls(env.oa)
    assert stray == [], f"a Gemini model reached OpenAI: {[r['path'] for r in stray]}"
    got = calls(env.gm)
    for r in got:
        assert r["path"].split(":")[0] == f"/v1beta/models/{model}", r["path"]
        assert "authorization" not in r["headers"], "a bearer header never goes to Gemini"
        assert r["headers"].get("x-goog-api-key") == key
    return got


def dumps(v):
    return json.dumps(v, sort_keys=True)
