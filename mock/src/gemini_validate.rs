//! Gemini request validation, as strict as Google's: unknown fields, wrong types and missing
//! required fields are 400s whose text names the field path the way Google spells it.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::deterministic::first64;

/// Gemini 3's error when a replayed function call lost its thought signature.
pub(crate) const MISSING_SIGNATURE: &str =
    "Function call is missing a thought_signature in functionCall parts.";

/// Top-level fields of a `GenerateContentRequest`.
pub(crate) const GENERATE_KEYS: &[&str] = &[
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
];
/// The `data` oneof of a `Part`: exactly one must be set.
pub(crate) const PART_DATA_KEYS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
];
/// Every field a `Part` may carry.
pub(crate) const PART_KEYS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "thought",
    "thoughtSignature",
];
/// Fields of `generationConfig` we accept.
pub(crate) const GENERATION_CONFIG_KEYS: &[&str] = &[
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "thinkingConfig",
    "responseLogprobs",
    "logprobs",
];
/// `response`/`responseJsonSchema`/`behavior` are real fields the genai SDK sends.
pub(crate) const FUNCTION_DECLARATION_KEYS: &[&str] = &[
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
];
/// JSON-Schema keywords Gemini's OpenAPI-subset `parameters` rejects.
pub(crate) const FORBIDDEN_SCHEMA_KEYS: &[&str] =
    &["additionalProperties", "$schema", "strict", "$ref"];
/// Schema keys whose values are data, not sub-schemas.
pub(crate) const SCHEMA_DATA_KEYS: &[&str] =
    &["enum", "default", "example", "required", "propertyOrdering"];
/// Type name Google prints for `google.protobuf.Struct` fields (`args`, `response`).
pub(crate) const STRUCT: &str = "type.googleapis.com/google.protobuf.Struct";

/// `generationConfig` -> `generation_config`, as Google spells field paths in errors.
pub(crate) fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Extends an error location with a field.
pub(crate) fn at(loc: &str, key: &str) -> String {
    if loc.is_empty() {
        snake(key)
    } else {
        format!("{loc}.{}", snake(key))
    }
}

/// Google's unknown-field error.
pub(crate) fn unknown_name(key: &str, loc: &str) -> String {
    if loc.is_empty() {
        format!("Invalid JSON payload received. Unknown name \"{key}\": Cannot find field.")
    } else {
        format!(
            "Invalid JSON payload received. Unknown name \"{key}\" at '{loc}': Cannot find field."
        )
    }
}

/// Google's wrong-type error.
pub(crate) fn invalid_value(loc: &str, ty: &str, v: &Value) -> String {
    format!("Invalid value at '{loc}' ({ty}), {v}")
}

/// Google's missing-required-field error.
pub(crate) fn missing(loc: &str) -> String {
    format!("* GenerateContentRequest.{loc}: field is required but not specified")
}

/// `thinking_budget` -> `thinkingBudget`; keys starting with `_` or `$` stay as they are.
pub(crate) fn camel(key: &str) -> String {
    if !key.contains('_') || key.starts_with(['_', '$']) {
        return key.to_owned();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        match (c, upper) {
            ('_', _) => upper = true,
            (c, true) => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            (c, false) => out.push(c),
        }
    }
    out
}

/// Proto JSON accepts `snake_case` field names too (the genai SDK sends some), so fold them.
pub(crate) fn camelize(v: Value) -> Value {
    match v {
        Value::Object(obj) => Value::Object(
            obj.into_iter()
                .map(|(k, v)| (camel(&k), camelize(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camelize).collect()),
        other => other,
    }
}

/// Rejects keys outside `allowed`.
pub(crate) fn expect_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    loc: &str,
) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(unknown_name(k, loc)),
        None => Ok(()),
    }
}

/// Requires an object.
pub(crate) fn object<'a>(
    v: &'a Value,
    loc: &str,
    ty: &str,
) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| invalid_value(loc, ty, v))
}

/// Requires an array.
pub(crate) fn array<'a>(v: &'a Value, loc: &str, ty: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| invalid_value(loc, ty, v))
}

