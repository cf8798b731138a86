//! `mock-provider`: a deterministic fake of the OpenAI and Gemini REST APIs.
//!
//! The gateway's tests, demo, benchmarks and load tests talk to this binary instead of the real
//! providers. It is a small hand-written HTTP/1.1 server (tokio + httparse) that records every
//! request and can inject faults, so tests can assert exactly what the gateway sent upstream
//! and how it reacts to slow, failing or vanishing providers.
//!
//! Control API (never recorded, never delayed):
//! `GET /health`, `GET|DELETE /_mock/requests`, `GET /_mock/stats`, `POST /_mock/reset`,
//! `GET|POST /_mock/config`, `GET|POST|DELETE /_mock/faults`, `POST /_mock/release`,
//! `GET /_mock/last_body`.
//!
//! Faults (`POST /_mock/faults`, see [`Fault`]) apply to the next `count` requests whose path
//! contains `path_contains`. Besides statuses, delays, drops, hangs, broken and held streams,
//! a *hostile mode* plays the upstreams a gateway must survive, on the OpenAI and Gemini routes,
//! streamed or not (`action`):
//!
//! - `endless`: 200 with the route's content type (or `content_type`) and a body that never
//!   ends: 64 KiB chunks of `a` (no newline) as fast as the peer takes them, until it closes
//!   (chunked; `framing: "close"` for a close-delimited body). `/_mock/stats` counts
//!   `endless_active` bodies and `endless_bytes` written.
//! - `trickle`: the route's normal, complete answer, `trickle_bytes` (default 1) bytes every
//!   `delay_ms` (default 50; no delay before the head). `trickle_active` in the stats.
//! - `garbage`: `status` (default 200) with the raw string `body` and `content_type` (default
//!   `text/html`); without `body`, `size_bytes` (default 1024) deterministic random bytes.
//! - `json_for_sse`: a stream was asked, but the answer is `200 application/json` with the whole
//!   non-streamed answer.
//! - `no_done`: the stream's events without the end marker: OpenAI's `data: [DONE]` is left
//!   out; Gemini's stream stops before the first chunk with a `finishReason`. `framing`:
//!   `chunked` (default, a clean final 0-chunk) or `close` (no length, no chunking, closed after
//!   the last event).
//! - `echo_key`: `status` (default 401) with an error body quoting the request's key (bearer,
//!   `x-goog-api-key` or `?key=`); a 401 also gets `WWW-Authenticate: Bearer realm="x",
//!   error="invalid_token", key="<key>"`. A string `body` has `{key}` replaced instead.
//! - `huge_header`: the normal answer plus an `X-Mock-Huge` header of `header_bytes` bytes
//!   (default 200 KiB).
//! - `size`: a real answer of the route (chat completion, embeddings, Gemini generate or embed)
//!   padded to exactly `size_bytes` bytes with a correct `Content-Length` (streams: `size_bytes`
//!   characters of content in `events` events, default the `chunks` setting).
//!
//! Shaping fields that apply to any fault's answer: `framing` (`length`, `chunked`, `close`),
//! `chunked: true` (same as `framing: "chunked"`), `chunk_bytes` (write the body in pieces of
//! that size, one chunk each when chunked), `content_type`, `header_bytes`. The last body sent
//! by a hostile action (not `endless`) is kept for `GET /_mock/last_body`, so a test can
//! compare what the client got with what the upstream sent.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::io::Write as _;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf as _, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Fixed `created` timestamp so answers are byte-for-byte reproducible.
const CREATED: u64 = 1_700_000_000;
/// Largest request head we buffer before answering 431.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body we accept before answering 413.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Bodies up to this size are kept (and parsed lazily) in the request log.
const MAX_RECORDED_BODY: usize = 64 * 1024;
/// The request log is a ring of this many entries.
const MAX_RECORDS: usize = 1000;
/// Upper bound for embedding dimensions, to keep answers small.
const MAX_DIMENSIONS: u64 = 4096;
/// How much pipelined input we buffer while waiting, before we stop reading the socket.
const MAX_PIPELINED: usize = 1024 * 1024;
/// Gemini 3's error when a replayed function call lost its thought signature.
const MISSING_SIGNATURE: &str =
    "Function call is missing a thought_signature in functionCall parts.";

/// `--help` text.
const USAGE: &str = "usage: mock-provider [--host 127.0.0.1] [--port 9000] [--latency-ms 0] \
[--chunk-delay-ms 0] [--chunks 5] [--require-key KEY] [--name NAME] [--threads 1] [--gemini-sse-lf]";

// ---------------------------------------------------------------------------------------------
// Command line and runtime configuration
// ---------------------------------------------------------------------------------------------

/// Behaviour knobs that `POST /_mock/config` may change at runtime.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
struct Tuning {
    latency_ms: u64,
    chunk_delay_ms: u64,
    chunks: u64,
    gemini_sse_lf: bool,
}

/// Parsed command line; `defaults` is what `POST /_mock/reset` restores.
#[derive(Clone, Debug)]
struct Cli {
    host: String,
    port: u16,
    threads: usize,
    require_key: Option<String>,
    name: String,
    defaults: Tuning,
}

/// Parses one numeric flag value with a readable error.
fn number<T: FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{flag}: invalid number {value:?}"))
}

/// Parses the command line; `Ok(None)` means `--help` was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Cli>, String> {
    let mut cli = Cli {
        host: "127.0.0.1".to_owned(),
        port: 9000,
        threads: 1,
        require_key: None,
        name: "mock".to_owned(),
        defaults: Tuning {
            latency_ms: 0,
            chunk_delay_ms: 0,
            chunks: 5,
            gemini_sse_lf: false,
        },
    };
    let mut port_given = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--gemini-sse-lf" => {
                cli.defaults.gemini_sse_lf = true;
                continue;
            }
            _ => {}
        }
        let (flag, value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), value.to_owned()),
            _ => {
                let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
                (arg, value)
            }
        };
        match flag.as_str() {
            "--host" => cli.host = value,
            "--port" => {
                cli.port = number(&flag, &value)?;
                port_given = true;
            }
            "--latency-ms" => cli.defaults.latency_ms = number(&flag, &value)?,
            "--chunk-delay-ms" => cli.defaults.chunk_delay_ms = number(&flag, &value)?,
            "--chunks" => cli.defaults.chunks = number::<u64>(&flag, &value)?.max(1),
            "--require-key" => cli.require_key = Some(value),
            "--name" => cli.name = value,
            "--threads" => cli.threads = number::<usize>(&flag, &value)?.max(1),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if !port_given {
        if let Ok(port) = std::env::var("MOCK_PORT") {
            cli.port = number("MOCK_PORT", &port)?;
        }
    }
    Ok(Some(cli))
}

/// Lock-free live copy of [`Tuning`], read on every request.
struct LiveTuning {
    latency_ms: AtomicU64,
    chunk_delay_ms: AtomicU64,
    chunks: AtomicU64,
    gemini_sse_lf: AtomicBool,
}

impl LiveTuning {
    /// Starts from the command-line values.
    fn new(t: Tuning) -> Self {
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
    fn get(&self) -> Tuning {
        Tuning {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            chunk_delay_ms: self.chunk_delay_ms.load(Ordering::Relaxed),
            chunks: self.chunks.load(Ordering::Relaxed).max(1),
            gemini_sse_lf: self.gemini_sse_lf.load(Ordering::Relaxed),
        }
    }

    /// Replaces every knob.
    fn set(&self, t: Tuning) {
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
struct ConfigPatch {
    latency_ms: Option<u64>,
    chunk_delay_ms: Option<u64>,
    chunks: Option<u64>,
    gemini_sse_lf: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Shared state: request log, counters, faults
// ---------------------------------------------------------------------------------------------

/// What a fault does besides (or instead of) answering a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FaultAction {
    /// Close the connection without answering.
    Drop,
    /// Never answer (until the peer hangs up).
    Hang,
    /// Send half of the answer (or two events of a stream), then close.
    BreakStream,
    /// Park the answer (after the first event of a stream) until `POST /_mock/release`.
    Hold,
    /// 200 and a body that never ends: 64 KiB chunks of `a` until the peer closes.
    Endless,
    /// The normal answer, `trickle_bytes` bytes every `delay_ms`.
    Trickle,
    /// `status` (200) with a raw `body` (or random bytes) and `content_type` (`text/html`).
    Garbage,
    /// A stream was asked: answer `200 application/json` with the whole answer instead.
    JsonForSse,
    /// A stream without its end (`[DONE]`, or Gemini's `finishReason` chunk).
    NoDone,
    /// `status` (401) whose body (and `WWW-Authenticate` on 401) quotes the request's key.
    EchoKey,
    /// The normal answer plus one `X-Mock-Huge` header of `header_bytes` (200 KiB).
    HugeHeader,
    /// A real answer of the route of exactly `size_bytes` bytes (streams: content chars).
    Size,
}

/// How a shaped answer's body is delimited (`framing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum BodyFraming {
    /// `Content-Length` (streams too: the events' total length).
    Length,
    /// `Transfer-Encoding: chunked`, ending with a clean 0-chunk.
    Chunked,
    /// Neither: the body ends when the connection closes.
    Close,
}

/// One queued fault, as posted to `/_mock/faults`.
///
/// Examples: `{"status": 500, "count": -1}`, `{"action": "endless", "path_contains":
/// "/chat/completions"}`, `{"action": "trickle", "trickle_bytes": 16, "delay_ms": 100}`,
/// `{"action": "garbage", "body": "<html>oops</html>", "content_type": "text/html"}`,
/// `{"action": "no_done", "framing": "close"}`, `{"action": "echo_key", "status": 500}`,
/// `{"action": "huge_header", "header_bytes": 204800}`, `{"action": "size", "size_bytes":
/// 1048576, "chunked": true, "chunk_bytes": 4096}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fault {
    /// Applies only to requests whose path contains this (every request when absent).
    #[serde(default)]
    path_contains: Option<String>,
    /// Uses left; negative: forever.
    #[serde(default = "one")]
    count: i64,
    /// Answer this status (with `body`, or a provider-shaped error) instead of the real answer;
    /// the status of `garbage`, `echo_key` and `endless`.
    #[serde(default)]
    status: Option<u16>,
    /// A JSON body, or a raw string (JSON-looking: `application/json`, else `text/plain`).
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    retry_after: Option<u64>,
    /// Delay before the answer (for `trickle`: between two pieces, default 50).
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    action: Option<FaultAction>,
    /// The answer's `Content-Type` instead of the usual one.
    #[serde(default)]
    content_type: Option<String>,
    /// `trickle`: bytes per piece (default 1).
    #[serde(default)]
    trickle_bytes: Option<usize>,
    /// How the body is delimited (`length`, `chunked`, `close`).
    #[serde(default)]
    framing: Option<BodyFraming>,
    /// Adds an `X-Mock-Huge` header of this many bytes (`huge_header`: default 200 KiB).
    #[serde(default)]
    header_bytes: Option<usize>,
    /// `size`: total body bytes (streams: content characters); `garbage`: random bytes.
    #[serde(default)]
    size_bytes: Option<usize>,
    /// `true`: chunked framing (same as `framing: "chunked"`).
    #[serde(default)]
    chunked: Option<bool>,
    /// Writes the body in pieces of this size (each its own chunk when chunked).
    #[serde(default)]
    chunk_bytes: Option<usize>,
    /// `size` on a stream: the number of content events (default: the `chunks` setting).
    #[serde(default)]
    events: Option<usize>,
}

/// Default fault count: apply once.
fn one() -> i64 {
    1
}

/// Body as kept in the log: small ones verbatim (parsed only when asked), big ones as a hash.
#[derive(Clone)]
enum RecordBody {
    Kept(Bytes),
    Hashed { len: usize, sha256: String },
}

/// One logged request; cheap to create (an `Arc` clone plus a small copy).
#[derive(Clone)]
struct Record {
    seq: u64,
    head: Arc<Head>,
    body: RecordBody,
}

/// Everything the connections share.
struct State {
    cli: Cli,
    tuning: LiveTuning,
    records: Mutex<VecDeque<Record>>,
    faults: Mutex<Vec<Fault>>,
    seq: AtomicU64,
    next_conn: AtomicU64,
    connections: AtomicU64,
    open_connections: AtomicI64,
    client_disconnects: AtomicU64,
    held: AtomicI64,
    release: watch::Sender<u64>,
    /// `endless` bodies being written now, and the bytes they wrote in all.
    endless_active: AtomicI64,
    endless_bytes: AtomicU64,
    /// `trickle` answers being written now.
    trickle_active: AtomicI64,
    /// The last body a hostile fault sent, with its content type (`GET /_mock/last_body`).
    last_body: Mutex<Option<(String, Bytes)>>,
}

/// Locks a mutex, ignoring poisoning (the data stays usable for a test double).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Fresh state for a command line.
    fn new(cli: Cli) -> Self {
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
        }
    }

    /// Appends a request to the bounded log.
    fn record(&self, req: &Request) {
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
    fn take_fault(&self, path: &str) -> Option<Fault> {
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
    fn disconnected(&self) {
        self.client_disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Wakes every held stream.
    fn release_all(&self) -> i64 {
        let held = self.held.load(Ordering::Relaxed);
        self.release
            .send_modify(|generation| *generation = generation.wrapping_add(1));
        held
    }

    /// Back to the state right after startup (open connections stay counted).
    fn reset(&self) {
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
        self.tuning.set(self.cli.defaults);
        self.release_all();
    }

    /// `GET /_mock/stats` body.
    fn stats(&self) -> Value {
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
        })
    }

    /// `GET /_mock/requests` entries, oldest first, optionally filtered by path.
    fn records_json(&self, path_contains: Option<&str>) -> Vec<Value> {
        let snapshot: Vec<Record> = lock(&self.records).iter().cloned().collect();
        snapshot
            .iter()
            .filter(|r| path_contains.is_none_or(|p| r.head.path.contains(p)))
            .map(record_json)
            .collect()
    }
}

