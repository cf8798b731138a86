//! A whole Gemini answer → an OpenAI `chat.completion`, and the answer helpers the
//! stream and Responses translations share (finish reasons, usage, arguments).

use std::borrow::Cow;

use serde_json::Value;

use super::error::{no_param, Result};
use super::ids::CallIds;
use super::wire::{GenerateContentResponse, LogprobsResult, UsageMetadata};
use crate::providers::openai::wire::{
    ChatCompletion, ChoiceOut, CompletionDetails, ExtraContent, FunctionOut, GoogleExtra,
    LogprobsOut, MessageOut, PromptDetails, TokenLogprob, ToolCallOut, TopLogprob, UsageOut,
    Utf8Bytes,
};

pub struct ResponseContext {
    pub id: String,
    pub model: String,
    pub created: u64,
    /// False: each choice keeps its first function call only (the request's
    /// `parallel_tool_calls: false`, which Gemini cannot be told).
    pub parallel_tool_calls: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// Gemini finishReason → OpenAI finish_reason. Calls win over `STOP` because
/// Gemini says STOP after a function call; a malformed call is unusable, so it
/// becomes a plain `stop`.
pub(crate) fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    if has_calls {
        return "tool_calls";
    }
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => "content_filter",
        _ => "stop",
    }
}

pub(crate) fn usage_out(m: &UsageMetadata) -> UsageOut {
    let completion = m.candidates_token_count + m.thoughts_token_count;
    UsageOut {
        prompt_tokens: m.prompt_token_count,
        completion_tokens: completion,
        total_tokens: m
            .total_token_count
            .unwrap_or(m.prompt_token_count + completion),
        prompt_tokens_details: PromptDetails {
            cached_tokens: m.cached_content_token_count,
        },
        completion_tokens_details: CompletionDetails {
            reasoning_tokens: m.thoughts_token_count,
        },
    }
}

pub(crate) fn usage_of(u: &UsageOut) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
    }
}

pub(crate) fn extra_content(signature: Option<&str>) -> Option<ExtraContent<'_>> {
    signature.map(|thought_signature| ExtraContent {
        google: GoogleExtra { thought_signature },
    })
}

pub(crate) fn write_args(args: Option<&Value>, buf: &mut Vec<u8>) {
    buf.clear();
    match args {
        Some(a) if !a.is_null() => {
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, a);
        }
        _ => buf.extend_from_slice(b"{}"),
    }
}

