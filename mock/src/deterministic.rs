//! Deterministic helpers both APIs share: ids, token estimates, text splitting, embeddings and
//! the filler of exactly-sized answers.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Fixed `created` timestamp so answers are byte-for-byte reproducible.
pub(crate) const CREATED: u64 = 1_700_000_000;
/// Upper bound for embedding dimensions, to keep answers small.
pub(crate) const MAX_DIMENSIONS: u64 = 4096;

/// First 8 hex digits of the body's SHA-256, for reproducible ids.
pub(crate) fn short_hash(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    hex::encode(&digest[..4])
}

/// The first 64 characters (not bytes) of a text.
pub(crate) fn first64(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Token estimate used everywhere: one token per 4 characters, rounded up.
pub(crate) fn tokens_for_chars(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

/// Completion token estimate: whitespace-separated words.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The fewest tokens the fake model wants for a text answer: a `max_output_tokens` /
/// `maxOutputTokens` below this always cuts the answer (status `incomplete`, finish reason
/// `MAX_TOKENS`), so a test gets a truncated answer from any short prompt.
pub(crate) const MIN_ANSWER_TOKENS: u64 = 32;

/// The first `n` whitespace-separated words of `text`, spacing kept.
pub(crate) fn first_words(text: &str, n: u64) -> &str {
    let mut seen = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_word = false;
        } else if !in_word {
            if seen == n {
                return text[..i].trim_end();
            }
            seen += 1;
            in_word = true;
        }
    }
    text
}

/// Splits text into `n` pieces of roughly equal character count (fewer if the text is short).
pub(crate) fn split_even(text: &str, n: usize) -> Vec<&str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    let n = n.clamp(1, chars.max(1));
    (0..n)
        .map(|k| &text[bounds[k * chars / n]..bounds[(k + 1) * chars / n]])
        .collect()
}

/// Deterministic embedding in [-1, 1]: SHA-256 of the text (then of text + block counter).
pub(crate) fn embed(text: &str, dims: usize) -> Vec<f32> {
    EmbedStream::new(text).take(dims).collect()
}

/// The endless sequence whose first `dims` values are [`embed`]`(text, dims)`.
pub(crate) struct EmbedStream<'a> {
    pub(crate) text: &'a str,
    pub(crate) block: u32,
    pub(crate) values: [f32; 8],
    pub(crate) next: usize,
}

impl<'a> EmbedStream<'a> {
    /// Starts at the first value.
    pub(crate) fn new(text: &'a str) -> Self {
        EmbedStream {
            text,
            block: 0,
            values: [0.0; 8],
            next: 8,
        }
    }
}

impl Iterator for EmbedStream<'_> {
    type Item = f32;

    /// Eight values per SHA-256 block.
    fn next(&mut self) -> Option<f32> {
        if self.next == self.values.len() {
            let mut hasher = Sha256::new();
            hasher.update(self.text.as_bytes());
            if self.block > 0 {
                hasher.update(self.block.to_le_bytes());
            }
            for (value, word) in self
                .values
                .iter_mut()
                .zip(hasher.finalize().chunks_exact(4))
            {
                let n = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                *value = (f64::from(n) / f64::from(u32::MAX) * 2.0 - 1.0) as f32;
            }
            self.block = self.block.wrapping_add(1);
            self.next = 0;
        }
        let value = self.values.get(self.next).copied();
        self.next += 1;
        value
    }
}

