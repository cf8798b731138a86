"""google-genai on every model (SPEC §12): the official SDK on Gemini's native routes with an
OpenAI model (`gpt-4o-mini`, `openai/gpt-4o-mini`) or a virtual model, translated to Chat
Completions / Embeddings; asserted on what the SDK got and on what reached the mock."""

import base64
import hashlib
import json

import pytest
import requests
from google import genai
from google.genai import errors, types

from conftest import provider_config

VIRTUAL = {
    "smart": ["openai/gpt-4o-mini", "gemini/gemini-2.0-flash"],
    "gem-first": ["gemini/gemini-2.0-flash", "openai/gpt-4o-mini"],
    "embed-any": ["openai/text-embedding-3-small"],
}
MODELS = ["gpt-4o-mini", "openai/gpt-4o-mini", "smart"]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def gw(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["routing"]["models"] = VIRTUAL
    return start_gateway(cfg)


def client_for(gw, api_key="client-goog-key", headers=None):
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(
        base_url=gw.url, api_version="v1beta", headers=headers or {}))


@pytest.fixture
def client(gw):
    return client_for(gw)


def openai_calls(mock, path="/v1/chat/completions"):
    return [r for r in mock.requests() if r["path"] == path]


def gemini_calls(mock):
    return [r for r in mock.requests() if r["path"].startswith("/v1beta/")]


def only_openai(mock, path="/v1/chat/completions"):
    """The one request that reached the mock: OpenAI's, with the gateway's OpenAI key and no
    Google key; nothing reached Gemini."""
    assert gemini_calls(mock) == [], "nothing may reach Gemini for an OpenAI candidate"
    calls = openai_calls(mock, path)
    assert len(calls) == 1, [r["path"] for r in mock.requests()]
    sent = calls[0]
    assert sent["headers"]["authorization"] == "Bearer gw-openai-key", "hybrid: the gateway's OpenAI key"
    assert "x-goog-api-key" not in sent["headers"], "a Google key never reaches OpenAI"
    assert "client-goog-key" not in json.dumps(sent), "a Google key never reaches OpenAI"
    return sent


@pytest.mark.parametrize("model", MODELS)
def test_generate_content_with_system_instruction_and_config(client, mock, model):
    resp = client.models.generate_content(
        model=model, contents="hello there",
        config=types.GenerateContentConfig(
            system_instruction="be brief", temperature=0.2, top_p=0.9, max_output_tokens=50,
            stop_sequences=["END"], seed=7, presence_penalty=0.1, frequency_penalty=0.2,
            candidate_count=1,
        ),
    )
    assert resp.text == "Mock reply to: hello there"
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    assert resp.usage_metadata.prompt_token_count > 0
    assert resp.usage_metadata.total_token_count == (
        resp.usage_metadata.prompt_token_count + resp.usage_metadata.candidates_token_count)
    assert resp.model_version == "gpt-4o-mini" and resp.response_id.startswith("chatcmpl-")
    body = only_openai(mock)["body"]
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        "temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 50, "stop": ["END"], "seed": 7,
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "n": 1,
    }


def test_multi_turn_and_inline_image(client, mock):
    resp = client.models.generate_content(model="gpt-4o-mini", contents=[
        types.Content(role="user", parts=[types.Part(text="first")]),
        types.Content(role="model", parts=[types.Part(text="ok")]),
        types.Content(role="user", parts=[types.Part(text="describe"), types.Part.from_bytes(data=PNG, mime_type="image/png")]),
    ])
    assert resp.text == "Mock reply to: describe"
    assert only_openai(mock)["body"]["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [
            {"type": "text", "text": "describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
        ]},
    ]


