//! OpenTelemetry traces (SPEC §15, docs/tracing.md): one server span per LLM request and one
//! client span per upstream attempt, named and attributed per the GenAI semantic conventions,
//! continued from the client's W3C `traceparent` and propagated to the provider.
//!
//! Off (no `tracing` endpoint) nothing is built: [`start`] returns `None` and every hook in
//! the proxy is an `Option` test. On, spans are ended on the request path and handed to the
//! SDK's batch thread through a bounded queue ([`export`]); a full queue drops and counts.
//!
//! What never reaches a span: keys (only the gateway key's id), prompts and completions
//! (unless `tracing.capture_content` is on, and then only the request's messages, redacted).

mod export;

use crate::config::{ProviderKind, Sampler, TracingConfig};
use crate::translate::ClientApi;
use http::HeaderValue;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Attribute names: the GenAI and HTTP semantic conventions, then the gateway's own.
pub mod attr {
    pub const OPERATION: &str = "gen_ai.operation.name";
    pub const PROVIDER: &str = "gen_ai.provider.name";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const RESPONSE_ID: &str = "gen_ai.response.id";
    pub const FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const INPUT_MESSAGES: &str = "gen_ai.input.messages";
    pub const HTTP_METHOD: &str = "http.request.method";
    pub const HTTP_STATUS: &str = "http.response.status_code";
    pub const URL_PATH: &str = "url.path";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const SERVER_PORT: &str = "server.port";
    pub const ERROR_TYPE: &str = "error.type";
    pub const REQUEST_ID: &str = "gateway.request_id";
    pub const ROUTE: &str = "gateway.route";
    pub const STREAM: &str = "gateway.stream";
    pub const ATTEMPT: &str = "gateway.attempt";
    pub const ATTEMPTS: &str = "gateway.attempts";
    pub const PEER: &str = "gateway.peer";
    pub const CACHE: &str = "gateway.cache";
    pub const KEY_ID: &str = "gateway.key_id";
    pub const KEY_SOURCE: &str = "gateway.key_source";
    pub const TTFT: &str = "gateway.time_to_first_token";
    pub const RATE_LIMIT: &str = "gateway.rate_limit";
}

struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    capture_content: bool,
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

fn sdk_sampler(s: Sampler) -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler as S;
    let root = if s.ratio >= 1.0 {
        S::AlwaysOn
    } else if s.ratio <= 0.0 {
        S::AlwaysOff
    } else {
        S::TraceIdRatioBased(s.ratio)
    };
    if s.parent_based {
        S::ParentBased(Box::new(root))
    } else {
        root
    }
}

/// Builds the exporter and the tracer once, at start-up (changing `tracing` needs a restart).
/// Nothing is built when tracing is off.
pub fn init(cfg: &TracingConfig) -> Result<(), String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    if !cfg.enabled || TRACING.get().is_some() {
        return Ok(());
    }
    let runtime = export::export_runtime()
        .map_err(|e| format!("tracing: cannot start the export thread: {e}"))?;
    let client = export::OwnRuntime {
        client: opentelemetry_http::hyper::HyperClient::with_default_connector(
            cfg.export_timeout,
            None,
        ),
        runtime,
    };
    let headers = cfg
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_string()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(cfg.otlp_endpoint.clone())
        .with_timeout(cfg.export_timeout)
        .with_headers(headers)
        .with_http_client(client)
        .build()
        .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
    let queued = Arc::new(AtomicUsize::new(0));
    let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(export::Counted {
        inner: exporter,
        queued: queued.clone(),
    })
    .with_batch_config(
        opentelemetry_sdk::trace::BatchConfigBuilder::default()
            .with_max_queue_size(cfg.max_queue_size)
            .with_max_export_batch_size(cfg.max_export_batch_size)
            .with_scheduled_delay(cfg.batch_delay)
            .build(),
    )
    .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(export::Admission {
            inner: batch,
            queued,
            max: cfg.max_queue_size,
        })
        .with_sampler(sdk_sampler(cfg.sampler))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("llm-gateway");
    let _ = export::SPANS.as_ref();
    let _ = TRACING.set(Tracing {
        tracer,
        provider,
        capture_content: cfg.capture_content,
    });
    log::info!(target: crate::logging::targets::TRACING, "exporting traces to {} (OTLP/HTTP, service {})", cfg.otlp_endpoint, cfg.service_name);
    Ok(())
}

