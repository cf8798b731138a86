//! The mock's own HTTP/1.1 layer (tokio + httparse): reading requests, framing and writing
//! replies and SSE events, and the per-request pipeline that applies faults, latency and holds.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::control::{control, fault_reply, hostile_reply, BodyFraming, Fault, FaultAction};
use crate::routes::{auth_failure, is_gemini, route, RouteOpts};
use crate::state::{lock, State, Tuning};

/// Largest request head we buffer before answering 431.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest request body we accept before answering 413.
pub(crate) const MAX_BODY: usize = 64 * 1024 * 1024;
/// How much pipelined input we buffer while waiting, before we stop reading the socket.
pub(crate) const MAX_PIPELINED: usize = 1024 * 1024;

/// Keeps a gauge right however the task that raised it ends.
pub(crate) struct Gauge<'a>(&'a AtomicI64);

impl<'a> Gauge<'a> {
    /// Raises the gauge until the guard drops.
    pub(crate) fn up(gauge: &'a AtomicI64) -> Self {
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
pub(crate) struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    /// Decrements the gauge.
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections forever, one task each.
pub(crate) async fn accept_loop(listener: TcpListener, state: Arc<State>) {
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

/// The parts of a request that the log shares (behind an `Arc`) with the handler.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) conn: u64,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    /// Lowercase names, in arrival order.
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// First header with this (lowercase) name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Last query parameter with this name (decoded).
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A fully read request.
pub(crate) struct Request {
    pub(crate) head: Arc<Head>,
    pub(crate) body: Bytes,
    pub(crate) http10: bool,
    pub(crate) keep_alive: bool,
}

/// Result of reading from a connection.
pub(crate) enum Incoming {
    Request(Request),
    Closed,
    Reject(u16),
}

/// Head plus framing facts, before the body is read.
pub(crate) struct ParsedHead {
    pub(crate) len: usize,
    pub(crate) head: Head,
    pub(crate) http10: bool,
    pub(crate) keep_alive: bool,
    pub(crate) content_length: Option<usize>,
    pub(crate) chunked: bool,
    pub(crate) expect_continue: bool,
}

/// Parses a request head from `buf`; `Ok(None)` means more bytes are needed.
pub(crate) fn parse_head(buf: &[u8], conn: u64) -> Result<Option<ParsedHead>, u16> {
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
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
}

/// The error for a peer that vanished mid-request.
pub(crate) fn eof() -> io::Error {
    io::ErrorKind::UnexpectedEof.into()
}

impl Conn {
    /// Reads more bytes; `false` on EOF.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Reads the next request (head and body).
    pub(crate) async fn read_request(&mut self, conn: u64) -> io::Result<Incoming> {
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
    pub(crate) async fn read_exact_body(&mut self, len: usize) -> io::Result<Bytes> {
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
    pub(crate) async fn read_chunked(&mut self) -> io::Result<Result<Bytes, u16>> {
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
    pub(crate) async fn skip_trailers(&mut self) -> io::Result<()> {
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
    pub(crate) async fn wait<F: Future>(&mut self, fut: F) -> bool {
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
    pub(crate) async fn sleep(&mut self, ms: u64) -> bool {
        ms == 0
            || self
                .wait(tokio::time::sleep(Duration::from_millis(ms)))
                .await
    }
}

/// Serves requests on one connection until it closes.
pub(crate) async fn serve_connection(stream: TcpStream, id: u64, state: &State) {
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
pub(crate) enum Body {
    Full(Vec<u8>),
    /// `hold_after` = events sent before a `hold` fault parks the stream (1: OpenAI's role
    /// chunk or Gemini's first text piece, so a test sees exactly one event before release).
    Stream {
        events: Vec<Vec<u8>>,
        hold_after: usize,
    },
}

/// A response before it is framed and written.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: Cow<'static, str>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Body,
}

impl Reply {
    /// A complete response.
    pub(crate) fn full(
        status: u16,
        content_type: impl Into<Cow<'static, str>>,
        body: Vec<u8>,
    ) -> Reply {
        Reply {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: Body::Full(body),
        }
    }

    /// An SSE stream.
    pub(crate) fn stream(events: Vec<Vec<u8>>, hold_after: usize) -> Reply {
        Reply {
            status: 200,
            content_type: Cow::Borrowed("text/event-stream"),
            headers: Vec::new(),
            body: Body::Stream { events, hold_after },
        }
    }
}

/// A JSON response.
pub(crate) fn json_reply(status: u16, v: &Value) -> Reply {
    Reply::full(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// Bare error for requests we could not even parse.
pub(crate) fn plain_error(status: u16) -> Reply {
    json_reply(
        status,
        &json!({"error": {"message": reason(status), "code": status}}),
    )
}

/// Length of a complete body (0 for streams).
pub(crate) fn reply_len(reply: &Reply) -> usize {
    match &reply.body {
        Body::Full(b) => b.len(),
        Body::Stream { .. } => 0,
    }
}

/// How a response body is delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Standard reason phrases for the statuses we produce.
pub(crate) fn reason(status: u16) -> &'static str {
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
pub(crate) fn response_head(
    reply: &Reply,
    framing: Framing,
    keep_alive: bool,
    http10: bool,
) -> Vec<u8> {
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
pub(crate) async fn write_full(
    conn: &mut Conn,
    mut head: Vec<u8>,
    reply: &Reply,
) -> io::Result<()> {
    if let Body::Full(body) = &reply.body {
        head.extend_from_slice(body);
    }
    conn.stream.write_all(&head).await
}

/// Writes one SSE event (chunk-framed unless the client spoke HTTP/1.0).
pub(crate) async fn write_event(conn: &mut Conn, event: &[u8], framing: Framing) -> io::Result<()> {
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
pub(crate) async fn hold(conn: &mut Conn, state: &State, mut rx: watch::Receiver<u64>) -> bool {
    let released = conn.wait(rx.changed()).await;
    state.held.fetch_sub(1, Ordering::Relaxed);
    released
}

/// Subscribes to releases before anything is written, so a quick release is never missed.
pub(crate) fn start_hold(state: &State) -> watch::Receiver<u64> {
    state.held.fetch_add(1, Ordering::Relaxed);
    state.release.subscribe()
}

/// Handles one request; `Ok(true)` keeps the connection open.
pub(crate) async fn handle(conn: &mut Conn, state: &State, req: Request) -> io::Result<bool> {
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

/// `endless`: the head, then 64 KiB chunks of `a` until the peer goes away.
pub(crate) async fn send_endless(
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
pub(crate) async fn send_shaped(
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
pub(crate) async fn send(
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

/// Decodes `%XX` escapes (and `+` in query strings).
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Cow<'_, str> {
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
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
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
pub(crate) fn sse_event(v: &Value, separator: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(separator.as_bytes());
    out
}