/// Embeddings answer text of exactly `size` bytes where it can be: `head`, one
/// `open(i)[v,v,…]}` per text (as many values each as fit, the same count for all), spaces,
/// `tail`.
pub(crate) fn sized_embeddings(
    size: usize,
    texts: &[&str],
    head: &str,
    open: impl Fn(usize) -> String,
    tail: &str,
) -> Vec<u8> {
    let opens: Vec<String> = (0..texts.len()).map(open).collect();
    let fixed = head.len()
        + tail.len()
        + opens.iter().map(|o| o.len() + 3).sum::<usize>()
        + texts.len().saturating_sub(1);
    let mut budget = size.saturating_sub(fixed);
    let mut arrays: Vec<Vec<u8>> = vec![Vec::new(); texts.len()];
    let mut streams: Vec<EmbedStream<'_>> = texts.iter().map(|t| EmbedStream::new(t)).collect();
    let mut round: Vec<String> = Vec::with_capacity(texts.len());
    'fill: for k in 0.. {
        round.clear();
        let mut cost = 0;
        for stream in &mut streams {
            let Some(v) = stream.next() else { break 'fill };
            let text = v.to_string();
            cost += text.len() + usize::from(k > 0);
            round.push(text);
        }
        if cost > budget || round.is_empty() {
            break;
        }
        budget -= cost;
        for (array, text) in arrays.iter_mut().zip(&round) {
            if k > 0 {
                array.push(b',');
            }
            array.extend_from_slice(text.as_bytes());
        }
    }
    let mut out = Vec::with_capacity(size.max(fixed));
    out.extend_from_slice(head.as_bytes());
    for (i, (open, array)) in opens.iter().zip(&arrays).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(open.as_bytes());
        out.push(b'[');
        out.extend_from_slice(array);
        out.extend_from_slice(b"]}");
    }
    out.resize(out.len() + budget, b' ');
    out.extend_from_slice(tail.as_bytes());
    out
}

