//! Token estimates of request bodies, read in one pass of serde visitors.
//!
//! The same visitors run over the raw bytes (`estimate_tokens_of`: budgets and TPM limits
//! need only the estimate, not the tree, so a plain OpenAI request is never parsed into a
//! `serde_json::Value` for them) and over a tree already parsed (`estimate_tokens`, since
//! `&Value` is a serde `Deserializer`), so the rule exists once. Only the fields the estimate
//! reads are visited; everything else is skipped as `IgnoredAny`, and no key or string is
//! copied.
//!
//! A key written twice in one object counts as JSON trees read it: the last value wins. The
//! one exception is a duplicate key *inside* `tools`, `functions`, `tool_choice`,
//! `response_format` or `tool_calls`: those are counted as the characters they would print,
//! and the bytes are counted with both copies (a tree would print one), which only ever
//! raises the estimate.

use super::{DEFAULT_OUTPUT_TOKENS, IMAGE_TOKENS, MESSAGE_OVERHEAD_TOKENS};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Estimated `(input, output)` tokens of a request body, for `cost_optimized`, TPM limits and
/// budgets.
///
/// Input: about one token per 4 characters of text (message contents, text parts, tool
/// definitions and calls, `prompt`, embeddings `input`; Gemini `contents` and
/// `systemInstruction` likewise), `IMAGE_TOKENS` per image, audio or inline file part,
/// `MESSAGE_OVERHEAD_TOKENS` per message, and one token per pre-tokenized embeddings id.
/// Output: `max_completion_tokens`, `max_tokens`, `max_output_tokens` or Gemini
/// `generationConfig.maxOutputTokens` (first present), else `DEFAULT_OUTPUT_TOKENS` for a
/// generation request and 0 for embeddings; times `n` (`candidateCount`) choices.
pub fn estimate_tokens(body: &serde_json::Value) -> (u64, u64) {
    // Every visitor below accepts every JSON type, so a tree cannot fail.
    <Body as serde::Deserialize>::deserialize(body).map_or((0, 0), |b| b.tokens())
}

/// [`estimate_tokens`] of a body not parsed yet, without building its tree. Fails only where
/// the JSON itself is invalid in a field the estimate reads (or anywhere in its syntax).
pub fn estimate_tokens_of(body: &[u8]) -> Result<(u64, u64), serde_json::Error> {
    serde_json::from_slice::<Body>(body).map(|b| b.tokens())
}

/// Characters, media parts and pre-counted tokens of some content.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    chars: u64,
    images: u64,
    /// Already-counted tokens (pre-tokenized embeddings input).
    tokens: u64,
}

impl std::ops::Add for Tally {
    type Output = Tally;
    fn add(self, o: Tally) -> Tally {
        Tally {
            chars: self.chars + o.chars,
            images: self.images + o.images,
            tokens: self.tokens + o.tokens,
        }
    }
}

impl Tally {
    fn chars(chars: u64) -> Tally {
        Tally {
            chars,
            ..Tally::default()
        }
    }
}

/// The top-level fields the estimate reads; each slot holds the last value of its key.
#[derive(Default)]
struct Body {
    /// `messages` / `contents`: `Some` when the key is present (it makes the request a
    /// generation request whatever its value).
    messages: Option<List>,
    contents: Option<List>,
    prompt: Option<Tally>,
    /// `systemInstruction`, `system_instruction`, `instructions`.
    texts: [Tally; 3],
    /// Embeddings (or Responses) `input`.
    input: Tally,
    /// Printed characters of `tools`, `functions`, `tool_choice`, `response_format`.
    schemas: [u64; 4],
    max_completion_tokens: Option<u64>,
    max_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    generation_config: Option<Generation>,
    generation_config_snake: Option<Generation>,
    /// `n`: present (`Some`), and its value when a non-negative integer.
    n: Option<Option<u64>>,
}