/// Renders one log entry; hashing and JSON parsing happen here, not on the request path.
fn record_json(r: &Record) -> Value {
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

// ---------------------------------------------------------------------------------------------
// Startup
// ---------------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let cli = match parse_args(std::env::args().skip(1)) {
        Ok(Some(cli)) => cli,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("mock-provider: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mock-provider: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// Binds, announces the port on stdout, and serves until SIGTERM/SIGINT.
async fn run(cli: Cli) -> ExitCode {
    let listener = match TcpListener::bind((cli.host.as_str(), cli.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-provider: cannot bind {}:{}: {e}", cli.host, cli.port);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mock-provider: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown_signal();
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "mock-provider listening on {addr}");
        let _ = out.flush();
    }
    let state = Arc::new(State::new(cli));
    tokio::select! {
        () = accept_loop(listener, state) => {}
        () = shutdown => {}
    }
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT. Handlers are installed on call, not on first poll, so a
/// test that kills us right after reading the port line still gets a clean exit.
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Resolves on Ctrl-C where Unix signals are unavailable.
#[cfg(not(unix))]
fn shutdown_signal() -> impl Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Keeps a gauge right however the task that raised it ends.
struct Gauge<'a>(&'a AtomicI64);

impl<'a> Gauge<'a> {
    /// Raises the gauge until the guard drops.
    fn up(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    /// Lowers the gauge.
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps `open_connections` right however a connection task ends.
struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    /// Decrements the gauge.
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections forever, one task each.
async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Usually EMFILE under load: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = state.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        state.connections.fetch_add(1, Ordering::Relaxed);
        state.open_connections.fetch_add(1, Ordering::Relaxed);
        let guard = OpenGuard(Arc::clone(&state));
        tokio::spawn(async move {
            serve_connection(stream, id, &guard.0).await;
            drop(guard);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 connection handling
// ---------------------------------------------------------------------------------------------

/// The parts of a request that the log shares (behind an `Arc`) with the handler.
#[derive(Debug)]
struct Head {
    conn: u64,
    method: String,
    path: String,
    query: Vec<(String, String)>,
    /// Lowercase names, in arrival order.
    headers: Vec<(String, String)>,
}

impl Head {
    /// First header with this (lowercase) name.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Last query parameter with this name (decoded).
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A fully read request.
struct Request {
    head: Arc<Head>,
    body: Bytes,
    http10: bool,
    keep_alive: bool,
}

/// Result of reading from a connection.
enum Incoming {
    Request(Request),
    Closed,
    Reject(u16),
}

/// Head plus framing facts, before the body is read.
struct ParsedHead {
    len: usize,
    head: Head,
    http10: bool,
    keep_alive: bool,
    content_length: Option<usize>,
    chunked: bool,
    expect_continue: bool,
}

/// Parses a request head from `buf`; `Ok(None)` means more bytes are needed.
fn parse_head(buf: &[u8], conn: u64) -> Result<Option<ParsedHead>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(_) => return Err(400),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let http10 = req.version == Some(0);
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut content_length = None;
    let mut chunked = false;
    let mut expect_continue = false;
    let mut connection = String::new();
    for (name, value) in &headers {
        match name.as_str() {
            "content-length" => {
                let n: usize = value.trim().parse().map_err(|_| 400u16)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(400);
                }
                content_length = Some(n);
            }
            "transfer-encoding" => chunked |= value.to_ascii_lowercase().contains("chunked"),
            "expect" => expect_continue |= value.eq_ignore_ascii_case("100-continue"),
            "connection" => connection = value.to_ascii_lowercase(),
            _ => {}
        }
    }
    let keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let head = Head {
        conn,
        method: req.method.unwrap_or("GET").to_owned(),
        path: path.to_owned(),
        query: parse_query(query),
        headers,
    };
    Ok(Some(ParsedHead {
        len,
        head,
        http10,
        keep_alive,
        content_length,
        chunked,
        expect_continue,
    }))
}

/// An accepted socket plus its read buffer (which may hold pipelined requests).
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

/// The error for a peer that vanished mid-request.
fn eof() -> io::Error {
    io::ErrorKind::UnexpectedEof.into()
}

impl Conn {
    /// Reads more bytes; `false` on EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Reads the next request (head and body).
    async fn read_request(&mut self, conn: u64) -> io::Result<Incoming> {
        let parsed = loop {
            if !self.buf.is_empty() {
                match parse_head(&self.buf, conn) {
                    Ok(Some(parsed)) => break parsed,
                    Ok(None) if self.buf.len() > MAX_HEAD => return Ok(Incoming::Reject(431)),
                    Ok(None) => {}
                    Err(status) => return Ok(Incoming::Reject(status)),
                }
            }
            if !self.fill().await? {
                return Ok(Incoming::Closed);
            }
        };
        self.buf.advance(parsed.len);
        let has_body = parsed.chunked || parsed.content_length.unwrap_or(0) > 0;
        if parsed.content_length.unwrap_or(0) > MAX_BODY && !parsed.chunked {
            return Ok(Incoming::Reject(413));
        }
        if has_body && parsed.expect_continue && !parsed.http10 {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        let body = if parsed.chunked {
            match self.read_chunked().await? {
                Ok(body) => body,
                Err(status) => return Ok(Incoming::Reject(status)),
            }
        } else {
            self.read_exact_body(parsed.content_length.unwrap_or(0))
                .await?
        };
        Ok(Incoming::Request(Request {
            head: Arc::new(parsed.head),
            body,
            http10: parsed.http10,
            keep_alive: parsed.keep_alive,
        }))
    }

    /// Reads a Content-Length body.
    async fn read_exact_body(&mut self, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        self.buf.reserve(len.saturating_sub(self.buf.len()));
        while self.buf.len() < len {
            if !self.fill().await? {
                return Err(eof());
            }
        }
        Ok(self.buf.split_to(len).freeze())
    }

    /// Reads a chunked body; the inner `Err` is a status to answer with.
    async fn read_chunked(&mut self) -> io::Result<Result<Bytes, u16>> {
        let mut body = BytesMut::new();
        loop {
            let (skip, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                        return Ok(Err(400))
                    }
                    Ok(httparse::Status::Partial) => {
                        if !self.fill().await? {
                            return Err(eof());
                        }
                    }
                    Err(_) => return Ok(Err(400)),
                }
            };
            self.buf.advance(skip);
            if size == 0 {
                self.skip_trailers().await?;
                return Ok(Ok(body.freeze()));
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if body.len().saturating_add(size) > MAX_BODY {
                return Ok(Err(413));
            }
            while self.buf.len() < size + 2 {
                if !self.fill().await? {
                    return Err(eof());
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Ok(Err(400));
            }
            self.buf.advance(size + 2);
        }
    }

    /// Consumes trailer lines up to the blank line that ends a chunked body.
    async fn skip_trailers(&mut self) -> io::Result<()> {
        loop {
            match self.buf.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.buf.advance(2);
                    return Ok(());
                }
                Some(pos) => self.buf.advance(pos + 2),
                None if self.buf.len() > MAX_HEAD => return Err(eof()),
                None => {
                    if !self.fill().await? {
                        return Err(eof());
                    }
                }
            }
        }
    }

    /// Waits for `fut` while watching the socket; `false` if the client hung up first.
    async fn wait<F: Future>(&mut self, fut: F) -> bool {
        tokio::pin!(fut);
        loop {
            if self.buf.len() >= MAX_PIPELINED {
                fut.as_mut().await;
                return true;
            }
            self.buf.reserve(4096);
            tokio::select! {
                _ = fut.as_mut() => return true,
                read = self.stream.read_buf(&mut self.buf) => match read {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                },
            }
        }
    }

    /// Sleeps (if `ms > 0`) while watching for a hang-up.
    async fn sleep(&mut self, ms: u64) -> bool {
        ms == 0
            || self
                .wait(tokio::time::sleep(Duration::from_millis(ms)))
                .await
    }
}

/// Serves requests on one connection until it closes.
async fn serve_connection(stream: TcpStream, id: u64, state: &State) {
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(16 * 1024),
    };
    loop {
        let req = match conn.read_request(id).await {
            Ok(Incoming::Request(req)) => req,
            Ok(Incoming::Reject(status)) => {
                let reply = plain_error(status);
                let head = response_head(&reply, Framing::Length(reply_len(&reply)), false, false);
                let _ = write_full(&mut conn, head, &reply).await;
                return;
            }
            Ok(Incoming::Closed) | Err(_) => return,
        };
        match handle(&mut conn, state, req).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replies and writing them
// ---------------------------------------------------------------------------------------------

/// A response body: complete, or a list of SSE events written one by one.
enum Body {
    Full(Vec<u8>),
    /// `hold_after` = events sent before a `hold` fault parks the stream (1: OpenAI's role
    /// chunk or Gemini's first text piece, so a test sees exactly one event before release).
    Stream {
        events: Vec<Vec<u8>>,
        hold_after: usize,
    },
}

/// A response before it is framed and written.
struct Reply {
    status: u16,
    content_type: Cow<'static, str>,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

impl Reply {
    /// A complete response.
    fn full(status: u16, content_type: impl Into<Cow<'static, str>>, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: Body::Full(body),
        }
    }

    /// An SSE stream.
    fn stream(events: Vec<Vec<u8>>, hold_after: usize) -> Reply {
        Reply {
            status: 200,
            content_type: Cow::Borrowed("text/event-stream"),
            headers: Vec::new(),
            body: Body::Stream { events, hold_after },
        }
    }
}

/// A JSON response.
fn json_reply(status: u16, v: &Value) -> Reply {
    Reply::full(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// Bare error for requests we could not even parse.
fn plain_error(status: u16) -> Reply {
    json_reply(
        status,
        &json!({"error": {"message": reason(status), "code": status}}),
    )
}

/// Length of a complete body (0 for streams).
fn reply_len(reply: &Reply) -> usize {
    match &reply.body {
        Body::Full(b) => b.len(),
        Body::Stream { .. } => 0,
    }
}

/// How a response body is delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Standard reason phrases for the statuses we produce.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// Serialises the status line and headers.
fn response_head(reply: &Reply, framing: Framing, keep_alive: bool, http10: bool) -> Vec<u8> {
    let mut h = String::with_capacity(192);
    h.push_str("HTTP/1.1 ");
    h.push_str(&reply.status.to_string());
    h.push(' ');
    h.push_str(reason(reply.status));
    h.push_str("\r\nContent-Type: ");
    h.push_str(&reply.content_type);
    h.push_str("\r\n");
    match framing {
        Framing::Length(n) => {
            h.push_str("Content-Length: ");
            h.push_str(&n.to_string());
            h.push_str("\r\n");
        }
        Framing::Chunked => h.push_str("Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"),
        Framing::UntilClose => h.push_str("Cache-Control: no-cache\r\n"),
    }
    if !keep_alive {
        h.push_str("Connection: close\r\n");
    } else if http10 {
        h.push_str("Connection: keep-alive\r\n");
    }
    for (name, value) in &reply.headers {
        h.push_str(name);
        h.push_str(": ");
        h.push_str(value);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Writes head and complete body with one syscall.
async fn write_full(conn: &mut Conn, mut head: Vec<u8>, reply: &Reply) -> io::Result<()> {
    if let Body::Full(body) = &reply.body {
        head.extend_from_slice(body);
    }
    conn.stream.write_all(&head).await
}

/// Writes one SSE event (chunk-framed unless the client spoke HTTP/1.0).
async fn write_event(conn: &mut Conn, event: &[u8], framing: Framing) -> io::Result<()> {
    if framing != Framing::Chunked {
        return conn.stream.write_all(event).await;
    }
    let mut frame = Vec::with_capacity(event.len() + 12);
    frame.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
    frame.extend_from_slice(event);
    frame.extend_from_slice(b"\r\n");
    conn.stream.write_all(&frame).await
}

/// Parks until `POST /_mock/release` (`true`) or a client hang-up (`false`).
async fn hold(conn: &mut Conn, state: &State, mut rx: watch::Receiver<u64>) -> bool {
    let released = conn.wait(rx.changed()).await;
    state.held.fetch_sub(1, Ordering::Relaxed);
    released
}

/// Subscribes to releases before anything is written, so a quick release is never missed.
fn start_hold(state: &State) -> watch::Receiver<u64> {
    state.held.fetch_add(1, Ordering::Relaxed);
    state.release.subscribe()
}

/// Handles one request; `Ok(true)` keeps the connection open.
async fn handle(conn: &mut Conn, state: &State, req: Request) -> io::Result<bool> {
    let path = req.head.path.as_str();
    if path == "/health" || path.starts_with("/_mock/") {
        let mut reply = if path == "/health" {
            json_reply(200, &json!({"status": "ok"}))
        } else {
            control(state, &req)
        };
        reply.headers.push(("X-Mock-Name", state.cli.name.clone()));
        let head = response_head(
            &reply,
            Framing::Length(reply_len(&reply)),
            req.keep_alive,
            req.http10,
        );
        write_full(conn, head, &reply).await?;
        return Ok(req.keep_alive);
    }
    state.record(&req);
    let fault = state.take_fault(path);
    let gemini = is_gemini(&req.head);
    let action = fault.as_ref().and_then(|f| f.action);
    let mut reply = match (&fault, action) {
        (Some(f), Some(a)) if a.is_hostile() => hostile_reply(state, &req, f, a, gemini),
        (
            Some(
                f @ Fault {
                    status: Some(status),
                    ..
                },
            ),
            _,
        ) => fault_reply(f, *status, gemini),
        _ => auth_failure(state, &req, gemini)
            .unwrap_or_else(|| route(state, &req, RouteOpts::default())),
    };
    // Lets load-balancing tests see which upstream answered.
    reply.headers.push(("X-Mock-Name", state.cli.name.clone()));
    if let Some(f) = &fault {
        if let Some(secs) = f.retry_after {
            reply.headers.push(("Retry-After", secs.to_string()));
        }
        if let Some(ct) = &f.content_type {
            reply.content_type = Cow::Owned(ct.clone());
        }
        let huge = f
            .header_bytes
            .or((action == Some(FaultAction::HugeHeader)).then_some(200 * 1024));
        if let Some(n) = huge {
            reply.headers.push(("X-Mock-Huge", "h".repeat(n)));
        }
    }
    let tuning = state.tuning.get();
    // For `trickle`, `delay_ms` is the pause between pieces, not before the answer.
    let delay = match action {
        Some(FaultAction::Trickle) => 0,
        _ => fault.as_ref().and_then(|f| f.delay_ms).unwrap_or(0),
    };
    if !conn.sleep(tuning.latency_ms).await || !conn.sleep(delay).await {
        state.disconnected();
        return Ok(false);
    }
    let sent = match (action, &fault) {
        (Some(FaultAction::Drop), _) => return Ok(false),
        (Some(FaultAction::Hang), _) => {
            conn.wait(std::future::pending::<()>()).await;
            state.disconnected();
            return Ok(false);
        }
        (Some(FaultAction::Endless), Some(f)) => send_endless(conn, state, &req, &reply, f).await,
        (_, Some(f)) if f.shapes() => send_shaped(conn, state, &req, reply, f, tuning).await,
        _ => send(conn, state, &req, reply, action, tuning).await,
    };
    match sent {
        Ok(keep) => Ok(keep),
        Err(_) => {
            state.disconnected();
            Ok(false)
        }
    }
}

impl FaultAction {
    /// The hostile-mode actions, whose answer [`hostile_reply`] builds.
    fn is_hostile(self) -> bool {
        !matches!(
            self,
            FaultAction::Drop | FaultAction::Hang | FaultAction::BreakStream | FaultAction::Hold
        )
    }
}

impl Fault {
    /// Whether the answer is written by [`send_shaped`] (hostile actions or shaping fields).
    fn shapes(&self) -> bool {
        match self.action {
            Some(a) if !a.is_hostile() => false,
            Some(_) => true,
            None => self.framing.is_some() || self.chunked.is_some() || self.chunk_bytes.is_some(),
        }
    }

    /// The framing asked for, `chunked: true` included.
    fn body_framing(&self) -> Option<BodyFraming> {
        self.framing
            .or((self.chunked == Some(true)).then_some(BodyFraming::Chunked))
    }
}

/// The key a request carries: bearer token, `x-goog-api-key`, `?key=` or `x-openai-api-key`.
fn request_key(head: &Head) -> String {
    let bearer = head.header("authorization").map(|v| {
        let v = v.trim();
        match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => v,
        }
    });
    bearer
        .or_else(|| head.header("x-goog-api-key"))
        .or_else(|| head.query("key"))
        .or_else(|| head.header("x-openai-api-key"))
        .unwrap_or_default()
        .to_owned()
}

/// Whether the request asked for a stream (Gemini's stream method or OpenAI's `stream: true`).
fn wants_stream(req: &Request) -> bool {
    if let Some((_, method)) = gemini_target(&req.head.path) {
        return method == "streamGenerateContent";
    }
    serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        == Some(true)
}

/// Deterministic bytes of every value, newlines and invalid UTF-8 included (xorshift64).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The answer of a hostile-mode fault (see the module doc).
fn hostile_reply(
    state: &State,
    req: &Request,
    f: &Fault,
    action: FaultAction,
    gemini: bool,
) -> Reply {
    let normal = |opts: RouteOpts| match f.status {
        Some(status) => fault_reply(f, status, gemini),
        None => route(state, req, opts),
    };
    match action {
        FaultAction::Garbage => {
            let body = match &f.body {
                Some(Value::String(raw)) => raw.clone().into_bytes(),
                Some(other) => serde_json::to_vec(other).unwrap_or_default(),
                None => random_bytes(f.size_bytes.unwrap_or(1024)),
            };
            Reply::full(f.status.unwrap_or(200), "text/html", body)
        }
        FaultAction::EchoKey => echo_key_reply(f, &request_key(&req.head), gemini),
        FaultAction::Endless => {
            let ct = if wants_stream(req) {
                "text/event-stream"
            } else {
                "application/json"
            };
            Reply::full(f.status.unwrap_or(200), ct, Vec::new())
        }
        FaultAction::JsonForSse => route(
            state,
            req,
            RouteOpts {
                force_full: true,
                ..RouteOpts::default()
            },
        ),
        FaultAction::NoDone => {
            let mut reply = route(state, req, RouteOpts::default());
            if let Body::Stream { events, .. } = &mut reply.body {
                if gemini {
                    let end = events.iter().position(|e| contains(e, b"\"finishReason\""));
                    events.truncate(end.unwrap_or(events.len()));
                } else {
                    events.retain(|e| !e.starts_with(b"data: [DONE]"));
                }
            }
            reply
        }
        FaultAction::Size => route(
            state,
            req,
            RouteOpts {
                size: Some(f.size_bytes.unwrap_or(64 * 1024)),
                events: f.events,
                ..RouteOpts::default()
            },
        ),
        FaultAction::Trickle
        | FaultAction::HugeHeader
        | FaultAction::Drop
        | FaultAction::Hang
        | FaultAction::BreakStream
        | FaultAction::Hold => normal(RouteOpts::default()),
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An upstream that quotes the caller's key back in its error (and challenge header).
fn echo_key_reply(f: &Fault, key: &str, gemini: bool) -> Reply {
    let status = f.status.unwrap_or(401);
    let mut reply = match &f.body {
        Some(Value::String(raw)) => Reply::full(
            status,
            "application/json",
            raw.replace("{key}", key).into_bytes(),
        ),
        Some(other) => json_reply(status, other),
        None if gemini => gemini_error(
            status,
            &format!(
                "API key not valid: {key}. Please pass a valid API key. (x-goog-api-key: {key})"
            ),
        ),
        None => json_reply(
            status,
            &json!({"error": {
                "message": format!("Incorrect API key provided: {key}. You passed Authorization: Bearer {key}"),
                "type": if status == 401 { "invalid_request_error" } else { "server_error" },
                "param": null,
                "code": if status == 401 { "invalid_api_key" } else { "echo" },
                "key": key,
            }}),
        ),
    };
    if status == 401 {
        reply.headers.push((
            "WWW-Authenticate",
            format!("Bearer realm=\"x\", error=\"invalid_token\", key=\"{key}\""),
        ));
    }
    reply
}

/// `endless`: the head, then 64 KiB chunks of `a` until the peer goes away.
async fn send_endless(
    conn: &mut Conn,
    state: &State,
    req: &Request,
    reply: &Reply,
    f: &Fault,
) -> io::Result<bool> {
    const PIECE: usize = 64 * 1024;
    let framing = match f.framing {
        Some(BodyFraming::Close) => Framing::UntilClose,
        _ if req.http10 => Framing::UntilClose,
        _ => Framing::Chunked,
    };
    let _active = Gauge::up(&state.endless_active);
    conn.stream
        .write_all(&response_head(reply, framing, false, req.http10))
        .await?;
    let mut frame = Vec::with_capacity(PIECE + 16);
    if framing == Framing::Chunked {
        frame.extend_from_slice(format!("{PIECE:x}\r\n").as_bytes());
    }
    frame.resize(frame.len() + PIECE, b'a');
    if framing == Framing::Chunked {
        frame.extend_from_slice(b"\r\n");
    }
    loop {
        conn.stream.write_all(&frame).await?;
        state
            .endless_bytes
            .fetch_add(PIECE as u64, Ordering::Relaxed);
    }
}

/// Writes a hostile or shaped answer: framing, piece sizes and trickling as the fault says.
async fn send_shaped(
    conn: &mut Conn,
    state: &State,
    req: &Request,
    reply: Reply,
    f: &Fault,
    tuning: Tuning,
) -> io::Result<bool> {
    let Reply {
        status,
        content_type,
        headers,
        body,
    } = reply;
    let (all, events) = match body {
        Body::Full(b) => (Bytes::from(b), None),
        Body::Stream { events, .. } => {
            let lens: Vec<usize> = events.iter().map(Vec::len).collect();
            (Bytes::from(events.concat()), Some(lens))
        }
    };
    if f.action.is_some_and(FaultAction::is_hostile) {
        *lock(&state.last_body) = Some((content_type.to_string(), all.clone()));
    }
    let framing = match (f.body_framing(), events.is_some()) {
        (Some(BodyFraming::Length), _) => Framing::Length(all.len()),
        (Some(BodyFraming::Close), _) => Framing::UntilClose,
        (Some(BodyFraming::Chunked), _) | (None, true) if req.http10 => Framing::UntilClose,
        (Some(BodyFraming::Chunked), _) | (None, true) => Framing::Chunked,
        (None, false) => Framing::Length(all.len()),
    };
    let keep_alive = req.keep_alive && framing != Framing::UntilClose;
    let head = Reply {
        status,
        content_type,
        headers,
        body: Body::Full(Vec::new()),
    };
    conn.stream
        .write_all(&response_head(&head, framing, keep_alive, req.http10))
        .await?;
    if f.action == Some(FaultAction::Trickle) {
        let _active = Gauge::up(&state.trickle_active);
        let every = f.delay_ms.unwrap_or(50);
        for (k, piece) in all.chunks(f.trickle_bytes.unwrap_or(1).max(1)).enumerate() {
            if k > 0 && !conn.sleep(every).await {
                state.disconnected();
                return Ok(false);
            }
            write_event(conn, piece, framing).await?;
        }
    } else if let Some(n) = f.chunk_bytes {
        for piece in all.chunks(n.max(1)) {
            write_event(conn, piece, framing).await?;
            tokio::task::yield_now().await;
        }
    } else if let Some(lens) = events {
        let mut at = 0;
        for (i, len) in lens.into_iter().enumerate() {
            if i > 0 && !conn.sleep(tuning.chunk_delay_ms).await {
                state.disconnected();
                return Ok(false);
            }
            write_event(conn, &all[at..at + len], framing).await?;
            at += len;
        }
    } else if !all.is_empty() {
        write_event(conn, &all, framing).await?;
    }
    match framing {
        Framing::Chunked => conn.stream.write_all(b"0\r\n\r\n").await?,
        Framing::UntilClose => {
            conn.stream.shutdown().await?;
            return Ok(false);
        }
        Framing::Length(_) => {}
    }
    Ok(keep_alive)
}

/// Writes a reply, applying `break_stream`/`hold` faults; `Ok(true)` keeps the connection.
async fn send(
    conn: &mut Conn,
    state: &State,
    req: &Request,
    reply: Reply,
    action: Option<FaultAction>,
    tuning: Tuning,
) -> io::Result<bool> {
    let Body::Stream { events, hold_after } = &reply.body else {
        let len = reply_len(&reply);
        if action == Some(FaultAction::Hold) {
            let rx = start_hold(state);
            if !hold(conn, state, rx).await {
                state.disconnected();
                return Ok(false);
            }
        }
        let mut head = response_head(&reply, Framing::Length(len), req.keep_alive, req.http10);
        if action == Some(FaultAction::BreakStream) {
            if let Body::Full(body) = &reply.body {
                head.extend_from_slice(&body[..body.len() / 2]);
            }
            conn.stream.write_all(&head).await?;
            return Ok(false);
        }
        write_full(conn, head, &reply).await?;
        return Ok(req.keep_alive);
    };
    let framing = if req.http10 {
        Framing::UntilClose
    } else {
        Framing::Chunked
    };
    let keep_alive = req.keep_alive && framing == Framing::Chunked;
    let mut rx = (action == Some(FaultAction::Hold)).then(|| start_hold(state));
    let hold_at = (*hold_after).clamp(1, events.len().max(1));
    conn.stream
        .write_all(&response_head(&reply, framing, keep_alive, req.http10))
        .await?;
    // Index `events.len()` stands for the terminating chunk.
    for i in 0..=events.len() {
        if action == Some(FaultAction::BreakStream) && i == 2 {
            return Ok(false);
        }
        let resumed = match rx.take_if(|_| i == hold_at) {
            Some(rx) => hold(conn, state, rx).await,
            None => i == 0 || conn.sleep(tuning.chunk_delay_ms).await,
        };
        if !resumed {
            state.disconnected();
            return Ok(false);
        }
        match events.get(i) {
            Some(event) => write_event(conn, event, framing).await?,
            None if framing == Framing::Chunked => conn.stream.write_all(b"0\r\n\r\n").await?,
            None => return Ok(false),
        }
    }
    if let Some(rx) = rx {
        // Never reached the hold point (cannot happen with clamping), but keep `held` balanced.
        drop(rx);
        state.held.fetch_sub(1, Ordering::Relaxed);
    }
    Ok(keep_alive)
}

// ---------------------------------------------------------------------------------------------
// Control API
// ---------------------------------------------------------------------------------------------

/// Answers `/_mock/*`.
fn control(state: &State, req: &Request) -> Reply {
    let head = &req.head;
    let ok = || json_reply(200, &json!({"ok": true}));
    match (head.method.as_str(), head.path.as_str()) {
        ("GET", "/_mock/requests") => json_reply(
            200,
            &json!({"requests": state.records_json(head.query("path_contains"))}),
        ),
        ("DELETE", "/_mock/requests") => {
            lock(&state.records).clear();
            ok()
        }
        ("GET", "/_mock/stats") => json_reply(200, &state.stats()),
        ("POST", "/_mock/reset") => {
            state.reset();
            ok()
        }
        ("GET", "/_mock/config") => json_reply(200, &json!(state.tuning.get())),
        ("POST", "/_mock/config") => {
            match serde_json::from_slice::<ConfigPatch>(non_empty(&req.body)) {
                Ok(patch) => {
                    let mut t = state.tuning.get();
                    t.latency_ms = patch.latency_ms.unwrap_or(t.latency_ms);
                    t.chunk_delay_ms = patch.chunk_delay_ms.unwrap_or(t.chunk_delay_ms);
                    t.chunks = patch.chunks.unwrap_or(t.chunks).max(1);
                    t.gemini_sse_lf = patch.gemini_sse_lf.unwrap_or(t.gemini_sse_lf);
                    state.tuning.set(t);
                    json_reply(200, &json!(t))
                }
                Err(e) => control_error(&e.to_string()),
            }
        }
        ("GET", "/_mock/faults") => json_reply(200, &json!({"faults": *lock(&state.faults)})),
        ("POST", "/_mock/faults") => match parse_faults(&req.body) {
            Ok(new) => {
                let mut faults = lock(&state.faults);
                faults.extend(new);
                json_reply(200, &json!({"ok": true, "pending": faults.len()}))
            }
            Err(e) => control_error(&e),
        },
        ("DELETE", "/_mock/faults") => {
            lock(&state.faults).clear();
            ok()
        }
        ("POST", "/_mock/release") => json_reply(200, &json!({"released": state.release_all()})),
        ("GET", "/_mock/last_body") => match lock(&state.last_body).clone() {
            Some((content_type, body)) => Reply::full(200, content_type, body.to_vec()),
            None => json_reply(404, &json!({"error": "no hostile answer sent yet"})),
        },
        _ => json_reply(404, &json!({"error": "unknown mock control route"})),
    }
}

/// Treats an empty control body as `{}`.
fn non_empty(body: &[u8]) -> &[u8] {
    if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    }
}

/// 400 for a malformed control request.
fn control_error(message: &str) -> Reply {
    json_reply(400, &json!({"error": message}))
}

/// Accepts `{"faults":[...]}`, a bare array, or a single fault object.
fn parse_faults(body: &[u8]) -> Result<Vec<Fault>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let list = match v {
        Value::Object(mut o) if o.contains_key("faults") => o.remove("faults").unwrap_or_default(),
        Value::Array(_) => v,
        other => Value::Array(vec![other]),
    };
    serde_json::from_value(list).map_err(|e| e.to_string())
}

/// The answer a status fault produces.
fn fault_reply(fault: &Fault, status: u16, gemini: bool) -> Reply {
    match &fault.body {
        Some(Value::String(raw)) => {
            let json_like = raw.trim_start().starts_with(['{', '[']);
            let ct = if json_like {
                "application/json"
            } else {
                "text/plain"
            };
            Reply::full(status, ct, raw.clone().into_bytes())
        }
        Some(other) => json_reply(status, other),
        None if gemini => gemini_error(status, &format!("mock fault {status}")),
        None => {
            let (kind, code) = match status {
                429 => ("requests", Value::from("rate_limit_exceeded")),
                500..=599 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json_reply(
                status,
                &json!({"error": {"message": format!("mock fault {status}"), "type": kind, "param": null, "code": code}}),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routing and auth
// ---------------------------------------------------------------------------------------------

/// Splits `/{v1|v1beta}/models/{model}:{method}` (tolerating `models/models/x` and `%3A`).
fn gemini_target(path: &str) -> Option<(String, String)> {
    let rest = path
        .strip_prefix("/v1beta/")
        .or_else(|| path.strip_prefix("/v1/"))?;
    let rest = rest
        .strip_prefix("models/")
        .or_else(|| rest.strip_prefix("models%2F"))?;
    let rest = percent_decode(rest, false);
    let (model, method) = rest.rsplit_once(':')?;
    let model = model.strip_prefix("models/").unwrap_or(model);
    if model.is_empty() || method.is_empty() {
        return None;
    }
    Some((model.to_owned(), method.to_owned()))
}

/// Whether a request speaks Gemini (for auth and default fault bodies).
fn is_gemini(head: &Head) -> bool {
    head.path.starts_with("/v1beta/")
        || gemini_target(&head.path).is_some()
        || head.header("x-goog-api-key").is_some()
        || head.query("key").is_some()
}

/// With `--require-key`, the provider-specific rejection of a wrong or missing key.
fn auth_failure(state: &State, req: &Request, gemini: bool) -> Option<Reply> {
    let key = state.cli.require_key.as_deref()?;
    let head = &req.head;
    if gemini {
        let got = head.header("x-goog-api-key").or_else(|| head.query("key"));
        (got != Some(key))
            .then(|| gemini_error(400, "API key not valid. Please pass a valid API key."))
    } else if head.path.starts_with("/v1/") {
        let got = head
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        (got != Some(key)).then(|| {
            json_reply(
                401,
                &json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            )
        })
    } else {
        None
    }
}

/// How a hostile fault bends the route's own answer.
#[derive(Clone, Copy, Debug, Default)]
struct RouteOpts {
    /// Answer a stream request with the whole non-streamed answer (`json_for_sse`).
    force_full: bool,
    /// Pad the answer to this many bytes (streams: content characters) (`size`).
    size: Option<usize>,
    /// With `size` on a stream: the number of content events.
    events: Option<usize>,
}

/// Dispatches a recorded request to its fake endpoint.
fn route(state: &State, req: &Request, opts: RouteOpts) -> Reply {
    let head = &req.head;
    if let Some((model, method)) = gemini_target(&head.path) {
        return gemini_route(state, req, &model, &method, opts);
    }
    match (head.method.as_str(), head.path.as_str()) {
        ("POST", "/v1/chat/completions") => openai_chat(state, req, opts),
        ("POST", "/v1/embeddings") => openai_embeddings(req, opts),
        ("GET", "/v1/models" | "/v1beta/models") => model_list(),
        (method, path) if path.starts_with("/v1/") || path.starts_with("/v1beta/") => json_reply(
            200,
            &json!({"object": "mock.echo", "method": method, "path": path, "body_bytes": req.body.len()}),
        ),
        (_, path) => json_reply(
            404,
            &json!({"error": {"message": format!("Unknown request URL: {path}"), "type": "invalid_request_error", "param": null, "code": "unknown_url"}}),
        ),
    }
}

/// `GET /v1/models`.
fn model_list() -> Reply {
    let data: Vec<Value> = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": CREATED, "owned_by": "mock"}))
        .collect();
    json_reply(200, &json!({"object": "list", "data": data}))
}

// ---------------------------------------------------------------------------------------------
// Deterministic helpers shared by both APIs
// ---------------------------------------------------------------------------------------------

/// First 8 hex digits of the body's SHA-256, for reproducible ids.
fn short_hash(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    hex::encode(&digest[..4])
}

/// The first 64 characters (not bytes) of a text.
fn first64(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Token estimate used everywhere: one token per 4 characters, rounded up.
fn tokens_for_chars(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

/// Completion token estimate: whitespace-separated words.
fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits text into `n` pieces of roughly equal character count (fewer if the text is short).
fn split_even(text: &str, n: usize) -> Vec<&str> {
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
fn embed(text: &str, dims: usize) -> Vec<f32> {
    EmbedStream::new(text).take(dims).collect()
}

/// The endless sequence whose first `dims` values are [`embed`]`(text, dims)`.
struct EmbedStream<'a> {
    text: &'a str,
    block: u32,
    values: [f32; 8],
    next: usize,
}

impl<'a> EmbedStream<'a> {
    /// Starts at the first value.
    fn new(text: &'a str) -> Self {
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
fn sized_embeddings(
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
fn float(f: f32) -> Value {
    f.to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

/// [`embed`] as a JSON array.
fn embed_json(text: &str, dims: usize) -> Value {
    Value::Array(embed(text, dims).into_iter().map(float).collect())
}

/// Decodes `%XX` escapes (and `+` in query strings).
fn percent_decode(s: &str, plus_is_space: bool) -> Cow<'_, str> {
    let plus = plus_is_space && s.contains('+');
    if !plus && !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let hex_val = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                if let (Some(hi), Some(lo)) = (hex_val(bytes.get(i + 1)), hex_val(bytes.get(i + 2)))
                {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                out.push(b);
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Parses `a=1&b=two` into decoded pairs.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(k, true).into_owned(),
                percent_decode(v, true).into_owned(),
            )
        })
        .collect()
}

/// Wraps a JSON value as one SSE event with the given separator.
fn sse_event(v: &Value, separator: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(separator.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// OpenAI
// ---------------------------------------------------------------------------------------------

/// OpenAI's 400 shape.
fn openai_invalid(message: &str, param: Option<&str>) -> Reply {
    json_reply(
        400,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}}),
    )
}

/// OpenAI's answer to a body that is not JSON.
fn openai_bad_json() -> Reply {
    openai_invalid(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        None,
    )
}

/// Text of an OpenAI message `content` (string, or the text parts of an array, space-joined).
fn openai_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Characters of text in an OpenAI message `content` (separators not counted).
fn openai_text_chars(content: &Value) -> usize {
    match content {
        Value::String(s) => s.chars().count(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| t.chars().count())
            .sum(),
        _ => 0,
    }
}

/// What the fake assistant says.
#[derive(Debug, PartialEq)]
enum ChatAnswer<'a> {
    Text(String),
    ToolCall(&'a str),
}

/// The facts of a chat request that shape the answer.
#[derive(Debug)]
struct ChatPlan<'a> {
    model: &'a str,
    answer: ChatAnswer<'a>,
    prompt_tokens: u64,
    stream: bool,
    include_usage: bool,
    /// Completion tokens to report instead of counting the answer's words (`size`).
    completion_words: Option<u64>,
}

/// Validates a chat request and decides the answer; `Err` is (param, message).
fn chat_plan(body: &Value) -> Result<ChatPlan<'_>, (Option<&'static str>, String)> {
    let obj = body.as_object().ok_or((
        None,
        "Invalid type for request body: expected an object.".to_owned(),
    ))?;
    let model = obj.get("model").and_then(Value::as_str).ok_or((
        Some("model"),
        "you must provide a model parameter".to_owned(),
    ))?;
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err((Some("messages"), "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".to_owned())),
        _ => return Err((Some("messages"), "Missing required parameter: 'messages'.".to_owned())),
    };
    let mut chars = 0;
    let mut last_user = None;
    let mut last_role = "";
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
            (
                Some("messages"),
                format!("Missing required parameter: 'messages[{i}].role'."),
            )
        })?;
        let content = m.get("content").unwrap_or(&Value::Null);
        chars += openai_text_chars(content);
        if role == "user" {
            last_user = Some(content);
        }
        last_role = role;
    }
    let first_tool = obj
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("tool")
        });
    let answer = match (last_role, first_tool) {
        ("tool", _) => {
            let content = messages.last().and_then(|m| m.get("content"));
            let text = content.map(openai_text).unwrap_or_default();
            ChatAnswer::Text(format!("Mock saw tool result: {}", first64(&text)))
        }
        ("user", Some(name)) => ChatAnswer::ToolCall(name),
        _ => {
            let text = last_user.map(openai_text).unwrap_or_default();
            ChatAnswer::Text(format!("Mock reply to: {}", first64(&text)))
        }
    };
    Ok(ChatPlan {
        model,
        answer,
        prompt_tokens: tokens_for_chars(chars),
        stream: obj.get("stream").and_then(Value::as_bool) == Some(true),
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true),
        completion_words: None,
    })
}

/// The single tool call the fake assistant makes.
fn openai_tool_call(name: &str) -> Value {
    json!({"id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": "{\"mock\":true}"}})
}

/// OpenAI usage object.
fn openai_usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// `POST /v1/chat/completions`.
fn openai_chat(state: &State, req: &Request, opts: RouteOpts) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return openai_bad_json();
    };
    let mut plan = match chat_plan(&body) {
        Ok(plan) => plan,
        Err((param, message)) => return openai_invalid(&message, param),
    };
    let id = format!("chatcmpl-mock-{}", short_hash(&req.body));
    if plan.stream && !opts.force_full {
        let chunks = usize::try_from(state.tuning.get().chunks).unwrap_or(1);
        if let Some(size) = opts.size {
            plan.answer = ChatAnswer::Text(filler(size));
        }
        return Reply::stream(chat_events(&plan, &id, opts.events.unwrap_or(chunks)), 1);
    }
    if let Some(size) = opts.size {
        plan.answer = ChatAnswer::Text(FILL_MARK.to_owned());
        let body = fit_text(size, |words| {
            plan.completion_words = Some(words);
            serde_json::to_vec(&chat_completion(&plan, &id)).unwrap_or_default()
        });
        return Reply::full(200, "application/json", body);
    }
    json_reply(200, &chat_completion(&plan, &id))
}

/// The repeated text of sized answers: ASCII words and spaces, nothing JSON escapes.
const FILL_PATTERN: &[u8] = b"The quick brown fox jumps over the lazy dog. ";
/// Stands for the filler in the skeleton of a sized answer.
const FILL_MARK: &str = "@@mock-filler@@";

/// Text of `n` characters of [`FILL_PATTERN`].
fn filler(n: usize) -> String {
    FILL_PATTERN
        .iter()
        .copied()
        .cycle()
        .take(n)
        .map(char::from)
        .collect()
}

/// [`words`] of [`filler`]`(n)`, without building it.
fn filler_words(n: usize) -> u64 {
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
fn fit_text(size: usize, mut skeleton: impl FnMut(u64) -> Vec<u8>) -> Vec<u8> {
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

/// A complete (non-streamed) chat completion.
fn chat_completion(plan: &ChatPlan<'_>, id: &str) -> Value {
    let (message, finish, completion) = match &plan.answer {
        ChatAnswer::Text(text) => (
            json!({"role": "assistant", "content": text, "refusal": null}),
            "stop",
            plan.completion_words.unwrap_or_else(|| words(text)),
        ),
        ChatAnswer::ToolCall(name) => (
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [openai_tool_call(name)]}),
            "tool_calls",
            1,
        ),
    };
    json!({
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": plan.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": openai_usage(plan.prompt_tokens, completion),
        "system_fingerprint": "fp_mock",
    })
}

/// The SSE events of a streamed chat completion, `[DONE]` included.
fn chat_events(plan: &ChatPlan<'_>, id: &str, chunks: usize) -> Vec<Vec<u8>> {
    let chunk = |delta: Value, finish: Value| {
        sse_event(
            &json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": plan.model,
                "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            }),
            "\n\n",
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let (finish, completion) = match &plan.answer {
        ChatAnswer::Text(text) => {
            for piece in split_even(text, chunks) {
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
            ("stop", words(text))
        }
        ChatAnswer::ToolCall(name) => {
            let mut call = openai_tool_call(name);
            if let Some(call) = call.as_object_mut() {
                call.insert("index".to_owned(), json!(0));
            }
            events.push(chunk(json!({"tool_calls": [call]}), Value::Null));
            ("tool_calls", 1)
        }
    };
    events.push(chunk(json!({}), json!(finish)));
    if plan.include_usage {
        events.push(sse_event(
            &json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": plan.model,
                "system_fingerprint": "fp_mock",
                "choices": [],
                "usage": openai_usage(plan.prompt_tokens, completion),
            }),
            "\n\n",
        ));
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

/// Texts and token counts of an embeddings `input`.
fn embedding_inputs(input: Option<&Value>) -> Option<Vec<(String, u64)>> {
    let tokens_text = |ids: &[Value]| -> Option<(String, u64)> {
        let ints: Option<Vec<String>> = ids
            .iter()
            .map(|t| t.as_i64().map(|n| n.to_string()))
            .collect();
        let ints = ints.filter(|v| !v.is_empty())?;
        let count = ints.len() as u64;
        Some((ints.join(" "), count))
    };
    let string = |s: &str| (s.to_owned(), tokens_for_chars(s.chars().count()));
    match input? {
        Value::String(s) => Some(vec![string(s)]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Some(items.iter().filter_map(Value::as_str).map(string).collect())
        }
        Value::Array(items) if items.iter().all(Value::is_i64) => Some(vec![tokens_text(items)?]),
        Value::Array(items) => items
            .iter()
            .map(|item| tokens_text(item.as_array()?))
            .collect(),
        _ => None,
    }
}

/// `POST /v1/embeddings`.
fn openai_embeddings(req: &Request, opts: RouteOpts) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return openai_bad_json();
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return openai_invalid("you must provide a model parameter", Some("model"));
    };
    let Some(inputs) = embedding_inputs(body.get("input")) else {
        return openai_invalid(
            "'input' must be a string, an array of strings, or an array of token arrays.",
            Some("input"),
        );
    };
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => 8,
        Some(v) => match v.as_u64().filter(|d| (1..=MAX_DIMENSIONS).contains(d)) {
            Some(d) => d as usize,
            None => return openai_invalid("Invalid value for 'dimensions'.", Some("dimensions")),
        },
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return openai_invalid(
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
                Some("encoding_format"),
            )
        }
    };
    if let Some(size) = opts.size {
        let tokens: u64 = inputs.iter().map(|(_, n)| n).sum();
        let texts: Vec<&str> = inputs.iter().map(|(t, _)| t.as_str()).collect();
        let tail = format!(
            "],\"model\":{},\"usage\":{{\"prompt_tokens\":{tokens},\"total_tokens\":{tokens}}}}}",
            Value::from(model)
        );
        let body = sized_embeddings(
            size,
            &texts,
            "{\"object\":\"list\",\"data\":[",
            |i| format!("{{\"object\":\"embedding\",\"index\":{i},\"embedding\":"),
            &tail,
        );
        return Reply::full(200, "application/json", body);
    }
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (text, n))| {
            tokens += n;
            let values = embed(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Value::Array(values.iter().map(|f| float(*f)).collect())
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_reply(
        200,
        &json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

// ---------------------------------------------------------------------------------------------
// Gemini: validation
// ---------------------------------------------------------------------------------------------

/// Top-level fields of a `GenerateContentRequest`.
const GENERATE_KEYS: &[&str] = &[
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
];
/// The `data` oneof of a `Part`: exactly one must be set.
const PART_DATA_KEYS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
];
/// Every field a `Part` may carry.
const PART_KEYS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "thought",
    "thoughtSignature",
];
/// Fields of `generationConfig` we accept.
const GENERATION_CONFIG_KEYS: &[&str] = &[
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "thinkingConfig",
    "responseLogprobs",
    "logprobs",
];
/// `response`/`responseJsonSchema`/`behavior` are real fields the genai SDK sends.
const FUNCTION_DECLARATION_KEYS: &[&str] = &[
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
];
/// JSON-Schema keywords Gemini's OpenAPI-subset `parameters` rejects.
const FORBIDDEN_SCHEMA_KEYS: &[&str] = &["additionalProperties", "$schema", "strict", "$ref"];
/// Schema keys whose values are data, not sub-schemas.
const SCHEMA_DATA_KEYS: &[&str] = &["enum", "default", "example", "required", "propertyOrdering"];
/// Type name Google prints for `google.protobuf.Struct` fields (`args`, `response`).
const STRUCT: &str = "type.googleapis.com/google.protobuf.Struct";

/// `generationConfig` -> `generation_config`, as Google spells field paths in errors.
fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Extends an error location with a field.
fn at(loc: &str, key: &str) -> String {
    if loc.is_empty() {
        snake(key)
    } else {
        format!("{loc}.{}", snake(key))
    }
}

/// Google's unknown-field error.
fn unknown_name(key: &str, loc: &str) -> String {
    if loc.is_empty() {
        format!("Invalid JSON payload received. Unknown name \"{key}\": Cannot find field.")
    } else {
        format!(
            "Invalid JSON payload received. Unknown name \"{key}\" at '{loc}': Cannot find field."
        )
    }
}

/// Google's wrong-type error.
fn invalid_value(loc: &str, ty: &str, v: &Value) -> String {
    format!("Invalid value at '{loc}' ({ty}), {v}")
}

/// Google's missing-required-field error.
fn missing(loc: &str) -> String {
    format!("* GenerateContentRequest.{loc}: field is required but not specified")
}

/// `thinking_budget` -> `thinkingBudget`; keys starting with `_` or `$` stay as they are.
fn camel(key: &str) -> String {
    if !key.contains('_') || key.starts_with(['_', '$']) {
        return key.to_owned();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        match (c, upper) {
            ('_', _) => upper = true,
            (c, true) => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            (c, false) => out.push(c),
        }
    }
    out
}

/// Proto JSON accepts `snake_case` field names too (the genai SDK sends some), so fold them.
fn camelize(v: Value) -> Value {
    match v {
        Value::Object(obj) => Value::Object(
            obj.into_iter()
                .map(|(k, v)| (camel(&k), camelize(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camelize).collect()),
        other => other,
    }
}

/// Rejects keys outside `allowed`.
fn expect_keys(obj: &Map<String, Value>, allowed: &[&str], loc: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(unknown_name(k, loc)),
        None => Ok(()),
    }
}

/// Requires an object.
fn object<'a>(v: &'a Value, loc: &str, ty: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| invalid_value(loc, ty, v))
}

/// Requires an array.
fn array<'a>(v: &'a Value, loc: &str, ty: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| invalid_value(loc, ty, v))
}

