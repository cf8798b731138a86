//! Writing the gateway's own answers, and reading the request body within its limit.

use super::Ctx;
use crate::error::GatewayError;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::time::Duration;

/// Header names the gateway writes itself, parsed once at compile time: Pingora's
/// `insert_header` would parse (and, for these non-standard names, allocate) on every call.
pub mod names {
    use http::HeaderName;
    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub const X_GATEWAY_CACHE: HeaderName = HeaderName::from_static("x-gateway-cache");
    pub const X_GATEWAY_PROVIDER: HeaderName = HeaderName::from_static("x-gateway-provider");
    pub const X_GATEWAY_MODEL: HeaderName = HeaderName::from_static("x-gateway-model");
    pub const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");
    pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
    pub const X_RATELIMIT_REMAINING: HeaderName =
        HeaderName::from_static("x-ratelimit-remaining-requests");
    pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
    pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
    pub const X_OPENAI_API_KEY: HeaderName = HeaderName::from_static("x-openai-api-key");
    pub const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
    pub const X_GATEWAY_CACHE_TTL: HeaderName = HeaderName::from_static("x-gateway-cache-ttl");
}

/// A response header without Pingora's header-case map: HTTP/1.1 names are case-insensitive,
/// and the map costs an allocation per header.
pub fn response_header(status: StatusCode, headers: HeaderMap) -> ResponseHeader {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    ResponseHeader::from(parts)
}

/// Adds the headers every answer carries (SPEC §4).
pub fn common_headers(h: &mut HeaderMap, ctx: &Ctx) {
    h.insert(names::X_REQUEST_ID, ctx.request_id.header_value());
    h.insert(names::X_GATEWAY_CACHE, HeaderValue::from_static(ctx.cache));
    if let Some(p) = ctx.provider {
        h.insert(
            names::X_GATEWAY_PROVIDER,
            HeaderValue::from_static(p.name()),
        );
    }
    if let Some(v) = ctx
        .model
        .as_deref()
        .and_then(|m| HeaderValue::from_str(m).ok())
    {
        h.insert(names::X_GATEWAY_MODEL, v);
    }
    if ctx.attempts > 0 {
        h.insert(names::X_GATEWAY_ATTEMPTS, HeaderValue::from(ctx.attempts));
    }
    if let Some(rate) = &ctx.rate {
        h.insert(names::X_RATELIMIT_LIMIT, HeaderValue::from(rate.limit));
        h.insert(
            names::X_RATELIMIT_REMAINING,
            HeaderValue::from(rate.remaining),
        );
        if let Ok(v) = HeaderValue::from_str(&rate.reset_header()) {
            h.insert(names::X_RATELIMIT_RESET, v);
        }
    }
    if let Some(v) = ctx
        .cors_origin
        .as_deref()
        .and_then(|o| HeaderValue::from_str(o).ok())
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id, x-gateway-provider, x-gateway-model, x-gateway-cache, x-gateway-attempts, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, retry-after, server-timing"),
        );
        if ctx.cors_exact {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    // Time spent in the gateway up to this header, without the time the upstream took, so
    // users can check the overhead on their own traffic.
    let total = ctx.start.elapsed();
    let upstream = ctx.upstream_wait;
    let gateway = total.saturating_sub(upstream);
    h.insert(names::SERVER_TIMING, server_timing(gateway, upstream));
}

