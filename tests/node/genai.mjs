// Google's JS SDK (@google/genai) on the gateway's Gemini-native routes with an OpenAI model, as
// an app would write it (SPEC §12). Run by tests/py/test_genai_node.py:
//
//   GATEWAY_URL=http://127.0.0.1:8080 MODEL=gpt-4o-mini API_KEY=... node genai.mjs CASE
//
// Prints one JSON object: {"ok": true, ...what the case saw} or {"ok": false, "error": ...}.
import { GoogleGenAI } from "@google/genai";

const { GATEWAY_URL, MODEL, API_KEY } = process.env;
const ai = new GoogleGenAI({ apiKey: API_KEY, httpOptions: { baseUrl: GATEWAY_URL } });

function usage(u) {
  return u && {
    promptTokenCount: u.promptTokenCount,
    candidatesTokenCount: u.candidatesTokenCount,
    totalTokenCount: u.totalTokenCount,
  };
}

const cases = {
  async generateContent() {
    const r = await ai.models.generateContent({
      model: MODEL,
      contents: "hello genai node",
      config: { systemInstruction: "be brief", temperature: 0.3, maxOutputTokens: 40 },
    });
    return {
      text: r.text,
      finishReason: r.candidates?.[0]?.finishReason,
      usage: usage(r.usageMetadata),
      modelVersion: r.modelVersion,
      responseId: r.responseId,
    };
  },

  async generateContentStream() {
    const stream = await ai.models.generateContentStream({ model: MODEL, contents: "stream genai node" });
    const chunks = [];
    for await (const c of stream) {
      chunks.push({
        text: c.text ?? "",
        finishReason: c.candidates?.[0]?.finishReason ?? null,
        usage: usage(c.usageMetadata) ?? null,
        responseId: c.responseId,
      });
    }
    return { text: chunks.map((c) => c.text).join(""), chunks };
  },
};

const name = process.argv[2];
try {
  if (!cases[name]) throw new Error(`unknown case ${name}`);
  console.log(JSON.stringify({ ok: true, ...(await cases[name]()) }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e?.stack ?? e), status: e?.status }));
}
