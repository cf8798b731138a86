//! One bounded HTTP(S) GET (the JWKS fetch), on Pingora's own client connector (rustls, as
//! for the providers): no second HTTP stack in the binary for a request made every few
//! minutes.

use crate::upstream::PeerAddress;
use bytes::BytesMut;
use pingora::connectors::http::Connector;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use std::sync::Arc;
use std::time::Duration;

/// GETs `url` within `timeout`; the body must be a 200 of at most `max` bytes. `ca` replaces
/// the system roots for an HTTPS URL (built as the system's plus a private CA, like a
/// provider's `ca_file`). Errors say what failed without the URL's query (which might carry
/// a credential).
pub async fn get(
    url: &str,
    ca: Option<Arc<CaType>>,
    timeout: Duration,
    max: usize,
) -> Result<Vec<u8>, String> {
    let addr = PeerAddress::parse(url)?;
    let work = async {
        let target = tokio::net::lookup_host((addr.host.as_str(), addr.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", addr.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", addr.host))?;
        let mut peer = HttpPeer::new(target, addr.tls, addr.host.clone());
        peer.options.connection_timeout = Some(timeout);
        if addr.tls {
            peer.options.ca = ca;
        }
        let connector = Connector::new(None);
        let (mut session, _) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("connect to {} failed: {e}", addr.host))?;
        let path = if addr.base_path.is_empty() {
            "/".to_string()
        } else {
            addr.base_path.clone()
        };
        let mut req = pingora::http::RequestHeader::build("GET", path.as_bytes(), None)
            .map_err(|e| format!("bad request path: {e}"))?;
        let host = if matches!((addr.tls, addr.port), (true, 443) | (false, 80)) {
            addr.host.clone()
        } else {
            format!("{}:{}", addr.host, addr.port)
        };
        req.insert_header(http::header::HOST, host)
            .map_err(|e| e.to_string())?;
        req.insert_header(http::header::ACCEPT, "application/json")
            .map_err(|e| e.to_string())?;
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        session
            .finish_request_body()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        session
            .read_response_header()
            .await
            .map_err(|e| format!("no response: {e}"))?;
        let status = session.response_header().map_or(0, |h| h.status.as_u16());
        if status != 200 {
            return Err(format!("answered {status}"));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| format!("body failed: {e}"))?
        {
            if body.len() + chunk.len() > max {
                return Err(format!("body larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.to_vec())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}
