"""SPEC §11 (issue 13): the official `openai` Python SDK's Responses API through the gateway, on
Gemini models (translated), an OpenAI model (native passthrough) and virtual models.

Two mock providers, one per provider, so every test can say what reached which: a Gemini
model's request never reaches the OpenAI mock, an OpenAI model's reaches `/v1/responses` with
the body the SDK sent untouched except the model name, and the client's bearer key only ever
reaches the provider the requested model names (hybrid mode, SPEC §5).

The mock's Gemini conventions these tests lean on (mock provider source, "Gemini: answers"):
text is answered `Mock reply to: <last user text>`; with function declarations and a user text
turn last it answers two parallel calls of the first function (`{"mock": true}` and
`{"mock": true, "n": 2}`, the first signed on Gemini 3, whose replayed calls must carry the
signature back); after function responses `Mock saw tool result: <name>`; JSON mode answers
`{"mock":true}`; a `thinkingConfig` adds 7 thought tokens; a stream is the text in 5 chunks.
"""

import base64
import json
import secrets
import time

import openai
import pytest
import requests
from pydantic import BaseModel

from responses_env import (
    GEMINI, GEMINI3, MAX_BODY, MIXED, OPENAI, ROUTES, SMART, Env, calls, client_key, parts,
    system_text, texts, turns,
)

MODELS = list(ROUTES)
GEMINI_MODELS = [m for m in MODELS if ROUTES[m][0] == "gemini"]
CLIENT_KEY = client_key()
TOOLS = [{
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "mock": {"type": "boolean"}, "n": {"type": "integer"}},
        "required": [],
        "additionalProperties": False,
    },
}, {
    "type": "function",
    "name": "get_time",
    "description": "The local time in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
TOOL_NAMES = ["get_weather", "get_time"]
# 1x1 transparent PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
TEXT_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added",
    "response.content_part.added", "response.output_text.delta", "response.output_text.done",
    "response.content_part.done", "response.output_item.done", "response.completed",
]
TOOL_RESULT = json.dumps({"temp_c": 21})


def sdk_client(gw, api_key, sent=None, **kw):
    """An SDK client on the gateway; `sent` collects the requests it puts on the wire."""
    hooks = {"request": [sent.append]} if sent is not None else {}
    return openai.OpenAI(
        base_url=gw.url + "/v1", api_key=api_key, max_retries=0, timeout=30,
        http_client=openai.DefaultHttpxClient(event_hooks=hooks), **kw,
    )


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.sent = []
    e.client = sdk_client(e.gw, CLIENT_KEY, e.sent)
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def clean(env):
    env.reset()
    env.sent.clear()


@pytest.fixture
def client(env):
    return env.client


def served(env, model, n=None):
    """The upstream requests for `model`: all on its provider's mock, none on the other's, the
    bearer only where the model's provider is, the upstream model the resolved one."""
    provider, upstream = ROUTES[model]
    other = "openai" if provider == "gemini" else "gemini"
    stray = calls(env.mocks[other])
    assert stray == [], f"{model} must reach only {provider}; {other} got {[r['path'] for r in stray]}"
    got = calls(env.mocks[provider])
    for r in got:
        if provider == "gemini":
            assert r["path"] in (f"/v1beta/models/{upstream}:generateContent", f"/v1beta/models/{upstream}:streamGenerateContent"), r["path"]
            assert "authorization" not in r["headers"], "a bearer header never goes to Gemini"
            # Hybrid mode: the client's bearer is for the provider the model names (SPEC §5).
            assert r["headers"].get("x-goog-api-key") == CLIENT_KEY
        else:
            assert r["path"].startswith("/v1/responses"), r["path"]
            assert r["headers"].get("authorization") == f"Bearer {CLIENT_KEY}"
            assert "x-goog-api-key" not in r["headers"]
    if n is not None:
        assert len(got) == n, [r["path"] for r in got]
    return got


def sent_body(env, i=-1):
    return json.loads(env.sent[i].content)


def assert_passthrough(env, model, upstream_req, i=-1):
    """OpenAI candidates: the body the SDK sent, untouched but for the resolved model name."""
    want = sent_body(env, i)
    want["model"] = ROUTES[model][1]
    assert upstream_req["body"] == want


def expected_reply(model, text):
    return f"Mock reply to: {text}"


def function_calls(resp):
    return [o for o in resp.output if o.type == "function_call"]


def as_input(items):
    return [o.model_dump(exclude_none=True) for o in items]


def collapse(types):
    out = []
    for t in types:
        if not out or out[-1] != t:
            out.append(t)
    return out


def sse(resp):
    """(event, data) pairs of a raw SSE answer."""
    events, name, data = [], None, []
    for line in resp.iter_lines(decode_unicode=True):
        if line == "":
            if data:
                payload = "\n".join(data)
                try:
                    payload = json.loads(payload)
                except ValueError:
                    pass
                events.append((name, payload))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        events.append((name, "\n".join(data)))
    return events


def openai_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert err["message"]
    return err


# ---------------------------------------------------------------------------------------------
# responses.create
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_create_text(env, client, model):
    raw = client.responses.with_raw_response.create(model=model, input="hello there")
    r = raw.parse()
    provider, upstream = ROUTES[model]
    assert raw.headers["x-gateway-provider"] == provider
    assert raw.headers["x-gateway-model"] == upstream
    assert r.object == "response" and r.status == "completed"
    assert r.id.startswith("resp_")
    assert r.output_text == expected_reply(model, "hello there")
    msgs = [o for o in r.output if o.type == "message"]
    assert len(msgs) == 1 and msgs[0].role == "assistant" and msgs[0].content[0].type == "output_text"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens >= r.usage.input_tokens + r.usage.output_tokens
    (up,) = served(env, model, n=1)
    if provider == "gemini":
        assert up["path"].endswith(":generateContent")
        assert turns(up) == [("user", ["hello there"])]
        assert system_text(up) is None
    else:
        assert_passthrough(env, model, up)


@pytest.mark.parametrize("model", MODELS)
def test_create_with_instructions(env, client, model):
    r = client.responses.create(model=model, instructions="You answer like a pirate.", input="ahoy")
    assert r.output_text == expected_reply(model, "ahoy")
    (up,) = served(env, model, n=1)
    if ROUTES[model][0] == "gemini":
        assert system_text(up) == "You answer like a pirate."
        assert turns(up) == [("user", ["ahoy"])]
    else:
        assert_passthrough(env, model, up)


