#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::sse::SseParser;

const TEXT: &[u8] = include_bytes!("../../../tests/fixtures/cache/completion_text.json");
const TOOLS: &[u8] = include_bytes!("../../../tests/fixtures/cache/completion_tools.json");
const N2: &[u8] = include_bytes!("../../../tests/fixtures/cache/completion_n2.json");
const FULL: &[u8] = include_bytes!("../../../tests/fixtures/cache/completion_openai_full.json");
const EMBEDDINGS: &[u8] = include_bytes!("../../../tests/fixtures/cache/embeddings.json");
const OPENAI_TOOLS_SSE: &[u8] =
    include_bytes!("../../../tests/fixtures/cache/stream_openai_tools.sse");
const OPENAI_TOOLS_EXPECTED: &[u8] =
    include_bytes!("../../../tests/fixtures/cache/stream_openai_tools.expected.json");
const ERROR_SSE: &[u8] = include_bytes!("../../../tests/fixtures/cache/stream_error.sse");

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

fn assemble_whole(sse: &[u8]) -> Option<Bytes> {
    let mut a = StreamAssembler::new();
    a.push(sse);
    a.finish()
}

fn assemble_split(sse: &[u8], cuts: &[usize]) -> Option<Bytes> {
    let mut a = StreamAssembler::new();
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&sse.len())) {
        a.push(&sse[prev..c]);
        prev = c;
    }
    a.finish()
}

fn events(sse: &[u8]) -> Vec<Bytes> {
    let mut p = SseParser::new();
    p.push(sse);
    std::iter::from_fn(|| p.next_event())
        .map(|e| e.data)
        .collect()
}

#[test]
fn replay_is_well_formed_openai_sse() {
    for (name, body) in [("text", TEXT), ("tools", TOOLS), ("n2", N2), ("full", FULL)] {
        let stored = json(body);
        for include_usage in [false, true] {
            let sse = completion_to_sse(body, include_usage).unwrap();
            assert!(
                sse.ends_with(b"data: [DONE]\n\n"),
                "{name}: ends with [DONE]"
            );
            let data = events(&sse);
            let (done, chunks) = data.split_last().unwrap();
            assert_eq!(&done[..], b"[DONE]");
            for c in chunks {
                let c = json(c);
                assert_eq!(c["object"], "chat.completion.chunk", "{name}: {c}");
                assert_eq!(c["id"], stored["id"], "{name}: one id for all chunks");
                assert_eq!(c["created"], stored["created"], "{name}: one created");
                assert_eq!(c["model"], stored["model"], "{name}: one model");
                assert_eq!(
                    c.get("usage").is_some(),
                    include_usage,
                    "{name}: usage field only when asked for"
                );
            }
            let last = json(chunks.last().unwrap());
            if include_usage {
                assert_eq!(last["choices"], serde_json::json!([]), "{name}");
                assert_eq!(last["usage"], stored["usage"], "{name}: usage chunk last");
            } else {
                assert!(last["choices"][0]["finish_reason"].is_string(), "{name}");
            }
            let first = json(&chunks[0]);
            assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        }
    }
}

