//! Redaction of secrets from text the gateway did not write itself — upstream error bodies,
//! upstream headers, error messages — before it reaches a client, a log line or a metric.
//!
//! Two passes: every *known* secret of the request (the gateway's provider keys, the client's
//! keys, the access key it presented) is replaced wherever it occurs; then anything shaped
//! like a key (`Bearer …`, `sk-…`, `AIza…`, `key=…`) is masked too, because an upstream may
//! echo a key the gateway never saw (another tenant's, a stale one).

use memchr::memmem;
use std::borrow::Cow;

/// What a redacted secret is replaced with.
pub const MASK: &str = "[REDACTED]";
/// Shorter values are not treated as secrets: redacting `a` everywhere would garble text,
/// and no real key is that short.
const MIN_SECRET_LEN: usize = 8;

/// The secrets of one request. Cheap to build: it borrows the keys it is given.
#[derive(Default)]
pub struct Secrets<'a> {
    known: Vec<&'a [u8]>,
}

impl<'a> Secrets<'a> {
    pub fn new() -> Self {
        Secrets { known: Vec::new() }
    }

    /// Adds one secret (ignored when too short to be a key).
    pub fn add(&mut self, secret: &'a str) {
        let s = secret.trim().as_bytes();
        if s.len() >= MIN_SECRET_LEN && !self.known.contains(&s) {
            self.known.push(s);
        }
    }

    /// `text` with every secret masked; borrowed unchanged when there was none (the common
    /// case costs one scan and no copy).
    pub fn redact<'t>(&self, text: &'t [u8]) -> Cow<'t, [u8]> {
        let out = self.redact_known(text);
        match mask_key_shapes(&out) {
            Some(masked) => Cow::Owned(masked),
            None => out,
        }
    }

    /// `text` with only the known secrets masked: for successful answers, whose text is the
    /// model's and may legitimately hold key-shaped strings.
    pub fn redact_known<'t>(&self, text: &'t [u8]) -> Cow<'t, [u8]> {
        let mut out: Cow<'t, [u8]> = Cow::Borrowed(text);
        for secret in &self.known {
            if out.len() >= secret.len() && find(&out, secret).is_some() {
                out = Cow::Owned(replace_all(&out, secret));
            }
        }
        out
    }

    /// [`Secrets::redact`] for text known to be UTF-8 (messages, log lines).
    pub fn redact_str<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.redact(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
        }
    }

    /// Whether `text` holds a known secret: the per-header check on every answer, so it
    /// skips values shorter than a secret without building a searcher.
    pub fn leaks_known(&self, text: &[u8]) -> bool {
        self.known
            .iter()
            .any(|s| text.len() >= s.len() && find(text, s).is_some())
    }

    /// Whether `text` holds a known secret or a key-shaped token.
    pub fn leaks(&self, text: &[u8]) -> bool {
        matches!(self.redact(text), Cow::Owned(_))
    }
}

/// The longest needle memchr searches with its packed-pair searcher; for a longer one
/// `memmem::find` builds a Two-Way searcher on every call (about 2k instructions, more than
/// scanning a whole small answer), which most keys are long enough to get.
const PACKED_NEEDLE: usize = 32;

/// Where `secret` first occurs in `text`: a long secret is found by its first
/// `PACKED_NEEDLE` bytes and checked whole at each hit (a key's leading bytes are
/// random enough that hits of the head alone are rare).
fn find(text: &[u8], secret: &[u8]) -> Option<usize> {
    if secret.len() <= PACKED_NEEDLE {
        return memmem::find(text, secret);
    }
    let (head, tail) = secret.split_at(PACKED_NEEDLE);
    memmem::find_iter(text, head).find(|&at| {
        text.get(at + PACKED_NEEDLE..)
            .is_some_and(|rest| rest.starts_with(tail))
    })
}

fn replace_all(text: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut last = 0;
    for at in memmem::find_iter(text, secret) {
        if at < last {
            continue;
        }
        out.extend_from_slice(&text[last..at]);
        out.extend_from_slice(MASK.as_bytes());
        last = at + secret.len();
    }
    out.extend_from_slice(&text[last..]);
    out
}

