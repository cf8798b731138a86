//! Configuration: built-in defaults < YAML file < environment variables < command-line flags.
//!
//! Loading is pure (the environment is passed in as a lookup function), so every rule here is
//! unit-tested without touching the process environment.

mod file;
pub mod identity;
pub mod secret;
mod tracing;

use file::{parse_bool_str, section, Fields, Problems};
pub use secret::{Secret, SecretUrl, REDACTED};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
pub use tracing::{Sampler, TracingConfig};

/// The providers this gateway speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    Gemini,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 2] = [ProviderKind::OpenAi, ProviderKind::Gemini];

    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Gemini => "gemini",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "openai" => Some(ProviderKind::OpenAi),
            "gemini" => Some(ProviderKind::Gemini),
            _ => None,
        }
    }
}

/// Whose provider key reaches the upstream (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Gateway,
    Client,
    Hybrid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    RoundRobin,
    Performance,
    CostOptimized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogOutput {
    Stdout,
    File,
}

const AUTH_MODES: &[(&str, AuthMode)] = &[
    ("gateway", AuthMode::Gateway),
    ("client", AuthMode::Client),
    ("hybrid", AuthMode::Hybrid),
];
const STRATEGIES: &[(&str, Strategy)] = &[
    ("round_robin", Strategy::RoundRobin),
    ("performance", Strategy::Performance),
    ("cost_optimized", Strategy::CostOptimized),
];
const LEVELS: &[(&str, LogLevel)] = &[
    ("debug", LogLevel::Debug),
    ("info", LogLevel::Info),
    ("warn", LogLevel::Warn),
    ("error", LogLevel::Error),
];
const FORMATS: &[(&str, LogFormat)] = &[("json", LogFormat::Json), ("text", LogFormat::Text)];
const OUTPUTS: &[(&str, LogOutput)] = &[("stdout", LogOutput::Stdout), ("file", LogOutput::File)];

/// Serialises a duration as whole milliseconds, the unit the file uses.
fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// The validated, typed configuration the gateway runs with.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub providers: BTreeMap<ProviderKind, ProviderConfig>,
    pub routing: RoutingConfig,
    pub pricing: BTreeMap<String, Price>,
    pub cache: CacheConfig,
    /// Conversation state of gateway-minted Responses API answers (SPEC §11).
    pub responses: ResponsesConfig,
    pub security: SecurityConfig,
    pub logging: LoggingConfig,
    /// OpenTelemetry traces (SPEC §15).
    pub tracing: TracingConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub max_body_bytes: usize,
    pub tls: Option<TlsConfig>,
    /// `production` or `development` (`NODE_ENV` / `GATEWAY_ENV`).
    pub environment: String,
    /// Bound on in-flight proxied requests; beyond it requests are shed with 503.
    pub max_concurrent_requests: usize,
    /// Bound on a whole request across retries and failover.
    #[serde(rename = "request_timeout", serialize_with = "as_millis")]
    pub request_timeout: Duration,
    /// Pingora worker threads for the proxy service.
    pub threads: usize,
    /// Tokio work stealing between those threads. Off, each thread runs its own
    /// single-threaded runtime and keeps the connections it accepted, which costs less per
    /// request; on, a busy thread's connections can move to an idle one.
    pub work_stealing: bool,
    /// How long SIGTERM waits for in-flight requests and streams.
    #[serde(rename = "grace_period_seconds", serialize_with = "as_secs")]
    pub grace_period: Duration,
    /// Largest request header block a client may send. Without a bound, a client holding
    /// many connections open with huge unfinished headers makes the gateway buffer them all.
    pub max_header_bytes: usize,
    /// Longest time a client may take to send a whole request header, so a client dribbling
    /// one header line at a time cannot hold a connection forever.
    #[serde(serialize_with = "as_millis")]
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection is kept before it is closed; each one holds
    /// buffers, so idle connections must not accumulate without bound.
    #[serde(serialize_with = "as_millis")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub allow_client_keys: bool,
    pub require_auth_header: bool,
    pub keys: Vec<AccessKey>,
    /// `jwt`, `admin_key`, `state_file` (SPEC §13).
    #[serde(flatten)]
    pub identity: identity::IdentityConfig,
}