impl Body {
    fn tokens(&self) -> (u64, u64) {
        let lists = self.messages.unwrap_or_default();
        let contents = self.contents.unwrap_or_default();
        let messages = lists.count + contents.count;
        let [a, b, c] = self.texts;
        let [d, e, f, g] = self.schemas;
        let tally = lists.tally
            + contents.tally
            + self.prompt.unwrap_or_default()
            + a
            + b
            + c
            + self.input
            + Tally::chars(d + e + f + g);
        let input = tally.chars.div_ceil(4)
            + tally.images * IMAGE_TOKENS
            + tally.tokens
            + messages * MESSAGE_OVERHEAD_TOKENS;

        let generation = self
            .generation_config
            .as_ref()
            .or(self.generation_config_snake.as_ref());
        let limit = self
            .max_completion_tokens
            .or(self.max_tokens)
            .or(self.max_output_tokens)
            .or_else(|| {
                let g = generation?;
                g.max_output_tokens.or(g.max_output_tokens_snake).flatten()
            });
        let generates = self.messages.is_some() || self.contents.is_some() || self.prompt.is_some();
        let per_choice = limit.unwrap_or(if generates { DEFAULT_OUTPUT_TOKENS } else { 0 });
        let choices = self
            .n
            .or_else(|| generation.and_then(|g| g.candidate_count))
            .flatten()
            .unwrap_or(1)
            .clamp(1, 128);
        (input, per_choice.saturating_mul(choices))
    }
}

/// `generationConfig`: each field `Some` when present, with its value when a non-negative
/// integer (a present field of another type hides the next name, as a lookup would).
#[derive(Default)]
struct Generation {
    max_output_tokens: Option<Option<u64>>,
    max_output_tokens_snake: Option<Option<u64>>,
    candidate_count: Option<Option<u64>>,
}

/// A list of messages: how many, and their content (a non-array counts nothing).
#[derive(Default, Clone, Copy)]
struct List {
    count: u64,
    tally: Tally,
}

enum TopKey {
    Messages,
    Contents,
    Prompt,
    Text(usize),
    Input,
    Schema(usize),
    MaxCompletionTokens,
    MaxTokens,
    MaxOutputTokens,
    GenerationConfig,
    GenerationConfigSnake,
    N,
    Other,
}

fn top_key(k: &[u8]) -> TopKey {
    match k {
        b"messages" => TopKey::Messages,
        b"contents" => TopKey::Contents,
        b"prompt" => TopKey::Prompt,
        b"systemInstruction" => TopKey::Text(0),
        b"system_instruction" => TopKey::Text(1),
        b"instructions" => TopKey::Text(2),
        b"input" => TopKey::Input,
        b"tools" => TopKey::Schema(0),
        b"functions" => TopKey::Schema(1),
        b"tool_choice" => TopKey::Schema(2),
        b"response_format" => TopKey::Schema(3),
        b"max_completion_tokens" => TopKey::MaxCompletionTokens,
        b"max_tokens" => TopKey::MaxTokens,
        b"max_output_tokens" => TopKey::MaxOutputTokens,
        b"generationConfig" => TopKey::GenerationConfig,
        b"generation_config" => TopKey::GenerationConfigSnake,
        b"n" => TopKey::N,
        _ => TopKey::Other,
    }
}

enum PartKey {
    Type,
    Media,
    Text(usize),
    ToolCalls,
    FunctionCall,
    Other,
}

fn part_key(k: &[u8]) -> PartKey {
    match k {
        b"type" => PartKey::Type,
        b"image_url" | b"inline_data" | b"inlineData" | b"file_data" | b"fileData"
        | b"input_audio" => PartKey::Media,
        b"text" => PartKey::Text(0),
        b"content" => PartKey::Text(1),
        b"parts" => PartKey::Text(2),
        b"refusal" => PartKey::Text(3),
        b"name" => PartKey::Text(4),
        b"arguments" => PartKey::Text(5),
        b"output" => PartKey::Text(6),
        b"tool_calls" => PartKey::ToolCalls,
        b"function_call" => PartKey::FunctionCall,
        _ => PartKey::Other,
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A visitor whose value for null, booleans and numbers is `Default` (and for arrays and
/// objects too, after skipping them), unless the visitor overrides the method.
macro_rules! default_scalars {
    ($($skip:ident),*) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        default_scalars!(@each $($skip),*);
    };
    (@each) => {};
    (@each numbers $(, $rest:ident)*) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        default_scalars!(@each $($rest),*);
    };
    (@each strings $(, $rest:ident)*) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        default_scalars!(@each $($rest),*);
    };
    (@each arrays $(, $rest:ident)*) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq)?;
            Ok(Default::default())
        }
        default_scalars!(@each $($rest),*);
    };
    (@each objects $(, $rest:ident)*) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map)?;
            Ok(Default::default())
        }
        default_scalars!(@each $($rest),*);
    };
}

