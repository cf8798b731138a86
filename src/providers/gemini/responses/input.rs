//! Responses input (a string, or items) and the conversation history → Gemini turns and
//! system parts; and the request's input as stored items (each with an id).
//!
//! Items: `message` (user, system, developer, assistant), `function_call`,
//! `function_call_output`, `reasoning` (its `encrypted_content` gives thought signatures
//! back to the calls and messages it names) and `item_reference` (to an item of the
//! history or of this input).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde_json::{json, Map, Value};

use super::signatures::{input_id, Signatures};
use crate::providers::gemini::error::{bad, Result};
use crate::providers::gemini::ids::{add_missing_signatures, signature_from_id};
use crate::providers::gemini::request::{
    function_call_part, guess_mime, inline, is_gemini3, parse_data_url, push_text, tool_result,
    turn,
};
use crate::providers::gemini::wire::{Content, FileData, FunctionResponse, Part};

/// The translated input.
pub(super) struct Input<'a> {
    pub(super) contents: Vec<Content<'a>>,
    pub(super) system: Vec<Part<'a>>,
    /// This request's input (not the history) as items with ids: a JSON array, or nothing
    /// when not asked for.
    pub(super) items: Vec<u8>,
}

/// Where an item came from, for the `param` of an error.
#[derive(Clone, Copy, Debug)]
enum Loc {
    /// A stored item: the client can only change `previous_response_id`.
    History,
    Input(usize),
}

impl Loc {
    fn at(self, sub: fmt::Arguments<'_>) -> String {
        match self {
            Loc::History => "previous_response_id".to_owned(),
            Loc::Input(i) => format!("input[{i}]{sub}"),
        }
    }
}

struct Builder<'a, 's> {
    contents: Vec<Content<'a>>,
    system: Vec<Part<'a>>,
    /// call_id → function name, from the calls seen so far.
    call_names: HashMap<&'a str, &'a str>,
    sigs: &'s Signatures,
}

/// `referable`: items an `item_reference` may name besides the history and the input
/// (see [`super::referenced_responses`]); they are not sent unless referenced. `items`:
/// whether to build [`Input::items`] (left empty otherwise).
pub(super) fn translate<'a>(
    input: Option<&'a Value>,
    history: &'a [Value],
    referable: &'a [Value],
    model: &str,
    items: bool,
) -> Result<Input<'a>> {
    let listed: &'a [Value] = match input {
        None | Some(Value::String(_)) => &[],
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(bad(
                "input",
                "`input` must be a string or an array of items",
            ))
        }
    };
    let resolved = resolve(history, listed, referable)?;
    let sigs = Signatures::collect(resolved.iter().map(|(v, _)| *v));
    let mut b = Builder {
        contents: Vec::new(),
        system: Vec::new(),
        call_names: HashMap::new(),
        sigs: &sigs,
    };
    for (v, loc) in &resolved {
        b.item(v, *loc)?;
        if b.contents.last().is_some_and(|c| c.parts.is_empty()) {
            b.contents.pop(); // e.g. an assistant message with only empty text.
        }
    }
    if let Some(Value::String(s)) = input {
        push_text(turn(&mut b.contents, "user"), s);
    }
    if b.contents.is_empty() {
        return Err(bad(
            "input",
            "`input` must hold at least one user, assistant or tool item with content",
        ));
    }
    if is_gemini3(model) {
        add_missing_signatures(&mut b.contents);
    }
    let items = match input {
        _ if !items => Vec::new(),
        Some(Value::String(s)) => text_item(s),
        _ => {
            let mut out = vec![b'['];
            for (i, (v, _)) in resolved[history.len()..].iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Writing a `Value` into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, &normalise(v, i));
            }
            out.push(b']');
            out
        }
    };
    Ok(Input {
        contents: b.contents,
        system: b.system,
        items,
    })
}

