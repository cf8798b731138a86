//! Limits on the client side of each HTTP/1 connection that Pingora 0.9 does not let us set:
//! the size of a request header block (Pingora allows 1 MiB and grows its buffer to it), the
//! time a client may take to send one (Pingora's read timeout applies per read, so one line
//! every few seconds is never cut), and how long an idle keep-alive connection is kept.
//!
//! [`Guarded`] wraps the proxy's [`ServerApp`] and hands it each accepted connection inside a
//! [`HeaderGuard`], an IO wrapper that watches the bytes: from the start of a connection, and
//! again once each response the gateway writes has ended, it is in the *header* phase until
//! it has seen the blank line that ends a header block. In that phase it counts bytes and
//! runs a deadline (the idle timeout until the first byte, then the header timeout); breaking
//! either answers `431` or `408` (best effort, one write) and closes. Otherwise it only passes
//! bytes through: request bodies have their own limits in the request path, and a response
//! (however long it streams) runs no timer. The end of a response is read from the gateway's
//! own writes (`Content-Length` counted down, or the chunked terminator). HTTP/2 connections
//! are handed over unwrapped: the h2 layer bounds its own header lists.

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The bounds one connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The proxy app with every HTTP/1 connection wrapped in a [`HeaderGuard`].
pub struct Guarded<A> {
    pub inner: Arc<A>,
    pub limits: Limits,
}

