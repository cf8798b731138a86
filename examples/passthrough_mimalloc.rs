//! The plain passthrough of `passthrough.rs` with the gateway's allocator (mimalloc), so
//! `loadtest/run.py` can show the comparison both ways: against a stock Pingora proxy and
//! against one that differs from the gateway only in what it does per request.
//!
//! `cargo run --release --example passthrough_mimalloc -- LISTEN_ADDR UPSTREAM_ADDR`

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "passthrough.rs"]
mod plain;

fn main() {
    plain::main()
}
