//! A Responses request → a Gemini `generateContent` body: top-level fields, tools, text
//! format and reasoning here; input items in [`super::input`].

use serde_json::Value;

use super::input::{self, Input};
use crate::providers::gemini::error::{bad, no_param, Result};
use crate::providers::gemini::ids::SIGNATURE_SEP;
use crate::providers::gemini::request::{
    bool_of, chat_path, declaration, f64_of, str_of, thinking_config, tool_config, u64_of,
};
use crate::providers::gemini::wire::{
    FunctionCallingConfig, FunctionDeclaration, GenerateContentRequest, GenerationConfig, Part,
    Schema, SystemInstruction, ThinkingConfig, Tool, ToolConfig,
};

/// A translated request: the Gemini body, whether it streams, the path after the base URL
/// (as `chat_path`), and this request's input as items, each with an id, for storage and
/// `input_items` listings: a JSON array, written as it is stored (empty when not asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesRequest {
    pub body: Vec<u8>,
    pub stream: bool,
    pub path: String,
    pub input_items: Vec<u8>,
}

#[cfg(test)]
impl ResponsesRequest {
    /// The input items as values.
    #[allow(clippy::unwrap_used)]
    pub fn items(&self) -> Vec<Value> {
        serde_json::from_slice(&self.input_items).unwrap()
    }
}

/// The fields translated after the loop over the body (they depend on each other).
#[derive(Default)]
struct Fields<'a> {
    input: Option<&'a Value>,
    instructions: Option<&'a Value>,
    tools: Option<&'a Value>,
    tool_choice: Option<&'a Value>,
    reasoning: Option<&'a Value>,
    text: Option<&'a Value>,
    stream: bool,
}

/// `history`: earlier conversation items (from `previous_response_id`, already expanded
/// by the caller), put before the request's own input. `model` is the bare Gemini name.
pub fn responses_request(req: &Value, history: &[Value], model: &str) -> Result<ResponsesRequest> {
    responses_request_with(req, history, &[], model, true)
}

/// Like [`responses_request`], with `referable`: output items of earlier responses that
/// the request's `item_reference`s may name (clients such as the Vercel AI SDK replay
/// answered items as bare references when `store` is on); only the named ones are sent.
/// [`referenced_responses`] says which stored responses to load for them. `items`: build
/// `input_items` (only an answer that is kept needs them; they cost more than the rest of
/// the input's translation).
pub fn responses_request_with(
    req: &Value,
    history: &[Value],
    referable: &[Value],
    model: &str,
    items: bool,
) -> Result<ResponsesRequest> {
    let obj = req
        .as_object()
        .ok_or_else(|| no_param("request body must be a JSON object"))?;
    let mut gemini = GenerateContentRequest::default();
    let mut f = Fields::default();
    for (key, v) in obj {
        if !v.is_null() {
            field(key, v, &mut f, &mut gemini.generation_config)?;
        }
    }
    let gc = &mut gemini.generation_config;
    gc.thinking_config = reasoning(f.reasoning, model)?;
    if let Some(t) = f.text {
        text(t, gc)?;
    }
    let Input {
        contents,
        system,
        items,
    } = input::translate(f.input, history, referable, model, items)?;
    gemini.contents = contents;
    gemini.system_instruction = system_instruction(f.instructions, system)?;
    tools(f.tools, f.tool_choice, &mut gemini)?;
    let body = serde_json::to_vec(&gemini).map_err(|e| no_param(e.to_string()))?;
    Ok(ResponsesRequest {
        body,
        stream: f.stream,
        path: chat_path(model, f.stream),
        input_items: items,
    })
}

/// The response ids (`resp_…`) whose output items this request's `item_reference`s name,
/// read from the item ids this translation mints (`rs_/msg_/fc_<id without resp_>_<n>`);
/// each once, in order. The caller keeps those it minted and can read.
pub fn referenced_responses(req: &Value) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let items = req
        .get("input")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let refs = items
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("item_reference"))
        .filter_map(|i| i.get("id").and_then(Value::as_str));
    for id in refs.filter_map(response_of_item) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

fn response_of_item(item_id: &str) -> Option<String> {
    let id = item_id.split(SIGNATURE_SEP).next().unwrap_or(item_id);
    let (_, rest) = id.split_once('_')?;
    let (stem, n) = rest.rsplit_once('_')?;
    (!stem.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("resp_{stem}"))
}

