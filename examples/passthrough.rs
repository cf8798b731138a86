//! The floor for any Pingora proxy, used by `loadtest/run.py` as the baseline: a plain
//! `ProxyHttp` that forwards every request unchanged to one upstream, built from the same
//! Pingora version as the gateway.
//!
//! `cargo run --release --example passthrough -- LISTEN_ADDR UPSTREAM_ADDR`

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};

struct Passthrough {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

#[path = "common/mod.rs"]
mod common;

pub fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: passthrough LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let Ok(upstream) = upstream.parse() else {
        eprintln!("UPSTREAM_ADDR must be ip:port");
        std::process::exit(2);
    };
    let mut server = common::server();
    let mut proxy = http_proxy_service(&server.configuration, Passthrough { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
