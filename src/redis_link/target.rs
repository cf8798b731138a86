//! Where Redis is and how to reach it (SPEC §14): one server (`redis://`, `rediss://`), a
//! Cluster (`cache.redis_cluster` or a `redis+cluster://` URL) or a Sentinel-watched master
//! (`cache.redis_sentinel`), the TLS files and the encryption keys. Pure data, compared on
//! reload; [`RedisTarget::clients`] turns it into the driver's clients (reading the files).

use crate::config::{CacheConfig, Secret, SecretUrl};
use base64::Engine as _;
use redis::{ClientTlsConfig, TlsCertificates};
use std::path::PathBuf;

#[derive(Clone, PartialEq, Debug)]
pub enum Topology {
    Single(SecretUrl),
    Cluster(Vec<SecretUrl>),
    Sentinel {
        master: String,
        nodes: Vec<SecretUrl>,
    },
}

/// Everything that decides which Redis the gateway talks to and what it writes there.
#[derive(Clone, PartialEq, Debug)]
pub struct RedisTarget {
    pub topology: Topology,
    /// PEM file of CAs trusted in addition to the system roots, for `rediss://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for Redis servers that require mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Base64 of 32 bytes each: the first seals, all of them open (rotation).
    pub keys: Vec<Secret>,
}

/// The driver's clients for a target.
pub enum Clients {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    Sentinel(redis::sentinel::SentinelClient),
}

impl RedisTarget {
    /// One plain server and nothing else (tests, and `responses.redis_url` before it inherits
    /// the cache's TLS files and keys).
    pub fn single(url: &str) -> Self {
        Self {
            topology: Topology::Single(SecretUrl::new(url)),
            ca_file: None,
            client_cert: None,
            keys: Vec::new(),
        }
    }

    /// The cache's Redis (also the rate limiter's): `None` when none is configured.
    pub fn from_cache(c: &CacheConfig) -> Option<Self> {
        let topology = if !c.redis_cluster.is_empty() {
            Topology::Cluster(c.redis_cluster.clone())
        } else if let Some(s) = &c.redis_sentinel {
            Topology::Sentinel {
                master: s.master.clone(),
                nodes: s.nodes.clone(),
            }
        } else {
            let url = c.redis_url.as_ref()?;
            match cluster_seed(url.expose()) {
                Some(seed) => Topology::Cluster(vec![SecretUrl::new(seed)]),
                None => Topology::Single(url.clone()),
            }
        };
        let mut keys: Vec<Secret> = c.encryption_key.iter().cloned().collect();
        if !keys.is_empty() {
            keys.extend(c.encryption_old_keys.iter().cloned());
        }
        Some(Self {
            topology,
            ca_file: c.redis_ca_file.clone(),
            client_cert: c.redis_client_cert.clone().zip(c.redis_client_key.clone()),
            keys,
        })
    }

    /// The Redis for conversation state: `responses.redis_url` with the cache's TLS files and
    /// keys, else the cache's own target.
    pub fn for_responses(c: &crate::config::Config) -> Option<Self> {
        let cache = Self::from_cache(&c.cache);
        match (&c.responses.redis_url, cache) {
            (Some(url), Some(cache)) => Some(cache.with_url(url)),
            (Some(url), None) => {
                let mut cache_files = c.cache.clone();
                cache_files.redis_url = Some(url.clone());
                cache_files.redis_cluster.clear();
                cache_files.redis_sentinel = None;
                Self::from_cache(&cache_files)
            }
            (None, cache) => cache,
        }
    }

    /// The same TLS files and keys on another URL (`responses.redis_url`).
    pub fn with_url(&self, url: &SecretUrl) -> Self {
        let topology = match cluster_seed(url.expose()) {
            Some(seed) => Topology::Cluster(vec![SecretUrl::new(seed)]),
            None => Topology::Single(url.clone()),
        };
        Self {
            topology,
            ..self.clone()
        }
    }

    /// The nodes as configured, credentials removed: for `/health` and logs.
    pub fn describe(&self) -> Vec<String> {
        let urls = match &self.topology {
            Topology::Single(u) => std::slice::from_ref(u),
            Topology::Cluster(n) | Topology::Sentinel { nodes: n, .. } => n.as_slice(),
        };
        urls.iter().map(SecretUrl::redacted).collect()
    }

