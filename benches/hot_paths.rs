//! Micro-benchmarks of the per-request hot paths: OpenAI→Gemini request translation, Gemini
//! answer and SSE stream translation (reported as MB/s), SSE parsing, cache keys and replay,
//! and access-key hashing.
//!
//! `cargo bench` runs them; the test command only compiles them (`cargo bench --no-run`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use llm_gateway::providers::gemini;
use llm_gateway::sse::SseParser;
use serde_json::Value;
use std::hint::black_box;

const CHAT_BASIC: &str = include_str!("../tests/fixtures/gemini/chat_request_basic.json");
const CHAT_TOOLS: &str = include_str!("../tests/fixtures/gemini/chat_request_tools.json");
const RESPONSE_TEXT: &str = include_str!("../tests/fixtures/gemini/response_text.json");
const STREAM_TEXT: &str = include_str!("../tests/fixtures/gemini/stream_text.json");

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

/// A Gemini SSE stream of `n` events, as the upstream sends it (CRLF separators).
fn sse_stream(n: usize) -> Vec<u8> {
    let events: Vec<Value> = serde_json::from_str(STREAM_TEXT).unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..n {
        let mut e = events[1.min(events.len().saturating_sub(1))].clone();
        if i + 1 == n {
            e = events.last().cloned().unwrap_or(Value::Null);
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(e.to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    }
    out
}

fn translation(c: &mut Criterion) {
    let basic = parse(CHAT_BASIC);
    let tools = parse(CHAT_TOOLS);
    c.bench_function("request: chat → gemini (basic)", |b| {
        b.iter(|| gemini::chat_request(black_box(&basic), "gemini-2.0-flash"))
    });
    c.bench_function("request: chat → gemini (tools)", |b| {
        b.iter(|| gemini::chat_request(black_box(&tools), "gemini-2.5-pro"))
    });
    let ctx = gemini::ResponseContext {
        id: "chatcmpl-bench".into(),
        model: "gemini-2.0-flash".into(),
        created: 0,
        parallel_tool_calls: true,
    };
    let mut g = c.benchmark_group("response");
    g.throughput(Throughput::Bytes(RESPONSE_TEXT.len() as u64));
    g.bench_function("gemini → chat.completion", |b| {
        b.iter(|| gemini::chat_response(black_box(RESPONSE_TEXT.as_bytes()), &ctx))
    });
    g.finish();

    let stream = sse_stream(200);
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("gemini SSE → chat.completion.chunk (1400 B reads)", |b| {
        b.iter_batched(
            || gemini::StreamTranslator::new(ctx.clone_for_bench(), true),
            |mut t| {
                let mut out = Vec::with_capacity(stream.len() * 2);
                for piece in stream.chunks(1400) {
                    t.push(piece, &mut out);
                }
                t.finish(&mut out);
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("SSE parse (1400 B reads)", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut n = 0;
            for piece in stream.chunks(1400) {
                p.push(piece);
                while let Some(e) = p.next_event() {
                    n += e.data.len();
                }
            }
            n
        })
    });
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let key = b"sk-proj-0123456789abcdef0123456789abcdef0123456789abcdef";
    c.bench_function("access key sha256", |b| {
        b.iter(|| llm_gateway::auth::sha256(black_box(key)))
    });
    let basic = parse(CHAT_BASIC);
    let tools = parse(CHAT_TOOLS);
    c.bench_function("cache key (basic chat)", |b| {
        b.iter(|| {
            llm_gateway::cache::cache_key(
                "chat_completions",
                "openai",
                "gpt-4o-mini",
                "key:team-a",
                black_box(&basic),
            )
        })
    });
    c.bench_function("cache key (tools chat)", |b| {
        b.iter(|| {
            llm_gateway::cache::cache_key(
                "chat_completions",
                "gemini",
                "gemini-2.5-pro",
                "key:team-a",
                black_box(&tools),
            )
        })
    });
    let completion = include_bytes!("../tests/fixtures/gemini/response_text.openai.json");
    c.bench_function("cache hit replayed as SSE", |b| {
        b.iter(|| llm_gateway::cache::completion_to_sse(black_box(completion), true))
    });
}

trait CloneForBench {
    fn clone_for_bench(&self) -> Self;
}

impl CloneForBench for gemini::ResponseContext {
    fn clone_for_bench(&self) -> Self {
        gemini::ResponseContext {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.created,
            parallel_tool_calls: self.parallel_tool_calls,
        }
    }
}

criterion_group!(benches, translation, hashing);
criterion_main!(benches);
