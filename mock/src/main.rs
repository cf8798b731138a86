//! `mock-provider`: a deterministic fake of the OpenAI and Gemini REST APIs.
//!
//! The gateway's tests, demo, benchmarks and load tests talk to this binary instead of the real
//! providers. It is a small hand-written HTTP/1.1 server (tokio + httparse) that records every
//! request and can inject faults, so tests can assert exactly what the gateway sent upstream
//! and how it reacts to slow, failing or vanishing providers.
//!
//! Routes: OpenAI `POST /v1/chat/completions` and `POST /v1/embeddings` (validated field by
//! field as OpenAI does, [`openai_validate`]), `GET /v1/models` and
//! the Responses API (`/v1/responses`, see [`responses`]: strict validation, stored
//! responses, `previous_response_id`, the full streaming event sequence); Gemini
//! `/v1beta/models/{m}:generateContent|streamGenerateContent|embedContent|batchEmbedContents|
//! countTokens`, validated field by field as Google does ([`gemini_validate`]). Any other
//! `/v1/*` path answers a `mock.echo` object.
//!
//! Control API (never recorded, never delayed):
//! `GET /health`, `GET|DELETE /_mock/requests`, `GET /_mock/stats`, `POST /_mock/reset`,
//! `GET|POST /_mock/config`, `GET|POST|DELETE /_mock/faults`, `POST /_mock/release`,
//! `GET /_mock/last_body`.
//!
//! Faults (`POST /_mock/faults`, see [`control::Fault`]) apply to the next `count` requests whose path
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
//! - `no_done`: the stream's events without the end marker: OpenAI's `data: [DONE]` (or the
//!   Responses API's `response.completed`/`response.incomplete` event) is left out; Gemini's
//!   stream stops before the first chunk with a `finishReason`. `framing`: `chunked`
//!   (default, a clean final 0-chunk) or `close` (no length, no chunking, closed after the
//!   last event).
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

mod control;
mod deterministic;
mod gemini_answer;
mod gemini_validate;
mod http;
mod openai;
mod openai_validate;
mod responses;
mod routes;
mod state;

use std::future::Future;
use std::io;
use std::io::Write as _;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::http::accept_loop;
use crate::state::{State, Tuning};

/// `--help` text.
const USAGE: &str = "usage: mock-provider [--host 127.0.0.1] [--port 9000] [--latency-ms 0] \
[--chunk-delay-ms 0] [--chunks 5] [--require-key KEY] [--name NAME] [--threads 1] [--gemini-sse-lf]";

/// Parsed command line; `defaults` is what `POST /_mock/reset` restores.
#[derive(Clone, Debug)]
pub(crate) struct Cli {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) threads: usize,
    pub(crate) require_key: Option<String>,
    pub(crate) name: String,
    pub(crate) defaults: Tuning,
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