    pub fn kind(&self) -> &'static str {
        match self.topology {
            Topology::Single(_) => "single",
            Topology::Cluster(_) => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        }
    }

    /// The decoded encryption keys. Errors name the field, never the value.
    pub fn key_bytes(&self) -> Result<Vec<[u8; 32]>, String> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                decode_key(k.expose()).ok_or_else(|| {
                    if i == 0 {
                        "cache.encryption_key: expected the base64 of 32 bytes".to_string()
                    } else {
                        format!(
                            "cache.encryption_old_keys[{}]: expected the base64 of 32 bytes",
                            i - 1
                        )
                    }
                })
            })
            .collect()
    }

    /// Builds the clients, reading the TLS files. Parses only: no connection is made. Errors
    /// name the field and the problem, never a URL (it may hold a password).
    pub fn clients(&self) -> Result<Clients, String> {
        let certs = self.certificates()?;
        let bad_url = |field: &str, e: redis::RedisError| {
            format!("{field}: not a usable Redis URL ({:?})", e.kind())
        };
        match &self.topology {
            Topology::Single(url) => {
                let client = match (&certs, is_tls(url)) {
                    (Some(c), true) => redis::Client::build_with_tls(url.expose(), c.clone()),
                    _ => redis::Client::open(url.expose()),
                };
                client
                    .map(Clients::Single)
                    .map_err(|e| bad_url("cache.redis_url", e))
            }
            Topology::Cluster(nodes) => {
                let mut b = redis::cluster::ClusterClient::builder(
                    nodes.iter().map(|u| u.expose().to_string()),
                )
                .connection_timeout(super::CONNECT_TIMEOUT)
                .response_timeout(super::RESPONSE_TIMEOUT)
                // Redirections (MOVED/ASK during a resharding) and a failover are retried
                // inside the caller's bound, never longer.
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(100);
                if let (Some(c), true) = (&certs, nodes.iter().any(is_tls)) {
                    b = b.certs(c.clone());
                }
                b.build()
                    .map(Clients::Cluster)
                    .map_err(|e| bad_url("cache.redis_cluster", e))
            }
            Topology::Sentinel { master, nodes } => {
                let tls = nodes.iter().any(is_tls);
                let addrs: Vec<String> = nodes.iter().map(|u| u.expose().to_string()).collect();
                let first = nodes
                    .first()
                    .ok_or("cache.redis_sentinel.nodes: at least one sentinel is needed")?;
                // The master is reached with the sentinels' scheme and credentials.
                let info = redis::IntoConnectionInfo::into_connection_info(first.expose())
                    .map_err(|e| bad_url("cache.redis_sentinel.nodes", e))?;
                let mut b = redis::sentinel::SentinelClientBuilder::new(
                    addrs
                        .iter()
                        .map(|a| {
                            redis::IntoConnectionInfo::into_connection_info(a.as_str())
                                .map(|i| i.addr().clone())
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| bad_url("cache.redis_sentinel.nodes", e))?,
                    master.clone(),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(|e| bad_url("cache.redis_sentinel.nodes", e))?;
                let redis_info = info.redis_settings();
                if let Some(user) = redis_info.username() {
                    b = b
                        .set_client_to_redis_username(user)
                        .set_client_to_sentinel_username(user);
                }
                if let Some(pw) = redis_info.password() {
                    b = b
                        .set_client_to_redis_password(pw)
                        .set_client_to_sentinel_password(pw);
                }
                if tls {
                    b = b
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
                    if let Some(c) = certs {
                        b = b.set_client_to_redis_certificates(c.clone());
                        b = b.set_client_to_sentinel_certificates(c);
                    }
                }
                b.build()
                    .map(Clients::Sentinel)
                    .map_err(|e| bad_url("cache.redis_sentinel", e))
            }
        }
    }

    /// A client for each configured URL (the server, the Cluster seeds, the sentinels), with
    /// the TLS files: what the health probe pings. Errors as [`RedisTarget::clients`].
    pub(super) fn node_clients(&self) -> Result<Vec<redis::Client>, String> {
        let certs = self.certificates()?;
        let urls = match &self.topology {
            Topology::Single(u) => std::slice::from_ref(u),
            Topology::Cluster(n) | Topology::Sentinel { nodes: n, .. } => n.as_slice(),
        };
        urls.iter()
            .map(|url| {
                match (&certs, is_tls(url)) {
                    (Some(c), true) => redis::Client::build_with_tls(url.expose(), c.clone()),
                    _ => redis::Client::open(url.expose()),
                }
                .map_err(|e| format!("cache.redis_url: not a usable Redis URL ({:?})", e.kind()))
            })
            .collect()
    }

    /// The trust roots and client certificate, when files are configured: the system roots
    /// plus `ca_file` (the driver would otherwise trust `ca_file` alone).
    fn certificates(&self) -> Result<Option<TlsCertificates>, String> {
        if self.ca_file.is_none() && self.client_cert.is_none() {
            return Ok(None);
        }
        let read = |field: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("{field}: cannot read {}: {e}", path.display()))
        };
        let root_cert = match &self.ca_file {
            None => None,
            Some(path) => {
                let extra = read("cache.redis_ca_file", path)?;
                if !extra
                    .windows(27)
                    .any(|w| w == b"-----BEGIN CERTIFICATE-----")
                {
                    return Err(format!(
                        "cache.redis_ca_file: {} holds no PEM certificate",
                        path.display()
                    ));
                }
                let mut pem = system_roots_pem();
                pem.extend_from_slice(&extra);
                Some(pem)
            }
        };
        let client_tls = match &self.client_cert {
            None => None,
            Some((cert, key)) => Some(ClientTlsConfig {
                client_cert: read("cache.redis_client_cert", cert)?,
                client_key: read("cache.redis_client_key", key)?,
            }),
        };
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }
}