/// Requires a string.
fn string<'a>(v: &'a Value, loc: &str) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| invalid_value(loc, "TYPE_STRING", v))
}

/// Checks an optional field with `check`.
fn optional(
    obj: &Map<String, Value>,
    key: &str,
    loc: &str,
    check: impl FnOnce(&Value, &str) -> Result<(), String>,
) -> Result<(), String> {
    match obj.get(key) {
        Some(v) => check(v, &at(loc, key)),
        None => Ok(()),
    }
}

/// Checks a required field with `check`.
fn required(
    obj: &Map<String, Value>,
    key: &str,
    loc: &str,
    check: impl FnOnce(&Value, &str) -> Result<(), String>,
) -> Result<(), String> {
    match obj.get(key) {
        Some(v) => check(v, &at(loc, key)),
        None => Err(missing(&at(loc, key))),
    }
}

/// Field check: any string.
fn is_string(v: &Value, loc: &str) -> Result<(), String> {
    string(v, loc).map(|_| ())
}

/// Field check: a JSON object (protobuf Struct).
fn is_struct(v: &Value, loc: &str) -> Result<(), String> {
    object(v, loc, STRUCT).map(|_| ())
}

/// Field check: a number.
fn is_number(v: &Value, loc: &str) -> Result<(), String> {
    if v.is_number() {
        Ok(())
    } else {
        Err(invalid_value(loc, "TYPE_FLOAT", v))
    }
}

