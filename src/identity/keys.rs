//! Gateway keys managed at run time (SPEC §13): records kept hashed, looked up by the
//! SHA-256 of the presented key in an immutable snapshot (one `ArcSwap` load per request).
//!
//! Where they live: with Redis, one hash of records plus a version counter that every
//! instance checks every 250 ms (so a change is honoured everywhere within a second); without
//! it, a local state file written atomically (temp file, fsync, rename, fsync of the folder)
//! that also holds budget spend. A state file that exists but does not parse stops the start:
//! starting with no keys would silently lock every team out (or, worse, forget a revocation).

use super::redis_store::IdentityRedis;
use super::{Budget, CallerPolicy};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const LOG_TARGET: &str = "gateway:auth";
/// Secrets start with this, so scanners (and people) recognise a leaked one.
pub const SECRET_PREFIX: &str = "llmgw-";

/// One managed key as stored (hashes only, never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub id: String,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub rate_limit_rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub budget: Option<Budget>,
    /// Unix seconds after which the key is refused.
    #[serde(default)]
    pub expires_at: Option<u64>,
    pub created_at: u64,
    /// Hex SHA-256 of the current secret.
    pub sha256: String,
    /// The first characters of the secret, to tell keys apart in a listing.
    pub key_prefix: String,
    /// The secret before the last rotation and until when it stays valid (unix seconds).
    #[serde(default)]
    pub previous: Option<Previous>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Previous {
    pub sha256: String,
    pub valid_until: u64,
}

impl KeyRecord {
    /// The record as the admin API shows it: no hashes.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "object": "gateway.key",
            "models": self.models,
            "rate_limit_rpm": self.rate_limit_rpm,
            "tpm": self.tpm,
            "budget": self.budget,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "key_prefix": self.key_prefix,
            "previous_key_valid_until": self.previous.as_ref().map(|p| p.valid_until),
        })
    }

    fn policy(&self) -> Arc<CallerPolicy> {
        Arc::new(CallerPolicy {
            id: self.id.clone(),
            models: self.models.clone(),
            rpm: self.rate_limit_rpm,
            tpm: self.tpm,
            budget: self.budget,
        })
    }
}

/// What a presented digest resolves to.
struct Active {
    policy: Arc<CallerPolicy>,
    expires_at: Option<u64>,
    /// Set for a rotated-out secret: refused after this (unix seconds).
    valid_until: Option<u64>,
}

#[derive(Default)]
struct Snapshot {
    records: BTreeMap<String, KeyRecord>,
    by_digest: HashMap<[u8; 32], Active>,
}

impl Snapshot {
    fn build(records: BTreeMap<String, KeyRecord>) -> Snapshot {
        let mut by_digest = HashMap::with_capacity(records.len());
        for r in records.values() {
            let policy = r.policy();
            if let Some(d) = digest_of(&r.sha256) {
                by_digest.insert(
                    d,
                    Active {
                        policy: policy.clone(),
                        expires_at: r.expires_at,
                        valid_until: None,
                    },
                );
            }
            if let Some(p) = &r.previous {
                if let Some(d) = digest_of(&p.sha256) {
                    by_digest.insert(
                        d,
                        Active {
                            policy,
                            expires_at: r.expires_at,
                            valid_until: Some(p.valid_until),
                        },
                    );
                }
            }
        }
        Snapshot { records, by_digest }
    }
}

fn digest_of(hex_digest: &str) -> Option<[u8; 32]> {
    let v = hex::decode(hex_digest).ok()?;
    v.try_into().ok()
}

/// Why a managed key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Expired,
    RotatedOut,
}

/// The managed keys of this instance.
pub struct KeyStore {
    snapshot: ArcSwap<Snapshot>,
    state: Option<Arc<StateFile>>,
    redis: Option<Arc<IdentityRedis>>,
    /// The Redis version the snapshot was built from.
    version: AtomicU64,
    /// Admin writes one at a time (per instance).
    write: tokio::sync::Mutex<()>,
}

/// An admin write that could not be stored.
#[derive(Debug)]
pub enum StoreError {
    Exists,
    NotFound,
    Unavailable(String),
}

impl KeyStore {
    pub fn new(state: Option<Arc<StateFile>>, redis: Option<Arc<IdentityRedis>>) -> Self {
        let records = state.as_ref().map(|s| s.keys()).unwrap_or_default();
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::build(records)),
            state,
            redis,
            version: AtomicU64::new(u64::MAX),
            write: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether any managed key exists (a request path shortcut).
    pub fn is_empty(&self) -> bool {
        self.snapshot.load().by_digest.is_empty()
    }