/// A gateway access key, held either as the key itself or as its SHA-256.
#[derive(Debug, Clone, Serialize)]
pub struct AccessKey {
    pub id: String,
    #[serde(skip)]
    pub sha256: [u8; 32],
    pub rate_limit_rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// USD spend limit, counted and enforced exactly as a managed key's (SPEC §13).
    pub budget: Option<crate::identity::Budget>,
    /// With a budget, the caller the request path charges (built once here, not per
    /// request); `None` keeps a key without budget off the accounting path.
    #[serde(skip)]
    pub policy: Option<std::sync::Arc<crate::identity::CallerPolicy>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderConfig {
    pub enabled: bool,
    pub api_key: Option<Secret>,
    pub base_url: String,
    #[serde(serialize_with = "as_millis")]
    pub timeout: Duration,
    pub retry_count: u32,
    pub endpoints: Vec<EndpointConfig>,
    pub models: Option<Vec<String>>,
    pub ca_file: Option<PathBuf>,
    pub weight: usize,
    pub health_check: HealthCheckMode,
}

/// How the background task checks a provider's peers (`providers.<p>.health_check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckMode {
    /// A TCP connect: catches a dead host or port, but not a peer that accepts connections and
    /// refuses every request.
    Tcp,
    /// An authenticated `GET {base_url}{path}` with the peer's gateway key, healthy on a 2xx.
    /// A peer without a gateway key has nothing to authenticate with and gets the TCP check.
    Http { path: String },
}

impl HealthCheckMode {
    /// The model list: cheap, free of charge on both providers, and it needs a valid key.
    pub const DEFAULT_HTTP_PATH: &'static str = "/models";
}

/// Written the way the file spells it, so `/config` output is valid config again.
impl Serialize for HealthCheckMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            HealthCheckMode::Tcp => s.serialize_str("tcp"),
            HealthCheckMode::Http { path } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("path", path)?;
                m.end()
            }
        }
    }
}

/// One more peer of a provider: another region, key or proxy.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointConfig {
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub weight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoutingConfig {
    pub strategy: Strategy,
    pub failover_enabled: bool,
    #[serde(rename = "health_check_interval_ms", serialize_with = "as_millis")]
    pub health_check_interval: Duration,
    /// Virtual models: name → `provider/model` candidates, in order.
    pub models: BTreeMap<String, Vec<String>>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheConfig {
    pub enabled: bool,
    #[serde(serialize_with = "as_secs")]
    pub ttl: Duration,
    pub max_size: usize,
    pub redis_url: Option<SecretUrl>,
    /// Production Redis (SPEC §14): extra CA, client certificate, Cluster, Sentinel, keys.
    pub redis_ca_file: Option<PathBuf>,
    pub redis_client_cert: Option<PathBuf>,
    pub redis_client_key: Option<PathBuf>,
    pub redis_cluster: Vec<SecretUrl>,
    pub redis_sentinel: Option<SentinelConfig>,
    pub encryption_key: Option<Secret>,
    pub encryption_old_keys: Vec<Secret>,
}

/// `cache.redis_sentinel`: the master's name and the sentinels watching it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentinelConfig {
    pub master: String,
    pub nodes: Vec<SecretUrl>,
}

/// Where and how long the gateway keeps the Responses API answers it mints itself, so that
/// `previous_response_id` and `GET`/`DELETE /v1/responses/{id}` work on every model.
#[derive(Debug, Clone, Serialize)]
pub struct ResponsesConfig {
    /// How long a stored response can be continued or fetched (whole seconds in the file).
    #[serde(serialize_with = "as_secs")]
    pub store_ttl: Duration,
    /// Responses kept in this instance's memory; the oldest go first. 0 keeps none in memory
    /// (Redis only, with nothing to fall back on while Redis is down).
    pub max_stored: usize,
    /// Bound on the memory those responses take (their bytes plus a fixed per-entry overhead).
    pub max_stored_bytes: usize,
    /// Shared store for every instance; `None` falls back to `cache.redis_url` (`REDIS_URL`),
    /// see [`Config::responses_redis_url`].
    pub redis_url: Option<SecretUrl>,
}

/// A day: long enough for any agent loop and a chat resumed later the same day, and it bounds
/// the Redis memory to about one day of traffic (every stored turn holds its whole
/// conversation). OpenAI keeps 30 days; `store_ttl: 2592000` matches it.
const DEFAULT_STORE_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_MAX_STORED: u64 = 10_000;
/// 128 MiB: a quarter of the shipped 512 MiB deployments (Kubernetes limit, Fargate task),
/// leaving the rest to request bodies, streams and the cache.
const DEFAULT_MAX_STORED_BYTES: u64 = 128 * 1024 * 1024;
/// OpenAI keeps stored responses 30 days; more than a year is a typo, not a retention policy.
const MAX_STORE_TTL_SECS: u64 = 365 * 24 * 3600;

#[derive(Debug, Clone, Serialize)]
pub struct SecurityConfig {
    pub cors_enabled: bool,
    pub cors_origins: Vec<String>,
    pub rate_limiting_enabled: bool,
    pub rate_limit_rpm: u64,
    pub api_key_header: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoggingConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    pub output: LogOutput,
    pub file: Option<PathBuf>,
    pub include_request_id: bool,
    pub include_provider_info: bool,
    /// `DEBUG` targets: `*` or `gateway:router,gateway:cache`.
    pub debug: Vec<String>,
}