fn unsupported(key: &str) -> crate::providers::gemini::TranslateError {
    bad(key, format!("`{key}` is not supported for Gemini models"))
}

/// One top-level field; those that need the others are kept in `f` for later.
fn field<'a>(
    key: &str,
    v: &'a Value,
    f: &mut Fields<'a>,
    gc: &mut GenerationConfig<'a>,
) -> Result<()> {
    match key {
        "model" => {}
        "input" => f.input = Some(v),
        "instructions" => f.instructions = Some(v),
        "tools" => f.tools = Some(v),
        "tool_choice" => f.tool_choice = Some(v),
        "text" => f.text = Some(v),
        "reasoning" => f.reasoning = Some(v),
        "stream" => f.stream = bool_of(v, key)?,
        "max_output_tokens" => gc.max_output_tokens = Some(u64_of(v, key)?),
        "temperature" => gc.temperature = Some(f64_of(v, key)?),
        "top_p" => gc.top_p = Some(f64_of(v, key)?),
        "parallel_tool_calls" | "store" => {
            bool_of(v, key)?;
        }
        "user"
        | "prompt_cache_key"
        | "safety_identifier"
        | "previous_response_id"
        | "prompt_cache_retention" => {
            str_of(v, key)?;
        }
        "metadata" | "stream_options" => {
            v.as_object()
                .ok_or_else(|| bad(key, format!("`{key}` must be an object")))?;
        }
        "include" => include(v)?,
        "truncation" => match str_of(v, key)? {
            "disabled" => {}
            _ => {
                return Err(bad(
                    key,
                    "only `truncation: \"disabled\"` is supported for Gemini models",
                ))
            }
        },
        "service_tier" => match str_of(v, key)? {
            "auto" | "default" => {}
            _ => {
                return Err(bad(
                    key,
                    "only the auto and default service tiers are supported for Gemini models",
                ))
            }
        },
        "background" => {
            if bool_of(v, key)? {
                return Err(unsupported(key));
            }
        }
        "top_logprobs" => {
            if u64_of(v, key)? > 0 {
                return Err(unsupported(key));
            }
        }
        "max_tool_calls" | "conversation" | "prompt" => return Err(unsupported(key)),
        _ => return Err(bad(key, format!("Unknown parameter: '{key}'."))),
    }
    Ok(())
}

/// Values of `include`: those about reasoning or built-in tools change nothing here
/// (reasoning items always carry their `encrypted_content`); logprobs are not available.
fn include(v: &Value) -> Result<()> {
    const HARMLESS: &[&str] = &[
        "reasoning.encrypted_content",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "code_interpreter_call.outputs",
    ];
    let list = v
        .as_array()
        .ok_or_else(|| bad("include", "`include` must be an array of strings"))?;
    for (i, x) in list.iter().enumerate() {
        let at = || format!("include[{i}]");
        let s = x.as_str().ok_or_else(|| bad(at(), "must be a string"))?;
        if !HARMLESS.contains(&s) {
            return Err(bad(
                at(),
                format!("`{s}` cannot be included for Gemini models"),
            ));
        }
    }
    Ok(())
}

/// Models that do not think: OpenAI answers `reasoning` on its non-reasoning models with a 400.
fn thinks(model: &str) -> bool {
    let m = model.strip_prefix("models/").unwrap_or(model);
    !["gemini-1.", "gemini-2.0", "gemma", "learnlm"]
        .iter()
        .any(|p| m.starts_with(p))
}

