//! Tool-call ids and the Gemini thought signatures they carry (see the module docs of
//! [`super`]).

use std::fmt::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::borrow::Cow;

use super::wire::Content;

/// Longest encoded signature still carried inside a tool-call id.
pub const MAX_SIGNATURE_IN_ID: usize = 256;
pub(crate) const SIGNATURE_SEP: &str = "__ts__";
/// Google's documented bypass for replayed Gemini 3 calls without a signature.
pub(crate) const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

pub(crate) fn signature_from_id(id: &str) -> Option<String> {
    let (_, enc) = id.split_once(SIGNATURE_SEP)?;
    String::from_utf8(URL_SAFE_NO_PAD.decode(enc).ok()?).ok()
}

/// Gemini 3 rejects replayed function calls without a signature; only the
/// first call of a (parallel) step carries one.
pub(crate) fn add_missing_signatures(contents: &mut [Content<'_>]) {
    for c in contents.iter_mut().filter(|c| c.role == "model") {
        let mut calls = c.parts.iter_mut().filter(|p| p.function_call.is_some());
        let Some(first) = calls.next() else { continue };
        if first.thought_signature.is_none() && calls.all(|p| p.thought_signature.is_none()) {
            first.thought_signature = Some(Cow::Borrowed(SKIP_SIGNATURE));
        }
    }
}

/// Deterministic per-response tool-call ids (see the module docs).
pub(crate) struct CallIds {
    prefix: u64,
    next: u32,
}

impl CallIds {
    pub(crate) fn new(response_id: &str) -> Self {
        // FNV-1a: cheap, stable, and spreads ids of different responses apart.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in response_id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        CallIds { prefix: h, next: 0 }
    }

    /// Writes the next id into `buf`, embedding the signature if it fits.
    pub(crate) fn write(&mut self, buf: &mut String, signature: Option<&str>) {
        buf.clear();
        let _ = write!(buf, "call_{:016x}_{}", self.prefix, self.next);
        self.next += 1;
        if let Some(sig) = signature {
            if base64::encoded_len(sig.len(), false).is_some_and(|n| n <= MAX_SIGNATURE_IN_ID) {
                buf.push_str(SIGNATURE_SEP);
                URL_SAFE_NO_PAD.encode_string(sig, buf);
            }
        }
    }
}