@pytest.mark.parametrize("model", MODELS)
def test_generate_content_stream_assembles_with_usage_last(client, mock, model):
    chunks = list(client.models.generate_content_stream(model=model, contents="stream please"))
    assert len(chunks) > 1
    assert "".join(c.text or "" for c in chunks) == "Mock reply to: stream please"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count > 0
    assert all(c.usage_metadata is None for c in chunks[:-1]), "usage comes with the last chunk"
    assert len({c.response_id for c in chunks}) == 1
    body = only_openai(mock)["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="Weather for a city",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]),
)])
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "smart"])
def test_function_calling_round_trip(client, mock, model):
    config = types.GenerateContentConfig(tools=[WEATHER], automatic_function_calling=NO_AFC)
    question = types.Content(role="user", parts=[types.Part(text="weather in Paris?")])
    first = client.models.generate_content(model=model, contents=[question], config=config)
    call = first.function_calls[0]
    assert (call.id, call.name, call.args) == ("call_mock_1", "get_weather", {"mock": True})
    sent = openai_calls(mock)[-1]["body"]
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }}]
    answer = types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        id=call.id, name=call.name, response={"temp": 20}))])
    second = client.models.generate_content(
        model=model, contents=[question, first.candidates[0].content, answer], config=config)
    assert second.text == 'Mock saw tool result: {"temp":20}'
    messages = openai_calls(mock)[-1]["body"]["messages"]
    assert messages[1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_mock_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"mock":true}'}}]},
        {"role": "tool", "tool_call_id": "call_mock_1", "content": '{"temp":20}'},
    ]
    assert gemini_calls(mock) == []


def test_a_streamed_function_call_arrives_whole(client, mock):
    config = types.GenerateContentConfig(tools=[WEATHER], automatic_function_calling=NO_AFC)
    chunks = list(client.models.generate_content_stream(model="gpt-4o-mini", contents="weather?", config=config))
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert [(fc.id, fc.name, fc.args) for fc in calls] == [("call_mock_1", "get_weather", {"mock": True})]


