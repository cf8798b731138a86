#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::redis_backend::{decode, encode};
use super::*;
use std::time::Instant;

fn tenant(name: &str) -> Tenant {
    Tenant::named(&[name.as_bytes()])
}

const HOUR: Duration = Duration::from_secs(3600);

fn config(max_stored: usize, ttl: Duration) -> ResponsesConfig {
    ResponsesConfig {
        store_ttl: ttl,
        max_stored,
        max_stored_bytes: 64 * 1024 * 1024,
        redis_url: None,
    }
}

fn stored(id: &str, text: &str) -> StoredResponse {
    StoredResponse {
        id: id.to_string(),
        response: Bytes::from(format!(
            r#"{{"id":"{id}","object":"response","output_text":"{text}"}}"#
        )),
        input_items: Bytes::from(format!(
            r#"[{{"id":"msg_1","type":"message","role":"user","content":"{text}?"}}]"#
        )),
        context: Bytes::from(format!(r#"[{{"role":"user","content":"{text}?"}}]"#)),
    }
}

// ---- ids ----

#[test]
fn minted_ids_have_one_exact_shape() {
    let a = mint_id();
    let b = mint_id();
    assert_ne!(a, b, "random");
    assert_eq!(a.len(), ID_LEN);
    assert!(a.starts_with("resp_gw"), "{a}");
    assert!(is_minted(&a) && is_minted(&b));
    for _ in 0..1000 {
        let id = mint_id();
        assert!(is_minted(&id), "every minted id is recognised: {id}");
    }
}

#[test]
fn other_ids_are_not_ours() {
    let ours = "resp_gw0123456789abcdef0123456789abcdef";
    assert!(is_minted(ours));
    for other in [
        // OpenAI's: `resp_` and hex, which never holds a `g`.
        "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "resp_gw0123456789abcdef0123456789abcde", // one short
        "resp_gw0123456789abcdef0123456789abcdef0", // one long
        "resp_gw0123456789ABCDEF0123456789abcdef", // upper case
        "resp_gw0123456789abcdef0123456789abcdeg",
        "resp_gx0123456789abcdef0123456789abcdef",
        "resp_gw0123456789abcdef0123456789abcd€",
        "",
    ] {
        assert!(!is_minted(other), "{other}");
    }
}

#[test]
fn keys_hash_the_tenant() {
    let id = "resp_gw0123456789abcdef0123456789abcdef";
    let a = Key::new(&tenant("sk-client-key-hash"), id).unwrap();
    let b = Key::new(&tenant("team-b"), id).unwrap();
    assert_ne!(a.tenant, b.tenant, "one id, two tenants, two keys");
    let redis_key = a.redis_key();
    assert!(redis_key.starts_with(REDIS_PREFIX), "{redis_key}");
    assert!(redis_key.ends_with(&format!(":{id}")), "{redis_key}");
    assert!(
        !redis_key.contains("sk-client"),
        "no tenant text in Redis keys"
    );
    assert_eq!(
        Key::new(&tenant("t"), "resp_123"),
        None,
        "no key for ids we did not mint"
    );
}

#[test]
fn tenant_hashes_are_those_earlier_releases_wrote() {
    // Redis keys of stored conversations carry this hash: a change would orphan them.
    let mut h = Sha256::new();
    h.update(b"llmgw-resp-tenant-v1\0key:team-a");
    let digest: [u8; 32] = h.finalize().into();
    let named = Tenant::named(&[b"key:", b"team-a"]);
    assert_eq!(named.0[..], digest[..16]);
    assert_eq!(named, tenant("key:team-a"), "parts are concatenated");
    assert_ne!(named, tenant("key:team-b"));
}

#[test]
fn an_assembled_entry_splices_the_context_from_the_arrays_written() {
    let ctx = |parts: &[&str]| {
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        let r = StoredResponse::assemble("resp_gwx".into(), b"{}", b"[1]", &parts);
        String::from_utf8(r.context.to_vec()).unwrap_or_default()
    };
    assert_eq!(
        ctx(&["[{\"a\":1}, 2]", "[]", " [ 3 ] "]),
        "[{\"a\":1}, 2,3]"
    );
    assert_eq!(
        ctx(&["", "[1]", "null"]),
        "[1]",
        "what is not an array adds nothing"
    );
    assert_eq!(ctx(&["", "[]", ""]), "[]");
    assert_eq!(ctx(&["[", "]", "[x"]), "[]", "nor does a cut array");
    let v: serde_json::Value =
        serde_json::from_str(&ctx(&["[[1],{\"b\":[]}]", "[\"x\"]"])).unwrap_or_default();
    assert_eq!(v, serde_json::json!([[1], {"b": []}, "x"]));

    // One buffer of exactly the three parts, as `exact` makes it, and it encodes and decodes.
    let id = "resp_gw0123456789abcdef0123456789abcdef";
    let r = StoredResponse::assemble(
        id.into(),
        b"{\"id\":1}",
        b"[\"in\"]",
        &[b"[\"old\"]", b"[\"in\"]"],
    );
    assert_eq!(&r.response[..], b"{\"id\":1}");
    assert_eq!(&r.input_items[..], b"[\"in\"]");
    assert_eq!(&r.context[..], b"[\"old\",\"in\"]");
    assert_eq!(
        r.response.as_ptr().wrapping_add(r.response.len()),
        r.input_items.as_ptr()
    );
    assert_eq!(
        r.input_items.as_ptr().wrapping_add(r.input_items.len()),
        r.context.as_ptr()
    );
    assert_eq!(r.clone().exact(), r);
    assert_eq!(decode(encode(&r), id), Some(r));
}

// ---- encoding ----

#[test]
fn encoding_is_compact_and_round_trips() {
    let r = stored("resp_gw0123456789abcdef0123456789abcdef", "hi");
    let wire = encode(&r);
    let header = format!(
        "llmgw-resp1 {} {} {}\n",
        r.id,
        r.response.len(),
        r.input_items.len()
    );
    assert!(wire.starts_with(header.as_bytes()), "one short header line");
    assert_eq!(
        wire.len(),
        header.len() + r.payload_len() - r.id.len(),
        "then the payload verbatim"
    );
    assert_eq!(decode(wire, &r.id), Some(r));
}

#[test]
fn odd_payloads_round_trip() {
    let id = mint_id();
    for (response, items, context) in [
        (&b""[..], &b""[..], &b""[..]),
        (b"\n\n", b" 1 2\n", b"\x00\xff"),
        (b"llmgw-resp1 x", b"", b"[]"),
    ] {
        let r = StoredResponse {
            id: id.clone(),
            response: Bytes::copy_from_slice(response),
            input_items: Bytes::copy_from_slice(items),
            context: Bytes::copy_from_slice(context),
        };
        assert_eq!(decode(encode(&r), &id), Some(r));
    }
}

#[test]
fn decoding_shares_the_value_and_refuses_anything_else() {
    let r = stored(&mint_id(), "x");
    let wire = encode(&r);
    let header_len = wire.len() - (r.payload_len() - r.id.len());
    let value = wire.clone();
    let base = value.as_ptr() as usize;
    let got = decode(value, &r.id).unwrap();
    assert_eq!(
        got.response.as_ptr() as usize,
        base + header_len,
        "the fields are slices of the value Redis returned, not copies"
    );
    assert_eq!(
        got.context.as_ptr() as usize,
        base + header_len + r.response.len() + r.input_items.len()
    );
    for cut in 0..header_len + r.response.len() + r.input_items.len() {
        assert_eq!(decode(wire[..cut].to_vec(), &r.id), None, "cut at {cut}");
    }
    assert_eq!(
        decode(wire.clone(), &mint_id()),
        None,
        "a value under another id is not served"
    );
    let other_version = [b"llmgw-resp2".as_slice(), &wire[11..]].concat();
    assert_eq!(decode(other_version, &r.id), None);
    assert_eq!(decode(b"{\"id\":1}".to_vec(), &r.id), None);
    let extra_field = format!("llmgw-resp1 {} 1 1 1\nabc", r.id).into_bytes();
    assert_eq!(decode(extra_field, &r.id), None);
    let huge = format!("llmgw-resp1 {} 18446744073709551615 1\nabc", r.id).into_bytes();
    assert_eq!(
        decode(huge, &r.id),
        None,
        "lengths past the value are refused"
    );
}

// ---- the store in memory ----

#[tokio::test]
async fn memory_store_gets_puts_and_deletes() {
    let store = ConversationStore::new(&config(100, HOUR), None);
    assert!(!store.redis_enabled() && store.healthy());
    let id = mint_id();
    assert_eq!(store.get(&tenant("t"), &id).await, None);
    store.put(&tenant("t"), stored(&id, "one")).await;
    assert_eq!(store.get(&tenant("t"), &id).await, Some(stored(&id, "one")));
    assert!(
        store.delete(&tenant("t"), &id).await,
        "something was removed"
    );
    assert_eq!(store.get(&tenant("t"), &id).await, None);
    assert!(
        !store.delete(&tenant("t"), &id).await,
        "nothing left to remove"
    );
    assert_eq!(store.memory_usage(), Usage::default());
}

#[tokio::test]
async fn another_tenant_never_sees_an_entry() {
    let store = ConversationStore::new(&config(100, HOUR), None);
    let id = mint_id();
    store
        .put(&tenant("tenant-a"), stored(&id, "secret plans"))
        .await;
    assert_eq!(
        store.get(&tenant("tenant-b"), &id).await,
        None,
        "unknown to tenant b"
    );
    assert!(
        !store.delete(&tenant("tenant-b"), &id).await,
        "b cannot delete it"
    );
    assert!(
        store.get(&tenant("tenant-a"), &id).await.is_some(),
        "still a's"
    );
    // Tenant b storing under the same id keeps both apart.
    store.put(&tenant("tenant-b"), stored(&id, "b's own")).await;
    assert_eq!(
        store.get(&tenant("tenant-a"), &id).await,
        Some(stored(&id, "secret plans"))
    );
    assert_eq!(
        store.get(&tenant("tenant-b"), &id).await,
        Some(stored(&id, "b's own"))
    );
}

#[tokio::test]
async fn ids_the_gateway_did_not_mint_are_never_stored() {
    let store = ConversationStore::new(&config(100, HOUR), None);
    let openai = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";
    store.put(&tenant("t"), stored(openai, "x")).await;
    assert_eq!(store.memory_usage().entries, 0);
    assert_eq!(store.get(&tenant("t"), openai).await, None);
    assert!(!store.delete(&tenant("t"), openai).await);
}

#[tokio::test]
async fn memory_store_expires_and_evicts() {
    let store = ConversationStore::new(&config(2, Duration::from_millis(200)), None);
    let ids: Vec<String> = (0..3).map(|_| mint_id()).collect();
    for id in &ids {
        store.put(&tenant("t"), stored(id, "x")).await;
    }
    assert_eq!(
        store.get(&tenant("t"), &ids[0]).await,
        None,
        "evicted by the count bound"
    );
    assert!(store.get(&tenant("t"), &ids[2]).await.is_some());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        store.get(&tenant("t"), &ids[2]).await,
        None,
        "expired after store_ttl"
    );
    assert!(
        !store.delete(&tenant("t"), &ids[1]).await,
        "an expired entry is not deleted"
    );
}

// ---- Redis ----

/// A throwaway `redis-server` on a given port, killed on drop.
struct RedisServer {
    port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    async fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        // Owned at once so Drop kills it even if it never starts listening.
        let server = Self {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_conversations_through_redis() {
    let server = RedisServer::start(RedisServer::free_port()).await;
    let a = ConversationStore::new(&config(100, HOUR), Some(&server.url()));
    let b = ConversationStore::new(&config(100, HOUR), Some(&server.url()));
    assert!(a.redis_enabled());
    let id = mint_id();
    a.put(&tenant("tenant"), stored(&id, "started on a")).await;
    assert_eq!(
        b.get(&tenant("tenant"), &id).await,
        Some(stored(&id, "started on a")),
        "b continues what a started"
    );
    assert_eq!(
        b.get(&tenant("other"), &id).await,
        None,
        "scoped to the tenant in Redis too"
    );
    assert!(a.healthy() && b.healthy());

    // One key, the compact encoding, the store TTL, nothing of the tenant in the key.
    let mut conn = server.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{REDIS_PREFIX}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        keys,
        vec![Key::new(&tenant("tenant"), &id).unwrap().redis_key()]
    );
    let value: Vec<u8> = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, encode(&stored(&id, "started on a")));
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 3_590_000 && pttl <= 3_600_000,
        "SET with PX store_ttl, got {pttl} ms"
    );

    // Deleted on b: gone for a too, although a still holds its own copy in memory.
    assert!(b.delete(&tenant("tenant"), &id).await);
    assert_eq!(a.memory_usage().entries, 1, "a's copy is still there");
    assert_eq!(
        a.get(&tenant("tenant"), &id).await,
        None,
        "Redis says it is gone"
    );
    assert!(
        !a.delete(&tenant("tenant"), &id).await,
        "and deleting it again removes nothing"
    );
    assert_eq!(a.memory_usage().entries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_to_this_instances_memory() {
    let port = RedisServer::free_port();
    let mut server = RedisServer::start(port).await;
    let a = ConversationStore::new(&config(100, HOUR), Some(&server.url()));
    let b = ConversationStore::new(&config(100, HOUR), Some(&server.url()));
    let before = mint_id();
    a.put(&tenant("t"), stored(&before, "before")).await;
    assert!(b.get(&tenant("t"), &before).await.is_some(), "in Redis");

    server.stop();
    let started = Instant::now();
    assert_eq!(
        a.get(&tenant("t"), &before).await,
        Some(stored(&before, "before")),
        "a continues its own conversation from memory"
    );
    assert!(!a.healthy(), "and says Redis is failing");
    let during = mint_id();
    a.put(&tenant("t"), stored(&during, "during")).await;
    assert_eq!(
        a.get(&tenant("t"), &during).await,
        Some(stored(&during, "during"))
    );
    assert_eq!(b.get(&tenant("t"), &during).await, None, "b cannot know it");
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "no call waits past its bound, took {:?}",
        started.elapsed()
    );

    // Redis is back (empty): what a wrote meanwhile is still a's, what Redis lost is gone.
    let server = RedisServer::start(port).await;
    tokio::time::sleep(crate::redis_link::COOLDOWN + Duration::from_millis(50)).await;
    assert_eq!(
        a.get(&tenant("t"), &during).await,
        Some(stored(&during, "during")),
        "written while Redis was away, kept locally"
    );
    assert!(a.healthy(), "the probe closed the breaker");
    assert_eq!(
        a.get(&tenant("t"), &before).await,
        None,
        "Redis answers again and no longer has it (it restarted empty)"
    );
    assert!(
        a.delete(&tenant("t"), &during).await,
        "a local entry can be deleted"
    );
    assert_eq!(a.get(&tenant("t"), &during).await, None);
    drop(server);
}

#[tokio::test]
async fn redis_unreachable_from_the_start_keeps_state_in_memory() {
    let port = RedisServer::free_port(); // nothing listens here
    let url = format!("redis://:hunter2@127.0.0.1:{port}/");
    let store = ConversationStore::new(&config(100, HOUR), Some(&url));
    assert!(
        store.redis_enabled() && store.healthy(),
        "no I/O before first use"
    );
    let id = mint_id();
    store.put(&tenant("t"), stored(&id, "x")).await;
    assert!(!store.healthy());
    assert_eq!(store.get(&tenant("t"), &id).await, Some(stored(&id, "x")));
    assert!(store.delete(&tenant("t"), &id).await);
    assert_eq!(store.get(&tenant("t"), &id).await, None);
}

#[tokio::test]
async fn an_invalid_redis_url_runs_in_memory() {
    let store = ConversationStore::new(&config(100, HOUR), Some("not a url"));
    assert!(!store.redis_enabled());
    let id = mint_id();
    store.put(&tenant("t"), stored(&id, "x")).await;
    assert!(store.get(&tenant("t"), &id).await.is_some());
}