/// `gateway;dur=0.123, upstream;dur=4.567` (milliseconds, 3 decimals) without `format!`.
fn server_timing(gateway: Duration, upstream: Duration) -> HeaderValue {
    fn millis(out: &mut Vec<u8>, d: Duration) {
        let micros = d.as_micros();
        let mut buf = itoa::Buffer::new();
        out.extend_from_slice(buf.format(micros / 1000).as_bytes());
        let frac = (micros % 1000) as u16;
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(b"gateway;dur=");
    millis(&mut out, gateway);
    out.extend_from_slice(b", upstream;dur=");
    millis(&mut out, upstream);
    HeaderValue::from_maybe_shared(Bytes::from(out))
        .unwrap_or_else(|_| HeaderValue::from_static("gateway"))
}

/// Writes a complete answer with a known body.
pub async fn send(
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    content_type: &'static str,
    body: Bytes,
    extra: &[(HeaderName, HeaderValue)],
) {
    ctx.status = status;
    let Ok(code) = StatusCode::from_u16(status) else {
        return;
    };
    let mut h = HeaderMap::with_capacity(12 + extra.len());
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    common_headers(&mut h, ctx);
    for (k, v) in extra {
        h.insert(k.clone(), v.clone());
    }
    let resp = response_header(code, h);
    let head_only = session.req_header().method == http::Method::HEAD;
    if session
        .write_response_header(Box::new(resp), head_only || body.is_empty())
        .await
        .is_err()
    {
        return;
    }
    if !head_only && !body.is_empty() {
        let _ = session.write_response_body(Some(body), true).await;
    }
}

pub async fn send_json(session: &mut Session, ctx: &mut Ctx, status: u16, body: Bytes) {
    send(session, ctx, status, "application/json", body, &[]).await
}

/// Answers with an OpenAI-shaped error — or Google's on Gemini's native routes, whose
/// clients (google-genai) read only that shape.
pub async fn send_error(session: &mut Session, ctx: &mut Ctx, err: &GatewayError) {
    ctx.error = Some(err.label());
    let mut extra = Vec::new();
    if let Some(secs) = err.retry_after() {
        extra.push((header::RETRY_AFTER, HeaderValue::from(secs)));
    }
    if matches!(err, GatewayError::BodyTooLarge { .. }) {
        // The rest of the body was never read: this connection cannot carry another request.
        session.set_keepalive(None);
    }
    let body = if ctx.route.starts_with("gemini_") {
        Bytes::from(crate::providers::openai::from_gemini::google_error(
            err.status(),
            &err.message(),
        ))
    } else {
        err.body()
    };
    send(session, ctx, err.status(), "application/json", body, &extra).await
}

/// Reads the whole request body, refusing more than `limit` bytes. A body that arrives in
/// one piece is kept as that `Bytes` (no copy).
pub async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session.write_continue_response().await.map_err(|e| {
            GatewayError::bad_request(format!("could not answer Expect: 100-continue: {e}"))
        })?;
    }
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    loop {
        let chunk = match session.read_request_body().await {
            Ok(c) => c,
            Err(e) => {
                // A framing error (bad chunk size, short body) leaves the stream at an unknown
                // offset: whatever follows must never be read as another request.
                session.set_keepalive(None);
                return Err(GatewayError::bad_request(format!(
                    "could not read the request body: {}",
                    e.etype().as_str()
                )));
            }
        };
        let Some(chunk) = chunk else { break };
        let total = first.as_ref().map_or(0, |b| b.len())
            + rest.as_ref().map_or(0, |b| b.len())
            + chunk.len();
        if total > limit {
            session.set_keepalive(None);
            return Err(GatewayError::BodyTooLarge { limit });
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(declared.unwrap_or(total).max(total));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok(match rest {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Whether `Accept-Encoding` values may name a coding Pingora's compression module produces
/// (gzip, br, zstd, dcb, dcz, or an empty value). It errs towards yes: the module then parses
/// the header exactly; a no lets the gateway switch the module off before it parses anything.
pub fn may_accept_compression<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> bool {
    const CODINGS: [&[u8]; 5] = [b"gzip", b"br", b"zstd", b"dcb", b"dcz"];
    values.any(|v| {
        v.iter().all(u8::is_ascii_whitespace)
            || CODINGS
                .iter()
                .any(|c| v.windows(c.len()).any(|w| w.eq_ignore_ascii_case(c)))
    })
}

/// Gzip for SSE that flushes after every event: Pingora's compression module would hold
/// events back until its buffer fills, which breaks streaming, so streams bypass it.
pub struct StreamGzip(flate2::write::GzEncoder<Vec<u8>>);

impl StreamGzip {
    /// Turns the compression module off for this answer and, when the client accepts gzip,
    /// returns an encoder (the caller then sends `content-encoding: gzip`).
    pub fn for_stream(session: &mut Session) -> Option<Self> {
        if let Some(c) = session
            .downstream_modules_ctx
            .get_mut::<pingora::modules::http::compression::ResponseCompression>()
        {
            c.adjust_level(0);
        }
        let accepts = session
            .req_header()
            .headers
            .get_all("accept-encoding")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| {
                let mut parts = e.split(';');
                let name = parts.next().unwrap_or("").trim();
                let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
                name.eq_ignore_ascii_case("gzip") && !refused
            });
        accepts.then(|| {
            StreamGzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            ))
        })
    }

    /// Compresses one event and flushes it so the client can decode it now.
    pub fn encode(&mut self, data: &[u8]) -> Bytes {
        use std::io::Write;
        let _ = self.0.write_all(data);
        let _ = self.0.flush();
        Bytes::from(std::mem::take(self.0.get_mut()))
    }

    /// The gzip trailer.
    pub fn finish(self) -> Bytes {
        Bytes::from(self.0.finish().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::may_accept_compression;

    fn accepts(values: &[&str]) -> bool {
        may_accept_compression(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn only_codings_the_compression_module_produces_keep_it_on() {
        assert!(!accepts(&[]), "no header");
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["deflate, identity;q=0.5"]));
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["GZip;q=1.0"]));
        assert!(accepts(&["deflate", "br"]), "any of several headers");
        assert!(accepts(&["gzip, deflate, br, zstd"]));
        assert!(accepts(&[""]), "an empty value means any coding");
    }
}
