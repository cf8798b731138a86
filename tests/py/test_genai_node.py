"""SPEC §12 (issue 14): Google's JS SDK, `@google/genai` (Node), on the gateway's Gemini-native
routes with an OpenAI model: `generateContent` (system instruction, generation config) and
`generateContentStream`, translated to Chat Completions. Each case is one run of
tests/node/genai.mjs (installed by `npm ci --prefix tests/node`, which scripts/lib/setup.sh does).

The mock OpenAI answers with `Mock reply to: <last user text>`; what reached it is asserted: a
chat-completions request with the translated body and the gateway's OpenAI key, never the
client's Google key, and nothing at the Gemini mock.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import provider_config

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")
GOOG_KEY = "client-goog-key-node"
MODEL = "gpt-4o-mini"

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the @google/genai test needs Node.js 20+")


@pytest.fixture
def gw(mock, start_gateway):
    assert (NODE_DIR / "node_modules" / "@google" / "genai").is_dir(), \
        f"@google/genai is not installed: run `npm ci --prefix {NODE_DIR}` (scripts/lib/setup.sh does)"
    return start_gateway(provider_config(mock.url))


def run(gw, case, model=MODEL):
    proc = subprocess.run(
        [NODE, str(NODE_DIR / "genai.mjs"), case], cwd=NODE_DIR, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GATEWAY_URL": gw.url, "MODEL": model, "API_KEY": GOOG_KEY},
    )
    assert proc.returncode == 0, f"node exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output from genai.mjs {case}:\n{proc.stderr[-4000:]}"
    out = json.loads(lines[-1])
    assert out["ok"], f"{case} failed in @google/genai (status {out.get('status')}):\n{out.get('error')}"
    return out


def only_openai(mock):
    """The one request that reached the mock: a chat completion with the gateway's OpenAI key and
    no Google key; nothing reached Gemini."""
    reqs = mock.requests()
    assert [r for r in reqs if r["path"].startswith("/v1beta/")] == [], "nothing may reach Gemini"
    calls = [r for r in reqs if r["path"] == "/v1/chat/completions"]
    assert len(calls) == 1, [r["path"] for r in reqs]
    sent = calls[0]
    assert sent["method"] == "POST"
    assert sent["headers"]["authorization"] == "Bearer gw-openai-key", "hybrid: the gateway's OpenAI key"
    assert not any(h.startswith("x-goog") for h in sent["headers"]), sent["headers"]
    assert GOOG_KEY not in json.dumps(sent), "a Google key never reaches OpenAI"
    return sent


def test_generate_content(gw, mock):
    out = run(gw, "generateContent")
    assert out["text"] == "Mock reply to: hello genai node"
    assert out["finishReason"] == "STOP"
    u = out["usage"]
    assert u["promptTokenCount"] > 0 and u["candidatesTokenCount"] > 0
    assert u["totalTokenCount"] == u["promptTokenCount"] + u["candidatesTokenCount"]
    assert out["modelVersion"] == MODEL and out["responseId"].startswith("chatcmpl-")
    assert only_openai(mock)["body"] == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello genai node"}],
        "temperature": 0.3, "max_completion_tokens": 40,
    }


def test_generate_content_stream(gw, mock):
    out = run(gw, "generateContentStream")
    chunks = out["chunks"]
    assert len(chunks) > 1, "the answer arrives in pieces"
    assert out["text"] == "Mock reply to: stream genai node"
    assert chunks[-1]["finishReason"] == "STOP"
    assert chunks[-1]["usage"]["totalTokenCount"] > 0
    assert all(c["usage"] is None for c in chunks[:-1]), "usage comes with the last chunk"
    assert len({c["responseId"] for c in chunks}) == 1
    sent = only_openai(mock)
    assert sent["body"] == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "stream genai node"}],
        "stream": True, "stream_options": {"include_usage": True},
    }
