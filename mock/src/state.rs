//! Shared state: live tuning knobs, the request log, counters and queued faults.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::control::Fault;
use crate::http::{Head, Request};
use crate::responses::Store;
use crate::Cli;

/// Bodies up to this size are kept (and parsed lazily) in the request log.
pub(crate) const MAX_RECORDED_BODY: usize = 64 * 1024;
/// The request log is a ring of this many entries.
pub(crate) const MAX_RECORDS: usize = 1000;

/// Behaviour knobs that `POST /_mock/config` may change at runtime.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Tuning {
    pub(crate) latency_ms: u64,
    pub(crate) chunk_delay_ms: u64,
    pub(crate) chunks: u64,
    pub(crate) gemini_sse_lf: bool,
}

/// Lock-free live copy of [`Tuning`], read on every request.
pub(crate) struct LiveTuning {
    pub(crate) latency_ms: AtomicU64,
    pub(crate) chunk_delay_ms: AtomicU64,
    pub(crate) chunks: AtomicU64,
    pub(crate) gemini_sse_lf: AtomicBool,
}

impl LiveTuning {
    /// Starts from the command-line values.
    pub(crate) fn new(t: Tuning) -> Self {
        let live = LiveTuning {
            latency_ms: AtomicU64::new(0),
            chunk_delay_ms: AtomicU64::new(0),
            chunks: AtomicU64::new(1),
            gemini_sse_lf: AtomicBool::new(false),
        };
        live.set(t);
        live
    }

    /// Snapshot used for one request, so a concurrent config change cannot tear it.
    pub(crate) fn get(&self) -> Tuning {
        Tuning {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            chunk_delay_ms: self.chunk_delay_ms.load(Ordering::Relaxed),
            chunks: self.chunks.load(Ordering::Relaxed).max(1),
            gemini_sse_lf: self.gemini_sse_lf.load(Ordering::Relaxed),
        }
    }

    /// Replaces every knob.
    pub(crate) fn set(&self, t: Tuning) {
        self.latency_ms.store(t.latency_ms, Ordering::Relaxed);
        self.chunk_delay_ms
            .store(t.chunk_delay_ms, Ordering::Relaxed);
        self.chunks.store(t.chunks.max(1), Ordering::Relaxed);
        self.gemini_sse_lf.store(t.gemini_sse_lf, Ordering::Relaxed);
    }
}

/// Body of `POST /_mock/config`: any subset of the knobs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigPatch {
    pub(crate) latency_ms: Option<u64>,
    pub(crate) chunk_delay_ms: Option<u64>,
    pub(crate) chunks: Option<u64>,
    pub(crate) gemini_sse_lf: Option<bool>,
}

/// Body as kept in the log: small ones verbatim (parsed only when asked), big ones as a hash.
#[derive(Clone)]
pub(crate) enum RecordBody {
    Kept(Bytes),
    Hashed { len: usize, sha256: String },
}

/// One logged request; cheap to create (an `Arc` clone plus a small copy).
#[derive(Clone)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) head: Arc<Head>,
    pub(crate) body: RecordBody,
}

/// Everything the connections share.
pub(crate) struct State {
    pub(crate) cli: Cli,
    pub(crate) tuning: LiveTuning,
    pub(crate) records: Mutex<VecDeque<Record>>,
    pub(crate) faults: Mutex<Vec<Fault>>,
    pub(crate) seq: AtomicU64,
    pub(crate) next_conn: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) open_connections: AtomicI64,
    pub(crate) client_disconnects: AtomicU64,
    pub(crate) held: AtomicI64,
    pub(crate) release: watch::Sender<u64>,
    /// `endless` bodies being written now, and the bytes they wrote in all.
    pub(crate) endless_active: AtomicI64,
    pub(crate) endless_bytes: AtomicU64,
    /// `trickle` answers being written now.
    pub(crate) trickle_active: AtomicI64,
    /// The last body a hostile fault sent, with its content type (`GET /_mock/last_body`).
    pub(crate) last_body: Mutex<Option<(String, Bytes)>>,
    /// Responses API answers kept for `GET`/`previous_response_id` (`store: true`).
    pub(crate) responses: Mutex<Store>,
    /// Numbers every Responses API answer, so identical requests get distinct ids.
    pub(crate) response_seq: AtomicU64,
}