fn is_tls(url: &SecretUrl) -> bool {
    url.expose().starts_with("rediss://")
}

/// `redis+cluster://…` / `rediss+cluster://…` → the seed node's plain URL.
fn cluster_seed(url: &str) -> Option<String> {
    if let Some(rest) = url.strip_prefix("redis+cluster://") {
        Some(format!("redis://{rest}"))
    } else {
        url.strip_prefix("rediss+cluster://")
            .map(|rest| format!("rediss://{rest}"))
    }
}

pub fn decode_key(b64: &str) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    bytes.try_into().ok()
}

/// The system's trust roots as PEM, loaded as the driver loads them; none when the system
/// has none (then only `ca_file` is trusted).
fn system_roots_pem() -> Vec<u8> {
    let loaded = rustls_native_certs::load_native_certs();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for cert in loaded.certs {
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let text = b64.encode(cert.as_ref());
        for line in text.as_bytes().chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_become_seed_nodes() {
        assert_eq!(
            cluster_seed("redis+cluster://:pw@a:7000").as_deref(),
            Some("redis://:pw@a:7000")
        );
        assert_eq!(
            cluster_seed("rediss+cluster://a:7000").as_deref(),
            Some("rediss://a:7000")
        );
        assert_eq!(cluster_seed("redis://a:7000"), None);
    }

    #[test]
    fn keys_must_be_32_bytes_and_errors_name_the_field_only() {
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let mut t = RedisTarget::single("redis://a");
        t.keys = vec![Secret::new(good.as_str()), Secret::new("c2hvcnQ=")];
        let e = t.key_bytes().unwrap_err();
        assert_eq!(
            e,
            "cache.encryption_old_keys[0]: expected the base64 of 32 bytes"
        );
        t.keys.truncate(1);
        assert_eq!(t.key_bytes().unwrap(), vec![[7u8; 32]]);
    }

    #[test]
    fn describe_redacts_credentials() {
        let t = RedisTarget::single("rediss://app:hunter2@redis.example:6380/0");
        assert_eq!(
            t.describe(),
            vec!["rediss://[REDACTED]@redis.example:6380/0"]
        );
    }

    #[test]
    fn unreadable_ca_file_is_a_field_error() {
        let mut t = RedisTarget::single("rediss://a:6380");
        t.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
        let e = t.clients().err().unwrap();
        assert!(
            e.starts_with("cache.redis_ca_file: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