/// Exports what is queued, waiting at most `timeout` (at shutdown).
pub fn flush(timeout: Duration) {
    if let Some(t) = TRACING.get() {
        let _ = t.provider.shutdown_with_timeout(timeout);
    }
}

pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The `traceparent` (and `tracestate`) an upstream attempt carries.
pub struct TraceHeaders {
    pub traceparent: HeaderValue,
    pub tracestate: Option<HeaderValue>,
}

impl TraceHeaders {
    fn of(sc: &SpanContext) -> Option<Self> {
        let traceparent = HeaderValue::from_str(&format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        ))
        .ok()?;
        let state = sc.trace_state().header();
        let tracestate = if state.is_empty() {
            None
        } else {
            HeaderValue::from_str(&state).ok()
        };
        Some(TraceHeaders {
            traceparent,
            tracestate,
        })
    }
}

/// The spans of one request: the server span (in `cx`) and the open attempt's client span.
pub struct RequestTrace {
    cx: Context,
    attempt: Option<Span>,
    operation: &'static str,
    request_model: Option<String>,
    answer: AnswerFacts,
    /// The server span's attributes and new name, set in one go when it ends: each write
    /// through the context's span takes the span's lock.
    server_attrs: Vec<KeyValue>,
    server_name: Option<String>,
}

/// What the answer's body said, read only when the span records.
#[derive(Default)]
struct AnswerFacts {
    model: Option<String>,
    id: Option<String>,
    finish_reasons: Vec<StringValue>,
}

/// `gen_ai.operation.name` for a client API (`None`: a passthrough route that is not one).
pub fn operation(api: ClientApi) -> Option<&'static str> {
    use crate::routes::GeminiMethod as G;
    Some(match api {
        ClientApi::Chat { .. } | ClientApi::Responses { .. } => "chat",
        ClientApi::Embeddings => "embeddings",
        ClientApi::GeminiNative { method } => match method {
            G::GenerateContent | G::StreamGenerateContent => "generate_content",
            G::EmbedContent | G::BatchEmbedContents => "embeddings",
            G::CountTokens => "count_tokens",
        },
        ClientApi::OpenAiOther => return None,
    })
}

/// `gen_ai.provider.name` as the conventions spell it.
pub fn provider_name(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::OpenAi => "openai",
        ProviderKind::Gemini => "gcp.gemini",
    }
}

/// `http.request.method` in its conventional spelling.
fn str_value(s: &str) -> Value {
    Value::String(StringValue::from(s.to_string()))
}

/// Starts the server span of an LLM request, continuing the client's `traceparent`; `None`
/// when tracing is off.
pub fn start(req: &pingora::http::RequestHeader, route: &'static str) -> Option<RequestTrace> {
    let t = TRACING.get()?;
    use opentelemetry::propagation::TextMapPropagator;
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract(&opentelemetry_http::HeaderExtractor(&req.headers));
    let method = req.method.as_str();
    let span = t
        .tracer
        .span_builder(format!("{method} {}", req.uri.path()))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new(attr::HTTP_METHOD, str_value(method)),
            KeyValue::new(attr::URL_PATH, str_value(req.uri.path())),
            KeyValue::new(attr::ROUTE, route),
        ])
        .start_with_context(&t.tracer, &parent);
    Some(RequestTrace {
        cx: parent.with_span(span),
        attempt: None,
        operation: "",
        request_model: None,
        answer: AnswerFacts::default(),
        server_attrs: Vec::new(),
        server_name: None,
    })
}

impl RequestTrace {
    fn recording(&self) -> bool {
        self.cx.span().is_recording()
    }

