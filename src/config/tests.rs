#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::collections::HashMap;

const SEED: &str = include_str!("../../conf/gateway.yaml");

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Loaded, Vec<String>> {
    Config::load(yaml, &env_of(env), &Overrides::default())
}

fn ok(yaml: &str, env: &[(&str, &str)]) -> Config {
    match load(yaml, env) {
        Ok(l) => l.config,
        Err(e) => panic!("config should load, got {e:?}"),
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml, &[]) {
        Ok(_) => panic!("config should be rejected"),
        Err(e) => e,
    }
}

#[test]
fn the_seed_production_file_is_accepted_as_written() {
    let c = ok(
        SEED,
        &[("OPENAI_API_KEY", "sk-a"), ("GEMINI_API_KEY", "g-b")],
    );
    assert_eq!(c.auth.mode, AuthMode::Hybrid);
    assert!(c.auth.allow_client_keys);
    assert!(!c.auth.require_auth_header);
    let openai = &c.providers[&ProviderKind::OpenAi];
    assert_eq!(openai.base_url, "https://api.openai.com/v1");
    assert_eq!(openai.timeout, Duration::from_millis(30000));
    assert_eq!(openai.retry_count, 3);
    assert_eq!(openai.api_key.as_ref().map(|k| k.expose()), Some("sk-a"));
    assert_eq!(
        c.providers[&ProviderKind::Gemini].base_url,
        "https://generativelanguage.googleapis.com/v1"
    );
    assert_eq!(c.routing.strategy, Strategy::CostOptimized);
    assert!(c.routing.failover_enabled);
    assert_eq!(c.cache.ttl, Duration::from_secs(3600));
    assert_eq!(c.cache.max_size, 1000);
    assert_eq!(c.security.cors_origins, vec!["*".to_string()]);
    assert_eq!(c.security.rate_limit_rpm, 1000);
    assert_eq!(c.security.api_key_header, "X-API-Key");
    assert_eq!(c.logging.format, LogFormat::Json);
}