/// Command-line values that override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub log_level: Option<LogLevel>,
    pub log_format: Option<LogFormat>,
}

/// A successfully loaded config and the warnings met on the way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Every environment variable the gateway reads, besides `${VAR}` references in the file.
pub const ENV_VARS: &[&str] = &[
    "GATEWAY_CONFIG",
    "GATEWAY_HOST",
    "GATEWAY_PORT",
    "NODE_ENV",
    "GATEWAY_ENV",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "CACHE_ENABLED",
    "RATE_LIMITING_ENABLED",
    "CORS_ENABLED",
    "MAX_CONCURRENT_REQUESTS",
    "REQUEST_TIMEOUT",
    "HEALTH_CHECK_INTERVAL_MS",
    "REDIS_URL",
    "DEBUG",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

/// 64 KiB: what common servers accept for a whole request header block (nginx's
/// `large_client_header_buffers` allows 4 × 8 KiB by default), far above any real client's.
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Below this even an ordinary request with a bearer key and a few SDK headers would be refused.
const MIN_MAX_HEADER_BYTES: usize = 1024;

const OPENAI_DEFAULT_URL: &str = "https://api.openai.com/v1";
const GEMINI_DEFAULT_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

impl Config {
    /// Loads from YAML text (already read from disk), the environment and flags.
    /// On failure returns every problem, one line each, naming its field path.
    pub fn load(
        yaml: &str,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Loaded, Vec<String>> {
        let mut root = file::parse_yaml(yaml).map_err(|e| vec![e])?;
        let unset = file::expand_env(&mut root, env, "");
        let mut p = Problems::default();
        let top = section(
            Some(&root),
            "",
            &[
                "server",
                "auth",
                "providers",
                "routing",
                "pricing",
                "cache",
                "responses",
                "security",
                "logging",
                "tracing",
            ],
            &mut p,
        );
        if top.is_none() {
            p.error("(root)", "expected a mapping at the top of the file");
        }
        let get = |k: &str| top.and_then(|m| m.get(k));
        let mut config = Config {
            server: server(get("server"), &mut p),
            auth: auth(get("auth"), &mut p),
            providers: providers(get("providers"), &mut p),
            routing: routing(get("routing"), &mut p),
            pricing: pricing(get("pricing"), &mut p),
            cache: cache(get("cache"), &mut p),
            responses: responses(get("responses"), &mut p),
            security: security(get("security"), &mut p),
            logging: logging(get("logging"), &mut p),
            tracing: tracing::tracing(get("tracing"), env, &mut p),
        };
        for path in unset {
            if path.ends_with("api_key") {
                p.warnings.push(format!(
                    "{path}: references an unset environment variable; no gateway key for this provider"
                ));
            }
        }
        apply_env(&mut config, env, &mut p);
        apply_flags(&mut config, flags);
        validate(&config, &mut p);
        if p.errors.is_empty() {
            Ok(Loaded {
                config,
                warnings: p.warnings,
            })
        } else {
            Err(p.errors)
        }
    }

    /// The effective config as JSON with every secret redacted (for `/config` and `--check`).
    pub fn redacted_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn provider(&self, kind: ProviderKind) -> Option<&ProviderConfig> {
        self.providers.get(&kind).filter(|p| p.enabled)
    }

    /// The Redis that holds conversation state: `responses.redis_url`, else the cache's
    /// (`cache.redis_url` / `REDIS_URL`), so one `REDIS_URL` makes a whole fleet share it.
    pub fn responses_redis_url(&self) -> Option<&SecretUrl> {
        self.responses
            .redis_url
            .as_ref()
            .or(self.cache.redis_url.as_ref())
    }
}

fn server(v: Option<&Value>, p: &mut Problems) -> ServerConfig {
    let m = section(
        v,
        "server",
        &[
            "host",
            "port",
            "max_body_bytes",
            "tls",
            "environment",
            "max_concurrent_requests",
            "request_timeout",
            "threads",
            "work_stealing",
            "grace_period_seconds",
            "max_header_bytes",
            "header_timeout",
            "idle_timeout",
        ],
        p,
    );
    let f = Fields::new(m, "server");
    let port = f.integer("port", "a port number", 8080, p);
    if port > u16::MAX as u64 {
        p.error("server.port", "expected a port number from 0 to 65535");
    }
    let tls = section(f.raw("tls"), "server.tls", &["cert", "key"], p).and_then(|t| {
        let tf = Fields::new(Some(t), "server.tls");
        match (tf.string("cert", p), tf.string("key", p)) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: cert.into(),
                key: key.into(),
            }),
            _ => {
                p.error("server.tls", "needs both cert and key");
                None
            }
        }
    });
    ServerConfig {
        host: f.string("host", p).unwrap_or_else(|| "0.0.0.0".into()),
        port: port.min(u16::MAX as u64) as u16,
        max_body_bytes: f.integer("max_body_bytes", "a number of bytes", 10 * 1024 * 1024, p)
            as usize,
        tls,
        environment: f
            .string("environment", p)
            .unwrap_or_else(|| "production".into()),
        max_concurrent_requests: f.integer("max_concurrent_requests", "a number", 1024, p) as usize,
        request_timeout: Duration::from_millis(f.integer(
            "request_timeout",
            "a number of milliseconds",
            120_000,
            p,
        )),
        threads: f.integer("threads", "a number", 1, p) as usize,
        work_stealing: f.boolean("work_stealing", false, p),
        grace_period: Duration::from_secs(f.integer(
            "grace_period_seconds",
            "a number of seconds",
            30,
            p,
        )),
        max_header_bytes: f.integer(
            "max_header_bytes",
            "a number of bytes",
            DEFAULT_MAX_HEADER_BYTES as u64,
            p,
        ) as usize,
        header_timeout: Duration::from_millis(f.integer(
            "header_timeout",
            "a number of milliseconds",
            10_000,
            p,
        )),
        idle_timeout: Duration::from_millis(f.integer(
            "idle_timeout",
            "a number of milliseconds",
            60_000,
            p,
        )),
    }
}