/// History then input, with each `item_reference` replaced by the item it names.
fn resolve<'a>(
    history: &'a [Value],
    input: &'a [Value],
    referable: &'a [Value],
) -> Result<Vec<(&'a Value, Loc)>> {
    let mut out: Vec<(&Value, Loc)> = history.iter().map(|v| (v, Loc::History)).collect();
    for (i, v) in input.iter().enumerate() {
        let loc = Loc::Input(i);
        if type_of(v) != Some("item_reference") {
            out.push((v, loc));
            continue;
        }
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(loc.at(format_args!(".id")), "`id` must be a string"))?;
        let found = history
            .iter()
            .chain(input)
            .chain(referable)
            .find(|c| {
                type_of(c) != Some("item_reference")
                    && c.get("id").and_then(Value::as_str) == Some(id)
            })
            .ok_or_else(|| {
                bad(
                    loc.at(format_args!(".id")),
                    format!("Item with id '{id}' not found."),
                )
            })?;
        out.push((found, loc));
    }
    Ok(out)
}

/// An item's `type`; an easy input message (`{role, content}`) has none.
fn type_of(v: &Value) -> Option<&str> {
    match v.get("type").and_then(Value::as_str) {
        Some(t) => Some(t),
        None if v.get("role").is_some() => Some("message"),
        None => None,
    }
}

impl<'a> Builder<'a, '_> {
    fn item(&mut self, v: &'a Value, loc: Loc) -> Result<()> {
        match type_of(v) {
            Some("message") => self.message(v, loc),
            Some("function_call") => self.function_call(v, loc),
            Some("function_call_output") => self.function_output(v, loc),
            Some("reasoning") => Ok(()), // Its signatures were collected up front.
            Some(other) => Err(bad(
                loc.at(format_args!(".type")),
                format!("input items of type \"{other}\" are not supported for Gemini models"),
            )),
            None => Err(bad(
                loc.at(format_args!(".type")),
                "an input item needs a `type` (or a `role`)",
            )),
        }
    }

    fn message(&mut self, v: &'a Value, loc: Loc) -> Result<()> {
        let role = v.get("role").and_then(Value::as_str);
        let content = v
            .get("content")
            .filter(|c| !c.is_null())
            .ok_or_else(|| bad(loc.at(format_args!(".content")), "`content` is required"))?;
        match role {
            Some("user") => user_content(content, loc, turn(&mut self.contents, "user")),
            Some("system" | "developer") => {
                text_content(content, loc, &[("input_text", "text")], &mut self.system)
            }
            Some("assistant") => {
                const ASSISTANT: &[(&str, &str)] =
                    &[("output_text", "text"), ("refusal", "refusal")];
                let parts = turn(&mut self.contents, "model");
                let before = parts.len();
                text_content(content, loc, ASSISTANT, parts)?;
                let id = v.get("id").and_then(Value::as_str);
                let sig = id.and_then(|id| self.sigs.items.get(id));
                if let (Some(sig), true) = (sig, parts.len() > before) {
                    if let Some(last) = parts.last_mut() {
                        last.thought_signature = Some(Cow::Owned(sig.clone()));
                    }
                }
                Ok(())
            }
            _ => Err(bad(
                loc.at(format_args!(".role")),
                "`role` must be user, system, developer or assistant",
            )),
        }
    }

    fn function_call(&mut self, v: &'a Value, loc: Loc) -> Result<()> {
        let call_id = call_id(v, loc)?;
        let signature = self
            .sigs
            .calls
            .get(call_id)
            .cloned()
            .or_else(|| {
                v.get("id")
                    .and_then(Value::as_str)
                    .and_then(signature_from_id)
            })
            .map(Cow::Owned);
        let part = function_call_part(v, &loc.at(format_args!("")), signature)?;
        if let Some(fc) = &part.function_call {
            self.call_names.insert(call_id, fc.name);
        }
        turn(&mut self.contents, "model").push(part);
        Ok(())
    }

    fn function_output(&mut self, v: &'a Value, loc: Loc) -> Result<()> {
        let call_id = call_id(v, loc)?;
        let name = self.call_names.get(call_id).copied().ok_or_else(|| {
            bad(
                "input",
                format!("No tool call found for function call output with call_id {call_id}."),
            )
        })?;
        let output = v.get("output").filter(|o| !o.is_null());
        let output = match output {
            Some(o @ Value::String(_)) => o,
            Some(o @ Value::Array(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    if p.get("type").and_then(Value::as_str) != Some("input_text") {
                        return Err(bad(
                            loc.at(format_args!(".output[{j}].type")),
                            "only input_text parts are supported in function call outputs for Gemini models",
                        ));
                    }
                }
                o
            }
            _ => {
                return Err(bad(
                    loc.at(format_args!(".output")),
                    "`output` must be a string or an array of parts",
                ))
            }
        };
        turn(&mut self.contents, "user").push(Part {
            function_response: Some(FunctionResponse {
                name,
                response: tool_result(output),
            }),
            ..Part::default()
        });
        Ok(())
    }
}