#[test]
fn an_unset_provider_key_is_a_warning_not_an_error() {
    let loaded = load(SEED, &[]).unwrap();
    assert!(loaded.config.providers[&ProviderKind::OpenAi]
        .api_key
        .is_none());
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.starts_with("providers.openai.api_key: references an unset")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn every_extension_of_spec_section_3_parses() {
    let yaml = r#"
server:
  host: 127.0.0.1
  port: 9090
  max_body_bytes: 1048576
  tls: { cert: /tmp/cert.pem, key: /tmp/key.pem }
  max_concurrent_requests: 50
  request_timeout: 5000
  threads: 2
  work_stealing: true
  grace_period_seconds: 5
auth:
  mode: gateway
  allow_client_keys: false
  require_auth_header: true
  keys:
    - { id: team-a, key: "${TEAM_A_KEY}", rate_limit_rpm: 300 }
    - { id: team-b, sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", tpm: 1000 }
providers:
  openai:
    enabled: true
    api_key: "${OPENAI_API_KEY}"
    base_url: "https://api.openai.com/v1"
    timeout: 30000
    retry_count: 3
    endpoints:
      - { base_url: "https://eu.example/v1", api_key: "${OPENAI_KEY_2}", weight: 2 }
    models: [gpt-4o-mini, gpt-4o]
    ca_file: "${CA}"
  gemini:
    enabled: false
routing:
  strategy: performance
  failover_enabled: false
  health_check_interval_ms: 1000
  models:
    default: [openai/gpt-4o-mini, gemini/gemini-2.0-flash]
pricing:
  gemini/gemini-2.0-flash: { input: 0.10, output: 0.40 }
cache:
  enabled: true
  ttl: 60
  max_size: 10
  redis_url: "${REDIS_URL}"
security:
  cors_origins: ["https://app.example"]
  rate_limit_rpm: 10
  api_key_header: "X-Gateway-Key"
logging:
  level: warn
  format: text
  output: file
  file: /tmp/gw.log
  include_request_id: false
  include_provider_info: false
"#;
    let c = ok(
        yaml,
        &[
            ("TEAM_A_KEY", "ta-secret-1f2e"),
            ("REDIS_URL", "redis://:pw-secret-9a@r:6379"),
        ],
    );
    assert_eq!(c.server.port, 9090);
    assert_eq!(c.server.threads, 2);
    assert!(c.server.work_stealing);
    assert!(
        !ok("", &[]).server.work_stealing,
        "per-thread runtimes by default"
    );
    assert!(c.server.tls.is_some());
    assert_eq!(c.server.request_timeout, Duration::from_millis(5000));
    assert_eq!(c.auth.keys.len(), 2);
    assert_eq!(
        c.auth.keys[0].sha256,
        crate::auth::sha256(b"ta-secret-1f2e")
    );
    assert_eq!(c.auth.keys[0].rate_limit_rpm, Some(300));
    assert_eq!(c.auth.keys[1].sha256, crate::auth::sha256(b"test"));
    assert_eq!(c.auth.keys[1].tpm, Some(1000));
    let openai = &c.providers[&ProviderKind::OpenAi];
    assert_eq!(openai.endpoints[0].weight, 2);
    assert!(openai.endpoints[0].api_key.is_none());
    assert_eq!(
        openai.models.as_deref(),
        Some(&["gpt-4o-mini".to_string(), "gpt-4o".to_string()][..])
    );
    assert!(!c.providers[&ProviderKind::Gemini].enabled);
    assert_eq!(c.routing.models["default"].len(), 2);
    assert_eq!(
        c.pricing["gemini/gemini-2.0-flash"],
        Price {
            input: 0.10,
            output: 0.40
        }
    );
    assert_eq!(
        c.cache.redis_url.as_ref().map(|u| u.redacted()),
        Some("redis://[REDACTED]@r:6379".into())
    );
    assert_eq!(c.logging.output, LogOutput::File);
    let shown = c.redacted_json().to_string();
    assert!(
        !shown.contains("ta-secret-1f2e") && !shown.contains("pw-secret-9a"),
        "{shown}"
    );
}

#[test]
fn an_unknown_key_is_named_with_its_path() {
    assert_eq!(
        errors("auth:\n  modee: hybrid\n"),
        vec!["auth.modee: unknown field (expected one of: mode, allow_client_keys, require_auth_header, keys, jwt, admin_key, state_file)"]
    );
    assert_eq!(
        errors("cahce: {}\n"),
        vec!["cahce: unknown field (expected one of: server, auth, providers, routing, pricing, cache, responses, security, logging, tracing)"]
    );
}

#[test]
fn a_wrong_type_is_named_with_its_path() {
    assert_eq!(
        errors("cache:\n  enabled: maybe\n"),
        vec!["cache.enabled: expected true or false, got a string"]
    );
    assert_eq!(
        errors("security:\n  cors_origins: 5\n"),
        vec!["security.cors_origins: expected a list of strings, got a number"]
    );
    assert_eq!(
        errors("providers: [1]\n"),
        vec!["providers: expected a mapping, got a list"]
    );
}

#[test]
fn a_bad_enum_value_lists_the_choices() {
    assert_eq!(
        errors("auth:\n  mode: sso\n"),
        vec!["auth.mode: expected one of gateway, client, hybrid"]
    );
    assert_eq!(
        errors("routing:\n  strategy: fastest\n"),
        vec!["routing.strategy: expected one of round_robin, performance, cost_optimized"]
    );
}

#[test]
fn an_unparsable_number_is_named_with_its_path() {
    assert_eq!(
        errors("providers:\n  openai:\n    timeout: abc\n"),
        vec!["providers.openai.timeout: expected a number of milliseconds, got a string"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors("auth:\n  mode: sso\ncache:\n  ttl: soon\n  typo: 1\n");
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn a_secret_is_never_echoed_in_an_error() {
    let e = errors("providers:\n  openai:\n    api_key: [\"sk-secret-in-list\"]\n");
    assert_eq!(
        e,
        vec!["providers.openai.api_key: expected a string, got a list"]
    );
}

#[test]
fn invalid_yaml_is_one_line() {
    let e = errors("auth: [\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("invalid YAML"), "{e:?}");
}

#[test]
fn variables_expand_with_defaults() {
    let c = ok(
        "server:\n  host: \"${H:-127.0.0.2}\"\n  port: \"${P}\"\n",
        &[("P", "7000")],
    );
    assert_eq!(c.server.host, "127.0.0.2");
    assert_eq!(c.server.port, 7000);
}

// One test per environment variable of SPEC §2: each overrides the file.

const FILE: &str = "server: { port: 8081, max_concurrent_requests: 10, request_timeout: 1000 }\n\
cache: { enabled: true }\nsecurity: { cors_enabled: true, rate_limiting_enabled: true }\n\
routing: { health_check_interval_ms: 5000 }\nlogging: { level: info, format: json }\n\
providers: { openai: { api_key: from-file }, gemini: { api_key: from-file } }\n";

#[test]
fn env_gateway_port() {
    assert_eq!(ok(FILE, &[("GATEWAY_PORT", "8082")]).server.port, 8082);
    assert_eq!(
        load(FILE, &[("GATEWAY_PORT", "x")]).unwrap_err(),
        vec!["GATEWAY_PORT (overrides server.port): expected a port number from 0 to 65535"]
    );
}

#[test]
fn env_node_env_development_means_debug_and_text() {
    let c = ok(FILE, &[("NODE_ENV", "development")]);
    assert_eq!(
        (c.logging.level, c.logging.format),
        (LogLevel::Debug, LogFormat::Text)
    );
    assert_eq!(c.server.environment, "development");
    let c = ok(FILE, &[("NODE_ENV", "production")]);
    assert_eq!(
        (c.logging.level, c.logging.format),
        (LogLevel::Info, LogFormat::Json)
    );
}

#[test]
fn env_gateway_env_wins_over_node_env() {
    let c = ok(
        FILE,
        &[("NODE_ENV", "production"), ("GATEWAY_ENV", "development")],
    );
    assert_eq!(c.logging.level, LogLevel::Debug);
}

#[test]
fn env_openai_api_key() {
    let c = ok(FILE, &[("OPENAI_API_KEY", "sk-env")]);
    assert_eq!(
        c.providers[&ProviderKind::OpenAi]
            .api_key
            .as_ref()
            .map(|k| k.expose()),
        Some("sk-env")
    );
}

#[test]
fn env_gemini_api_key() {
    let c = ok(FILE, &[("GEMINI_API_KEY", "g-env")]);
    assert_eq!(
        c.providers[&ProviderKind::Gemini]
            .api_key
            .as_ref()
            .map(|k| k.expose()),
        Some("g-env")
    );
}

#[test]
fn env_cache_enabled() {
    assert!(!ok(FILE, &[("CACHE_ENABLED", "false")]).cache.enabled);
}

#[test]
fn env_rate_limiting_enabled() {
    assert!(
        !ok(FILE, &[("RATE_LIMITING_ENABLED", "false")])
            .security
            .rate_limiting_enabled
    );
}

#[test]
fn env_cors_enabled() {
    assert!(!ok(FILE, &[("CORS_ENABLED", "0")]).security.cors_enabled);
    assert_eq!(
        load(FILE, &[("CORS_ENABLED", "perhaps")]).unwrap_err(),
        vec!["CORS_ENABLED (overrides security.cors_enabled): expected true or false (also 1/0, yes/no, on/off)"]
    );
}

#[test]
fn env_max_concurrent_requests() {
    assert_eq!(
        ok(FILE, &[("MAX_CONCURRENT_REQUESTS", "100")])
            .server
            .max_concurrent_requests,
        100
    );
}

#[test]
fn env_request_timeout() {
    assert_eq!(
        ok(FILE, &[("REQUEST_TIMEOUT", "30000")])
            .server
            .request_timeout,
        Duration::from_secs(30)
    );
}

#[test]
fn env_health_check_interval_ms() {
    assert_eq!(
        ok(FILE, &[("HEALTH_CHECK_INTERVAL_MS", "250")])
            .routing
            .health_check_interval,
        Duration::from_millis(250)
    );
    assert_eq!(
        ok("", &[]).routing.health_check_interval,
        Duration::from_millis(30000),
        "default"
    );
}

#[test]
fn env_redis_url() {
    let c = ok(FILE, &[("REDIS_URL", "redis://127.0.0.1:6390")]);
    assert_eq!(
        c.cache.redis_url.as_ref().map(|u| u.expose()),
        Some("redis://127.0.0.1:6390")
    );
}

#[test]
fn env_debug_targets() {
    assert_eq!(ok(FILE, &[("DEBUG", "*")]).logging.debug, vec!["*"]);
    assert_eq!(
        ok(FILE, &[("DEBUG", "gateway:router,gateway:cache")])
            .logging
            .debug,
        vec!["gateway:router", "gateway:cache"]
    );
}

#[test]
fn precedence_is_defaults_then_file_then_env_then_flags() {
    assert_eq!(ok("", &[]).server.port, 8080, "default");
    assert_eq!(ok(FILE, &[]).server.port, 8081, "file over default");
    assert_eq!(
        ok(FILE, &[("GATEWAY_PORT", "8082")]).server.port,
        8082,
        "env over file"
    );
    let flags = Overrides {
        port: Some(8083),
        log_level: Some(LogLevel::Error),
        ..Overrides::default()
    };
    let c = Config::load(
        FILE,
        &env_of(&[("GATEWAY_PORT", "8082"), ("NODE_ENV", "development")]),
        &flags,
    )
    .unwrap()
    .config;
    assert_eq!(c.server.port, 8083, "flag over env");
    assert_eq!(c.logging.level, LogLevel::Error, "flag over env");
}

#[test]
fn virtual_model_candidates_need_a_provider_prefix() {
    assert_eq!(
        errors("routing:\n  models:\n    fast: [gpt-4o-mini]\n"),
        vec!["routing.models.fast[0]: expected provider/model with provider openai or gemini"]
    );
}

#[test]
fn a_bad_base_url_is_named() {
    let e = errors("providers:\n  openai:\n    base_url: ftp://x\n");
    assert_eq!(
        e,
        vec!["providers.openai.base_url: must be an http:// or https:// URL"]
    );
}

#[test]
fn an_unreadable_ca_file_is_named() {
    let e = errors("providers:\n  openai:\n    ca_file: /nonexistent/ca.pem\n");
    assert_eq!(
        e,
        vec!["providers.openai.ca_file: cannot read the file (no such file)"]
    );
}

#[test]
fn connection_limits_have_safe_defaults() {
    let s = ok("", &[]).server;
    assert_eq!(s.max_header_bytes, 65536, "64 KiB header block by default");
    assert_eq!(s.header_timeout, Duration::from_millis(10_000));
    assert_eq!(s.idle_timeout, Duration::from_millis(60_000));
}

#[test]
fn connection_limits_are_read_and_shown() {
    let c = ok(
        "server:\n  max_header_bytes: 2048\n  header_timeout: 1500\n  idle_timeout: 250\n",
        &[],
    );
    assert_eq!(c.server.max_header_bytes, 2048);
    assert_eq!(c.server.header_timeout, Duration::from_millis(1500));
    assert_eq!(c.server.idle_timeout, Duration::from_millis(250));
    let shown = c.redacted_json();
    assert_eq!(shown["server"]["max_header_bytes"], 2048);
    assert_eq!(
        shown["server"]["header_timeout"], 1500,
        "milliseconds, the unit the file uses"
    );
    assert_eq!(shown["server"]["idle_timeout"], 250);
}

#[test]
fn connection_limits_are_validated() {
    assert_eq!(
        errors("server:\n  max_header_bytes: 1023\n  header_timeout: 0\n  idle_timeout: 0\n"),
        vec![
            "server.max_header_bytes: must be at least 1024",
            "server.header_timeout: must be greater than 0",
            "server.idle_timeout: must be greater than 0",
        ]
    );
    assert_eq!(
        ok("server:\n  max_header_bytes: 1024\n", &[])
            .server
            .max_header_bytes,
        1024,
        "the minimum itself is allowed"
    );
}

/// A value in the wrong field is often a key pasted in the wrong place: every error names the
/// field and what it expects, and never repeats the value (issue 18, item 8).
#[test]
fn no_error_repeats_the_offending_value() {
    const KEY: &str = "sk-live-0123456789abcdef";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("providers:\n  openai:\n    timeout: \"{KEY}\"\n"),
            "providers.openai.timeout: expected a number of milliseconds, got a string",
        ),
        (
            format!("auth:\n  mode: \"{KEY}\"\n"),
            "auth.mode: expected one of gateway, client, hybrid",
        ),
        (
            format!("providers:\n  gemini:\n    base_url: \"{KEY}\"\n"),
            "providers.gemini.base_url: must be an http:// or https:// URL",
        ),
        (
            format!("providers:\n  openai:\n    base_url: \"https://u:{KEY}@api.example/v1\"\n"),
            "providers.openai.base_url: must not carry credentials (user:password@): keys belong in api_key",
        ),
        (
            format!("providers:\n  openai:\n    base_url: \"https://api.example:{KEY}/v1\"\n"),
            "providers.openai.base_url: must have a port number from 0 to 65535 after the host",
        ),
        (
            format!("providers:\n  openai:\n    endpoints:\n      - {{ base_url: \"{KEY}\" }}\n"),
            "providers.openai.endpoints[0].base_url: must be an http:// or https:// URL",
        ),
        (
            format!("providers:\n  openai:\n    ca_file: \"/nonexistent/{KEY}\"\n"),
            "providers.openai.ca_file: cannot read the file (no such file)",
        ),
        (
            format!("cache:\n  enabled: \"{KEY}\"\n"),
            "cache.enabled: expected true or false, got a string",
        ),
        (
            format!("logging:\n  level: \"{KEY}\"\n"),
            "logging.level: expected one of debug, info, warn, error",
        ),
        (
            format!("routing:\n  models:\n    fast: [\"{KEY}\"]\n"),
            "routing.models.fast[0]: expected provider/model with provider openai or gemini",
        ),
        (
            format!("pricing:\n  openai/gpt-4o: {{ input: \"{KEY}\" }}\n"),
            "pricing.openai/gpt-4o.input: expected a price in USD per 1M tokens, got a string",
        ),
    ];
    for (yaml, expected) in cases {
        let e = errors(&yaml);
        assert_eq!(e, vec![expected.to_string()], "for {yaml}");
        assert!(!e.concat().contains(KEY), "the value leaked: {e:?}");
    }
    for (var, expected) in [
        (
            "REQUEST_TIMEOUT",
            "REQUEST_TIMEOUT (overrides server.request_timeout): expected a whole number of milliseconds",
        ),
        (
            "MAX_CONCURRENT_REQUESTS",
            "MAX_CONCURRENT_REQUESTS (overrides server.max_concurrent_requests): expected a whole number",
        ),
        (
            "HEALTH_CHECK_INTERVAL_MS",
            "HEALTH_CHECK_INTERVAL_MS (overrides routing.health_check_interval_ms): expected a whole number of milliseconds",
        ),
        (
            "GATEWAY_PORT",
            "GATEWAY_PORT (overrides server.port): expected a port number from 0 to 65535",
        ),
        (
            "CACHE_ENABLED",
            "CACHE_ENABLED (overrides cache.enabled): expected true or false (also 1/0, yes/no, on/off)",
        ),
        (
            "LOG_LEVEL",
            "LOG_LEVEL (overrides logging.level): expected one of debug, info, warn, error",
        ),
        (
            "LOG_FORMAT",
            "LOG_FORMAT (overrides logging.format): expected one of json, text",
        ),
    ] {
        assert_eq!(
            load("", &[(var, KEY)]).unwrap_err(),
            vec![expected.to_string()],
            "for {var}"
        );
    }
}

#[test]
fn a_number_of_the_wrong_sign_or_kind_says_so() {
    assert_eq!(
        errors("providers:\n  openai:\n    timeout: -5\n    retry_count: 1.5\n"),
        vec![
            "providers.openai.timeout: expected a number of milliseconds, got a negative or fractional number",
            "providers.openai.retry_count: expected a number, got a negative or fractional number",
        ]
    );
    assert_eq!(
        errors("server:\n  port: 70000\n"),
        vec!["server.port: expected a port number from 0 to 65535"]
    );
    assert_eq!(
        errors("server:\n  threads: [1]\n"),
        vec!["server.threads: expected a number, got a list"]
    );
}

#[test]
fn health_checks_are_tcp_http_or_a_path() {
    let c = ok("", &[]);
    assert_eq!(
        c.providers[&ProviderKind::OpenAi].health_check,
        HealthCheckMode::Tcp,
        "the default"
    );
    let c = ok(
        "providers:\n  openai: { health_check: http }\n  gemini: { health_check: { path: \"/models?pageSize=1\" } }\n",
        &[],
    );
    assert_eq!(
        c.providers[&ProviderKind::OpenAi].health_check,
        HealthCheckMode::Http {
            path: "/models".into()
        },
        "http is the model list"
    );
    assert_eq!(
        c.providers[&ProviderKind::Gemini].health_check,
        HealthCheckMode::Http {
            path: "/models?pageSize=1".into()
        }
    );
    let shown = c.redacted_json();
    assert_eq!(
        shown["providers"]["openai"]["health_check"],
        serde_json::json!({"path": "/models"}),
        "shown as the file spells it"
    );
    assert_eq!(
        ok("providers:\n  openai: { health_check: tcp }\n", &[]).redacted_json()["providers"]
            ["openai"]["health_check"],
        "tcp"
    );
}

#[test]
fn a_bad_health_check_is_named() {
    assert_eq!(
        errors("providers:\n  openai: { health_check: ping }\n  gemini: { health_check: [1] }\n"),
        vec![
            "providers.openai.health_check: expected tcp, http, or a mapping with a path (e.g. {path: /models})",
            "providers.gemini.health_check: expected tcp, http, or a mapping with a path (e.g. {path: /models}), got a list",
        ]
    );
    assert_eq!(
        errors("providers:\n  openai: { health_check: { path: models } }\n"),
        vec!["providers.openai.health_check.path: must start with / and hold only visible ASCII characters, without #"]
    );
    assert_eq!(
        errors("providers:\n  openai: { health_check: { path: \"/a b\" } }\n"),
        vec!["providers.openai.health_check.path: must start with / and hold only visible ASCII characters, without #"]
    );
    assert_eq!(
        errors("providers:\n  openai: { health_check: { paht: /models } }\n"),
        vec![
            "providers.openai.health_check.paht: unknown field (expected one of: path)",
            "providers.openai.health_check.path: is required",
        ]
    );
}

#[test]
fn responses_store_defaults() {
    let c = ok("", &[]);
    assert_eq!(
        c.responses.store_ttl,
        Duration::from_secs(86_400),
        "a day by default"
    );
    assert_eq!(c.responses.max_stored, 10_000);
    assert_eq!(c.responses.max_stored_bytes, 128 * 1024 * 1024);
    assert!(c.responses.redis_url.is_none());
    assert!(
        c.responses_redis_url().is_none(),
        "memory only without any Redis"
    );
}

#[test]
fn responses_store_is_read_and_shown_redacted() {
    let yaml = "responses:\n  store_ttl: 2592000\n  max_stored: 50\n  max_stored_bytes: 1048576\n  redis_url: \"redis://:resp-pw-7c@state:6379/2\"\n";
    let c = ok(yaml, &[("REDIS_URL", "redis://cache:6379")]);
    assert_eq!(c.responses.store_ttl, Duration::from_secs(2_592_000));
    assert_eq!(c.responses.max_stored, 50);
    assert_eq!(c.responses.max_stored_bytes, 1_048_576);
    assert_eq!(
        c.responses_redis_url().map(|u| u.expose()),
        Some("redis://:resp-pw-7c@state:6379/2"),
        "responses.redis_url wins over REDIS_URL, which sets the cache's"
    );
    let shown = c.redacted_json();
    assert_eq!(
        shown["responses"],
        serde_json::json!({
            "store_ttl": 2_592_000,
            "max_stored": 50,
            "max_stored_bytes": 1_048_576,
            "redis_url": "redis://[REDACTED]@state:6379/2",
        })
    );
    assert!(!shown.to_string().contains("resp-pw-7c"), "{shown}");
}

#[test]
fn responses_store_falls_back_to_the_cache_redis() {
    let c = ok("", &[("REDIS_URL", "redis://shared:6379")]);
    assert_eq!(
        c.responses_redis_url().map(|u| u.expose()),
        Some("redis://shared:6379"),
        "one REDIS_URL shares conversation state across the fleet"
    );
    assert!(
        c.responses.redis_url.is_none(),
        "/config shows what was set"
    );
}

#[test]
fn responses_store_errors_name_the_field_never_the_value() {
    assert_eq!(
        errors("responses:\n  store_ttl: 0\n  max_stored: -1\n  max_stored_bytes: lots\n  redis_url: 6379\n  ttl: 5\n"),
        vec![
            "responses.ttl: unknown field (expected one of: store_ttl, max_stored, max_stored_bytes, redis_url)",
            "responses.store_ttl: must be from 1 to 31536000 seconds (365 days)",
            "responses.max_stored: expected a number of responses, got a negative or fractional number",
            "responses.max_stored_bytes: expected a number of bytes, got a string",
            "responses.redis_url: expected a string, got a scalar that is not a string (quote it)",
        ]
    );
    assert_eq!(
        errors("responses:\n  store_ttl: \"sk-secret-ttl\"\n"),
        vec!["responses.store_ttl: expected a number of seconds, got a string"]
    );
    assert_eq!(
        errors("responses: 5\n"),
        vec!["responses: expected a mapping, got a number"]
    );
}

#[test]
fn config_key_budgets_are_read_with_the_managed_key_fields() {
    let c = ok(
        "auth:\n  state_file: /tmp/s.json\n  keys:\n    - { id: a, key: ka, budget: { usd: 2.5, period: daily } }\n    - { id: b, key: kb, budget: { usd: 1 } }\n    - { id: c, key: kc }\n",
        &[],
    );
    let keys = &c.auth.keys;
    let a = keys[0].policy.as_ref().unwrap();
    assert_eq!(
        (
            a.id.as_str(),
            a.budget.unwrap().usd,
            a.budget.unwrap().period
        ),
        ("a", 2.5, crate::identity::Period::Daily)
    );
    assert_eq!(
        keys[1].budget.unwrap().period,
        crate::identity::Period::Monthly,
        "a budget without a period is monthly, as for managed keys"
    );
    assert!(keys[2].policy.is_none(), "no budget, no accounting");
}

#[test]
fn config_key_budget_errors_name_the_field() {
    let e = errors("auth:\n  state_file: /tmp/s.json\n  keys:\n    - { id: a, key: ka, budget: { usd: -1 } }\n    - { id: b, key: kb, budget: { usd: 1, period: hourly } }\n    - { id: c, key: kc, budget: { usd: 1, colour: red } }\n    - { id: d, key: kd, budget: { period: daily } }\n");
    assert_eq!(
        e,
        vec![
            "auth.keys[0].budget.usd: must be a non-negative number",
            "auth.keys[1].budget.period: must be daily, monthly or total",
            "auth.keys[2].budget: unknown field `colour` (expected usd, period)",
            "auth.keys[3].budget.usd: is required",
        ]
    );
    let e = errors(
        "auth:\n  keys:\n    - { id: a, key: ka }\n    - { id: b, key: kb, budget: { usd: 1 } }\n",
    );
    assert_eq!(
        e,
        vec!["auth.keys[1].budget: needs auth.state_file or Redis (cache.redis_url) so that spend survives a restart"]
    );
    ok(
        "auth:\n  keys:\n    - { id: b, key: kb, budget: { usd: 1 } }\ncache:\n  redis_url: redis://127.0.0.1:6379\n",
        &[],
    );
}

#[test]
fn jwks_ca_file_is_checked() {
    let e = errors("auth:\n  jwt:\n    jwks_url: http://idp.internal/jwks\n    jwks_ca_file: /nonexistent/ca.pem\n");
    assert_eq!(
        e,
        vec![
            "auth.jwt.jwks_ca_file: cannot read the file (no such file)",
            "auth.jwt.jwks_ca_file: only applies to an https:// jwks_url",
        ]
    );
}