/// Reads an object key as one of `K`'s names, without copying it. Asked for as bytes: over
/// the raw body serde_json then hands the key over unescaped but not validated again as UTF-8
/// (the route's own parse already did), which is a good part of a key's cost; a tree hands
/// over its `String`.
struct KeyOf<K>(fn(&[u8]) -> K);

impl<'de, K> DeserializeSeed<'de> for KeyOf<K> {
    type Value = K;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl<'de, K> Visitor<'de> for KeyOf<K> {
    type Value = K;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<K, E> {
        Ok((self.0)(k.as_bytes()))
    }
    fn visit_bytes<E: de::Error>(self, k: &[u8]) -> Result<K, E> {
        Ok((self.0)(k))
    }
}

impl<'de> serde::Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Body, D::Error> {
        d.deserialize_any(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a request body")
    }
    // A body that is not an object estimates nothing.
    default_scalars!(numbers, strings, arrays);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let mut b = Body::default();
        while let Some(key) = map.next_key_seed(KeyOf(top_key))? {
            match key {
                TopKey::Messages => b.messages = Some(map.next_value_seed(ListOf)?),
                TopKey::Contents => b.contents = Some(map.next_value_seed(ListOf)?),
                TopKey::Prompt => b.prompt = Some(map.next_value_seed(Content)?),
                TopKey::Input => b.input = map.next_value_seed(EmbeddingInput)?,
                TopKey::Text(i) => {
                    if let Some(slot) = b.texts.get_mut(i) {
                        *slot = map.next_value_seed(Content)?;
                    }
                }
                TopKey::Schema(i) => {
                    if let Some(slot) = b.schemas.get_mut(i) {
                        *slot = map.next_value_seed(Printed)?;
                    }
                }
                TopKey::MaxCompletionTokens => {
                    b.max_completion_tokens = map.next_value_seed(Count)?
                }
                TopKey::MaxTokens => b.max_tokens = map.next_value_seed(Count)?,
                TopKey::MaxOutputTokens => b.max_output_tokens = map.next_value_seed(Count)?,
                TopKey::GenerationConfig => {
                    b.generation_config = Some(map.next_value_seed(GenerationOf)?)
                }
                TopKey::GenerationConfigSnake => {
                    b.generation_config_snake = Some(map.next_value_seed(GenerationOf)?)
                }
                TopKey::N => b.n = Some(map.next_value_seed(Count)?),
                TopKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(b)
    }
}

/// A non-negative integer, else `None`.
struct Count;

impl<'de> DeserializeSeed<'de> for Count {
    type Value = Option<u64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a count")
    }
    default_scalars!(strings, arrays, objects);
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<u64>, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<u64>, E> {
        Ok(u64::try_from(v).ok())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<u64>, E> {
        Ok(None)
    }
}

struct GenerationOf;

impl<'de> DeserializeSeed<'de> for GenerationOf {
    type Value = Generation;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Generation, D::Error> {
        d.deserialize_any(self)
    }
}

enum GenerationKey {
    MaxOutputTokens,
    MaxOutputTokensSnake,
    CandidateCount,
    Other,
}

fn generation_key(k: &[u8]) -> GenerationKey {
    match k {
        b"maxOutputTokens" => GenerationKey::MaxOutputTokens,
        b"max_output_tokens" => GenerationKey::MaxOutputTokensSnake,
        b"candidateCount" => GenerationKey::CandidateCount,
        _ => GenerationKey::Other,
    }
}

impl<'de> Visitor<'de> for GenerationOf {
    type Value = Generation;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a generation config")
    }
    default_scalars!(numbers, strings, arrays);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Generation, A::Error> {
        let mut g = Generation::default();
        while let Some(key) = map.next_key_seed(KeyOf(generation_key))? {
            match key {
                GenerationKey::MaxOutputTokens => {
                    g.max_output_tokens = Some(map.next_value_seed(Count)?)
                }
                GenerationKey::MaxOutputTokensSnake => {
                    g.max_output_tokens_snake = Some(map.next_value_seed(Count)?)
                }
                GenerationKey::CandidateCount => {
                    g.candidate_count = Some(map.next_value_seed(Count)?)
                }
                GenerationKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(g)
    }
}

/// `messages` / `contents`: each element's content, and how many.
struct ListOf;

impl<'de> DeserializeSeed<'de> for ListOf {
    type Value = List;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<List, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListOf {
    type Value = List;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of messages")
    }
    default_scalars!(numbers, strings, objects);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
        let mut list = List::default();
        while let Some(t) = seq.next_element_seed(Content)? {
            list.count += 1;
            list.tally = list.tally + t;
        }
        Ok(list)
    }
}

/// A message, a content string, an array of parts, or one part (OpenAI or Gemini).
struct Content;

impl<'de> DeserializeSeed<'de> for Content {
    type Value = Tally;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tally, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Content {
    type Value = Tally;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("content")
    }
    default_scalars!(numbers);
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Tally, E> {
        Ok(Tally::chars(s.chars().count() as u64))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tally, A::Error> {
        let mut t = Tally::default();
        while let Some(x) = seq.next_element_seed(Content)? {
            t = t + x;
        }
        Ok(t)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Tally, A::Error> {
        part(map)
    }
}

/// One message or part: an image, audio or inline file (by its `type` or a media key)
/// counts as one image and nothing else; otherwise its text fields and tool calls.
fn part<'de, A: MapAccess<'de>>(mut map: A) -> Result<Tally, A::Error> {
    let mut media_type = false;
    let mut media_key = false;
    let mut texts = [Tally::default(); 7];
    let mut tool_calls = None;
    let mut function_call = None;
    while let Some(key) = map.next_key_seed(KeyOf(part_key))? {
        match key {
            PartKey::Type => media_type = map.next_value_seed(MediaType)?,
            PartKey::Media => {
                media_key = true;
                map.next_value::<IgnoredAny>()?;
            }
            PartKey::Text(i) => {
                if let Some(slot) = texts.get_mut(i) {
                    *slot = map.next_value_seed(Content)?;
                }
            }
            PartKey::ToolCalls => tool_calls = Some(map.next_value_seed(Printed)?),
            PartKey::FunctionCall => function_call = Some(map.next_value_seed(Printed)?),
            PartKey::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    if media_type || media_key {
        return Ok(Tally {
            images: 1,
            ..Tally::default()
        });
    }
    let calls = Tally::chars(tool_calls.or(function_call).unwrap_or(0));
    Ok(texts.into_iter().fold(calls, |a, b| a + b))
}

/// Whether a part's `type` names media.
struct MediaType;

impl<'de> DeserializeSeed<'de> for MediaType {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MediaType {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a part type")
    }
    default_scalars!(numbers, arrays, objects);
    fn visit_str<E: de::Error>(self, kind: &str) -> Result<bool, E> {
        Ok(matches!(
            kind,
            "image_url" | "input_image" | "image" | "input_audio"
        ))
    }
}

/// Embeddings `input`: a string, strings, token ids or arrays of token ids (or, for the
/// Responses API, message items).
struct EmbeddingInput;

impl<'de> DeserializeSeed<'de> for EmbeddingInput {
    type Value = Tally;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tally, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EmbeddingInput {
    type Value = Tally;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an input")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Tally, E> {
        Ok(Tally::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Tally, E> {
        Ok(Tally::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Tally, E> {
        Ok(Tally {
            tokens: 1,
            ..Tally::default()
        })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tally, E> {
        self.visit_u64(v.unsigned_abs())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Tally, E> {
        self.visit_u64(0)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Tally, E> {
        Content.visit_str(s)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tally, A::Error> {
        let mut t = Tally::default();
        while let Some(x) = seq.next_element_seed(EmbeddingInput)? {
            t = t + x;
        }
        Ok(t)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Tally, A::Error> {
        part(map)
    }
}

/// The characters a value prints as compact JSON (as `serde_json::to_string` writes it),
/// counted without printing it: tool definitions and calls are estimated by their size.
struct Printed;

impl<'de> DeserializeSeed<'de> for Printed {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

/// Counts the characters written to it (UTF-8 bytes that start a character).
#[derive(Default)]
struct CharCount(u64);

impl std::io::Write for CharCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.iter().filter(|b| (**b & 0xC0) != 0x80).count() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Characters of one scalar as serde_json prints it (its escapes, its number formats).
fn printed<T: serde::Serialize + ?Sized>(v: &T) -> u64 {
    let mut n = CharCount::default();
    // Writing to a counter cannot fail; a failure would only make the count smaller.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

impl<'de> Visitor<'de> for Printed {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(4)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<u64, E> {
        Ok(if v { 4 } else { 5 })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(printed(&v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        Ok(printed(&v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        Ok(printed(&v))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        Ok(printed(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        // `[`, `]` and a comma between elements.
        let (mut n, mut items) = (2u64, 0u64);
        while let Some(x) = seq.next_element_seed(Printed)? {
            n += x;
            items += 1;
        }
        Ok(n + items.saturating_sub(1))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        // `{`, `}`, a colon per entry and a comma between entries.
        let (mut n, mut entries) = (2u64, 0u64);
        while let Some(k) = map.next_key_seed(Printed)? {
            n += k + 1 + map.next_value_seed(Printed)?;
            entries += 1;
        }
        Ok(n + entries.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::{json, Value};

    /// The estimate as it was written over `serde_json::Value` before the visitors: the
    /// oracle the visitors must agree with.
    fn reference(body: &Value) -> (u64, u64) {
        #[derive(Default)]
        struct T {
            chars: u64,
            images: u64,
            tokens: u64,
        }
        impl T {
            fn content(&mut self, v: &Value) {
                match v {
                    Value::String(s) => self.chars += s.chars().count() as u64,
                    Value::Array(items) => items.iter().for_each(|i| self.content(i)),
                    Value::Object(o) => {
                        let kind = o.get("type").and_then(|t| t.as_str()).unwrap_or("");
                        const MEDIA_KEYS: &[&str] = &[
                            "image_url",
                            "inline_data",
                            "inlineData",
                            "file_data",
                            "fileData",
                            "input_audio",
                        ];
                        if matches!(kind, "image_url" | "input_image" | "image" | "input_audio")
                            || MEDIA_KEYS.iter().any(|k| o.contains_key(*k))
                        {
                            self.images += 1;
                            return;
                        }
                        for key in [
                            "text",
                            "content",
                            "parts",
                            "refusal",
                            "name",
                            "arguments",
                            "output",
                        ] {
                            if let Some(x) = o.get(key) {
                                self.content(x);
                            }
                        }
                        if let Some(calls) = o.get("tool_calls").or_else(|| o.get("function_call"))
                        {
                            self.chars += calls.to_string().chars().count() as u64;
                        }
                    }
                    Value::Null | Value::Bool(_) | Value::Number(_) => {}
                }
            }
            fn embedding_input(&mut self, v: &Value) {
                match v {
                    Value::Number(_) => self.tokens += 1,
                    Value::Array(items) => items.iter().for_each(|i| self.embedding_input(i)),
                    Value::String(_) | Value::Object(_) => self.content(v),
                    Value::Null | Value::Bool(_) => {}
                }
            }
        }
        let Some(obj) = body.as_object() else {
            return (0, 0);
        };
        let mut tally = T::default();
        let mut messages = 0u64;
        for key in ["messages", "contents"] {
            if let Some(list) = obj.get(key).and_then(|v| v.as_array()) {
                messages += list.len() as u64;
                for m in list {
                    tally.content(m);
                }
            }
        }
        for key in [
            "systemInstruction",
            "system_instruction",
            "prompt",
            "instructions",
        ] {
            if let Some(v) = obj.get(key) {
                tally.content(v);
            }
        }
        if let Some(input) = obj.get("input") {
            tally.embedding_input(input);
        }
        for key in ["tools", "functions", "tool_choice", "response_format"] {
            if let Some(v) = obj.get(key) {
                tally.chars += v.to_string().chars().count() as u64;
            }
        }
        let input = tally.chars.div_ceil(4)
            + tally.images * IMAGE_TOKENS
            + tally.tokens
            + messages * MESSAGE_OVERHEAD_TOKENS;
        let generation = obj
            .get("generationConfig")
            .or_else(|| obj.get("generation_config"));
        let limit = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(|v| v.as_u64()))
            .or_else(|| {
                let g = generation?;
                g.get("maxOutputTokens")
                    .or_else(|| g.get("max_output_tokens"))
                    .and_then(|v| v.as_u64())
            });
        let generates = ["messages", "contents", "prompt"]
            .iter()
            .any(|k| obj.contains_key(*k));
        let per_choice = limit.unwrap_or(if generates { DEFAULT_OUTPUT_TOKENS } else { 0 });
        let choices = obj
            .get("n")
            .or_else(|| generation.and_then(|g| g.get("candidateCount")))
            .and_then(|v| v.as_u64())
            .unwrap_or(1)
            .clamp(1, 128);
        (input, per_choice.saturating_mul(choices))
    }

    fn agree(body: &Value) {
        // The reference reads the tree parsed from the same bytes (a float printed and read
        // back may differ in its last digit, and print one character longer or shorter).
        let bytes = serde_json::to_vec(body).unwrap();
        let tree: Value = serde_json::from_slice(&bytes).unwrap();
        let want = reference(&tree);
        assert_eq!(estimate_tokens(&tree), want, "over the tree: {body}");
        assert_eq!(
            estimate_tokens_of(&bytes).unwrap(),
            want,
            "over the bytes: {body}"
        );
        let pretty = serde_json::to_vec_pretty(body).unwrap();
        assert_eq!(
            estimate_tokens_of(&pretty).unwrap(),
            want,
            "whitespace changes nothing: {body}"
        );
    }

    #[test]
    fn the_visitors_agree_with_the_tree_walk_on_written_cases() {
        let cases = [
            json!({"model": "gpt-4o-mini", "max_tokens": 16,
                   "messages": [{"role": "user", "content": "hello there"}]}),
            json!({"messages": "not a list", "max_tokens": -3, "n": "two"}),
            json!({"messages": null}),
            json!({"prompt": null, "max_completion_tokens": 1.0}),
            json!({"prompt": ["ab", {"text": "cd"}], "max_completion_tokens": 5, "max_tokens": 9}),
            json!({"max_completion_tokens": "x", "max_tokens": 9, "messages": []}),
            json!({"messages": [{"role": "assistant", "content": "x",
                                  "function_call": {"name": "f", "arguments": "{\"a\": \"é\\n\"}"}}]}),
            json!({"messages": [{"role": "assistant", "tool_calls": [1, 2.5, -7, true, null, "\u{1}\"\\"],
                                  "function_call": {"name": "f"}}]}),
            json!({"messages": [{"type": "text", "text": "abc", "image_url": null}]}),
            json!({"messages": [{"type": 5, "text": "abc"}]}),
            json!({"messages": [{"content": [{"type": "input_image", "text": "zz"}, {"parts": [{"text": "x"}]}]}]}),
            json!({"input": [[1, 2, 3], "abc", {"content": "de"}, null, true, [[4]]]}),
            json!({"input": -1}),
            json!({"input": 1.5}),
            json!({"instructions": "be brief", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
                   "max_output_tokens": 30, "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
                   "tool_choice": "auto", "response_format": {"type": "json_object"}, "functions": [],
                   "n": 200}),
            json!({"contents": [{"parts": [{"fileData": {"fileUri": "gs://x"}}, {"text": "abc"}]}],
                   "generationConfig": {"maxOutputTokens": "many", "max_output_tokens": 10, "candidateCount": 3},
                   "generation_config": {"maxOutputTokens": 99}}),
            json!({"contents": [], "generation_config": {"max_output_tokens": 10, "candidateCount": 3}, "n": null}),
            json!({"contents": [], "generationConfig": [1], "generation_config": {"maxOutputTokens": 10}}),
            json!({"system_instruction": {"parts": [{"text": "sys"}]}, "systemInstruction": "more"}),
            json!({"tools": {"nested": {"deep": [1e300, 0.1, -0.0, 12345678901234567890u64]}}}),
            json!({"messages": [{"content": "x".repeat(5)}], "max_tokens": u64::MAX, "n": 128}),
            json!(null),
            json!([1, {"messages": []}]),
            json!("messages"),
            json!(7),
            json!({}),
        ];
        for c in &cases {
            agree(c);
        }
    }

    /// Random bodies built from the keys the estimate reads (and some it does not), at
    /// random depths and types: the visitors and the tree walk give the same numbers.
    #[test]
    fn the_visitors_agree_with_the_tree_walk_on_random_bodies() {
        const KEYS: &[&str] = &[
            "messages",
            "contents",
            "prompt",
            "systemInstruction",
            "system_instruction",
            "instructions",
            "input",
            "tools",
            "functions",
            "tool_choice",
            "response_format",
            "max_completion_tokens",
            "max_tokens",
            "max_output_tokens",
            "generationConfig",
            "generation_config",
            "n",
            "type",
            "image_url",
            "inline_data",
            "inlineData",
            "file_data",
            "fileData",
            "input_audio",
            "text",
            "content",
            "parts",
            "refusal",
            "name",
            "arguments",
            "output",
            "tool_calls",
            "function_call",
            "maxOutputTokens",
            "candidateCount",
            "role",
            "model",
            "other",
        ];
        const STRINGS: &[&str] = &[
            "",
            "abc",
            "image_url",
            "input_image",
            "image",
            "input_audio",
            "text",
            "é€\u{1F600}",
            "a\"b\\c\n\t\u{1}\u{7f}",
            "</script>",
        ];
        fn value(rng: &mut fastrand::Rng, depth: u32) -> Value {
            let pick = if depth == 0 {
                rng.u32(0..6)
            } else {
                rng.u32(0..9)
            };
            match pick {
                0 => Value::Null,
                1 => Value::Bool(rng.bool()),
                2 => json!(rng.u64(0..1000)),
                3 => json!(rng.i64(-1000..0)),
                4 => json!(rng.f64() * 100.0),
                5 => json!(STRINGS[rng.usize(0..STRINGS.len())]),
                6 | 7 => Value::Object(
                    (0..rng.usize(0..5))
                        .map(|_| {
                            (
                                KEYS[rng.usize(0..KEYS.len())].to_string(),
                                value(rng, depth - 1),
                            )
                        })
                        .collect(),
                ),
                _ => Value::Array(
                    (0..rng.usize(0..4))
                        .map(|_| value(rng, depth - 1))
                        .collect(),
                ),
            }
        }
        let mut rng = fastrand::Rng::with_seed(15);
        for _ in 0..5000 {
            let depth = rng.u32(1..6);
            let body = match value(&mut rng, depth) {
                Value::Object(o) => Value::Object(o),
                other => {
                    // A scalar or an array under a top-level key the estimate reads.
                    let mut o = serde_json::Map::new();
                    o.insert("messages".into(), Value::Array(vec![other.clone()]));
                    o.insert(KEYS[rng.usize(0..17)].to_string(), other);
                    Value::Object(o)
                }
            };
            agree(&body);
        }
    }

    #[test]
    fn a_repeated_key_counts_its_last_value_as_a_tree_keeps_it() {
        let body = br#"{"messages":[{"content":"abcdefgh"}],"max_tokens":5,"messages":[],"max_tokens":"x"}"#;
        let tree: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(estimate_tokens_of(body).unwrap(), reference(&tree));
        assert_eq!(
            estimate_tokens_of(body).unwrap(),
            (0, DEFAULT_OUTPUT_TOKENS)
        );
    }

    #[test]
    fn invalid_json_fails_and_skipped_fields_are_not_copied() {
        assert!(estimate_tokens_of(b"{\"messages\": [").is_err());
        assert!(estimate_tokens_of(b"{} x").is_err(), "trailing bytes");
        assert!(estimate_tokens_of(b"").is_err());
        // An escaped key is still recognised.
        assert_eq!(
            estimate_tokens_of(br#"{"max\u005ftokens": 3, "messages": []}"#).unwrap(),
            (0, 3)
        );
    }
}