/// Requires a string.
pub(crate) fn string<'a>(v: &'a Value, loc: &str) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| invalid_value(loc, "TYPE_STRING", v))
}

/// Checks an optional field with `check`.
pub(crate) fn optional(
    obj: &Map<String, Value>,
    key: &str,
    loc: &str,
    check: impl FnOnce(&Value, &str) -> Result<(), String>,
) -> Result<(), String> {
    match obj.get(key) {
        Some(v) => check(v, &at(loc, key)),
        None => Ok(()),
    }
}

/// Checks a required field with `check`.
pub(crate) fn required(
    obj: &Map<String, Value>,
    key: &str,
    loc: &str,
    check: impl FnOnce(&Value, &str) -> Result<(), String>,
) -> Result<(), String> {
    match obj.get(key) {
        Some(v) => check(v, &at(loc, key)),
        None => Err(missing(&at(loc, key))),
    }
}

/// Field check: any string.
pub(crate) fn is_string(v: &Value, loc: &str) -> Result<(), String> {
    string(v, loc).map(|_| ())
}

/// Field check: a JSON object (protobuf Struct).
pub(crate) fn is_struct(v: &Value, loc: &str) -> Result<(), String> {
    object(v, loc, STRUCT).map(|_| ())
}

/// Field check: a number.
pub(crate) fn is_number(v: &Value, loc: &str) -> Result<(), String> {
    if v.is_number() {
        Ok(())
    } else {
        Err(invalid_value(loc, "TYPE_FLOAT", v))
    }
}

/// Field check: an integer.
pub(crate) fn is_integer(v: &Value, loc: &str) -> Result<(), String> {
    if v.is_i64() || v.is_u64() {
        Ok(())
    } else {
        Err(invalid_value(loc, "TYPE_INT32", v))
    }
}

/// Field check: a boolean.
pub(crate) fn is_bool(v: &Value, loc: &str) -> Result<(), String> {
    if v.is_boolean() {
        Ok(())
    } else {
        Err(invalid_value(loc, "TYPE_BOOL", v))
    }
}

/// Field check: an array of strings.
pub(crate) fn is_string_list(v: &Value, loc: &str) -> Result<(), String> {
    for (i, item) in array(v, loc, "TYPE_STRING")?.iter().enumerate() {
        string(item, &format!("{loc}[{i}]"))?;
    }
    Ok(())
}

/// Field check: base64 bytes (catches `data:` URLs passed through untouched).
pub(crate) fn is_base64(v: &Value, loc: &str) -> Result<(), String> {
    let s = string(v, loc)?;
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/-_=\r\n".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid value at '{loc}' (TYPE_BYTES), Base64 decoding failed for \"{}\"",
            first64(s)
        ))
    }
}

/// Which roles a `Content` may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoleRule {
    /// `user` or `model` required.
    Required,
    /// `user` or `model`, or absent (single-turn requests).
    Optional,
    /// Anything (system instructions ignore the role).
    Any,
}

/// Validates a `GenerateContentRequest` (plus any `extra` top-level keys).
pub(crate) fn validate_generate(body: &Value, extra: &[&str]) -> Result<(), String> {
    let obj = body.as_object().ok_or_else(|| {
        "Invalid JSON payload received. Unknown name \"\": Root element must be a message."
            .to_owned()
    })?;
    if let Some(k) = obj
        .keys()
        .find(|k| !GENERATE_KEYS.contains(&k.as_str()) && !extra.contains(&k.as_str()))
    {
        return Err(unknown_name(k, ""));
    }
    match obj.get("contents") {
        Some(c) => validate_contents(c, "contents")?,
        None => {
            return Err("* GenerateContentRequest.contents: contents is not specified".to_owned())
        }
    }
    optional(obj, "systemInstruction", "", |v, l| {
        validate_content(v, l, RoleRule::Any)
    })?;
    optional(obj, "generationConfig", "", validate_generation_config)?;
    optional(obj, "tools", "", validate_tools)?;
    optional(obj, "toolConfig", "", validate_tool_config)?;
    optional(obj, "safetySettings", "", validate_safety)?;
    optional(obj, "cachedContent", "", is_string)?;
    optional(obj, "labels", "", is_struct)?;
    Ok(())
}