fn auth(v: Option<&Value>, p: &mut Problems) -> AuthConfig {
    let m = section(
        v,
        "auth",
        &[
            "mode",
            "allow_client_keys",
            "require_auth_header",
            "keys",
            "jwt",
            "admin_key",
            "state_file",
        ],
        p,
    );
    let f = Fields::new(m, "auth");
    let mut keys = Vec::new();
    match f.raw("keys") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("auth.keys[{i}]");
                let km = section(
                    Some(item),
                    &path,
                    &["id", "key", "sha256", "rate_limit_rpm", "tpm", "budget"],
                    p,
                );
                let kf = Fields::new(km, &path);
                let id = kf.string("id", p).unwrap_or_else(|| format!("key-{i}"));
                let digest = match (kf.secret("key", p), kf.string("sha256", p)) {
                    (Some(key), None) => Some(crate::auth::sha256(key.as_bytes())),
                    (None, Some(hex_digest)) => match hex::decode(hex_digest.trim()) {
                        Ok(bytes) if bytes.len() == 32 => {
                            let mut d = [0u8; 32];
                            d.copy_from_slice(&bytes);
                            Some(d)
                        }
                        _ => {
                            p.error(
                                &format!("{path}.sha256"),
                                "expected 64 hexadecimal characters",
                            );
                            None
                        }
                    },
                    (Some(_), Some(_)) => {
                        p.error(&path, "set either key or sha256, not both");
                        None
                    }
                    (None, None) => {
                        p.warnings.push(format!(
                            "{path}: no key or sha256 (unset variable?); key ignored"
                        ));
                        None
                    }
                };
                let rpm = kf
                    .raw("rate_limit_rpm")
                    .map(|_| kf.integer("rate_limit_rpm", "a number", 0, p));
                let tpm = kf.raw("tpm").map(|_| kf.integer("tpm", "a number", 0, p));
                let budget = kf.raw("budget").and_then(|v| {
                    crate::identity::Budget::from_object(v)
                        .map_err(|(field, problem)| {
                            let at = kf.path_of("budget");
                            let at = if field.is_empty() {
                                at
                            } else {
                                format!("{at}.{field}")
                            };
                            p.error(&at, problem)
                        })
                        .ok()
                });
                if let Some(sha256) = digest {
                    let policy = budget.map(|b| {
                        std::sync::Arc::new(crate::identity::CallerPolicy {
                            id: id.clone(),
                            models: None,
                            rpm,
                            tpm,
                            budget: Some(b),
                        })
                    });
                    keys.push(AccessKey {
                        id,
                        sha256,
                        rate_limit_rpm: rpm,
                        tpm,
                        budget,
                        policy,
                    });
                }
            }
        }
        Some(other) => p.error(
            "auth.keys",
            format!("expected a list, got {}", file::describe(other)),
        ),
    }
    AuthConfig {
        mode: f.choice("mode", AUTH_MODES, AuthMode::Hybrid, p),
        allow_client_keys: f.boolean("allow_client_keys", true, p),
        require_auth_header: f.boolean("require_auth_header", false, p),
        keys,
        identity: identity::identity(&f, p),
    }
}

