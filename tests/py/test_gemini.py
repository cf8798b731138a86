"""Gemini behind the gateway: OpenAI clients on Gemini models (translated), and Gemini SDKs on
Gemini's native routes (passed through). The mock validates Gemini requests strictly."""

import base64
import json

import openai
import pytest
import requests
from google import genai
from google.genai import types

from conftest import provider_config


@pytest.fixture
def client(gw_gateway_mode):
    return openai.OpenAI(base_url=gw_gateway_mode.url + "/v1", api_key="unused", max_retries=0)


def gemini_requests(mock):
    return [r for r in mock.requests() if r["path"].startswith("/v1beta/")]


def test_sdk_non_stream_on_a_gemini_model(client, mock):
    resp = client.chat.completions.create(
        model="gemini-2.0-flash",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi gemini"}],
        temperature=0.2, max_tokens=50, stop=["END"], seed=7,
    )
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == "Mock reply to: hi gemini"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    sent = gemini_requests(mock)[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent["headers"]["x-goog-api-key"] == "gw-gemini-key"
    body = sent["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi gemini"}]}]
    assert body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["END"], "seed": 7}


def test_sdk_stream_with_usage(client, mock):
    stream = client.chat.completions.create(
        model="gemini-2.0-flash", messages=[{"role": "user", "content": "stream gemini"}],
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply to: stream gemini"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert gemini_requests(mock)[-1]["path"] == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert gemini_requests(mock)[-1]["query"] == {"alt": "sse"}


TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather", "strict": True,
        "description": "Weather for a city",
        "parameters": {
            "type": "object", "additionalProperties": False, "required": ["city", "unit"],
            "properties": {
                "city": {"type": "string"},
                "unit": {"anyOf": [{"$ref": "#/$defs/Unit"}, {"type": "null"}]},
            },
            "$defs": {"Unit": {"type": "string", "enum": ["c", "f"]}},
        },
    },
}]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip_keeps_the_thought_signature(client, mock, stream):
    model = "gemini-3-pro-preview"
    messages = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        chunks = list(client.chat.completions.create(model=model, messages=messages, tools=TOOLS, stream=True))
        calls = {}
        for c in chunks:
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                slot = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "arguments": ""})
                slot["arguments"] += tc.function.arguments or ""
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
        assert sorted(calls) == [0, 1], "parallel calls get distinct indexes"
        tool_calls = [{"id": calls[i]["id"], "type": "function", "function": {"name": calls[i]["name"], "arguments": calls[i]["arguments"]}} for i in sorted(calls)]
    else:
        resp = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, tool_choice="auto")
        assert resp.choices[0].finish_reason == "tool_calls"
        msg = resp.choices[0].message
        tool_calls = [tc.model_dump(exclude_none=True) for tc in msg.tool_calls]
    assert len(tool_calls) == 2 and tool_calls[0]["id"] != tool_calls[1]["id"]
    assert json.loads(tool_calls[0]["function"]["arguments"]) == {"mock": True}
    first_request = gemini_requests(mock)[-1]["body"]
    decl = first_request["tools"][0]["functionDeclarations"][0]
    assert decl["name"] == "get_weather" and decl["parametersJsonSchema"]["additionalProperties"] is False
    messages += [
        {"role": "assistant", "content": None, "tool_calls": tool_calls},
        {"role": "tool", "tool_call_id": tool_calls[0]["id"], "content": json.dumps({"temp": 21})},
        {"role": "tool", "tool_call_id": tool_calls[1]["id"], "content": "rainy"},
    ]
    follow = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert follow.choices[0].message.content == "Mock saw tool result: get_weather"
    sent = gemini_requests(mock)[-1]["body"]["contents"]
    model_turn = [c for c in sent if c["role"] == "model"][0]
    assert model_turn["parts"][0]["functionCall"]["args"] == {"mock": True}
    assert "thoughtSignature" in model_turn["parts"][0]
    results = [p["functionResponse"] for p in sent[-1]["parts"]]
    assert [r["name"] for r in results] == ["get_weather", "get_weather"]


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_false_answers_one_call(client, mock, stream):
    """The mock's Gemini calls twice; Gemini cannot be told not to, so the gateway keeps the
    first call and the signature that rides on it."""
    model, messages = "gemini-3-pro-preview", [{"role": "user", "content": "weather in Paris?"}]
    args = dict(model=model, messages=messages, tools=TOOLS, parallel_tool_calls=False)
    if stream:
        chunks = list(client.chat.completions.create(**args, stream=True))
        calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        assert [tc.index for tc in calls] == [0], calls
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
        call = calls[0]
    else:
        resp = client.chat.completions.create(**args)
        assert resp.choices[0].finish_reason == "tool_calls"
        assert len(resp.choices[0].message.tool_calls) == 1
        call = resp.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"mock": True}
    assert "parallel_tool_calls" not in json.dumps(gemini_requests(mock)[-1]["body"])
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "rainy"},
    ]
    follow = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, parallel_tool_calls=False)
    assert follow.choices[0].message.content == "Mock saw tool result: get_weather"
    model_turn = [c for c in gemini_requests(mock)[-1]["body"]["contents"] if c["role"] == "model"][0]
    assert [p["functionCall"]["args"] for p in model_turn["parts"]] == [{"mock": True}]
    assert "thoughtSignature" in model_turn["parts"][0]