/// Validates `contents`: a non-empty list of turns.
pub(crate) fn validate_contents(v: &Value, loc: &str) -> Result<(), String> {
    let contents = array(v, loc, "Content")?;
    if contents.is_empty() {
        return Err(format!(
            "* GenerateContentRequest.{loc}: contents is not specified"
        ));
    }
    let rule = if contents.len() == 1 {
        RoleRule::Optional
    } else {
        RoleRule::Required
    };
    for (i, c) in contents.iter().enumerate() {
        validate_content(c, &format!("{loc}[{i}]"), rule)?;
    }
    Ok(())
}

/// Validates one `Content` (`{role, parts}`).
pub(crate) fn validate_content(v: &Value, loc: &str, rule: RoleRule) -> Result<(), String> {
    let obj = object(v, loc, "Content")?;
    expect_keys(obj, &["role", "parts"], loc)?;
    match (obj.get("role").map(Value::as_str), rule) {
        (Some(Some(_)), RoleRule::Any) | (None, RoleRule::Any | RoleRule::Optional) => {}
        (Some(Some("user" | "model")), _) => {}
        _ => return Err("Please use a valid role: user, model.".to_owned()),
    }
    let Some(parts) = obj.get("parts") else {
        return Err(format!(
            "* GenerateContentRequest.{loc}.parts: contents.parts must not be empty."
        ));
    };
    let parts_loc = at(loc, "parts");
    let parts = array(parts, &parts_loc, "Part")?;
    if parts.is_empty() {
        return Err(format!(
            "* GenerateContentRequest.{parts_loc}: contents.parts must not be empty."
        ));
    }
    for (i, p) in parts.iter().enumerate() {
        validate_part(p, &format!("{parts_loc}[{i}]"))?;
    }
    Ok(())
}

/// Validates one `Part`: exactly one data field, typed correctly.
pub(crate) fn validate_part(v: &Value, loc: &str) -> Result<(), String> {
    let obj = object(v, loc, "Part")?;
    expect_keys(obj, PART_KEYS, loc)?;
    let mut data = obj.keys().filter(|k| PART_DATA_KEYS.contains(&k.as_str()));
    match (data.next(), data.next()) {
        (None, _) => {
            return Err(format!(
                "* GenerateContentRequest.{loc}.data: required oneof field 'data' must have one initialized field"
            ))
        }
        (Some(_), Some(second)) => {
            return Err(format!(
                "Invalid value at '{loc}' (oneof), oneof field 'data' is already set. Cannot set '{}'",
                snake(second)
            ))
        }
        _ => {}
    }
    optional(obj, "text", loc, is_string)?;
    optional(obj, "thought", loc, is_bool)?;
    optional(obj, "thoughtSignature", loc, is_string)?;
    optional(obj, "inlineData", loc, |v, l| {
        let o = object(v, l, "Blob")?;
        expect_keys(o, &["mimeType", "data"], l)?;
        required(o, "mimeType", l, is_string)?;
        required(o, "data", l, is_base64)
    })?;
    optional(obj, "fileData", loc, |v, l| {
        let o = object(v, l, "FileData")?;
        expect_keys(o, &["mimeType", "fileUri"], l)?;
        optional(o, "mimeType", l, is_string)?;
        required(o, "fileUri", l, is_string)
    })?;
    optional(obj, "functionCall", loc, |v, l| {
        let o = object(v, l, "FunctionCall")?;
        expect_keys(o, &["id", "name", "args"], l)?;
        optional(o, "id", l, is_string)?;
        required(o, "name", l, is_string)?;
        optional(o, "args", l, is_struct)
    })?;
    optional(obj, "functionResponse", loc, |v, l| {
        let o = object(v, l, "FunctionResponse")?;
        expect_keys(o, &["id", "name", "response"], l)?;
        optional(o, "id", l, is_string)?;
        required(o, "name", l, is_string)?;
        required(o, "response", l, is_struct)
    })
}