/// Locks a mutex, ignoring poisoning (the data stays usable for a test double).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Fresh state for a command line.
    pub(crate) fn new(cli: Cli) -> Self {
        State {
            tuning: LiveTuning::new(cli.defaults),
            cli,
            records: Mutex::new(VecDeque::with_capacity(MAX_RECORDS)),
            faults: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            next_conn: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open_connections: AtomicI64::new(0),
            client_disconnects: AtomicU64::new(0),
            held: AtomicI64::new(0),
            release: watch::channel(0).0,
            endless_active: AtomicI64::new(0),
            endless_bytes: AtomicU64::new(0),
            trickle_active: AtomicI64::new(0),
            last_body: Mutex::new(None),
            responses: Mutex::new(Store::default()),
            response_seq: AtomicU64::new(0),
        }
    }

    /// Appends a request to the bounded log.
    pub(crate) fn record(&self, req: &Request) {
        let body = if req.body.len() <= MAX_RECORDED_BODY {
            RecordBody::Kept(Bytes::copy_from_slice(&req.body))
        } else {
            RecordBody::Hashed {
                len: req.body.len(),
                sha256: hex::encode(Sha256::digest(&req.body)),
            }
        };
        let mut records = lock(&self.records);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if records.len() >= MAX_RECORDS {
            records.pop_front();
        }
        records.push_back(Record {
            seq,
            head: Arc::clone(&req.head),
            body,
        });
    }

    /// Takes the first queued fault matching `path`, consuming one use of it.
    pub(crate) fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        if faults.is_empty() {
            return None;
        }
        let i = faults.iter().position(|f| {
            f.path_contains
                .as_deref()
                .is_none_or(|needle| path.contains(needle))
        })?;
        let fault = faults.get_mut(i)?;
        let taken = fault.clone();
        if fault.count >= 0 {
            fault.count -= 1;
            if fault.count <= 0 {
                faults.remove(i);
            }
        }
        Some(taken)
    }

    /// Counts a client that went away before its answer was complete.
    pub(crate) fn disconnected(&self) {
        self.client_disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Wakes every held stream.
    pub(crate) fn release_all(&self) -> i64 {
        let held = self.held.load(Ordering::Relaxed);
        self.release
            .send_modify(|generation| *generation = generation.wrapping_add(1));
        held
    }

    /// Back to the state right after startup (open connections stay counted).
    pub(crate) fn reset(&self) {
        {
            let mut records = lock(&self.records);
            records.clear();
            self.seq.store(0, Ordering::Relaxed);
        }
        lock(&self.faults).clear();
        self.connections.store(0, Ordering::Relaxed);
        self.client_disconnects.store(0, Ordering::Relaxed);
        self.endless_bytes.store(0, Ordering::Relaxed);
        *lock(&self.last_body) = None;
        lock(&self.responses).clear();
        self.tuning.set(self.cli.defaults);
        self.release_all();
    }

    /// `GET /_mock/stats` body.
    pub(crate) fn stats(&self) -> Value {
        json!({
            "name": self.cli.name,
            "requests": self.seq.load(Ordering::Relaxed),
            "connections": self.connections.load(Ordering::Relaxed),
            "open_connections": self.open_connections.load(Ordering::Relaxed),
            "client_disconnects": self.client_disconnects.load(Ordering::Relaxed),
            "held": self.held.load(Ordering::Relaxed),
            "faults_pending": lock(&self.faults).len(),
            "endless_active": self.endless_active.load(Ordering::Relaxed),
            "endless_bytes": self.endless_bytes.load(Ordering::Relaxed),
            "trickle_active": self.trickle_active.load(Ordering::Relaxed),
            "responses_stored": lock(&self.responses).len(),
        })
    }

    /// `GET /_mock/requests` entries, oldest first, optionally filtered by path.
    pub(crate) fn records_json(&self, path_contains: Option<&str>) -> Vec<Value> {
        let snapshot: Vec<Record> = lock(&self.records).iter().cloned().collect();
        snapshot
            .iter()
            .filter(|r| path_contains.is_none_or(|p| r.head.path.contains(p)))
            .map(record_json)
            .collect()
    }
}

/// Renders one log entry; hashing and JSON parsing happen here, not on the request path.
pub(crate) fn record_json(r: &Record) -> Value {
    let h = &r.head;
    let mut headers = Map::new();
    for (name, value) in &h.headers {
        match headers.get_mut(name) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    let query: Map<String, Value> = h
        .query
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let (len, sha256, body) = match &r.body {
        RecordBody::Kept(b) => (
            b.len(),
            hex::encode(Sha256::digest(b)),
            serde_json::from_slice::<Value>(b).unwrap_or(Value::Null),
        ),
        RecordBody::Hashed { len, sha256 } => (*len, sha256.clone(), Value::Null),
    };
    json!({
        "seq": r.seq,
        "conn": h.conn,
        "method": h.method,
        "path": h.path,
        "query": query,
        "headers": headers,
        "body_len": len,
        "body_sha256": sha256,
        "body": body,
    })
}