/// Field check: an integer.
fn is_integer(v: &Value, loc: &str) -> Result<(), String> {
    if v.is_i64() || v.is_u64() {
        Ok(())
    } else {
        Err(invalid_value(loc, "TYPE_INT32", v))
    }
}

/// Field check: a boolean.
fn is_bool(v: &Value, loc: &str) -> Result<(), String> {
    if v.is_boolean() {
        Ok(())
    } else {
        Err(invalid_value(loc, "TYPE_BOOL", v))
    }
}

/// Field check: an array of strings.
fn is_string_list(v: &Value, loc: &str) -> Result<(), String> {
    for (i, item) in array(v, loc, "TYPE_STRING")?.iter().enumerate() {
        string(item, &format!("{loc}[{i}]"))?;
    }
    Ok(())
}

/// Field check: base64 bytes (catches `data:` URLs passed through untouched).
fn is_base64(v: &Value, loc: &str) -> Result<(), String> {
    let s = string(v, loc)?;
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/-_=\r\n".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid value at '{loc}' (TYPE_BYTES), Base64 decoding failed for \"{}\"",
            first64(s)
        ))
    }
}

/// Which roles a `Content` may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RoleRule {
    /// `user` or `model` required.
    Required,
    /// `user` or `model`, or absent (single-turn requests).
    Optional,
    /// Anything (system instructions ignore the role).
    Any,
}

