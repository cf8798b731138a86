//! Key naming for Redis Cluster: `prefix{tag}rest`. Redis hashes only the part between the
//! first `{` and the next `}`, so every key built with the same tag lands on one slot and a
//! multi-key script over them (a caller's request and token counters, a budget and its
//! ledger) runs on one node, with or without Cluster.

/// `prefix` + `{tag}` + `rest`. `tag` must not contain `}` (hex digests and ids never do).
pub fn tagged(prefix: &str, tag: &str, rest: &str) -> String {
    let mut k = String::with_capacity(prefix.len() + tag.len() + rest.len() + 2);
    k.push_str(prefix);
    k.push('{');
    k.push_str(tag);
    k.push('}');
    k.push_str(rest);
    k
}

/// The part of `key` Redis Cluster hashes (its slot is `CRC16(part) mod 16384`).
pub fn hashed_part(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The Cluster slot of `key`: CRC16 (XMODEM) of its hashed part, mod 16384. Used only to
/// say which node a failed call was meant for (the driver routes by itself).
pub fn slot(key: &str) -> u16 {
    let mut crc: u16 = 0;
    for &byte in hashed_part(key).as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_one_tag_share_the_hashed_part() {
        let a = tagged("llmgw:rl:req:", "abc", ":7");
        let b = tagged("llmgw:rl:tok:", "abc", ":7");
        assert_eq!(a, "llmgw:rl:req:{abc}:7");
        assert_eq!(hashed_part(&a), "abc");
        assert_eq!(hashed_part(&a), hashed_part(&b));
        assert_eq!(hashed_part("plain"), "plain");
        // As `CLUSTER KEYSLOT` answers.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot("x{foo}y"), 12182);
        assert_eq!(
            hashed_part("a{}b"),
            "a{}b",
            "an empty tag hashes the whole key"
        );
    }
}
