//! The `tracing` section (SPEC §15) and the standard `OTEL_*` variables that override it.
//!
//! Tracing is off unless an OTLP endpoint is configured (in the file or by
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `enabled: true`.

use super::file::{describe, parse_bool_str, section, Fields, Problems};
use super::secret::Secret;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::time::Duration;

/// OTLP/HTTP's well-known port on the local host (the collector's default receiver).
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
const TRACES_PATH: &str = "/v1/traces";

/// The validated `tracing` section.
#[derive(Debug, Clone, Serialize)]
pub struct TracingConfig {
    pub enabled: bool,
    /// The full traces URL (`…/v1/traces`).
    pub otlp_endpoint: String,
    /// Sent with every export (`OTEL_EXPORTER_OTLP_HEADERS`): often a vendor's API key, so
    /// only the names are ever shown.
    #[serde(serialize_with = "header_names")]
    pub headers: Vec<(String, Secret)>,
    pub service_name: String,
    pub sampler: Sampler,
    /// Spans waiting for export; more are dropped (and counted), never waited for.
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    #[serde(serialize_with = "as_millis")]
    pub batch_delay: Duration,
    #[serde(serialize_with = "as_millis")]
    pub export_timeout: Duration,
    /// Puts the request's messages on the server span (`gen_ai.input.messages`). Off by
    /// default: prompts are often personal data.
    pub capture_content: bool,
}

/// `OTEL_TRACES_SAMPLER` in two fields: a ratio of new traces, and whether a client's
/// sampled flag decides instead (the `parentbased_*` samplers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sampler {
    pub parent_based: bool,
    pub ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enabled: false,
            otlp_endpoint: traces_url(DEFAULT_ENDPOINT),
            headers: Vec::new(),
            service_name: "llm-gateway".into(),
            sampler: Sampler {
                parent_based: true,
                ratio: 1.0,
            },
            max_queue_size: 2048,
            max_export_batch_size: 512,
            batch_delay: Duration::from_millis(1000),
            export_timeout: Duration::from_millis(10_000),
            capture_content: false,
        }
    }
}