/// Validates `generationConfig`.
pub(crate) fn validate_generation_config(v: &Value, loc: &str) -> Result<(), String> {
    let obj = object(v, loc, "GenerationConfig")?;
    expect_keys(obj, GENERATION_CONFIG_KEYS, loc)?;
    for key in ["temperature", "topP", "presencePenalty", "frequencyPenalty"] {
        optional(obj, key, loc, is_number)?;
    }
    for key in ["topK", "maxOutputTokens", "seed", "logprobs"] {
        optional(obj, key, loc, is_integer)?;
    }
    optional(obj, "candidateCount", loc, |v, l| match v.as_u64() {
        Some(1..=8) => Ok(()),
        _ => Err(invalid_value(l, "TYPE_INT32", v)),
    })?;
    optional(obj, "stopSequences", loc, is_string_list)?;
    optional(obj, "responseModalities", loc, is_string_list)?;
    optional(obj, "responseMimeType", loc, is_string)?;
    optional(obj, "responseLogprobs", loc, is_bool)?;
    // `responseSchema` is the OpenAPI subset (`responseJsonSchema` takes full JSON Schema).
    optional(obj, "responseSchema", loc, |v, l| {
        object(v, l, "Schema")?;
        validate_schema(v, l)
    })?;
    optional(obj, "responseJsonSchema", loc, is_struct)?;
    if obj.contains_key("responseSchema") && obj.contains_key("responseJsonSchema") {
        return Err(format!(
            "* GenerateContentRequest.{}: only one of response_schema and response_json_schema may be set.",
            at(loc, "responseSchema")
        ));
    }
    let mime = obj.get("responseMimeType").and_then(Value::as_str);
    let schema = obj.contains_key("responseSchema") || obj.contains_key("responseJsonSchema");
    if schema && !matches!(mime, Some("application/json" | "text/x.enum")) {
        return Err(format!(
            "* GenerateContentRequest.{}: response_mime_type must be one of [application/json, text/x.enum] when a response schema is set.",
            at(loc, "responseMimeType")
        ));
    }
    optional(obj, "thinkingConfig", loc, |v, l| {
        let o = object(v, l, "ThinkingConfig")?;
        expect_keys(
            o,
            &["thinkingBudget", "includeThoughts", "thinkingLevel"],
            l,
        )?;
        optional(o, "thinkingBudget", l, is_integer)?;
        optional(o, "includeThoughts", l, is_bool)?;
        optional(o, "thinkingLevel", l, |v, l| {
            let known = [
                "THINKING_LEVEL_UNSPECIFIED",
                "MINIMAL",
                "LOW",
                "MEDIUM",
                "HIGH",
            ];
            match v.as_str() {
                Some(s) if known.iter().any(|k| k.eq_ignore_ascii_case(s)) => Ok(()),
                _ => Err(invalid_value(
                    l,
                    "type.googleapis.com/google.ai.generativelanguage.v1beta.ThinkingConfig.ThinkingLevel",
                    v,
                )),
            }
        })
    })
}

/// Model-specific rules of `generationConfig.thinkingConfig`, as Google enforces them:
/// Gemini 2.0 and older do not think; `thinkingLevel` is Gemini 3's, `thinkingBudget` has
/// per-model ranges on 2.5 (Pro cannot turn thinking off); never both at once.
pub(crate) fn check_model_config(body: &Value, model: &str) -> Result<(), String> {
    let Some(config) = body.pointer("/generationConfig/thinkingConfig") else {
        return Ok(());
    };
    if model.starts_with("gemini-1") || model.starts_with("gemini-2.0") {
        return Err("Thinking is not supported by this model.".to_owned());
    }
    let budget = config.get("thinkingBudget").and_then(Value::as_i64);
    let level = config.get("thinkingLevel");
    if budget.is_some() && level.is_some() {
        return Err("You can only set only one of thinking budget and thinking level.".to_owned());
    }
    if level.is_some() && !model.starts_with("gemini-3") {
        return Err("Thinking level is not supported for this model.".to_owned());
    }
    let (Some(budget), true) = (budget, model.starts_with("gemini-2.5")) else {
        return Ok(());
    };
    let (off, low, high) = if model.contains("pro") {
        (false, 128, 32_768)
    } else if model.contains("lite") {
        (true, 512, 24_576)
    } else {
        (true, 1, 24_576)
    };
    match budget {
        -1 => Ok(()),
        0 if off => Ok(()),
        0 => Err("Budget 0 is invalid. This model only works in thinking mode.".to_owned()),
        b if (low..=high).contains(&b) => Ok(()),
        b => Err(format!(
            "The thinking budget {b} is invalid. Please choose a value between {low} and {high}."
        )),
    }
}