    /// The request as parsed: names the server span `{operation} {model}`.
    pub fn request(
        &mut self,
        api: ClientApi,
        model: Option<&str>,
        max_tokens: Option<u64>,
        request_id: &str,
    ) {
        if !self.recording() {
            return;
        }
        let attrs = &mut self.server_attrs;
        attrs.reserve(16); // only a recorded span's attributes are kept
        attrs.push(KeyValue::new(attr::REQUEST_ID, str_value(request_id)));
        attrs.push(KeyValue::new(attr::STREAM, api.stream()));
        let Some(op) = operation(api) else { return };
        self.operation = op;
        attrs.push(KeyValue::new(attr::OPERATION, op));
        if let Some(m) = model {
            self.server_name = Some(format!("{op} {m}"));
            attrs.push(KeyValue::new(attr::REQUEST_MODEL, str_value(m)));
            self.request_model = Some(m.to_string());
        }
        if let Some(n) = max_tokens {
            attrs.push(KeyValue::new(
                attr::REQUEST_MAX_TOKENS,
                i64::try_from(n).unwrap_or(i64::MAX),
            ));
        }
    }

    /// `tracing.capture_content`: the request's messages (already redacted of the keys the
    /// request carries), cut at 16 KiB.
    pub fn capture_input(&self, body: &[u8], secrets: &crate::redact::Secrets<'_>) {
        if !TRACING.get().is_some_and(|t| t.capture_content) || !self.recording() {
            return;
        }
        const LIMIT: usize = 16 * 1024;
        let text = String::from_utf8_lossy(&body[..body.len().min(LIMIT)]);
        let text = secrets.redact_str(&text).into_owned();
        self.cx
            .span()
            .set_attribute(KeyValue::new(attr::INPUT_MESSAGES, text));
    }

    /// The answer came from the cache: no upstream attempt follows.
    pub fn cache_hit(&self) {
        self.cx.span().add_event("gateway.cache.hit", Vec::new());
    }

    /// The gateway refused the request for a rate limit (`requests` or `tokens`).
    pub fn rate_limited(&self, limit: &'static str, retry_after_secs: u64) {
        self.cx.span().add_event(
            "gateway.rate_limited",
            vec![
                KeyValue::new(attr::RATE_LIMIT, limit),
                KeyValue::new(
                    "gateway.retry_after",
                    i64::try_from(retry_after_secs).unwrap_or(i64::MAX),
                ),
            ],
        );
    }

    /// Opens the client span of one upstream attempt (closing a previous one that is still
    /// open) and returns the headers that carry it to the provider.
    pub fn begin_attempt(
        &mut self,
        provider: ProviderKind,
        model: &str,
        peer: &crate::upstream::PeerInfo,
        attempt: u32,
    ) -> Option<TraceHeaders> {
        let t = TRACING.get()?;
        if let Some(mut previous) = self.attempt.take() {
            previous.end();
        }
        let op = if self.operation.is_empty() {
            "request"
        } else {
            self.operation
        };
        let mut builder = t
            .tracer
            .span_builder(format!("{op} {model}"))
            .with_kind(SpanKind::Client);
        if self.recording() {
            let mut attrs = vec![
                KeyValue::new(attr::PROVIDER, provider_name(provider)),
                KeyValue::new(attr::REQUEST_MODEL, str_value(model)),
                KeyValue::new(attr::SERVER_ADDRESS, str_value(&peer.address.host)),
                KeyValue::new(attr::SERVER_PORT, i64::from(peer.address.port)),
                KeyValue::new(attr::PEER, str_value(&peer.authority)),
                KeyValue::new(attr::ATTEMPT, i64::from(attempt)),
            ];
            if !self.operation.is_empty() {
                attrs.push(KeyValue::new(attr::OPERATION, self.operation));
            }
            builder = builder.with_attributes(attrs);
        }
        let span = builder.start_with_context(&t.tracer, &self.cx);
        let headers = TraceHeaders::of(span.span_context());
        self.attempt = Some(span);
        headers
    }

