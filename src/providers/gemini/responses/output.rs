//! Gemini answer parts → Responses output items: the one state machine behind both the
//! stream and the whole answer (which runs it with a muted event writer), so both give
//! the same items, ids and signatures.
//!
//! Items open and close in order: thought text opens a `reasoning` item (its summary),
//! text opens a `message`, each `functionCall` is a `function_call` item. A signature on a
//! call goes into the open reasoning item or a reasoning item of its own just before the
//! call; a signature on text goes into a reasoning item right after the message closes; a
//! signature on a thought (or on a part with nothing to show) goes to the next item.
//! With `parallel_tool_calls: false` only the first `functionCall` becomes an item.

use super::events::{replay_arguments, summary_part, summary_text, Events};
use super::response::ResponsesContext;
use super::signatures::{encode, ItemIds, SignatureEntry};
use crate::providers::gemini::response::{finish_reason, usage_of, usage_out, write_args, Usage};
use crate::providers::gemini::wire::{
    GenerateContentResponse, RespFunctionCall, RespPart, UsageMetadata,
};
use crate::providers::openai::responses_wire::{
    ContentPart, ContentPartEvent, EmptyList, FunctionCallItem, IncompleteDetails,
    IncompleteReason, InputTokensDetails, ItemEvent, ItemStarted, ItemStatus, MessageItem,
    OutputItem, OutputText, OutputTokensDetails, ReasoningItem, ResponseError, ResponseObject,
    ResponseUsage, Status, SummaryText, TextDelta, TextDone,
};

/// How the answer ended, once Gemini said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    Completed,
    Incomplete(IncompleteReason),
}

impl End {
    /// Gemini finishReason → status, through the chat translation's mapping.
    fn of(reason: &str) -> End {
        match finish_reason(reason, false) {
            "length" => End::Incomplete(IncompleteReason::MaxOutputTokens),
            "content_filter" => End::Incomplete(IncompleteReason::ContentFilter),
            _ => End::Completed,
        }
    }
}

enum Open {
    Nothing,
    Reasoning {
        sigs: Vec<SignatureEntry>,
        summary: bool,
    },
    Message {
        sig: Option<String>,
    },
}

pub(super) struct Output {
    cx: ResponsesContext,
    ev: Events,
    ids: ItemIds,
    items: Vec<OutputItem>,
    open: Open,
    /// A signature waiting for the next item (it came on a thought or an empty part).
    carry: Option<String>,
    usage: Option<UsageMetadata>,
    end: Option<End>,
    started: bool,
    args: Vec<u8>,
    /// Bytes of text, arguments and signatures the items hold (the stream's bound).
    held: usize,
    /// The finished response object and where its `output` array is in it.
    body: Option<(Vec<u8>, std::ops::Range<usize>)>,
}

impl Output {
    /// `emit: false` builds the items without writing events.
    pub(super) fn new(cx: ResponsesContext, emit: bool) -> Self {
        Output {
            ids: ItemIds::new(&cx.id),
            cx,
            ev: Events::new(emit),
            items: Vec::new(),
            open: Open::Nothing,
            carry: None,
            usage: None,
            end: None,
            started: false,
            args: Vec::new(),
            held: 0,
            body: None,
        }
    }

    pub(super) fn held_bytes(&self) -> usize {
        self.held
    }

    pub(super) fn ended(&self) -> bool {
        self.end.is_some()
    }