@pytest.mark.parametrize("model", MODELS)
def test_item_list_with_earlier_turns(env, client, model):
    items = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is my name?"}]},
    ]
    r = client.responses.create(model=model, input=items)
    assert r.output_text == expected_reply(model, "What is my name?")
    (up,) = served(env, model, n=1)
    if ROUTES[model][0] == "gemini":
        assert "Be brief." in system_text(up)
        assert turns(up) == [("user", ["My name is Ada."]), ("model", ["Hello Ada."]), ("user", ["What is my name?"])]
    else:
        assert_passthrough(env, model, up)


@pytest.mark.parametrize("model", MODELS)
def test_image_input_data_url(env, client, model):
    content = [
        {"type": "input_text", "text": "What is in this image?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "auto"},
    ]
    r = client.responses.create(model=model, input=[{"role": "user", "content": content}])
    assert r.status == "completed" and r.output_text == expected_reply(model, "What is in this image?")
    (up,) = served(env, model, n=1)
    if ROUTES[model][0] == "gemini":
        (turn,) = up["body"]["contents"]
        inline = [p["inlineData"] for p in parts(turn) if "inlineData" in p]
        assert inline == [{"mimeType": "image/png", "data": PNG_B64}]
        assert texts(turn) == ["What is in this image?"]
    else:
        assert_passthrough(env, model, up)


def test_unknown_model_is_404_with_no_upstream_call(env, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="no-such-model-xyz", input="hi")
    assert e.value.code == "model_not_found"
    assert calls(env.oa) == [] and calls(env.gm) == []


# ---------------------------------------------------------------------------------------------
# responses.stream
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_stream_text(env, client, model):
    with client.responses.stream(model=model, input="stream this please") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert collapse(types) == TEXT_EVENTS, collapse(types)
    seq = [e.sequence_number for e in events]
    assert all(a < b for a, b in zip(seq, seq[1:])), seq
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    (done,) = [e for e in events if e.type == "response.output_text.done"]
    assert "".join(deltas) == done.text == final.output_text == expected_reply(model, "stream this please")
    completed = events[-1].response
    assert completed.status == "completed" and completed.id == events[0].response.id == final.id
    assert completed.usage.input_tokens > 0 and completed.usage.output_tokens > 0
    assert completed.usage.total_tokens >= completed.usage.input_tokens + completed.usage.output_tokens
    (up,) = served(env, model, n=1)
    if ROUTES[model][0] == "gemini":
        assert len(deltas) >= 2, "the mock streams 5 chunks: each is forwarded as a delta"
        assert up["path"].endswith(":streamGenerateContent") and up["query"].get("alt") == "sse"
    else:
        assert_passthrough(env, model, up)


def test_stream_events_are_forwarded_as_they_arrive(env, client):
    env.gm.configure(chunk_delay_ms=150)
    stamps = []
    t0 = time.monotonic()
    with client.responses.stream(model=GEMINI, input="slow stream") as stream:
        for e in stream:
            stamps.append((e.type, time.monotonic() - t0))
    first_delta = next(t for name, t in stamps if name == "response.output_text.delta")
    end = stamps[-1][1]
    assert stamps[-1][0] == "response.completed"
    assert end - first_delta >= 0.4, f"deltas were held back: first at {first_delta:.3f}s, end at {end:.3f}s"


# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------

def check_calls(model, calls_):
    assert calls_, "a function call was expected"
    names = [c.name for c in calls_]
    if ROUTES[model][0] == "gemini":
        assert names == ["get_weather", "get_weather"], "the mock Gemini calls its first function twice"
    else:
        assert names == TOOL_NAMES, "the mock OpenAI calls each function tool once, in parallel"
    ids = [c.call_id for c in calls_]
    assert all(ids) and len(set(ids)) == len(ids), f"call_ids must be distinct: {ids}"
    item_ids = [c.id for c in calls_]
    assert all(item_ids) and len(set(item_ids)) == len(item_ids), item_ids
    args = [json.loads(c.arguments) for c in calls_]
    if ROUTES[model][0] == "gemini":
        assert args == [{"mock": True}, {"mock": True, "n": 2}]
    else:
        assert all(isinstance(a, dict) for a in args)
    return args


def check_gemini_tool_turns(up, model):
    """The second Gemini request: the user turn, the model's calls, then their results."""
    contents = up["body"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"], contents
    calls_ = [p for p in parts(contents[1]) if "functionCall" in p]
    assert [p["functionCall"]["name"] for p in calls_] == ["get_weather", "get_weather"]
    assert [p["functionCall"].get("args") for p in calls_] == [{"mock": True}, {"mock": True, "n": 2}]
    if model == GEMINI3:
        assert calls_[0].get("thoughtSignature"), "Gemini 3's signature must come back with its call"
    results = [p["functionResponse"] for p in parts(contents[2]) if "functionResponse" in p]
    assert [r["name"] for r in results] == ["get_weather", "get_weather"]
    for r in results:
        assert isinstance(r["response"], dict) and "temp_c" in json.dumps(r["response"]), r
    decls = up["body"]["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in decls] == TOOL_NAMES


@pytest.mark.parametrize("model", MODELS)
def test_tool_round_trip_and_parallel_calls(env, client, model):
    question = {"role": "user", "content": "What is the weather in Paris and in Rome?"}
    r1 = client.responses.create(model=model, input=[question], tools=TOOLS, parallel_tool_calls=True)
    fc = function_calls(r1)
    check_calls(model, fc)
    assert len(fc) == 2, "both mocks answer two parallel calls here"
    outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": TOOL_RESULT} for c in fc]
    r2 = client.responses.create(model=model, input=[question, *as_input(r1.output), *outputs], tools=TOOLS)
    assert r2.status == "completed" and not function_calls(r2)
    ups = served(env, model, n=2)
    if ROUTES[model][0] == "gemini":
        assert r2.output_text == "Mock saw tool result: get_weather"
        first = ups[0]["body"]
        assert [d["name"] for d in first["tools"][0]["functionDeclarations"]] == TOOL_NAMES
        check_gemini_tool_turns(ups[1], model)
    else:
        assert r2.output_text == f"Mock saw tool result: {TOOL_RESULT[:64]}"
        assert_passthrough(env, model, ups[0], 0)
        assert_passthrough(env, model, ups[1], 1)


@pytest.mark.parametrize("model", MODELS)
def test_parallel_tool_calls_false_answers_one_call(env, client, model):
    """Gemini has no switch for it: the gateway keeps the first call of the turn, whole or
    streamed, and the next turn sends Gemini that call and its one result."""
    question = {"role": "user", "content": "What is the weather in Paris and in Rome?"}
    r1 = client.responses.create(model=model, input=[question], tools=TOOLS, parallel_tool_calls=False)
    fc = function_calls(r1)
    assert len(fc) == 1 and r1.parallel_tool_calls is False, r1.output
    if ROUTES[model][0] == "gemini":
        assert json.loads(fc[0].arguments) == {"mock": True}, "the first of the mock's two calls"
    with client.responses.stream(model=model, input=[question], tools=TOOLS, parallel_tool_calls=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert added.count("function_call") == 1, added
    assert len(function_calls(final)) == 1
    seq = [e.sequence_number for e in events]
    assert seq == list(range(len(seq))), seq
    outputs = [{"type": "function_call_output", "call_id": fc[0].call_id, "output": TOOL_RESULT}]
    r2 = client.responses.create(model=model, previous_response_id=r1.id, input=outputs, tools=TOOLS)
    assert r2.status == "completed" and not function_calls(r2)
    ups = served(env, model)
    if ROUTES[model][0] == "gemini":
        assert "parallel_tool_calls" not in json.dumps(ups[0]["body"])
        contents = ups[-1]["body"]["contents"]
        assert [c["role"] for c in contents] == ["user", "model", "user"], contents
        kept = [p for p in parts(contents[1]) if "functionCall" in p]
        assert [p["functionCall"]["name"] for p in kept] == ["get_weather"]
        assert [p["functionResponse"]["name"] for p in parts(contents[2]) if "functionResponse" in p] == ["get_weather"]
        if model == GEMINI3:
            assert kept[0].get("thoughtSignature"), "the kept call keeps its signature"
    else:
        assert ups[0]["body"]["parallel_tool_calls"] is False


@pytest.mark.parametrize("model", GEMINI_MODELS)
def test_tool_round_trip_with_previous_response_id(env, client, model):
    r1 = client.responses.create(model=model, input="What is the weather in Paris?", tools=TOOLS)
    fc = function_calls(r1)
    check_calls(model, fc)
    outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": TOOL_RESULT} for c in fc]
    r2 = client.responses.create(model=model, previous_response_id=r1.id, input=outputs, tools=TOOLS)
    assert r2.output_text == "Mock saw tool result: get_weather"
    ups = served(env, model, n=2)
    check_gemini_tool_turns(ups[1], model)


@pytest.mark.parametrize("model", MODELS)
def test_stream_tool_call_arguments(env, client, model):
    with client.responses.stream(model=model, input="Weather in Oslo?", tools=TOOLS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed", collapse(types)
    seq = [e.sequence_number for e in events]
    assert all(a < b for a, b in zip(seq, seq[1:])), seq
    fc = function_calls(final)
    args = check_calls(model, fc)
    added = {e.output_index: e.item for e in events if e.type == "response.output_item.added" and e.item.type == "function_call"}
    done_items = {e.output_index: e.item for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"}
    arg_done = {e.output_index: e for e in events if e.type == "response.function_call_arguments.done"}
    assert set(added) == set(done_items) == set(arg_done) and len(added) == len(fc), collapse(types)
    for idx, item in done_items.items():
        deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta" and e.output_index == idx)
        assert deltas == arg_done[idx].arguments == item.arguments, (idx, deltas, arg_done[idx].arguments, item.arguments)
        assert arg_done[idx].item_id == item.id == added[idx].id
        assert added[idx].call_id == item.call_id
        # Each call's events run added -> deltas -> arguments.done -> item.done.
        mine = [e.type for e in events if getattr(e, "output_index", None) == idx]
        assert collapse(mine) == ["response.output_item.added", "response.function_call_arguments.delta",
                                  "response.function_call_arguments.done", "response.output_item.done"], collapse(mine)
    assert [json.loads(i.arguments) for _, i in sorted(done_items.items())] == args
    (up,) = served(env, model, n=1)
    if ROUTES[model][0] == "openai":
        assert_passthrough(env, model, up)


# ---------------------------------------------------------------------------------------------
# Structured output, reasoning, max_output_tokens
# ---------------------------------------------------------------------------------------------

class MockAnswer(BaseModel):
    mock: bool


@pytest.mark.parametrize("model", MODELS)
def test_parse_with_a_pydantic_model(env, client, model):
    r = client.responses.parse(model=model, input="Answer in JSON.", text_format=MockAnswer)
    assert r.output_parsed == MockAnswer(mock=True)
    (up,) = served(env, model, n=1)
    if ROUTES[model][0] == "gemini":
        gc = up["body"]["generationConfig"]
        assert gc["responseMimeType"] == "application/json"
        schema = gc.get("responseJsonSchema")
        assert schema and "mock" in schema["properties"], gc
    else:
        assert_passthrough(env, model, up)
        assert up["body"]["text"]["format"]["type"] == "json_schema"


@pytest.mark.parametrize("model", GEMINI_MODELS)
def test_reasoning_effort_reaches_gemini_thinking_config(env, client, model):
    r_low = client.responses.create(model=model, input="think a little", reasoning={"effort": "low"})
    r_high = client.responses.create(model=model, input="think a lot", reasoning={"effort": "high"})
    assert r_low.status == r_high.status == "completed"
    assert r_high.usage.output_tokens_details.reasoning_tokens == 7, "the mock's thoughtsTokenCount"
    low, high = (u["body"]["generationConfig"]["thinkingConfig"] for u in served(env, model, n=2))
    if ROUTES[model][1].startswith("gemini-3"):
        assert (low.get("thinkingLevel", "").lower(), high.get("thinkingLevel", "").lower()) == ("low", "high"), (low, high)
        assert "thinkingBudget" not in low
    else:
        assert isinstance(low.get("thinkingBudget"), int) and isinstance(high.get("thinkingBudget"), int), (low, high)
        assert 0 < low["thinkingBudget"] < high["thinkingBudget"]
        assert "thinkingLevel" not in low


def test_reasoning_effort_on_a_model_that_does_not_think_is_400(env, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gemini-2.0-flash", input="x", reasoning={"effort": "high"})
    assert "reasoning" in ((e.value.param or "") + e.value.message)
    assert calls(env.gm) == [] and calls(env.oa) == []


LONG_PROMPT = " ".join(["a"] * 40)
# Both mocks echo 64 characters of it (35 words) and cut the answer at the token limit.
CUT_REPLY = " ".join(f"Mock reply to: {LONG_PROMPT[:64]}".split()[:16])


@pytest.mark.parametrize("model", MODELS)
def test_small_max_output_tokens_is_incomplete(env, client, model):
    r = client.responses.create(model=model, input=LONG_PROMPT, max_output_tokens=16)
    assert r.status == "incomplete", r.status
    assert r.incomplete_details.reason == "max_output_tokens"
    (up,) = served(env, model, n=1)
    if ROUTES[model][0] == "gemini":
        assert r.output_text == CUT_REPLY
        assert up["body"]["generationConfig"]["maxOutputTokens"] == 16
    else:
        assert_passthrough(env, model, up)


@pytest.mark.parametrize("model", [GEMINI, OPENAI])
def test_small_max_output_tokens_streamed_ends_incomplete(env, client, model):
    with client.responses.stream(model=model, input=LONG_PROMPT, max_output_tokens=16) as stream:
        events = list(stream)
    types = [e.type for e in events]
    assert types[-1] == "response.incomplete" and "response.completed" not in types, collapse(types)
    last = events[-1].response
    assert last.status == "incomplete" and last.incomplete_details.reason == "max_output_tokens"
    (up,) = served(env, model, n=1)
    if ROUTES[model][0] == "gemini":
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == CUT_REPLY
        assert up["body"]["generationConfig"]["maxOutputTokens"] == 16


# ---------------------------------------------------------------------------------------------
# Conversation state
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_previous_response_id_chain_of_three_turns(env, client, model):
    r1 = client.responses.create(model=model, instructions="Remember everything.", input="My name is Ada.")
    r2 = client.responses.create(model=model, previous_response_id=r1.id, input="I live in Paris.")
    r3 = client.responses.create(model=model, previous_response_id=r2.id, input="Where do I live?")
    assert len({r1.id, r2.id, r3.id}) == 3
    assert r3.output_text == expected_reply(model, "Where do I live?")
    assert r3.previous_response_id == r2.id
    ups = served(env, model, n=3)
    if ROUTES[model][0] == "gemini":
        assert turns(ups[2]) == [
            ("user", ["My name is Ada."]), ("model", [r1.output_text]),
            ("user", ["I live in Paris."]), ("model", [r2.output_text]),
            ("user", ["Where do I live?"]),
        ]
        # As OpenAI does: a previous response's instructions are not carried over.
        assert system_text(ups[0]) == "Remember everything." and system_text(ups[2]) is None
    else:
        for i, up in enumerate(ups):
            assert_passthrough(env, model, up, i)
        assert ups[2]["body"]["previous_response_id"] == r2.id


@pytest.mark.parametrize("model", MODELS)
def test_retrieve_input_items_and_delete(env, client, model):
    items = [{"role": "user", "content": "first"}, {"role": "user", "content": "second"}]
    r = client.responses.create(model=model, input=items)
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.status == "completed" and got.output_text == r.output_text
    listed = client.responses.input_items.list(r.id)
    assert [i.content[0].text for i in listed.data] == ["second", "first"], "newest first, as OpenAI lists them"
    asc = client.responses.input_items.list(r.id, order="asc")
    assert [i.content[0].text for i in asc.data] == ["first", "second"]
    assert client.responses.delete(r.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=model, previous_response_id=r.id, input="again")
    assert e.value.code == "previous_response_not_found"
    ups = served(env, model)
    if ROUTES[model][0] == "gemini":
        assert len(ups) == 1, "retrieve, list and delete of a gateway-minted id never leave the gateway"


@pytest.mark.parametrize("model", MODELS)
def test_store_false_keeps_nothing(env, client, model):
    r = client.responses.create(model=model, input="forget me", store=False)
    assert r.status == "completed"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=model, previous_response_id=r.id, input="do you remember?")
    assert e.value.status_code == 400 and e.value.code == "previous_response_not_found"
    if ROUTES[model][0] == "gemini":
        served(env, model, n=1)
    else:
        assert_passthrough(env, model, served(env, model)[0], 0)


@pytest.mark.parametrize("model", GEMINI_MODELS)
def test_unknown_previous_response_id(env, client, model):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=model, previous_response_id="resp_" + secrets.token_hex(24), input="hi")
    assert e.value.code == "previous_response_not_found"
    assert e.value.param == "previous_response_id"
    assert calls(env.gm) == [] and calls(env.oa) == []


def test_a_gemini_conversation_continues_on_an_openai_model(env, client):
    r1 = client.responses.create(model=GEMINI, input="My name is Ada.")
    r2 = client.responses.create(model=OPENAI, previous_response_id=r1.id, input="What is my name?")
    assert r2.status == "completed"
    (g,) = calls(env.gm)
    (o,) = calls(env.oa)
    assert o["path"] == "/v1/responses" and o["body"]["model"] == OPENAI
    assert "previous_response_id" not in o["body"], "the gateway's id means nothing to OpenAI"
    blob = json.dumps(o["body"]["input"])
    assert "My name is Ada." in blob and r1.output_text in blob and "What is my name?" in blob
    assert o["headers"]["authorization"] == f"Bearer {CLIENT_KEY}"
    assert g["headers"].get("x-goog-api-key") == CLIENT_KEY


def test_tenant_isolation(env, start_gateway):
    cfg = json.loads(json.dumps(env.cfg))
    cfg["auth"] = {"mode": "gateway", "require_auth_header": True, "keys": [
        {"id": "team-a", "key": "team-a-access-key-" + secrets.token_hex(6)},
        {"id": "team-b", "key": "team-b-access-key-" + secrets.token_hex(6)},
    ]}
    g = start_gateway(cfg)
    a = sdk_client(g, "unused", default_headers={"X-API-Key": cfg["auth"]["keys"][0]["key"]})
    b = sdk_client(g, "unused", default_headers={"X-API-Key": cfg["auth"]["keys"][1]["key"]})
    for model in (GEMINI, SMART):
        r = a.responses.create(model=model, input="team a's secret plan")
        with pytest.raises(openai.NotFoundError):
            b.responses.retrieve(r.id)
        with pytest.raises(openai.NotFoundError):
            b.responses.input_items.list(r.id)
        with pytest.raises(openai.NotFoundError):
            b.responses.delete(r.id)
        with pytest.raises(openai.BadRequestError) as e:
            b.responses.create(model=model, previous_response_id=r.id, input="what was the plan?")
        assert e.value.code == "previous_response_not_found"
        # Still team a's, untouched by team b's delete.
        assert a.responses.retrieve(r.id).output_text == r.output_text
        r2 = a.responses.create(model=model, previous_response_id=r.id, input="and now?")
        assert r2.status == "completed"
    gemini_calls = calls(env.gm)
    assert len(gemini_calls) == 4, "team b's attempts never reached Gemini"
    assert all(c["headers"].get("x-goog-api-key") == "gw-gemini-key" for c in gemini_calls)
    assert calls(env.oa) == []


def test_two_instances_share_conversations_through_redis(env, start_gateway, start_redis):
    redis = start_redis()
    g1 = start_gateway(env.cfg, env={"REDIS_URL": redis.url})
    g2 = start_gateway(env.cfg, env={"REDIS_URL": redis.url})
    c1, c2 = sdk_client(g1, CLIENT_KEY), sdk_client(g2, CLIENT_KEY)
    r1 = c1.responses.create(model=GEMINI, input="My name is Ada.")
    r2 = c2.responses.create(model=GEMINI, previous_response_id=r1.id, input="I live in Paris.")
    with c1.responses.stream(model=GEMINI, previous_response_id=r2.id, input="Where do I live?") as s:
        list(s)
        r3 = s.get_final_response()
    assert r3.status == "completed"
    ups = calls(env.gm)
    assert len(ups) == 3
    assert turns(ups[2]) == [
        ("user", ["My name is Ada."]), ("model", [r1.output_text]),
        ("user", ["I live in Paris."]), ("model", [r2.output_text]),
        ("user", ["Where do I live?"]),
    ]
    assert c1.responses.retrieve(r2.id).output_text == r2.output_text
    assert c2.responses.retrieve(r3.id).output_text == r3.output_text
    assert [i.content[0].text for i in c1.responses.input_items.list(r2.id, order="asc").data][-1] == "I live in Paris."
    assert int(redis.cli("DBSIZE").strip() or 0) > 0, "the conversation is kept in Redis"
    c2.responses.delete(r1.id)
    with pytest.raises(openai.NotFoundError):
        c1.responses.retrieve(r1.id)
    assert calls(env.oa) == []


# ---------------------------------------------------------------------------------------------
# Keys and virtual models across providers
# ---------------------------------------------------------------------------------------------

def test_a_virtual_model_across_providers_fails_over_and_keeps_the_bearer_home(env, client):
    # The client's bearer names no single provider here: each provider gets the gateway's key.
    env.gm.faults({"status": 500, "count": -1})
    raw = client.responses.with_raw_response.create(model=MIXED, input="fail over")
    assert raw.headers["x-gateway-provider"] == "openai"
    assert raw.parse().status == "completed"
    (o,) = calls(env.oa)
    assert o["body"]["model"] == OPENAI and o["headers"]["authorization"] == "Bearer gw-openai-key"
    assert all(r["headers"].get("x-goog-api-key") == "gw-gemini-key" for r in calls(env.gm))
    env.oa.reset()
    env.gm.reset()
    env.oa.faults({"status": 500, "count": -1})
    raw = client.responses.with_raw_response.create(model=MIXED, input="fail over back")
    assert raw.headers["x-gateway-provider"] == "gemini"
    assert raw.parse().output_text == "Mock reply to: fail over back"
    for m in env.mocks.values():
        assert CLIENT_KEY not in json.dumps([r["headers"] for r in m.requests()])


def test_no_client_key_reaches_a_provider_the_model_does_not_name(env):
    """Raw requests with both a bearer and a per-provider key: each goes only where it belongs."""
    url = env.gw.url + "/v1/responses"
    goog = "g-client-" + secrets.token_hex(8)
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "x-goog-api-key": goog}
    r = requests.post(url, json={"model": GEMINI, "input": "hi"}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert calls(env.oa) == []
    (g,) = calls(env.gm)
    assert g["headers"]["x-goog-api-key"] == goog and "authorization" not in g["headers"]
    r = requests.post(url, json={"model": OPENAI, "input": "hi"}, headers={"x-goog-api-key": goog}, timeout=10)
    assert r.status_code == 200, r.text
    (o,) = calls(env.oa)
    assert o["headers"]["authorization"] == "Bearer gw-openai-key"
    assert goog not in json.dumps(o["headers"])
    assert len(calls(env.gm)) == 1


# ---------------------------------------------------------------------------------------------
# Bad input and failures
# ---------------------------------------------------------------------------------------------

BAD_BODIES = [
    ("item-without-content", {"input": [{"type": "message", "role": "user"}]}, "input"),
    ("unknown-item-type", {"input": [{"type": "bogus_item", "text": "x"}]}, "input"),
    ("bad-role", {"input": [{"role": "wizard", "content": "x"}]}, "input"),
    ("unknown-call-id", {"input": [
        {"role": "user", "content": "weather?"},
        {"type": "function_call_output", "call_id": "call_never_made", "output": "21"},
    ], "tools": TOOLS}, "call_id"),
    ("input-wrong-type", {"input": 42}, "input"),
    ("temperature-wrong-type", {"input": "x", "temperature": "hot"}, "temperature"),
    ("max-output-tokens-wrong-type", {"input": "x", "max_output_tokens": "many"}, "max_output_tokens"),
    ("tools-wrong-type", {"input": "x", "tools": "get_weather"}, "tools"),
    ("built-in-tool", {"input": "x", "tools": [{"type": "web_search"}]}, "web_search"),
    ("text-format-wrong", {"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format"),
]


@pytest.mark.parametrize("model", [GEMINI, SMART])
@pytest.mark.parametrize("name,body,names", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_an_openai_shaped_400_naming_the_field(env, model, name, body, names):
    r = requests.post(env.gw.url + "/v1/responses", json={"model": model, **body},
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)
    err = openai_error(r, 400)
    assert err["type"] == "invalid_request_error"
    assert names in f"{err['param']} {err['message']}", err
    assert calls(env.gm) == [] and calls(env.oa) == [], "refused before any upstream call"
    # The next request is served.
    ok = requests.post(env.gw.url + "/v1/responses", json={"model": model, "input": "fine"},
                       headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)
    assert ok.status_code == 200, ok.text


def test_malformed_json_and_oversized_body(env):
    url = env.gw.url + "/v1/responses"
    openai_error(requests.post(url, data=b'{"model": "gemini-2.5-flash", "input": [', timeout=10,
                               headers={"Content-Type": "application/json"}), 400)
    big = {"model": GEMINI, "input": "x" * (MAX_BODY + 1000)}
    openai_error(requests.post(url, json=big, timeout=10), 413)
    assert calls(env.gm) == [] and calls(env.oa) == []
    assert requests.post(url, json={"model": GEMINI, "input": "fine"}, timeout=10).status_code == 200


@pytest.mark.parametrize("fault", [
    {"action": "break_stream", "path_contains": "streamGenerateContent"},
    {"action": "no_done", "path_contains": "streamGenerateContent"},
], ids=["broken", "no-finish-reason"])
def test_gemini_failure_mid_stream_never_completes(env, client, fault):
    env.gm.faults(fault)
    r = requests.post(env.gw.url + "/v1/responses", json={"model": GEMINI, "input": "stream then fail", "stream": True},
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"}, stream=True, timeout=15)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r)
    types = [(d.get("type") if isinstance(d, dict) else None) or name for name, d in events]
    assert "response.completed" not in types, types
    assert types and types[0] == "response.created", types
    assert types[-1] in ("response.failed", "error"), types
    seqs = [d.get("sequence_number") for _, d in events if isinstance(d, dict) and "sequence_number" in d]
    assert all(a < b for a, b in zip(seqs, seqs[1:])), seqs
    # The SDK sees it as a failure, not as a complete answer; and the next request is served.
    env.gm.faults(fault)
    try:
        with client.responses.stream(model=GEMINI, input="stream then fail") as s:
            list(s)
            final = s.get_final_response()
    except (openai.APIError, RuntimeError):
        pass  # an `error` event raises; a stream without `response.completed` has no final response
    else:
        pytest.fail(f"the SDK took a cut stream for a complete answer ({final.status})")
    assert client.responses.create(model=GEMINI, input="next").output_text == "Mock reply to: next"


def test_gemini_error_before_the_stream_is_an_openai_error(env, client):
    env.gm.faults({"status": 400, "count": 1, "body": {"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}}})
    with pytest.raises(openai.BadRequestError) as e:
        with client.responses.stream(model=GEMINI, input="bad") as s:
            list(s)
    assert "invalid argument" in e.value.message
    assert client.responses.create(model=GEMINI, input="next").status == "completed"


# ---------------------------------------------------------------------------------------------
# Other /v1/* routes naming a model
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,body", [
    ("/v1/completions", {"model": GEMINI, "prompt": "Say hi"}),
    ("/v1/completions", {"model": SMART, "prompt": "Say hi"}),
    ("/v1/completions", {"model": f"gemini/{GEMINI}", "prompt": "Say hi"}),
    ("/v1/moderations", {"model": GEMINI, "input": "hello"}),
], ids=["completions-gemini", "completions-virtual", "completions-prefixed", "moderations-gemini"])
def test_other_routes_refuse_models_they_cannot_serve(env, path, body):
    r = requests.post(env.gw.url + path, json=body, headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)
    err = openai_error(r, 400)
    assert path in err["message"], err
    assert calls(env.oa) == [] and calls(env.gm) == []


def test_other_routes_still_forward_openai_models(env):
    r = requests.post(env.gw.url + "/v1/completions", json={"model": OPENAI, "prompt": "Say hi"},
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)
    assert r.status_code == 200, r.text
    (o,) = calls(env.oa)
    assert o["path"] == "/v1/completions" and o["headers"]["authorization"] == f"Bearer {CLIENT_KEY}"
    assert calls(env.gm) == []


# ---------------------------------------------------------------------------------------------
# Access log
# ---------------------------------------------------------------------------------------------

def test_access_log_names_the_route_provider_model_and_tokens(env, client):
    rid = "resp-log-" + secrets.token_hex(4)
    client.responses.create(model=SMART, input="log me", extra_headers={"x-request-id": rid})
    deadline = time.time() + 5
    recs = []
    while time.time() < deadline and not recs:
        recs = [r for r in env.gw.access_logs() if r.get("request_id") == rid]
        time.sleep(0.05)
    assert len(recs) == 1, recs
    rec = recs[0]
    assert (rec["route"], rec["status"], rec["provider"], rec["model"], rec["attempts"]) == ("responses", 200, "gemini", GEMINI, 1)
    assert rec["prompt_tokens"] > 0 and rec["completion_tokens"] > 0
    metrics = requests.get(env.gw.url + "/metrics", timeout=5).text
    assert any('route="responses"' in line and "gateway_requests_total" in line for line in metrics.splitlines())


# ---------------------------------------------------------------------------------------------
# More of §11's translation: signatures without stored state, thoughts, tool_choice, parameters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("replay", ["all-items", "calls-only"])
def test_gemini3_signatures_survive_a_stateless_round_trip(env, client, replay):
    """store=false with encrypted reasoning (the zero-retention pattern): the client carries the
    signature back in the items it replays, with no state on the gateway."""
    question = {"role": "user", "content": "What is the weather in Paris?"}
    r1 = client.responses.create(model=GEMINI3, input=[question], tools=TOOLS, store=False,
                                 include=["reasoning.encrypted_content"])
    fc = function_calls(r1)
    check_calls(GEMINI3, fc)
    replayed = r1.output if replay == "all-items" else fc
    outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": TOOL_RESULT} for c in fc]
    r2 = client.responses.create(model=GEMINI3, input=[question, *as_input(replayed), *outputs], tools=TOOLS,
                                 store=False, include=["reasoning.encrypted_content"])
    assert r2.output_text == "Mock saw tool result: get_weather"
    ups = served(env, GEMINI3, n=2)
    check_gemini_tool_turns(ups[1], GEMINI3)
    sig = [p for p in parts(ups[0]["body"]["contents"][0]) if "thoughtSignature" in p]
    assert sig == [], "the first request had nothing to sign"


def test_reasoning_summary_returns_gemini_thoughts(env, client):
    r = client.responses.create(model=GEMINI, input="why is the sky blue",
                                reasoning={"effort": "low", "summary": "auto"})
    (up,) = served(env, GEMINI, n=1)
    assert up["body"]["generationConfig"]["thinkingConfig"].get("includeThoughts") is True
    reasoning = [o for o in r.output if o.type == "reasoning"]
    assert len(reasoning) == 1 and r.output[0].type == "reasoning", [o.type for o in r.output]
    summary = " ".join(s.text for s in reasoning[0].summary)
    assert "Thinking about: why is the sky blue" in summary
    assert r.output_text == "Mock reply to: why is the sky blue", "thoughts stay out of the answer text"
    assert r.usage.output_tokens_details.reasoning_tokens == 7


@pytest.mark.parametrize("choice,mode,names", [
    ("auto", "AUTO", None),
    ("required", "ANY", None),
    ("none", "NONE", None),
    ({"type": "function", "name": "get_time"}, "ANY", ["get_time"]),
], ids=["auto", "required", "none", "forced"])
def test_tool_choice_reaches_gemini_tool_config(env, client, choice, mode, names):
    client.responses.create(model=GEMINI, input="What time is it in Rome?", tools=TOOLS, tool_choice=choice)
    (up,) = served(env, GEMINI, n=1)
    fcc = up["body"].get("toolConfig", {}).get("functionCallingConfig", {"mode": "AUTO"})
    assert fcc.get("mode", "AUTO") == mode, fcc
    assert fcc.get("allowedFunctionNames") == names, fcc


def test_sampling_json_mode_and_metadata(env, client):
    r = client.responses.create(model=GEMINI, input="Reply in JSON.", temperature=0.25, top_p=0.5,
                                text={"format": {"type": "json_object"}}, metadata={"team": "search"}, user="user-42")
    assert json.loads(r.output_text) == {"mock": True}
    assert r.metadata == {"team": "search"}
    assert r.temperature == 0.25 and r.top_p == 0.5
    assert client.responses.retrieve(r.id).metadata == {"team": "search"}
    (up,) = served(env, GEMINI, n=1)
    gc = up["body"]["generationConfig"]
    assert (gc["temperature"], gc["topP"], gc["responseMimeType"]) == (0.25, 0.5, "application/json")
    assert "search" not in json.dumps(up["body"]), "metadata is the gateway's, not Gemini's"


def test_input_file_reaches_gemini_inline(env, client):
    pdf = base64.b64encode(b"%PDF-1.4\n% mock\n").decode()
    content = [{"type": "input_text", "text": "Summarize the file."},
               {"type": "input_file", "filename": "a.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}]
    r = client.responses.create(model=GEMINI, input=[{"role": "user", "content": content}])
    assert r.output_text == "Mock reply to: Summarize the file."
    (up,) = served(env, GEMINI, n=1)
    inline = [p["inlineData"] for p in parts(up["body"]["contents"][0]) if "inlineData" in p]
    assert inline == [{"mimeType": "application/pdf", "data": pdf}]


def test_delete_answers_openai_shape(env, client):
    r = client.responses.create(model=GEMINI, input="delete me")
    d = requests.delete(f"{env.gw.url}/v1/responses/{r.id}", headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)
    assert d.status_code == 200, d.text
    assert d.json()["id"] == r.id and d.json()["deleted"] is True
    err = openai_error(requests.get(f"{env.gw.url}/v1/responses/{r.id}", headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=10), 404)
    assert err["type"] == "invalid_request_error"


def test_a_virtual_model_fails_over_before_the_first_event_of_a_stream(env, client):
    env.gm.faults({"status": 503, "count": -1})
    with client.responses.stream(model=MIXED, input="stream fail over") as s:
        events = list(s)
        final = s.get_final_response()
    assert collapse([e.type for e in events]) == TEXT_EVENTS
    assert final.output_text == "Mock reply to: stream fail over"
    (o,) = calls(env.oa)
    assert o["body"]["model"] == OPENAI and o["body"]["stream"] is True


# ---------------------------------------------------------------------------------------------
# Cache, rate limit and state expiry on this route
# ---------------------------------------------------------------------------------------------

def post_responses(gw, body, key=CLIENT_KEY):
    return requests.post(gw.url + "/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_cache_serves_store_false_only_and_per_caller(env, start_gateway):
    cfg = json.loads(json.dumps(env.cfg))
    cfg["cache"] = {"enabled": True, "ttl": 60, "max_size": 100}
    g = start_gateway(cfg)
    body = {"model": GEMINI, "input": "cache me", "store": False}
    first, second = post_responses(g, body), post_responses(g, body)
    assert (first.status_code, second.status_code) == (200, 200)
    assert [first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]] == ["MISS", "HIT"]
    assert second.json()["output"] == first.json()["output"]
    assert len(calls(env.gm)) == 1
    other = post_responses(g, body, key=client_key())
    assert other.headers["x-gateway-cache"] == "MISS", "another caller never gets this caller's answer"
    assert len(calls(env.gm)) == 2
    # Stored answers are not cached: each one is its own response, continuable by its id.
    stored = [post_responses(g, {"model": GEMINI, "input": "keep me"}) for _ in range(2)]
    assert all(r.status_code == 200 and r.headers["x-gateway-cache"] != "HIT" for r in stored)
    assert stored[0].json()["id"] != stored[1].json()["id"]
    assert len(calls(env.gm)) == 4
    assert calls(env.oa) == []


def test_rate_limit_applies_to_responses(env, start_gateway):
    cfg = json.loads(json.dumps(env.cfg))
    cfg["security"] = {"rate_limit_rpm": 3}
    g = start_gateway(cfg)
    codes = [post_responses(g, {"model": GEMINI, "input": f"n{i}"}) for i in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429], [r.status_code for r in codes]
    err = openai_error(codes[3], 429)
    assert int(codes[3].headers["retry-after"]) >= 1, err
    assert len(calls(env.gm)) == 3


def test_expired_responses_are_gone(env, start_gateway):
    cfg = json.loads(json.dumps(env.cfg))
    cfg["responses"] = {"store_ttl": 1}
    g = start_gateway(cfg)
    c = sdk_client(g, CLIENT_KEY)
    r = c.responses.create(model=GEMINI, input="short-lived")
    assert c.responses.retrieve(r.id).id == r.id
    time.sleep(2.2)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model=GEMINI, previous_response_id=r.id, input="still there?")
    assert e.value.code == "previous_response_not_found"
    assert len(calls(env.gm)) == 1


# ---------------------------------------------------------------------------------------------
# What teams moving their agents over run into
# ---------------------------------------------------------------------------------------------

def test_stream_of_multibyte_text_assembles_and_is_stored(env, client):
    text = "héllo wörld, 日本語のテキスト 🚀🚀 ünïcödé"
    with client.responses.stream(model=GEMINI, input=text) as s:
        events = list(s)
        final = s.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == final.output_text == expected_reply(GEMINI, text[:64])
    # A streamed answer is stored like any other.
    got = client.responses.retrieve(final.id)
    assert got.output_text == final.output_text and got.status == "completed"
    assert [i.content[0].text for i in client.responses.input_items.list(final.id).data] == [text]


def test_input_items_pagination(env, client):
    items = [{"role": "user", "content": f"item {i}"} for i in range(5)]
    r = client.responses.create(model=GEMINI, input=items)
    page = client.responses.input_items.list(r.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["item 0", "item 1"]
    assert page.has_more is True
    every = [i.content[0].text for i in client.responses.input_items.list(r.id, limit=2, order="asc")]
    assert every == [f"item {i}" for i in range(5)], "auto-pagination (after=last_id) walks every item"
    ids = [i.id for i in client.responses.input_items.list(r.id, limit=10).data]
    assert all(ids) and len(set(ids)) == 5


@pytest.mark.parametrize("field,value", [
    ("background", True),
    ("prompt", {"id": "pmpt_123", "version": "2"}),
    ("conversation", "conv_123"),
], ids=["background", "prompt", "conversation"])
def test_untranslatable_parameters_are_a_400_naming_them(env, field, value):
    r = post_responses(env.gw, {"model": GEMINI, "input": "x", field: value})
    err = openai_error(r, 400)
    assert field in f"{err['param']} {err['message']}", err
    assert calls(env.gm) == [] and calls(env.oa) == []


class Leg(BaseModel):
    city: str
    days: int


class Trip(BaseModel):
    name: str
    legs: list[Leg]
    budget: float | None = None


def test_parse_a_nested_pydantic_model(env, client):
    r = client.responses.parse(model=GEMINI, input="Plan a trip as JSON.", text_format=Trip)
    assert isinstance(r.output_parsed, Trip) and r.output_parsed.legs and isinstance(r.output_parsed.legs[0], Leg)
    (up,) = served(env, GEMINI, n=1)
    schema = up["body"]["generationConfig"]["responseJsonSchema"]
    assert set(schema["properties"]) == {"name", "legs", "budget"}


def test_function_call_output_as_content_parts(env, client):
    question = {"role": "user", "content": "What is the weather in Paris?"}
    r1 = client.responses.create(model=GEMINI, input=[question], tools=TOOLS)
    fc = function_calls(r1)
    outputs = [{"type": "function_call_output", "call_id": c.call_id,
                "output": [{"type": "input_text", "text": f"sunny {i}"}]} for i, c in enumerate(fc)]
    r2 = client.responses.create(model=GEMINI, input=[question, *as_input(r1.output), *outputs], tools=TOOLS)
    assert r2.output_text == "Mock saw tool result: get_weather"
    up = served(env, GEMINI, n=2)[1]
    results = [p["functionResponse"] for p in parts(up["body"]["contents"][-1]) if "functionResponse" in p]
    assert "sunny 0" in json.dumps(results[0]) and "sunny 1" in json.dumps(results[1])


def gemini_answer(finish, text="partial", **extra):
    cand = {"index": 0, "finishReason": finish}
    if text is not None:
        cand["content"] = {"role": "model", "parts": [{"text": text}]}
    return {"candidates": [cand], "modelVersion": GEMINI, "responseId": "mock-x",
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 3, "totalTokenCount": 15,
                              "cachedContentTokenCount": 5}, **extra}


def test_a_safety_stop_is_incomplete_content_filter(env, client):
    env.gm.faults({"status": 200, "body": gemini_answer("SAFETY", text=None), "path_contains": ":generateContent"})
    r = client.responses.create(model=GEMINI, input="something unsafe")
    assert r.status == "incomplete" and r.incomplete_details.reason == "content_filter"
    assert r.usage.input_tokens_details.cached_tokens == 5
    event = "data: " + json.dumps(gemini_answer("SAFETY", text="par")) + "\r\n\r\n"
    env.gm.faults({"action": "garbage", "status": 200, "body": event, "content_type": "text/event-stream",
                   "path_contains": ":streamGenerateContent"})
    with client.responses.stream(model=GEMINI, input="something unsafe") as s:
        events = list(s)
    assert events[-1].type == "response.incomplete", collapse([e.type for e in events])
    assert events[-1].response.incomplete_details.reason == "content_filter"


def test_cached_tokens_are_reported(env, client):
    env.gm.faults({"status": 200, "body": gemini_answer("STOP", text="cached answer"), "path_contains": ":generateContent"})
    r = client.responses.create(model=GEMINI, input="long shared prefix")
    assert r.status == "completed" and r.output_text == "cached answer"
    assert r.usage.input_tokens == 12 and r.usage.output_tokens == 3
    assert r.usage.input_tokens_details.cached_tokens == 5


def test_branching_from_one_response(env, client):
    root = client.responses.create(model=GEMINI, input="Pick a colour.")
    a = client.responses.create(model=GEMINI, previous_response_id=root.id, input="Branch A")
    b = client.responses.create(model=GEMINI, previous_response_id=root.id, input="Branch B")
    tail = client.responses.create(model=GEMINI, previous_response_id=b.id, input="After B")
    ups = served(env, GEMINI, n=4)
    assert turns(ups[1])[-1] == ("user", ["Branch A"]) and len(ups[1]["body"]["contents"]) == 3
    assert turns(ups[2])[-1] == ("user", ["Branch B"]) and len(ups[2]["body"]["contents"]) == 3
    assert "Branch A" not in json.dumps(ups[3]["body"]), "branch B never sees branch A"
    assert [t for t, _ in turns(ups[3])] == ["user", "model", "user", "model", "user"]
    assert len({root.id, a.id, b.id, tail.id}) == 4


def test_concurrent_conversations(env, client):
    from concurrent.futures import ThreadPoolExecutor

    def converse(i):
        r1 = client.responses.create(model=GEMINI, input=f"conversation {i}")
        r2 = client.responses.create(model=GEMINI, previous_response_id=r1.id, input=f"more {i}")
        return r1, r2

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(converse, range(16)))
    ids = [r.id for pair in results for r in pair]
    assert len(set(ids)) == 32
    for i, (_, r2) in enumerate(results):
        assert r2.output_text == f"Mock reply to: more {i}"
    for up in calls(env.gm):
        contents = up["body"]["contents"]
        if len(contents) == 3:  # a second turn carries its own first turn, no other conversation's
            i = texts(contents[2])[0].split()[-1]
            assert texts(contents[0]) == [f"conversation {i}"], contents
    assert len(calls(env.gm)) == 32