#[test]
fn replay_cuts_text_into_a_few_pieces_on_char_boundaries() {
    let sse = completion_to_sse(TEXT, false).unwrap();
    let pieces: Vec<String> = events(&sse)
        .iter()
        .filter(|d| &d[..] != b"[DONE]")
        .filter_map(|d| {
            json(d)["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .filter(|s| !s.is_empty())
        .collect();
    assert!(
        (2..=PIECES).contains(&pieces.len()),
        "a few pieces, got {}",
        pieces.len()
    );
    assert_eq!(
        pieces.concat(),
        json(TEXT)["choices"][0]["message"]["content"]
    );
    for s in ["", "a", "ab🦀cd", &"é".repeat(100), &"🦀".repeat(33)] {
        let got: Vec<&str> = pieces_of(s);
        assert_eq!(got.concat(), s);
        assert!(got.len() <= PIECES + 1, "{s}: {} pieces", got.len());
    }
}

fn pieces_of(s: &str) -> Vec<&str> {
    super::pieces(s).collect()
}

#[test]
fn replay_sends_tool_calls_as_indexed_deltas() {
    let sse = completion_to_sse(TOOLS, false).unwrap();
    let deltas: Vec<Value> = events(&sse)
        .iter()
        .filter(|d| &d[..] != b"[DONE]")
        .map(|d| json(d)["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(deltas[0]["content"], Value::Null, "content null, as stored");
    let heads: Vec<&Value> = deltas
        .iter()
        .filter_map(|d| d["tool_calls"][0].get("id").map(|_| &d["tool_calls"][0]))
        .collect();
    assert_eq!(heads.len(), 3);
    assert_eq!(heads[1]["index"], 1);
    assert_eq!(heads[1]["id"], "call_time_tokyo");
    assert_eq!(heads[1]["type"], "function");
    assert_eq!(heads[1]["function"]["name"], "get_time");
    assert_eq!(heads[1]["function"]["arguments"], "");
}

#[test]
fn replay_refuses_what_is_not_a_chat_completion() {
    assert_eq!(completion_to_sse(EMBEDDINGS, true), None);
    assert_eq!(completion_to_sse(b"not json", true), None);
    assert_eq!(
        completion_to_sse(b"{\"object\":\"chat.completion\"}", true),
        None
    );
}

#[test]
fn round_trip_gives_back_the_stored_completion() {
    for (name, body) in [("text", TEXT), ("tools", TOOLS), ("n2", N2)] {
        for include_usage in [false, true] {
            let sse = completion_to_sse(body, include_usage).unwrap();
            let back = assemble_whole(&sse).unwrap_or_else(|| panic!("{name}: assembles"));
            let mut expected = json(body);
            if !include_usage {
                expected.as_object_mut().unwrap().remove("usage");
            }
            assert_eq!(
                json(&back),
                expected,
                "{name}/usage={include_usage}: completion → SSE → completion is lossless"
            );
        }
    }
}

#[test]
fn round_trip_of_a_full_openai_answer_keeps_what_matters() {
    let back = json(&assemble_whole(&completion_to_sse(FULL, true).unwrap()).unwrap());
    let orig = json(FULL);
    for field in [
        "id",
        "created",
        "model",
        "usage",
        "system_fingerprint",
        "service_tier",
    ] {
        assert_eq!(back[field], orig[field], "{field}");
    }
    let (b, o) = (&back["choices"][0], &orig["choices"][0]);
    assert_eq!(b["message"]["content"], o["message"]["content"]);
    assert_eq!(b["message"]["role"], o["message"]["role"]);
    assert_eq!(b["finish_reason"], o["finish_reason"]);
}

#[test]
fn every_split_of_a_replay_assembles_the_same() {
    let mut rng = fastrand::Rng::with_seed(0xCAC4E);
    for body in [TEXT, TOOLS, N2] {
        let sse = completion_to_sse(body, true).unwrap();
        let whole = assemble_whole(&sse).unwrap();
        for cut in 0..=sse.len() {
            assert_eq!(
                assemble_split(&sse, &[cut]),
                Some(whole.clone()),
                "cut at {cut}"
            );
        }
        for _ in 0..300 {
            let n = rng.usize(0..40);
            let mut cuts: Vec<usize> = (0..n).map(|_| rng.usize(0..=sse.len())).collect();
            cuts.sort_unstable();
            assert_eq!(
                assemble_split(&sse, &cuts),
                Some(whole.clone()),
                "cuts {cuts:?}"
            );
        }
        let bytewise: Vec<usize> = (1..sse.len()).collect();
        assert_eq!(assemble_split(&sse, &bytewise), Some(whole));
    }
}

#[test]
fn assembles_a_real_openai_stream_with_parallel_tool_calls() {
    let expected = json(OPENAI_TOOLS_EXPECTED);
    let mut rng = fastrand::Rng::with_seed(7);
    let got = assemble_whole(OPENAI_TOOLS_SSE).expect("complete stream");
    assert_eq!(json(&got), expected);
    for _ in 0..500 {
        let n = rng.usize(0..20);
        let mut cuts: Vec<usize> = (0..n)
            .map(|_| rng.usize(0..=OPENAI_TOOLS_SSE.len()))
            .collect();
        cuts.sort_unstable();
        let got = assemble_split(OPENAI_TOOLS_SSE, &cuts).expect("complete stream");
        assert_eq!(json(&got), expected, "cuts {cuts:?}");
    }
}

#[test]
fn a_truncated_stream_is_never_stored() {
    for body in [TEXT, TOOLS, N2] {
        let sse = completion_to_sse(body, true).unwrap();
        let done_at = sse.len() - b"]\n\n".len();
        for cut in 0..done_at {
            assert_eq!(
                assemble_whole(&sse[..cut]),
                None,
                "stream cut at {cut} of {} must not be stored",
                sse.len()
            );
        }
        assert!(
            assemble_whole(&sse[..done_at + 1]).is_some(),
            "`data: [DONE]` without its blank line still ends the stream"
        );
    }
    let real = OPENAI_TOOLS_SSE;
    let done_at = real.len() - b"]\r\n\r\n".len();
    for cut in (0..done_at).step_by(7) {
        assert_eq!(assemble_whole(&real[..cut]), None, "cut at {cut}");
    }
}

#[test]
fn errors_and_missing_finish_reasons_are_never_stored() {
    assert_eq!(assemble_whole(ERROR_SSE), None, "error chunk in the stream");
    let event_error = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\nevent: error\ndata: {\"message\":\"overloaded\"}\n\ndata: [DONE]\n\n";
    assert_eq!(assemble_whole(event_error), None, "`event: error`");
    let no_finish = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\ndata: [DONE]\n\n";
    assert_eq!(assemble_whole(no_finish), None, "no finish_reason");
    let one_of_two = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"x\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"b\"},\"finish_reason\":null}]}\n\ndata: [DONE]\n\n";
    assert_eq!(
        assemble_whole(one_of_two),
        None,
        "n=2 with one choice unfinished"
    );
    let garbage = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\ndata: {oops\n\ndata: [DONE]\n\n";
    assert_eq!(assemble_whole(garbage), None, "unparsable chunk");
    assert_eq!(
        assemble_whole(b"data: [DONE]\n\n"),
        None,
        "no choices at all"
    );
    assert_eq!(assemble_whole(b""), None, "empty stream");
}

#[test]
fn interleaved_choices_and_bytes_after_done() {
    let sse = b"data: {\"id\":\"i\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":1,\"delta\":{\"role\":\"assistant\",\"content\":\"B\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"i\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"A\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"i\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"},{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"length\"}]}\n\n\
data: [DONE]\n\ndata: {not even json}\n\n";
    let got = json(&assemble_whole(sse).unwrap());
    assert_eq!(got["choices"][0]["index"], 0, "choices ordered by index");
    assert_eq!(got["choices"][0]["message"]["content"], "Aa");
    assert_eq!(got["choices"][0]["finish_reason"], "length");
    assert_eq!(got["choices"][1]["message"]["content"], "Bb");
    assert_eq!(got["choices"][1]["finish_reason"], "stop");
    assert!(got.get("usage").is_none(), "no usage chunk, no usage");
}

#[test]
fn a_stream_longer_than_the_bound_is_not_assembled_nor_held() {
    let piece = format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
        "x".repeat(64 * 1024)
    );
    let end = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    // Just under the bound it is assembled whole...
    let mut a = StreamAssembler::new();
    let fits = (MAX_ASSEMBLED - end.len()) / piece.len();
    for _ in 0..fits {
        a.push(piece.as_bytes());
    }
    a.push(end.as_bytes());
    let whole = json(&a.finish().expect("a stream under the bound is stored"));
    let text = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text.len(), fits * 64 * 1024);
    // ...two pieces more (past it, whatever the end's length) and nothing is kept.
    let mut a = StreamAssembler::new();
    for _ in 0..fits + 2 {
        a.push(piece.as_bytes());
    }
    assert!(a.choices.is_empty(), "nothing held past the bound");
    a.push(end.as_bytes());
    assert!(a.finish().is_none());
}
