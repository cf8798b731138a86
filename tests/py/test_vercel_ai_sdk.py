"""SPEC §11 (issue 13): the Vercel AI SDK's `openai()` provider (Node, @ai-sdk/openai: the
Responses API) on a Gemini model through the gateway: `generateText`, `streamText`, a tool call
with `stopWhen: stepCountIs(3)` (streamed and not), and a second turn built from the first
one's `response.messages`. Each case is one run of tests/node/vercel.mjs (installed by
`npm ci --prefix tests/node`, which .ci/run does).

The mock Gemini answers text with `Mock reply to: <last user text>`, a user turn with function
declarations with two parallel calls (`{"mock": true}`, `{"mock": true, "n": 2}`), and the
function results with `Mock saw tool result: <name>`.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from responses_env import GEMINI, GEMINI3, Env, assert_only_gemini, client_key, function_call_parts, function_response_parts, turns

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")
CLIENT_KEY = client_key()

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the Vercel AI SDK test needs Node.js 18+")


@pytest.fixture(scope="module")
def env():
    assert (NODE_DIR / "node_modules" / "ai").is_dir(), \
        f"the Vercel AI SDK is not installed: run `npm ci --prefix {NODE_DIR}` (.ci/run does)"
    e = Env()
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def clean(env):
    env.reset()


def run(env, case, model=GEMINI):
    proc = subprocess.run(
        [NODE, str(NODE_DIR / "vercel.mjs"), case], cwd=NODE_DIR, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GATEWAY_URL": env.gw.url, "MODEL": model, "API_KEY": CLIENT_KEY},
    )
    assert proc.returncode == 0, f"node exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output from vercel.mjs {case}:\n{proc.stderr[-4000:]}"
    out = json.loads(lines[-1])
    assert out["ok"], f"{case} failed in the AI SDK:\n{out.get('error')}\nstatus {out.get('statusCode')}: {out.get('responseBody')}"
    return out


def test_generate_text(env):
    out = run(env, "generateText")
    assert out["text"] == "Mock reply to: hello vercel"
    assert out["finishReason"] == "stop"
    assert out["usage"]["inputTokens"] > 0 and out["usage"]["outputTokens"] > 0
    assert out["responseId"].startswith("resp_")
    (req,) = assert_only_gemini(env, GEMINI, CLIENT_KEY)
    assert req["path"].endswith(":generateContent")
    assert turns(req) == [("user", ["hello vercel"])]


def test_stream_text(env):
    out = run(env, "streamText")
    assert out["errors"] == []
    assert out["text"] == "Mock reply to: stream vercel"
    assert out["deltas"] >= 2, "the text arrives in pieces"
    assert out["finishReason"] == "stop"
    assert out["usage"]["inputTokens"] > 0 and out["usage"]["outputTokens"] > 0
    (req,) = assert_only_gemini(env, GEMINI, CLIENT_KEY)
    assert req["path"].endswith(":streamGenerateContent")


def check_tool_run(env, out, model, stream):
    assert out["calls"] == [{"mock": True}, {"mock": True, "n": 2}]
    ids = [c["id"] for c in out["toolCalls"]]
    assert len(ids) == 2 and len(set(ids)) == 2, ids
    assert out["text"] == "Mock saw tool result: get_weather"
    assert out["steps"] == 2
    reqs = assert_only_gemini(env, model, CLIENT_KEY)
    assert len(reqs) == 2
    method = ":streamGenerateContent" if stream else ":generateContent"
    assert all(r["path"].endswith(method) for r in reqs)
    decls = reqs[0]["body"]["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in decls] == ["get_weather"]
    contents = reqs[1]["body"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert [c["args"] for c in function_call_parts(contents[1])] == [{"mock": True}, {"mock": True, "n": 2}]
    results = function_response_parts(contents[2])
    assert [r["name"] for r in results] == ["get_weather", "get_weather"]
    assert "temp_c" in json.dumps(results[0]["response"])


@pytest.mark.parametrize("model", [GEMINI, GEMINI3])
def test_tool_call(env, model):
    check_tool_run(env, run(env, "toolCall", model), model, stream=False)


def test_streamed_tool_call(env):
    out = run(env, "streamToolCall")
    assert out["errors"] == []
    check_tool_run(env, out, GEMINI, stream=True)


def test_second_turn_from_response_messages(env):
    out = run(env, "multiTurn")
    assert out["first"] == "Mock reply to: My name is Ada."
    assert out["text"] == "Mock reply to: What is my name?"
    reqs = assert_only_gemini(env, GEMINI, CLIENT_KEY)
    assert len(reqs) == 2
    # The SDK refers to the stored assistant message (`item_reference`): it must come back whole.
    assert turns(reqs[1]) == [
        ("user", ["My name is Ada."]), ("model", ["Mock reply to: My name is Ada."]), ("user", ["What is my name?"]),
    ]