fn call_id(v: &Value, loc: Loc) -> Result<&str> {
    v.get("call_id").and_then(Value::as_str).ok_or_else(|| {
        bad(
            loc.at(format_args!(".call_id")),
            "`call_id` must be a string",
        )
    })
}

/// Text-only content: a string, or parts of the allowed (type, text key) kinds. Empty
/// text is skipped (Gemini rejects empty parts).
fn text_content<'a>(
    content: &'a Value,
    loc: Loc,
    allowed: &[(&str, &str)],
    out: &mut Vec<Part<'a>>,
) -> Result<()> {
    let parts = match content {
        Value::String(s) => {
            push_text(out, s);
            return Ok(());
        }
        Value::Array(parts) => parts,
        _ => return Err(not_content(loc)),
    };
    for (j, p) in parts.iter().enumerate() {
        let kind = p.get("type").and_then(Value::as_str);
        let Some(&(_, key)) = allowed.iter().find(|(t, _)| Some(*t) == kind) else {
            let names: Vec<&str> = allowed.iter().map(|(t, _)| *t).collect();
            return Err(bad(
                loc.at(format_args!(".content[{j}].type")),
                format!(
                    "content parts of this message must be of type {}",
                    names.join(" or ")
                ),
            ));
        };
        let s = p.get(key).and_then(Value::as_str).ok_or_else(|| {
            bad(
                loc.at(format_args!(".content[{j}].{key}")),
                format!("`{key}` must be a string"),
            )
        })?;
        push_text(out, s);
    }
    Ok(())
}

fn not_content(loc: Loc) -> crate::providers::gemini::TranslateError {
    bad(
        loc.at(format_args!(".content")),
        "`content` must be a string or an array of parts",
    )
}

fn user_content<'a>(content: &'a Value, loc: Loc, out: &mut Vec<Part<'a>>) -> Result<()> {
    let parts = match content {
        Value::String(s) => {
            push_text(out, s);
            return Ok(());
        }
        Value::Array(parts) => parts,
        _ => return Err(not_content(loc)),
    };
    for (j, p) in parts.iter().enumerate() {
        let at = |sub: &str| loc.at(format_args!(".content[{j}]{sub}"));
        match p.get("type").and_then(Value::as_str) {
            Some("input_text") => {
                let s = p
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(at(".text"), "`text` must be a string"))?;
                push_text(out, s);
            }
            Some("input_image") => out.push(image(p, at)?),
            Some("input_file") => out.push(file(p, at)?),
            _ => {
                return Err(bad(
                    at(".type"),
                    "content parts of a user message must be input_text, input_image or input_file",
                ))
            }
        }
    }
    Ok(())
}

fn no_file_ids(p: &Value, at: &impl Fn(&str) -> String) -> Result<()> {
    match p.get("file_id") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(bad(
            at(".file_id"),
            "file ids are not supported for Gemini models; send the data or a URL",
        )),
    }
}