/// Validates a `GenerateContentRequest` (plus any `extra` top-level keys).
fn validate_generate(body: &Value, extra: &[&str]) -> Result<(), String> {
    let obj = body.as_object().ok_or_else(|| {
        "Invalid JSON payload received. Unknown name \"\": Root element must be a message."
            .to_owned()
    })?;
    if let Some(k) = obj
        .keys()
        .find(|k| !GENERATE_KEYS.contains(&k.as_str()) && !extra.contains(&k.as_str()))
    {
        return Err(unknown_name(k, ""));
    }
    match obj.get("contents") {
        Some(c) => validate_contents(c, "contents")?,
        None => {
            return Err("* GenerateContentRequest.contents: contents is not specified".to_owned())
        }
    }
    optional(obj, "systemInstruction", "", |v, l| {
        validate_content(v, l, RoleRule::Any)
    })?;
    optional(obj, "generationConfig", "", validate_generation_config)?;
    optional(obj, "tools", "", validate_tools)?;
    optional(obj, "toolConfig", "", validate_tool_config)?;
    optional(obj, "safetySettings", "", validate_safety)?;
    optional(obj, "cachedContent", "", is_string)?;
    optional(obj, "labels", "", is_struct)?;
    Ok(())
}

/// Validates `contents`: a non-empty list of turns.
fn validate_contents(v: &Value, loc: &str) -> Result<(), String> {
    let contents = array(v, loc, "Content")?;
    if contents.is_empty() {
        return Err(format!(
            "* GenerateContentRequest.{loc}: contents is not specified"
        ));
    }
    let rule = if contents.len() == 1 {
        RoleRule::Optional
    } else {
        RoleRule::Required
    };
    for (i, c) in contents.iter().enumerate() {
        validate_content(c, &format!("{loc}[{i}]"), rule)?;
    }
    Ok(())
}