/// Validates `tools`.
pub(crate) fn validate_tools(v: &Value, loc: &str) -> Result<(), String> {
    for (i, tool) in array(v, loc, "Tool")?.iter().enumerate() {
        let tool_loc = format!("{loc}[{i}]");
        let obj = object(tool, &tool_loc, "Tool")?;
        expect_keys(
            obj,
            &["functionDeclarations", "googleSearch", "codeExecution"],
            &tool_loc,
        )?;
        optional(obj, "googleSearch", &tool_loc, is_struct)?;
        optional(obj, "codeExecution", &tool_loc, is_struct)?;
        optional(obj, "functionDeclarations", &tool_loc, |v, l| {
            for (j, decl) in array(v, l, "FunctionDeclaration")?.iter().enumerate() {
                let decl_loc = format!("{l}[{j}]");
                let d = object(decl, &decl_loc, "FunctionDeclaration")?;
                expect_keys(d, FUNCTION_DECLARATION_KEYS, &decl_loc)?;
                required(d, "name", &decl_loc, is_string)?;
                optional(d, "description", &decl_loc, is_string)?;
                optional(d, "parameters", &decl_loc, validate_schema)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Rejects JSON-Schema-only keywords anywhere in an OpenAPI-subset schema.
pub(crate) fn validate_schema(v: &Value, loc: &str) -> Result<(), String> {
    match v {
        Value::Object(obj) => {
            for (key, sub) in obj {
                if FORBIDDEN_SCHEMA_KEYS.contains(&key.as_str()) {
                    return Err(unknown_name(key, loc));
                }
                if SCHEMA_DATA_KEYS.contains(&key.as_str()) {
                    continue;
                }
                if key == "properties" {
                    // Property names are data; only their schemas are checked.
                    if let Some(props) = sub.as_object() {
                        for (i, prop) in props.values().enumerate() {
                            validate_schema(prop, &format!("{loc}.properties[{i}].value"))?;
                        }
                        continue;
                    }
                }
                validate_schema(sub, &at(loc, key))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                validate_schema(item, &format!("{loc}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Validates `toolConfig` (upper-case enum names, as the proto wants).
pub(crate) fn validate_tool_config(v: &Value, loc: &str) -> Result<(), String> {
    let obj = object(v, loc, "ToolConfig")?;
    expect_keys(obj, &["functionCallingConfig", "retrievalConfig"], loc)?;
    optional(obj, "retrievalConfig", loc, is_struct)?;
    optional(obj, "functionCallingConfig", loc, |v, l| {
        let o = object(v, l, "FunctionCallingConfig")?;
        expect_keys(o, &["mode", "allowedFunctionNames"], l)?;
        optional(o, "allowedFunctionNames", l, is_string_list)?;
        optional(o, "mode", l, |v, l| {
            match v.as_str() {
            Some("MODE_UNSPECIFIED" | "AUTO" | "ANY" | "NONE" | "VALIDATED") => Ok(()),
            _ => Err(invalid_value(
                l,
                "type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode",
                v,
            )),
        }
        })
    })
}

/// Validates `safetySettings`.
pub(crate) fn validate_safety(v: &Value, loc: &str) -> Result<(), String> {
    for (i, s) in array(v, loc, "SafetySetting")?.iter().enumerate() {
        let l = format!("{loc}[{i}]");
        let o = object(s, &l, "SafetySetting")?;
        expect_keys(o, &["category", "threshold", "method"], &l)?;
        required(o, "category", &l, is_string)?;
        required(o, "threshold", &l, is_string)?;
    }
    Ok(())
}

/// Our Gemini 3 signature: `sig-mock-<model>`, base64-encoded because the field is `bytes`
/// (the genai SDK refuses to parse a response whose signature is not valid base64).
pub(crate) fn thought_signature(model: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("sig-mock-{model}"))
}

/// Gemini 3 rule: every replayed model turn's first function call carries our signature.
pub(crate) fn check_signatures(body: &Value, model: &str) -> Result<(), String> {
    let plain = format!("sig-mock-{model}");
    let encoded = thought_signature(model);
    let contents = body["contents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for content in contents.iter().filter(|c| c["role"] == "model") {
        let parts = content["parts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(part) = parts.iter().find(|p| p.get("functionCall").is_some()) {
            let got = part["thoughtSignature"].as_str();
            if got != Some(plain.as_str()) && got != Some(encoded.as_str()) {
                return Err(MISSING_SIGNATURE.to_owned());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Validation error text of a generate request, or `None` if it is accepted.
    fn gen_error(body: Value) -> Option<String> {
        validate_generate(&body, &[]).err()
    }

    #[test]
    fn gemini_accepts_a_good_request() {
        let body = json!({
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "aGk="}}]},
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "s"}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": 1}}}]}
            ],
            "systemInstruction": {"parts": [{"text": "sys"}]},
            "generationConfig": {"temperature": 0.5, "candidateCount": 2, "thinkingConfig": {"thinkingBudget": 0}},
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT",
                "properties": {"strict": {"type": "STRING"}}}, "description": "d"}]}]
        });
        assert_eq!(gen_error(body), None);
        let snake_body = json!({"contents": [{"parts": [{"text": "hi"}]}],
            "generation_config": {"thinking_config": {"thinking_budget": 1}}});
        assert_eq!(gen_error(camelize(snake_body)), None);
    }

    #[test]
    fn gemini_rejects_sloppy_requests() {
        let user = json!([{"role": "user", "parts": [{"text": "hi"}]}]);
        assert_eq!(
            gen_error(json!({"contents": user, "generationConfig": {"foo": 1}})).as_deref(),
            Some("Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': Cannot find field.")
        );
        assert_eq!(
            gen_error(json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}))
                .as_deref(),
            Some("Please use a valid role: user, model.")
        );
        let two_unroled = json!([{"parts": [{"text": "a"}]}, {"parts": [{"text": "b"}]}]);
        assert!(gen_error(json!({"contents": two_unroled})).is_some());
        assert!(gen_error(json!({"contents": user, "temperature": 1})).is_some());
        assert!(gen_error(json!({"contents": []})).is_some());
        let both =
            json!([{"parts": [{"text": "a", "inlineData": {"mimeType": "x", "data": "aGk="}}]}]);
        assert!(gen_error(json!({"contents": both})).is_some());
        let data_url = json!([{"parts": [{"inlineData": {"mimeType": "image/png", "data": "data:image/png;base64,aGk="}}]}]);
        assert!(gen_error(json!({"contents": data_url})).is_some());
        let bad_response =
            json!([{"parts": [{"functionResponse": {"name": "f", "response": "ok"}}]}]);
        assert!(gen_error(json!({"contents": bad_response})).is_some());
        let schema = json!({"type": "OBJECT", "properties": {"a": {"type": "OBJECT", "additionalProperties": false}}});
        let tools = json!([{"functionDeclarations": [{"name": "f", "parameters": schema}]}]);
        assert_eq!(
            gen_error(json!({"contents": user, "tools": tools})).as_deref(),
            Some("Invalid JSON payload received. Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters.properties[0].value': Cannot find field.")
        );
        let free = json!([{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"additionalProperties": false}}]}]);
        assert_eq!(gen_error(json!({"contents": user, "tools": free})), None);
    }
}
