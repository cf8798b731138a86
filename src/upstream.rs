//! Provider peers: one `pingora-load-balancing` pool per provider, its peers resolved by a
//! discovery that re-resolves DNS on every update, and a background health check that records
//! what `/health/providers` shows.

use crate::config::{Config, HealthCheckMode, ProviderKind, Secret, Strategy};
use crate::strategy::{self, LatencyEwma, PassiveHealth, PeerView};
use async_trait::async_trait;
use http::HeaderValue;
use pingora::connectors::http::Connector;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::tls::CaType;
use pingora::utils::tls::WrappedX509;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A parsed `base_url`: where to connect and which path prefix to put before routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1` (may be empty).
    pub base_path: String,
}

impl PeerAddress {
    /// Parses a `base_url`. The error says what is wrong without repeating the URL: config
    /// errors are printed to terminals and logs, and a value in the wrong field may be a key.
    pub fn parse(url: &str) -> Result<Self, String> {
        const SCHEME: &str = "must be an http:// or https:// URL";
        const PORT: &str = "must have a port number from 0 to 65535 after the host";
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(SCHEME.into());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(
                "must not carry credentials (user:password@): keys belong in api_key".into(),
            );
        }
        let no_host = || "must name a host after the scheme".to_string();
        if authority.is_empty() {
            return Err(no_host());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| "has an IPv6 host without its closing ]".to_string())?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| PORT.to_string())?,
                None if after.is_empty() => default_port,
                None => return Err(PORT.into()),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| PORT.to_string())?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(no_host());
        }
        Ok(PeerAddress {
            tls,
            host,
            port,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Health and latency of one peer, written by the health check and the request path.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Unix millis of the last health check (0 = never).
    pub last_check_ms: AtomicU64,
    /// Last check's connect latency in microseconds.
    pub latency_us: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub resolved: Mutex<Option<SocketAddr>>,
    /// Time to first byte of answered requests (the `performance` strategy).
    pub ewma: LatencyEwma,
    /// Consecutive request failures cool a peer down until it answers or a check flips it back.
    pub passive: PassiveHealth,
}

/// One upstream endpoint of a provider.
#[derive(Debug)]
pub struct PeerInfo {
    pub provider: ProviderKind,
    pub base_url: String,
    pub address: PeerAddress,
    pub api_key: Option<Secret>,
    pub weight: usize,
    /// Trusted roots for this peer when the provider has a `ca_file`: the system's plus it.
    pub ca: Option<Arc<CaType>>,
    pub stats: PeerStats,
    /// `host:port` as the `Host` header writes it; rendered once, used by every request.
    pub authority: String,
    pub host_header: HeaderValue,
    /// The gateway key's upstream header value (`Bearer …` for OpenAI), marked sensitive.
    pub gateway_auth: Option<HeaderValue>,
    /// What the background task checks for this peer: `"http"` when the provider's check is
    /// HTTP and this peer has a gateway key to authenticate it with, else `"tcp"`.
    pub check: &'static str,
}

/// The header value that carries `key` to `provider`, marked sensitive (never indexed by
/// HPACK); `None` for a key that cannot be a header value.
pub fn auth_header_value(provider: ProviderKind, key: &str) -> Option<HeaderValue> {
    let mut v = match provider {
        ProviderKind::OpenAi => {
            let mut b = Vec::with_capacity(7 + key.len());
            b.extend_from_slice(b"Bearer ");
            b.extend_from_slice(key.as_bytes());
            HeaderValue::from_maybe_shared(bytes::Bytes::from(b)).ok()?
        }
        ProviderKind::Gemini => HeaderValue::from_str(key).ok()?,
    };
    v.set_sensitive(true);
    Some(v)
}

impl PeerInfo {
    /// A Pingora peer for one attempt to this endpoint at a resolved address.
    pub fn http_peer(&self, addr: SocketAddr, timeout: Duration) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.address.tls, self.address.host.clone());
        peer.options.connection_timeout = Some(timeout.min(Duration::from_secs(10)));
        peer.options.idle_timeout = Some(Duration::from_secs(90));
        if self.address.tls {
            // HTTP/2 where the upstream offers it, else HTTP/1.1.
            peer.options.set_http_version(2, 1);
            peer.options.ca = self.ca.clone();
        }
        peer
    }
}

/// The peers of one provider behind a health-checked pool.
pub struct ProviderPool {
    pub kind: ProviderKind,
    pub peers: Vec<Arc<PeerInfo>>,
    pub lb: Arc<LoadBalancer<RoundRobin>>,
    strategy: Strategy,
    rr: std::sync::atomic::AtomicUsize,
}

impl ProviderPool {
    pub fn new(kind: ProviderKind, config: &Config) -> Option<Self> {
        let provider = config.provider(kind)?;
        let mut peers = Vec::new();
        let ca = match &provider.ca_file {
            Some(path) => match load_roots(path) {
                Ok(ca) => Some(ca),
                Err(e) => {
                    log::error!(target: "gateway:upstream", "providers.{}.ca_file: {e}", kind.name());
                    None
                }
            },
            None => None,
        };
        let http_check = matches!(provider.health_check, HealthCheckMode::Http { .. });
        let mut add = |base_url: &str, key: &Option<Secret>, weight: usize| {
            if let Ok(address) = PeerAddress::parse(base_url) {
                let authority = address.authority();
                let Ok(host_header) = HeaderValue::from_str(&authority) else {
                    return;
                };
                peers.push(Arc::new(PeerInfo {
                    provider: kind,
                    base_url: base_url.to_string(),
                    address,
                    api_key: key.clone(),
                    weight: weight.max(1),
                    ca: ca.clone(),
                    stats: PeerStats::default(),
                    authority,
                    host_header,
                    gateway_auth: key
                        .as_ref()
                        .and_then(|k| auth_header_value(kind, k.expose())),
                    check: if http_check && key.is_some() {
                        "http"
                    } else {
                        "tcp"
                    },
                }));
            }
        };
        add(&provider.base_url, &provider.api_key, provider.weight);
        for ep in &provider.endpoints {
            add(
                &ep.base_url,
                &ep.api_key.clone().or_else(|| provider.api_key.clone()),
                ep.weight,
            );
        }
        let discovery = Discovery {
            peers: peers.clone(),
        };
        let mut backends = Backends::new(Box::new(discovery));
        backends.set_health_check(Box::new(PeerCheck {
            mode: provider.health_check.clone(),
            timeout: provider.timeout.min(CHECK_TIMEOUT),
            connector: Connector::new(None),
        }));
        let mut lb = LoadBalancer::<RoundRobin>::from_backends(backends);
        lb.health_check_frequency = Some(config.routing.health_check_interval);
        // Re-resolve names as often as we check health: provider IPs move.
        lb.update_frequency = Some(
            config
                .routing
                .health_check_interval
                .max(Duration::from_secs(1)),
        );
        lb.parallel_health_check = true;
        Some(ProviderPool {
            kind,
            peers,
            lb: Arc::new(lb),
            strategy: config.routing.strategy,
            rr: std::sync::atomic::AtomicUsize::new(fastrand::usize(..)),
        })
    }

    /// Picks the peer for the next attempt by the routing strategy, among healthy peers,
    /// avoiding cooled-down peers and those this request already failed on (`tried` lists one
    /// address per failed attempt).
    pub fn select(&self, tried: &[SocketAddr]) -> Option<(Arc<PeerInfo>, SocketAddr)> {
        let now = std::time::Instant::now();
        let backends = self.lb.backends().get_backend();
        let mut found: Vec<(Arc<PeerInfo>, SocketAddr)> = Vec::with_capacity(backends.len());
        let mut views: Vec<PeerView> = Vec::with_capacity(backends.len());
        for b in backends.iter() {
            let (Some(info), Some(addr)) = (b.ext.get::<Arc<PeerInfo>>(), b.addr.as_inet()) else {
                continue;
            };
            views.push(PeerView {
                index: found.len(),
                weight: info.weight,
                healthy: self.lb.backends().ready(b),
                cooling: info.stats.passive.is_cooling(now),
                ewma: info.stats.ewma.get(),
                failures_this_request: tried.iter().filter(|t| *t == addr).count() as u32,
            });
            found.push((info.clone(), *addr));
        }
        let mut rng = fastrand::Rng::new();
        let i = strategy::choose_peer(self.strategy, &views, &self.rr, &mut rng)?;
        found.into_iter().nth(i)
    }

    /// The lowest latency seen among this provider's peers (orders virtual-model candidates
    /// under `performance`).
    pub fn best_latency(&self) -> Option<Duration> {
        self.peers.iter().filter_map(|p| p.stats.ewma.get()).min()
    }

    /// Whether any peer is currently healthy.
    pub fn any_healthy(&self) -> bool {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .any(|b| self.lb.backends().ready(b))
    }

    /// Each peer with its resolved backend's health, for `/health/providers`.
    pub fn peer_health(&self) -> Vec<(Arc<PeerInfo>, bool)> {
        let backends = self.lb.backends().get_backend();
        self.peers
            .iter()
            .map(|p| {
                let healthy = backends
                    .iter()
                    .any(|b| same_peer(b, p) && self.lb.backends().ready(b));
                (p.clone(), healthy)
            })
            .collect()
    }
}

/// The certificates of a PEM file, each checked to be a parsable X.509 certificate.
///
/// Errors do not repeat the path (the caller names the field it came from) nor any of the
/// file's content: a `ca_file` pointing at the wrong file may point at a private key.
pub fn pem_certificates(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file",
            std::io::ErrorKind::PermissionDenied => "permission denied",
            std::io::ErrorKind::InvalidData => "not a text file",
            _ => "read error",
        };
        format!("cannot read the file ({why})")
    })?;
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            let b64 = current.take().unwrap_or_default();
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| "the file holds a certificate that is not valid base64".to_string())?;
            x509_parser::parse_x509_certificate(&der)
                .map_err(|_| "the file holds a certificate that is not valid X.509".to_string())?;
            out.push(der);
        } else if let Some(buf) = current.as_mut() {
            buf.push_str(line);
        }
    }
    if out.is_empty() {
        return Err("the file holds no PEM certificate".into());
    }
    Ok(out)
}

/// System roots plus the certificates of `path`: Pingora uses a per-peer CA list instead of
/// the system store, and an extra CA must not make public upstreams untrusted.
pub fn load_roots(path: &std::path::Path) -> Result<Arc<CaType>, String> {
    let mut ders = pem_certificates(path)?;
    if let Ok(system) = pingora::tls::load_native_certs() {
        ders.extend(system.into_iter().map(|c| c.as_ref().to_vec()));
    }
    let certs: Vec<WrappedX509> = ders
        .into_iter()
        .filter(|der| x509_parser::parse_x509_certificate(der).is_ok())
        .map(|der| WrappedX509::new(der, pingora::utils::tls::parse_x509))
        .collect();
    Ok(Arc::from(certs))
}

fn same_peer(b: &Backend, p: &Arc<PeerInfo>) -> bool {
    b.ext
        .get::<Arc<PeerInfo>>()
        .is_some_and(|x| Arc::ptr_eq(x, p))
}

/// Resolves every peer's host on each update; a name that does not resolve is left out
/// (and reported) instead of failing startup.
struct Discovery {
    peers: Vec<Arc<PeerInfo>>,
}

#[async_trait]
impl ServiceDiscovery for Discovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut set = BTreeSet::new();
        for peer in &self.peers {
            let target = (peer.address.host.as_str(), peer.address.port);
            let resolved = match tokio::net::lookup_host(target).await {
                Ok(mut addrs) => addrs.next(),
                Err(e) => {
                    set_error(peer, format!("DNS lookup failed: {e}"));
                    None
                }
            };
            if let Ok(mut slot) = peer.stats.resolved.lock() {
                *slot = resolved;
            }
            if let Some(addr) = resolved {
                let mut backend = Backend {
                    addr: PingoraAddr::Inet(addr),
                    weight: peer.weight,
                    ext: Default::default(),
                };
                backend.ext.insert(peer.clone());
                set.insert(backend);
            }
        }
        Ok((set, HashMap::new()))
    }
}

fn set_error(peer: &PeerInfo, error: String) {
    if let Ok(mut slot) = peer.stats.last_error.lock() {
        *slot = Some(error);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The longest a check waits (connect, and for HTTP the response header): a check is cheap
/// or the peer is in trouble.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The health check of one provider's peers: an authenticated HTTP request where the config
/// asks for one and the peer has a gateway key, else a TCP connect.
///
/// A TCP connect alone keeps a peer that accepts connections but answers 401 or 5xx to
/// everything (a revoked key, a broken proxy, a provider outage behind its load balancer)
/// "healthy", so requests keep going to it and fail over one by one. An HTTP check on the
/// model list fails such a peer once per interval instead of once per request. A peer without
/// a gateway key cannot be asked anything authenticated (its callers bring their own keys), so
/// it keeps the TCP check rather than failing for the lack of a key.
struct PeerCheck {
    mode: HealthCheckMode,
    timeout: Duration,
    /// A connector of its own, never given sessions back: each check opens a fresh
    /// connection (a pooled one would prove nothing about connecting) and checks never take
    /// connections from the request path's pool.
    connector: Connector,
}

/// What a check found; `Err` is shown as the peer's `last_error` and never holds a key.
type CheckResult = Result<(), String>;

impl PeerCheck {
    async fn tcp(&self, addr: SocketAddr) -> CheckResult {
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect to {addr} failed: {e}")),
            Err(_) => Err(format!("connect to {addr} timed out")),
        }
    }

    /// `GET {base_path}{path}` with the peer's gateway key; healthy on a 2xx. The answer's
    /// body is never read: a refusal may echo the key, and the status is all that counts.
    async fn http(
        &self,
        info: &PeerInfo,
        addr: SocketAddr,
        path: &str,
        auth: &HeaderValue,
    ) -> CheckResult {
        let full = format!("{}{}", info.address.base_path, path);
        // The query (e.g. `?pageSize=1`) is left out of messages: only the path names the check.
        let shown = full.split('?').next().unwrap_or(&full).to_string();
        let header = check_request(info, &full, auth)
            .map_err(|e| format!("health check GET {shown} cannot be sent: {e}"))?;
        let peer = info.http_peer(addr, self.timeout);
        let work = async {
            let (mut up, _reused) =
                self.connector.get_http_session(&peer).await.map_err(|e| {
                    format!("health check GET {shown}: connect to {addr} failed: {e}")
                })?;
            let exchange = async {
                up.write_request_header(Box::new(header)).await?;
                up.finish_request_body().await?;
                up.read_response_header().await
            };
            exchange
                .await
                .map_err(|e| format!("health check GET {shown} failed: {e}"))?;
            let status = up
                .response_header()
                .map(|h| h.status)
                .ok_or_else(|| format!("health check GET {shown} got no response header"))?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!(
                    "health check GET {shown} answered {}",
                    status.as_u16()
                ))
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "health check GET {shown} got no answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }
}

/// The check's request header: the peer's `Host`, the gateway key in the provider's own
/// header (`Authorization: Bearer` for OpenAI, `x-goog-api-key` for Gemini), marked sensitive.
fn check_request(
    info: &PeerInfo,
    path: &str,
    auth: &HeaderValue,
) -> Result<pingora::http::RequestHeader, String> {
    use http::header;
    let uri = http::Uri::try_from(path).map_err(|_| "not a valid request path".to_string())?;
    let mut h = http::HeaderMap::with_capacity(4);
    h.insert(header::HOST, info.host_header.clone());
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("llm-gateway-health/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let name = match info.provider {
        ProviderKind::OpenAi => header::AUTHORIZATION,
        ProviderKind::Gemini => http::HeaderName::from_static("x-goog-api-key"),
    };
    h.insert(name, auth.clone());
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = http::Method::GET;
    parts.uri = uri;
    parts.headers = h;
    Ok(pingora::http::RequestHeader::from(parts))
}

#[async_trait]
impl HealthCheck for PeerCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        let info = target.ext.get::<Arc<PeerInfo>>().cloned();
        let Some(addr) = target.addr.as_inet().copied() else {
            return Err(pingora::Error::new_str("not an inet address"));
        };
        let started = std::time::Instant::now();
        let result = match (&self.mode, info.as_deref()) {
            (HealthCheckMode::Http { path }, Some(peer)) => match &peer.gateway_auth {
                Some(auth) => self.http(peer, addr, path, auth).await,
                None => self.tcp(addr).await,
            },
            (HealthCheckMode::Tcp, _) | (HealthCheckMode::Http { .. }, None) => {
                self.tcp(addr).await
            }
        };
        if let Some(info) = info {
            info.stats.last_check_ms.store(now_ms(), Ordering::Relaxed);
            match &result {
                Ok(()) => {
                    info.stats
                        .latency_us
                        .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    if let Ok(mut slot) = info.stats.last_error.lock() {
                        *slot = None;
                    }
                }
                Err(e) => set_error(&info, e.clone()),
            }
        }
        result.map_err(|e| pingora::Error::explain(pingora::ErrorType::ConnectError, e))
    }

    /// A peer that passes its check again is no longer cooled down by past request failures.
    /// Each flip is logged once (with the check's finding, which never holds a key), so an
    /// operator sees why a peer stopped getting traffic.
    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let Some(info) = target.ext.get::<Arc<PeerInfo>>() else {
            return;
        };
        if healthy {
            info.stats.passive.clear();
            log::info!(target: "gateway:upstream", "{} peer {} is healthy again", info.provider.name(), info.base_url);
        } else {
            let why = info
                .stats
                .last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default();
            log::warn!(target: "gateway:upstream", "{} peer {} is unhealthy: {why}", info.provider.name(), info.base_url);
        }
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_base_urls() {
        let a = PeerAddress::parse("https://api.openai.com/v1").unwrap();
        assert_eq!(
            (a.tls, a.host.as_str(), a.port, a.base_path.as_str()),
            (true, "api.openai.com", 443, "/v1")
        );
        assert_eq!(a.authority(), "api.openai.com");
        let b = PeerAddress::parse("http://127.0.0.1:9000/v1beta/").unwrap();
        assert_eq!(
            (b.tls, b.port, b.base_path.as_str()),
            (false, 9000, "/v1beta")
        );
        assert_eq!(b.authority(), "127.0.0.1:9000");
        let c = PeerAddress::parse("http://[::1]:9000").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.base_path.as_str()),
            ("::1", 9000, "")
        );
        assert_eq!(c.authority(), "[::1]:9000");
        assert!(PeerAddress::parse("ftp://x").is_err());
        assert!(PeerAddress::parse("http://:80").is_err());
        assert!(PeerAddress::parse("http://user:pw@host").is_err());
        assert!(PeerAddress::parse("http://host:notaport").is_err());
    }
}