/// Validates one `Content` (`{role, parts}`).
fn validate_content(v: &Value, loc: &str, rule: RoleRule) -> Result<(), String> {
    let obj = object(v, loc, "Content")?;
    expect_keys(obj, &["role", "parts"], loc)?;
    match (obj.get("role").map(Value::as_str), rule) {
        (Some(Some(_)), RoleRule::Any) | (None, RoleRule::Any | RoleRule::Optional) => {}
        (Some(Some("user" | "model")), _) => {}
        _ => return Err("Please use a valid role: user, model.".to_owned()),
    }
    let Some(parts) = obj.get("parts") else {
        return Err(format!(
            "* GenerateContentRequest.{loc}.parts: contents.parts must not be empty."
        ));
    };
    let parts_loc = at(loc, "parts");
    let parts = array(parts, &parts_loc, "Part")?;
    if parts.is_empty() {
        return Err(format!(
            "* GenerateContentRequest.{parts_loc}: contents.parts must not be empty."
        ));
    }
    for (i, p) in parts.iter().enumerate() {
        validate_part(p, &format!("{parts_loc}[{i}]"))?;
    }
    Ok(())
}

/// Validates one `Part`: exactly one data field, typed correctly.
fn validate_part(v: &Value, loc: &str) -> Result<(), String> {
    let obj = object(v, loc, "Part")?;
    expect_keys(obj, PART_KEYS, loc)?;
    let mut data = obj.keys().filter(|k| PART_DATA_KEYS.contains(&k.as_str()));
    match (data.next(), data.next()) {
        (None, _) => {
            return Err(format!(
                "* GenerateContentRequest.{loc}.data: required oneof field 'data' must have one initialized field"
            ))
        }
        (Some(_), Some(second)) => {
            return Err(format!(
                "Invalid value at '{loc}' (oneof), oneof field 'data' is already set. Cannot set '{}'",
                snake(second)
            ))
        }
        _ => {}
    }
    optional(obj, "text", loc, is_string)?;
    optional(obj, "thought", loc, is_bool)?;
    optional(obj, "thoughtSignature", loc, is_string)?;
    optional(obj, "inlineData", loc, |v, l| {
        let o = object(v, l, "Blob")?;
        expect_keys(o, &["mimeType", "data"], l)?;
        required(o, "mimeType", l, is_string)?;
        required(o, "data", l, is_base64)
    })?;
    optional(obj, "fileData", loc, |v, l| {
        let o = object(v, l, "FileData")?;
        expect_keys(o, &["mimeType", "fileUri"], l)?;
        optional(o, "mimeType", l, is_string)?;
        required(o, "fileUri", l, is_string)
    })?;
    optional(obj, "functionCall", loc, |v, l| {
        let o = object(v, l, "FunctionCall")?;
        expect_keys(o, &["id", "name", "args"], l)?;
        optional(o, "id", l, is_string)?;
        required(o, "name", l, is_string)?;
        optional(o, "args", l, is_struct)
    })?;
    optional(obj, "functionResponse", loc, |v, l| {
        let o = object(v, l, "FunctionResponse")?;
        expect_keys(o, &["id", "name", "response"], l)?;
        optional(o, "id", l, is_string)?;
        required(o, "name", l, is_string)?;
        required(o, "response", l, is_struct)
    })
}

/// Validates `generationConfig`.
fn validate_generation_config(v: &Value, loc: &str) -> Result<(), String> {
    let obj = object(v, loc, "GenerationConfig")?;
    expect_keys(obj, GENERATION_CONFIG_KEYS, loc)?;
    for key in ["temperature", "topP", "presencePenalty", "frequencyPenalty"] {
        optional(obj, key, loc, is_number)?;
    }
    for key in ["topK", "maxOutputTokens", "seed", "logprobs"] {
        optional(obj, key, loc, is_integer)?;
    }
    optional(obj, "candidateCount", loc, |v, l| match v.as_u64() {
        Some(1..=8) => Ok(()),
        _ => Err(invalid_value(l, "TYPE_INT32", v)),
    })?;
    optional(obj, "stopSequences", loc, is_string_list)?;
    optional(obj, "responseModalities", loc, is_string_list)?;
    optional(obj, "responseMimeType", loc, is_string)?;
    optional(obj, "responseLogprobs", loc, is_bool)?;
    optional(obj, "thinkingConfig", loc, |v, l| {
        let o = object(v, l, "ThinkingConfig")?;
        expect_keys(
            o,
            &["thinkingBudget", "includeThoughts", "thinkingLevel"],
            l,
        )?;
        optional(o, "thinkingBudget", l, is_integer)?;
        optional(o, "includeThoughts", l, is_bool)?;
        optional(o, "thinkingLevel", l, is_string)
    })
}