@pytest.mark.parametrize("which", ["response_schema", "response_json_schema"])
def test_json_schema_output(client, mock, which):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    config = types.GenerateContentConfig(response_mime_type="application/json", **{which: schema})
    client.models.generate_content(model="gpt-4o-mini", contents="json please", config=config)
    fmt = only_openai(mock)["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "response"
    assert fmt["json_schema"]["schema"] == schema


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens_is_answered_by_the_gateway(client, mock, model):
    r = client.models.count_tokens(model=model, contents="count these few words please")
    assert r.total_tokens > 0
    assert mock.requests() == [], "an OpenAI model's count is the gateway's estimate"


@pytest.mark.parametrize("model", ["openai/text-embedding-3-small", "embed-any"])
def test_embed_content_one_and_a_batch(client, mock, model):
    one = client.models.embed_content(model=model, contents="embed me")
    assert len(one.embeddings) == 1 and len(one.embeddings[0].values) > 0
    many = client.models.embed_content(model=model, contents=["a", "b", "c"])
    assert len(many.embeddings) == 3
    assert many.embeddings[0].values != many.embeddings[1].values
    sent = openai_calls(mock, "/v1/embeddings")
    assert [r["body"]["input"] for r in sent] == [["embed me"], ["a", "b", "c"]]
    assert all(r["body"]["model"] == "text-embedding-3-small" for r in sent)
    assert gemini_calls(mock) == []


def test_embed_content_on_the_single_route(gw, mock):
    r = requests.post(gw.url + "/v1beta/models/openai/text-embedding-3-small:embedContent",
                      headers={"x-goog-api-key": "client-goog-key"},
                      json={"content": {"parts": [{"text": "single"}]}, "taskType": "RETRIEVAL_QUERY"}, timeout=10)
    assert r.status_code == 200, r.text
    assert len(r.json()["embedding"]["values"]) > 0
    assert only_openai(mock, "/v1/embeddings")["body"]["input"] == "single"


def test_errors_are_google_shaped(client, gw, mock):
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(model="anthropic/claude-3", contents="hi")
    assert e.value.code == 404 and e.value.status == "NOT_FOUND"
    mock.faults({"status": 400, "path_contains": "/chat/completions"})
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(model="gpt-4o-mini", contents="hi")
    assert e.value.code == 400 and e.value.status == "INVALID_ARGUMENT"
    r = requests.post(gw.url + "/v1beta/models/gpt-4o-mini:generateContent",
                      json={"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, timeout=10)
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"code", "message", "status"} and err["status"] == "INVALID_ARGUMENT"
    assert "contents[0].role" in err["message"]
    r = requests.post(gw.url + "/v1beta/models/gpt-4o-mini:generateContent",
                      json={"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]}, timeout=10)
    assert r.status_code == 400 and "executableCode" in r.json()["error"]["message"]
    r = requests.post(gw.url + "/v1beta/models/gpt-4o-mini:generateContent", data=b"{nope", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert len(openai_calls(mock)) == 1, "only the faulted request went upstream"


def test_json_array_framing_without_alt_sse(gw, mock):
    r = requests.post(gw.url + "/v1beta/models/gpt-4o-mini:streamGenerateContent",
                      json={"contents": [{"parts": [{"text": "array please"}]}]}, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    chunks = r.json()
    assert isinstance(chunks, list) and len(chunks) > 1
    assert "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]) == \
        "Mock reply to: array please"
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] > 0
    assert r.headers["x-gateway-provider"] == "openai"


def test_keys_per_provider_and_auth_mode(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": "client"}
    g = start_gateway(cfg)
    goog_only = client_for(g)
    with pytest.raises(errors.ClientError) as e:
        goog_only.models.generate_content(model="gpt-4o-mini", contents="hi")
    assert e.value.code == 401 and e.value.status == "UNAUTHENTICATED"
    assert mock.requests() == []
    both = client_for(g, headers={"x-openai-api-key": "sk-client-openai"})
    resp = both.models.generate_content(model="gpt-4o-mini", contents="hi")
    assert resp.text == "Mock reply to: hi"
    sent = openai_calls(mock)[-1]
    assert sent["headers"]["authorization"] == "Bearer sk-client-openai"
    assert "x-goog-api-key" not in sent["headers"]
    r = requests.post(g.url + "/v1beta/models/gpt-4o-mini:generateContent?key=client-goog-key",
                      headers={"x-openai-api-key": "sk-client-openai"},
                      json={"contents": [{"parts": [{"text": "q"}]}]}, timeout=10)
    assert r.status_code == 200
    assert "key" not in openai_calls(mock)[-1]["query"]


def test_a_virtual_model_fails_over_across_providers(client, mock):
    mock.faults({"status": 500, "count": -1, "path_contains": "/chat/completions"})
    resp = client.models.generate_content(model="smart", contents="fail over")
    assert resp.text == "Mock reply to: fail over"
    sent = gemini_calls(mock)[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.0-flash:generateContent", "the candidate's own model"
    assert sent["headers"]["x-goog-api-key"] == "client-goog-key"
    assert sent["body"] == {"contents": [{"parts": [{"text": "fail over"}], "role": "user"}]}
    mock.reset()
    mock.faults({"status": 503, "count": -1, "path_contains": ":generateContent"})
    resp = client.models.generate_content(model="gem-first", contents="the other way")
    assert resp.text == "Mock reply to: the other way"
    assert openai_calls(mock)[-1]["headers"]["authorization"] == "Bearer gw-openai-key"


def test_gemini_models_still_pass_through_byte_for_byte(gw, mock):
    raw = b'{"contents": [{"role": "user", "parts": [{"text": "exact bytes"}]}],  "generationConfig": {"topK": 3}}'
    r = requests.post(gw.url + "/v1beta/models/gemini-2.0-flash:generateContent",
                      headers={"x-goog-api-key": "client-goog-key", "content-type": "application/json"},
                      data=raw, timeout=10)
    assert r.status_code == 200 and r.headers["x-gateway-provider"] == "gemini"
    sent = gemini_calls(mock)[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent["body_sha256"] == hashlib.sha256(raw).hexdigest(), "the body is passed through untouched"
    assert openai_calls(mock) == []
    r = requests.post(gw.url + "/v1beta/models/gemini/gemini-2.0-flash:countTokens",
                      json={"contents": [{"parts": [{"text": "count"}]}]}, timeout=10)
    assert r.status_code == 200 and r.json()["totalTokens"] > 0
    assert gemini_calls(mock)[-1]["path"] == "/v1beta/models/gemini-2.0-flash:countTokens"