#[async_trait]
impl<A> ServerApp for Guarded<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// HTTP/1: Pingora's keep-alive loop, with the wait for the next request done here, in a
    /// small future, instead of inside the proxy's request future (tens of KiB per
    /// connection, most of an idle connection's memory). HTTP/2 goes to Pingora as it is.
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let mut stream: Stream = Box::new(HeaderGuard::new(stream, self.limits));
        let mut settings: Option<HttpPersistentSettings> = None;
        loop {
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => {
                    // Pingora's own defaults for a new connection.
                    if *shutdown.borrow() {
                        session.set_keepalive(None);
                    } else {
                        session.set_keepalive(Some(60));
                    }
                    session.set_keepalive_reuses_remaining(
                        self.inner
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            let reused = self.inner.process_new_http(session, shutdown).await?;
            let (next, persistent) = reused.consume();
            let Ok(guard) = next.into_any().downcast::<HeaderGuard>() else {
                // Not ours (cannot happen: this loop wraps every stream it hands over).
                return None;
            };
            // Bytes already read for the next request (pipelining) need no wait; only a
            // connection that read past its request can have any.
            let prefetched = (guard.overread || guard.body_left.is_none())
                && persistent.as_ref().is_some_and(has_pipelined_prefix);
            stream = if prefetched {
                guard
            } else {
                self.next_request(guard, shutdown).await?
            };
            settings = persistent;
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

impl<A> Guarded<A> {
    /// Waits, for at most the idle timeout, until the client sends the next request, whose
    /// first bytes the guard reads and keeps for Pingora's parser (one read, as without the
    /// wait); `None` when the connection should close (idle, closed, shutting down).
    async fn next_request(
        &self,
        mut guard: Box<HeaderGuard>,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut shutdown = shutdown.clone();
        if *shutdown.borrow() {
            return None;
        }
        let read = tokio::select! {
            r = guard.prefetch() => r,
            _ = shutdown.changed() => return None,
        };
        match read {
            Ok(n) if n > 0 => Some(guard),
            _ => None,
        }
    }
}

/// Whether Pingora carried bytes of the next request over from the last one. The settings
/// expose no getter for them; their `Debug` shows the field (checked by a unit test, so a
/// Pingora upgrade that renames it fails the build's tests rather than stalling clients).
fn has_pipelined_prefix(settings: &HttpPersistentSettings) -> bool {
    let shown = format!("{settings:?}");
    shown.contains("pipelined_prefix: Some(")
}

/// Returns the pages freed by every thread's allocator heap to the system. mimalloc keeps
/// freed pages for reuse; after a burst of connections closes they would stay resident.
pub fn purge_freed_memory() {
    // SAFETY: `mi_collect` has no preconditions; `force` also visits abandoned heaps.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request header: `seen` bytes so far, `tail` the last
    /// bytes of them (to find a blank line cut across reads).
    Header { seen: usize, tail: [u8; 3] },
    /// Header done: bytes pass through until the gateway answers. `head`: the request was
    /// a HEAD (its answer has no body whatever its length says).
    Body { head: bool },
    /// The gateway's answer is being written; `left` body bytes by its `Content-Length`, or
    /// `None` for a chunked body (`tail`: its last bytes written, to find the terminator).
    Responding { left: Option<u64>, tail: [u8; 5] },
    /// A limit was broken: every further read fails.
    Refused,
}

/// An IO wrapper enforcing [`Limits`] on request headers; see the module docs.
pub struct HeaderGuard {
    inner: Stream,
    limits: Limits,
    phase: Phase,
    /// The header block being read began with `HEAD ` (it may arrive over several reads).
    head_seen: bool,
    /// Body bytes of the current request not yet read, when its framing is known (a
    /// `Content-Length`, or none); `None` for chunked bodies and headers read in pieces.
    body_left: Option<u64>,
    /// More bytes than the request holds were read: the next request may be buffered.
    overread: bool,
    /// Bytes read while waiting for the next request, handed to the next reads first:
    /// `stash[stash_pos..stash_len]` are still to be given to Pingora. The buffer stays with
    /// the connection (one zeroing per connection, not per request).
    stash: Vec<u8>,
    stash_pos: usize,
    stash_len: usize,
    /// When the current phase's time runs out; the timer below is moved to it lazily (only
    /// when a read has to wait), so a request that arrives in one read costs no timer work.
    due: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for HeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderGuard")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// Where a header block ends in `tail ++ new`, as an offset into `new`: after `\r\n\r\n` or
/// `\n\n` (httparse accepts bare LF line ends).
fn header_end(tail: [u8; 3], new: &[u8]) -> Option<usize> {
    // Only line ends can end a header block: jump from one to the next.
    for at in memchr::memchr_iter(b'\n', new) {
        let before = |k: usize| -> u8 {
            if at >= k {
                new[at - k]
            } else {
                tail[3 - (k - at)]
            }
        };
        if before(1) == b'\n' || (before(1) == b'\r' && before(2) == b'\n') {
            return Some(at + 1);
        }
    }
    None
}

fn shift_tail(tail: [u8; 3], new: &[u8]) -> [u8; 3] {
    let mut t = tail;
    for &b in &new[new.len().saturating_sub(3)..] {
        t = [t[1], t[2], b];
    }
    t
}

/// The most a wait for the next request reads ahead (Pingora reads the rest).
const PREFETCH: usize = 4096;

impl HeaderGuard {
    pub fn new(inner: Stream, limits: Limits) -> Self {
        HeaderGuard {
            inner,
            limits,
            phase: Phase::Header {
                seen: 0,
                tail: [0; 3],
            },
            head_seen: false,
            body_left: None,
            overread: false,
            stash: Vec::new(),
            stash_pos: 0,
            stash_len: 0,
            due: Instant::now() + limits.idle_timeout,
            deadline: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        }
    }

    /// Ready once `due` has passed. The timer fires early at worst (it may still be armed
    /// for an earlier phase's end), then is moved on.
    fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.deadline.deadline() > self.due {
                let due = self.due;
                self.deadline.as_mut().reset(due);
            }
            match self.deadline.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= self.due => return Poll::Ready(()),
                Poll::Ready(()) => {
                    let due = self.due;
                    self.deadline.as_mut().reset(due);
                }
            }
        }
    }

    /// Reads what the client sends next into the stash; `Ok(0)` at end of stream or when
    /// the idle timeout ran out first.
    async fn prefetch(&mut self) -> io::Result<usize> {
        // One zeroed buffer per connection, reused for every request on it.
        let mut buf = std::mem::take(&mut self.stash);
        buf.resize(PREFETCH, 0);
        let read = std::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => self.poll_due(cx).map(|()| Ok(0)),
            }
        })
        .await;
        self.stash = buf;
        self.stash_pos = 0;
        self.stash_len = *read.as_ref().unwrap_or(&0);
        read
    }

    /// The answer has ended: the next bytes start a new header block, which first has the
    /// idle timeout to begin.
    fn await_next_request(&mut self) {
        self.phase = Phase::Header {
            seen: 0,
            tail: [0; 3],
        };
        self.due = Instant::now() + self.limits.idle_timeout;
    }

    /// Follows the gateway's writes: the start of a final response, then its body's end.
    fn wrote(&mut self, first: &[u8], n: usize) {
        match self.phase {
            Phase::Body { head } => {
                let Some(framing) = response_framing(first, head) else {
                    return;
                };
                let header_len = framing.header_len.min(n);
                self.phase = Phase::Responding {
                    left: framing.content_length,
                    tail: [0; 5],
                };
                if framing.no_body {
                    self.await_next_request();
                    return;
                }
                self.body_written(&first[header_len..n]);
            }
            Phase::Responding { .. } => self.body_written(&first[..n]),
            Phase::Header { .. } | Phase::Refused => {}
        }
    }

    fn body_written(&mut self, written: &[u8]) {
        let Phase::Responding { left, tail } = self.phase else {
            return;
        };
        match left {
            Some(left) => {
                let left = left.saturating_sub(written.len() as u64);
                if left == 0 {
                    self.await_next_request();
                } else {
                    self.phase = Phase::Responding {
                        left: Some(left),
                        tail,
                    };
                }
            }
            None => {
                let mut t = tail;
                for &b in written.iter().skip(written.len().saturating_sub(5)) {
                    t = [t[1], t[2], t[3], t[4], b];
                }
                if &t == b"0\r\n\r\n" {
                    self.await_next_request();
                } else {
                    self.phase = Phase::Responding {
                        left: None,
                        tail: t,
                    };
                }
            }
        }
    }

    /// One best-effort write of a short error answer before closing: the socket's send
    /// buffer is empty in the header phase, so it goes out at once or not at all.
    fn refuse(&mut self, cx: &mut Context<'_>, status: &str, reason: &str) -> io::Error {
        if let Some(m) = crate::metrics::get() {
            m.connections_refused.with_label_values(&[reason]).inc();
        }
        let body = crate::error::openai_error_body(status, "invalid_request_error", None, None);
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            body.len(),
            String::from_utf8_lossy(&body)
        );
        let _ = Pin::new(&mut self.inner).poll_write(cx, answer.as_bytes());
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        self.phase = Phase::Refused;
        io::Error::new(io::ErrorKind::InvalidData, status.to_string())
    }
}

