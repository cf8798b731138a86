//! OpenAI Responses API (`/v1/responses`) ⇄ native Gemini, pure and I/O-free (SPEC §11).
//!
//! Directions, each its own module: `request` (request fields → a Gemini body) with
//! `input` (input items → Gemini turns); `output` (Gemini parts → output items, the
//! one state machine both answers share); `response` (a whole answer) and `stream`
//! (SSE); `events` (the event writer, and replays of whole `response` objects);
//! `signatures` (ids and thought signatures). OpenAI's wire types are in
//! `providers::openai::responses_wire`, Gemini's in `super::wire`.
//!
//! Decisions not dictated by either API:
//! - Item ids embed the gateway's response id: `rs_/msg_/fc_<id without "resp_">_<n>`, and
//!   call ids are `call_<same>_<n>`, so they are distinct per call and per response.
//! - A Gemini `thoughtSignature` rides in a `reasoning` item's `encrypted_content`
//!   (`gemini.ts1.` + base64url of `[{"call_id"|"item_id": …, "signature": …}]`), placed
//!   just before the call it belongs to (or just after the message, for a text answer's
//!   signature), and, when short enough, also in the `function_call` item's `id`
//!   (`…__ts__<base64url>`, as the chat translation does). Either survives a client that
//!   replays the items it got; stored conversations keep both.
//! - Input items without an id get a content-derived one (`msg_/fc_/fco_/rs_<16 hex>`),
//!   so the same request always lists the same `input_items`.
//! - `MALFORMED_FUNCTION_CALL` and other unusual finish reasons end `completed`, as the
//!   chat translation ends them with `stop`.

mod events;
mod input;
mod output;
mod request;
mod response;
mod signatures;
mod stream;
#[cfg(test)]
mod test_support;

pub use events::response_to_events;
pub use request::{
    referenced_responses, responses_request, responses_request_with, ResponsesRequest,
};
pub use response::{responses_response, ResponsesContext};
pub use stream::ResponsesStreamTranslator;
