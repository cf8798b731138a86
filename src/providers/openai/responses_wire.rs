//! OpenAI Responses API wire types the gateway writes: the `response` object, its output
//! items, usage and the streaming events. Types only; the conversions live with the
//! provider that needs them.

use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

/// `[]`, without allocating (`annotations`, `logprobs`, an item's empty `content`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct EmptyList;

impl Serialize for EmptyList {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_seq(Some(0))?.end()
    }
}

/// `response.status`.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

/// `incomplete_details.reason`.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IncompleteReason {
    MaxOutputTokens,
    ContentFilter,
}

#[derive(Serialize, Clone, Copy, Debug)]
pub(crate) struct IncompleteDetails {
    pub(crate) reason: IncompleteReason,
}

/// `response.error` of a failed response.
#[derive(Serialize, Clone, Copy, Debug)]
pub(crate) struct ResponseError<'a> {
    pub(crate) code: &'a str,
    pub(crate) message: &'a str,
}

/// The request fields a `response` object repeats back (as the client sent them, or OpenAI's
/// defaults), written once per request as JSON members without the braces: the response is
/// serialised two to four times per stream, and copying the request's `tools` and `text`
/// into owned values for each would cost more than the answer itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Echo {
    /// Borrowed when the request sets none of the echoed fields (the defaults, written once).
    pub(crate) members: std::borrow::Cow<'static, [u8]>,
}

/// The `response` object, whole or as carried by the lifecycle events.
pub(crate) struct ResponseObject<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created_at: u64,
    pub(crate) status: Status,
    pub(crate) error: Option<ResponseError<'a>>,
    pub(crate) incomplete_details: Option<IncompleteDetails>,
    pub(crate) model: &'a str,
    pub(crate) output: &'a [OutputItem],
    pub(crate) echo: &'a Echo,
    pub(crate) usage: Option<&'a ResponseUsage>,
}

/// The members before the echo, in OpenAI's order.
#[derive(Serialize)]
struct Head<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: Status,
    error: Option<ResponseError<'a>>,
    incomplete_details: Option<IncompleteDetails>,
    model: &'a str,
}

impl ResponseObject<'_> {
    /// Appends the object's JSON to `out`, returning where its `output` array is (the next
    /// turn's context is spliced from those bytes). Serialising these plain structs cannot fail.
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> std::ops::Range<usize> {
        let head = Head {
            id: self.id,
            object: self.object,
            created_at: self.created_at,
            status: self.status,
            error: self.error,
            incomplete_details: self.incomplete_details,
            model: self.model,
        };
        let _ = serde_json::to_writer(&mut *out, &head);
        out.pop(); // the head's closing brace
        out.extend_from_slice(b",\"output\":");
        let start = out.len();
        let _ = serde_json::to_writer(&mut *out, self.output);
        let output = start..out.len();
        if !self.echo.members.is_empty() {
            out.push(b',');
            out.extend_from_slice(&self.echo.members);
        }
        out.extend_from_slice(b",\"usage\":");
        let _ = serde_json::to_writer(&mut *out, &self.usage);
        out.push(b'}');
        output
    }

    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.to_vec_with_output().0
    }

    /// The JSON and where its `output` array is in it.
    pub(crate) fn to_vec_with_output(&self) -> (Vec<u8>, std::ops::Range<usize>) {
        let mut out = Vec::with_capacity(512 + self.echo.members.len());
        let output = self.write(&mut out);
        (out, output)
    }
}

#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ResponseUsage {
    pub(crate) input_tokens: u64,
    pub(crate) input_tokens_details: InputTokensDetails,
    pub(crate) output_tokens: u64,
    pub(crate) output_tokens_details: OutputTokensDetails,
    pub(crate) total_tokens: u64,
}

#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct InputTokensDetails {
    pub(crate) cached_tokens: u64,
}

#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct OutputTokensDetails {
    pub(crate) reasoning_tokens: u64,
}

/// Status of one output item.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ItemStatus {
    InProgress,
    Completed,
    Incomplete,
}