/// `reasoning.{effort, summary}` → thinkingConfig (a level for Gemini 3, a budget for 2.5,
/// as the chat translation maps them) with `includeThoughts` for a summary.
fn reasoning(v: Option<&Value>, model: &str) -> Result<Option<ThinkingConfig>> {
    let Some(v) = v else { return Ok(None) };
    let obj = v
        .as_object()
        .ok_or_else(|| bad("reasoning", "`reasoning` must be an object"))?;
    let (mut effort, mut summary) = (None, None);
    for (k, x) in obj.iter().filter(|(_, x)| !x.is_null()) {
        match k.as_str() {
            "effort" => effort = Some(str_of(x, "reasoning.effort")?),
            "summary" | "generate_summary" => summary = Some(str_of(x, "reasoning.summary")?),
            _ => {
                return Err(bad(
                    format!("reasoning.{k}"),
                    format!("Unknown parameter: 'reasoning.{k}'."),
                ))
            }
        }
    }
    if effort.is_none() && summary.is_none() {
        return Ok(None);
    }
    if !thinks(model) {
        let p = if effort.is_some() {
            "reasoning.effort"
        } else {
            "reasoning.summary"
        };
        return Err(bad(
            p,
            format!("Unsupported parameter: '{p}' is not supported with this model."),
        ));
    }
    let mut config = match effort {
        None => ThinkingConfig::default(),
        Some(e) => {
            thinking_config(if e == "xhigh" { "high" } else { e }, model).ok_or_else(|| {
                bad(
                    "reasoning.effort",
                    "`reasoning.effort` must be one of none, minimal, low, medium, high, xhigh",
                )
            })?
        }
    };
    match summary {
        None => {}
        Some("auto" | "concise" | "detailed") => config.include_thoughts = Some(true),
        Some(_) => {
            return Err(bad(
                "reasoning.summary",
                "`reasoning.summary` must be auto, concise or detailed",
            ))
        }
    }
    Ok(Some(config))
}

/// `text.format` (text, json_object, json_schema → responseJsonSchema) and `text.verbosity`.
fn text<'a>(v: &'a Value, gc: &mut GenerationConfig<'a>) -> Result<()> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("text", "`text` must be an object"))?;
    for (k, x) in obj.iter().filter(|(_, x)| !x.is_null()) {
        match k.as_str() {
            "format" => format(x, gc)?,
            "verbosity" => match str_of(x, "text.verbosity")? {
                "medium" => {}
                _ => {
                    return Err(bad(
                        "text.verbosity",
                        "only `medium` verbosity is supported for Gemini models",
                    ))
                }
            },
            _ => {
                return Err(bad(
                    format!("text.{k}"),
                    format!("Unknown parameter: 'text.{k}'."),
                ))
            }
        }
    }
    Ok(())
}

fn format<'a>(v: &'a Value, gc: &mut GenerationConfig<'a>) -> Result<()> {
    match v.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => gc.response_mime_type = Some("application/json"),
        Some("json_schema") => {
            let schema = v.get("schema").filter(|s| s.is_object()).ok_or_else(|| {
                bad(
                    "text.format.schema",
                    "`text.format.schema` must be a JSON Schema object",
                )
            })?;
            gc.response_mime_type = Some("application/json");
            gc.response_json_schema = Some(Schema(schema));
        }
        _ => {
            return Err(bad(
                "text.format.type",
                "`text.format.type` must be text, json_object or json_schema",
            ))
        }
    }
    Ok(())
}

/// `instructions` first, then system and developer messages, in order.
fn system_instruction<'a>(
    instructions: Option<&'a Value>,
    mut system: Vec<Part<'a>>,
) -> Result<Option<SystemInstruction<'a>>> {
    if let Some(v) = instructions {
        let s = str_of(v, "instructions")?;
        if !s.is_empty() {
            system.insert(
                0,
                Part {
                    text: Some(s),
                    ..Part::default()
                },
            );
        }
    }
    Ok((!system.is_empty()).then_some(SystemInstruction { parts: system }))
}

/// `tools` (functions only) → functionDeclarations; `tool_choice` → toolConfig. An
/// `allowed_tools` choice keeps only the functions it names.
fn tools<'a>(
    tools: Option<&'a Value>,
    choice: Option<&'a Value>,
    gemini: &mut GenerateContentRequest<'a>,
) -> Result<()> {
    let mut decls = Vec::new();
    if let Some(v) = tools {
        let list = v
            .as_array()
            .ok_or_else(|| bad("tools", "`tools` must be an array"))?;
        for (i, t) in list.iter().enumerate() {
            decls.push(tool(t, i)?);
        }
    }
    if let Some(c) = choice {
        let (config, allowed) = tool_choice(c)?;
        if let Some(names) = allowed {
            decls.retain(|d| names.contains(&d.name));
        }
        gemini.tool_config = Some(config);
    }
    if !decls.is_empty() {
        gemini.tools.push(Tool {
            function_declarations: decls,
        });
    }
    Ok(())
}