    /// The caller a presented key's digest names; `None` when it is no managed key.
    pub fn find(
        &self,
        digest: &[u8; 32],
        now_s: u64,
    ) -> Option<Result<Arc<CallerPolicy>, KeyRefusal>> {
        let snap = self.snapshot.load();
        let a = snap.by_digest.get(digest)?;
        if a.expires_at.is_some_and(|e| e <= now_s) {
            return Some(Err(KeyRefusal::Expired));
        }
        if a.valid_until.is_some_and(|v| v <= now_s) {
            return Some(Err(KeyRefusal::RotatedOut));
        }
        Some(Ok(a.policy.clone()))
    }

    pub fn get(&self, id: &str) -> Option<KeyRecord> {
        self.snapshot.load().records.get(id).cloned()
    }

    pub fn list(&self) -> Vec<KeyRecord> {
        self.snapshot.load().records.values().cloned().collect()
    }

    /// Re-reads the records from Redis when their version moved (no-op without Redis).
    pub async fn sync(&self) {
        let Some(redis) = &self.redis else { return };
        let seen = self.version.load(Ordering::Acquire);
        if let Some((version, records)) = redis.keys_if_changed(seen).await {
            let mut map = BTreeMap::new();
            for json in records {
                match serde_json::from_str::<KeyRecord>(&json) {
                    Ok(r) => {
                        map.insert(r.id.clone(), r);
                    }
                    Err(_) => {
                        log::warn!(target: LOG_TARGET, "a managed key record in Redis does not parse; skipped")
                    }
                }
            }
            self.snapshot.store(Arc::new(Snapshot::build(map)));
            self.version.store(version, Ordering::Release);
        }
    }

    /// Stores `record` (a new one when `create`), then refreshes this instance's snapshot.
    pub async fn put(&self, record: KeyRecord, create: bool) -> Result<(), StoreError> {
        let _one = self.write.lock().await;
        let snap = self.snapshot.load_full();
        match (create, snap.records.contains_key(&record.id)) {
            (true, true) => return Err(StoreError::Exists),
            (false, false) => return Err(StoreError::NotFound),
            _ => {}
        }
        if let Some(redis) = &self.redis {
            let json = serde_json::to_string(&record)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            match redis.put_key(&record.id, &json, create).await {
                Some(true) => {}
                Some(false) => return Err(StoreError::Exists),
                None => return Err(StoreError::Unavailable("Redis is unreachable".into())),
            }
            let mut records = snap.records.clone();
            records.insert(record.id.clone(), record);
            self.snapshot.store(Arc::new(Snapshot::build(records)));
            return Ok(());
        }
        let mut records = snap.records.clone();
        records.insert(record.id.clone(), record);
        if let Some(state) = &self.state {
            state.save_keys(&records).map_err(StoreError::Unavailable)?;
        }
        self.snapshot.store(Arc::new(Snapshot::build(records)));
        Ok(())
    }

    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let _one = self.write.lock().await;
        let snap = self.snapshot.load_full();
        if !snap.records.contains_key(id) {
            return Err(StoreError::NotFound);
        }
        let mut records = snap.records.clone();
        records.remove(id);
        if let Some(redis) = &self.redis {
            if redis.delete_key(id).await.is_none() {
                return Err(StoreError::Unavailable("Redis is unreachable".into()));
            }
        } else if let Some(state) = &self.state {
            state.save_keys(&records).map_err(StoreError::Unavailable)?;
        }
        self.snapshot.store(Arc::new(Snapshot::build(records)));
        Ok(())
    }
}

/// A new secret: `llmgw-` and 32 random bytes in base64url, from the system's CSPRNG.
pub fn new_secret() -> Result<String, String> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no system randomness".to_string())?;
    Ok(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

// ---- the state file ----

/// The file's document: managed keys and budget spend.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateDoc {
    version: u32,
    #[serde(default)]
    keys: BTreeMap<String, KeyRecord>,
    /// `caller\u{0}period\u{0}window` → micro-USD.
    #[serde(default)]
    spend: BTreeMap<String, i64>,
}

/// The local state file (no Redis): read once at start, rewritten whole on each change.
pub struct StateFile {
    path: PathBuf,
    doc: Mutex<StateDoc>,
}