/// Validates `tools`.
fn validate_tools(v: &Value, loc: &str) -> Result<(), String> {
    for (i, tool) in array(v, loc, "Tool")?.iter().enumerate() {
        let tool_loc = format!("{loc}[{i}]");
        let obj = object(tool, &tool_loc, "Tool")?;
        expect_keys(
            obj,
            &["functionDeclarations", "googleSearch", "codeExecution"],
            &tool_loc,
        )?;
        optional(obj, "googleSearch", &tool_loc, is_struct)?;
        optional(obj, "codeExecution", &tool_loc, is_struct)?;
        optional(obj, "functionDeclarations", &tool_loc, |v, l| {
            for (j, decl) in array(v, l, "FunctionDeclaration")?.iter().enumerate() {
                let decl_loc = format!("{l}[{j}]");
                let d = object(decl, &decl_loc, "FunctionDeclaration")?;
                expect_keys(d, FUNCTION_DECLARATION_KEYS, &decl_loc)?;
                required(d, "name", &decl_loc, is_string)?;
                optional(d, "description", &decl_loc, is_string)?;
                optional(d, "parameters", &decl_loc, validate_schema)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Rejects JSON-Schema-only keywords anywhere in an OpenAPI-subset schema.
fn validate_schema(v: &Value, loc: &str) -> Result<(), String> {
    match v {
        Value::Object(obj) => {
            for (key, sub) in obj {
                if FORBIDDEN_SCHEMA_KEYS.contains(&key.as_str()) {
                    return Err(unknown_name(key, loc));
                }
                if SCHEMA_DATA_KEYS.contains(&key.as_str()) {
                    continue;
                }
                if key == "properties" {
                    // Property names are data; only their schemas are checked.
                    if let Some(props) = sub.as_object() {
                        for (i, prop) in props.values().enumerate() {
                            validate_schema(prop, &format!("{loc}.properties[{i}].value"))?;
                        }
                        continue;
                    }
                }
                validate_schema(sub, &at(loc, key))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                validate_schema(item, &format!("{loc}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Validates `toolConfig` (upper-case enum names, as the proto wants).
fn validate_tool_config(v: &Value, loc: &str) -> Result<(), String> {
    let obj = object(v, loc, "ToolConfig")?;
    expect_keys(obj, &["functionCallingConfig", "retrievalConfig"], loc)?;
    optional(obj, "retrievalConfig", loc, is_struct)?;
    optional(obj, "functionCallingConfig", loc, |v, l| {
        let o = object(v, l, "FunctionCallingConfig")?;
        expect_keys(o, &["mode", "allowedFunctionNames"], l)?;
        optional(o, "allowedFunctionNames", l, is_string_list)?;
        optional(o, "mode", l, |v, l| {
            match v.as_str() {
            Some("MODE_UNSPECIFIED" | "AUTO" | "ANY" | "NONE" | "VALIDATED") => Ok(()),
            _ => Err(invalid_value(
                l,
                "type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode",
                v,
            )),
        }
        })
    })
}

/// Validates `safetySettings`.
fn validate_safety(v: &Value, loc: &str) -> Result<(), String> {
    for (i, s) in array(v, loc, "SafetySetting")?.iter().enumerate() {
        let l = format!("{loc}[{i}]");
        let o = object(s, &l, "SafetySetting")?;
        expect_keys(o, &["category", "threshold", "method"], &l)?;
        required(o, "category", &l, is_string)?;
        required(o, "threshold", &l, is_string)?;
    }
    Ok(())
}

/// Our Gemini 3 signature: `sig-mock-<model>`, base64-encoded because the field is `bytes`
/// (the genai SDK refuses to parse a response whose signature is not valid base64).
fn thought_signature(model: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("sig-mock-{model}"))
}

/// Gemini 3 rule: every replayed model turn's first function call carries our signature.
fn check_signatures(body: &Value, model: &str) -> Result<(), String> {
    let plain = format!("sig-mock-{model}");
    let encoded = thought_signature(model);
    let contents = body["contents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for content in contents.iter().filter(|c| c["role"] == "model") {
        let parts = content["parts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(part) = parts.iter().find(|p| p.get("functionCall").is_some()) {
            let got = part["thoughtSignature"].as_str();
            if got != Some(plain.as_str()) && got != Some(encoded.as_str()) {
                return Err(MISSING_SIGNATURE.to_owned());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Gemini: answers
// ---------------------------------------------------------------------------------------------

/// Google's error shape with the matching canonical status name.
fn gemini_error(code: u16, message: &str) -> Reply {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    json_reply(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// The role of a content (absent means `user`).
fn role_of(content: &Value) -> &str {
    content["role"].as_str().unwrap_or("user")
}

/// The parts of a content (empty if malformed).
fn parts_of(content: &Value) -> &[Value] {
    content["parts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Text parts of a content, space-joined.
fn gemini_text(content: &Value) -> String {
    parts_of(content)
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Characters of text in `systemInstruction` and `contents`.
fn gemini_prompt_chars(req: &Value) -> usize {
    let contents = req["contents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    std::iter::once(&req["systemInstruction"])
        .chain(contents)
        .flat_map(parts_of)
        .filter_map(|p| p["text"].as_str())
        .map(|t| t.chars().count())
        .sum()
}

/// What the fake Gemini model answers.
#[derive(Debug, PartialEq)]
enum GeminiAnswer {
    /// Parts of a single candidate with parallel function calls.
    Calls(Vec<Value>),
    /// One text per candidate.
    Texts(Vec<String>),
}

/// Decides the answer and usage of a (validated) generate request.
struct GeminiPlan {
    answer: GeminiAnswer,
    prompt_tokens: u64,
    thinking: bool,
    /// Candidate tokens to report instead of counting the answer's words (`size`).
    completion_words: Option<u64>,
}

impl GeminiPlan {
    /// Decides the answer for a validated request.
    fn new(body: &Value, model: &str) -> Self {
        let contents = body["contents"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let last = contents.last().unwrap_or(&Value::Null);
        let first_function = body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["functionDeclarations"].as_array())
            .flatten()
            .find_map(|d| d["name"].as_str());
        let has = |c: &Value, key: &str| parts_of(c).iter().any(|p| p.get(key).is_some());
        let user_text_turn =
            role_of(last) == "user" && has(last, "text") && !has(last, "functionResponse");
        let answer = match first_function {
            Some(name) if user_text_turn => GeminiAnswer::Calls(gemini_calls(name, model)),
            _ => GeminiAnswer::Texts(gemini_texts(body, contents)),
        };
        GeminiPlan {
            answer,
            prompt_tokens: tokens_for_chars(gemini_prompt_chars(body)),
            thinking: body.pointer("/generationConfig/thinkingConfig").is_some(),
            completion_words: None,
        }
    }

    /// `usageMetadata` (thinking adds 7 thought tokens, counted in the total as Google does).
    fn usage(&self) -> Value {
        let completion = match (&self.answer, self.completion_words) {
            (_, Some(w)) => w,
            (GeminiAnswer::Calls(parts), None) => parts.len() as u64,
            (GeminiAnswer::Texts(texts), None) => texts.iter().map(|t| words(t)).sum(),
        };
        let thoughts = if self.thinking { 7 } else { 0 };
        let mut usage = json!({
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": completion,
            "totalTokenCount": self.prompt_tokens + completion + thoughts,
        });
        if let (true, Some(obj)) = (self.thinking, usage.as_object_mut()) {
            obj.insert("thoughtsTokenCount".to_owned(), json!(thoughts));
        }
        usage
    }
}

/// Two parallel calls to the first declared function (signed for Gemini 3).
fn gemini_calls(name: &str, model: &str) -> Vec<Value> {
    let mut first = json!({"functionCall": {"name": name, "args": {"mock": true}}});
    if model.starts_with("gemini-3") {
        if let Some(obj) = first.as_object_mut() {
            obj.insert(
                "thoughtSignature".to_owned(),
                json!(thought_signature(model)),
            );
        }
    }
    let second = json!({"functionCall": {"name": name, "args": {"mock": true, "n": 2}}});
    vec![first, second]
}

/// Candidate texts: tool-result echo or reply echo; JSON mode; ` #i` suffixes.
fn gemini_texts(body: &Value, contents: &[Value]) -> Vec<String> {
    let last_user = contents.iter().rev().find(|c| role_of(c) == "user");
    let tool_result = last_user
        .map(parts_of)
        .unwrap_or_default()
        .iter()
        .find_map(|p| p.pointer("/functionResponse/name").and_then(Value::as_str));
    let json_mode = body
        .pointer("/generationConfig/responseMimeType")
        .and_then(Value::as_str)
        == Some("application/json");
    let base = match (json_mode, tool_result) {
        (true, _) => "{\"mock\":true}".to_owned(),
        (false, Some(name)) => format!("Mock saw tool result: {name}"),
        (false, None) => {
            let text = last_user.map(gemini_text).unwrap_or_default();
            format!("Mock reply to: {}", first64(&text))
        }
    };
    let n = body
        .pointer("/generationConfig/candidateCount")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1);
    (0..n)
        .map(|i| {
            if i == 0 || json_mode {
                base.clone()
            } else {
                format!("{base} #{i}")
            }
        })
        .collect()
}

/// One candidate object.
fn gemini_candidate(parts: Value, index: usize, finished: bool) -> Value {
    let mut c = json!({"content": {"role": "model", "parts": parts}, "index": index});
    if let (true, Some(obj)) = (finished, c.as_object_mut()) {
        obj.insert("finishReason".to_owned(), json!("STOP"));
    }
    c
}

/// One `GenerateContentResponse`.
fn gemini_response(candidates: Vec<Value>, usage: Option<Value>, model: &str, id: &str) -> Value {
    let mut r = json!({"candidates": candidates});
    if let Some(obj) = r.as_object_mut() {
        if let Some(usage) = usage {
            obj.insert("usageMetadata".to_owned(), usage);
        }
        obj.insert("modelVersion".to_owned(), json!(model));
        obj.insert("responseId".to_owned(), json!(id));
    }
    r
}

/// The complete (non-streamed) response.
fn gemini_full(plan: &GeminiPlan, model: &str, id: &str) -> Value {
    let candidates = match &plan.answer {
        GeminiAnswer::Calls(parts) => vec![gemini_candidate(json!(parts), 0, true)],
        GeminiAnswer::Texts(texts) => texts
            .iter()
            .enumerate()
            .map(|(i, t)| gemini_candidate(json!([{"text": t}]), i, true))
            .collect(),
    };
    gemini_response(candidates, Some(plan.usage()), model, id)
}

/// The streamed responses: text split into `chunks` pieces, finish and usage on the last.
fn gemini_stream_items(plan: &GeminiPlan, model: &str, id: &str, chunks: usize) -> Vec<Value> {
    let GeminiAnswer::Texts(texts) = &plan.answer else {
        return vec![gemini_full(plan, model, id)];
    };
    let first = texts.first().map(String::as_str).unwrap_or_default();
    let n = split_even(first, chunks).len();
    let split: Vec<Vec<&str>> = texts.iter().map(|t| split_even(t, n)).collect();
    (0..n)
        .map(|k| {
            let last = k + 1 == n;
            let candidates = split
                .iter()
                .enumerate()
                .filter_map(|(i, pieces)| {
                    let piece = pieces.get(k)?;
                    Some(gemini_candidate(json!([{"text": piece}]), i, last))
                })
                .collect();
            gemini_response(candidates, last.then(|| plan.usage()), model, id)
        })
        .collect()
}

/// Dispatches `/{version}/models/{model}:{method}`.
fn gemini_route(state: &State, req: &Request, model: &str, method: &str, opts: RouteOpts) -> Reply {
    if req.head.method != "POST" {
        return gemini_error(404, &format!("Method {method} requires POST."));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return gemini_error(400, "Invalid JSON payload received. Unexpected token.");
    };
    let body = camelize(body);
    let result = match method {
        "generateContent" => gemini_generate(state, req, &body, model, false, opts),
        "streamGenerateContent" => {
            gemini_generate(state, req, &body, model, !opts.force_full, opts)
        }
        "embedContent" => gemini_embed(&body, opts),
        "batchEmbedContents" => gemini_batch_embed(&body, opts),
        "countTokens" => gemini_count_tokens(&body),
        _ => return gemini_error(404, &format!("Method not found: {method}.")),
    };
    result.unwrap_or_else(|message| gemini_error(400, &message))
}

/// `:generateContent` and `:streamGenerateContent`.
fn gemini_generate(
    state: &State,
    req: &Request,
    body: &Value,
    model: &str,
    stream: bool,
    opts: RouteOpts,
) -> Result<Reply, String> {
    validate_generate(body, &[])?;
    if model.starts_with("gemini-3") {
        check_signatures(body, model)?;
    }
    let mut plan = GeminiPlan::new(body, model);
    let id = format!("mock-{}", short_hash(&req.body));
    if !stream {
        if let Some(size) = opts.size {
            plan.answer = GeminiAnswer::Texts(vec![FILL_MARK.to_owned()]);
            let body = fit_text(size, |words| {
                plan.completion_words = Some(words);
                serde_json::to_vec(&gemini_full(&plan, model, &id)).unwrap_or_default()
            });
            return Ok(Reply::full(200, "application/json", body));
        }
        return Ok(json_reply(200, &gemini_full(&plan, model, &id)));
    }
    let tuning = state.tuning.get();
    let chunks = usize::try_from(tuning.chunks).unwrap_or(1);
    if let Some(size) = opts.size {
        plan.answer = GeminiAnswer::Texts(vec![filler(size)]);
    }
    let chunks = opts.events.unwrap_or(chunks);
    let items = gemini_stream_items(&plan, model, &id, chunks);
    if req.head.query("alt") != Some("sse") {
        return Ok(json_reply(200, &Value::Array(items)));
    }
    let separator = if tuning.gemini_sse_lf {
        "\n\n"
    } else {
        "\r\n\r\n"
    };
    let events = items
        .iter()
        .map(|item| sse_event(item, separator))
        .collect();
    Ok(Reply::stream(events, 1))
}

/// Text and dimensions of one embed request (`loc` prefixes error paths).
fn embed_request(v: &Value, loc: &str, keys: &[&str]) -> Result<(String, usize), String> {
    let obj = object(
        v,
        if loc.is_empty() { "request" } else { loc },
        "EmbedContentRequest",
    )?;
    expect_keys(obj, keys, loc)?;
    required(obj, "content", loc, |v, l| {
        let o = object(v, l, "Content")?;
        expect_keys(o, &["parts", "role"], l)?;
        let parts = array(
            o.get("parts").unwrap_or(&Value::Null),
            &at(l, "parts"),
            "Part",
        )?;
        for (i, p) in parts.iter().enumerate() {
            validate_part(p, &format!("{}[{i}]", at(l, "parts")))?;
        }
        Ok(())
    })?;
    optional(obj, "taskType", loc, is_string)?;
    optional(obj, "title", loc, is_string)?;
    optional(obj, "model", loc, is_string)?;
    let dims = match obj.get("outputDimensionality") {
        None => 8,
        Some(d) => match d.as_u64().filter(|d| (1..=MAX_DIMENSIONS).contains(d)) {
            Some(d) => d as usize,
            None => {
                return Err(invalid_value(
                    &at(loc, "outputDimensionality"),
                    "TYPE_INT32",
                    d,
                ))
            }
        },
    };
    Ok((gemini_text(&v["content"]), dims))
}

/// `:embedContent`.
fn gemini_embed(body: &Value, opts: RouteOpts) -> Result<Reply, String> {
    let keys = [
        "content",
        "taskType",
        "title",
        "outputDimensionality",
        "model",
    ];
    let (text, dims) = embed_request(body, "", &keys)?;
    if let Some(size) = opts.size {
        let body = sized_embeddings(
            size,
            &[text.as_str()],
            "{\"embedding\":",
            |_| "{\"values\":".to_owned(),
            "}",
        );
        return Ok(Reply::full(200, "application/json", body));
    }
    Ok(json_reply(
        200,
        &json!({"embedding": {"values": embed_json(&text, dims)}}),
    ))
}

/// `:batchEmbedContents` (each request must name its `models/...` model, as Google insists).
fn gemini_batch_embed(body: &Value, opts: RouteOpts) -> Result<Reply, String> {
    let obj = object(body, "", "BatchEmbedContentsRequest")?;
    expect_keys(obj, &["requests"], "")?;
    let requests = array(
        obj.get("requests").unwrap_or(&Value::Null),
        "requests",
        "EmbedContentRequest",
    )?;
    if requests.is_empty() {
        return Err("* BatchEmbedContentsRequest.requests: requests is not specified".to_owned());
    }
    let keys = [
        "model",
        "content",
        "taskType",
        "title",
        "outputDimensionality",
    ];
    let mut embeddings = Vec::with_capacity(requests.len());
    let mut texts = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let loc = format!("requests[{i}]");
        if !r["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("models/"))
        {
            return Err(format!(
                "* BatchEmbedContentsRequest.{loc}.model: unexpected model name format"
            ));
        }
        let (text, dims) = embed_request(r, &loc, &keys)?;
        if opts.size.is_none() {
            embeddings.push(json!({"values": embed_json(&text, dims)}));
        }
        texts.push(text);
    }
    if let Some(size) = opts.size {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let body = sized_embeddings(
            size,
            &texts,
            "{\"embeddings\":[",
            |_| "{\"values\":".to_owned(),
            "]}",
        );
        return Ok(Reply::full(200, "application/json", body));
    }
    Ok(json_reply(200, &json!({"embeddings": embeddings})))
}

/// `:countTokens`.
fn gemini_count_tokens(body: &Value) -> Result<Reply, String> {
    let obj = object(body, "", "CountTokensRequest")?;
    expect_keys(obj, &["contents", "generateContentRequest"], "")?;
    let chars = if let Some(g) = obj.get("generateContentRequest") {
        validate_generate(g, &["model"])?;
        gemini_prompt_chars(g)
    } else if let Some(c) = obj.get("contents") {
        validate_contents(c, "contents")?;
        gemini_prompt_chars(body)
    } else {
        return Err(
            "* CountTokensRequest: either contents or generateContentRequest must be set"
                .to_owned(),
        );
    };
    Ok(json_reply(
        200,
        &json!({"totalTokens": tokens_for_chars(chars)}),
    ))
}

// ---------------------------------------------------------------------------------------------
// Tests of the deterministic helpers
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// Validation error text of a generate request, or `None` if it is accepted.
    fn gen_error(body: Value) -> Option<String> {
        validate_generate(&body, &[]).err()
    }

    #[test]
    fn chat_reply_echoes_last_user_message() {
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
        ]});
        let plan = chat_plan(&body).map_err(|e| e.1);
        let plan = plan.as_ref().map(|p| (&p.answer, p.prompt_tokens, p.model));
        assert_eq!(
            plan,
            Ok((
                &ChatAnswer::Text("Mock reply to: hello there".to_owned()),
                5,
                "m"
            ))
        );
    }

    #[test]
    fn chat_tools_and_tool_results() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather"}}]);
        let ask =
            json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            chat_plan(&ask).map(|p| p.answer).ok(),
            Some(ChatAnswer::ToolCall("get_weather"))
        );
        let long = "x".repeat(100);
        let seen = json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_mock_1", "content": long}
        ]});
        let want = format!("Mock saw tool result: {}", "x".repeat(64));
        assert_eq!(
            chat_plan(&seen).map(|p| p.answer).ok(),
            Some(ChatAnswer::Text(want))
        );
        let empty = json!({"model": "m", "messages": []});
        assert_eq!(chat_plan(&empty).err().and_then(|e| e.0), Some("messages"));
    }

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
    fn sized_answers_are_exact() {
        for n in [0, 1, 3, 44, 45, 46, 1000, 65_537] {
            assert_eq!(filler_words(n), words(&filler(n)), "{n}");
        }
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let mut plan = chat_plan(&body).map_err(|e| e.1);
        for size in [1024, 65_535, 65_536, 1_048_577] {
            let Ok(plan) = plan.as_mut() else { break };
            plan.answer = ChatAnswer::Text(FILL_MARK.to_owned());
            let out = fit_text(size, |w| {
                plan.completion_words = Some(w);
                serde_json::to_vec(&chat_completion(plan, "id")).unwrap_or_default()
            });
            assert_eq!(out.len(), size);
            let v: Value = serde_json::from_slice(&out).unwrap_or_default();
            let text = v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(v["usage"]["completion_tokens"], json!(words(text)));
            let emb = sized_embeddings(
                size,
                &["a", "b"],
                "{\"e\":[",
                |_| "{\"v\":".to_owned(),
                "]}",
            );
            assert_eq!(emb.len(), size);
            let v: Value = serde_json::from_slice(&emb).unwrap_or_default();
            let first = v["e"][0]["v"].as_array().map(Vec::len);
            assert_eq!(first, v["e"][1]["v"].as_array().map(Vec::len));
            assert!(first > Some(10));
            assert_eq!(
                v["e"][0]["v"][3].as_f64().map(|f| f as f32),
                embed("a", 4).get(3).copied()
            );
        }
        assert!(plan.is_ok());
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

    #[test]
    fn embedding_inputs_accept_all_openai_shapes() {
        let texts = |v: Value| {
            embedding_inputs(Some(&v)).map(|i| i.into_iter().map(|(t, _)| t).collect::<Vec<_>>())
        };
        assert_eq!(texts(json!("a")), Some(vec!["a".to_owned()]));
        assert_eq!(
            texts(json!(["a", "b"])),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(texts(json!([1, 2])), Some(vec!["1 2".to_owned()]));
        assert_eq!(
            texts(json!([[1], [2, 3]])),
            Some(vec!["1".to_owned(), "2 3".to_owned()])
        );
        assert_eq!(texts(json!([])), None);
        assert_eq!(texts(json!(5)), None);
    }

    #[test]
    fn gemini_accepts_a_good_request() {
        let body = json!({
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "aGk="}}]},
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "s"}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": 1}}}]}
            ],
            "systemInstruction": {"parts": [{"text": "sys"}]},
            "generationConfig": {"temperature": 0.5, "candidateCount": 2, "thinkingConfig": {"thinkingBudget": 0}},
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT",
                "properties": {"strict": {"type": "STRING"}}}, "description": "d"}]}]
        });
        assert_eq!(gen_error(body), None);
        let snake_body = json!({"contents": [{"parts": [{"text": "hi"}]}],
            "generation_config": {"thinking_config": {"thinking_budget": 1}}});
        assert_eq!(gen_error(camelize(snake_body)), None);
    }

    #[test]
    fn gemini_rejects_sloppy_requests() {
        let user = json!([{"role": "user", "parts": [{"text": "hi"}]}]);
        assert_eq!(
            gen_error(json!({"contents": user, "generationConfig": {"foo": 1}})).as_deref(),
            Some("Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': Cannot find field.")
        );
        assert_eq!(
            gen_error(json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}))
                .as_deref(),
            Some("Please use a valid role: user, model.")
        );
        let two_unroled = json!([{"parts": [{"text": "a"}]}, {"parts": [{"text": "b"}]}]);
        assert!(gen_error(json!({"contents": two_unroled})).is_some());
        assert!(gen_error(json!({"contents": user, "temperature": 1})).is_some());
        assert!(gen_error(json!({"contents": []})).is_some());
        let both =
            json!([{"parts": [{"text": "a", "inlineData": {"mimeType": "x", "data": "aGk="}}]}]);
        assert!(gen_error(json!({"contents": both})).is_some());
        let data_url = json!([{"parts": [{"inlineData": {"mimeType": "image/png", "data": "data:image/png;base64,aGk="}}]}]);
        assert!(gen_error(json!({"contents": data_url})).is_some());
        let bad_response =
            json!([{"parts": [{"functionResponse": {"name": "f", "response": "ok"}}]}]);
        assert!(gen_error(json!({"contents": bad_response})).is_some());
        let schema = json!({"type": "OBJECT", "properties": {"a": {"type": "OBJECT", "additionalProperties": false}}});
        let tools = json!([{"functionDeclarations": [{"name": "f", "parameters": schema}]}]);
        assert_eq!(
            gen_error(json!({"contents": user, "tools": tools})).as_deref(),
            Some("Invalid JSON payload received. Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters.properties[0].value': Cannot find field.")
        );
        let free = json!([{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"additionalProperties": false}}]}]);
        assert_eq!(gen_error(json!({"contents": user, "tools": free})), None);
    }

    #[test]
    fn gemini_three_needs_signatures_and_gets_parallel_calls() {
        let tools = json!([{"functionDeclarations": [{"name": "f"}]}]);
        let ask =
            json!({"contents": [{"role": "user", "parts": [{"text": "go"}]}], "tools": tools});
        let plan = GeminiPlan::new(&ask, "gemini-3-pro");
        let GeminiAnswer::Calls(parts) = &plan.answer else {
            return assert!(matches!(plan.answer, GeminiAnswer::Calls(_)));
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0]["thoughtSignature"], "c2lnLW1vY2stZ2VtaW5pLTMtcHJv");
        assert_eq!(parts[1]["functionCall"]["args"]["n"], 2);
        let replay = |sig: Value| {
            let mut call = json!({"functionCall": {"name": "f", "args": {}}});
            if let (Some(obj), false) = (call.as_object_mut(), sig.is_null()) {
                obj.insert("thoughtSignature".to_owned(), sig);
            }
            json!({"tools": tools, "contents": [
                {"role": "user", "parts": [{"text": "go"}]},
                {"role": "model", "parts": [call]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
            ]})
        };
        assert_eq!(
            check_signatures(
                &replay(json!("c2lnLW1vY2stZ2VtaW5pLTMtcHJv")),
                "gemini-3-pro"
            ),
            Ok(())
        );
        assert!(check_signatures(&replay(Value::Null), "gemini-3-pro").is_err());
        assert!(check_signatures(&replay(json!("other")), "gemini-3-pro").is_err());
        let done = GeminiPlan::new(&replay(Value::Null), "gemini-2.5-flash");
        assert_eq!(
            done.answer,
            GeminiAnswer::Texts(vec!["Mock saw tool result: f".to_owned()])
        );
    }

    #[test]
    fn gemini_candidates_and_json_mode() {
        let body = json!({"contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"candidateCount": 2, "thinkingConfig": {}}});
        let plan = GeminiPlan::new(&body, "gemini-2.5-flash");
        let texts = vec![
            "Mock reply to: hi".to_owned(),
            "Mock reply to: hi #1".to_owned(),
        ];
        assert_eq!(plan.answer, GeminiAnswer::Texts(texts));
        assert_eq!(plan.usage()["thoughtsTokenCount"], 7);
        let json_body = json!({"contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"responseMimeType": "application/json"}});
        let plan = GeminiPlan::new(&json_body, "gemini-2.5-flash");
        assert_eq!(
            plan.answer,
            GeminiAnswer::Texts(vec!["{\"mock\":true}".to_owned()])
        );
    }

    #[test]
    fn gemini_paths_and_queries_parse() {
        let target = |p: &str| gemini_target(p);
        let want = Some(("gemini-2.5-flash".to_owned(), "generateContent".to_owned()));
        assert_eq!(
            target("/v1beta/models/gemini-2.5-flash:generateContent"),
            want
        );
        assert_eq!(
            target("/v1/models/models/gemini-2.5-flash:generateContent"),
            want
        );
        assert_eq!(
            target("/v1beta/models/gemini-2.5-flash%3AgenerateContent"),
            want
        );
        assert_eq!(target("/v1/chat/completions"), None);
        assert_eq!(target("/v1/models"), None);
        assert_eq!(
            parse_query("alt=sse&key=a%2Bb+c"),
            vec![
                ("alt".to_owned(), "sse".to_owned()),
                ("key".to_owned(), "a+b c".to_owned())
            ]
        );
    }
}