fn tool(t: &Value, i: usize) -> Result<FunctionDeclaration<'_>> {
    match t.get("type").and_then(Value::as_str) {
        Some("function") => declaration(t, || format!("tools[{i}]")),
        Some(other) => Err(bad(
            format!("tools[{i}].type"),
            format!("tools of type \"{other}\" are not supported for Gemini models; only \"function\" tools are"),
        )),
        None => Err(bad(format!("tools[{i}].type"), "`type` must be a string")),
    }
}

type Allowed<'a> = Option<Vec<&'a str>>;

fn tool_choice(v: &Value) -> Result<(ToolConfig<'_>, Allowed<'_>)> {
    const P: &str = "tool_choice";
    let kind = match v {
        Value::String(_) => return Ok((tool_config(v, P)?, None)),
        Value::Object(o) => o.get("type").and_then(Value::as_str),
        _ => None,
    };
    match kind {
        Some("function") => {
            let name = v.get("name").and_then(Value::as_str);
            name.ok_or_else(|| bad("tool_choice.name", "`name` must be a string"))?;
            Ok((tool_config(v, P)?, None))
        }
        Some("allowed_tools") => allowed_tools(v),
        Some(other) => Err(bad(
            "tool_choice.type",
            format!("tool_choice of type \"{other}\" is not supported for Gemini models"),
        )),
        None => Err(bad(
            P,
            "`tool_choice` must be auto, none, required or an object with a `type`",
        )),
    }
}