    /// The open attempt failed (the relay goes on to the next step or gives up).
    pub fn fail_attempt(&mut self, kind: crate::strategy::FailureKind, message: &str) {
        use crate::strategy::FailureKind as F;
        let Some(mut span) = self.attempt.take() else {
            return;
        };
        if span.is_recording() {
            let error_type: Value = match kind {
                F::Connect => "connect_error".into(),
                F::Timeout => "timeout".into(),
                F::Reset => "connection_reset".into(),
                F::Status(s) => {
                    span.set_attribute(KeyValue::new(attr::HTTP_STATUS, i64::from(s)));
                    s.to_string().into()
                }
            };
            span.set_attribute(KeyValue::new(attr::ERROR_TYPE, error_type));
            span.set_status(Status::error(message.to_string()));
        }
        span.end();
    }

    /// The answer's body, read whole by the relay: its model, id and finish reasons.
    pub fn answer_body(&mut self, body: &[u8]) {
        if !self.recording() {
            return;
        }
        if let Ok(head) = serde_json::from_slice::<AnswerHead>(body) {
            let response = head.object_is_response();
            self.answer.model = head.model.map(Cow::into_owned);
            self.answer.id = head.id.map(Cow::into_owned);
            self.answer.finish_reasons = head
                .choices
                .iter()
                .filter_map(|c| c.finish_reason.as_deref())
                .chain(
                    head.candidates
                        .iter()
                        .filter_map(|c| c.finish_reason.as_deref()),
                )
                .chain(head.status.as_deref().filter(|_| response))
                .map(|r| StringValue::from(r.to_string()))
                .collect();
        }
    }

    /// Ends both spans with what the request came to (from the `logging` phase).
    pub fn finish(mut self, ctx: &crate::proxy::Ctx) {
        let recording = self.recording();
        let mut common: Vec<KeyValue> = Vec::new();
        if recording {
            if let Some(p) = ctx.provider {
                common.push(KeyValue::new(attr::PROVIDER, provider_name(p)));
            }
            // Every whole answer's usage is recorded by the relay (translated or not).
            if let Some((input, output)) = ctx.usage {
                common.push(KeyValue::new(
                    attr::INPUT_TOKENS,
                    i64::try_from(input).unwrap_or(i64::MAX),
                ));
                common.push(KeyValue::new(
                    attr::OUTPUT_TOKENS,
                    i64::try_from(output).unwrap_or(i64::MAX),
                ));
            }
            let response_model = self
                .answer
                .model
                .take()
                .or_else(|| (ctx.cache == "HIT").then(|| ctx.model.clone()).flatten());
            if let Some(m) = response_model {
                common.push(KeyValue::new(attr::RESPONSE_MODEL, m));
            }
            if let Some(id) = self.answer.id.take() {
                common.push(KeyValue::new(attr::RESPONSE_ID, id));
            }
            if !self.answer.finish_reasons.is_empty() {
                common.push(KeyValue::new(
                    attr::FINISH_REASONS,
                    Value::Array(opentelemetry::Array::String(std::mem::take(
                        &mut self.answer.finish_reasons,
                    ))),
                ));
            }
            if let Some(first) = ctx.first_byte {
                common.push(KeyValue::new(
                    attr::TTFT,
                    first.saturating_duration_since(ctx.start).as_secs_f64(),
                ));
            }
        }
        if let Some(mut a) = self.attempt.take() {
            if a.is_recording() {
                if ctx.status != 0 {
                    a.set_attribute(KeyValue::new(attr::HTTP_STATUS, i64::from(ctx.status)));
                }
                a.set_attributes(common.iter().cloned());
                if let Some(e) = ctx.error {
                    a.set_attribute(KeyValue::new(attr::ERROR_TYPE, e));
                    a.set_status(Status::error(e));
                }
            }
            a.end();
        }
        let span = self.cx.span();
        if recording {
            let mut attrs = std::mem::take(&mut self.server_attrs);
            attrs.push(KeyValue::new(attr::HTTP_STATUS, i64::from(ctx.status)));
            attrs.push(KeyValue::new(attr::ATTEMPTS, i64::from(ctx.attempts)));
            attrs.push(KeyValue::new(attr::CACHE, ctx.cache));
            if let Some(peer) = &ctx.peer {
                attrs.push(KeyValue::new(attr::PEER, str_value(&peer.authority)));
            }
            if let Some(id) = &ctx.key_id {
                attrs.push(KeyValue::new(attr::KEY_ID, str_value(id)));
            }
            if let Some(s) = ctx.key_source {
                attrs.push(KeyValue::new(attr::KEY_SOURCE, s));
            }
            attrs.extend(common);
            if let Some(e) = ctx.error {
                attrs.push(KeyValue::new(attr::ERROR_TYPE, e));
            }
            span.set_attributes(attrs);
            if let Some(name) = self.server_name.take() {
                span.update_name(name);
            }
            if ctx.status >= 500 {
                span.set_status(Status::error(ctx.error.unwrap_or("server_error")));
            }
        }
        span.end();
    }
}

