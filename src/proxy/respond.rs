//! Writing the gateway's own answers, and reading the request body within its limit.

use super::Ctx;
use crate::error::GatewayError;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// Adds the headers every answer carries (SPEC §4).
pub fn common_headers(resp: &mut ResponseHeader, ctx: &Ctx) {
    let _ = resp.insert_header("x-request-id", ctx.request_id.as_str());
    let _ = resp.insert_header("x-gateway-cache", ctx.cache);
    if let Some(p) = ctx.provider {
        let _ = resp.insert_header("x-gateway-provider", p.name());
    }
    if let Some(m) = &ctx.model {
        let _ = resp.insert_header("x-gateway-model", m.as_str());
    }
    if ctx.attempts > 0 {
        let _ = resp.insert_header("x-gateway-attempts", ctx.attempts.to_string());
    }
    if let Some(rate) = &ctx.rate {
        let _ = resp.insert_header("x-ratelimit-limit-requests", rate.limit.to_string());
        let _ = resp.insert_header("x-ratelimit-remaining-requests", rate.remaining.to_string());
        let _ = resp.insert_header("x-ratelimit-reset-requests", rate.reset_header());
    }
    if let Some(origin) = &ctx.cors_origin {
        let _ = resp.insert_header("access-control-allow-origin", origin.as_str());
        let _ = resp.insert_header(
            "access-control-expose-headers",
            "x-request-id, x-gateway-provider, x-gateway-model, x-gateway-cache, x-gateway-attempts, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, retry-after, server-timing",
        );
        if ctx.cors_exact {
            let _ = resp.insert_header("access-control-allow-credentials", "true");
            let _ = resp.insert_header("vary", "Origin");
        }
    }
    // Time spent in the gateway up to this header, without the time the upstream took, so
    // users can check the overhead on their own traffic.
    let total = ctx.start.elapsed();
    let upstream = ctx.upstream_wait;
    let gateway = total.saturating_sub(upstream);
    let _ = resp.insert_header(
        "server-timing",
        format!(
            "gateway;dur={:.3}, upstream;dur={:.3}",
            gateway.as_secs_f64() * 1000.0,
            upstream.as_secs_f64() * 1000.0
        ),
    );
}

/// Writes a complete answer with a known body.
pub async fn send(
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    content_type: &str,
    body: Bytes,
    extra: &[(&'static str, String)],
) {
    ctx.status = status;
    let Ok(mut resp) = ResponseHeader::build(status, Some(6 + extra.len())) else {
        return;
    };
    let _ = resp.insert_header("content-type", content_type);
    let _ = resp.insert_header("content-length", body.len().to_string());
    common_headers(&mut resp, ctx);
    for (k, v) in extra {
        let _ = resp.insert_header(*k, v.as_str());
    }
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

/// Answers with an OpenAI-shaped error.
pub async fn send_error(session: &mut Session, ctx: &mut Ctx, err: &GatewayError) {
    ctx.error = Some(err.label());
    let mut extra = Vec::new();
    if let Some(secs) = err.retry_after() {
        extra.push(("retry-after", secs.to_string()));
    }
    if matches!(err, GatewayError::BodyTooLarge { .. }) {
        // The rest of the body was never read: this connection cannot carry another request.
        session.set_keepalive(None);
    }
    send(
        session,
        ctx,
        err.status(),
        "application/json",
        err.body(),
        &extra,
    )
    .await
}

/// Reads the whole request body, refusing more than `limit` bytes. A body that arrives in
/// one piece is kept as that `Bytes` (no copy).
pub async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let expects_continue = session
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session.write_continue_response().await.map_err(|e| {
            GatewayError::bad_request(format!("could not answer Expect: 100-continue: {e}"))
        })?;
    }
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    loop {
        let chunk = session.read_request_body().await.map_err(|e| {
            GatewayError::bad_request(format!("could not read the request body: {e}"))
        })?;
        let Some(chunk) = chunk else { break };
        let total = first.as_ref().map_or(0, |b| b.len())
            + rest.as_ref().map_or(0, |b| b.len())
            + chunk.len();
        if total > limit {
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