/// A finished output item (owned: it outlives the upstream chunk it came from).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum OutputItem {
    Reasoning(ReasoningItem),
    Message(MessageItem),
    FunctionCall(FunctionCallItem),
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct ReasoningItem {
    pub(crate) id: String,
    pub(crate) summary: Vec<SummaryText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encrypted_content: Option<String>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct SummaryText {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) text: String,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct MessageItem {
    pub(crate) id: String,
    pub(crate) status: ItemStatus,
    pub(crate) role: &'static str,
    pub(crate) content: Vec<OutputText>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct OutputText {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) text: String,
    pub(crate) annotations: EmptyList,
    pub(crate) logprobs: EmptyList,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct FunctionCallItem {
    pub(crate) id: String,
    pub(crate) call_id: String,
    pub(crate) name: String,
    pub(crate) arguments: String,
    pub(crate) status: ItemStatus,
}

/// An item as `response.output_item.added` shows it: started, nothing in it yet.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ItemStarted<'a> {
    Reasoning {
        id: &'a str,
        summary: EmptyList,
    },
    Message {
        id: &'a str,
        status: ItemStatus,
        role: &'static str,
        content: EmptyList,
    },
    FunctionCall {
        id: &'a str,
        call_id: &'a str,
        name: &'a str,
        arguments: &'static str,
        status: ItemStatus,
    },
}

/// One server-sent event: `type` and `sequence_number`, then the event's own fields.
#[derive(Serialize)]
pub(crate) struct Event<'a, T> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) sequence_number: u64,
    #[serde(flatten)]
    pub(crate) body: T,
}

/// `response.created`, `.in_progress`, `.completed`, `.incomplete`, `.failed`.
#[derive(Serialize)]
pub(crate) struct ResponseEvent<T> {
    pub(crate) response: T,
}

/// `response.output_item.added` / `.done`.
#[derive(Serialize)]
pub(crate) struct ItemEvent<T> {
    pub(crate) output_index: usize,
    pub(crate) item: T,
}

/// A text content part (`output_text` or `refusal`) in `response.content_part.*`.
#[derive(Serialize)]
pub(crate) struct ContentPart<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) text: &'a str,
    pub(crate) annotations: EmptyList,
    pub(crate) logprobs: EmptyList,
}

#[derive(Serialize)]
pub(crate) struct RefusalPart<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) refusal: &'a str,
}

/// `response.content_part.added` / `.done`.
#[derive(Serialize)]
pub(crate) struct ContentPartEvent<'a, P> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) content_index: usize,
    pub(crate) part: P,
}

/// `response.output_text.delta`.
#[derive(Serialize)]
pub(crate) struct TextDelta<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) content_index: usize,
    pub(crate) delta: &'a str,
    pub(crate) logprobs: EmptyList,
}

/// `response.output_text.done`.
#[derive(Serialize)]
pub(crate) struct TextDone<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) content_index: usize,
    pub(crate) text: &'a str,
    pub(crate) logprobs: EmptyList,
}

/// `response.refusal.delta` (`delta`) / `.done` (`refusal`), for replays of OpenAI answers.
#[derive(Serialize, Clone, Copy)]
pub(crate) struct RefusalEvent<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) content_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refusal: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct SummaryPart<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) text: &'a str,
}

/// `response.reasoning_summary_part.added` / `.done`.
#[derive(Serialize)]
pub(crate) struct SummaryPartEvent<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) summary_index: usize,
    pub(crate) part: SummaryPart<'a>,
}

/// `response.reasoning_summary_text.delta` (`delta`) / `.done` (`text`).
#[derive(Serialize)]
pub(crate) struct SummaryTextEvent<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    pub(crate) summary_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<&'a str>,
}

/// `response.function_call_arguments.delta` (`delta`) / `.done` (`name`, `arguments`).
#[derive(Serialize)]
pub(crate) struct ArgumentsEvent<'a> {
    pub(crate) item_id: &'a str,
    pub(crate) output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) arguments: Option<&'a str>,
}
