//! The floor for answering from memory on Pingora, used by `loadtest/run.py` beside the
//! gateway's cache hits: a `ProxyHttp` whose `request_filter` drains the request body and
//! writes one fixed answer (read from a file at start), with the gateway's allocator.
//!
//! `cargo run --release --example pingora_fixed -- LISTEN_ADDR BODY_FILE`

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Fixed {
    body: Bytes,
}

#[async_trait]
impl ProxyHttp for Fixed {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        while session.read_request_body().await?.is_some() {}
        let mut resp = ResponseHeader::build(200, Some(2))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", self.body.len())?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(self.body.clone()), true)
            .await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Err(Error::new_str("request_filter answers every request"))
    }
}

#[path = "common/mod.rs"]
mod common;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: pingora_fixed LISTEN_ADDR BODY_FILE");
        std::process::exit(2);
    };
    let body = match std::fs::read(&file) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("{file}: {e}");
            std::process::exit(2);
        }
    };
    let mut server = common::server();
    let mut proxy = http_proxy_service(&server.configuration, Fixed { body });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