pub(crate) fn logprobs_out<'a>(r: &'a LogprobsResult<'a>) -> LogprobsOut<'a> {
    let content = r
        .chosen_candidates
        .iter()
        .enumerate()
        .map(|(k, c)| TokenLogprob {
            token: c.token.as_ref().map_or("", |t| &t.0),
            logprob: c.log_probability,
            bytes: Utf8Bytes(c.token.as_ref().map_or("", |t| &t.0)),
            top_logprobs: r
                .top_candidates
                .get(k)
                .map(|t| {
                    t.candidates
                        .iter()
                        .map(|c| {
                            let token = c.token.as_ref().map_or("", |t| &t.0);
                            TopLogprob {
                                token,
                                logprob: c.log_probability,
                                bytes: Utf8Bytes(token),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    LogprobsOut {
        content,
        refusal: None,
    }
}

pub(crate) fn parse_response(gemini: &[u8]) -> Result<GenerateContentResponse<'_>> {
    let resp: GenerateContentResponse = serde_json::from_slice(gemini)
        .map_err(|e| no_param(format!("invalid Gemini response: {e}")))?;
    if let Some(err) = &resp.error {
        let msg = err.message.as_ref().map_or("unknown error", |m| &m.0);
        return Err(no_param(format!("Gemini error: {msg}")));
    }
    Ok(resp)
}

/// Non-stream answer → OpenAI chat.completion JSON bytes, plus its usage.
pub fn chat_response(gemini: &[u8], ctx: &ResponseContext) -> Result<(Vec<u8>, Usage)> {
    let resp = parse_response(gemini)?;
    let mut ids = CallIds::new(&ctx.id);
    let mut id_buf = String::new();
    let mut args_buf = Vec::new();
    let mut choices = Vec::with_capacity(resp.candidates.len().max(1));
    for (pos, cand) in resp.candidates.iter().enumerate() {
        let mut content: Option<Cow<str>> = None;
        let mut tool_calls = Vec::new();
        for p in cand.content.iter().flat_map(|c| &c.parts) {
            if let Some(fc) = &p.function_call {
                if !ctx.parallel_tool_calls && !tool_calls.is_empty() {
                    continue;
                }
                let sig = p.thought_signature.as_ref().map(|s| &*s.0);
                ids.write(&mut id_buf, sig);
                write_args(fc.args.as_ref(), &mut args_buf);
                tool_calls.push(ToolCallOut {
                    index: None,
                    id: Cow::Owned(id_buf.clone()),
                    kind: "function",
                    function: FunctionOut {
                        name: &fc.name.0,
                        arguments: Cow::Owned(String::from_utf8_lossy(&args_buf).into_owned()),
                    },
                    extra_content: extra_content(sig),
                });
            } else if let (Some(t), false) = (&p.text, p.thought) {
                match &mut content {
                    None => content = Some(Cow::Borrowed(&t.0)),
                    Some(c) => c.to_mut().push_str(&t.0),
                }
            }
        }
        let reason = cand.finish_reason.as_ref().map_or("STOP", |r| &r.0);
        let finish = finish_reason(reason, !tool_calls.is_empty());
        if content.is_none() && tool_calls.is_empty() {
            content = Some(Cow::Borrowed(""));
        }
        choices.push(ChoiceOut {
            index: cand.index.unwrap_or(pos as u32),
            message: MessageOut {
                role: "assistant",
                content,
                refusal: None,
                tool_calls,
            },
            logprobs: cand.logprobs_result.as_ref().map(logprobs_out),
            finish_reason: finish,
        });
    }
    if choices.is_empty() {
        // A blocked prompt is an answer, not an error, in OpenAI's model.
        let blocked = resp
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some());
        choices.push(ChoiceOut {
            index: 0,
            message: MessageOut {
                role: "assistant",
                content: Some(Cow::Borrowed("")),
                refusal: None,
                tool_calls: Vec::new(),
            },
            logprobs: None,
            finish_reason: if blocked { "content_filter" } else { "stop" },
        });
    }
    let usage = resp
        .usage_metadata
        .as_ref()
        .map(usage_out)
        .unwrap_or_default();
    let out = ChatCompletion {
        id: &ctx.id,
        object: "chat.completion",
        created: ctx.created,
        model: &ctx.model,
        choices,
        usage,
    };
    let body = serde_json::to_vec(&out).map_err(|e| no_param(e.to_string()))?;
    Ok((body, usage_of(&usage)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::gemini::ids::SIGNATURE_SEP;
    use crate::providers::gemini::test_support::*;
    use serde_json::json;

    #[test]
    fn text_response_matches_fixture() {
        let (body, usage) =
            chat_response(fixture!("response_text.json").as_bytes(), &ctx()).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got, v(fixture!("response_text.openai.json")));
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 12,
                completion_tokens: 37,
                total_tokens: 49
            }
        );
    }

    #[test]
    fn parallel_tool_calls_false_keeps_the_first_call() {
        let one = ResponseContext {
            parallel_tool_calls: false,
            ..ctx()
        };
        let fixture = fixture!("response_tool_calls.json").as_bytes();
        let (body, _) = chat_response(fixture, &one).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        let (all, _) = chat_response(fixture, &ctx()).unwrap();
        let all: Value = serde_json::from_slice(&all).unwrap();
        let calls = got["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0], all["choices"][0]["message"]["tool_calls"][0]);
        assert_eq!(got["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn tool_call_response() {
        let (body, usage) =
            chat_response(fixture!("response_tool_calls.json").as_bytes(), &ctx()).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        let choice = &got["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Tokyo\"}");
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        assert!(calls[0]["id"].as_str().unwrap().contains(SIGNATURE_SEP));
        assert!(!calls[1]["id"].as_str().unwrap().contains(SIGNATURE_SEP));
        assert_eq!(
            calls[0]["extra_content"]["google"]["thought_signature"],
            "CiQBjz1rX+/sig=="
        );
        assert!(calls[1].get("extra_content").is_none());
        assert_eq!(usage.total_tokens, 70);
    }

    /// Gemini answer with a signature → OpenAI message → client echoes the
    /// history → Gemini request carries the same signature on the same part.
    #[test]
    fn thought_signature_round_trip() {
        let (body, _) =
            chat_response(fixture!("response_tool_calls.json").as_bytes(), &ctx()).unwrap();
        let resp: Value = serde_json::from_slice(&body).unwrap();
        let mut message = resp["choices"][0]["message"].clone();
        let calls = message["tool_calls"].as_array().unwrap().clone();
        // A lossy client that drops unknown fields: the id alone must suffice.
        for c in message["tool_calls"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("extra_content");
        }
        let mut history = vec![json!({"role":"user","content":"weather?"}), message];
        for c in &calls {
            history.push(json!({"role":"tool","tool_call_id":c["id"],"content":"sunny"}));
        }
        let g = req(&msgs(Value::Array(history)), "gemini-3-pro-preview");
        let parts = &g["contents"][1]["parts"];
        assert_eq!(parts[0]["thoughtSignature"], "CiQBjz1rX+/sig==");
        assert_eq!(parts[0]["functionCall"]["args"], json!({"city":"Paris"}));
        assert!(parts[1].get("thoughtSignature").is_none());
        assert_eq!(
            g["contents"][2]["parts"][1]["functionResponse"],
            json!({"name":"get_weather","response":{"content":"sunny"}})
        );
    }

    #[test]
    fn long_signature_goes_to_extra_content_only() {
        let sig = "A".repeat(2000);
        let gemini = json!({"candidates":[{"content":{"parts":[
            {"functionCall":{"name":"f","args":{}},"thoughtSignature":sig}]},"finishReason":"STOP"}]});
        let (body, _) = chat_response(gemini.to_string().as_bytes(), &ctx()).unwrap();
        let resp: Value = serde_json::from_slice(&body).unwrap();
        let call = resp["choices"][0]["message"]["tool_calls"][0].clone();
        assert!(call["id"].as_str().unwrap().len() < 64);
        assert_eq!(
            call["extra_content"]["google"]["thought_signature"],
            sig.as_str()
        );
        let history = json!([{"role":"user","content":"x"},
            {"role":"assistant","tool_calls":[call]},
            {"role":"tool","tool_call_id":resp["choices"][0]["message"]["tool_calls"][0]["id"],"content":"{}"}]);
        let g = req(&msgs(history), "gemini-3-pro-preview");
        assert_eq!(
            g["contents"][1]["parts"][0]["thoughtSignature"],
            sig.as_str()
        );
    }

    #[test]
    fn blocked_prompt_is_content_filter() {
        let (body, usage) =
            chat_response(fixture!("response_blocked.json").as_bytes(), &ctx()).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(got["choices"][0]["message"]["content"], "");
        assert_eq!(usage.prompt_tokens, 9);
    }

    #[test]
    fn finish_reason_mapping() {
        for (g, o) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("MALFORMED_FUNCTION_CALL", "stop"),
            ("OTHER", "stop"),
        ] {
            let gemini = json!({"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":g,"index":0},
                {"content":{"parts":[{"text":"y"}]},"finishReason":g,"index":1}]});
            let (body, _) = chat_response(gemini.to_string().as_bytes(), &ctx()).unwrap();
            let got: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got["choices"][0]["finish_reason"], o, "{g}");
            assert_eq!(got["choices"][1]["index"], 1);
        }
    }

    #[test]
    fn logprobs_are_translated() {
        let gemini = json!({"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":"STOP",
            "logprobsResult":{"topCandidates":[{"candidates":[{"token":"Hi","logProbability":-0.1},{"token":"Yo","logProbability":-2.5}]}],
            "chosenCandidates":[{"token":"Hi","logProbability":-0.1}]}}]});
        let (body, _) = chat_response(gemini.to_string().as_bytes(), &ctx()).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            got["choices"][0]["logprobs"],
            json!({"content":[{"token":"Hi","logprob":-0.1,"bytes":[72,105],"top_logprobs":[
                {"token":"Hi","logprob":-0.1,"bytes":[72,105]},{"token":"Yo","logprob":-2.5,"bytes":[89,111]}]}],
                "refusal":null})
        );
    }

    #[test]
    fn upstream_error_body_is_an_error() {
        assert!(chat_response(fixture!("error_429.json").as_bytes(), &ctx()).is_err());
        assert!(chat_response(b"not json", &ctx()).is_err());
    }
}
