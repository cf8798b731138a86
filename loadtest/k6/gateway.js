// k6 scenarios for llm-gateway (the seed's load-test tool). Run against a gateway in front of
// the bundled mock provider (scripts/demo.sh starts both on 127.0.0.1):
//
//   k6 run loadtest/k6/gateway.js                         # every scenario, one after another
//   k6 run -e SCENARIO=openai_chat loadtest/k6/gateway.js # one of them
//   k6 run -e GATEWAY=http://127.0.0.1:8080 -e MOCK=http://127.0.0.1:9000 loadtest/k6/gateway.js
//
// Thresholds fail the run when the gateway errs or gets slow. loadtest/run.py measures the same
// scenarios with wrk when k6 is not installed, side by side with a direct call and a plain
// Pingora passthrough.
import http from 'k6/http';
import { check } from 'k6';

const GATEWAY = __ENV.GATEWAY || 'http://127.0.0.1:8080';
const MOCK = __ENV.MOCK || 'http://127.0.0.1:9000';
const JSON_HEADERS = { 'Content-Type': 'application/json' };

const all = {
  openai_chat:    { executor: 'constant-vus', vus: 32, duration: '30s', exec: 'openaiChat' },
  gemini_chat:    { executor: 'constant-vus', vus: 32, duration: '30s', exec: 'geminiChat', startTime: '30s' },
  streaming:      { executor: 'constant-vus', vus: 32, duration: '30s', exec: 'streaming', startTime: '60s' },
  cache_hits:     { executor: 'constant-vus', vus: 32, duration: '30s', exec: 'cacheHits', startTime: '90s' },
  mixed_failover: { executor: 'constant-vus', vus: 32, duration: '30s', exec: 'mixedFailover', startTime: '120s' },
};
const only = __ENV.SCENARIO;
const scenarios = only ? { [only]: { ...all[only], startTime: '0s' } } : all;

export const options = {
  scenarios,
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_duration{scenario:openai_chat}': ['p(99)<50'],
    'http_req_duration{scenario:gemini_chat}': ['p(99)<50'],
    'http_req_duration{scenario:streaming}': ['p(99)<100'],
    'http_req_duration{scenario:cache_hits}': ['p(99)<20'],
    'http_req_duration{scenario:mixed_failover}': ['p(99)<500'],
    checks: ['rate>0.99'],
  },
};

function chat(model, extra = {}, headers = {}) {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: `hello from k6 ${extra.unique ? Math.random() : ''}` }], ...extra.body });
  return http.post(`${GATEWAY}/v1/chat/completions`, body, { headers: { ...JSON_HEADERS, ...headers } });
}

export function openaiChat() {
  const r = chat('gpt-4o-mini', { unique: true }, { 'Cache-Control': 'no-store' });
  check(r, { '200': (x) => x.status === 200, 'openai answered': (x) => x.headers['X-Gateway-Provider'] === 'openai' });
}

export function geminiChat() {
  const r = chat('gemini-2.0-flash', { unique: true }, { 'Cache-Control': 'no-store' });
  check(r, { '200': (x) => x.status === 200, 'translated': (x) => x.json('object') === 'chat.completion' });
}

export function streaming() {
  const r = chat('gpt-4o-mini', { unique: true, body: { stream: true } }, { 'Cache-Control': 'no-store' });
  check(r, { '200': (x) => x.status === 200, 'ends with [DONE]': (x) => x.body.includes('data: [DONE]') });
}

export function cacheHits() {
  const r = chat('gpt-4o-mini');
  check(r, { '200': (x) => x.status === 200 });
}

// A provider that fails now and then: the gateway fails over to the other candidate, so
// clients keep seeing 200s. Needs `routing.models.default` (conf/demo.yaml has it).
export function mixedFailover() {
  if (Math.random() < 0.05) {
    http.post(`${MOCK}/_mock/faults`, JSON.stringify({ faults: [{ status: 503, count: 1, path_contains: '/chat/completions' }] }), { headers: JSON_HEADERS });
  }
  const r = chat('default', { unique: true }, { 'Cache-Control': 'no-store' });
  check(r, { '200': (x) => x.status === 200 });
}