impl AsyncRead for HeaderGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.phase == Phase::Refused {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "connection refused by the header guard",
            )));
        }
        let before = buf.filled().len();
        let read = if this.stash_pos < this.stash_len {
            let n = (this.stash_len - this.stash_pos).min(buf.remaining());
            buf.put_slice(&this.stash[this.stash_pos..this.stash_pos + n]);
            this.stash_pos += n;
            if this.stash_pos == this.stash_len {
                this.stash_pos = 0;
                this.stash_len = 0;
            }
            Poll::Ready(Ok(()))
        } else {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        };
        match read {
            Poll::Ready(Ok(())) => {
                let Phase::Header { seen, tail } = this.phase else {
                    if let (Phase::Body { .. }, Some(left)) = (this.phase, this.body_left) {
                        let n = (buf.filled().len() - before) as u64;
                        this.overread |= n > left;
                        this.body_left = Some(left.saturating_sub(n));
                    }
                    return Poll::Ready(Ok(()));
                };
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                if let Some(end) = header_end(tail, new) {
                    if seen + end > this.limits.max_header_bytes {
                        let e = this.refuse(
                            cx,
                            "431 Request Header Fields Too Large",
                            "header_too_large",
                        );
                        return Poll::Ready(Err(e));
                    }
                    let head = if seen == 0 {
                        new.starts_with(b"HEAD ")
                    } else {
                        this.head_seen
                    };
                    // Whether bytes past this request may already sit in Pingora's buffer.
                    let extra = (new.len() - end) as u64;
                    this.overread = false;
                    this.body_left = if seen == 0 {
                        request_body_length(&new[..end]).map(|len| {
                            this.overread = extra > len;
                            len.saturating_sub(extra)
                        })
                    } else {
                        None
                    };
                    this.phase = Phase::Body { head };
                    return Poll::Ready(Ok(()));
                }
                let seen_now = seen + new.len();
                if seen_now > this.limits.max_header_bytes {
                    let e = this.refuse(
                        cx,
                        "431 Request Header Fields Too Large",
                        "header_too_large",
                    );
                    return Poll::Ready(Err(e));
                }
                if seen == 0 {
                    // The first byte of a header block: from now on the header timeout.
                    this.due = Instant::now() + this.limits.header_timeout;
                    this.head_seen = new.starts_with(b"HEAD ");
                }
                this.phase = Phase::Header {
                    seen: seen_now,
                    tail: shift_tail(tail, new),
                };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Phase::Header { seen, .. } = this.phase else {
                    return Poll::Pending;
                };
                if this.poll_due(cx).is_pending() {
                    return Poll::Pending;
                }
                if seen == 0 {
                    // Idle keep-alive connection: close quietly.
                    return Poll::Ready(Ok(()));
                }
                let e = this.refuse(cx, "408 Request Timeout", "header_timeout");
                Poll::Ready(Err(e))
            }
        }
    }
}