fn providers(v: Option<&Value>, p: &mut Problems) -> BTreeMap<ProviderKind, ProviderConfig> {
    let m = section(v, "providers", &["openai", "gemini"], p);
    let mut out = BTreeMap::new();
    for kind in ProviderKind::ALL {
        let path = format!("providers.{}", kind.name());
        let default_url = match kind {
            ProviderKind::OpenAi => OPENAI_DEFAULT_URL,
            ProviderKind::Gemini => GEMINI_DEFAULT_URL,
        };
        let pm = section(
            m.and_then(|m| m.get(kind.name())),
            &path,
            &[
                "enabled",
                "api_key",
                "base_url",
                "timeout",
                "retry_count",
                "endpoints",
                "models",
                "ca_file",
                "weight",
                "health_check",
            ],
            p,
        );
        let f = Fields::new(pm, &path);
        let mut endpoints = Vec::new();
        match f.raw("endpoints") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let epath = format!("{path}.endpoints[{i}]");
                    let em = section(Some(item), &epath, &["base_url", "api_key", "weight"], p);
                    let ef = Fields::new(em, &epath);
                    match ef.string("base_url", p) {
                        Some(base_url) => endpoints.push(EndpointConfig {
                            base_url,
                            api_key: ef.secret("api_key", p).map(Secret::new),
                            weight: ef.integer("weight", "a number", 1, p) as usize,
                        }),
                        None => p.error(&format!("{epath}.base_url"), "is required"),
                    }
                }
            }
            Some(other) => p.error(
                &format!("{path}.endpoints"),
                format!("expected a list, got {}", file::describe(other)),
            ),
        }
        out.insert(
            kind,
            ProviderConfig {
                // A provider section that is absent entirely is still enabled: the default
                // upstream with a client-supplied key must work out of the box.
                enabled: f.boolean("enabled", true, p),
                api_key: f.secret("api_key", p).map(Secret::new),
                base_url: f
                    .string("base_url", p)
                    .unwrap_or_else(|| default_url.into()),
                timeout: Duration::from_millis(f.integer(
                    "timeout",
                    "a number of milliseconds",
                    30_000,
                    p,
                )),
                retry_count: f.integer("retry_count", "a number", 3, p).min(10) as u32,
                endpoints,
                models: f.string_list("models", p),
                ca_file: f.string("ca_file", p).map(PathBuf::from),
                weight: f.integer("weight", "a number", 1, p) as usize,
                health_check: health_check(&f, p),
            },
        );
    }
    out
}

/// `tcp`, what the gateway always did: an HTTP check sends every peer a request per interval
/// and takes out a peer that refuses them, which changes how failover tests and deployments
/// behave, so it is chosen per provider. (Making `http` the default needs the Python harness
/// to pin `tcp` where it makes a mock fail every request, or those peers drop out.)
const DEFAULT_HEALTH_CHECK: HealthCheckMode = HealthCheckMode::Tcp;

/// `health_check: tcp`, `health_check: http` (the model list) or `health_check: {path: …}`.
fn health_check(f: &Fields, p: &mut Problems) -> HealthCheckMode {
    const EXPECTED: &str = "expected tcp, http, or a mapping with a path (e.g. {path: /models})";
    let field = f.path_of("health_check");
    match f.raw("health_check") {
        None => DEFAULT_HEALTH_CHECK,
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => HealthCheckMode::Tcp,
            "http" => HealthCheckMode::Http {
                path: HealthCheckMode::DEFAULT_HTTP_PATH.into(),
            },
            _ => {
                p.error(&field, EXPECTED);
                DEFAULT_HEALTH_CHECK
            }
        },
        Some(v @ Value::Object(_)) => {
            let m = section(Some(v), &field, &["path"], p);
            let hf = Fields::new(m, &field);
            match hf.string("path", p) {
                Some(path) if is_check_path(&path) => HealthCheckMode::Http { path },
                Some(_) => {
                    p.error(
                        &hf.path_of("path"),
                        "must start with / and hold only visible ASCII characters, without #",
                    );
                    DEFAULT_HEALTH_CHECK
                }
                None => {
                    p.error(&hf.path_of("path"), "is required");
                    DEFAULT_HEALTH_CHECK
                }
            }
        }
        Some(other) => {
            p.error(&field, format!("{EXPECTED}, got {}", file::describe(other)));
            DEFAULT_HEALTH_CHECK
        }
    }
}

/// A path (and optional query) that can go on a request line after the peer's base path.
fn is_check_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 512
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

fn routing(v: Option<&Value>, p: &mut Problems) -> RoutingConfig {
    let m = section(
        v,
        "routing",
        &[
            "strategy",
            "failover_enabled",
            "health_check_interval_ms",
            "models",
        ],
        p,
    );
    let f = Fields::new(m, "routing");
    let mut models = BTreeMap::new();
    if let Some(mm) = section(
        f.raw("models"),
        "routing.models",
        &[],
        &mut Problems::default(),
    ) {
        for (name, list) in mm {
            let path = format!("routing.models.{name}");
            let entries = Fields::new(Some(mm), "routing.models")
                .string_list(name, p)
                .unwrap_or_default();
            if entries.is_empty() && !matches!(list, Value::Array(_)) {
                p.error(&path, "expected a list of provider/model names");
            }
            models.insert(name.clone(), entries);
        }
    } else if let Some(other) = f.raw("models").filter(|v| !v.is_object()) {
        p.error(
            "routing.models",
            format!("expected a mapping, got {}", file::describe(other)),
        );
    }
    RoutingConfig {
        strategy: f.choice("strategy", STRATEGIES, Strategy::RoundRobin, p),
        failover_enabled: f.boolean("failover_enabled", true, p),
        health_check_interval: Duration::from_millis(f.integer(
            "health_check_interval_ms",
            "a number of milliseconds",
            30_000,
            p,
        )),
        models,
    }
}