/// `{type: allowed_tools, mode: auto|required, tools: [{type: function, name}]}`.
fn allowed_tools(v: &Value) -> Result<(ToolConfig<'_>, Allowed<'_>)> {
    let mode = match v.get("mode").and_then(Value::as_str) {
        Some("auto") => "AUTO",
        Some("required") => "ANY",
        _ => return Err(bad("tool_choice.mode", "`mode` must be auto or required")),
    };
    let list = v
        .get("tools")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("tool_choice.tools", "`tools` must be an array"))?;
    let names = list
        .iter()
        .enumerate()
        .map(|(i, t)| {
            match (
                t.get("type").and_then(Value::as_str),
                t.get("name").and_then(Value::as_str),
            ) {
                (Some("function"), Some(name)) => Ok(name),
                _ => Err(bad(
                    format!("tool_choice.tools[{i}]"),
                    "only function tools with a `name` can be allowed for Gemini models",
                )),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let config = ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names: None,
        },
    };
    Ok((config, Some(names)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::gemini::responses::test_support::*;
    use serde_json::json;

    #[test]
    fn string_input_with_instructions_and_sampling() {
        let req = json!({"model":"gemini-2.5-flash","input":"Hi there","instructions":"Be brief.",
            "temperature":0.2,"top_p":0.9,"max_output_tokens":300});
        let t = responses_request(&req, &[], "gemini-2.5-flash").unwrap();
        assert!(!t.stream);
        assert_eq!(t.path, "models/gemini-2.5-flash:generateContent");
        let body: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            body,
            json!({
                "contents":[{"role":"user","parts":[{"text":"Hi there"}]}],
                "systemInstruction":{"parts":[{"text":"Be brief."}]},
                "generationConfig":{"maxOutputTokens":300,"temperature":0.2,"topP":0.9}
            })
        );
        let items = t.items();
        assert_eq!(items.len(), 1);
        let item = &items[0];
        assert_eq!(item["type"], "message");
        assert_eq!(item["role"], "user");
        assert_eq!(
            item["content"],
            json!([{"type":"input_text","text":"Hi there"}])
        );
        assert!(item["id"].as_str().unwrap().starts_with("msg_"), "{item}");
    }

    #[test]
    fn stream_path() {
        let t = responses_request(
            &json!({"input":"x","stream":true}),
            &[],
            "gemini-3-pro-preview",
        )
        .unwrap();
        assert!(t.stream);
        assert_eq!(
            t.path,
            "models/gemini-3-pro-preview:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn harmless_fields_are_accepted_and_not_sent() {
        let req = json!({"model":"m","input":"x","metadata":{"k":"v"},"user":"u1","store":false,
            "include":["reasoning.encrypted_content","web_search_call.action.sources"],
            "previous_response_id":"resp_gw1","truncation":"disabled","service_tier":"auto",
            "prompt_cache_key":"k","safety_identifier":"s","parallel_tool_calls":false,
            "stream_options":{"include_obfuscation":false},"background":false,"top_logprobs":0,
            "prompt_cache_retention":"24h","stream":false,"temperature":null});
        assert_eq!(
            gbody(req),
            json!({"contents":[{"role":"user","parts":[{"text":"x"}]}]})
        );
        let tier = json!({"input":"x","service_tier":"default"});
        assert!(responses_request(&tier, &[], "gemini-2.5-flash").is_ok());
    }

    #[test]
    fn untranslatable_or_wrong_fields_are_400_naming_them() {
        for (key, value, param) in [
            ("top_logprobs", json!(3), "top_logprobs"),
            ("background", json!(true), "background"),
            ("conversation", json!("conv_1"), "conversation"),
            ("prompt", json!({"id":"pmpt_1"}), "prompt"),
            ("max_tool_calls", json!(2), "max_tool_calls"),
            ("truncation", json!("auto"), "truncation"),
            ("service_tier", json!("flex"), "service_tier"),
            (
                "include",
                json!(["message.output_text.logprobs"]),
                "include[0]",
            ),
            ("include", json!("reasoning.encrypted_content"), "include"),
            ("frobnicate", json!(1), "frobnicate"),
            ("temperature", json!("hot"), "temperature"),
            ("top_p", json!(true), "top_p"),
            ("max_output_tokens", json!(-5), "max_output_tokens"),
            ("stream", json!("yes"), "stream"),
            ("store", json!("no"), "store"),
            ("metadata", json!("x"), "metadata"),
            ("user", json!(7), "user"),
            ("text", json!({"verbosity":"low"}), "text.verbosity"),
            (
                "text",
                json!({"format":{"type":"yaml"}}),
                "text.format.type",
            ),
            (
                "text",
                json!({"format":{"type":"json_schema","name":"x"}}),
                "text.format.schema",
            ),
            ("text", json!({"colour":"red"}), "text.colour"),
            ("text", json!("json"), "text"),
            ("reasoning", json!({"effort":"extreme"}), "reasoning.effort"),
            ("reasoning", json!({"effort":5}), "reasoning.effort"),
            (
                "reasoning",
                json!({"summary":"verbose"}),
                "reasoning.summary",
            ),
            ("reasoning", json!({"depth":1}), "reasoning.depth"),
            ("instructions", json!(5), "instructions"),
            ("tools", json!("all"), "tools"),
            (
                "tool_choice",
                json!({"type":"web_search_preview"}),
                "tool_choice.type",
            ),
            ("tool_choice", json!("sometimes"), "tool_choice"),
            (
                "tool_choice",
                json!({"type":"function"}),
                "tool_choice.name",
            ),
            (
                "tool_choice",
                json!({"type":"allowed_tools","mode":"any","tools":[]}),
                "tool_choice.mode",
            ),
            ("input", json!(5), "input"),
        ] {
            let mut req = json!({"model":"m","input":"x"});
            req[key] = value.clone();
            let e = rerr(req);
            assert_eq!(
                e.param.as_deref(),
                Some(param),
                "{key}={value}: {}",
                e.message
            );
        }
        let e = rerr(json!({"model":"m","input":"x","frobnicate":1}));
        assert_eq!(e.message, "Unknown parameter: 'frobnicate'.");
        let e = rerr(json!({"model":"m"}));
        assert_eq!(e.param.as_deref(), Some("input"), "no input at all");
        assert_eq!(
            responses_request(&json!([1]), &[], "m").unwrap_err().param,
            None,
            "a body that is not an object concerns no parameter"
        );
    }

    #[test]
    fn built_in_tools_are_400_naming_the_tool() {
        for ty in [
            "web_search",
            "web_search_preview",
            "file_search",
            "code_interpreter",
            "computer_use_preview",
            "image_generation",
            "mcp",
            "local_shell",
            "custom",
        ] {
            let e = rerr(json!({"input":"x","tools":[
                {"type":"function","name":"f"}, {"type":ty}]}));
            assert_eq!(e.param.as_deref(), Some("tools[1].type"), "{ty}");
            assert!(e.message.contains(ty), "{}", e.message);
        }
        let e = rerr(json!({"input":"x","tools":[{"name":"f"}]}));
        assert_eq!(e.param.as_deref(), Some("tools[0].type"));
        let e = rerr(json!({"input":"x","tools":[{"type":"function"}]}));
        assert_eq!(e.param.as_deref(), Some("tools[0].name"));
        let e = rerr(json!({"input":"x","tools":[{"type":"function","name":"f","parameters":[]}]}));
        assert_eq!(e.param.as_deref(), Some("tools[0].parameters"));
    }

    #[test]
    fn function_tools_strict_or_not() {
        let g = gbody(json!({"input":"x","tools":[
            {"type":"function","name":"get_weather","description":"Weather now","strict":true,
             "parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
               "properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}},
            {"type":"function","name":"ping","strict":false}]}));
        assert_eq!(
            g["tools"],
            json!([{"functionDeclarations":[
                {"name":"get_weather","description":"Weather now","parametersJsonSchema":{"type":"object",
                  "properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}},
                {"name":"ping"}]}])
        );
        assert!(g.get("toolConfig").is_none());
    }

    #[test]
    fn tool_choice_modes() {
        let tools = json!([{"type":"function","name":"a"},{"type":"function","name":"b"}]);
        for (choice, config) in [
            (json!("auto"), json!({"mode":"AUTO"})),
            (json!("none"), json!({"mode":"NONE"})),
            (json!("required"), json!({"mode":"ANY"})),
            (
                json!({"type":"function","name":"b"}),
                json!({"mode":"ANY","allowedFunctionNames":["b"]}),
            ),
        ] {
            let g = gbody(json!({"input":"x","tools":tools,"tool_choice":choice}));
            assert_eq!(g["toolConfig"]["functionCallingConfig"], config, "{choice}");
            assert_eq!(
                g["tools"][0]["functionDeclarations"]
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
        }
        let g = gbody(json!({"input":"x","tools":tools,"tool_choice":
            {"type":"allowed_tools","mode":"required","tools":[{"type":"function","name":"a"}]}}));
        assert_eq!(
            g["toolConfig"]["functionCallingConfig"],
            json!({"mode":"ANY"})
        );
        assert_eq!(
            g["tools"][0]["functionDeclarations"],
            json!([{"name":"a"}]),
            "allowed_tools keeps only the functions it names"
        );
        let e = rerr(json!({"input":"x","tools":tools,"tool_choice":
            {"type":"allowed_tools","mode":"auto","tools":[{"type":"mcp","server_label":"s"}]}}));
        assert_eq!(e.param.as_deref(), Some("tool_choice.tools[0]"));
    }

    #[test]
    fn text_formats() {
        let g = gbody(json!({"input":"x","text":{"format":{"type":"text"},"verbosity":"medium"}}));
        assert!(g.get("generationConfig").is_none());
        let g = gbody(json!({"input":"x","text":{"format":{"type":"json_object"}}}));
        assert_eq!(
            g["generationConfig"],
            json!({"responseMimeType":"application/json"})
        );
        let schema =
            json!({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]});
        let g = gbody(json!({"input":"x","text":{"format":
            {"type":"json_schema","name":"answer","strict":true,"schema":schema}}}));
        assert_eq!(
            g["generationConfig"],
            json!({"responseMimeType":"application/json","responseJsonSchema":schema})
        );
    }

    #[test]
    fn reasoning_effort_and_summary() {
        let thinking = |reasoning: Value, model: &str| {
            body(&json!({"input":"x","reasoning":reasoning}), &[], model)["generationConfig"]
                ["thinkingConfig"]
                .clone()
        };
        for (effort, budget) in [
            ("none", 0),
            ("minimal", 0),
            ("low", 1024),
            ("medium", 8192),
            ("high", 24576),
            ("xhigh", 24576),
        ] {
            assert_eq!(
                thinking(json!({"effort":effort}), "gemini-2.5-flash"),
                json!({"thinkingBudget":budget}),
                "{effort}"
            );
        }
        assert_eq!(
            thinking(json!({"effort":"none"}), "gemini-2.5-pro"),
            json!({"thinkingBudget":128}),
            "2.5 Pro cannot turn thinking off"
        );
        assert_eq!(
            thinking(json!({"effort":"low"}), "gemini-3-pro-preview"),
            json!({"thinkingLevel":"low"})
        );
        assert_eq!(
            thinking(
                json!({"effort":"medium","summary":"auto"}),
                "gemini-3-flash-preview"
            ),
            json!({"thinkingLevel":"high","includeThoughts":true})
        );
        assert_eq!(
            thinking(json!({"summary":"detailed"}), "gemini-2.5-flash"),
            json!({"includeThoughts":true})
        );
        assert_eq!(
            thinking(json!({"generate_summary":"concise"}), "gemini-2.5-flash"),
            json!({"includeThoughts":true})
        );
        let g = body(
            &json!({"input":"x","reasoning":{"effort":null,"summary":null}}),
            &[],
            "gemini-2.0-flash",
        );
        assert!(
            g.get("generationConfig").is_none(),
            "all-null reasoning is no reasoning"
        );
        for model in [
            "gemini-2.0-flash",
            "gemini-1.5-pro",
            "models/gemini-2.0-flash-lite",
            "gemma-3-27b-it",
        ] {
            let e = rerr_on(json!({"input":"x","reasoning":{"effort":"low"}}), model);
            assert_eq!(e.param.as_deref(), Some("reasoning.effort"), "{model}");
            assert!(
                e.message.contains("not supported with this model"),
                "{}",
                e.message
            );
            let e = rerr_on(json!({"input":"x","reasoning":{"summary":"auto"}}), model);
            assert_eq!(e.param.as_deref(), Some("reasoning.summary"), "{model}");
        }
    }

    #[test]
    fn item_references_to_earlier_answers() {
        let answer = vec![
            json!({"type":"reasoning","id":"rs_gwaa_0","summary":[]}),
            json!({"type":"message","id":"msg_gwaa_1","role":"assistant","status":"completed",
                "content":[{"type":"output_text","text":"Hi!","annotations":[]}]}),
            json!({"type":"function_call","id":"fc_gwaa_2__ts__U0lH","call_id":"call_gwaa_2",
                "name":"f","arguments":"{}","status":"completed"}),
        ];
        let req = json!({"input":[
            {"role":"user","content":"hello"},
            {"type":"item_reference","id":"msg_gwaa_1"},
            {"type":"item_reference","id":"fc_gwaa_2__ts__U0lH"},
            {"type":"function_call_output","call_id":"call_gwaa_2","output":"1"},
            {"type":"item_reference","id":"msg_0123abcd"},
            {"type":"item_reference","id":"msg_gwbb_7"}]});
        assert_eq!(referenced_responses(&req), ["resp_gwaa", "resp_gwbb"]);
        let req = json!({"input":[
            {"role":"user","content":"hello"},
            {"type":"item_reference","id":"msg_gwaa_1"},
            {"type":"item_reference","id":"fc_gwaa_2__ts__U0lH"},
            {"type":"function_call_output","call_id":"call_gwaa_2","output":"1"}]});
        let t = responses_request_with(&req, &[], &answer, "gemini-3-pro-preview", true).unwrap();
        let g: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            g["contents"][1],
            json!({"role":"model","parts":[{"text":"Hi!"},
                {"functionCall":{"name":"f","args":{}},"thoughtSignature":"SIG"}]}),
            "only the named items are sent, the call with its signature"
        );
        assert_eq!(t.items()[1], answer[1], "stored as the items they name");
        assert_eq!(
            rerr(req).param.as_deref(),
            Some("input[1].id"),
            "without them, a reference is unknown"
        );
    }

    #[test]
    fn instructions_come_before_system_and_developer_messages() {
        let g = gbody(json!({"instructions":"First.","input":[
            {"role":"developer","content":"Second."},
            {"role":"user","content":"hi"},
            {"type":"message","role":"system","content":[{"type":"input_text","text":"Third."}]}]}));
        assert_eq!(
            g["systemInstruction"],
            json!({"parts":[{"text":"First."},{"text":"Second."},{"text":"Third."}]})
        );
        assert_eq!(
            g["contents"],
            json!([{"role":"user","parts":[{"text":"hi"}]}])
        );
        let g = gbody(json!({"instructions":"","input":"hi"}));
        assert!(
            g.get("systemInstruction").is_none(),
            "empty instructions send nothing"
        );
    }
}