/// The body length a request header block announces: its `Content-Length`, 0 without one;
/// `None` when it is chunked (or the length is unreadable).
fn request_body_length(block: &[u8]) -> Option<u64> {
    let mut len = 0;
    for i in memchr::memchr_iter(b'\n', block) {
        let line = &block[i + 1..];
        if line.len() >= 18 && line[..18].eq_ignore_ascii_case(b"transfer-encoding:") {
            return None;
        }
        if line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            let end = memchr::memchr(b'\n', line).unwrap_or(line.len());
            len = std::str::from_utf8(&line[15..end])
                .ok()?
                .trim()
                .parse()
                .ok()?;
        }
    }
    Some(len)
}

/// How a response the gateway writes is framed.
#[derive(Debug, PartialEq, Eq)]
struct Framing {
    header_len: usize,
    content_length: Option<u64>,
    no_body: bool,
}

/// The framing of a final (non-1xx) HTTP/1 response whose header starts `buf` (Pingora
/// writes a header in one buffer); `None` for anything else (a 100 Continue, body bytes).
fn response_framing(buf: &[u8], head: bool) -> Option<Framing> {
    if !(buf.len() >= 12 && buf.starts_with(b"HTTP/1.") && buf[8] == b' ' && buf[9] != b'1') {
        return None;
    }
    let header_len = header_end([0; 3], buf)?;
    let status = &buf[9..12];
    let block = &buf[..header_len];
    // Pingora writes the names as given: lower case from `http`, or as a client spelt them.
    let at = memchr::memchr_iter(b'\n', block).find(|&i| {
        block
            .get(i + 1..i + 16)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"content-length:"))
    });
    let content_length = at.and_then(|i| {
        let rest = &block[i + 16..];
        let end = memchr::memchr(b'\r', rest).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end])
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    });
    let no_body = head || status == b"204" || status == b"304" || content_length == Some(0);
    Some(Framing {
        header_len,
        content_length,
        no_body,
    })
}

impl AsyncWrite for HeaderGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.wrote(buf, n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = r {
            for b in bufs {
                if n == 0 {
                    break;
                }
                let take = n.min(b.len());
                this.wrote(b, take);
                n -= take;
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeaderGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeaderGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderGuard {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderGuard {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderGuard {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for HeaderGuard {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for HeaderGuard {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_pipelined_prefix_is_seen_in_the_persistent_settings() {
        let (a, _b) = tokio::io::duplex(64);
        let session = ServerSession::new_http1(Box::new(a));
        let mut settings = HttpPersistentSettings::for_session(&session);
        assert!(!has_pipelined_prefix(&settings));
        settings.set_pipelined_prefix(bytes::BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]));
        assert!(has_pipelined_prefix(&settings), "{settings:?}");
    }

    #[test]
    fn a_request_announces_its_body_length() {
        assert_eq!(
            request_body_length(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(0)
        );
        assert_eq!(
            request_body_length(b"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n"),
            Some(42)
        );
        assert_eq!(
            request_body_length(b"POST / HTTP/1.1\r\ncontent-length:7\r\n\r\n"),
            Some(7)
        );
        assert_eq!(
            request_body_length(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            None
        );
    }

    #[test]
    fn the_end_of_a_header_block_is_found_across_reads() {
        assert_eq!(
            header_end([0; 3], b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY"),
            Some(27)
        );
        assert_eq!(
            header_end([0; 3], b"GET / HTTP/1.1\nHost: x\n\nrest"),
            Some(24)
        );
        assert_eq!(header_end(*b"x\r\n", b"\r\nBODY"), Some(2));
        assert_eq!(header_end(*b"\r\n\r", b"\nBODY"), Some(1));
        assert_eq!(header_end([0; 3], b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        let t = shift_tail([0; 3], b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert_eq!(&t, b"x\r\n");
        assert_eq!(header_end(t, b"\r\n"), Some(2));
        assert_eq!(shift_tail(*b"abc", b"d"), *b"bcd");
    }

    #[test]
    fn the_framing_of_the_gateways_own_answers_is_read_from_its_header() {
        let cl = response_framing(
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX: y\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(cl.content_length, Some(12));
        assert!(!cl.no_body);
        assert_eq!(cl.header_len, 45);
        let chunked = response_framing(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(chunked.content_length, None);
        assert!(
            response_framing(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true)
                .unwrap()
                .no_body,
            "HEAD"
        );
        assert!(
            response_framing(b"HTTP/1.1 204 No Content\r\n\r\n", false)
                .unwrap()
                .no_body
        );
        assert!(response_framing(b"HTTP/1.1 100 Continue\r\n\r\n", false).is_none());
        assert!(response_framing(b"5\r\nhello\r\n", false).is_none());
    }
}
