//! Output item ids, input item ids, and the `encrypted_content` that carries Gemini
//! thought signatures through a client (the scheme is in the module docs of [`super`]).

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::providers::gemini::ids::{MAX_SIGNATURE_IN_ID, SIGNATURE_SEP};

/// Marks an `encrypted_content` this gateway wrote (anything else is ignored on the way in:
/// e.g. OpenAI's own reasoning, when a conversation moves from an OpenAI model to Gemini).
const CONTENT_PREFIX: &str = "gemini.ts1.";

/// One signature and the output item it belongs to: a call (`call_id`) or a message
/// (`item_id`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(super) struct SignatureEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) item_id: Option<String>,
    pub(super) signature: String,
}

pub(super) fn encode(entries: &[SignatureEntry]) -> String {
    let mut out = String::from(CONTENT_PREFIX);
    // Serialising strings into a Vec cannot fail.
    let json = serde_json::to_vec(entries).unwrap_or_default();
    URL_SAFE_NO_PAD.encode_string(json, &mut out);
    out
}

/// `None` for content this gateway did not write, or that was tampered with.
pub(super) fn decode(content: &str) -> Option<Vec<SignatureEntry>> {
    let raw = URL_SAFE_NO_PAD
        .decode(content.strip_prefix(CONTENT_PREFIX)?)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Every signature the conversation's reasoning items carry, by what they belong to.
#[derive(Default, Debug)]
pub(super) struct Signatures {
    pub(super) calls: HashMap<String, String>,
    pub(super) items: HashMap<String, String>,
}

impl Signatures {
    pub(super) fn collect<'a>(items: impl Iterator<Item = &'a Value>) -> Self {
        let mut sigs = Signatures::default();
        let contents = items
            .filter(|v| v.get("type").and_then(Value::as_str) == Some("reasoning"))
            .filter_map(|v| v.get("encrypted_content").and_then(Value::as_str));
        for entry in contents.filter_map(decode).flatten() {
            match (entry.call_id, entry.item_id) {
                (Some(call), _) => sigs.calls.insert(call, entry.signature),
                (None, Some(item)) => sigs.items.insert(item, entry.signature),
                (None, None) => None,
            };
        }
        sigs
    }
}

/// Mints the ids of one response's output items from the gateway's response id.
pub(super) struct ItemIds {
    stem: String,
    next: u32,
}

impl ItemIds {
    pub(super) fn new(response_id: &str) -> Self {
        ItemIds {
            stem: response_id
                .strip_prefix("resp_")
                .unwrap_or(response_id)
                .to_owned(),
            next: 0,
        }
    }

    /// `<prefix>_<stem>_<n>`.
    pub(super) fn item(&mut self, prefix: &str) -> String {
        let mut id = String::with_capacity(prefix.len() + self.stem.len() + 8);
        let _ = write!(id, "{prefix}_{}_{}", self.stem, self.next);
        self.next += 1;
        id
    }

    /// A function call's item id (with the signature appended when it fits) and call id.
    pub(super) fn call(&mut self, signature: Option<&str>) -> (String, String) {
        let n = self.next;
        let mut id = self.item("fc");
        if let Some(sig) = signature {
            if base64::encoded_len(sig.len(), false).is_some_and(|n| n <= MAX_SIGNATURE_IN_ID) {
                id.push_str(SIGNATURE_SEP);
                URL_SAFE_NO_PAD.encode_string(sig, &mut id);
            }
        }
        (id, format!("call_{}_{n}", self.stem))
    }
}

/// `<prefix>_<16 hex>` from the item's JSON and its position: the same input always gets
/// the same ids, and identical ids mean identical items.
pub(super) fn input_id(prefix: &str, item: &impl Serialize, index: usize) -> String {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    // Hashing cannot fail; a serialisation error would only weaken the hash.
    let _ = serde_json::to_writer(&mut h, item);
    std::io::Write::write_all(&mut h, &index.to_le_bytes()).ok();
    format!("{prefix}_{:016x}", h.0)
}

/// FNV-1a as an `io::Write`, so an item is hashed without being serialised into memory.
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for b in buf {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encrypted_content_round_trips_and_ignores_foreign_content() {
        let entries = vec![
            SignatureEntry {
                call_id: Some("call_x_1".into()),
                item_id: None,
                signature: "CiQB+/sig==".into(),
            },
            SignatureEntry {
                call_id: None,
                item_id: Some("msg_x_0".into()),
                signature: "AAAA".into(),
            },
        ];
        let enc = encode(&entries);
        assert!(enc.starts_with(CONTENT_PREFIX), "{enc}");
        assert_eq!(decode(&enc), Some(entries), "decode(encode(x)) == x");
        assert_eq!(
            decode("gAAAAABoOpenAIencrypted"),
            None,
            "OpenAI's own content"
        );
        assert_eq!(decode("gemini.ts1.!!!"), None, "tampered content");
        let sigs = Signatures::collect(
            [
                json!({"type":"reasoning","encrypted_content":enc}),
                json!({"type":"reasoning","encrypted_content":"opaque"}),
                json!({"type":"message","encrypted_content":"x"}),
            ]
            .iter(),
        );
        assert_eq!(
            sigs.calls.get("call_x_1").map(String::as_str),
            Some("CiQB+/sig==")
        );
        assert_eq!(sigs.items.get("msg_x_0").map(String::as_str), Some("AAAA"));
    }

    #[test]
    fn item_ids_are_distinct_and_carry_short_signatures() {
        let mut ids = ItemIds::new("resp_gwabc");
        assert_eq!(ids.item("rs"), "rs_gwabc_0");
        let (id, call) = ids.call(Some("sig"));
        assert_eq!(call, "call_gwabc_1");
        assert!(id.starts_with("fc_gwabc_1__ts__"), "{id}");
        assert_eq!(
            crate::providers::gemini::ids::signature_from_id(&id).as_deref(),
            Some("sig")
        );
        let (id, call) = ids.call(Some(&"A".repeat(1000)));
        assert_eq!((id.as_str(), call.as_str()), ("fc_gwabc_2", "call_gwabc_2"));
        assert_eq!(ItemIds::new("other").item("msg"), "msg_other_0");
    }

    #[test]
    fn input_ids_are_content_derived() {
        let a = json!({"role":"user","content":"hi"});
        assert_eq!(input_id("msg", &a, 0), input_id("msg", &a, 0));
        assert_ne!(input_id("msg", &a, 0), input_id("msg", &a, 1));
        assert_ne!(
            input_id("msg", &a, 0),
            input_id("msg", &json!({"role":"user","content":"ho"}), 0)
        );
        assert_eq!(input_id("fc", &a, 0).len(), "fc_".len() + 16);
    }
}
