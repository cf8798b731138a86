//! llm-gateway: an OpenAI- and Gemini-compatible LLM API gateway on Cloudflare Pingora.
//!
//! `main.rs` only wires; everything here is reachable from tests.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod control;
pub mod conversations;
pub mod error;
pub mod guard;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod providers {
    pub mod gemini;
    pub(crate) mod openai;
}
pub mod proxy;
pub mod ratelimit;
pub mod redact;
pub mod redis_link;
pub mod routes;
pub mod routing;
pub mod server;
pub mod sse;
pub mod state;
pub mod strategy;
pub mod telemetry;
pub mod translate;
pub mod upstream;
