"""SPEC §11 (issue 13): the OpenAI Agents SDK's default model (`OpenAIResponsesModel`, the
Responses API) runs an agent with a function tool over two turns on a Gemini model through the
gateway.

The mock Gemini answers a user text turn with two parallel calls of the first declared function
(`{"mock": true}` and `{"mock": true, "n": 2}`, the first signed on Gemini 3) and the function
results with `Mock saw tool result: <name>`: each turn is a tool round trip of two requests.
"""

import asyncio

import openai
import pytest
from agents import (
    Agent, ModelSettings, Runner, function_tool, set_default_openai_api, set_default_openai_client,
    set_tracing_disabled,
)

from responses_env import GEMINI, GEMINI3, SMART, ROUTES, Env, assert_only_gemini, calls, client_key, function_call_parts, function_response_parts, texts

CLIENT_KEY = client_key()


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.sent = []
    yield e
    e.stop()


def run(env, main):
    """Runs `main()` in a fresh event loop with the Agents SDK's default client on the gateway
    (an async client's connections belong to the loop that opened them)."""

    async def record(request):
        env.sent.append(request)

    async def wrapped():
        # What every Agents SDK user writes to point the default model at another base URL.
        client = openai.AsyncOpenAI(
            base_url=env.gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [record]}),
        )
        set_default_openai_client(client, use_for_tracing=False)
        set_default_openai_api("responses")
        set_tracing_disabled(True)
        try:
            return await main()
        finally:
            await client.close()

    return asyncio.run(wrapped())


@pytest.fixture(autouse=True)
def clean(env):
    env.reset()
    env.sent.clear()


def weather_agent(model, seen):
    @function_tool
    def get_weather(mock: bool, n: int = 1) -> str:
        """Today's weather. The mock model calls it with mock=true (and n=2 for its second call).

        Args:
            mock: set by the mock model.
            n: which of the parallel calls this is.
        """
        seen.append({"mock": mock, "n": n})
        return f"sunny, 21 C (report {n})"

    return Agent(
        name="weather",
        instructions="You report the weather. Use the get_weather tool.",
        model=model,
        tools=[get_weather],
        model_settings=ModelSettings(parallel_tool_calls=True),
    )


def check_round_trip(call_req, result_req):
    """A request that made the calls, then the one that brought the results back."""
    assert [d["name"] for d in call_req["body"]["tools"][0]["functionDeclarations"]] == ["get_weather"]
    last = result_req["body"]["contents"]
    assert last[-2]["role"] == "model" and last[-1]["role"] == "user"
    assert [c["args"] for c in function_call_parts(last[-2])] == [{"mock": True}, {"mock": True, "n": 2}]
    responses = function_response_parts(last[-1])
    assert [r["name"] for r in responses] == ["get_weather", "get_weather"]
    assert "report 1" in str(responses[0]["response"]) and "report 2" in str(responses[1]["response"])


@pytest.mark.parametrize("model", [GEMINI, GEMINI3, SMART])
def test_agent_with_a_function_tool_over_two_turns(env, model):
    seen = []
    agent = weather_agent(model, seen)

    async def two_turns():
        first = await Runner.run(agent, "What is the weather in Paris?")
        follow_up = first.to_input_list() + [{"role": "user", "content": "And in Rome?"}]
        return first, await Runner.run(agent, follow_up)

    first, second = run(env, two_turns)
    assert first.final_output == "Mock saw tool result: get_weather"
    assert seen[:2] == [{"mock": True, "n": 1}, {"mock": True, "n": 2}]
    assert second.final_output == "Mock saw tool result: get_weather"
    assert len(seen) == 4, "the tool ran again on the second turn"

    upstream = ROUTES[model][1]
    reqs = assert_only_gemini(env, upstream, CLIENT_KEY)
    assert len(reqs) == 4, [r["path"] for r in reqs]
    for r in reqs:
        assert "weather" in " ".join(texts(r["body"].get("systemInstruction"))).lower()
    check_round_trip(reqs[0], reqs[1])
    check_round_trip(reqs[2], reqs[3])
    # The second turn's last request carries the whole conversation, in order.
    contents = reqs[3]["body"]["contents"]
    shape = [(c["role"], "call" if function_call_parts(c) else "result" if function_response_parts(c) else " ".join(texts(c)))
             for c in contents]
    assert shape == [
        ("user", "What is the weather in Paris?"), ("model", "call"), ("user", "result"),
        ("model", "Mock saw tool result: get_weather"),
        ("user", "And in Rome?"), ("model", "call"), ("user", "result"),
    ], shape
    if upstream.startswith("gemini-3"):
        for c in contents:
            fcs = [p for p in c.get("parts", []) if "functionCall" in p]
            if fcs:
                assert fcs[0].get("thoughtSignature"), "each replayed call turn keeps Gemini 3's signature"
    # Every request went out as the Responses API, never Chat Completions.
    assert [r.url.path for r in env.sent] == ["/v1/responses"] * 4


def test_streamed_agent_run(env):
    seen = []
    agent = weather_agent(GEMINI, seen)

    async def streamed():
        result = Runner.run_streamed(agent, "What is the weather in Oslo?")
        kinds = []
        async for event in result.stream_events():
            kinds.append(getattr(event, "type", ""))
        return result, kinds

    result, kinds = run(env, streamed)
    assert result.final_output == "Mock saw tool result: get_weather"
    assert len(seen) == 2 and "raw_response_event" in kinds
    reqs = assert_only_gemini(env, GEMINI, CLIENT_KEY)
    assert len(reqs) == 2 and all(r["path"].endswith(":streamGenerateContent") for r in reqs)
    check_round_trip(reqs[0], reqs[1])
    assert calls(env.oa) == []
