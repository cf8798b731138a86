//! OpenAI `/v1/embeddings` ⇄ Gemini `embedContent` / `batchEmbedContents`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::error::{bad, no_param, Result};
use super::request::{model_segment, str_of, u64_of};
use super::response::Usage;
use super::wire::{BatchEmbedRequest, EmbedContent, EmbedRequest, EmbedResponse, TextPart};
use crate::providers::openai::wire::{
    EmbeddingOut, EmbeddingValue, EmbeddingsOut, EmbeddingsUsage,
};

/// What the embeddings answer needs from the request (`encoding_format`, and
/// the input size for the token estimate).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsContext {
    pub model: String,
    pub base64: bool,
    pub estimated_prompt_tokens: u64,
}

enum EmbedInput<'a> {
    One(&'a str),
    Many(Vec<&'a str>),
}

/// Validates the request; shared by [`embeddings_request`] and [`embeddings_context`].
fn embed_input(openai: &Value) -> Result<(EmbedInput<'_>, Option<u64>, bool)> {
    let obj = openai
        .as_object()
        .ok_or_else(|| no_param("request body must be a JSON object"))?;
    let (mut input, mut dims, mut base64) = (None, None, false);
    for (key, v) in obj {
        if v.is_null() {
            continue;
        }
        let k = key.as_str();
        match k {
            "model" | "user" => {}
            "input" => input = Some(v),
            "dimensions" => dims = Some(u64_of(v, k)?),
            "encoding_format" => {
                base64 = match str_of(v, k)? {
                    "float" => false,
                    "base64" => true,
                    _ => return Err(bad(k, "`encoding_format` must be float or base64")),
                }
            }
            _ => {
                return Err(bad(
                    k,
                    format!("unsupported parameter for Gemini embeddings: `{k}`"),
                ))
            }
        }
    }
    let not_text = || {
        bad("input", "`input` must be a string or a list of strings (token arrays are not supported for Gemini models)")
    };
    let input = match input {
        Some(Value::String(s)) => EmbedInput::One(s),
        Some(Value::Array(a)) if !a.is_empty() => EmbedInput::Many(
            a.iter()
                .map(|s| s.as_str().ok_or_else(not_text))
                .collect::<Result<_>>()?,
        ),
        _ => return Err(not_text()),
    };
    Ok((input, dims, base64))
}

/// OpenAI /v1/embeddings body → (path suffix after base URL, Gemini body). One string → embedContent; a list → batchEmbedContents.
pub fn embeddings_request(openai: &Value, model: &str) -> Result<(String, Vec<u8>)> {
    let (input, dims, _) = embed_input(openai)?;
    let segment = model_segment(model).to_string();
    let one = |model: Option<&'static str>, text| EmbedRequest {
        model,
        content: EmbedContent {
            parts: [TextPart { text }],
        },
        output_dimensionality: dims,
    };
    let body = match input {
        EmbedInput::One(text) => {
            let body = serde_json::to_vec(&one(None, text));
            (format!("models/{segment}:embedContent"), body)
        }
        EmbedInput::Many(texts) => {
            let name = format!("models/{model}");
            let requests = texts
                .into_iter()
                .map(|text| EmbedRequest {
                    model: Some(&name),
                    content: EmbedContent {
                        parts: [TextPart { text }],
                    },
                    output_dimensionality: dims,
                })
                .collect();
            let body = serde_json::to_vec(&BatchEmbedRequest { requests });
            (format!("models/{segment}:batchEmbedContents"), body)
        }
    };
    Ok((body.0, body.1.map_err(|e| no_param(e.to_string()))?))
}

/// What [`embeddings_response_with`] needs to honour `encoding_format` and
/// estimate usage (`ceil(chars / 4)` per input, as Gemini reports none).
pub fn embeddings_context(openai: &Value, model: &str) -> Result<EmbeddingsContext> {
    let (input, _, base64) = embed_input(openai)?;
    let estimate = |s: &str| (s.chars().count() as u64).div_ceil(4);
    let estimated_prompt_tokens = match input {
        EmbedInput::One(s) => estimate(s),
        EmbedInput::Many(v) => v.into_iter().map(estimate).sum(),
    };
    Ok(EmbeddingsContext {
        model: model.to_owned(),
        base64,
        estimated_prompt_tokens,
    })
}

/// Handles both embedContent and batchEmbedContents answers, as floats and
/// without a token estimate; prefer [`embeddings_response_with`].
pub fn embeddings_response(gemini: &[u8], model: &str) -> Result<(Vec<u8>, Usage)> {
    let ctx = EmbeddingsContext {
        model: model.to_owned(),
        base64: false,
        estimated_prompt_tokens: 0,
    };
    embeddings_response_with(gemini, &ctx)
}