fn is_http(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// `image_url`: a base64 data URL → inlineData, an http(s) URL → fileData.
fn image<'a>(p: &'a Value, at: impl Fn(&str) -> String) -> Result<Part<'a>> {
    no_file_ids(p, &at)?;
    let url = p
        .get("image_url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(at(".image_url"), "`image_url` must be a string"))?;
    if let Some((mime, data)) = parse_data_url(url) {
        return Ok(inline(mime, data));
    }
    if !is_http(url) {
        return Err(bad(
            at(".image_url"),
            "`image_url` must be a base64 data: URL or an http(s) URL",
        ));
    }
    Ok(file_part(guess_mime(url), url))
}

/// `file_data` (a data URL, or bare base64 typed by `filename`) → inlineData;
/// `file_url` → fileData.
fn file<'a>(p: &'a Value, at: impl Fn(&str) -> String) -> Result<Part<'a>> {
    no_file_ids(p, &at)?;
    if let Some(data) = p.get("file_data").filter(|d| !d.is_null()) {
        let data = data
            .as_str()
            .ok_or_else(|| bad(at(".file_data"), "`file_data` must be a string"))?;
        if let Some((mime, data)) = parse_data_url(data) {
            return Ok(inline(mime, data));
        }
        let name = p.get("filename").and_then(Value::as_str).unwrap_or("");
        return Ok(inline(file_mime(name), data));
    }
    let url = p
        .get("file_url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(at(""), "`input_file` needs `file_data` or `file_url`"))?;
    if !is_http(url) {
        return Err(bad(at(".file_url"), "`file_url` must be an http(s) URL"));
    }
    Ok(file_part(file_mime(url), url))
}

fn file_part<'a>(mime_type: &'a str, file_uri: &'a str) -> Part<'a> {
    Part {
        file_data: Some(FileData {
            mime_type,
            file_uri,
        }),
        ..Part::default()
    }
}

/// A file's type from its name; documents default to PDF (images to JPEG, in `guess_mime`).
fn file_mime(name: &str) -> &'static str {
    let path = name.split(['?', '#']).next().unwrap_or(name);
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    const DOCS: &[(&str, &str)] = &[
        ("txt", "text/plain"),
        ("md", "text/markdown"),
        ("csv", "text/csv"),
        ("html", "text/html"),
        ("htm", "text/html"),
        ("xml", "text/xml"),
        ("json", "application/json"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
    ];
    if let Some((_, m)) = DOCS.iter().find(|(e, _)| e.eq_ignore_ascii_case(ext)) {
        return m;
    }
    match guess_mime(path) {
        "image/jpeg" => "application/pdf",
        m => m,
    }
}

/// A string input as the one user message it stands for.
/// A string input as the one user message it stands for, written as JSON: the shape
/// [`normalise`] gives an item-list message, without building it as values first.
fn text_item(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 128);
    out.extend_from_slice(b"[{\"id\":\"");
    out.extend_from_slice(input_id("msg", &s, 0).as_bytes());
    out.extend_from_slice(
        b"\",\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":",
    );
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, s);
    out.extend_from_slice(b"}]}]");
    out
}