/// An `f32` as a JSON number in its shortest form (not widened to 17 digits of `f64`).
pub(crate) fn float(f: f32) -> Value {
    f.to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

/// [`embed`] as a JSON array.
pub(crate) fn embed_json(text: &str, dims: usize) -> Value {
    Value::Array(embed(text, dims).into_iter().map(float).collect())
}

/// The repeated text of sized answers: ASCII words and spaces, nothing JSON escapes.
pub(crate) const FILL_PATTERN: &[u8] = b"The quick brown fox jumps over the lazy dog. ";
/// Stands for the filler in the skeleton of a sized answer.
pub(crate) const FILL_MARK: &str = "@@mock-filler@@";

/// Text of `n` characters of [`FILL_PATTERN`].
pub(crate) fn filler(n: usize) -> String {
    FILL_PATTERN
        .iter()
        .copied()
        .cycle()
        .take(n)
        .map(char::from)
        .collect()
}

/// [`words`] of [`filler`]`(n)`, without building it.
pub(crate) fn filler_words(n: usize) -> u64 {
    let starts = |len: usize| {
        (0..len)
            .filter(|&i| FILL_PATTERN[i] != b' ' && (i == 0 || FILL_PATTERN[i - 1] == b' '))
            .count()
    };
    let whole = n / FILL_PATTERN.len();
    (whole * starts(FILL_PATTERN.len()) + starts(n % FILL_PATTERN.len())) as u64
}

/// An answer of exactly `size` bytes where it can be: `skeleton(words)` serialises the answer
/// with [`FILL_MARK`] as its text and `words` as its completion tokens; the mark is then
/// replaced by as much filler as makes `size` bytes.
pub(crate) fn fit_text(size: usize, mut skeleton: impl FnMut(u64) -> Vec<u8>) -> Vec<u8> {
    let mut n = 0;
    let mut shape = skeleton(filler_words(n));
    for _ in 0..8 {
        let fixed = shape.len().saturating_sub(FILL_MARK.len());
        let next = size.saturating_sub(fixed);
        if next == n {
            break;
        }
        n = next;
        shape = skeleton(filler_words(n));
    }
    let mark = FILL_MARK.as_bytes();
    let Some(at) = shape.windows(mark.len()).position(|w| w == mark) else {
        return shape;
    };
    let mut out = Vec::with_capacity(shape.len() - mark.len() + n);
    out.extend_from_slice(&shape[..at]);
    out.extend_from_slice(filler(n).as_bytes());
    out.extend_from_slice(&shape[at + mark.len()..]);
    out
}

/// A deterministic value that satisfies a JSON Schema (or Gemini's OpenAPI-subset schema, whose
/// types are upper-case): structured-output clients parse and validate what the mock answers,
/// so a fixed `{"mock":true}` would fail them. `$ref`s resolve against the root schema.
pub(crate) fn schema_instance(schema: &Value) -> Value {
    instance_of(schema, schema, 0)
}

/// [`schema_instance`] of a sub-schema; `depth` bounds recursive `$ref`s.
fn instance_of(schema: &Value, root: &Value, depth: usize) -> Value {
    let Some(obj) = schema.as_object() else {
        return Value::String("mock".to_owned());
    };
    if depth > 16 {
        return Value::Null;
    }
    if let Some(c) = obj.get("const") {
        return c.clone();
    }
    if let Some(first) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(target) = obj
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|pointer| root.pointer(pointer))
    {
        return instance_of(target, root, depth + 1);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(options) = obj.get(key).and_then(Value::as_array) {
            let is_null = |o: &&Value| o.get("type").and_then(Value::as_str) == Some("null");
            if let Some(option) = options.iter().find(|o| !is_null(o)).or(options.first()) {
                return instance_of(option, root, depth + 1);
            }
        }
    }
    if let Some(default) = obj.get("default") {
        return default.clone();
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.to_ascii_lowercase(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_ascii_lowercase(),
        _ if obj.contains_key("properties") => "object".to_owned(),
        _ if obj.contains_key("items") => "array".to_owned(),
        _ => "string".to_owned(),
    };
    let min = |key: &str| obj.get(key).and_then(Value::as_u64);
    match ty.as_str() {
        "object" => {
            let props = obj.get("properties").and_then(Value::as_object);
            let fields = props
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), instance_of(v, root, depth + 1)));
            Value::Object(fields.collect())
        }
        "array" => {
            let item = obj.get("items").unwrap_or(&Value::Null);
            let n = min("minItems").unwrap_or(1).min(16);
            Value::Array((0..n).map(|_| instance_of(item, root, depth + 1)).collect())
        }
        "integer" => Value::from(obj.get("minimum").and_then(Value::as_i64).unwrap_or(1)),
        "number" => obj.get("minimum").cloned().unwrap_or(Value::from(1)),
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        _ => {
            let text = match obj.get("format").and_then(Value::as_str) {
                Some("date-time") => "2024-01-01T00:00:00Z",
                Some("date") => "2024-01-01",
                Some("time") => "00:00:00",
                Some("email") => "mock@example.com",
                Some("uri" | "url") => "https://example.com/mock",
                Some("uuid") => "00000000-0000-4000-8000-000000000000",
                _ => "mock",
            };
            let mut text = text.to_owned();
            let want = usize::try_from(min("minLength").unwrap_or(0).min(4096)).unwrap_or(0);
            while text.chars().count() < want {
                text.push('x');
            }
            Value::String(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn split_even_respects_char_boundaries() {
        assert_eq!(
            split_even("abcdefghij", 5),
            vec!["ab", "cd", "ef", "gh", "ij"]
        );
        assert_eq!(split_even("héllo", 2), vec!["hé", "llo"]);
        assert_eq!(split_even("ab", 5), vec!["a", "b"]);
        assert_eq!(split_even("", 3), vec![""]);
        assert_eq!(first64(&"é".repeat(70)).chars().count(), 64);
    }

    #[test]
    fn schema_instances_satisfy_their_schema() {
        let schema = json!({
            "type": "object", "additionalProperties": false, "required": ["city", "unit", "tags", "n"],
            "properties": {
                "city": {"type": "string", "minLength": 6},
                "unit": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Unit"}]},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "n": {"type": ["integer", "null"], "minimum": 3},
                "ok": {"type": "BOOLEAN"},
            },
            "$defs": {"Unit": {"type": "string", "enum": ["c", "f"]}},
        });
        assert_eq!(
            schema_instance(&schema),
            json!({"city": "mockxx", "unit": "c", "tags": ["mock", "mock"], "n": 3, "ok": true}),
            "every property present, refs resolved, bounds respected"
        );
        let recursive = json!({"$ref": "#", "type": "object"});
        assert_eq!(
            schema_instance(&recursive),
            Value::Null,
            "a self-reference stops"
        );
    }

    #[test]
    fn embeddings_are_deterministic_and_bounded() {
        let a = embed("hello", 20);
        assert_eq!(a.len(), 20);
        assert_eq!(a, embed("hello", 20));
        assert_eq!(a[..8], embed("hello", 8)[..]);
        assert_ne!(a, embed("hellp", 20));
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