fn pricing(v: Option<&Value>, p: &mut Problems) -> BTreeMap<String, Price> {
    let mut out = BTreeMap::new();
    let Some(m) = section(v, "pricing", &[], &mut Problems::default()) else {
        if let Some(other) = v.filter(|v| !v.is_null()) {
            p.error(
                "pricing",
                format!("expected a mapping, got {}", file::describe(other)),
            );
        }
        return out;
    };
    for (name, entry) in m {
        let path = format!("pricing.{name}");
        let em = section(Some(entry), &path, &["input", "output"], p);
        let f = Fields::new(em, &path);
        out.insert(
            name.clone(),
            Price {
                input: f.float("input", "a price in USD per 1M tokens", 0.0, p),
                output: f.float("output", "a price in USD per 1M tokens", 0.0, p),
            },
        );
    }
    out
}

fn cache(v: Option<&Value>, p: &mut Problems) -> CacheConfig {
    let m = section(
        v,
        "cache",
        &[
            "enabled",
            "ttl",
            "max_size",
            "redis_url",
            "redis_ca_file",
            "redis_client_cert",
            "redis_client_key",
            "redis_cluster",
            "redis_sentinel",
            "encryption_key",
            "encryption_old_keys",
        ],
        p,
    );
    let f = Fields::new(m, "cache");
    let sentinel = section(
        f.raw("redis_sentinel"),
        "cache.redis_sentinel",
        &["master", "nodes"],
        p,
    )
    .map(|sm| {
        let sf = Fields::new(Some(sm), "cache.redis_sentinel");
        let master = sf.string("master", p).unwrap_or_default();
        let nodes = sf.string_list("nodes", p).unwrap_or_default();
        if master.is_empty() || nodes.is_empty() {
            p.error(
                "cache.redis_sentinel",
                "needs master (a name) and nodes (sentinel URLs)",
            );
        }
        SentinelConfig {
            master,
            nodes: nodes.into_iter().map(SecretUrl::new).collect(),
        }
    });
    let secrets = |key: &str, p: &mut Problems| -> Vec<Secret> {
        f.string_list(key, p)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect()
    };
    CacheConfig {
        enabled: f.boolean("enabled", true, p),
        ttl: Duration::from_secs(f.integer("ttl", "a number of seconds", 3600, p)),
        max_size: f.integer("max_size", "a number of entries", 1000, p) as usize,
        redis_url: f.secret("redis_url", p).map(SecretUrl::new),
        redis_ca_file: f.string("redis_ca_file", p).map(PathBuf::from),
        redis_client_cert: f.string("redis_client_cert", p).map(PathBuf::from),
        redis_client_key: f.string("redis_client_key", p).map(PathBuf::from),
        redis_cluster: f
            .string_list("redis_cluster", p)
            .unwrap_or_default()
            .into_iter()
            .map(SecretUrl::new)
            .collect(),
        redis_sentinel: sentinel,
        encryption_key: f.secret("encryption_key", p).map(Secret::new),
        encryption_old_keys: secrets("encryption_old_keys", p),
    }
}

fn responses(v: Option<&Value>, p: &mut Problems) -> ResponsesConfig {
    let m = section(
        v,
        "responses",
        &["store_ttl", "max_stored", "max_stored_bytes", "redis_url"],
        p,
    );
    let f = Fields::new(m, "responses");
    let ttl = f.integer(
        "store_ttl",
        "a number of seconds",
        DEFAULT_STORE_TTL.as_secs(),
        p,
    );
    if !(1..=MAX_STORE_TTL_SECS).contains(&ttl) {
        p.error(
            "responses.store_ttl",
            format!("must be from 1 to {MAX_STORE_TTL_SECS} seconds (365 days)"),
        );
    }
    let count = f.integer("max_stored", "a number of responses", DEFAULT_MAX_STORED, p);
    let bytes = f.integer(
        "max_stored_bytes",
        "a number of bytes",
        DEFAULT_MAX_STORED_BYTES,
        p,
    );
    ResponsesConfig {
        store_ttl: Duration::from_secs(ttl.clamp(1, MAX_STORE_TTL_SECS)),
        max_stored: usize::try_from(count).unwrap_or(usize::MAX),
        max_stored_bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
        redis_url: f.secret("redis_url", p).map(SecretUrl::new),
    }
}