/// Like [`embeddings_response`], honouring `encoding_format: "base64"`
/// (little-endian f32) and filling usage from the request estimate.
pub fn embeddings_response_with(
    gemini: &[u8],
    ctx: &EmbeddingsContext,
) -> Result<(Vec<u8>, Usage)> {
    let resp: EmbedResponse = serde_json::from_slice(gemini)
        .map_err(|e| no_param(format!("invalid Gemini embeddings response: {e}")))?;
    let list = match (resp.embedding, resp.embeddings) {
        (Some(e), _) => vec![e],
        (None, Some(list)) => list,
        (None, None) => return Err(no_param("Gemini embeddings response has no embedding")),
    };
    let data = list
        .into_iter()
        .enumerate()
        .map(|(index, e)| EmbeddingOut {
            object: "embedding",
            index,
            embedding: if ctx.base64 {
                let mut raw = Vec::with_capacity(e.values.len() * 4);
                for v in &e.values {
                    raw.extend_from_slice(&(*v as f32).to_le_bytes());
                }
                EmbeddingValue::Base64(STANDARD.encode(raw))
            } else {
                EmbeddingValue::Float(e.values)
            },
        })
        .collect();
    let tokens = resp
        .usage_metadata
        .map(|u| u.prompt_token_count)
        .filter(|&n| n > 0)
        .unwrap_or(ctx.estimated_prompt_tokens);
    let out = EmbeddingsOut {
        object: "list",
        data,
        model: &ctx.model,
        usage: EmbeddingsUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    let body = serde_json::to_vec(&out).map_err(|e| no_param(e.to_string()))?;
    let usage = Usage {
        prompt_tokens: tokens,
        completion_tokens: 0,
        total_tokens: tokens,
    };
    Ok((body, usage))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::gemini::test_support::*;
    use serde_json::json;

    #[test]
    fn embeddings_single_and_batch_requests() {
        let (path, body) = embeddings_request(
            &json!({"model":"e","input":"hello","dimensions":256,"encoding_format":"float"}),
            "gemini-embedding-001",
        )
        .unwrap();
        assert_eq!(path, "models/gemini-embedding-001:embedContent");
        assert_eq!(
            v(std::str::from_utf8(&body).unwrap()),
            json!({"content":{"parts":[{"text":"hello"}]},"outputDimensionality":256})
        );
        let (path, body) =
            embeddings_request(&json!({"input":["a","b"]}), "gemini-embedding-001").unwrap();
        assert_eq!(path, "models/gemini-embedding-001:batchEmbedContents");
        assert_eq!(
            v(std::str::from_utf8(&body).unwrap()),
            json!({"requests":[
                {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]}},
                {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}]}}]})
        );
        for bad_input in [json!([1, 2, 3]), json!([[1, 2]]), json!([]), json!(5)] {
            let e = embeddings_request(&json!({"input":bad_input}), "m").unwrap_err();
            assert_eq!(e.param.as_deref(), Some("input"));
        }
        let e = embeddings_request(&json!({"input":"x","encoding_format":"hex"}), "m").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("encoding_format"));
    }

    #[test]
    fn embeddings_responses() {
        let (body, usage) = embeddings_response(
            fixture!("embed_single.json").as_bytes(),
            "gemini-embedding-001",
        )
        .unwrap();
        assert_eq!(
            v(std::str::from_utf8(&body).unwrap()),
            json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.25,-0.5,0.125]}],
                "model":"gemini-embedding-001","usage":{"prompt_tokens":0,"total_tokens":0}})
        );
        assert_eq!(usage.total_tokens, 0);

        let req = json!({"input":["abcdefgh","xyz"],"encoding_format":"base64"});
        let ectx = embeddings_context(&req, "gemini-embedding-001").unwrap();
        assert_eq!(ectx.estimated_prompt_tokens, 3);
        let (body, usage) =
            embeddings_response_with(fixture!("embed_batch.json").as_bytes(), &ectx).unwrap();
        let got = v(std::str::from_utf8(&body).unwrap());
        assert_eq!(got["data"][1]["index"], 1);
        let raw = STANDARD
            .decode(got["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f32> = raw
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(floats, vec![0.25, -0.5]);
        assert_eq!(got["usage"], json!({"prompt_tokens":3,"total_tokens":3}));
        assert_eq!(usage.prompt_tokens, 3);
    }
}