def test_json_schema_response_format(client, mock):
    schema = {"type": "object", "properties": {"mock": {"type": "boolean"}}, "required": ["mock"], "additionalProperties": False}
    resp = client.chat.completions.create(
        model="gemini-2.0-flash", messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": True}},
    )
    assert json.loads(resp.choices[0].message.content) == {"mock": True}
    cfg = gemini_requests(mock)[-1]["body"]["generationConfig"]
    assert cfg["responseMimeType"] == "application/json"
    assert cfg["responseJsonSchema"] == schema


def test_image_input_becomes_inline_data(client, mock):
    png = base64.b64encode(b"\x89PNG fake image bytes").decode()
    resp = client.chat.completions.create(model="gemini-2.0-flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
    ]}])
    assert resp.choices[0].message.content.startswith("Mock reply to: what is this?")
    parts = gemini_requests(mock)[-1]["body"]["contents"][0]["parts"]
    assert parts == [{"text": "what is this?"}, {"inlineData": {"mimeType": "image/png", "data": png}}]


def test_embeddings_through_gemini_match_the_mock(client, mock):
    emb = client.embeddings.create(model="text-embedding-004", input=["alpha", "beta"], dimensions=8)
    assert [d.index for d in emb.data] == [0, 1]
    sent = gemini_requests(mock)[-1]
    assert sent["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    direct = requests.post(mock.url + "/v1beta/models/text-embedding-004:embedContent", headers={"x-goog-api-key": "k"},
                           json={"content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": 8}, timeout=5).json()
    assert emb.data[0].embedding == pytest.approx(direct["embedding"]["values"], abs=1e-6)
    single = client.embeddings.create(model="text-embedding-004", input="alpha", encoding_format="float")
    assert single.data[0].embedding == pytest.approx(direct["embedding"]["values"], abs=1e-6)
    assert gemini_requests(mock)[-1]["path"] == "/v1beta/models/text-embedding-004:embedContent"


def test_gemini_errors_come_back_openai_shaped(gw, mock):
    mock.faults({"status": 400, "path_contains": ":generateContent"})
    r = gw.chat(model="gemini-2.0-flash")
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_argument"
    assert gw.chat(model="gemini-2.0-flash").status_code == 200


def test_an_untranslatable_parameter_is_a_400_naming_it(gw, mock):
    r = gw.chat(model="gemini-2.0-flash", logit_bias={"50256": -100})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "logit_bias"
    assert gemini_requests(mock) == []


def test_a_broken_gemini_stream_ends_with_an_error_event_not_done(gw, mock):
    mock.faults({"action": "break_stream", "path_contains": "streamGenerateContent"})
    with requests.post(gw.url + "/v1/chat/completions", stream=True, timeout=30, json={
        "model": "gemini-2.0-flash", "stream": True, "messages": [{"role": "user", "content": "break please"}],
    }) as r:
        assert r.status_code == 200
        events = [line[6:].decode() for line in r.iter_lines() if line.startswith(b"data: ")]
    assert "[DONE]" not in events
    assert "error" in json.loads(events[-1])


@pytest.fixture
def genai_client(gw):
    return genai.Client(api_key="client-goog-key", http_options=types.HttpOptions(base_url=gw.url, api_version="v1beta"))


def test_google_genai_sdk_native_generate(genai_client, mock):
    resp = genai_client.models.generate_content(model="gemini-2.0-flash", contents="native hello")
    assert resp.text == "Mock reply to: native hello"
    sent = gemini_requests(mock)[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent["headers"]["x-goog-api-key"] == "client-goog-key", "hybrid mode: the client's key wins"


def test_google_genai_sdk_native_stream(genai_client, mock):
    pieces = [c.text for c in genai_client.models.generate_content_stream(model="gemini-2.0-flash", contents="native stream")]
    assert len(pieces) > 1
    assert "".join(pieces) == "Mock reply to: native stream"
    assert gemini_requests(mock)[-1]["query"].get("alt") == "sse"


def test_native_route_in_gateway_mode_injects_the_gateway_key(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": "gateway"}
    g = start_gateway(cfg)
    r = requests.post(g.url + "/v1beta/models/gemini-2.0-flash:countTokens?key=client-key",
                      json={"contents": [{"parts": [{"text": "count me"}]}]}, timeout=10)
    assert r.status_code == 200 and r.json()["totalTokens"] > 0
    sent = gemini_requests(mock)[-1]
    assert sent["headers"]["x-goog-api-key"] == "gw-gemini-key"
    assert "key" not in sent["query"], "a key never travels in the upstream URL"
