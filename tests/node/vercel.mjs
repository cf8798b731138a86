// The Vercel AI SDK's `openai()` provider (the Responses API in @ai-sdk/openai) against the
// gateway, as an app would write it. Run by tests/py/test_vercel_ai_sdk.py:
//
//   GATEWAY_URL=http://127.0.0.1:8080 MODEL=gemini-2.5-flash API_KEY=... node vercel.mjs CASE
//
// Prints one JSON object: {"ok": true, ...what the case saw} or {"ok": false, "error": ...}.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const { GATEWAY_URL, MODEL, API_KEY } = process.env;
const openai = createOpenAI({ baseURL: `${GATEWAY_URL}/v1`, apiKey: API_KEY });
const model = openai(MODEL);

function weatherTool(calls) {
  return tool({
    description: "Today's weather in a city.",
    inputSchema: z.object({ mock: z.boolean(), n: z.number().int().optional() }),
    execute: async (input) => {
      calls.push(input);
      return { temp_c: 21, report: input.n ?? 1 };
    },
  });
}

function usage(u) {
  return u && { inputTokens: u.inputTokens, outputTokens: u.outputTokens, totalTokens: u.totalTokens };
}

function toolCalls(steps) {
  return steps.flatMap((s) => s.toolCalls.map((c) => ({ name: c.toolName, id: c.toolCallId, input: c.input })));
}

const cases = {
  async generateText() {
    const r = await generateText({ model, prompt: "hello vercel" });
    return { text: r.text, finishReason: r.finishReason, usage: usage(r.usage), responseId: r.response?.id };
  },

  async streamText() {
    const errors = [];
    const r = streamText({ model, prompt: "stream vercel", onError: ({ error }) => errors.push(String(error)) });
    const deltas = [];
    for await (const t of r.textStream) deltas.push(t);
    return {
      text: deltas.join(""),
      deltas: deltas.length,
      finishReason: await r.finishReason,
      usage: usage(await r.usage),
      errors,
    };
  },

  async toolCall() {
    const calls = [];
    const r = await generateText({
      model,
      prompt: "What is the weather in Paris?",
      tools: { get_weather: weatherTool(calls) },
      stopWhen: stepCountIs(3),
    });
    return { text: r.text, steps: r.steps.length, calls, toolCalls: toolCalls(r.steps), finishReason: r.finishReason };
  },

  async streamToolCall() {
    const calls = [];
    const errors = [];
    const r = streamText({
      model,
      prompt: "What is the weather in Rome?",
      tools: { get_weather: weatherTool(calls) },
      stopWhen: stepCountIs(3),
      onError: ({ error }) => errors.push(String(error)),
    });
    let text = "";
    for await (const t of r.textStream) text += t;
    const steps = await r.steps;
    return { text, steps: steps.length, calls, toolCalls: toolCalls(steps), errors };
  },

  async multiTurn() {
    const history = [{ role: "user", content: "My name is Ada." }];
    const first = await generateText({ model, messages: history });
    const second = await generateText({
      model,
      messages: [...history, ...first.response.messages, { role: "user", content: "What is my name?" }],
    });
    return { first: first.text, text: second.text };
  },
};

const name = process.argv[2];
let out;
try {
  if (!cases[name]) throw new Error(`unknown case ${name}; cases: ${Object.keys(cases).join(", ")}`);
  out = { ok: true, ...(await cases[name]()) };
} catch (e) {
  out = { ok: false, error: String(e?.stack ?? e), statusCode: e?.statusCode, responseBody: e?.responseBody };
}
process.stdout.write(JSON.stringify(out) + "\n");