/// An input item as stored: with its `type`, string content as parts, and an id.
fn normalise(v: &Value, index: usize) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let kind = type_of(v).unwrap_or("message");
    let mut item = Map::with_capacity(obj.len() + 2);
    if !obj.contains_key("id") {
        let prefix = match kind {
            "message" => "msg",
            "function_call" => "fc",
            "function_call_output" => "fco",
            "reasoning" => "rs",
            _ => "item",
        };
        item.insert("id".into(), json!(input_id(prefix, v, index)));
    }
    item.insert("type".into(), json!(kind));
    for (k, x) in obj {
        item.insert(k.clone(), x.clone());
    }
    if let (Some(s), "message") = (obj.get("content").and_then(Value::as_str), kind) {
        let part = match obj.get("role").and_then(Value::as_str) {
            Some("assistant") => json!({"type": "output_text", "text": s, "annotations": []}),
            _ => json!({"type": "input_text", "text": s}),
        };
        item.insert("content".into(), json!([part]));
    }
    Value::Object(item)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::request::responses_request;
    use crate::providers::gemini::ids::SKIP_SIGNATURE;
    use crate::providers::gemini::responses::test_support::*;
    use serde_json::{json, Value};

    fn items_of(req: Value, history: &[Value]) -> Vec<Value> {
        responses_request(&req, history, "gemini-2.5-flash")
            .unwrap()
            .items()
    }

    #[test]
    fn user_parts_text_images_and_files() {
        let g = gbody(input(json!([{"role":"user","content":[
            {"type":"input_text","text":"Look:"},
            {"type":"input_text","text":""},
            {"type":"input_image","image_url":"data:image/png;base64,iVBOR","detail":"high"},
            {"type":"input_image","image_url":"https://x.test/cat.webp?s=1"},
            {"type":"input_file","filename":"a.pdf","file_data":"data:application/pdf;base64,JVBER"},
            {"type":"input_file","filename":"notes.txt","file_data":"aGVsbG8="},
            {"type":"input_file","file_url":"https://x.test/report"}]}])));
        assert_eq!(
            g["contents"],
            json!([{"role":"user","parts":[
                {"text":"Look:"},
                {"inlineData":{"mimeType":"image/png","data":"iVBOR"}},
                {"fileData":{"mimeType":"image/webp","fileUri":"https://x.test/cat.webp?s=1"}},
                {"inlineData":{"mimeType":"application/pdf","data":"JVBER"}},
                {"inlineData":{"mimeType":"text/plain","data":"aGVsbG8="}},
                {"fileData":{"mimeType":"application/pdf","fileUri":"https://x.test/report"}}]}])
        );
    }

    #[test]
    fn wrong_or_untranslatable_items_name_the_field() {
        for (items, param) in [
            (
                json!([{"role":"user","content":"a"},{"role":"user","content":"b"},
                {"role":"user","content":[{"type":"input_text","text":5}]}]),
                "input[2].content[0].text",
            ),
            (
                json!([{"role":"user","content":[{"type":"input_image","file_id":"file-1"}]}]),
                "input[0].content[0].file_id",
            ),
            (
                json!([{"role":"user","content":[{"type":"input_file","file_id":"file-1"}]}]),
                "input[0].content[0].file_id",
            ),
            (
                json!([{"role":"user","content":[{"type":"input_image","image_url":"ftp://h/a.png"}]}]),
                "input[0].content[0].image_url",
            ),
            (
                json!([{"role":"user","content":[{"type":"input_file","filename":"a"}]}]),
                "input[0].content[0]",
            ),
            (
                json!([{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]),
                "input[0].content[0].type",
            ),
            (json!([{"role":"user","content":5}]), "input[0].content"),
            (json!([{"role":"user"}]), "input[0].content"),
            (json!([{"role":"tool","content":"x"}]), "input[0].role"),
            (
                json!([{"role":"system","content":[{"type":"input_image","image_url":"https://a/b.png"}]}]),
                "input[0].content[0].type",
            ),
            (
                json!([{"role":"assistant","content":[{"type":"output_text","text":null}]}]),
                "input[0].content[0].text",
            ),
            (
                json!([{"role":"user","content":"x"},{"type":"web_search_call","id":"ws_1"}]),
                "input[1].type",
            ),
            (
                json!([{"type":"computer_call_output","call_id":"c"}]),
                "input[0].type",
            ),
            (json!([{"content":"no role"}]), "input[0].type"),
            (
                json!([{"type":"function_call","name":"f","arguments":"{}"}]),
                "input[0].call_id",
            ),
            (
                json!([{"type":"function_call","call_id":"c","name":"f","arguments":"{oops"}]),
                "input[0].arguments",
            ),
            (
                json!([{"type":"function_call","call_id":"c","arguments":"{}"}]),
                "input[0].name",
            ),
            (
                json!([{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},
                {"type":"function_call_output","call_id":"c"}]),
                "input[1].output",
            ),
            (
                json!([{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},
                {"type":"function_call_output","call_id":"c","output":[
                    {"type":"input_text","text":"a"},{"type":"input_image","image_url":"https://a/b.png"}]}]),
                "input[1].output[1].type",
            ),
            (
                json!([{"type":"item_reference","id":"msg_nowhere"}]),
                "input[0].id",
            ),
            (json!([]), "input"),
        ] {
            let e = rerr(input(items.clone()));
            assert_eq!(e.param.as_deref(), Some(param), "{items}: {}", e.message);
        }
    }

    #[test]
    fn function_call_output_needs_a_matching_call() {
        let e = rerr(input(json!([
            {"role":"user","content":"x"},
            {"type":"function_call_output","call_id":"call_missing","output":"1"}])));
        assert_eq!(e.param.as_deref(), Some("input"), "as OpenAI answers");
        assert!(e.message.contains("call_missing"), "{}", e.message);
    }

    #[test]
    fn turns_merge_and_tool_results_find_their_names() {
        let g = gbody(input(json!([
            {"role":"user","content":"a"},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"b"}]},
            {"type":"reasoning","id":"rs_1","summary":[]},
            {"role":"assistant","content":[{"type":"output_text","text":"Let me check.","annotations":[]}]},
            {"type":"function_call","call_id":"c1","name":"weather","arguments":"{\"city\":\"Paris\"}"},
            {"type":"function_call","call_id":"c2","name":"time","arguments":""},
            {"type":"function_call_output","call_id":"c2","output":"12:00"},
            {"type":"function_call_output","call_id":"c1","output":"{\"temp\":21}"},
            {"type":"function_call_output","call_id":"c1","output":[{"type":"input_text","text":"[1,2]"}]},
            {"role":"assistant","content":"It is 21C.","status":"completed"},
            {"role":"assistant","content":[{"type":"refusal","refusal":"No more."}]}])));
        assert_eq!(
            g["contents"],
            json!([
                {"role":"user","parts":[{"text":"a"},{"text":"b"}]},
                {"role":"model","parts":[{"text":"Let me check."},
                    {"functionCall":{"name":"weather","args":{"city":"Paris"}}},
                    {"functionCall":{"name":"time","args":{}}}]},
                {"role":"user","parts":[
                    {"functionResponse":{"name":"time","response":{"content":"12:00"}}},
                    {"functionResponse":{"name":"weather","response":{"temp":21}}},
                    {"functionResponse":{"name":"weather","response":{"content":[1,2]}}}]},
                {"role":"model","parts":[{"text":"It is 21C."},{"text":"No more."}]}
            ])
        );
    }

    #[test]
    fn history_comes_first_and_its_errors_name_previous_response_id() {
        let history = vec![
            json!({"id":"msg_h1","type":"message","role":"user","content":[{"type":"input_text","text":"first"}]}),
            json!({"id":"msg_h2","type":"message","role":"assistant","status":"completed",
                "content":[{"type":"output_text","text":"reply","annotations":[]}]}),
        ];
        let g = body(&json!({"input":"second"}), &history, "gemini-2.5-flash");
        assert_eq!(
            g["contents"],
            json!([{"role":"user","parts":[{"text":"first"}]},{"role":"model","parts":[{"text":"reply"}]},
                {"role":"user","parts":[{"text":"second"}]}])
        );
        let items = items_of(json!({"input":"second"}), &history);
        assert_eq!(items.len(), 1, "input_items hold this request's input only");
        let bad = vec![json!({"type":"message","role":"user","content":7})];
        let e = responses_request(&json!({"input":"x"}), &bad, "gemini-2.5-flash").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("previous_response_id"));
        let g = body(&json!({}), &history, "gemini-2.5-flash");
        assert_eq!(
            g["contents"].as_array().unwrap().len(),
            2,
            "history alone is a conversation"
        );
    }

    #[test]
    fn item_references_resolve_from_history_and_input() {
        let history = vec![json!({"id":"fc_h","type":"function_call","call_id":"c9",
            "name":"lookup","arguments":"{\"q\":1}","status":"completed"})];
        let req = input(json!([
            {"role":"user","content":"q"},
            {"type":"item_reference","id":"fc_h"},
            {"type":"function_call_output","call_id":"c9","output":"ok"}]));
        let g = body(&req, &history, "gemini-2.5-flash");
        assert_eq!(
            g["contents"][0]["parts"][0]["functionCall"]["name"],
            "lookup"
        );
        assert_eq!(
            g["contents"][2]["parts"][0]["functionCall"]["name"],
            "lookup"
        );
        assert_eq!(
            g["contents"][3]["parts"][0]["functionResponse"]["name"],
            "lookup"
        );
        let own = input(json!([
            {"id":"msg_u","role":"user","content":"q"},
            {"type":"item_reference","id":"msg_u"}]));
        assert_eq!(
            gbody(own)["contents"],
            json!([{"role":"user","parts":[{"text":"q"},{"text":"q"}]}]),
            "a reference to an earlier item of the same input"
        );
        let items = items_of(req, &history);
        assert_eq!(
            items[1], history[0],
            "a reference is stored as the item it names"
        );
    }

    #[test]
    fn a_string_input_is_stored_as_the_user_message_it_stands_for() {
        for s in ["Hi", "with \"quotes\", \\ and \n", "ünïcødé ✓"] {
            let items = items_of(json!({ "input": s }), &[]);
            assert_eq!(
                items,
                vec![json!({
                    "id": super::input_id("msg", &s, 0),
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": s}],
                })]
            );
        }
    }

    #[test]
    fn input_items_are_normalised_with_stable_ids() {
        let req = input(json!([
            {"role":"user","content":"hello"},
            {"role":"assistant","content":"hi","id":"msg_keep"},
            {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"c1","output":"1"},
            {"type":"reasoning","summary":[]}]));
        let items = items_of(req.clone(), &[]);
        assert_eq!(
            items,
            items_of(req, &[]),
            "the same input lists the same ids"
        );
        assert_eq!(items[0]["type"], "message");
        assert_eq!(
            items[0]["content"],
            json!([{"type":"input_text","text":"hello"}])
        );
        assert_eq!(items[1]["id"], "msg_keep");
        assert_eq!(
            items[1]["content"],
            json!([{"type":"output_text","text":"hi","annotations":[]}])
        );
        for (item, prefix) in items.iter().zip(["msg_", "msg_", "fc_", "fco_", "rs_"]) {
            assert!(item["id"].as_str().unwrap().starts_with(prefix), "{item}");
        }
    }

    #[test]
    fn gemini3_replayed_calls_without_signature_get_the_sentinel() {
        let req = input(json!([
            {"role":"user","content":"x"},
            {"type":"function_call","call_id":"a","name":"f","arguments":"{}"},
            {"type":"function_call","call_id":"b","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"a","output":"1"},
            {"type":"function_call_output","call_id":"b","output":"2"},
            {"type":"reasoning","id":"rs_x","summary":[],"encrypted_content":"gAAAAOpenAIsOwn"}]));
        let g = body(&req, &[], "gemini-3-pro-preview");
        let parts = &g["contents"][1]["parts"];
        assert_eq!(parts[0]["thoughtSignature"], SKIP_SIGNATURE);
        assert!(
            parts[1].get("thoughtSignature").is_none(),
            "only the first call of a step"
        );
        let g = body(&req, &[], "gemini-2.5-flash");
        assert!(g["contents"][1]["parts"][0]
            .get("thoughtSignature")
            .is_none());
    }
}