fn security(v: Option<&Value>, p: &mut Problems) -> SecurityConfig {
    let m = section(
        v,
        "security",
        &[
            "cors_enabled",
            "cors_origins",
            "rate_limiting_enabled",
            "rate_limit_rpm",
            "api_key_header",
        ],
        p,
    );
    let f = Fields::new(m, "security");
    SecurityConfig {
        cors_enabled: f.boolean("cors_enabled", true, p),
        cors_origins: f
            .string_list("cors_origins", p)
            .unwrap_or_else(|| vec!["*".into()]),
        rate_limiting_enabled: f.boolean("rate_limiting_enabled", true, p),
        rate_limit_rpm: f.integer("rate_limit_rpm", "a number of requests per minute", 1000, p),
        api_key_header: f
            .string("api_key_header", p)
            .unwrap_or_else(|| "X-API-Key".into()),
    }
}

fn logging(v: Option<&Value>, p: &mut Problems) -> LoggingConfig {
    let m = section(
        v,
        "logging",
        &[
            "level",
            "format",
            "output",
            "file",
            "include_request_id",
            "include_provider_info",
            "debug",
        ],
        p,
    );
    let f = Fields::new(m, "logging");
    LoggingConfig {
        level: f.choice("level", LEVELS, LogLevel::Info, p),
        format: f.choice("format", FORMATS, LogFormat::Json, p),
        output: f.choice("output", OUTPUTS, LogOutput::Stdout, p),
        file: f.string("file", p).map(PathBuf::from),
        include_request_id: f.boolean("include_request_id", true, p),
        include_provider_info: f.boolean("include_provider_info", true, p),
        debug: f.string_list("debug", p).unwrap_or_default(),
    }
}

/// Environment variables of SPEC §2, each overriding its field.
fn apply_env(c: &mut Config, env: &dyn Fn(&str) -> Option<String>, p: &mut Problems) {
    let get = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    // Like the file's errors, these name the variable, the field it overrides and what it
    // expects, never the value: a variable set to the wrong thing is often a key.
    let number = |name: &str, field: &str, what: &str, p: &mut Problems| -> Option<u64> {
        let raw = get(name)?;
        match raw.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                p.error(&env_path(name, field), format!("expected {what}"));
                None
            }
        }
    };
    let boolean = |name: &str, field: &str, p: &mut Problems| -> Option<bool> {
        let raw = get(name)?;
        let parsed = parse_bool_str(&raw);
        if parsed.is_none() {
            p.error(
                &env_path(name, field),
                "expected true or false (also 1/0, yes/no, on/off)",
            );
        }
        parsed
    };
    if let Some(host) = get("GATEWAY_HOST") {
        c.server.host = host;
    }
    if let Some(port) = number("GATEWAY_PORT", "server.port", PORT, p) {
        match u16::try_from(port) {
            Ok(port) => c.server.port = port,
            Err(_) => p.error(
                &env_path("GATEWAY_PORT", "server.port"),
                format!("expected {PORT}"),
            ),
        }
    }
    if let Some(env_name) = get("GATEWAY_ENV").or_else(|| get("NODE_ENV")) {
        if env_name.eq_ignore_ascii_case("development") {
            c.logging.level = LogLevel::Debug;
            c.logging.format = LogFormat::Text;
        }
        c.server.environment = env_name;
    }
    for (name, kind) in [
        ("OPENAI_API_KEY", ProviderKind::OpenAi),
        ("GEMINI_API_KEY", ProviderKind::Gemini),
    ] {
        if let (Some(key), Some(provider)) = (get(name), c.providers.get_mut(&kind)) {
            provider.api_key = Some(Secret::new(key));
        }
    }
    if let Some(b) = boolean("CACHE_ENABLED", "cache.enabled", p) {
        c.cache.enabled = b;
    }
    if let Some(b) = boolean("RATE_LIMITING_ENABLED", "security.rate_limiting_enabled", p) {
        c.security.rate_limiting_enabled = b;
    }
    if let Some(b) = boolean("CORS_ENABLED", "security.cors_enabled", p) {
        c.security.cors_enabled = b;
    }
    if let Some(n) = number(
        "MAX_CONCURRENT_REQUESTS",
        "server.max_concurrent_requests",
        "a whole number",
        p,
    ) {
        c.server.max_concurrent_requests = n as usize;
    }
    if let Some(n) = number(
        "REQUEST_TIMEOUT",
        "server.request_timeout",
        "a whole number of milliseconds",
        p,
    ) {
        c.server.request_timeout = Duration::from_millis(n);
    }
    if let Some(n) = number(
        "HEALTH_CHECK_INTERVAL_MS",
        "routing.health_check_interval_ms",
        "a whole number of milliseconds",
        p,
    ) {
        c.routing.health_check_interval = Duration::from_millis(n);
    }
    if let Some(url) = get("REDIS_URL") {
        c.cache.redis_url = Some(SecretUrl::new(url));
    }
    if let Some(debug) = get("DEBUG") {
        c.logging.debug = debug
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
    }
    if let Some(level) = get("LOG_LEVEL") {
        match LEVELS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&level)) {
            Some((_, l)) => c.logging.level = *l,
            None => p.error(
                &env_path("LOG_LEVEL", "logging.level"),
                file::expected_one_of(LEVELS),
            ),
        }
    }
    if let Some(format) = get("LOG_FORMAT") {
        match FORMATS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&format))
        {
            Some((_, f)) => c.logging.format = *f,
            None => p.error(
                &env_path("LOG_FORMAT", "logging.format"),
                file::expected_one_of(FORMATS),
            ),
        }
    }
}