fn as_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn header_names<S: Serializer>(h: &[(String, Secret)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(h.len()))?;
    for (name, value) in h {
        m.serialize_entry(name, value)?;
    }
    m.end()
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` semantics: a base URL that gets `/v1/traces` appended.
fn traces_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_string()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// `key1=value1,key2=value2` with percent-encoded values (the OTLP exporter spec).
fn parse_headers(raw: &str) -> Option<Vec<(String, Secret)>> {
    let mut out = Vec::new();
    for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair.split_once('=')?;
        let k = k.trim();
        if k.is_empty() || http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return None;
        }
        let v = percent_encoding::percent_decode_str(v.trim())
            .decode_utf8()
            .ok()?;
        out.push((k.to_ascii_lowercase(), Secret::new(v.into_owned())));
    }
    Some(out)
}

const SAMPLERS: &str = "always_on, always_off, traceidratio, parentbased_always_on, \
                        parentbased_always_off or parentbased_traceidratio";

/// A sampler name and its ratio argument, as `OTEL_TRACES_SAMPLER(_ARG)` spell them.
fn parse_sampler(name: &str, ratio: f64) -> Option<Sampler> {
    let (parent_based, inner) = match name.trim().to_ascii_lowercase().as_str() {
        "always_on" => (false, 1.0),
        "always_off" => (false, 0.0),
        "traceidratio" => (false, ratio),
        "parentbased_always_on" => (true, 1.0),
        "parentbased_always_off" => (true, 0.0),
        "parentbased_traceidratio" => (true, ratio),
        _ => return None,
    };
    Some(Sampler {
        parent_based,
        ratio: inner,
    })
}

fn check_endpoint(url: &str, path: &str, p: &mut Problems) {
    match url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {}
        Ok(u) if u.scheme_str() == Some("https") => p.error(
            path,
            "https is not supported by this build's exporter; run an OpenTelemetry Collector \
             beside the gateway and point this at it over http (docs/tracing.md)",
        ),
        _ => p.error(
            path,
            "expected an http:// URL such as http://localhost:4318",
        ),
    }
}

/// Reads the `tracing` section, then the `OTEL_*` variables (which win, like every variable
/// of SPEC §2). Problems name the field or the variable, never a header's value.
pub fn tracing(
    v: Option<&Value>,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> TracingConfig {
    let m = section(
        v,
        "tracing",
        &[
            "enabled",
            "otlp_endpoint",
            "headers",
            "service_name",
            "sampler",
            "sample_ratio",
            "max_queue_size",
            "max_export_batch_size",
            "batch_delay_ms",
            "export_timeout_ms",
            "capture_content",
        ],
        p,
    );
    let f = Fields::new(m, "tracing");
    let d = TracingConfig::default();
    let get = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };

    let mut endpoint = f.string("otlp_endpoint", p).map(|e| {
        let url = traces_url(&e);
        check_endpoint(&url, "tracing.otlp_endpoint", p);
        url
    });
    if let Some(e) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        // The per-signal variable is the traces URL as it is.
        check_endpoint(
            &e,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (overrides tracing.otlp_endpoint)",
            p,
        );
        endpoint = Some(e);
    } else if let Some(e) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
        let url = traces_url(&e);
        check_endpoint(
            &url,
            "OTEL_EXPORTER_OTLP_ENDPOINT (overrides tracing.otlp_endpoint)",
            p,
        );
        endpoint = Some(url);
    }
    let mut enabled = f.boolean("enabled", endpoint.is_some(), p);
    if let Some(raw) = get("OTEL_SDK_DISABLED") {
        match parse_bool_str(&raw) {
            Some(true) => enabled = false,
            Some(false) => {}
            None => p.error(
                "OTEL_SDK_DISABLED (overrides tracing.enabled)",
                "expected true or false",
            ),
        }
    }
    if get("OTEL_TRACES_EXPORTER").is_some_and(|e| e.eq_ignore_ascii_case("none")) {
        enabled = false;
    }
    if let Some(proto) = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .filter(|_| enabled)
    {
        if proto != "http/protobuf" {
            p.error(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "only http/protobuf is supported (OTLP over HTTP, port 4318)",
            );
        }
    }

    let mut headers = Vec::new();
    match f.raw("headers") {
        None => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let path = format!("tracing.headers.{k}");
                match v {
                    Value::String(s) if http::HeaderValue::from_str(s).is_ok() => {
                        headers.push((k.to_ascii_lowercase(), Secret::new(s.as_str())));
                    }
                    Value::String(_) => p.error(&path, "not a valid HTTP header value"),
                    other => p.error(&path, format!("expected a string, got {}", describe(other))),
                }
                if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    p.error(&path, "not a valid HTTP header name");
                }
            }
        }
        Some(other) => p.error(
            "tracing.headers",
            format!("expected a mapping, got {}", describe(other)),
        ),
    }
    for name in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        if let Some(raw) = get(name) {
            match parse_headers(&raw) {
                Some(h) => {
                    for (k, v) in h {
                        headers.retain(|(old, _)| *old != k);
                        headers.push((k, v));
                    }
                }
                None => p.error(
                    &format!("{name} (overrides tracing.headers)"),
                    "expected name=value pairs separated by commas",
                ),
            }
        }
    }

    let service_name = get("OTEL_SERVICE_NAME")
        .or_else(|| f.string("service_name", p))
        .unwrap_or(d.service_name);

    let ratio_field = f.float("sample_ratio", "a ratio from 0 to 1", 1.0, p);
    if !(0.0..=1.0).contains(&ratio_field) {
        p.error("tracing.sample_ratio", "expected a ratio from 0 to 1");
    }
    let mut ratio = ratio_field.clamp(0.0, 1.0);
    if let Some(arg) = get("OTEL_TRACES_SAMPLER_ARG") {
        match arg.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => ratio = r,
            _ => p.error(
                "OTEL_TRACES_SAMPLER_ARG (overrides tracing.sample_ratio)",
                "expected a ratio from 0 to 1",
            ),
        }
    }
    let sampler_name = f
        .string("sampler", p)
        .unwrap_or_else(|| "parentbased_traceidratio".into());
    let mut sampler = parse_sampler(&sampler_name, ratio).unwrap_or_else(|| {
        p.error("tracing.sampler", format!("expected one of {SAMPLERS}"));
        d.sampler
    });
    if let Some(name) = get("OTEL_TRACES_SAMPLER") {
        match parse_sampler(&name, ratio) {
            Some(s) => sampler = s,
            None => p.error(
                "OTEL_TRACES_SAMPLER (overrides tracing.sampler)",
                format!("expected one of {SAMPLERS}"),
            ),
        }
    }

    let max_queue_size = f.integer(
        "max_queue_size",
        "a number of spans",
        d.max_queue_size as u64,
        p,
    ) as usize;
    let max_export_batch_size = f.integer(
        "max_export_batch_size",
        "a number of spans",
        d.max_export_batch_size as u64,
        p,
    ) as usize;
    if max_queue_size == 0 {
        p.error("tracing.max_queue_size", "expected at least 1 span");
    }
    if max_export_batch_size == 0 || max_export_batch_size > max_queue_size.max(1) {
        p.error(
            "tracing.max_export_batch_size",
            "expected at least 1 and at most max_queue_size",
        );
    }
    let batch_delay = Duration::from_millis(f.integer(
        "batch_delay_ms",
        "a number of milliseconds",
        d.batch_delay.as_millis() as u64,
        p,
    ));
    let export_timeout = Duration::from_millis(f.integer(
        "export_timeout_ms",
        "a number of milliseconds",
        d.export_timeout.as_millis() as u64,
        p,
    ));
    if batch_delay.is_zero() {
        p.error("tracing.batch_delay_ms", "expected at least 1 millisecond");
    }
    if export_timeout.is_zero() {
        p.error(
            "tracing.export_timeout_ms",
            "expected at least 1 millisecond",
        );
    }
    TracingConfig {
        enabled,
        otlp_endpoint: endpoint.unwrap_or(d.otlp_endpoint),
        headers,
        service_name,
        sampler,
        max_queue_size,
        max_export_batch_size,
        batch_delay,
        export_timeout,
        capture_content: f.boolean("capture_content", false, p),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn load(yaml: &str, vars: &[(&str, &str)]) -> (TracingConfig, Vec<String>) {
        let v: Value = super::super::file::parse_yaml(yaml).unwrap_or(Value::Null);
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let mut p = Problems::default();
        let c = tracing(v.get("tracing"), &env, &mut p);
        (c, p.errors)
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        let (c, e) = load("", &[]);
        assert!(!c.enabled && e.is_empty(), "{e:?}");
        let (c, _) = load("", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318/")]);
        assert!(c.enabled);
        assert_eq!(c.otlp_endpoint, "http://otel:4318/v1/traces");
        let (c, _) = load("tracing: {otlp_endpoint: 'http://c:4318'}", &[]);
        assert!(c.enabled);
        assert_eq!(c.otlp_endpoint, "http://c:4318/v1/traces");
        let (c, _) = load(
            "tracing: {otlp_endpoint: 'http://c:4318'}",
            &[("OTEL_SDK_DISABLED", "true")],
        );
        assert!(!c.enabled, "OTEL_SDK_DISABLED wins");
    }

    #[test]
    fn the_per_signal_variable_is_used_as_it_is() {
        let (c, _) = load(
            "tracing: {otlp_endpoint: 'http://file:4318'}",
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://x:9/custom"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://y:4318"),
            ],
        );
        assert_eq!(c.otlp_endpoint, "http://x:9/custom");
    }

    #[test]
    fn samplers_follow_the_otel_names() {
        let (c, _) = load(
            "",
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ],
        );
        assert_eq!(
            c.sampler,
            Sampler {
                parent_based: false,
                ratio: 0.25
            }
        );
        let (c, _) = load("tracing: {sample_ratio: 0.5}", &[]);
        assert_eq!(
            c.sampler,
            Sampler {
                parent_based: true,
                ratio: 0.5
            }
        );
        let (_, e) = load("", &[("OTEL_TRACES_SAMPLER", "sometimes")]);
        assert_eq!(
            e,
            vec![format!(
                "OTEL_TRACES_SAMPLER (overrides tracing.sampler): expected one of {SAMPLERS}"
            )]
        );
        let (_, e) = load("tracing: {sample_ratio: 2}", &[]);
        assert_eq!(
            e,
            vec!["tracing.sample_ratio: expected a ratio from 0 to 1".to_string()]
        );
    }

    #[test]
    fn headers_are_parsed_and_never_shown() {
        let (c, e) = load(
            "tracing: {headers: {x-team: a}}",
            &[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-honeycomb-team=s%3Dcret,x-team=b",
            )],
        );
        assert!(e.is_empty(), "{e:?}");
        let shown: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(shown, vec![("x-honeycomb-team", "s=cret"), ("x-team", "b")]);
        let json = serde_json::to_string(&c).unwrap_or_default();
        assert!(!json.contains("s=cret") && json.contains("x-honeycomb-team"));
        let (_, e) = load("", &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]);
        assert_eq!(e, vec!["OTEL_EXPORTER_OTLP_HEADERS (overrides tracing.headers): expected name=value pairs separated by commas".to_string()]);
    }

    #[test]
    fn bad_fields_are_named() {
        let (_, e) = load(
            "tracing: {otlp_endpoint: 'ftp://x', max_queue_size: 0, colour: red}",
            &[],
        );
        assert_eq!(
            e,
            vec![
                "tracing.colour: unknown field (expected one of: enabled, otlp_endpoint, headers, service_name, sampler, sample_ratio, max_queue_size, max_export_batch_size, batch_delay_ms, export_timeout_ms, capture_content)".to_string(),
                "tracing.otlp_endpoint: expected an http:// URL such as http://localhost:4318".to_string(),
                "tracing.max_queue_size: expected at least 1 span".to_string(),
                "tracing.max_export_batch_size: expected at least 1 and at most max_queue_size".to_string(),
            ]
        );
        let (_, e) = load(
            "",
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ],
        );
        assert_eq!(e, vec!["OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported (OTLP over HTTP, port 4318)".to_string()]);
    }
}
