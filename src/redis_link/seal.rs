//! Encryption at rest (SPEC §14): values holding prompt or answer data are sealed with
//! AES-256-GCM before they reach Redis. A random 96-bit nonce per value, the Redis key as
//! associated data (a value copied under another key does not open), and a 4-byte key
//! fingerprint so that rotation (`encryption_old_keys`) tries the right key at once.
//!
//! Layout: `gwe1` | fingerprint (4) | nonce (12) | ciphertext | tag (16).

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use bytes::Bytes;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"gwe1";
const NONCE: usize = 12;
const TAG: usize = 16;
const HEADER: usize = MAGIC.len() + 4 + NONCE;

pub struct Sealer {
    /// The first seals; every one opens.
    keys: Vec<([u8; 4], Aes256Gcm)>,
}

impl Sealer {
    pub fn new(keys: &[[u8; 32]]) -> Option<Self> {
        if keys.is_empty() {
            return None;
        }
        let keys = keys
            .iter()
            .map(|k| (fingerprint(k), Aes256Gcm::new(k.into())))
            .collect();
        Some(Self { keys })
    }

    /// `value` sealed for `key`. One copy of the value (behind the header); encrypted in place.
    pub fn seal(&self, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        let (fp, cipher) = self.keys.first()?;
        let mut nonce = [0u8; NONCE];
        OsRng.try_fill_bytes(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER + value.len() + TAG);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(fp);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(value);
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), key, &mut out[HEADER..])
            .ok()?;
        out.extend_from_slice(&tag);
        Some(out)
    }

    /// The plain value, decrypted in place and shared without a copy; `None` when it is not
    /// sealed, sealed with an unknown key, under another Redis key, or altered.
    pub fn open(&self, key: &[u8], mut value: Vec<u8>) -> Option<Bytes> {
        if value.len() < HEADER + TAG || &value[..MAGIC.len()] != MAGIC {
            return None;
        }
        let fp = &value[MAGIC.len()..MAGIC.len() + 4];
        let (_, cipher) = self.keys.iter().find(|(f, _)| f == fp)?;
        let nonce = *Nonce::from_slice(&value[MAGIC.len() + 4..HEADER]);
        let end = value.len() - TAG;
        let tag = *Tag::from_slice(&value[end..]);
        cipher
            .decrypt_in_place_detached(&nonce, key, &mut value[HEADER..end], &tag)
            .ok()?;
        Some(Bytes::from(value).slice(HEADER..end))
    }
}

/// Which key sealed a value: not secret (SHA-256 of the key, first 4 bytes), never the key.
fn fingerprint(key: &[u8; 32]) -> [u8; 4] {
    let d = Sha256::digest(key);
    [d[0], d[1], d[2], d[3]]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    #[test]
    fn round_trip_hides_the_text_and_uses_fresh_nonces() {
        let s = Sealer::new(&[A]).unwrap();
        let one = s.seal(b"llmgw:c:k", b"the secret prompt").unwrap();
        let two = s.seal(b"llmgw:c:k", b"the secret prompt").unwrap();
        assert_ne!(one, two, "random nonce");
        assert!(!one.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            &s.open(b"llmgw:c:k", one).unwrap()[..],
            b"the secret prompt"
        );
    }

    #[test]
    fn another_key_another_redis_key_or_a_flipped_bit_does_not_open() {
        let s = Sealer::new(&[A]).unwrap();
        let v = s.seal(b"k1", b"answer").unwrap();
        assert!(s.open(b"k2", v.clone()).is_none(), "the Redis key is bound");
        assert!(Sealer::new(&[B]).unwrap().open(b"k1", v.clone()).is_none());
        let mut t = v.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(s.open(b"k1", t).is_none(), "tampered");
        assert!(s.open(b"k1", b"plain value from before".to_vec()).is_none());
        assert!(s.open(b"k1", Vec::new()).is_none());
    }

    #[test]
    fn an_old_key_still_opens_after_rotation() {
        let old = Sealer::new(&[A]).unwrap();
        let v = old.seal(b"k", b"answer").unwrap();
        let rotated = Sealer::new(&[B, A]).unwrap();
        assert_eq!(&rotated.open(b"k", v).unwrap()[..], b"answer");
        let fresh = rotated.seal(b"k", b"x").unwrap();
        assert!(
            old.open(b"k", fresh).is_none(),
            "new values use the new key"
        );
    }
}