const PORT: &str = "a port number from 0 to 65535";

/// How an environment override is named in an error: the variable and the field it sets.
fn env_path(name: &str, field: &str) -> String {
    format!("{name} (overrides {field})")
}

fn apply_flags(c: &mut Config, flags: &Overrides) {
    if let Some(host) = &flags.host {
        c.server.host = host.clone();
    }
    if let Some(port) = flags.port {
        c.server.port = port;
    }
    if let Some(level) = flags.log_level {
        c.logging.level = level;
    }
    if let Some(format) = flags.log_format {
        c.logging.format = format;
    }
}

/// Cross-field rules, checked on the final values.
fn validate(c: &Config, p: &mut Problems) {
    // Managed keys and spend must survive a restart: Redis, else the state file.
    let id = &c.auth.identity;
    let budgeted = c.auth.keys.iter().position(|k| k.budget.is_some());
    if id.state_file.is_none() && crate::redis_link::RedisTarget::from_cache(&c.cache).is_none() {
        if id.admin_key.is_some() {
            p.error("auth.state_file", "needed with auth.admin_key when no Redis is configured (managed keys must survive a restart)");
        }
        if let Some(i) = budgeted {
            p.error(
                &format!("auth.keys[{i}].budget"),
                "needs auth.state_file or Redis (cache.redis_url) so that spend survives a restart",
            );
        }
    }
    for (field, problem) in crate::redis_link::problems(&c.cache) {
        p.error(&field, problem);
    }
    for (kind, provider) in &c.providers {
        let path = format!("providers.{}", kind.name());
        if let Err(e) = crate::upstream::PeerAddress::parse(&provider.base_url) {
            p.error(&format!("{path}.base_url"), e);
        }
        for (i, ep) in provider.endpoints.iter().enumerate() {
            if let Err(e) = crate::upstream::PeerAddress::parse(&ep.base_url) {
                p.error(&format!("{path}.endpoints[{i}].base_url"), e);
            }
        }
        if let Some(ca) = &provider.ca_file {
            if let Err(e) = crate::upstream::pem_certificates(ca) {
                // The message names the problem, not the path: it is the field's own value.
                p.error(&format!("{path}.ca_file"), e);
            }
        }
        if provider.timeout.is_zero() {
            p.error(&format!("{path}.timeout"), "must be greater than 0");
        }
    }
    for (name, candidates) in &c.routing.models {
        for (i, cand) in candidates.iter().enumerate() {
            let ok = cand.split_once('/').is_some_and(|(prov, model)| {
                ProviderKind::from_name(prov).is_some() && !model.is_empty()
            });
            if !ok {
                p.error(
                    &format!("routing.models.{name}[{i}]"),
                    "expected provider/model with provider openai or gemini",
                );
            }
        }
    }
    if c.logging.output == LogOutput::File && c.logging.file.is_none() {
        p.error("logging.file", "is required when logging.output is file");
    }
    if c.server.max_body_bytes == 0 {
        p.error("server.max_body_bytes", "must be greater than 0");
    }
    if c.server.threads == 0 {
        p.error("server.threads", "must be greater than 0");
    }
    if c.server.request_timeout.is_zero() {
        p.error("server.request_timeout", "must be greater than 0");
    }
    if c.server.max_header_bytes < MIN_MAX_HEADER_BYTES {
        p.error(
            "server.max_header_bytes",
            format!("must be at least {MIN_MAX_HEADER_BYTES}"),
        );
    }
    if c.server.header_timeout.is_zero() {
        p.error("server.header_timeout", "must be greater than 0");
    }
    if c.server.idle_timeout.is_zero() {
        p.error("server.idle_timeout", "must be greater than 0");
    }
    if c.auth.require_auth_header && c.auth.keys.is_empty() {
        p.error(
            "auth.require_auth_header",
            "is true but auth.keys lists no key",
        );
    }
}

#[cfg(test)]
mod tests;