    pub(super) fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(|m| usage_of(&usage_out(m)))
    }

    /// The finished response object (after [`Output::complete`]).
    pub(super) fn body(&self) -> Option<&[u8]> {
        self.body.as_ref().map(|(b, _)| b.as_slice())
    }

    /// The finished response object and its `output` array's place in it, taken.
    pub(super) fn take_body(&mut self) -> Option<(Vec<u8>, std::ops::Range<usize>)> {
        self.body.take()
    }

    /// `response.created` and `response.in_progress`, once.
    pub(super) fn start(&mut self, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.started, true) || !self.ev.on() {
            return;
        }
        let body = self.object(Status::InProgress, None, &[], None);
        self.ev.write_response(out, "response.created", &body);
        self.ev.write_response(out, "response.in_progress", &body);
    }

    /// One Gemini answer (a whole one, or one stream chunk).
    pub(super) fn answer(&mut self, resp: &GenerateContentResponse<'_>, out: &mut Vec<u8>) {
        self.start(out);
        if let Some(m) = resp.usage_metadata {
            self.usage = Some(m);
        }
        if self.end.is_some() {
            return;
        }
        let Some(cand) = resp.candidates.first() else {
            let blocked = resp.prompt_feedback.as_ref();
            if blocked.is_some_and(|f| f.block_reason.is_some()) {
                self.finish(End::Incomplete(IncompleteReason::ContentFilter), out);
            }
            return;
        };
        for p in cand.content.iter().flat_map(|c| &c.parts) {
            self.part(p, out);
        }
        if let Some(reason) = &cand.finish_reason {
            self.finish(End::of(&reason.0), out);
        }
    }

    /// Closes the open item; the terminal event waits for [`Output::complete`].
    pub(super) fn finish(&mut self, end: End, out: &mut Vec<u8>) {
        let status = match end {
            End::Completed => ItemStatus::Completed,
            End::Incomplete(_) => ItemStatus::Incomplete,
        };
        self.close(status, out);
        self.end = Some(end);
    }

    /// `response.completed` or `response.incomplete` with the whole output and usage.
    pub(super) fn complete(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        let end = self.end.unwrap_or(End::Completed);
        let (status, details, kind) = match end {
            End::Completed => (Status::Completed, None, "response.completed"),
            End::Incomplete(reason) => (
                Status::Incomplete,
                Some(IncompleteDetails { reason }),
                "response.incomplete",
            ),
        };
        let usage = self.response_usage();
        let (body, output) = self
            .view(status, details, &self.items, Some(&usage))
            .to_vec_with_output();
        self.ev.write_response(out, kind, &body);
        self.body = Some((body, output));
    }

    /// `response.failed` with what was output so far; never a completed response.
    pub(super) fn fail(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        self.start(out);
        self.open = Open::Nothing;
        let usage = self.usage.is_some().then(|| self.response_usage());
        let error = ResponseError { code, message };
        let obj = ResponseObject {
            error: Some(error),
            ..self.view(Status::Failed, None, &self.items, usage.as_ref())
        };
        let body = obj.to_vec();
        self.ev.write_response(out, "response.failed", &body);
    }

    fn view<'a>(
        &'a self,
        status: Status,
        incomplete_details: Option<IncompleteDetails>,
        output: &'a [OutputItem],
        usage: Option<&'a ResponseUsage>,
    ) -> ResponseObject<'a> {
        ResponseObject {
            id: &self.cx.id,
            object: "response",
            created_at: self.cx.created_at,
            status,
            error: None,
            incomplete_details,
            model: &self.cx.model,
            output,
            echo: &self.cx.echo,
            usage,
        }
    }

    fn object(
        &self,
        status: Status,
        details: Option<IncompleteDetails>,
        output: &[OutputItem],
        usage: Option<&ResponseUsage>,
    ) -> Vec<u8> {
        self.view(status, details, output, usage).to_vec()
    }

    fn response_usage(&self) -> ResponseUsage {
        let m = self.usage.unwrap_or_default();
        let u = usage_out(&m);
        ResponseUsage {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: m.cached_content_token_count,
            },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: m.thoughts_token_count,
            },
            total_tokens: u.total_tokens,
        }
    }

    fn part(&mut self, p: &RespPart<'_>, out: &mut Vec<u8>) {
        let sig = p.thought_signature.as_ref().map(|s| &*s.0);
        let text = p.text.as_ref().map_or(0, |t| t.0.len());
        // A call's arguments are counted once written; each part costs an item's worth.
        self.held = self
            .held
            .saturating_add(64 + text + sig.map_or(0, str::len));
        if let Some(fc) = &p.function_call {
            return self.call(fc, sig, out);
        }
        match &p.text {
            Some(t) if p.thought => self.thought(&t.0, sig, out),
            Some(t) => self.text(&t.0, sig, out),
            None => {
                if let Some(s) = sig {
                    self.carry = Some(s.to_owned());
                }
            }
        }
    }

    fn thought(&mut self, text: &str, sig: Option<&str>, out: &mut Vec<u8>) {
        if let Some(s) = sig {
            self.carry = Some(s.to_owned());
        }
        if text.is_empty() {
            return;
        }
        if !matches!(self.open, Open::Reasoning { .. }) {
            self.close(ItemStatus::Completed, out);
            self.open_reasoning(out);
        }
        let index = self.items.len() - 1;
        let Open::Reasoning { summary, .. } = &mut self.open else {
            return;
        };
        let Some(OutputItem::Reasoning(r)) = self.items.last_mut() else {
            return;
        };
        let at = (r.id.as_str(), index, 0);
        if !std::mem::replace(summary, true) {
            r.summary.push(SummaryText {
                kind: "summary_text",
                text: String::new(),
            });
            summary_part(
                &mut self.ev,
                "response.reasoning_summary_part.added",
                at,
                "",
                out,
            );
        }
        if let Some(s) = r.summary.first_mut() {
            s.text.push_str(text);
        }
        summary_text(&mut self.ev, at, Some(text), None, out);
    }

    fn text(&mut self, text: &str, sig: Option<&str>, out: &mut Vec<u8>) {
        if !matches!(self.open, Open::Message { .. }) {
            if text.is_empty() {
                if let Some(s) = sig {
                    self.carry = Some(s.to_owned());
                }
                return;
            }
            self.close(ItemStatus::Completed, out);
            self.open_message(out);
        }
        let index = self.items.len() - 1;
        if let (Open::Message { sig: slot }, Some(s)) = (&mut self.open, sig) {
            *slot = Some(s.to_owned());
        }
        let Some(OutputItem::Message(m)) = self.items.last_mut() else {
            return;
        };
        if text.is_empty() {
            return;
        }
        if let Some(c) = m.content.first_mut() {
            c.text.push_str(text);
        }
        let delta = TextDelta {
            item_id: &m.id,
            output_index: index,
            content_index: 0,
            delta: text,
            logprobs: EmptyList,
        };
        self.ev.write(out, "response.output_text.delta", delta);
    }

    fn call(&mut self, fc: &RespFunctionCall<'_>, sig: Option<&str>, out: &mut Vec<u8>) {
        if !self.cx.parallel_tool_calls
            && self
                .items
                .iter()
                .any(|i| matches!(i, OutputItem::FunctionCall(_)))
        {
            // `parallel_tool_calls: false`: a later call is not shown, stored or continued
            // from (Gemini puts a call's signature on the first call of a turn).
            return;
        }
        let sig = sig.map(str::to_owned).or_else(|| self.carry.take());
        let (id, call_id) = self.ids.call(sig.as_deref());
        if let Some(signature) = sig {
            if !matches!(self.open, Open::Reasoning { .. }) {
                self.close(ItemStatus::Completed, out);
                self.open_reasoning(out);
            }
            if let Open::Reasoning { sigs, .. } = &mut self.open {
                sigs.push(SignatureEntry {
                    call_id: Some(call_id.clone()),
                    item_id: None,
                    signature,
                });
            }
        }
        self.close(ItemStatus::Completed, out);
        write_args(fc.args.as_ref(), &mut self.args);
        self.held = self.held.saturating_add(self.args.len() + fc.name.0.len());
        let item = FunctionCallItem {
            id,
            call_id,
            name: fc.name.0.to_string(),
            arguments: String::from_utf8_lossy(&self.args).into_owned(),
            status: ItemStatus::Completed,
        };
        let index = self.items.len();
        let started = ItemStarted::FunctionCall {
            id: &item.id,
            call_id: &item.call_id,
            name: &item.name,
            arguments: "",
            status: ItemStatus::InProgress,
        };
        self.item_event("response.output_item.added", index, started, out);
        let at = (item.id.as_str(), index);
        replay_arguments(&mut self.ev, at, Some(&item.name), &item.arguments, out);
        self.items.push(OutputItem::FunctionCall(item));
        self.item_done(out);
    }

    fn open_reasoning(&mut self, out: &mut Vec<u8>) {
        let id = self.ids.item("rs");
        let index = self.items.len();
        let started = ItemStarted::Reasoning {
            id: &id,
            summary: EmptyList,
        };
        self.item_event("response.output_item.added", index, started, out);
        self.items.push(OutputItem::Reasoning(ReasoningItem {
            id,
            summary: Vec::new(),
            encrypted_content: None,
        }));
        self.open = Open::Reasoning {
            sigs: Vec::new(),
            summary: false,
        };
    }

    fn open_message(&mut self, out: &mut Vec<u8>) {
        let id = self.ids.item("msg");
        let index = self.items.len();
        let started = ItemStarted::Message {
            id: &id,
            status: ItemStatus::InProgress,
            role: "assistant",
            content: EmptyList,
        };
        self.item_event("response.output_item.added", index, started, out);
        let part = ContentPartEvent {
            item_id: &id,
            output_index: index,
            content_index: 0,
            part: ContentPart {
                kind: "output_text",
                text: "",
                annotations: EmptyList,
                logprobs: EmptyList,
            },
        };
        self.ev.write(out, "response.content_part.added", part);
        self.items.push(OutputItem::Message(MessageItem {
            id,
            status: ItemStatus::InProgress,
            role: "assistant",
            content: vec![OutputText {
                kind: "output_text",
                text: String::new(),
                annotations: EmptyList,
                logprobs: EmptyList,
            }],
        }));
        self.open = Open::Message {
            sig: self.carry.take(),
        };
    }

    /// Ends the open item with its `.done` events.
    fn close(&mut self, status: ItemStatus, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.open, Open::Nothing) {
            Open::Nothing => {}
            Open::Reasoning { sigs, summary } => self.close_reasoning(sigs, summary, out),
            Open::Message { sig } => self.close_message(status, sig, out),
        }
    }

    fn close_reasoning(&mut self, sigs: Vec<SignatureEntry>, summary: bool, out: &mut Vec<u8>) {
        let index = self.items.len() - 1;
        let Some(OutputItem::Reasoning(r)) = self.items.last_mut() else {
            return;
        };
        if summary {
            let text = r.summary.first().map_or("", |s| s.text.as_str());
            let at = (r.id.as_str(), index, 0);
            summary_text(&mut self.ev, at, None, Some(text), out);
            summary_part(
                &mut self.ev,
                "response.reasoning_summary_part.done",
                at,
                text,
                out,
            );
        }
        if !sigs.is_empty() {
            r.encrypted_content = Some(encode(&sigs));
        }
        self.item_done(out);
    }

    fn close_message(&mut self, status: ItemStatus, sig: Option<String>, out: &mut Vec<u8>) {
        let index = self.items.len() - 1;
        let Some(OutputItem::Message(m)) = self.items.last_mut() else {
            return;
        };
        m.status = status;
        let text = m.content.first().map_or("", |c| c.text.as_str());
        let done = TextDone {
            item_id: &m.id,
            output_index: index,
            content_index: 0,
            text,
            logprobs: EmptyList,
        };
        self.ev.write(out, "response.output_text.done", done);
        let part = ContentPartEvent {
            item_id: &m.id,
            output_index: index,
            content_index: 0,
            part: ContentPart {
                kind: "output_text",
                text,
                annotations: EmptyList,
                logprobs: EmptyList,
            },
        };
        self.ev.write(out, "response.content_part.done", part);
        let message_id = m.id.clone();
        self.item_done(out);
        if let Some(signature) = sig {
            self.open_reasoning(out);
            let sigs = vec![SignatureEntry {
                call_id: None,
                item_id: Some(message_id),
                signature,
            }];
            self.close_reasoning(sigs, false, out);
            self.open = Open::Nothing;
        }
    }

    fn item_event<T: serde::Serialize>(
        &mut self,
        kind: &str,
        index: usize,
        item: T,
        out: &mut Vec<u8>,
    ) {
        let event = ItemEvent {
            output_index: index,
            item,
        };
        self.ev.write(out, kind, event);
    }

    /// `response.output_item.done` for the last item.
    fn item_done(&mut self, out: &mut Vec<u8>) {
        let index = self.items.len().saturating_sub(1);
        if let Some(item) = self.items.last() {
            let event = ItemEvent {
                output_index: index,
                item,
            };
            self.ev.write(out, "response.output_item.done", event);
        }
    }
}