/// Characters that keys are made of (base64url, plus `.` for JWT-like tokens).
fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Masks the value after each key-shaped prefix: `(prefix, shortest value, keep the prefix)`.
/// `None` when nothing matched.
fn mask_key_shapes(text: &[u8]) -> Option<Vec<u8>> {
    const SHAPES: [(&[u8], usize, bool); 5] = [
        (b"Bearer ", 8, true),
        (b"bearer ", 8, true),
        (b"sk-", 16, false),
        (b"AIza", 30, false),
        (b"key=", 8, true),
    ];
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (prefix, min, keep_prefix) in SHAPES {
        for at in memmem::find_iter(text, prefix) {
            let value_start = at + prefix.len();
            let len = text[value_start..]
                .iter()
                .take_while(|b| is_key_char(**b))
                .count();
            if len >= min && !text[value_start..value_start + len].starts_with(MASK.as_bytes()) {
                let start = if keep_prefix { value_start } else { at };
                spans.push((start, value_start + len));
            }
        }
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = Vec::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in spans {
        if end <= last {
            continue;
        }
        out.extend_from_slice(&text[last..start.max(last)]);
        out.extend_from_slice(MASK.as_bytes());
        last = end;
    }
    out.extend_from_slice(&text[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secrets(list: &[&'static str]) -> Secrets<'static> {
        let mut s = Secrets::new();
        for k in list {
            s.add(k);
        }
        s
    }

    #[test]
    fn known_secrets_are_masked_wherever_they_occur() {
        let s = secrets(&["gw-openai-key", "client-key-123"]);
        let text = br#"{"error":{"message":"Incorrect API key provided: gw-openai-key (also client-key-123, gw-openai-key)"}}"#;
        let out = s.redact(text);
        let out = std::str::from_utf8(&out).unwrap();
        assert!(
            !out.contains("gw-openai-key") && !out.contains("client-key-123"),
            "{out}"
        );
        assert_eq!(out.matches(MASK).count(), 3, "{out}");
    }

    #[test]
    fn long_secrets_are_found_by_their_head_and_checked_whole() {
        let key = "llmgw_0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
        let head = &key[..PACKED_NEEDLE];
        let s = secrets(&[key]);
        let only_head = format!("{head}-not-the-rest and {head}");
        assert!(
            !s.leaks_known(only_head.as_bytes()),
            "the head alone is no match"
        );
        let second = format!("{head}-x {key} end");
        assert_eq!(find(second.as_bytes(), key.as_bytes()), second.find(key));
        let out = s.redact_known(second.as_bytes());
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            format!("{head}-x {MASK} end"),
            "the whole key masked, the lone head kept"
        );
    }

    #[test]
    fn key_shapes_are_masked_even_when_unknown() {
        let s = secrets(&[]);
        for (text, gone) in [
            (
                "auth failed for Bearer abcdefgh12345678",
                "abcdefgh12345678",
            ),
            (
                "key sk-proj-0123456789abcdefghij was revoked",
                "sk-proj-0123456789abcdefghij",
            ),
            (
                "AIzaSyA-0123456789abcdefghijklmnopqrstu is invalid",
                "AIzaSyA-0123456789abcdefghijklmnopqrstu",
            ),
            ("GET /v1beta/models?key=secretvalue123", "secretvalue123"),
        ] {
            let out = s.redact_str(text);
            assert!(!out.contains(gone), "{text:?} -> {out:?}");
            assert!(out.contains(MASK), "{out}");
        }
    }

    #[test]
    fn clean_text_is_borrowed_unchanged() {
        let s = secrets(&["gw-openai-key"]);
        let text = b"{\"choices\":[{\"message\":{\"content\":\"skip the sk- prefix\"}}]}";
        assert!(matches!(s.redact(text), Cow::Borrowed(_)));
        assert!(!s.leaks(text));
        assert!(!s.leaks_known(b"short"));
        assert!(s.leaks_known(b"Bearer realm=x, key=gw-openai-key"));
        let short = secrets(&["abc"]);
        assert!(
            matches!(short.redact(b"abc abc"), Cow::Borrowed(_)),
            "too short to be a key"
        );
    }
}
