//! A stored answer and its Redis encoding.

use bytes::Bytes;

/// Version tag of the Redis encoding; an entry written by another format version is a miss.
const MAGIC: &[u8] = b"llmgw1 ";

/// A stored answer: the complete non-streamed OpenAI JSON body, the provider that produced it and
/// the model it served. `Bytes` so a hit is served without copying.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub body: Bytes,
    pub provider: String,
    pub model: String,
}

impl Entry {
    /// `llmgw1 <len>:<provider> <len>:<model>\n` then the body bytes as they are: readable with
    /// `redis-cli`, no re-encoding of the body, and any provider/model text survives.
    pub fn encode(&self) -> Vec<u8> {
        let header = format!(
            "{}:{} {}:{}\n",
            self.provider.len(),
            self.provider,
            self.model.len(),
            self.model
        );
        let mut out = Vec::with_capacity(MAGIC.len() + header.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// The inverse of [`Entry::encode`]; `None` for anything else (another version, truncation).
    pub fn decode(b: &[u8]) -> Option<Entry> {
        let (provider, model, at) = parse_header(b)?;
        Some(Entry {
            body: Bytes::copy_from_slice(&b[at..]),
            provider,
            model,
        })
    }

    /// Like [`Entry::decode`], but the body shares `b`'s allocation.
    pub(super) fn decode_shared(b: Bytes) -> Option<Entry> {
        let (provider, model, at) = parse_header(&b)?;
        Some(Entry {
            body: b.slice(at..),
            provider,
            model,
        })
    }
}

/// Shows the body's size only: a completion must not reach a log by accident.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("body_len", &self.body.len())
            .field("provider", &self.provider)
            .field("model", &self.model)
            .finish()
    }
}

/// Returns provider, model and where the body starts.
fn parse_header(b: &[u8]) -> Option<(String, String, usize)> {
    let rest = b.strip_prefix(MAGIC)?;
    let (provider, rest) = field(rest)?;
    let rest = rest.strip_prefix(b" ")?;
    let (model, rest) = field(rest)?;
    let rest = rest.strip_prefix(b"\n")?;
    Some((provider, model, b.len() - rest.len()))
}

/// One `<len>:<text>` field.
fn field(b: &[u8]) -> Option<(String, &[u8])> {
    let colon = b.iter().take(6).position(|&c| c == b':')?;
    let len: usize = std::str::from_utf8(&b[..colon]).ok()?.parse().ok()?;
    let text = b.get(colon + 1..colon + 1 + len)?;
    let text = String::from_utf8(text.to_vec()).ok()?;
    Some((text, &b[colon + 1 + len..]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn entry(provider: &str, model: &str, body: &[u8]) -> Entry {
        Entry {
            body: Bytes::copy_from_slice(body),
            provider: provider.into(),
            model: model.into(),
        }
    }

    #[test]
    fn encodes_compactly_and_round_trips() {
        let e = entry("openai", "gpt-4o-mini", br#"{"object":"chat.completion"}"#);
        let wire = e.encode();
        assert_eq!(
            wire,
            b"llmgw1 6:openai 11:gpt-4o-mini\n{\"object\":\"chat.completion\"}".to_vec(),
            "a short header line, then the body verbatim"
        );
        assert_eq!(Entry::decode(&wire), Some(e.clone()));
        assert_eq!(Entry::decode_shared(Bytes::from(wire)), Some(e));
    }

    #[test]
    fn odd_names_and_empty_bodies_round_trip() {
        for e in [
            entry("", "", b""),
            entry("gem ini\n", "a:b 3:c\n", b"\n\x00\xff"),
            entry("openai", "ünïcode-模型", b"x"),
        ] {
            assert_eq!(Entry::decode(&e.encode()), Some(e));
        }
    }

    #[test]
    fn decode_shares_the_buffer() {
        let wire = Bytes::from(entry("openai", "m", b"body").encode());
        let e = Entry::decode_shared(wire.clone()).unwrap();
        assert_eq!(e.body.as_ptr(), wire[wire.len() - 4..].as_ptr());
    }

    #[test]
    fn garbage_and_truncation_are_misses() {
        let wire = entry("openai", "gpt-4o", b"{}").encode();
        let header_len = wire.len() - 2;
        for cut in 0..header_len {
            assert_eq!(Entry::decode(&wire[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Entry::decode(b"llmgw2 6:openai 1:m\n{}"), None);
        assert_eq!(Entry::decode(b"llmgw1 99999999:x"), None);
        assert_eq!(Entry::decode(b"llmgw1 6:openai1:m\n{}"), None);
        assert_eq!(Entry::decode(b"{\"id\":1}"), None);
    }
}
