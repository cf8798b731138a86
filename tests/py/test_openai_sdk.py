"""The official OpenAI Python SDK as a real client, through the gateway."""

import openai
import pytest


@pytest.fixture
def client(gw_gateway_mode):
    return openai.OpenAI(base_url=gw_gateway_mode.url + "/v1", api_key="unused-by-gateway-mode", max_retries=0)


def test_sdk_chat_completion(client, mock):
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi sdk"}])
    assert resp.choices[0].message.content == "Mock reply to: hi sdk"
    assert resp.usage.total_tokens > 0


def test_sdk_streaming(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream sdk"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply to: stream sdk"
    assert chunks[-1].usage is not None


def test_sdk_embeddings_and_models(client):
    emb = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) > 0
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids


def test_sdk_sees_errors_as_api_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