impl StateFile {
    /// Opens `path` (a missing file is an empty state). `Ok(None)` when no file is used.
    pub fn open(path: Option<&Path>) -> Result<Option<Arc<StateFile>>, String> {
        let Some(path) = path else { return Ok(None) };
        let doc = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<StateDoc>(&bytes).map_err(|e| {
                format!(
                    "auth.state_file: {} is corrupt ({e}); fix or remove it (a missing file starts empty)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateDoc {
                version: 1,
                ..StateDoc::default()
            },
            Err(e) => {
                return Err(format!(
                    "auth.state_file: cannot read {}: {e}",
                    path.display()
                ))
            }
        };
        if doc.version != 1 {
            return Err(format!(
                "auth.state_file: {} has version {}, expected 1",
                path.display(),
                doc.version
            ));
        }
        Ok(Some(Arc::new(StateFile {
            path: path.to_path_buf(),
            doc: Mutex::new(doc),
        })))
    }

    fn keys(&self) -> BTreeMap<String, KeyRecord> {
        self.doc.lock().map(|d| d.keys.clone()).unwrap_or_default()
    }

    pub fn spend(&self) -> BTreeMap<String, i64> {
        self.doc.lock().map(|d| d.spend.clone()).unwrap_or_default()
    }

    fn save_keys(&self, keys: &BTreeMap<String, KeyRecord>) -> Result<(), String> {
        let mut doc = self
            .doc
            .lock()
            .map_err(|_| "state lock poisoned".to_string())?;
        let before = std::mem::replace(&mut doc.keys, keys.clone());
        let result = self.write(&doc);
        if result.is_err() {
            doc.keys = before;
        }
        result
    }

    pub fn save_spend(&self, spend: BTreeMap<String, i64>) -> Result<(), String> {
        let mut doc = self
            .doc
            .lock()
            .map_err(|_| "state lock poisoned".to_string())?;
        doc.spend = spend;
        self.write(&doc)
    }

    /// Temp file beside the target, fsync, rename over it, fsync the folder: a crash leaves
    /// the old file or the new one, never half of one.
    fn write(&self, doc: &StateDoc) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(doc).map_err(|e| e.to_string())?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", self.path.display());
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(&bytes).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn record(id: &str, secret: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            models: None,
            rate_limit_rpm: None,
            tpm: None,
            budget: None,
            expires_at: None,
            created_at: 1,
            sha256: hex::encode(crate::auth::sha256(secret.as_bytes())),
            key_prefix: secret.chars().take(6).collect(),
            previous: None,
        }
    }

    #[tokio::test]
    async fn keys_persist_and_corruption_is_an_error() {
        let dir = std::env::temp_dir().join(format!("llmgw-keys-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("state.json");
        let _ = std::fs::remove_file(&path);
        let store = KeyStore::new(StateFile::open(Some(&path)).unwrap(), None);
        store.put(record("a", "secret-a-123"), true).await.unwrap();
        assert!(matches!(
            store.put(record("a", "x"), true).await,
            Err(StoreError::Exists)
        ));
        let again = KeyStore::new(StateFile::open(Some(&path)).unwrap(), None);
        let d = crate::auth::sha256(b"secret-a-123");
        assert_eq!(
            again.find(&d, 10).unwrap().unwrap().id,
            "a",
            "survives a restart"
        );
        std::fs::write(&path, b"{not json").unwrap();
        let err = StateFile::open(Some(&path)).err().unwrap();
        assert!(err.contains("is corrupt"), "{err}");
    }

    #[test]
    fn rotated_and_expired_keys_are_refused() {
        let mut r = record("a", "new-secret");
        r.previous = Some(Previous {
            sha256: hex::encode(crate::auth::sha256(b"old-secret")),
            valid_until: 100,
        });
        r.expires_at = Some(200);
        let s = Snapshot::build([("a".to_string(), r)].into_iter().collect());
        let store = KeyStore {
            snapshot: ArcSwap::from_pointee(s),
            state: None,
            redis: None,
            version: AtomicU64::new(0),
            write: tokio::sync::Mutex::new(()),
        };
        let old = crate::auth::sha256(b"old-secret");
        assert!(store.find(&old, 99).unwrap().is_ok());
        assert_eq!(
            store.find(&old, 100).unwrap().unwrap_err(),
            KeyRefusal::RotatedOut
        );
        let new = crate::auth::sha256(b"new-secret");
        assert!(store.find(&new, 150).unwrap().is_ok());
        assert_eq!(
            store.find(&new, 200).unwrap().unwrap_err(),
            KeyRefusal::Expired
        );
        assert!(new_secret().unwrap().starts_with(SECRET_PREFIX));
    }
}