/// The few fields of an answer (OpenAI chat or Responses, or Gemini) a span reports; the
/// rest is skipped unparsed.
#[derive(Deserialize)]
struct AnswerHead<'a> {
    #[serde(borrow, alias = "modelVersion")]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "responseId")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    object: Option<Cow<'a, str>>,
    /// Responses API: `completed`, `incomplete`, …
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Vec<Finish<'a>>,
    #[serde(default, borrow)]
    candidates: Vec<Finish<'a>>,
}

impl AnswerHead<'_> {
    fn object_is_response(&self) -> bool {
        self.object.as_deref() == Some("response")
    }
}

#[derive(Deserialize)]
struct Finish<'a> {
    #[serde(borrow, alias = "finishReason")]
    finish_reason: Option<Cow<'a, str>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn facts(body: &str) -> (Option<String>, Vec<String>) {
        let head: AnswerHead = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
        let reasons = head
            .choices
            .iter()
            .chain(&head.candidates)
            .filter_map(|c| c.finish_reason.as_deref().map(str::to_string))
            .collect();
        (head.model.map(Cow::into_owned), reasons)
    }

    #[test]
    fn answers_of_each_api_give_their_model_and_finish_reasons() {
        assert_eq!(
            facts(
                r#"{"id":"c","model":"gpt-4o-mini-2024","choices":[{"message":{"content":"hi"},"finish_reason":"stop"},{"finish_reason":"length"}]}"#
            ),
            (
                Some("gpt-4o-mini-2024".into()),
                vec!["stop".into(), "length".into()]
            )
        );
        assert_eq!(
            facts(
                r#"{"candidates":[{"content":{},"finishReason":"STOP"}],"modelVersion":"gemini-2.0-flash"}"#
            ),
            (Some("gemini-2.0-flash".into()), vec!["STOP".into()])
        );
    }

    #[test]
    fn operations_follow_the_conventions() {
        assert_eq!(
            operation(ClientApi::Chat {
                stream: true,
                include_usage: false
            }),
            Some("chat")
        );
        assert_eq!(operation(ClientApi::Embeddings), Some("embeddings"));
        assert_eq!(
            operation(ClientApi::GeminiNative {
                method: crate::routes::GeminiMethod::StreamGenerateContent
            }),
            Some("generate_content")
        );
        assert_eq!(operation(ClientApi::OpenAiOther), None);
        assert_eq!(provider_name(ProviderKind::Gemini), "gcp.gemini");
    }

    #[test]
    fn samplers_map_to_the_sdk() {
        use opentelemetry_sdk::trace::Sampler as S;
        let s = |parent_based, ratio| {
            format!(
                "{:?}",
                sdk_sampler(Sampler {
                    parent_based,
                    ratio
                })
            )
        };
        assert_eq!(s(false, 1.0), format!("{:?}", S::AlwaysOn));
        assert_eq!(s(false, 0.0), format!("{:?}", S::AlwaysOff));
        assert_eq!(
            s(true, 0.5),
            format!("{:?}", S::ParentBased(Box::new(S::TraceIdRatioBased(0.5))))
        );
    }
}
